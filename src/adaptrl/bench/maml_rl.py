"""``adaptrl bench maml-nav2d`` and ``maml-cheetah``: MAML-RL adaptation curves beside the paper's.

Each bench meta-trains MAML-RL and the gradient baselines of :mod:`adaptrl.baselines.pg`
(``scratch``: random init + the same inner steps; ``pretrained``: multi-task policy fine-tuned with
the same steps; ``oracle``: a policy that sees the task) for the same number of outer iterations,
then measures every one of them on the *same* held-out test tasks with the same evaluation
generator: mean return of 20 rollouts per task after 0, 1, ..., ``steps`` inner VPG steps, with
95% confidence intervals over tasks (over per-seed means when several seeds are given).

The paper's numbers (Finn, Abbeel & Levine 2017, Appendix C) are carried here as constants.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import torch

from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.trainer import save_trained
from adaptrl.baselines.pg import GRADIENT_BASELINES
from adaptrl.bench.common import write_curve_bench
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.errors import ConfigError
from adaptrl.core.progress import progress
from adaptrl.core.provenance import provenance
from adaptrl.core.seeding import make_generator
from adaptrl.envs import make_family
from adaptrl.envs.base import FamilyConfig, TaskBatch, TaskFamily
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.eval.curves import AdaptationCurve, CurveReport, curve_markdown
from adaptrl.eval.protocol import EVAL_SEED
from adaptrl.eval.stats import mean_ci

PAPER_NAV2D = {
    "MAML (paper)": [-40.41, -11.68, -3.33, -3.23],
    "context vector (paper)": [-42.42, -13.90, -5.17, -3.18],
}
PAPER_NAV2D_SOURCE = "Finn, Abbeel & Levine 2017 (arXiv:1703.03400), Appendix C, Table 4"
PAPER_CHEETAH_DIR = {
    "MAML (paper)": [-50.69, 293.19, 313.48, 315.65],
    "context vector (paper)": [-40.49, -44.08, -38.27, -42.50],
}
PAPER_CHEETAH_SOURCE = "Finn, Abbeel & Levine 2017 (arXiv:1703.03400), Appendix C, Table 5"
CHEETAH_TARGET_FRACTION = 0.8
"""Target: after one step at least this fraction of the paper's forward/backward figure."""


def train_learner(learner: MAMLRL, iterations: int, label: str) -> dict[str, Any]:
    """Run ``iterations`` meta-iterations; returns timing and the last metrics."""
    last: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = progress(range(iterations), description=f"train {label}", total=iterations)
    for _ in bar:
        metrics = learner.meta_train_step()
        last = {k: float(v) for k, v in metrics.items()}
        if hasattr(bar, "update_fields"):
            bar.update_fields(pre=last.get("return_pre"), post=last.get("return_post"))
    seconds = time.perf_counter() - t0
    return {
        "iterations": iterations,
        "seconds": seconds,
        "seconds_per_iteration": seconds / max(iterations, 1),
        "last_metrics": last,
    }


