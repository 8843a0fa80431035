"""Few-shot classification benches: ``adaptrl bench glyphs``, ``omniglot`` and ``miniimagenet``.

Each trains every few-shot classification method of the algo registry (or those named with
``--methods``) once per setting (N-way K-shot), then measures query accuracy on held-out tasks of
meta-test classes, with a 95% Student-t interval over tasks. Gradient methods are scored after
their ``default_eval_steps`` inner steps; metric methods (ProtoNets, Matching Networks) read the
support set. ``omniglot`` and ``miniimagenet`` run on data the user already has on disk
(``--data PATH``) and print the papers' numbers beside ours; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import torch

from adaptrl.algos.lstm_optimizer import (
    LSTMOptimizerConfig,
    LSTMOptimizerLearner,
    hand_designed_curve,
    tune_learning_rate,
)
from adaptrl.algos.registry import ALGOS, AlgoSpec, make_learner
from adaptrl.bench.common import table_markdown, train_timed
from adaptrl.bench.reference import (
    MINIIMAGENET_PAPER,
    MINIIMAGENET_SOURCES,
    OMNIGLOT_PAPER,
    OMNIGLOT_SOURCES,
)
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Ge, Positive, Size, config_to_dict, parse_dotted
from adaptrl.core.errors import AdaptrlError, ConfigError
from adaptrl.core.presets import load_preset
from adaptrl.core.provenance import provenance, write_json
from adaptrl.core.seeding import make_generator
from adaptrl.core.table import markdown_table, print_table
from adaptrl.eval.curves import AdaptationCurve, CurveReport, curve_markdown, save_curve_report
from adaptrl.eval.stats import mean_ci
from adaptrl.fewshot import FewShotConfig, make_fewshot_family
from adaptrl.fewshot.glyphs import GlyphsConfig
from adaptrl.fewshot.imagefolder import LAYOUT_HELP, ImageFolderConfig

EVAL_SEED = 20170309
"""Seed of the held-out test tasks (the ProtoNets/MAML arXiv month), fixed across methods."""

PAPER_ALIASES = {"meta-sgd": "metasgd", "fo-maml": "fomaml", "first-order-maml": "fomaml"}


@dataclasses.dataclass(frozen=True)
class Setting:
    ways: int
    shots: int

    @property
    def label(self) -> str:
        return f"{self.ways}w{self.shots}s"


def parse_setting(text: str) -> Setting:
    """``"5w1s"`` -> ``Setting(5, 1)``."""
    head, _, tail = text.lower().partition("w")
    try:
        if not tail.endswith("s"):
            raise ValueError
        return Setting(int(head), int(tail[:-1]))
    except ValueError:
        raise ConfigError(f"settings look like '5w1s' (5-way 1-shot), got {text!r}") from None


@dataclasses.dataclass(frozen=True)
class Method:
    """A table row: a registered algorithm with fixed options (first-order MAML is ``maml`` with
    ``first_order=True``)."""

    label: str
    spec: AlgoSpec
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)


VARIANTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "maml": [("fomaml", {"first_order": True})]
}
"""Extra rows derived from a registered algorithm (label, fixed options)."""


def classification_methods(names: Sequence[str] = ()) -> list[Method]:
    """Registered few-shot methods that classify images, with their variants (all of them when
    ``names`` is empty). A learner class opts out with ``supports_classification = False``."""
    rows = []
    for _, spec in ALGOS.items():
        if spec.kind != "fewshot" or not getattr(spec.learner_cls, "supports_classification", True):
            continue
        rows.append(Method(spec.name, spec))
        fields = {f.name for f in dataclasses.fields(spec.config_cls)}
        for label, fixed in VARIANTS.get(spec.name, []):
            if set(fixed) <= fields:
                rows.append(Method(label, spec, fixed))
    if not names:
        return rows
    known = {m.label: m for m in rows}
    for name in names:
        if name not in known:
            raise ConfigError(
                f"unknown few-shot classification method {name!r}; known: {', '.join(known)}"
            )
    return [known[n] for n in names]


QUICK_DEFAULTS: dict[str, Any] = {"meta_batch": 4}
"""--quick also shrinks the gradient learners' meta-batches (32 tasks of second-order MAML on the
conv net take seconds per iteration on a CPU); --params still override these."""


def build_config(
    method: Method,
    family: FewShotConfig,
    iterations: int,
    overrides: dict[str, Any],
    defaults: dict[str, Any] | None = None,
) -> Any:
    """The method's default config on ``family`` with ``iterations``, the bench's ``defaults`` for
    the fields the method has, its fixed options and the user's overrides (later ones win, so
    ``METHOD.iterations=N`` gives one method its own budget)."""
    cls = method.spec.config_cls
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f"{method.label} has no option {unknown[0]!r}; its options: {', '.join(sorted(fields))}"
        )
    shared = {k: v for k, v in (defaults or {}).items() if k in fields}
    options = {"iterations": iterations, **shared, **method.fixed, **overrides}
    return dataclasses.replace(cls(), family=family, **options)


def check_overrides(methods: Sequence[Method], overrides: dict[str, dict[str, Any]]) -> None:
    """Refuse --params for methods not in the table or options they do not have, before any
    training starts."""
    by_label = {m.label: m for m in methods}
    for label, options in overrides.items():
        if label not in by_label:
            raise ConfigError(
                f"--params names {label!r}, which is not in this run: {', '.join(by_label)}"
            )
        fields = {f.name for f in dataclasses.fields(by_label[label].spec.config_cls)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ConfigError(
                f"{label} has no option {unknown[0]!r}; its options: {', '.join(sorted(fields))}"
            )


def evaluate_accuracy(
    learner: Any, tasks: Any, *, seed: int, chunk: int = 50
) -> tuple[torch.Tensor, int]:
    """Per-task query accuracy after 0..k inner steps ``[T, k + 1]``, k = the learner's default
    adaptation budget (metric learners: k = 0), and k."""
    steps = int(getattr(learner, "default_eval_steps", 0))
    gen = make_generator(seed, "bench-fewshot", "adapt")
    out = []
    for start in range(0, len(tasks), chunk):
        part = tasks.chunk(start, min(start + chunk, len(tasks)))
        out.append(learner.adaptation_curve(part, steps, gen).detach().float().cpu())
    return torch.cat(out), steps


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (method, setting) of a classification table: accuracy (%) ± 95% CI over tasks, the
    paper's figure, the adaptation steps it was scored after, its budget; or its error."""

    method: str
    setting: str
    mean: float = math.nan
    ci95: float = math.nan
    paper: float | None = None
    steps: int = 0
    iterations: int = 0
    train_seconds: float = 0.0
    error: str | None = None
    curve: tuple[float, ...] = ()
    """Mean accuracy (%) after 0, 1, ..., ``steps`` inner steps (the table shows the last)."""


