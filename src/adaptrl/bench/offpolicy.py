"""``adaptrl bench offpolicy-gridworld`` and ``offpolicy-nav2d``: the off-policy context learners
(``meta-q``, ``pearl``) beside the references their targets name.

``offpolicy-gridworld`` trains meta-q, pearl and RL² on the VariBAD gridworld protocol (their
``gridworld-varibad`` presets) and scores them on the same held-out tasks as the exact
``bayes-optimal`` agent, ``goal-search`` and ``psrl``: return per episode of the trial.

``offpolicy-nav2d`` trains meta-q and pearl on the family of a shipped MAML-RL model and scores all
three on the same test tasks: the context learners' return in the episode that follows
``context_episodes`` episodes of the task, against the MAML model's return after ``maml_steps``
gradient steps, with the environment steps each was meta-trained on.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig, steps_per_iteration
from adaptrl.algos.meta_q import MetaQ, MetaQConfig
from adaptrl.algos.pearl import PEARL, PEARLConfig
from adaptrl.algos.registry import load_config
from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.algos.trainer import load_trained
from adaptrl.bench.common import table_markdown, train_timed, write_bench
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Count, Size, config_to_dict
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.core.table import print_table
from adaptrl.envs import make_family
from adaptrl.envs.gridworld import GridworldConfig
from adaptrl.eval.curves import plot_sample_efficiency
from adaptrl.eval.protocol import EVAL_SEED, evaluate
from adaptrl.eval.stats import mean_ci

LEARNERS: dict[str, type[MetaLearner]] = {"meta-q": MetaQ, "pearl": PEARL, "rl2": RL2}
OFFPOLICY_QUICK = {"iterations": 2, "trials": 4, "updates": 2, "batch": 8, "buffer_trials": 2}
"""What --quick shrinks in a meta-q or pearl configuration."""
RL2_QUICK = {"iterations": 2, "trials": 8, "minibatches": 2}
QUICK_GRID = GridworldConfig(
    height=3, width=3, horizon=4, n=2, step_reward=-0.1, goal_exclusion=2, test_fraction=0
)
"""The --quick gridworld: small enough for the exact Bayes-optimal DP to take no time."""


@dataclasses.dataclass(frozen=True)
class OffPolicyBench(Config):
    """What both benches share: training seeds, the test tasks, trained runs to score."""

    quick: bool = False
    """CI-sized run (two iterations of a few trials, a small task set)."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds of every learner."""
    num_tasks: Size = 1000
    """Held-out test tasks."""
    eval_seed: int = EVAL_SEED
    """Seed of the test tasks and of the evaluation."""
    runs: tuple[Path, ...] = ()
    """Trained run directories to score instead of training (their algorithm is read from them)."""
    threads: Size = 1
    """torch threads (the machine is shared)."""


def trained(
    bench: OffPolicyBench, configs: dict[str, Any], quick: dict[str, dict[str, Any]]
) -> list[tuple[str, MetaLearner, dict[str, Any]]]:
    """``(label, learner, training record)`` for every learner: loaded from ``bench.runs`` when
    given, else each of ``configs`` trained per seed (with ``quick``'s overrides in --quick)."""
    if bench.runs:
        out = []
        for path in bench.runs:
            learner = load_trained(path)
            record = {"run": str(path), "env_steps": learner.env_steps(learner.config.iterations)}
            out.append((f"{learner.name}-s{learner.seed}", learner, record))
        return out
    out = []
    for algo, config in configs.items():
        if bench.quick:
            config = dataclasses.replace(config, **quick[algo])
        for seed in bench.seeds:
            learner = LEARNERS[algo](config, seed=seed)
            curve: list[float] = []
            record = train_timed(
                learner,
                config.iterations,
                f"train {algo} s{seed}",
                lambda lr, m, c=curve: c.append(float(m.get("last_episode_return", np.nan))),
            )
            record["curve"] = curve
            record["env_steps"] = learner.env_steps(config.iterations)
            out.append((f"{algo}-s{seed}", learner, record))
    return out


def episode_rows(result: Any) -> list[list[Any]]:
    """One table row per agent: trial return and each episode's return, with 95% CIs."""
    rows = []
    for agent in result.agents:
        mean, ci = agent.trial_return()
        means, cis = agent.episode_curve()
        rows.append(
            [
                agent.label,
                f"{mean:.2f} ± {ci:.2f}",
                *(f"{m:.2f} ± {c:.2f}" for m, c in zip(means, cis, strict=True)),
            ]
        )
    return rows