def run_curves(
    name: str,
    config: MAMLRLConfig,
    *,
    seeds: tuple[int, ...],
    baselines: tuple[str, ...],
    num_tasks: int,
    eval_seed: int,
    steps: int,
    reference: dict[str, list[float]] | None,
    models: Path | None = None,
    maml: MAMLRL | None = None,
) -> tuple[CurveReport, dict[str, Any]]:
    """Train MAML-RL and each baseline per seed, score all on the same held-out tasks.

    With ``models`` every trained learner is also saved there as a run directory
    (``<label>-s<seed>``), so ``adaptrl eval`` can score it again under another protocol. With
    ``maml`` (a learner already trained, one seed) that learner is scored instead of training one."""
    unknown = sorted(set(baselines) - set(GRADIENT_BASELINES))
    if unknown:
        raise ConfigError(f"unknown baselines {unknown}; choose from {sorted(GRADIENT_BASELINES)}")
    if maml is not None and len(seeds) != 1:
        raise ConfigError("a trained MAML model is one training seed; pass one seed with it")
    family = make_family(config.family)
    tasks = family.tasks(num_tasks, "test", eval_seed)
    variants = [("MAML", config, True)] + [
        (b, GRADIENT_BASELINES[b].derive(config), GRADIENT_BASELINES[b].trained) for b in baselines
    ]
    per_label: dict[str, list[torch.Tensor]] = {label: [] for label, _, _ in variants}
    training: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in variants}
    for seed in seeds:
        for label, cfg, trained in variants:
            if label == "MAML" and maml is not None:
                learner, trained = maml, False
            else:
                learner = MAMLRL(cfg, seed=seed)
            if trained:
                training[label].append(train_learner(learner, cfg.iterations, f"{label} s{seed}"))
                if models is not None:
                    target = models / f"{label}-s{seed}"
                    if (target / "config.yaml").is_file():  # this bench's earlier model
                        shutil.rmtree(target)
                    save_trained(target, learner, cfg, seed=seed)
            gen = make_generator(eval_seed, name, "eval")  # same generator for every learner
            per_label[label].append(learner.adaptation_curve(tasks, steps, gen).cpu())
    curves = [
        AdaptationCurve(label=label, values=torch.stack(vals).mean(0))
        for label, vals in per_label.items()
    ]
    report = CurveReport(
        title=f"{name}: return after k inner VPG steps ({family.family_id})",
        metric="return",
        x_label="inner gradient steps",
        x=list(range(steps + 1)),
        higher_is_better=True,
        curves=curves,
        meta={
            "family": family.family_id,
            "config": _jsonable(dataclasses.asdict(config)),
            "num_tasks": num_tasks,
            "eval_seed": eval_seed,
            "seeds": list(seeds),
            "budget": f"{config.iterations} meta-iterations of {config.meta_batch_size} tasks x "
            f"{config.rollouts_per_task} rollouts per inner step; tested with "
            f"{config.eval_rollouts_per_task or config.rollouts_per_task} rollouts per task and "
            f"step, {steps} steps",
        },
        reference=reference,
    )
    extra = {
        "test_tasks": {k: v.tolist() for k, v in tasks.params.items()},
        "training": training,
        "per_seed": {
            label: [v.mean(0).tolist() for v in vals] for label, vals in per_label.items()
        },
    }
    return report, extra


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, int | float | str | bool) or x is None:
        return x
    return str(x)


def load_maml_run(path: Path, family_id: str) -> tuple[MAMLRL, MAMLRLConfig, int]:
    """A trained MAML-RL model from a run directory, the configuration the baselines derive from
    (the run's, with ``iterations`` set to the meta-iterations it completed) and its seed.

    Long reproductions are trained as resumable runs (``adaptrl train maml-rl``); the bench then
    scores that model and trains each baseline for the same number of meta-iterations."""
    from adaptrl.algos.trainer import load_trained

    learner = load_trained(path, expect=MAMLRL)
    if learner.family.family_id != family_id:
        raise ConfigError(f"{path} was trained on {learner.family.family_id}, not {family_id}")
    if learner.iteration < 1:
        raise ConfigError(f"{path} has not completed a meta-iteration yet")
    config = dataclasses.replace(learner.config, iterations=learner.iteration)
    return learner, config, learner.seed


def summary_rows(report: CurveReport) -> list[str]:
    """``label: mean ± ci`` at each step (markdown lines)."""
    lines = []
    for curve in report.curves:
        cells = []
        for k in range(curve.values.shape[1]):
            m, h = mean_ci(curve.values[:, k].numpy())
            cells.append(f"{m:.2f} ± {h:.2f}")
        lines.append(f"| {curve.label} | " + " | ".join(cells) + " |")
    return lines


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
    """Per-task return of the goal-seeking controller that knows the goal (one episode each)."""
    c = family.config
    assert isinstance(c, Nav2DConfig)
    env = family.make_env(len(tasks))
    env.set_tasks(tasks)
    obs = env.reset(seed=0)
    alive = torch.ones(len(tasks))
    total = torch.zeros(len(tasks))
    for _ in range(c.horizon):
        step = env.step((tasks.goal - obs).clamp(-c.max_action, c.max_action))
        total += alive * step.reward
        alive = alive * (~(step.terminated | step.truncated)).float()
        obs = step.obs
    return total


