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

``fan_in_scale`` multiplies the heads' input features by ``1/sqrt(width)``. With Adam every head
weight moves by about the learning rate per step whatever its gradient's scale, so a generated
weight ``A f + b`` moves by up to ``lr * sum|f|`` through ``A``: ``width`` times faster than an
ordinary parameter. The scale takes ``sqrt(width)`` of that back; without it RL²'s learning rate
made the generated policy collapse on the VariBAD gridworld (docs/results.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import torch
from torch import nn

from adaptrl.core.errors import ConfigError
from adaptrl.nn import heads
from adaptrl.nn.mlp import ACTIVATIONS, HIDDEN_GAIN, init_linear, mlp
from adaptrl.nn.recurrent import RecurrentActorCritic

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
        fan_in_scale: bool = False,
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
        self.input_scale = features**-0.5 if fan_in_scale else 1.0
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
        f = self.trunk(embedding) * self.input_scale
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


class HyperPolicyHead(nn.Module):
    """A policy head whose network is generated per row: ``forward(embedding [..., E],
    state [..., S]) -> dist params [..., P]`` (``nn.heads`` layout).

    The generated MLP maps the state to the logits (categorical) or the mean (Gaussian, whose
    log-std is a free parameter as in ``heads.GaussianHead``); its last layer starts at gain 0.01,
    so with Bias-HyperInit every task's policy starts near uniform / near zero mean.
    """

    def __init__(
        self,
        action_space: gym.Space,
        embed_dim: int,
        state_dim: int,
        hidden: Sequence[int],
        *,
        hyper_hidden: Sequence[int] = (),
        init: HyperInit = "bias-hyperinit",
        fan_in_scale: bool = True,
        init_log_std: float = 0.0,
    ):
        super().__init__()
        self.spec = heads.spec_for(action_space)
        self.net = HyperMLP(
            embed_dim,
            state_dim,
            hidden,
            self.spec.dim,
            hyper_hidden=hyper_hidden,
            out_gain=0.01,
            init=init,
            fan_in_scale=fan_in_scale,
        )
        self.log_std = (
            nn.Parameter(torch.full((self.spec.dim,), float(init_log_std)))
            if self.spec.kind == "gaussian"
            else None
        )

    def forward(self, embedding: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        out = self.net(embedding, state.unsqueeze(-2)).squeeze(-2)
        if self.log_std is None:
            return out
        return torch.cat([out, self.log_std.expand_as(out)], dim=-1)


class HyperRecurrentActorCritic(RecurrentActorCritic):
    """RL²'s recurrent actor-critic whose policy is a small MLP over the current state, generated
    at every step from the memory's features by a hypernetwork (Beck et al. 2023, "Recurrent
    hypernetworks are surprisingly strong in meta-RL"). The value head stays linear on the
    features; everything else (inputs, memory, critic options) is :class:`RecurrentActorCritic`'s.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        base_hidden: Sequence[int] = (32,),
        hyper_hidden: Sequence[int] = (),
        hyper_init: HyperInit = "bias-hyperinit",
        fan_in_scale: bool = True,
        **kw: Any,
    ):
        # read by make_policy_head, which the base constructor calls
        self.hyper_options = (tuple(base_hidden), tuple(hyper_hidden), hyper_init, fan_in_scale)
        super().__init__(observation_space, action_space, **kw)

    def make_policy_head(self, hidden: int, head_kw: dict[str, Any]) -> nn.Module:
        base_hidden, hyper_hidden, init, fan_in_scale = self.hyper_options
        return HyperPolicyHead(
            self.action_space,
            hidden,
            self.state_dim,
            base_hidden,
            hyper_hidden=hyper_hidden,
            init=init,
            fan_in_scale=fan_in_scale,
            **head_kw,
        )

    def policy(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.policy_head(features, self.state_input(x))


__all__ = [
    "HyperInit",
    "HyperMLP",
    "HyperPolicyHead",
    "HyperRecurrentActorCritic",
    "apply_generated",
]
