"""Prototypical Networks (Snell, Swersky, Zemel 2017): metric-based few-shot classification.

An embedding network maps every image to a vector. A class's *prototype* is the mean embedding of
its support examples; a query is classified by a softmax over minus its squared Euclidean distance
to each prototype. Adaptation to a new task is reading its support set (no gradient steps), so the
only learned thing is the embedding, trained end to end on episodes drawn from meta-train classes.

The paper trains Omniglot with more ways than it tests (60-way episodes for 5- and 20-way tests);
``train_ways`` does that here.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
import tyro

from adaptrl.algos.episodic import (
    SupportSetClassifier,
    embed_episodes,
    embedding_net,
)
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Config, Ge, Positive, Size
from adaptrl.fewshot import FewShotBatch, FewShotConfigUnion
from adaptrl.fewshot.glyphs import GlyphsConfig


# --- kernels ---------------------------------------------------------------------------------
def class_prototypes(embeddings: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    """Mean embedding per class: ``[T, S, D]`` embeddings, ``[T, S]`` labels in ``0..ways-1`` ->
    ``[T, ways, D]``. Works for uneven shots (each class is averaged over its own count)."""
    onehot = F.one_hot(labels, ways).to(embeddings.dtype)  # [T, S, N]
    sums = onehot.transpose(1, 2) @ embeddings  # [T, N, D]
    counts = onehot.sum(1).unsqueeze(-1)  # [T, N, 1]
    return sums / counts


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``[T, Q, N]`` between rows of ``x [T, Q, D]`` and ``y [T, N, D]``.

    Computed as a difference, not as ``|x|² - 2x·y + |y|²``: exact (no cancellation) at a cost
    that is negligible next to the embedding network.
    """
    return (x.unsqueeze(2) - y.unsqueeze(1)).pow(2).sum(-1)


def prototype_logits(
    query_emb: torch.Tensor, support_emb: torch.Tensor, support_y: torch.Tensor, ways: int
) -> torch.Tensor:
    """ProtoNets' logits ``[T, Q, ways]``: minus the squared distance to each class prototype."""
    return -squared_distances(query_emb, class_prototypes(support_emb, support_y, ways))


def episode_logits(net: torch.nn.Module, batch: FewShotBatch) -> torch.Tensor:
    """Logits ``[T, Q, ways]`` of the batch's queries given its support sets."""
    query, support = embed_episodes(net, batch)
    return prototype_logits(query, support, batch.support_y, batch.ways)


# --- learner ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProtoNetConfig(Config):
    """Prototypical Networks on a few-shot classification family."""

    family: Annotated[FewShotConfigUnion, tyro.conf.arg(name="")] = GlyphsConfig()
    """Few-shot classification family; its ways / shots / queries are the test episode shape."""
    iterations: Size = 2000
    """Outer iterations (each one Adam step on ``tasks_per_batch`` episodes)."""
    tasks_per_batch: Size = 1
    """Episodes per outer step (the paper: 1)."""
    train_ways: Annotated[int, Ge(2)] | None = None
    """Ways of the training episodes (the paper used 60 on Omniglot); None = the family's ways."""
    train_shots: Size | None = None
    """Shots of the training episodes; None = the family's shots (the paper matches test shots)."""
    train_queries: Size | None = None
    """Queries per class in training episodes; None = the family's."""
    filters: Size = 64
    """Filters of each of the 4 conv blocks (64 in the paper)."""
    lr: Positive = 1e-3
    """Adam learning rate."""
    lr_halve_every: Size = 2000
    """Halve the learning rate every this many outer iterations (the paper: 2000 episodes)."""
    grad_chunks: Size = 1
    """The gradient is the sum, in order, of the gradients of this many fixed chunks of the
    episodes (each weighted by its share). Training depends on it but never on the number of
    ``torchrun`` processes, which must divide it."""


class ProtoNetLearner(SupportSetClassifier):
    """Meta-trains a conv embedding with episodes; adapts by computing prototypes."""

    name: ClassVar[str] = "protonet"

    def __init__(self, config: ProtoNetConfig, *, seed: int, device: torch.device | str = "cpu"):
        build = lambda family: embedding_net(family.input_shape, config.filters)  # noqa: E731
        super().__init__(config, seed=seed, device=device, build=build)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, config.lr_halve_every, gamma=0.5)

    def query_logits(self, batch: FewShotBatch) -> torch.Tensor:
        return episode_logits(self.net, batch)

    def query_loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(scores.flatten(0, 1), labels.flatten())

    def train_episode_shape(self) -> dict[str, int | None]:
        cfg = self.config
        return {"ways": cfg.train_ways, "shots": cfg.train_shots, "queries": cfg.train_queries}

    @torch.no_grad()
    def adapt(
        self, tasks: FewShotBatch, steps: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The adapted model of each task: its class prototypes ``[T, ways, D]``."""
        # the same batch statistics as evaluation: support and query together
        protos = self.eval_chunks(
            lambda b: class_prototypes(embed_episodes(self.net, b)[1], b.support_y, b.ways), tasks
        )
        return {"prototypes": protos}


register_algo(
    AlgoSpec(
        name="protonet",
        config_cls=ProtoNetConfig,
        learner_cls=ProtoNetLearner,
        description="Prototypical Networks: nearest class mean in a learned embedding",
        kind="fewshot",
    )
)
