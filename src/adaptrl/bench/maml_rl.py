"""``adaptrl bench maml-nav2d`` and ``maml-cheetah``: MAML-RL adaptation curves beside the paper's.

Each bench meta-trains MAML-RL (one configuration: a preset, ``--config``, with ``--maml.*`` flags
on top) and the gradient baselines of :mod:`adaptrl.baselines.pg` (``scratch``: random init + the
same inner steps; ``pretrained``: multi-task policy fine-tuned with the same steps; ``oracle``: a
policy that sees the task) for the same number of outer iterations, then measures every one of
them on the *same* held-out test tasks with the same evaluation generator: mean return of the
rollouts per task after 0, 1, ..., ``steps`` inner VPG steps, with 95% confidence intervals over
tasks (over per-seed means when several seeds are given).
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
from pathlib import Path
from typing import Any

import torch

from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.trainer import load_trained, save_trained
from adaptrl.baselines.nav2d import Nav2DOracle
from adaptrl.baselines.pg import GRADIENT_BASELINES, variant_learner
from adaptrl.bench.common import train_timed, write_curve_bench
from adaptrl.bench.reference import (
    ANIL_RL,
    ANIL_SOURCE,
    PAPER_CHEETAH_DIR,
    PAPER_CHEETAH_SOURCE,
    PAPER_NAV2D,
    PAPER_NAV2D_SOURCE,
)
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Count, Size, config_to_dict
from adaptrl.core.errors import ConfigError
from adaptrl.core.presets import load_preset
from adaptrl.core.provenance import provenance
from adaptrl.core.seeding import make_generator
from adaptrl.envs import make_family
from adaptrl.envs.base import TaskBatch, TaskFamily
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.eval.curves import AdaptationCurve, CurveReport, curve_markdown
from adaptrl.eval.protocol import EVAL_SEED, run_trials
from adaptrl.eval.stats import mean_ci

CHEETAH_TARGET_FRACTION = 0.8
"""Target: after one step at least this fraction of the paper's forward/backward figure."""


def maml_preset(name: str) -> MAMLRLConfig:
    """The shipped MAML-RL preset ``name`` (``configs/maml-rl/NAME.yaml``)."""
    return load_preset(MAMLRLConfig, "maml-rl", name)


@dataclasses.dataclass(frozen=True)
class CurveBench(Config):
    """What the MAML-RL curve benches share: the learners' budget and the test protocol."""

    quick: bool = False
    """CI-sized run (a few iterations of a small meta-batch, a few test tasks)."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds."""
    num_tasks: Size = 100
    """Held-out test tasks."""
    eval_seed: int = EVAL_SEED
    """Seed of the test tasks and of the evaluation rollouts."""
    steps: Count = 3
    """Inner steps at test time."""
    baselines: tuple[str, ...] = ("scratch", "pretrained", "oracle")
    """Gradient baselines run beside MAML (none: ``--baselines`` alone); ``mktn`` adds MKTN (ANIL:
    the head alone adapted) trained on the same configuration and seeds."""
    threads: Size = 1
    """torch threads (the machine is shared)."""


def train_and_save(learner: MAMLRL, label: str, models: Path | None) -> dict[str, Any]:
    """Meta-train ``learner`` to its configured iterations; save it as the run directory
    ``models/<label>`` (replacing this bench's earlier one) so ``adaptrl eval`` can score it."""
    record = train_timed(learner, learner.config.iterations, f"train {label}")
    if models is not None:
        target = models / label
        if (target / "config.yaml").is_file():
            shutil.rmtree(target)
        save_trained(target, learner, learner.config, seed=learner.seed)
    return record