def score_cell(
    method: Method,
    setting: Setting,
    family: FewShotConfig,
    tasks: Any,
    *,
    cfg: ClassificationBench,
    overrides: dict[str, Any],
    paper: float | None,
) -> Cell:
    """Train ``method`` on ``family`` and score it on ``tasks``; a method that refuses the
    setting (an :class:`AdaptrlError`) is a cell with its error."""
    defaults = QUICK_DEFAULTS if cfg.quick else None
    try:
        config = build_config(method, family, cfg.iterations, overrides, defaults)
        learner = make_learner(method.spec.name, config, seed=cfg.seed, device=cfg.device)
        label = f"{method.label} {setting.label}"
        seconds = train_timed(learner, config.iterations, label)["seconds"]
        curve, steps = evaluate_accuracy(learner, tasks.to(cfg.device), seed=cfg.seed)
    except AdaptrlError as exc:
        return Cell(method.label, setting.label, paper=paper, error=str(exc))
    mean, ci = mean_ci(curve[:, -1].numpy() * 100)
    return Cell(
        method.label,
        setting.label,
        mean=mean,
        ci95=ci,
        paper=paper,
        steps=steps,
        iterations=config.iterations,
        train_seconds=seconds,
        curve=tuple(float(v) for v in curve.mean(0) * 100),
    )


