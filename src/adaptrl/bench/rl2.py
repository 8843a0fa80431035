"""``adaptrl bench rl2-bandits``, ``rl2-mdps`` and ``rl2-speed``: RL² beside the classic agents.

The table benches train RL² per setting (a fixed budget of outer iterations from a preset), then
score it on held-out test tasks together with the classic agents, in the same harness, on the same
tasks and environment seeds, beside the paper's Tables 1 and 2. The speed bench measures the whole
training loop against the environment alone and the policy's own forward cost at the same batch
size, and the wall-clock time RL² needs to reach 6.5 on bandits n=10, k=5.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

import torch

from adaptrl.algos.rl2 import RL2, RL2Config, collect_trials
from adaptrl.bench.baselines import Entry, parse_bandit_setting, tune
from adaptrl.bench.reference import RL2_TABLE1, RL2_TABLE1_SOURCE, RL2_TABLE2, RL2_TABLE2_SOURCE
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.errors import ConfigError
from adaptrl.core.progress import print_table, progress
from adaptrl.core.provenance import provenance, write_json
from adaptrl.core.seeding import make_generator
from adaptrl.envs import make_family
from adaptrl.envs.bandit import BanditConfig
from adaptrl.envs.tabular import TabularMDPConfig
from adaptrl.eval.protocol import EVAL_SEED, evaluate
from adaptrl.eval.stats import mean_ci
from adaptrl.nn import heads

# ------------------------------------------------------------------------------------------
# Presets: the RL² configuration and budget used for each setting (tuned on bandit 10x5 and
# MDP n=10 first, then reused with budgets scaled to the trial length).


def bandit_preset(n: int, k: int) -> RL2Config:
    """The RL² configuration for bandits with ``k`` arms and ``n`` pulls per trial."""
    family = BanditConfig(k=k, n=n)
    if n <= 10:
        return RL2Config(family=family, iterations=300, trials=256, hidden=64)
    # Value targets grow with the trial length: scale rewards so that they stay near 1, or the
    # value loss drowns the policy gradient in the shared memory (and the gradient clipping).
    # GAE lambda 0.95, not the 10-pull setting's 0.3: over 100 pulls the bootstrapped advantages
    # hid what exploring early is worth (100x5: 64.5 with 0.3, 75.1 with 0.95), and an entropy
    # bonus of 0.05 -> 0.01 kept it exploring longer (76.7 in 1000 iterations, 77.98 = 0.979x
    # Gittins in 1500; docs/results.md).
    return RL2Config(
        family=family,
        iterations=1500,
        trials=256,
        hidden=64,
        lr=5e-4,
        minibatches=4,
        gae_lambda=0.95,
        reward_scale=0.05,
        entropy_coef=0.05,
        entropy_final=0.01,
        time_input=True,
    )


def mdp_preset(n: int) -> RL2Config:
    """The RL² configuration for random tabular MDPs with ``n`` episodes per trial.

    A separate critic: with the policy's memory shared, the value loss (the larger gradient)
    reshaped the policy's features and its entropy collapsed with no gain (docs/results/rl2-mdp.md).
    256 trials per batch, the time input and 1500 iterations took n = 10 from 123.3 (128 trials, 600
    iterations) to 129.6; feeding whole transitions (the previous observation) through a 128-unit
    ReLU embedding, with the learning rate annealed to 0, took it to 137.4, above PSRL's 134.3
    (docs/results.md). Training at n = 10 took 42 minutes on one core before the embedding and 84
    with it on a core shared with other jobs. Longer trials (n > 10) train 3000 iterations, so the
    learning rate and entropy bonus anneal half as fast: at n = 25 the 1500-iteration run flattened
    at 381.9 as its rate reached 0 (PSRL 404.1), while the 3000-iteration one scored 409.6 at its
    iteration 1750, above PSRL (~7 s per iteration, ~6 h in all; docs/results.md).
    """
    return RL2Config(
        family=TabularMDPConfig(n=n),
        iterations=1500 if n <= 10 else 3000,
        trials=256,
        hidden=128,
        time_input=True,
        prev_obs_input=True,
        embed=(128,),
        lr=1e-3,
        lr_final=0.0,
        minibatches=4,
        gae_lambda=0.3,
        reward_scale=0.1,
        entropy_coef=0.05,
        entropy_final=0.01,
        separate_critic=True,
    )


def train_rl2(
    cfg: RL2Config,
    seed: int = 0,
    device: str = "cpu",
    label: str = "rl2",
    show_progress: bool = True,
    on_iteration: Any = None,
) -> tuple[RL2, float]:
    """Train RL² for ``cfg.iterations`` iterations; returns the learner and the seconds it took."""
    learner = RL2(cfg, seed=seed, device=device)
    start = time.perf_counter()
    with progress(total=cfg.iterations, description=label, disable=not show_progress) as bar:
        for _ in range(cfg.iterations):
            metrics = learner.meta_train_step()
            bar.advance(trial_return=float(metrics["trial_return"]))  # once per iteration
            if on_iteration is not None and on_iteration(learner, metrics):
                break
    return learner, time.perf_counter() - start


# ------------------------------------------------------------------------------------------
# Tables 1 and 2


@dataclasses.dataclass(frozen=True)
class _RL2TableBench:
    """Options shared by the Table 1 and Table 2 benches."""

    iterations: int | None = None
    """Outer iterations per setting; default: the setting's preset."""
    outer: Literal["ppo", "trpo"] | None = None
    """Outer optimiser instead of the preset's (PPO): ``trpo`` is the paper's."""
    memory: Literal["gru", "transformer"] | None = None
    """Policy memory instead of the preset's (GRU): a causal transformer over the trial."""
    num_tasks: int = 1000
    """Held-out test tasks per setting."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds (the CI is over tasks for one seed, over per-seed means for several)."""
    eval_seed: int = EVAL_SEED
    """Seed of the held-out tasks."""
    runs: tuple[Path, ...] = ()
    """Score the models of these ``adaptrl train rl2`` runs (resumable, for budgets of hours; one
    per training seed) instead of training; needs one setting, the runs' family. ``--seeds``,
    ``--iterations``, ``--outer`` and ``--memory`` are then not used."""
    device: str = "cpu"
    """Device for training and evaluation."""
    out: Path = Path("results/rl2")
    """Directory for results.json and results.md."""


