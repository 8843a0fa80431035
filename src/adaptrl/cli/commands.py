"""The ``adaptrl`` commands as frozen dataclasses (parsed by tyro) and the functions that run them.

The CLI is thin: it parses, builds objects from the library, and calls them.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro

from adaptrl.envs import FamilyConfigUnion
from adaptrl.eval.learners import EvalOptions
from adaptrl.eval.protocol import EVAL_SEED

# One subcommand per registered family, named by its versioned id, taking its own config.
FamilyChoice = FamilyConfigUnion


@dataclasses.dataclass(frozen=True)
class ListCmd:
    """List task families (with their options), agents and benchmarks."""


@dataclasses.dataclass(frozen=True)
class EvalCmd:
    """Evaluate agents on held-out tasks of a family; writes a run directory with results.json,
    report.md, curve.png, metrics.csv, TensorBoard events and resumable checkpoints."""

    family: Annotated[FamilyChoice, tyro.conf.arg(name="")]  # type: ignore[valid-type]
    agents: tuple[str, ...] = ("random",)
    """Agent ids (see `adaptrl list`)."""
    params: tuple[str, ...] = ()
    """Agent parameters as AGENT.PARAM=VALUE, e.g. ucb1.c=0.2 eps-greedy.eps=0.05."""
    num_tasks: int = 1000
    """Held-out test tasks."""
    episodes: int | None = None
    """Episodes per trial (the adaptation budget); default: the family's n."""
    eval_seed: int = EVAL_SEED
    """Seed of the held-out tasks and environment noise (keep it fixed to compare runs)."""
    seeds: tuple[int, ...] = (0,)
    """Agent seeds; with several, CIs are over the per-seed means."""
    out: Path = Path("runs/eval")
    """Run directory to create (must not exist or be empty)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    chunk_size: int = 1000
    """Tasks evaluated at once (lower it if a batch does not fit the device)."""
    resume: Path | None = None
    """Continue a killed evaluation from its run directory (other options are read from it)."""


@dataclasses.dataclass(frozen=True)
class PlotCmd:
    """Redraw the plots of a run directory (an evaluation's curve.png, a training run's metrics),
    or draw several gradient learners' evaluations on the same tasks in one plot (--beside)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """The run directory."""
    beside: tuple[Path, ...] = ()
    """Evaluations of other learners on the same held-out tasks (their directories or
    results.json), drawn beside RUN_DIR's adaptation curves in one report."""
    out: Path | None = None
    """Where the --beside report goes (results.json, report.md, curve.png); default
    RUN_DIR/beside."""


@dataclasses.dataclass(frozen=True)
class DemoCmd:
    """A quick tour: every family with its classic baselines, written to a report with plots."""

    out: Path = Path("runs/demo")
    """Where the demo report goes (overwritten)."""
    num_tasks: int = 500
    """Held-out tasks per family."""
    device: str = "cpu"
    """cpu, cuda or auto."""
    rl2_iterations: int = 200
    """Outer iterations of the RL² trained live on bandits n=10, k=5 (0 skips it)."""


@dataclasses.dataclass(frozen=True)
class TrainHelp:
    """Meta-train an algorithm: adaptrl train ALGO [FAMILY] [options] (adaptrl train --help lists
    the algorithms; adaptrl train --resume RUN_DIR continues a killed run)."""


@dataclasses.dataclass(frozen=True)
class BenchHelp:
    """Run a reproduction or speed benchmark: adaptrl bench NAME [options] (adaptrl bench --help
    lists them)."""


@dataclasses.dataclass(frozen=True)
class AdaptHelp:
    """Adapt a trained learner to new tasks and save the adapted parameters: adaptrl adapt RUN_DIR."""


