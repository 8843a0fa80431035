"""Device choice."""

from __future__ import annotations

import torch

from adaptrl.core.errors import DeviceError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; an unavailable device is a clear error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(
            f"unknown device {name!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
"""glibc's largest allowed M_MMAP_THRESHOLD on 64-bit systems (4 * 1024 * 1024 * sizeof(long))."""


def tune_cpu_allocator(trim_threshold: int = 1 << 30) -> bool:
    """Keep freed CPU tensor memory in the process instead of handing it back to the OS (glibc).

    By default glibc serves blocks above a (dynamic) threshold with ``mmap`` and returns them on
    ``free``, and it trims the heap once its free top exceeds a threshold; every new multi-MB
    tensor then starts with thousands of page faults. Rollout and second-order graphs allocate and
    free such tensors hundreds of times per iteration, so the page faults cost measurable time
    (MAML-RL's TRPO step is faster with this on; docs/results.md). Raising both thresholds keeps
    the pages mapped; peak memory is unchanged, but resident memory stays at the peak.
    Process-wide: the CLI calls it once at start-up (``ADAPTRL_MALLOC_TUNING=0`` turns it off);
    library users may call it themselves.
    Returns whether the settings were applied (False off glibc).
    """
    import ctypes
    import ctypes.util
    import os
    import sys

    if os.environ.get("ADAPTRL_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    return ok and mallopt(M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1)) == 1
