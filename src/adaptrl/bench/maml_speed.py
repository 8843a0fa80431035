"""``adaptrl bench maml-speed``: seconds per MAML-TRPO meta-iteration on ``nav2d-goal-v0``.

The configuration is the 2D-navigation config of the widely used pytorch-maml-rl: 20 tasks x 20
rollouts, H = 100, a 64-64 tanh Gaussian policy, one inner VPG step (lr 0.1), TRPO with max KL
0.01, 10 conjugate-gradient iterations, damping 1e-5 and up to 15 line-search steps (ratio 0.8).
Three things are timed in the same run:

* **ours**: :class:`~adaptrl.algos.maml_rl.MAMLRL` (one batched env of 400 rows, per-task parameters
  by ``vmap``, the inner gradient by ``torch.func.grad`` vmapped over tasks);
* **reference**: :class:`ReferenceMAMLTRPO`, the straightforward implementation: a Python loop over
  tasks, each sampling its 20 rollouts from Gymnasium's ``SyncVectorEnv`` of plain NumPy envs
  (NumPy -> torch -> policy -> NumPy every step), adapting with ``torch.autograd.grad(...,
  create_graph=True)`` one task at a time, and the TRPO loss / KL looping over tasks again. It uses
  the same math kernels (returns, linear baseline, CG, line search) and the same TRPO solver as ours,
  so the ratio measures the data path, not different algorithms;
* **floor**: the rollouts' policy-forward cost alone: 2 x H forwards + samples at batch 400 (shared
  parameters before adaptation, per-task parameters after), what any implementation pays.

Memory: resident set size after every one of ours' iterations, live tensor bytes, and Python's
traced allocations (``tracemalloc``) over extra iterations; none may grow.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.trainer import train
from adaptrl.baselines.pg import mktn_config, variant_learner
from adaptrl.bench.common import interleaved_seconds, peak_per_tenth, resident_mb, write_bench
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Size, config_to_dict
from adaptrl.core.errors import ConfigError
from adaptrl.core.presets import load_preset
from adaptrl.core.progress import progress
from adaptrl.core.seeding import derive_seed, make_generator
from adaptrl.core.table import markdown_table, print_table
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.envs.reference import RefNav2DEnv
from adaptrl.nn import heads
from adaptrl.nn.policies import Params, batched_policy_dist, policy_dist
from adaptrl.rl.baseline import baseline_advantages
from adaptrl.rl.losses import vpg_loss
from adaptrl.rl.returns import normalize
from adaptrl.rl.trpo import trpo_step

BENCHMARK = "maml-speed"
TARGET_SECONDS = 0.3
"""Ours must take at most this many seconds per meta-iteration."""
PYTORCH_MAML_RL_SECONDS = (9.0, 10.0)
"""pytorch-maml-rl's own time per meta-iteration on this kind of 2-core machine (issue text)."""


