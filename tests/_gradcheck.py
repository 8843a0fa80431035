"""Shared test helper: a scalar function's autograd gradient against central differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch


def assert_gradient_matches_finite_differences(
    loss: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    draws: int = 3,
    eps: float = 1e-6,
    seed: int = 0,
) -> None:
    """The directional derivative of ``loss()`` along random directions in ``params`` (float64
    leaves, perturbed in place and restored) equals its central difference."""
    grads = torch.autograd.grad(loss(), list(params), allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(draws):
        direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]

        def shifted(scale: float, direction: list[torch.Tensor] = direction) -> float:
            with torch.no_grad():
                for p, d in zip(params, direction, strict=True):
                    p.add_(scale * eps * d)
                value = float(loss())
                for p, d in zip(params, direction, strict=True):
                    p.sub_(scale * eps * d)
            return value

        analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
        numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-10)
