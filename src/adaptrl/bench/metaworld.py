"""``adaptrl bench metaworld-ml1`` and ``metaworld-ml10``: trained meta-learners scored by
Meta-World's meta-test protocol, success rate beside return, with the published figures beside
them.

The test tasks are Meta-World's evaluation: every one of the first ``test_goals`` goals of every
held-out class once (``MetaWorldFamily.evaluation_rounds``, rounds of ``meta_batch_size`` rows, run
one round at a time). A learner is scored as Meta-World scores it:

* memory learners (RL²) run one trial per test goal of ``adaptation_episodes`` episodes followed by
  ``evaluation_episodes`` episodes, memory kept throughout; their score is the success rate of the
  evaluation episodes;
* gradient learners (MAML-RL, mktn) adapt by one gradient step on their rollouts of the test goal
  (``rollouts_per_task`` episodes) and are scored on fresh episodes of the adapted policy.

An episode succeeds if Meta-World's ``success`` is set at any of its steps (episodes run their whole
horizon; Meta-World's evaluation episodes end at the first success, which decides the same
outcome). Per-goal rates are averaged over goals; the 95% CI is over goals for one run, over runs
(seeds) for several runs of one algorithm.

Runs of hours are trained with ``adaptrl train ALGO --config metaworld-ml1`` (checkpointed,
resumable, ``torchrun`` for several processes) and passed with ``--runs``; ``--quick`` trains tiny
learners in memory on a short horizon to check the pipeline.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.maml_rl import MAMLRL
from adaptrl.algos.registry import load_config
from adaptrl.algos.rl2 import RL2
from adaptrl.algos.trainer import load_trained, training_seconds
from adaptrl.bench.common import table_markdown, train_timed, write_bench
from adaptrl.bench.reference import META_WORLD_ML10, META_WORLD_SOURCE
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Count, Size, config_to_dict
from adaptrl.core.errors import ConfigError
from adaptrl.core.progress import progress
from adaptrl.core.seeding import derive_seed, make_generator
from adaptrl.core.table import print_table
from adaptrl.envs import make_family
from adaptrl.envs.base import TaskBatch
from adaptrl.envs.metaworld import MetaWorldFamily
from adaptrl.eval.protocol import EVAL_SEED, run_trial_outcomes
from adaptrl.eval.report import save_figure
from adaptrl.eval.stats import mean_ci

QUICK_HORIZON = 20
"""--quick's episode length: enough steps for success to be possible, short enough for CI."""


@dataclasses.dataclass(frozen=True)
class MetaWorldBench(Config):
    """What both benches share: the runs to score and Meta-World's evaluation protocol."""

    runs: tuple[Path, ...] = ()
    """Trained run directories (rl2, maml-rl, mktn) on this benchmark; several runs of one
    algorithm are its seeds."""
    quick: bool = False
    """Train a tiny RL² and MAML-RL in memory (a few iterations, 20-step episodes) and score them
    on a few test goals: checks the pipeline, measures nothing."""
    adaptation_episodes: Count = 10
    """Episodes of a memory learner's trial before it is scored (Meta-World's 10)."""
    evaluation_episodes: Count = 3
    """Episodes a memory learner is scored on, after its adaptation episodes (Meta-World's 3)."""
    steps: Count = 1
    """Gradient steps of a gradient learner before it is scored (Meta-World's 1)."""
    eval_seed: int = EVAL_SEED
    """Seed of the evaluation's random streams (the test goals are fixed by the benchmark)."""
    threads: Size = 1
    """torch threads (the machine is shared)."""
    meta_batch_size: Size = 10
    """Rows per evaluation round (Meta-World+'s ML1 meta-batch); must divide test_goals."""


@dataclasses.dataclass(frozen=True)
class MetaWorldML1Bench(MetaWorldBench):
    """Meta-World ML1: one task class, its held-out goals."""

    task: str = "reach-v3"
    """The ML1 task the runs were trained on (checked against them)."""
    out: Path = Path("results/bench/metaworld-ml1")
    """Directory for results.json, report.md and success.png."""


@dataclasses.dataclass(frozen=True)
class MetaWorldML10Bench(MetaWorldBench):
    """Meta-World ML10: 5 held-out task classes, 40 goals each."""

    meta_batch_size: Size = 20
    """Rows per evaluation round (Meta-World's ML10 meta-batch, 4 per test class)."""
    out: Path = Path("results/bench/metaworld-ml10")
    """Directory for results.json, report.md and success.png."""


