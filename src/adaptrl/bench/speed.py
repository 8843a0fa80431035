"""``adaptrl bench speed``: every speed figure adaptrl claims, measured in one command on the
user's machine, each beside the reference timed in the same run and the floor where one exists.

The parts are the speed benches themselves, run one after the other (each writes its full report
under ``OUT/<part>/``); this bench reads their results back and puts their headline figures in one
table:

* ``env-throughput``: environment steps/s of the batched families against Gymnasium's
  ``SyncVectorEnv`` of the same envs, and the policy-forward floor;
* ``rl2-speed``: RL² training steps/s against collection alone and the policy-forward floor;
* ``maml-speed``: seconds per exact MAML-TRPO meta-iteration against the per-task reference, with
  the floors of the rollouts' forwards and of the step's exact Fisher-vector products;
* ``fewshot-speed``: second-order MAML meta-iterations/s per few-shot shape, the best strategy
  against the per-task ``autograd.grad`` loop (learn2learn's method) and ``higher``, and the
  first-order floor;
* ``offpolicy-speed``: meta-q / pearl updates/s against a per-task loop;
* ``scaling``: MAML-RL's speed-up at 2 ``torchrun`` processes (skipped without torchrun).

Ratios are "how many times faster than the reference" (> 1 is faster) and "share of the floor's
speed reached" (1 would be at the floor).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adaptrl.bench.common import table_markdown, write_bench
from adaptrl.bench.registry import BENCHES, BenchSpec, register_bench
from adaptrl.core.config import Config
from adaptrl.core.errors import ConfigError
from adaptrl.core.progress import console
from adaptrl.core.table import print_table

Row = list[str]

PARTS = ("env-throughput", "rl2-speed", "maml-speed", "fewshot-speed", "offpolicy-speed", "scaling")


@dataclasses.dataclass(frozen=True)
class SpeedConfig(Config):
    """Run the speed benches and gather their headline figures in one report."""

    quick: bool = False
    """Each part in its own --quick form (seconds each; the figures are then only indicative)."""
    parts: tuple[str, ...] = PARTS
    """Which speed benches to run (all by default)."""
    out: Path = Path("results/bench/speed")
    """Directory for the summary (results.json, report.md) and each part's own report."""


def _x(value: float) -> str:
    return f"{value:.2f}x"


def env_throughput(r: dict[str, Any]) -> list[Row]:
    rows = []
    for row in r["rows"]:
        ours, floor = row["ours"], row["floor"]
        rows.append(
            [
                f"{row['family']}, {row['batch_size']} rows",
                f"{ours['env_steps_per_second']:,.0f} env steps/s",
                f"{_x(row['speedup_vs_reference'])} SyncVectorEnv",
                _x(floor["seconds_per_step"] / ours["seconds_per_step"]),
            ]
        )
    return rows


def rl2_speed(r: dict[str, Any]) -> list[Row]:
    return [
        [
            f"RL² training, {name}",
            f"{t['train_steps_per_s']:,.0f} steps/s",
            f"{t['train_steps_per_s'] / t['collect_steps_per_s']:.2f}x collection alone",
            _x(t["train_steps_per_s"] / t["policy_forward_steps_per_s"]),
        ]
        for name, t in r["throughput"].items()
    ]


def maml_speed(r: dict[str, Any]) -> list[Row]:
    ours = r["ours_seconds_per_iteration"]["median"]
    rows = [
        [
            "MAML-TRPO meta-iteration, nav2d (exact second order)",
            f"{ours:.3f} s",
            f"{_x(r['speedup_vs_reference'])} per-task reference",
            f"{_x(r['floor_seconds_per_iteration'] / ours)} (rollout forwards); "
            f"{_x(r['exact_fisher_products_seconds'] / ours)} (its Fisher products)",
        ]
    ]
    products = r["exact_fisher_products_seconds"]
    for label, seconds in r.get("exact_fisher_products_blocked_seconds", {}).items():
        rows.append(
            [f"  its exact Fisher products, {label} steps", f"{seconds:.3f} s",
             f"{_x(products / seconds)} one block", ""]
        )  # fmt: skip
    ref = r["reference_seconds_per_iteration"]["median"]
    for name, seconds in r.get("variants_seconds_per_iteration", {}).items():
        rows.append([f"  variant {name}", f"{seconds:.3f} s", f"{_x(ref / seconds)} reference", ""])
    return rows


