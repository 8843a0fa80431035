"""Context encoders: a task's recent transitions in, a task embedding out.

Two kinds, for the off-policy context learners:

- :class:`ProbabilisticContextEncoder` (PEARL, Rakelly et al. 2019): each transition gives a
  Gaussian factor ``N(mu_i, var_i)`` over a latent task variable ``z``; the posterior is their
  product, so the encoding does not depend on the transitions' order and sharpens as evidence
  accumulates. A KL to the ``N(0, I)`` prior regularises it (the information bottleneck).
- :class:`RecurrentContextEncoder` (Meta-Q-Learning, Fakoor et al. 2020): a GRU over the last
  ``N`` transitions; its final hidden state is the context.

Both read the transition features of :func:`transition_features` and a mask, so left-padded
windows (fewer transitions held than the window's length) encode the same as their valid part.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from adaptrl.core.errors import ConfigError
from adaptrl.nn.heads import DistSpec, action_input_dim, encode_action
from adaptrl.nn.mlp import mlp


def transition_dim(obs_dim: int, action: DistSpec, next_obs: bool) -> int:
    """Width of :func:`transition_features`' output."""
    return obs_dim + action_input_dim(action) + 1 + (obs_dim if next_obs else 0)


def transition_features(
    action_spec: DistSpec,
    obs: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    next_obs: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[obs, action (one-hot if discrete), reward, next_obs?]`` per transition.

    Include ``next_obs`` where tasks differ in their dynamics: a reward-only task difference is
    visible from ``(obs, action, reward)`` alone.
    """
    parts = [obs.float(), encode_action(action_spec, action), reward.float().unsqueeze(-1)]
    if next_obs is not None:
        parts.append(next_obs.float())
    return torch.cat(parts, dim=-1)


def product_of_gaussians(
    mu: torch.Tensor, var: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised product of the factors ``N(mu_i, var_i)`` over dimension ``-2``.

    ``var = 1 / sum_i 1/var_i`` and ``mu = var * sum_i mu_i / var_i`` over the unmasked factors;
    where a row has none the result is the prior ``N(0, 1)`` (PEARL samples ``z`` from the prior
    before any context is collected).
    """
    precision = var.reciprocal()
    if mask is not None:
        precision = precision * mask.unsqueeze(-1).to(precision.dtype)
    return posterior_from_sums(precision.sum(-2), (precision * mu).sum(-2))


def posterior_from_sums(
    precision: torch.Tensor, weighted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, var)`` of a product of Gaussians from its running sums ``sum 1/var_i`` and
    ``sum mu_i/var_i`` (an agent adds one factor per step); ``N(0, 1)`` where there is none."""
    empty = precision == 0
    safe = torch.where(empty, torch.ones_like(precision), precision)
    var = torch.where(empty, torch.ones_like(precision), safe.reciprocal())
    return torch.where(empty, torch.zeros_like(weighted), weighted / safe), var


def kl_to_standard_normal(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag var) || N(0, I))`` summed over the last dimension."""
    return 0.5 * (var + mu.square() - 1.0 - var.log()).sum(-1)


class ProbabilisticContextEncoder(nn.Module):
    """Per-transition MLP to a Gaussian factor, then the product of the factors (PEARL)."""

    def __init__(self, in_dim: int, latent: int, hidden: Sequence[int] = (200, 200, 200)):
        super().__init__()
        if latent < 1:
            raise ConfigError(f"latent size must be >= 1, got {latent}")
        self.latent = latent
        self.net = mlp(in_dim, hidden, 2 * latent, activation="relu")

    def factors(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each transition's Gaussian factor ``(mu_i, var_i)``, each ``[..., latent]``."""
        out = self.net(features)
        mu, raw = out[..., : self.latent], out[..., self.latent :]
        return mu, F.softplus(raw).clamp_min(1e-7)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``features [..., N, in_dim]`` -> posterior ``(mu, var)``, each ``[..., latent]``."""
        return product_of_gaussians(*self.factors(features), mask)

    @staticmethod
    def sample(
        mu: torch.Tensor, var: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Reparameterised draw ``z = mu + sqrt(var) eps``."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + var.sqrt() * eps


class RecurrentContextEncoder(nn.Module):
    """A GRU over a window of transitions; the last hidden state is the context (Meta-Q-Learning).

    Masked steps leave the hidden state unchanged, so a left-padded window encodes exactly as its
    valid suffix would from a zero state.
    """

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ConfigError(f"GRU sizes must be >= 1, got in_dim={in_dim}, hidden={hidden}")
        self.out_dim = hidden
        self.cell = nn.GRUCell(in_dim, hidden)

    def states(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The context after each step: ``features [..., N, in_dim]`` (oldest first) ->
        ``[..., N, hidden]``."""
        lead = features.shape[:-2]
        steps = features.shape[-2]
        x = features.reshape(-1, steps, features.shape[-1])
        m = None if mask is None else mask.reshape(-1, steps, 1)
        h = x.new_zeros(x.shape[0], self.out_dim)
        out = []
        for t in range(steps):
            new = self.cell(x[:, t], h)
            h = new if m is None else torch.where(m[:, t], new, h)
            out.append(h)
        return torch.stack(out, dim=1).reshape(*lead, steps, self.out_dim)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``features [..., N, in_dim]`` (oldest first) -> context ``[..., hidden]``."""
        return self.states(features, mask)[..., -1, :]
