"""Hypernetworks: a task embedding generates every weight of a small MLP (Ha, Dai & Le 2017).

In meta-RL the embedding summarises a task's experience and the generated network is the task's
Q-function or policy (Beck et al. 2022, "Hypernetworks in Meta-Reinforcement Learning"; 2023,
"Recurrent Hypernetworks are Surprisingly Strong in Meta-RL"). Adaptation is then a forward pass.

:class:`HyperMLP` maps ``e [..., embed]`` through an optional MLP trunk to one linear head per
generated tensor: the weight ``[..., out, in]`` and bias ``[..., out]`` of each layer of the target
MLP. Its initialisation decides whether it trains at all (Beck et al. 2022):

* ``"bias-hyperinit"``: the heads' weights are zero and their biases hold a standard
  initialisation of the target layer (orthogonal, gain sqrt(2) for hidden layers, ``out_gain``
  for the last; zero target biases). At initialisation every task gets the same, normally
  initialised network, and the embedding's influence grows from zero as the heads learn;
* ``"naive"``: PyTorch's default initialisation of the heads, so the generated weights' scale
  depends on the embedding and the heads' fan-in, which the papers report fails to train.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from adaptrl.core.errors import ConfigError
from adaptrl.nn.mlp import ACTIVATIONS, HIDDEN_GAIN, init_linear, mlp

HyperInit = Literal["bias-hyperinit", "naive"]


class HyperMLP(nn.Module):
    """Generates the MLP ``in_dim -> hidden... -> out_dim`` of each task from its embedding, and
    applies it: ``forward(e [..., embed], x [..., N, in_dim]) -> [..., N, out_dim]``."""

    def __init__(
        self,
        embed_dim: int,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        *,
        hyper_hidden: Sequence[int] = (),
        activation: str = "relu",
        out_gain: float = 1.0,
        init: HyperInit = "bias-hyperinit",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if init not in ("bias-hyperinit", "naive"):
            raise ConfigError(f"init must be 'bias-hyperinit' or 'naive', got {init!r}")
        dims = [int(in_dim), *map(int, hidden), int(out_dim)]
        if min([*dims, int(embed_dim), *map(int, hyper_hidden)]) < 1:
            raise ConfigError(
                f"sizes must be >= 1, got embed={embed_dim} in={in_dim} hidden={list(hidden)} "
                f"out={out_dim} hyper_hidden={list(hyper_hidden)}"
            )
        self.shapes = [(b, a) for a, b in itertools.pairwise(dims)]  # (out, in) per layer
        self.act = ACTIVATIONS[activation]()
        if hyper_hidden:
            self.trunk: nn.Module = mlp(
                embed_dim, list(hyper_hidden[:-1]), hyper_hidden[-1], activation, HIDDEN_GAIN
            )
            self.trunk.append(ACTIVATIONS[activation]())
            features = int(hyper_hidden[-1])
        else:
            self.trunk = nn.Identity()
            features = int(embed_dim)
        self.weight_heads = nn.ModuleList(nn.Linear(features, o * i) for o, i in self.shapes)
        self.bias_heads = nn.ModuleList(nn.Linear(features, o) for o, _ in self.shapes)
        if init == "bias-hyperinit":
            last = len(self.shapes) - 1
            for k, ((o, i), w_head, b_head) in enumerate(
                zip(self.shapes, self.weight_heads, self.bias_heads, strict=True)
            ):
                target = init_linear(nn.Linear(i, o), out_gain if k == last else HIDDEN_GAIN)
                with torch.no_grad():
                    w_head.weight.zero_()
                    w_head.bias.copy_(target.weight.reshape(-1))
                    b_head.weight.zero_()
                    b_head.bias.copy_(target.bias)

    def generate(self, embedding: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The generated ``(weight [..., out, in], bias [..., out])`` of each layer."""
        f = self.trunk(embedding)
        lead = embedding.shape[:-1]
        return [
            (w(f).reshape(*lead, o, i), b(f))
            for (o, i), w, b in zip(self.shapes, self.weight_heads, self.bias_heads, strict=True)
        ]

    def forward(self, embedding: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return apply_generated(self.generate(embedding), x, self.act)


def apply_generated(
    layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor, act: nn.Module
) -> torch.Tensor:
    """The MLP of generated ``layers`` on ``x [..., N, in]`` (one network per leading index)."""
    h = x
    for k, (w, b) in enumerate(layers):
        h = h @ w.transpose(-1, -2) + b.unsqueeze(-2)
        if k < len(layers) - 1:
            h = act(h)
    return h


__all__ = ["HyperInit", "HyperMLP", "apply_generated"]