def nav2d_config(
    reward: str,
    iterations: int,
    quick: bool,
    inner_lr: float = 0.1,
    eval_inner_lrs: tuple[float, ...] = (0.1, 0.05),
    eval_rollouts: int = 20,
    goal_region: str = "disc",
    inner_steps: int = 1,
    inner_lrs: tuple[float, ...] = (),
    step_loss_weights: tuple[float, ...] = (),
    batch: str = "episodes",
    eval_batch: str = "episodes",
    single_step_iterations: int = 0,
) -> MAMLRLConfig:
    """The paper's 2D-navigation setting (Appendix C): 100-100 ReLU, alpha 0.1 (0.05 after step 1).

    The authors' released scripts used other step sizes (``maml_trpo_point.py``: alpha 0.5 in
    training; ``test_maml_point.py``: 0.5, then 0.25, on 40 rollouts per step): pass them to compare.
    """
    base = MAMLRLConfig(
        family=Nav2DConfig(reward=reward, goal_region=goal_region),  # type: ignore[arg-type]
        iterations=iterations,
        meta_batch_size=20,
        rollouts_per_task=20,
        hidden=(100, 100),
        activation="relu",
        inner_steps=inner_steps,
        inner_lr=inner_lr,
        inner_lrs=inner_lrs,
        step_loss_weights=step_loss_weights,
        single_step_iterations=single_step_iterations,
        eval_inner_lrs=eval_inner_lrs,
        eval_rollouts_per_task=eval_rollouts,
        batch=batch,  # type: ignore[arg-type]
        eval_batch=eval_batch,  # type: ignore[arg-type]
    )
    if quick:
        return dataclasses.replace(
            base,
            meta_batch_size=4,
            rollouts_per_task=4,
            hidden=(32, 32),
            eval_rollouts_per_task=min(eval_rollouts, 6),
        )
    return base


@dataclasses.dataclass(frozen=True)
class MAMLNav2DConfig:
    """MAML Table 4 (2D navigation): MAML vs scratch / pretrained / oracle after 0..3 steps."""

    quick: bool = False
    """CI-sized run: 3 iterations, small meta-batch, 8 test tasks."""
    iterations: int = 300
    """Meta-iterations for MAML and every trained baseline."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds."""
    num_tasks: int = 100
    """Held-out test tasks."""
    eval_seed: int = EVAL_SEED
    """Seed of the test tasks and of the evaluation rollouts."""
    steps: int = 3
    """Inner steps at test time."""
    reward: Literal["distance", "squared"] = "distance"
    """nav2d reward: minus the distance (fits the paper's figures) or minus its square."""
    inner_lr: float = 0.1
    """Inner step size in meta-training (paper text: 0.1; the authors' released script: 0.5)."""
    eval_inner_lrs: tuple[float, ...] = (0.1, 0.05)
    """Step sizes of the test-time steps, the last repeated (paper text: 0.1 then 0.05; the
    authors' released test script: 0.5 then 0.25). Every learner uses the same schedule."""
    eval_rollouts: int = 20
    """Rollouts per test task for each step (paper: 20, as in training; the authors' released
    test script: 40)."""
    goal_region: Literal["disc", "box"] = "disc"
    """Where an episode ends at the goal: the disc of radius 0.01 (our default) or the square of
    half-side 0.01 of the authors' released environment (``point_env_randgoal.py``)."""
    inner_steps: int = 1
    """Inner steps in meta-training (the paper: 1); the baselines train without adaptation."""
    inner_lrs: tuple[float, ...] = ()
    """Step size of each meta-training inner step (empty: inner_lr for every step)."""
    step_loss_weights: tuple[float, ...] = ()
    """Outer-loss weight of the policy after each training inner step (empty: the last only)."""
    single_step_iterations: int = 0
    """Step curriculum: the first meta-iterations train one inner step, the rest inner_steps
    (0: inner_steps from the start)."""
    batch: Literal["episodes", "steps"] = "episodes"
    """What a meta-training batch of a task holds: the first episode of each of its 20
    environments, or (``steps``) every episode they complete within a budget of 20 x 100 steps,
    as the authors' rllab sampler drew it (episodes ending at the goal make it hold more)."""
    eval_batch: Literal["episodes", "steps"] = "episodes"
    """The same for test batches (eval_rollouts environments; the authors' test script sampled
    4000 steps on 40)."""
    baselines: tuple[str, ...] = ("scratch", "pretrained", "oracle")
    """Gradient baselines run beside MAML."""
    threads: int = 1
    """torch threads (the machine is shared)."""
    out: Path = Path("results/bench/maml-nav2d")
    """Directory for results.json, report.md and curve.png."""