def fewshot_speed(r: dict[str, Any]) -> list[Row]:
    rows = []
    for res in r["results"]:
        rates = res["meta_it_per_s"]
        best = rates[f"ours ({res['best_strategy']})"]
        rows.append(
            [
                f"second-order MAML, {res['shape']['name']}",
                f"{best:.2f} meta-it/s ({res['best_strategy']})",
                f"{_x(res['vs_autograd_loop'])} autograd loop, {_x(res['vs_higher'])} higher",
                _x(best / rates["floor"]),
            ]
        )
    return rows


def offpolicy_speed(r: dict[str, Any]) -> list[Row]:
    return [
        [
            f"{res['preset']} update",
            f"{res['updates_per_s']:.1f} updates/s",
            f"{_x(res['speedup_over_per_task_loop'])} per-task loop",
            "",
        ]
        for res in r["results"]
    ]


def scaling(r: dict[str, Any]) -> list[Row]:
    """Each process count's median seconds per meta-iteration against one process's (the
    medians the scaling bench reports)."""
    median = {int(n): statistics.median(raw["seconds"]) for n, raw in r["raw"].items()}
    return [
        [
            f"MAML-RL meta-iteration at {n} torchrun processes",
            f"{seconds:.3f} s",
            f"{_x(median[1] / seconds)} 1 process",
            "",
        ]
        for n, seconds in sorted(median.items())
        if n != 1
    ]


EXTRACT: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "env-throughput": env_throughput,
    "rl2-speed": rl2_speed,
    "maml-speed": maml_speed,
    "fewshot-speed": fewshot_speed,
    "offpolicy-speed": offpolicy_speed,
    "scaling": scaling,
}


def run_speed(cfg: SpeedConfig) -> dict[str, Any]:
    unknown = sorted(set(cfg.parts) - set(PARTS))
    if unknown:
        raise ConfigError(f"unknown speed part(s) {unknown}; the parts: {', '.join(PARTS)}")
    torchrun = Path(sys.executable).with_name("torchrun").exists()  # where scaling launches it
    rows: list[Row] = []
    parts: dict[str, Any] = {}
    for part in (p for p in PARTS if p in cfg.parts):
        if part == "scaling" and not torchrun:
            console().print("speed: scaling skipped (torchrun is not installed)")
            parts[part] = "skipped: torchrun is not installed"
            continue
        console().print(f"speed: {part}{' --quick' if cfg.quick else ''} ...")
        spec = BENCHES.get(part)
        out = cfg.out / part
        spec.run(spec.config_cls(quick=cfg.quick, out=out))
        result = json.loads((out / "results.json").read_text())
        part_rows = EXTRACT[part](result)
        rows += [[part, *row] for row in part_rows]
        parts[part] = {"report": f"{part}/report.md", "figures": part_rows}
    columns = ["bench", "figure", "ours", "vs the in-run reference", "share of the floor's speed"]
    title = "adaptrl bench speed" + (" (--quick: indicative only)" if cfg.quick else "")
    print_table(title, columns, rows)
    header = {
        "what": "each figure beside the reference timed in the same run and the floor where "
        "one exists; each part's report (linked in results.json) gives its settings",
        "machine, commit and threads": "in results.json (provenance) and each part's report",
    }
    markdown = table_markdown(title, header, columns, rows)
    return write_bench(
        cfg.out, {"benchmark": "speed", "quick": cfg.quick, "parts": parts}, markdown
    )


register_bench(
    BenchSpec(
        name="speed",
        config_cls=SpeedConfig,
        run=run_speed,
        description="every speed figure adaptrl claims, in one report with in-run references",
    )
)