# --- offpolicy-gridworld --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OffPolicyGridworldConfig(OffPolicyBench):
    """meta-q, pearl and RL² on the VariBAD gridworld beside the exact Bayes-optimal agent."""

    meta_q: MetaQConfig = load_config("meta-q", "gridworld-varibad")
    """meta-q's configuration (its family is the bench's)."""
    pearl: PEARLConfig = load_config("pearl", "gridworld-varibad")
    """pearl's configuration."""
    rl2: RL2Config = load_config("rl2", "gridworld-varibad")
    """RL²'s configuration."""
    learners: tuple[Literal["meta-q", "pearl", "rl2"], ...] = ("meta-q", "pearl", "rl2")
    """Which learners to train."""
    baselines: tuple[str, ...] = ("bayes-optimal", "goal-search", "psrl", "random")
    """Classic agents on the same tasks."""
    out: Path = Path("results/bench/offpolicy-gridworld")
    """Directory for results.json and report.md."""


def agent_specs(learners: list[tuple[str, Any, Any]]) -> list[tuple[str, Any]]:
    """Every agent each trained learner is scored as (meta-q also with propensity adaptation),
    labelled by the learner's label."""
    return [
        (label + name[len(learner.name) :], lambda f, make=make: make())
        for label, learner, _ in learners
        for name, make in learner.trial_agents().items()
    ]


def run_offpolicy_gridworld(bench: OffPolicyGridworldConfig) -> dict[str, Any]:
    torch.set_num_threads(bench.threads)
    configs = {name: getattr(bench, name.replace("-", "_")) for name in bench.learners}
    if bench.quick:
        configs = {k: dataclasses.replace(c, family=QUICK_GRID) for k, c in configs.items()}
        bench = dataclasses.replace(bench, num_tasks=16)
    quick = {"meta-q": OFFPOLICY_QUICK, "pearl": OFFPOLICY_QUICK, "rl2": RL2_QUICK}
    learners = trained(bench, configs, quick)
    family = learners[0][1].family
    for label, learner, _ in learners:
        if learner.family.config != family.config:
            raise ConfigError(f"{label} was trained on another family than {learners[0][0]}")
    agents = agent_specs(learners)
    result = evaluate(
        family, [*agents, *bench.baselines], num_tasks=bench.num_tasks, eval_seed=bench.eval_seed
    )
    episodes = result.agents[0].returns.shape[-1]
    columns = ["agent", "trial return", *(f"episode {e + 1}" for e in range(episodes))]
    rows = episode_rows(result)
    print_table("offpolicy-gridworld", columns, rows)
    header = {
        "family": f"`{config_to_dict(family.config)}`",
        "tasks": f"{bench.num_tasks} held-out test tasks (eval seed {bench.eval_seed}), 95% CI over tasks",
        "training": "; ".join(
            f"{label}: {rec['env_steps']:,} env steps"
            + (f" ({rec['run']})" if "run" in rec else "")
            for label, _, rec in learners
        ),
    }
    markdown = table_markdown("offpolicy-gridworld", header, columns, rows)
    payload = {
        "benchmark": "offpolicy-gridworld",
        "family": config_to_dict(family.config),
        "num_tasks": bench.num_tasks,
        "eval_seed": bench.eval_seed,
        "configs": {label: config_to_dict(lr.config) for label, lr, _ in learners},
        "training": {label: rec for label, _, rec in learners},
        "agents": [{"name": a.label, "returns": a.returns.tolist()} for a in result.agents],
    }
    return write_bench(bench.out, payload, markdown, seeds=list(bench.seeds))


# --- offpolicy-nav2d ------------------------------------------------------------------------

SHIPPED_MAML = Path("docs/results/maml-rl/maml-nav2d-110it-curriculum-evalsteps/models/MAML-s0")
"""Our best shipped MAML-RL nav2d model (Table 4, the step curriculum)."""
SHIPPED_MAML_CHEETAH = Path("docs/results/maml-rl/maml-cheetah-paper-budget/seed1/model")
"""Our shipped MAML-TRPO HalfCheetah forward/backward model (160 iterations, Table 5's budget)."""


def maml_steps_per_iteration(config: MAMLRLConfig, iterations: int | None = None) -> list[int]:
    """Environment steps of each of MAML-RL's first ``iterations`` (default: all) meta-iterations,
    at most (every rollout one full episode): each task's rollouts before and after each inner
    step."""
    horizon = make_family(config.family).max_episode_steps
    count = config.iterations if iterations is None else iterations
    return steps_per_iteration(config, horizon, count)


def maml_env_steps(config: MAMLRLConfig) -> int:
    """Environment steps MAML-RL meta-trained on, at most (see :func:`maml_steps_per_iteration`)."""
    return sum(maml_steps_per_iteration(config))


