"""Trust-region policy optimisation pieces (Schulman et al. 2015): flat parameter vectors,
conjugate gradient, Fisher-vector products by double backward, and a backtracking line search.

Parameters are passed *functionally* as a list of tensors: ``objective(params)`` rebuilds whatever
it needs from them (``torch.func.functional_call``) and returns the surrogate loss and the mean KL
to the data-collecting policy, so the same code serves a plain policy (TRPO) and a loss that goes
through an inner adaptation step (MAML-RL's outer update differentiates through the inner step).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

Params = Sequence[torch.Tensor]


def flat(tensors: Params) -> torch.Tensor:
    """Concatenate tensors into one flat vector (keeps the autograd graph)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: torch.Tensor, like: Params) -> list[torch.Tensor]:
    """Split a flat vector into tensors shaped like ``like`` (views of ``vector``)."""
    sizes = [t.numel() for t in like]
    if vector.numel() != sum(sizes):
        raise ValueError(f"flat vector has {vector.numel()} entries, the tensors need {sum(sizes)}")
    return [v.view_as(t) for v, t in zip(vector.split(sizes), like, strict=True)]


def _grad(out: torch.Tensor, inputs: Params, **kw: Any) -> torch.Tensor:
    """Flat gradient of a scalar; inputs it does not depend on get zeros."""
    return flat(torch.autograd.grad(out, list(inputs), materialize_grads=True, **kw))


