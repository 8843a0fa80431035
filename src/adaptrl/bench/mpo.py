"""``adaptrl bench mpo-curves``: MPO's meta-test learning curves beside its baselines.

MPO (a Distral prior, ``algos/mpo.py``) and the baselines of :mod:`adaptrl.baselines.mpo`
(``scratch``: random init, no prior; ``pretrained``: a multi-task policy fine-tuned without a
prior) are meta-trained per seed on the same configuration and budget, then each trains a policy on
the *same* held-out tasks, with the same evaluation generator, episodes per update, inner
optimiser and number of updates. The curve is each task's mean episode return before every
update and after the last, with 95% confidence intervals over tasks (over per-seed means with
several seeds). The report adds the issue's target: the episodes MPO needs to reach the
from-scratch learner's final return, as a share of the episodes scratch used.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch

from adaptrl.algos.mpo import MPO, MPOConfig
from adaptrl.algos.trainer import save_trained
from adaptrl.baselines.mpo import MPO_BASELINES
from adaptrl.bench.common import train_timed, write_curve_bench
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Size, Unit, config_to_dict
from adaptrl.core.errors import ConfigError
from adaptrl.core.presets import load_preset
from adaptrl.core.provenance import provenance
from adaptrl.core.seeding import make_generator
from adaptrl.envs import make_family
from adaptrl.eval.curves import AdaptationCurve, CurveReport, curve_markdown
from adaptrl.eval.protocol import EVAL_SEED

TARGET_SHARE = 0.2
"""Issue 24's target: scratch's final return within a fifth of its episodes."""

QUICK = {
    "iterations": 2,
    "tasks": 3,
    "episodes": 3,
    "inner_updates": 2,
    "test_updates": 3,
    "hidden": (16,),
    "distill_steps": 2,
}
"""What --quick shrinks in an MPO configuration (with 4 test tasks, one seed)."""


@dataclasses.dataclass(frozen=True)
class MPOCurvesConfig(Config):
    """MPO vs scratch / pretrained: return of a new task's policy after each update."""

    mpo: MPOConfig = load_preset(MPOConfig, "mpo", "gridworld-four-rooms")
    """MPO's configuration (a preset with --config: gridworld-four-rooms, nav2d); the baselines
    derive theirs from it. Its test_updates is the curves' length."""
    quick: bool = False
    """CI-sized run (two meta-iterations of three tasks, four test tasks, three updates)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds."""
    num_tasks: Size = 32
    """Held-out test tasks."""
    eval_seed: int = EVAL_SEED
    """Seed of the test tasks and of the evaluation episodes."""
    baselines: tuple[str, ...] = ("scratch", "pretrained")
    """Baselines trained and scored beside MPO."""
    target: Unit = TARGET_SHARE
    """Share of scratch's episodes within which MPO should reach scratch's final return."""
    table_every: Size = 10
    """The markdown table shows every this many updates (and the last); the JSON and the plot
    hold them all."""
    threads: Size = 1
    """torch threads (the machine is shared)."""
    out: Path = Path("results/bench/mpo-curves")
    """Directory for results.json, report.md, curve.png, bench.json and the trained models."""


def episodes_to_reach(curve: torch.Tensor, level: float) -> int | None:
    """The first update ``k`` at which a mean curve ``[updates + 1]`` reaches ``level``, as the
    episodes per task spent until then, counting the batch that measured it: ``k + 1`` batches.
    None if it never does."""
    reached = (curve >= level).nonzero()
    return None if len(reached) == 0 else int(reached[0, 0]) + 1


def share_of_scratch(curves: dict[str, torch.Tensor], episodes: int) -> dict[str, Any]:
    """For every curve ``[tasks, updates + 1]`` (mean over seeds): the episodes per task it needs
    to reach scratch's final mean return, and that as a share of scratch's episodes."""
    scratch = curves["scratch"].mean(0)
    level, total = float(scratch[-1]), len(scratch) * episodes
    learners = {}
    for label, values in curves.items():
        batches = episodes_to_reach(values.mean(0), level)
        learners[label] = {
            "episodes": None if batches is None else batches * episodes,
            "share": None if batches is None else batches * episodes / total,
        }
    return {"scratch_final": level, "scratch_episodes": total, "learners": learners}


def train_and_save(learner: MPO, label: str, models: Path) -> dict[str, Any]:
    """Meta-train ``learner``; keep it as the run directory ``models/<label>``."""
    record = train_timed(learner, learner.config.iterations, f"train {label}")
    target = models / label
    if (target / "config.yaml").is_file():
        shutil.rmtree(target)
    save_trained(target, learner, learner.config, seed=learner.seed)
    return record