def run_curves(
    name: str,
    config: MAMLRLConfig,
    bench: CurveBench,
    *,
    reference: dict[str, list[float]] | None,
    models: Path | None = None,
    maml: MAMLRL | None = None,
) -> tuple[CurveReport, dict[str, Any]]:
    """Train MAML-RL and each baseline per seed, score all on the same held-out tasks.

    Every trained learner is saved under ``models`` (``<label>-s<seed>``). With ``maml`` (a
    learner already trained, one seed) that learner is scored instead of training one."""
    unknown = sorted(set(bench.baselines) - set(GRADIENT_BASELINES))
    if unknown:
        raise ConfigError(f"unknown baselines {unknown}; choose from {sorted(GRADIENT_BASELINES)}")
    if maml is not None and len(bench.seeds) != 1:
        raise ConfigError("a trained MAML model is one training seed; pass one seed with it")
    family = make_family(config.family)
    tasks = family.tasks(bench.num_tasks, "test", bench.eval_seed)
    variants = {"MAML": (config, True)} | {
        b: (GRADIENT_BASELINES[b].derive(config), GRADIENT_BASELINES[b].trained)
        for b in bench.baselines
    }
    curves: dict[str, list[torch.Tensor]] = {label: [] for label in variants}
    training: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    for seed in bench.seeds:
        for label, (cfg, trained) in variants.items():
            learner = (
                maml if label == "MAML" and maml is not None else variant_learner(cfg, seed=seed)
            )
            if trained and learner is not maml:
                training[label].append(train_and_save(learner, f"{label}-s{seed}", models))
            gen = make_generator(bench.eval_seed, name, "eval")  # the same for every learner
            curves[label].append(learner.adaptation_curve(tasks, bench.steps, gen).cpu())
    report = CurveReport(
        title=f"{name}: return after k inner VPG steps ({family.family_id})",
        metric="return",
        x_label="inner gradient steps",
        x=list(range(bench.steps + 1)),
        higher_is_better=True,
        curves=[AdaptationCurve(k, torch.stack(v).mean(0)) for k, v in curves.items()],
        meta={
            "family": family.family_id,
            "config": config_to_dict(config),
            "num_tasks": bench.num_tasks,
            "eval_seed": bench.eval_seed,
            "seeds": list(bench.seeds),
            "budget": budget_text(config, bench.steps),
        },
        reference=reference,
    )
    extra = {
        "test_tasks": {k: v.tolist() for k, v in tasks.params.items()},
        "training": training,
        "per_seed": {k: [v.mean(0).tolist() for v in vals] for k, vals in curves.items()},
    }
    return report, extra


def timing_lines(extra: dict[str, Any], family_id: str) -> list[str]:
    """Seconds per meta-iteration of every learner trained here, as a ratio to MAML's in the same
    run, and the ANIL paper's one-step figures where an ``mktn`` row is in the table."""
    seconds = {
        k: statistics.fmean(r["seconds_per_iteration"] for r in v)
        for k, v in extra["training"].items()
        if v
    }
    if "MAML" not in seconds:
        return []
    parts = [f"{k} {s:.2f} s ({seconds['MAML'] / s:.2f}x MAML's speed)" for k, s in seconds.items()]
    lines = ["", f"Seconds per meta-iteration (mean over seeds, this run): {'; '.join(parts)}."]
    if "mktn" in extra["training"] and family_id in ANIL_RL:
        paper = ANIL_RL[family_id]
        lines.append(
            f"{ANIL_SOURCE}, after one step: ANIL {paper['ANIL']} vs MAML {paper['MAML']} "
            f"(its own protocol; ours above are on our tasks and budget)."
        )
    return lines


def budget_text(config: MAMLRLConfig, steps: int) -> str:
    """The training and test budget of a curve, in words."""
    tested = config.eval_rollouts_per_task or config.rollouts_per_task
    return (
        f"{config.iterations} meta-iterations of {config.meta_batch_size} tasks x "
        f"{config.rollouts_per_task} rollouts per inner step; tested with {tested} rollouts per "
        f"task and step, {steps} steps"
    )


