"""``adaptrl bench scaling``: MAML-RL meta-iteration time at 1, 2, ... ``torchrun`` processes, its
parallel efficiency, and a projection to 8, 32 and 128 processes.

Each process count is one ``torchrun --standalone`` launch of :mod:`adaptrl.bench.scaling_worker`:
every process
builds the learner (same seed), runs a warm-up meta-iteration, then times ``iterations`` more,
each started together (a barrier) and ended when the metrics reach the host. The worker also
records what the collectives did (:data:`adaptrl.core.distributed.TRAFFIC`: calls, gathered bytes,
seconds inside them, waiting included) and times ``all_gather`` alone at two sizes, which gives
the per-call latency ``alpha`` and the bandwidth ``beta`` between processes of this machine.

The projection splits a meta-iteration into work every process repeats ``R`` (the TRPO solver's
vector algebra, the line search's bookkeeping), work split by task ``W`` and collective time ``C``.
The split is measured directly in one process, by timing the same configuration with half the
meta-batch, which holds what one of two processes runs, without collectives::

    T(1) = R + W,   T_half(1) = R + W / 2   =>   W = 2 (T(1) - T_half(1)),   R = T(1) - W

(with an odd meta-batch, or when that leaves R < 0, the split is inferred from the 2-process time
instead: ``T(2) = R + W / 2 + C(2)  =>  W = 2 (T(1) - T(2) + C(2))``), and projects

``T(n) = R + W' / n + calls * alpha * (n - 1) + bytes' * (n - 1) / n / beta`` (a ring
all-gather: ``n - 1`` hops per call) for a meta-batch of 128 tasks (``W'`` and ``bytes'`` scaled by
128 / G; 128 divides by every projected count), once with this machine's ``alpha, beta`` and once
with a stated cluster network. Efficiency is ``T(1) / (n T(n))``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from adaptrl.algos.maml_rl import MAMLRLConfig
from adaptrl.bench.common import write_bench
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core import distributed
from adaptrl.core.config import Config, Size, config_to_dict
from adaptrl.core.errors import ConfigError
from adaptrl.core.presets import load_preset
from adaptrl.core.progress import console
from adaptrl.core.table import markdown_table, print_table
from adaptrl.envs.nav2d import Nav2DConfig

BENCHMARK = "scaling"
PROJECTED = (8, 32, 128)
PROJECTED_TASKS = 128
CLUSTER_LATENCY = 50e-6
"""Seconds per all-gather hop assumed for a cluster (TCP over 10-25 GbE between machines)."""
CLUSTER_BANDWIDTH = 1.0e9
"""Bytes/s per link assumed for a cluster (about 10 GbE after protocol overheads)."""
TARGET_SPEEDUP = 1.7
"""Two processes must be at least this many times faster than one where simulation dominates."""


@dataclasses.dataclass(frozen=True)
class ScalingConfig(Config):
    """MAML-RL seconds per meta-iteration at several torchrun process counts, and a projection."""

    maml: MAMLRLConfig = load_preset(MAMLRLConfig, "maml-rl", "cheetah-vel")
    """The configuration timed (needs the mujoco extra; its meta-batch must divide by every
    process count)."""
    processes: tuple[int, ...] = (1, 2)
    """Process counts launched (the projection needs 1 and 2)."""
    iterations: Size = 2
    """Timed meta-iterations per process count (after one warm-up)."""
    threads: Size = 1
    """torch threads per process (one core each)."""
    seed: int = 0
    quick: bool = False
    """CI-sized run: a small nav2d MAML-TRPO (8 tasks x 4 rollouts), 2 timed iterations."""
    out: Path = Path("results/bench/scaling")
    """Directory for results.json and report.md."""


def quick_maml() -> MAMLRLConfig:
    return MAMLRLConfig(
        family=Nav2DConfig(), meta_batch_size=8, rollouts_per_task=4, hidden=(32, 32)
    )


# --- the bench: launch, read, project ---------------------------------------------------------------
def launch(workdir: Path, processes: int, threads: int, job: str = "job") -> dict[str, Any]:
    """Run the worker on ``workdir``'s ``job`` with ``processes`` torchrun processes of
    ``threads`` threads each; the first process's result."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        raise ConfigError(f"torchrun is not installed beside {sys.executable}")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", str(processes)]
    cmd += ["-m", "adaptrl.bench.scaling_worker", str(workdir), job]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ConfigError(f"torchrun with {processes} processes failed:\n{tail}")
    return json.loads((workdir / f"{job}-result-{processes}.json").read_text())


