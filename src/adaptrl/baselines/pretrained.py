"""The "pretrained on all tasks, then fine-tuned" baseline of MAML's sinusoid experiment
(Finn et al. 2017, §5.1 and Appendix C Table 2).

One network is trained by ordinary regression on points pooled from many meta-train tasks (it can
only learn the mean function over tasks, about zero for sinusoids); on a new task it is fine-tuned
with exactly the inner steps a meta-learner gets (SGD, same step size, same support set). It has
no meta-learning: the comparison shows what the learned initialisation buys.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from adaptrl.algos.gradient import (
    GradientConfig,
    GradientFewShotLearner,
    expand_tasks,
    task_losses,
)
from adaptrl.core.errors import ConfigError
from adaptrl.fewshot import FewShotBatch
from adaptrl.nn.backbones import forward_tasks


@dataclasses.dataclass(frozen=True)
class PretrainedConfig(GradientConfig):
    """Multi-task regression pretraining, then SGD fine-tuning with the meta-learners' step size.

    ``meta_batch`` tasks per training step (all their support and query points), Adam with
    ``outer_lr``; fine-tuning uses ``inner_lr`` (MAML's 0.01 by default)."""


class PretrainedFinetune(GradientFewShotLearner):
    """Pretrained on all tasks (plain regression), fine-tuned by SGD on each new task."""

    name = "pretrained"
    config: PretrainedConfig

    def __init__(self, config: PretrainedConfig, *, seed: int = 0, device="cpu"):
        super().__init__(config, seed=seed, device=device)
        if self.kind != "regression":
            raise ConfigError(
                "the pretrained baseline needs a regression family: few-shot class labels are "
                "remapped per task, so pooling tasks gives no common target to pretrain on"
            )

    def meta_loss(self, batch: FewShotBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The plain regression loss on every point of every task, with the shared weights."""
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        out = forward_tasks(self.model, expand_tasks(self.params(), len(batch)), x)
        return task_losses(self.kind, out, y).mean(), {}
