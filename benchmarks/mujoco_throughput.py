"""Env-steps/s of the MuJoCo task families: our thin batched loop vs Gymnasium's vector envs.

For each batch size (rows = tasks x rollouts stepped together) it times, on the same seeded tasks
and the same pre-drawn actions (so every method does the same physics):

* ``raw-loop``: a plain loop over N unwrapped Gymnasium robots (``HalfCheetahEnv.step``, manual
  reset at the horizon, no task reward, no tensors): the floor any Gymnasium-based design pays;
* ``ours-loop``: ``family.make_env(N)`` (``backend="loop"``, the default): tensors in and out, task
  rewards, same-step auto-reset;
* ``ours-loop-2w``: the same with ``workers=2`` (two forked processes, half the rows each);
* ``ours-sync``: ``backend="sync"``, the foundation's adapter over ``gym.vector.SyncVectorEnv``;
* ``gym-sync``: ``SyncVectorEnv`` of ``TimeLimit(TaskRewardWrapper(robot))`` with NumPy actions,
  as a Gymnasium user writes it: the in-run reference every ratio is taken against;
* ``gym-async``: the same under ``AsyncVectorEnv`` (one worker process per env, Gymnasium's only
  layout; at most ``--async-max-batch`` rows, since 400 processes on a 2-core machine only thrash).

Then one meta-iteration's worth of sampling: ``tasks x rollouts`` rows for one episode of
``horizon`` steps with a 100-100 ReLU Gaussian policy (MAML's) choosing the actions, for the best
backend; MAML-RL samples that twice per iteration (before and after the inner step).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/mujoco_throughput.py
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/mujoco_throughput.py --quick
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import tyro

from adaptrl.core.progress import progress
from adaptrl.core.provenance import provenance, write_json
from adaptrl.core.table import print_table
from adaptrl.envs import make_family
from adaptrl.envs.mujoco import MujocoTaskFamily
from adaptrl.eval.stats import mean_ci


@dataclasses.dataclass(frozen=True)
class MujocoThroughputConfig:
    """What to time and where to write the results."""

    family: str = "halfcheetah-vel-v0"
    """A MuJoCo family id."""
    batch_sizes: tuple[int, ...] = (20, 100, 400)
    """Rows stepped together (MAML-RL: tasks x rollouts = 20 x 20 = 400)."""
    steps: int = 200
    """Steps per timed repeat (one episode at H=200, so every repeat includes one auto-reset)."""
    repeats: int = 3
    """Rounds of timing (each times every method once); medians reported, CIs over rounds."""
    async_max_batch: int = 20
    """Largest batch timed with AsyncVectorEnv (one process per env)."""
    tasks: int = 20
    """Tasks of the meta-iteration sampling measurement."""
    rollouts: int = 20
    """Rollouts per task of the meta-iteration sampling measurement."""
    seed: int = 0
    """Seed of the tasks, env resets, actions and policy."""
    quick: bool = False
    """A smoke run: batch 4 and 8, 10 steps, 1 repeat, small sampling measurement."""
    out: Path = Path("runs/bench/mujoco_throughput.json")
    """Where the JSON with every raw timing and its provenance goes."""


def _actions(steps: int, batch: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (steps, batch, dim)).astype(np.float32)


def _time_raw(family: MujocoTaskFamily, batch: int, actions: np.ndarray, seed: int) -> float:
    robots = [family.make_robot() for _ in range(batch)]
    for i, r in enumerate(robots):
        r.reset(seed=seed + i)
    obs = np.zeros((batch, family.robot_obs_dim), np.float32)
    horizon = family.max_episode_steps
    start = time.perf_counter()
    for t, a in enumerate(actions):
        for i, r in enumerate(robots):
            obs[i] = r.step(a[i])[0]
        if (t + 1) % horizon == 0:
            for i, r in enumerate(robots):
                obs[i] = r.reset()[0]
    seconds = time.perf_counter() - start
    for r in robots:
        r.close()
    return seconds


def _time_steps(env: Any, actions: Any) -> float:
    """Seconds to step a (reset) vector env through ``actions`` row by row; closes the env."""
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    seconds = time.perf_counter() - start
    env.close()
    return seconds


def _time_ours(family: MujocoTaskFamily, batch: int, actions: np.ndarray, seed: int) -> float:
    env = family.make_env(batch)
    env.set_tasks(family.tasks(batch, "train", seed))
    env.reset(seed=seed)
    return _time_steps(env, torch.from_numpy(actions))


def _gym_vector(family: MujocoTaskFamily, batch: int, seed: int, kind: str) -> gym.vector.VectorEnv:
    tasks = family.tasks(batch, "train", seed)

    def make(i: int):
        def fn() -> gym.Env:
            env = family.make_sub_env()
            env.get_wrapper_attr("set_task")(tasks[i])
            return env

        return fn

    cls = gym.vector.SyncVectorEnv if kind == "sync" else gym.vector.AsyncVectorEnv
    return cls([make(i) for i in range(batch)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def _time_gym(family: MujocoTaskFamily, batch: int, actions: np.ndarray, seed: int, kind: str):
    vec = _gym_vector(family, batch, seed, kind)
    vec.reset(seed=seed)
    return _time_steps(vec, actions)


class GaussianMLP(torch.nn.Module):
    """MAML's 100-100 ReLU Gaussian policy, only to put a realistic forward in the loop."""

    def __init__(self, obs_dim: int, act_dim: int):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(obs_dim, 100),
            torch.nn.ReLU(),
            torch.nn.Linear(100, 100),
            torch.nn.ReLU(),
            torch.nn.Linear(100, act_dim),
        )
        self.log_std = torch.nn.Parameter(torch.zeros(act_dim))

    def act(self, obs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        mean = self.net(obs)
        return mean + self.log_std.exp() * torch.randn(mean.shape, generator=gen)


def time_meta_iteration_sampling(family: MujocoTaskFamily, config: MujocoThroughputConfig) -> dict:
    """Seconds to sample ``tasks x rollouts`` episodes of ``horizon`` steps with a policy."""
    batch = config.tasks * config.rollouts
    tasks = family.tasks(config.tasks, "train", config.seed)
    rows = tasks[torch.arange(config.tasks).repeat_interleave(config.rollouts)]
    torch.manual_seed(config.seed)  # the policy's initial weights only
    policy = GaussianMLP(family.observation_space.shape[0], family.action_space.shape[0])
    gen = torch.Generator().manual_seed(config.seed)
    env = family.make_env(batch)
    env.set_tasks(rows)
    times, env_times = [], []
    for rep in range(config.repeats):
        obs = env.reset(seed=config.seed + rep)
        env_seconds = 0.0
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(family.max_episode_steps):
                action = policy.act(obs, gen)
                t0 = time.perf_counter()
                obs = env.step(action).obs
                env_seconds += time.perf_counter() - t0
        times.append(time.perf_counter() - start)
        env_times.append(env_seconds)
    env.close()
    return {
        "rows": batch,
        "env_steps": batch * family.max_episode_steps,
        "seconds": times,
        "median_seconds": statistics.median(times),
        "env_step_seconds": env_times,
        "per_meta_iteration_seconds": 2 * statistics.median(times),
    }


def run(config: MujocoThroughputConfig) -> dict[str, Any]:
    if config.quick:
        config = dataclasses.replace(
            config, batch_sizes=(4, 8), steps=10, repeats=1, tasks=2, rollouts=2
        )
    family = make_family(config.family)
    assert isinstance(family, MujocoTaskFamily), f"{config.family} is not a MuJoCo family"
    families = {
        "ours-loop": family,
        "ours-loop-2w": make_family(config.family, workers=2),
        "ours-sync": make_family(config.family, backend="sync"),
    }
    dim = family.action_space.shape[0]
    methods = ["raw-loop", "ours-loop", "ours-loop-2w", "ours-sync", "gym-sync", "gym-async"]
    plan = [
        (b, m)
        for b in config.batch_sizes
        for m in methods
        if m != "gym-async" or b <= config.async_max_batch
    ]
    # Repeats are interleaved (every method once per round) so that load drifting on a shared
    # machine hits all methods alike; ratios are taken within a round, CIs over rounds.
    times: dict[tuple[int, str], list[float]] = {key: [] for key in plan}
    bar = progress(total=len(plan) * config.repeats, description="mujoco throughput")
    with bar:
        for rep in range(config.repeats):
            for batch, method in plan:
                actions = _actions(config.steps, batch, dim, config.seed + rep)
                seed = config.seed + rep
                if method == "raw-loop":
                    t = _time_raw(family, batch, actions, seed)
                elif method.startswith("ours-"):
                    t = _time_ours(families[method], batch, actions, seed)
                else:
                    t = _time_gym(family, batch, actions, seed, method.split("-")[1])
                times[batch, method].append(t)
                bar.advance()
    rows: list[dict[str, Any]] = []
    for batch, method in plan:
        t = times[batch, method]
        rates = [batch * config.steps / x for x in t]
        row: dict[str, Any] = {
            "batch": batch,
            "method": method,
            "repeat_seconds": t,
            "env_steps_per_second": batch * config.steps / statistics.median(t),
        }
        row["rate_mean"], row["rate_ci95"] = mean_ci(rates)
        for ref in ("gym-sync", "raw-loop"):
            ratios = [r / x for r, x in zip(times[batch, ref], t, strict=True)]  # time ratio
            row[f"vs_{ref}_mean"], row[f"vs_{ref}_ci95"] = mean_ci(ratios)
        rows.append(row)
    sampling = time_meta_iteration_sampling(family, config)
    return {
        **provenance(seeds={"seed": config.seed, "tasks": "family.tasks(batch, 'train', seed)"}),
        "config": dataclasses.asdict(config),
        "loadavg_1min": os.getloadavg()[0],
        "rows": rows,
        "meta_iteration_sampling": sampling,
    }


def main(config: MujocoThroughputConfig) -> int:
    result = run(config)
    table = [
        [
            r["batch"],
            r["method"],
            f"{r['env_steps_per_second']:,.0f}",
            f"± {r['rate_ci95']:,.0f}",
            f"{r['vs_gym-sync_mean']:.2f}x ± {r['vs_gym-sync_ci95']:.2f}",
            f"{r['vs_raw-loop_mean']:.2f}x ± {r['vs_raw-loop_ci95']:.2f}",
        ]
        for r in result["rows"]
    ]
    print_table(
        f"{config.family}: env steps/s (median of repeats; load {result['loadavg_1min']:.1f})",
        ["batch", "method", "steps/s", "95% CI (mean)", "vs gym-sync", "vs raw-loop"],
        table,
    )
    s = result["meta_iteration_sampling"]
    print(
        f"sampling {s['rows']} rows x {s['env_steps'] // s['rows']} steps ({s['env_steps']:,} env "
        f"steps) with a 100-100 policy: {s['median_seconds']:.2f} s median "
        f"(repeats {', '.join(f'{x:.2f}' for x in s['seconds'])}); "
        f"x2 per MAML iteration = {s['per_meta_iteration_seconds']:.2f} s"
    )
    config.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(config.out, result)
    print(f"wrote {config.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(MujocoThroughputConfig)))
