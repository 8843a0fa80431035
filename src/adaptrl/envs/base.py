"""The task-family and batched-environment contracts every family follows.

A :class:`TaskFamily` samples task parameters (plain tensors in a :class:`TaskBatch`) and builds a
:class:`BatchedEnv` that steps ``num_envs`` environments at once, row ``i`` bound to task ``i``.

Step semantics (documented once, here):

* ``reset(seed)`` starts a new episode in every row and returns ``obs [B, *obs_shape]``.
* ``step(action)`` returns a :class:`Step`. Auto-reset is *same-step*: where an episode ended
  (``terminated | truncated``), ``obs`` is already the first observation of the next episode of the
  same task and ``final_obs`` holds the observation the last action led to. Elsewhere the two agree.
* ``terminated`` means the MDP reached a terminal state (a bandit pull, a navigation goal);
  ``truncated`` means the episode hit the family's ``max_episode_steps`` (Gymnasium's convention for
  time limits, also used for fixed-horizon tabular episodes). Never both.
* Tasks stay bound to rows across episodes (a *trial*) until ``set_tasks`` is called again;
  ``set_tasks`` takes effect at the next ``reset``.
* No Python loop over rows and no host synchronisation inside ``step``.
* Success (optional): a family with a notion of task success (Meta-World) sets the class attribute
  ``reports_success = True``; its env's ``success`` attribute is then a ``[num_envs]`` bool
  tensor, all False after ``reset`` and, after each ``step``, whether that step's transition (the
  one that led to ``final_obs``) succeeded. Elsewhere ``success`` stays ``None``. It is an
  attribute rather than a sixth field of :class:`Step` so that code unpacking a step's five fields
  keeps working; read it right after ``step``, the next step overwrites it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, NamedTuple

import gymnasium as gym
import torch

from adaptrl.core.config import Config
from adaptrl.core.distributed import Rows
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator

Split = Literal["train", "test"]


@dataclasses.dataclass(frozen=True)
class TaskBatch:
    """Parameters of ``n`` tasks: a mapping of names to tensors whose first dimension is ``n``."""

    params: Mapping[str, torch.Tensor]

    def __post_init__(self) -> None:
        sizes = {k: v.shape[0] for k, v in self.params.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"task tensors disagree on the batch size: {sizes}")

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0] if self.params else 0

    def __getitem__(self, index: Any) -> TaskBatch:
        """Select tasks by an int, slice, index tensor or mask; an int keeps a batch of one."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return TaskBatch({k: v[index] for k, v in self.params.items()})

    def __getattr__(self, name: str) -> torch.Tensor:
        try:
            return self.params[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: str | torch.device) -> TaskBatch:
        return TaskBatch({k: v.to(device) for k, v in self.params.items()})

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    @staticmethod
    def cat(batches: list[TaskBatch]) -> TaskBatch:
        keys = batches[0].params.keys()
        return TaskBatch({k: torch.cat([b.params[k] for b in batches]) for k in keys})

    def equal(self, other: TaskBatch) -> bool:
        return self.params.keys() == other.params.keys() and all(
            torch.equal(self.params[k], other.params[k]) for k in self.params
        )


class Step(NamedTuple):
    """What ``BatchedEnv.step`` returns; every field has leading dimension ``num_envs``."""

    obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: torch.Tensor


@dataclasses.dataclass(frozen=True)
class FamilyConfig(Config):
    """Base of every family's frozen config. ``episodes_per_trial`` is the default trial length.

    Single-field ranges are declared in the annotations (``n: Size = 10``, ``k: Annotated[int,
    Ge(2)]``) and checked on construction by :func:`~adaptrl.core.config.check_fields`; rules that
    tie several fields together go in :meth:`validate`, which runs after those checks.
    """

    family_id: ClassVar[str] = ""

    def validate(self) -> None:
        """Raise :class:`ConfigError` on impossible combinations of values. Subclasses extend."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.validate()


def positive(name: str, value: float, minimum: float = 1) -> None:
    """Raise a :class:`ConfigError` unless ``value >= minimum`` (for arguments that are not
    config fields: task counts, batch sizes)."""
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


class TaskFamily(ABC):
    """A distribution over tasks plus the batched environment that runs them."""

    family_id: ClassVar[str]
    config_cls: ClassVar[type[FamilyConfig]]

    def __init__(self, config: FamilyConfig | None = None):
        self.config = config if config is not None else self.config_cls()
        if not isinstance(self.config, self.config_cls):
            raise ConfigError(
                f"{self.family_id} takes a {self.config_cls.__name__}, got {type(config).__name__}"
            )

    reports_success: ClassVar[bool] = False
    """Whether the family's envs report success (``BatchedEnv.success``; module docstring)."""

    # --- what every family declares -------------------------------------------------------
    observation_space: gym.Space
    action_space: gym.Space
    max_episode_steps: int
    episodes_per_trial: int

    @abstractmethod
    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        """Draw ``n`` tasks from the family's distribution (on the generator's device)."""

    @abstractmethod
    def make_env(self, num_envs: int, device: str | torch.device = "cpu") -> BatchedEnv:
        """A batched environment of ``num_envs`` rows on ``device``."""

    # --- reproducible meta-train / meta-test split -----------------------------------------
    def tasks(
        self, n: int, split: Split, seed: int, device: str | torch.device = "cpu"
    ) -> TaskBatch:
        """``n`` tasks of ``split`` drawn reproducibly from ``seed``.

        The default draws train and test tasks from independent, domain-separated generator
        streams; for continuous task spaces the two never coincide (probability one).
        Families with a finite task space override this to partition the space so that test
        tasks are never trained on.
        """
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        positive("number of tasks", n)
        gen = make_generator(seed, self.family_id, "tasks", split, device=device)
        return self.sample_tasks(n, gen)

    def check_meta_batch(self, n: int, what: str = "meta_batch_size") -> None:
        """Refuse a meta-training batch of ``n`` tasks the family cannot draw as its benchmark
        does (a :class:`ConfigError` naming ``what``); any size is fine by default."""

    def task_keys(self, tasks: TaskBatch) -> torch.Tensor:
        """One row per task identifying it (for split-disjointness checks); default: flattened params."""
        return torch.cat([v.reshape(len(tasks), -1).float() for v in tasks.params.values()], dim=1)

    def describe(self) -> str:
        return f"{self.family_id}: {self.config}"


