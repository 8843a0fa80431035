"""Reports of an evaluation: a JSON file with every raw number, a markdown table, a PNG curve."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adaptrl.core.config import config_to_dict
from adaptrl.core.provenance import provenance, write_json
from adaptrl.core.table import markdown_table
from adaptrl.eval.protocol import AgentResult, EvalResult


def to_dict(result: EvalResult) -> dict[str, Any]:
    """Every raw number (per seed, task and episode) plus the summary and its provenance."""
    agents = []
    for a in result.agents:
        mean, ci = a.trial_return()
        curve, curve_ci = a.episode_curve()
        agents.append(
            {
                "name": a.name,
                "label": a.label,
                "params": a.params,
                "trial_return_mean": mean,
                "trial_return_ci95": ci,
                "episode_return_mean": curve,
                "episode_return_ci95": curve_ci,
                "returns": [
                    [[round(float(x), 5) for x in task] for task in seed]
                    for seed in a.returns.tolist()
                ],
                **_success_fields(a),
            }
        )
    return {
        "family": result.family.family_id,
        "family_config": config_to_dict(result.family.config),
        "split": "test",
        "num_tasks": result.num_tasks,
        "episodes": result.episodes,
        "max_episode_steps": result.family.max_episode_steps,
        "budget": result.budget(),
        "eval_seed": result.eval_seed,
        "seeds": list(result.seeds),
        "ci": "95% Student-t over " + ("seed means" if len(result.seeds) > 1 else "tasks"),
        **({"model": result.model} if result.model else {}),
        "provenance": provenance(seeds=list(result.seeds)),
        "agents": agents,
    }


def _success_fields(a: AgentResult) -> dict[str, Any]:
    """Success rate per episode (with CIs) and every episode's success, where there are any."""
    curve = a.success_curve()
    if curve is None or a.success is None:
        return {}
    return {
        "episode_success_mean": curve[0],
        "episode_success_ci95": curve[1],
        "success": [[[int(x) for x in task] for task in seed] for seed in a.success.tolist()],
    }


def fmt_ci(mean: float, ci: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f} ± {ci:.{digits}f}" if ci != float("inf") else f"{mean:.{digits}f}"


def to_markdown(result: EvalResult) -> str:
    """A table of trial returns with 95% CIs, headed by tasks, seeds and budget."""
    fam = result.family
    lines = [
        f"# Evaluation on {fam.family_id}",
        "",
        f"- family config: `{config_to_dict(fam.config)}`",
        f"- tasks: {result.num_tasks} held-out test tasks (eval seed {result.eval_seed})",
        f"- budget: {result.budget()}",
        f"- seeds: {', '.join(map(str, result.seeds))}; "
        f"95% CI (Student t) over {'seed means' if len(result.seeds) > 1 else 'tasks'}",
        *([f"- model: {result.model}"] if result.model else []),
        "",
    ]
    rows = []
    for a in result.agents:
        curve, ci = a.episode_curve()
        first, last = fmt_ci(curve[0], ci[0], 3), fmt_ci(curve[-1], ci[-1], 3)
        rows.append([a.label, fmt_ci(*a.trial_return()), first, last])
    columns = ["agent", "trial return (95% CI)", "first episode", "last episode"]
    tables = [markdown_table(columns, rows)]
    success = [(a.label, a.success_curve()) for a in result.agents]
    if any(curve is not None for _, curve in success):
        episodes = range(1, result.episodes + 1)
        srows = [
            [label, *(f"{100 * m:.1f}% ± {100 * h:.1f}" if h != float("inf") else f"{100 * m:.1f}%"
                      for m, h in zip(*curve, strict=True))]
            for label, curve in success
            if curve is not None
        ]  # fmt: skip
        tables += [
            "",
            "Success rate per episode (an episode succeeds if the task reports success at any "
            "of its steps; 95% CI):",
            "",
            markdown_table(["agent", *(f"episode {e}" for e in episodes)], srows),
        ]
    return "\n".join([*lines, *tables]) + "\n"


def _draw_curves(result: EvalResult, ax) -> None:
    """Mean return per episode of the trial, with 95% CI bands, one line per agent, on ``ax``."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    for a in result.agents:
        mean, ci = (np.asarray(v) for v in a.episode_curve())
        x = np.arange(1, len(mean) + 1)
        ci = np.where(np.isfinite(ci), ci, 0.0)
        ax.plot(x, mean, label=a.label, marker="o" if len(x) <= 20 else None, ms=3)
        ax.fill_between(x, mean - ci, mean + ci, alpha=0.2)
    fam = result.family
    unit = "pull" if fam.max_episode_steps == 1 else "episode"
    ax.set_xlabel(f"{unit} within the trial")
    ax.set_ylabel(f"mean return per {unit}")
    ax.set_title(f"{fam.family_id}: {result.num_tasks} held-out tasks, 95% CI", fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_curves(result: EvalResult, path: Path) -> Path:
    """The adaptation curve of one evaluation as a PNG."""
    return plot_overview([result], path)


def plot_overview(results: list[EvalResult], path: Path) -> Path:
    """Several evaluations' curves side by side (two per row) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(results), 2)
    rows = (len(results) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.2 * rows), dpi=110, squeeze=False)
    for ax, result in zip(axes.flat, results, strict=False):
        _draw_curves(result, ax)
    for ax in list(axes.flat)[len(results) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write the matplotlib figure ``fig`` to ``path`` (creating its folder) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report_files(
    out_dir: str | Path, data: dict[str, Any], markdown: str, plot: Callable[[Path], Path]
) -> dict[str, Path]:
    """Write ``results.json`` (``data``), ``report.md`` (``markdown``) and ``curve.png``
    (``plot(path)``) into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": write_json(out_dir / "results.json", data),
        "markdown": out_dir / "report.md",
        "plot": plot(out_dir / "curve.png"),
    }
    paths["markdown"].write_text(markdown)
    return paths


def save_report(result: EvalResult, out_dir: Path) -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and ``curve.png`` into ``out_dir``."""
    return write_report_files(
        out_dir, to_dict(result), to_markdown(result), lambda p: plot_curves(result, p)
    )


def load_results(path: Path) -> dict[str, Any]:
    """Read a ``results.json`` written by :func:`save_report`."""
    return json.loads(Path(path).read_text())
