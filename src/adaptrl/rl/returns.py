"""Discounted returns, generalised advantage estimation and masked statistics.

All tensors are time-major ``[T, B, ...]``. Two flags shape the recursions:

* ``terminated[t]``: the action at ``t`` reached a terminal state, so nothing is bootstrapped
  from the state it led to (its value is 0 by definition);
* ``cut[t]``: the backward recursion stops after ``t`` (the next row belongs to another episode,
  or, for RL², another trial). Per-episode estimates pass ``cut = terminated | truncated``; at a
  truncation the value of ``final_obs`` is still bootstrapped through ``next_values``.

The recursions are reversed loops of tensor operations: no host syncs, fine under ``vmap``.
"""

from __future__ import annotations

import torch


def _keep(flag: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``1 - flag`` in ``like``'s dtype (flags may be bool or 0/1 floats)."""
    return 1.0 - flag.to(like.dtype)


def discounted_returns(
    rewards: torch.Tensor,
    cut: torch.Tensor,
    gamma: float,
    bootstrap: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reward-to-go ``G_t = r_t + gamma * (1 - cut_t) * G_{t+1}``, with ``G_T = bootstrap`` (or 0).

    The recursion restarts after every step where ``cut`` is true; ``bootstrap [B, ...]`` (a value
    estimate of the state after the last step) is added, discounted, only where the last step is
    not cut.
    """
    keep = _keep(cut, rewards)
    ret = torch.zeros_like(rewards[0]) if bootstrap is None else bootstrap.to(rewards.dtype)
    out = []
    for t in range(rewards.shape[0] - 1, -1, -1):
        ret = rewards[t] + gamma * keep[t] * ret
        out.append(ret)
    return torch.stack(out[::-1])


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    cut: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalised advantage estimates (Schulman et al. 2016), shape ``[T, B, ...]``.

    ``delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t`` and
    ``A_t = delta_t + gamma * lam * (1 - cut_t) * A_{t+1}`` with ``A_{T-1} = delta_{T-1}``.
    ``next_values_t`` is the value of the observation action ``t`` led to (``final_obs`` at an
    episode end), so truncated episodes bootstrap correctly and the last row needs no extra input.
    ``lam = 1`` gives Monte Carlo returns minus values; ``lam = 0`` the one-step TD errors.
    """
    delta = rewards + gamma * _keep(terminated, rewards) * next_values - values
    decay = gamma * lam * _keep(cut, rewards)
    adv = delta[-1]
    out = [adv]
    for t in range(rewards.shape[0] - 2, -1, -1):
        adv = delta[t] + decay[t] * adv
        out.append(adv)
    return torch.stack(out[::-1])


def _valid(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``mask`` as bool of ``x``'s shape; a mask with fewer dims aligns with x's leading ones."""
    mask = mask.bool()
    if mask.dim() < x.dim():
        mask = mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim())))
    return torch.broadcast_to(mask, x.shape)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` over entries where ``mask`` (bool or 0/1) is set.

    A mask with fewer dimensions than ``x`` (``[T, B]`` for ``x [T, B, D]``) covers the trailing
    ones. Entries outside the mask never enter the sum (even NaN padding); an empty mask gives 0.
    """
    if mask is None:
        return x.mean()
    valid = _valid(mask, x)
    total = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum()
    return total / valid.sum().clamp(min=1).to(x.dtype)


def normalize(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` with the mean and (population) std over valid entries.

    Entries outside ``mask`` are returned as 0 so they cannot leak into a later unmasked sum.
    """
    mean = masked_mean(x, mask)
    std = masked_mean((x - mean).square(), mask).sqrt()
    out = (x - mean) / (std + eps)
    if mask is None:
        return out
    return torch.where(_valid(mask, x), out, torch.zeros_like(out))


def explained_variance(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``1 - Var(target - pred) / Var(target)`` over valid entries (0-d tensor, no host sync).

    1 is a perfect critic, 0 one no better than a constant, below 0 worse than a constant.
    A constant target gives 0.
    """
    err = target - pred
    var_t = masked_mean((target - masked_mean(target, mask)).square(), mask)
    var_e = masked_mean((err - masked_mean(err, mask)).square(), mask)
    return torch.where(var_t > 0, 1 - var_e / var_t.clamp(min=1e-12), torch.zeros_like(var_t))