@dataclasses.dataclass(frozen=True)
class VersusMAMLBench(OffPolicyBench):
    """The context learners after a few context episodes against a MAML-RL model after a few
    gradient steps, on the MAML model's family and the same test tasks (nav2d, HalfCheetah)."""

    num_tasks: Size = 100
    """Held-out test tasks (MAML-RL's adaptation is costly: 100 as its own bench)."""
    maml_model: Path = Path()
    """The MAML-RL run directory to compare with (a run of `adaptrl train maml-rl`)."""
    maml_steps: Count = 3
    """MAML's inner gradient steps at test time."""
    context_episodes: Count = 2
    """Episodes the context learners read before the scored one."""


@dataclasses.dataclass(frozen=True)
class OffPolicyNav2DConfig(VersusMAMLBench):
    """meta-q and pearl after 2 context episodes against MAML-RL after 3 steps on nav2d."""

    meta_q: MetaQConfig = load_config("meta-q", "nav2d")
    """meta-q's configuration (trained on the MAML model's family)."""
    pearl: PEARLConfig = load_config("pearl", "nav2d")
    """pearl's configuration (trained on the MAML model's family)."""
    learners: tuple[Literal["meta-q", "pearl"], ...] = ("meta-q", "pearl")
    """Which context learners to train."""
    maml_model: Path = SHIPPED_MAML
    """The MAML-RL run directory to compare with (a run of `adaptrl train maml-rl`)."""
    out: Path = Path("results/bench/offpolicy-nav2d")
    """Directory for results.json, report.md and sample-efficiency.png."""


@dataclasses.dataclass(frozen=True)
class OffPolicyCheetahConfig(VersusMAMLBench):
    """pearl after 2 context episodes against MAML-TRPO after 2 steps on HalfCheetah."""

    pearl: PEARLConfig = load_config("pearl", "cheetah-dir")
    """pearl's configuration (trained on the MAML model's family)."""
    learners: tuple[Literal["pearl"], ...] = ("pearl",)
    """Which context learners to train."""
    maml_model: Path = SHIPPED_MAML_CHEETAH
    """The MAML-RL run directory to compare with (a run of `adaptrl train maml-rl` on a
    HalfCheetah family; its family is the one pearl trains on)."""
    maml_steps: Count = 2
    """MAML's inner gradient steps at test time."""
    out: Path = Path("results/bench/offpolicy-cheetah")
    """Directory for results.json, report.md and sample-efficiency.png."""


def read_metric(run: Path, column: str) -> tuple[list[int], list[float]] | None:
    """``(iterations, values)`` of ``column`` in a run's metrics (``RUN/metrics.csv``, or the
    ``training-metrics.csv`` shipped beside an exported model); None where there are none."""
    for path in (run / "metrics.csv", run.parent / "training-metrics.csv"):
        if path.is_file():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if r.get(column)]
            return [int(r["step"]) for r in rows], [float(r[column]) for r in rows]
    return None


def maml_curve(config: MAMLRLConfig, run: Path) -> tuple[list[float], list[float]] | None:
    """MAML-RL's return after adaptation on its training tasks (the metrics of ``run``, trained
    with ``config``) against environment steps."""
    read = read_metric(run, "return_post")
    if read is None:
        return None
    cumulative = np.cumsum(maml_steps_per_iteration(config, max(read[0])))
    return [float(cumulative[i - 1]) for i in read[0]], read[1]


def learner_curve(learner: Any, record: dict[str, Any]) -> tuple[list[float], list[float]] | None:
    """A context learner's return in the last episode of its training trials against steps."""
    if "curve" in record:
        iterations, values = list(range(1, len(record["curve"]) + 1)), record["curve"]
    else:
        read = read_metric(Path(record["run"]), "last_episode_return")
        if read is None:
            return None
        iterations, values = read
    per_iteration = learner.config.trials * learner.steps
    return [float(i * per_iteration) for i in iterations], list(values)


