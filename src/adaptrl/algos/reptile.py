"""Reptile (Nichol, Achiam & Schulman 2018): move the initialisation toward task-adapted weights.

For each task, plain SGD for ``inner_steps`` steps on all of the task's training data (support
and query sets together) gives φ_t; the outer update is θ ← θ + ε (φ_t − θ). The serial version
(the paper's Algorithm 1) applies it task after task; the batched version (Algorithm 2) adapts
the whole meta-batch at once (vmapped) and moves θ toward the mean of the φ_t. No second-order
terms and no backpropagation through the inner loop: the outer step is an interpolation. The
outer step size ε is annealed linearly to 0 over ``iterations`` (as in the paper).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from adaptrl.algos.gradient import (
    GradientConfig,
    GradientFewShotLearner,
    Params,
    family_default,
    map_tasks,
    sgd_adapt,
)
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core import distributed
from adaptrl.core.config import Positive
from adaptrl.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ReptileConfig(GradientConfig):
    """Reptile (Nichol et al. 2018), serial or batched."""

    outer_lr: Positive | None = None  # type: ignore[assignment]
    """Outer step size ε at the start, annealed linearly to 0 (default 0.1 regression, 1.0
    classification)."""
    serial: bool = False
    """Update θ after every task (Algorithm 1) instead of once per meta-batch (Algorithm 2)."""


class Reptile(GradientFewShotLearner):
    """Reptile: first-order meta-learning of an initialisation by interpolation."""

    name = "reptile"
    config: ReptileConfig

    def __init__(self, config: ReptileConfig, *, seed: int = 0, device="cpu"):
        super().__init__(config, seed=seed, device=device)
        ways = getattr(self.family.config, "ways", 0)
        self.inner_steps = config.inner_steps or family_default(self.kind, ways, 5, 5, 5)
        self.inner_lr = config.inner_lr or family_default(self.kind, ways, 0.02, 0.1, 0.1)
        self.epsilon = config.outer_lr or family_default(self.kind, ways, 0.1, 1.0, 1.0)
        if config.serial and self.world.size > 1:
            raise ConfigError("serial Reptile updates after every task: run it in one process")

    def make_optimizer(self) -> None:
        return None

    def task_weights(self, params: Params, x: Tensor, y: Tensor) -> Params:
        """φ_t: ``inner_steps`` SGD steps on one task's data from θ."""
        return sgd_adapt(self.loss, params, x, y, steps=self.inner_steps, lr=self.inner_lr)

    @torch.no_grad()
    def meta_train_step(self) -> dict[str, float | Tensor]:
        batch = self.sample_meta_batch()
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        epsilon = self.epsilon * (1 - self.iteration / self.config.iterations)
        theta = {k: p.detach() for k, p in self.model.named_parameters()}
        if self.config.serial:
            for t in range(len(batch)):
                phi = self.task_weights(theta, x[t], y[t])
                theta = {k: v + epsilon * (phi[k] - v) for k, v in theta.items()}
        else:  # theta moves toward the mean of the tasks' phi, summed over the chunks of tasks

            def chunk_step(c: int) -> Tensor:
                lo, hi = self.chunks[c]
                phi = map_tasks(
                    self.task_weights, (theta,), (x[lo:hi], y[lo:hi]), self.config.strategy
                )
                share = (hi - lo) / len(batch)
                return torch.cat(
                    [((phi[k].mean(0) - v) * share).reshape(-1) for k, v in theta.items()]
                )

            step = distributed.chunk_sum(self.world, len(self.chunks), chunk_step)
            moves = step.split([v.numel() for v in theta.values()])
            theta = {
                k: v + epsilon * d.view_as(v)
                for (k, v), d in zip(theta.items(), moves, strict=True)
            }
        moved = torch.stack(
            [(theta[k] - p).square().sum() for k, p in self.model.named_parameters()]
        ).sum()
        for k, p in self.model.named_parameters():
            p.copy_(theta[k])
        self.iteration += 1
        return {"epsilon": epsilon, "step_norm": moved.sqrt()}


register_algo(
    AlgoSpec(
        name="reptile",
        config_cls=ReptileConfig,
        learner_cls=Reptile,
        description="Reptile: first-order meta-learning by interpolation (batched or --serial)",
        kind="fewshot",
    )
)
