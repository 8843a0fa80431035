"""The interface of agents that act through a whole trial (several episodes of one task).

Classic baselines implement it, and so will meta-learners' adapted policies (RL²'s recurrent policy is
exactly such an agent). Everything is batched: row ``i`` of every tensor is task ``i``.

The evaluation loop is::

    agent.begin_trial(env, tasks, generator)   # fresh beliefs for a new batch of tasks
    obs = env.reset()
    for t in range(budget):
        action = agent.act(obs)
        step = env.step(action)
        agent.observe(obs, action, step)
        obs = step.obs
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

import torch

from adaptrl.envs.base import BatchedEnv, Step, TaskBatch

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class ConfigVariant(Generic[C]):
    """A baseline built from a learner itself: a named variant of its configuration (MAML-RL's
    scratch / pretrained / oracle, MPO's scratch / pretrained), and whether it is meta-trained."""

    name: str
    description: str
    derive: Callable[[C], C]
    trained: bool = True


class TrialAgent(ABC):
    """Acts in a batch of trials and keeps what it learns across episodes of the same task."""

    name: ClassVar[str]
    #: True only for agents allowed to read the true task parameters (oracles, upper bounds).
    uses_task: ClassVar[bool] = False

    @abstractmethod
    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        """Forget everything and start a trial on ``tasks`` (one per row of ``env``).

        ``tasks`` is passed for oracles only: agents with ``uses_task = False`` must not read it.
        ``generator`` is the agent's own source of randomness for this trial.
        """

    @abstractmethod
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions for the current observations, ``[num_envs]`` (discrete) or ``[num_envs, d]``."""

    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        """Learn from one transition of every row (``step.final_obs`` is the next state)."""
