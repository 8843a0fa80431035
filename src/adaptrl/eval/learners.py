"""Evaluate a trained meta-learner on held-out tasks, the way the classic agents are evaluated.

* Memory learners (``trial_agent``) run trials through :func:`adaptrl.eval.protocol.evaluate`,
  beside any baseline agents, on the same held-out tasks and environment noise.
* Gradient learners (``adaptation_curve``) give the metric after 0..S inner steps on held-out tasks,
  written as a :class:`~adaptrl.eval.curves.CurveReport`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import torch

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import ALGOS
from adaptrl.core.config import config_to_dict
from adaptrl.core.device import resolve_device
from adaptrl.core.errors import ConfigError
from adaptrl.core.progress import progress
from adaptrl.core.seeding import make_generator
from adaptrl.envs import make_family
from adaptrl.eval.curves import AdaptationCurve, CurveReport, curve_markdown, save_curve_report
from adaptrl.eval.protocol import EVAL_SEED, evaluate
from adaptrl.eval.report import save_report, to_markdown


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """How a trained learner is evaluated (the adaptation budget and the test tasks)."""

    num_tasks: int = 1000
    """Held-out test tasks."""
    eval_seed: int = EVAL_SEED
    """Seed of the test tasks (keep it fixed to compare runs)."""
    split: str = "test"
    """Task split to evaluate on."""
    steps: int | None = None
    """Inner gradient steps (gradient learners); default: the learner's own."""
    episodes: int | None = None
    """Episodes per trial (memory learners); default: the family's."""
    baselines: tuple[str, ...] = ()
    """Classic agents to run on the same tasks (memory learners), e.g. gittins ucb1 random."""
    seeds: tuple[int, ...] = (0,)
    """Sampling seeds of the evaluation."""
    chunk_size: int = 500
    """Tasks evaluated at once."""
    inner_lrs: tuple[float, ...] = ()
    """Test-time inner step sizes, the last repeated (MAML-RL, e.g. the paper's 0.1 0.05);
    default: the run's own schedule."""
    eval_batch: Literal["episodes", "steps"] | None = None
    """What a test batch holds (MAML-RL): "episodes" (each environment's first) or "steps" (a
    step budget, as the authors' rllab sampler drew it); default: the run's own."""
    device: str = "cpu"
    show_progress: bool = True


def task_source(learner: MetaLearner) -> Any:
    """The family a learner was trained on (an RL task family or a few-shot family)."""
    kind = ALGOS.get(learner.name).kind if learner.name in ALGOS else "rl"
    if kind == "fewshot":
        from adaptrl.fewshot import make_fewshot_family  # type: ignore[import-not-found]

        return make_fewshot_family(learner.config.family)
    return make_family(learner.config.family)


def describe_model(learner: MetaLearner) -> str:
    """Which model an evaluation scores: algorithm, training seed and iterations trained out of
    those configured, so a score of a checkpoint taken mid-run cannot pass for the final model's."""
    done = learner.iteration
    planned = getattr(learner.config, "iterations", None)
    of = f" of {planned}" if isinstance(planned, int) and planned != done else ""
    noun = "iteration" if done == 1 and not of else "iterations"
    return f"{learner.name}, training seed {learner.seed}, {done}{of} {noun} trained"


def with_test_step_sizes(learner: MetaLearner, lrs: tuple[float, ...]) -> MetaLearner:
    """``learner`` adapting with step sizes ``lrs`` at test time (the last repeated).

    Only the evaluation schedule changes (``config.eval_inner_lrs``); the trained parameters and
    the training schedule stay, so a saved run can be scored under another test protocol without
    editing its ``config.yaml``. Empty ``lrs`` leaves the learner as it is."""
    if not lrs:
        return learner
    if any(not lr > 0 for lr in lrs):
        raise ConfigError(f"--inner-lrs must all be > 0, got {list(lrs)}")
    return _with_test_option(learner, "--inner-lrs", "eval_inner_lrs", tuple(lrs))


def with_test_batch(learner: MetaLearner, batch: str | None) -> MetaLearner:
    """``learner`` drawing its test batches as ``batch`` says ("episodes" or "steps", see
    ``MAMLRLConfig.eval_batch``, which checks the value); None leaves the learner as it is."""
    if batch is None:
        return learner
    return _with_test_option(learner, "--eval-batch", "eval_batch", batch)


def _with_test_option(learner: MetaLearner, flag: str, field: str, value: Any) -> MetaLearner:
    if field not in {f.name for f in dataclasses.fields(learner.config)}:
        raise ConfigError(
            f"{flag} sets a test-time option ({field}) that {learner.name} does not have "
            "(MAML-RL runs do)"
        )
    learner.config = dataclasses.replace(learner.config, **{field: value})
    return learner


