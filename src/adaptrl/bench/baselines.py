"""``adaptrl bench baselines-bandits`` and ``baselines-mdps``: the classic columns of RL² Tables 1-2.

Each setting evaluates the classic agents on the same held-out tasks (fixed evaluation seed) and
prints ours beside the paper's number. Parameters the paper grid-searched (UCB1's ``c``,
epsilon-greedy's ``eps``) are tuned here on *meta-train* tasks only, then frozen for the test tasks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adaptrl.bench.common import table_markdown, write_bench
from adaptrl.bench.reference import (
    BANDIT_TARGETS,
    MDP_TARGETS,
    RL2_TABLE1,
    RL2_TABLE1_SOURCE,
    RL2_TABLE2,
    RL2_TABLE2_SOURCE,
)
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Size
from adaptrl.core.errors import ConfigError
from adaptrl.core.progress import progress
from adaptrl.core.table import print_table
from adaptrl.envs import make_family
from adaptrl.envs.base import TaskFamily
from adaptrl.eval.protocol import EVAL_SEED, evaluate, tune_agent
from adaptrl.eval.stats import within


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row per setting: an agent, the paper column it is compared with, fixed parameters, and
    at most one parameter to tune on meta-train tasks (the paper grid-searched UCB1's c and eps)."""

    agent: str
    column: str
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: dict[str, Sequence[float]] = dataclasses.field(default_factory=dict)


BANDIT_AGENTS = [
    Entry("random", "random"),
    Entry("gittins", "gittins"),
    Entry("thompson", "thompson"),
    Entry("ots", "ots"),
    Entry("ucb1", "ucb1", grid={"c": (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)}),
    Entry("eps-greedy", "eps_greedy", grid={"eps": (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)}),
    Entry("greedy", "greedy"),
]
MDP_AGENTS = [
    Entry("random", "random"),
    Entry("psrl", "psrl"),  # exact Bayes: the family's true N(1, 1) reward prior
    Entry("psrl", "psrl", fixed={"reward_prior_mean": 0.0}),  # a N(0, 1) reward prior
    Entry("eps-greedy-mdp", "eps_greedy", grid={"eps": (0.0, 0.02, 0.05, 0.1, 0.2)}),
    Entry("greedy-mdp", "greedy"),
    Entry("oracle", ""),  # the value-iteration upper bound; no paper column
]
ALL_BANDIT_SETTINGS = tuple(f"{n}x{k}" for n in (10, 100, 500) for k in (5, 10, 50))
ALL_MDP_SETTINGS = ("10", "25", "50", "75", "100")


@dataclasses.dataclass(frozen=True)
class ClassicsBench(Config):
    """What the two classic-agent benches share (each sets its settings and output folder)."""

    quick: bool = False
    """Fewer tasks (200) and, unless --settings is given, only the first settings that carry
    targets (10x5 and 100x5; n = 10 and 25): for tests and CI."""
    settings: tuple[str, ...] = ALL_BANDIT_SETTINGS
    """Settings: 'n x k' (pulls x arms, e.g. 10x5) for bandits, episodes n for MDPs."""
    num_tasks: Size = 1000
    """Held-out test tasks per setting (the paper used 1000)."""
    tune_tasks: Size = 500
    """Meta-train tasks used to pick the tuned parameters (UCB1's c, epsilon-greedy's eps)."""
    eval_seed: int = EVAL_SEED
    """Seed of the held-out tasks."""
    seed: int = 0
    """Agents' randomness and the tuning tasks."""
    device: str = "cpu"
    """Device for tasks, environments and agents."""
    out: Path = Path("results/baselines-bandits")
    """Directory for results.json and report.md."""


@dataclasses.dataclass(frozen=True)
class BanditBenchConfig(ClassicsBench):
    """RL² Table 1 (Bernoulli bandits): classic agents on held-out tasks beside the paper."""


@dataclasses.dataclass(frozen=True)
class MDPBenchConfig(ClassicsBench):
    """RL² Table 2 (random tabular MDPs): classic agents on held-out tasks beside the paper."""

    settings: tuple[str, ...] = ALL_MDP_SETTINGS
    """Episodes per trial n."""
    tune_tasks: Size = 300
    """Meta-train tasks used to pick epsilon-greedy's eps per setting."""
    out: Path = Path("results/baselines-mdps")
    """Directory for results.json and report.md."""


def parse_bandit_setting(text: str) -> tuple[int, int]:
    try:
        n, k = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(
            f"bandit settings look like '10x5' (n pulls x k arms), got {text!r}"
        ) from None
    return n, k


def parse_episodes(text: str) -> int:
    """An MDP setting: episodes per trial n."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"MDP settings are episodes per trial n (e.g. 25), got {text!r}"
        ) from None


def tune(family: TaskFamily, entry: Entry, tasks: int, seed: int, device: str) -> dict[str, Any]:
    """The entry's parameters, its tuned one chosen on meta-train tasks."""
    return tune_agent(
        family, entry.agent, entry.fixed, entry.grid, num_tasks=tasks, seed=seed, device=device
    )


