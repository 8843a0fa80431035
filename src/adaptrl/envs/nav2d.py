"""``nav2d-goal-v0``: a point mass in the plane must reach a hidden goal (MAML, Finn et al. 2017 §5.3).

Per task the goal is drawn from ``U[goal_low, goal_high]^2``. Each episode starts at the origin; the
action is a velocity clipped to ``[-max_action, max_action]`` per coordinate; the observation is the
position. The reward after each move is minus the distance to the goal (``reward="distance"``) or
minus its square (``reward="squared"``): the MAML paper's text says squared, but its reported
returns fit the plain distance; see docs/architecture.md. The episode terminates once the agent is
within ``goal_radius`` of the goal (``goal_region="disc"``; with ``"box"`` once both coordinates are,
as in the MAML authors' ``point_env_randgoal.py``) and is truncated at ``horizon`` steps.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import gymnasium as gym
import numpy as np
import torch

from adaptrl.core.config import Ge, Positive, Size
from adaptrl.core.errors import ConfigError
from adaptrl.envs.base import BatchedEnv, FamilyConfig, TaskBatch, TaskFamily
from adaptrl.envs.registry import register_family


@dataclasses.dataclass(frozen=True)
class Nav2DConfig(FamilyConfig):
    """Goal box, action bound, horizon and reward shape of 2D navigation."""

    goal_low: float = -0.5
    """Lower corner of the goal box (both coordinates)."""
    goal_high: float = 0.5
    """Upper corner of the goal box (both coordinates)."""
    max_action: Positive = 0.1
    """Velocities are clipped to [-max_action, max_action] per coordinate."""
    horizon: Size = 100
    """Steps per episode, H."""
    goal_radius: Annotated[float, Ge(0)] = 0.01
    """The episode terminates within this distance of the goal."""
    goal_region: Literal["disc", "box"] = "disc"
    """Where the episode terminates: the disc of radius ``goal_radius`` around the goal, or the
    square of half-side ``goal_radius`` (both |dx| and |dy| below it: the MAML authors' released
    environment, 27% more area)."""
    reward: Literal["distance", "squared"] = "distance"
    """Reward = -distance or -distance**2 to the goal after the move."""
    n: Size = 2
    """Episodes per trial."""

    def validate(self) -> None:
        if not self.goal_low < self.goal_high:
            raise ConfigError(f"goal_low ({self.goal_low}) must be < goal_high ({self.goal_high})")


@register_family
class Nav2DGoal(TaskFamily):
    """Point mass in the plane reaching a hidden goal ~ U[-0.5,0.5]^2 (MAML §5.3)."""

    family_id = "nav2d-goal-v0"
    config_cls = Nav2DConfig
    config: Nav2DConfig

    def __init__(self, config: Nav2DConfig | None = None):
        super().__init__(config)
        c = self.config
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-c.max_action, c.max_action, (2,), np.float32)
        self.max_episode_steps = c.horizon
        self.episodes_per_trial = c.n

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        c = self.config
        u = torch.rand(n, 2, generator=generator, device=generator.device)
        return TaskBatch({"goal": c.goal_low + (c.goal_high - c.goal_low) * u})

    def make_env(self, num_envs: int, device: str | torch.device = "cpu") -> Nav2DEnv:
        return Nav2DEnv(self, num_envs, device)


class Nav2DEnv(BatchedEnv):
    family: Nav2DGoal

    def _bind_tasks(self, tasks: TaskBatch) -> None:
        self._goal = tasks.goal
        self.position = torch.zeros(self.num_envs, 2, device=self.device)

    def _reset_rows(self, mask: torch.Tensor) -> torch.Tensor:
        self.position = self.position.masked_fill(mask.unsqueeze(1), 0.0)
        return self.position

    def _transition(self, action):
        c = self.family.config
        self.position = self.position + action.clamp(-c.max_action, c.max_action)
        offset = self.position - self._goal
        dist = torch.linalg.vector_norm(offset, dim=1)
        reward = -dist if c.reward == "distance" else -dist.square()
        if c.goal_region == "box":
            terminated = (offset.abs() < c.goal_radius).all(dim=1)
        else:
            terminated = dist < c.goal_radius
        return self.position, reward, terminated
