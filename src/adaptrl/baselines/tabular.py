"""Planning agents for tabular MDP families (RL² Table 2 columns), batched over tasks.

They run on any family that exposes ``tabular_model(tasks) -> (P [n, S, A, S], R [n, S, A])`` with
``Discrete`` observations (the state index) and actions, such as ``tabular-mdp-v0`` and
``gridworld-goal-v0``. Episodes have the family's fixed horizon ``H`` (``max_episode_steps``) unless
they terminate earlier; agents count the step within the episode themselves from the ``Step``
flags, and act with the finite-horizon optimal policy for that step.

* ``oracle``: plans on the true MDP (reads the task; the upper bound).
* ``psrl``: posterior sampling for RL (Osband et al. 2013): at the start of each episode, draw one
  MDP from the posterior per task and follow its optimal policy for the whole episode.
* ``greedy-mdp`` / ``eps-greedy-mdp``: plan on the posterior-mean MDP at the start of each
  episode and act greedily (with probability ``eps`` uniformly at random).

Posterior: reward means ``N(mu0, sigma0^2)`` with Gaussian reward noise of known std ``sigma``,
transitions ``Dirichlet(alpha)`` per (state, action); read from the family's config
(``reward_prior_mean``, ``reward_prior_std``, ``reward_noise_std``, ``dirichlet_alpha``), else
``N(0, 1)``, noise 1 and ``alpha = 1``. The agents' ``reward_prior_mean`` / ``reward_prior_std``
parameters override the reward prior (to study a misspecified prior).
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.baselines.generic import check_range, dirichlet_sample, numpy_rng, random_argmax
from adaptrl.baselines.registry import AgentSpec, register_agent
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch, TaskFamily


def plan_finite_horizon(P: torch.Tensor, R: torch.Tensor, horizon: int) -> torch.Tensor:
    """Backward induction: ``Q [B, horizon, S, A]`` with ``Q[:, t]`` the optimal action values
    with ``horizon - t`` steps to go (no discount), from ``P [B, S, A, S]`` and ``R [B, S, A]``."""
    B, S, A = R.shape
    Q = torch.empty(B, horizon, S, A, dtype=R.dtype, device=R.device)
    V = torch.zeros(B, S, dtype=R.dtype, device=R.device)
    for t in range(horizon - 1, -1, -1):
        Q[:, t] = R + torch.einsum("bsan,bn->bsa", P, V)
        V = Q[:, t].max(dim=-1).values
    return Q


def is_tabular(family: TaskFamily) -> bool:
    """Families the tabular planners run on: a ``tabular_model`` and discrete states and actions."""
    return (
        callable(getattr(family, "tabular_model", None))
        and isinstance(family.observation_space, gym.spaces.Discrete)
        and isinstance(family.action_space, gym.spaces.Discrete)
    )


class TabularAgent(TrialAgent):
    """Base class: tracks the step within the episode and acts greedily on ``self.Q``."""

    name: ClassVar[str] = "tabular"

    def __init__(self, family: TaskFamily):
        self.family = family
        self.num_states = int(family.observation_space.n)  # type: ignore[attr-defined]
        self.num_actions = int(family.action_space.n)  # type: ignore[attr-defined]
        self.horizon = int(family.max_episode_steps)
        #: Where episodes start (used by :meth:`TabularOracle.expected_episode_return`).
        self.initial_state = int(getattr(family, "initial_state", 0))

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        self.num_envs, self.device, self.generator = env.num_envs, env.device, generator
        self.rows = torch.arange(env.num_envs, device=env.device)
        self.t = torch.zeros(env.num_envs, dtype=torch.long, device=env.device)
        self.Q = torch.zeros(
            env.num_envs, self.horizon, self.num_states, self.num_actions,
            dtype=torch.float64, device=env.device,
        )  # fmt: skip

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        step = self.t.clamp_max(self.horizon - 1)
        return random_argmax(self.Q[self.rows, step, obs.long()], self.generator)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.greedy_action(obs)

    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        done = step.terminated | step.truncated
        self.t = torch.where(done, 0, self.t + 1)


class TabularOracle(TabularAgent):
    """Optimal finite-horizon policy of the true MDP (``uses_task``): the upper bound."""

    name = "oracle"
    uses_task = True

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        super().begin_trial(env, tasks, generator)
        P, R = self.family.tabular_model(tasks)  # type: ignore[attr-defined]
        self.Q = plan_finite_horizon(
            P.to(env.device, torch.float64), R.to(env.device, torch.float64), self.horizon
        )

    def expected_episode_return(self) -> torch.Tensor:
        """Expected return of one episode from the initial state under the optimal policy."""
        return self.Q[:, 0, self.initial_state].max(dim=-1).values


class PosteriorAgent(TabularAgent):
    """Base class: conjugate posteriors (Normal reward means with known noise, Dirichlet
    transitions) from visit counts; re-plans the rows whose episode starts (``t == 0``)."""

    def __init__(
        self,
        family: TaskFamily,
        reward_prior_mean: float | None = None,
        reward_prior_std: float | None = None,
    ):
        super().__init__(family)
        cfg = getattr(family, "config", None)
        # Default: the family's true prior (exact Bayes). Overrides model a misspecified prior;
        # RL² Table 2's n=10 PSRL figure fits a N(0, 1) reward prior (docs/results.md).
        if reward_prior_mean is None:
            reward_prior_mean = getattr(cfg, "reward_prior_mean", 0.0)
        if reward_prior_std is None:
            reward_prior_std = getattr(cfg, "reward_prior_std", 1.0)
        self.mu0 = float(reward_prior_mean)
        self.sigma0 = float(reward_prior_std)
        self.sigma = max(float(getattr(cfg, "reward_noise_std", 1.0)), 1e-6)
        self.alpha = float(getattr(cfg, "dirichlet_alpha", 1.0))

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        super().begin_trial(env, tasks, generator)
        S, A, dev = self.num_states, self.num_actions, env.device
        self.visits = torch.zeros(env.num_envs, S, A, dtype=torch.float64, device=dev)
        self.reward_sum = torch.zeros_like(self.visits)
        self.next_counts = torch.zeros(env.num_envs, S, A, S, dtype=torch.float64, device=dev)
        self.rng: np.random.Generator | None = None

    def _rng(self) -> np.random.Generator:
        if self.rng is None:
            self.rng = numpy_rng(self.generator)
        return self.rng

    def reward_posterior(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std of the reward means of ``rows`` (``[n, S, A]``)."""
        n, total = self.visits[rows], self.reward_sum[rows]
        var0, var = self.sigma0**2, self.sigma**2
        denom = var + n * var0
        mean = self.mu0 + var0 * (total - n * self.mu0) / denom
        return mean, torch.sqrt(var0 * var / denom)

    def transition_alpha(self, rows: torch.Tensor) -> torch.Tensor:
        return self.alpha + self.next_counts[rows]

    def model(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, R)`` to plan on for ``rows`` at the start of their episode."""
        raise NotImplementedError

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        rows = torch.nonzero(self.t == 0).squeeze(1)
        if rows.numel():
            P, R = self.model(rows)
            self.Q[rows] = plan_finite_horizon(P, R, self.horizon)
        return self.greedy_action(obs)

    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        s, a, s2 = obs.long(), action.long(), step.final_obs.long()
        self.visits[self.rows, s, a] += 1.0
        self.reward_sum[self.rows, s, a] += step.reward.double()
        self.next_counts[self.rows, s, a, s2] += 1.0
        super().observe(obs, action, step)


class PSRLAgent(PosteriorAgent):
    """Posterior sampling: one MDP drawn from the posterior per task and episode."""

    name = "psrl"

    def model(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.reward_posterior(rows)
        gen = self.generator
        z = torch.randn(mean.shape, generator=gen, device=gen.device, dtype=torch.float64)
        R = mean + std * z.to(mean.device)
        P = dirichlet_sample(self.transition_alpha(rows), self._rng())
        return P, R


class GreedyMDPAgent(PosteriorAgent):
    """Certainty equivalence: optimal policy of the posterior-mean MDP, re-planned per episode."""

    name = "greedy-mdp"

    def model(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.transition_alpha(rows)
        return alpha / alpha.sum(-1, keepdim=True), self.reward_posterior(rows)[0]


class EpsGreedyMDPAgent(GreedyMDPAgent):
    """Like ``greedy-mdp``, but each action is uniformly random with probability ``eps``."""

    name = "eps-greedy-mdp"

    def __init__(
        self,
        family: TaskFamily,
        eps: float = 0.1,
        reward_prior_mean: float | None = None,
        reward_prior_std: float | None = None,
    ):
        super().__init__(family, reward_prior_mean, reward_prior_std)
        check_range("eps", eps, 0.0, 1.0)
        self.eps = float(eps)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        greedy = super().act(obs)
        gen = self.generator
        explore = torch.rand(self.num_envs, generator=gen, device=gen.device) < self.eps
        other = torch.randint(
            0, self.num_actions, (self.num_envs,), generator=gen, device=gen.device
        )
        return torch.where(explore.to(self.device), other.to(self.device), greedy)


_PRIOR = {"reward_prior_mean": None, "reward_prior_std": None}  # None: the family's true prior
for _cls, _desc, _params in (
    (PSRLAgent, "posterior sampling (PSRL): one sampled MDP per episode", _PRIOR),
    (GreedyMDPAgent, "plans on the posterior-mean MDP each episode", _PRIOR),
    (
        EpsGreedyMDPAgent,
        "greedy-mdp with uniformly random actions w.p. eps",
        {"eps": 0.1, **_PRIOR},
    ),
):
    register_agent(
        AgentSpec(
            name=_cls.name, factory=_cls, supports=is_tabular, description=_desc, params=_params
        )
    )

__all__ = [
    "EpsGreedyMDPAgent",
    "GreedyMDPAgent",
    "PSRLAgent",
    "TabularAgent",
    "TabularOracle",
    "is_tabular",
    "plan_finite_horizon",
]
