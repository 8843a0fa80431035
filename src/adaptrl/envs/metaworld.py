"""Meta-World ML1 and ML10 task families (Yu et al. 2019; metaworld 3.x), optional extra ``metaworld``.

* ``metaworld-ml1-v0``: one manipulation task (``task``, e.g. ``reach-v3``, ``push-v3``,
  ``pick-place-v3``) with 50 meta-train goals and 50 other meta-test goals (object and goal
  positions), as ``metaworld.ML1(task, seed=benchmark_seed)`` makes them.
* ``metaworld-ml10-v0``: 10 meta-train task classes x 50 goals and 5 held-out meta-test classes,
  as ``metaworld.ML10(seed=benchmark_seed)`` makes them.

**Tasks are Meta-World's official task objects.** The benchmark is built through metaworld's own
constructors (never ``gymnasium.make_vec("Meta-World/ML1-train")``: in metaworld 3.1.1 its entry
points bind the split late, so the *train* id returns the *test* goals; tested). A
:class:`~adaptrl.envs.base.TaskBatch` names a task by three int64 indices: ``split`` (0 for the
benchmark's ``train_tasks``, 1 for its ``test_tasks``), ``env`` (the task class, an index into
:data:`V3_TASKS`) and ``goal`` (which of that class's goals, in the benchmark's order), so
``tasks(n, "train" | "test", seed)`` draws from the official meta-train or meta-test list and a
test goal never appears in a train draw (ML10's test classes are other classes altogether).
Draws are class-balanced: each block of as many rows as the split has classes holds every class
once, in a random order (Meta-World's meta-batches also give every class the same share of rows);
goals are drawn uniformly within a class. Meta-test draws from the first ``test_goals`` (40) goals
of each test class, the set Meta-World's own evaluation uses (``total_tasks_per_cls=40``: a
meta-batch of 20 has to split each class's goals evenly across its rows, and 50 does not split
into ML10's 4 rows per test class); :meth:`MetaWorldFamily.evaluation_rounds` gives that
evaluation's assignment of goals to rows. ``sample_tasks`` (a task of the family's distribution,
e.g. the Gymnasium view's reset) draws meta-train tasks.

**The benchmark seed defines the goals.** ``benchmark_seed`` (a config field, so a run's
``config.yaml`` records it and every process of a distributed run builds the same goals) is passed
to metaworld's constructor; ML1's test goals come from ``benchmark_seed + 1``, as metaworld does
it. Building a benchmark runs MuJoCo scenes to place 50 goals per class (a few seconds for ML1,
~10-20 s for ML10), so it is built once per process and cached (:func:`official_tasks`).

**Episodes** last ``horizon`` = 500 steps (Meta-World's ``max_path_length``, reported as
``truncated``; shorter horizons are for tests, longer ones are refused because Meta-World's envs
refuse to step past 500). They never terminate, unless ``terminate_on_success`` is set (Meta-World's
evaluation episodes end on success). Observations are Meta-World's 39 numbers as float32 (the goal
position zeroed: ML benchmarks hide it), actions 4 numbers in [-1, 1] (xyz offset of the hand,
gripper), rewards Meta-World's v2 rewards (in [0, 10]).

**Success** is reported through the optional channel of :class:`~adaptrl.envs.base.BatchedEnv`:
after every step ``env.success`` is a ``[num_envs]`` bool tensor, Meta-World's
``info["success"]`` of that step (see :mod:`adaptrl.envs.base`).

**Stepping.** :class:`MetaWorldEnv` steps one Meta-World env per row in a Python loop. A Meta-World
env is one task class (one MuJoCo scene, ~20 MB), so when ML10 rebinds rows to other classes the
envs are kept in a pool per class and reused rather than rebuilt. Given its task a Meta-World env
is deterministic (its ``reset`` ignores any seed and starts from the task's fixed positions; tested
after reuse), so ``deterministic_start = True``. A seeded ``reset(seed)`` still seeds row ``i``'s
``np_random`` with ``derive_seed(seed, "gym-vector-row", i)`` (``i`` counted in the whole batch of
:attr:`~adaptrl.envs.base.BatchedEnv.rows`), as the other Gymnasium-backed families do.

Declaring the families needs no metaworld (they appear in ``adaptrl list`` and draw task indices);
building environments, ``task_keys`` and the benchmark without it raise
:class:`~adaptrl.core.errors.MissingExtraError` naming ``pip install 'adaptrl[metaworld]'``.
metaworld 3.1.1 pins ``mujoco==3.3.0`` (docs/architecture.md says what that means here).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import pickle
import weakref
from abc import abstractmethod
from typing import Annotated, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from annotated_types import Interval

from adaptrl.core.config import Size
from adaptrl.core.errors import ConfigError, MissingExtraError
from adaptrl.core.seeding import derive_seed, make_generator
from adaptrl.envs.base import (
    BatchedEnv,
    FamilyConfig,
    Split,
    Step,
    TaskBatch,
    TaskFamily,
    positive,
)
from adaptrl.envs.registry import register_family

V3_TASKS: tuple[str, ...] = tuple(
    sorted(
        [
            "assembly-v3",
            "basketball-v3",
            "bin-picking-v3",
            "box-close-v3",
            "button-press-topdown-v3",
            "button-press-topdown-wall-v3",
            "button-press-v3",
            "button-press-wall-v3",
            "coffee-button-v3",
            "coffee-pull-v3",
            "coffee-push-v3",
            "dial-turn-v3",
            "disassemble-v3",
            "door-close-v3",
            "door-lock-v3",
            "door-open-v3",
            "door-unlock-v3",
            "drawer-close-v3",
            "drawer-open-v3",
            "faucet-close-v3",
            "faucet-open-v3",
            "hammer-v3",
            "hand-insert-v3",
            "handle-press-side-v3",
            "handle-press-v3",
            "handle-pull-side-v3",
            "handle-pull-v3",
            "lever-pull-v3",
            "peg-insert-side-v3",
            "peg-unplug-side-v3",
            "pick-out-of-hole-v3",
            "pick-place-v3",
            "pick-place-wall-v3",
            "plate-slide-back-side-v3",
            "plate-slide-back-v3",
            "plate-slide-side-v3",
            "plate-slide-v3",
            "push-back-v3",
            "push-v3",
            "push-wall-v3",
            "reach-v3",
            "reach-wall-v3",
            "shelf-place-v3",
            "soccer-v3",
            "stick-pull-v3",
            "stick-push-v3",
            "sweep-into-v3",
            "sweep-v3",
            "window-close-v3",
            "window-open-v3",
        ]
    )
)
"""Meta-World's 50 v3 task classes, sorted; a task's ``env`` index points into this tuple. Declared
here so that configs are checked and tasks drawn without metaworld (a test compares it with
metaworld's ``ALL_V3_ENVIRONMENTS``)."""

ML10_TRAIN: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "sweep-v3",
    "basketball-v3",
)
"""ML10's meta-train classes in metaworld's order (compared with ``metaworld.ML10`` in a test)."""