@dataclasses.dataclass(frozen=True)
class RL2BanditBenchConfig(_RL2TableBench):
    """RL² Table 1: RL² trained per setting beside Gittins, UCB1, Thompson sampling and random."""

    quick: bool = False
    """CI-sized: setting 10x5 only, 100 iterations (unless --iterations), 200 tasks."""
    settings: tuple[str, ...] = ("10x5", "10x10", "100x5")
    """Settings as 'n x k' (pulls x arms)."""
    out: Path = Path("results/rl2-bandits")
    """Directory for results.json and results.md."""


@dataclasses.dataclass(frozen=True)
class RL2MDPBenchConfig(_RL2TableBench):
    """RL² Table 2: RL² trained per setting beside PSRL and random on random tabular MDPs."""

    quick: bool = False
    """CI-sized: n = 10 only, 20 iterations (unless --iterations), 200 tasks."""
    settings: tuple[int, ...] = (10,)
    """Episodes per trial n."""
    out: Path = Path("results/rl2-mdps")
    """Directory for results.json and results.md."""


BANDIT_CLASSICS = [
    Entry("gittins", "gittins"),
    Entry("ucb1", "ucb1", grid={"c": (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)}),
    Entry("thompson", "thompson"),
    Entry("random", "random"),
]
MDP_CLASSICS = [Entry("psrl", "psrl"), Entry("random", "random")]


