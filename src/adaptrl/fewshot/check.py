"""``check_fewshot_family``: verify that a few-shot family honours :mod:`adaptrl.fewshot.base`.

Run it on your own families (every built-in family goes through it in the tests). It checks:

* declarations: ``kind`` is ``"classification"`` or ``"regression"``, ``input_shape`` a tuple of
  positive ints, ``output_dim`` the config's ways (classification) or 1;
* every split (``splits``): :meth:`~FewShotFamily.tasks` gives ``num_tasks`` tasks with the
  batch's ``ways`` / ``shots`` / ``queries``, inputs float32 ``[T, N*K, *input_shape]`` and
  ``[T, N*Q, *input_shape]``, finite; classification labels int64 ``0..N-1`` in class-major order
  (``K`` of each in the support, ``Q`` in the query) and ``classes [T, N]`` distinct per task and
  inside the split's classes (``split_classes``, when the family has it); regression targets
  float32 ``[T, K, 1]`` / ``[T, Q, 1]``;
* determinism: the same seed gives identical batches, another seed different ones;
* splits: the class sets of the splits are pairwise disjoint (classification) or the task
  parameters never coincide (regression);
* keyword overrides: ``shots=2, queries=3`` (and ``ways=2``) change the shapes accordingly;
* ``chunk`` and ``len`` agree; a bad split name and zero tasks raise
  :class:`~adaptrl.core.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses

import torch

from adaptrl.core.errors import AdaptrlError, ConfigError
from adaptrl.fewshot.base import SPLITS, FewShotBatch, FewShotFamily


class FewShotContractError(AdaptrlError, AssertionError):
    """A few-shot family breaks the contract of :mod:`adaptrl.fewshot.base`; the message says where."""


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise FewShotContractError(f"{name}: {message}")


def _same(a: FewShotBatch, b: FewShotBatch) -> bool:
    for f in dataclasses.fields(FewShotBatch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
                return False
            if x.shape != y.shape or not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


def check_batch(
    family: FewShotFamily, b: FewShotBatch, num_tasks: int, ways: int, shots: int, queries: int
) -> None:
    """Shapes, dtypes and labels of one batch (see the module docstring)."""
    name = getattr(family, "family_id", type(family).__name__)
    shape = tuple(family.input_shape)
    _require(len(b) == num_tasks, name, f"got {len(b)} tasks, expected {num_tasks}")
    _require(
        (b.ways, b.shots, b.queries) == (ways, shots, queries),
        name,
        f"batch says ways/shots/queries {(b.ways, b.shots, b.queries)}, expected "
        f"{(ways, shots, queries)}",
    )
    n_support, n_query = max(ways, 1) * shots, max(ways, 1) * queries
    for what, x, n in (("support_x", b.support_x, n_support), ("query_x", b.query_x, n_query)):
        _require(
            tuple(x.shape) == (num_tasks, n, *shape),
            name,
            f"{what} has shape {tuple(x.shape)}, expected {(num_tasks, n, *shape)}",
        )
        _require(x.dtype == torch.float32, name, f"{what} is {x.dtype}, expected float32")
        _require(bool(torch.isfinite(x).all()), name, f"{what} has non-finite values")
    if family.kind == "regression":
        for what, y, n in (("support_y", b.support_y, shots), ("query_y", b.query_y, queries)):
            _require(
                tuple(y.shape) == (num_tasks, n, 1) and y.dtype == torch.float32,
                name,
                f"{what} is {y.dtype} {tuple(y.shape)}, expected float32 {(num_tasks, n, 1)}",
            )
        return
    for what, y, per in (("support_y", b.support_y, shots), ("query_y", b.query_y, queries)):
        expected = torch.arange(ways, device=y.device).repeat_interleave(per)
        _require(y.dtype == torch.int64, name, f"{what} is {y.dtype}, expected int64")
        _require(
            tuple(y.shape) == (num_tasks, ways * per) and bool((y == expected).all()),
            name,
            f"{what} must hold labels 0..{ways - 1} in class-major order, {per} of each",
        )
    _require(
        b.classes is not None and tuple(b.classes.shape) == (num_tasks, ways),
        name,
        f"classes must be [T, N] = {(num_tasks, ways)}",
    )
    assert b.classes is not None
    distinct = b.classes.sort(dim=1).values.diff(dim=1) > 0
    _require(bool(distinct.all()), name, "a task uses the same class for two labels")


def check_fewshot_family(
    family: FewShotFamily,
    num_tasks: int = 4,
    seed: int = 0,
    splits: tuple[str, ...] = SPLITS,
) -> None:
    """Verify ``family`` (see the module docstring); raise :class:`FewShotContractError` if not."""
    name = getattr(family, "family_id", type(family).__name__)
    _require(family.kind in ("classification", "regression"), name, f"bad kind {family.kind!r}")
    shape = family.input_shape
    _require(
        isinstance(shape, tuple) and all(isinstance(s, int) and s > 0 for s in shape),
        name,
        f"input_shape must be a tuple of positive ints, got {shape!r}",
    )
    config = family.config
    classification = family.kind == "classification"
    ways = config.ways if classification else 0  # type: ignore[attr-defined]
    _require(
        family.output_dim == (ways if classification else 1),
        name,
        f"output_dim is {family.output_dim}, expected {ways if classification else 1}",
    )
    shots, queries = config.shots, config.queries  # type: ignore[attr-defined]
    batches = {}
    for split in splits:
        b = family.tasks(num_tasks, split, seed=seed)
        check_batch(family, b, num_tasks, ways, shots, queries)
        _require(
            _same(b, family.tasks(num_tasks, split, seed=seed)),
            name,
            f"tasks({num_tasks}, {split!r}, seed={seed}) is not deterministic",
        )
        other = family.tasks(num_tasks, split, seed=seed + 1)
        _require(
            not torch.equal(other.query_x, b.query_x),
            name,
            f"seeds {seed} and {seed + 1} give the same {split} tasks",
        )
        part = b.chunk(1, num_tasks)
        _require(
            len(part) == num_tasks - 1 and torch.equal(part.query_x, b.query_x[1:]),
            name,
            "chunk(1, T) is not tasks 1..T-1",
        )
        batches[split] = b
    if classification and hasattr(family, "split_classes"):
        pools = {s: set(family.split_classes(s).tolist()) for s in splits}
        for s in splits:
            used = set(batches[s].classes.reshape(-1).tolist())  # type: ignore[union-attr]
            _require(used <= pools[s], name, f"{s} tasks use classes outside the {s} split")
            for t in splits:
                if s < t:
                    _require(not pools[s] & pools[t], name, f"splits {s} and {t} share classes")
    elif not classification and all(b.params is not None for b in batches.values()):
        for s in splits:
            for t in splits:
                if s < t:
                    dist = torch.cdist(batches[s].params.float(), batches[t].params.float())
                    _require(bool((dist > 0).all()), name, f"splits {s} and {t} share a task")
    small = {"shots": 2, "queries": 3} | ({"ways": 2} if classification else {})
    b = family.tasks(2, splits[0], seed=seed, **small)
    check_batch(family, b, 2, small.get("ways", 0), 2, 3)
    for bad in (lambda: family.tasks(1, "everything"), lambda: family.tasks(0, splits[0])):  # type: ignore[arg-type]
        try:
            bad()
        except ConfigError:
            continue
        raise FewShotContractError(f"{name}: a bad split name or zero tasks must raise ConfigError")
