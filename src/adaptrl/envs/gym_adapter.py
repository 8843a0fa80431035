"""Gymnasium adapters in both directions.

* :class:`FamilyEnv` shows one task of any :class:`TaskFamily` as a plain ``gymnasium.Env``
  (NumPy in and out), so Gymnasium tools and agents can run our families.
* :class:`GymVectorFamily` turns Gymnasium environments whose task can be set (``set_task``) into a
  batched family, stepping them through ``gymnasium.vector.SyncVectorEnv`` behind the same
  :class:`BatchedEnv` contract as the tensor families (MuJoCo / Meta-World families build on it).

Nothing is registered with Gymnasium's global registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import EnvSpec

from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import derive_seed
from adaptrl.envs.base import BatchedEnv, FamilyConfig, Step, TaskBatch, TaskFamily, positive
from adaptrl.envs.registry import make_family

_SEED_BOUND = 2**63 - 1


def _torch_dtype(space: gym.Space) -> torch.dtype:
    """The tensor dtype of a batch of observations or actions from ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return torch.int64
    return torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype


class FamilyEnv(gym.Env):
    """One task of a family as a ``gymnasium.Env`` (a one-row batched environment inside).

    With a task set (:meth:`set_task`, or ``task=`` here) every episode runs on that task. With
    none, every :meth:`reset` draws a fresh task from the family's *meta-train* tasks with a seed
    taken from ``self.np_random``, so ``reset(seed=s)`` fixes the task and everything after it.
    The episode's environment randomness is also seeded from ``self.np_random`` at each reset.

    ``step`` returns the observation the action led to, also on the step that ends the episode
    (the batched env's ``final_obs``). Stepping on after the end without ``reset`` continues with
    the next episode of the same task, which the batched env has already started.

    Discrete observations come back as ``np.int64``, Box observations as fresh arrays of the
    space's dtype (float32 for every built-in family). For a family that reports success
    (Meta-World), ``info["success"]`` is that step's success as a bool; otherwise ``info`` is empty.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012  (Gymnasium's convention)

    def __init__(
        self,
        family: TaskFamily,
        task: TaskBatch | None = None,
        device: str | torch.device = "cpu",
    ):
        self.family = family
        self.device = torch.device(device)
        self.observation_space = _copy_space(family.observation_space)
        self.action_space = _copy_space(family.action_space)
        self.max_episode_steps = family.max_episode_steps
        self._env = family.make_env(1, self.device)
        self._fixed_task: TaskBatch | None = None
        self.set_task(task)
        # A spec lets tools read the time limit (``GymVectorFamily`` does) and tells check_env
        # that resets are deterministic; it is not registered anywhere.
        try:
            self.spec = EnvSpec(
                id=f"adaptrl/{family.family_id}",
                entry_point=FamilyEnv,
                max_episode_steps=family.max_episode_steps,
                kwargs={"family": family, "device": str(self.device)},
            )
        except gym.error.Error:  # a family id Gymnasium cannot parse: no spec
            self.spec = None

    def set_task(self, task: TaskBatch | None) -> None:
        """Run every episode from the next :meth:`reset` on ``task`` (a batch of one), or go back
        to drawing a fresh meta-train task at each reset with ``None``."""
        if task is not None:
            if len(task) != 1:
                raise ConfigError(f"FamilyEnv runs one task; got a batch of {len(task)}")
            task = task.to(self.device)
            self._env.set_tasks(task)
        self._fixed_task = task

    @property
    def task(self) -> TaskBatch | None:
        """The task of the current episode (``None`` before the first reset)."""
        return self._env.tasks

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if self._fixed_task is None:
            task_seed = int(self.np_random.integers(_SEED_BOUND))
            self._env.set_tasks(self.family.tasks(1, "train", task_seed, self.device))
        obs = self._env.reset(seed=int(self.np_random.integers(_SEED_BOUND)))
        return self._to_numpy(obs[0]), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        out = self._env.step(self._to_batch(action))
        success = self._env.success
        return (
            self._to_numpy(out.final_obs[0]),
            float(out.reward[0]),
            bool(out.terminated[0]),
            bool(out.truncated[0]),
            {} if success is None else {"success": bool(success[0])},
        )

    def close(self) -> None:
        self._env.close()
        super().close()

    def _to_batch(self, action: Any) -> torch.Tensor:
        space = self.action_space
        arr = np.asarray(action)
        if isinstance(space, gym.spaces.Discrete):
            if arr.shape != () or not np.issubdtype(arr.dtype, np.integer):
                raise ConfigError(f"expected one integer action for {space}, got {action!r}")
            return torch.as_tensor(arr.astype(np.int64), device=self.device).reshape(1)
        if arr.shape != space.shape:
            raise ConfigError(f"action has shape {arr.shape}, expected {space.shape}")
        return torch.as_tensor(arr.astype(np.float32), device=self.device).unsqueeze(0)

    def _to_numpy(self, obs: torch.Tensor) -> Any:
        if isinstance(self.observation_space, gym.spaces.Discrete):
            return np.int64(obs.item())
        return obs.detach().cpu().numpy().astype(self.observation_space.dtype, copy=True)


def _copy_space(space: gym.Space) -> gym.Space:
    """A copy, so that seeding the Gymnasium view's spaces leaves the family's spaces alone."""
    import copy

    return copy.deepcopy(space)


def family_env(
    family: str | FamilyConfig | TaskFamily,
    *,
    task: TaskBatch | None = None,
    device: str | torch.device = "cpu",
    **config_overrides: Any,
) -> FamilyEnv:
    """A :class:`FamilyEnv` of a family given by id, config or instance, with config overrides.

    ``family_env("gridworld-goal-v0", height=4)`` is a Gymnasium env drawing a fresh meta-train
    goal at every reset.
    """
    if isinstance(family, TaskFamily):
        if config_overrides:
            names = {f.name for f in dataclasses.fields(family.config)}
            unknown = sorted(set(config_overrides) - names)
            if unknown:
                raise ConfigError(
                    f"{family.family_id} has no option(s) {', '.join(unknown)}; "
                    f"its options are {', '.join(sorted(names))}"
                )
            family = type(family)(dataclasses.replace(family.config, **config_overrides))
    else:
        family = make_family(family, **config_overrides)
    return FamilyEnv(family, task=task, device=device)


# --------------------------------------------------------------------------------------------
# Gymnasium environments -> batched family


@dataclasses.dataclass(frozen=True)
class GymVectorConfig(FamilyConfig):
    """No options: a :class:`GymVectorFamily` is configured by its constructor arguments."""


class GymVectorFamily(TaskFamily):
    """Gymnasium environments with a ``set_task`` method, run as a batched task family.

    ``env_fn()`` builds one sub-environment; it must have ``set_task(task)`` (reachable through
    wrappers), which receives a CPU :class:`TaskBatch` of length one before the sub-env's reset.
    ``sample_tasks(n, generator)`` draws task parameters; the train/test split is the default
    domain-separated one of :meth:`TaskFamily.tasks`.

    The time limit is ``max_episode_steps`` or the env's ``spec.max_episode_steps`` (the smaller if
    both are set); each sub-env is wrapped in ``TimeLimit`` with it, so the limit holds even for
    unwrapped envs. Discrete and Box spaces are supported; Box spaces are declared here with the
    dtype the batched tensors have (float32 for float spaces).
    """

    family_id = "gym-vector"
    config_cls = GymVectorConfig
    config: GymVectorConfig

    def __init__(
        self,
        env_fn: Callable[[], gym.Env],
        sample_tasks: Callable[[int, torch.Generator], TaskBatch],
        family_id: str = "gym-vector",
        episodes_per_trial: int = 1,
        max_episode_steps: int | None = None,
    ):
        super().__init__(GymVectorConfig())
        positive("episodes_per_trial", episodes_per_trial)
        if max_episode_steps is not None:
            positive("max_episode_steps", max_episode_steps)
        self.family_id = family_id  # type: ignore[misc]  (per instance: one class, many families)
        self.env_fn = env_fn
        self._sample_tasks = sample_tasks
        self.episodes_per_trial = int(episodes_per_trial)
        probe = env_fn()
        if not isinstance(probe, gym.Env):
            raise ConfigError(f"env_fn must return a gymnasium.Env, got {type(probe).__name__}")
        try:
            try:
                setter = probe.get_wrapper_attr("set_task")
            except AttributeError:
                setter = None
            if not callable(setter):
                raise ConfigError(
                    f"{type(probe.unwrapped).__name__} has no set_task(task) method; "
                    "GymVectorFamily needs one to bind each sub-environment to its task"
                )
            self.single_observation_space = probe.observation_space
            self.single_action_space = probe.action_space
            spec_limit = probe.spec.max_episode_steps if probe.spec is not None else None
        finally:
            probe.close()
        limits = [x for x in (max_episode_steps, spec_limit) if x is not None]
        if not limits:
            raise ConfigError(
                f"{family_id}: the environment has no time limit in its spec; "
                "pass max_episode_steps=..."
            )
        self.max_episode_steps = int(min(limits))
        self.observation_space = _batched_view(self.single_observation_space, "observation")
        self.action_space = _batched_view(self.single_action_space, "action")

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        return self._sample_tasks(n, generator)

    def make_env(self, num_envs: int, device: str | torch.device = "cpu") -> GymVectorEnv:
        return GymVectorEnv(self, num_envs, device)

    def make_sub_env(self) -> gym.Env:
        """One sub-environment, wrapped in the family's time limit."""
        return gym.wrappers.TimeLimit(self.env_fn(), self.max_episode_steps)