ML10_TEST: tuple[str, ...] = (
    "drawer-open-v3",
    "door-close-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "lever-pull-v3",
)
"""ML10's held-out meta-test classes in metaworld's order."""

GOALS_PER_CLASS = 50
"""Goals metaworld 3.x generates per task class and split (its ``_N_GOALS``)."""

MAX_PATH_LENGTH = 500
"""Meta-World's episode length; its envs refuse to step further without a reset."""

OBS_DIM = 39
ACT_DIM = 4

_SPLITS: tuple[Split, Split] = ("train", "test")


# --- loading metaworld --------------------------------------------------------------------------


def load_metaworld(feature: str = "Meta-World") -> Any:
    """Import metaworld, or raise :class:`MissingExtraError` naming ``pip install
    'adaptrl[metaworld]'``: also when metaworld is there but a module it imports is not
    (``import metaworld`` needs ``packaging``, which nothing in its own requirements installs)."""
    try:
        module = importlib.import_module("metaworld")
    except ImportError as exc:
        missing = (exc.name or "metaworld").split(".")[0]
        raise MissingExtraError("metaworld", missing, feature) from exc
    if not hasattr(module, "ML10") or "reach-v3" not in getattr(
        getattr(module, "env_dict", None), "ALL_V3_ENVIRONMENTS", {}
    ):
        version = getattr(module, "__version__", "an old version")
        raise ConfigError(
            f"{feature} needs metaworld>=3.0 (its v3 tasks); found {version}. "
            "Upgrade it with: pip install -U 'metaworld>=3.0'"
        )
    return module


