"""``adaptrl bench rl2-bandits``, ``rl2-mdps`` and ``rl2-speed``: RL² beside the classic agents.

The table benches train RL² with one configuration (a preset, ``--config``, with ``--rl2.*`` flags
on top) on each setting, then score it on held-out test tasks together with the classic agents,
in the same harness, on the same tasks and environment seeds, beside the paper's Tables 1 and 2.
The speed bench measures the whole training loop against the environment alone and the policy's
own forward cost at the same batch size, and the wall-clock time RL² needs to reach 6.5 on
bandits n=10, k=5.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from adaptrl.algos.rl2 import RL2, RL2Config, collect_trials
from adaptrl.bench.baselines import Entry, parse_bandit_setting, parse_episodes, tune
from adaptrl.bench.common import interleaved_seconds, table_markdown, train_timed, write_bench
from adaptrl.bench.reference import RL2_TABLE1, RL2_TABLE1_SOURCE, RL2_TABLE2, RL2_TABLE2_SOURCE
from adaptrl.bench.registry import BenchSpec, register_bench
from adaptrl.core.config import Config, Size, config_to_dict
from adaptrl.core.errors import ConfigError
from adaptrl.core.presets import load_preset
from adaptrl.core.seeding import make_generator
from adaptrl.core.table import print_table
from adaptrl.envs import make_family
from adaptrl.eval.protocol import EVAL_SEED, evaluate
from adaptrl.eval.stats import mean_ci
from adaptrl.nn import heads


def rl2_preset(name: str) -> RL2Config:
    """The shipped RL² preset ``name`` (``configs/rl2/NAME.yaml``)."""
    return load_preset(RL2Config, "rl2", name)


# ------------------------------------------------------------------------------------------
# Tables 1 and 2


@dataclasses.dataclass(frozen=True)
class Table:
    """What one paper table fixes: its family, the classic agents beside RL², the published
    numbers and the target ratio of RL² to the first classic agent."""

    title: str
    source: str
    family_id: str
    classics: list[Entry]
    paper: dict[Any, dict[str, float]]
    setting: Callable[[str], dict[str, int]]
    """A setting's text (``"10x5"``, ``"25"``) as the family options it sets."""
    key: Callable[[Any], Any]
    """The family config's key into ``paper``."""
    target: Callable[[Any], float]
    """The target ratio for a family config."""


BANDITS = Table(
    title="RL² Table 1: Bernoulli bandits",
    source=RL2_TABLE1_SOURCE,
    family_id="bandit-bernoulli-v0",
    classics=[
        Entry("gittins", "gittins"),
        Entry("ucb1", "ucb1", grid={"c": (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)}),
        Entry("thompson", "thompson"),
        Entry("random", "random"),
    ],
    paper=RL2_TABLE1,
    setting=lambda text: dict(zip(("n", "k"), parse_bandit_setting(text), strict=True)),
    key=lambda f: (f.n, f.k),
    target=lambda f: 0.98 if f.n <= 10 else 0.97,
)
MDPS = Table(
    title="RL² Table 2: random tabular MDPs (|S|=10, |A|=5, T=10)",
    source=RL2_TABLE2_SOURCE,
    family_id="tabular-mdp-v0",
    classics=[Entry("psrl", "psrl"), Entry("random", "random")],
    paper=RL2_TABLE2,
    setting=lambda text: {"n": parse_episodes(text)},
    key=lambda f: f.n,
    target=lambda f: 1.0,
)
QUICK = {"iterations": 5, "trials": 32}
"""--quick caps these in the RL² configuration (and the test tasks at 200, the tasks tuning a
classic agent at 50): a CI-sized smoke run of the same code path, whatever the preset; its
numbers are not meaningful."""


@dataclasses.dataclass(frozen=True)
class RL2TableBenchConfig(Config):
    """What the two table benches share (each sets its own RL² preset and output folder)."""

    rl2: RL2Config = rl2_preset("bandits-10")
    """The RL² configuration every setting trains (a preset with --config)."""
    settings: tuple[str, ...] = ()
    """Settings to train it on: 'n x k' (pulls x arms) for bandits, n (episodes) for MDPs;
    default: its own family's."""
    quick: bool = False
    """CI-sized: at most 5 iterations of 32 trials and 200 test tasks."""
    num_tasks: Size = 1000
    """Held-out test tasks per setting."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds (the CI is over tasks for one seed, over per-seed means for several)."""
    eval_seed: int = EVAL_SEED
    """Seed of the held-out tasks."""
    runs: tuple[Path, ...] = ()
    """Score the models of these ``adaptrl train rl2`` runs (one per training seed, one
    setting: the runs') instead of training; --rl2.* and --seeds are then not used."""
    device: str = "cpu"
    """Device for training and evaluation."""
    out: Path = Path("results/rl2-bandits")
    """Directory for results.json and report.md."""


