"""MetricLogger: CSV rows, header widening without losing rows, truncation on resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from adaptrl.core import MetricLogger, RunDir, read_metrics


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_rows_and_header_widening(tmp_path: Path) -> None:
    with MetricLogger(tmp_path, tensorboard=False) as log:
        log.log(1, {"loss": 0.5, "return": 1.0})
        log.log(2, {"loss": 0.25})
        log.log(3, {"return": 2.0, "kl": 0.01, "loss": 0.125})
    rows = _rows(tmp_path / "metrics.csv")
    assert rows[0] == ["step", "loss", "return", "kl"]
    assert rows[1:] == [
        ["1", "0.5", "1.0", ""],
        ["2", "0.25", "", ""],
        ["3", "0.125", "2.0", "0.01"],
    ]
    assert read_metrics(tmp_path / "metrics.csv")[1] == {"step": 2, "loss": 0.25}


def test_widening_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = MetricLogger(tmp_path, tensorboard=False)
    log.log(1, {"a": 1.0})
    before = (tmp_path / "metrics.csv").read_bytes()

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        log.log(2, {"b": 2.0})
    assert (tmp_path / "metrics.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_tensors_and_exact_values(tmp_path: Path) -> None:
    with MetricLogger(tmp_path, tensorboard=False) as log:
        log.log(
            0,
            {
                "t": torch.tensor(0.1, dtype=torch.float64),
                "n": torch.tensor([7]),
                "x": 1 / 3,
                "bad": float("nan"),
            },
        )
        with pytest.raises(ValueError, match="3 elements"):
            log.log(1, {"v": torch.ones(3)})
        with pytest.raises(TypeError, match="not a number"):
            log.log(1, {"s": "text"})
    row = read_metrics(tmp_path / "metrics.csv")[0]
    assert row["t"] == 0.1 and row["n"] == 7 and isinstance(row["n"], int)
    assert row["x"] == 1 / 3 and math.isnan(row["bad"])


def test_reopen_appends_and_truncate_after(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r")
    with MetricLogger(run, tensorboard=False) as log:
        for step in range(1, 6):
            log.log(step, {"loss": 1.0 / step})
    uninterrupted = run.metrics_path.read_text()

    # "killed" after step 5, last checkpoint at step 3: resume and redo 4 and 5
    with MetricLogger(run, tensorboard=False) as log:
        assert log.last_step == 5
        assert log.truncate_after(3) == 2
        assert log.last_step == 3
        for step in (4, 5):
            log.log(step, {"loss": 1.0 / step})
    assert run.metrics_path.read_text() == uninterrupted


def test_partial_last_line_is_repaired(tmp_path: Path) -> None:
    with MetricLogger(tmp_path, tensorboard=False) as log:
        log.log(1, {"a": 1.0})
        log.log(2, {"a": 2.0})
    path = tmp_path / "metrics.csv"
    path.write_text(path.read_text() + "3,3.")  # killed mid-row
    with MetricLogger(tmp_path, tensorboard=False) as log:
        log.log(3, {"a": 3.0})
    assert _rows(path) == [["step", "a"], ["1", "1.0"], ["2", "2.0"], ["3", "3.0"]]


def test_tensorboard_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = RunDir.create(tmp_path, "r")
    with MetricLogger(run) as log:
        for step in range(3):
            log.log(step, {"loss": float(step)})
    acc = EventAccumulator(str(run.tb_dir))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_tensorboard_events_after_resume_step_are_purged(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = RunDir.create(tmp_path, "r")
    with MetricLogger(run) as log:
        for step in range(5):
            log.log(step, {"loss": float(step)})
    with MetricLogger(run) as log:
        log.truncate_after(2)
        for step in (3, 4):
            log.log(step, {"loss": 10.0 * step})
    acc = EventAccumulator(str(run.tb_dir))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [
        (0, 0.0), (1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0),
    ]  # fmt: skip


def test_resumed_event_file_sorts_after_earlier_files_of_the_same_second(tmp_path: Path) -> None:
    import os
    import socket
    import time

    run = RunDir.create(tmp_path, "r")
    run.tb_dir.mkdir(parents=True, exist_ok=True)
    # A file from "this second" whose counter (99) sorts as text after a later writer's (e.g. 100).
    earlier = (
        run.tb_dir
        / f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.99"
    )
    earlier.write_bytes(b"")
    with MetricLogger(run) as log:
        log.log(0, {"loss": 1.0})
    names = sorted(p.name for p in run.tb_dir.iterdir())
    assert len(names) == 2 and names[0] == earlier.name
