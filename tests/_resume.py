"""Shared test helper: train a run fully, and again with a kill and a resume, for resume checks."""

from __future__ import annotations

from typing import Any

import pytest

from adaptrl.algos.trainer import new_run, train_run


def full_and_resumed(tmp_path, config: Any, kill_at: int, checkpoint_every: int = 2):
    """Train ``config`` to the end in ``tmp_path/full``; train it in ``tmp_path/killed`` with an
    interrupt after iteration ``kill_at`` (logged, not checkpointed), then resume it to the end.

    Returns both learners after asserting that the two runs' metrics.csv files are identical
    (the iterations lost in the kill are logged once, not twice)."""
    full = train_run(
        new_run(tmp_path / "full", config, checkpoint_every=checkpoint_every).path,
        show_progress=False,
    )

    def kill(learner, metrics):
        if learner.iteration == kill_at:
            raise KeyboardInterrupt

    path = new_run(tmp_path / "killed", config, checkpoint_every=checkpoint_every).path
    with pytest.raises(KeyboardInterrupt):
        train_run(path, show_progress=False, on_iteration=kill)
    resumed = train_run(path, resume=True, show_progress=False)
    assert (path / "metrics.csv").read_text() == (tmp_path / "full" / "metrics.csv").read_text()
    return full, resumed
