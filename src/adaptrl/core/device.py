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