def run_maml_nav2d(cfg: MAMLNav2DConfig) -> dict[str, Any]:
    torch.set_num_threads(cfg.threads)
    iterations = 3 if cfg.quick else cfg.iterations
    num_tasks = 8 if cfg.quick else cfg.num_tasks
    config = nav2d_config(
        cfg.reward,
        iterations,
        cfg.quick,
        cfg.inner_lr,
        cfg.eval_inner_lrs,
        cfg.eval_rollouts,
        cfg.goal_region,
        cfg.inner_steps,
        cfg.inner_lrs,
        cfg.step_loss_weights,
        cfg.batch,
        cfg.eval_batch,
        cfg.single_step_iterations,
    )
    report, extra = run_curves(
        "maml-nav2d",
        config,
        seeds=cfg.seeds,
        baselines=cfg.baselines,
        num_tasks=num_tasks,
        eval_seed=cfg.eval_seed,
        steps=cfg.steps,
        reference={k: v[: cfg.steps + 1] for k, v in PAPER_NAV2D.items()},
        models=cfg.out / "models",
    )
    family = make_family(config.family)
    tasks = family.tasks(num_tasks, "test", cfg.eval_seed)
    still = stand_still_returns(family, tasks)
    oracle = controller_oracle_return(family, tasks)
    o_mean, o_ci = mean_ci(oracle.numpy())
    lines = [
        curve_markdown(report),
        "",
        f"Paper: {PAPER_NAV2D_SOURCE}. Reward used: `{cfg.reward}`. Inner step size in "
        f"training {cfg.inner_lr}; at test time {', '.join(map(str, cfg.eval_inner_lrs))} "
        f"(the last repeated), {cfg.eval_rollouts} rollouts per task and step; "
        f"{cfg.inner_steps} inner step(s) in meta-training"
        + (f" with step sizes {', '.join(map(str, cfg.inner_lrs))}" if cfg.inner_lrs else "")
        + (
            f" and outer-loss weights {', '.join(map(str, cfg.step_loss_weights))}"
            if cfg.step_loss_weights
            else ""
        )
        + (
            f", the first {cfg.single_step_iterations} meta-iterations with one inner step"
            if cfg.single_step_iterations
            else ""
        )
        + f"; goal region `{cfg.goal_region}`; batches of {cfg.batch} in training, of "
        f"{cfg.eval_batch} at test time.",
        "",
        "Reference points on the same test tasks (no learning):",
        f"- a policy that stands still: {still['distance']:.2f} with reward = -distance, "
        f"{still['squared']:.2f} with reward = -distance² (paper's MAML at 0 steps: -40.41)",
        f"- goal-seeking controller that knows the goal: {o_mean:.2f} ± {o_ci:.2f}",
    ]
    markdown = "\n".join(lines)
    payload = {
        "benchmark": "maml-nav2d",
        "reward": cfg.reward,
        "inner_lr": cfg.inner_lr,
        "eval_inner_lrs": list(cfg.eval_inner_lrs),
        "eval_rollouts": cfg.eval_rollouts,
        "goal_region": cfg.goal_region,
        "inner_steps": cfg.inner_steps,
        "inner_lrs": list(cfg.inner_lrs),
        "step_loss_weights": list(cfg.step_loss_weights),
        "single_step_iterations": cfg.single_step_iterations,
        "batch": cfg.batch,
        "eval_batch": cfg.eval_batch,
        "stand_still": still,
        "controller_oracle": {"mean": o_mean, "ci95": o_ci},
        "paper": PAPER_NAV2D,
        "paper_source": PAPER_NAV2D_SOURCE,
        **extra,
        "provenance": provenance(seeds=list(cfg.seeds)),
    }
    return write_curve_bench(cfg.out, report, markdown, payload)


