"""ANIL, "almost no inner loop" (Raghu, Raghu, Bengio & Vinyals 2020): a meta-learned shared trunk
with only the linear head adapted per task.

This is how adaptrl implements the source articles' *meta-knowledge transfer network*: the trunk
is the meta-knowledge layer shared by every task, the head is the task network. For each task
the trunk embeds the support and query sets once (with the meta-parameters: the trunk gets no
inner update), the head takes ``inner_steps`` SGD steps on the support features, and the query
loss of the adapted head is backpropagated into both the head's initialisation and the trunk
(second order through the head's steps; ``--first-order`` drops that term).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor
from torch.func import functional_call

from adaptrl.algos.gradient import (
    GradientConfig,
    GradientFewShotLearner,
    Params,
    functional_loss,
    map_tasks,
    prediction_metric,
    sgd_adapt,
    sgd_curve,
)
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.fewshot import FewShotBatch
from adaptrl.nn.backbones import sub_params


@dataclasses.dataclass(frozen=True)
class ANILConfig(GradientConfig):
    """ANIL (Raghu et al. 2020): meta-learned trunk, only the head adapted in the inner loop."""

    first_order: bool = False
    """Treat the head's inner gradients as constants (drops the second-order term)."""


class ANIL(GradientFewShotLearner):
    """Meta-knowledge layer (trunk, shared) + task network (head, adapted by SGD)."""

    name = "anil"
    config: ANILConfig

    def __init__(self, config: ANILConfig, *, seed: int = 0, device="cpu"):
        super().__init__(config, seed=seed, device=device)
        self.head_loss = functional_loss(self.model.head, self.kind)

    def features(self, params: Params, x: Tensor) -> Tensor:
        """The trunk's embedding of one task's inputs with the (shared) meta-parameters."""
        return functional_call(self.model.trunk, sub_params(params, "trunk"), (x,))

    def head_metric(self, head: Params, feats: Tensor, y: Tensor) -> Tensor:
        return prediction_metric(self.kind, functional_call(self.model.head, head, (feats,)), y)

    def task_query_loss(self, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor):
        """One task: embed both sets, adapt the head on the support features, query loss."""
        head = sgd_adapt(
            self.head_loss,
            sub_params(params, "head"),
            self.features(params, xs),
            ys,
            steps=self.inner_steps,
            lr=self.inner_lr,
            first_order=self.config.first_order,
        )
        return self.head_loss(head, self.features(params, xq), yq)

    def meta_loss(self, batch: FewShotBatch) -> tuple[Tensor, dict[str, Tensor]]:
        losses = map_tasks(
            self.task_query_loss,
            (self.params(),),
            (batch.support_x, batch.support_y, batch.query_x, batch.query_y),
            self.config.strategy,
        )
        return losses.mean(), {}

    def task_curve(self, params, xs, ys, xq, yq, steps):
        support = (self.features(params, xs), ys)
        query = (self.features(params, xq), yq)
        head = sub_params(params, "head")
        return sgd_curve(
            self.head_loss, self.head_metric, head, support, query, steps=steps, lr=self.inner_lr
        )

    def task_adapt(self, params, xs, ys, steps):
        head = sgd_adapt(
            self.head_loss,
            sub_params(params, "head"),
            self.features(params, xs),
            ys,
            steps=steps,
            lr=self.inner_lr,
        )
        trunk = {k: v for k, v in params.items() if k.startswith("trunk.")}
        return {**trunk, **{f"head.{k}": v for k, v in head.items()}}


register_algo(
    AlgoSpec(
        name="anil",
        config_cls=ANILConfig,
        learner_cls=ANIL,
        description="ANIL: meta-learned shared trunk (meta-knowledge layer), only the head adapted",
        kind="fewshot",
    )
)
