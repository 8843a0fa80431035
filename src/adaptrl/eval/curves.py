"""Adaptation curves of gradient-based learners: a metric after 0, 1, ..., S inner steps.

A :class:`CurveReport` holds one :class:`AdaptationCurve` per learner or baseline, each with the raw
per-task values, so every reported mean comes with its 95% CI over tasks; published numbers can be
shown beside ours as reference rows (``reference``, labelled by their source table).
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptrl.core.provenance import provenance
from adaptrl.core.table import markdown_table
from adaptrl.eval.report import save_figure, write_report_files
from adaptrl.eval.stats import mean_ci


@dataclasses.dataclass
class AdaptationCurve:
    """One learner's metric on each test task after each adaptation point."""

    label: str
    values: torch.Tensor
    """``[num_tasks, points]``."""

    def __post_init__(self) -> None:
        self.values = torch.as_tensor(self.values, dtype=torch.float64).detach().cpu()
        if self.values.dim() != 2:
            raise ValueError(f"values must be [tasks, points], got {tuple(self.values.shape)}")

    def summary(self) -> tuple[list[float], list[float]]:
        """Mean and 95% CI half-width per point."""
        stats = [mean_ci(col.numpy()) for col in self.values.T]
        return [m for m, _ in stats], [c for _, c in stats]


@dataclasses.dataclass
class CurveReport:
    """Curves of several learners on the same test tasks, with their budget and provenance."""

    title: str
    metric: str
    x_label: str
    x: list[int]
    higher_is_better: bool
    curves: list[AdaptationCurve]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    """family, config, num_tasks, eval_seed, seeds, budget (free-form, written to JSON)."""
    reference: dict[str, list[float | None]] | None = None
    """Published numbers per x, keyed by a label that names their source table."""

    def __post_init__(self) -> None:
        for c in self.curves:
            if c.values.shape[1] != len(self.x):
                raise ValueError(
                    f"curve {c.label!r} has {c.values.shape[1]} points, x has {len(self.x)}"
                )


def _fmt(mean: float, ci: float) -> str:
    digits = 3 if abs(mean) < 10 else 2
    if not np.isfinite(ci):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def curve_markdown(report: CurveReport) -> str:
    """A markdown table: one row per curve, one column per x, mean ± 95% CI over tasks."""
    meta = report.meta
    lines = [f"# {report.title}", ""]
    for key in ("family", "config", "num_tasks", "eval_seed", "seeds", "model", "budget"):
        if key in meta:
            lines.append(f"- {key.replace('_', ' ')}: {meta[key]}")
    better = "higher" if report.higher_is_better else "lower"
    lines += [f"- metric: {report.metric} ({better} is better); 95% Student-t CI over tasks", ""]
    rows = [
        [c.label, *(_fmt(m, h) for m, h in zip(*c.summary(), strict=True))] for c in report.curves
    ]
    for label, values in (report.reference or {}).items():
        rows.append([label, *("—" if v is None else f"{v:g}" for v in values)])
    columns = ["", *(f"{report.x_label} = {x}" for x in report.x)]
    return "\n".join([*lines, markdown_table(columns, rows)]) + "\n"


def tick_step(points: int) -> int:
    """Every how many points an axis gets a tick: all of up to 20, else a round step (1, 2, 5
    times a power of ten) that leaves at most 12 ticks."""
    if points <= 20:
        return 1
    scale = 1
    while True:
        for step in (scale, 2 * scale, 5 * scale):
            if points / step <= 12:
                return step
        scale *= 10