def run_setting(
    family: TaskFamily,
    entries: Sequence[Entry],
    paper: dict[str, float],
    targets: Sequence[str],
    cfg: Any,
) -> list[dict[str, Any]]:
    """Tune, evaluate and compare every entry on one setting; one row per entry."""
    specs = [(e.agent, tune(family, e, cfg.tune_tasks, cfg.seed, cfg.device)) for e in entries]
    res = evaluate(
        family,
        specs,
        num_tasks=cfg.num_tasks,
        eval_seed=cfg.eval_seed,
        seeds=(cfg.seed,),
        device=cfg.device,
        show_progress=False,
    )
    rows = []
    for entry, result in zip(entries, res.agents, strict=True):
        mean, ci = result.trial_return()
        ref = paper.get(entry.column) if entry.column else None
        rows.append(
            {
                "agent": entry.agent,
                "params": result.params,
                "mean": mean,
                "ci95": ci,
                "paper": ref,
                "target": entry.column in targets,
                "match": None if ref is None else within(mean, ci, ref),
            }
        )
    return rows


@dataclasses.dataclass(frozen=True)
class ClassicTable:
    """A paper table of classic agents: its title and source, the family of a setting (a parsed
    setting: ``(n, k)`` or ``n``), the agents, and per setting the published row and the cells
    the foundation issue asks us to match."""

    title: str
    source: str
    family: Callable[[Any], TaskFamily]
    agents: Sequence[Entry]
    paper: dict[Any, dict[str, float]]
    targets: dict[Any, tuple[str, ...]]


def _run(cfg: Any, table: ClassicTable, settings: Sequence[Any]) -> dict[str, Any]:
    """Every setting's rows, then the printed and written table."""
    rows_data = []
    with progress(total=len(settings), description=table.title.split(":")[0]) as bar:
        for setting in settings:
            label = "x".join(map(str, setting)) if isinstance(setting, tuple) else str(setting)
            paper, targets = table.paper.get(setting, {}), table.targets.get(setting, ())
            for row in run_setting(table.family(setting), table.agents, paper, targets, cfg):
                rows_data.append({"setting": label, **row})
            bar.advance()
    header = {
        "tasks": f"{cfg.num_tasks} held-out test tasks per setting (eval seed {cfg.eval_seed})",
        "tuning": f"{cfg.tune_tasks} meta-train tasks per setting (seed {cfg.seed})",
        "seed": cfg.seed,
        "ci": "95% Student-t over tasks",
    }
    cols = ["setting", "agent", "ours (95% CI)", table.source, "match (CI or 1%)"]
    rows = [
        [
            r["setting"],
            r["agent"] + "".join(f" {k}={v}" for k, v in r["params"].items()),
            f"{r['mean']:.2f} ± {r['ci95']:.2f}",
            "—" if r["paper"] is None else f"{r['paper']}",
            _mark(r),
        ]
        for r in rows_data
    ]
    print_table(table.title, cols, rows)
    payload = {**header, "reference": table.source, "rows": rows_data}
    markdown = table_markdown(table.title, header, cols, rows)
    return write_bench(cfg.out, payload, markdown, seeds=[cfg.seed])


def _mark(r: dict[str, Any]) -> str:
    if r["match"] is None:
        return "—"
    return ("yes" if r["match"] else "NO") + (" (target)" if r["target"] else "")


def _quick(cfg: Any, every: tuple[str, ...], first: tuple[str, ...]) -> Any:
    """--quick: fewer tasks, and only the ``first`` settings unless --settings chose others."""
    if not cfg.quick:
        return cfg
    settings = first if cfg.settings == every else cfg.settings
    tasks = {"num_tasks": min(cfg.num_tasks, 200), "tune_tasks": min(cfg.tune_tasks, 100)}
    return dataclasses.replace(cfg, settings=settings, **tasks)


BANDIT_TABLE = ClassicTable(
    title="RL² Table 1: Bernoulli bandits, total reward over n pulls",
    source=RL2_TABLE1_SOURCE,
    family=lambda s: make_family("bandit-bernoulli-v0", n=s[0], k=s[1]),
    agents=BANDIT_AGENTS,
    paper=RL2_TABLE1,
    targets=BANDIT_TARGETS,
)
MDP_TABLE = ClassicTable(
    title="RL² Table 2: random tabular MDPs (|S|=10, |A|=5, T=10), total reward over n episodes",
    source=RL2_TABLE2_SOURCE,
    family=lambda n: make_family("tabular-mdp-v0", n=n),
    agents=MDP_AGENTS,
    paper=RL2_TABLE2,
    targets=MDP_TARGETS,
)


def run_bandits(cfg: BanditBenchConfig) -> dict[str, Any]:
    cfg = _quick(cfg, ALL_BANDIT_SETTINGS, ("10x5", "100x5"))
    return _run(cfg, BANDIT_TABLE, [parse_bandit_setting(s) for s in cfg.settings])


def run_mdps(cfg: MDPBenchConfig) -> dict[str, Any]:
    cfg = _quick(cfg, ALL_MDP_SETTINGS, ("10", "25"))
    return _run(cfg, MDP_TABLE, [parse_episodes(n) for n in cfg.settings])


register_bench(
    BenchSpec(
        "baselines-bandits",
        BanditBenchConfig,
        run_bandits,
        "RL² Table 1 columns: classic bandit agents on held-out Bernoulli bandits",
    )
)
register_bench(
    BenchSpec(
        "baselines-mdps",
        MDPBenchConfig,
        run_mdps,
        "RL² Table 2 columns: PSRL and friends on held-out random tabular MDPs",
    )
)
