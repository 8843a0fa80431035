"""Action distributions as pure functions of their parameter tensors.

A policy network ends in a head whose output (logits, or mean and log-std concatenated) is the
*distribution parameters*. Everything else (:func:`sample`, :func:`log_prob`, :func:`entropy`,
:func:`kl`, ...) is a plain function of those tensors and a :class:`DistSpec`, so it works inside
``torch.func.functional_call``, ``grad`` and ``vmap`` (sampling excepted: it draws from an explicit
``torch.Generator``, which ``vmap`` cannot batch), and nothing is a ``torch.distributions`` object that
would hide host syncs or argument validation.

Shapes: parameters are ``[..., n]`` (categorical logits) or ``[..., 2*dim]`` (Gaussian mean then
log-std); the leading ``...`` may be anything (time, batch, task).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from adaptrl.core.config import Config, Size
from adaptrl.core.distributed import Rows
from adaptrl.core.errors import ConfigError
from adaptrl.nn.mlp import init_linear

Kind = Literal["categorical", "gaussian"]
LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class DistSpec(Config):
    """Which distribution a head's output parameterises, and its size (classes or action dims)."""

    kind: Kind
    dim: Size

    @property
    def param_dim(self) -> int:
        """Size of the last dimension of the parameter tensor."""
        return self.dim if self.kind == "categorical" else 2 * self.dim


