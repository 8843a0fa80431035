"""Single-task NumPy twins of two batched families, written as plain ``gymnasium.Env`` classes.

:class:`RefNav2DEnv` and :class:`RefTabularMDPEnv` implement ``nav2d-goal-v0`` and
``tabular-mdp-v0`` again, independently, one task at a time, the way a Gymnasium user would. Two
things rest on them: the tests check that the batched environments step exactly as these do (the
same trajectories from the same actions), and the speed benchmarks (``adaptrl bench
env-throughput``, ``maml-speed``) time ours against Gymnasium's ``SyncVectorEnv`` over them. Each is
given every advantage that keeps it "plain Gymnasium": no checker or order-enforcing wrappers,
internal time limits, and a precomputed CDF for tabular transitions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from adaptrl.core.errors import ConfigError
from adaptrl.envs.base import TaskBatch, TaskFamily
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.envs.tabular import TabularMDPConfig


class RefNav2DEnv(gym.Env[np.ndarray, np.ndarray]):
    """One ``nav2d-goal-v0`` task as a plain NumPy ``gymnasium.Env``.

    Starts at the origin; the action is clipped to ``[-max_action, max_action]``; the reward after
    the move is ``-distance`` (or ``-distance**2``); terminates within ``goal_radius``; truncates at
    ``horizon`` steps. Float32 throughout, like the batched env, so trajectories agree exactly.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        goal: np.ndarray,
        max_action: float = 0.1,
        horizon: int = 100,
        goal_radius: float = 0.01,
        reward: str = "distance",
    ):
        self.goal = np.asarray(goal, dtype=np.float32).reshape(2)
        self.max_action = np.float32(max_action)
        self.horizon = int(horizon)
        self.goal_radius = np.float32(goal_radius)
        self.squared = reward == "squared"
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-self.max_action, self.max_action, (2,), np.float32)
        self.position = np.zeros(2, dtype=np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = np.zeros(2, dtype=np.float32)
        self.t = 0
        return self.position.copy(), {}

    def step(self, action: np.ndarray):
        a = np.clip(np.asarray(action, dtype=np.float32), -self.max_action, self.max_action)
        self.position = self.position + a
        delta = self.position - self.goal
        dist = np.sqrt(delta[0] * delta[0] + delta[1] * delta[1])
        reward = -(dist * dist) if self.squared else -dist
        self.t += 1
        terminated = bool(dist < self.goal_radius)
        truncated = not terminated and self.t >= self.horizon
        return self.position.copy(), float(reward), terminated, truncated, {}


class RefTabularMDPEnv(gym.Env[int, int]):
    """One ``tabular-mdp-v0`` task as a plain NumPy ``gymnasium.Env``.

    Starts in state 0; reward ``~ N(R[s, a], reward_noise_std)``; next state ``~ P[s, a]`` (sampled
    by inverting the precomputed CDF, as the batched env does); truncates at ``horizon`` steps.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        reward_mean: np.ndarray,
        transition: np.ndarray,
        horizon: int = 10,
        reward_noise_std: float = 1.0,
    ):
        self.reward_mean = np.asarray(reward_mean, dtype=np.float64)
        num_states, num_actions = self.reward_mean.shape
        self.cdf = np.cumsum(np.asarray(transition, dtype=np.float64), axis=-1)
        self.cdf[..., -1] = 1.0
        self.horizon = int(horizon)
        self.noise_std = float(reward_noise_std)
        self.last_state = num_states - 1
        self.observation_space = gym.spaces.Discrete(num_states)
        self.action_space = gym.spaces.Discrete(num_actions)
        self.state = 0
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.state = 0
        self.t = 0
        return self.state, {}

    def step(self, action: int):
        s, a = self.state, int(action)
        reward = self.reward_mean[s, a] + self.noise_std * self.np_random.standard_normal()
        u = self.np_random.random()
        self.state = min(int(np.searchsorted(self.cdf[s, a], u, side="left")), self.last_state)
        self.t += 1
        return self.state, float(reward), False, self.t >= self.horizon, {}


def reference_env_fns(family: TaskFamily, tasks: TaskBatch) -> list[Callable[[], gym.Env]]:
    """One constructor per task: the plain-Gymnasium twin of ``family`` bound to ``tasks[i]``."""
    c = family.config
    if isinstance(c, Nav2DConfig):
        goals = tasks.goal.cpu().numpy()
        return [
            partial(RefNav2DEnv, g, c.max_action, c.horizon, c.goal_radius, c.reward) for g in goals
        ]
    if isinstance(c, TabularMDPConfig):
        means = tasks.reward_mean.cpu().numpy()
        trans = tasks.transition.cpu().numpy()
        return [
            partial(RefTabularMDPEnv, r, p, c.horizon, c.reward_noise_std)
            for r, p in zip(means, trans, strict=True)
        ]
    raise ConfigError(f"no reference Gymnasium env for {family.family_id}")


def reference_vector_env(family: TaskFamily, tasks: TaskBatch) -> SyncVectorEnv:
    """Gymnasium's ``SyncVectorEnv`` over the reference envs, same-step auto-reset like ours."""
    return SyncVectorEnv(
        reference_env_fns(family, tasks), copy=False, autoreset_mode=AutoresetMode.SAME_STEP
    )
