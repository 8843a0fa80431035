"""The env-throughput benchmark: its reference Gymnasium envs match our dynamics, and a quick run
reports every field with provenance. Correctness only; no timing assertions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adaptrl.bench.throughput import (
    SmallPolicy,
    ThroughputConfig,
    format_markdown,
    main,
    run_throughput,
    sample_categorical,
)
from adaptrl.envs import TaskBatch, make_family
from adaptrl.envs.reference import RefNav2DEnv, RefTabularMDPEnv, reference_vector_env


def _rollout_both(family, tasks, actions):
    """Step ours and the SyncVectorEnv reference with the same actions; yield both per step."""
    ours = family.make_env(len(tasks))
    ours.set_tasks(tasks)
    ref = reference_vector_env(family, tasks)
    obs = ours.reset(seed=0)
    ref_obs, _ = ref.reset(seed=0)
    np.testing.assert_array_equal(obs.numpy(), ref_obs)
    for action in actions:
        step = ours.step(action)
        ref_step = ref.step(action.numpy())
        yield step, ref_step
    ref.close()


def _ref_final_obs(ref_obs, info):
    """SyncVectorEnv's same-step final observation where an episode ended, else the obs."""
    final = np.array(ref_obs, copy=True)
    if "final_obs" in info:
        for i in np.flatnonzero(info["_final_obs"]):
            final[i] = info["final_obs"][i]
    return final


def test_nav2d_reference_matches_batched_env_exactly():
    family = make_family("nav2d-goal-v0", horizon=7)
    n = 6
    goals = torch.tensor(
        [[0.2, 0.0], [0.0, -0.3], [0.45, 0.45], [-0.1, 0.1], [0.3, -0.2], [0.05, 0.05]]
    )
    tasks = TaskBatch({"goal": goals})
    gen = torch.Generator().manual_seed(1)
    actions = []
    for t in range(30):
        a = 0.3 * torch.randn(n, 2, generator=gen)  # often beyond max_action: tests clipping
        a[0] = torch.tensor([0.25, 0.0])  # row 0 reaches its goal in 2 steps: terminations
        a[3] = torch.tensor([-0.1, 0.1]) if t % 7 == 0 else torch.zeros(2)  # reaches at step 1
        actions.append(a)
    saw_term = saw_trunc = False
    for step, (r_obs, r_rew, r_term, r_trunc, info) in _rollout_both(family, tasks, actions):
        np.testing.assert_array_equal(step.obs.numpy(), r_obs)
        np.testing.assert_array_equal(step.terminated.numpy(), r_term)
        np.testing.assert_array_equal(step.truncated.numpy(), r_trunc)
        # torch's vector_norm fuses the squares' sum (FMA): the distance may differ by one ulp
        np.testing.assert_allclose(step.reward.numpy(), r_rew, rtol=2e-7, atol=0)
        np.testing.assert_array_equal(step.final_obs.numpy(), _ref_final_obs(r_obs, info))
        saw_term |= bool(r_term.any())
        saw_trunc |= bool(r_trunc.any())
    assert saw_term and saw_trunc


