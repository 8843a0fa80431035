"""The meta-test protocol for trial agents (DESIGN.md, "The evaluation protocol").

Held-out *test* tasks are drawn with a fixed evaluation seed, independent of any training seed.
Every agent runs a trial of ``episodes`` episodes on each task (its adaptation budget) in a batched
environment; we record the return of every episode of every task. With several seeds the
confidence interval is taken over the per-seed means; with one seed, over tasks. All agents see the
same tasks and the same environment seed (common random numbers), so differences are theirs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.baselines.registry import make_agent
from adaptrl.core.errors import ConfigError, DeviceError
from adaptrl.core.progress import progress
from adaptrl.core.seeding import derive_seed, make_generator
from adaptrl.envs.base import BatchedEnv, TaskBatch, TaskFamily
from adaptrl.eval.stats import mean_ci

#: The default evaluation seed: test tasks are the same for every run that does not change it.
EVAL_SEED = 20161102


def run_trials(
    agent: TrialAgent,
    env: BatchedEnv,
    tasks: TaskBatch,
    episodes: int,
    generator: torch.Generator,
    env_seed: int,
) -> torch.Tensor:
    """Run one trial of ``episodes`` episodes per row; return per-episode returns ``[B, episodes]``.

    Rows whose episodes end early (terminal states) keep stepping after their budget is spent,
    but those rewards fall into a discarded column, so the loop has no data-dependent branching.
    """
    return run_trial_outcomes(agent, env, tasks, episodes, generator, env_seed)[0]


def run_trial_outcomes(
    agent: TrialAgent,
    env: BatchedEnv,
    tasks: TaskBatch,
    episodes: int,
    generator: torch.Generator,
    env_seed: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`run_trials`' returns and, for families that report success (Meta-World), whether
    each episode succeeded ``[B, episodes]`` (1.0 if ``env.success`` was set at any of its steps,
    Meta-World's definition); ``None`` for the others."""
    env.set_tasks(tasks)
    obs = env.reset(seed=env_seed)
    agent.begin_trial(env, tasks, generator)
    returns = torch.zeros(env.num_envs, episodes + 1, device=env.device)
    succeeded = torch.zeros(env.num_envs, episodes + 1, device=env.device)
    episode = torch.zeros(env.num_envs, dtype=torch.long, device=env.device)
    for _ in range(episodes * env.max_episode_steps):
        action = agent.act(obs)
        step = env.step(action)
        agent.observe(obs, action, step)
        column = episode.clamp_max(episodes).unsqueeze(1)
        returns.scatter_add_(1, column, step.reward.unsqueeze(1))
        if env.success is not None:
            succeeded.scatter_reduce_(1, column, env.success.float().unsqueeze(1), "amax")
        episode += step.terminated | step.truncated
        obs = step.obs
    success = succeeded[:, :episodes] if env.success is not None else None
    return returns[:, :episodes], success


@dataclasses.dataclass
class AgentResult:
    """Per-episode returns ``[seeds, tasks, episodes]`` of one agent on the evaluation tasks, and
    for families that report success, whether each episode succeeded (same shape, 0 or 1)."""

    name: str
    params: dict[str, Any]
    returns: torch.Tensor
    success: torch.Tensor | None = None

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.params.items())})"

    def trial_return(self) -> tuple[float, float]:
        """Mean total return over a trial and its 95% CI half-width."""
        totals = self.returns.sum(-1).double()
        if totals.shape[0] > 1:
            return mean_ci(totals.mean(1).numpy())
        return mean_ci(totals[0].numpy())

    def episode_curve(self) -> tuple[list[float], list[float]]:
        """Mean return of each episode of the trial and its 95% CI half-width."""
        return _per_episode(self.returns)

    def success_curve(self) -> tuple[list[float], list[float]] | None:
        """Success rate of each episode of the trial (over tasks, or over seed means) and its
        95% CI half-width; None for families without success."""
        return None if self.success is None else _per_episode(self.success)