# --- the in-run reference: per-task loops over SyncVectorEnv ----------------------------------
class ReferenceMAMLTRPO:
    """Straightforward MAML-TRPO: one task at a time, Gymnasium ``SyncVectorEnv`` rollouts."""

    def __init__(self, config: MAMLRLConfig, seed: int = 0):
        fam = config.family
        assert isinstance(fam, Nav2DConfig)
        self.c, self.fam, self.seed, self.iteration = config, fam, seed, 0
        self.learner_shell = MAMLRL(config, seed=seed)  # same initial policy and task draws
        self.policy = self.learner_shell.policy
        self.spec = self.policy.spec
        self.params: Params = {k: v.detach().clone() for k, v in self.learner_shell.params.items()}
        self.gen = make_generator(seed, "reference", "actions")
        self.vec = SyncVectorEnv(
            [
                partial(
                    RefNav2DEnv,
                    np.zeros(2),
                    fam.max_action,
                    fam.horizon,
                    fam.goal_radius,
                    fam.reward,
                )
                for _ in range(config.rollouts_per_task)
            ],
            copy=False,
            autoreset_mode=AutoresetMode.SAME_STEP,
        )

    def sample(self, goal: np.ndarray, params: Params, seed: int) -> dict[str, torch.Tensor]:
        """E episodes of one task; arrays [T, E, ...], steps after an episode's end masked out."""
        e = self.c.rollouts_per_task
        self.vec.set_attr("goal", [goal.astype(np.float32)] * e)
        obs, _ = self.vec.reset(seed=seed)
        alive = np.ones(e, dtype=bool)
        rows: dict[str, list[Any]] = {"obs": [], "actions": [], "rewards": [], "mask": []}
        for _ in range(self.fam.horizon):
            o = torch.as_tensor(obs, dtype=torch.float32)
            with torch.no_grad():
                action = heads.sample(self.spec, policy_dist(self.policy, params, o), self.gen)
            obs, reward, term, trunc, _ = self.vec.step(action.numpy())
            rows["obs"].append(o)
            rows["actions"].append(action)
            rows["rewards"].append(torch.as_tensor(reward * alive, dtype=torch.float32))
            rows["mask"].append(torch.as_tensor(alive, dtype=torch.float32))
            alive = alive & ~(term | trunc)
            if not alive.any():
                break
        out = {k: torch.stack(v) for k, v in rows.items()}
        t = out["rewards"].shape[0]
        done = torch.zeros_like(out["mask"], dtype=torch.bool)  # masked rewards end nothing early
        timestep = torch.arange(t)[:, None].expand(t, e)
        one_task = (x[:, None] for x in (out["rewards"], done, out["obs"], timestep, out["mask"]))
        adv = baseline_advantages(*one_task, self.c.gamma)[:, 0]
        out["advantages"] = normalize(adv, out["mask"]) * out["mask"]
        with torch.no_grad():
            dist = policy_dist(self.policy, params, out["obs"])
        out["dist"] = dist
        out["logp"] = heads.log_prob(self.spec, dist, out["actions"])
        return out

    def adapt(self, params: Params, ep: dict[str, torch.Tensor], create_graph: bool) -> Params:
        logp = heads.log_prob(self.spec, policy_dist(self.policy, params, ep["obs"]), ep["actions"])
        loss = vpg_loss(logp, ep["advantages"], ep["mask"])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        return {k: p - self.c.inner_lr * g for (k, p), g in zip(params.items(), grads, strict=True)}

    def step(self) -> dict[str, float]:
        c = self.c
        tasks = self.learner_shell.family.tasks(
            c.meta_batch_size,
            "train",
            seed=derive_seed(self.seed, "maml-rl", "tasks", self.iteration),
        )
        goals = tasks.goal.numpy()
        theta = {k: v.detach().requires_grad_(True) for k, v in self.params.items()}
        data = []
        for g, goal in enumerate(goals):
            train = self.sample(goal, self.params, seed=derive_seed(self.seed, self.iteration, g))
            phi = {k: v.detach() for k, v in self.adapt(theta, train, create_graph=False).items()}
            valid = self.sample(goal, phi, seed=derive_seed(self.seed, self.iteration, g, "post"))
            data.append((train, valid))
        names = list(self.params)

        def objective(values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            params = dict(zip(names, values, strict=True))
            loss = kl = torch.zeros(())
            for train, valid in data:
                phi = self.adapt(params, train, create_graph=True)
                dist = policy_dist(self.policy, phi, valid["obs"])
                logp = heads.log_prob(self.spec, dist, valid["actions"])
                surrogate = -torch.exp(logp - valid["logp"]) * valid["advantages"]
                divergence = heads.kl(self.spec, valid["dist"], dist)
                loss = loss + (surrogate * valid["mask"]).sum() / valid["mask"].sum()
                kl = kl + (divergence * valid["mask"]).sum() / valid["mask"].sum()
            return loss / len(data), kl / len(data)

        new, info = trpo_step(
            [self.params[k] for k in names],
            objective,
            autograd_line_search=True,  # its inner steps take torch.autograd.grad
            **c.trpo_options(),
        )
        self.params = {k: v.detach() for k, v in zip(names, new, strict=True)}
        self.iteration += 1
        return {k: float(v) for k, v in info.items() if isinstance(v, int | float | torch.Tensor)}

    def close(self) -> None:
        self.vec.close()


# --- measurements -----------------------------------------------------------------------------
def live_tensor_bytes() -> int:
    """Bytes held by tensors reachable from Python objects (torch has no CPU allocator stats)."""
    total = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance() on deprecated torch aliases warns
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor) and not obj.is_meta:
                    total += obj.untyped_storage().nbytes()
            except (RuntimeError, ReferenceError):
                continue
    return total


