"""The process side of ``adaptrl bench scaling`` (:mod:`adaptrl.bench.scaling`), started by
``torchrun -m adaptrl.bench.scaling_worker WORKDIR [JOB]`` once per process."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.trainer import to_numbers
from adaptrl.core import distributed
from adaptrl.core.config import config_from_dict


def gather_seconds(world: distributed.World, numel: int, repeats: int = 20) -> float:
    """Median seconds of one ``all_gather`` of ``numel`` float32 per process."""
    x = torch.zeros(numel)
    times = []
    for _ in range(repeats):
        world.barrier()
        start = time.perf_counter()
        world.gather(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(workdir: Path, name: str = "job") -> None:
    """Time the learner described by ``workdir/<name>.json`` in this torchrun process; the first
    process writes ``workdir/<name>-result-<processes>.json``."""
    job = json.loads((workdir / f"{name}.json").read_text())
    torch.set_num_threads(int(job["threads"]))
    world = distributed.init_from_env()
    try:
        config = config_from_dict(MAMLRLConfig, job["maml"])
        learner = MAMLRL(config, seed=int(job["seed"]))
        to_numbers(learner.meta_train_step())  # warm-up
        seconds, comm, calls, nbytes = [], [], [], []
        for _ in range(int(job["iterations"])):
            world.barrier()
            distributed.TRAFFIC.reset()
            start = time.perf_counter()
            to_numbers(learner.meta_train_step())
            seconds.append(time.perf_counter() - start)
            comm.append(distributed.TRAFFIC.seconds)
            calls.append(distributed.TRAFFIC.calls)
            nbytes.append(distributed.TRAFFIC.bytes)
        small, large = (gather_seconds(world, n) for n in (16, 1 << 18))
        if world.is_main:
            result = {
                "processes": world.size,
                "seconds": seconds,
                "collective_seconds": comm,
                "calls": calls,
                "gathered_bytes": nbytes,
                "gather_seconds_64B": small,
                "gather_seconds_1MiB": large,
            }
            (workdir / f"{name}-result-{world.size}.json").write_text(json.dumps(result))
        world.barrier()  # leave together: a peer's closed connection must not abort the others
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    worker(Path(sys.argv[1]), *sys.argv[2:3])
    distributed.exit_process(0)
