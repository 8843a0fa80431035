"""A functional Adam for per-task parameters (``[tasks, ...]``) updated inside an inner loop.

``torch.optim.Adam`` keeps one state per ``nn.Parameter``; an inner loop that trains many task
policies at once holds their parameters as batched tensors and needs each task's moments to be its
own. Adam is element-wise, so the same update applied to ``[tasks, ...]`` tensors is exactly one
independent Adam per task (tested against ``torch.optim.Adam``). Pure functions, no host syncs.
"""

from __future__ import annotations

import dataclasses

import torch

Params = dict[str, torch.Tensor]


@dataclasses.dataclass
class AdamState:
    """First and second moments of every parameter, and the number of steps taken."""

    m: Params
    v: Params
    step: int = 0


def adam_init(params: Params) -> AdamState:
    """Zero moments shaped like ``params``."""
    return AdamState(
        {k: torch.zeros_like(p) for k, p in params.items()},
        {k: torch.zeros_like(p) for k, p in params.items()},
    )


def adam_step(
    params: Params,
    grads: Params,
    state: AdamState,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Params, AdamState]:
    """One Adam step (Kingma & Ba 2015, as ``torch.optim.Adam`` computes it): new parameters and
    state; the inputs are left unchanged."""
    b1, b2 = betas
    step = state.step + 1
    m = {k: b1 * state.m[k] + (1 - b1) * grads[k] for k in params}
    v = {k: b2 * state.v[k] + (1 - b2) * grads[k].square() for k in params}
    c1, c2 = 1 - b1**step, 1 - b2**step
    new = {k: params[k] - (lr / c1) * m[k] / (v[k].sqrt() / c2**0.5 + eps) for k in params}
    return new, AdamState(m, v, step)


__all__ = ["AdamState", "adam_init", "adam_step"]
