"""The baselines of MPO's learning curves, as MPO configurations.

Each is an :class:`~adaptrl.algos.mpo.MPO` learner with a changed configuration, so it is scored on
the same held-out tasks with the same policy network, episodes per update, inner optimiser (Adam,
``inner_lr``), entropy weight and number of updates as the prior-regularised learner:

* ``scratch``: a randomly initialised policy trained on the new task, no prior (c_KL = 0);
* ``pretrained``: one policy trained on the episodes of every meta-train task (multi-task
  policy gradient, the same meta-iterations and episodes as MPO's meta-training), then
  fine-tuned on the new task without a prior.

Both use the one-column network whatever MPO's form.
"""

from __future__ import annotations

import dataclasses

from adaptrl.algos.mpo import MPOConfig
from adaptrl.baselines.base import ConfigVariant
from adaptrl.core.errors import ConfigError

MPOBaseline = ConfigVariant[MPOConfig]
"""A named variant of an MPO configuration, and whether it is meta-trained at all."""


def scratch_config(config: MPOConfig) -> MPOConfig:
    """Random initialisation, no meta-training, fine-tuned without a KL."""
    return dataclasses.replace(config, iterations=0, test_kl_weight=0.0, two_column=False)


def pretrained_config(config: MPOConfig) -> MPOConfig:
    """Multi-task training on the same budget, fine-tuned without a KL."""
    return dataclasses.replace(config, outer="multitask", test_kl_weight=0.0, two_column=False)


MPO_BASELINES: dict[str, MPOBaseline] = {
    b.name: b
    for b in (
        MPOBaseline("scratch", "random init, trained on the new task alone", scratch_config, False),
        MPOBaseline(
            "pretrained", "multi-task policy fine-tuned on the new task", pretrained_config
        ),
    )
}


def baseline_config(name: str, config: MPOConfig) -> MPOConfig:
    """The configuration of baseline ``name`` derived from MPO's ``config``."""
    if name not in MPO_BASELINES:
        raise ConfigError(f"unknown mpo baseline {name!r}; choose from {sorted(MPO_BASELINES)}")
    return MPO_BASELINES[name].derive(config)


__all__ = ["MPO_BASELINES", "MPOBaseline", "baseline_config", "pretrained_config", "scratch_config"]