@dataclasses.dataclass(frozen=True)
class OfficialTasks:
    """One built Meta-World benchmark's task objects by split and class, in metaworld's order.

    ``tasks[split][name][g]`` is goal ``g`` of class ``name`` (a ``metaworld.Task``, what an env's
    ``set_task`` takes), ``goals[split][name]`` the goal vectors behind them (``[50, d]`` float64,
    Meta-World's ``rand_vec``: object and target positions), ``env_classes[name]`` the env class.
    """

    benchmark: Any
    tasks: dict[str, dict[str, list[Any]]]
    goals: dict[str, dict[str, np.ndarray]]
    env_classes: dict[str, type]


def _by_class(task_list: list[Any], classes: tuple[str, ...], what: str) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {name: [] for name in classes}
    for task in task_list:
        grouped[task.env_name].append(task)
    for name, tasks in grouped.items():
        if len(tasks) != GOALS_PER_CLASS:
            raise ConfigError(
                f"metaworld made {len(tasks)} {what} goals for {name}; adaptrl's Meta-World "
                f"families expect {GOALS_PER_CLASS} (metaworld 3.x). Install it with: "
                "pip install 'adaptrl[metaworld]'"
            )
    return grouped


def _goal_vector(task: Any) -> np.ndarray:
    # A metaworld Task carries its parameters as bytes that metaworld itself pickled in this
    # process (``metaworld._encode_task``); its own ``set_task`` unpickles them the same way.
    return np.asarray(pickle.loads(task.data)["rand_vec"], dtype=np.float64)


@functools.lru_cache(maxsize=4)
def official_tasks(benchmark: str, seed: int) -> OfficialTasks:
    """Build ``metaworld.ML10(seed=seed)`` (``benchmark="ML10"``) or ``metaworld.ML1(benchmark,
    seed=seed)`` (a v3 task name) once per process and index its task objects."""
    mw = load_metaworld(f"metaworld-{'ml10' if benchmark == 'ML10' else 'ml1'}-v0")
    bench = mw.ML10(seed=seed) if benchmark == "ML10" else mw.ML1(benchmark, seed=seed)
    tasks: dict[str, dict[str, list[Any]]] = {}
    env_classes: dict[str, type] = {}
    for split, task_list, classes in (
        ("train", bench.train_tasks, bench.train_classes),
        ("test", bench.test_tasks, bench.test_classes),
    ):
        tasks[split] = _by_class(task_list, tuple(classes), split)
        env_classes.update(classes)
    goals = {
        split: {name: np.stack([_goal_vector(t) for t in ts]) for name, ts in by_class.items()}
        for split, by_class in tasks.items()
    }
    return OfficialTasks(bench, tasks, goals, env_classes)


# --- configs ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetaWorldConfig(FamilyConfig):
    """Options shared by the Meta-World families."""

    horizon: Annotated[int, Interval(ge=1, le=MAX_PATH_LENGTH)] = MAX_PATH_LENGTH
    """Steps per episode (a time limit, reported as truncated); Meta-World's is 500, its envs
    cannot run longer episodes."""
    n: Size = 10
    """Episodes per trial (for memory-based learners); Meta-World's adaptation protocol runs 10
    adaptation episodes per goal."""
    benchmark_seed: Annotated[int, Interval(ge=0, lt=2**32 - 1)] = 0
    """Seed of metaworld's goal generation: it defines the train and test goals, so every process
    of a run and every evaluation of its models must use the same one."""
    test_goals: Annotated[int, Interval(ge=1, le=GOALS_PER_CLASS)] = 40
    """Goals per meta-test class that meta-test draws from: the first ones in metaworld's list.
    40, as Meta-World's evaluation (a meta-batch of 20 splits 40 goals evenly; 50 all goals)."""
    terminate_on_success: bool = False
    """End an episode (terminated) at its first successful step, as Meta-World's evaluation
    episodes do; training episodes run the whole horizon."""


