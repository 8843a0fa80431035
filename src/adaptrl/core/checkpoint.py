"""Checkpoints: tensors in safetensors, everything else in JSON. Never pickle.

A checkpoint ``<path>`` is two files written atomically (temporary file + ``os.replace``), tensors
first and JSON last, so the JSON's presence marks a complete checkpoint::

    <path>.safetensors   the tensors
    <path>.json          {"format": "adaptrl-checkpoint", "format_version": 1, "adaptrl_version",
                          "safetensors_sha256", "safetensors_bytes", "tensors": [names], "meta": {...}}

Loading checks the format, its version, the file size and the sha256 of the tensors, so a truncated,
tampered-with or foreign file is refused with one :class:`CheckpointError` line naming the fix.
Overwriting the *same* path is not atomic across the two files (a crash between the two renames
leaves a pair whose hash does not match, which is refused, not misread); runs therefore write a new
path per step (:func:`checkpoint_path`) and :func:`prune_checkpoints` the old ones.

Nested state (``{"policy": module.state_dict(), "optim": optimizer.state_dict()}``) goes through
:func:`flatten_state` / :func:`unflatten_state`: tensors by dotted name, and a JSON skeleton of the
rest (ints, floats, tuples, int dict keys) that rebuilds the structure exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from adaptrl.core.errors import CheckpointError

FORMAT = "adaptrl-checkpoint"
FORMAT_VERSION = 1
TENSORS_SUFFIX = ".safetensors"
META_SUFFIX = ".json"
_PREFIX = "ckpt-"
_NAME_RE = re.compile(r"^ckpt-(\d+)$")


# --------------------------------------------------------------------------------------------
# atomic files


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``.

    Readers see the old file or the new one, never a partial one; on failure the temporary file
    is removed and the old file is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


# --------------------------------------------------------------------------------------------
# save / load


def _base(path: str | Path) -> Path:
    """``x``, ``x.json`` and ``x.safetensors`` all name the checkpoint ``x``."""
    path = Path(path)
    if path.suffix in (META_SUFFIX, TENSORS_SUFFIX):
        return path.with_suffix("")
    return path


def _with(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)


def _adaptrl_version() -> str:
    from adaptrl import __version__

    return __version__


def _tensors_for_saving(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, str]] = set()
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name!r} is a {type(t).__name__}, not a tensor; put it in meta")
        t = t.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), str(t.device))
        if t.numel() and key in seen:  # safetensors refuses tensors that share memory
            t = t.clone()
        elif t.numel():
            seen.add(key)
        out[name] = t
    return out


def save_checkpoint(
    path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``<path>.safetensors`` then ``<path>.json``; returns ``path`` (without suffix).

    ``meta`` must be JSON-serialisable (step counters, RNG states, ``config_to_dict(cfg)``, ...).
    """
    from safetensors.torch import save

    base = _base(path)
    meta = dict(meta or {})
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint meta must be JSON-serialisable: {exc}") from exc
    blob = save(_tensors_for_saving(tensors))
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "adaptrl_version": _adaptrl_version(),
        "safetensors_sha256": hashlib.sha256(blob).hexdigest(),
        "safetensors_bytes": len(blob),
        "tensors": sorted(tensors),
        "meta": meta,
    }
    atomic_write(_with(base, TENSORS_SUFFIX), blob)
    atomic_write(_with(base, META_SUFFIX), (json.dumps(header, indent=1) + "\n").encode())
    return base


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The checked JSON header of a checkpoint (without reading the tensors)."""
    base = _base(path)
    meta_path, tensors_path = _with(base, META_SUFFIX), _with(base, TENSORS_SUFFIX)
    if not meta_path.exists():
        if tensors_path.exists():
            raise CheckpointError(
                f"checkpoint {base} is incomplete ({meta_path.name} missing: the write was "
                "interrupted); resume from an earlier checkpoint"
            )
        raise CheckpointError(
            f"checkpoint {base} not found (expected {meta_path.name} and {tensors_path.name}); "
            "check the path"
        )
    try:
        header = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {base}: {meta_path.name} is not valid JSON ({exc}); the file is "
            "corrupt, resume from another checkpoint"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(
            f"{meta_path} is not an adaptrl checkpoint (format {header.get('format') if isinstance(header, dict) else None!r}); "
            "pass a checkpoint written by adaptrl"
        )
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version > FORMAT_VERSION:
            fix = "upgrade adaptrl (pip install -U adaptrl) to read it"
        else:
            fix = "load it with the adaptrl version that wrote it and re-save, or retrain"
        raise CheckpointError(
            f"checkpoint {base} has format version {version!r} (written by adaptrl "
            f"{header.get('adaptrl_version', '?')}); this adaptrl reads version "
            f"{FORMAT_VERSION}: {fix}"
        )
    return header


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint; returns ``(tensors, meta)``. Problems: :class:`CheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    base = _base(path)
    header = read_checkpoint_meta(base)
    tensors_path = _with(base, TENSORS_SUFFIX)
    try:
        blob = tensors_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {base}: {tensors_path.name} is missing; restore it or resume from an "
            "earlier checkpoint"
        ) from None
    expected = header.get("safetensors_bytes")
    if isinstance(expected, int) and len(blob) < expected:
        raise CheckpointError(
            f"checkpoint {base}: {tensors_path.name} is truncated ({len(blob)} of {expected} "
            "bytes); resume from an earlier checkpoint"
        )
    if hashlib.sha256(blob).hexdigest() != header.get("safetensors_sha256"):
        try:
            load(blob)
            what = "was modified after saving (sha256 mismatch)"
        except (SafetensorError, ValueError, RuntimeError):
            what = "is corrupt or truncated (unreadable, sha256 mismatch)"
        raise CheckpointError(
            f"checkpoint {base}: {tensors_path.name} {what}; it cannot be trusted, resume from "
            "an earlier checkpoint"
        )
    try:
        tensors = load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {base}: {tensors_path.name} is unreadable ({exc}); resume from an "
            "earlier checkpoint"
        ) from None
    missing = sorted(set(header.get("tensors", [])) - set(tensors))
    if missing:
        raise CheckpointError(
            f"checkpoint {base} lacks tensors {', '.join(missing)}; it was not written by a "
            "complete save, resume from an earlier checkpoint"
        )
    if str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return tensors, header.get("meta", {})


# --------------------------------------------------------------------------------------------
# nested state


def flatten_state(nested: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split nested state into ``(tensors by dotted name, JSON skeleton of everything else)``.

    The skeleton keeps ints, floats (NaN/inf too), bools, strings, None, lists, tuples and dicts
    with non-string keys (as optimizer state dicts have), so :func:`unflatten_state` rebuilds the
    structure exactly. Store the skeleton in the checkpoint's meta.
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(value: Any, name: str) -> Any:
        if isinstance(value, torch.Tensor):
            key, i = name or "tensor", 1
            while key in tensors:
                key, i = f"{name}#{i}", i + 1
            tensors[key] = value
            return {"__tensor__": key}
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, tuple):
            return {"__tuple__": [enc(v, f"{name}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [enc(v, f"{name}.{i}") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            sub = lambda k: f"{name}.{k}" if name else str(k)  # noqa: E731
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: enc(v, sub(k)) for k, v in value.items()}
            return {"__items__": [[enc(k, ""), enc(v, sub(k))] for k, v in value.items()]}
        raise TypeError(
            f"cannot store {type(value).__name__} at {name or '<root>'!r} in a checkpoint "
            "(tensors, numbers, strings, None, lists, tuples and dicts only)"
        )

    skeleton = enc(dict(nested), "")
    return tensors, skeleton


def unflatten_state(tensors: Mapping[str, torch.Tensor], skeleton: Any) -> Any:
    """Rebuild what :func:`flatten_state` split; a missing tensor is a :class:`CheckpointError`."""

    def dec(value: Any) -> Any:
        if isinstance(value, list):
            return [dec(v) for v in value]
        if isinstance(value, dict):
            if "__tensor__" in value:
                try:
                    return tensors[value["__tensor__"]]
                except KeyError:
                    raise CheckpointError(
                        f"checkpoint lacks tensor {value['__tensor__']!r}; it does not match "
                        "its state layout"
                    ) from None
            if "__tuple__" in value:
                return tuple(dec(v) for v in value["__tuple__"])
            if "__float__" in value:
                return float(value["__float__"])
            if "__items__" in value:
                return {_hashable(dec(k)): dec(v) for k, v in value["__items__"]}
            return {k: dec(v) for k, v in value.items()}
        return value

    return dec(skeleton)


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key


def save_state(
    path: str | Path, state: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> Path:
    """:func:`save_checkpoint` for nested state; the skeleton goes in ``meta["state_layout"]``."""
    tensors, skeleton = flatten_state(state)
    return save_checkpoint(path, tensors, {**(meta or {}), "state_layout": skeleton})


def load_state(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Inverse of :func:`save_state`: ``(nested state, meta without the layout)``."""
    tensors, meta = load_checkpoint(path, map_location)
    meta = dict(meta)
    if "state_layout" not in meta:
        raise CheckpointError(
            f"checkpoint {_base(path)} has no state layout; it was written with save_checkpoint, "
            "read it with load_checkpoint"
        )
    return unflatten_state(tensors, meta.pop("state_layout")), meta


