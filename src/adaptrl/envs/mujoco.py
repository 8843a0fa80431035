"""MuJoCo locomotion task families of MAML-RL (Finn et al. 2017 §5.3), optional extra ``mujoco``.

* ``halfcheetah-vel-v0``: a goal velocity ``v* ~ U[low, high]`` (default U[0, 2]) per task;
  reward ``-|v - v*| - w * |a|^2``.
* ``halfcheetah-dir-v0``: a direction ``d in {-1, +1}`` per task (run forward or backward);
  reward ``d * v - w * |a|^2``.
* ``ant-vel-v0`` / ``ant-dir-v0``: the same tasks on the Ant (goal velocity ~ U[0, 3]), plus
  Gymnasium's healthy reward and contact cost; the Ant's episode terminates when it is unhealthy
  (torso height outside [0.2, 1.0]), as in MAML.

``v`` is Gymnasium's ``info["x_velocity"]`` of ``HalfCheetah-v5`` / ``Ant-v5`` (forward
displacement of the root / torso over one control step, ``dt = 0.05``) and ``a`` the action as
given (MuJoCo clamps the control; the cost sees what the policy asked for, as in Gymnasium and
pytorch-maml-rl; ``clip_ctrl_cost=True`` charges the clipped action instead, as the MAML paper's
rllab envs do). The control-cost weight ``w`` defaults to 0.05 for HalfCheetah and 0.005 for the
Ant, the ``0.5 * 1e-1`` and ``0.5 * 1e-2`` of the MAML paper's rllab environments and of
pytorch-maml-rl (Gymnasium's own defaults are 0.1 and 0.5). Gymnasium's reward is discarded and
recomputed from the task. (rllab measured the torso's centre-of-mass velocity; Gymnasium's
``x_velocity`` is the root's displacement per step, as in pytorch-maml-rl.)

Episodes last ``horizon = 200`` steps (a time limit, reported as ``truncated``); HalfCheetah never
terminates. Observations are Gymnasium's (17 numbers for HalfCheetah, 105 for the Ant: positions
without x (and y), velocities, Ant contact forces) as float32; ``oracle=True`` appends the task
parameter (goal velocity or direction) as one more number, for the oracle baseline. Episodes start
from Gymnasium's noisy initial state, seeded per row (``deterministic_start = False``).

The train/test split: goal velocities are continuous, so the default split (independent
domain-separated generator streams) never repeats a task. Directions are a task space of two: both
necessarily appear in both splits (``disjoint_split = False``, which :func:`check_family` honours),
so meta-test on ``*-dir`` measures how fast the learner identifies and runs in a direction from its
own rollouts, not generalisation to unseen tasks (as in the MAML paper).

Batched stepping: by default (``backend="loop"``) one Python loop steps N unwrapped Gymnasium envs
and computes the task rewards for the whole batch with NumPy (:class:`MujocoLoopEnv`);
``backend="sync"`` runs the same envs through the foundation's ``SyncVectorEnv`` adapter
(:class:`~adaptrl.envs.gym_adapter.GymVectorEnv`) with :class:`TaskRewardWrapper`. Both give
identical results; the loop skips the vector env's and wrappers' per-step bookkeeping, which makes
it faster at MAML's batch size on this machine (docs/results.md, benchmarks/mujoco_throughput.py).
Declaring these families needs no MuJoCo (they appear in ``adaptrl list``); building environments
without it raises :class:`~adaptrl.core.errors.MissingExtraError` naming
``pip install 'adaptrl[mujoco]'``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import traceback
import warnings
import weakref
from typing import Annotated, Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch

from adaptrl.core.config import Ge, Size
from adaptrl.core.errors import ConfigError, require
from adaptrl.core.seeding import derive_seed
from adaptrl.envs.base import BatchedEnv, FamilyConfig, Step, TaskBatch, TaskFamily, positive
from adaptrl.envs.gym_adapter import GymVectorEnv
from adaptrl.envs.registry import register_family

Kind = Literal["vel", "dir"]
Backend = Literal["loop", "sync"]


def task_term(kind: Kind, task_value: Any, x_velocity: Any) -> np.ndarray:
    """The task's reward term per row (float64): ``-|v - v*|`` for ``vel``, ``d * v`` for ``dir``."""
    v = np.asarray(x_velocity, dtype=np.float64)
    goal = np.asarray(task_value, dtype=np.float64)
    return -np.abs(v - goal) if kind == "vel" else goal * v