def _batched_view(space: gym.Space, what: str) -> gym.Space:
    """The space as the batched env exposes it: Discrete as is, float Boxes as float32."""
    if isinstance(space, gym.spaces.Discrete):
        return space
    if isinstance(space, gym.spaces.Box):
        if np.issubdtype(space.dtype, np.floating) and space.dtype != np.float32:
            low, high = space.low.astype(np.float32), space.high.astype(np.float32)
            return gym.spaces.Box(low, high, space.shape, np.float32)
        return space
    raise ConfigError(
        f"GymVectorFamily supports Discrete and Box {what} spaces, got {type(space).__name__}"
    )


class GymVectorEnv(BatchedEnv):
    """A ``SyncVectorEnv`` in same-step auto-reset mode behind the :class:`BatchedEnv` contract.

    Gymnasium does the auto-reset (and puts the last observation of an ended episode in
    ``info["final_obs"]``, an object array masked by ``info["_final_obs"]``); this class converts to
    tensors, assembles ``final_obs``, masks ``truncated`` where ``terminated`` (``TimeLimit`` may
    report both) and seeds the sub-envs reproducibly: ``reset(seed)`` gives row ``i`` the seed
    ``derive_seed(seed, "gym-vector-row", i)`` (``i`` counted in the whole batch of ``rows``,
    see :meth:`~adaptrl.envs.base.BatchedEnv.set_rows`); an unseeded first reset uses seed 0, like the tensor
    environments' generator. Gymnasium envs live on the host, so unlike the tensor environments
    every step copies actions to and results from the CPU.
    """

    family: GymVectorFamily

    def __init__(self, family: GymVectorFamily, num_envs: int, device: str | torch.device = "cpu"):
        super().__init__(family, num_envs, device)
        self.vec = gym.vector.SyncVectorEnv(
            [family.make_sub_env for _ in range(self.num_envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        self._obs_dtype = _torch_dtype(self.observation_space)
        self._np_action_dtype = self.vec.single_action_space.dtype
        self._seeded = False

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if self._pending_tasks is not None:
            self.tasks = self._pending_tasks
            self._pending_tasks = None
            cpu_tasks = self.tasks.to("cpu")
            for i, env in enumerate(self.vec.envs):
                env.get_wrapper_attr("set_task")(cpu_tasks[i])
        if self.tasks is None:
            raise ConfigError("call set_tasks(tasks) before reset(): every row needs a task")
        if seed is None and not self._seeded:
            seed = 0
        seeds = None
        if seed is not None:
            first = self.rows.start
            seeds = [
                derive_seed(int(seed), "gym-vector-row", first + i) for i in range(self.num_envs)
            ]
            self._seeded = True
        obs, _ = self.vec.reset(seed=seeds)
        self.elapsed.zero_()
        self._started = True
        return self._obs_tensor(obs)

    def step(self, action: torch.Tensor) -> Step:
        if not self._started:
            raise ConfigError("call reset() before step()")
        action = self._check_action(action)
        np_action = action.detach().cpu().numpy().astype(self._np_action_dtype)
        obs, reward, terminated, truncated, info = self.vec.step(np_action)
        terminated = np.asarray(terminated, dtype=bool)
        done = terminated | np.asarray(truncated, dtype=bool)
        final = np.array(obs, copy=True)
        if done.any():
            mask = info["_final_obs"]
            final[mask] = np.stack([np.asarray(o) for o in info["final_obs"][mask]])
        done_t = torch.as_tensor(done, device=self.device)
        self.elapsed += 1
        self.elapsed.masked_fill_(done_t, 0)
        return Step(
            self._obs_tensor(obs),
            torch.as_tensor(reward, dtype=torch.float32, device=self.device),
            torch.as_tensor(terminated, device=self.device),
            torch.as_tensor(done & ~terminated, device=self.device),
            self._obs_tensor(final),
        )

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs), device=self.device).to(self._obs_dtype).clone()

    # The vector env does the work; the tensor-environment hooks are never called.
    def _reset_rows(self, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("GymVectorEnv overrides reset()")

    def _transition(self, action):
        raise NotImplementedError("GymVectorEnv overrides step()")

    def close(self) -> None:
        self.vec.close()
