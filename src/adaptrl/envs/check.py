"""``check_family``: verify that a task family honours the contracts of :mod:`adaptrl.envs.base`.

Run it on your own families (every built-in family goes through it in the tests). It checks:

* spaces are Gymnasium spaces; ``max_episode_steps`` and ``episodes_per_trial`` are positive ints;
* ``tasks()`` and ``sample_tasks()``: the same keys, dtypes and trailing shapes, leading dim ``n``,
  every tensor on the requested device;
* determinism: the same seed gives identical tasks, different seeds give different tasks (unless
  the split holds a single task), the same tasks + env seed + actions give identical trajectories;
* the train/test split is disjoint: no ``task_keys`` row of many train tasks equals one of many
  test tasks. A family whose task space is too small to hold any task out (``halfcheetah-dir-v0``:
  two directions) declares the class attribute ``disjoint_split = False`` and documents it; then
  the check is that the two splits are still distinct streams (for one seed, many train and test
  tasks differ as sequences), so a family that ignores ``split`` is still caught;
* argument errors: ``reset`` before ``set_tasks``, ``step`` before ``reset``, a wrong-length task
  batch and a wrong-shape action all raise :class:`~adaptrl.core.errors.ConfigError`;
* every step: observations ``[B, *shape]`` inside the observation space with its dtype (int64 for
  Discrete, the Box dtype, float32 for built-ins), rewards finite float32 ``[B]``, ``terminated`` /
  ``truncated`` bool ``[B]`` and never both, ``obs == final_obs`` where no episode ended;
* time limits, over ``2 * max_episode_steps + 1`` random steps (or ``steps``): with the step
  count tracked here, ``truncated`` is set exactly when an episode reaches ``max_episode_steps``
  without terminating, and no episode runs longer;
* the success channel: ``env.success`` is ``None`` after ``reset`` and every step for a family
  without ``reports_success``; with it, a bool ``[B]`` tensor on the device, all False after
  ``reset``, and identical for two envs with the same tasks, seed and actions;
* auto-reset: where an episode ended, ``obs`` equals the first observation of a fresh env with
  the same tasks. This assumes a deterministic start state; a family whose episodes start at
  random sets the class attribute ``deterministic_start = False`` and this check is skipped;
* the Gymnasium view (:class:`~adaptrl.envs.gym_adapter.FamilyEnv`) passes
  ``gymnasium.utils.env_checker.check_env`` without data warnings (skipped for a
  :class:`~adaptrl.envs.gym_adapter.GymVectorFamily`, which is made of Gymnasium envs already).
  ``check_env`` rejects every env that truncates after one step; with ``max_episode_steps == 1``
  that one complaint is tolerated (and the checks ``check_env`` runs after it are not reached).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from adaptrl.core.errors import AdaptrlError, ConfigError
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch, TaskFamily
from adaptrl.envs.gym_adapter import FamilyEnv, GymVectorFamily, _torch_dtype

# check_env warnings that are advice, not a broken contract (unbounded or unnormalised Boxes).
_BENIGN_GYM_WARNINGS = ("infinity", "symmetric and normalized")


class FamilyContractError(AdaptrlError, AssertionError):
    """A task family breaks the contract of :mod:`adaptrl.envs.base`; the message says where."""


def check_family(
    family: TaskFamily,
    num_envs: int = 8,
    device: str | torch.device = "cpu",
    steps: int | None = None,
) -> None:
    """Verify ``family`` (see the module docstring); raise :class:`FamilyContractError` if not."""
    device = torch.device(device)
    name = getattr(family, "family_id", type(family).__name__)
    _check_declarations(family, name)
    tasks = _check_tasks(family, name, num_envs, device)
    _check_split(family, name, device)
    _check_argument_errors(family, name, tasks, device)
    _check_rollouts(family, name, tasks, device, steps)
    if not isinstance(family, GymVectorFamily):
        _check_gym_view(family, name, device)


def _fail(name: str, message: str) -> FamilyContractError:
    return FamilyContractError(f"{name}: {message}")


def _on_device(t: torch.Tensor, device: torch.device) -> bool:
    return t.device.type == device.type and (device.index is None or t.device.index == device.index)


def _check_declarations(family: TaskFamily, name: str) -> None:
    for attr in ("observation_space", "action_space"):
        space = getattr(family, attr, None)
        if not isinstance(space, gym.spaces.Space):
            raise _fail(name, f"{attr} must be a gymnasium space, got {type(space).__name__}")
    for attr in ("max_episode_steps", "episodes_per_trial"):
        value = getattr(family, attr, None)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise _fail(name, f"{attr} must be a positive int, got {value!r}")


def _describe(tasks: TaskBatch) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    return {k: (v.dtype, tuple(v.shape[1:])) for k, v in tasks.params.items()}


def _check_batch(name: str, what: str, tasks: TaskBatch, n: int, device: torch.device) -> None:
    if not isinstance(tasks, TaskBatch) or not tasks.params:
        raise _fail(name, f"{what} must return a non-empty TaskBatch, got {tasks!r}")
    for key, value in tasks.params.items():
        if not isinstance(value, torch.Tensor):
            raise _fail(name, f"{what}: task parameter {key!r} is not a tensor")
        if value.ndim == 0 or value.shape[0] != n:
            raise _fail(
                name, f"{what}: {key!r} has shape {tuple(value.shape)}, expected [{n}, ...]"
            )
        if not _on_device(value, device):
            raise _fail(name, f"{what}: {key!r} is on {value.device}, requested {device}")


def _check_tasks(family: TaskFamily, name: str, num_envs: int, device: torch.device) -> TaskBatch:
    n = max(num_envs, 16)
    train = family.tasks(n, "train", 0, device)
    _check_batch(name, "tasks(split='train')", train, n, device)
    layout = _describe(train)
    test = family.tasks(n, "test", 0, device)
    _check_batch(name, "tasks(split='test')", test, n, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    sampled = family.sample_tasks(n, gen)
    _check_batch(name, "sample_tasks()", sampled, n, device)
    for what, other in (("test tasks", test), ("sample_tasks()", sampled)):
        if _describe(other) != layout:
            raise _fail(
                name,
                f"{what} have layout {_describe(other)} but train tasks {layout} "
                "(keys, dtypes and trailing shapes must agree)",
            )
    if not family.tasks(n, "train", 0, device).equal(train):
        raise _fail(name, "tasks(n, 'train', seed=0) differs between two calls: not reproducible")
    other_seed = family.tasks(n, "train", 1, device)
    keys = family.task_keys(train)
    if keys.ndim != 2 or keys.shape[0] != n:
        raise _fail(name, f"task_keys must return [n, k] rows, got shape {tuple(keys.shape)}")
    single_task = bool((keys == keys[:1]).all())
    if other_seed.equal(train) and not single_task:
        raise _fail(name, "tasks(seed=0) and tasks(seed=1) are identical: the seed is ignored")
    return train[:num_envs]


def _check_split(family: TaskFamily, name: str, device: torch.device) -> None:
    n = 256
    if not getattr(family, "disjoint_split", True):
        train, test = (family.tasks(n, split, 0, device) for split in ("train", "test"))
        if torch.equal(family.task_keys(train), family.task_keys(test)):
            raise _fail(
                name,
                f"tasks(n={n}, seed=0) are identical for the train and the test split: "
                "the split is ignored (disjoint_split = False still needs distinct streams)",
            )
        return
    rows: dict[str, set[bytes]] = {}
    for split in ("train", "test"):
        batch = TaskBatch.cat([family.tasks(n, split, seed, device) for seed in (0, 1)])
        keys = family.task_keys(batch).detach().to("cpu", torch.float64).numpy()
        rows[split] = {np.ascontiguousarray(r).tobytes() for r in keys}
    if rows["train"] & rows["test"]:
        raise _fail(
            name,
            f"{len(rows['train'] & rows['test'])} distinct task(s) appear in both the train and the "
            "test split (compared by task_keys): held-out tasks must never be trained on",
        )


def _expect_config_error(name: str, what: str, fn: Callable[[], object]) -> None:
    try:
        fn()
    except ConfigError:
        return
    except Exception as exc:
        raise _fail(
            name, f"{what} raised {type(exc).__name__} ({exc}), expected ConfigError"
        ) from exc
    raise _fail(name, f"{what} did not raise ConfigError")


def _check_argument_errors(
    family: TaskFamily, name: str, tasks: TaskBatch, device: torch.device
) -> None:
    b = len(tasks)
    env = family.make_env(b, device)
    try:
        _expect_config_error(name, "reset() before set_tasks()", env.reset)
        actions = _random_actions(env.action_space, b, _gen(device, 0), device)
        _expect_config_error(name, "step() before reset()", lambda: env.step(actions))
        bad_tasks = TaskBatch.cat([tasks, tasks[:1]])
        _expect_config_error(
            name, f"set_tasks() with {b + 1} tasks for {b} envs", lambda: env.set_tasks(bad_tasks)
        )
        env.set_tasks(tasks)
        env.reset(seed=0)
        wrong = torch.cat([actions, actions[:1]])
        _expect_config_error(
            name,
            f"step() with an action batch of shape {tuple(wrong.shape)}",
            lambda: env.step(wrong),
        )
    finally:
        env.close()


def _gen(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _random_actions(
    space: gym.Space, b: int, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """A batch of ``b`` random actions from ``space`` drawn with ``gen``."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.start) + torch.randint(int(space.n), (b,), generator=gen, device=device)
    if isinstance(space, gym.spaces.Box):
        low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
        high = torch.as_tensor(space.high, dtype=torch.float32, device=device)
        u = torch.rand((b, *space.shape), generator=gen, device=device)
        bounded = torch.isfinite(low) & torch.isfinite(high)
        span = torch.where(bounded, high - low, 2.0)
        base = torch.where(bounded, low, -1.0)
        return base + span * u
    seed = int(torch.randint(2**31 - 1, (), generator=gen, device=device))
    space.seed(seed)
    return torch.as_tensor(np.stack([space.sample() for _ in range(b)]), device=device)