def ctrl_cost(action: Any, weight: float, clip: bool = False) -> np.ndarray:
    """``weight * |a|^2`` over the last axis (float64), on the action as given or, with ``clip``,
    clipped to the action bounds [-1, 1]."""
    a = np.asarray(action, dtype=np.float64)
    return weight * np.square(np.clip(a, -1.0, 1.0) if clip else a).sum(-1)


# --- configs ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MujocoTaskConfig(FamilyConfig):
    """Options shared by the MuJoCo task families."""

    horizon: Size = 200
    """Steps per episode, H (a time limit, reported as truncated)."""
    ctrl_cost_weight: Annotated[float, Ge(0)] = 0.05
    """w in the control cost w * |a|^2 (MAML / rllab / pytorch-maml-rl: 0.5 * 1e-1)."""
    clip_ctrl_cost: bool = False
    """Charge the control cost on the action clipped to [-1, 1] (the MAML paper's rllab envs)
    instead of the action as given (Gymnasium, pytorch-maml-rl)."""
    oracle: bool = False
    """Append the task parameter to the observation (the oracle baseline)."""
    n: Size = 2
    """Episodes per trial (for memory-based learners)."""
    backend: Backend = "loop"
    """How rows are stepped: 'loop' (thin loops over the envs, less overhead per step) or 'sync'
    (SyncVectorEnv)."""
    workers: Size = 1
    """Processes sharing the rows of the 'loop' backend (forked workers when > 1; use the cores)."""

    def validate(self) -> None:
        if self.backend == "sync" and self.workers != 1:
            raise ConfigError("workers > 1 needs backend='loop' (SyncVectorEnv steps in-process)")


def _check_range(low: float, high: float) -> None:
    if not low < high:
        raise ConfigError(f"the goal velocity range needs low < high, got low={low}, high={high}")


@dataclasses.dataclass(frozen=True)
class HalfCheetahVelConfig(MujocoTaskConfig):
    """HalfCheetah with a goal velocity ~ U[low, high] per task."""

    low: float = 0.0
    """Smallest goal velocity."""
    high: float = 2.0
    """Largest goal velocity."""

    def validate(self) -> None:
        super().validate()
        _check_range(self.low, self.high)


@dataclasses.dataclass(frozen=True)
class HalfCheetahDirConfig(MujocoTaskConfig):
    """HalfCheetah running forward (+1) or backward (-1) per task."""


@dataclasses.dataclass(frozen=True)
class AntTaskConfig(MujocoTaskConfig):
    """Options of the Ant families (Gymnasium's Ant-v5 with MAML's reward weights)."""

    ctrl_cost_weight: Annotated[float, Ge(0)] = 0.005
    """w in the control cost w * |a|^2 (MAML / rllab / pytorch-maml-rl: 0.5 * 1e-2)."""
    contact_cost_weight: Annotated[float, Ge(0)] = 5e-4
    """Weight of the contact cost on clipped external forces (MAML: 0.5 * 1e-3)."""
    healthy_reward: Annotated[float, Ge(0)] = 0.05
    """Reward per step while the torso height is in [0.2, 1.0] (MAML's survive reward: 0.05)."""


@dataclasses.dataclass(frozen=True)
class AntVelConfig(AntTaskConfig):
    """Ant with a goal velocity ~ U[low, high] per task."""

    healthy_reward: Annotated[float, Ge(0)] = 1.05
    """Reward per healthy step: MAML's survive reward 0.05 plus the constant 1.0 its goal-velocity
    Ant adds, so that falling (which ends the episode) does not pay better than tracking."""
    low: float = 0.0
    """Smallest goal velocity."""
    high: float = 3.0
    """Largest goal velocity."""

    def validate(self) -> None:
        super().validate()
        _check_range(self.low, self.high)


@dataclasses.dataclass(frozen=True)
class AntDirConfig(AntTaskConfig):
    """Ant running forward (+1) or backward (-1) per task."""


