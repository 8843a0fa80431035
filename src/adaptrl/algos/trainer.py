"""The one training loop every meta-learner and benchmark uses, and the run directory it writes.

::

    runs/NAME/
        config.yaml     {algo, seed, device, checkpoint_every, keep, config: {...}}
        metrics.csv     one row per outer iteration (+ tb/ TensorBoard events)
        checkpoints/    step-<iteration>.safetensors + .json, the newest ``keep`` of them
        model.*         the final learner state

A run killed at any point continues with :func:`train_run` ``(resume=True)`` from its newest
checkpoint: the learner state holds every generator, so the resumed run is bit-identical to an
uninterrupted one, and metrics rows written after that checkpoint are dropped before appending.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import torch

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import ALGOS, algo_of_config
from adaptrl.core import distributed
from adaptrl.core.checkpoint import load_state, read_checkpoint_meta, save_state
from adaptrl.core.config import config_from_dict, config_to_dict
from adaptrl.core.errors import CheckpointError, ConfigError, TrainingError
from adaptrl.core.logging import MetricLogger
from adaptrl.core.progress import progress
from adaptrl.core.rundir import RunDir

MODEL = "model"
TRAIN_SECONDS = "train_seconds"
"""Checkpoint and model metadata: wall-clock seconds of training so far, over every resume."""


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What ``config.yaml`` of a training run holds."""

    algo: str
    config: Any
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 50
    keep: int = 2
    final_eval_tasks: int = 0
    """Held-out tasks the CLI evaluates the trained learner on (0: none)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "seed": self.seed,
            "device": self.device,
            "checkpoint_every": self.checkpoint_every,
            "keep": self.keep,
            "final_eval_tasks": self.final_eval_tasks,
            "config": config_to_dict(self.config),
        }


def new_run(
    path: str | Path,
    config: Any,
    *,
    seed: int = 0,
    device: str = "cpu",
    checkpoint_every: int = 50,
    keep: int = 2,
    final_eval_tasks: int = 0,
) -> RunDir:
    """Create the run directory ``path`` (refused if it exists and is not empty) and its config."""
    import yaml

    from adaptrl.core.checkpoint import atomic_write

    if checkpoint_every < 1 or keep < 1:
        raise ConfigError("checkpoint_every and keep must be >= 1")
    if final_eval_tasks < 0:
        raise ConfigError(f"final_eval_tasks must be >= 0, got {final_eval_tasks}")
    spec = algo_of_config(config)
    path = Path(path)
    run = RunDir.create(path.parent, path.name)
    record = RunRecord(
        spec.name, config, seed, str(device), checkpoint_every, keep, final_eval_tasks
    )
    atomic_write(run.config_path, yaml.safe_dump(record.to_dict(), sort_keys=False).encode())
    return run


def save_trained(path: str | Path, learner: MetaLearner, config: Any, *, seed: int) -> RunDir:
    """Write a learner trained outside a run (a benchmark's) as a run directory whose model
    ``adaptrl eval`` / ``adaptrl adapt`` load like any trained run's."""
    run = new_run(path, config, seed=seed, device=str(learner.device))
    save_state(run.path / MODEL, learner.state_dict(), {"algo": learner.name})
    return run


def export_model(source: str | Path, dest: str | Path, *, iteration: int | None = None) -> RunDir:
    """Write the model of run ``source`` (its final model, or its checkpoint at ``iteration``) as
    a small run directory ``dest``: its ``config.yaml`` and a ``model`` without the state only
    training needs (``MetaLearner.training_only``), which ``adaptrl eval`` / ``adapt`` score and
    adapt like the original. The models behind published figures are shipped this way."""
    run, record = read_run(source)
    if iteration is None:
        learner = load_trained(source)
    else:
        learner = build_learner(record)
        state, _ = load_state(run.checkpoint_path(iteration), map_location=learner.device)
        learner.load_state_dict(state)
    out = new_run(
        dest,
        record.config,
        seed=record.seed,
        device=record.device,
        checkpoint_every=record.checkpoint_every,
        keep=record.keep,
    )
    state = {k: v for k, v in learner.state_dict().items() if k not in learner.training_only}
    meta = {"algo": learner.name, "exported_from": str(source)}
    seconds = training_seconds(source, iteration=iteration)
    if seconds is not None:
        meta[TRAIN_SECONDS] = seconds
    save_state(out.path / MODEL, state, meta)
    return out


def trained_state(run: RunDir) -> Path | None:
    """The state a run's learner is loaded from: its final model, else its newest checkpoint."""
    model = run.path / MODEL
    return model if model.with_suffix(".json").exists() else run.latest_checkpoint()


def training_seconds(path: str | Path, *, iteration: int | None = None) -> float | None:
    """Wall-clock seconds a run (or exported model) trained for, over every resume, up to its
    final model (or its checkpoint at ``iteration``); None if it does not record them (runs
    trained before the trainer did)."""
    run = RunDir.open(path)
    source = run.checkpoint_path(iteration) if iteration is not None else trained_state(run)
    if source is None:
        return None
    seconds = read_checkpoint_meta(source).get("meta", {}).get(TRAIN_SECONDS)
    return None if seconds is None else float(seconds)


def read_run(path: str | Path) -> tuple[RunDir, RunRecord]:
    """Open a training run directory and read its record (strictly: unknown keys are errors)."""
    run = RunDir.open(path)
    data = run.config_dict()
    if "algo" not in data or "config" not in data:
        raise ConfigError(
            f"{run.path} is not a training run (its config.yaml has no 'algo'); "
            "`adaptrl eval FAMILY --agents ...` evaluations cannot be resumed or evaluated this way"
        )
    spec = ALGOS.get(data["algo"])
    config = config_from_dict(spec.config_cls, data["config"] or {})
    fields = {"algo", "config", "seed", "device", "checkpoint_every", "keep", "final_eval_tasks"}
    extra = set(data) - fields
    if extra:
        raise ConfigError(f"{run.config_path}: unknown key(s) {sorted(extra)}")
    record = RunRecord(
        spec.name,
        config,
        int(data.get("seed", 0)),
        str(data.get("device", "cpu")),
        int(data.get("checkpoint_every", 50)),
        int(data.get("keep", 2)),
        int(data.get("final_eval_tasks", 0)),
    )
    return run, record


def _with_family(config: Any, family: Any) -> Any:
    """``config`` (an RL learner's) with its task family replaced by ``family``, whose observation
    and action spaces must equal the trained family's (the policy's shapes come from them)."""
    from adaptrl.envs import make_family

    old, new = make_family(config.family), make_family(family)
    for space in ("observation_space", "action_space"):
        if getattr(old, space) != getattr(new, space):
            raise ConfigError(
                f"{new.family_id} has {space} {getattr(new, space)}, the run was trained on "
                f"{old.family_id} with {getattr(old, space)}: the policy cannot act there"
            )
    return dataclasses.replace(config, family=family)


def build_learner(record: RunRecord, device: str | torch.device | None = None) -> MetaLearner:
    from adaptrl.core.device import resolve_device

    spec = ALGOS.get(record.algo)
    dev = resolve_device(record.device if device is None else device)
    return spec.learner_cls(record.config, seed=record.seed, device=dev)


def to_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as floats with one device->host copy for all tensor values."""
    keys = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
    out: dict[str, float] = {}
    if keys:
        stacked = torch.stack([metrics[k].detach().reshape(()).double().cpu() for k in keys])
        out.update(zip(keys, stacked.tolist(), strict=True))
    for k, v in metrics.items():
        if k not in out:
            out[k] = float(v)
    return {k: out[k] for k in metrics}


CHECKPOINT_MINUTES = 10.0
"""A run also checkpoints after any iteration ending this long after its last checkpoint."""


def _now() -> float:
    """The clock of time-based checkpoints (a function, so tests can replace it)."""
    return time.perf_counter()


def train(
    learner: MetaLearner,
    run: RunDir | None = None,
    *,
    iterations: int,
    checkpoint_every: int = 50,
    keep: int = 2,
    checkpoint_minutes: float | None = CHECKPOINT_MINUTES,
    show_progress: bool = True,
    resume: bool = False,
    description: str | None = None,
    on_iteration: Callable[[MetaLearner, dict[str, float]], bool | None] | None = None,
) -> MetaLearner:
    """Run ``learner.meta_train_step`` until it has done ``iterations``: the one training loop.

    In a run directory (``run``) every iteration's metrics go to ``metrics.csv`` and TensorBoard,
    a checkpoint is written every ``checkpoint_every`` iterations, after any iteration that ends
    ``checkpoint_minutes`` or more after the last checkpoint (so that a run of slow iterations
    loses little when killed; None: never by time) and at the end (the newest ``keep`` kept), and
    the final state as ``model``; ``resume`` first loads the newest
    checkpoint. Without one (benchmarks, examples) the learner trains in memory. Either way a NaN
    or infinite metric stops training with a :class:`TrainingError` naming the iteration and the
    metric, and ``on_iteration(learner, metrics)`` runs after every iteration; returning True
    ends training there (a run then saves its state as if it had finished).

    Under ``torchrun`` every process runs this loop on its share of the meta-batch
    (:mod:`adaptrl.core.distributed`); the learners' states stay identical, and only the first
    process writes the run directory and shows progress.
    """
    if iterations < 0:
        raise ConfigError(f"iterations must be >= 0, got {iterations}")
    if checkpoint_every < 1 or keep < 1:
        raise ConfigError("checkpoint_every and keep must be >= 1")
    world = distributed.current()
    if world.size > 1 and not learner.distributed:
        able = [n for n, s in ALGOS.items() if s.learner_cls.distributed]
        raise ConfigError(
            f"{learner.name} trains in one process; run it without torchrun (learners that "
            f"split their meta-batch across processes: {', '.join(able)})"
        )
    main = world.is_main
    before = 0.0  # seconds of training before this call, carried by the checkpoints
    if resume and run is not None:
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            state, meta = load_state(ckpt, map_location=learner.device)
            learner.load_state_dict(state)
            before = float(meta.get(TRAIN_SECONDS, 0.0))
    world.check_same(learner.iteration, "the iteration to start from")
    with contextlib.ExitStack() as stack:
        logger = stack.enter_context(MetricLogger(run)) if run is not None and main else None
        if logger is not None and resume:
            logger.truncate_after(learner.iteration)
        start, t0 = learner.iteration, time.perf_counter()
        label = description or f"train {learner.name}"
        bar = stack.enter_context(
            progress(total=iterations, description=label, disable=not (show_progress and main))
        )
        bar.update(completed=start)
        saved = _now()
        while learner.iteration < iterations:
            metrics = to_numbers(learner.meta_train_step())
            _check_finite(metrics, learner.iteration, run)
            if logger is not None:
                logger.log(learner.iteration, metrics)
            stop = bool(on_iteration(learner, metrics)) if on_iteration is not None else False
            end = stop or learner.iteration == iterations
            late = checkpoint_minutes is not None and _now() - saved >= 60 * checkpoint_minutes
            due = learner.iteration % checkpoint_every == 0 or end or late
            if run is not None and main and due:
                seconds = {TRAIN_SECONDS: before + time.perf_counter() - t0}
                save_state(run.checkpoint_path(learner.iteration), learner.state_dict(), seconds)
                run.prune_checkpoints(keep)
                saved = _now()
            rate = (learner.iteration - start) / max(time.perf_counter() - t0, 1e-9)
            shown = {k: metrics[k] for k in list(metrics)[:2]}
            bar.update(completed=learner.iteration, **shown, it_s=rate)
            if stop:
                break
    if run is not None and main:
        meta = {"algo": learner.name, TRAIN_SECONDS: before + time.perf_counter() - t0}
        save_state(run.path / MODEL, learner.state_dict(), meta)
    return learner


def _check_finite(metrics: Mapping[str, float], iteration: int, run: RunDir | None) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        kept = (
            ""
            if run is None
            else f" (checkpoints up to the last finite iteration are in {run.checkpoint_dir})"
        )
        raise TrainingError(
            f"{', '.join(bad)} became {metrics[bad[0]]} at iteration {iteration}; lower the "
            "learning rate or check the inputs" + kept
        )


def train_run(
    path: str | Path,
    *,
    resume: bool = False,
    show_progress: bool = True,
    on_iteration: Callable[[MetaLearner, dict[str, float]], None] | None = None,
    learner: MetaLearner | None = None,
) -> MetaLearner:
    """Train (or, with ``resume``, continue) the run at ``path`` made by :func:`new_run`;
    ``learner``: one already built from the run's record (the CLI builds it before creating the
    run directory, so that a config it refuses leaves nothing behind)."""
    run, record = read_run(path)
    learner = build_learner(record) if learner is None else learner
    return train(
        learner,
        run,
        iterations=record.config.iterations,
        checkpoint_every=record.checkpoint_every,
        keep=record.keep,
        show_progress=show_progress,
        resume=resume,
        on_iteration=on_iteration,
    )


L = TypeVar("L", bound=MetaLearner)


@overload
def load_trained(
    path: str | Path, device: str | torch.device | None = None, *, family: Any = None
) -> MetaLearner: ...
@overload
def load_trained(
    path: str | Path,
    device: str | torch.device | None = None,
    *,
    expect: type[L],
    family: Any = None,
) -> L: ...
def load_trained(
    path: str | Path,
    device: str | torch.device | None = None,
    *,
    expect: type[MetaLearner] | None = None,
    family: Any = None,
) -> MetaLearner:
    """Rebuild a trained learner from a run directory (its final model, else newest checkpoint).

    With ``expect`` a run of another algorithm is refused before its weights are read. With
    ``family`` (an RL family config) the learner acts on that family's tasks instead of its
    training family's, e.g. goals outside the training range; its spaces must be the same."""
    run, record = read_run(path)
    if expect is not None and record.algo != expect.name:
        raise ConfigError(f"{run.path} is a {record.algo} run, not a {expect.name} one")
    if family is not None:
        if ALGOS.get(record.algo).kind != "rl":
            raise ConfigError(f"{record.algo} learns few-shot tasks; a family replaces RL tasks")
        record = dataclasses.replace(record, config=_with_family(record.config, family))
    learner = build_learner(record, device)
    source = trained_state(run)
    if source is None:
        raise CheckpointError(
            f"{run.path} has no model or checkpoint yet; train it (`adaptrl train --resume "
            f"{run.path}`) first"
        )
    state, _ = load_state(source, map_location=learner.device)
    learner.load_state_dict(state)
    return learner
