"""``adaptrl bench fewshot-speed``: meta-iterations per second of second-order MAML.

Four shapes (the issue's): the Omniglot-shape conv net (MAML's Omniglot network: 4 blocks of 64
3x3 stride-2 convs with BatchNorm, 28x28 inputs, queries = shots per class) at 5-way 1-shot with
one inner step and meta-batch 32, 5-way 5-shot with one step, 5-way 1-shot with five steps, and
the sinusoid MLP (1-40-40-1, K = 10, meta-batch 25, one step).

Timed in the same run, on the same network, data and Adam outer step:

* **ours**: :func:`adaptrl.algos.gradient.maml_query_losses` (what ``adaptrl train maml`` runs)
  with each task strategy (``vmap``, ``batched``, ``loop``); the fastest is reported as ours
  (the learners' default ``strategy="auto"`` follows these measurements);
* **higher**: the ``higher`` library's ``innerloop_ctx`` over tasks (the classic way);
* **autograd loop**: a plain per-task loop with ``torch.autograd.grad(create_graph=True)``;
* **floor**: one ordinary (non-meta) training step on all the meta-batch's images with shared
  weights: the arithmetic any meta-iteration does at least (a second-order one does several
  times more), so rates near the floor's leave little to gain from removing overhead.

Rounds are interleaved (every implementation once per round) and the median round is reported,
so background load affects all alike. Peak memory: the best strategy runs ``memory_iterations``
meta-iterations while the process's resident memory is sampled; the peak of the second half must
not exceed the first half's (no growth).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from adaptrl.algos.gradient import maml_query_losses
from adaptrl.bench.common import (
    interleaved_seconds,
    peak_per_tenth,
    resident_mb,
    table_markdown,
    write_bench,
)
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Size, config_to_dict
from adaptrl.core.errors import ConfigError, require
from adaptrl.core.progress import console, progress
from adaptrl.core.seeding import make_generator
from adaptrl.core.table import print_table
from adaptrl.fewshot import FewShotBatch
from adaptrl.nn.backbones import MLP, ConvNet

TARGET_VS_HIGHER = 2.0
"""Ours must be at least this many times faster than higher on every shape."""
#: The issue's measurements on a 2-core machine (meta-it/s), for orientation only.
ISSUE_REFERENCE = {
    "learn2learn": (1.55, 0.65, 0.44, 28.4),
    "higher": (1.27, 0.55, 0.41, 19.6),
}
STRATEGIES = ("vmap", "batched", "loop")


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    kind: str  # "classification" (conv net) or "regression" (MLP)
    ways: int
    shots: int
    steps: int
    meta_batch: int
    lr: float


SHAPES = (
    Shape("omniglot 5w1s, 1 step, mb 32", "classification", 5, 1, 1, 32, 0.4),
    Shape("omniglot 5w5s, 1 step, mb 32", "classification", 5, 5, 1, 32, 0.4),
    Shape("omniglot 5w1s, 5 steps, mb 32", "classification", 5, 1, 5, 32, 0.4),
    Shape("sinusoid K=10, 1 step, mb 25", "regression", 0, 10, 1, 25, 0.01),
)


def make_case(shape: Shape, tasks: int, seed: int) -> tuple[nn.Module, FewShotBatch]:
    """The network and a synthetic meta-batch of the shape (speed does not depend on values)."""
    gen = make_generator(seed, "fewshot-speed", shape.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net: nn.Module = (
            ConvNet(1, shape.ways, hidden=64, image_size=28, pool="stride")
            if shape.kind == "classification"
            else MLP(1, 1, (40, 40))
        )
    if shape.kind == "classification":
        n = shape.ways * shape.shots
        labels = torch.arange(shape.ways).repeat_interleave(shape.shots).expand(tasks, -1)

        def images() -> Tensor:
            return torch.rand(tasks, n, 1, 28, 28, generator=gen)

        batch = FewShotBatch(
            images(), labels.clone(), images(), labels.clone(), shape.ways, shape.shots, shape.shots
        )
    else:

        def points() -> Tensor:
            return torch.rand(tasks, shape.shots, 1, generator=gen) * 10 - 5

        batch = FewShotBatch(points(), points(), points(), points(), 0, shape.shots, shape.shots)
    return net, batch


def _loss(kind: str, out: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(out, y) if kind == "classification" else F.mse_loss(out, y)


def make_steps(shape: Shape, net: nn.Module, batch: FewShotBatch) -> dict[str, Callable[[], None]]:
    """One meta-iteration (meta-loss, backward, Adam step) per implementation."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    tasks = len(batch)

    def ours(strategy: str) -> Callable[[], None]:
        def step() -> None:
            losses = maml_query_losses(
                net,
                shape.kind,
                dict(net.named_parameters()),
                batch,
                steps=shape.steps,
                lr=shape.lr,
                strategy=strategy,  # type: ignore[arg-type]
            )
            optimizer.zero_grad(set_to_none=True)
            losses.mean().backward()
            optimizer.step()

        return step

    def autograd_loop() -> None:
        optimizer.zero_grad(set_to_none=True)
        for t in range(tasks):
            params = dict(net.named_parameters())
            for _ in range(shape.steps):
                out = functional_call(net, params, (batch.support_x[t],))
                grads = torch.autograd.grad(
                    _loss(shape.kind, out, batch.support_y[t]),
                    list(params.values()),
                    create_graph=True,
                )
                params = {
                    k: p - shape.lr * g for (k, p), g in zip(params.items(), grads, strict=True)
                }
            out = functional_call(net, params, (batch.query_x[t],))
            (_loss(shape.kind, out, batch.query_y[t]) / tasks).backward()
        optimizer.step()

    higher = require("higher", "bench", "the fewshot-speed reference")
    inner = torch.optim.SGD(net.parameters(), lr=shape.lr)

    def higher_loop() -> None:
        optimizer.zero_grad(set_to_none=True)
        for t in range(tasks):
            with higher.innerloop_ctx(net, inner, copy_initial_weights=False) as (fnet, diffopt):
                for _ in range(shape.steps):
                    diffopt.step(_loss(shape.kind, fnet(batch.support_x[t]), batch.support_y[t]))
                (_loss(shape.kind, fnet(batch.query_x[t]), batch.query_y[t]) / tasks).backward()
        optimizer.step()

    x = torch.cat([batch.support_x, batch.query_x], 1).flatten(0, 1)
    y = torch.cat([batch.support_y, batch.query_y], 1).flatten(0, 1)

    def floor() -> None:
        optimizer.zero_grad(set_to_none=True)
        _loss(shape.kind, net(x), y).backward()
        optimizer.step()

    steps = {f"ours ({s})": ours(s) for s in STRATEGIES}
    steps.update({"higher": higher_loop, "autograd loop": autograd_loop, "floor": floor})
    return steps


