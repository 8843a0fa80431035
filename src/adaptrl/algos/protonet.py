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
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
import tyro

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import (
    derive_seed,
    generator_state,
    make_generator,
    set_generator_state,
)
from adaptrl.fewshot import FewShotBatch, FewShotConfigUnion, make_fewshot_family
from adaptrl.fewshot.glyphs import GlyphsConfig
from adaptrl.nn.backbones import FewShotNet, make_backbone

M = TypeVar("M", bound=torch.nn.Module)


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


def embed_episodes(net: torch.nn.Module, batch: FewShotBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and support embeddings ``[T, Q, D]``, ``[T, S, D]``.

    Each task's support and query images go through the net together, vmapped over tasks: the
    backbone's BatchNorm always uses batch statistics (no running averages), so every task is
    normalised with its own statistics, the convention of MAML's evaluation, identical in training
    and testing and the same for every method in the glyphs table.
    """
    s = batch.support_x.shape[1]
    emb = torch.vmap(net)(torch.cat([batch.support_x, batch.query_x], dim=1))
    return emb[:, s:], emb[:, :s]


def episode_logits(net: torch.nn.Module, batch: FewShotBatch) -> torch.Tensor:
    """Logits ``[T, Q, ways]`` of the batch's queries given its support sets."""
    query, support = embed_episodes(net, batch)
    return prototype_logits(query, support, batch.support_y, batch.ways)


def seeded_module(seed: int, build: Callable[[], M]) -> M:
    """``build()`` with torch's global generator seeded, without disturbing the caller's state
    (modules draw their initial weights from the global generator)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def embedding_net(input_shape: tuple[int, ...], filters: int) -> FewShotNet:
    """The 4-block conv net without its head (the ProtoNets / Matching Nets embedding)."""
    return make_backbone(input_shape, None, hidden=filters)


def chunked(fn: Callable[[FewShotBatch], torch.Tensor], tasks: FewShotBatch, size: int = 32):
    """``fn`` over ``tasks`` in chunks of ``size`` tasks, concatenated (bounds evaluation memory:
    a conv net on hundreds of tasks' images at once does not fit in RAM)."""
    return torch.cat(
        [fn(tasks.chunk(i, min(i + size, len(tasks)))) for i in range(0, len(tasks), size)]
    )


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-task accuracy ``[T]`` of ``[T, Q, N]`` logits against ``[T, Q]`` labels."""
    return (logits.argmax(-1) == labels).float().mean(-1)


# --- learner ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProtoNetConfig:
    """Prototypical Networks on a few-shot classification family."""

    family: Annotated[FewShotConfigUnion, tyro.conf.arg(name="")] = GlyphsConfig()
    """Few-shot classification family; its ways / shots / queries are the test episode shape."""
    iterations: int = 2000
    """Outer iterations (each one Adam step on ``tasks_per_batch`` episodes)."""
    tasks_per_batch: int = 1
    """Episodes per outer step (the paper: 1)."""
    train_ways: int | None = None
    """Ways of the training episodes (the paper used 60 on Omniglot); None = the family's ways."""
    train_shots: int | None = None
    """Shots of the training episodes; None = the family's shots (the paper matches test shots)."""
    train_queries: int | None = None
    """Queries per class in training episodes; None = the family's."""
    filters: int = 64
    """Filters of each of the 4 conv blocks (64 in the paper)."""
    lr: float = 1e-3
    """Adam learning rate."""
    lr_halve_every: int = 2000
    """Halve the learning rate every this many outer iterations (the paper: 2000 episodes)."""

    def __post_init__(self) -> None:
        for name in ("iterations", "tasks_per_batch", "filters", "lr_halve_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"protonet: {name} must be >= 1, got {getattr(self, name)}")
        if self.train_ways is not None and self.train_ways < 2:
            raise ConfigError(f"protonet: --train-ways must be >= 2, got {self.train_ways}")
        if self.lr <= 0:
            raise ConfigError(f"protonet: --lr must be > 0, got {self.lr}")


class ProtoNetLearner(MetaLearner):
    """Meta-trains a conv embedding with episodes; adapts by computing prototypes."""

    name: ClassVar[str] = "protonet"
    metric = "accuracy"
    higher_is_better = True
    default_eval_steps = 0
    """Adaptation is reading the support set: there are no inner steps."""

    def __init__(self, config: ProtoNetConfig, *, seed: int, device: torch.device | str = "cpu"):
        super().__init__(config, seed=seed, device=device)
        self.family = make_fewshot_family(config.family)
        if self.family.kind != "classification":
            raise ConfigError(
                f"protonet needs a classification family, got {self.family.kind!r} "
                "(use glyphs-v0 or imagefolder)"
            )
        init_seed = derive_seed(seed, "protonet", "init")
        self.net = seeded_module(
            init_seed, lambda: embedding_net(self.family.input_shape, config.filters)
        ).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, config.lr_halve_every, gamma=0.5)
        self.generator = make_generator(seed, "protonet", "episodes")

    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        cfg = self.config
        batch = self.family.sample(
            cfg.tasks_per_batch,
            "train",
            generator=self.generator,
            device=self.device,
            ways=cfg.train_ways,
            shots=cfg.train_shots,
            queries=cfg.train_queries,
        )
        self.net.train()
        logits = episode_logits(self.net, batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.iteration += 1
        return {"loss": loss.detach(), "accuracy": accuracy(logits.detach(), batch.query_y).mean()}

    @torch.no_grad()
    def adaptation_curve(
        self, tasks: FewShotBatch, steps: int = 0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Query accuracy given the support set, ``[T, 1]``. ``steps`` and ``generator`` are
        ignored: a ProtoNet adapts by reading the support set, not by gradient steps."""
        self.net.eval()
        tasks = tasks.to(self.device)
        score = lambda b: accuracy(episode_logits(self.net, b), b.query_y)  # noqa: E731
        return chunked(score, tasks).unsqueeze(-1).cpu()

    @torch.no_grad()
    def adapt(
        self, tasks: FewShotBatch, steps: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The adapted model of each task: its class prototypes ``[T, ways, D]``."""
        self.net.eval()
        tasks = tasks.to(self.device)
        # the same batch statistics as evaluation: support and query together
        protos = chunked(
            lambda b: class_prototypes(embed_episodes(self.net, b)[1], b.support_y, b.ways), tasks
        )
        return {"prototypes": protos.cpu()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "generator": generator_state(self.generator),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        set_generator_state(self.generator, state["generator"])
        self.iteration = int(state["iteration"])


register_algo(
    AlgoSpec(
        name="protonet",
        config_cls=ProtoNetConfig,
        learner_cls=ProtoNetLearner,
        description="Prototypical Networks: nearest class mean in a learned embedding",
        kind="fewshot",
    )
)
