"""``bandit-bernoulli-v0``: k-armed Bernoulli bandits with arm probabilities ~ U[0, 1] per task.

As in RL² (Duan et al. 2016, §3.1) a trial is ``n`` pulls; each pull is a one-step episode, so a
trial is ``n`` episodes and the trial return is the total reward of the ``n`` pulls. The
observation carries no information (``Discrete(1)``, always 0): everything is in the rewards.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import gymnasium as gym
import torch

from adaptrl.core.config import Ge, Size
from adaptrl.envs.base import BatchedEnv, FamilyConfig, TaskBatch, TaskFamily
from adaptrl.envs.registry import register_family


@dataclasses.dataclass(frozen=True)
class BanditConfig(FamilyConfig):
    """k arms; a trial of n pulls."""

    k: Annotated[int, Ge(2)] = 5
    """Number of arms (>= 2)."""
    n: Size = 10
    """Pulls per trial (each pull is a one-step episode)."""


@register_family
class BernoulliBandit(TaskFamily):
    """k-armed Bernoulli bandits, arm probabilities ~ U[0,1]; a trial is n pulls (RL² §3.1)."""

    family_id = "bandit-bernoulli-v0"
    config_cls = BanditConfig
    config: BanditConfig

    def __init__(self, config: BanditConfig | None = None):
        super().__init__(config)
        self.num_arms = self.config.k
        self.observation_space = gym.spaces.Discrete(1)
        self.action_space = gym.spaces.Discrete(self.num_arms)
        self.max_episode_steps = 1
        self.episodes_per_trial = self.config.n

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        probs = torch.rand(n, self.num_arms, generator=generator, device=generator.device)
        return TaskBatch({"probs": probs})

    def make_env(self, num_envs: int, device: str | torch.device = "cpu") -> BanditEnv:
        return BanditEnv(self, num_envs, device)


class BanditEnv(BatchedEnv):
    def _bind_tasks(self, tasks: TaskBatch) -> None:
        self._probs = tasks.probs
        self._zeros = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)

    def _reset_rows(self, mask: torch.Tensor) -> torch.Tensor:
        return self._zeros

    def _transition(self, action):
        p = self._probs.gather(1, action.long().unsqueeze(1)).squeeze(1)
        u = self._rand()
        reward = (u < p).float()
        terminated = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        return self._zeros, reward, terminated
