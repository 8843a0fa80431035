"""Provenance every results file records beside its numbers: commit, machine, seeds, command."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from adaptrl.core.checkpoint import atomic_write


def git_commit() -> str:
    """The current commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        here = Path(__file__).resolve().parent
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except OSError:
        return "unknown"


@functools.cache
def start_commit() -> str:
    """:func:`git_commit` at its first call: the CLI makes that call at start-up, so a long run
    records the code it imported even if the tree changes before it writes its results."""
    return git_commit()


def machine_info() -> dict[str, Any]:
    """CPU, core count, Python and torch versions, threads."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def provenance(seeds: Any = None) -> dict[str, Any]:
    """The header every results file carries (``commit_at_write`` too if the tree changed since
    :func:`start_commit`)."""
    commit, now = start_commit(), git_commit()
    return {
        "commit": commit,
        **({"commit_at_write": now} if now != commit else {}),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine_info(),
        "seeds": seeds,
    }


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as pretty JSON atomically (:func:`~adaptrl.core.checkpoint.atomic_write`)."""
    return atomic_write(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())
