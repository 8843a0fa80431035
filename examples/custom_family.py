"""Write your own task family, check it against the contract, and evaluate agents on it.

A Gaussian bandit: each task has k arm means ~ N(0, 1); a pull returns N(mean, 1). Run with
``.venv/bin/python examples/custom_family.py``.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.envs import BatchedEnv, FamilyConfig, TaskBatch, TaskFamily, check_family
from adaptrl.envs.base import positive
from adaptrl.eval import evaluate, save_report


@dataclasses.dataclass(frozen=True)
class GaussianBanditConfig(FamilyConfig):
    k: int = 5
    """Number of arms."""
    n: int = 20
    """Pulls per trial."""

    def validate(self) -> None:
        positive("k", self.k, 2)
        positive("n", self.n)


class GaussianBandit(TaskFamily):
    """k arms with means ~ N(0, 1); every pull is a one-step episode."""

    family_id = "bandit-gaussian-v0"  # ids carry a version: bump it when the distribution changes
    config_cls = GaussianBanditConfig

    def __init__(self, config: GaussianBanditConfig | None = None):
        super().__init__(config)
        self.observation_space = gym.spaces.Discrete(1)
        self.action_space = gym.spaces.Discrete(self.config.k)
        self.max_episode_steps = 1
        self.episodes_per_trial = self.config.n

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        means = torch.randn(n, self.config.k, generator=generator, device=generator.device)
        return TaskBatch({"means": means})

    def make_env(self, num_envs: int, device="cpu") -> GaussianBanditEnv:
        return GaussianBanditEnv(self, num_envs, device)


class GaussianBanditEnv(BatchedEnv):
    def _bind_tasks(self, tasks: TaskBatch) -> None:
        self._means = tasks.means
        self._zeros = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._done = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)

    def _reset_rows(self, mask: torch.Tensor) -> torch.Tensor:
        return self._zeros

    def _transition(self, action: torch.Tensor):
        mean = self._means.gather(1, action.long().unsqueeze(1)).squeeze(1)
        noise = torch.randn(self.num_envs, generator=self.generator, device=self.device)
        return self._zeros, mean + noise, self._done


class SampleMeanGreedy(TrialAgent):
    """Pull every arm once, then the arm with the best sample mean."""

    name = "sample-mean-greedy"

    def begin_trial(self, env, tasks, generator):
        k = env.action_space.n
        self.sums = torch.zeros(env.num_envs, k, device=env.device)
        self.counts = torch.zeros(env.num_envs, k, device=env.device)

    def act(self, obs):
        untried = self.counts == 0
        score = torch.where(untried, float("inf"), self.sums / self.counts.clamp_min(1))
        return score.argmax(dim=1)

    def observe(self, obs, action, step):
        self.sums.scatter_add_(1, action.unsqueeze(1), step.reward.unsqueeze(1))
        self.counts.scatter_add_(1, action.unsqueeze(1), torch.ones_like(step.reward).unsqueeze(1))


def main(out: str = "runs/custom-family", num_tasks: int = 1000) -> float:
    family = GaussianBandit()
    check_family(family)  # shapes, dtypes, determinism, split, time limits, Gymnasium view
    result = evaluate(
        family,
        ["random", ("sample-mean-greedy", lambda f: SampleMeanGreedy())],
        num_tasks=num_tasks,
    )
    save_report(result, out)
    for agent in result.agents:
        mean, ci = agent.trial_return()
        print(f"{agent.label}: {mean:.2f} ± {ci:.2f} over {num_tasks} held-out tasks")
    return (
        result.get("sample-mean-greedy").trial_return()[0] - result.get("random").trial_return()[0]
    )


if __name__ == "__main__":
    main()