@dataclasses.dataclass(frozen=True)
class RL2BanditBenchConfig(RL2TableBenchConfig):
    """RL² Table 1: RL² trained per setting beside Gittins, UCB1, Thompson sampling and random
    (presets: bandits-10, and bandits-100 for trials of 100 pulls or more)."""


@dataclasses.dataclass(frozen=True)
class RL2MDPBenchConfig(RL2TableBenchConfig):
    """RL² Table 2: RL² trained per setting beside PSRL and random on random tabular MDPs
    (presets: mdps-10, and mdps-25 for trials of more than 10 episodes)."""

    rl2: RL2Config = rl2_preset("mdps-10")
    """The RL² configuration every setting trains (a preset with --config)."""
    out: Path = Path("results/rl2-mdps")
    """Directory for results.json and report.md."""


def load_rl2_runs(paths: tuple[Path, ...], family: Any) -> list[RL2]:
    """The trained RL² models of ``paths``, each checked to be an RL² run on ``family`` and all
    of one configuration and budget (one row stands for one of each)."""
    from adaptrl.algos.trainer import load_trained

    learners = [load_trained(path, expect=RL2) for path in paths]
    for path, learner in zip(paths, learners, strict=True):
        if learner.config.family != family:
            raise ConfigError(
                f"{path} was trained on {learner.config.family}, not this setting's {family}; "
                "pass the run's setting with --settings"
            )
    first = learners[0]
    for path, learner in zip(paths[1:], learners[1:], strict=True):
        if learner.config != first.config or learner.iteration != first.iteration:
            raise ConfigError(
                f"{path} differs from {paths[0]} in configuration or completed iterations; "
                "one row stands for one configuration and budget: score them separately"
            )
    return learners


def setting_configs(bench: RL2TableBenchConfig, table: Table) -> list[RL2Config]:
    """The RL² configuration of each setting: the bench's, on the setting's family."""
    cfg = bench.rl2
    if cfg.family.family_id != table.family_id:
        raise ConfigError(
            f"this table runs on {table.family_id}; the RL² configuration is on "
            f"{cfg.family.family_id}"
        )
    if bench.quick:
        capped = {k: min(getattr(cfg, k), v) for k, v in QUICK.items()}
        cfg = dataclasses.replace(cfg, **capped, minibatches=min(cfg.minibatches, capped["trials"]))
    if bench.runs and len(bench.settings) > 1:
        raise ConfigError(f"--runs scores one setting; got settings {list(bench.settings)}")
    families = [dataclasses.replace(cfg.family, **table.setting(s)) for s in bench.settings]
    return [dataclasses.replace(cfg, family=f) for f in families] or [cfg]


def trained_learners(
    cfg: RL2Config, bench: RL2TableBenchConfig, label: str
) -> tuple[list[RL2], list[float | None], RL2Config]:
    """The RL² models of a setting (trained per seed, or the ``--runs``), their training
    seconds (None for runs) and the configuration they stand for (a run's budget is the
    iterations it completed)."""
    if bench.runs:
        learners = load_rl2_runs(bench.runs, cfg.family)
        done = dataclasses.replace(learners[0].config, iterations=learners[0].iteration)
        return learners, [None] * len(learners), done
    learners, seconds = [], []
    for seed in bench.seeds:
        learner = RL2(cfg, seed=seed, device=bench.device)
        seconds.append(train_timed(learner, cfg.iterations, f"rl2 {label} seed {seed}")["seconds"])
        learners.append(learner)
    return learners, seconds, cfg


