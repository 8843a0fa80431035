"""Meta-DQN: a hypernetwork maps a task's experience to the weights of its Q-network.

The source articles describe a *meta-model* that generates the parameters of the inner model, and
a meta-learner that maps a new task's few experiences to the parameters of a DQN. adaptrl
implements it as a hypernetwork over a context encoder (Beck et al. 2022, "Hypernetworks in
Meta-Reinforcement Learning"; 2023, "Recurrent Hypernetworks are Surprisingly Strong"): the
permutation-invariant set encoder (PEARL's product of Gaussians, its mean and variance; or the GRU)
reads the transitions of the trial so far, and :class:`~adaptrl.nn.hyper.HyperMLP` turns that
embedding into every weight of a small Q-network over (observation, trial progress). Adaptation at
meta-test is that forward pass: no gradient step.

Everything else is meta-q's (``algos/meta_q.py``): the replay of whole trials, double-DQN targets
on the trial's return (bootstrapping across episode boundaries), epsilon-greedy collection and
the trial-agent evaluation. TD gradients flow through the generated weights into the
hypernetwork and the encoder. Discrete actions only (a DQN).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import gymnasium as gym
import torch

from adaptrl.algos.meta_q import ContextQNetwork, MetaQ, MetaQConfig
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Size
from adaptrl.core.errors import ConfigError
from adaptrl.nn.hyper import HyperInit, HyperMLP


@dataclasses.dataclass(frozen=True)
class MetaDQNConfig(MetaQConfig):
    """A hypernetwork generates each task's Q-network from the context of its trial so far."""

    encoder: Literal["gru", "set"] = "set"
    """Context encoder: PEARL's order-invariant product of Gaussians (its mean and variance), or
    the GRU of Meta-Q-Learning."""
    hyper_hidden: tuple[Size, ...] = (128,)
    """Hidden layers of the hypernetwork's trunk, from the context to the weight heads."""
    hyper_init: HyperInit = "bias-hyperinit"
    """Initialisation of the weight heads: Bias-HyperInit (every task starts from the same,
    normally initialised Q-network) or the naive default (see ``nn/hyper.py``)."""
    fan_in_scale: bool = False
    """Scale the context by 1/sqrt(context_size) before the weight heads (``nn/hyper.py``; on by
    default for hyper-policy, where it was measured)."""


class HyperQNetwork(ContextQNetwork):
    """meta-q's encoder, with the Q-network generated from the context instead of reading it."""

    def q_network(self, cfg: MetaDQNConfig) -> HyperMLP:  # type: ignore[override]
        return HyperMLP(
            cfg.context_size,
            self.inputs,
            cfg.hidden,
            self.spec.dim,
            hyper_hidden=cfg.hyper_hidden,
            init=cfg.hyper_init,
            fan_in_scale=cfg.fan_in_scale,
        )

    def q_values(self, state: torch.Tensor, action: torch.Tensor | None = None) -> Any:
        """``[..., actions]``: each row's own generated network on its observation and progress
        (``state`` is ``net.state``'s concatenation, the context last)."""
        x, context = state[..., : self.inputs], state[..., self.inputs :]
        return self.q(context, x.unsqueeze(-2)).squeeze(-2)


class MetaDQN(MetaQ):
    """meta-q whose Q-network is generated per task by a hypernetwork over the context."""

    name = "meta-dqn"
    config: MetaDQNConfig

    def check_config(self) -> None:
        if not isinstance(self.family.action_space, gym.spaces.Discrete):
            raise ConfigError(
                f"meta-dqn needs discrete actions; {self.family.family_id} has "
                f"{self.family.action_space}: use meta-q (TD3) or pearl for continuous ones"
            )
        if self.config.adaptation != "none":
            raise ConfigError(
                "meta-dqn adapts by a forward pass over the context; --adaptation propensity "
                "is meta-q's"
            )
        super().check_config()

    def build_network(self) -> HyperQNetwork:
        return HyperQNetwork(self.family.observation_space, self.family.action_space, self.config)

    def trial_agents(self) -> dict[str, Any]:
        """Scored one way: the generated Q-network of the context so far, greedy."""
        return {"meta-dqn": lambda: self.trial_agent("none")}

    def extra_state(self) -> dict[str, Any]:
        return {}  # no propensity bank: adaptation is the forward pass


register_algo(
    AlgoSpec(
        name="meta-dqn",
        config_cls=MetaDQNConfig,
        learner_cls=MetaDQN,
        description="Meta-DQN: a hypernetwork generates each task's Q-network from its context",
        kind="rl",
    )
)