def load_rl2_runs(paths: tuple[Path, ...], family: Any) -> list[RL2]:
    """The trained RL² models of ``paths``, each checked to be an RL² run on ``family``."""
    from adaptrl.algos.trainer import load_trained

    learners = []
    for path in paths:
        learner = load_trained(path, expect=RL2)
        if learner.config.family != family:
            raise ConfigError(
                f"{path} was trained on {learner.config.family}, not this setting's {family}; "
                "pass the run's setting with --settings (and no --quick)"
            )
        learners.append(learner)
    first = learners[0]
    for path, learner in zip(paths[1:], learners[1:], strict=True):
        if learner.config != first.config or learner.iteration != first.iteration:
            raise ConfigError(
                f"{path} differs from {paths[0]} in configuration or completed iterations; "
                "one row stands for one configuration and budget: score them separately"
            )
    return learners


def _with_runs(bench: Any) -> Any:
    """``bench`` with its seeds replaced by those of its ``--runs`` (if any)."""
    if not bench.runs:
        return bench
    from adaptrl.algos.trainer import read_run

    if len(bench.settings) != 1:
        raise ConfigError(f"--runs scores one setting; got settings {list(bench.settings)}")
    return dataclasses.replace(bench, seeds=tuple(read_run(p)[1].seed for p in bench.runs))


