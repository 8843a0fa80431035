"""``adaptrl demo``: every family with its classic baselines, then RL² meta-trained live.

The demo writes a markdown report with plots: each built-in family's classic agents on held-out
tasks, and RL² (the ``rl2/bandits-10`` preset, fewer iterations) trained with the one training
loop on bandits n=10, k=5 and scored beside Gittins and random on the same tasks.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.algos.trainer import train
from adaptrl.baselines import AGENTS
from adaptrl.cli.commands import DemoCmd
from adaptrl.core.device import resolve_device
from adaptrl.core.errors import ConfigError
from adaptrl.core.presets import load_preset
from adaptrl.core.progress import console
from adaptrl.envs import make_family
from adaptrl.eval.protocol import evaluate
from adaptrl.eval.report import plot_overview, save_figure, save_report, to_markdown

DEMO_FAMILIES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "bandit-bernoulli-v0",
        {"k": 5, "n": 100},
        ["random", "greedy", "thompson", "ucb1", "gittins"],
    ),
    ("tabular-mdp-v0", {"n": 10}, ["random", "greedy-mdp", "psrl", "oracle"]),
    ("gridworld-goal-v0", {}, ["random", "psrl", "goal-search", "oracle"]),
    ("nav2d-goal-v0", {}, ["random", "oracle"]),
]
DEMO_MARKER = ".adaptrl-demo"


def run_demo(cmd: DemoCmd) -> int:
    """Every family with its classic agents on held-out tasks; a markdown report with plots.

    The output directory is replaced only if an earlier demo made it (it holds a marker file);
    anything else already there is refused, never deleted.
    """
    # The demo's tensors are small: a second thread gains nothing, and when another process holds
    # a core, two spinning OpenMP threads slow RL²'s training many times over.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_demo(cmd)
    finally:
        torch.set_num_threads(threads)


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / DEMO_MARKER).exists():
            raise ConfigError(
                f"{out} exists and was not made by `adaptrl demo`; choose another --out"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("made by adaptrl demo; the next demo may replace this folder\n")


def _run_demo(cmd: DemoCmd) -> int:
    start = time.perf_counter()
    _prepare(cmd.out)
    device = resolve_device(cmd.device)
    sections = [
        "# adaptrl demo",
        "",
        "Classic agents on held-out tasks of every built-in family, then RL² meta-trained live "
        "on bandits and scored beside Gittins and random.",
        "",
        "![every family](overview.png)",
        "",
    ]
    results = []
    for fid, overrides, agents in DEMO_FAMILIES:
        family = make_family(fid, **overrides)
        usable = [a for a in agents if AGENTS.get(a).supports(family)]
        result = evaluate(family, usable, num_tasks=cmd.num_tasks, device=device)
        save_report(result, cmd.out / fid)
        results.append(result)
        md = to_markdown(result).replace("# Evaluation on", "## Evaluation on")
        sections += [md, f"![{fid}]({fid}/curve.png)", ""]
        console().print(md)
    plot_overview(results, cmd.out / "overview.png")
    if cmd.rl2_iterations > 0:
        section = rl2_demo(cmd.out / "rl2-bandits", cmd.num_tasks, device, cmd.rl2_iterations)
        sections.append(section)
        console().print(section)
    report = cmd.out / "README.md"
    report.write_text("\n".join(sections))
    seconds = time.perf_counter() - start
    console().print(f"demo report: {report} and {cmd.out / 'overview.png'} ({seconds:.0f} s)")
    return 0


def rl2_demo(out: Path, num_tasks: int, device: torch.device, iterations: int) -> str:
    """Train RL² live on bandits n=10, k=5 and show it beside Gittins and random.

    Writes ``out/results.json``, ``report.md``, ``curve.png`` (return per pull within the trial,
    held-out tasks) and ``training.png`` (trial return per iteration against the two references);
    returns the markdown section.
    """
    cfg = dataclasses.replace(load_preset(RL2Config, "rl2", "bandits-10"), iterations=iterations)
    learner = RL2(cfg, seed=0, device=device)
    curve: list[float] = []
    t0 = time.perf_counter()
    train(
        learner,
        iterations=iterations,
        description="demo: RL² learning to explore (bandits 10x5)",
        on_iteration=lambda _, m: curve.append(m["trial_return"]),
    )
    seconds = time.perf_counter() - t0
    result = evaluate(
        learner.family,
        [("rl2", lambda f: learner.trial_agent()), "gittins", "random"],
        num_tasks=num_tasks,
        device=device,
        show_progress=False,
    )
    save_report(result, out)
    refs = {a.label: a.trial_return()[0] for a in result.agents if a.label != "rl2"}
    _plot_training(curve, refs, out / "training.png")
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
    return save_figure(fig, path)
