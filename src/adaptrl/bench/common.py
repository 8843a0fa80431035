"""What every benchmark shares: training a learner with the one training loop and timing it,
writing its results (``results.json`` with provenance, ``report.md``), memory readings."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import load_config
from adaptrl.algos.trainer import train
from adaptrl.core.errors import ConfigError
from adaptrl.core.progress import console, progress
from adaptrl.core.provenance import provenance, write_json
from adaptrl.core.table import markdown_table
from adaptrl.eval.curves import CurveReport, save_curve_report


def preset_with_changes(entry: str) -> tuple[str, Any]:
    """``ALGO/PRESET[:FIELD=VALUE,...]`` -> the algorithm and its config with those changes
    (values read as YAML, checked and converted as a preset's own fields are)."""
    name, _, changes = entry.partition(":")
    if "/" not in name:
        raise ConfigError(f"expected ALGO/PRESET[:FIELD=VALUE,...], got {entry!r}")
    algo, preset_name = name.split("/", 1)
    items = (item.split("=", 1) for item in changes.split(",")) if changes else ()
    return algo, load_config(algo, preset_name, {k: yaml.safe_load(v) for k, v in items})


def train_timed(
    learner: MetaLearner,
    iterations: int,
    description: str,
    on_iteration: Callable[[MetaLearner, dict[str, float]], bool | None] | None = None,
) -> dict[str, Any]:
    """Train ``learner`` in memory to ``iterations`` with :func:`adaptrl.algos.trainer.train`;
    returns the iterations done, the wall-clock seconds and the last iteration's metrics."""
    last: dict[str, float] = {}

    def record(lr: MetaLearner, metrics: dict[str, float]) -> bool | None:
        last.clear()
        last.update(metrics)
        return on_iteration(lr, metrics) if on_iteration is not None else None

    start, t0 = learner.iteration, time.perf_counter()
    train(learner, iterations=iterations, description=description, on_iteration=record)
    seconds = time.perf_counter() - t0
    done = learner.iteration - start
    return {
        "iterations": done,
        "seconds": seconds,
        "seconds_per_iteration": seconds / max(done, 1),
        "last_metrics": last,
    }


def interleaved_seconds(
    fns: dict[str, Callable[[], Any]], rounds: int, description: str = ""
) -> dict[str, list[float]]:
    """Seconds of every call of each function: one untimed warm-up call each (allocator, kernel
    caches), then ``rounds`` rounds calling each once in turn, so that load from elsewhere hits
    all of them alike and their ratios stay fair even when absolute times do not."""
    for fn in fns.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in progress(range(rounds), description=description, disable=not description):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
    return seconds


def table_markdown(title: str, header: dict[str, Any], columns: Sequence[str], rows: list) -> str:
    """A report's markdown: ``# title``, one ``- key: value`` line per header entry, the table."""
    lines = [f"# {title}", "", *(f"- {k}: {v}" for k, v in header.items())]
    return "\n".join([*lines, "", markdown_table(columns, rows)]) + "\n"


def write_bench(
    out: Path, payload: dict[str, Any], markdown: str, *, seeds: Any = None
) -> dict[str, Any]:
    """Write ``out/results.json`` (``payload`` with provenance) and ``out/report.md``; returns
    the payload as written."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "provenance": provenance(seeds=seeds)}
    write_json(out / "results.json", payload)
    (out / "report.md").write_text(markdown)
    console().print(f"wrote {out / 'results.json'} and {out / 'report.md'}")
    return payload


def write_curve_bench(
    out: Path, report: CurveReport, markdown: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Write a curve bench's outputs to ``out``: the curve report's files (results.json,
    curve.png), ``report.md`` (``markdown``) and ``bench.json`` (``payload``); print
    ``markdown``. Returns the report's paths, and ``payload`` under ``report`` / ``paths``."""
    paths = save_curve_report(report, out)
    (out / "report.md").write_text(markdown + "\n")
    write_json(out / "bench.json", payload)
    console().print(markdown)
    return {"report": report, "paths": paths, **payload}


def resident_mb() -> float:
    """The process's resident memory (VmRSS, Linux) in MB; NaN where /proc has no such line."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_per_tenth(values: Sequence[float]) -> list[float]:
    """The maximum of each tenth of a series (fewer parts for fewer than ten values): memory
    checks read a plateau or a climb from it."""
    return [float(max(part)) for part in np.array_split(np.asarray(values), 10) if len(part)]


__all__ = [
    "interleaved_seconds",
    "peak_per_tenth",
    "preset_with_changes",
    "resident_mb",
    "table_markdown",
    "train_timed",
    "write_bench",
    "write_curve_bench",
]
