"""TD targets and losses (adaptrl.rl.td): exact values on hand-made batches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adaptrl.rl.td import (
    discrete_sac_actor_loss,
    discrete_sac_target,
    double_dqn_target,
    sac_actor_loss,
    sac_alpha_loss,
    sac_target,
    smoothed_target_action,
    soft_update,
    td3_target,
    td_loss,
)

REWARD = torch.tensor([1.0, -0.5, 2.0])
TERMINATED = torch.tensor([False, True, False])


def test_double_dqn_target_takes_the_online_argmax_valued_by_the_target_network():
    online = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 9.0], [5.0, 4.0, 0.0]])
    target = torch.tensor([[10.0, 20.0, 30.0], [7.0, 7.0, 7.0], [-1.0, 8.0, 2.0]])
    y = double_dqn_target(REWARD, TERMINATED, online, target, gamma=0.9)
    # Row 0: argmax online = 1 -> 20; row 1 terminal; row 2: argmax = 0 -> -1 (not max(target) = 8).
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 20.0, -0.5, 2.0 - 0.9])


def test_td3_target_is_the_minimum_of_the_twin_critics():
    q1, q2 = torch.tensor([3.0, 5.0, -2.0]), torch.tensor([4.0, 1.0, -3.0])
    y = td3_target(REWARD, TERMINATED, q1, q2, gamma=0.5)
    assert y.tolist() == pytest.approx([1.0 + 1.5, -0.5, 2.0 - 1.5])


def test_target_smoothing_clips_the_noise_then_the_action():
    a = torch.tensor([[0.9, -0.2], [0.0, 0.5]])
    noise = torch.tensor([[0.3, -0.9], [0.05, -0.1]])
    out = smoothed_target_action(a, noise, noise_clip=0.5, low=-1.0, high=1.0)
    # 0.9 + 0.3 -> 1.2 clipped to 1; -0.2 + clip(-0.9) = -0.7; 0.05; 0.5 - 0.1.
    assert out.tolist() == [pytest.approx([1.0, -0.7]), pytest.approx([0.05, 0.4])]
    per_dim = smoothed_target_action(
        a, noise, 0.5, low=torch.tensor([-1.0, -0.5]), high=torch.tensor([1.0, 0.3])
    )
    assert per_dim.tolist() == [pytest.approx([1.0, -0.5]), pytest.approx([0.05, 0.3])]


def test_sac_target_subtracts_the_temperature_times_the_log_probability():
    q1, q2 = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([3.0, 0.0, 0.5])
    logp = torch.tensor([-1.0, 4.0, 0.5])
    y = sac_target(REWARD, TERMINATED, q1, q2, logp, alpha=0.2, gamma=0.9)
    assert y.tolist() == pytest.approx([1.0 + 0.9 * (2.0 + 0.2), -0.5, 2.0 + 0.9 * (0.5 - 0.1)])


def test_discrete_sac_target_is_the_expectation_under_the_policy():
    q1 = torch.tensor([[1.0, 2.0]] * 3)
    q2 = torch.tensor([[1.5, 1.0]] * 3)
    logits = torch.tensor([[0.0, math.log(3.0)]] * 3)  # pi = (1/4, 3/4)
    y = discrete_sac_target(REWARD, TERMINATED, q1, q2, logits, alpha=0.5, gamma=1.0)
    soft_v = 0.25 * (1.0 - 0.5 * math.log(0.25)) + 0.75 * (1.0 - 0.5 * math.log(0.75))
    assert y.tolist() == pytest.approx([1.0 + soft_v, -0.5, 2.0 + soft_v])


def test_targets_are_detached():
    q = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert not td3_target(REWARD, TERMINATED, q, q, 0.9).requires_grad
    assert not sac_target(REWARD, TERMINATED, q, q, q, 0.1, 0.9).requires_grad


def test_losses_have_their_closed_forms_and_gradients():
    q = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    y = torch.tensor([2.0, 2.0, 0.0])
    assert td_loss(q, y).item() == pytest.approx(0.5 * (1 + 0 + 16) / 3)
    assert td_loss(q, y, mask=torch.tensor([True, True, False])).item() == pytest.approx(0.25)
    # Huber with delta 1: 0.5 for |e| = 1, 0 for 0, 1 * (4 - 0.5) for |e| = 4.
    assert td_loss(q, y, huber=1.0).item() == pytest.approx((0.5 + 0 + 3.5) / 3)

    logp = torch.tensor([-1.0, -2.0])
    q1, q2 = torch.tensor([1.0, 5.0]), torch.tensor([2.0, 3.0])
    assert sac_actor_loss(q1, q2, logp, alpha=0.5).item() == pytest.approx(
        ((-0.5 - 1) + (-1 - 3)) / 2
    )

    log_alpha = torch.tensor(math.log(0.2), requires_grad=True)
    loss = sac_alpha_loss(log_alpha, logp, target_entropy=-1.0)
    loss.backward()
    # d/dlog_alpha = -mean(logp + H) = -((-2) + (-3)) / 2 = 2.5 > 0: entropy (1.5) above target
    # (-1) -> gradient descent lowers alpha.
    assert log_alpha.grad.item() == pytest.approx(2.5)


def test_soft_update_moves_the_target_by_tau():
    torch.manual_seed(0)
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    soft_update(target, source, tau=0.25)
    for b, t, s in zip(before, target.parameters(), source.parameters(), strict=True):
        assert torch.allclose(t, 0.75 * b + 0.25 * s)
    with pytest.raises(ValueError, match="different parameter lists"):
        soft_update(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)), 0.1)


def test_discrete_sac_actor_loss_is_the_exact_expectation():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # pi = (1/4, 3/4)
    q1, q2 = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 4.0]])
    loss, plogp = discrete_sac_actor_loss(q1, q2, logits, alpha=0.1)
    want = 0.25 * (0.1 * math.log(0.25) - 0.5) + 0.75 * (0.1 * math.log(0.75) - 2.0)
    assert loss.item() == pytest.approx(want)
    assert plogp.item() == pytest.approx(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