def _unknown_task(name: str) -> ConfigError:
    close = difflib.get_close_matches(name, V3_TASKS, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(
        f"unknown Meta-World task {name!r}.{hint} The v3 tasks: {', '.join(V3_TASKS)}."
    )


@dataclasses.dataclass(frozen=True)
class MetaWorldML1Config(MetaWorldConfig):
    """Meta-World ML1: one task class, 50 meta-train goals and 50 held-out meta-test goals
    (meta-test draws from the first test_goals of them)."""

    task: str = "reach-v3"
    """The Meta-World v3 task (reach-v3, push-v3, pick-place-v3, ...)."""

    def validate(self) -> None:
        super().validate()
        if self.task not in V3_TASKS:
            raise _unknown_task(self.task)


@dataclasses.dataclass(frozen=True)
class MetaWorldML10Config(MetaWorldConfig):
    """Meta-World ML10: 10 meta-train task classes, 5 held-out meta-test classes."""


# --- families -----------------------------------------------------------------------------------


class MetaWorldFamily(TaskFamily):
    """Base of the Meta-World families: official task lists, indices in, Meta-World envs out."""

    deterministic_start: ClassVar[bool] = True
    reports_success: ClassVar[bool] = True
    config: MetaWorldConfig

    def __init__(self, config: MetaWorldConfig | None = None):
        super().__init__(config)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self.max_episode_steps = self.config.horizon
        self.episodes_per_trial = self.config.n

    @property
    @abstractmethod
    def benchmark_name(self) -> str:
        """``"ML10"`` or the ML1 task name: what :func:`official_tasks` builds."""

    @abstractmethod
    def classes(self, split: Split) -> tuple[str, ...]:
        """The task classes of ``split`` in metaworld's order."""

    # --- tasks --------------------------------------------------------------------------------
    def goal_count(self, split: Split) -> int:
        """Goals per class that ``split`` draws from (all 50, or ``test_goals`` for meta-test)."""
        return GOALS_PER_CLASS if split == "train" else self.config.test_goals

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        """``n`` meta-train tasks (the distribution meta-training sees)."""
        return self._draw(n, "train", generator)

    def tasks(
        self, n: int, split: Split, seed: int, device: str | torch.device = "cpu"
    ) -> TaskBatch:
        """``n`` tasks from the official list of ``split``, class-balanced (module docstring)."""
        if split not in _SPLITS:
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        positive("number of tasks", n)
        gen = make_generator(seed, self.family_id, "tasks", split, device=device)
        return self._draw(n, split, gen)

    def _draw(self, n: int, split: Split, generator: torch.Generator) -> TaskBatch:
        device = generator.device
        classes = self.classes(split)
        blocks = -(-n // len(classes))
        # a random order of the classes per block of rows: argsort of uniform draws
        order = torch.rand((blocks, len(classes)), generator=generator, device=device).argsort(1)
        ids = torch.tensor([V3_TASKS.index(c) for c in classes], device=device)
        env = ids[order.reshape(-1)[:n]]
        goal = torch.randint(self.goal_count(split), (n,), generator=generator, device=device)
        code = _SPLITS.index(split)
        return TaskBatch({"split": torch.full((n,), code, device=device), "env": env, "goal": goal})

    def check_meta_batch(self, n: int, what: str = "meta_batch_size") -> None:
        """Meta-World's meta-batches give every training class the same share: ``n`` must be a
        multiple of the number of training classes."""
        classes = len(self.classes("train"))
        if n % classes:
            raise ConfigError(
                f"{what}={n} does not split evenly over the {classes} training classes of "
                f"{self.family_id}; use a multiple of {classes} (Meta-World's meta-batches give "
                "every class the same share)"
            )

    def official(self) -> OfficialTasks:
        """The benchmark's task objects (built on first use, then cached for the process)."""
        return official_tasks(self.benchmark_name, self.config.benchmark_seed)

    def task_objects(self, tasks: TaskBatch) -> list[Any]:
        """The ``metaworld.Task`` of every row of ``tasks``."""
        official = self.official()
        rows = zip(*(tasks.params[k].tolist() for k in ("split", "env", "goal")), strict=True)
        return [official.tasks[_SPLITS[s]][V3_TASKS[e]][g] for s, e, g in rows]

    def task_keys(self, tasks: TaskBatch) -> torch.Tensor:
        """``[class index, goal vector (zero-padded)]`` per task, float64: tasks compared by what
        they are (a train and a test goal with the same index are different positions)."""
        official = self.official()
        width = max(v.shape[1] for by in official.goals.values() for v in by.values())
        keys = np.zeros((len(tasks), 1 + width))
        rows = zip(*(tasks.params[k].tolist() for k in ("split", "env", "goal")), strict=True)
        for i, (s, e, g) in enumerate(rows):
            vec = official.goals[_SPLITS[s]][V3_TASKS[e]][g]
            keys[i, 0], keys[i, 1 : 1 + vec.size] = e, vec
        return torch.from_numpy(keys)

    def evaluation_rounds(self, meta_batch_size: int = 20) -> list[TaskBatch]:
        """The meta-test tasks of Meta-World's evaluation, one batch of ``meta_batch_size`` rows per
        round: the rows are split evenly over the test classes, and row ``r`` of a class with ``k``
        rows runs goals ``r, r + k, r + 2k, ...`` of the first ``test_goals``, one per round, so the
        rounds visit each of those goals once (metaworld's ``make_vec`` test envs; it shuffles each
        row's goals, which changes their order, not the set)."""
        positive("meta_batch_size", meta_batch_size)
        classes, goals = self.classes("test"), self.config.test_goals
        if meta_batch_size % len(classes):
            raise ConfigError(
                f"a meta-batch of {meta_batch_size} does not split evenly over the "
                f"{len(classes)} test classes of {self.family_id}; use a multiple of {len(classes)}"
            )
        k = meta_batch_size // len(classes)
        if goals % k:
            raise ConfigError(
                f"{self.family_id}: {goals} test goals per class do not split evenly over the "
                f"{k} rows per class of a meta-batch of {meta_batch_size}; set test_goals to a "
                f"multiple of {k} (Meta-World's evaluation uses 40 with a meta-batch of 20)"
            )
        ids = torch.tensor([V3_TASKS.index(c) for c in classes]).repeat_interleave(k)
        rows = torch.arange(k).repeat(len(classes))
        split = torch.ones(meta_batch_size, dtype=torch.long)
        return [
            TaskBatch({"split": split, "env": ids, "goal": rows + k * j}) for j in range(goals // k)
        ]

    def make_env(self, num_envs: int, device: str | torch.device = "cpu") -> BatchedEnv:
        self.official()  # a clear error (missing extra) before anything is built
        return MetaWorldEnv(self, num_envs, device)


@register_family
class MetaWorldML1(MetaWorldFamily):
    """Meta-World ML1 (metaworld 3.x): one manipulation task, 50 train and 50 test goals;
    needs the metaworld extra."""

    family_id = "metaworld-ml1-v0"
    config_cls = MetaWorldML1Config
    config: MetaWorldML1Config

    @property
    def benchmark_name(self) -> str:
        return self.config.task

    def classes(self, split: Split) -> tuple[str, ...]:
        return (self.config.task,)


@register_family
class MetaWorldML10(MetaWorldFamily):
    """Meta-World ML10 (metaworld 3.x): 10 train task classes, 5 held-out test classes;
    needs the metaworld extra."""

    family_id = "metaworld-ml10-v0"
    config_cls = MetaWorldML10Config

    @property
    def benchmark_name(self) -> str:
        return "ML10"

    def classes(self, split: Split) -> tuple[str, ...]:
        return ML10_TRAIN if split == "train" else ML10_TEST


# --- the batched environment ----------------------------------------------------------------------


class MetaWorldEnv(BatchedEnv):
    """One Meta-World env per row, stepped in a Python loop; rows bound to official tasks.

    Envs are pooled per task class: binding new tasks returns every row's env to the pool and
    takes one of the row's class from it (building one only when the pool has none), in row order,
    so the same history of calls gives the same envs. Time limits, the optional termination on
    success, same-step auto-reset and the success channel are handled here; Meta-World's own
    ``terminated`` (always False) and ``truncated`` flags are not used.
    """

    family: MetaWorldFamily

    def __init__(self, family: MetaWorldFamily, num_envs: int, device: str | torch.device = "cpu"):
        super().__init__(family, num_envs, device)
        self._official = family.official()
        self._pool: dict[str, list[Any]] = {}
        self._row_envs: list[Any] = []
        self._row_names: list[str] = []
        self._steps = np.zeros(self.num_envs, np.int64)
        self._seeded = False
        # Closes the MuJoCo envs when this env is closed or garbage-collected.
        self._finalizer = weakref.finalize(self, _close_envs, self._pool, self._row_envs)

    @property
    def envs(self) -> list[Any]:
        """The Meta-World env of every row (after the first reset)."""
        return list(self._row_envs)

    def _bind(self, tasks: TaskBatch) -> None:
        for name, env in zip(self._row_names, self._row_envs, strict=True):
            self._pool.setdefault(name, []).append(env)
        self._row_envs.clear()
        self._row_names = [V3_TASKS[e] for e in tasks.params["env"].tolist()]
        for name, task in zip(self._row_names, self.family.task_objects(tasks), strict=True):
            free = self._pool.get(name)
            env = free.pop(0) if free else self._official.env_classes[name]()
            env.set_task(task)
            self._row_envs.append(env)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if self._pending_tasks is not None:
            self.tasks = self._pending_tasks
            self._pending_tasks = None
            self._bind(self.tasks.to("cpu"))
        if self.tasks is None:
            raise ConfigError("call set_tasks(tasks) before reset(): every row needs a task")
        if seed is None and not self._seeded:
            seed = 0
        if seed is not None:
            for i, env in enumerate(self._row_envs):
                env.seed(derive_seed(int(seed), "gym-vector-row", self.rows.start + i))
            self._seeded = True
        obs = np.stack([env.reset()[0] for env in self._row_envs]).astype(np.float32)
        self._steps[:] = 0
        self.elapsed.zero_()
        self.success = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._started = True
        return torch.as_tensor(obs, device=self.device)

    def step(self, action: torch.Tensor) -> Step:
        if not self._started:
            raise ConfigError("call reset() before step()")
        action = self._check_action(action)
        actions = action.detach().cpu().numpy()
        final = np.empty((self.num_envs, OBS_DIM), np.float32)
        reward = np.empty(self.num_envs, np.float32)
        success = np.empty(self.num_envs, bool)
        for i, env in enumerate(self._row_envs):
            obs, r, _, _, info = env.step(actions[i])
            final[i], reward[i], success[i] = obs, r, info["success"] > 0
        self._steps += 1
        terminated = success & self.family.config.terminate_on_success
        done = terminated | (self._steps >= self.max_episode_steps)
        obs = final.copy()
        for i in np.flatnonzero(done):
            obs[i] = self._row_envs[i].reset()[0]
        self._steps[done] = 0
        self.elapsed = torch.from_numpy(self._steps.copy()).to(self.device)
        self.success = torch.as_tensor(success, device=self.device)
        return Step(
            torch.as_tensor(obs, device=self.device),
            torch.as_tensor(reward, device=self.device),
            torch.as_tensor(terminated, device=self.device),
            torch.as_tensor(done & ~terminated, device=self.device),
            torch.as_tensor(final, device=self.device),
        )

    # The loop does the work; the tensor-environment hooks are never called.
    def _reset_rows(self, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("MetaWorldEnv overrides reset()")

    def _transition(self, action):
        raise NotImplementedError("MetaWorldEnv overrides step()")

    def close(self) -> None:
        self._finalizer()


def _close_envs(pool: dict[str, list[Any]], rows: list[Any]) -> None:
    for env in [*rows, *(e for envs in pool.values() for e in envs)]:
        env.close()
    pool.clear()
    rows.clear()