def _setting_rows(
    label: str,
    cfg: RL2Config,
    bench: _RL2TableBench,
    classics: list[Entry],
    paper: dict[str, float],
    reference: str,
    ratio_target: float,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train RL² (one learner per seed), evaluate it beside ``classics``; rows and a summary."""
    family = make_family(cfg.family)
    learners: list[RL2] = []
    seconds: list[float | None] = []
    if bench.runs:
        learners = load_rl2_runs(bench.runs, cfg.family)
        seconds = [None] * len(learners)
        cfg = dataclasses.replace(learners[0].config, iterations=learners[0].iteration)
    for seed in () if bench.runs else bench.seeds:
        learner, secs = train_rl2(cfg, seed, bench.device, f"rl2 {label} seed {seed}")
        learners.append(learner)
        seconds.append(secs)
    specs: list[Any] = [
        (f"rl2-seed{s}", lambda f, lr=lr: lr.trial_agent())
        for s, lr in zip(bench.seeds, learners, strict=True)
    ]
    specs += [(e.agent, tune(family, e, 300, bench.seeds[0], bench.device)) for e in classics]
    res = evaluate(
        family,
        specs,
        num_tasks=bench.num_tasks,
        eval_seed=bench.eval_seed,
        device=bench.device,
        show_progress=False,
    )
    n_rl2 = len(bench.seeds)
    per_seed = [a.returns.sum(-1).double().mean().item() for a in res.agents[:n_rl2]]
    if n_rl2 == 1:
        rl2_mean, rl2_ci = res.agents[0].trial_return()
    else:
        rl2_mean, rl2_ci = mean_ci(per_seed)
    rows = [
        {
            "setting": label,
            "agent": "rl2 (ours)",
            "params": {},
            "mean": rl2_mean,
            "ci95": rl2_ci,
            "paper": paper.get("rl2"),
            "per_seed": per_seed,
        }
    ]
    for entry, agent in zip(classics, res.agents[n_rl2:], strict=True):
        mean, ci = agent.trial_return()
        rows.append(
            {
                "setting": label,
                "agent": entry.agent,
                "params": agent.params,
                "mean": mean,
                "ci95": ci,
                "paper": paper.get(entry.column),
            }
        )
    reference_mean = rows[1]["mean"]
    curve = torch.cat([a.returns for a in res.agents[:n_rl2]]).double().mean((0, 1)).tolist()
    summary = {
        "setting": label,
        "config": dataclasses.asdict(cfg),
        "train_seconds": seconds,
        "ratio_to_" + classics[0].agent: rl2_mean / reference_mean,
        "target_ratio": ratio_target,
        "target_met": rl2_mean >= ratio_target * reference_mean,
        "rl2_episode_curve": curve,
        "reference": reference,
    }
    return rows, summary


def _write(
    title: str, source: str, bench: _RL2TableBench, rows: list, summaries: list
) -> dict[str, Any]:
    cols = ["setting", "agent", "ours (95% CI)", source]
    table = [
        [
            r["setting"],
            r["agent"] + "".join(f" {k}={v}" for k, v in r["params"].items()),
            f"{r['mean']:.2f} ± {r['ci95']:.2f}",
            "—" if r["paper"] is None else str(r["paper"]),
        ]
        for r in rows
    ]
    print_table(title, cols, table)
    ratio_key = next(k for k in summaries[0] if k.startswith("ratio_to_"))
    target_rows = [
        [
            s["setting"],
            f"{s[ratio_key]:.3f}",
            f">= {s['target_ratio']}",
            "yes" if s["target_met"] else "NO",
            " / ".join("run" if t is None else f"{t:.0f}" for t in s["train_seconds"]),
            str(s["config"]["iterations"]),
            f"{s['config']['memory']} / {s['config']['outer']}",
        ]
        for s in summaries
    ]
    tcols = [
        "setting",
        ratio_key.replace("_", " "),
        "target",
        "met",
        "train s",
        "iterations",
        "memory / outer",
    ]
    print_table("RL² targets", tcols, target_rows)
    header = {
        "tasks": f"{bench.num_tasks} held-out test tasks per setting (eval seed {bench.eval_seed})",
        "training seeds": list(bench.seeds),
        "ci": "95% Student-t over tasks (one seed) or over per-seed means (several)",
    }
    payload = {
        **header,
        "reference": source,
        "rows": rows,
        "settings": summaries,
        "provenance": provenance(seeds=list(bench.seeds)),
    }
    bench.out.mkdir(parents=True, exist_ok=True)
    write_json(bench.out / "results.json", payload)
    md = [f"# {title}", "", *(f"- {k}: {v}" for k, v in header.items()), ""]
    md += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(r) + " |" for r in table]
    md += ["", "| " + " | ".join(tcols) + " |", "|" + "---|" * len(tcols)]
    md += ["| " + " | ".join(r) + " |" for r in target_rows]
    (bench.out / "results.md").write_text("\n".join(md) + "\n")
    return payload


def _override(cfg: RL2Config, bench: _RL2TableBench, quick_iterations: int) -> RL2Config:
    """The preset with the bench's ``--iterations``, ``--outer`` and ``--memory`` applied."""
    changes: dict[str, Any] = {}
    iterations = bench.iterations or (quick_iterations if bench.quick else None)
    if iterations is not None:
        changes["iterations"] = iterations
    if bench.outer is not None:
        changes["outer"] = bench.outer
    if bench.memory is not None:
        changes["memory"] = bench.memory
    return dataclasses.replace(cfg, **changes)


def run_rl2_bandits(bench: RL2BanditBenchConfig) -> dict[str, Any]:
    if bench.quick:
        bench = dataclasses.replace(bench, settings=("10x5",), num_tasks=min(bench.num_tasks, 200))
    bench = _with_runs(bench)
    rows, summaries = [], []
    for text in bench.settings:
        n, k = parse_bandit_setting(text)
        cfg = bandit_preset(n, k)
        cfg = _override(cfg, bench, 100)
        target = 0.98 if n <= 10 else 0.97
        r, s = _setting_rows(
            text, cfg, bench, BANDIT_CLASSICS, RL2_TABLE1.get((n, k), {}), RL2_TABLE1_SOURCE, target
        )
        rows += r
        summaries.append(s)
    return _write("RL² Table 1: Bernoulli bandits", RL2_TABLE1_SOURCE, bench, rows, summaries)


def run_rl2_mdps(bench: RL2MDPBenchConfig) -> dict[str, Any]:
    if bench.quick:
        bench = dataclasses.replace(bench, settings=(10,), num_tasks=min(bench.num_tasks, 200))
    bench = _with_runs(bench)
    rows, summaries = [], []
    for n in bench.settings:
        cfg = mdp_preset(n)
        cfg = _override(cfg, bench, 20)
        r, s = _setting_rows(
            str(n), cfg, bench, MDP_CLASSICS, RL2_TABLE2.get(n, {}), RL2_TABLE2_SOURCE, 1.0
        )
        rows += r
        summaries.append(s)
    return _write(
        "RL² Table 2: random tabular MDPs (|S|=10, |A|=5, T=10)",
        RL2_TABLE2_SOURCE,
        bench,
        rows,
        summaries,
    )


# ------------------------------------------------------------------------------------------
# Speed


@dataclasses.dataclass(frozen=True)
class RL2SpeedBenchConfig:
    """RL² training-loop throughput against the environment alone and the policy forward cost,
    and the wall-clock time to reach 6.5 on bandits n=10, k=5."""

    quick: bool = False
    """CI-sized: 3 timed iterations of 32 trials; the time-to-6.5 run capped at 40 iterations."""
    iterations: int = 10
    """Timed iterations per family (after one warm-up iteration)."""
    target: float = 6.5
    """Return on bandit 10x5 held-out tasks whose first crossing is timed."""
    eval_every: int = 25
    """Iterations between held-out evaluations in the time-to-target run."""
    eval_tasks: int = 1000
    """Held-out test tasks per evaluation in the time-to-target run."""
    max_minutes: float = 15.0
    """Give up on the target after this much training time."""
    seed: int = 0
    """Training seed."""
    device: str = "cpu"
    """Device."""
    out: Path = Path("results/rl2-speed")
    """Directory for results.json and results.md."""


def _time(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure_throughput(cfg: RL2Config, iterations: int, seed: int = 0) -> dict[str, float]:
    """Env steps/s of: the training loop, collection alone, the env alone with random actions,
    and the policy forward alone (the lower bound of collection), all at ``cfg.trials`` rows."""
    learner = RL2(cfg, seed=seed)
    steps = learner.steps * cfg.trials
    env, net, gen = learner.env, learner.net, make_generator(seed, "speed")
    env.set_tasks(learner.family.tasks(cfg.trials, "train", seed))
    obs = env.reset(seed=seed)
    spec = net.spec

    def env_only() -> None:
        for _ in range(learner.steps):
            if spec.kind == "categorical":
                a = torch.randint(spec.dim, (cfg.trials,), generator=gen)
            else:
                a = torch.randn(cfg.trials, spec.dim, generator=gen)
            env.step(a)

    def policy_only() -> None:
        state = net.initial_state(cfg.trials)
        first = torch.zeros(cfg.trials, dtype=torch.long)  # step within the episode
        x = net.inputs(obs, *net.initial_prev(cfg.trials), episode_step=first)
        with torch.no_grad():
            for _ in range(learner.steps):
                params, _, state = net.step(x, state)
                heads.sample(spec, params, gen)

    timed = {
        "train": _time(learner.meta_train_step, iterations),
        "collect": _time(lambda: collect_trials(net, env, obs, learner.steps, gen), iterations),
        "env_only": _time(env_only, iterations),
        "policy_forward": _time(policy_only, iterations),
    }
    out = {f"{k}_steps_per_s": steps / v for k, v in timed.items()}
    out["update_seconds_per_iteration"] = timed["train"] - timed["collect"]
    out["batch"] = cfg.trials
    out["steps_per_iteration"] = steps
    return out


VALIDATION_SEED = 7_777
"""Seed of the meta-train-split tasks the time-to-target run stops on (never the test tasks)."""


def time_to_target(bench: RL2SpeedBenchConfig) -> dict[str, Any]:
    """Train bandit 10x5 RL² and time (training only) its first validation score >= target.

    The stopping rule reads only meta-train-split tasks (a fixed validation draw), so the time is
    not chosen on the tasks it is then scored on; the held-out test score of the model that
    stopped is reported beside it, with its 95% CI.
    """
    cfg = bandit_preset(10, 5)
    if bench.quick:
        cfg = dataclasses.replace(cfg, iterations=40)
    else:
        cfg = dataclasses.replace(cfg, iterations=100_000)
    family = make_family(cfg.family)
    history: list[tuple[int, float, float]] = []
    clock = {"train": 0.0, "last": time.perf_counter()}
    test: dict[str, float] = {}

    def score(learner: RL2, split: str, seed: int) -> tuple[float, float]:
        res = evaluate(
            family,
            [("rl2", lambda f: learner.trial_agent())],
            num_tasks=bench.eval_tasks,
            eval_seed=seed,
            split=split,
            show_progress=False,
        )
        return res.agents[0].trial_return()

    def check(learner: RL2, metrics: dict) -> bool:
        now = time.perf_counter()
        clock["train"] += now - clock["last"]
        stop = clock["train"] > 60 * bench.max_minutes
        if learner.iteration % bench.eval_every == 0:
            validation = score(learner, "train", VALIDATION_SEED)[0]
            history.append((learner.iteration, clock["train"], validation))
            if validation >= bench.target:
                test["mean"], test["ci95"] = score(learner, "test", EVAL_SEED)
                stop = True
        clock["last"] = time.perf_counter()
        return stop

    train_rl2(cfg, bench.seed, bench.device, "rl2 bandit 10x5 to target", on_iteration=check)
    reached = next(((i, s, v) for i, s, v in history if v >= bench.target), None)
    return {
        "target": bench.target,
        "reached": reached is not None,
        "iterations": None if reached is None else reached[0],
        "train_seconds": None if reached is None else reached[1],
        "test_score": test or None,
        "history": [{"iteration": i, "train_seconds": s, "validation": v} for i, s, v in history],
        "eval": f"stops on {bench.eval_tasks} meta-train-split tasks (seed {VALIDATION_SEED}) "
        f"checked every {bench.eval_every} iterations, then scores {bench.eval_tasks} held-out "
        "test tasks (evaluation time excluded)",
    }


def run_rl2_speed(bench: RL2SpeedBenchConfig) -> dict[str, Any]:
    iters = 3 if bench.quick else bench.iterations
    if iters < 1:
        raise ConfigError(f"iterations must be >= 1, got {iters}")
    fams = {
        "bandit 10x5": bandit_preset(10, 5),
        "tabular MDP n=10": mdp_preset(10),
        "tabular MDP n=10, transformer": dataclasses.replace(mdp_preset(10), memory="transformer"),
    }
    if bench.quick:  # CI: the same loops on a small batch
        fams = {name: dataclasses.replace(cfg, trials=32) for name, cfg in fams.items()}
    throughput = {name: measure_throughput(cfg, iters, bench.seed) for name, cfg in fams.items()}
    target = time_to_target(bench)
    rows = [
        [
            name,
            str(t["batch"]),
            f"{t['train_steps_per_s']:,.0f}",
            f"{t['collect_steps_per_s']:,.0f}",
            f"{t['policy_forward_steps_per_s']:,.0f}",
            f"{t['env_only_steps_per_s']:,.0f}",
            f"{t['collect_steps_per_s'] / t['policy_forward_steps_per_s']:.2f}",
            f"{t['train_steps_per_s'] / t['collect_steps_per_s']:.2f}",
        ]
        for name, t in throughput.items()
    ]
    cols = [
        "family",
        "trials (batch)",
        "train steps/s",
        "collect steps/s",
        "policy-forward steps/s (bound)",
        "env-only steps/s",
        "collect / bound",
        "train / collect",
    ]
    print_table("RL² throughput (env steps per second)", cols, rows)
    reached = (
        f"{target['train_seconds']:.0f} s ({target['iterations']} iterations; held-out test "
        f"score {target['test_score']['mean']:.2f} ± {target['test_score']['ci95']:.2f})"
        if target["reached"]
        else "not reached"
    )
    print_table("RL² time to target", ["target", "bandit 10x5 time"], [[target["target"], reached]])
    payload = {
        "throughput": throughput,
        "time_to_target": target,
        "provenance": provenance(seeds=[bench.seed]),
    }
    bench.out.mkdir(parents=True, exist_ok=True)
    write_json(bench.out / "results.json", payload)
    md = ["# RL² speed", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += [
        "",
        f"Time to {target['target']} on bandit 10x5 (training only): {reached}; {target['eval']}.",
    ]
    (bench.out / "results.md").write_text("\n".join(md) + "\n")
    return payload


# ------------------------------------------------------------------------------------------
# Demo


def rl2_demo(out: Path, num_tasks: int = 1000, device: str = "cpu", iterations: int = 200) -> str:
    """Train RL² live on bandits n=10, k=5 and show it beside Gittins and random.

    Writes ``out/results.json``, ``report.md``, ``curve.png`` (return per pull within the trial,
    held-out tasks) and ``training.png`` (trial return per iteration against the two references);
    returns the markdown section.
    """
    from adaptrl.eval.report import save_report, to_markdown

    cfg = dataclasses.replace(bandit_preset(10, 5), iterations=iterations)
    curve: list[float] = []
    learner, seconds = train_rl2(
        cfg,
        0,
        device,
        "demo: RL² learning to explore (bandits 10x5)",
        on_iteration=lambda _, m: curve.append(float(m["trial_return"])),
    )
    result = evaluate(
        learner.family,
        [("rl2", lambda f: learner.trial_agent()), "gittins", "random"],
        num_tasks=num_tasks,
        device=device,
        show_progress=False,
    )
    save_report(result, out)
    refs = {a.label: a.trial_return()[0] for a in result.agents}
    _plot_training(curve, {k: v for k, v in refs.items() if k != "rl2"}, out / "training.png")
    md = to_markdown(result).replace("# Evaluation on", "## RL² trained live: evaluation on")
    return "\n".join(
        [
            md,
            f"RL² ({cfg.memory.upper()} {cfg.hidden}, PPO) was trained for {iterations} iterations "
            f"of {cfg.trials} trials ({seconds:.0f} s) on meta-train tasks, then scored on the "
            "held-out tasks above, sampling its actions.",
            "",
            f"![RL² training]({out.name}/training.png) ![RL² vs Gittins]({out.name}/curve.png)",
            "",
        ]
    )


def _plot_training(curve: list[float], refs: dict[str, float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    ax.plot(range(1, len(curve) + 1), curve, label="RL² (training batch)", lw=1)
    for (name, value), style in zip(refs.items(), ("--", ":", "-."), strict=False):
        ax.axhline(value, ls=style, color="k", lw=1, label=f"{name} (held-out): {value:.2f}")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("mean trial return (10 pulls)")
    ax.set_title("RL² learns to explore: bandits n=10, k=5", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


register_bench(
    BenchSpec(
        "rl2-bandits",
        RL2BanditBenchConfig,
        run_rl2_bandits,
        "RL² Table 1: RL² trained per setting beside Gittins, UCB1, TS and random",
    )
)
register_bench(
    BenchSpec(
        "rl2-mdps",
        RL2MDPBenchConfig,
        run_rl2_mdps,
        "RL² Table 2: RL² trained per setting beside PSRL and random",
    )
)
register_bench(
    BenchSpec(
        "rl2-speed",
        RL2SpeedBenchConfig,
        run_rl2_speed,
        "RL² training steps/s against env-only and policy-forward, and time to 6.5 on bandits",
    )
)