def time_floor(learner: MAMLRL, repeats: int = 5) -> float:
    """Seconds for the rollouts' policy forwards and samples alone (2 x H steps at batch G*E)."""
    c = learner.config
    g, e, h = c.meta_batch_size, c.rollouts_per_task, learner.family.max_episode_steps
    obs = torch.zeros(g, e, 2)
    theta = {k: v.detach() for k, v in learner.params.items()}
    phi = {k: v.expand(g, *v.shape).clone() for k, v in theta.items()}
    gen = make_generator(0, "floor")

    @torch.no_grad()
    def rollout_forwards() -> None:
        for _ in range(h):
            dist = policy_dist(learner.policy, theta, obs).reshape(g * e, -1)
            heads.sample(learner.spec, dist, gen)
        for _ in range(h):
            dist = batched_policy_dist(learner.policy, phi, obs).reshape(g * e, -1)
            heads.sample(learner.spec, dist, gen)

    return statistics.median(interleaved_seconds({"floor": rollout_forwards}, repeats)["floor"])


def time_exact_products(
    learner: MAMLRL, repeats: int = 3, blocks: tuple[int, ...] = ()
) -> dict[str, float]:
    """Seconds for the ``cg_iters`` exact second-order Fisher-vector products of one TRPO step,
    as one block of all steps (``"one block"``) and in blocks of each of ``blocks`` time steps
    (``"blocks of N"``; ``fvp_block``), rounds interleaved on the same data and vector.

    Every exact implementation of the reference's solver performs these products (each two inner
    Hessian-vector products over the pre-update rollouts and a Fisher product over the post-update
    ones), so they bound an exact meta-iteration from below, beside the rollouts' floor.
    """
    c = learner.config
    tasks = learner.family.tasks(c.meta_batch_size, "train", seed=0)
    theta = {k: v.detach() for k, v in learner.params.items()}
    pre = learner.rollouts(tasks, theta, per_task=False, env_seed=1)
    with torch.no_grad():
        phi = learner.adapt_params(theta, [pre], [c.inner_lr], first_order=True)
    post = learner.rollouts(tasks, phi, per_task=True, env_seed=2)
    v = torch.randn(sum(t.numel() for t in theta.values()), generator=make_generator(0, "v"))
    products = {}
    for block in (None, *blocks):
        learner.config = dataclasses.replace(c, fvp_block=block)
        fvp = learner.structured_fvp(theta, [pre], post, c.cg_damping)
        label = "one block" if block is None else f"blocks of {block}"
        products[label] = lambda fvp=fvp: [fvp(v) for _ in range(c.cg_iters)]
    learner.config = c
    seconds = interleaved_seconds(products, repeats)
    return {label: statistics.median(s) for label, s in seconds.items()}


VARIANTS: dict[str, Callable[[MAMLRLConfig], MAMLRLConfig]] = {
    "autograd-fvp": partial(dataclasses.replace, fvp="autograd"),
    "first-order": partial(dataclasses.replace, first_order=True),
    "fvp-subsample-0.1": partial(dataclasses.replace, fvp_subsample=0.1),
    "fvp-block-10": partial(dataclasses.replace, fvp_block=10),
    "mktn": mktn_config,
}
"""Other configurations timed beside ours: rl.trpo's double-backward Fisher product, FOMAML,
the Fisher products on 10% of the rollouts (Schulman et al. 2015's practice; not exact), the
exact products in blocks of 10 time steps, and MKTN (ANIL: only the head adapted; same streams,
so the same tasks and rollouts)."""


@dataclasses.dataclass(frozen=True)
class MAMLSpeedConfig(Config):
    """Seconds per MAML-TRPO meta-iteration on nav2d: ours vs a per-task SyncVectorEnv reference."""

    maml: MAMLRLConfig = load_preset(MAMLRLConfig, "maml-rl", "nav2d-speed")
    """The configuration timed (its iterations are ours' timed and memory-tracked iterations)."""
    quick: bool = False
    """CI-sized run: at most 12 of ours' iterations, 1 reference iteration."""
    reference_iterations: Size = 3
    """Meta-iterations of the reference (each takes seconds)."""
    traced_iterations: Size = 20
    """Extra iterations of ours run under tracemalloc."""
    variants: tuple[str, ...] = ("autograd-fvp", "first-order", "fvp-subsample-0.1", "mktn")
    """Variants of ours also timed (autograd-fvp, first-order, fvp-subsample-0.1, mktn)."""
    variant_iterations: Size = 3
    """Timed iterations of each variant (after one warm-up)."""
    product_blocks: tuple[Size, ...] = (10,)
    """Time steps per block at which the exact Fisher products are also timed (``fvp_block``),
    interleaved with the one-block products."""
    seed: int = 0
    """Seed of both learners (same initial policy and task draws)."""
    threads: Size = 1
    """torch threads (the machine is shared)."""
    out: Path = Path("results/bench/maml-speed")
    """Directory for results.json and report.md."""


