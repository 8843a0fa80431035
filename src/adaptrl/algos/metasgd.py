"""Meta-SGD (Li, Zhou, Chen & Li 2017): MAML with a learned step size for every parameter entry.

The inner step is θ'_t = θ - α ∘ ∇L_support(θ) with α a tensor shaped like θ (element-wise
product), initialised to ``inner_lr`` and meta-learned with θ by backpropagating the query loss
through the inner steps (always second order: α only gets a gradient through the update).
With α frozen at a constant it is exactly MAML.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from adaptrl.algos.gradient import GradientConfig, GradientFewShotLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.fewshot import FewShotBatch


@dataclasses.dataclass(frozen=True)
class MetaSGDConfig(GradientConfig):
    """Meta-SGD (Li et al. 2017): MAML plus learned per-parameter inner step sizes.

    Unless ``eval_steps`` is given, evaluation takes as many steps as meta-training did
    (``inner_steps``), as the paper does: the step sizes are learned for exactly those steps, and
    repeating them can overshoot (docs/results.md, glyphs)."""

    learn_lr: bool = True
    """Meta-learn the step sizes (False freezes them at inner_lr: plain MAML)."""


def _key(name: str) -> str:
    """ParameterDict keys may not contain dots."""
    return name.replace(".", "__")


class MetaSGD(GradientFewShotLearner):
    """Meta-SGD: a meta-learned initialisation and per-entry inner step sizes."""

    name = "metasgd"
    config: MetaSGDConfig

    def __init__(self, config: MetaSGDConfig, *, seed: int = 0, device: str | torch.device = "cpu"):
        self.step_sizes: nn.ParameterDict | None = None
        super().__init__(config, seed=seed, device=device)
        if config.eval_steps is None:
            self.default_eval_steps = self.inner_steps

    def meta_parameters(self) -> list[nn.Parameter]:
        self.step_sizes = nn.ParameterDict(
            {
                _key(k): nn.Parameter(
                    torch.full_like(p, self.inner_lr), requires_grad=self.config.learn_lr
                )
                for k, p in self.model.named_parameters()
            }
        )
        learned = list(self.step_sizes.values()) if self.config.learn_lr else []
        return list(self.model.parameters()) + learned

    def lrs(self) -> dict[str, Tensor]:
        """The step size of every parameter entry, by parameter name."""
        assert self.step_sizes is not None
        return {k: self.step_sizes[_key(k)] for k, _ in self.model.named_parameters()}

    def meta_loss(self, batch: FewShotBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """MAML's objective with the learned step sizes (they get gradients through the steps)."""
        losses = self.query_losses(batch, lr=self.lrs())
        mean_lr = torch.cat([a.detach().flatten() for a in self.lrs().values()]).mean()
        return losses.mean(), {"mean_step_size": mean_lr}

    def adaptation_lr(self) -> dict[str, Tensor]:
        """Evaluation adapts with the learned step sizes (as constants)."""
        return {k: v.detach() for k, v in self.lrs().items()}

    def extra_state(self) -> dict[str, Any]:
        assert self.step_sizes is not None
        return {"step_sizes": self.step_sizes.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        assert self.step_sizes is not None
        self.step_sizes.load_state_dict(state["step_sizes"])


register_algo(
    AlgoSpec(
        name="metasgd",
        config_cls=MetaSGDConfig,
        learner_cls=MetaSGD,
        description="Meta-SGD: MAML with meta-learned per-parameter inner step sizes",
        kind="fewshot",
    )
)