class BatchedEnv(ABC):
    """Steps ``num_envs`` environments at once; see the module docstring for the semantics.

    Subclasses keep their state in tensors and implement :meth:`_reset_rows` and
    :meth:`_transition`; this class handles time limits, auto-reset and argument checks.
    """

    def __init__(self, family: TaskFamily, num_envs: int, device: str | torch.device = "cpu"):
        positive("num_envs", num_envs)
        self.family = family
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.max_episode_steps = family.max_episode_steps
        self.observation_space = family.observation_space
        self.action_space = family.action_space
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0)
        self.tasks: TaskBatch | None = None
        self._pending_tasks: TaskBatch | None = None
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._started = False
        self.rows = Rows.all(self.num_envs)
        self.success: torch.Tensor | None = None
        """``[num_envs]`` bool: success of the last step, for families with
        ``reports_success`` (module docstring); ``None`` otherwise."""

    def set_rows(self, rows: Rows) -> None:
        """Make this environment's rows the block ``rows`` of a larger batch (one process's share
        of a meta-batch): its random draws and per-row seeds are then those of the same rows of
        the whole batch, whichever process steps them (:mod:`adaptrl.core.distributed`)."""
        if rows.count != self.num_envs:
            raise ConfigError(f"a block of {rows.count} rows for {self.num_envs} environments")
        self.rows = rows

    def set_tasks(self, tasks: TaskBatch) -> None:
        """Bind row ``i`` to ``tasks[i]`` from the next :meth:`reset` on."""
        if len(tasks) != self.num_envs:
            raise ConfigError(f"got {len(tasks)} tasks for {self.num_envs} environments")
        self._pending_tasks = tasks.to(self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start a new episode in every row; ``seed`` reseeds the environment's own generator."""
        if self._pending_tasks is not None:
            self.tasks = self._pending_tasks
            self._pending_tasks = None
            self._bind_tasks(self.tasks)
        if self.tasks is None:
            raise ConfigError("call set_tasks(tasks) before reset(): every row needs a task")
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self.elapsed.zero_()
        self._started = True
        all_rows = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        return self._reset_rows(all_rows)

    def step(self, action: torch.Tensor) -> Step:
        if not self._started:
            raise ConfigError("call reset() before step()")
        action = self._check_action(action)
        next_obs, reward, terminated = self._transition(action)
        self.elapsed += 1
        done = (self.elapsed >= self.max_episode_steps) | terminated
        truncated = done ^ terminated  # a time limit only where the MDP did not terminate
        obs = self._reset_rows(done)
        self.elapsed.masked_fill_(done, 0)
        return Step(obs, reward, terminated, truncated, next_obs)

    # --- for subclasses ---------------------------------------------------------------------
    def _bind_tasks(self, tasks: TaskBatch) -> None:
        """Precompute whatever the dynamics need from the newly bound tasks."""

    @abstractmethod
    def _reset_rows(self, mask: torch.Tensor) -> torch.Tensor:
        """Reset the internal state where ``mask`` is true (with ``torch.where``, no branching on
        data) and return the current observation of every row."""

    @abstractmethod
    def _transition(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every row by one action; return ``(next_obs, reward, terminated)``."""

    def _rand(self, *tail: int) -> torch.Tensor:
        """Uniform noise ``[num_envs, *tail]`` from the environment's generator (drawn for the
        whole batch of :attr:`rows`)."""
        shape = (self.num_envs, *tail)
        return self.rows.draw(torch.rand, shape, self.generator, device=self.device)

    def _randn(self, *tail: int) -> torch.Tensor:
        """Standard normal noise ``[num_envs, *tail]``, as :meth:`_rand`."""
        shape = (self.num_envs, *tail)
        return self.rows.draw(torch.randn, shape, self.generator, device=self.device)

    def _check_action(self, action: torch.Tensor) -> torch.Tensor:
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            expected: tuple[int, ...] = (self.num_envs,)
            action = torch.as_tensor(action, device=self.device)
            if action.dtype.is_floating_point:
                raise ConfigError(f"discrete actions must be integers, got {action.dtype}")
        else:
            expected = (self.num_envs, *space.shape)
            action = torch.as_tensor(action, device=self.device, dtype=torch.float32)
        if tuple(action.shape) != expected:
            raise ConfigError(f"action batch has shape {tuple(action.shape)}, expected {expected}")
        return action

    def close(self) -> None:
        """Release resources (nothing to do for tensor environments)."""
