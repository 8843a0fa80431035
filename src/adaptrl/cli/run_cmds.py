"""What each ``adaptrl`` command does, built from library calls."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adaptrl.baselines import AGENTS, make_agent
from adaptrl.cli.commands import EvalCmd
from adaptrl.core import distributed
from adaptrl.core.checkpoint import load_checkpoint, save_checkpoint
from adaptrl.core.config import config_from_dict, load_yaml_config, parse_dotted
from adaptrl.core.device import resolve_device
from adaptrl.core.errors import ConfigError, TrainingError
from adaptrl.core.logging import MetricLogger
from adaptrl.core.progress import console
from adaptrl.core.rundir import RunDir
from adaptrl.core.seeding import seed_everything
from adaptrl.core.table import print_table
from adaptrl.envs import FAMILIES, make_family
from adaptrl.eval.protocol import evaluate
from adaptrl.eval.report import (
    load_results,
    plot_curves,
    save_report,
    to_markdown,
)

if TYPE_CHECKING:
    from adaptrl.eval.curves import CurveReport

PARTIAL = "partial"


def run_list() -> int:
    rows = []
    for fid, cls in FAMILIES.items():
        rows.append([fid, (cls.__doc__ or "").strip().splitlines()[0], _options(cls.config_cls)])
    print_table(
        "Task families (adaptrl eval FAMILY --help)", ["id", "what", "options (defaults)"], rows
    )
    fams = [make_family(fid) for fid in FAMILIES]
    rows = []
    for name, spec in AGENTS.items():
        where = ", ".join(f.family_id for f in fams if spec.supports(f))
        params = ", ".join(f"{k}={v!r}" for k, v in spec.params.items()) or "—"
        rows.append([name, spec.description, params, where])
    print_table("Agents (adaptrl eval ... --agents ID)", ["id", "what", "params", "families"], rows)
    from adaptrl.fewshot import FEWSHOT_FAMILIES

    rows = []
    for fid, cls in FEWSHOT_FAMILIES.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        rows.append([fid, cls.kind, doc, _options(cls.config_cls)])
    print_table(
        "Few-shot families (adaptrl train METHOD FAMILY --help)",
        ["id", "kind", "what", "options (defaults)"],
        rows,
    )
    print_algos()
    print_benches()
    print_presets()
    return 0


def _options(config_cls: type) -> str:
    """``name=default`` for every field of a config class (``name=<required>`` without one)."""
    return ", ".join(
        f"{f.name}=<required>" if f.default is dataclasses.MISSING else f"{f.name}={f.default!r}"
        for f in dataclasses.fields(config_cls)
    )


def print_algos() -> None:
    from adaptrl.algos import ALGOS

    rows = [[name, spec.kind, spec.description] for name, spec in ALGOS.items()]
    print_table(
        "Algorithms (adaptrl train ALGO --help)", ["id", "kind", "what"], rows or [["—", "", ""]]
    )


def print_benches() -> None:
    from adaptrl.bench import BENCHES

    rows = [[name, " ".join(spec.description.split())] for name, spec in BENCHES.items()]
    print_table("Benchmarks (adaptrl bench NAME --help)", ["id", "what"], rows)


def print_presets() -> None:
    from adaptrl.core.presets import list_presets

    rows = [[p.group, p.name, p.summary] for p in list_presets()]
    print_table(
        "Presets (adaptrl train ALGO --config NAME, adaptrl bench NAME --config NAME)",
        ["for", "name", "what"],
        rows,
    )


def run_train(algo: str, cmd: Any) -> int:
    """Create the run directory, train, and optionally evaluate on held-out tasks. Under
    ``torchrun`` every process trains its share of each meta-batch; the first one writes."""
    from adaptrl.algos.registry import ALGOS
    from adaptrl.algos.trainer import new_run, train_run

    make_family_of(cmd.algo)  # validate the family and the device before creating anything
    device = resolve_device(cmd.device)
    world = distributed.init_from_env(device)
    # one time stamp for every process (the first one's), so they all name the same directory
    now = world.gather(torch.tensor([int(time.time())], device=device))[0].item()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    out = cmd.out if cmd.out is not None else Path("runs") / algo / stamp
    # Building the learner checks what only it can (a replay buffer too large for memory, a
    # context longer than a trial, actions the algorithm cannot take) before the run exists.
    learner = ALGOS.get(algo).learner_cls(cmd.algo, seed=cmd.seed, device=device)
    if world.is_main:
        new_run(
            out,
            cmd.algo,
            seed=cmd.seed,
            device=cmd.device,
            checkpoint_every=cmd.checkpoint_every,
            keep=cmd.keep,
            final_eval_tasks=cmd.final_eval_tasks,
        )
        console().print(f"run directory: {out}" + _processes(world))
    world.barrier()
    learner = train_run(out, learner=learner)
    return _after_training(Path(out), learner, world)


def default_run_dir(algo: str) -> Path:
    """Where a run goes without ``--out``: ``runs/ALGO/<UTC time stamp>``."""
    return Path("runs") / algo / time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def launch_processes(nproc: int, args: list[str], out: Path) -> int:
    """``adaptrl train ARGS --nproc N`` (already parsed and checked): the same command as ``N``
    ``torchrun`` processes on this machine, training the run at ``out``. Success is read from what
    the first process completed (the final model in ``out``), not from the launcher's exit code
    alone: gloo can abort in process-group teardown after all the work is done
    (docs/architecture.md, "Many processes")."""
    import os
    import subprocess
    import sys

    if "WORLD_SIZE" in os.environ:
        raise ConfigError("--nproc launches torchrun itself; under torchrun leave it out")
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        raise ConfigError(f"--nproc needs torchrun (part of torch) beside {sys.executable}")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", str(nproc)]
    code = subprocess.call([*cmd, "-m", "adaptrl.cli.main", "train", *args])
    if code == 0:
        return 0
    if (out / "model.json").exists():
        console().print(
            f"torchrun exited with code {code} after the first process saved the final model "
            f"in {out}: training completed (a process aborted while leaving the process group)"
        )
        return 0
    raise TrainingError(
        f"training with {nproc} processes stopped (torchrun exit code {code}); the run keeps its "
        f"newest checkpoint: continue with `adaptrl train --resume {out} --nproc {nproc}`"
    )


def _processes(world: distributed.World) -> str:
    return f" ({world.size} processes)" if world.size > 1 else ""


def resume_train(path: Path) -> int:
    """Continue a killed training run from its newest checkpoint (under ``torchrun`` with any
    number of processes: the result does not depend on it)."""
    from adaptrl.algos.trainer import read_run, train_run

    record = read_run(path)[1]
    world = distributed.init_from_env(resolve_device(record.device))
    learner = train_run(path, resume=True)
    return _after_training(Path(path), learner, world)


def _after_training(path: Path, learner: Any, world: distributed.World) -> int:
    from adaptrl.algos.trainer import read_run

    world.barrier()  # the first process has written the model; leave together
    distributed.shutdown()
    if not world.is_main:
        return 0
    tasks = read_run(path)[1].final_eval_tasks
    console().print(f"trained {learner.name} for {learner.iteration} iterations: {path}")
    if tasks > 0:
        from adaptrl.eval.learners import EvalOptions, evaluate_learner

        md = evaluate_learner(learner, EvalOptions(num_tasks=tasks), path / "eval")
        console().print(md)
    return 0


def make_family_of(config: Any) -> Any:
    """Build (and so validate) the family of an algorithm config."""
    from adaptrl.algos import ALGOS
    from adaptrl.algos.registry import algo_of_config

    if ALGOS.get(algo_of_config(config).name).kind == "fewshot":
        from adaptrl.fewshot import make_fewshot_family  # type: ignore[import-not-found]

        return make_fewshot_family(config.family)
    return make_family(config.family)


def run_eval_run(path: Path, cmd: Any) -> int:
    """``adaptrl eval RUN_DIR``: evaluate a trained learner on held-out tasks."""
    from adaptrl.algos.trainer import load_trained
    from adaptrl.eval.learners import evaluate_learner

    family = getattr(cmd, "family", None)  # --family: another family's tasks
    learner = load_trained(path, device=resolve_device(cmd.options.device), family=family)
    opts = cmd.options
    out = cmd.out if cmd.out is not None else Path(path) / "eval"
    md = evaluate_learner(learner, opts, out)
    console().print(md)
    console().print(f"wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'curve.png'}")
    return 0


def run_adapt(path: Path, cmd: Any) -> int:
    """``adaptrl adapt RUN_DIR``: adapt to new tasks, save adapted parameters and the tasks."""
    from adaptrl.algos.trainer import load_trained
    from adaptrl.core.config import config_to_dict
    from adaptrl.core.seeding import make_generator
    from adaptrl.eval.learners import task_source, with_test_batch, with_test_step_sizes

    if cmd.num_tasks < 1:
        raise ConfigError(f"--num-tasks must be >= 1, got {cmd.num_tasks}")
    device = resolve_device(cmd.device)
    family = getattr(cmd, "family", None)  # --family: another family's tasks
    learner = with_test_batch(
        with_test_step_sizes(load_trained(path, device=device, family=family), cmd.inner_lrs),
        cmd.eval_batch,
    )
    if not learner.supports("adapt"):
        learner.adapt(None, 0, make_generator(0))  # raises the learner's explanation
    steps = learner.default_eval_steps if cmd.steps is None else cmd.steps
    if steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {steps}")
    source = task_source(learner)
    tasks = source.tasks(cmd.num_tasks, cmd.split, seed=cmd.task_seed, device=device)
    adapted = learner.adapt(tasks, steps, make_generator(cmd.seed, "adapt", device=device))
    tensors = {f"params.{k}": v.detach() for k, v in adapted.items()}
    task_tensors = (
        dict(tasks.params)
        if isinstance(getattr(tasks, "params", None), dict)  # RL TaskBatch; FewShotBatch below
        else {
            f.name: getattr(tasks, f.name)
            for f in dataclasses.fields(tasks)
            if isinstance(getattr(tasks, f.name), torch.Tensor)
        }
    )
    tensors.update({f"task.{k}": v.detach() for k, v in task_tensors.items()})
    out = cmd.out if cmd.out is not None else Path(path) / "adapted"
    meta = {
        "algo": learner.name,
        "run": str(path),
        "steps": steps,
        "num_tasks": cmd.num_tasks,
        "split": cmd.split,
        "task_seed": cmd.task_seed,
        "seed": cmd.seed,
        "inner_lrs": list(cmd.inner_lrs),
        "eval_batch": getattr(learner.config, "eval_batch", None),
        "family": source.family_id,
        "family_config": config_to_dict(learner.config.family) if family is not None else None,
    }
    save_checkpoint(out, tensors, meta)
    console().print(
        f"adapted {learner.name} to {cmd.num_tasks} {cmd.split} tasks with {steps} steps: "
        f"{out}.safetensors (+ .json)"
    )
    return 0


def _agent_specs(cmd: EvalCmd) -> list[tuple[str, dict[str, Any]]]:
    params = parse_dotted(cmd.params, "AGENT")
    unknown = sorted(set(params) - set(cmd.agents))
    if unknown:
        raise ConfigError(f"--params given for agent(s) not in --agents: {', '.join(unknown)}")
    return [(name, params.get(name, {})) for name in cmd.agents]


def resume_eval(path: Path) -> int:
    """Continue a killed evaluation: finished units come from its checkpoint, the rest are run."""
    run = RunDir.open(path)
    cmd = load_yaml_config(EvalCmd, run.config_path)
    return _eval_into(run, cmd, _load_partial(run))


def run_eval(cmd: EvalCmd) -> int:
    """Evaluate into a new run directory (``--resume`` continues an existing one)."""
    if cmd.resume is not None:
        return resume_eval(cmd.resume)
    if not cmd.agents:
        raise ConfigError("give at least one agent with --agents")
    family = make_family(cmd.family)  # validate before creating anything on disk
    for name, params in _agent_specs(cmd):
        make_agent(name, family, **params)
    run = RunDir.create(cmd.out.parent, cmd.out.name)
    run.save_config(cmd)
    return _eval_into(run, cmd, {})


def _eval_into(run: RunDir, cmd: EvalCmd, completed: dict[str, torch.Tensor]) -> int:
    seed_everything(cmd.seeds[0] if cmd.seeds else 0)  # for user agents using global RNGs
    family = make_family(cmd.family)
    device = resolve_device(cmd.device)
    specs = _agent_specs(cmd)

    with MetricLogger(run) as logger:

        def on_unit(key: str, returns: torch.Tensor) -> None:
            # Log before checkpointing: a kill between the two re-runs the unit on resume, and
            # truncate_after() then drops its orphan row, so metrics.csv matches an unkilled run.
            completed[key] = returns
            column = key.rsplit("/chunk=", 1)[0] + "/trial_return"  # one column per agent and seed
            logger.log(len(completed), {column: float(returns.sum(1).mean())})
            save_checkpoint(
                run.checkpoint_dir / PARTIAL, dict(completed), {"units": sorted(completed)}
            )

        if completed:
            logger.truncate_after(len(completed))
        result = evaluate(
            family,
            specs,
            num_tasks=cmd.num_tasks,
            episodes=cmd.episodes,
            eval_seed=cmd.eval_seed,
            seeds=cmd.seeds,
            device=device,
            chunk_size=cmd.chunk_size,
            completed=completed,
            on_unit=on_unit,
        )
    paths = save_report(result, run.path)
    console().print(to_markdown(result))
    console().print(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")
    return 0


def _load_partial(run: RunDir) -> dict[str, torch.Tensor]:
    path = run.checkpoint_dir / PARTIAL
    if not path.with_suffix(".json").exists():
        return {}
    tensors, _ = load_checkpoint(path)
    return dict(tensors)


def run_plot(run_dir: Path, beside: tuple[Path, ...] = (), out: Path | None = None) -> int:
    """Redraw an evaluation's curve (from results.json) and a run's metrics (from metrics.csv);
    with ``beside``, one report of several adaptation-curve evaluations on the same tasks."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory; give a run directory made by adaptrl")
    if beside:
        return plot_beside([run_dir, *beside], out or run_dir / "beside")
    made = []
    if (run_dir / "results.json").exists():
        made.append(plot_curves_from_json(run_dir / "results.json", run_dir / "curve.png"))
    if (run_dir / "metrics.csv").exists():
        made.extend(plot_metrics(run_dir / "metrics.csv", run_dir / "plots"))
    if not made:
        raise ConfigError(f"{run_dir} has neither results.json nor metrics.csv to plot")
    for p in made:
        console().print(f"wrote {p}")
    return 0


