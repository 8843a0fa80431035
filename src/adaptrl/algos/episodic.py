"""Shared pieces of the learners that train one network with Adam on few-shot episodes.

ProtoNets, Matching Networks and the LSTM optimizer all build a network from a seeded generator,
sample episodes from a :mod:`adaptrl.fewshot` family, take one Adam step per outer iteration and
checkpoint the same four things. This module holds that common frame (it is not an algorithm and
registers nothing); each algorithm file keeps its own kernels and training step.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch

from adaptrl.algos.base import MetaLearner
from adaptrl.core import distributed
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import (
    derive_seed,
    generator_state,
    make_generator,
    set_generator_state,
)
from adaptrl.fewshot import FewShotBatch, FewShotFamily, make_fewshot_family
from adaptrl.nn.backbones import FewShotNet, make_backbone

M = TypeVar("M", bound=torch.nn.Module)


# --- small functions -------------------------------------------------------------------------
def seeded_module(seed: int, build: Callable[[], M]) -> M:
    """``build()`` with torch's global generator seeded, without disturbing the caller's state
    (modules draw their initial weights from the global generator)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def embedding_net(input_shape: tuple[int, ...], filters: int) -> FewShotNet:
    """The 4-block conv net without its head (the ProtoNets / Matching Nets embedding)."""
    return make_backbone(input_shape, None, hidden=filters)


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


def chunked(fn: Callable[[FewShotBatch], torch.Tensor], tasks: FewShotBatch, size: int = 32):
    """``fn`` over ``tasks`` in chunks of ``size`` tasks, concatenated (bounds evaluation memory:
    a conv net on hundreds of tasks' images at once does not fit in RAM)."""
    return torch.cat(
        [fn(tasks.chunk(i, min(i + size, len(tasks)))) for i in range(0, len(tasks), size)]
    )


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-task accuracy ``[T]`` of ``[T, Q, N]`` logits against ``[T, Q]`` labels."""
    return (logits.argmax(-1) == labels).float().mean(-1)


# --- learners --------------------------------------------------------------------------------
class EpisodicLearner(MetaLearner):
    """A learner whose trained state is one network ``net``, its Adam optimizer ``opt`` (with an
    optional LR schedule ``sched``) and an episode generator.

    ``__init__`` makes the family from ``config.family``, checks it (:meth:`check_family`), builds
    ``net = build(family)`` under the seed ``derive_seed(seed, name, "init")`` and draws episodes
    from the generator ``make_generator(seed, name, "episodes")``.
    """

    sched: torch.optim.lr_scheduler.LRScheduler | None = None

    def __init__(
        self,
        config: Any,
        *,
        seed: int,
        device: torch.device | str,
        build: Callable[[FewShotFamily], torch.nn.Module],
    ):
        super().__init__(config, seed=seed, device=device)
        self.family = make_fewshot_family(config.family)
        self.check_family()
        init_seed = derive_seed(seed, self.name, "init")
        self.net = seeded_module(init_seed, lambda: build(self.family)).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.generator = make_generator(seed, self.name, "episodes")

    def check_family(self) -> None:
        """Raise a :class:`ConfigError` if this learner cannot use ``self.family`` (runs before
        ``build``); any family by default."""

    def optimizer_step(self, loss: torch.Tensor, max_grad_norm: float | None = None) -> None:
        """Backpropagate ``loss`` and take one Adam step (clipping the gradient norm to
        ``max_grad_norm`` if given, then stepping the LR schedule if there is one)."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.apply_gradients(max_grad_norm)

    def apply_gradients(self, max_grad_norm: float | None = None) -> None:
        """One Adam step on the gradients in ``.grad`` (clipped to ``max_grad_norm`` if given),
        then one step of the LR schedule if there is one."""
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), max_grad_norm)
        self.opt.step()
        if self.sched is not None:
            self.sched.step()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"net": self.net.state_dict(), "opt": self.opt.state_dict()}
        if self.sched is not None:
            state["sched"] = self.sched.state_dict()
        state["generator"] = generator_state(self.generator)
        state["iteration"] = self.iteration
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        if self.sched is not None:
            self.sched.load_state_dict(state["sched"])
        set_generator_state(self.generator, state["generator"])
        self.iteration = int(state["iteration"])


