"""Policy-gradient baselines for MAML-RL's adaptation curves, all from the MAML-RL machinery.

Each baseline is a :class:`~adaptrl.algos.maml_rl.MAMLRL` learner with a changed configuration, so it
is evaluated with exactly the same rollouts, inner VPG steps, learning rates and held-out tasks:

* ``scratch``: a randomly initialised policy (no meta-training) adapted with the same inner steps:
  what the gradient steps achieve on their own.
* ``pretrained``: multi-task transfer learning. One policy trained with the same outer optimiser on
  rollouts of all meta-train tasks without any inner adaptation (``inner_steps=0``), then fine-tuned
  with the same inner steps at test time.
* ``oracle``: a policy that sees the task (its parameters appended to the observation,
  ``observe_task=True``), trained like ``pretrained``: the upper bound of a learned policy.

Beside them, ``mktn`` is a rival meta-learner rather than a baseline: MAML-RL with only the
policy's head adapted in the inner loop (ANIL for RL, ``algos/mktn.py``), trained on the same
configuration, the same random streams and seeds, as the ANIL paper compares it with MAML.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.mktn import MKTN, MKTNConfig
from adaptrl.baselines.base import ConfigVariant
from adaptrl.core.errors import ConfigError

GradientBaseline = ConfigVariant[MAMLRLConfig]
"""A named variant of a MAML-RL configuration, and whether it is meta-trained at all."""


def scratch_config(config: MAMLRLConfig) -> MAMLRLConfig:
    """Same policy and inner steps, no meta-training (random initialisation)."""
    return dataclasses.replace(config, iterations=0)


def _without_inner_steps(config: MAMLRLConfig, **changes: object) -> MAMLRLConfig:
    """No inner steps in training; the test-time step sizes stay those MAML is tested with."""
    schedule = config.eval_inner_lrs or config.inner_lrs or (config.inner_lr,)
    return dataclasses.replace(
        config,
        inner_steps=0,
        inner_lrs=(),
        step_loss_weights=(),
        single_step_iterations=0,
        eval_inner_lrs=tuple(schedule),
        **changes,  # type: ignore[arg-type]
    )


def pretrained_config(config: MAMLRLConfig) -> MAMLRLConfig:
    """Multi-task training with the same outer optimiser and no inner adaptation."""
    return _without_inner_steps(config)


def oracle_config(config: MAMLRLConfig) -> MAMLRLConfig:
    """Multi-task training of a policy that observes the task parameters."""
    return _without_inner_steps(config, observe_task=True)


def mktn_config(config: MAMLRLConfig) -> MKTNConfig:
    """The same configuration with only the policy's head adapted in the inner loop."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(MAMLRLConfig)}
    return MKTNConfig(**fields)


def variant_learner(
    config: MAMLRLConfig, *, seed: int = 0, device: str | torch.device = "cpu"
) -> MAMLRL:
    """The learner a variant's configuration describes (MKTN for an MKTN config)."""
    cls = MKTN if isinstance(config, MKTNConfig) else MAMLRL
    return cls(config, seed=seed, device=device)  # type: ignore[arg-type]


GRADIENT_BASELINES: dict[str, GradientBaseline] = {
    b.name: b
    for b in (
        GradientBaseline(
            "scratch", "random init + the same inner steps", scratch_config, trained=False
        ),
        GradientBaseline(
            "pretrained", "multi-task pretrained, fine-tuned with the same steps", pretrained_config
        ),
        GradientBaseline("oracle", "multi-task policy that sees the task", oracle_config),
        GradientBaseline(
            "mktn", "the same meta-training, only the head adapted (ANIL)", mktn_config
        ),
    )
}


def make_baseline_learner(
    name: str, config: MAMLRLConfig, *, seed: int = 0, device: str | torch.device = "cpu"
) -> MAMLRL:
    """An untrained learner of baseline ``name`` derived from the MAML-RL ``config``."""
    if name not in GRADIENT_BASELINES:
        raise ConfigError(
            f"unknown gradient baseline {name!r}; choose from {sorted(GRADIENT_BASELINES)}"
        )
    return variant_learner(GRADIENT_BASELINES[name].derive(config), seed=seed, device=device)


def describe() -> dict[str, Any]:
    return {k: v.description for k, v in GRADIENT_BASELINES.items()}


__all__ = [
    "GRADIENT_BASELINES",
    "GradientBaseline",
    "make_baseline_learner",
    "mktn_config",
    "oracle_config",
    "pretrained_config",
    "scratch_config",
    "variant_learner",
]
