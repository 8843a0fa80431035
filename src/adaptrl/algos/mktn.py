"""Meta-knowledge transfer network (MKTN): ANIL for reinforcement learning (Raghu et al. 2020).

The source articles describe a *meta-knowledge layer* that learns what tasks share and an *inner
network* that learns the task, adapting at meta-test under the meta-knowledge layer's guidance.
adaptrl implements it as ANIL ("almost no inner loop") applied to MAML-RL: the policy's trunk (its
hidden layers) is the meta-knowledge layer, meta-learned by the outer loop and never updated in the
inner loop; the head (the output layer, and a Gaussian policy's log-std) is the task network, the
only part the inner policy-gradient steps adapt. The outer update (TRPO or PPO) still trains both,
through the adapted head (second order unless ``first_order``).

Everything else is MAML-RL's (``algos/maml_rl.py``): this file only says which parameters adapt.
With ``inner_layers=None`` every layer adapts and the learner is MAML-RL, bit for bit: both draw
from the same random streams (initial policy, meta-batches, environments), so a ``mktn`` run and a
``maml-rl`` run with the same seed differ only in their inner loop.
"""

from __future__ import annotations

import dataclasses

from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Size
from adaptrl.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class MKTNConfig(MAMLRLConfig):
    """MAML-RL whose inner loop adapts only the last layers of the policy (ANIL for RL)."""

    inner_layers: Size | None = 1
    """Layers the inner loop adapts, counted from the output: 1 is the head alone (the output
    layer and a Gaussian policy's log-std, as ANIL), 2 adds the last hidden layer, ...; None adapts
    every layer (MAML-RL)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        layers = len(self.hidden) + 1
        if self.inner_layers is not None and self.inner_layers > layers:
            raise ConfigError(
                f"inner_layers={self.inner_layers} but the policy has {layers} layers "
                f"({len(self.hidden)} hidden and the head); use None to adapt all of them"
            )


def policy_layers(names: list[str]) -> list[list[str]]:
    """Parameter names grouped by layer, input to output: each hidden linear layer, then the head
    (every ``head.*`` parameter, e.g. a Gaussian's mean map and log-std)."""
    layers: dict[str, list[str]] = {}
    for name in names:
        layer = "head" if name.startswith("head.") else name.rsplit(".", 1)[0]
        layers.setdefault(layer, []).append(name)
    if "head" in layers:  # last, whatever the order of registration
        layers["head"] = layers.pop("head")
    return list(layers.values())


class MKTN(MAMLRL):
    """MAML-RL with a meta-knowledge trunk frozen in the inner loop and an adapted head."""

    name = "mktn"
    config: MKTNConfig

    def __init__(self, config: MKTNConfig, *, seed: int = 0, device="cpu"):
        super().__init__(config, seed=seed, device=device)
        layers = policy_layers(list(self.params))
        keep = len(layers) if config.inner_layers is None else config.inner_layers
        self.inner_names = [n for layer in layers[len(layers) - keep :] for n in layer]

    def adapted(self) -> list[str]:
        """The head's parameters (the last ``inner_layers`` layers')."""
        return self.inner_names


register_algo(
    AlgoSpec(
        name="mktn",
        config_cls=MKTNConfig,
        learner_cls=MKTN,
        description="meta-knowledge transfer: MAML-RL adapting only the policy head (ANIL for RL)",
        kind="rl",
    )
)
