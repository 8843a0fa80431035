"""The ``adaptrl`` commands as frozen dataclasses (parsed by tyro) and the functions that run them.

The CLI is thin: it parses, builds objects from the library, and calls them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Union

import tyro

from adaptrl.bench.baselines import BanditBenchConfig, MDPBenchConfig
from adaptrl.bench.throughput import ThroughputConfig
from adaptrl.envs import FAMILIES
from adaptrl.eval.protocol import EVAL_SEED

# One subcommand per registered family, named by its versioned id, taking its own config.
FamilyChoice = Union[  # type: ignore[valid-type]  # noqa: UP007  (built from the registry)
    tuple(
        Annotated[
            cls.config_cls,
            tyro.conf.subcommand(
                fid, description=(cls.__doc__ or cls.config_cls.__doc__ or "").strip()
            ),
        ]
        for fid, cls in FAMILIES.items()
    )
]

BenchChoice = Union[  # noqa: UP007  (tyro subcommands read best as a Union)
    Annotated[BanditBenchConfig, tyro.conf.subcommand("baselines-bandits")],
    Annotated[MDPBenchConfig, tyro.conf.subcommand("baselines-mdps")],
    Annotated[ThroughputConfig, tyro.conf.subcommand("env-throughput")],
]
BENCH_NAMES = ("baselines-bandits", "baselines-mdps", "env-throughput")


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
class BenchCmd:
    """Run a reproduction or speed benchmark."""

    bench: Annotated[BenchChoice, tyro.conf.arg(name="")]


@dataclasses.dataclass(frozen=True)
class PlotCmd:
    """Redraw the plots of a run directory (an evaluation's curve.png, a training run's metrics)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """The run directory."""


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


Command = Union[  # noqa: UP007
    Annotated[ListCmd, tyro.conf.subcommand("list")],
    Annotated[EvalCmd, tyro.conf.subcommand("eval")],
    Annotated[BenchCmd, tyro.conf.subcommand("bench")],
    Annotated[PlotCmd, tyro.conf.subcommand("plot")],
    Annotated[DemoCmd, tyro.conf.subcommand("demo")],
]


def parse_params(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``("ucb1.c=0.2",)`` -> ``{"ucb1": {"c": 0.2}}`` (values parsed as YAML scalars)."""
    import yaml

    from adaptrl.core.errors import ConfigError

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        agent, dot, param = head.rpartition(".")
        if not sep or not dot or not agent or not param:
            raise ConfigError(
                f"agent parameters look like AGENT.PARAM=VALUE (e.g. ucb1.c=0.2), got {item!r}"
            )
        out.setdefault(agent, {})[param] = yaml.safe_load(value)
    return out
