"""The few-shot task contract: configs, task batches and families.

A :class:`FewShotFamily` draws meta-batches of supervised few-shot tasks as one
:class:`FewShotBatch` of tensors with a leading *task* dimension ``T``:

* classification (N-way K-shot): ``support_x [T, N*K, *input_shape]`` float32 and
  ``support_y [T, N*K]`` int64 with labels ``0..N-1`` remapped per task (label ``i`` is the task's
  ``i``-th randomly drawn class), ``query_x [T, N*Q, ...]``, ``query_y [T, N*Q]``. Rows are
  class-major: the support holds ``K`` examples of label 0, then ``K`` of label 1, and so on
  (the same for the query with ``Q`` per class).
* regression: ``support_x [T, K, *input_shape]``, ``support_y [T, K, 1]`` float32, and the same for
  the query with ``Q`` points; ``ways`` is 0.

Meta-train, validation and meta-test tasks come from the ``"train"``, ``"val"`` and ``"test"``
splits. Classification families partition their classes, so a split never sees another split's
classes; regression families draw each split from its own generator stream (:meth:`tasks`).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, Literal

import torch

from adaptrl.core.config import Config
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")


def positive(name: str, value: float, minimum: float = 1) -> None:
    """Raise a :class:`ConfigError` unless ``value >= minimum`` (for call arguments such as
    per-call ``shots``; config fields declare their bounds in their annotations)."""
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def check_range(name: str, bounds: tuple[float, float]) -> None:
    """Raise a :class:`ConfigError` unless ``bounds`` is a ``(low, high)`` pair with low <= high."""
    if len(bounds) != 2 or not bounds[0] <= bounds[1]:
        raise ConfigError(f"{name} must be a (low, high) pair with low <= high, got {bounds}")


@dataclasses.dataclass(frozen=True)
class FewShotConfig(Config):
    """Base of every few-shot family's frozen config (mirrors ``adaptrl.envs.FamilyConfig``).

    Single-field ranges are declared in the annotations and checked on construction by
    :func:`~adaptrl.core.config.check_fields`; rules that tie several fields (or the two ends of
    a range) together go in :meth:`validate`, which runs after those checks.
    """

    family_id: ClassVar[str] = ""

    def validate(self) -> None:
        """Raise :class:`ConfigError` on impossible combinations of values. Subclasses extend."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.validate()