# --- families -----------------------------------------------------------------------------------


def load_robot(robot: str, family_id: str) -> type[gym.Env]:
    """The Gymnasium MuJoCo env class ``HalfCheetah-v5`` / ``Ant-v5``, imported only when needed."""
    require("mujoco", "mujoco", f"{family_id} (Gymnasium's {robot}-v5)")
    if robot == "HalfCheetah":
        from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

        return HalfCheetahEnv
    from gymnasium.envs.mujoco.ant_v5 import AntEnv

    return AntEnv


def build_robot(robot: str, family_id: str, **kwargs: Any) -> gym.Env:
    """An unwrapped ``HalfCheetah-v5`` / ``Ant-v5`` env with Gymnasium's options ``kwargs``."""
    cls = load_robot(robot, family_id)
    return _build_quietly(lambda: cls(**kwargs))


# MuJoCo >= 3.3 warns on stderr, once per model compiled, that Gymnasium's half_cheetah.xml uses the
# deprecated ``settotalmass`` (and appends it to MUJOCO_LOG.TXT in the working directory); with
# hundreds of envs that drowns the output. Only this warning is silenced.
_KNOWN_COMPILER_WARNING = "'settotalmass' is deprecated"


def _build_quietly(build: Any) -> gym.Env:
    """``build()`` with MuJoCo's known asset deprecation silenced; other warnings go to Python."""
    mujoco = require("mujoco", "mujoco", "MuJoCo task families")
    previous = mujoco.get_mju_user_warning()

    def forward(message: str) -> None:
        if _KNOWN_COMPILER_WARNING not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(forward)
    try:
        return build()
    finally:
        mujoco.set_mju_user_warning(previous)


class MujocoTaskFamily(TaskFamily):
    """Base of the MuJoCo families: a Gymnasium robot whose reward is set by a task parameter."""

    robot: ClassVar[str]
    robot_obs_dim: ClassVar[int]
    robot_act_dim: ClassVar[int]
    kind: ClassVar[Kind]
    task_key: ClassVar[str]
    deterministic_start: ClassVar[bool] = False
    config: MujocoTaskConfig

    def __init__(self, config: MujocoTaskConfig | None = None):
        super().__init__(config)
        c = self.config
        dim = self.robot_obs_dim + int(c.oracle)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.robot_act_dim,), np.float32)
        self.max_episode_steps = c.horizon
        self.episodes_per_trial = c.n

    def robot_kwargs(self) -> dict[str, Any]:
        """Options of the Gymnasium robot (the Ant's reward weights; none for HalfCheetah)."""
        return {}

    def make_robot(self) -> gym.Env:
        """One unwrapped Gymnasium robot env (needs MuJoCo); its own reward is ignored."""
        return build_robot(self.robot, self.family_id, **self.robot_kwargs())

    def make_sub_env(self) -> gym.Env:
        """One Gymnasium env with ``set_task``: the robot, task reward, float32 obs, time limit."""
        return gym.wrappers.TimeLimit(
            TaskRewardWrapper(self.make_robot(), self), self.max_episode_steps
        )

    def task_values(self, tasks: TaskBatch) -> torch.Tensor:
        """The one task parameter per task (goal velocity or direction), shape ``[n]``."""
        return tasks.params[self.task_key]

    def make_env(self, num_envs: int, device: str | torch.device = "cpu") -> BatchedEnv:
        load_robot(self.robot, self.family_id)  # a clear error before anything is built
        if self.config.backend == "sync":
            return GymVectorEnv(self, num_envs, device)  # type: ignore[arg-type]
        return MujocoLoopEnv(self, num_envs, device, workers=self.config.workers)


class _VelocityFamily(MujocoTaskFamily):
    kind = "vel"
    task_key = "goal_velocity"

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        c = self.config
        u = torch.rand(n, generator=generator, device=generator.device)
        return TaskBatch({"goal_velocity": c.low + (c.high - c.low) * u})  # type: ignore[attr-defined]