def run_mpo_curves(bench: MPOCurvesConfig) -> dict[str, Any]:
    torch.set_num_threads(bench.threads)
    config = bench.mpo
    if bench.quick:
        config = dataclasses.replace(config, **QUICK)
        bench = dataclasses.replace(bench, num_tasks=4, seeds=bench.seeds[:1], table_every=1)
    unknown = sorted(set(bench.baselines) - set(MPO_BASELINES))
    if unknown:
        raise ConfigError(f"unknown baselines {unknown}; choose from {sorted(MPO_BASELINES)}")
    if "scratch" not in bench.baselines:
        raise ConfigError("the target is measured against scratch: keep it in --baselines")
    family = make_family(config.family)
    tasks = family.tasks(bench.num_tasks, "test", bench.eval_seed)
    variants = {"mpo": (config, True)} | {
        b: (MPO_BASELINES[b].derive(config), MPO_BASELINES[b].trained) for b in bench.baselines
    }
    curves: dict[str, list[torch.Tensor]] = {label: [] for label in variants}
    training: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    updates = config.test_updates
    for seed in bench.seeds:
        for label, (cfg, trained) in variants.items():
            learner = MPO(cfg, seed=seed)
            if trained:
                training[label].append(
                    train_and_save(learner, f"{label}-s{seed}", bench.out / "models")
                )
            gen = make_generator(bench.eval_seed, "mpo-curves", "eval")  # same for every learner
            curves[label].append(learner.adaptation_curve(tasks, updates, gen).cpu())
    means = {k: torch.stack(v).mean(0) for k, v in curves.items()}
    report = CurveReport(
        title=f"mpo-curves: return of a new task's policy after k updates ({family.family_id})",
        metric="return",
        x_label="updates",
        x=list(range(updates + 1)),
        higher_is_better=True,
        curves=[AdaptationCurve(k, v) for k, v in means.items()],
        meta={
            "family": family.family_id,
            "config": config_to_dict(config),
            "num_tasks": bench.num_tasks,
            "eval_seed": bench.eval_seed,
            "seeds": list(bench.seeds),
            "budget": budget_text(config),
        },
    )
    reach = share_of_scratch(means, config.episodes)
    per_seed = [
        share_of_scratch({k: v[i] for k, v in curves.items()}, config.episodes)
        for i in range(len(bench.seeds))
    ]
    lines = [
        curve_markdown(table_view(report, bench.table_every)),
        "",
        *target_lines(reach, per_seed, bench),
    ]
    payload = {
        "benchmark": "mpo-curves",
        "config": config_to_dict(config),
        "reach_scratch_final": reach,
        "reach_scratch_final_per_seed": per_seed,
        "training": training,
        "per_seed": {k: [v.mean(0).tolist() for v in vals] for k, vals in curves.items()},
        "test_tasks": {k: v.tolist() for k, v in tasks.params.items()},
        "provenance": provenance(seeds=list(bench.seeds)),
    }
    return write_curve_bench(bench.out, report, "\n".join(lines), payload)


def table_view(report: CurveReport, every: int) -> CurveReport:
    """The report with every ``every``-th point and the last, for a table that fits a page."""
    keep = sorted({*range(0, len(report.x), every), len(report.x) - 1})
    return dataclasses.replace(
        report,
        x=[report.x[i] for i in keep],
        curves=[AdaptationCurve(c.label, c.values[:, keep]) for c in report.curves],
    )


def budget_text(config: MPOConfig) -> str:
    """The training and test budget, in words."""
    return (
        f"{config.iterations} meta-iterations of {config.tasks} tasks x {config.inner_updates} "
        f"updates x {config.episodes} episodes (the same episodes for the multi-task policy); at "
        f"test {config.test_updates} updates of {config.episodes} episodes per task, Adam "
        f"{config.inner_lr}; c_KL {config.kl_weight} in training, {config.meta_test_kl} at "
        f"test (baselines 0), c_ent {config.entropy_weight}"
        + (", two columns" if config.two_column else "")
    )


def target_lines(
    reach: dict[str, Any], per_seed: list[dict[str, Any]], bench: MPOCurvesConfig
) -> list[str]:
    """The target's verdict and the episodes each learner needs to reach scratch's final return."""

    def text(r: dict[str, Any], label: str) -> str:
        got = r["learners"][label]
        return "never" if got["episodes"] is None else f"{got['episodes']} ({got['share']:.2f})"

    share = reach["learners"]["mpo"]["share"]
    met = share is not None and share <= bench.target
    return [
        f"Scratch's final return: {reach['scratch_final']:.2f} after "
        f"{reach['scratch_episodes']} episodes per task (its last batch included). Episodes per "
        "task each learner needs to reach it, and their share of scratch's (mean curves over "
        "seeds): " + "; ".join(f"{k} {text(reach, k)}" for k in reach["learners"]) + ".",
        "Per seed, each against its own scratch: "
        + "; ".join(
            f"seed {s}: mpo {text(r, 'mpo')}" for s, r in zip(bench.seeds, per_seed, strict=True)
        )
        + ".",
        f"Target (MPO reaches scratch's final return within {bench.target:.0%} of its "
        f"episodes): {'met' if met else 'NOT met'}.",
    ]


register_bench(
    BenchSpec(
        name="mpo-curves",
        config_cls=MPOCurvesConfig,
        run=run_mpo_curves,
        description="MPO (Distral prior) vs scratch/pretrained: learning curves on held-out tasks "
        "and the episodes MPO needs to reach scratch's final return",
        presets="mpo",
        preset_field="mpo",
    )
)

__all__ = ["MPOCurvesConfig", "episodes_to_reach", "run_mpo_curves", "share_of_scratch"]
