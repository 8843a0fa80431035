"""bayes-optimal on gridworld-goal-v0: the DP's plan against a hand-solved grid, a plain-Python
expectimax over explicit beliefs, and brute force over every search path of a small grid."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch

from adaptrl.baselines import bayes_optimal, make_agent
from adaptrl.baselines.bayes_optimal import solve
from adaptrl.baselines.gridworld import shortest_path_lengths
from adaptrl.core.errors import ConfigError
from adaptrl.envs import TaskBatch, make_family
from adaptrl.eval import run_trials


def grid(**kw):
    return make_family("gridworld-goal-v0", test_fraction=0, **kw)


def test_two_by_two_grid_solved_by_hand():
    fam = grid(height=2, width=2, horizon=2, n=2)
    plan = solve(fam, fam.goal_cells.tolist(), quiet=True)
    # Right then down: goal (0,1) pays 2 then 2; goal (1,1) 1 then 1 (two moves away); goal (1,0)
    # 0, then found at once in episode 2: 2. Per episode (2+1+0)/3 and (2+1+2)/3.
    assert plan.actions[0].tolist() == [2, 3]
    assert plan.value == pytest.approx(8 / 3)
    assert plan.episode_returns.tolist() == pytest.approx([1.0, 5 / 3])


def expectimax(fam, prior: list[int], episodes: int) -> float:
    """Bayes-optimal expected return by recursion over (cell, belief set, step, episode), with
    normalised probabilities: an independent restatement of the problem, no bitmasks."""
    move = fam.move_table.tolist()
    H, sr, start = fam.config.horizon, fam.config.step_reward, fam.initial_state
    dist = {}
    frontier, d = [start], 0
    while frontier:
        nxt = []
        for c in frontier:
            if c not in dist:
                dist[c] = d
                nxt += move[c]
        frontier, d = nxt, d + 1

    def known(goal: int) -> float:
        k = dist[goal]
        return sr * (k - 1) + (H - k + 1) if k <= H else sr * H

    @functools.cache
    def value(cell: int, belief: frozenset, t: int, e: int) -> float:
        if t == H:
            return 0.0 if e + 1 == episodes else value(start, belief, 0, e + 1)
        best = -float("inf")
        for a in range(5):
            n = move[cell][a]
            if n in belief:
                p = 1 / len(belief)
                rest = belief - {n}
                found = (H - t) + (episodes - 1 - e) * known(n)
                cont = sr + value(n, rest, t + 1, e) if rest else 0.0
                v = p * found + (1 - p) * cont
            else:
                v = sr + value(n, belief, t + 1, e)
            best = max(best, v)
        return best

    return value(start, frozenset(prior), 0, 0)


@pytest.mark.parametrize(
    "kw",
    [
        {"height": 3, "width": 3, "horizon": 4, "n": 2, "step_reward": -0.1},
        {"height": 3, "width": 3, "horizon": 3, "n": 3, "walls": ((1, 1),)},
        {"height": 2, "width": 4, "horizon": 3, "n": 2, "step_reward": -0.5, "goal_exclusion": 2},
    ],
)
def test_dp_matches_expectimax_over_explicit_beliefs(kw):
    fam = grid(**kw)
    prior = fam.goal_cells.tolist()
    plan = solve(fam, prior, quiet=True)
    assert plan.value == pytest.approx(expectimax(fam, prior, fam.config.n), abs=1e-9)
    # The plan's own exact per-episode returns add up to its value.
    assert plan.episode_returns.sum() == pytest.approx(plan.value, abs=1e-9)


def test_no_search_path_beats_the_plan_on_a_small_grid():
    # Until the goal is found every task sees the same history, so policies are search paths:
    # try all 5^6 of them.
    fam = grid(height=2, width=3, horizon=3, n=2, step_reward=-0.1)
    prior = fam.goal_cells.tolist()
    plan = solve(fam, prior, quiet=True)
    move = fam.move_table.numpy()
    dist = shortest_path_lengths(fam.move_table.long()).double().numpy()[fam.initial_state]
    best = max(
        np.mean(
            [
                bayes_optimal._trial_returns(np.array(seq).reshape(2, 3), move, dist, g, fam).sum()
                for g in prior
            ]
        )
        for seq in itertools.product(range(5), repeat=6)
    )
    assert plan.value == pytest.approx(best, abs=1e-9)


def test_agent_scores_the_plans_exact_returns_in_the_environment():
    fam = grid(height=3, width=3, horizon=4, n=3, step_reward=-0.1)
    agent = make_agent("bayes-optimal", fam)
    goals = fam.goal_cells
    out = run_trials(
        agent,
        fam.make_env(len(goals)),
        TaskBatch({"goal": goals}),
        3,
        torch.Generator().manual_seed(0),
        0,
    )
    assert out.mean(0).tolist() == pytest.approx(agent.plan.episode_returns.tolist(), abs=1e-6)
    assert out.sum(1).mean().item() == pytest.approx(agent.plan.value, abs=1e-6)
    # Once found, the goal is reached by a shortest path and held in every later episode.
    dist = shortest_path_lengths(fam.move_table.long())[fam.initial_state, goals]
    known = -0.1 * (dist - 1) + (4 - dist + 1)
    found_early = (out[:, :2] > -0.1 * 4 + 1e-6).any(1)
    assert found_early.sum() >= 6
    assert torch.allclose(out[found_early, 2], known[found_early].float())


def test_varibad_plan_covers_every_goal_within_two_episodes():
    fam = grid(height=3, width=4, horizon=6, n=3, step_reward=-0.1, goal_exclusion=2)
    plan = solve(fam, fam.goal_cells.tolist(), quiet=True)
    # Every goal gets found by the end of episode 2, so episode 3 is pure exploitation.
    move = fam.move_table.numpy()
    seen = set()
    for e in range(2):
        cell = fam.initial_state
        for a in plan.actions[e]:
            cell = int(move[cell, a])
            seen.add(cell)
    assert set(fam.goal_cells.tolist()) <= seen
    assert plan.episode_returns[0] < plan.episode_returns[1] <= plan.episode_returns[2]


def test_errors():
    fam = grid(height=2, width=2)
    with pytest.raises(ConfigError, match="split must be one of"):
        make_agent("bayes-optimal", fam, split="val")
    with pytest.raises(ConfigError, match="at least one candidate"):
        solve(fam, [], quiet=True)
    with pytest.raises(ConfigError, match="does not run on"):
        make_agent("bayes-optimal", make_family("bandit-bernoulli-v0"))


def test_belief_space_limit_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(bayes_optimal, "MAX_MASKS", 10)
    fam = grid(height=3, width=3)
    with pytest.raises(ConfigError, match="more than 10 belief states for 8 candidate goals"):
        solve(fam, fam.goal_cells.tolist(), quiet=True)