def protocol_text(config: MAMLRLConfig) -> str:
    """The inner-loop protocol of a MAML-RL configuration, in words (for the reports)."""
    lrs = ", ".join(map(str, config.eval_inner_lrs or config.train_lrs()))
    text = (
        f"Inner step size in training {config.inner_lr}; at test time {lrs} (the last "
        f"repeated), {config.eval_rollouts_per_task or config.rollouts_per_task} rollouts per "
        f"task and step; {config.inner_steps} inner step(s) in meta-training"
    )
    if config.inner_lrs:
        text += f" with step sizes {', '.join(map(str, config.inner_lrs))}"
    if config.step_loss_weights:
        text += f" and outer-loss weights {', '.join(map(str, config.step_loss_weights))}"
    if config.single_step_iterations:
        text += f", the first {config.single_step_iterations} meta-iterations with one inner step"
    return text + f"; batches of {config.batch} in training, of {config.eval_batch} at test time."


def load_maml_run(path: Path, family_id: str) -> tuple[MAMLRL, MAMLRLConfig, int]:
    """A trained MAML-RL model from a run directory, the configuration the baselines derive from
    (the run's, with ``iterations`` set to the meta-iterations it completed) and its seed.

    Long reproductions are trained as resumable runs (``adaptrl train maml-rl``); the bench then
    scores that model and trains each baseline for the same number of meta-iterations."""
    learner = load_trained(path, expect=MAMLRL)
    if learner.family.family_id != family_id:
        raise ConfigError(f"{path} was trained on {learner.family.family_id}, not {family_id}")
    if learner.iteration < 1:
        raise ConfigError(f"{path} has not completed a meta-iteration yet")
    config = dataclasses.replace(learner.config, iterations=learner.iteration)
    return learner, config, learner.seed


# --- maml-nav2d ---------------------------------------------------------------------------------
def stand_still_returns(family: TaskFamily, tasks: TaskBatch) -> dict[str, float]:
    """Mean return of a policy that never moves, under both nav2d rewards (closed form)."""
    c = family.config
    assert isinstance(c, Nav2DConfig)
    dist = torch.linalg.vector_norm(tasks.goal, dim=1)
    return {
        "distance": float((-c.horizon * dist).mean()),
        "squared": float((-c.horizon * dist.square()).mean()),
    }


def controller_oracle_return(family: TaskFamily, tasks: TaskBatch) -> torch.Tensor:
    """Per-task return of one episode of the ``oracle`` agent (the goal-seeking controller that
    knows the goal)."""
    env = family.make_env(len(tasks))
    return run_trials(Nav2DOracle(family), env, tasks, 1, make_generator(0), env_seed=0)[:, 0]


NAV2D_QUICK = {"iterations": 3, "meta_batch_size": 4, "rollouts_per_task": 4, "hidden": (32, 32)}
"""What --quick shrinks in a nav2d configuration (test rollouts are capped at 6 too)."""


@dataclasses.dataclass(frozen=True)
class MAMLNav2DConfig(CurveBench):
    """MAML Table 4 (2D navigation): MAML vs scratch / pretrained / oracle after 0..3 steps."""

    maml: MAMLRLConfig = maml_preset("nav2d")
    """MAML's configuration (a preset with --config: nav2d, nav2d-authors, nav2d-curriculum); the
    baselines derive theirs from it."""
    out: Path = Path("results/bench/maml-nav2d")
    """Directory for results.json, report.md, curve.png and the trained models."""