def test_tabular_reference_deterministic_task_matches_exactly():
    # one-hot transitions and no reward noise: both envs are deterministic given the actions
    family = make_family(
        "tabular-mdp-v0", num_states=4, num_actions=3, horizon=5, reward_noise_std=0
    )
    n, s, a = 5, 4, 3
    gen = torch.Generator().manual_seed(2)
    reward_mean = torch.randn(n, s, a, generator=gen)
    nxt = torch.randint(0, s, (n, s, a), generator=gen)
    transition = torch.nn.functional.one_hot(nxt, s).float()
    tasks = TaskBatch({"reward_mean": reward_mean, "transition": transition})
    actions = [torch.randint(0, a, (n,), generator=gen) for _ in range(23)]
    for step, (r_obs, r_rew, r_term, r_trunc, info) in _rollout_both(family, tasks, actions):
        np.testing.assert_array_equal(step.obs.numpy(), r_obs)
        np.testing.assert_array_equal(step.final_obs.numpy(), _ref_final_obs(r_obs, info))
        np.testing.assert_allclose(step.reward.numpy(), r_rew, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(step.terminated.numpy(), r_term)
        np.testing.assert_array_equal(step.truncated.numpy(), r_trunc)


def test_tabular_reference_random_task_ranges_and_horizon():
    family = make_family("tabular-mdp-v0")
    n, horizon = 8, family.config.horizon
    tasks = family.tasks(n, "train", seed=3)
    gen = torch.Generator().manual_seed(3)
    actions = [torch.randint(0, family.num_actions, (n,), generator=gen) for _ in range(35)]
    for t, (step, (r_obs, r_rew, r_term, r_trunc, info)) in enumerate(
        _rollout_both(family, tasks, actions), start=1
    ):
        end = t % horizon == 0
        ref_final = _ref_final_obs(r_obs, info)
        for obs, final in ((step.obs.numpy(), step.final_obs.numpy()), (r_obs, ref_final)):
            assert ((obs >= 0) & (obs < family.num_states)).all()
            assert ((final >= 0) & (final < family.num_states)).all()
            if end:
                assert (obs == 0).all()  # same-step auto-reset to the start state
        assert not step.terminated.any() and not r_term.any()
        assert step.truncated.numpy().tolist() == [end] * n == r_trunc.tolist()
        assert np.isfinite(r_rew).all() and torch.isfinite(step.reward).all()


@pytest.mark.filterwarnings("ignore:.*infinity:UserWarning")  # nav2d's plane is unbounded
def test_reference_envs_pass_gymnasium_checker():
    from gymnasium.utils.env_checker import check_env

    check_env(RefNav2DEnv(np.array([0.1, -0.2])), skip_render_check=True)
    p = np.full((3, 2, 3), 1 / 3)
    check_env(RefTabularMDPEnv(np.zeros((3, 2)), p, horizon=4), skip_render_check=True)


@pytest.mark.parametrize("family_id", ["nav2d-goal-v0", "tabular-mdp-v0"])
def test_small_policy_actions_fit_the_action_space(family_id):
    family = make_family(family_id)
    policy = SmallPolicy(family.observation_space, family.action_space)
    env = family.make_env(16)
    env.set_tasks(family.tasks(16, "train", seed=0))
    with torch.no_grad():
        action = policy.act(env.reset(seed=0))
    env.step(action)  # the env's own checks accept the shape and dtype
    assert action.shape[0] == 16


def test_one_hot_table_equals_one_hot_linear_layer():
    import gymnasium as gym

    torch.manual_seed(0)
    policy = SmallPolicy(gym.spaces.Discrete(6), gym.spaces.Discrete(3))
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 64)  # the layer the table was folded from (same init draw)
    states = torch.tensor([0, 5, 2, 2, 3])
    one_hot = torch.nn.functional.one_hot(states, 6).float()
    expected = policy.body(linear(one_hot))
    torch.testing.assert_close(policy(states), expected)


def test_sample_categorical_matches_softmax_probabilities():
    gen_logits = torch.tensor([[0.0, 1.0, -1.0, 2.0], [5.0, -30.0, 5.0, 0.0]])
    torch.manual_seed(0)
    draws = sample_categorical(gen_logits.repeat_interleave(50_000, 0)).view(2, 50_000)
    assert draws.min() >= 0 and draws.max() <= 3
    freq = torch.stack([torch.bincount(d, minlength=4) for d in draws]).float() / 50_000
    torch.testing.assert_close(freq, gen_logits.softmax(-1), atol=0.01, rtol=0)


def _check_result(result, batch_sizes):
    for key in ("commit", "machine", "seeds", "date", "command"):
        assert result[key]
    assert result["seeds"]["seed"] == 0
    assert result["settings"]["torch_threads"] >= 1
    rows = result["rows"]
    assert [(r["family"], r["batch_size"]) for r in rows] == [
        (f, b) for f in ("nav2d-goal-v0", "tabular-mdp-v0") for b in batch_sizes
    ]
    for r in rows:
        for name in ("ours", "reference", "floor", "ours_env_only", "reference_env_only"):
            m = r[name]
            assert m["steps"] >= 1
            assert len(m["repeat_seconds"]) >= 1
            assert all(t > 0 for t in m["repeat_seconds"])
            assert m["median_seconds"] > 0 and m["env_steps_per_second"] > 0
        assert r["speedup_vs_reference"] > 0 and r["ours_over_floor"] > 0
        assert r["speedup_ceiling"] > 0 and r["env_only_speedup"] > 0


def test_quick_run_reports_every_field_and_writes_json(tmp_path):
    result = run_throughput(ThroughputConfig(quick=True, out=tmp_path))
    _check_result(result, (20, 400))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    _check_result(on_disk, (20, 400))
    assert on_disk["machine"]["cores"] >= 1
    md = (tmp_path / "report.md").read_text()
    assert md == format_markdown(result) and "nav2d-goal-v0" in md and "SyncVectorEnv" in md


def test_main_writes_results_and_restores_threads(tmp_path, capsys):
    before = torch.get_num_threads()
    config = ThroughputConfig(batch_sizes=(8,), quick=True, out=tmp_path, threads=1)
    assert main(config) == 0
    assert torch.get_num_threads() == before
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["settings"]["torch_threads"] == 1
    assert result["machine"]["torch_threads"] == 1
    assert "env-throughput" in capsys.readouterr().out  # the table, printed