def timed_iterations(learner: MAMLRL, iterations: int, label: str) -> dict[str, list[float]]:
    """Train ``learner`` for ``iterations`` more meta-iterations with the training loop; the
    seconds, resident memory, KL and acceptance of each."""
    record: dict[str, list[float]] = {"seconds": [], "rss": [], "kl": [], "accepted": []}
    clock = [time.perf_counter()]

    def measure(_: Any, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        record["seconds"].append(now - clock[0])
        record["rss"].append(resident_mb())
        record["kl"].append(metrics.get("kl", float("nan")))
        record["accepted"].append(metrics.get("accepted", 1.0))
        clock[0] = time.perf_counter()

    train(
        learner, iterations=learner.iteration + iterations, description=label, on_iteration=measure
    )
    return record


def memory_trace(learner: MAMLRL, iterations: int) -> dict[str, float]:
    """Live tensor bytes and Python's traced allocations over ``iterations`` more iterations."""
    tensors_before = live_tensor_bytes()
    tracemalloc.start()
    train(learner, iterations=learner.iteration + 1, show_progress=False)
    first = tracemalloc.get_traced_memory()[0]
    train(learner, iterations=learner.iteration + iterations - 1, show_progress=False)
    last, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "live_tensor_mb_before_traced": tensors_before / 2**20,
        "live_tensor_mb_after_traced": live_tensor_bytes() / 2**20,
        "tracemalloc_mb_after_first_traced": first / 2**20,
        "tracemalloc_mb_after_last_traced": last / 2**20,
        "tracemalloc_mb_peak": peak / 2**20,
        "traced_iterations": iterations,
    }


def time_variants(cfg: MAMLSpeedConfig, config: MAMLRLConfig, repeats: int) -> dict[str, float]:
    """Median seconds per meta-iteration of each variant (after one warm-up iteration)."""
    out = {}
    for name in cfg.variants:
        learner = variant_learner(VARIANTS[name](config), seed=cfg.seed)
        times = timed_iterations(learner, 1 + repeats, f"maml-speed: {name}")["seconds"]
        out[name] = statistics.median(times[1:])
    return out


def time_reference(config: MAMLRLConfig, seed: int, iterations: int) -> list[float]:
    """Seconds of each of ``iterations`` meta-iterations of the reference implementation."""
    ref = ReferenceMAMLTRPO(config, seed=seed)
    times = []
    for _ in progress(range(iterations), description="maml-speed: reference", total=iterations):
        t0 = time.perf_counter()
        ref.step()
        times.append(time.perf_counter() - t0)
    ref.close()
    return times