class _DirectionFamily(MujocoTaskFamily):
    """Two tasks, +1 and -1, each with probability 1/2. The default split of
    :meth:`TaskFamily.tasks` draws both splits from independent streams, so both directions appear
    in both splits (``disjoint_split = False``; see the module docstring)."""

    kind = "dir"
    task_key = "direction"
    disjoint_split: ClassVar[bool] = False

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        coin = torch.randint(2, (n,), generator=generator, device=generator.device)
        return TaskBatch({"direction": (2 * coin - 1).float()})


class _AntMixin:
    robot = "Ant"
    robot_obs_dim = 105
    robot_act_dim = 8
    config: AntTaskConfig

    def robot_kwargs(self) -> dict[str, Any]:
        c = self.config
        return {
            "contact_cost_weight": c.contact_cost_weight,
            "healthy_reward": c.healthy_reward,
            "ctrl_cost_weight": 0.0,  # recomputed here from the action
        }


@register_family
class HalfCheetahVel(_VelocityFamily):
    """HalfCheetah-v5 tracking a goal velocity ~ U[0,2] (MAML §5.3); needs the mujoco extra."""

    family_id = "halfcheetah-vel-v0"
    config_cls = HalfCheetahVelConfig
    robot = "HalfCheetah"
    robot_obs_dim = 17
    robot_act_dim = 6


@register_family
class HalfCheetahDir(_DirectionFamily):
    """HalfCheetah-v5 running forward or backward (MAML §5.3); needs the mujoco extra."""

    family_id = "halfcheetah-dir-v0"
    config_cls = HalfCheetahDirConfig
    robot = "HalfCheetah"
    robot_obs_dim = 17
    robot_act_dim = 6


@register_family
class AntVel(_AntMixin, _VelocityFamily):  # type: ignore[misc]
    """Ant-v5 tracking a goal velocity ~ U[0,3] (MAML §5.3); needs the mujoco extra."""

    family_id = "ant-vel-v0"
    config_cls = AntVelConfig


@register_family
class AntDir(_AntMixin, _DirectionFamily):  # type: ignore[misc]
    """Ant-v5 running forward or backward (MAML §5.3); needs the mujoco extra."""

    family_id = "ant-dir-v0"
    config_cls = AntDirConfig


def _extra_reward(info: dict[str, Any]) -> float:
    """Gymnasium's Ant healthy reward and contact cost (absent, so zero, for HalfCheetah)."""
    return float(info.get("reward_survive", 0.0)) + float(info.get("reward_contact", 0.0))


# --- one task as a Gymnasium env ----------------------------------------------------------------


class TaskRewardWrapper(gym.Wrapper):
    """A Gymnasium robot env bound to one task of ``family`` by :meth:`set_task`.

    The reward is recomputed from ``info["x_velocity"]`` and the action by :func:`task_term` and
    :func:`ctrl_cost`
    (plus the Ant's healthy reward and contact cost from ``info``); observations are float32, with
    the task parameter appended when the family's config has ``oracle=True``. ``info`` keeps
    Gymnasium's entries and adds ``reward_task`` and ``reward_ctrl`` of this reward.
    """

    def __init__(self, env: gym.Env, family: MujocoTaskFamily):
        super().__init__(env)
        self.family = family
        self.observation_space = family.observation_space
        self.action_space = family.action_space
        self.task_value = 0.0 if family.kind == "vel" else 1.0

    def set_task(self, task: TaskBatch) -> None:
        """Bind the env to ``task`` (a batch of one) from the next step on."""
        if len(task) != 1:
            raise ConfigError(f"TaskRewardWrapper runs one task; got a batch of {len(task)}")
        self.task_value = float(self.family.task_values(task)[0])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._obs(obs), info

    def step(self, action: Any):
        obs, _, terminated, truncated, info = self.env.step(action)
        task = float(task_term(self.family.kind, self.task_value, info["x_velocity"]))
        c = self.family.config
        ctrl = float(ctrl_cost(action, c.ctrl_cost_weight, c.clip_ctrl_cost))
        reward = task - ctrl + _extra_reward(info)
        info = {**info, "reward_task": task, "reward_ctrl": -ctrl}
        return self._obs(obs), reward, terminated, truncated, info

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if self.family.config.oracle:
            obs = np.append(obs, np.float32(self.task_value))
        return obs


