"""Benchmark helpers; provenance lives in ``adaptrl.core.provenance`` so every layer can record it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adaptrl.core.provenance import git_commit, machine_info, provenance, write_json
from adaptrl.eval.curves import CurveReport, save_curve_report


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
