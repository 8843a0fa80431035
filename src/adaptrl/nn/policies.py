"""Feed-forward policies usable functionally (``torch.func.functional_call`` / ``vmap``).

:class:`MLPPolicy` maps observations to the *parameters* of an action distribution (logits for a
categorical head, mean and log-std for a Gaussian one); sampling, log-probabilities and KL come from
the pure functions of :mod:`adaptrl.nn.heads`. Gradient-based meta-learners keep the parameters
outside the module (a dict of tensors, possibly with a leading task dimension) and call
:func:`policy_dist` / :func:`batched_policy_dist`, so no module is ever patched in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import nn
from torch.func import functional_call, vmap

from adaptrl.core.errors import ConfigError
from adaptrl.nn.heads import DistSpec, make_head, spec_for
from adaptrl.nn.mlp import HIDDEN_GAIN, mlp

Params = dict[str, torch.Tensor]


class MLPPolicy(nn.Module):
    """MLP trunk (tanh or ReLU hidden layers) followed by an action-distribution head.

    ``forward(obs [..., obs_dim]) -> dist_params [..., P]``, where ``P`` is ``n`` logits for a
    ``Discrete(n)`` action space or ``2 * act_dim`` (mean, log-std) for a ``Box``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.Space,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_log_std: float = 0.0,
    ):
        super().__init__()
        if not hidden:
            raise ConfigError("the policy needs at least one hidden layer (hidden=(64, 64), ...)")
        if obs_dim < 1:
            raise ConfigError(f"obs_dim must be >= 1, got {obs_dim}")
        self.spec: DistSpec = spec_for(action_space)
        # mlp(...) ends with a linear layer; the trunk's last hidden layer gets its activation here.
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}.get(activation)
        if act is None:
            raise ConfigError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        self.trunk = nn.Sequential(
            mlp(obs_dim, list(hidden[:-1]), hidden[-1], activation, out_gain=HIDDEN_GAIN), act()
        )
        head_kw = {"init_log_std": init_log_std} if self.spec.kind == "gaussian" else {}
        self.head = make_head(action_space, hidden[-1], **head_kw)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(obs))

    def params(self) -> Params:
        """A detached copy of the parameters, the functional state meta-learners update."""
        return {k: v.detach().clone() for k, v in self.named_parameters()}


def unit_box_rescale(
    space: gym.Space, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, offset)`` that map a policy's actions from ``[-1, 1]^d`` onto a bounded ``Box``.

    ``env_action = offset + scale * action``, as rllab's ``normalize`` wrapper (used by the MAML
    paper's experiments) and Stable-Baselines3 do: a Gaussian policy then works in unit-scale
    coordinates whatever the box. Samples outside ``[-1, 1]`` map outside the box; the environment
    clips them like any action. ``None`` for discrete spaces and unbounded boxes.
    """
    if not isinstance(space, gym.spaces.Box) or not space.is_bounded("both"):
        return None
    low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
    high = torch.as_tensor(space.high, dtype=torch.float32, device=device)
    return (high - low) / 2, (high + low) / 2


def to_box(action: torch.Tensor, rescale: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The environment's action for a policy action: ``offset + scale * action`` with
    :func:`unit_box_rescale`'s ``(scale, offset)``, or the action itself when ``rescale`` is None."""
    return action if rescale is None else rescale[1] + rescale[0] * action


def policy_dist(policy: nn.Module, params: Params, obs: torch.Tensor) -> torch.Tensor:
    """Distribution parameters of ``policy`` with ``params`` (shared by every row of ``obs``)."""
    return functional_call(policy, params, (obs,))


def batched_policy_dist(
    policy: nn.Module, params: Params, obs: torch.Tensor, task_dim: int = 0
) -> torch.Tensor:
    """Per-task parameters ``params[k]: [G, ...]`` applied to ``obs`` whose dim ``task_dim`` is G.

    One batched forward for all G tasks (``vmap`` over ``functional_call``); the output keeps the
    task dimension at ``task_dim``.
    """
    return vmap(
        lambda p, o: functional_call(policy, p, (o,)), in_dims=(0, task_dim), out_dims=task_dim
    )(params, obs)


__all__ = [
    "MLPPolicy",
    "Params",
    "batched_policy_dist",
    "policy_dist",
    "to_box",
    "unit_box_rescale",
]