def evaluate_learner(learner: MetaLearner, opts: EvalOptions, out_dir: str | Path) -> str:
    """Evaluate ``learner``; write results.json, report.md and curve.png into ``out_dir``."""
    if opts.num_tasks < 1 or opts.chunk_size < 1:
        raise ConfigError("num_tasks and chunk_size must be >= 1")
    learner = with_test_batch(with_test_step_sizes(learner, opts.inner_lrs), opts.eval_batch)
    if learner.supports("trial_agent"):
        return _evaluate_trials(learner, opts, Path(out_dir))
    if learner.supports("adaptation_curve"):
        return _evaluate_curve(learner, opts, Path(out_dir))
    raise ConfigError(f"{learner.name} has neither trial_agent nor adaptation_curve to evaluate")


def _evaluate_trials(learner: MetaLearner, opts: EvalOptions, out_dir: Path) -> str:
    if opts.steps is not None:
        raise ConfigError(
            f"{learner.name} adapts within a trial, not by gradient steps: use --episodes"
        )
    family = task_source(learner)
    agents: list[Any] = [(n, lambda fam, f=f: f()) for n, f in learner.trial_agents().items()]
    agents += list(opts.baselines)
    result = evaluate(
        family,
        agents,
        num_tasks=opts.num_tasks,
        episodes=opts.episodes,
        eval_seed=opts.eval_seed,
        seeds=opts.seeds,
        split=opts.split,
        device=resolve_device(opts.device),
        chunk_size=opts.chunk_size,
        show_progress=opts.show_progress,
    )
    result = dataclasses.replace(result, model=describe_model(learner))
    save_report(result, out_dir)
    return to_markdown(result)


def _evaluate_curve(learner: MetaLearner, opts: EvalOptions, out_dir: Path) -> str:
    if opts.episodes is not None:
        raise ConfigError(f"{learner.name} adapts by gradient steps: use --steps, not --episodes")
    if opts.baselines:
        raise ConfigError(
            f"--baselines applies to trial learners; {learner.name}'s comparisons with "
            "from-scratch and pretrained learners are in its `adaptrl bench`"
        )
    steps = learner.default_eval_steps if opts.steps is None else opts.steps
    if steps < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}")
    source = task_source(learner)
    device = resolve_device(opts.device)
    tasks = source.tasks(opts.num_tasks, opts.split, seed=opts.eval_seed, device=device)
    # Families that report success (Meta-World) get the success rate of the same episodes too.
    with_success = bool(getattr(source, "reports_success", False)) and learner.supports(
        "adaptation_success"
    )
    values, rates = [], []
    for seed in opts.seeds:
        parts, rate_parts = [], []
        starts = range(0, opts.num_tasks, opts.chunk_size)
        for start in progress(
            starts, description=f"eval {learner.name}", disable=not opts.show_progress
        ):
            chunk = _slice(tasks, start, min(start + opts.chunk_size, opts.num_tasks))
            gen = make_generator(opts.eval_seed, "adapt", seed, start, device=device)
            if with_success:
                curve, rate = learner.adaptation_success(chunk, steps, gen)
                rate_parts.append(rate.detach().cpu())
            else:
                curve = learner.adaptation_curve(chunk, steps, gen)
            parts.append(curve.detach().cpu())
        values.append(torch.cat(parts))
        if with_success:
            rates.append(torch.cat(rate_parts))
    meta = {
        "family": source.family_id,
        "config": config_to_dict(learner.config),
        "num_tasks": opts.num_tasks,
        "eval_seed": opts.eval_seed,
        "seeds": list(opts.seeds),
        "training_seed": learner.seed,
        "model": describe_model(learner),
        "budget": f"{steps} inner gradient steps",
    }
    report = _curve_report(learner, source.family_id, learner.metric, values, steps, meta)
    markdown = curve_markdown(report)
    if with_success:
        success = _curve_report(learner, source.family_id, "success rate", rates, steps, meta)
        save_curve_report(success, out_dir / "success")
        markdown += "\n" + curve_markdown(success).replace("# ", "## ", 1)
        report.meta["success_report"] = "success/report.md"
    save_curve_report(report, out_dir)
    (out_dir / "report.md").write_text(markdown)
    return markdown


def _curve_report(
    learner: MetaLearner,
    family_id: str,
    metric: str,
    values: list[torch.Tensor],
    steps: int,
    meta: dict[str, Any],
) -> CurveReport:
    """The report of one metric's per-seed ``[tasks, points]`` values."""
    # Several sampling seeds: average per task, so the CI stays over tasks.
    curve = torch.stack(values).double().mean(0)
    return CurveReport(
        title=f"{learner.name} on {family_id}"
        + ("" if metric == learner.metric else f": {metric}"),
        metric=metric,
        x_label="gradient steps" if curve.shape[1] > 1 or steps > 0 else "adaptation",
        x=list(range(curve.shape[1])),
        higher_is_better=learner.higher_is_better or metric == "success rate",
        curves=[AdaptationCurve(learner.name, curve)],
        meta=dict(meta),
    )


def _slice(tasks: Any, start: int, stop: int) -> Any:
    if hasattr(tasks, "chunk"):
        return tasks.chunk(start, stop)
    return tasks[start:stop]