# --- maml-cheetah -----------------------------------------------------------------------------
CHEETAH_FAMILIES = {"dir": "halfcheetah-dir-v0", "vel": "halfcheetah-vel-v0"}


def cheetah_family(task: str) -> FamilyConfig:
    """The HalfCheetah family config (``dir``: forward/backward, ``vel``: goal velocity)."""
    from adaptrl.envs import FAMILIES

    family_id = CHEETAH_FAMILIES[task]
    if family_id not in FAMILIES:
        raise ConfigError(
            f"{family_id} is not available: install the mujoco extra (pip install 'adaptrl[mujoco]')"
        )
    return FAMILIES.get(family_id).config_cls()


@dataclasses.dataclass(frozen=True)
class MAMLCheetahConfig:
    """MAML Table 5 (HalfCheetah forward/backward) and the goal-velocity family."""

    quick: bool = False
    """CI-sized run: 1 iteration, 2 tasks x 2 rollouts, 2 test tasks, 1 step."""
    task: Literal["dir", "vel"] = "dir"
    """``dir``: forward/backward (Table 5); ``vel``: goal velocity ~ U[0, 2]."""
    iterations: int = 100
    """Meta-iterations for MAML and every trained baseline."""
    meta_batch_size: int = 40
    """Tasks per meta-batch (paper: 40)."""
    rollouts_per_task: int = 20
    """Rollouts per inner step (paper: 20)."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds."""
    num_tasks: int = 40
    """Held-out test tasks."""
    eval_seed: int = EVAL_SEED
    """Seed of the test tasks and of the evaluation rollouts."""
    steps: int = 3
    """Inner steps at test time."""
    eval_inner_lrs: tuple[float, ...] = (0.1, 0.05)
    """Step sizes of the test-time steps, the last repeated (the paper: 0.1, then 0.05). Every
    learner, a ``--maml-run`` model included, is tested with this schedule."""
    baselines: tuple[str, ...] = ("scratch", "pretrained", "oracle")
    """Gradient baselines run beside MAML."""
    maml_run: Path | None = None
    """Score the model of this ``adaptrl train maml-rl`` run (resumable, for budgets of hours)
    instead of meta-training one; the baselines then take its configuration, seed and completed
    meta-iterations, and ``--iterations``, ``--meta-batch-size``, ``--rollouts-per-task`` and
    ``--seeds`` are not used."""
    threads: int = 1
    """torch threads (the machine is shared)."""
    out: Path = Path("results/bench/maml-cheetah")
    """Directory for results.json, report.md and curve.png."""


def cheetah_config(cfg: MAMLCheetahConfig) -> MAMLRLConfig:
    """The paper's locomotion setting: 100-100 ReLU, alpha 0.1, TRPO, H = 200."""
    base = MAMLRLConfig(
        family=cheetah_family(cfg.task),  # type: ignore[arg-type]
        iterations=cfg.iterations,
        meta_batch_size=cfg.meta_batch_size,
        rollouts_per_task=cfg.rollouts_per_task,
        hidden=(100, 100),
        activation="relu",
        inner_steps=1,
        inner_lr=0.1,
        eval_inner_lrs=cfg.eval_inner_lrs,
        eval_chunk=10,
    )
    if cfg.quick:
        return dataclasses.replace(
            base, iterations=1, meta_batch_size=2, rollouts_per_task=2, hidden=(16, 16)
        )
    return base


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