def _per_episode(values: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean of ``[seeds, tasks, episodes]`` values per episode, with the 95% CI half-width over
    tasks (one seed) or over seed means."""
    r = values.double()
    per = r.mean(1) if r.shape[0] > 1 else r[0]
    pairs = [mean_ci(per[:, e].numpy()) for e in range(r.shape[-1])]
    return [m for m, _ in pairs], [h for _, h in pairs]


@dataclasses.dataclass
class EvalResult:
    """Everything an evaluation measured, with what it needs to be trusted."""

    family: TaskFamily
    num_tasks: int
    episodes: int
    eval_seed: int
    seeds: tuple[int, ...]
    agents: list[AgentResult]
    model: str | None = None
    """Which trained model was scored (``eval.learners.describe_model``), when one was."""

    def budget(self) -> str:
        return (
            f"{self.episodes} episode(s) per trial of at most "
            f"{self.family.max_episode_steps} step(s)"
        )

    def get(self, name: str) -> AgentResult:
        for a in self.agents:
            if a.name == name or a.label == name:
                return a
        raise KeyError(name)


AgentSpecLike = str | tuple[str, dict[str, Any]] | tuple[str, Callable[[TaskFamily], TrialAgent]]


def unit_key(name: str, params: Mapping[str, Any], seed: int, chunk: int) -> str:
    """The id of one unit of evaluation work (used as a checkpoint tensor name)."""
    label = name + "".join(f",{k}={v}" for k, v in sorted(params.items()))
    return f"{label}/seed={seed}/chunk={chunk}"


def _build(spec: AgentSpecLike, family: TaskFamily) -> tuple[str, dict[str, Any], TrialAgent]:
    if isinstance(spec, str):
        return spec, {}, make_agent(spec, family)
    name, extra = spec
    if callable(extra):
        return name, {}, extra(family)
    return name, dict(extra), make_agent(name, family, **extra)


def evaluate(
    family: TaskFamily,
    agents: Sequence[AgentSpecLike],
    *,
    num_tasks: int = 1000,
    episodes: int | None = None,
    eval_seed: int = EVAL_SEED,
    seeds: Sequence[int] = (0,),
    split: str = "test",
    device: str | torch.device = "cpu",
    chunk_size: int = 1000,
    show_progress: bool = True,
    completed: Mapping[str, torch.Tensor] | None = None,
    on_unit: Callable[[str, torch.Tensor], None] | None = None,
) -> EvalResult:
    """Run every agent on the same ``num_tasks`` held-out tasks within the same budget.

    ``agents`` items are agent ids, ``(id, params)`` pairs, or ``(label, factory)`` pairs where
    ``factory(family)`` returns a :class:`TrialAgent` (e.g. a trained meta-learner).

    Work is done in units of (agent, seed, chunk of tasks), each seeded only by its own key, so a
    unit gives the same numbers whatever ran before it. ``on_unit(key, returns)`` is called after
    each unit (to checkpoint it; also ``on_unit(key + "/success", success)`` for families that
    report success) and units found in ``completed`` are not run again (to resume).
    """
    episodes = family.episodes_per_trial if episodes is None else episodes
    if episodes < 1:
        raise ConfigError(f"the budget must be at least 1 episode, got {episodes}")
    if num_tasks < 1 or chunk_size < 1:
        raise ConfigError("num_tasks and chunk_size must be >= 1")
    if not seeds:
        raise ConfigError("give at least one seed")
    built = [_build(spec, family) for spec in agents]
    try:
        tasks = family.tasks(num_tasks, split, eval_seed, device=device)  # type: ignore[arg-type]
        chunks = [(i, tasks[i : i + chunk_size]) for i in range(0, num_tasks, chunk_size)]
        results = []
        total = len(built) * len(seeds) * len(chunks)
        bar = progress(
            total=total, description=f"eval {family.family_id}", disable=not show_progress
        )
        with bar:
            for name, params, agent in built:
                per_seed, success_per_seed = [], []
                for seed in seeds:
                    parts, success_parts = [], []
                    for i, chunk in chunks:
                        key = unit_key(name, params, seed, i)
                        if completed is not None and key in completed:
                            out, success = completed[key], completed.get(key + "/success")
                        else:
                            env = family.make_env(len(chunk), device)
                            gen = make_generator(seed, "agent", name, i, device=device)
                            env_seed = derive_seed(eval_seed, "env", i)
                            out, success = run_trial_outcomes(
                                agent, env, chunk, episodes, gen, env_seed
                            )
                            out, success = out.cpu(), None if success is None else success.cpu()
                            if on_unit is not None:
                                on_unit(key, out)
                                if success is not None:
                                    on_unit(key + "/success", success)
                        parts.append(out)
                        success_parts.append(success)
                        bar.advance()
                    per_seed.append(torch.cat(parts))
                    if family.reports_success:
                        success_per_seed.append(torch.cat(success_parts))
                success_all = torch.stack(success_per_seed) if success_per_seed else None
                results.append(AgentResult(name, params, torch.stack(per_seed), success_all))
    except torch.OutOfMemoryError as exc:
        raise DeviceError(
            f"a batch of {min(num_tasks, chunk_size)} tasks does not fit on {device}; "
            "lower --chunk-size (or --num-tasks)"
        ) from exc
    except RuntimeError as exc:
        if "can't allocate memory" in str(exc) or "out of memory" in str(exc):
            raise DeviceError(
                f"a batch of {min(num_tasks, chunk_size)} tasks does not fit in {device} memory; "
                "lower --chunk-size (or --num-tasks, or the family's sizes)"
            ) from exc
        raise
    return EvalResult(family, num_tasks, episodes, eval_seed, tuple(seeds), results)


def tune_agent(
    family: TaskFamily,
    agent: str,
    fixed: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    *,
    num_tasks: int,
    seed: int,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """``agent``'s parameters: ``fixed``, plus the value of the one parameter in ``grid`` that
    gives the best mean trial return on ``num_tasks`` *meta-train* tasks (drawn with ``seed``).
    Test tasks never choose a baseline's parameters."""
    if not grid:
        return dict(fixed)
    if len(grid) != 1:
        raise ConfigError(f"tune one parameter at a time, got {sorted(grid)}")
    ((param, values),) = grid.items()
    res = evaluate(
        family,
        [(agent, {**fixed, param: v}) for v in values],
        num_tasks=num_tasks,
        split="train",
        eval_seed=seed,
        seeds=(seed,),
        device=device,
        show_progress=False,
    )
    return dict(max(res.agents, key=lambda a: a.trial_return()[0]).params)
