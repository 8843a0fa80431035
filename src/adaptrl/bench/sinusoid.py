"""``adaptrl bench sinusoid``: MAML's sinusoid regression (Finn et al. 2017, Appendix C Table 2).

Every method is trained on ``sinusoid-v0`` with K = 10 points per task (support and query), then
evaluated on the same held-out test tasks: 5 support points, SGD with the method's own inner step
size, mean squared error on 100 query points per task after 0..10 steps, 95% CI over tasks.

Methods: MAML (second order, one inner step, α = 0.01, meta-batch 25, the paper's setting),
the "pretrained on all tasks" baseline (plain regression on pooled tasks, fine-tuned with the same
SGD steps), Meta-SGD (learned per-parameter step sizes) and Reptile (batched). The paper's MAML
and pretrained rows are printed beside ours; the target is ours <= the paper's MAML at 1, 5, 10.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch

from adaptrl.algos.anil import ANILConfig
from adaptrl.algos.gradient import GradientConfig, GradientFewShotLearner
from adaptrl.algos.maml import MAMLConfig
from adaptrl.algos.metasgd import MetaSGDConfig
from adaptrl.algos.registry import ALGOS
from adaptrl.algos.reptile import ReptileConfig
from adaptrl.baselines.pretrained import PretrainedConfig, PretrainedFinetune
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.checkpoint import load_state, read_checkpoint_meta, save_state
from adaptrl.core.errors import ConfigError, TrainingError
from adaptrl.core.progress import console, progress
from adaptrl.eval.curves import AdaptationCurve, CurveReport, curve_markdown, save_curve_report
from adaptrl.eval.stats import mean_ci
from adaptrl.fewshot import SinusoidConfig

#: MAML (Finn et al. 2017), Appendix C, Table 2: 5-shot sinusoid MSE after k gradient steps,
#: model meta-trained with K = 10 (one inner step, α = 0.01, meta-batch 25, 2x40 ReLU MLP).
PAPER_SOURCE = "MAML (Finn et al. 2017) Appendix C Table 2"
PAPER_STEPS = (1, 5, 10)
PAPER_MAML = (0.67, 0.38, 0.35)
PAPER_PRETRAINED = (2.41, 2.23, 2.19)
PAPER_MULTITASK_REG = (2.91, 2.72, 2.71)

METHODS = ("maml", "pretrained", "metasgd", "reptile", "anil")
LABELS = {
    "maml": "MAML (ours)",
    "pretrained": "pretrained + fine-tune (ours)",
    "metasgd": "Meta-SGD (ours)",
    "reptile": "Reptile (ours)",
    "anil": "ANIL (ours)",
}


@dataclasses.dataclass(frozen=True)
class SinusoidBenchConfig:
    """MAML Appendix C Table 2: 5-shot sinusoid MSE after 1/5/10 steps, trained with K = 10."""

    methods: tuple[str, ...] = ("maml", "pretrained", "metasgd", "reptile")
    """Methods to train and evaluate (maml, pretrained, metasgd, reptile, anil)."""
    iterations: int = 70000
    """Outer iterations of MAML (the paper's 70,000)."""
    other_iterations: int = 20000
    """Outer iterations of the other methods (fewer, to fit a 2-core CPU budget)."""
    num_tasks: int = 1000
    """Held-out test tasks (the same for every method)."""
    steps: int = 10
    """Inner steps at test time (curve points 0..steps)."""
    eval_shots: int = 5
    """Support points per test task."""
    eval_queries: int = 100
    """Query points per test task (more points: a less noisy per-task MSE)."""
    train_shots: int = 10
    """K during meta-training (support and query points per task)."""
    seed: int = 0
    """Training seed (initialisation and meta-batches)."""
    eval_seed: int = 20170309
    """Seed of the held-out test tasks."""
    quick: bool = False
    """CI-sized smoke run (300 iterations, 100 tasks); numbers are not meaningful."""
    retrain: bool = False
    """Train again even if out/models holds a model with the same settings."""
    out: Path = Path("results/bench-sinusoid")
    """Output folder: results.json, report.md, curve.png and the trained models."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
        if (
            min(self.iterations, self.other_iterations) < 1
            or self.num_tasks < 2
            or self.steps < max(PAPER_STEPS)
        ):
            raise ConfigError(
                f"need iterations >= 1, num_tasks >= 2 and steps >= {max(PAPER_STEPS)}"
            )


def method_config(method: str, family: SinusoidConfig, iterations: int) -> GradientConfig:
    """The paper's settings (family defaults) with the fastest exact strategy for the MLP."""
    configs: dict[str, GradientConfig] = {
        "maml": MAMLConfig(family=family, iterations=iterations, strategy="batched"),
        "metasgd": MetaSGDConfig(family=family, iterations=iterations, strategy="batched"),
        "anil": ANILConfig(family=family, iterations=iterations),
        "reptile": ReptileConfig(family=family, iterations=iterations),
        "pretrained": PretrainedConfig(family=family, iterations=iterations),
    }
    return configs[method]


def build(method: str, config: GradientConfig, seed: int) -> GradientFewShotLearner:
    if method == "pretrained":
        return PretrainedFinetune(config, seed=seed)  # type: ignore[arg-type]
    learner = ALGOS.get(method).learner_cls(config, seed=seed)
    assert isinstance(learner, GradientFewShotLearner)
    return learner


def train_or_load(
    method: str, config: GradientConfig, cfg: SinusoidBenchConfig, out: Path
) -> tuple[GradientFewShotLearner, dict[str, Any]]:
    """Train ``method`` (or reload the model a previous run saved with the same settings)."""
    learner = build(method, config, cfg.seed)
    path = out / "models" / method
    key = {
        "method": method,
        "iterations": config.iterations,
        "seed": cfg.seed,
        "k": cfg.train_shots,
    }
    if not cfg.retrain and path.with_suffix(".json").exists():
        meta = read_checkpoint_meta(path)
        if meta.get("key") == key:
            state, meta = load_state(path)
            learner.load_state_dict(state)
            return learner, meta["training"]
    t0 = time.perf_counter()
    for _ in (bar := progress(total=config.iterations, description=f"train {method}")):
        metrics = learner.meta_train_step()
        if learner.iteration % 100 == 0:
            loss = float(next(iter(metrics.values())))
            if not math.isfinite(loss):
                raise TrainingError(f"{method} diverged at iteration {learner.iteration}")
            bar.update(loss=loss)
    training = {"iterations": learner.iteration, "seconds": round(time.perf_counter() - t0, 1)}
    save_state(path, learner.state_dict(), {"key": key, "training": training})
    return learner, training


def run(cfg: SinusoidBenchConfig) -> int:
    """Train every method, evaluate on the same test tasks, write and print the report."""
    iterations = 300 if cfg.quick else cfg.iterations
    num_tasks = 100 if cfg.quick else cfg.num_tasks
    out = Path(cfg.out)
    family = SinusoidConfig(shots=cfg.train_shots, queries=cfg.train_shots)
    curves, training, configs = [], {}, {}
    tasks = None
    for method in cfg.methods:
        budget = iterations if method == "maml" or cfg.quick else cfg.other_iterations
        config = method_config(method, family, budget)
        learner, training[method] = train_or_load(method, config, cfg, out)
        configs[method] = {
            "inner_lr": learner.inner_lr,
            "inner_steps": learner.inner_steps,
            "meta_batch": learner.meta_batch,
            "strategy": config.strategy,
        }
        if tasks is None:
            tasks = learner.family.tasks(
                num_tasks,
                "test",
                seed=cfg.eval_seed,
                shots=cfg.eval_shots,
                queries=cfg.eval_queries,
            )
        with torch.no_grad():
            values = learner.adaptation_curve(tasks, cfg.steps)
        curves.append(AdaptationCurve(LABELS[method], values))

    def at_paper_steps(values: tuple[float, ...]) -> list[float | None]:
        table = dict(zip(PAPER_STEPS, values, strict=True))
        return [table.get(x) for x in range(cfg.steps + 1)]

    report = CurveReport(
        title="Sinusoid regression, 5-shot (MAML Appendix C Table 2)",
        metric="mse",
        x_label="gradient steps",
        x=list(range(cfg.steps + 1)),
        higher_is_better=False,
        curves=curves,
        meta={
            "family": f"sinusoid-v0, trained with K={cfg.train_shots}",
            "config": configs,
            "num_tasks": num_tasks,
            "eval_seed": cfg.eval_seed,
            "seeds": [cfg.seed],
            "budget": (
                f"{cfg.eval_shots} support points, {cfg.eval_queries} query points, "
                f"0..{cfg.steps} SGD steps; training iterations per method under 'training'"
            ),
            "training": training,
            "quick": cfg.quick,
        },
        reference={
            f"MAML, paper ({PAPER_SOURCE})": at_paper_steps(PAPER_MAML),
            "pretrained, paper (same table)": at_paper_steps(PAPER_PRETRAINED),
        },
    )
    paths = save_curve_report(report, out)
    console().print(curve_markdown(report))
    if "maml" in cfg.methods:
        maml = curves[cfg.methods.index("maml")].values
        checks = []
        for step, paper in zip(PAPER_STEPS, PAPER_MAML, strict=True):
            mean, ci = mean_ci(maml[:, step].numpy())
            checks.append(f"{step} step(s): {mean:.3f} ± {ci:.3f} vs paper {paper} ")
            checks[-1] += "(ok)" if mean <= paper else "(ABOVE the paper)"
        console().print("MAML vs paper: " + "; ".join(checks))
    console().print(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")
    return 0


register_bench(
    BenchSpec(
        "sinusoid",
        SinusoidBenchConfig,
        run,
        "MAML sinusoid Table 2: MAML, pretrained, Meta-SGD, Reptile after 1/5/10 steps",
    )
)
