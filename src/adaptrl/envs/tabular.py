"""``tabular-mdp-v0``: random tabular MDPs as in RL² (Duan et al. 2016, §3.2).

Per task: reward means ``R[s, a] ~ N(1, 1)``, rewards ``~ N(R[s, a], 1)``, transitions
``P[s, a] ~ Dirichlet(1, ..., 1)``. Episodes last ``horizon`` steps (a time limit, reported as
``truncated``) and start in state 0; a trial is ``n`` episodes. Observations are the state index.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import gymnasium as gym
import torch

from adaptrl.core.config import Ge, Positive, Size
from adaptrl.envs.base import BatchedEnv, FamilyConfig, TaskBatch, TaskFamily
from adaptrl.envs.registry import register_family


@dataclasses.dataclass(frozen=True)
class TabularMDPConfig(FamilyConfig):
    """Sizes and priors of the random MDPs."""

    num_states: Size = 10
    """|S| (>= 1)."""
    num_actions: Annotated[int, Ge(2)] = 5
    """|A| (>= 2)."""
    horizon: Size = 10
    """Steps per episode, T."""
    n: Size = 10
    """Episodes per trial."""
    reward_prior_mean: float = 1.0
    """Mean of the Normal prior over reward means."""
    reward_prior_std: Annotated[float, Ge(0)] = 1.0
    """Std of the Normal prior over reward means."""
    reward_noise_std: Annotated[float, Ge(0)] = 1.0
    """Std of the Gaussian reward noise around its mean."""
    dirichlet_alpha: Positive = 1.0
    """Concentration of the symmetric Dirichlet prior over next states."""


def sample_dirichlet(alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dirichlet samples along the last dim, reproducible from ``generator``.

    ``torch.distributions`` cannot take a generator. Normalised Gamma(alpha) draws are Dirichlet;
    for the flat Dirichlet(1) the Gammas are Exponential(1), drawn exactly as ``-log(1 - U)`` from
    the generator. Other concentrations use NumPy's Gamma sampler seeded from ``generator``.
    """
    if bool((alpha == 1).all()):
        u = torch.rand(alpha.shape, generator=generator, device=alpha.device, dtype=torch.float64)
        e = -torch.log1p(-u)
    else:
        import numpy as np

        seed = int(torch.randint(0, 2**63 - 1, (), generator=generator, device=generator.device))
        rng = np.random.default_rng(seed)
        e = torch.from_numpy(rng.standard_gamma(alpha.double().cpu().numpy())).to(alpha.device)
    return (e / e.sum(-1, keepdim=True)).float()


@register_family
class TabularMDP(TaskFamily):
    """Random tabular MDPs: N(1,1) reward means, Dirichlet(1) transitions, T=10 (RL² §3.2)."""

    family_id = "tabular-mdp-v0"
    config_cls = TabularMDPConfig
    config: TabularMDPConfig
    initial_state = 0
    """Every episode starts in state 0 (read by tabular planners)."""

    def __init__(self, config: TabularMDPConfig | None = None):
        super().__init__(config)
        c = self.config
        self.num_states, self.num_actions = c.num_states, c.num_actions
        self.observation_space = gym.spaces.Discrete(c.num_states)
        self.action_space = gym.spaces.Discrete(c.num_actions)
        self.max_episode_steps = c.horizon
        self.episodes_per_trial = c.n

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        c, dev = self.config, generator.device
        shape = (n, c.num_states, c.num_actions)
        noise = torch.randn(shape, generator=generator, device=dev)
        reward_mean = c.reward_prior_mean + c.reward_prior_std * noise
        alpha = torch.full((*shape, c.num_states), c.dirichlet_alpha, device=dev)
        transition = sample_dirichlet(alpha, generator)
        return TaskBatch({"reward_mean": reward_mean, "transition": transition})

    def tabular_model(self, tasks: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P [n, S, A, S], R [n, S, A])``: true transition probabilities and mean rewards."""
        return tasks.transition, tasks.reward_mean

    def make_env(self, num_envs: int, device: str | torch.device = "cpu") -> TabularEnv:
        return TabularEnv(self, num_envs, device)


class TabularEnv(BatchedEnv):
    family: TabularMDP

    def _bind_tasks(self, tasks: TaskBatch) -> None:
        S, A = self.family.num_states, self.family.num_actions
        cdf = tasks.transition.cumsum(-1)
        cdf[..., -1] = 1.0  # guard against round-off: the last bucket always catches u < 1
        # Flat [B*S*A, ...] tables: one index per row replaces a three-tensor advanced index.
        self._cdf = cdf.reshape(-1, S)
        self._reward_mean = tasks.reward_mean.reshape(-1)
        self._row_base = torch.arange(self.num_envs, device=self.device) * (S * A)
        self._never = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self.state = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)

    def _reset_rows(self, mask: torch.Tensor) -> torch.Tensor:
        self.state = self.state.masked_fill(mask, 0)
        return self.state

    def _transition(self, action):
        idx = self._row_base + self.state * self.family.num_actions + action.long()
        noise = self._randn()
        reward = torch.add(
            self._reward_mean.take(idx), noise, alpha=self.family.config.reward_noise_std
        )
        u = self._rand(1)
        # first next state whose cumulative probability reaches u (the last one is exactly 1)
        self.state = torch.searchsorted(self._cdf.index_select(0, idx), u).squeeze(1)
        return self.state, reward, self._never
