"""Hyper-policy: a recurrent hypernetwork generates the task's policy from the trial so far.

The source articles describe a *meta-model* that generates the parameters of the inner model.
For policies adaptrl implements it as the recurrent hypernetwork of Beck et al. (2023, "Recurrent
Hypernetworks are Surprisingly Strong in Meta-RL"; 2022, "Hypernetworks in Meta-Reinforcement
Learning" for the initialisation): RL²'s memory reads the trial (observation, previous action,
reward and done flag) and, at every step, a hypernetwork turns its state into every weight of a
small policy MLP over the current observation (and trial progress where fed). The task is
inferred by the memory and *expressed* as a network, so adaptation at meta-test is a forward pass
over the experience collected so far: no gradient step.

Bias-HyperInit (``hyper_init``, the default) makes the generated policy a standard, near-uniform
initialisation for every task at the start of meta-training; the naive initialisation is kept as
an option for the ablation. Everything else is RL²'s (``algos/rl2.py``): trials collected in one
batched environment, GAE across the trial's episodes, PPO or TRPO, the trial-agent evaluation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.core.config import Size
from adaptrl.nn.hyper import HyperInit, HyperRecurrentActorCritic


@dataclasses.dataclass(frozen=True)
class HyperPolicyConfig(RL2Config):
    """RL² whose policy is generated at every step by a hypernetwork over its memory."""

    base_hidden: tuple[Size, ...] = (32,)
    """Hidden layers of the generated policy MLP (state -> logits or mean)."""
    hyper_hidden: tuple[Size, ...] = ()
    """Hidden layers of the hypernetwork between the memory's features and the weight heads."""
    hyper_init: HyperInit = "bias-hyperinit"
    """Initialisation of the weight heads: Bias-HyperInit or the naive default (``nn/hyper.py``)."""
    fan_in_scale: bool = True
    """Scale the memory's features by 1/sqrt(hidden) before the weight heads, so that Adam moves
    the generated weights at a rate comparable to an ordinary network's (``nn/hyper.py``)."""


class HyperPolicy(RL2):
    """RL² with :class:`~adaptrl.nn.hyper.HyperRecurrentActorCritic` as its network."""

    name = "hyper-policy"
    config: HyperPolicyConfig

    def build_network(self, **kw: Any) -> HyperRecurrentActorCritic:
        cfg = self.config
        return HyperRecurrentActorCritic(
            self.family.observation_space,
            self.family.action_space,
            base_hidden=cfg.base_hidden,
            hyper_hidden=cfg.hyper_hidden,
            hyper_init=cfg.hyper_init,
            fan_in_scale=cfg.fan_in_scale,
            **kw,
        )


register_algo(
    AlgoSpec(
        name="hyper-policy",
        config_cls=HyperPolicyConfig,
        learner_cls=HyperPolicy,
        description="Hyper-policy: a recurrent hypernetwork generates each step's policy (PPO)",
        kind="rl",
    )
)
