"""``adaptrl bench sinusoid``: MAML's sinusoid regression (Finn et al. 2017, Appendix C Table 2).

Every method is trained with its preset (``configs/<method>/sinusoid.yaml``: ``sinusoid-v0`` with
K = 10 points per task; ``--maml.iterations`` and the like override them), then evaluated on the
same held-out test tasks: 5 support points, SGD with the method's own inner step size, mean squared
error on 100 query points per task after 0..10 steps, 95% CI over tasks. The paper's MAML and
pretrained rows are printed beside ours; the target is ours <= the paper's MAML at 1, 5 and 10.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import torch

from adaptrl.algos.anil import ANILConfig
from adaptrl.algos.gradient import GradientConfig, GradientFewShotLearner
from adaptrl.algos.maml import MAMLConfig
from adaptrl.algos.metasgd import MetaSGDConfig
from adaptrl.algos.registry import ALGOS
from adaptrl.algos.reptile import ReptileConfig
from adaptrl.baselines.pretrained import PretrainedConfig, PretrainedFinetune
from adaptrl.bench.common import train_timed
from adaptrl.bench.reference import (
    SINUSOID_MAML,
    SINUSOID_PRETRAINED,
    SINUSOID_SOURCE,
    SINUSOID_STEPS,
)
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.checkpoint import load_state, read_checkpoint_meta, save_state
from adaptrl.core.config import Config, Ge, Size, config_to_dict
from adaptrl.core.errors import ConfigError
from adaptrl.core.presets import load_preset
from adaptrl.core.progress import console
from adaptrl.eval.curves import AdaptationCurve, CurveReport, curve_markdown, save_curve_report
from adaptrl.eval.stats import mean_ci

METHODS = ("maml", "pretrained", "metasgd", "reptile", "anil")
LABELS = {
    "maml": "MAML (ours)",
    "pretrained": "pretrained + fine-tune (ours)",
    "metasgd": "Meta-SGD (ours)",
    "reptile": "Reptile (ours)",
    "anil": "ANIL (ours)",
}


@dataclasses.dataclass(frozen=True)
class SinusoidBenchConfig(Config):
    """MAML Appendix C Table 2: 5-shot sinusoid MSE after 1/5/10 steps, trained with K = 10."""

    methods: tuple[str, ...] = ("maml", "pretrained", "metasgd", "reptile")
    """Methods to train and evaluate (maml, pretrained, metasgd, reptile, anil)."""
    maml: MAMLConfig = load_preset(MAMLConfig, "maml", "sinusoid")
    """MAML (the paper's 70,000 meta-iterations)."""
    pretrained: PretrainedConfig = load_preset(PretrainedConfig, "pretrained", "sinusoid")
    """The pretrained-on-all-tasks baseline."""
    metasgd: MetaSGDConfig = load_preset(MetaSGDConfig, "metasgd", "sinusoid")
    """Meta-SGD."""
    reptile: ReptileConfig = load_preset(ReptileConfig, "reptile", "sinusoid")
    """Reptile."""
    anil: ANILConfig = load_preset(ANILConfig, "anil", "sinusoid")
    """ANIL."""
    num_tasks: Annotated[int, Ge(2)] = 1000
    """Held-out test tasks (the same for every method)."""
    steps: Annotated[int, Ge(max(SINUSOID_STEPS))] = 10
    """Inner steps at test time (curve points 0..steps)."""
    eval_shots: Size = 5
    """Support points per test task."""
    eval_queries: Size = 100
    """Query points per test task (more points: a less noisy per-task MSE)."""
    seed: int = 0
    """Training seed (initialisation and meta-batches)."""
    eval_seed: int = 20170309
    """Seed of the held-out test tasks."""
    quick: bool = False
    """CI-sized smoke run (300 iterations per method, 100 tasks); numbers are not meaningful."""
    retrain: bool = False
    """Train again even if out/models holds a model with the same configuration."""
    out: Path = Path("results/bench-sinusoid")
    """Output folder: results.json, report.md, curve.png and the trained models."""

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")


def build(method: str, config: GradientConfig, seed: int) -> GradientFewShotLearner:
    if method == "pretrained":
        return PretrainedFinetune(config, seed=seed)  # type: ignore[arg-type]
    learner = ALGOS.get(method).learner_cls(config, seed=seed)
    assert isinstance(learner, GradientFewShotLearner)
    return learner


def train_or_load(
    method: str, config: GradientConfig, seed: int, out: Path, retrain: bool
) -> tuple[GradientFewShotLearner, dict[str, Any]]:
    """Train ``method`` (or reload the model an earlier run saved with the same configuration
    and seed from ``out/models``)."""
    learner = build(method, config, seed)
    path = out / "models" / method
    key = {"method": method, "config": config_to_dict(config), "seed": seed}
    if not retrain and path.with_suffix(".json").exists():
        meta = read_checkpoint_meta(path)
        if meta.get("key") == key:
            state, meta = load_state(path)
            learner.load_state_dict(state)
            return learner, meta["training"]
    record = train_timed(learner, config.iterations, f"train {method}")
    training = {"iterations": learner.iteration, "seconds": round(record["seconds"], 1)}
    save_state(path, learner.state_dict(), {"key": key, "training": training})
    return learner, training


def paper_row(values: tuple[float, ...], steps: int) -> list[float | None]:
    """A published row placed at its steps of the x axis 0..steps."""
    table = dict(zip(SINUSOID_STEPS, values, strict=True))
    return [table.get(x) for x in range(steps + 1)]


def run(cfg: SinusoidBenchConfig) -> int:
    """Train every method, evaluate on the same test tasks, write and print the report."""
    num_tasks = 100 if cfg.quick else cfg.num_tasks
    curves, training, configs, tasks = [], {}, {}, None
    for method in cfg.methods:
        config = getattr(cfg, method)
        if cfg.quick:
            config = dataclasses.replace(config, iterations=300)
        learner, training[method] = train_or_load(method, config, cfg.seed, cfg.out, cfg.retrain)
        configs[method] = config_to_dict(config)
        if tasks is None:
            shape = {"shots": cfg.eval_shots, "queries": cfg.eval_queries}
            tasks = learner.family.tasks(num_tasks, "test", seed=cfg.eval_seed, **shape)
        with torch.no_grad():
            values = learner.adaptation_curve(tasks, cfg.steps)
        curves.append(AdaptationCurve(LABELS[method], values))
    report = CurveReport(
        title="Sinusoid regression, 5-shot (MAML Appendix C Table 2)",
        metric="mse",
        x_label="gradient steps",
        x=list(range(cfg.steps + 1)),
        higher_is_better=False,
        curves=curves,
        meta={
            "family": "sinusoid-v0",
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
            f"MAML, paper ({SINUSOID_SOURCE})": paper_row(SINUSOID_MAML, cfg.steps),
            "pretrained, paper (same table)": paper_row(SINUSOID_PRETRAINED, cfg.steps),
        },
    )
    paths = save_curve_report(report, cfg.out)
    console().print(curve_markdown(report))
    if "maml" in cfg.methods:
        maml = curves[cfg.methods.index("maml")].values
        checks = []
        for step, paper in zip(SINUSOID_STEPS, SINUSOID_MAML, strict=True):
            mean, ci = mean_ci(maml[:, step].numpy())
            verdict = "ok" if mean <= paper else "ABOVE the paper"
            checks.append(f"{step} step(s): {mean:.3f} ± {ci:.3f} vs paper {paper} ({verdict})")
        console().print("MAML vs paper: " + "; ".join(checks))
    console().print(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")
    return 0


register_bench(
    BenchSpec(
        "sinusoid",
        SinusoidBenchConfig,
        run,
        "MAML sinusoid Table 2: MAML, pretrained, Meta-SGD, Reptile after 1/5/10 steps",
        presets="sinusoid",
    )
)