# train, bench and adapt are dispatched by hand in main.py; these entries give `adaptrl --help`.
Command = Union[  # noqa: UP007
    Annotated[ListCmd, tyro.conf.subcommand("list")],
    Annotated[TrainHelp, tyro.conf.subcommand("train")],
    Annotated[EvalCmd, tyro.conf.subcommand("eval")],
    Annotated[AdaptHelp, tyro.conf.subcommand("adapt")],
    Annotated[BenchHelp, tyro.conf.subcommand("bench")],
    Annotated[PlotCmd, tyro.conf.subcommand("plot")],
    Annotated[DemoCmd, tyro.conf.subcommand("demo")],
]


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Where and how a training run goes (the algorithm's own options come from its config)."""

    out: Path | None = None
    """Run directory to create (must not exist or be empty); default runs/ALGO/<UTC time>."""
    seed: int = 0
    """Training seed (tasks, rollouts, initialisation)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    checkpoint_every: int = 50
    """Save a resumable checkpoint every this many outer iterations (and at the end)."""
    keep: int = 2
    """Checkpoints kept (the newest)."""
    final_eval_tasks: int = 0
    """When > 0, evaluate the trained learner on this many held-out tasks into RUN_DIR/eval."""


def train_command(config_cls: type) -> type:
    """The ``adaptrl train ALGO`` command: the algorithm's config flags plus :class:`TrainOptions`."""
    algo = ("algo", Annotated[config_cls, tyro.conf.arg(name="")])
    cls = dataclasses.make_dataclass(
        f"Train{config_cls.__name__}",
        [(*algo, dataclasses.field(default_factory=config_cls))],
        bases=(TrainOptions,),  # inherited fields keep their docstrings (tyro's --help text)
        frozen=True,
        namespace={"__module__": __name__},
    )
    cls.__doc__ = (config_cls.__doc__ or "").strip()
    return cls


@dataclasses.dataclass(frozen=True)
class EvalRunCmd:
    """Evaluate a trained run on held-out tasks: trials beside classic agents (memory learners) or
    the metric after 0..S gradient steps (gradient learners). Writes results.json, report.md and
    curve.png."""

    options: Annotated[EvalOptions, tyro.conf.arg(name="")] = EvalOptions()
    out: Path | None = None
    """Where the report goes; default RUN_DIR/eval. Add ``--family ID [options]`` last to evaluate
    on another family's tasks with the same spaces; its options start from that family's
    defaults, not from the run's."""


@dataclasses.dataclass(frozen=True)
class AdaptCmd:
    """Adapt a trained gradient-based learner to new tasks and save the adapted parameters
    (safetensors + JSON, with the task parameters)."""

    num_tasks: int = 10
    """Tasks to adapt to."""
    steps: int | None = None
    """Inner gradient steps; default: the learner's own."""
    split: str = "test"
    """Task split the tasks come from."""
    task_seed: int = EVAL_SEED
    """Seed of the tasks."""
    seed: int = 0
    """Seed of the adaptation's own sampling (rollouts)."""
    inner_lrs: tuple[float, ...] = ()
    """Step sizes of the steps, the last repeated (MAML-RL); default: the run's own schedule."""
    eval_batch: Literal["episodes", "steps"] | None = None
    """What each adaptation batch holds (MAML-RL): "episodes" or "steps"; default: the run's own."""
    out: Path | None = None
    """Checkpoint path (without suffix); default RUN_DIR/adapted. Add ``--family ID [options]``
    last to adapt to another family's tasks with the same spaces (e.g. other goal ranges); its
    options start from that family's defaults, not from the run's."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""


def family_command(cls: type) -> type:
    """``cls`` (a command on a trained run) plus the family whose tasks it runs on, for
    ``adaptrl adapt|eval RUN_DIR ... --family ID [family options]`` (default: the run's own)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [
        ("family", Annotated[FamilyChoice, tyro.conf.arg(name="")]),  # type: ignore[valid-type]
        *[(f.name, hints[f.name], f) for f in dataclasses.fields(cls)],
    ]
    return dataclasses.make_dataclass(
        f"{cls.__name__}WithFamily", fields, frozen=True, namespace={"__doc__": cls.__doc__}
    )
