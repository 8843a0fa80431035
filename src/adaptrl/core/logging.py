"""Metric logging: one CSV row per logged step (``metrics.csv``) plus TensorBoard scalars.

Call :meth:`MetricLogger.log` at the end of an iteration, never inside a rollout: tensors in the
metrics are moved to the host together, once per call. The CSV's header is the union of all keys
seen (``step`` first); when a new key appears, the file is rewritten atomically with the wider
header, keeping every existing row. On resume, :meth:`MetricLogger.truncate_after` drops rows (and
TensorBoard events) past the checkpoint's step, so a killed-and-resumed run ends with the same
``metrics.csv`` as one that never stopped.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from adaptrl.core.checkpoint import atomic_write

STEP = "step"


def _fmt(value: float | int | None) -> str:
    """Exact text: ``repr`` round-trips floats (``0.1``, ``3.0``, ``nan``); ints stay ints."""
    return "" if value is None else repr(value)


def _parse(text: str) -> float | int | None:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_metrics(path: str | Path) -> list[dict[str, float | int]]:
    """Rows of a ``metrics.csv`` as dicts of numbers (empty cells are left out)."""
    header, rows, _ = _read(Path(path))
    return [
        {k: v for k, v in zip(header, (_parse(c) for c in row), strict=False) if v is not None}
        for row in rows
    ]


def _read(path: Path) -> tuple[list[str], list[list[str]], bool]:
    """Header, complete rows, and whether a partial last line (a cut-short write) was dropped."""
    if not path.exists():
        return [], [], False
    text = path.read_text()
    partial = bool(text) and not text.endswith("\n")
    if partial:
        text = text[: text.rfind("\n") + 1]
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        return [], [], partial
    header, rows = lines[0], lines[1:]
    return header, [r + [""] * (len(header) - len(r)) for r in rows if r], partial


def _render(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def _wait_for_later_event_file_name(tb_dir: Path) -> None:
    """Sleep until a new event file's name will sort after every existing one.

    TensorBoard reads a directory's event files in name order, and a purge only hides events from
    files read before it. Names start with the creation second; within one second they end with a
    per-process counter that sorts as text (``.10`` before ``.9``), so a second writer opened in
    the same second can sort first and its purge would be lost.
    """
    newest = 0
    for path in tb_dir.glob("events.out.tfevents.*"):
        stamp = path.name.split(".")[3]
        if stamp.isdigit():
            newest = max(newest, int(stamp))
    while int(time.time()) <= newest:
        time.sleep(0.05)


class MetricLogger:
    """Append metrics to ``metrics.csv`` and TensorBoard. Usable as a context manager.

    ``run_dir`` is a :class:`~adaptrl.core.rundir.RunDir` or a plain directory.
    """

    def __init__(self, run_dir: Any, tensorboard: bool = True):
        path = Path(getattr(run_dir, "path", run_dir))
        self.csv_path = Path(getattr(run_dir, "metrics_path", path / "metrics.csv"))
        self.tb_dir = Path(getattr(run_dir, "tb_dir", path / "tb"))
        self.tensorboard = tensorboard
        self._writer: Any = None
        self._purge_step: int | None = None
        self._closed = False
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        self.header, rows, partial = _read(self.csv_path)
        if partial:
            # A run killed mid-write left half a line: drop it so appends start on a fresh line.
            atomic_write(self.csv_path, _render(self.header, rows) if self.header else b"")
        self.last_step: int | None = int(rows[-1][0]) if rows else None

    # --- writing --------------------------------------------------------------------------
    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Record ``metrics`` (numbers or one-element tensors) at ``step``."""
        if self._closed:
            raise RuntimeError("MetricLogger is closed")
        values = self._to_numbers(metrics)
        keys = [k for k in values if k not in self.header]
        if STEP in values:
            raise ValueError(f"{STEP!r} is reserved for the step column")
        if keys or not self.header:
            self._widen(keys)
        row = [str(int(step))] + [_fmt(values.get(k)) for k in self.header[1:]]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        with open(self.csv_path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
        self.last_step = int(step)
        if self.tensorboard:
            writer = self._tb()
            for k, v in values.items():
                writer.add_scalar(k, v, int(step))

    @staticmethod
    def _to_numbers(metrics: Mapping[str, Any]) -> dict[str, float | int]:
        tensor_keys = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
        out: dict[str, float | int] = {}
        if tensor_keys:
            for k in tensor_keys:
                if metrics[k].numel() != 1:
                    raise ValueError(f"metric {k!r} has {metrics[k].numel()} elements, expected 1")
            stacked = torch.stack(
                [metrics[k].detach().reshape(()).to(torch.float64) for k in tensor_keys]
            )
            host = stacked.cpu().tolist()  # one device->host copy per call
            for k, v in zip(tensor_keys, host, strict=True):
                is_int = not metrics[k].is_floating_point() and not metrics[k].is_complex()
                out[k] = int(v) if is_int else v
        for k, v in metrics.items():
            if not isinstance(k, str) or not k:
                raise ValueError(f"metric names must be non-empty strings, got {k!r}")
            if k in out:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                try:
                    v = float(v)  # numpy scalars and the like
                except (TypeError, ValueError):
                    raise TypeError(f"metric {k!r} is a {type(v).__name__}, not a number") from None
            out[k] = v
        return {k: out[k] for k in metrics}

    def _widen(self, new_keys: list[str]) -> None:
        header, rows, _ = _read(self.csv_path)
        header = header or [STEP]
        header = header + [k for k in new_keys if k not in header]
        rows = [r + [""] * (len(header) - len(r)) for r in rows]
        atomic_write(self.csv_path, _render(header, rows))
        self.header = header

    def truncate_after(self, step: int) -> int:
        """Drop CSV rows with ``step`` greater than ``step`` (and later TensorBoard events).

        Returns how many rows were dropped. Call on resume with the checkpoint's step.
        """
        header, rows, _ = _read(self.csv_path)
        kept = [r for r in rows if int(r[0]) <= step]
        if len(kept) != len(rows):
            atomic_write(self.csv_path, _render(header, kept))
        self.header = header
        self.last_step = int(kept[-1][0]) if kept else None
        # TensorBoard hides events at or after purge_step that an earlier writer (the killed run) left.
        self._purge_step = step + 1
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return len(rows) - len(kept)

    def _tb(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            _wait_for_later_event_file_name(self.tb_dir)
            self._writer = SummaryWriter(log_dir=str(self.tb_dir), purge_step=self._purge_step)
            self._purge_step = None
        return self._writer

    # --- lifecycle ------------------------------------------------------------------------
    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._closed = True

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["MetricLogger", "read_metrics"]