@dataclasses.dataclass
class Scored:
    """One learner's per-goal outcomes on the evaluation tasks."""

    algo: str
    run: str
    before: torch.Tensor
    """Success rate per goal before adaptation (first episode / no gradient step) [goals]."""
    after: torch.Tensor
    """Success rate per goal after adaptation [goals]."""
    returns: torch.Tensor
    """Mean return per goal of the scored episodes [goals]."""
    env_steps: int | None
    seconds: float | None
    trained: str = ""
    """Iterations trained, of those planned when fewer (a run scored mid-way says so)."""


def score_trials(
    learner: MetaLearner, family: MetaWorldFamily, rounds: list[TaskBatch], bench: MetaWorldBench
) -> tuple[torch.Tensor, ...]:
    """A memory learner's success before (first episode) and after adaptation (the evaluation
    episodes) and the evaluation episodes' return, per goal."""
    episodes = bench.adaptation_episodes + bench.evaluation_episodes
    agent = learner.trial_agent()
    env = family.make_env(len(rounds[0]))
    success, returns = [], []
    try:
        for i, tasks in enumerate(progress(rounds, description=f"score {learner.name}")):
            gen = make_generator(bench.eval_seed, "metaworld", learner.name, i)
            env_seed = derive_seed(bench.eval_seed, "env", i)
            ret, succ = run_trial_outcomes(agent, env, tasks, episodes, gen, env_seed)
            assert succ is not None  # Meta-World reports success
            success.append(succ)
            returns.append(ret)
    finally:
        env.close()
    succ, ret = torch.cat(success), torch.cat(returns)
    scored = slice(bench.adaptation_episodes, episodes)
    return succ[:, 0], succ[:, scored].mean(1), ret[:, scored].mean(1)


def score_gradient(
    learner: MetaLearner, rounds: list[TaskBatch], bench: MetaWorldBench
) -> tuple[torch.Tensor, ...]:
    """A gradient learner's success before and after ``bench.steps`` steps and the return after,
    per goal."""
    curves, rates = [], []
    for i, tasks in enumerate(progress(rounds, description=f"score {learner.name}")):
        gen = make_generator(bench.eval_seed, "metaworld", learner.name, i)
        curve, rate = learner.adaptation_success(tasks, bench.steps, gen)
        curves.append(curve)
        rates.append(rate)
    curve, rate = torch.cat(curves), torch.cat(rates)
    return rate[:, 0], rate[:, -1], curve[:, -1]


def score(
    learner: MetaLearner,
    run: str,
    family: MetaWorldFamily,
    rounds: list[TaskBatch],
    bench: MetaWorldBench,
) -> Scored:
    """``learner`` on Meta-World's evaluation ``rounds``, by the protocol of its kind."""
    if learner.supports("trial_agent"):
        before, after, returns = score_trials(learner, family, rounds, bench)
    elif learner.supports("adaptation_success"):
        before, after, returns = score_gradient(learner, rounds, bench)
    else:
        raise ConfigError(f"{run}: {learner.name} is neither a memory nor a gradient RL learner")
    steps = learner.env_steps(learner.iteration)
    seconds = training_seconds(run) if Path(run).is_dir() else None
    planned = learner.config.iterations
    trained = f"{learner.iteration}" + ("" if learner.iteration == planned else f" of {planned}")
    return Scored(
        learner.name,
        run,
        before.double(),
        after.double(),
        returns.double(),
        steps,
        seconds,
        trained,
    )


def check_family(learner: MetaLearner, run: Path, family_id: str, task: str | None) -> Any:
    """The family config ``learner`` was trained on, refused if it is not this benchmark's."""
    cfg = learner.config.family
    if cfg.family_id != family_id:
        raise ConfigError(f"{run} was trained on {cfg.family_id}, this benchmark is {family_id}")
    if task is not None and cfg.task != task:
        raise ConfigError(
            f"{run} was trained on ML1 {cfg.task}, not {task}: pass --task {cfg.task}"
        )
    return cfg


QUICK_CHANGES = {
    "rl2": {"iterations": 2, "hidden": 16, "embed": (16,), "epochs": 1, "minibatches": 1},
    "maml-rl": {"iterations": 1, "rollouts_per_task": 2, "hidden": (16,), "eval_chunk": 2},
}
"""What --quick shrinks in the metaworld-ml1 presets (besides the family and the meta-batch)."""


