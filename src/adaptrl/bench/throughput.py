"""``adaptrl bench env-throughput``: how fast the batched families step with a policy in the loop.

For each family and batch size three things are timed in the same run, with the same small MLP
policy choosing every action:

* **ours**: the family's :class:`~adaptrl.envs.base.BatchedEnv` (tensors in, tensors out);
* **reference**: Gymnasium's ``SyncVectorEnv`` over the same dynamics written as a plain NumPy
  ``gymnasium.Env`` (:class:`RefNav2DEnv`, :class:`RefTabularMDPEnv`), fed the way a user would
  (NumPy obs -> torch -> policy -> NumPy action);
* **floor**: the policy forward pass and action sampling alone on a batch of the same shape, the
  lower bound any rollout on this machine pays;
* **environments alone**: ours and the reference stepped with a fixed action batch, no policy.

With the same policy in both loops, ours/reference can never exceed reference time / floor time
(the *ceiling*, reported): a free environment would still pay for the policy. The env-alone ratio
shows what the batched environment itself gains. Reported: env-steps/s (``batch * steps /
seconds``, median over repeats) for each, the speed-up ours/reference and the time ratio
ours/floor; the reference runs with ``copy=False`` (see :mod:`adaptrl.envs.reference`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv
from torch import nn

from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Size, config_to_dict
from adaptrl.core.progress import progress
from adaptrl.core.provenance import provenance, write_json
from adaptrl.core.table import markdown_table, print_table
from adaptrl.envs import make_family
from adaptrl.envs.base import TaskBatch, TaskFamily
from adaptrl.envs.reference import reference_vector_env

BENCHMARK = "env-throughput"
DEFAULT_BATCH_SIZES = (20, 400, 4000)
QUICK_BATCH_SIZES = (20, 400)
DEFAULT_FAMILIES = ("nav2d-goal-v0", "tabular-mdp-v0")
TARGET_SPEEDUP = 50.0
"""Ours must be at least this many times faster than SyncVectorEnv at batch >= TARGET_MIN_BATCH."""
TARGET_FLOOR_RATIO = 2.0
"""Ours must take at most this many times the policy-forward floor's time."""
TARGET_MIN_BATCH = 400


