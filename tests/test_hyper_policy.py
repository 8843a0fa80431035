"""Hyper-policy (algos/hyper_policy.py, nn/hyper.py): the generated policy starts the same for every
memory state under Bias-HyperInit, reads only the current state, runs step by step as it runs on
whole trials, trains with PPO and TRPO, resumes bit for bit, and learns bandits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from _bandits import train_and_score
from _gradcheck import assert_gradient_matches_finite_differences
from adaptrl.algos.hyper_policy import HyperPolicy, HyperPolicyConfig
from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.core.checkpoint import load_state, save_state
from adaptrl.core.errors import ConfigError
from adaptrl.envs import make_family
from adaptrl.envs.bandit import BanditConfig
from adaptrl.envs.gridworld import GridworldConfig
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.nn.hyper import HyperPolicyHead, HyperRecurrentActorCritic

TINY = HyperPolicyConfig(
    family=BanditConfig(k=3, n=6), trials=16, hidden=16, epochs=2, minibatches=2, base_hidden=(8,)
)


def net_for(family, **kw) -> HyperRecurrentActorCritic:
    fam = make_family(family)
    return HyperRecurrentActorCritic(fam.observation_space, fam.action_space, hidden=12, **kw)


@pytest.mark.parametrize("family", [GridworldConfig(), Nav2DConfig(horizon=5)])
def test_bias_hyperinit_gives_every_memory_state_the_same_near_uniform_policy(family):
    torch.manual_seed(0)
    net = net_for(family, base_hidden=(8,), head_kw={"init_log_std": -0.5})
    features = torch.randn(50, 12) * 3.0
    state = torch.randn(1, net.obs_dim).expand(50, -1)
    params = net.policy_head(features, state)
    # the same state under 50 different memories: one policy, whatever the memory holds
    torch.testing.assert_close(params, params[:1].expand_as(params))
    d = net.spec.dim
    assert params[:, :d].abs().max() < 0.1  # last layer at gain 0.01: near-uniform / zero mean
    if net.spec.kind == "gaussian":
        torch.testing.assert_close(params[:, d:], torch.full_like(params[:, d:], -0.5))
    naive = net_for(family, base_hidden=(8,), hyper_init="naive")
    params = naive.policy_head(features, state)
    assert (params - params[:1]).abs().max() > 1e-3  # naive: the memory changes the policy


def test_the_generated_policy_reads_the_state_not_the_previous_transition():
    fam = make_family(GridworldConfig())
    net = HyperRecurrentActorCritic(
        fam.observation_space, fam.action_space, hidden=8, time_input=True, prev_obs_input=True
    )
    obs = torch.tensor([3, 7])
    x = net.inputs(
        obs,
        torch.ones(2, net.spec.dim),
        torch.tensor([0.5, -1.0]),
        torch.tensor([0.0, 1.0]),
        prev_obs=torch.ones(2, net.obs_dim),
        progress=0.25,
    )
    state = net.state_input(x)
    expected = torch.cat(
        [torch.nn.functional.one_hot(obs, net.obs_dim).float(), torch.full((2, 1), 0.25)], -1
    )
    torch.testing.assert_close(state, expected)
    assert net.policy_head.net.shapes[0] == (32, net.obs_dim + 1)  # (out, in) of the first layer


def test_stepping_through_a_trial_equals_running_it_whole():
    torch.manual_seed(1)
    fam = make_family(Nav2DConfig(horizon=5))
    net = HyperRecurrentActorCritic(
        fam.observation_space, fam.action_space, hidden=8, base_hidden=(6, 5), hyper_init="naive"
    )
    x = torch.randn(7, 3, net.in_dim)
    whole, values, _ = net(x)
    state = net.initial_state(3)
    for t in range(7):
        params, value, state = net.step(x[t], state)
        torch.testing.assert_close(params, whole[t])
        torch.testing.assert_close(value, values[t])


def test_policy_gradient_reaches_the_memory_through_the_generated_weights():
    torch.manual_seed(2)
    head = HyperPolicyHead(
        make_family(GridworldConfig()).action_space, 4, 3, (5,), hyper_hidden=(6,), init="naive"
    ).double()
    emb = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    state = torch.randn(2, 3, dtype=torch.float64)
    weights = torch.randn(2, 5, dtype=torch.float64)
    assert_gradient_matches_finite_differences(
        lambda: (head(emb, state) * weights).sum(), [emb, *head.parameters()]
    )


def test_with_an_identical_seed_it_is_deterministic_and_resumes_bit_for_bit(tmp_path):
    def metrics(learner, n):
        return [{k: float(v) for k, v in learner.meta_train_step().items()} for _ in range(n)]

    a = HyperPolicy(TINY, seed=3)
    metrics(a, 2)
    save_state(tmp_path / "ckpt", a.state_dict())
    expected = metrics(a, 2)
    b = HyperPolicy(TINY, seed=3)
    b.load_state_dict(load_state(tmp_path / "ckpt")[0])
    assert metrics(b, 2) == expected
    assert metrics(HyperPolicy(TINY, seed=4), 2) != metrics(HyperPolicy(TINY, seed=3), 2)


@pytest.mark.parametrize("outer", ["ppo", "trpo"])
def test_it_trains_on_a_gaussian_family_with_ppo_and_trpo(outer):
    cfg = dataclasses.replace(TINY, family=Nav2DConfig(horizon=5), outer=outer, hidden=8)
    learner = HyperPolicy(cfg, seed=0)
    before = [p.detach().clone() for p in learner.net.policy_parameters().values()]
    m = learner.meta_train_step()
    assert all(torch.isfinite(torch.as_tensor(v)) for v in m.values())
    after = list(learner.net.policy_parameters().values())
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    assert learner.trial_agent().name == "hyper-policy"
    assert learner.net.policy_head.net.input_scale == 8**-0.5  # fan_in_scale, on by default
    unscaled = HyperPolicy(dataclasses.replace(cfg, fan_in_scale=False), seed=0)
    assert unscaled.net.policy_head.net.input_scale == 1.0


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match=r"base_hidden\[0\] must be >= 1"):
        HyperPolicy(dataclasses.replace(TINY, base_hidden=(0,)), seed=0)
    with pytest.raises(ConfigError, match="bias-hyperinit"):
        HyperPolicy(dataclasses.replace(TINY, hyper_init="zeros"), seed=0)  # type: ignore[arg-type]


def test_it_learns_to_explore_bandits():
    # the RL² learning test's budget, scored beside Gittins and random on 500 held-out tasks
    ours, gittins, random = train_and_score(
        HyperPolicy(
            HyperPolicyConfig(
                family=BanditConfig(k=5, n=10), iterations=120, trials=128, hidden=32
            ),
            seed=0,
        )
    )
    assert random < 5.3 < 6.3 < gittins
    assert ours > random + 0.8, (ours, random, gittins)


def test_rl2_is_unchanged_by_the_policy_hook():
    cfg = RL2Config(family=BanditConfig(k=3, n=6), trials=8, hidden=8, epochs=1, minibatches=1)
    net = RL2(cfg, seed=0).net
    x = torch.randn(4, 2, net.in_dim)
    features, _ = net.memory(net.embed(x))
    torch.testing.assert_close(net(x)[0], net.policy_head(features))