class SupportSetClassifier(EpisodicLearner):
    """An :class:`EpisodicLearner` on a classification family that adapts by reading the support
    set. Training minimises :meth:`query_loss` of :meth:`query_logits` on episodes shaped by
    :meth:`train_episode_shape`; there are no inner steps, so ``adaptation_curve`` is one column,
    the query accuracy."""

    metric = "accuracy"
    higher_is_better = True
    distributed = True
    default_eval_steps: ClassVar[int] = 0
    """Adaptation is reading the support set: there are no inner steps."""

    def __init__(self, config: Any, **kwargs: Any):
        distributed.chunk_bounds(config.tasks_per_batch, config.grad_chunks)
        distributed.check_chunks(distributed.current(), config.grad_chunks)
        super().__init__(config, **kwargs)

    def check_family(self) -> None:
        if self.family.kind != "classification":
            raise ConfigError(
                f"{self.name} needs a classification family, got {self.family.kind!r} "
                "(use glyphs-v0 or imagefolder)"
            )

    @abc.abstractmethod
    def query_logits(self, batch: FewShotBatch) -> torch.Tensor:
        """Scores ``[T, Q, ways]`` of the batch's queries given its support sets (argmax = class)."""

    @abc.abstractmethod
    def query_loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of :meth:`query_logits`' scores against the ``[T, Q]`` labels."""

    def train_episode_shape(self) -> dict[str, int | None]:
        """``ways`` (and optionally ``shots`` / ``queries``) of training episodes; None is the
        family's value."""
        return {"ways": self.config.train_ways}

    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        """One Adam step on the query loss of ``tasks_per_batch`` training episodes, its gradient
        summed over ``grad_chunks`` chunks of them (each process computes its share)."""
        batch = self.family.sample(
            self.config.tasks_per_batch,
            "train",
            generator=self.generator,
            device=self.device,
            **self.train_episode_shape(),
        )
        self.net.train()
        world = distributed.current()
        bounds = distributed.chunk_bounds(len(batch), self.config.grad_chunks)

        def chunk_loss(c: int) -> tuple[torch.Tensor, torch.Tensor]:
            lo, hi = bounds[c]
            part = batch.chunk(lo, hi)
            scores = self.query_logits(part)
            loss = self.query_loss(scores, part.query_y)
            share = (hi - lo) / len(batch)
            acc = accuracy(scores.detach(), part.query_y).mean()
            return loss * share, torch.stack([loss.detach(), acc]) * share

        params = list(self.net.parameters())
        grads, (loss, acc) = distributed.chunk_gradients(world, len(bounds), params, chunk_loss)
        self.opt.zero_grad(set_to_none=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        self.apply_gradients()
        self.iteration += 1
        return {"loss": loss, "accuracy": acc}

    def eval_chunks(
        self, fn: Callable[[FewShotBatch], torch.Tensor], tasks: FewShotBatch
    ) -> torch.Tensor:
        """``fn`` over ``tasks`` in chunks, with the net in eval mode, on the host."""
        self.net.eval()
        return chunked(fn, tasks.to(self.device)).cpu()

    @torch.no_grad()
    def adaptation_curve(
        self, tasks: FewShotBatch, steps: int = 0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Query accuracy given the support set, ``[T, 1]``. ``steps`` and ``generator`` are
        ignored: the learner adapts by reading the support set, not by gradient steps."""
        score = lambda b: accuracy(self.query_logits(b), b.query_y)  # noqa: E731
        return self.eval_chunks(score, tasks).unsqueeze(-1)
