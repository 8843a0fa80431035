"""Multi-layer perceptrons with orthogonal initialisation (the backbone of policies and critics)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import nn

from adaptrl.core.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
HIDDEN_GAIN = math.sqrt(2.0)
"""Orthogonal gain of hidden layers (the usual PPO/TRPO choice of CleanRL and Stable-Baselines3)."""


def init_linear(layer: nn.Linear, gain: float) -> nn.Linear:
    """Orthogonal weights scaled by ``gain`` and zero biases; returns the layer."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    activation: str = "tanh",
    out_gain: float = 1.0,
) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear(out_dim)``: hidden layers get gain sqrt(2), the last ``out_gain``.

    Small ``out_gain`` (0.01 for policy logits) starts the policy near uniform; 1.0 suits critics.
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    dims = [int(in_dim), *map(int, hidden)]
    if min([*dims, int(out_dim)]) < 1:
        raise ConfigError(
            f"layer sizes must be >= 1, got in={in_dim} hidden={list(hidden)} out={out_dim}"
        )
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [init_linear(nn.Linear(a, b), HIDDEN_GAIN), ACTIVATIONS[activation]()]
    layers.append(init_linear(nn.Linear(dims[-1], int(out_dim)), out_gain))
    return nn.Sequential(*layers)
