"""The oracle for ``nav2d-goal-v0``, and the single ``oracle`` registry entry.

The navigation oracle knows the goal (``uses_task``) and moves straight at it:
``action = clip(goal - position, -max_action, max_action)``, which reaches the goal in
``ceil(max|goal - start| / max_action)`` steps, the fewest possible under the per-coordinate bound.

``oracle`` is one agent id for every family that has one: its factory builds the tabular planner
(:class:`~adaptrl.baselines.tabular.TabularOracle`) or the navigation controller.
"""

from __future__ import annotations

import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.baselines.registry import AgentSpec, register_agent
from adaptrl.baselines.tabular import TabularOracle, is_tabular
from adaptrl.core.errors import ConfigError
from adaptrl.envs.base import BatchedEnv, TaskBatch, TaskFamily
from adaptrl.envs.nav2d import Nav2DGoal


class Nav2DOracle(TrialAgent):
    """Goal-seeking controller with the true goal: the upper bound of 2D navigation."""

    name = "oracle"
    uses_task = True

    def __init__(self, family: TaskFamily):
        self.max_action = float(family.config.max_action)  # type: ignore[attr-defined]

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        self.goal = tasks.goal.to(env.device, torch.float32)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return (self.goal - obs).clamp(-self.max_action, self.max_action)


def make_oracle(family: TaskFamily) -> TrialAgent:
    """The oracle of ``family``: tabular planner on the true MDP, or the navigation controller."""
    if isinstance(family, Nav2DGoal):
        return Nav2DOracle(family)
    if is_tabular(family):
        return TabularOracle(family)
    raise ConfigError(f"no oracle for {family.family_id}")


def has_oracle(family: TaskFamily) -> bool:
    return isinstance(family, Nav2DGoal) or is_tabular(family)


register_agent(
    AgentSpec(
        name="oracle",
        factory=make_oracle,
        supports=has_oracle,
        description="knows the task: optimal plan of the true tabular MDP, or goal-seeking in nav2d",
    )
)

__all__ = ["Nav2DOracle", "has_oracle", "make_oracle"]
