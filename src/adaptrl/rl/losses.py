"""Policy-gradient and value losses, each a masked mean to minimise.

Advantages and targets are treated as constants (detached): gradients flow only through the
current log-probabilities or values. Diagnostics are returned as detached 0-d tensors so callers
decide when to sync them to the host (once per iteration).
"""

from __future__ import annotations

import torch

from adaptrl.rl.returns import masked_mean


def vpg_loss(
    logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """REINFORCE / vanilla policy gradient surrogate ``-mean(logp * A)``."""
    return -masked_mean(logp * advantages.detach(), mask)


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate ``-mean(min(rho * A, clip(rho, 1 - eps, 1 + eps) * A))``.

    Also returns ``approx_kl`` (the unbiased, non-negative ``(rho - 1) - log rho`` estimator of
    KL(old || new)) and ``clip_fraction`` (share of samples whose ratio left the clip range).
    """
    adv = advantages.detach()
    log_ratio = logp - old_logp.detach()
    ratio = log_ratio.exp()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    loss = -masked_mean(surrogate, mask)
    with torch.no_grad():
        info = {
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
            "clip_fraction": masked_mean(((ratio - 1.0).abs() > clip).to(ratio.dtype), mask),
        }
    return loss, info


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip: float | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``0.5 * mean((V - R)^2)``; with ``old_values`` and ``clip``, PPO's pessimistic clipped form
    ``0.5 * mean(max((V - R)^2, (V_old + clamp(V - V_old, -clip, clip) - R)^2))``."""
    target = returns.detach()
    err = (values - target).square()
    if clip is not None:
        if old_values is None:
            raise ValueError("value_loss: clip needs old_values (the values at collection time)")
        old = old_values.detach()
        clipped = old + (values - old).clamp(-clip, clip)
        err = torch.maximum(err, (clipped - target).square())
    return 0.5 * masked_mean(err, mask)


def entropy_loss(entropy: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``-mean(entropy)``: adding ``coef * entropy_loss`` to a loss rewards exploration."""
    return -masked_mean(entropy, mask)