def quick_learners(family_cfg: Any) -> list[tuple[str, MetaLearner, float]]:
    """A tiny RL² and MAML-RL trained in memory for a few iterations (--quick), on meta-batches
    of one task per training class (two on ML1)."""
    batch = max(2, len(make_family(family_cfg).classes("train")))  # type: ignore[attr-defined]
    out = []
    for algo, cls, size in (("rl2", RL2, "trials"), ("maml-rl", MAMLRL, "meta_batch_size")):
        config = dataclasses.replace(
            load_config(algo, "metaworld-ml1"),
            family=family_cfg,
            **{size: batch, **QUICK_CHANGES[algo]},
        )
        learner = cls(config, seed=0)
        record = train_timed(learner, config.iterations, f"quick {algo}")
        out.append((f"quick-{algo}", learner, record["seconds"]))
    return out


def _pct(values: torch.Tensor | np.ndarray) -> str:
    mean, ci = mean_ci(np.asarray(values, dtype=float))
    if not np.isfinite(ci):
        return f"{100 * mean:.1f}%"
    return f"{100 * mean:.1f}% ± {100 * ci:.1f}"


def _summary(values: list[torch.Tensor]) -> np.ndarray:
    """Per-goal values of one run, or the per-run means of several (the CI is then over runs)."""
    if len(values) == 1:
        return values[0].numpy()
    return np.array([float(v.mean()) for v in values])


