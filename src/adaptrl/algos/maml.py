"""MAML for supervised few-shot learning (Finn, Abbeel & Levine 2017), second order by default,
first order with ``--first-order``.

The outer loop learns an initialisation θ. For each task of a meta-batch the inner loop takes
``inner_steps`` SGD steps on the support set, θ'_t = θ - α ∇L_support(θ) (repeated), and the
outer loss is the mean query loss at θ'_t. Backpropagating through the inner steps gives the
second-order meta-gradient (∏ (I - α H) ∇L_query); first-order MAML treats the inner gradients as
constants, which drops the Hessian terms. Tasks run in one ``vmap``-ed graph (or a loop).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from adaptrl.algos.gradient import GradientConfig, GradientFewShotLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.fewshot import FewShotBatch


@dataclasses.dataclass(frozen=True)
class MAMLConfig(GradientConfig):
    """MAML (Finn et al. 2017) for few-shot regression and classification."""

    first_order: bool = False
    """Drop the second-order term (first-order MAML): inner gradients are treated as constants."""


class MAML(GradientFewShotLearner):
    """Model-Agnostic Meta-Learning: a meta-learned initialisation adapted by SGD."""

    name = "maml"
    config: MAMLConfig

    def meta_loss(self, batch: FewShotBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean over tasks of the query loss after the inner SGD steps on the support set."""
        losses = self.query_losses(batch, lr=self.inner_lr, first_order=self.config.first_order)
        return losses.mean(), {}


register_algo(
    AlgoSpec(
        name="maml",
        config_cls=MAMLConfig,
        learner_cls=MAML,
        description="MAML for few-shot regression/classification (second order; --first-order)",
        kind="fewshot",
    )
)