def _check_obs(
    name: str, what: str, obs: torch.Tensor, space: gym.Space, b: int, device: torch.device
) -> None:
    if not isinstance(obs, torch.Tensor):
        raise _fail(name, f"{what} is a {type(obs).__name__}, expected a tensor")
    shape = (b, *(space.shape or ()))
    if tuple(obs.shape) != shape:
        raise _fail(name, f"{what} has shape {tuple(obs.shape)}, expected {shape}")
    if not _on_device(obs, device):
        raise _fail(name, f"{what} is on {obs.device}, requested {device}")
    dtype = _torch_dtype(space)
    if obs.dtype != dtype:
        raise _fail(name, f"{what} has dtype {obs.dtype}, expected {dtype} for {space}")
    if isinstance(space, gym.spaces.Discrete):
        inside = (obs >= int(space.start)) & (obs < int(space.start) + int(space.n))
    elif isinstance(space, gym.spaces.Box):
        low = torch.as_tensor(space.low, device=device)
        high = torch.as_tensor(space.high, device=device)
        inside = ((obs >= low) & (obs <= high)).reshape(b, -1).all(1)
    else:
        arr = obs.cpu().numpy()
        inside = torch.tensor([space.contains(row) for row in arr])
    if not bool(inside.all()):
        bad = int((~inside).nonzero()[0, 0])
        raise _fail(name, f"{what} row {bad} = {obs[bad].tolist()} lies outside {space}")