def time_shape(
    shape: Shape, *, tasks: int, rounds: int, per_round: int, seed: int
) -> dict[str, float]:
    """Median meta-iterations/s of every implementation, rounds interleaved."""
    net, batch = make_case(shape, tasks, seed)
    steps = make_steps(shape, net, batch)
    batches = {name: lambda fn=fn: [fn() for _ in range(per_round)] for name, fn in steps.items()}
    seconds = interleaved_seconds(batches, rounds, shape.name)
    return {name: per_round / statistics.median(s) for name, s in seconds.items()}


def memory_check(shape: Shape, strategy: str, *, tasks: int, iterations: int, seed: int) -> dict:
    """Peak resident memory per tenth of ``iterations`` meta-iterations, and whether it grows.

    The first tenth is warm-up (the allocator settles into its working set; with the CLI's
    allocator setting resident memory then stays at its high-water mark), so growth compares the
    peaks of the two halves of the remaining nine tenths.
    """
    net, batch = make_case(shape, tasks, seed)
    step = make_steps(shape, net, batch)[f"ours ({strategy})"]
    step()
    rss = []
    for _ in progress(range(iterations), description=f"memory {shape.name}"):
        step()
        rss.append(resident_mb())
    tenths = peak_per_tenth(rss)
    measured = rss[len(rss) // 10 :] or rss
    first, second = (
        max(measured[: len(measured) // 2] or measured),
        max(measured[len(measured) // 2 :]),
    )
    growth = second - first
    return {
        "iterations": iterations,
        "strategy": strategy,
        "peak_mb_by_tenth": [round(v, 1) for v in tenths],
        "peak_mb_first_half": round(first, 1),
        "peak_mb_second_half": round(second, 1),
        "growth_mb": round(growth, 1),
        "grows": growth > max(2.0, 0.01 * first),
    }


@dataclasses.dataclass(frozen=True)
class FewShotSpeedConfig(Config):
    """Meta-iterations/s of second-order MAML vs higher and a per-task autograd loop."""

    shapes: tuple[int, ...] = (0, 1, 2, 3)
    """Which shapes to run (indices: 0 5w1s, 1 5w5s, 2 5w1s 5 steps, 3 sinusoid)."""
    rounds: Size = 5
    """Interleaved timing rounds (median reported)."""
    per_round: Size = 2
    """Meta-iterations per implementation per round (sinusoid: 20x as many)."""
    memory_iterations: Size = 500
    """Meta-iterations of the memory-growth check (best strategy, every shape)."""
    threads: Size = 1
    """torch.set_num_threads for the run (the machine is shared)."""
    seed: int = 0
    """Seed of the network weights and synthetic data."""
    quick: bool = False
    """Smoke run: meta-batch 4, one round, 10 memory iterations; numbers are not meaningful."""
    out: Path = Path("results/bench-fewshot-speed")
    """Folder for results.json and report.md."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not set(self.shapes) <= set(range(len(SHAPES))):
            raise ConfigError(f"shapes are indices 0..{len(SHAPES) - 1}, got {self.shapes}")


def measure_shape(shape: Shape, cfg: FewShotSpeedConfig) -> tuple[dict[str, Any], list[str]]:
    """One shape's rates, best strategy, ratios and memory check, and its table row."""
    tasks = 4 if cfg.quick else shape.meta_batch
    scale = 20 if shape.kind == "regression" else 1
    rounds, per_round = (1, 1) if cfg.quick else (cfg.rounds, cfg.per_round)
    rates = time_shape(
        shape, tasks=tasks, rounds=rounds, per_round=per_round * scale, seed=cfg.seed
    )
    best = max(STRATEGIES, key=lambda s: rates[f"ours ({s})"])
    ours = rates[f"ours ({best})"]
    iterations = 10 if cfg.quick else cfg.memory_iterations
    memory = memory_check(shape, best, tasks=tasks, iterations=iterations, seed=cfg.seed)
    result: dict[str, Any] = {
        "shape": config_to_dict(shape),
        "meta_batch": tasks,
        "meta_it_per_s": {k: round(v, 3) for k, v in rates.items()},
        "best_strategy": best,
        "vs_higher": round(ours / rates["higher"], 2),
        "vs_autograd_loop": round(ours / rates["autograd loop"], 2),
        "time_vs_floor": round(rates["floor"] / ours, 2),
        "memory": memory,
    }
    row = [
        shape.name,
        *(f"{rates[f'ours ({s})']:.2f}" for s in STRATEGIES),
        *(f"{rates[k]:.2f}" for k in ("higher", "autograd loop", "floor")),
        f"{result['vs_higher']:.2f}x",
        f"{result['vs_autograd_loop']:.2f}x",
        f"{memory['growth_mb']:+.1f} MB",
    ]
    return result, row


def run(cfg: FewShotSpeedConfig) -> int:
    torch.set_num_threads(cfg.threads)
    measured = [measure_shape(SHAPES[index], cfg) for index in cfg.shapes]
    results, rows = [m[0] for m in measured], [m[1] for m in measured]
    columns = ["shape", *(f"ours {s}" for s in STRATEGIES), "higher", "autograd loop", "floor"]
    columns += ["best/higher", "best/loop", "peak growth"]
    title = "Second-order MAML, meta-iterations/s (median of interleaved rounds)"
    print_table(title, columns, rows)
    ok = all(r["vs_higher"] >= TARGET_VS_HIGHER for r in results)
    grows = any(r["memory"]["grows"] for r in results)
    verdict = (
        f"target >= {TARGET_VS_HIGHER}x higher on every shape: {'met' if ok else 'NOT met'}; "
        f"memory growth: {'YES' if grows else 'none'}"
    )
    console().print(verdict)
    header = {"threads": cfg.threads, "quick": cfg.quick, "seed": cfg.seed}
    payload = {
        "benchmark": "fewshot-speed",
        "config": config_to_dict(cfg),
        "results": results,
        "issue_reference_meta_it_per_s": ISSUE_REFERENCE,
        "target_vs_higher": TARGET_VS_HIGHER,
        "verdict": verdict,
    }
    markdown = table_markdown(title, header, columns, rows) + f"\n{verdict}\n"
    write_bench(Path(cfg.out), payload, markdown, seeds=[cfg.seed])
    return 0


register_bench(
    BenchSpec(
        "fewshot-speed",
        FewShotSpeedConfig,
        run,
        "second-order MAML meta-it/s on 4 shapes vs higher and a per-task autograd loop",
    )
)