def plot_adaptation(report: CurveReport, path: str | Path) -> Path:
    """Mean metric against adaptation steps with 95% CI bands; reference points as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.2), dpi=110)
    x = np.asarray(report.x)
    for c in report.curves:
        mean, ci = (np.asarray(v) for v in c.summary())
        ci = np.where(np.isfinite(ci), ci, 0.0)
        ax.plot(x, mean, marker="o", ms=4, label=c.label)
        ax.fill_between(x, mean - ci, mean + ci, alpha=0.2)
    for label, values in (report.reference or {}).items():
        pts = [(xi, v) for xi, v in zip(x, values, strict=False) if v is not None]
        if pts:
            ax.plot(
                *zip(*pts, strict=True),
                linestyle="--",
                marker="x",
                color="gray",
                alpha=0.8,
                label=label,
            )
    ax.set_xlabel(report.x_label)
    ax.set_ylabel(report.metric)
    n = report.meta.get("num_tasks")
    title = f"{report.title}" + (f" ({n} test tasks, 95% CI)" if n else "")
    ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.set_xticks(x[:: tick_step(len(x))])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # never over the curves
    fig.tight_layout()
    return save_figure(fig, path)


def plot_sample_efficiency(
    curves: dict[str, tuple[list[float], list[float]]],
    scores: dict[str, tuple[float, float, float]],
    path: str | Path,
    title: str,
) -> Path:
    """Return against meta-training environment steps (log scale): each learner's training curve
    (``label -> (env steps, return)``) and its held-out test score with a 95% CI
    (``label -> (env steps, mean, ci)``) as a marker at the budget it was trained on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.2), dpi=110)
    colors: dict[str, Any] = {}
    for label, (x, y) in curves.items():
        (line,) = ax.plot(x, y, alpha=0.8, label=f"{label} (training tasks)")
        colors[label] = line.get_color()
    for label, (x, mean, ci) in scores.items():
        ax.errorbar(
            [x],
            [mean],
            yerr=[ci],
            fmt="o",
            capsize=4,
            color=colors.get(label),
            label=f"{label} (held-out tasks, 95% CI)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("meta-training environment steps")
    ax.set_ylabel("return after adaptation")
    ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def curve_to_dict(report: CurveReport) -> dict[str, Any]:
    curves = []
    for c in report.curves:
        mean, ci = c.summary()
        curves.append(
            {
                "label": c.label,
                "mean": mean,
                "ci95": ci,
                "values": [[round(float(v), 6) for v in row] for row in c.values.tolist()],
            }
        )
    return {
        "kind": "adaptation-curve",
        "title": report.title,
        "metric": report.metric,
        "x_label": report.x_label,
        "x": list(report.x),
        "higher_is_better": report.higher_is_better,
        "meta": report.meta,
        "reference": report.reference,
        "ci": "95% Student-t over tasks",
        "provenance": provenance(seeds=report.meta.get("seeds")),
        "curves": curves,
    }


def save_curve_report(report: CurveReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json`` (every raw value + provenance), ``report.md`` and ``curve.png``."""
    return write_report_files(
        out_dir, curve_to_dict(report), curve_markdown(report), lambda p: plot_adaptation(report, p)
    )


def merge_curve_reports(reports: list[CurveReport], names: list[str]) -> CurveReport:
    """One report with the curves of several, which must score the same held-out tasks.

    Learners evaluated apart (a MAML run by ``adaptrl eval``, its baselines by others) are drawn
    together only when family, test tasks (count and eval seed), metric and steps agree; a label
    that repeats is prefixed with its report's name (``names``, e.g. the run directories)."""
    if len(reports) < 2 or len(reports) != len(names):
        raise ValueError("give two or more reports, each with a name")
    first = reports[0]
    keys = ("family", "num_tasks", "eval_seed")
    for report, name in zip(reports[1:], names[1:], strict=True):
        for attr in ("x", "metric", "higher_is_better"):
            if getattr(report, attr) != getattr(first, attr):
                raise ValueError(
                    f"{name} has {attr} {getattr(report, attr)!r}, {names[0]} "
                    f"{getattr(first, attr)!r}: not the same evaluation"
                )
        for key in keys:
            if report.meta.get(key) != first.meta.get(key):
                raise ValueError(
                    f"{name} was evaluated with {key} {report.meta.get(key)!r}, {names[0]} with "
                    f"{first.meta.get(key)!r}: curves on other tasks cannot share a plot"
                )
    labels = [c.label for r in reports for c in r.curves]
    curves = [
        AdaptationCurve(f"{name}: {c.label}" if labels.count(c.label) > 1 else c.label, c.values)
        for r, name in zip(reports, names, strict=True)
        for c in r.curves
    ]
    return dataclasses.replace(
        first,
        title=f"{first.meta.get('family', first.title)}: {first.metric} after k inner steps",
        curves=curves,
        meta={
            **{k: first.meta.get(k) for k in keys},
            "sources": {
                n: {"title": r.title, **{k: v for k, v in r.meta.items() if k not in keys}}
                for r, n in zip(reports, names, strict=True)
            },
        },
        reference=next((r.reference for r in reports if r.reference), None),
    )


def load_curve_report(path: str | Path) -> CurveReport:
    """Read back a ``results.json`` written by :func:`save_curve_report`."""
    data = json.loads(Path(path).read_text())
    if data.get("kind") != "adaptation-curve":
        raise ValueError(f"{path} is not an adaptation-curve report")
    return curve_report_from_dict(data)


def curve_report_from_dict(data: dict[str, Any]) -> CurveReport:
    """The report behind :func:`curve_to_dict`'s output (``results.json`` already read)."""
    return CurveReport(
        title=data["title"],
        metric=data["metric"],
        x_label=data["x_label"],
        x=list(data["x"]),
        higher_is_better=bool(data["higher_is_better"]),
        curves=[AdaptationCurve(c["label"], torch.tensor(c["values"])) for c in data["curves"]],
        meta=data.get("meta", {}),
        reference=data.get("reference"),
    )
