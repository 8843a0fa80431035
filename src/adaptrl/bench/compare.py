"""``adaptrl bench compare FAMILY``: every meta-learner adaptrl has that runs on a family, beside the
classic agents, on the same held-out tasks, with what each cost to meta-train.

Memory and context learners (RL², hyper-policy, meta-q, meta-dqn, pearl) are scored by trials:
their return in each episode of a trial on a new task, as the classic agents (Gittins, UCB1,
Thompson, PSRL, the exact Bayes-optimal agent, ...) are. Gradient learners (MAML-RL, MKTN, and
MPO, whose new task's policy trains from the prior) are scored by their return after 0..K
gradient steps on the same tasks. Each learner is trained from
its shipped preset (``ALGO/PRESET[:FIELD=VALUE,...]``) with the family of the setting, for every
training seed, or loaded from trained runs (``--runs``); each row states its meta-training
environment steps and wall-clock time. Rows of several training seeds average each task's return
over the seeds (95% CI over tasks; the per-seed trial returns are listed beside).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import ALGOS
from adaptrl.algos.trainer import load_trained, training_seconds
from adaptrl.bench.common import preset_with_changes, table_markdown, train_timed, write_bench
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Count, Size, config_to_dict
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.core.table import print_table
from adaptrl.envs import make_family
from adaptrl.envs.bandit import BanditConfig
from adaptrl.envs.gridworld import GridworldConfig
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.envs.tabular import TabularMDPConfig
from adaptrl.eval.curves import save_figure
from adaptrl.eval.protocol import EVAL_SEED, evaluate
from adaptrl.eval.stats import mean_ci


@dataclasses.dataclass(frozen=True)
class Setting:
    """A family's comparison: its tasks, the learners' presets and the classic agents that apply."""

    family: Any
    learners: tuple[str, ...]
    baselines: tuple[str, ...]
    quick_family: Any
    """The family of --quick: small enough for every baseline to take no time."""


VARIBAD = GridworldConfig(step_reward=-0.1, goal_exclusion=2, test_fraction=0.0)
SETTINGS: dict[str, Setting] = {
    "gridworld-varibad": Setting(
        VARIBAD,
        (
            "rl2/gridworld-varibad",
            "hyper-policy/gridworld-varibad",
            "meta-q/gridworld-varibad:td_samples=trials",
            "meta-dqn/gridworld-varibad",
            "pearl/gridworld-varibad",
            "mpo/gridworld-four-rooms",
        ),
        ("bayes-optimal", "goal-search", "psrl", "random"),
        dataclasses.replace(VARIBAD, height=3, width=3, horizon=4, n=2),
    ),
    "bandits-10": Setting(
        BanditConfig(k=5, n=10),
        ("rl2/bandits-10", "hyper-policy/bandits-10", "meta-q/bandits-10", "meta-dqn/bandits-10"),
        ("gittins", "thompson", "ucb1", "random"),
        BanditConfig(k=3, n=4),
    ),
    "mdps-10": Setting(
        TabularMDPConfig(n=10),
        ("rl2/mdps-10", "hyper-policy/mdps-10", "meta-q/mdps-10", "meta-dqn/mdps-10"),
        ("psrl", "random"),
        TabularMDPConfig(num_states=3, num_actions=2, horizon=3, n=2),
    ),
    "nav2d": Setting(
        Nav2DConfig(goal_region="box"),
        (
            "maml-rl/nav2d-authors",
            "mktn/nav2d",
            "hyper-policy/nav2d",
            "meta-q/nav2d",
            "pearl/nav2d",
            "mpo/nav2d",
        ),
        ("random", "oracle"),
        Nav2DConfig(goal_region="box", horizon=5),
    ),
}
"""The families the comparison runs on (the issue's four) and who runs there."""

RL2_QUICK = {"iterations": 2, "trials": 8, "minibatches": 2, "hidden": 16}
PEARL_QUICK = {"iterations": 2, "trials": 4, "updates": 2, "batch": 8, "buffer_trials": 2}
MAML_QUICK = {
    "iterations": 2,
    "meta_batch_size": 2,
    "rollouts_per_task": 2,
    "eval_rollouts_per_task": 2,
    "hidden": (16,),
}
QUICK: dict[str, dict[str, Any]] = {
    "rl2": RL2_QUICK,
    "hyper-policy": RL2_QUICK,
    "pearl": PEARL_QUICK,
    "meta-q": {**PEARL_QUICK, "context": None},  # the whole (short) trial as context
    "meta-dqn": {**PEARL_QUICK, "context": None},
    "maml-rl": MAML_QUICK,
    "mktn": MAML_QUICK,
    "mpo": {"iterations": 2, "tasks": 2, "episodes": 2, "inner_updates": 1, "hidden": (16,)},
}
"""What --quick shrinks in each algorithm's config."""


@dataclasses.dataclass(frozen=True)
class CompareConfig(Config):
    """Every meta-learner on one family beside the classic agents, on the same held-out tasks."""

    family: tyro.conf.Positional[Literal["gridworld-varibad", "bandits-10", "mdps-10", "nav2d"]] = (
        "gridworld-varibad"
    )
    """The comparison to run: its family, learners and classic agents (``SETTINGS``)."""
    learners: tuple[str, ...] | None = None
    """``ALGO/PRESET[:FIELD=VALUE,...]`` to train (default: the family's; each gets its family)."""
    runs: tuple[Path, ...] = ()
    """Trained run directories (or exported models) to score instead of training."""
    baselines: tuple[str, ...] | None = None
    """Classic agents on the same tasks (default: the family's)."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds of every learner trained here."""
    num_tasks: Size = 1000
    """Held-out test tasks."""
    episodes: Count | None = None
    """Episodes per scored trial (default: the longest trial a learner was trained on)."""
    gradient_steps: Count = 3
    """Gradient learners' inner steps at test time (their curve covers 0..this many)."""
    gradient_tasks: Size = 100
    """Test tasks of the gradient learners (the first of the same tasks; adaptation is costly)."""
    eval_seed: int = EVAL_SEED
    """Seed of the test tasks and of the evaluation."""
    quick: bool = False
    """CI-sized run: a small family, two iterations of small batches, a few tasks."""
    threads: Size = 1
    """torch threads (the machine is shared)."""
    out: Path | None = None
    """Directory for results.json, report.md and curves.png (default results/bench/compare-FAMILY)."""


@dataclasses.dataclass
class Trained:
    """One trained learner, its label (shared by its training seeds) and its training budget."""

    label: str
    learner: MetaLearner
    env_steps: int | None
    seconds: float | None
    source: str


def differing_fields(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The top-level fields (``family`` included as a whole) in which each config differs from
    the others, for labels that tell the variants of one algorithm apart."""
    keys = sorted({k for c in configs for k in c})
    varying = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    return [{k: c.get(k) for k in varying} for c in configs]


def label_runs(learners: list[tuple[str, MetaLearner]]) -> list[str]:
    """``algo`` for each learner, with ``[field=value,...]`` where runs of one algorithm were
    trained with different configs (seeds apart)."""
    by_algo: dict[str, list[int]] = defaultdict(list)
    for i, (algo, _) in enumerate(learners):
        by_algo[algo].append(i)
    labels = [algo for algo, _ in learners]
    for algo, idx in by_algo.items():
        dicts = [config_to_dict(learners[i][1].config) for i in idx]
        for i, diff in zip(idx, differing_fields(dicts), strict=True):
            if diff:
                labels[i] = f"{algo}[{','.join(f'{k}={v}' for k, v in diff.items())}]"
    return labels


def train_learners(bench: CompareConfig, setting: Setting) -> list[Trained]:
    """Each learner of the bench trained for every seed (or loaded from ``bench.runs``)."""
    family = setting.quick_family if bench.quick else setting.family
    if bench.runs:
        loaded = [(str(p), load_trained(p)) for p in bench.runs]
        labels = label_runs([(lr.name, lr) for _, lr in loaded])
        return [
            Trained(
                label,
                lr,
                lr.env_steps(lr.iteration),
                training_seconds(path),
                path,
            )
            for label, (path, lr) in zip(labels, loaded, strict=True)
        ]
    out = []
    for entry in bench.learners or setting.learners:
        algo, config = preset_with_changes(entry)
        config = dataclasses.replace(config, family=family)
        if bench.quick:
            config = dataclasses.replace(config, **QUICK.get(algo, {"iterations": 2}))
        for seed in bench.seeds:
            learner = ALGOS.get(algo).learner_cls(config, seed=seed)
            record = train_timed(learner, config.iterations, f"train {entry} s{seed}")
            changes = entry.partition(":")[2]
            out.append(
                Trained(
                    algo + (f"[{changes}]" if changes else ""),
                    learner,
                    learner.env_steps(learner.iteration),
                    record["seconds"],
                    f"{entry} (trained here, seed {seed})",
                )
            )
    return out


def seed_mean(returns: list[torch.Tensor]) -> np.ndarray:
    """Per-task returns averaged over training seeds: ``[tasks, ...]`` from each seed's."""
    return torch.stack([r.double() for r in returns]).mean(0).numpy()


def ci_cells(per_task: np.ndarray) -> list[str]:
    """``mean ± 95% CI`` over tasks of each column of ``per_task [tasks, columns]``."""
    return [f"{m:.2f} ± {c:.2f}" for m, c in (mean_ci(col) for col in per_task.T)]


def duration(seconds: float) -> str:
    """Seconds below two minutes, minutes below two hours, else hours."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def budget_cells(group: list[Trained]) -> list[str]:
    """Meta-training environment steps and wall-clock minutes (per seed)."""
    steps = {t.env_steps for t in group}
    seconds = [t.seconds for t in group if t.seconds is not None]
    step_cell = "n/a" if None in steps else " / ".join(f"{s:,}" for s in sorted(steps))  # type: ignore[type-var]
    time_cell = duration(float(np.mean(seconds))) if len(seconds) == len(group) else "not recorded"
    return [step_cell, time_cell]


def run_compare(bench: CompareConfig) -> dict[str, Any]:
    torch.set_num_threads(bench.threads)
    setting = SETTINGS[bench.family]
    if bench.quick:
        bench = dataclasses.replace(bench, num_tasks=8, gradient_tasks=4, gradient_steps=1)
    trained = train_learners(bench, setting)
    family = make_family(trained[0].learner.config.family if trained else setting.family)
    for t in trained:
        if t.learner.config.family != family.config:
            raise ConfigError(
                f"{t.source} was trained on {t.learner.config.family}, not on the family of "
                f"{trained[0].source}: every learner must be scored on the same tasks"
            )
    groups: dict[str, list[Trained]] = defaultdict(list)
    for t in trained:
        groups[t.label].append(t)
    by_trials = {k: g for k, g in groups.items() if g[0].learner.supports("trial_agent")}
    by_steps = {k: g for k, g in groups.items() if k not in by_trials}
    episodes = bench.episodes or max(
        [
            family.episodes_per_trial,
            *(getattr(g[0].learner, "episodes", 1) for g in by_trials.values()),
        ]
    )
    agents, variant_of = [], {}  # evaluation name -> (row label, its group)
    for label, group in by_trials.items():
        for i, t in enumerate(group):
            for name, make in t.learner.trial_agents().items():
                variant = label + name[len(t.learner.name) :]  # e.g. meta-q+propensity
                agents.append((f"{variant} seed#{i}", lambda f, make=make: make()))
                variant_of[f"{variant} seed#{i}"] = (variant, label)
    baselines = setting.baselines if bench.baselines is None else bench.baselines
    result = evaluate(
        family,
        [*agents, *baselines],
        num_tasks=bench.num_tasks,
        episodes=episodes,
        eval_seed=bench.eval_seed,
    )
    # rows: (label, seeds cell, budget cells, per-episode [tasks, E] or None, per-step or None)
    rows_data: list[tuple[str, str, list[str], np.ndarray | None, np.ndarray | None]] = []
    per_variant: dict[tuple[str, str], list[torch.Tensor]] = defaultdict(list)
    for agent in result.agents:
        if agent.name in variant_of:
            per_variant[variant_of[agent.name]].append(agent.returns[0])
    for (variant, label), returns in per_variant.items():
        per_seed = ", ".join(f"{r.sum(-1).double().mean():.2f}" for r in returns)
        rows_data.append((variant, per_seed, budget_cells(groups[label]), seed_mean(returns), None))
    tasks = family.tasks(bench.gradient_tasks, "test", bench.eval_seed)
    for label, group in by_steps.items():
        curves = [
            t.learner.adaptation_curve(
                tasks, bench.gradient_steps, make_generator(bench.eval_seed, "compare", label)
            ).cpu()
            for t in group
        ]
        per_seed = ", ".join(f"{c[:, -1].double().mean():.2f}" for c in curves)
        rows_data.append((label, per_seed, budget_cells(group), None, seed_mean(curves)))
    for agent in result.agents:
        if agent.name not in variant_of:
            rows_data.append((agent.label, "", ["", ""], agent.returns[0].double().numpy(), None))
    columns = [
        "agent",
        "per training seed",
        "meta-train env steps",
        "meta-train time",
        "trial return",
        *(f"episode {e + 1}" for e in range(episodes)),
        *((f"after {k} steps" for k in range(bench.gradient_steps + 1)) if by_steps else ()),
    ]
    rows = []
    for label, seeds_cell, budget, eps, steps in rows_data:
        trial = ci_cells(eps.sum(-1, keepdims=True))[0] if eps is not None else ""
        ep_cells = ci_cells(eps) if eps is not None else [""] * episodes
        step_cells = ci_cells(steps) if steps is not None else [""] * (bench.gradient_steps + 1)
        rows.append(
            [label, seeds_cell, *budget, trial, *ep_cells, *(step_cells if by_steps else [])]
        )
    name = f"compare {bench.family}"
    print_table(name, columns, rows)
    out = bench.out or Path(f"results/bench/compare-{bench.family}")
    out.mkdir(parents=True, exist_ok=True)
    plot_compare(
        rows_data,
        out / "curves.png",
        f"{name}: {family.family_id}, {bench.num_tasks} held-out tasks",
    )
    header = {
        "family": f"`{config_to_dict(family.config)}`",
        "tasks": f"{bench.num_tasks} held-out test tasks (eval seed {bench.eval_seed}; gradient "
        f"learners: the first {bench.gradient_tasks}), 95% CI over tasks of the return averaged "
        "over training seeds",
        "learners": "; ".join(f"{t.label}: {t.source}" for t in trained),
        "budget": "environment steps of meta-training (at most, for learners whose episodes may "
        "end early) and its wall-clock time per seed, on the machine that trained it",
    }
    markdown = table_markdown(name, header, columns, rows)
    markdown += "\n![return per episode and per gradient step](curves.png)\n"
    payload = {
        "benchmark": "compare",
        "setting": bench.family,
        "family": config_to_dict(family.config),
        "num_tasks": bench.num_tasks,
        "gradient_tasks": bench.gradient_tasks,
        "eval_seed": bench.eval_seed,
        "learners": [
            {
                "label": t.label,
                "source": t.source,
                "seed": t.learner.seed,
                "env_steps": t.env_steps,
                "seconds": t.seconds,
                "config": config_to_dict(t.learner.config),
            }
            for t in trained
        ],
        "rows": [
            {
                "label": label,
                "per_episode": None if eps is None else np.round(eps, 4).tolist(),
                "per_step": None if steps is None else np.round(steps, 4).tolist(),
            }
            for label, _, _, eps, steps in rows_data
        ],
    }
    return write_bench(out, payload, markdown, seeds=list(bench.seeds))


def plot_compare(rows_data: list, path: Path, title: str) -> Path:
    """Mean return per episode (trial agents) and per gradient step (gradient learners), one
    panel each, with 95% CI bands over tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [i for i, any_ in enumerate((True, any(r[4] is not None for r in rows_data))) if any_]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.0 * len(panels), 4.2), dpi=110, squeeze=False
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        for label, _, _, eps, steps in rows_data:
            data = eps if panel == 0 else steps
            if data is None:
                continue
            stats = np.array([mean_ci(col) for col in data.T])
            x = np.arange(1, data.shape[1] + 1) if panel == 0 else np.arange(data.shape[1])
            ax.plot(x, stats[:, 0], marker="o", label=label)
            ax.fill_between(x, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], alpha=0.15)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("episode of the trial" if panel == 0 else "gradient steps")
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


register_bench(
    BenchSpec(
        name="compare",
        config_cls=CompareConfig,
        run=run_compare,
        description="every meta-learner on one family beside the classic agents, with budgets",
    )
)

__all__ = ["SETTINGS", "CompareConfig", "differing_fields", "label_runs", "run_compare"]
