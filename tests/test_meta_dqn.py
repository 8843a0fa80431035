"""meta-dqn (a hypernetwork generates each task's Q-network from its context): Bias-HyperInit's
same start for every context, the TD gradient through the generated weights against finite
differences, clear errors, bit-identical resume, and learning on bandits beside Gittins."""

from __future__ import annotations

import pytest
import torch

from _bandits import train_and_score
from _gradcheck import assert_gradient_matches_finite_differences
from _resume import full_and_resumed
from adaptrl.algos.meta_dqn import MetaDQN, MetaDQNConfig
from adaptrl.core.errors import ConfigError
from adaptrl.envs.bandit import BanditConfig
from adaptrl.envs.gridworld import GridworldConfig
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.rl.td import td_loss

SMALL_GRID = GridworldConfig(height=3, width=3, horizon=4, n=2, step_reward=-0.1)
SMALL = {"hidden": (8,), "hyper_hidden": (6,), "context_size": 4}


def test_bias_hyperinit_starts_every_context_from_the_same_q_network():
    learner = MetaDQN(MetaDQNConfig(family=SMALL_GRID, trials=2, **SMALL), seed=0)
    net = learner.net
    obs = torch.tensor([0, 4, 8])
    progress = torch.tensor([0.0, 0.5, 0.9])
    contexts = torch.randn(2, 3, 4) * 5.0
    q = [net.q_values(net.state(obs, progress, c)) for c in contexts]
    assert q[0].shape == (3, 5) and torch.equal(q[0], q[1])
    naive = MetaDQN(MetaDQNConfig(family=SMALL_GRID, hyper_init="naive", **SMALL), seed=0).net
    q = [naive.q_values(naive.state(obs, progress, c)) for c in contexts]
    assert not torch.allclose(q[0], q[1])


def test_td_gradient_through_the_generated_weights_matches_finite_differences():
    """The TD loss of a fixed batch as a function of every parameter (encoder, hypernetwork):
    autograd against central differences, in float64."""
    learner = MetaDQN(MetaDQNConfig(family=SMALL_GRID, trials=2, batch=3, **SMALL), seed=0)
    learner.replay.add(learner.collect(learner.family.tasks(2, "train", seed=0))[0])
    net = learner.net.double()
    with torch.no_grad():  # move off Bias-HyperInit's zero heads so every path carries gradient
        for p in net.q.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    window, mask = learner.replay.windows(3, learner.context_length + 1)
    feats = learner.features(
        window["obs"], window["action"], window["reward"], window["final_obs"]
    ).double()
    now = {k: v[:, :, -1] for k, v in window.items()}
    y = torch.randn(now["reward"].shape, generator=torch.Generator().manual_seed(2)).double()

    def loss() -> torch.Tensor:
        ctx, _ = net.context_pair(feats, mask, whole_trial=True)
        state = net.state(now["obs"], now["progress"].double(), ctx)
        q = net.q_values(state).gather(-1, now["action"].unsqueeze(-1)).squeeze(-1)
        return td_loss(q, y)

    params = list(net.parameters())
    encoder = torch.autograd.grad(loss(), params[:2], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in encoder)  # it learns through TD
    assert_gradient_matches_finite_differences(loss, params)


def test_errors_are_clear():
    with pytest.raises(ConfigError, match="meta-dqn needs discrete actions; nav2d-goal-v0"):
        MetaDQN(MetaDQNConfig(family=Nav2DConfig(horizon=5)))
    with pytest.raises(ConfigError, match="--adaptation propensity is meta-q's"):
        MetaDQN(MetaDQNConfig(family=SMALL_GRID, adaptation="propensity"))


def test_resume_is_bit_identical_with_the_replay_in_the_checkpoint(tmp_path):
    cfg = MetaDQNConfig(
        family=SMALL_GRID, iterations=4, trials=2, updates=2, batch=3, buffer_trials=2, **SMALL
    )
    full, resumed = full_and_resumed(tmp_path, cfg, kill_at=3)
    for a, b in zip(
        full.state_dict()["net"].values(), resumed.state_dict()["net"].values(), strict=True
    ):
        assert torch.equal(a, b)


def test_meta_dqn_learns_to_explore_bandits():
    torch.manual_seed(0)
    cfg = MetaDQNConfig(
        family=BanditConfig(k=5, n=10),
        iterations=120,
        trials=32,
        updates=8,
        batch=16,
        hidden=(32,),
        hyper_hidden=(32,),
        context_size=16,
    )
    learner = MetaDQN(cfg, seed=0)
    meta_dqn, gittins, random = train_and_score(learner)
    assert list(learner.trial_agents()) == ["meta-dqn"]
    # Random scores 5.0 in expectation and Gittins ~6.8: ask for most of that gap.
    assert meta_dqn > random + 0.6 * (gittins - random), (meta_dqn, gittins, random)