@dataclasses.dataclass
class FewShotBatch:
    """A meta-batch of ``T`` few-shot tasks (see the module docstring for shapes and label order)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    ways: int
    """N (classes per task); 0 for regression."""
    shots: int
    """K: support examples per class (regression: support points per task)."""
    queries: int
    """Q: query examples per class (regression: query points per task)."""
    classes: torch.Tensor | None = None
    """Classification: the global class id behind each label, ``[T, N]`` int64."""
    params: torch.Tensor | None = None
    """Regression: the parameters that define each task, ``[T, P]`` (sinusoid: amplitude, phase)."""

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def _map(self, fn) -> FewShotBatch:
        tensors = {
            f.name: (fn(v) if isinstance(v, torch.Tensor) else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }
        return FewShotBatch(**tensors)

    def to(self, device: str | torch.device) -> FewShotBatch:
        """The same tasks on ``device``."""
        return self._map(lambda t: t.to(device))

    def chunk(self, start: int, stop: int) -> FewShotBatch:
        """Tasks ``start:stop`` (a view, no copy)."""
        return self._map(lambda t: t[start:stop])

    @property
    def device(self) -> torch.device:
        return self.support_x.device


class FewShotFamily(abc.ABC):
    """A distribution over supervised few-shot tasks, with disjoint train / val / test splits."""

    family_id: ClassVar[str]
    config_cls: ClassVar[type[FewShotConfig]]
    kind: ClassVar[Literal["classification", "regression"]]

    def __init__(self, config: FewShotConfig | None = None):
        self.config = config if config is not None else self.config_cls()
        if not isinstance(self.config, self.config_cls):
            raise ConfigError(
                f"{self.family_id} takes a {self.config_cls.__name__}, got {type(config).__name__}"
            )

    input_shape: tuple[int, ...]
    """Shape of one input (``(1,)`` for sinusoid, ``(C, H, W)`` for images)."""

    @property
    def output_dim(self) -> int:
        """Model outputs: ways for classification, 1 for regression."""
        return self.config.ways if self.kind == "classification" else 1  # type: ignore[attr-defined]

    # --- sampling ---------------------------------------------------------------------------
    def sample(
        self,
        num_tasks: int,
        split: Split = "train",
        *,
        generator: torch.Generator,
        device: str | torch.device = "cpu",
        ways: int | None = None,
        shots: int | None = None,
        queries: int | None = None,
    ) -> FewShotBatch:
        """Draw ``num_tasks`` tasks of ``split`` with ``generator``.

        ``ways``, ``shots`` and ``queries`` override the config's values for this call (train with
        K=10, evaluate 5-shot). Tensors are computed on the generator's device, returned on
        ``device``.
        """
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        positive("number of tasks", num_tasks)
        c = self.config
        if self.kind == "regression":
            if ways not in (None, 0):
                raise ConfigError(f"{self.family_id} is a regression family: it has no ways")
            ways = 0
        else:
            ways = c.ways if ways is None else ways  # type: ignore[attr-defined]
            positive("ways", ways, 2)
        shots = c.shots if shots is None else shots  # type: ignore[attr-defined]
        queries = c.queries if queries is None else queries  # type: ignore[attr-defined]
        positive("shots", shots)
        positive("queries", queries)
        batch = self._sample(int(num_tasks), split, generator, int(ways), int(shots), int(queries))
        return batch.to(device)

    @abc.abstractmethod
    def _sample(
        self,
        num_tasks: int,
        split: Split,
        generator: torch.Generator,
        ways: int,
        shots: int,
        queries: int,
    ) -> FewShotBatch:
        """Draw tasks with already validated sizes (``ways`` is 0 for regression)."""

    def tasks(
        self,
        num_tasks: int,
        split: Split = "test",
        seed: int = 0,
        device: str | torch.device = "cpu",
        **overrides: int | None,
    ) -> FewShotBatch:
        """``num_tasks`` tasks of ``split`` drawn reproducibly from ``seed``.

        The generator is seeded with ``derive_seed(seed, family_id, "tasks", split)``, so each split
        (and each seed) is its own stream whatever ran before. ``overrides`` are ``ways``, ``shots``
        and ``queries`` as in :meth:`sample`.
        """
        unknown = sorted(set(overrides) - {"ways", "shots", "queries"})
        if unknown:
            raise ConfigError(f"tasks() takes ways, shots and queries, not {', '.join(unknown)}")
        gen = make_generator(seed, self.family_id, "tasks", split)
        return self.sample(num_tasks, split, generator=gen, device=device, **overrides)

    def describe(self) -> str:
        return f"{self.family_id}: {self.config}"


def class_major_labels(num_tasks: int, ways: int, per_class: int) -> torch.Tensor:
    """Labels ``[T, ways*per_class]``: ``per_class`` zeros, then ``per_class`` ones, ..."""
    return torch.arange(ways).repeat_interleave(per_class).expand(num_tasks, -1).contiguous()


def class_major_batch(images: torch.Tensor, shots: int, classes: torch.Tensor) -> FewShotBatch:
    """A classification batch from ``images [T, N, K+Q, *shape]`` (``N`` classes, ``K+Q``
    examples each): the first ``shots`` of every class are its support set, the rest its
    queries, both class-major; ``classes [T, N]`` are the global class ids."""
    num_tasks, ways, per_class, *shape = images.shape
    queries = per_class - shots
    return FewShotBatch(
        support_x=images[:, :, :shots].reshape(num_tasks, ways * shots, *shape),
        support_y=class_major_labels(num_tasks, ways, shots),
        query_x=images[:, :, shots:].reshape(num_tasks, ways * queries, *shape),
        query_y=class_major_labels(num_tasks, ways, queries),
        ways=ways,
        shots=shots,
        queries=queries,
        classes=classes,
    )


def sample_classes(
    num_tasks: int, num_classes: int, ways: int, generator: torch.Generator
) -> torch.Tensor:
    """``[T, ways]`` distinct indices in ``range(num_classes)`` per task, in random order."""
    if ways > num_classes:
        raise ConfigError(f"cannot draw {ways}-way tasks from a split with {num_classes} classes")
    keys = torch.rand(num_tasks, num_classes, generator=generator, device=generator.device)
    return keys.topk(ways, dim=1).indices
