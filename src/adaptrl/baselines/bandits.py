"""Classic agents for Bernoulli bandits (RL² Table 1 columns), batched over tasks.

Every agent keeps, per task (row) and arm, the number of successes ``S`` and failures ``F`` seen
in the trial, and starts from the uniform prior Beta(1, 1), which is the true prior of
``bandit-bernoulli-v0`` (arm probabilities ~ U[0, 1]). As in RL² §3.1, UCB1 and the greedy agents
count that prior as one pseudo-success and one pseudo-failure per arm, so their means are the
posterior means ``(1 + S) / (2 + S + F)``. Ties between equal scores are broken uniformly at random.

Ids: ``greedy``, ``eps-greedy`` (``eps``), ``ucb1`` (``c``), ``thompson``, ``ots`` (``samples``),
``gittins`` (``gamma``, ``horizon``). The uniform ``random`` agent lives in
:mod:`adaptrl.baselines.generic`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.baselines.generic import beta_sample, check_range, numpy_rng, random_argmax
from adaptrl.baselines.gittins import (
    GittinsTable,
    discounted_gittins_table,
    finite_horizon_gittins_table,
)
from adaptrl.baselines.registry import AgentSpec, register_agent
from adaptrl.core.errors import ConfigError
from adaptrl.envs.bandit import BernoulliBandit
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch, TaskFamily


class BetaBernoulliAgent(TrialAgent):
    """Base class: counts of successes and failures per arm; subclasses score the arms."""

    name: ClassVar[str] = "beta-bernoulli"

    def __init__(self, family: TaskFamily):
        self.family = family
        self.num_arms = int(family.action_space.n)  # type: ignore[attr-defined]

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        shape = (env.num_envs, self.num_arms)
        self.successes = torch.zeros(shape, dtype=torch.float64, device=env.device)
        self.failures = torch.zeros(shape, dtype=torch.float64, device=env.device)
        self.pulls = 0  # pulls so far in the trial (the same in every row: one per step)
        self.generator = generator
        self.device = env.device
        self.rng: np.random.Generator | None = None

    def _rng(self) -> np.random.Generator:
        """NumPy generator for Beta draws, seeded once per trial from the trial's generator."""
        if self.rng is None:
            self.rng = numpy_rng(self.generator)
        return self.rng

    def posterior_mean(self) -> torch.Tensor:
        return (1.0 + self.successes) / (2.0 + self.successes + self.failures)

    def scores(self) -> torch.Tensor:
        raise NotImplementedError

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return random_argmax(self.scores(), self.generator)

    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        a = action.long().unsqueeze(1)
        r = step.reward.double().unsqueeze(1)
        self.successes.scatter_add_(1, a, r)
        self.failures.scatter_add_(1, a, 1.0 - r)
        self.pulls += 1


class GreedyAgent(BetaBernoulliAgent):
    """Pull the arm with the highest posterior mean."""

    name = "greedy"

    def scores(self) -> torch.Tensor:
        return self.posterior_mean()


class EpsGreedyAgent(BetaBernoulliAgent):
    """Greedy, except with probability ``eps`` a uniformly random arm."""

    name = "eps-greedy"

    def __init__(self, family: TaskFamily, eps: float = 0.1):
        super().__init__(family)
        check_range("eps", eps, 0.0, 1.0)
        self.eps = float(eps)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        greedy = random_argmax(self.posterior_mean(), self.generator)
        gen, rows = self.generator, self.successes.shape[0]
        explore = torch.rand(rows, generator=gen, device=gen.device) < self.eps
        arm = torch.randint(0, self.num_arms, (rows,), generator=gen, device=gen.device)
        return torch.where(explore.to(self.device), arm.to(self.device), greedy)


class UCB1Agent(BetaBernoulliAgent):
    """UCB1 (Auer et al. 2002): ``mean + c * sqrt(2 ln t / n_i)``, where ``n_i`` and ``t`` include
    the Beta(1, 1) pseudo-counts (two per arm), so no arm needs an initial forced pull."""

    name = "ucb1"

    def __init__(self, family: TaskFamily, c: float = 0.2):
        super().__init__(family)
        check_range("c", c, 0.0)
        self.c = float(c)

    def scores(self) -> torch.Tensor:
        n = 2.0 + self.successes + self.failures
        t = n.sum(dim=1, keepdim=True)
        return self.posterior_mean() + self.c * torch.sqrt(2.0 * torch.log(t) / n)


class ThompsonAgent(BetaBernoulliAgent):
    """Thompson sampling: one draw per arm from its Beta posterior; pull the largest."""

    name = "thompson"

    def scores(self) -> torch.Tensor:
        return beta_sample(1.0 + self.successes, 1.0 + self.failures, self._rng())


