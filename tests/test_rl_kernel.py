"""The RL kernel (adaptrl.rl): exact values against plain-Python references and dense linear
algebra, and API contracts the meta-learners rely on."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import vmap

from adaptrl.rl import (
    discounted_returns,
    entropy_loss,
    gae,
    masked_mean,
    normalize,
    ppo_clip_loss,
    value_loss,
    vpg_loss,
)


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


# --- returns and GAE ----------------------------------------------------------------------------


def ref_returns(rewards, cut, gamma, bootstrap=None):
    """Plain-Python reward-to-go over nested lists [T][B]."""
    T, B = len(rewards), len(rewards[0])
    out = [[0.0] * B for _ in range(T)]
    for b in range(B):
        g = 0.0 if bootstrap is None else bootstrap[b]
        for t in reversed(range(T)):
            g = rewards[t][b] + (0.0 if cut[t][b] else gamma * g)
            out[t][b] = g
    return out


def ref_gae(rewards, values, next_values, terminated, cut, gamma, lam):
    T, B = len(rewards), len(rewards[0])
    out = [[0.0] * B for _ in range(T)]
    for b in range(B):
        a = 0.0
        for t in reversed(range(T)):
            boot = 0.0 if terminated[t][b] else gamma * next_values[t][b]
            delta = rewards[t][b] + boot - values[t][b]
            a = delta + (0.0 if (cut[t][b] or t == T - 1) else gamma * lam * a)
            out[t][b] = a
    return out


def random_case(T=9, B=4, seed=0):
    g = gen(seed)
    rewards = torch.randn(T, B, generator=g, dtype=torch.float64)
    values = torch.randn(T, B, generator=g, dtype=torch.float64)
    next_values = torch.randn(T, B, generator=g, dtype=torch.float64)
    terminated = torch.rand(T, B, generator=g) < 0.2
    truncated = (torch.rand(T, B, generator=g) < 0.2) & ~terminated
    return rewards, values, next_values, terminated, truncated


def test_discounted_returns_hand_values():
    r = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    cut = torch.tensor([[False], [True], [False], [False]])
    # episode 1: G1 = 2, G0 = 1 + 0.5 * 2 = 2; episode 2: G3 = 4 + 0.5 * 10, G2 = 3 + 0.5 * G3
    out = discounted_returns(r, cut, 0.5, bootstrap=torch.tensor([10.0]))
    assert out.squeeze(1).tolist() == [2.0, 2.0, 7.5, 9.0]
    assert discounted_returns(r, cut, 0.5).squeeze(1).tolist() == [2.0, 2.0, 5.0, 4.0]
    cut_last = torch.tensor([[False], [False], [False], [True]])
    out = discounted_returns(r, cut_last, 1.0, bootstrap=torch.tensor([10.0]))
    assert out.squeeze(1).tolist() == [10.0, 9.0, 7.0, 4.0]  # a cut last step ignores bootstrap


def test_discounted_returns_match_reference():
    rewards, _, _, terminated, truncated = random_case()
    cut = terminated | truncated
    boot = torch.randn(4, generator=gen(9), dtype=torch.float64)
    out = discounted_returns(rewards, cut, 0.9, bootstrap=boot)
    ref = ref_returns(rewards.tolist(), cut.tolist(), 0.9, boot.tolist())
    torch.testing.assert_close(out, torch.tensor(ref, dtype=torch.float64))


def test_gae_hand_values():
    r = torch.tensor([[1.0], [0.0], [2.0]])
    v = torch.tensor([[0.5], [1.0], [1.5]])
    nv = torch.tensor([[1.0], [7.0], [3.0]])
    term = torch.tensor([[False], [True], [False]])
    cut = term.clone()
    gamma, lam = 0.5, 0.5
    d2 = 2.0 + 0.5 * 3.0 - 1.5  # 2.0, last step bootstraps next_values
    d1 = 0.0 - 1.0  # terminated: no bootstrap from 7.0
    d0 = 1.0 + 0.5 * 1.0 - 0.5  # 1.0
    expected = [d0 + 0.25 * d1, d1, d2]  # cut after step 1 stops A_1 from seeing A_2
    out = gae(r, v, nv, term, cut, gamma, lam)
    assert out.squeeze(1).tolist() == expected
    # RL²-style: cut only at the trial end, credit flows across the episode boundary
    out = gae(r, v, nv, term, torch.zeros_like(cut), gamma, lam)
    assert out.squeeze(1).tolist() == [d0 + 0.25 * (d1 + 0.25 * d2), d1 + 0.25 * d2, d2]


@pytest.mark.parametrize("per_episode", [True, False])
def test_gae_matches_reference(per_episode):
    rewards, values, next_values, terminated, truncated = random_case(seed=1)
    cut = terminated | truncated if per_episode else torch.zeros_like(terminated)
    args = (rewards, values, next_values, terminated, cut, 0.95, 0.8)
    ref = ref_gae(*(a.tolist() for a in args[:5]), 0.95, 0.8)
    torch.testing.assert_close(gae(*args), torch.tensor(ref, dtype=torch.float64))


def test_gae_lambda_one_is_returns_minus_values():
    """With terminated == cut and next_values[t] == values[t+1] inside episodes, lam=1 telescopes."""
    rewards, values, _, terminated, _ = random_case(seed=2)
    last_value = torch.randn(4, generator=gen(3), dtype=torch.float64)
    next_values = torch.cat([values[1:], last_value[None]])
    adv = gae(rewards, values, next_values, terminated, terminated, 0.9, 1.0)
    ret = discounted_returns(rewards, terminated, 0.9, bootstrap=last_value)
    torch.testing.assert_close(adv, ret - values)


def test_gae_lambda_zero_is_td_error():
    rewards, values, next_values, terminated, truncated = random_case(seed=4)
    adv = gae(rewards, values, next_values, terminated, terminated | truncated, 0.9, 0.0)
    td = rewards + 0.9 * (~terminated).double() * next_values - values
    torch.testing.assert_close(adv, td)


def test_returns_and_gae_work_under_vmap_and_float_flags():
    rewards, values, next_values, terminated, truncated = random_case(seed=5)
    cut = terminated | truncated
    batched = vmap(lambda r, v, n, te, c: gae(r, v, n, te, c, 0.9, 0.7), in_dims=1, out_dims=1)
    torch.testing.assert_close(
        batched(rewards, values, next_values, terminated, cut),
        gae(rewards, values, next_values, terminated, cut, 0.9, 0.7),
    )
    torch.testing.assert_close(
        discounted_returns(rewards, cut.double(), 0.9), discounted_returns(rewards, cut, 0.9)
    )


def test_masked_mean_and_normalize():
    x = torch.tensor([[1.0, float("nan")], [3.0, 5.0]])
    mask = torch.tensor([[True, False], [True, True]])
    assert masked_mean(x, mask).item() == 3.0
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0
    assert masked_mean(torch.tensor([1.0, 2.0])).item() == 1.5
    n = normalize(x, mask)
    s = math.sqrt(8 / 3)  # population std of (1, 3, 5)
    torch.testing.assert_close(n, torch.tensor([[-2 / s, 0.0], [0.0, 2 / s]]))
    y = torch.randn(50, generator=gen())
    z = normalize(y)
    assert abs(z.mean().item()) < 1e-6 and abs(z.std(unbiased=False).item() - 1) < 1e-5
    # a mask broadcast over a trailing dimension
    assert masked_mean(torch.ones(2, 3, 4), torch.tensor([[1, 0, 0], [0, 0, 1]])).item() == 1.0


# --- losses -------------------------------------------------------------------------------------


def test_vpg_loss_value_and_gradient():
    logp = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    adv = torch.tensor([2.0, -1.0, 4.0], requires_grad=True)
    mask = torch.tensor([True, True, False])
    loss = vpg_loss(logp, adv, mask)
    assert loss.item() == -(-2.0 + 2.0) / 2
    loss.backward()
    assert logp.grad.tolist() == [-1.0, 0.5, 0.0]
    assert adv.grad is None  # advantages are constants


def test_ppo_clip_loss_hand_values():
    old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.5, 0.5, 1.1, 0.5])).requires_grad_()
    adv = torch.tensor([1.0, 1.0, -2.0, -2.0])
    loss, info = ppo_clip_loss(logp, old, adv, clip=0.2)
    # min(rho A, clip(rho) A): 1.2 (clipped), 0.5, -2.2, -2*0.8=-1.6 vs -1.0 -> -1.6 (clipped)
    torch.testing.assert_close(loss, -torch.tensor((1.2 + 0.5 - 2.2 - 1.6) / 4))
    assert info["clip_fraction"].item() == 0.75
    rho = torch.tensor([1.5, 0.5, 1.1, 0.5])
    torch.testing.assert_close(info["approx_kl"], ((rho - 1) - rho.log()).mean())
    assert not info["approx_kl"].requires_grad
    loss.backward()
    # gradient only where the unclipped term is the minimum: samples 1 and 2 (d rho A / d logp = rho A)
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, 0.5, -2.2, 0.0]) / -4)


def test_value_loss_plain_clipped_and_errors():
    v = torch.tensor([1.0, 3.0])
    ret = torch.tensor([2.0, 0.0])
    assert value_loss(v, ret).item() == 0.5 * (1.0 + 9.0) / 2
    assert value_loss(v, ret, mask=torch.tensor([True, False])).item() == 0.5
    old = torch.tensor([0.0, 2.5])
    # clipped values: 0 + 0.5 = 0.5 and 2.5 + 0.5 = 3.0 -> errors max(1, 2.25), max(9, 9)
    assert value_loss(v, ret, old, clip=0.5).item() == 0.5 * (2.25 + 9.0) / 2
    with pytest.raises(ValueError, match="old_values"):
        value_loss(v, ret, clip=0.5)


def test_entropy_loss():
    assert entropy_loss(torch.tensor([1.0, 3.0, 100.0]), torch.tensor([1, 1, 0])).item() == -2.0