def plot_success(groups: dict[str, list[Scored]], reference: dict[str, float], path: Path) -> Path:
    """Success before and after adaptation per algorithm (95% CI), published figures as marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 3.8), dpi=110)
    x = np.arange(len(groups))
    for offset, (attr, label) in zip(
        (-0.18, 0.18), (("before", "before adaptation"), ("after", "after adaptation")), strict=True
    ):
        stats = [mean_ci(_summary([getattr(s, attr) for s in g])) for g in groups.values()]
        means = np.array([100 * m for m, _ in stats])
        cis = np.array([100 * c if np.isfinite(c) else 0.0 for _, c in stats])
        ax.bar(x + offset, means, 0.36, yerr=cis, capsize=4, label=label)
    for i, algo in enumerate(groups):
        if algo in reference:
            ax.plot([i - 0.36, i + 0.36], [reference[algo]] * 2, "k--", lw=1)
    if reference:
        ax.plot([], [], "k--", lw=1, label="Meta-World paper, Table 1 (meta-test)")
    ax.set_xticks(x, list(groups))
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def run_metaworld(bench: MetaWorldBench, name: str, family_id: str, task: str | None) -> dict:
    torch.set_num_threads(bench.threads)
    if bench.quick == bool(bench.runs):
        raise ConfigError(
            f"give the runs to score (--runs DIR ...: train them with `adaptrl train rl2 --config "
            f"{name}` and `adaptrl train maml-rl --config {name}`) or --quick, not both"
            if bench.runs
            else f"{name} scores trained runs: train them with `adaptrl train rl2 --config {name}` "
            f"and `adaptrl train maml-rl --config {name}` (hours, checkpointed, resumable), then "
            "pass --runs DIR ...; --quick checks the pipeline on tiny learners"
        )
    learners: list[tuple[str, MetaLearner, float | None]] = []
    if bench.quick:
        quick = make_family(
            family_id, **({"task": task} if task else {}), horizon=QUICK_HORIZON, test_goals=4
        )
        family_cfg = quick.config
        learners = quick_learners(family_cfg)
        bench = dataclasses.replace(
            bench,
            adaptation_episodes=1,
            evaluation_episodes=1,
            meta_batch_size=len(quick.classes("test")),  # type: ignore[attr-defined]
        )
    else:
        family_cfg = None
        for path in bench.runs:
            learner = load_trained(path)
            cfg = check_family(learner, path, family_id, task)
            if family_cfg is not None and cfg != family_cfg:
                raise ConfigError(f"{path} was trained on {cfg}, {bench.runs[0]} on {family_cfg}")
            family_cfg = cfg
            learners.append((str(path), learner, None))
    family = make_family(family_cfg)
    rounds = family.evaluation_rounds(bench.meta_batch_size)  # type: ignore[attr-defined]
    scored = []
    for run, learner, seconds in learners:
        s = score(learner, run, family, rounds, bench)  # type: ignore[arg-type]
        if seconds is not None:
            s.seconds = seconds
        scored.append(s)
    groups: dict[str, list[Scored]] = {}
    for s in scored:
        groups.setdefault(s.algo, []).append(s)
    reference = META_WORLD_ML10 if family_id == "metaworld-ml10-v0" and not bench.quick else {}
    columns = [
        "learner",
        "runs",
        "success before adaptation",
        "success after adaptation (95% CI)",
        "return after adaptation",
        "meta-train env steps",
        "iterations trained",
        "training hours",
        "Meta-World paper (Table 1, meta-test)",
    ]
    rows = []
    for algo, group in groups.items():
        steps = [s.env_steps for s in group if s.env_steps is not None]
        hours = [s.seconds / 3600 for s in group if s.seconds is not None]
        mean_returns = _summary([s.returns for s in group])
        rows.append(
            [
                algo,
                str(len(group)),
                _pct(_summary([s.before for s in group])),
                _pct(_summary([s.after for s in group])),
                f"{mean_ci(mean_returns)[0]:.1f} ± {mean_ci(mean_returns)[1]:.1f}",
                f"{int(np.mean(steps)):,}" if steps else "",
                ", ".join(s.trained for s in group),
                f"{np.mean(hours):.2f}" if hours else "",
                f"{reference[algo]:.1f}%" if algo in reference else "",
            ]
        )
    print_table(name, columns, rows)
    plot_success(groups, reference, bench.out / "success.png")
    goals = sum(len(t) for t in rounds)
    header = {
        "family": f"`{config_to_dict(family_cfg)}`",
        "tasks": f"Meta-World's meta-test goals: {goals} (each held-out goal once), "
        "95% CI over goals (one run) or over runs (several)",
        "protocol": f"memory learners: {bench.adaptation_episodes} adaptation episodes, then "
        f"{bench.evaluation_episodes} scored; gradient learners: {bench.steps} step(s) on their "
        "rollouts of the goal, then scored on fresh rollouts; success = success at any step",
        "eval seed": str(bench.eval_seed),
    }
    if bench.quick:
        header["note"] = "--quick: tiny learners, 20-step episodes: a pipeline check, not a result"
    markdown = table_markdown(name, header, columns, rows)
    markdown += "\n![success rate before and after adaptation](success.png)\n"
    payload = {
        "benchmark": name,
        "family": config_to_dict(family_cfg),
        "protocol": {
            "meta_batch_size": bench.meta_batch_size,
            "adaptation_episodes": bench.adaptation_episodes,
            "evaluation_episodes": bench.evaluation_episodes,
            "steps": bench.steps,
            "eval_seed": bench.eval_seed,
        },
        "reference": {"source": META_WORLD_SOURCE, "success_pct": reference},
        "learners": [
            {
                "algo": s.algo,
                "run": s.run,
                "env_steps": s.env_steps,
                "iterations_trained": s.trained,
                "training_seconds": s.seconds,
                "success_before": s.before.tolist(),
                "success_after": s.after.tolist(),
                "return_after": s.returns.tolist(),
            }
            for s in scored
        ],
        "configs": {run: config_to_dict(lr.config) for run, lr, _ in learners},
    }
    return write_bench(bench.out, payload, markdown, seeds=[lr.seed for _, lr, _ in learners])


def run_metaworld_ml1(bench: MetaWorldML1Bench) -> dict[str, Any]:
    return run_metaworld(bench, "metaworld-ml1", "metaworld-ml1-v0", bench.task)


def run_metaworld_ml10(bench: MetaWorldML10Bench) -> dict[str, Any]:
    return run_metaworld(bench, "metaworld-ml10", "metaworld-ml10-v0", None)


register_bench(
    BenchSpec(
        name="metaworld-ml1",
        config_cls=MetaWorldML1Bench,
        run=run_metaworld_ml1,
        description="trained RL² / MAML-RL runs on Meta-World ML1 by its meta-test protocol: success rate",
    )
)
register_bench(
    BenchSpec(
        name="metaworld-ml10",
        config_cls=MetaWorldML10Bench,
        run=run_metaworld_ml10,
        description="trained RL² / MAML-RL runs on Meta-World ML10 by its meta-test protocol, beside Table 1",
    )
)