class CategoricalHead(nn.Module):
    """Linear map to ``n`` logits, initialised small (gain 0.01) so the policy starts near uniform."""

    def __init__(self, in_dim: int, n: int):
        super().__init__()
        self.linear = init_linear(nn.Linear(in_dim, n), 0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class GaussianHead(nn.Module):
    """Mean from a linear map (gain 0.01); log-std a free parameter or, if ``state_dependent_std``,
    a second linear map of the features. Outputs ``cat(mean, log_std)`` on the last dimension."""

    def __init__(
        self,
        in_dim: int,
        act_dim: int,
        init_log_std: float = 0.0,
        state_dependent_std: bool = False,
    ):
        super().__init__()
        self.mean = init_linear(nn.Linear(in_dim, act_dim), 0.01)
        self.state_dependent_std = state_dependent_std
        if state_dependent_std:
            self.log_std = init_linear(nn.Linear(in_dim, act_dim), 0.01)
            nn.init.constant_(self.log_std.bias, init_log_std)
        else:
            self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mean = self.mean(features)
        log_std = self.log_std(features) if self.state_dependent_std else self.log_std
        return torch.cat([mean, log_std.expand_as(mean)], dim=-1)


def spec_for(space: gym.Space) -> DistSpec:
    """Categorical for ``Discrete(n)`` (starting at 0), diagonal Gaussian for a 1-D ``Box``."""
    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise ConfigError(f"Discrete action spaces must start at 0, got start={space.start}")
        return DistSpec("categorical", int(space.n))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return DistSpec("gaussian", int(space.shape[0]))
    raise ConfigError(
        f"no action distribution for {space}: use a Discrete or a 1-D Box action space"
    )


def make_head(space: gym.Space, in_dim: int, **kw: Any) -> nn.Module:
    """The head for ``space``; ``kw`` goes to :class:`GaussianHead` (ignored keys are an error)."""
    spec = spec_for(space)
    if spec.kind == "categorical":
        if kw:
            raise ConfigError(f"a categorical head takes no options, got {sorted(kw)}")
        return CategoricalHead(in_dim, spec.dim)
    return GaussianHead(in_dim, spec.dim, **kw)


def _split(spec: DistSpec, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if params.shape[-1] != spec.param_dim:
        raise ValueError(
            f"{spec.kind} parameters need last dimension {spec.param_dim}, got {tuple(params.shape)}"
        )
    return params[..., : spec.dim], params[..., spec.dim :]


def _log_softmax(spec: DistSpec, logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[-1] != spec.dim:
        raise ValueError(
            f"categorical logits need last dimension {spec.dim}, got {tuple(logits.shape)}"
        )
    return torch.log_softmax(logits, dim=-1)


def sample(
    spec: DistSpec, params: torch.Tensor, generator: torch.Generator, rows: Rows | None = None
) -> torch.Tensor:
    """Draw one action per leading index using only ``generator``.

    Categorical: Gumbel-max (argmax of logits plus Gumbel noise from ``torch.rand``), exact and
    shape-agnostic. Gaussian: ``mean + std * randn``. With ``rows`` the leading indices are that
    block of a larger batch and get the noise the whole batch's draw gives them
    (:class:`~adaptrl.core.distributed.Rows`).
    """
    rows = rows or Rows.all(params.shape[0])
    if spec.kind == "categorical":
        logp = _log_softmax(spec, params)
        u = rows.draw(torch.rand, logp.shape, generator, device=logp.device, dtype=logp.dtype)
        tiny = torch.finfo(logp.dtype).tiny
        gumbel = -torch.log(-torch.log(u.clamp(min=tiny)))
        return torch.argmax(logp.detach() + gumbel, dim=-1)
    mean, log_std = _split(spec, params)
    noise = rows.draw(torch.randn, mean.shape, generator, device=mean.device, dtype=mean.dtype)
    return (mean + log_std.exp() * noise).detach()


def mode(spec: DistSpec, params: torch.Tensor) -> torch.Tensor:
    """The most likely action: argmax of the logits, or the mean."""
    if spec.kind == "categorical":
        return torch.argmax(_log_softmax(spec, params), dim=-1)
    return _split(spec, params)[0]


def tanh_gaussian_sample(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    generator: torch.Generator,
    rows: Rows | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAC's squashed Gaussian: ``a = tanh(u)``, ``u ~ N(mean, std)`` reparameterised; returns
    ``(a, log pi(a))`` with the change-of-variables term ``-sum log(1 - tanh(u)^2)`` computed as
    ``2 (log 2 - u - softplus(-2u))``, which stays finite where ``tanh`` saturates. ``rows``: as
    :func:`sample`."""
    rows = rows or Rows.all(mean.shape[0])
    eps = rows.draw(torch.randn, mean.shape, generator, device=generator.device).to(mean)
    u = mean + log_std.exp() * eps
    log_normal = (-0.5 * eps.square() - log_std - 0.5 * LOG_2PI).sum(-1)
    log_det = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), log_normal - log_det


def log_prob(spec: DistSpec, params: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Log-density of ``action`` (summed over action dimensions for the Gaussian); shape ``[...]``."""
    if spec.kind == "categorical":
        logp = _log_softmax(spec, params)
        return logp.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
    mean, log_std = _split(spec, params)
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * LOG_2PI).sum(-1)


def entropy(spec: DistSpec, params: torch.Tensor) -> torch.Tensor:
    """Entropy of each distribution; shape ``[...]``."""
    if spec.kind == "categorical":
        logp = _log_softmax(spec, params)
        # exp(logp) * logp is 0 * -inf = nan for masked (-inf) logits; clamping keeps it at 0.
        return -(logp.exp() * logp.clamp(min=torch.finfo(logp.dtype).min)).sum(-1)
    _, log_std = _split(spec, params)
    return (log_std + 0.5 * (1.0 + LOG_2PI)).sum(-1)


def kl(spec: DistSpec, params_p: torch.Tensor, params_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` in closed form; shape ``[...]``."""
    if spec.kind == "categorical":
        logp = _log_softmax(spec, params_p)
        logq = _log_softmax(spec, params_q)
        # Classes p cannot pick contribute 0 (not 0 * nan), also to the gradient; the inner
        # wheres keep the masked branch finite. Where only q excludes a class the KL is inf.
        support = logp > -torch.inf
        diff = torch.where(support, logp, 0.0) - torch.where(support, logq, 0.0)
        return torch.where(support, logp.exp() * diff, 0.0).sum(-1)
    mean_p, log_std_p = _split(spec, params_p)
    mean_q, log_std_q = _split(spec, params_q)
    var_ratio = torch.exp(2.0 * (log_std_p - log_std_q))
    mahalanobis = ((mean_p - mean_q) * torch.exp(-log_std_q)).square()
    return (0.5 * (var_ratio + mahalanobis - 1.0) - (log_std_p - log_std_q)).sum(-1)


def fisher_product(spec: DistSpec, params: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Each row's Fisher information in the distribution parameters, times ``w`` (same shape).

    The Fisher is the Hessian of ``KL(p || q)`` in ``q`` at ``q = p``; in closed form it is
    ``softmax(l) * w - softmax(l) * (softmax(l) . w)`` for logits ``l``, and for a diagonal
    Gaussian ``w_mean / std^2`` on the means and ``2 w_log_std`` on the log standard deviations.
    """
    if spec.kind == "categorical":
        prob = _log_softmax(spec, params).exp()
        return prob * w - prob * (prob * w).sum(-1, keepdim=True)
    _, log_std = _split(spec, params)
    w_mean, w_log_std = _split(spec, w)
    return torch.cat([w_mean * torch.exp(-2.0 * log_std), 2.0 * w_log_std], dim=-1)


def action_input_dim(spec: DistSpec) -> int:
    """Width of :func:`encode_action`'s output (the number of classes, or the action dims)."""
    return spec.dim


def encode_action(spec: DistSpec, action: torch.Tensor) -> torch.Tensor:
    """Actions as float network inputs: one-hot for categorical, unchanged (as float) for Gaussian."""
    if spec.kind == "categorical":
        classes = torch.arange(spec.dim, device=action.device)
        return (action.long().unsqueeze(-1) == classes).float()
    return action.float()