def run_maml_nav2d(bench: MAMLNav2DConfig) -> dict[str, Any]:
    torch.set_num_threads(bench.threads)
    config = bench.maml
    if not isinstance(config.family, Nav2DConfig):
        raise ConfigError(f"maml-nav2d runs on nav2d-goal-v0, not {config.family.family_id}")
    if bench.quick:
        tested = min(config.eval_rollouts_per_task or config.rollouts_per_task, 6)
        config = dataclasses.replace(config, **NAV2D_QUICK, eval_rollouts_per_task=tested)
        bench = dataclasses.replace(bench, num_tasks=8)
    reference = {k: v[: bench.steps + 1] for k, v in PAPER_NAV2D.items()}
    report, extra = run_curves(
        "maml-nav2d", config, bench, reference=reference, models=bench.out / "models"
    )
    family = make_family(config.family)
    tasks = family.tasks(bench.num_tasks, "test", bench.eval_seed)
    still = stand_still_returns(family, tasks)
    o_mean, o_ci = mean_ci(controller_oracle_return(family, tasks).numpy())
    lines = [
        curve_markdown(report),
        "",
        f"Paper: {PAPER_NAV2D_SOURCE}. Reward `{config.family.reward}`, goal region "
        f"`{config.family.goal_region}`. {protocol_text(config)}",
        "",
        "Reference points on the same test tasks (no learning):",
        f"- a policy that stands still: {still['distance']:.2f} with reward = -distance, "
        f"{still['squared']:.2f} with reward = -distance² (paper's MAML at 0 steps: -40.41)",
        f"- goal-seeking controller that knows the goal: {o_mean:.2f} ± {o_ci:.2f}",
        *timing_lines(extra, family.family_id),
    ]
    payload = {
        "benchmark": "maml-nav2d",
        "config": config_to_dict(config),
        "stand_still": still,
        "controller_oracle": {"mean": o_mean, "ci95": o_ci},
        "paper": PAPER_NAV2D,
        "paper_source": PAPER_NAV2D_SOURCE,
        **extra,
        "provenance": provenance(seeds=list(bench.seeds)),
    }
    return write_curve_bench(bench.out, report, "\n".join(lines), payload)


# --- maml-cheetah -----------------------------------------------------------------------------
CHEETAH_QUICK = {"iterations": 1, "meta_batch_size": 2, "rollouts_per_task": 2, "hidden": (16, 16)}
"""What --quick shrinks in a HalfCheetah configuration (1 test step, 2 test tasks, no baselines)."""


@dataclasses.dataclass(frozen=True)
class MAMLCheetahConfig(CurveBench):
    """MAML Table 5 (HalfCheetah forward/backward) and the goal-velocity family."""

    maml: MAMLRLConfig = maml_preset("cheetah-dir")
    """MAML's configuration (a preset with --config: cheetah-dir, Table 5; cheetah-vel). With
    --maml-run only its eval_inner_lrs are used: every row of a table is tested alike."""
    num_tasks: Size = 40
    """Held-out test tasks."""
    maml_run: Path | None = None
    """Score the model of this ``adaptrl train maml-rl`` run (resumable, for budgets of hours)
    instead of meta-training one; the baselines then take its configuration, seed and completed
    meta-iterations, and --seeds is not used."""
    out: Path = Path("results/bench/maml-cheetah")
    """Directory for results.json, report.md, curve.png and the trained models."""


def direction_breakdown(values: torch.Tensor, directions: torch.Tensor) -> dict[str, Any]:
    """Mean return after each step per running direction, and their direction-balanced average.

    Forward/backward has two tasks, so a random test draw mixes them in random proportion and the
    mean over tasks moves with that proportion (the two directions differ by hundreds); the
    balanced average weighs them equally. ``values`` is [tasks, steps + 1], ``directions`` [tasks].
    """
    forward, backward = values[directions > 0], values[directions < 0]
    if len(forward) == 0 or len(backward) == 0:
        raise ConfigError("the direction breakdown needs test tasks of both directions")
    f, b = forward.double().mean(0), backward.double().mean(0)
    return {
        "forward_tasks": len(forward),
        "backward_tasks": len(backward),
        "forward": f.tolist(),
        "backward": b.tolist(),
        "balanced": ((f + b) / 2).tolist(),
    }


def cheetah_setup(bench: MAMLCheetahConfig) -> tuple[MAMLRLConfig, MAMLCheetahConfig, Any]:
    """The configuration MAML and the baselines train from, the bench as it runs, and the
    ``--maml-run`` model (None when MAML is trained here)."""
    config, maml = bench.maml, None
    if bench.maml_run is not None:
        maml, config, seed = load_maml_run(bench.maml_run, config.family.family_id)
        config = dataclasses.replace(config, eval_inner_lrs=bench.maml.eval_inner_lrs)
        maml.config = dataclasses.replace(maml.config, eval_inner_lrs=bench.maml.eval_inner_lrs)
        bench = dataclasses.replace(bench, seeds=(seed,))
    if bench.quick:
        config = dataclasses.replace(config, **CHEETAH_QUICK) if maml is None else config
        bench = dataclasses.replace(bench, steps=1, num_tasks=2, baselines=())
    return config, bench, maml