# --- the policy in the loop ------------------------------------------------------------------
def sample_categorical(logits: torch.Tensor) -> torch.Tensor:
    """One draw per row from ``softmax(logits)`` by inverting the CDF with a single uniform.

    Same distribution as ``torch.multinomial(logits.softmax(-1), 1)`` but ~5x cheaper at batch
    4000 on CPU and free of argument checks that read values back (host syncs).
    """
    weights = (logits - logits.amax(-1, keepdim=True)).exp()
    cdf = weights.cumsum(-1)
    u = torch.rand(logits.shape[0], 1, device=logits.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(-1)  # u <= cdf[-1]: always a valid index


class SmallPolicy(nn.Module):
    """A small tanh MLP (obs -> 64 -> 64 -> head) that samples one action per row.

    Discrete observations are one-hot encoded: the one-hot input layer is stored as a table of its
    rows (``one_hot(s) @ W.T + b == table[s]``), looked up instead of multiplied. Discrete actions
    come from a categorical over logits, continuous ones from a Gaussian around the predicted mean.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden: int = 64):
        super().__init__()
        discrete_obs = isinstance(observation_space, gym.spaces.Discrete)
        obs_dim = (
            int(observation_space.n) if discrete_obs else int(np.prod(observation_space.shape))
        )
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        first = nn.Linear(obs_dim, hidden)
        self.one_hot_layer: nn.Embedding | None = None
        if discrete_obs:
            self.one_hot_layer = nn.Embedding(obs_dim, hidden)
            with torch.no_grad():
                self.one_hot_layer.weight.copy_(first.weight.t() + first.bias)
        self.input_layer = None if discrete_obs else first
        self.body = nn.Sequential(
            nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, out)
        )
        self.log_std = nn.Parameter(torch.full((out,), math.log(0.1)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits (discrete actions) or Gaussian means (continuous), one row per observation."""
        if self.one_hot_layer is not None:
            return self.body(self.one_hot_layer(obs.long()))
        assert self.input_layer is not None
        return self.body(self.input_layer(obs.float()))

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Sample one action per row (call under ``torch.no_grad()``)."""
        head = self.forward(obs)
        if self.discrete:
            return sample_categorical(head)
        return head + self.log_std.exp() * torch.randn_like(head)


# --- timing ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TimingPlan:
    """How long and how often each measurement runs."""

    target_seconds: float
    """Each timed repeat is sized (by a short calibration) to take about this long."""
    repeats: int
    """Timed repeats per measurement; the median is reported."""
    warmup_steps: int
    """Untimed steps before calibration."""
    max_steps: int
    """Upper bound on the steps of one repeat."""


FULL_PLAN = TimingPlan(target_seconds=0.5, repeats=5, warmup_steps=20, max_steps=100_000)
QUICK_PLAN = TimingPlan(target_seconds=0.01, repeats=2, warmup_steps=2, max_steps=200)


def _calibrate(run: Callable[[int], float], plan: TimingPlan) -> int:
    """Steps per repeat so that one repeat takes about ``plan.target_seconds`` (at least 1)."""
    n = 1
    while True:
        seconds = run(n)
        if seconds >= 0.2 * plan.target_seconds or n >= plan.max_steps:
            break
        n = min(n * 4, plan.max_steps)
    per_step = max(seconds / n, 1e-9)
    return int(min(max(round(plan.target_seconds / per_step), 1), plan.max_steps))


def _summary(steps: int, times: list[float], batch_size: int) -> dict[str, Any]:
    """Median seconds of the timed repeats and the env-steps/s they give."""
    median = statistics.median(times)
    return {
        "steps": steps,
        "repeat_seconds": times,
        "median_seconds": median,
        "seconds_per_step": median / steps,
        "env_steps_per_second": batch_size * steps / median,
    }


def timed(step: Callable[[], Any]) -> Callable[[int], float]:
    """``n -> seconds`` of ``n`` calls of ``step`` (without autograd)."""

    def run(n: int) -> float:
        with torch.no_grad():
            start = time.perf_counter()
            for _ in range(n):
                step()
            return time.perf_counter() - start

    return run


def timing_loops(
    family: TaskFamily, policy: SmallPolicy, tasks: TaskBatch, seed: int
) -> tuple[dict[str, Callable[[int], float]], list[SyncVectorEnv]]:
    """The loops timed, each ``n -> seconds``: ours (policy -> ``BatchedEnv.step`` -> next obs,
    all tensors, no host sync), the reference (NumPy obs -> torch -> policy -> NumPy action ->
    ``SyncVectorEnv.step``, as a user writes it), the floor (the policy alone on a fixed batch
    of observations) and each environment alone with a fixed valid action batch; and the
    Gymnasium environments to close afterwards."""
    ours, floor_env, ours_alone = (family.make_env(len(tasks)) for _ in range(3))
    for env in (ours, floor_env, ours_alone):
        env.set_tasks(tasks)
    ref, ref_alone = reference_vector_env(family, tasks), reference_vector_env(family, tasks)
    obs = {"ours": ours.reset(seed=seed), "ref": ref.reset(seed=seed)[0]}
    fixed_obs = floor_env.reset(seed=seed)
    with torch.no_grad():
        action = policy.act(ours_alone.reset(seed=seed))
        ref_action = policy.act(torch.as_tensor(ref_alone.reset(seed=seed)[0])).numpy()

    def ours_step() -> None:
        obs["ours"] = ours.step(policy.act(obs["ours"])).obs

    def reference_step() -> None:
        obs["ref"] = ref.step(policy.act(torch.as_tensor(obs["ref"])).numpy())[0]

    loops = {
        "ours": timed(ours_step),
        "reference": timed(reference_step),
        "floor": timed(lambda: policy.act(fixed_obs)),
        "ours_env_only": timed(lambda: ours_alone.step(action)),
        "reference_env_only": timed(lambda: ref_alone.step(ref_action)),
    }
    return loops, [ref, ref_alone]


def measure_family(
    family_id: str, batch_size: int, plan: TimingPlan, seed: int = 0
) -> dict[str, Any]:
    """Time ours, the Gymnasium reference and the policy floor for one (family, batch size)."""
    family = make_family(family_id)
    tasks = family.tasks(batch_size, "train", seed)
    torch.manual_seed(seed)
    policy = SmallPolicy(family.observation_space, family.action_space).eval()
    torch.manual_seed(seed)  # the policy's action sampling
    loops, gym_envs = timing_loops(family, policy, tasks, seed)
    steps: dict[str, int] = {}
    for name, loop in loops.items():
        loop(plan.warmup_steps)
        steps[name] = _calibrate(loop, plan)
    # interleave the repeats so that a burst of load elsewhere hits all three alike
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(plan.repeats):
        for name, loop in loops.items():
            times[name].append(loop(steps[name]))
    for env in gym_envs:
        env.close()
    row: dict[str, Any] = {"family": family_id, "batch_size": batch_size}
    for name in loops:
        row[name] = _summary(steps[name], times[name], batch_size)
    ours, ref, floor = row["ours"], row["reference"], row["floor"]
    row["speedup_vs_reference"] = ours["env_steps_per_second"] / ref["env_steps_per_second"]
    row["ours_over_floor"] = ours["seconds_per_step"] / floor["seconds_per_step"]
    # the best speed-up any environment could show with this policy in the loop: a free env
    row["speedup_ceiling"] = ref["seconds_per_step"] / floor["seconds_per_step"]
    row["env_only_speedup"] = (
        row["ours_env_only"]["env_steps_per_second"]
        / row["reference_env_only"]["env_steps_per_second"]
    )
    row["meets_speedup_target"] = (
        row["speedup_vs_reference"] >= TARGET_SPEEDUP if batch_size >= TARGET_MIN_BATCH else None
    )
    row["meets_floor_target"] = row["ours_over_floor"] <= TARGET_FLOOR_RATIO
    return row


def _loadavg() -> float | None:
    """The 1-minute load average, or ``None`` where the OS does not report it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclasses.dataclass(frozen=True)
class ThroughputConfig(Config):
    """Env-steps/s of the batched families vs Gymnasium's SyncVectorEnv and the policy floor."""

    batch_sizes: tuple[Size, ...] | None = None
    """Batch sizes to time (default: 20 400 4000; 20 400 with --quick)."""
    families: tuple[str, ...] = DEFAULT_FAMILIES
    """Family ids to time (each needs a reference Gymnasium env here)."""
    quick: bool = False
    """Smoke run: tiny step counts, a few seconds; numbers are not meaningful."""
    out: Path = Path("results/env-throughput")
    """Where results.json and report.md are written."""
    seed: int = 0
    """Seed for tasks, policy weights, env and action sampling."""
    threads: Size | None = None
    """torch.set_num_threads for the run (default: torch's own choice; recorded either way)."""


def settings_of(config: ThroughputConfig, batch_sizes: tuple[int, ...]) -> dict[str, Any]:
    """What a run's results record about how it ran."""
    plan = QUICK_PLAN if config.quick else FULL_PLAN
    return {
        "batch_sizes": list(batch_sizes),
        "families": list(config.families),
        "quick": config.quick,
        "torch_threads": torch.get_num_threads(),
        "threads_requested": config.threads,
        "plan": config_to_dict(plan),
        "policy": "SmallPolicy: obs (one-hot if discrete) -> 64 -> 64 -> head, tanh; "
        "Gaussian or inverse-CDF categorical sampling",
        "reference": "gymnasium.vector.SyncVectorEnv(copy=False, autoreset SAME_STEP)",
        "versions": {"gymnasium": gym.__version__, "numpy": np.__version__},
        "targets": {
            "speedup_vs_reference_min": TARGET_SPEEDUP,
            "at_batch_sizes_from": TARGET_MIN_BATCH,
            "ours_over_floor_max": TARGET_FLOOR_RATIO,
        },
    }


def run_throughput(config: ThroughputConfig) -> dict[str, Any]:
    """Run the benchmark, print its table and write ``results.json`` (every raw timing with
    provenance) and ``report.md`` to ``config.out``; returns the results. ``threads`` is
    restored after the run."""
    batch_sizes = config.batch_sizes or (QUICK_BATCH_SIZES if config.quick else DEFAULT_BATCH_SIZES)
    plan = QUICK_PLAN if config.quick else FULL_PLAN
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    load_before = _loadavg()
    seeds = {"seed": config.seed, "tasks": f"family.tasks(batch, 'train', {config.seed})"}
    try:
        prov = provenance(seeds=seeds)  # records the threads the run uses
        settings = settings_of(config, batch_sizes)
        cells = [(f, b) for f in config.families for b in batch_sizes]
        rows = []
        with progress(total=len(cells), description=BENCHMARK, disable=config.quick) as bar:
            for family_id, batch_size in cells:
                rows.append(measure_family(family_id, batch_size, plan, seed=config.seed))
                bar.advance()
    finally:
        torch.set_num_threads(previous_threads)
    # a shared machine slows multi-threaded torch badly: say how busy it was
    settings["loadavg_1min"] = {"before": load_before, "after": _loadavg()}
    result = {"benchmark": BENCHMARK, **prov, "settings": settings}
    result["rows"] = rows
    print_table(f"{BENCHMARK} ({result['machine']['cpu']})", COLUMNS, [_row_cells(r) for r in rows])
    result["markdown"] = format_markdown(result)
    config.out.mkdir(parents=True, exist_ok=True)
    write_json(config.out / "results.json", result)
    (config.out / "report.md").write_text(result["markdown"])
    return result


# --- reporting -------------------------------------------------------------------------------
COLUMNS = (
    "family",
    "batch",
    "ours steps/s",
    "SyncVectorEnv steps/s",
    "policy floor steps/s",
    "ours / SyncVectorEnv",
    "ceiling (ref / floor)",
    "ours time / floor time",
    "env alone: ours / SyncVectorEnv",
)


def _fmt_load(settings: dict[str, Any]) -> str:
    load = settings.get("loadavg_1min") or {}
    return " -> ".join("n/a" if v is None else f"{v:.2f}" for v in load.values()) or "n/a"


def _row_cells(row: dict[str, Any]) -> list[str]:
    speed = f"{row['speedup_vs_reference']:.1f}x"
    if row["meets_speedup_target"] is not None:
        speed += " ok" if row["meets_speedup_target"] else " BELOW 50x"
    floor = f"{row['ours_over_floor']:.2f}x" + (" ok" if row["meets_floor_target"] else " OVER 2x")
    rate = lambda name: f"{row[name]['env_steps_per_second']:,.0f}"  # noqa: E731
    return [
        row["family"],
        str(row["batch_size"]),
        rate("ours"),
        rate("reference"),
        rate("floor"),
        speed,
        f"{row['speedup_ceiling']:.1f}x",
        floor,
        f"{row['env_only_speedup']:.1f}x",
    ]


def format_markdown(result: dict[str, Any]) -> str:
    """The results as a markdown table with a provenance line underneath."""
    m, s = result["machine"], result["settings"]
    lines = [
        markdown_table(COLUMNS, [_row_cells(r) for r in result["rows"]]),
        "",
        f"Env-steps/s = batch x steps / s, median of {s['plan']['repeats']} repeats. Targets: "
        f">= {TARGET_SPEEDUP:.0f}x SyncVectorEnv at batch >= {TARGET_MIN_BATCH}, "
        f"<= {TARGET_FLOOR_RATIO:.0f}x the policy floor. The ceiling is the speed-up a zero-cost env "
        "would show with this policy in the loop (reference time / floor time). The last column "
        "steps both environments alone with a fixed action batch (no policy)."
        + (" QUICK smoke run: numbers not meaningful." if s["quick"] else ""),
        f"Commit {result['commit']}, {result['date']}; {m['cpu']} ({m['cores']} cores), "
        f"torch {m['torch']} with {s['torch_threads']} threads, gymnasium "
        f"{s['versions']['gymnasium']}; seed {result['seeds']['seed']}; "
        f"command `{result['command']}`; 1-min load average {_fmt_load(s)}.",
    ]
    return "\n".join(lines) + "\n"


def main(config: ThroughputConfig) -> int:
    """Run the benchmark; the exit code."""
    run_throughput(config)
    return 0


register_bench(
    BenchSpec(
        "env-throughput",
        ThroughputConfig,
        main,
        "env steps/s of batched families vs Gymnasium SyncVectorEnv, with the floor",
    )
)