# --------------------------------------------------------------------------------------------
# a directory of per-step checkpoints


def checkpoint_path(directory: str | Path, step: int) -> Path:
    """The path (without suffix) of the checkpoint for ``step`` in ``directory``."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return Path(directory) / f"{_PREFIX}{step:012d}"


def checkpoint_step(path: str | Path) -> int | None:
    """The step encoded in a :func:`checkpoint_path` name, else ``None``."""
    m = _NAME_RE.match(_base(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints (JSON present) in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.glob(f"{_PREFIX}*{META_SUFFIX}"):
        step = checkpoint_step(p)
        if step is not None and _with(_base(p), TENSORS_SUFFIX).exists():
            found.append((step, _base(p)))
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint in ``directory``, or ``None``."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: str | Path, keep: int = 2) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints (and older incomplete leftovers).

    Returns the removed checkpoint paths. The JSON goes first, so a crash mid-prune leaves at most
    an incomplete (ignored) checkpoint.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    directory = Path(directory)
    complete = list_checkpoints(directory)
    doomed = complete[:-keep]
    newest_step = checkpoint_step(complete[-1]) if complete else -1
    for p in directory.glob(f"{_PREFIX}*{TENSORS_SUFFIX}") if directory.is_dir() else []:
        base = _base(p)
        step = checkpoint_step(base)
        if (
            step is not None
            and step < newest_step
            and not _with(base, META_SUFFIX).exists()
            and base not in doomed
        ):
            doomed.append(base)  # an interrupted write older than the newest checkpoint
    for base in doomed:
        for suffix in (META_SUFFIX, TENSORS_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                _with(base, suffix).unlink()
    return doomed


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "atomic_write",
    "checkpoint_path",
    "checkpoint_step",
    "flatten_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_state",
    "prune_checkpoints",
    "read_checkpoint_meta",
    "save_checkpoint",
    "save_state",
    "unflatten_state",
]