def _check_step(name: str, step: Step, env: BatchedEnv, b: int, device: torch.device) -> None:
    if not isinstance(step, Step):
        raise _fail(name, f"step() returned a {type(step).__name__}, expected a Step")
    _check_obs(name, "step().obs", step.obs, env.observation_space, b, device)
    _check_obs(name, "step().final_obs", step.final_obs, env.observation_space, b, device)
    for field, dtype in (
        ("reward", torch.float32),
        ("terminated", torch.bool),
        ("truncated", torch.bool),
    ):
        value = getattr(step, field)
        if (
            not isinstance(value, torch.Tensor)
            or value.dtype != dtype
            or tuple(value.shape) != (b,)
        ):
            got = (
                (value.dtype, tuple(value.shape))
                if isinstance(value, torch.Tensor)
                else type(value)
            )
            raise _fail(name, f"step().{field} must be a {dtype} tensor of shape [{b}], got {got}")
        if not _on_device(value, device):
            raise _fail(name, f"step().{field} is on {value.device}, requested {device}")
    if not bool(torch.isfinite(step.reward).all()):
        raise _fail(name, "step() returned a non-finite reward")
    if bool((step.terminated & step.truncated).any()):
        raise _fail(name, "an episode is both terminated and truncated in the same step")
    live = ~(step.terminated | step.truncated)
    same = (step.obs == step.final_obs).reshape(b, -1).all(1)
    if bool((live & ~same).any()):
        raise _fail(name, "obs and final_obs differ in a row whose episode did not end")


def _check_success(name: str, family: TaskFamily, env: BatchedEnv, b: int, when: str) -> None:
    success = env.success
    if not getattr(family, "reports_success", False):
        if success is not None:
            raise _fail(
                name,
                f"env.success is set {when} but the family does not declare reports_success = True",
            )
        return
    if success is None:
        raise _fail(name, f"reports_success is True but env.success is None {when}")
    if (
        not isinstance(success, torch.Tensor)
        or success.dtype != torch.bool
        or tuple(success.shape) != (b,)
    ):
        got = (
            (success.dtype, tuple(success.shape)) if isinstance(success, torch.Tensor) else success
        )
        raise _fail(name, f"env.success {when} must be a bool tensor of shape [{b}], got {got}")
    if not _on_device(success, env.device):
        raise _fail(name, f"env.success {when} is on {success.device}, requested {env.device}")