def run_maml_speed(cfg: MAMLSpeedConfig) -> dict[str, Any]:
    torch.set_num_threads(cfg.threads)
    unknown = sorted(set(cfg.variants) - set(VARIANTS))
    if unknown:
        raise ConfigError(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    config = cfg.maml
    if cfg.quick:
        config = dataclasses.replace(config, iterations=min(12, config.iterations))
    ours = MAMLRL(config, seed=cfg.seed)
    warmup = 2
    timed = timed_iterations(ours, warmup + config.iterations, "maml-speed: ours")
    times, rss = timed["seconds"][warmup:], timed["rss"][warmup:]
    traced = min(3, cfg.traced_iterations) if cfg.quick else cfg.traced_iterations
    memory = memory_trace(ours, traced)
    floor = time_floor(ours)
    blocked = time_exact_products(ours, blocks=cfg.product_blocks)
    products = blocked.pop("one block")
    variants = time_variants(cfg, config, min(cfg.variant_iterations, config.iterations))
    ref_times = time_reference(config, cfg.seed, 1 if cfg.quick else cfg.reference_iterations)
    ours_s, ref_s = statistics.median(times), statistics.median(ref_times)
    half = len(rss) // 2
    result = {
        "benchmark": BENCHMARK,
        "config": config_to_dict(config),
        "ours_seconds_per_iteration": {
            "median": ours_s,
            "mean": statistics.fmean(times),
            "p90": float(np.quantile(times, 0.9)),
            "iterations": len(times),
        },
        "reference_seconds_per_iteration": {"median": ref_s, "all": ref_times},
        "variants_seconds_per_iteration": variants,
        "floor_seconds_per_iteration": floor,
        "exact_fisher_products_seconds": products,
        "exact_fisher_products_blocked_seconds": blocked,
        "speedup_vs_reference": ref_s / ours_s,
        "ours_over_floor": ours_s / floor,
        "target_seconds": TARGET_SECONDS,
        "meets_target": ours_s <= TARGET_SECONDS,
        "pytorch_maml_rl_seconds_issue": list(PYTORCH_MAML_RL_SECONDS),
        "trpo": {
            "mean_kl": float(np.nanmean(timed["kl"])),
            "accepted_fraction": float(np.mean(timed["accepted"])),
        },
        "memory": {
            "rss_mb_first": rss[0],
            "rss_mb_last": rss[-1],
            "rss_mb_peak": max(rss),
            "rss_mb_peak_first_half": max(rss[:half] or rss),
            "rss_mb_peak_second_half": max(rss[half:]),
            "rss_mb_peak_by_tenth": peak_per_tenth(rss),
            **memory,
        },
    }
    return write_bench(cfg.out, result, speed_report(result, config), seeds=[cfg.seed])


def speed_report(result: dict[str, Any], config: MAMLRLConfig) -> str:
    """Print the timing table; the report's markdown."""
    ours_s = result["ours_seconds_per_iteration"]["median"]
    ref_s = result["reference_seconds_per_iteration"]["median"]
    floor = result["floor_seconds_per_iteration"]
    products = result["exact_fisher_products_seconds"]

    def line(name: str, seconds: float) -> list[str]:
        return [name, f"{seconds:.3f}", f"{ref_s / seconds:.1f}x", f"{seconds / floor:.1f}x"]

    rows = [
        line("ours (batched, vmap)", ours_s),
        line("reference (per-task SyncVectorEnv)", ref_s),
        *(line(f"ours, {k}", v) for k, v in result["variants_seconds_per_iteration"].items()),
        line("floor (policy forwards of the rollouts)", floor),
        line(
            f"exact TRPO floor: its {config.cg_iters} second-order Fisher products alone", products
        ),
        *(
            line(f"  the same products, {label} time steps (fvp_block)", seconds)
            for label, seconds in result.get("exact_fisher_products_blocked_seconds", {}).items()
        ),
    ]
    cols = ["implementation", "s / meta-iteration", "speed-up vs reference", "x floor"]
    n = result["ours_seconds_per_iteration"]["iterations"]
    title = (
        f"maml-speed: nav2d, {config.meta_batch_size} tasks x {config.rollouts_per_task} rollouts"
    )
    print_table(f"{title} ({n} iterations of ours)", cols, rows)
    mem = result["memory"]
    tenths = ", ".join(f"{v:.0f}" for v in mem["rss_mb_peak_by_tenth"])
    met = "met" if result["meets_target"] else "NOT met"
    return (
        "\n".join(
            [
                f"# {BENCHMARK}",
                "",
                markdown_table(cols, rows),
                "",
                f"Target: <= {TARGET_SECONDS} s per meta-iteration: {met}. Ours: median of {n} "
                f"iterations (p90 {result['ours_seconds_per_iteration']['p90']:.3f} s); reference: "
                f"median of {len(result['reference_seconds_per_iteration']['all'])}.",
                "",
                f"Memory over {n} iterations: RSS {mem['rss_mb_first']:.1f} MB after the first, "
                f"{mem['rss_mb_last']:.1f} MB after the last, peak {mem['rss_mb_peak_first_half']:.1f} "
                f"MB (first half) / {mem['rss_mb_peak_second_half']:.1f} MB (second half); live "
                f"tensors {mem['live_tensor_mb_before_traced']:.2f} -> "
                f"{mem['live_tensor_mb_after_traced']:.2f} MB; peak RSS per tenth of the run: "
                f"{tenths} MB; tracemalloc {mem['tracemalloc_mb_after_first_traced']:.2f} -> "
                f"{mem['tracemalloc_mb_after_last_traced']:.2f} MB over {mem['traced_iterations']} "
                "traced iterations.",
            ]
        )
        + "\n"
    )


register_bench(
    BenchSpec(
        name=BENCHMARK,
        config_cls=MAMLSpeedConfig,
        run=run_maml_speed,
        description="s per MAML-TRPO meta-iteration on nav2d vs a per-task SyncVectorEnv reference",
        presets="maml-rl",
        preset_field="maml",
    )
)

__all__ = ["MAMLSpeedConfig", "ReferenceMAMLTRPO", "run_maml_speed"]
