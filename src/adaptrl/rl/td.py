"""Temporal-difference targets and losses for the off-policy learners: double DQN, TD3 and SAC.

Targets are computed from tensors the caller evaluated (next-state Q-values of the online and
target networks, next log-probabilities), so each function is a few lines of arithmetic with an
exact test. Every target is detached: the critic regresses onto it. ``terminated`` (no
bootstrapping) is the environment's terminal flag, not the time limit: a truncated episode still
bootstraps from its next observation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adaptrl.rl.returns import masked_mean


def _bootstrap(
    reward: torch.Tensor, terminated: torch.Tensor, gamma: float, next_value: torch.Tensor
):
    return (reward + gamma * (1.0 - terminated.to(reward.dtype)) * next_value).detach()


def double_dqn_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """``r + gamma (1 - term) Q_target(s', argmax_a Q_online(s', a))`` (van Hasselt et al. 2016).

    ``next_q_*`` are ``[..., actions]``; the online network picks the action, the target network
    values it, which removes max-operator overestimation.
    """
    best = next_q_online.argmax(dim=-1, keepdim=True)
    return _bootstrap(reward, terminated, gamma, next_q_target.gather(-1, best).squeeze(-1))


def smoothed_target_action(
    action: torch.Tensor,
    noise: torch.Tensor,
    noise_clip: float,
    low: torch.Tensor | float,
    high: torch.Tensor | float,
) -> torch.Tensor:
    """TD3's target policy smoothing: ``clip(a' + clip(noise, -c, c), low, high)``.

    ``noise`` is drawn by the caller (``sigma * randn``) so the function stays deterministic.
    """
    low_t = torch.as_tensor(low, dtype=action.dtype, device=action.device)
    high_t = torch.as_tensor(high, dtype=action.dtype, device=action.device)
    return torch.clamp(action + noise.clamp(-noise_clip, noise_clip), low_t, high_t)


def td3_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Clipped double-Q target ``r + gamma (1 - term) min(Q1', Q2')`` (Fujimoto et al. 2018), with
    the next Q-values taken at the smoothed target action."""
    return _bootstrap(reward, terminated, gamma, torch.minimum(next_q1, next_q2))


def sac_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    next_logp: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float,
) -> torch.Tensor:
    """Soft target ``r + gamma (1 - term) (min(Q1', Q2') - alpha log pi(a'|s'))`` with ``a' ~ pi``
    (Haarnoja et al. 2018)."""
    alpha = torch.as_tensor(alpha, dtype=reward.dtype).detach()
    return _bootstrap(
        reward, terminated, gamma, torch.minimum(next_q1, next_q2) - alpha * next_logp
    )


def discrete_sac_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    next_logits: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float,
) -> torch.Tensor:
    """Discrete-action soft target: the expectation over ``pi(.|s')`` in closed form,
    ``r + gamma (1 - term) sum_a pi(a|s') (min(Q1', Q2')(a) - alpha log pi(a|s'))`` (Christodoulou 2019)."""
    alpha = torch.as_tensor(alpha, dtype=reward.dtype).detach()
    logp = next_logits.log_softmax(-1)
    soft_v = (logp.exp() * (torch.minimum(next_q1, next_q2) - alpha * logp)).sum(-1)
    return _bootstrap(reward, terminated, gamma, soft_v)


def td_loss(
    q: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    huber: float | None = None,
) -> torch.Tensor:
    """``0.5 * mean((Q - y)^2)`` over the mask, or the Huber loss with threshold ``huber``."""
    target = target.detach()
    if huber is None:
        err = 0.5 * (q - target).square()
    else:
        err = F.huber_loss(q, target, reduction="none", delta=huber)
    return masked_mean(err, mask)


def sac_actor_loss(
    q1: torch.Tensor,
    q2: torch.Tensor,
    logp: torch.Tensor,
    alpha: torch.Tensor | float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean(alpha log pi(a|s) - min(Q1, Q2)(s, a))`` with ``a ~ pi`` reparameterised."""
    alpha = torch.as_tensor(alpha, dtype=logp.dtype).detach()
    return masked_mean(alpha * logp - torch.minimum(q1, q2), mask)


def discrete_sac_actor_loss(
    q1: torch.Tensor,
    q2: torch.Tensor,
    logits: torch.Tensor,
    alpha: torch.Tensor | float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discrete SAC's actor loss ``mean(sum_a pi(a) (alpha log pi(a) - min(Q1, Q2)(a)))``, exact
    over the actions, and the policy's mean log-probability ``sum_a pi log pi`` (minus its
    entropy) for the temperature loss."""
    alpha = torch.as_tensor(alpha, dtype=logits.dtype).detach()
    logp = logits.log_softmax(-1)
    p = logp.exp()
    loss = masked_mean((p * (alpha * logp - torch.minimum(q1, q2).detach())).sum(-1), mask)
    return loss, (p * logp).sum(-1).detach()


def sac_alpha_loss(
    log_alpha: torch.Tensor,
    logp: torch.Tensor,
    target_entropy: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Temperature loss ``-mean(log_alpha (log pi + H_target))``: its gradient raises ``alpha`` when
    the policy's entropy falls below ``target_entropy`` and lowers it above."""
    return -masked_mean(log_alpha * (logp.detach() + target_entropy), mask)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging of target-network parameters: ``target <- (1 - tau) target + tau source``.

    The one in-place parameter update of the off-policy learners; it is outside any
    differentiated computation.
    """
    t_params = list(target.parameters())
    s_params = list(source.parameters())
    if len(t_params) != len(s_params):
        raise ValueError("soft_update: target and source have different parameter lists")
    for t, s in zip(t_params, s_params, strict=True):
        t.lerp_(s, tau)
