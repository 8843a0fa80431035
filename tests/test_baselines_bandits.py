"""Bernoulli-bandit baselines: performance against RL² Table 1, determinism, tie-breaking, errors."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import _trials as trials
from adaptrl.baselines import AGENTS, make_agent
from adaptrl.baselines import gittins as gittins_module
from adaptrl.baselines.generic import random_argmax
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.envs import make_family

BANDIT_AGENTS = ["random", "greedy", "eps-greedy", "ucb1", "thompson", "ots", "gittins"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTRL_CACHE", str(tmp_path))
    monkeypatch.setattr(gittins_module, "_MEMORY", {})


def run_trial(family, agent, num_tasks, seed=0, task_seed=11, env_seed=5, record=False):
    """Total reward per task over one trial (and the actions taken)."""
    out = trials.run_trial(family, agent, num_tasks, seed, task_seed, env_seed, record)
    return (out[0].sum(1), out[1]) if record else out.sum(1)


@pytest.fixture(scope="module")
def returns_10x5():
    """Mean trial return of every agent on 2000 tasks of n = 10 pulls, k = 5 arms."""
    family = make_family("bandit-bernoulli-v0", n=10, k=5)
    params = {"ucb1": {"c": 0.2}}
    return {
        name: float(
            run_trial(family, make_agent(name, family, **params.get(name, {})), 2000).mean()
        )
        for name in BANDIT_AGENTS
    }


def test_random_matches_paper(returns_10x5):
    assert returns_10x5["random"] == pytest.approx(5.0, abs=0.15)  # RL² Table 1: 5.0


@pytest.mark.parametrize("name", ["gittins", "ucb1", "greedy", "eps-greedy"])
def test_informed_agents_beat_random(returns_10x5, name):
    # RL² Table 1 (n=10, k=5): Gittins 6.6, UCB1 6.7, greedy 6.6, eps-greedy 6.6
    assert returns_10x5[name] > 6.2
    assert returns_10x5[name] > returns_10x5["random"] + 1.0


def test_thompson_matches_paper(returns_10x5):
    # Thompson sampling explores a lot in a 10-pull trial: RL² Table 1 gives 5.7
    assert returns_10x5["thompson"] == pytest.approx(5.7, abs=0.2)
    assert returns_10x5["ots"] > returns_10x5["thompson"]


def test_gittins_beats_thompson_on_longer_trials():
    family = make_family("bandit-bernoulli-v0", n=100, k=5)
    ret = {"gittins": float(run_trial(family, make_agent("gittins", family), 300).mean())}
    ret["thompson"] = float(run_trial(family, make_agent("thompson", family), 300).mean())
    ret["random"] = float(run_trial(family, make_agent("random", family), 300).mean())
    # RL² Table 1 (n=100, k=5): Gittins 78.3, TS 74.7, random 49.9
    assert ret["gittins"] > 75.0
    assert ret["gittins"] > ret["thompson"] > ret["random"] + 15


@pytest.mark.parametrize("name", BANDIT_AGENTS)
def test_same_seed_same_actions(name):
    family = make_family("bandit-bernoulli-v0", n=15, k=4)
    _, a1 = run_trial(family, make_agent(name, family), 64, seed=3, record=True)
    _, a2 = run_trial(family, make_agent(name, family), 64, seed=3, record=True)
    assert torch.equal(a1, a2)
    # every agent draws from its generator (at least to break ties between untried arms)
    _, a3 = run_trial(family, make_agent(name, family), 64, seed=4, record=True)
    assert not torch.equal(a1, a3)


@pytest.mark.parametrize("name", ["greedy", "ucb1", "gittins", "eps-greedy"])
def test_first_pull_ties_are_broken_uniformly(name):
    # Before any pull every arm has the same score: the first arm must be uniform, not always 0.
    family = make_family("bandit-bernoulli-v0", n=3, k=4)
    agent = make_agent(name, family)
    env = family.make_env(4000)
    tasks = family.tasks(4000, "test", 0)
    env.set_tasks(tasks)
    obs = env.reset(seed=0)
    agent.begin_trial(env, tasks, make_generator(0, "ties"))
    counts = torch.bincount(agent.act(obs), minlength=4).double()
    assert bool((counts > 900).all()) and bool((counts < 1100).all())


def test_random_argmax_ties_only():
    gen = make_generator(1, "t")
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0]]).expand(3000, 4)
    picks = random_argmax(scores, gen)
    assert set(picks.tolist()) == {1, 2}
    assert abs(int((picks == 1).sum()) - 1500) < 150


def test_gittins_variants_and_params():
    family = make_family("bandit-bernoulli-v0", n=20, k=3)
    finite = float(run_trial(family, make_agent("gittins", family), 500).mean())
    disc = float(run_trial(family, make_agent("gittins", family, gamma=0.9), 500).mean())
    rand = float(run_trial(family, make_agent("random", family), 500).mean())
    assert finite > rand + 3 and disc > rand + 3
    # a longer trial than declared falls back to the posterior mean instead of failing
    short = make_agent("gittins", family, horizon=5)
    assert float(run_trial(family, short, 50).mean()) > rand


def test_last_pull_is_greedy():
    # With one pull left the finite-horizon index is the posterior mean.
    family = make_family("bandit-bernoulli-v0", n=12, k=3)
    agent = make_agent("gittins", family)
    env = family.make_env(2)
    tasks = family.tasks(2, "test", 0)
    env.set_tasks(tasks)
    obs = env.reset()
    agent.begin_trial(env, tasks, make_generator(0))
    agent.successes[:] = torch.tensor([[1.0, 0.0, 3.0], [0.0, 2.0, 1.0]])
    agent.failures[:] = torch.tensor([[0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])
    agent.pulls = 11  # one pull left
    assert agent.act(obs).tolist() == [0, 1]


def test_random_agent_on_box_actions():
    family = make_family("nav2d-goal-v0")
    agent = make_agent("random", family)
    env = family.make_env(500)
    tasks = family.tasks(500, "test", 0)
    env.set_tasks(tasks)
    obs = env.reset()
    agent.begin_trial(env, tasks, make_generator(0))
    a = agent.act(obs)
    assert a.shape == (500, 2)
    assert float(a.abs().max()) <= family.config.max_action
    assert float(a.std()) > 0.03


@pytest.mark.parametrize("name", [n for n in BANDIT_AGENTS if n != "random"])
def test_bandit_agents_refuse_other_families(name):
    with pytest.raises(ConfigError, match="does not run on"):
        make_agent(name, make_family("tabular-mdp-v0"))


@pytest.mark.parametrize(
    "name, params",
    [
        ("eps-greedy", {"eps": 1.5}),
        ("ucb1", {"c": -1.0}),
        ("ots", {"samples": 0}),
        ("gittins", {"gamma": 1.0}),
        ("gittins", {"horizon": 0}),
        ("ucb1", {"eps": 0.1}),
    ],
)
def test_bad_params_are_config_errors(name, params):
    with pytest.raises(ConfigError):
        make_agent(name, make_family("bandit-bernoulli-v0"), **params)


def test_registry_lists_every_bandit_agent():
    family = make_family("bandit-bernoulli-v0")
    ok = {n for n, spec in AGENTS.items() if spec.supports(family)}
    assert set(BANDIT_AGENTS) <= ok
    assert isinstance(family.action_space, gym.spaces.Discrete)


def test_ucb1_scores_and_choice_exactly():
    """Arm 0: 6 successes, 4 failures; arm 1 never pulled. With the Beta(1,1) pseudo-counts,
    n = (12, 2) and t = 14: greedy prefers arm 0 (7/12 > 1/2), UCB1's bonus picks arm 1."""
    import math

    family = make_family("bandit-bernoulli-v0", k=2, n=20)
    env = family.make_env(1)
    tasks = family.tasks(1, "test", 0)
    agent = make_agent("ucb1", family, c=0.2)
    agent.begin_trial(env, tasks, make_generator(0))
    agent.successes[0] = torch.tensor([6.0, 0.0], dtype=torch.float64)
    agent.failures[0] = torch.tensor([4.0, 0.0], dtype=torch.float64)
    expected = [
        7 / 12 + 0.2 * math.sqrt(2 * math.log(14) / 12),
        1 / 2 + 0.2 * math.sqrt(2 * math.log(14) / 2),
    ]
    assert agent.scores()[0].tolist() == pytest.approx(expected, rel=1e-12)
    assert agent.act(torch.zeros(1, dtype=torch.long)).item() == 1
    greedy = make_agent("greedy", family)
    greedy.begin_trial(env, tasks, make_generator(0))
    greedy.successes[0], greedy.failures[0] = agent.successes[0], agent.failures[0]
    assert greedy.act(torch.zeros(1, dtype=torch.long)).item() == 0


@pytest.mark.parametrize("eps, expected_best", [(0.0, 1.0), (0.5, 0.5 + 0.5 / 5), (1.0, 1 / 5)])
def test_eps_greedy_explores_at_rate_eps(eps, expected_best):
    """Arm 0 is the clear posterior favourite; eps-greedy must pick it w.p. 1 - eps + eps / k."""
    family = make_family("bandit-bernoulli-v0", k=5, n=10)
    rows = 4000
    env = family.make_env(rows)
    agent = make_agent("eps-greedy", family, eps=eps)
    agent.begin_trial(env, family.tasks(rows, "test", 0), make_generator(0))
    agent.successes[:, 0] = 9.0
    picks = agent.act(torch.zeros(rows, dtype=torch.long))
    assert (picks == 0).double().mean().item() == pytest.approx(expected_best, abs=0.03)