# --- the batched environment ----------------------------------------------------------------------


class RowStepper:
    """The rows' physics in NumPy: ``n`` unwrapped robot envs, their task values, time limits and
    same-step auto-reset. :class:`MujocoLoopEnv` runs one in-process or one per worker process."""

    def __init__(self, family: MujocoTaskFamily, n: int):
        self.family = family
        self.envs = [family.make_robot() for _ in range(n)]
        self.dim = family.robot_obs_dim
        self.oracle = family.config.oracle
        self.horizon = family.max_episode_steps
        self.final = np.zeros((n, self.dim + int(self.oracle)), np.float32)
        self.velocity = np.zeros(n, np.float64)
        self.extra = np.zeros(n, np.float64)
        self.terminated = np.zeros(n, bool)
        self.elapsed = np.zeros(n, np.int64)
        self.task_values = np.zeros(n, np.float64)

    def set_task_values(self, values: np.ndarray) -> None:
        self.task_values = np.asarray(values, np.float64).copy()

    def reset(self, seeds: list[int | None]) -> np.ndarray:
        obs = np.empty_like(self.final)
        for i, (env, seed) in enumerate(zip(self.envs, seeds, strict=True)):
            obs[i, : self.dim] = env.reset(seed=seed)[0]
        if self.oracle:
            obs[:, -1] = self.task_values
        self.elapsed[:] = 0
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(obs, final_obs, reward, terminated, truncated, elapsed)`` of one step of every row."""
        final, velocity, extra, terminated = self.final, self.velocity, self.extra, self.terminated
        for i, env in enumerate(self.envs):
            obs, _, term, _, info = env.step(actions[i])
            final[i, : self.dim] = obs
            velocity[i] = info["x_velocity"]
            extra[i] = _extra_reward(info)
            terminated[i] = term
        c = self.family.config
        reward = task_term(self.family.kind, self.task_values, velocity)
        reward += extra - ctrl_cost(actions, c.ctrl_cost_weight, c.clip_ctrl_cost)
        if self.oracle:
            final[:, -1] = self.task_values
        self.elapsed += 1
        done = terminated | (self.elapsed >= self.horizon)
        obs = final.copy()
        for i in np.flatnonzero(done):
            obs[i, : self.dim] = self.envs[i].reset()[0]
        self.elapsed[done] = 0
        return obs, final.copy(), reward, terminated.copy(), done & ~terminated, self.elapsed.copy()

    def close(self, _: Any = None) -> None:
        for env in self.envs:
            env.close()


class _LocalRows:
    """A :class:`RowStepper` in this process, behind the send/receive protocol of the workers."""

    def __init__(self, family: MujocoTaskFamily, n: int):
        self.stepper = RowStepper(family, n)
        self._result: Any = None

    def send(self, command: str, argument: Any = None) -> None:
        self._result = getattr(self.stepper, command)(argument)

    def receive(self) -> Any:
        return self._result


def _serve_rows(conn: Any, family: MujocoTaskFamily, n: int) -> None:
    """Worker process: run commands on a :class:`RowStepper` until ``close``."""
    try:
        stepper = RowStepper(family, n)
        conn.send(("ok", None))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        command, argument = conn.recv()
        try:
            result = getattr(stepper, command)(argument)
            conn.send(("ok", result))
        except Exception:
            conn.send(("error", traceback.format_exc()))
        if command == "close":
            conn.close()
            return


class _RemoteRows:
    """A :class:`RowStepper` in a forked worker process, driven through a pipe."""

    def __init__(self, family: MujocoTaskFamily, n: int):
        ctx = multiprocessing.get_context("fork")  # inherits the family; no re-import
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve_rows, args=(child, family, n), daemon=True)
        self.process.start()
        child.close()
        self.receive()

    def send(self, command: str, argument: Any = None) -> None:
        self.conn.send((command, argument))

    def receive(self) -> Any:
        status, result = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"a MuJoCo worker process failed:\n{result}")
        return result

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.send("close")
                self.receive()
            except (OSError, EOFError, RuntimeError):
                pass
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.terminate()
        self.conn.close()


class MujocoLoopEnv(BatchedEnv):
    """Rows stepped by thin loops over unwrapped Gymnasium robots; rewards computed per batch.

    With ``workers = 1`` one loop in this process steps every row; with ``workers = W > 1`` the
    rows are split into W contiguous blocks, each stepped by a forked worker process (all blocks
    step at once, so W cores share the physics). Same contract and seeding as
    :class:`~adaptrl.envs.gym_adapter.GymVectorEnv` (row ``i`` is reset with
    ``derive_seed(seed, "gym-vector-row", i)``, an unseeded first reset uses seed 0, same-step
    auto-reset continues each row's own random stream), so every backend and worker count produces
    identical trajectories; this one skips the vector env's and wrappers' per-step bookkeeping.
    """

    family: MujocoTaskFamily

    def __init__(
        self,
        family: MujocoTaskFamily,
        num_envs: int,
        device: str | torch.device = "cpu",
        workers: int = 1,
    ):
        super().__init__(family, num_envs, device)
        positive("workers", workers)
        blocks = np.array_split(np.arange(self.num_envs), min(workers, self.num_envs))
        self._bounds = [(int(b[0]), int(b[-1]) + 1) for b in blocks]
        self._parts: list[Any] = []
        # Stops the workers when the env is closed or garbage-collected (or at interpreter exit).
        self._finalizer = weakref.finalize(self, _close_parts, self._parts)
        try:
            for lo, hi in self._bounds:
                part = _LocalRows if len(blocks) == 1 else _RemoteRows
                self._parts.append(part(family, hi - lo))
        except BaseException:
            self.close()
            raise
        self._seeded = False

    @property
    def envs(self) -> list[gym.Env]:
        """The robot envs (only with one worker: otherwise they live in the worker processes)."""
        if not isinstance(self._parts[0], _LocalRows):
            raise AttributeError("the robot envs live in worker processes (workers > 1)")
        return self._parts[0].stepper.envs

    def _all(self, command: str, arguments: list[Any]) -> list[Any]:
        for part, argument in zip(self._parts, arguments, strict=True):
            part.send(command, argument)
        return [part.receive() for part in self._parts]

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if self._pending_tasks is not None:
            self.tasks = self._pending_tasks
            self._pending_tasks = None
            values = self.family.task_values(self.tasks).detach().to("cpu", torch.float64).numpy()
            self._all("set_task_values", [values[lo:hi] for lo, hi in self._bounds])
        if self.tasks is None:
            raise ConfigError("call set_tasks(tasks) before reset(): every row needs a task")
        if seed is None and not self._seeded:
            seed = 0
        seeds = [
            None if seed is None else derive_seed(int(seed), "gym-vector-row", self.rows.start + i)
            for i in range(self.num_envs)
        ]
        obs = self._all("reset", [seeds[lo:hi] for lo, hi in self._bounds])
        self._seeded = True
        self.elapsed.zero_()
        self._started = True
        return torch.as_tensor(np.concatenate(obs), device=self.device)

    def step(self, action: torch.Tensor) -> Step:
        if not self._started:
            raise ConfigError("call reset() before step()")
        action = self._check_action(action)
        np_action = action.detach().cpu().numpy()
        parts = self._all("step", [np_action[lo:hi] for lo, hi in self._bounds])
        obs, final, reward, terminated, truncated, elapsed = (
            np.concatenate(field) for field in zip(*parts, strict=True)
        )
        self.elapsed = torch.from_numpy(elapsed).to(self.device)
        return Step(
            torch.as_tensor(obs, device=self.device),
            torch.as_tensor(reward, dtype=torch.float32, device=self.device),
            torch.as_tensor(terminated, device=self.device),
            torch.as_tensor(truncated, device=self.device),
            torch.as_tensor(final, device=self.device),
        )

    # The row steppers do the work; the tensor-environment hooks are never called.
    def _reset_rows(self, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("MujocoLoopEnv overrides reset()")

    def _transition(self, action):
        raise NotImplementedError("MujocoLoopEnv overrides step()")

    def close(self) -> None:
        self._finalizer()


def _close_parts(parts: list[Any]) -> None:
    for part in parts:
        if isinstance(part, _RemoteRows):
            part.close()
        else:
            part.stepper.close()
    parts.clear()
