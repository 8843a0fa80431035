"""Rollout collection from a :class:`~adaptrl.envs.base.BatchedEnv` into time-major tensors.

The policy is any callable ``policy(obs, carry) -> (action, extras, carry)``: ``carry`` is whatever
state it threads through time (a recurrent memory, the previous action and reward for RL², a
generator, or ``None``) and ``extras`` a dict of per-step tensors to keep (log-probabilities,
values, distribution parameters). Collection runs in the caller's grad mode: wrap it in
``torch.no_grad()`` when only data is needed.

Auto-reset is the environment's (same-step, see ``envs/base.py``): ``obs[t + 1]`` is already the
first observation of the next episode where step ``t`` ended one, and ``next_obs[t]`` keeps the
observation the action actually led to (``final_obs``), which is what value bootstrapping needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from adaptrl.envs.base import BatchedEnv, Step

Policy = Callable[[torch.Tensor, Any], tuple[torch.Tensor, dict[str, torch.Tensor], Any]]
OnStep = Callable[[Any, torch.Tensor, Step], Any]


@dataclasses.dataclass
class Rollout:
    """``steps`` transitions of ``B`` environments, every field time-major ``[T, B, ...]``."""

    obs: torch.Tensor
    """Observation the action was chosen from."""
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    """The action reached a terminal state (no bootstrapping from ``next_obs``)."""
    truncated: torch.Tensor
    """The episode hit its time limit (bootstrap from ``next_obs``)."""
    next_obs: torch.Tensor
    """Observation the action led to: ``final_obs`` where an episode ended, else ``obs[t + 1]``."""
    extras: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    """Whatever the policy returned per step, stacked over time."""
    success: torch.Tensor | None = None
    """``env.success`` after each step ``[T, B]`` bool, for families that report success
    (Meta-World); ``None`` otherwise."""

    @property
    def done(self) -> torch.Tensor:
        """``terminated | truncated``: an episode ended at this step."""
        return self.terminated | self.truncated

    def __len__(self) -> int:
        return self.rewards.shape[0]


def collect(
    env: BatchedEnv,
    policy: Policy,
    obs: torch.Tensor,
    carry: Any,
    steps: int,
    on_step: OnStep | None = None,
) -> tuple[Rollout, torch.Tensor, Any]:
    """Run ``steps`` steps of ``policy`` in ``env`` from ``obs``; return the rollout and the
    observation and carry to continue from.

    Each step: ``action, extras, carry = policy(obs, carry)``; ``step = env.step(action)``;
    ``carry = on_step(carry, action, step)`` if given (e.g. to reset or feed a memory at episode
    ends). No host syncs.
    """
    if steps < 1:
        raise ValueError(f"collect needs steps >= 1, got {steps}")
    columns: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("obs", "actions", "rewards", "terminated", "truncated", "next_obs")
    }
    extras: dict[str, list[torch.Tensor]] = {}
    success: list[torch.Tensor] = []
    for _ in range(steps):
        action, step_extras, carry = policy(obs, carry)
        step = env.step(action)
        if on_step is not None:
            carry = on_step(carry, action, step)
        columns["obs"].append(obs)
        columns["actions"].append(action)
        columns["rewards"].append(step.reward)
        columns["terminated"].append(step.terminated)
        columns["truncated"].append(step.truncated)
        columns["next_obs"].append(step.final_obs)
        if env.success is not None:
            success.append(env.success)
        for key, value in step_extras.items():
            extras.setdefault(key, []).append(value)
        obs = step.obs
    stacked = {k: torch.stack(v) for k, v in columns.items()}
    rollout = Rollout(
        **stacked,
        extras={k: torch.stack(v) for k, v in extras.items()},
        success=torch.stack(success) if success else None,
    )
    return rollout, obs, carry


def episode_success(
    success: torch.Tensor, done: torch.Tensor, kept: torch.Tensor, groups: int
) -> torch.Tensor:
    """Each group's success rate ``[groups]`` over the episodes it keeps: an episode succeeds if
    ``success`` is set at any of its steps (Meta-World's definition). ``success``, ``done`` and
    ``kept`` are ``[T, groups * rows]`` (group-major rows); a kept episode is one whose last step
    is kept. A group that kept no episode has rate 0."""
    T, B = done.shape
    episode = (done.long().cumsum(0) - done.long()).T  # [B, T]: each step's episode index per row
    hit = torch.zeros(B, T, device=done.device)
    hit.scatter_reduce_(1, episode, (success & kept).T.float(), "amax")
    ended = torch.zeros(B, T, device=done.device)
    ended.scatter_reduce_(1, episode, (done & kept).T.float(), "amax")
    wins = (hit * ended).reshape(groups, -1).sum(1)
    return wins / ended.reshape(groups, -1).sum(1).clamp_min(1.0)


def step_in_episode(done: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    """Index of each step within its episode, ``[T, B]`` int64 (the baseline's time feature).

    ``start [B]`` is each row's index at the first step (``env.elapsed`` before collecting; zeros
    after a reset). The index restarts at 0 after every step where ``done`` is true.
    """
    k = torch.zeros_like(done[0], dtype=torch.long) if start is None else start.long()
    out = []
    for t in range(done.shape[0]):
        out.append(k)
        k = torch.where(done[t], torch.zeros_like(k), k + 1)
    return torch.stack(out)


def first_episode_mask(done: torch.Tensor) -> torch.Tensor:
    """True for the steps of each row's first episode, up to and including its end, ``[T, B]``.

    For one-episode-per-row collection (MAML-RL) on families that terminate early: the steps
    after the first end belong to a new episode and are masked out.
    """
    d = done.long()
    return (d.cumsum(0) - d) == 0


def step_budget_mask(done: torch.Tensor, groups: int, budget: int) -> torch.Tensor:
    """Steps of the episodes a step-budgeted sampler keeps, ``[T, B]`` bool (rllab's batches).

    Rows are group-major (``B = groups * rows_per_group``, e.g. the environments of one task) and
    step together from a reset, auto-resetting at every episode end. A group stops at the first
    step after which its completed episodes hold at least ``budget`` steps; every episode it
    completed by then is kept (all of those ending at that step too) and the rest, including the
    unfinished ones, are dropped. So a group whose episodes end early keeps more, shorter
    episodes, as rllab's vectorized sampler (``batch_size`` steps) did. A group that never reaches
    the budget keeps all its completed episodes.
    """
    if done.ndim != 2 or done.shape[1] % groups:
        raise ValueError(f"done must be [T, groups * rows], got {tuple(done.shape)} for {groups}")
    T, B = done.shape
    length = step_in_episode(done) + 1
    completed = (length * done).reshape(T, groups, B // groups).sum(2).cumsum(0)  # [T, groups]
    reached = completed >= budget
    stop = torch.where(
        reached.any(0),
        reached.long().argmax(0),
        torch.full_like(reached[0], T - 1, dtype=torch.long),
    )
    # The step each step's episode ends at (T for an episode still running at the end).
    end = torch.full_like(done[0], T, dtype=torch.long)
    ends = []
    for t in range(T - 1, -1, -1):
        end = torch.where(done[t], torch.full_like(end, t), end)
        ends.append(end)
    episode_end = torch.stack(ends[::-1])
    return episode_end <= stop.repeat_interleave(B // groups)[None, :]
