"""Many processes, one result: the thin layer the outer loop uses to split a meta-batch by task.

Every process draws the same meta-batch (the same seeds), keeps a contiguous block of its tasks
(:meth:`World.shard`), collects and adapts them with the learner's batched code, and combines what
spans the batch with explicit collectives:

* per-task values (losses, gradients, Fisher-vector products, returns) are *gathered* in task
  order (:meth:`World.gather`) and reduced by the same operation on the same ``[tasks, ...]``
  tensor in every process, so the result does not depend on how many processes computed the rows
  (an all-reduce of per-process sums would differ in the last bits between 1, 2 and 4 processes);
* random draws for rows of the batch are made at the full batch's shape and sliced
  (:class:`Rows`), so task ``g`` sees the same noise whichever process simulates it.

The world is read from ``torch.distributed`` once the process group exists (``torchrun`` sets the
environment, :func:`init_from_env` creates the group: gloo on CPU, NCCL on CUDA). Without a group
:func:`current` is the world of one process and every collective is the identity.

Functional inner loops are never wrapped in ``DistributedDataParallel``: with
``torch.func.functional_call`` its gradient hooks do not see the parameters, so gradients would
silently stay unsynchronised.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import os
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from adaptrl.core.errors import AdaptrlError, ConfigError

T = TypeVar("T")

TIMEOUT_SECONDS = 600
"""How long a collective waits for a process that stopped answering before every other one stops
with an error (the run resumes from its last checkpoint)."""


class DistributedError(AdaptrlError):
    """A process group could not be set up, or a peer process stopped answering."""


@dataclasses.dataclass
class Traffic:
    """What :meth:`World.gather` did in this process since :meth:`reset` (the scaling bench reads
    it): calls, bytes of the gathered tensors (the whole batch's, also in one process) and
    seconds inside collectives (transfer plus waiting for slower processes)."""

    calls: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        self.calls, self.bytes, self.seconds = 0, 0, 0.0


TRAFFIC = Traffic()


@dataclasses.dataclass(frozen=True)
class Rows:
    """A contiguous block ``[start, start + count)`` of a batch of ``total`` rows.

    Random draws for the block are made for all ``total`` rows and sliced, so row ``i`` gets the
    same numbers whether one process holds the whole batch or several hold blocks of it (the
    generator advances by the full batch in every process)."""

    start: int
    count: int
    total: int

    def __post_init__(self) -> None:
        if not (self.start >= 0 and self.count >= 0 and self.start + self.count <= self.total):
            raise ConfigError(f"rows [{self.start}, {self.start + self.count}) of {self.total}")

    @classmethod
    def all(cls, n: int) -> Rows:
        return cls(0, n, n)

    def scaled(self, per: int) -> Rows:
        """The same block with every row repeated ``per`` times (tasks -> task-major envs)."""
        return Rows(self.start * per, self.count * per, self.total * per)

    def draw(
        self,
        fn: Callable[..., torch.Tensor],
        shape: tuple[int, ...],
        generator: torch.Generator,
        **kwargs: object,
    ) -> torch.Tensor:
        """``fn((total, *shape[1:]), generator=...)[start:start + count]``, with ``shape[0]`` the
        block's row count (``fn``: ``torch.rand`` or ``torch.randn``)."""
        if shape[0] != self.count:
            raise ValueError(f"drawing {shape[0]} rows for a block of {self.count}")
        if self.count == self.total:
            return fn(shape, generator=generator, **kwargs)
        full = fn((self.total, *shape[1:]), generator=generator, **kwargs)
        return full[self.start : self.start + self.count]


@dataclasses.dataclass(frozen=True)
class World:
    """This process's rank among ``size`` processes (rank 0 writes the run directory)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int, what: str = "meta_batch_size") -> Rows:
        """This process's contiguous block of ``n`` tasks; ``n`` must divide by the world size, so
        that every process computes as many tasks (collectives gather equal shapes)."""
        if n % self.size:
            lower, upper = n - n % self.size, n + self.size - n % self.size
            near = " or ".join(str(m) for m in (lower, upper) if m > 0)
            raise ConfigError(
                f"{what}={n} does not divide across {self.size} processes; use a multiple of "
                f"{self.size} (e.g. {near}) or another process count"
            )
        per = n // self.size
        return Rows(self.rank * per, per, n)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's ``x`` (same shape everywhere) along dim 0 in rank order,
        which is task order for blocks from :meth:`shard`. The identity for one process."""
        TRAFFIC.calls += 1
        TRAFFIC.bytes += x.numel() * x.element_size() * self.size
        if self.size == 1:
            return x
        flag = x.dtype == torch.bool  # gathered as bytes: not every backend takes bool
        x = (x.to(torch.uint8) if flag else x).contiguous()
        parts = [torch.empty_like(x) for _ in range(self.size)]
        start = time.perf_counter()
        _collective(lambda: torch.distributed.all_gather(parts, x), "all_gather")
        TRAFFIC.seconds += time.perf_counter() - start
        out = torch.cat(parts)
        return out.bool() if flag else out

    def check_same(self, value: int, what: str) -> None:
        """Raise unless every process passes the same ``value`` (the configs, seeds and iteration
        every process must agree on)."""
        if self.size == 1:
            return
        seen = self.gather(torch.tensor([value], dtype=torch.long, device=_device()))
        if not bool((seen == seen[0]).all()):
            raise DistributedError(f"processes disagree on {what}: {seen.tolist()}")

    def barrier(self) -> None:
        if self.size > 1:
            _collective(torch.distributed.barrier, "barrier")


def in_blocks(
    rows: Rows, size: int, generator: torch.Generator, fn: Callable[[Rows], T]
) -> list[T]:
    """``fn(block)`` for each block of ``size`` rows of ``rows``, in order, every one started from
    ``generator``'s current state. Each block draws its noise at the whole batch's shape
    (:meth:`Rows.draw`), so each advances the generator alike and the generator ends where one
    block leaves it; the blocks' numbers are then those of the same rows of one whole-batch run."""
    start = generator.get_state()
    out = []
    for lo in range(rows.start, rows.start + rows.count, size):
        generator.set_state(start)
        out.append(fn(Rows(lo, size, rows.total)))
    return out


def chunk_bounds(n: int, chunks: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` of ``chunks`` contiguous, near-equal pieces of ``range(n)`` (the first
    ``n % chunks`` one longer, as ``torch.tensor_split``)."""
    if not 1 <= chunks <= n:
        raise ConfigError(f"cannot cut {n} tasks into {chunks} chunks: use 1 to {n}")
    size, extra = divmod(n, chunks)
    starts = [c * size + min(c, extra) for c in range(chunks + 1)]
    return list(itertools.pairwise(starts))


def check_chunks(world: World, chunks: int, what: str = "grad_chunks") -> None:
    """Raise unless the number of processes divides ``chunks`` (see :func:`chunk_sum`)."""
    if chunks % world.size:
        raise ConfigError(
            f"{what}={chunks} does not divide across {world.size} processes; set it to a "
            f"multiple of {world.size} (the same value in one process gives the same result)"
        )


def chunk_sum(
    world: World, chunks: int, fn: Callable[[int], torch.Tensor], what: str = "grad_chunks"
) -> torch.Tensor:
    """``sum_c fn(c)`` over ``c = 0 .. chunks - 1`` in order, each process computing its share of
    the chunks (``fn(c)``: a flat tensor of the same shape for every chunk).

    The rows are gathered and summed by one operation on the same ``[chunks, ...]`` tensor in
    every process, so the sum depends on ``chunks`` and never on the number of processes, which
    must divide it. The learners' fixed-chunk gradients are built on it."""
    check_chunks(world, chunks, what)
    per = chunks // world.size
    rows = [fn(c) for c in range(world.rank * per, (world.rank + 1) * per)]
    return world.gather(torch.stack(rows)).sum(0)


def chunk_gradients(
    world: World,
    chunks: int,
    params: list[torch.Tensor],
    loss_of: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``(gradients, stats)``: the gradient with respect to ``params`` of ``sum_c loss_of(c)[0]``
    (shaped like ``params``) and ``sum_c loss_of(c)[1]`` (a flat tensor of statistics), computed
    chunk by chunk as :func:`chunk_sum`. A chunk's loss is weighted by the caller (its share of
    the batch), so one chunk is exactly the whole batch's gradient."""
    sizes = [p.numel() for p in params]

    def row(c: int) -> torch.Tensor:
        loss, stats = loss_of(c)
        grads = torch.autograd.grad(loss, params, materialize_grads=True)
        return torch.cat([*(g.reshape(-1) for g in grads), stats.detach().reshape(-1)])

    total = chunk_sum(world, chunks, row)
    flat_grads, stats = total[: sum(sizes)], total[sum(sizes) :]
    grads = [g.view_as(p) for g, p in zip(flat_grads.split(sizes), params, strict=True)]
    return grads, stats


def _device() -> torch.device:
    backend = torch.distributed.get_backend()
    return (
        torch.device("cuda", torch.cuda.current_device())
        if backend == "nccl"
        else torch.device("cpu")
    )


def _collective(call: Callable[[], object], name: str) -> None:
    try:
        call()
    except RuntimeError as exc:  # gloo / NCCL report a peer that died or timed out this way
        raise DistributedError(
            f"{name} across processes failed ({str(exc).splitlines()[0]}): a peer process stopped "
            "or timed out; resume the run with `adaptrl train --resume RUN_DIR` (under the same "
            "torchrun command) to continue from its last checkpoint"
        ) from exc


def current() -> World:
    """The world of the initialised process group, or of one process."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (its environment names a world)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_from_env(device: torch.device | None = None) -> World:
    """Create the process group ``torchrun`` describes (gloo on CPU, NCCL on CUDA) and return the
    world; without ``torchrun`` the world of one process. Idempotent."""
    dist = torch.distributed
    if not launched():
        return current()
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        cuda = device is not None and device.type == "cuda"
        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_SECONDS))
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(
                f"could not join the torchrun process group ({exc}); launch with "
                "`torchrun --nproc-per-node N -m adaptrl.cli.main train ...`"
            ) from exc
    return current()


def exit_process(code: int) -> None:
    """End a ``torchrun`` process with ``code`` without the interpreter's teardown, where gloo's
    threads can still abort the process after a clean ``destroy_process_group`` (about one exit
    in fifteen here; pytorch/pytorch#179291), which torchrun would report as a failure. Outside
    torchrun: ``sys.exit``."""
    import sys

    if not launched():
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shutdown() -> None:
    """Leave the process group (at the end of a run)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    "TRAFFIC",
    "DistributedError",
    "Rows",
    "World",
    "check_chunks",
    "chunk_bounds",
    "chunk_gradients",
    "chunk_sum",
    "current",
    "exit_process",
    "in_blocks",
    "init_from_env",
    "launched",
    "shutdown",
]
