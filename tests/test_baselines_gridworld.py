"""goal-search on gridworld-goal-v0: exact shortest paths, an exact goal posterior, and learning."""

from __future__ import annotations

import pytest
import torch

from adaptrl.baselines import make_agent
from adaptrl.baselines.gridworld import shortest_path_lengths
from adaptrl.core.errors import ConfigError
from adaptrl.envs import TaskBatch, make_family
from adaptrl.eval import evaluate, run_trials


def test_shortest_paths_route_around_walls():
    fam = make_family("gridworld-goal-v0", height=3, width=3, walls=((0, 1), (1, 1)))
    dist = shortest_path_lengths(fam.move_table.long())
    # from (0,0) to (0,2) the wall forces the way down and around: (1,0) (2,0) (2,1) (2,2) (1,2) (0,2)
    assert dist[0, 2].item() == 6
    assert dist[0, 0].item() == 0 and dist[0, 3].item() == 1
    assert torch.isinf(dist[0, 1])  # a wall cell is never entered


def test_goal_is_found_then_exploited_every_episode():
    fam = make_family("gridworld-goal-v0", n=4, horizon=15)
    goal = 24  # the far corner of the 5x5 grid: 8 moves from the start, searched last
    tasks = TaskBatch({"goal": torch.tensor([goal])})
    agent = make_agent("goal-search", fam)
    out = run_trials(agent, fam.make_env(1), tasks, 4, torch.Generator().manual_seed(0), 0)
    assert out[0, 0].item() == 0  # 23 other candidates do not fit in one 15-step episode
    assert 0 < out[0, 1].item() < 8  # found during episode 2
    # from then on: reached on the 8th step (rewarded) and held for the 7 remaining steps
    assert out[0, 2].item() == 8 and out[0, 3].item() == 8
    assert agent.belief[0].nonzero().squeeze(1).tolist() == [goal]


def test_visited_cells_without_reward_are_ruled_out():
    fam = make_family("gridworld-goal-v0")
    tasks = TaskBatch({"goal": torch.tensor([24])})
    env = fam.make_env(1)
    env.set_tasks(tasks)
    obs = env.reset(seed=0)
    agent = make_agent("goal-search", fam, strategy="sample")
    agent.begin_trial(env, tasks, torch.Generator().manual_seed(1))
    before = int(agent.belief.sum())
    visited = set()
    for _ in range(6):
        action = agent.act(obs)
        step = env.step(action)
        agent.observe(obs, action, step)
        visited.add(int(step.final_obs))
        obs = step.obs
    visited.discard(fam.initial_state)
    assert int(agent.belief.sum()) == before - len(visited)
    assert not agent.belief[0, list(visited)].any() and agent.belief[0, 24]


def test_goal_search_far_beats_generic_psrl_and_rises_after_episode_one():
    fam = make_family("gridworld-goal-v0")
    res = evaluate(fam, ["psrl", "goal-search", "oracle"], num_tasks=300, show_progress=False)
    psrl, search, oracle = (res.get(n).trial_return()[0] for n in ("psrl", "goal-search", "oracle"))
    assert search > psrl + 20 and search < oracle
    curve = res.get("goal-search").episode_curve()[0]
    assert curve[1] > curve[0] + 3  # exploration in episode 1, exploitation from episode 2


def test_bad_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="strategy"):
        make_agent("goal-search", make_family("gridworld-goal-v0"), strategy="bfs")