def score_setting(
    cfg: RL2Config, bench: RL2TableBenchConfig, table: Table
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train (or load) RL², evaluate it beside the table's classic agents; rows and a summary."""
    family = make_family(cfg.family)
    key = table.key(cfg.family)
    label = "x".join(map(str, key)) if isinstance(key, tuple) else str(key)
    learners, seconds, cfg = trained_learners(cfg, bench, label)
    seeds = [lr.seed for lr in learners]
    specs: list[Any] = [
        (f"rl2-seed{lr.seed}", lambda f, lr=lr: lr.trial_agent()) for lr in learners
    ]
    tune_tasks = 50 if bench.quick else 300
    specs += [
        (e.agent, tune(family, e, tune_tasks, seeds[0], bench.device)) for e in table.classics
    ]
    res = evaluate(
        family,
        specs,
        num_tasks=bench.num_tasks,
        eval_seed=bench.eval_seed,
        device=bench.device,
        show_progress=False,
    )
    ours, classics = res.agents[: len(learners)], res.agents[len(learners) :]
    per_seed = [a.returns.sum(-1).double().mean().item() for a in ours]
    mean, ci = ours[0].trial_return() if len(ours) == 1 else mean_ci(per_seed)
    paper = table.paper.get(key, {})
    rows = [row(label, "rl2 (ours)", {}, (mean, ci), paper.get("rl2"), per_seed=per_seed)]
    for entry, agent in zip(table.classics, classics, strict=True):
        stats = agent.trial_return()
        rows.append(row(label, entry.agent, agent.params, stats, paper.get(entry.column)))
    reference = rows[1]["mean"]
    target = table.target(cfg.family)
    summary = {
        "setting": label,
        "config": config_to_dict(cfg),
        "seeds": seeds,
        "train_seconds": seconds,
        "ratio_to_" + table.classics[0].agent: mean / reference,
        "target_ratio": target,
        "target_met": mean >= target * reference,
        "rl2_episode_curve": torch.cat([a.returns for a in ours]).double().mean((0, 1)).tolist(),
        "reference": table.source,
    }
    return rows, summary


def row(
    setting: str, agent: str, params: dict, stats: tuple[float, float], paper: Any, **extra: Any
) -> dict[str, Any]:
    """One row of a table bench's results: mean and 95% CI (``stats``) beside the paper's."""
    mean, ci = stats
    return dict(
        setting=setting, agent=agent, params=params, mean=mean, ci95=ci, paper=paper, **extra
    )


def table_report(
    table: Table, bench: RL2TableBenchConfig, rows: list[dict], summaries: list[dict]
) -> dict[str, Any]:
    """Print and write the results table and the targets table."""
    cols = ["setting", "agent", "ours (95% CI)", table.source]
    cells = [
        [
            r["setting"],
            r["agent"] + "".join(f" {k}={v}" for k, v in r["params"].items()),
            f"{r['mean']:.2f} ± {r['ci95']:.2f}",
            "—" if r["paper"] is None else f"{r['paper']}",
        ]
        for r in rows
    ]
    ratio = "ratio_to_" + table.classics[0].agent
    tcols = ["setting", ratio.replace("_", " "), "target", "met", "train s", "iterations"]
    tcols.append("memory / outer")
    targets = [
        [
            s["setting"],
            f"{s[ratio]:.3f}",
            f">= {s['target_ratio']}",
            "yes" if s["target_met"] else "NO",
            " / ".join("run" if t is None else f"{t:.0f}" for t in s["train_seconds"]),
            str(s["config"]["iterations"]),
            f"{s['config']['memory']} / {s['config']['outer']}",
        ]
        for s in summaries
    ]
    print_table(table.title, cols, cells)
    print_table("RL² targets", tcols, targets)
    seeds = summaries[0]["seeds"]
    header = {
        "tasks": f"{bench.num_tasks} held-out test tasks per setting (eval seed {bench.eval_seed})",
        "training seeds": seeds,
        "ci": "95% Student-t over tasks (one seed) or over per-seed means (several)",
    }
    markdown = table_markdown(table.title, header, cols, cells)
    markdown += "\n" + table_markdown("Targets", {}, tcols, targets).split("\n", 2)[2]
    payload = {**header, "reference": table.source, "rows": rows, "settings": summaries}
    return write_bench(bench.out, payload, markdown, seeds=seeds)


def run_table(bench: RL2TableBenchConfig, table: Table) -> dict[str, Any]:
    """Train and score RL² on every setting of ``bench`` beside ``table``'s classic agents."""
    if bench.quick:
        bench = dataclasses.replace(bench, num_tasks=min(bench.num_tasks, 200))
    rows, summaries = [], []
    for cfg in setting_configs(bench, table):
        r, s = score_setting(cfg, bench, table)
        rows += r
        summaries.append(s)
    return table_report(table, bench, rows, summaries)


# ------------------------------------------------------------------------------------------
# Speed


@dataclasses.dataclass(frozen=True)
class RL2SpeedBenchConfig(Config):
    """RL² training-loop throughput against the environment alone and the policy forward cost,
    and the wall-clock time to reach 6.5 on bandits n=10, k=5."""

    bandits: RL2Config = rl2_preset("bandits-10")
    """The bandit configuration timed, and trained to the target."""
    mdps: RL2Config = rl2_preset("mdps-10")
    """The tabular-MDP configuration timed (with its own memory and with a transformer)."""
    quick: bool = False
    """CI-sized: 3 timed iterations of 32 trials; the time-to-target run: 40 iterations of 32."""
    iterations: Size = 10
    """Timed iterations per configuration (after one warm-up iteration)."""
    target: float = 6.5
    """Return on bandit 10x5 held-out tasks whose first crossing is timed."""
    eval_every: Size = 25
    """Iterations between validation checks in the time-to-target run."""
    eval_tasks: Size = 1000
    """Tasks per validation check, and held-out test tasks scored at the end."""
    max_minutes: float = 15.0
    """Give up on the target after this much training time."""
    seed: int = 0
    """Training seed."""
    device: str = "cpu"
    """Device."""
    out: Path = Path("results/rl2-speed")
    """Directory for results.json and report.md."""


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

    seconds = interleaved_seconds(
        {
            "train": learner.meta_train_step,
            "collect": lambda: collect_trials(net, env, obs, learner.steps, gen),
            "env_only": env_only,
            "policy_forward": policy_only,
        },
        iterations,
    )
    timed = {k: statistics.median(v) for k, v in seconds.items()}
    out = {f"{k}_steps_per_s": steps / v for k, v in timed.items()}
    out["update_seconds_per_iteration"] = timed["train"] - timed["collect"]
    out["batch"] = cfg.trials
    out["steps_per_iteration"] = steps
    return out


VALIDATION_SEED = 7_777
"""Seed of the meta-train-split tasks the time-to-target run stops on (never the test tasks)."""


def time_to_target(bench: RL2SpeedBenchConfig) -> dict[str, Any]:
    """Train bandit RL² and time (training only) its first validation score >= target.

    The stopping rule reads only meta-train-split tasks (a fixed validation draw), so the time is
    not chosen on the tasks it is then scored on; the held-out test score of the model that
    stopped is reported beside it, with its 95% CI.
    """
    cfg = dataclasses.replace(bench.bandits, iterations=100_000)
    if bench.quick:
        cfg = dataclasses.replace(cfg, iterations=40, trials=min(cfg.trials, 32))
    family = make_family(cfg.family)
    history: list[tuple[int, float, float]] = []
    clock = {"train": 0.0, "last": time.perf_counter()}
    test: dict[str, float] = {}

    def score(learner: RL2, split: str, seed: int) -> tuple[float, float]:
        agents = [("rl2", lambda f: learner.trial_agent())]
        kw = {"num_tasks": bench.eval_tasks, "eval_seed": seed, "split": split}
        return evaluate(family, agents, show_progress=False, **kw).agents[0].trial_return()

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

    learner = RL2(cfg, seed=bench.seed, device=bench.device)
    train_timed(learner, cfg.iterations, "rl2 bandits to target", on_iteration=check)
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
    configs = {
        "bandit 10x5": bench.bandits,
        "tabular MDP n=10": bench.mdps,
        "tabular MDP n=10, transformer": dataclasses.replace(bench.mdps, memory="transformer"),
    }
    if bench.quick:  # CI: the same loops on a small batch
        configs = {name: dataclasses.replace(cfg, trials=32) for name, cfg in configs.items()}
    throughput = {name: measure_throughput(cfg, iters, bench.seed) for name, cfg in configs.items()}
    target = time_to_target(bench)
    cols = ["configuration", "trials (batch)", "train steps/s", "collect steps/s"]
    cols += ["policy-forward steps/s (bound)", "env-only steps/s", "collect / bound"]
    cols.append("train / collect")
    rows = [
        [
            name,
            str(t["batch"]),
            *(f"{t[k + '_steps_per_s']:,.0f}" for k in ("train", "collect", "policy_forward")),
            f"{t['env_only_steps_per_s']:,.0f}",
            f"{t['collect_steps_per_s'] / t['policy_forward_steps_per_s']:.2f}",
            f"{t['train_steps_per_s'] / t['collect_steps_per_s']:.2f}",
        ]
        for name, t in throughput.items()
    ]
    print_table("RL² throughput (env steps per second)", cols, rows)
    reached = (
        f"{target['train_seconds']:.0f} s ({target['iterations']} iterations; held-out test "
        f"score {target['test_score']['mean']:.2f} ± {target['test_score']['ci95']:.2f})"
        if target["reached"]
        else "not reached"
    )
    line = (
        f"Time to {target['target']} on bandit 10x5 (training only): {reached}; {target['eval']}."
    )
    print(line)
    markdown = table_markdown("RL² speed", {}, cols, rows) + f"\n{line}\n"
    payload = {"throughput": throughput, "time_to_target": target}
    return write_bench(bench.out, payload, markdown, seeds=[bench.seed])


register_bench(
    BenchSpec(
        "rl2-bandits",
        RL2BanditBenchConfig,
        lambda bench: run_table(bench, BANDITS),
        "RL² Table 1: RL² trained per setting beside Gittins, UCB1, TS and random",
        presets="rl2",
        preset_field="rl2",
    )
)
register_bench(
    BenchSpec(
        "rl2-mdps",
        RL2MDPBenchConfig,
        lambda bench: run_table(bench, MDPS),
        "RL² Table 2: RL² trained per setting beside PSRL and random",
        presets="rl2",
        preset_field="rl2",
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
