"""Propensity weights for reusing meta-training data on a new task (Meta-Q-Learning's adaptation).

A logistic regression tells a new task's samples (label 1) from meta-training samples (label 0);
with the two classes weighted equally its logit is an estimate of the log density ratio
``log p_new(x) / p_meta(x)``, so ``beta = exp(logit)`` re-weights meta-training samples towards
the new task. The normalised effective sample size of the weights says how much of the
meta-training data the new task can really use; Meta-Q-Learning scales its proximal penalty by
``1 - ESS``. Everything is batched over tasks: each task fits its own classifier against one
shared meta-training sample, by Newton's method (a few exact steps; the objective is strictly
convex with the L2 penalty).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_ess(weights: torch.Tensor) -> torch.Tensor:
    """``(sum w)^2 / (N sum w^2)`` over the last dimension: 1 for equal weights, 1/N when one
    sample holds all the weight (0 for all-zero weights)."""
    n = weights.shape[-1]
    total, square = weights.sum(-1), weights.square().sum(-1)
    return torch.where(square > 0, total.square() / (n * square.clamp_min(1e-30)), 0.0)


def fit_logistic(
    positive: torch.Tensor, negative: torch.Tensor, l2: float, iterations: int = 10
) -> torch.Tensor:
    """Per task ``b``, the class-balanced, L2-penalised logistic regression of ``positive[b]``
    (``[B, P, D]``, label 1) against the shared ``negative`` (``[N, D]``, label 0): weights
    ``[B, D + 1]``, the bias last (not penalised). Minimises
    ``mean_P softplus(-z) / 2 + mean_N softplus(z) / 2 + l2 / 2 |w|^2`` by Newton's method."""
    B, P, D = positive.shape
    xp = F.pad(positive, (0, 1), value=1.0)  # [B, P, D + 1]
    xn = F.pad(negative, (0, 1), value=1.0)  # [N, D + 1]
    reg = torch.full((D + 1,), l2, dtype=xp.dtype, device=xp.device)
    reg[-1] = 0.0
    w = torch.zeros(B, D + 1, dtype=xp.dtype, device=xp.device)
    cp, cn = 0.5 / P, 0.5 / xn.shape[0]
    for _ in range(iterations):
        sp = torch.sigmoid(torch.einsum("bpd,bd->bp", xp, w))
        sn = torch.sigmoid(torch.einsum("nd,bd->bn", xn, w))
        grad = (
            cp * torch.einsum("bpd,bp->bd", xp, sp - 1.0)
            + cn * torch.einsum("nd,bn->bd", xn, sn)
            + reg * w
        )
        hess = (
            cp * torch.einsum("bpd,bp,bpe->bde", xp, sp * (1.0 - sp), xp)
            + cn * torch.einsum("nd,bn,ne->bde", xn, sn * (1.0 - sn), xn)
            + torch.diag_embed(reg + 1e-8).expand(B, D + 1, D + 1)
        )
        w = w - torch.linalg.solve(hess, grad)
    return w


def propensity_weights(
    new: torch.Tensor, meta: torch.Tensor, *, l2: float, clip: float, iterations: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density-ratio weights of the meta-training samples ``meta`` (``[N, D]``) for each task's
    new samples ``new`` (``[B, P, D]``): ``beta = min(exp(logit), clip)`` (``[B, N]``) and their
    normalised effective sample size (``[B]``). Features are standardised by the meta-training
    sample's mean and standard deviation first, so ``l2`` has one scale for every input."""
    mean, std = meta.mean(0), meta.std(0).clamp_min(1e-6)
    new_z, meta_z = (new - mean) / std, (meta - mean) / std
    w = fit_logistic(new_z, meta_z, l2, iterations)
    logit = torch.einsum("nd,bd->bn", meta_z, w[:, :-1]) + w[:, -1:]
    beta = logit.clamp_max(torch.log(torch.tensor(clip))).exp()
    return beta, normalized_ess(beta)