def conjugate_gradient(
    Avp: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given as ``Avp(v) = A v``.

    Runs exactly ``iters`` iterations (no data-dependent branching, no host syncs); once the squared
    residual is below ``residual_tol`` the updates are masked out with ``torch.where``.
    """
    return conjugate_gradient_with_product(Avp, b, iters, residual_tol)[0]


def conjugate_gradient_with_product(
    Avp: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`conjugate_gradient` that also returns ``A x`` (as ``b - r``, CG's running residual),
    which saves TRPO the extra product for ``x^T A x`` (equal up to rounding)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r.dot(r)
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    for _ in range(iters):
        active = rr > residual_tol
        Ap = Avp(p)
        alpha = torch.where(active, rr / p.dot(Ap), zero)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r.dot(r)
        beta = torch.where(active, rr_new / rr, zero)
        p = r + beta * p
        rr = torch.where(active, rr_new, rr)
    return x, b - r


def fisher_vector_product(
    kl_fn: Callable[[list[torch.Tensor]], torch.Tensor],
    params: Params,
    damping: float,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> H v + damping * v`` with ``H`` the Hessian of ``kl_fn`` at ``params``.

    ``kl_fn(params)`` is the mean KL(old || new) between the fixed data-collecting policy and the
    policy at ``params``; at ``params`` its gradient is zero and its Hessian is the Fisher
    information. The gradient graph is built once here (``create_graph=True``) and reused by
    every call (double backward), which is what conjugate gradient needs.
    """
    leaves = [p.detach().requires_grad_() for p in params]
    # PyTorch's fused CPU attention kernels have no double backward: attention inside kl_fn
    # (a transformer policy memory) must use the plain math kernel here.
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        grad = _grad(kl_fn(leaves), leaves, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            hv = _grad(grad.dot(v.detach()), leaves, retain_graph=True)
        return hv + damping * v

    return fvp


def line_search(
    f: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    full_step: torch.Tensor,
    expected_improve: float | torch.Tensor,
    max_kl: float,
    max_backtracks: int = 15,
    ratio: float = 0.5,
    accept: float = 0.1,
    loss_before: float | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Backtrack along ``full_step`` until the step improves the loss and stays in the trust region.

    ``f(flat_params) -> (loss, mean_kl)``. Step fractions ``ratio**k`` for ``k < max_backtracks``
    are tried in order; the first with ``loss_before - loss > accept * expected_improve * fraction``
    and ``kl <= max_kl`` (both finite) is taken. ``expected_improve = -g . full_step`` is the
    first-order predicted decrease of the full step. If none qualifies, ``x`` is returned unchanged
    with ``info["accepted"] = False``. Syncs with the host (once per outer iteration).
    """
    expected = float(expected_improve)
    if loss_before is None:
        loss_before = float(f(x)[0])
    info: dict[str, Any] = {
        "loss_before": loss_before,
        "loss_after": loss_before,
        "kl": 0.0,
        "step_fraction": 0.0,
        "accepted": False,
        "backtracks": max_backtracks,
    }
    for k in range(max_backtracks):
        fraction = ratio**k
        x_new = x + fraction * full_step
        loss, kl = (float(v) for v in f(x_new))
        improve = loss_before - loss
        if (
            math.isfinite(loss)
            and math.isfinite(kl)
            and improve > accept * expected * fraction
            and kl <= max_kl
        ):
            info.update(loss_after=loss, kl=kl, step_fraction=fraction, accepted=True, backtracks=k)
            return x_new.detach(), info
    return x.detach(), info


def max_kl_step(
    fvp: Callable[[torch.Tensor], torch.Tensor],
    g: torch.Tensor,
    max_kl: float,
    cg_iters: int = 10,
    cg_residual_tol: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TRPO's full step: ``x`` solving ``F x = -g`` by CG, scaled so that ``0.5 x^T F x = max_kl``.

    Returns ``(full_step, expected_improve)`` with ``expected_improve = -g . full_step``, the
    first-order predicted decrease of the loss. ``cg_iters`` Fisher-vector products in all.
    """
    direction, f_direction = conjugate_gradient_with_product(
        fvp, -g, iters=cg_iters, residual_tol=cg_residual_tol
    )
    quad = 0.5 * direction.dot(f_direction)
    scale = torch.sqrt(max_kl / quad.clamp(min=torch.finfo(quad.dtype).tiny))
    full_step = torch.where(quad > 0, scale, torch.zeros_like(scale)) * direction
    return full_step, -g.dot(full_step)


Objective = Callable[[list[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]
"""``params -> (surrogate loss, mean KL(old || new))``, both scalars."""


def trpo_step(
    params: Params,
    objective: Objective,
    *,
    max_kl: float = 0.01,
    damping: float = 0.1,
    cg_iters: int = 10,
    max_backtracks: int = 15,
    backtrack_ratio: float = 0.5,
    cg_residual_tol: float = 1e-10,
    fvp: Callable[[torch.Tensor], torch.Tensor] | None = None,
    gradient: Callable[[list[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]] | None = None,
    autograd_line_search: bool = False,
) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """One TRPO update of ``params``; returns new detached tensors and diagnostics.

    Solves ``F x = -g`` by conjugate gradient (``F`` the damped Hessian of the objective's KL,
    ``g`` the gradient of its loss), scales ``x`` so that ``0.5 x^T F x = max_kl`` and
    line-searches along it, each trial one evaluation of ``objective`` without autograd (inner
    steps taken with ``torch.func.grad`` inside it still work; ``autograd_line_search`` gives
    each trial fresh leaves with autograd on, for inner steps by ``torch.autograd.grad``).
    ``info``: loss_before, loss_after, kl, step_fraction, accepted (bool), backtracks,
    expected_improve, grad_norm.

    ``fvp`` replaces the double-backward Fisher-vector product of the KL (a learner with a
    cheaper exact or approximate one passes it, damping included); ``gradient(params) -> (loss,
    flat gradient)`` replaces the backward of the objective's loss (a learner that sums per-task
    gradients in a fixed order, for results that do not depend on the number of processes).
    """
    leaves = [p.detach().requires_grad_() for p in params]
    if gradient is not None:
        loss, g = gradient(leaves)
    else:
        with torch.enable_grad():
            loss = objective(leaves)[0]
            g = _grad(loss, leaves)
    if fvp is None:
        fvp = fisher_vector_product(lambda p: objective(p)[1], leaves, damping)
    full_step, expected_improve = max_kl_step(fvp, g, max_kl, cg_iters, cg_residual_tol)

    def f(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trial = unflat(x, leaves)
        if not autograd_line_search:
            with torch.no_grad():
                return objective(trial)
        with torch.enable_grad():
            loss, kl = objective([t.detach().requires_grad_() for t in trial])
        return loss.detach(), kl.detach()

    x0 = flat(leaves).detach()
    x_new, info = line_search(
        f,
        x0,
        full_step.detach(),
        expected_improve,
        max_kl,
        max_backtracks=max_backtracks,
        ratio=backtrack_ratio,
        loss_before=float(loss.detach()),
    )
    info.update(expected_improve=float(expected_improve), grad_norm=float(g.norm()))
    return [t.clone() for t in unflat(x_new, leaves)], info
