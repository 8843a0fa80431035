"""Checkpoints: exact round trips, refusal of damaged files, atomic writes, nested state, pruning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from adaptrl.core import (
    CheckpointError,
    checkpoint_path,
    flatten_state,
    global_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_state,
    prune_checkpoints,
    save_checkpoint,
    save_state,
    unflatten_state,
)
from adaptrl.core.checkpoint import FORMAT_VERSION


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(3, 4, generator=g),
        "b": torch.randn(4, generator=g, dtype=torch.float64),
        "count": torch.tensor([1, 2, 3], dtype=torch.int64),
        "mask": torch.tensor([True, False]),
        "half": torch.randn(2, generator=g).to(torch.bfloat16),
        "scalar": torch.tensor(2.5),
    }


def _flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_round_trip_exact(tmp_path: Path) -> None:
    tensors = _tensors()
    meta = {"step": 12, "rng": global_rng_state(), "config": {"lr": 0.1, "tags": ["a"]}}
    base = save_checkpoint(tmp_path / "ck", tensors, meta)
    assert base == tmp_path / "ck"
    assert (tmp_path / "ck.safetensors").is_file() and (tmp_path / "ck.json").is_file()
    loaded, loaded_meta = load_checkpoint(base)
    assert loaded.keys() == tensors.keys()
    for k, t in tensors.items():
        assert loaded[k].dtype == t.dtype and torch.equal(loaded[k], t), k
    assert loaded_meta == meta
    header = json.loads((tmp_path / "ck.json").read_text())
    assert header["format"] == "adaptrl-checkpoint" and header["format_version"] == 1
    assert header["tensors"] == sorted(tensors) and len(header["safetensors_sha256"]) == 64
    # either file name works as the path
    assert torch.equal(load_checkpoint(tmp_path / "ck.json")[0]["w"], tensors["w"])
    assert torch.equal(load_checkpoint(tmp_path / "ck.safetensors")[0]["w"], tensors["w"])


def test_shared_and_non_contiguous_tensors(tmp_path: Path) -> None:
    big = torch.arange(12.0).reshape(3, 4)
    tensors = {"a": big, "view": big[:, 1], "same": big, "empty": torch.empty(0)}
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "ck", tensors, {}))
    for k, t in tensors.items():
        assert torch.equal(loaded[k], t), k


def test_no_pickle_in_files(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck", _tensors(), {"step": 1})
    blob = (tmp_path / "ck.safetensors").read_bytes()
    assert not blob.startswith(b"\x80")  # pickle protocol marker
    json.loads((tmp_path / "ck.json").read_text())


def test_meta_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "ck", {}, {"bad": object()})
    assert not list(tmp_path.iterdir())  # nothing written


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not found.*check the path"):
        load_checkpoint(tmp_path / "nope")
    base = save_checkpoint(tmp_path / "ck", _tensors(), {})
    (tmp_path / "ck.json").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete.*ck.json missing"):
        load_checkpoint(base)
    base = save_checkpoint(tmp_path / "ck2", _tensors(), {})
    (tmp_path / "ck2.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"ck2.safetensors is missing"):
        load_checkpoint(base)


def test_truncated_tensors_refused(tmp_path: Path) -> None:
    base = save_checkpoint(tmp_path / "ck", _tensors(), {})
    path = tmp_path / "ck.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated") as err:
        load_checkpoint(base)
    assert "\n" not in str(err.value) and "earlier checkpoint" in str(err.value)


def test_truncated_without_size_record_is_unreadable(tmp_path: Path) -> None:
    base = save_checkpoint(tmp_path / "ck", _tensors(), {})
    header = json.loads((tmp_path / "ck.json").read_text())
    del header["safetensors_bytes"]
    (tmp_path / "ck.json").write_text(json.dumps(header))
    path = tmp_path / "ck.safetensors"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(base)


def test_flipped_byte_is_hash_mismatch(tmp_path: Path) -> None:
    base = save_checkpoint(tmp_path / "ck", _tensors(), {})
    _flip_byte(tmp_path / "ck.safetensors")  # last byte: tensor data, still parseable
    with pytest.raises(CheckpointError, match=r"modified after saving.*sha256"):
        load_checkpoint(base)


def test_wrong_format_and_versions(tmp_path: Path) -> None:
    base = save_checkpoint(tmp_path / "ck", _tensors(), {})
    meta_path = tmp_path / "ck.json"
    header = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps({**header, "format": "something-else"}))
    with pytest.raises(CheckpointError, match="not an adaptrl checkpoint"):
        load_checkpoint(base)
    meta_path.write_text(json.dumps({**header, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(CheckpointError, match=r"format version 2.*upgrade adaptrl"):
        load_checkpoint(base)
    meta_path.write_text(json.dumps({**header, "format_version": 0}))
    with pytest.raises(CheckpointError, match=r"format version 0.*re-save"):
        load_checkpoint(base)
    meta_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(base)


def test_missing_tensors_refused(tmp_path: Path) -> None:
    base = save_checkpoint(tmp_path / "ck", _tensors(), {})
    meta_path = tmp_path / "ck.json"
    header = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**header, "tensors": [*header["tensors"], "ghost"]}))
    with pytest.raises(CheckpointError, match="lacks tensors ghost"):
        load_checkpoint(base)


@pytest.mark.parametrize("fail_on_call", [1, 2])
def test_failed_write_leaves_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on_call: int
) -> None:
    old = save_checkpoint(checkpoint_path(tmp_path, 1), {"w": torch.zeros(3)}, {"step": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    import os

    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    new = checkpoint_path(tmp_path, 2)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(new, {"w": torch.ones(3)}, {"step": 2})
    monkeypatch.setattr(os, "replace", real_replace)

    # The old checkpoint is byte-identical and still the latest complete one.
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data
    assert latest_checkpoint(tmp_path) == old
    # No JSON for the new one (so it is not "complete"), no temporary files left over.
    assert not (tmp_path / (new.name + ".json")).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    tensors, meta = load_checkpoint(old)
    assert torch.equal(tensors["w"], torch.zeros(3)) and meta == {"step": 1}


def test_flatten_unflatten_exact() -> None:
    state = {
        "policy": {"fc.weight": torch.ones(2, 2), "fc.bias": torch.zeros(2)},
        "optim": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}, 1: {}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99), "params": [0, 1], "foreach": None}],
        },
        "counters": {"iteration": 5, "nan": float("nan"), "inf": float("-inf"), "flag": True},
        "__weird": {(1, 2): "tuple key"},
    }
    tensors, skeleton = flatten_state(state)
    assert set(tensors) == {"policy.fc.weight", "policy.fc.bias", "optim.state.0.step",
                            "optim.state.0.exp_avg"}  # fmt: skip
    text = json.dumps(skeleton, allow_nan=False)  # strict JSON, no NaN literals
    back = unflatten_state(tensors, json.loads(text))
    assert list(back["optim"]["state"]) == [0, 1]
    assert back["optim"]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert isinstance(back["optim"]["param_groups"][0]["betas"], tuple)
    assert math.isnan(back["counters"]["nan"]) and back["counters"]["inf"] == float("-inf")
    assert back["counters"]["flag"] is True and back["__weird"] == {(1, 2): "tuple key"}
    assert back["policy"]["fc.weight"] is tensors["policy.fc.weight"]
    with pytest.raises(CheckpointError, match="lacks tensor"):
        unflatten_state({}, skeleton)
    with pytest.raises(TypeError, match="cannot store"):
        flatten_state({"x": object()})


def test_adam_restored_from_checkpoint_continues_bit_identically(tmp_path: Path) -> None:
    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        return model, torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))

    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)) for _ in range(8)]

    def train(model: torch.nn.Module, opt: torch.optim.Optimizer, data: list) -> None:
        for x, y in data:
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    ref_model, ref_opt = make()
    train(ref_model, ref_opt, batches)

    model, opt = make()
    train(model, opt, batches[:4])
    save_state(tmp_path / "ck", {"model": model.state_dict(), "optim": opt.state_dict()}, {"it": 4})
    del model, opt

    model2, opt2 = make()
    state, meta = load_state(tmp_path / "ck")
    assert meta == {"it": 4}
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optim"])
    train(model2, opt2, batches[4:])
    for a, b in zip(ref_model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert opt2.state_dict()["param_groups"] == ref_opt.state_dict()["param_groups"]


def test_load_state_needs_layout(tmp_path: Path) -> None:
    base = save_checkpoint(tmp_path / "ck", {"w": torch.ones(1)}, {})
    with pytest.raises(CheckpointError, match="no state layout"):
        load_state(base)


def test_list_and_prune(tmp_path: Path) -> None:
    for step in (5, 100, 20, 7):
        save_checkpoint(checkpoint_path(tmp_path, step), {"w": torch.full((1,), step)}, {})
    # an interrupted older write (tensors only) and an unrelated file
    (tmp_path / (checkpoint_path(tmp_path, 3).name + ".safetensors")).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("keep me")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "ckpt-000000000005", "ckpt-000000000007", "ckpt-000000000020", "ckpt-000000000100",
    ]  # fmt: skip
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 100)
    removed = prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == [
        "ckpt-000000000003", "ckpt-000000000005", "ckpt-000000000007",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-000000000020.json", "ckpt-000000000020.safetensors",
        "ckpt-000000000100.json", "ckpt-000000000100.safetensors", "notes.txt",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="keep"):
        prune_checkpoints(tmp_path, keep=0)
    assert latest_checkpoint(tmp_path / "nowhere") is None