def link_model(one: dict[str, Any]) -> tuple[float, float]:
    """``(alpha, beta)`` from the two all-gather timings at 2 processes: one hop each, moving
    half the gathered bytes (64 B and 1 MiB gathered)."""
    small, large = one["gather_seconds_64B"], one["gather_seconds_1MiB"]
    moved = (2 * (1 << 18) * 4 - 2 * 16 * 4) / 2
    beta = moved / max(large - small, 1e-9)
    return small, beta


def project(
    t1: float, t2: float, c2: float, calls: float, nbytes: float, tasks: int,
    alpha: float, beta: float, t_half: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The split of a meta-iteration into repeated, split and collective time (measured from
    ``t_half``, one process on half the meta-batch, where given; else inferred from ``t2``), and
    ``T(n)`` with efficiency for :data:`PROJECTED` processes at a meta-batch of
    :data:`PROJECTED_TASKS`."""
    inferred = 2.0 * (t1 - t2 + c2)
    measured = None if t_half is None else 2.0 * (t1 - t_half)
    split = measured if measured is not None and measured <= t1 else inferred
    work = max(0.0, min(t1, split))
    repeated = t1 - work
    scale = PROJECTED_TASKS / tasks
    one = repeated + work * scale
    rows = {}
    for n in PROJECTED:
        comm = calls * alpha * (n - 1) + nbytes * scale * (n - 1) / n / beta
        t = repeated + work * scale / n + comm
        rows[n] = {"seconds": t, "collective_seconds": comm, "efficiency": one / (n * t)}
    return {
        "repeated_seconds": repeated,
        "split_seconds": work,
        "amdahl_limit_speedup": one / repeated if repeated > 0 else float("inf"),
        "superlinear": split > t1,
        "split_from": "half batch" if split is measured else "2 processes",
        "projected": rows,
    }


def run_scaling(cfg: ScalingConfig) -> dict[str, Any]:
    maml = quick_maml() if cfg.quick else cfg.maml
    processes = tuple(sorted(set(cfg.processes)))
    if 1 not in processes:
        raise ConfigError("processes must include 1 (the reference every ratio is taken against)")
    for n in processes:
        distributed.World(0, n).shard(maml.meta_batch_size)
    iterations = 2 if cfg.quick else cfg.iterations
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="adaptrl-scaling-") as tmp:
        workdir = Path(tmp)
        job = {
            "maml": config_to_dict(maml),
            "seed": cfg.seed,
            "iterations": iterations,
            "threads": cfg.threads,
        }
        (workdir / "job.json").write_text(json.dumps(job))
        for n in processes:
            console().print(f"scaling: {n} process(es), {iterations} timed meta-iterations ...")
            results[n] = launch(workdir, n, cfg.threads)
        half = None
        if maml.meta_batch_size % 2 == 0:
            console().print("scaling: 1 process on half the meta-batch (the split work) ...")
            half_job = {**job, "maml": config_to_dict(dataclasses.replace(
                maml, meta_batch_size=maml.meta_batch_size // 2
            ))}  # fmt: skip
            (workdir / "half.json").write_text(json.dumps(half_job))
            half = launch(workdir, 1, cfg.threads, "half")
    t1 = statistics.median(results[1]["seconds"])
    t_half = None if half is None else statistics.median(half["seconds"])
    rows = []
    for n in processes:
        r = results[n]
        t = statistics.median(r["seconds"])
        c = statistics.median(r["collective_seconds"])
        rows.append([n, f"{t:.3f}", f"{c:.3f}", f"{t1 / t:.2f}x", f"{t1 / (n * t):.0%}"])
    payload: dict[str, Any] = {
        "benchmark": BENCHMARK,
        "maml": config_to_dict(maml),
        "iterations": iterations,
        "threads": cfg.threads,
        "raw": {str(n): r for n, r in results.items()},
        "half_batch": half,
        "target_speedup_2": TARGET_SPEEDUP,
    }
    title = (
        f"MAML-RL ({maml.family.family_id}, {maml.meta_batch_size} tasks x "
        f"{maml.rollouts_per_task} rollouts, outer {maml.outer}): seconds per meta-iteration, "
        f"median of {iterations} after a warm-up, {cfg.threads} thread(s) per process"
    )
    header = ["processes", "s / iteration", "s in collectives", "speed-up", "efficiency"]
    if t_half is not None:
        rows.append(["1, half the meta-batch", f"{t_half:.3f}", "0", f"{t1 / t_half:.2f}x", ""])
    print_table(title, header, rows)
    md = [f"# adaptrl bench {BENCHMARK}\n", f"{title}.\n", markdown_table(header, rows), ""]
    if 2 in results:
        r2 = results[2]
        alpha, beta = link_model(r2)
        t2 = statistics.median(r2["seconds"])
        c2 = statistics.median(r2["collective_seconds"])
        calls = statistics.median(r2["calls"])
        nbytes = statistics.median(r2["gathered_bytes"])
        tasks = maml.meta_batch_size
        here = project(t1, t2, c2, calls, nbytes, tasks, alpha, beta, t_half)
        cluster = project(
            t1, t2, c2, calls, nbytes, tasks, CLUSTER_LATENCY, CLUSTER_BANDWIDTH, t_half
        )
        payload["projection"] = {
            "this_machine": {"alpha": alpha, "beta": beta, **here},
            "cluster": {"alpha": CLUSTER_LATENCY, "beta": CLUSTER_BANDWIDTH, **cluster},
            "calls_per_iteration": calls,
            "gathered_bytes_per_iteration": nbytes,
        }
        payload["speedup_2"] = t1 / t2
        limit = here["amdahl_limit_speedup"]
        amdahl = (
            f"Amdahl limit {limit:.0f}x" if limit != float("inf") else "no Amdahl limit measured"
        )
        prow = []
        for n in PROJECTED:
            a, b = here["projected"][n], cluster["projected"][n]
            prow.append(
                [n, f"{a['seconds']:.3f}", f"{a['efficiency']:.0%}",
                 f"{b['seconds']:.3f}", f"{b['efficiency']:.0%}"]
            )  # fmt: skip
        pheader = ["processes", "s (this machine's links)", "eff.", "s (cluster links)", "eff."]
        ptitle = (
            f"Projected for a meta-batch of {PROJECTED_TASKS} tasks: repeated work "
            f"{here['repeated_seconds']:.3f} s, split work {here['split_seconds']:.3f} s "
            f"(measured from {here['split_from']}) per "
            f"{maml.meta_batch_size} tasks, {calls:.0f} gathers of {nbytes / 2**20:.2f} MiB per "
            f"iteration; links alpha {alpha * 1e6:.0f} us / beta {beta / 1e9:.2f} GB/s here, "
            f"{CLUSTER_LATENCY * 1e6:.0f} us / {CLUSTER_BANDWIDTH / 1e9:.1f} GB/s assumed for a "
            f"cluster; {amdahl}"
        )
        print_table(ptitle, pheader, prow)
        md += [f"{ptitle}.\n", markdown_table(pheader, prow), ""]
        if here["superlinear"] and here["split_from"] == "2 processes":
            note = (
                "T(1) - T(2) + C(2) >= T(1) / 2 here: each process's half of the work ran at "
                "least twice as fast as the whole (smaller batches fit the caches better), so "
                "the repeated work cannot be told apart from the split work. It is taken as 0, "
                "and the projection shows only what the collectives would cost."
            )
            console().print(note)
            md += [note, ""]
    write_bench(cfg.out, payload, "\n".join(md) + "\n", seeds=[cfg.seed])
    return payload


register_bench(
    BenchSpec(
        name=BENCHMARK,
        config_cls=ScalingConfig,
        run=run_scaling,
        description="MAML-RL s per meta-iteration at 1, 2 torchrun processes; projected to 128",
        presets="maml-rl",
        preset_field="maml",
    )
)
