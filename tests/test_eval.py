"""The evaluation protocol: exact accounting of per-episode returns, CIs, determinism, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.core.errors import ConfigError, DeviceError
from adaptrl.envs import TaskBatch, make_family
from adaptrl.eval import evaluate, mean_ci, run_trials, within
from adaptrl.eval.protocol import run_trial_outcomes
from adaptrl.eval.report import save_report, to_dict, to_markdown


class ConstantAgent(TrialAgent):
    """Always takes the same action (for exact bookkeeping checks)."""

    name = "constant"

    def __init__(self, action):
        self.action = torch.as_tensor(action)

    def begin_trial(self, env, tasks, generator):
        self.n = env.num_envs

    def act(self, obs):
        return self.action.expand(self.n, *self.action.shape).clone()


class NoisyAgent(TrialAgent):
    """Random arms from its own generator (for determinism and seed checks)."""

    name = "noisy"

    def begin_trial(self, env, tasks, generator):
        self.env, self.gen = env, generator

    def act(self, obs):
        k = self.env.action_space.n
        return torch.randint(k, (self.env.num_envs,), generator=self.gen)


def test_mean_ci_exact():
    mean, hw = mean_ci([1.0, 2.0, 3.0, 4.0])
    # t_{0.975, 3} = 3.182446305; sd = 1.2909944; sem = 0.6454972
    assert mean == 2.5
    assert hw == pytest.approx(3.182446305 * 0.6454972244, rel=1e-8)
    assert mean_ci([5.0]) == (5.0, math.inf)
    with pytest.raises(ValueError):
        mean_ci([])


def test_within_uses_ci_or_one_percent():
    assert within(100.0, 0.5, 100.9)  # within 1% of 100.9
    assert not within(100.0, 0.5, 102.0)
    assert within(10.0, 2.5, 12.0)  # inside the CI


def test_run_trials_counts_every_episode_of_a_bandit_trial():
    fam = make_family("bandit-bernoulli-v0", k=2, n=7)
    tasks = TaskBatch({"probs": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])})
    env = fam.make_env(3)
    out = run_trials(ConstantAgent(0), env, tasks, 7, torch.Generator().manual_seed(0), 0)
    assert out.shape == (3, 7)
    assert torch.equal(out, torch.tensor([[1.0] * 7, [0.0] * 7, [1.0] * 7]))


def test_run_trials_handles_early_termination_exactly():
    fam = make_family("nav2d-goal-v0", n=2, horizon=100)
    # goal 0.3 to the right: three moves of 0.1 give rewards -0.2, -0.1, -0.0 and terminate.
    tasks = TaskBatch({"goal": torch.tensor([[0.3, 0.0], [-0.3, 0.0]])})
    out = run_trials(ConstantAgent([0.1, 0.0]), fam.make_env(2), tasks, 2, torch.Generator(), 0)
    assert out[0].tolist() == pytest.approx([-0.3, -0.3], abs=1e-5)
    # moving away never terminates: 100 steps at distance 0.3 + 0.1 t
    far = -sum(0.3 + 0.1 * t for t in range(1, 101))
    assert out[1].tolist() == pytest.approx([far, far], rel=1e-5)


def test_evaluate_is_deterministic_and_seeds_matter():
    fam = make_family("bandit-bernoulli-v0", k=5, n=10)
    kw = dict(num_tasks=64, seeds=(0, 1), show_progress=False)
    a = evaluate(fam, [("noisy", lambda f: NoisyAgent())], **kw)
    b = evaluate(fam, [("noisy", lambda f: NoisyAgent())], **kw)
    r = a.agents[0].returns
    assert r.shape == (2, 64, 10)
    assert torch.equal(r, b.agents[0].returns)
    assert not torch.equal(r[0], r[1])  # seeds change the agent's draws


def test_evaluate_resume_from_completed_units_gives_identical_numbers():
    fam = make_family("bandit-bernoulli-v0", k=3, n=5)
    units: dict[str, torch.Tensor] = {}
    kw = dict(num_tasks=50, chunk_size=20, show_progress=False)
    full = evaluate(fam, [("noisy", lambda f: NoisyAgent())], on_unit=units.__setitem__, **kw)
    assert len(units) == 3  # chunks of 20, 20, 10
    first = dict(list(units.items())[:2])
    ran: list[str] = []
    resumed = evaluate(
        fam,
        [("noisy", lambda f: NoisyAgent())],
        completed=first,
        on_unit=lambda k, v: ran.append(k),
        **kw,
    )
    assert ran == [list(units)[2]]
    assert torch.equal(full.agents[0].returns, resumed.agents[0].returns)


def test_held_out_tasks_do_not_depend_on_agents_or_seeds():
    fam = make_family("tabular-mdp-v0")
    assert fam.tasks(10, "test", 123).equal(fam.tasks(10, "test", 123))
    assert not fam.tasks(10, "test", 123).equal(fam.tasks(10, "train", 123))


@pytest.mark.parametrize("kwargs", [dict(episodes=0), dict(seeds=()), dict(num_tasks=0)])
def test_evaluate_rejects_impossible_budgets(kwargs):
    fam = make_family("bandit-bernoulli-v0")
    with pytest.raises(ConfigError):
        evaluate(fam, [("noisy", lambda f: NoisyAgent())], show_progress=False, **kwargs)


def test_batch_that_does_not_fit_is_a_device_error():
    fam = make_family("tabular-mdp-v0", num_states=4000)
    with pytest.raises(DeviceError, match="chunk-size"):
        evaluate(fam, [("noisy", lambda f: NoisyAgent())], num_tasks=1000, show_progress=False)


def test_reports_carry_tasks_seeds_budget_and_raw_numbers(tmp_path):
    fam = make_family("bandit-bernoulli-v0", k=2, n=4)
    res = evaluate(fam, [("noisy", lambda f: NoisyAgent())], num_tasks=8, show_progress=False)
    d = to_dict(res)
    assert d["num_tasks"] == 8 and d["episodes"] == 4 and d["seeds"] == [0]
    assert len(d["agents"][0]["returns"][0]) == 8 and len(d["agents"][0]["returns"][0][0]) == 4
    assert d["provenance"]["commit"] and d["provenance"]["machine"]["cores"]
    md = to_markdown(res)
    assert "8 held-out test tasks" in md and "budget: 4 episode(s)" in md and "95% CI" in md
    paths = save_report(res, tmp_path)
    assert paths["plot"].stat().st_size > 1000 and paths["json"].exists()


def test_success_is_recorded_per_episode_where_the_family_reports_it(tmp_path):
    """A nav2d variant that reports success on reaching its goal: an agent that always steps
    toward +x succeeds on goals it reaches within the horizon and fails on the others."""
    from test_envs_contract import GoalSuccess

    family = GoalSuccess(make_family("nav2d-goal-v0", goal_radius=0.5).config)
    goals = torch.tensor([[0.3, 0.0], [-0.4, 0.4]])
    out, success = run_trial_outcomes(
        ConstantAgent([0.1, 0.0]), family.make_env(2), TaskBatch({"goal": goals}), 2,
        torch.Generator(), 0,
    )  # fmt: skip
    assert success is not None and success.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert out.shape == (2, 2)
    # plain families report none
    plain = make_family("nav2d-goal-v0")
    _, none = run_trial_outcomes(
        ConstantAgent([0.1, 0.0]), plain.make_env(2), TaskBatch({"goal": goals}), 1,
        torch.Generator(), 0,
    )  # fmt: skip
    assert none is None
    # through evaluate: a success rate per episode in the result, the JSON and the report
    result = evaluate(family, ["random"], num_tasks=6, episodes=2, show_progress=False)
    rate = result.agents[0].success_curve()
    assert rate is not None and len(rate[0]) == 2 and all(0.0 <= m <= 1.0 for m in rate[0])
    assert "Success rate per episode" in to_markdown(result)
    save_report(result, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["agents"][0]["success"][0]) == 6
    assert evaluate(plain, ["random"], num_tasks=2, show_progress=False).agents[0].success is None
