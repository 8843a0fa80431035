"""Run directories: layout, refusal to clobber, resume, latest checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from adaptrl.core import ConfigError, RunDir, config_hash, save_checkpoint


@dataclasses.dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    seed: int = 0


def test_create_named_layout_and_config(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "runs", "exp1", config=Cfg(lr=0.5))
    assert run.path == tmp_path / "runs" / "exp1" and not run.resumed
    assert run.config_path == run.path / "config.yaml" and run.config_path.is_file()
    assert run.metrics_path == run.path / "metrics.csv"
    assert run.tb_dir == run.path / "tb"
    assert run.checkpoint_dir.is_dir() and run.plots_dir.is_dir()
    assert run.load_config(Cfg) == Cfg(lr=0.5)
    assert run.config_dict() == {"lr": 0.5, "seed": 0}


def test_create_default_name_has_timestamp_and_hash(tmp_path: Path) -> None:
    a = RunDir.create(tmp_path, config=Cfg())
    assert a.name.endswith("-" + config_hash(Cfg()))
    b = RunDir.create(tmp_path, config=Cfg())  # same second, same config: a fresh folder
    assert b.path != a.path and b.path.parent == tmp_path
    assert RunDir.create(tmp_path).name[:8].isdigit()  # no config: timestamp only


def test_create_refuses_to_clobber(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "exp", config=Cfg())
    before = run.config_path.read_bytes()
    with pytest.raises(ConfigError, match=r"already exists.*--resume .*exp.*new name"):
        RunDir.create(tmp_path, "exp", config=Cfg(lr=9.0))
    assert run.config_path.read_bytes() == before
    (tmp_path / "empty").mkdir()
    assert RunDir.create(tmp_path, "empty").path == tmp_path / "empty"  # empty dir is fine
    for bad in ("a/b", "..", ""):
        with pytest.raises(ConfigError, match="plain folder name"):
            RunDir.create(tmp_path, bad)


def test_open_for_resume(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such run directory"):
        RunDir.open(tmp_path / "missing")
    (tmp_path / "notarun").mkdir()
    with pytest.raises(ConfigError, match=r"no config.yaml"):
        RunDir.open(tmp_path / "notarun")
    RunDir.create(tmp_path, "exp", config=Cfg())
    run = RunDir.open(tmp_path / "exp")
    assert run.resumed and run.load_config(Cfg) == Cfg()


def test_latest_checkpoint_and_prune(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "exp", config=Cfg())
    assert run.latest_checkpoint() is None
    for step in (10, 30, 20):
        save_checkpoint(run.checkpoint_path(step), {"w": torch.zeros(1)}, {"step": step})
    # an interrupted newer write (tensors without JSON) is not a checkpoint
    run.checkpoint_path(40).with_suffix(".safetensors").write_bytes(b"partial")
    assert run.latest_checkpoint() == run.checkpoint_path(30)
    run.prune_checkpoints(keep=1)
    assert run.latest_checkpoint() == run.checkpoint_path(30)
    assert not run.checkpoint_path(20).with_suffix(".json").exists()
