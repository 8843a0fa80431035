"""``adaptrl bench offpolicy-speed``: how fast the off-policy context learners collect and update.

For each learner and preset: environment steps per second of collection (one trial per replay
row, the exploring agent acting), gradient updates per second of the batched update (every replay
row at once), the same update done per task (one row's samples at a time, as a per-task Python
loop), and the parts of an update that are not learning: replay sampling and context encoding,
whose share of the update's time should stay under 20%. All timed in interleaved rounds in one
run, so ratios are fair on a shared machine.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from adaptrl.algos.meta_q import MetaQ, trial_contexts
from adaptrl.algos.offpolicy import OffPolicyLearner
from adaptrl.algos.pearl import PEARL
from adaptrl.bench.common import (
    interleaved_seconds,
    preset_with_changes,
    table_markdown,
    write_bench,
)
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Size
from adaptrl.core.table import print_table

TARGET_SHARE = 0.2
"""Replay sampling plus context encoding should take less than this share of an update."""


@dataclasses.dataclass(frozen=True)
class OffPolicySpeedConfig(Config):
    """Collection and update speed of meta-q and pearl, against a per-task loop of the update."""

    presets: tuple[str, ...] = (
        "meta-q/gridworld-varibad",
        "meta-q/gridworld-varibad:td_samples=trials",
        "meta-q/mdps-10",
        "pearl/gridworld-varibad",
        "meta-q/nav2d",
        "pearl/nav2d",
        "pearl/cheetah-vel",
    )
    """ALGO/PRESET pairs to time, each optionally with field changes (``ALGO/PRESET:FIELD=VALUE,
    ...``, values read as YAML); the MuJoCo one needs the mujoco extra."""
    fill: Size = 8
    """Iterations of collection that fill the replay before updates are timed."""
    rounds: Size = 10
    """Interleaved timing rounds (medians reported)."""
    quick: bool = False
    """CI-sized run: one preset, small batches, two rounds."""
    threads: Size = 1
    """torch threads."""
    out: Path = Path("results/bench/offpolicy-speed")
    """Directory for results.json and report.md."""


def one_row_copy(learner: OffPolicyLearner) -> OffPolicyLearner:
    """The same learner with one replay row holding the first row of ``learner``'s replay."""
    cfg = dataclasses.replace(learner.config, trials=1)
    single = type(learner)(cfg, seed=learner.seed)
    for name, value in learner.replay.data.items():
        single.replay.data[name].copy_(value[:1])
    single.replay.pos.copy_(learner.replay.pos[:1])
    single.replay.size.copy_(learner.replay.size[:1])
    return single


def sampling_and_encoding(learner: OffPolicyLearner) -> tuple[Any, Any]:
    """Two calls: the update's replay sampling alone, and its context encoding alone."""
    cfg, gen = learner.config, learner.generator
    if isinstance(learner, MetaQ) and cfg.td_samples == "trials":
        n = learner.trials_per_row()
        trial = learner.replay.sample_segments(n, generator=gen)
        feats = learner.features(trial["obs"], trial["action"], trial["reward"], trial["final_obs"])
        return (
            lambda: learner.replay.sample_segments(n, generator=gen),
            lambda: trial_contexts(learner.net.encoder, feats),
        )
    if isinstance(learner, MetaQ):
        length = learner.context_length + 1
        window, mask = learner.replay.windows(cfg.batch, length, generator=gen)
        feats = learner.features(
            window["obs"], window["action"], window["reward"], window["final_obs"]
        )
        return (
            lambda: learner.replay.windows(cfg.batch, length, generator=gen),
            lambda: learner.net.context_pair(feats, mask, cfg.context is None),
        )
    assert isinstance(learner, PEARL)
    trial = {k: v[:, 0] for k, v in learner.replay.sample_segments(1, generator=gen).items()}
    return (
        lambda: learner.replay.sample_segments(1, generator=gen),
        lambda: learner.posterior(trial),
    )


def time_preset(entry: str, bench: OffPolicySpeedConfig) -> dict[str, Any]:
    algo, config = preset_with_changes(entry)
    if bench.quick:
        config = dataclasses.replace(config, trials=4, batch=4, buffer_trials=2)
    learner: OffPolicyLearner = {"meta-q": MetaQ, "pearl": PEARL}[algo](config, seed=0)
    t0 = time.perf_counter()
    for i in range(bench.fill):
        trial, _ = learner.collect(learner.family.tasks(config.trials, "train", seed=i))
        learner.replay.add(trial)
        learner.iteration += 1
    collect_seconds = (time.perf_counter() - t0) / bench.fill
    single = one_row_copy(learner)
    rows = config.trials
    sample, encode = sampling_and_encoding(learner)
    seconds = interleaved_seconds(
        {
            "update": learner.update,
            "per_task": lambda: [single.update() for _ in range(rows)],
            "sampling": sample,
            "encoding": encode,
        },
        bench.rounds,
        description=f"time {entry}",
    )
    med = {k: statistics.median(v) for k, v in seconds.items()}
    return {
        "preset": entry,
        "rows": rows,
        "batch": config.batch,
        "collect_env_steps_per_s": rows * learner.steps / collect_seconds,
        "updates_per_s": 1.0 / med["update"],
        "per_task_loop_updates_per_s": 1.0 / med["per_task"],
        "speedup_over_per_task_loop": med["per_task"] / med["update"],
        "sampling_share": med["sampling"] / med["update"],
        "encoding_share": med["encoding"] / med["update"],
        "seconds": seconds,
    }


def run_offpolicy_speed(bench: OffPolicySpeedConfig) -> dict[str, Any]:
    torch.set_num_threads(bench.threads)
    if bench.quick:
        bench = dataclasses.replace(bench, presets=bench.presets[:1], fill=2, rounds=2)
    results = [time_preset(p, bench) for p in bench.presets]
    columns = [
        "preset",
        "collection env steps/s",
        "updates/s (rows at once)",
        "updates/s (per-task loop)",
        "speed-up",
        "sampling + encoding share",
    ]
    rows = [
        [
            r["preset"],
            f"{r['collect_env_steps_per_s']:,.0f}",
            f"{r['updates_per_s']:.1f}",
            f"{r['per_task_loop_updates_per_s']:.2f}",
            f"{r['speedup_over_per_task_loop']:.1f}x",
            f"{r['sampling_share'] + r['encoding_share']:.0%} (target < {TARGET_SHARE:.0%})",
        ]
        for r in results
    ]
    print_table("offpolicy-speed", columns, rows)
    header = {
        "update": "one gradient step on every replay row's samples; the per-task loop does the same "
        "samples one row at a time (rows one-row updates)",
        "timing": f"medians of {bench.rounds} interleaved rounds, {bench.threads} torch thread(s)",
    }
    markdown = table_markdown("offpolicy-speed", header, columns, rows)
    return write_bench(bench.out, {"benchmark": "offpolicy-speed", "results": results}, markdown)


register_bench(
    BenchSpec(
        name="offpolicy-speed",
        config_cls=OffPolicySpeedConfig,
        run=run_offpolicy_speed,
        description="meta-q / pearl collection and update speed vs a per-task loop; sampling share",
    )
)

__all__ = ["OffPolicySpeedConfig", "run_offpolicy_speed"]
