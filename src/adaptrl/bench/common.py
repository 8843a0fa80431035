"""Benchmark helpers; provenance lives in ``adaptrl.core.provenance`` so every layer can record it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adaptrl.core.provenance import git_commit, machine_info, provenance, write_json
from adaptrl.eval.curves import CurveReport, save_curve_report


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


def write_curve_bench(
    out: Path, report: CurveReport, markdown: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Write a curve bench's outputs to ``out``: the curve report's files, ``report.md``
    (``markdown``) and ``bench.json`` (``payload``); print ``markdown``. Returns the report's paths,
    and ``payload`` under ``report`` / ``paths`` for callers and tests."""
    paths = save_curve_report(report, out)
    (out / "report.md").write_text(markdown + "\n")
    write_json(out / "bench.json", payload)
    print(markdown)
    return {"report": report, "paths": paths, **payload}


__all__ = ["git_commit", "machine_info", "provenance", "write_curve_bench", "write_json"]