def run_versus_maml(bench: VersusMAMLBench, name: str) -> dict[str, Any]:
    torch.set_num_threads(bench.threads)
    maml = load_trained(bench.maml_model, expect=MAMLRL)
    family_cfg = maml.config.family
    configs = {
        algo: dataclasses.replace(getattr(bench, algo.replace("-", "_")), family=family_cfg)
        for algo in bench.learners
    }
    maml_steps = bench.maml_steps
    if bench.quick:
        bench = dataclasses.replace(bench, num_tasks=4)
        maml_steps = 1
    learners = trained(bench, configs, {"meta-q": OFFPOLICY_QUICK, "pearl": OFFPOLICY_QUICK})
    family = make_family(family_cfg)
    scored = bench.context_episodes + 1
    result = evaluate(
        family,
        agent_specs(learners),
        num_tasks=bench.num_tasks,
        episodes=scored,
        eval_seed=bench.eval_seed,
    )
    tasks = family.tasks(bench.num_tasks, "test", bench.eval_seed)
    curve = maml.adaptation_curve(tasks, maml_steps, make_generator(bench.eval_seed, name, "maml"))
    maml_return = mean_ci(curve[:, -1].double().numpy())
    maml_trained = maml_env_steps(maml.config)
    maml_label = f"MAML-RL after {maml_steps} steps"
    columns = [
        "learner",
        f"return in episode {scored} (95% CI)",
        "episode 1",
        "meta-train env steps",
        "share of MAML's",
    ]
    rows = [
        [
            maml_label,
            f"{maml_return[0]:.2f} ± {maml_return[1]:.2f}",
            "",
            f"{maml_trained:,} (at most)",
            "1",
        ]
    ]
    records = {label: record for label, _, record in learners}
    scores = {"MAML-RL": (float(maml_trained), *maml_return)}
    for agent in result.agents:
        means, cis = agent.episode_curve()
        steps = records[agent.name.split("+")[0]]["env_steps"]
        scores[agent.name] = (float(steps), means[-1], cis[-1])
        rows.append(
            [
                agent.name,
                f"{means[-1]:.2f} ± {cis[-1]:.2f}",
                f"{means[0]:.2f} ± {cis[0]:.2f}",
                f"{steps:,}",
                f"{steps / maml_trained:.3f}",
            ]
        )
    print_table(name, columns, rows)
    curves = {"MAML-RL": maml_curve(maml.config, bench.maml_model)}
    curves.update({label: learner_curve(lr, rec) for label, lr, rec in learners})
    plot_sample_efficiency(
        {k: v for k, v in curves.items() if v is not None},
        scores,
        bench.out / "sample-efficiency.png",
        f"{name}: {family.family_id}, {bench.num_tasks} held-out tasks",
    )
    header = {
        "family": f"`{config_to_dict(family_cfg)}`",
        "tasks": f"{bench.num_tasks} held-out test tasks (eval seed {bench.eval_seed}), 95% CI over tasks",
        "MAML model": str(bench.maml_model),
    }
    markdown = table_markdown(name, header, columns, rows)
    markdown += "\n![return against environment steps](sample-efficiency.png)\n"
    payload = {
        "benchmark": name,
        "family": config_to_dict(family_cfg),
        "num_tasks": bench.num_tasks,
        "eval_seed": bench.eval_seed,
        "maml": {
            "model": str(bench.maml_model),
            "steps": maml_steps,
            "return": maml_return,
            "env_steps": maml_trained,
            "curve": curve.double().tolist(),  # per task: return after 0..steps inner steps
        },
        "configs": {label: config_to_dict(lr.config) for label, lr, _ in learners},
        "training": {label: rec for label, _, rec in learners},
        "curves": {k: v for k, v in curves.items() if v is not None},
        "agents": [{"name": a.label, "returns": a.returns.tolist()} for a in result.agents],
    }
    return write_bench(bench.out, payload, markdown, seeds=list(bench.seeds))


def run_offpolicy_nav2d(bench: OffPolicyNav2DConfig) -> dict[str, Any]:
    return run_versus_maml(bench, "offpolicy-nav2d")


def run_offpolicy_cheetah(bench: OffPolicyCheetahConfig) -> dict[str, Any]:
    return run_versus_maml(bench, "offpolicy-cheetah")


register_bench(
    BenchSpec(
        name="offpolicy-gridworld",
        config_cls=OffPolicyGridworldConfig,
        run=run_offpolicy_gridworld,
        description="meta-q, pearl and RL² on the VariBAD gridworld beside the exact Bayes-optimal agent",
    )
)
register_bench(
    BenchSpec(
        name="offpolicy-nav2d",
        config_cls=OffPolicyNav2DConfig,
        run=run_offpolicy_nav2d,
        description="meta-q and pearl after 2 context episodes vs MAML-RL after 3 steps, with env steps",
    )
)
register_bench(
    BenchSpec(
        name="offpolicy-cheetah",
        config_cls=OffPolicyCheetahConfig,
        run=run_offpolicy_cheetah,
        description="pearl after 2 context episodes vs MAML-TRPO after 2 steps on HalfCheetah, with env steps",
    )
)

__all__ = [
    "OffPolicyCheetahConfig",
    "OffPolicyGridworldConfig",
    "OffPolicyNav2DConfig",
    "maml_curve",
    "maml_env_steps",
    "maml_steps_per_iteration",
    "read_metric",
]