def run_cells(
    cfg: ClassificationBench,
    methods: Sequence[Method],
    settings: Sequence[Setting],
    family: Callable[[Setting], FewShotConfig],
    paper: dict[str, dict[str, float]],
    on_cell: Callable[[list[Cell]], None] | None = None,
) -> list[Cell]:
    """Train and evaluate every (method, setting) of the bench ``cfg``; ``on_cell(cells so
    far)`` runs after each cell (the benches save partial tables with it)."""
    overrides = parse_dotted(cfg.params, "METHOD")
    check_overrides(methods, overrides)
    cells = []
    for setting in settings:
        family_cfg = family(setting)
        tasks = make_fewshot_family(family_cfg).tasks(cfg.num_tasks, "test", seed=cfg.eval_seed)
        for m in methods:
            ref = paper.get(PAPER_ALIASES.get(m.label, m.label), {}).get(setting.label)
            opts = overrides.get(m.label, {})
            cells.append(
                score_cell(m, setting, family_cfg, tasks, cfg=cfg, overrides=opts, paper=ref)
            )
            if on_cell is not None:
                on_cell(cells)
    return cells


def report(
    title: str,
    cells: Sequence[Cell],
    settings: Sequence[Setting],
    header: dict[str, Any],
    *,
    sources: dict[str, str] | None,
    out: Path,
    seed: int,
    complete: bool = True,
) -> str:
    """Write (results.json, report.md) one table: a row per method, a column per setting, ours
    ± 95% CI and, where there is one, the paper's value beside it; then each cell's training
    budget and time. ``complete=False`` marks a partial table saved while the run goes on (cells
    not run yet show "—") and prints nothing."""
    by_key = {(c.method, c.setting): c for c in cells}
    with_paper = any(c.paper is not None for c in cells)
    cols = ["method"]
    for s in settings:
        cols += [f"{s.label} ours (%)"] + ([f"{s.label} paper"] if with_paper else [])
    rows = []
    for m in dict.fromkeys(c.method for c in cells):
        row = [m]
        for s in settings:
            c = by_key.get((m, s.label))
            row.append("—" if c is None else "error" if c.error else f"{c.mean:.2f} ± {c.ci95:.2f}")
            if with_paper:
                row.append("—" if c is None or c.paper is None else f"{c.paper}")
        rows.append(row)
    if complete:
        print_table(title, cols, rows)
        for c in cells:
            if c.error:
                print(f"{c.method} {c.setting}: {c.error}")
    budget_cols = ["method", "setting", "outer iterations", "training (s)"]
    budget_cols.append("accuracy after 0, 1, ... steps (%)")
    curve = lambda c: " / ".join(f"{v:.1f}" for v in c.curve)  # noqa: E731
    budget = [
        [c.method, c.setting, c.iterations, f"{c.train_seconds:.0f}", curve(c)]
        for c in cells
        if not c.error
    ]
    text = table_markdown(title, header, cols, rows)
    if not complete:
        notice = "**Partial: the run is still going (or was stopped); — = not run yet.**"
        text = f"# {title}\n\n{notice}\n\n" + text.split("\n", 2)[2]
    text += "\n" + markdown_table(budget_cols, budget) + "\n"
    if sources:
        text += "\nPaper values:\n" + "".join(f"- {k}: {v}\n" for k, v in sources.items())
    payload = {
        "title": title,
        "complete": complete,
        **header,
        "cells": [config_to_dict(c) for c in cells],
        "paper_sources": sources,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", {**payload, "provenance": provenance(seeds=[seed])})
    (out / "report.md").write_text(text)
    return text


# --- the benches -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ClassificationBench(Config):
    """What the few-shot classification benches share (each sets its own defaults)."""

    quick: bool = False
    """CI-sized: 5-way 1-shot only, 30 iterations, 100 test tasks, meta-batches of 4 tasks."""
    methods: tuple[str, ...] = ()
    """Methods to run (registry names, plus fomaml); empty = every classification method."""
    settings: tuple[str, ...] = ("5w1s", "5w5s", "20w1s")
    """N-way K-shot settings."""
    iterations: Size = 1000
    """Outer iterations per method and setting."""
    num_tasks: Size = 600
    """Held-out test tasks (meta-test classes) per setting."""
    queries: Size = 15
    """Query examples per class in training and test tasks."""
    params: tuple[str, ...] = ()
    """Method options as METHOD.FIELD=VALUE, e.g. protonet.train_ways=20 matching.fce=true."""
    seed: int = 0
    """Training seed of every method."""
    eval_seed: int = EVAL_SEED
    """Seed of the held-out tasks (the same for every method)."""
    device: str = "cpu"
    """Device for training and evaluation."""
    out: Path = Path("results/glyphs")
    """Directory for results.json and report.md."""


@dataclasses.dataclass(frozen=True)
class GlyphsBenchConfig(ClassificationBench):
    """Every few-shot classification method on glyphs-v0 (procedural Omniglot-like characters)."""


def run_glyphs(cfg: GlyphsBenchConfig) -> str:
    return _run_table(
        cfg,
        "glyphs-v0 few-shot accuracy",
        lambda s: dataclasses.replace(
            GlyphsConfig(), ways=s.ways, shots=s.shots, queries=cfg.queries
        ),
        {"family": "glyphs-v0 (meta-test classes held out)"},
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class OmniglotBenchConfig(ClassificationBench):
    """The Omniglot protocol (Vinyals et al.; MAML; ProtoNets) on your copy of Omniglot, beside
    the papers' numbers. 28x28 images, ink = 1, 1200 random characters (+ their 90/180/270-degree
    rotations as extra classes) for meta-training, the other 423 for meta-test."""

    data: Path
    """Omniglot root: images_background/ and images_evaluation/ (<alphabet>/<character>/*.png),
    or any folder of its 1623 character folders. Nothing is downloaded."""
    settings: tuple[str, ...] = ("5w1s", "5w5s", "20w1s", "20w5s")
    """N-way K-shot settings."""
    iterations: Size = 10000
    """Outer iterations per method and setting (the papers used more: MAML 60k meta-batches)."""
    queries: Size = 10
    """Query images per class (Omniglot has 20 images per character: shots + queries <= 20)."""
    out: Path = Path("results/omniglot")
    """Directory for results.json and report.md."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MiniImageNetBenchConfig(ClassificationBench):
    """The mini-ImageNet protocol (Ravi & Larochelle split; MAML; ProtoNets) on your copy, beside
    the papers' numbers: 84x84 RGB, 5-way 1- and 5-shot, 15 queries per class, 600 test tasks."""

    data: Path
    """mini-ImageNet root with train/, val/ and test/ folders of class folders (<wnid>/*.jpg).
    Nothing is downloaded."""
    settings: tuple[str, ...] = ("5w1s", "5w5s")
    """N-way K-shot settings."""
    iterations: Size = 10000
    """Outer iterations per method and setting."""
    out: Path = Path("results/miniimagenet")
    """Directory for results.json and report.md."""


def _data_folder(path: Path, name: str) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"--data {path}: no such folder. `adaptrl bench {name}` reads {name} from disk and "
            f"downloads nothing; {LAYOUT_HELP}"
        )
    return root


def _run_table(
    cfg: ClassificationBench,
    title: str,
    family: Callable[[Setting], FewShotConfig],
    about: dict[str, str],
    *,
    paper: dict[str, dict[str, float]] | None = None,
    sources: dict[str, str] | None = None,
) -> str:
    """Run every method of ``cfg.methods`` on every setting of ``cfg.settings`` (the shared fields
    of the classification bench configs) and report the table; ``about`` heads the header."""
    if cfg.quick:
        quick = {"iterations": min(cfg.iterations, 30), "num_tasks": min(cfg.num_tasks, 100)}
        cfg = dataclasses.replace(cfg, settings=("5w1s",), **quick)
    settings = [parse_setting(s) for s in cfg.settings]
    methods = classification_methods(cfg.methods)
    header = {
        **about,
        "tasks": f"{cfg.num_tasks} test tasks per setting (eval seed {cfg.eval_seed}), "
        f"{cfg.queries} queries per class",
        "budget": f"{cfg.iterations} outer iterations per method unless --params sets "
        f"METHOD.iterations (training seed {cfg.seed}; the table below gives each cell's); "
        "gradient methods scored after their default inner steps"
        + ("; --quick: meta-batches of 4 tasks" if cfg.quick else "")
        + (f"; --params {' '.join(cfg.params)}" if cfg.params else ""),
        "ci": "95% Student-t over tasks",
    }

    where = {"sources": sources, "out": cfg.out, "seed": cfg.seed}

    def save_partial(cells: list[Cell]) -> None:
        report(title, cells, settings, header, complete=False, **where)

    cells = run_cells(cfg, methods, settings, family, paper or {}, on_cell=save_partial)
    return report(title, cells, settings, header, **where)


def omniglot_family(cfg: OmniglotBenchConfig, root: Path) -> Callable[[Setting], FewShotConfig]:
    """The Vinyals/MAML split: all 1623 characters pooled ("tree" layout), 423 held out at random
    for meta-test, rotations as extra classes, ink inverted to 1."""
    return lambda s: ImageFolderConfig(
        data=root,
        ways=s.ways,
        shots=s.shots,
        queries=cfg.queries,
        image_size=28,
        grayscale=True,
        invert=True,
        rotations=True,
        layout="tree",
        val_fraction=0.0,
        test_fraction=423 / 1623,
    )


def run_omniglot(cfg: OmniglotBenchConfig) -> str:
    root = _data_folder(cfg.data, "omniglot")
    return _run_table(
        cfg,
        "Omniglot few-shot accuracy (%) beside the papers",
        omniglot_family(cfg, root),
        {"data": str(cfg.data)},
        paper=OMNIGLOT_PAPER,
        sources=OMNIGLOT_SOURCES,
    )


def run_miniimagenet(cfg: MiniImageNetBenchConfig) -> str:
    root = _data_folder(cfg.data, "miniimagenet")
    return _run_table(
        cfg,
        "mini-ImageNet 5-way accuracy (%) beside the papers",
        lambda s: ImageFolderConfig(
            data=root,
            ways=s.ways,
            shots=s.shots,
            queries=cfg.queries,
            image_size=84,
            grayscale=False,
            layout="splits",
        ),
        {"data": str(cfg.data)},
        paper=MINIIMAGENET_PAPER,
        sources=MINIIMAGENET_SOURCES,
    )


# --- the learned optimizer against SGD and Adam ----------------------------------------------
@dataclasses.dataclass(frozen=True)
class LSTMOptimizerBenchConfig(Config):
    """The coordinatewise LSTM optimizer against SGD and Adam (learning rates tuned on meta-train
    tasks) training the same MLP from the same initialisations on held-out sinusoid tasks."""

    quick: bool = False
    """CI-sized: the lstm-optimizer/quick preset as the learner, 200 test tasks, 100 tuning tasks."""
    learner: LSTMOptimizerConfig = LSTMOptimizerConfig()
    """The learned optimizer and its meta-training (its family is the task family)."""
    num_tasks: Annotated[int, Ge(2)] = 600
    """Held-out test tasks."""
    tune_tasks: Size = 200
    """Meta-train tasks on which SGD's and Adam's learning rates are chosen."""
    lr_grid: tuple[Positive, ...] = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
    """Learning rates tried for SGD and Adam (lowest mean query loss over the curve wins)."""
    seed: int = 0
    """Training seed of the LSTM optimizer."""
    eval_seed: int = EVAL_SEED
    """Seed of the held-out tasks and of the initialisations (shared by all optimizers)."""
    out: Path = Path("results/lstm-optimizer")
    """Directory for results.json, report.md and curve.png."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lr_grid:
            raise ConfigError("--lr-grid needs at least one learning rate")


def tuned_curves(
    learner: LSTMOptimizerLearner, cfg: LSTMOptimizerBenchConfig, test: Any, theta: torch.Tensor
) -> tuple[list[AdaptationCurve], dict[str, Any]]:
    """SGD's and Adam's curves on the test tasks from the initialisations ``theta``, each with
    the learning rate that did best on meta-train tasks, and what the tuning chose."""
    steps = learner.config.inner_steps
    family = make_fewshot_family(learner.config.family)
    tune = family.tasks(cfg.tune_tasks, "train", seed=cfg.eval_seed)
    tune_theta = learner.optimizee.init(
        cfg.tune_tasks, make_generator(cfg.eval_seed, "tune"), "cpu"
    )
    curves, chosen = [], {}
    for kind in ("sgd", "adam"):
        lr, scores = tune_learning_rate(
            learner.optimizee, tune_theta, tune, steps, kind=kind, grid=cfg.lr_grid
        )
        chosen[kind] = {"lr": lr, "tuning_scores": scores}
        values = hand_designed_curve(learner.optimizee, theta, test, steps, kind=kind, lr=lr)
        curves.append(AdaptationCurve(f"{kind} (lr {lr:g})", values))
    return curves, chosen


def run_lstm_optimizer(cfg: LSTMOptimizerBenchConfig) -> str:
    if cfg.quick:
        quick = load_preset(LSTMOptimizerConfig, "lstm-optimizer", "quick")
        cfg = dataclasses.replace(
            cfg, learner=quick, num_tasks=min(cfg.num_tasks, 200), tune_tasks=100
        )
    learner = LSTMOptimizerLearner(cfg.learner, seed=cfg.seed)
    secs = train_timed(learner, cfg.learner.iterations, "lstm-optimizer")["seconds"]
    steps = cfg.learner.inner_steps
    family = make_fewshot_family(cfg.learner.family)
    test = family.tasks(cfg.num_tasks, "test", seed=cfg.eval_seed)
    init_gen = lambda: make_generator(cfg.eval_seed, "init")  # noqa: E731
    theta = learner.optimizee.init(cfg.num_tasks, init_gen(), torch.device("cpu"))
    ours = AdaptationCurve("lstm-optimizer", learner.adaptation_curve(test, steps, init_gen()))
    others, chosen = tuned_curves(learner, cfg, test, theta)
    report_ = CurveReport(
        title=f"learned LSTM optimizer vs tuned SGD and Adam on {family.family_id}",
        metric=f"query {learner.metric}",
        x_label="optimisation steps",
        x=list(range(steps + 1)),
        higher_is_better=False,
        curves=[ours, *others],
        meta={
            "family": family.family_id,
            "config": config_to_dict(cfg.learner),
            "num_tasks": cfg.num_tasks,
            "eval_seed": cfg.eval_seed,
            "seeds": [cfg.seed],
            "budget": f"{steps} steps on each task's support set from a fresh random init "
            f"(shared by all optimizers); LSTM meta-trained {cfg.learner.iterations} iterations "
            f"({secs:.0f} s); SGD/Adam learning rates tuned on {cfg.tune_tasks} meta-train tasks",
            "tuned": chosen,
        },
    )
    save_curve_report(report_, cfg.out)
    text = curve_markdown(report_)
    print(text)
    return text


register_bench(
    BenchSpec("glyphs", GlyphsBenchConfig, run_glyphs, GlyphsBenchConfig.__doc__ or "", "glyphs")
)
register_bench(
    BenchSpec("omniglot", OmniglotBenchConfig, run_omniglot, OmniglotBenchConfig.__doc__ or "")
)
register_bench(
    BenchSpec(
        "miniimagenet",
        MiniImageNetBenchConfig,
        run_miniimagenet,
        MiniImageNetBenchConfig.__doc__ or "",
    )
)
register_bench(
    BenchSpec(
        "lstm-optimizer",
        LSTMOptimizerBenchConfig,
        run_lstm_optimizer,
        LSTMOptimizerBenchConfig.__doc__ or "",
        presets="lstm-optimizer",
        preset_field="learner",
    )
)