def cheetah_lines(
    report: CurveReport, config: MAMLRLConfig, bench: MAMLCheetahConfig, extra: dict[str, Any]
) -> list[str]:
    """The report's lines after the table: test schedule, target, per-direction means, time."""
    lrs = ", ".join(map(str, config.eval_inner_lrs or config.train_lrs()))
    lines = [curve_markdown(report), "", f"Test-time step sizes {lrs} (the last repeated)."]
    if bench.maml_run is not None:
        lines.append(f"MAML: the model of training run `{bench.maml_run}` (seed {bench.seeds[0]}).")
    if config.family.family_id != "halfcheetah-dir-v0":
        return lines
    target = CHEETAH_TARGET_FRACTION * PAPER_CHEETAH_DIR["MAML (paper)"][1]
    ours = float(report.curves[0].values[:, 1].mean()) if bench.steps >= 1 else float("nan")
    lines.append(
        f"Target after 1 step: >= {target:.1f} (80% of the paper's 293.19, {PAPER_CHEETAH_SOURCE}); "
        f"ours {ours:.1f} after {config.iterations} meta-iterations: "
        f"{'met' if ours >= target else 'NOT met'}."
    )
    directions = torch.tensor(extra["test_tasks"]["direction"])
    if len(directions.unique()) == 2:  # a quick run may draw one direction only
        split = direction_breakdown(report.curves[0].values, directions)
        extra["maml_by_direction"] = split
        fmt = lambda xs: " / ".join(f"{x:.1f}" for x in xs)  # noqa: E731
        lines.append(
            f"MAML by direction ({split['forward_tasks']} forward, {split['backward_tasks']} "
            f"backward test tasks), after 0..{bench.steps} steps: forward {fmt(split['forward'])}; "
            f"backward {fmt(split['backward'])}; direction-balanced {fmt(split['balanced'])}."
        )
    return lines


def run_maml_cheetah(bench: MAMLCheetahConfig) -> dict[str, Any]:
    torch.set_num_threads(bench.threads)
    config, bench, maml = cheetah_setup(bench)
    task = config.family.family_id.split("-")[1]  # dir or vel
    reference = None
    if task == "dir":
        reference = {k: v[: bench.steps + 1] for k, v in PAPER_CHEETAH_DIR.items()}
    name = f"maml-cheetah-{task}"
    report, extra = run_curves(
        name, config, bench, reference=reference, models=bench.out / "models", maml=maml
    )
    lines = cheetah_lines(report, config, bench, extra)
    lines += timing_lines(extra, config.family.family_id)
    payload = {
        "benchmark": name,
        "paper": PAPER_CHEETAH_DIR if task == "dir" else None,
        "paper_source": PAPER_CHEETAH_SOURCE,
        **extra,
        "maml_run": None if bench.maml_run is None else str(bench.maml_run),
        "provenance": provenance(seeds=list(bench.seeds)),
    }
    return write_curve_bench(bench.out, report, "\n".join(lines), payload)


register_bench(
    BenchSpec(
        name="maml-nav2d",
        config_cls=MAMLNav2DConfig,
        run=run_maml_nav2d,
        description="MAML Table 4: 2D navigation, MAML vs scratch/pretrained/oracle after 0..3 steps",
        presets="maml-rl",
        preset_field="maml",
    )
)
register_bench(
    BenchSpec(
        name="maml-cheetah",
        config_cls=MAMLCheetahConfig,
        run=run_maml_cheetah,
        description="MAML Table 5: HalfCheetah forward/backward (and goal velocity) adaptation curves",
        presets="maml-rl",
        preset_field="maml",
    )
)

__all__ = [
    "MAMLCheetahConfig",
    "MAMLNav2DConfig",
    "direction_breakdown",
    "load_maml_run",
    "run_maml_cheetah",
    "run_maml_nav2d",
]