def _check_rollouts(
    family: TaskFamily, name: str, tasks: TaskBatch, device: torch.device, steps: int | None
) -> None:
    b, limit = len(tasks), int(family.max_episode_steps)
    steps = 2 * limit + 1 if steps is None else steps
    envs = [family.make_env(b, device) for _ in range(2)]
    try:
        for env in envs:
            env.set_tasks(tasks)
        first = envs[0].reset(seed=0)
        _check_obs(name, "reset() obs", first, envs[0].observation_space, b, device)
        fresh = envs[1].reset(seed=0)
        if not torch.equal(first, fresh):
            raise _fail(name, "two envs with the same tasks and reset(seed=0) start differently")
        _check_success(name, family, envs[0], b, "after reset()")
        if envs[0].success is not None and bool(envs[0].success.any()):
            raise _fail(name, "env.success must be all False after reset(): no step was taken")
        deterministic_start = getattr(family, "deterministic_start", True)
        gen = _gen(device, 0)
        elapsed = torch.zeros(b, dtype=torch.long, device=device)
        ended = torch.zeros(b, dtype=torch.bool, device=device)
        for t in range(steps):
            actions = _random_actions(envs[0].action_space, b, gen, device)
            step = envs[0].step(actions)
            _check_step(name, step, envs[0], b, device)
            twin = envs[1].step(actions)
            for field, x, y in zip(Step._fields, step, twin, strict=True):
                if not torch.equal(x, y):
                    raise _fail(
                        name,
                        f"step {t}: {field} differs between two envs with the same tasks, "
                        "env seed and actions (randomness outside env.generator?)",
                    )
            _check_success(name, family, envs[0], b, f"after step {t}")
            if envs[0].success is not None and not torch.equal(envs[0].success, envs[1].success):
                raise _fail(
                    name,
                    f"step {t}: env.success differs between two envs with the same tasks, "
                    "env seed and actions",
                )
            elapsed += 1
            done = step.terminated | step.truncated
            expected_trunc = (elapsed >= limit) & ~step.terminated
            if not torch.equal(step.truncated, expected_trunc):
                row = int((step.truncated != expected_trunc).nonzero()[0, 0])
                raise _fail(
                    name,
                    f"step {t}, row {row}: truncated={bool(step.truncated[row])} after "
                    f"{int(elapsed[row])} steps of an episode; max_episode_steps={limit} "
                    "(truncated must be set exactly when the limit is reached)",
                )
            if deterministic_start and bool(done.any()):
                rows = done.nonzero().squeeze(1)
                if not torch.equal(step.obs[rows], fresh[rows]):
                    raise _fail(
                        name,
                        f"step {t}: after an episode ended, obs is not the first observation of "
                        "a fresh episode (same-step auto-reset); set deterministic_start = False "
                        "on the family if its start states are random",
                    )
            ended |= done
            elapsed.masked_fill_(done, 0)
        if steps > limit and not bool(ended.all()):
            raise _fail(name, f"some rows never ended an episode in {steps} steps (limit {limit})")
    finally:
        for env in envs:
            env.close()


def _check_gym_view(family: TaskFamily, name: str, device: torch.device) -> None:
    from gymnasium.utils.env_checker import check_env

    env = FamilyEnv(family, device=device)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=True)
    except AssertionError as exc:
        # check_env refuses any env that truncates after one step; a one-step time limit is
        # legitimate here (e.g. a contextual bandit), so that one complaint is tolerated.
        if not (family.max_episode_steps == 1 and "truncates after 1 step" in str(exc)):
            raise _fail(name, f"the Gymnasium view (FamilyEnv) fails check_env: {exc}") from exc
    except Exception as exc:
        raise _fail(name, f"the Gymnasium view (FamilyEnv) fails check_env: {exc}") from exc
    finally:
        env.close()
    problems = [
        str(w.message)
        for w in caught
        if "WARN:" in str(w.message)  # Gymnasium's logger
        and not any(s in str(w.message) for s in _BENIGN_GYM_WARNINGS)
    ]
    if problems:
        raise _fail(name, f"check_env warns about the Gymnasium view (FamilyEnv): {problems}")