def run_maml_cheetah(cfg: MAMLCheetahConfig) -> dict[str, Any]:
    torch.set_num_threads(cfg.threads)
    config, seeds, maml = cheetah_config(cfg), cfg.seeds, None
    if cfg.maml_run is not None:
        maml, config, seed = load_maml_run(cfg.maml_run, CHEETAH_FAMILIES[cfg.task])
        config = dataclasses.replace(config, eval_inner_lrs=cfg.eval_inner_lrs)
        maml.config = dataclasses.replace(maml.config, eval_inner_lrs=cfg.eval_inner_lrs)
        seeds = (seed,)
    steps = 1 if cfg.quick else cfg.steps
    num_tasks = 2 if cfg.quick else cfg.num_tasks
    reference = (
        {k: v[: steps + 1] for k, v in PAPER_CHEETAH_DIR.items()} if cfg.task == "dir" else None
    )
    report, extra = run_curves(
        f"maml-cheetah-{cfg.task}",
        config,
        seeds=seeds,
        baselines=() if cfg.quick else cfg.baselines,
        num_tasks=num_tasks,
        eval_seed=cfg.eval_seed,
        steps=steps,
        reference=reference,
        models=cfg.out / "models",
        maml=maml,
    )
    lines = [
        curve_markdown(report),
        "",
        f"Test-time step sizes {', '.join(map(str, cfg.eval_inner_lrs))} (the last repeated).",
    ]
    if cfg.maml_run is not None:
        lines.append(f"MAML: the model of training run `{cfg.maml_run}` (seed {seeds[0]}).")
    if cfg.task == "dir":
        target = CHEETAH_TARGET_FRACTION * PAPER_CHEETAH_DIR["MAML (paper)"][1]
        ours = float(report.curves[0].values[:, 1].mean()) if steps >= 1 else float("nan")
        lines.append(
            f"Target after 1 step: >= {target:.1f} (80% of the paper's 293.19, {PAPER_CHEETAH_SOURCE}); "
            f"ours {ours:.1f} after {config.iterations} meta-iterations: "
            f"{'met' if ours >= target else 'NOT met'}."
        )
    directions = torch.tensor(extra["test_tasks"]["direction"]) if cfg.task == "dir" else None
    if directions is not None and len(directions.unique()) == 2:  # a quick run may draw one
        split = direction_breakdown(report.curves[0].values, directions)
        extra["maml_by_direction"] = split
        lines.append(
            f"MAML by direction ({split['forward_tasks']} forward, {split['backward_tasks']} "
            f"backward test tasks), after 0..{steps} steps: forward "
            + " / ".join(f"{x:.1f}" for x in split["forward"])
            + "; backward "
            + " / ".join(f"{x:.1f}" for x in split["backward"])
            + "; direction-balanced "
            + " / ".join(f"{x:.1f}" for x in split["balanced"])
            + "."
        )
    maml_train = extra["training"]["MAML"]
    if maml_train:
        lines.append(
            f"Seconds per MAML meta-iteration: {maml_train[0]['seconds_per_iteration']:.2f} "
            f"({config.meta_batch_size} tasks x {config.rollouts_per_task} rollouts x H=200)."
        )
    markdown = "\n".join(lines)
    payload = {
        "benchmark": f"maml-cheetah-{cfg.task}",
        "paper": PAPER_CHEETAH_DIR if cfg.task == "dir" else None,
        "paper_source": PAPER_CHEETAH_SOURCE,
        **extra,
        "maml_run": None if cfg.maml_run is None else str(cfg.maml_run),
        "provenance": provenance(seeds=list(seeds)),
    }
    return write_curve_bench(cfg.out, report, markdown, payload)


def _nav2d(cfg: MAMLNav2DConfig) -> int:
    run_maml_nav2d(cfg)
    return 0


def _cheetah(cfg: MAMLCheetahConfig) -> int:
    run_maml_cheetah(cfg)
    return 0


register_bench(
    BenchSpec(
        name="maml-nav2d",
        config_cls=MAMLNav2DConfig,
        run=_nav2d,
        description="MAML Table 4: 2D navigation, MAML vs scratch/pretrained/oracle after 0..3 steps",
    )
)
register_bench(
    BenchSpec(
        name="maml-cheetah",
        config_cls=MAMLCheetahConfig,
        run=_cheetah,
        description="MAML Table 5: HalfCheetah forward/backward (and goal velocity) adaptation curves",
    )
)

__all__ = [
    "PAPER_CHEETAH_DIR",
    "PAPER_NAV2D",
    "MAMLCheetahConfig",
    "MAMLNav2DConfig",
    "direction_breakdown",
    "load_maml_run",
    "run_maml_cheetah",
    "run_maml_nav2d",
]