class OptimisticThompsonAgent(BetaBernoulliAgent):
    """Optimistic Thompson sampling: ``samples`` posterior draws per arm, score = their maximum.

    RL² (Duan et al. 2016) lists OTS beside TS without a precise definition; Chapelle & Li (2011)
    call "optimistic" the variant that never scores an arm below its posterior mean
    (``max(draw, mean)``). We follow the reading in our reference notes, "several posterior draws,
    keep the highest", which also is never pessimistic on average and grows more optimistic with
    ``samples`` (``samples = 1`` is plain Thompson sampling).
    """

    name = "ots"

    def __init__(self, family: TaskFamily, samples: int = 10):
        super().__init__(family)
        if int(samples) != samples or samples < 1:
            raise ConfigError(f"samples must be an integer >= 1, got {samples}")
        self.samples = int(samples)

    def scores(self) -> torch.Tensor:
        a, b = 1.0 + self.successes, 1.0 + self.failures
        return beta_sample(a, b, self._rng(), samples=self.samples).max(dim=-1).values


class GittinsAgent(BetaBernoulliAgent):
    """Pull the arm with the largest Gittins index of its Beta posterior.

    ``gamma=None`` (default): the finite-horizon index with the trial's remaining pulls (the trial
    has ``horizon`` pulls; default: the family's ``n``). A ``gamma`` in (0, 1): the discounted
    index. Both come from :mod:`adaptrl.baselines.gittins` (computed once, then cached). Pulls past
    the horizon (a longer budget than declared) fall back to the posterior mean, which is the
    finite-horizon index with one pull left.
    """

    name = "gittins"

    def __init__(self, family: TaskFamily, gamma: float | None = None, horizon: int | None = None):
        super().__init__(family)
        if gamma is not None and not 0.0 < gamma < 1.0:
            raise ConfigError(f"gamma must be None (finite horizon) or in (0, 1), got {gamma}")
        if horizon is not None and (int(horizon) != horizon or horizon < 1):
            raise ConfigError(f"horizon must be None or an integer >= 1, got {horizon}")
        self.gamma = gamma
        self.horizon = int(horizon) if horizon is not None else int(family.episodes_per_trial)
        self._finite: GittinsTable | None = None
        self._discounted: torch.Tensor | None = None

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        super().begin_trial(env, tasks, generator)
        if self.gamma is None and (
            self._finite is None or self._finite.values.device != env.device
        ):
            self._finite = finite_horizon_gittins_table(self.horizon).to(env.device)
        if self.gamma is not None and (
            self._discounted is None or self._discounted.device != env.device
        ):
            self._discounted = discounted_gittins_table(self.gamma, self.horizon).to(env.device)

    def scores(self) -> torch.Tensor:
        remaining = self.horizon - self.pulls
        s, f = self.successes.long(), self.failures.long()
        if self.gamma is None:
            if remaining < 1:
                return self.posterior_mean()
            assert self._finite is not None
            return self._finite.lookup(s, f, torch.full_like(s, remaining))
        assert self._discounted is not None
        table = self._discounted
        inside = (s + f) <= self.horizon
        lim = self.horizon
        index = table[s.clamp_max(lim), f.clamp_max(lim)]
        index = torch.where(inside & ~torch.isnan(index), index, self.posterior_mean())
        return index


def is_bernoulli_bandit(family: TaskFamily) -> bool:
    return isinstance(family, BernoulliBandit)


def _register(cls: type[BetaBernoulliAgent], description: str, **params: object) -> None:
    register_agent(
        AgentSpec(
            name=cls.name,
            factory=cls,
            supports=is_bernoulli_bandit,
            description=description,
            params=dict(params),
        )
    )


_register(GreedyAgent, "highest Beta(1,1) posterior mean")
_register(EpsGreedyAgent, "greedy on the posterior mean, random arm with probability eps", eps=0.1)
_register(UCB1Agent, "UCB1 with Beta(1,1) pseudo-counts: mean + c sqrt(2 ln t / n_i)", c=0.2)
_register(ThompsonAgent, "Thompson sampling from the Beta posterior")
_register(OptimisticThompsonAgent, "optimistic Thompson sampling: max of several draws", samples=10)
_register(
    GittinsAgent,
    "Gittins index by calibration DP (finite horizon; discounted when gamma is set)",
    gamma=None,
    horizon=None,
)

__all__ = [
    "BetaBernoulliAgent",
    "EpsGreedyAgent",
    "GittinsAgent",
    "GreedyAgent",
    "OptimisticThompsonAgent",
    "ThompsonAgent",
    "UCB1Agent",
    "is_bernoulli_bandit",
]