def _curve_report(path: Path) -> CurveReport:
    """The adaptation-curve report in a directory (its results.json) or a results.json file."""
    from adaptrl.eval.curves import load_curve_report

    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{path} has no results.json; give an evaluation's directory or file")
    try:
        return load_curve_report(file)
    except ValueError as e:
        raise ConfigError(f"{e}: --beside draws gradient learners' evaluations") from None


def plot_beside(paths: list[Path], out: Path) -> int:
    """Merge evaluations on the same tasks into one report with one plot (checked, not trusted)."""
    from adaptrl.eval.curves import merge_curve_reports, save_curve_report

    paths = [Path(p) for p in paths]
    reports = [_curve_report(p) for p in paths]
    dirs = [(p if p.is_dir() else p.parent).resolve() for p in paths]
    for depth in range(1, max(len(d.parts) for d in dirs) + 1):  # shortest unique path tails
        names = ["/".join(d.parts[-depth:]) for d in dirs]
        if len(set(names)) == len(names):
            break
    try:
        merged = merge_curve_reports(reports, names)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for p in save_curve_report(merged, out).values():
        console().print(f"wrote {p}")
    return 0


def plot_curves_from_json(path: Path, out: Path) -> Path:
    """Redraw an evaluation's plot from its JSON: trials per episode (memory learners and
    classic agents) or the adaptation curve (gradient learners)."""
    from adaptrl.eval.curves import curve_report_from_dict, plot_adaptation
    from adaptrl.eval.protocol import AgentResult, EvalResult

    data = load_results(path)
    if data.get("kind") == "adaptation-curve":
        return plot_adaptation(curve_report_from_dict(data), out)
    config = FAMILIES.get(data["family"]).config_cls
    family = make_family(config_from_dict(config, data["family_config"]))
    agents = [
        AgentResult(
            a["name"],
            a["params"],
            torch.tensor(a["returns"]),
            torch.tensor(a["success"], dtype=torch.float32) if "success" in a else None,
        )
        for a in data["agents"]
    ]
    result = EvalResult(
        family, data["num_tasks"], data["episodes"], data["eval_seed"], tuple(data["seeds"]), agents
    )
    return plot_curves(result, out)


def plot_metrics(csv_path: Path, out_dir: Path) -> list[Path]:
    """One PNG per numeric column of metrics.csv against the step column."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ConfigError(f"{csv_path} has no rows yet")
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for col in rows[0]:
        if col == "step":
            continue
        pts = [(float(r["step"]), float(r[col])) for r in rows if r.get(col) not in (None, "")]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.plot(*zip(*pts, strict=True))
        ax.set_xlabel("step")
        ax.set_title(col, fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / (col.replace("/", "_").replace("=", "-") + ".png")
        fig.savefig(path)
        plt.close(fig)
        made.append(path)
    return made
