"""The uniform-random agent for any family, and small helpers shared by the classic baselines.

Helpers:

* :func:`random_argmax` breaks ties between equal scores uniformly at random (never "always the
  first action"), from the agent's own generator.
* :func:`numpy_rng` derives a ``numpy.random.Generator`` from a ``torch.Generator``. Beta, Gamma
  and Dirichlet draws need it because ``torch.distributions`` cannot take a generator; agents draw
  the seed once per trial, so their draws stay reproducible from the trial's generator.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.baselines.registry import AgentSpec, register_agent
from adaptrl.core.errors import ConfigError
from adaptrl.envs.base import BatchedEnv, TaskBatch, TaskFamily


def random_argmax(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Argmax over the last dimension; ties (exactly equal maxima) broken uniformly at random."""
    best = scores.max(dim=-1, keepdim=True).values
    u = torch.rand(scores.shape, generator=generator, device=generator.device)
    u = u.to(scores.device)
    return torch.where(scores >= best, u, -1.0).argmax(dim=-1)


def numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A NumPy generator seeded by one draw from ``generator``."""
    seed = torch.randint(0, 2**63 - 1, (), generator=generator, device=generator.device)
    return np.random.default_rng(int(seed))


def beta_sample(
    a: torch.Tensor, b: torch.Tensor, rng: np.random.Generator, samples: int | None = None
) -> torch.Tensor:
    """Beta(a, b) draws (float64) on ``a``'s device; ``samples`` adds a trailing sample dimension."""
    an, bn = a.double().cpu().numpy(), b.double().cpu().numpy()
    if samples is not None:
        an, bn = an[..., None], bn[..., None]
        out = rng.beta(an, bn, size=(*a.shape, samples))
    else:
        out = rng.beta(an, bn)
    return torch.from_numpy(np.asarray(out, dtype=np.float64)).to(a.device)


def dirichlet_sample(alpha: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Dirichlet(alpha) draws along the last dimension (normalised Gamma draws), float64."""
    g = rng.standard_gamma(alpha.double().cpu().numpy())
    g = torch.from_numpy(np.asarray(g, dtype=np.float64)).to(alpha.device)
    total = g.sum(-1, keepdim=True)
    # Gamma draws of tiny concentrations can all underflow to 0: fall back to the mean.
    mean = alpha / alpha.sum(-1, keepdim=True)
    return torch.where(total > 0, g / total.clamp_min(1e-300), mean.double())


def check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    """Raise a :class:`ConfigError` unless ``low <= value (<= high)``."""
    if value != value or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be {bound}, got {value}")


class RandomAgent(TrialAgent):
    """Uniformly random actions: integers for ``Discrete`` spaces, uniform in the box for ``Box``
    spaces (standard normal along unbounded coordinates). The lower bound of every table."""

    name = "random"

    def __init__(self, family: TaskFamily):
        space = family.action_space
        if not isinstance(space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise ConfigError(f"random: unsupported action space {space}")
        self.space = space

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        self.num_envs, self.device, self.generator = env.num_envs, env.device, generator
        if isinstance(self.space, gym.spaces.Box):
            low = torch.as_tensor(self.space.low, dtype=torch.float32)
            high = torch.as_tensor(self.space.high, dtype=torch.float32)
            self._bounded = torch.isfinite(low) & torch.isfinite(high)
            self._low = torch.where(self._bounded, low, 0.0).to(generator.device)
            self._high = torch.where(self._bounded, high, 0.0).to(generator.device)
            self._bounded = self._bounded.to(generator.device)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        gen = self.generator
        if isinstance(self.space, gym.spaces.Discrete):
            start = int(self.space.start)
            a = torch.randint(
                start, start + int(self.space.n), (self.num_envs,), generator=gen, device=gen.device
            )
            return a.to(self.device)
        shape = (self.num_envs, *self.space.shape)
        u = torch.rand(shape, generator=gen, device=gen.device)
        z = torch.randn(shape, generator=gen, device=gen.device)
        a = torch.where(self._bounded, self._low + (self._high - self._low) * u, z)
        return a.to(self.device)


def _discrete_or_box(family: TaskFamily) -> bool:
    return isinstance(family.action_space, (gym.spaces.Discrete, gym.spaces.Box))


register_agent(
    AgentSpec(
        name="random",
        factory=RandomAgent,
        supports=_discrete_or_box,
        description="uniformly random actions (any Discrete or Box action space)",
    )
)
