"""The RL kernel (adaptrl.rl): exact values against plain-Python references and dense linear
algebra, and API contracts the meta-learners rely on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from adaptrl.envs import TaskBatch, make_family
from adaptrl.nn import DistSpec, kl, log_prob, mode, sample
from adaptrl.rl import (
    baseline_features,
    collect,
    conjugate_gradient,
    conjugate_gradient_with_product,
    discounted_returns,
    entropy_loss,
    episode_success,
    explained_variance,
    first_episode_mask,
    fisher_vector_product,
    fit_linear_baseline,
    flat,
    gae,
    line_search,
    linear_baseline_values,
    masked_mean,
    max_kl_step,
    normalize,
    ppo_clip_loss,
    step_budget_mask,
    step_in_episode,
    trpo_step,
    unflat,
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


# --- TRPO ---------------------------------------------------------------------------------------


def test_flat_unflat_round_trip():
    ts = [torch.arange(6.0).reshape(2, 3), torch.tensor(7.0), torch.ones(4)]
    v = flat(ts)
    assert v.tolist() == [0, 1, 2, 3, 4, 5, 7, 1, 1, 1, 1]
    back = unflat(v, ts)
    assert [b.shape for b in back] == [t.shape for t in ts]
    assert all(torch.equal(a, b) for a, b in zip(back, ts, strict=True))
    with pytest.raises(ValueError, match="11 entries"):
        unflat(v, ts[:1])


def random_spd(n, seed):
    a = torch.randn(n, n, generator=gen(seed), dtype=torch.float64)
    return a @ a.T + 0.5 * torch.eye(n, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugate_gradient_solves_spd_systems(seed):
    n = 8
    a = random_spd(n, seed)
    b = torch.randn(n, generator=gen(seed + 10), dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=n, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-7, atol=1e-7)
    # more iterations than needed: the converged solve is frozen, not polluted by 0/0
    x = conjugate_gradient(lambda v: a @ v, b, iters=3 * n)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-7, atol=1e-7)


def test_conjugate_gradient_with_product_returns_a_times_x_without_extra_products():
    a = random_spd(7, 5)
    b = torch.randn(7, generator=gen(6), dtype=torch.float64)
    calls = []

    def avp(v):
        calls.append(1)
        return a @ v

    for iters in (2, 7, 20):  # early, exact and past convergence (masked updates)
        calls.clear()
        x, ax = conjugate_gradient_with_product(avp, b, iters=iters)
        assert len(calls) == iters
        torch.testing.assert_close(x, conjugate_gradient(lambda v: a @ v, b, iters=iters))
        torch.testing.assert_close(ax, a @ x, rtol=1e-9, atol=1e-9)


def test_max_kl_step_scales_the_natural_gradient_to_the_trust_region():
    a = random_spd(6, 8)
    g = torch.randn(6, generator=gen(9), dtype=torch.float64)
    step, expected = max_kl_step(lambda v: a @ v, g, max_kl=0.02, cg_iters=6, cg_residual_tol=0)
    direction = -torch.linalg.solve(a, g)
    torch.testing.assert_close(step, direction * torch.sqrt(0.04 / (direction @ a @ direction)))
    torch.testing.assert_close(0.5 * step @ a @ step, torch.tensor(0.02, dtype=torch.float64))
    torch.testing.assert_close(expected, -g @ step)
    # a zero gradient gives a zero step, not NaN
    step, expected = max_kl_step(lambda v: a @ v, torch.zeros_like(g), max_kl=0.02)
    assert torch.equal(step, torch.zeros_like(g)) and float(expected) == 0.0


def test_conjugate_gradient_fixed_iterations_and_zero_rhs():
    a = random_spd(6, 3)
    calls = []

    def avp(v):
        calls.append(1)
        return a @ v

    b = torch.randn(6, generator=gen(4), dtype=torch.float64)
    conjugate_gradient(avp, b, iters=4)
    assert len(calls) == 4
    x = conjugate_gradient(lambda v: a @ v, torch.zeros(6, dtype=torch.float64))
    assert torch.equal(x, torch.zeros(6, dtype=torch.float64))
    # fewer iterations than the dimension still reduce the residual
    x2 = conjugate_gradient(lambda v: a @ v, b, iters=2)
    assert (a @ x2 - b).norm() < b.norm()


OBS = torch.randn(6, 3, generator=gen(20), dtype=torch.float64)


def categorical_policy():
    """Logits = obs @ W + bias for 4 actions; returns (params, logits_fn)."""
    w = 0.5 * torch.randn(3, 4, generator=gen(21), dtype=torch.float64)
    b = 0.1 * torch.randn(4, generator=gen(22), dtype=torch.float64)
    return [w, b], lambda p: OBS @ p[0] + p[1], DistSpec("categorical", 4)


def gaussian_policy():
    """Mean = obs @ W, free log-std, 2 action dims; returns (params, dist_params_fn)."""
    w = 0.5 * torch.randn(3, 2, generator=gen(23), dtype=torch.float64)
    log_std = torch.tensor([-0.3, 0.2], dtype=torch.float64)

    def dist(p):
        mean = OBS @ p[0]
        return torch.cat([mean, p[1].expand_as(mean)], dim=-1)

    return [w, log_std], dist, DistSpec("gaussian", 2)


def inner_adapted(policy):
    """The same policy after one inner VPG step (as MAML-RL's outer objective sees it)."""
    params, dist, spec = policy
    actions = mode(spec, dist(params)).detach()
    adv = torch.linspace(-1.0, 1.0, OBS.shape[0], dtype=torch.float64)

    def adapted_dist(p):
        inner = vpg_loss(log_prob(spec, dist(p), actions), adv)
        grads = torch.autograd.grad(inner, p, create_graph=True)
        return dist([q - 0.5 * g for q, g in zip(p, grads, strict=True)])

    return params, adapted_dist, spec


def vmapped_inner_adapted(policy, tasks=3):
    """MAML-RL's batched form: per task, one inner step with torch.func.grad, vmapped over tasks."""
    params, dist, spec = policy
    g = gen(24)
    actions = sample(spec, dist(params).expand(tasks, -1, -1), g)
    adv = torch.randn(tasks, OBS.shape[0], generator=g, dtype=torch.float64)

    def inner_loss(p, a, A):
        return vpg_loss(log_prob(spec, dist(p), a), A)

    def one_task(p, a, A):
        grads = grad(inner_loss)(p, a, A)
        return dist([q - 0.5 * gq for q, gq in zip(p, grads, strict=True)])

    return params, lambda p: vmap(one_task, in_dims=(None, 0, 0))(p, actions, adv), spec


def kl_to_start(policy):
    params, dist, spec = policy
    leaves = [p.clone().requires_grad_() for p in params]
    old = dist(leaves).detach()
    return lambda p: kl(spec, old, dist(p)).mean()


@pytest.mark.parametrize(
    "make",
    [
        categorical_policy,
        gaussian_policy,
        lambda: inner_adapted(categorical_policy()),
        lambda: vmapped_inner_adapted(gaussian_policy()),
    ],
    ids=["categorical", "gaussian", "through-inner-step", "through-vmapped-inner-step"],
)
def test_fisher_vector_product_matches_dense_hessian(make):
    policy = make()
    params = policy[0]
    kl_fn = kl_to_start(policy)

    hess = torch.autograd.functional.hessian(lambda x: kl_fn(unflat(x, params)), flat(params))
    assert hess.abs().max() > 1e-3  # the test has something to compare
    fvp = fisher_vector_product(kl_fn, params, damping=0.1)
    for seed in range(3):
        v = torch.randn(hess.shape[0], generator=gen(30 + seed), dtype=torch.float64)
        torch.testing.assert_close(fvp(v), hess @ v + 0.1 * v)


def quadratic(c, kl_scale=0.5):
    def f(x):
        return (x - c).square().sum(), kl_scale * x.square().sum()

    return f


def test_line_search_takes_first_acceptable_fraction():
    c = torch.tensor([1.0, 0.0], dtype=torch.float64)
    x0 = torch.zeros(2, dtype=torch.float64)
    step = torch.tensor([4.0, 0.0], dtype=torch.float64)
    expected = 8.0  # -grad . step with grad = -2c
    # fractions 1 and 1/2 do not improve enough; 1/4 lands on the minimum
    x, info = line_search(quadratic(c), x0, step, expected, max_kl=1.0)
    assert info["accepted"] and info["step_fraction"] == 0.25 and info["backtracks"] == 2
    assert x.tolist() == [1.0, 0.0] and info["loss_before"] == 1.0 and info["loss_after"] == 0.0
    assert info["kl"] == 0.5
    # a tighter trust region: 1/4 (kl 0.5) and 1/8 (kl 0.125) exceed it, 1/16 fits
    x, info = line_search(quadratic(c), x0, step, expected, max_kl=0.1)
    assert info["step_fraction"] == 1 / 16 and info["kl"] <= 0.1
    assert x.tolist() == [0.25, 0.0]


def test_line_search_rejects_steps_that_increase_the_loss():
    c = torch.tensor([1.0, 0.0], dtype=torch.float64)
    x0 = torch.zeros(2, dtype=torch.float64)
    x, info = line_search(quadratic(c), x0, -c, expected_improve=2.0, max_kl=10.0)
    assert not info["accepted"] and torch.equal(x, x0)
    assert info["loss_after"] == info["loss_before"] == 1.0 and info["step_fraction"] == 0.0
    # a NaN loss is never accepted either
    x, info = line_search(lambda x: (x.sum() * torch.nan, x.sum()), x0, c, 1.0, max_kl=1.0)
    assert not info["accepted"]


def surrogate(policy, seed=40):
    """Importance-weighted policy-gradient surrogate for fixed actions and advantages."""
    params, dist, spec = policy
    g = gen(seed)
    old = dist([p.clone().requires_grad_() for p in params]).detach()
    actions = sample(spec, old, g)
    adv = torch.randn(OBS.shape[0], generator=g, dtype=torch.float64)
    old_logp = log_prob(spec, old, actions)
    return lambda p: -(torch.exp(log_prob(spec, dist(p), actions) - old_logp) * adv).mean()


@pytest.mark.parametrize("make", [categorical_policy, gaussian_policy], ids=["cat", "gauss"])
def test_trpo_step_is_the_scaled_natural_gradient(make):
    policy = make()
    params = policy[0]
    loss_fn, kl_fn = surrogate(policy), kl_to_start(policy)
    n = flat(params).numel()
    new, info = trpo_step(
        params,
        lambda p: (loss_fn(p), kl_fn(p)),
        max_kl=0.01,
        damping=0.1,
        cg_iters=n,
        cg_residual_tol=1e-30,
    )
    assert [t.shape for t in new] == [t.shape for t in params]
    assert not any(t.requires_grad for t in new)
    # dense reference: x = -(H + d I)^-1 g scaled to 0.5 x^T (H + d I) x = max_kl
    x0 = flat(params).clone().requires_grad_()
    g = torch.autograd.grad(loss_fn(unflat(x0, params)), x0)[0]
    fisher = torch.autograd.functional.hessian(
        lambda x: kl_fn(unflat(x, params)), flat(params)
    ) + 0.1 * torch.eye(n, dtype=torch.float64)
    direction = -torch.linalg.solve(fisher, g)
    full = direction * math.sqrt(0.01 / (0.5 * direction @ fisher @ direction))
    assert info["accepted"]
    torch.testing.assert_close(flat(new) - flat(params), info["step_fraction"] * full)
    assert info["loss_after"] < info["loss_before"]
    assert info["kl"] <= 0.01
    torch.testing.assert_close(torch.tensor(info["kl"]), kl_fn(new).float(), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(info["loss_after"]), loss_fn(new).float())
    assert info["expected_improve"] > 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: inner_adapted(categorical_policy()),
        lambda: vmapped_inner_adapted(gaussian_policy()),
    ],
    ids=["autograd-inner-step", "vmapped-func-inner-step"],
)
def test_trpo_step_through_an_inner_adaptation_step(make):
    policy = make()
    params = policy[0]
    loss_fn, kl_fn = surrogate(policy, seed=41), kl_to_start(policy)
    new, info = trpo_step(
        params, lambda p: (loss_fn(p), kl_fn(p)), max_kl=0.005, autograd_line_search=True
    )
    assert info["accepted"] and info["loss_after"] < info["loss_before"] and info["kl"] <= 0.005
    assert not torch.equal(flat(new), flat(params))


def test_trpo_step_takes_a_given_fisher_product_and_searches_without_autograd():
    """A dense damped Fisher passed as ``fvp`` reproduces the default step; a different metric
    (2F) gives a different direction, so ``fvp`` is really used; the line search evaluates the
    objective without autograd, unless told otherwise (same step either way)."""
    policy = gaussian_policy()
    params = policy[0]
    loss_fn, kl_fn = surrogate(policy), kl_to_start(policy)
    n = flat(params).numel()
    fisher = torch.autograd.functional.hessian(
        lambda x: kl_fn(unflat(x, params)), flat(params)
    ) + 0.1 * torch.eye(n, dtype=torch.float64)
    calls = []

    def objective(p):
        calls.append(torch.is_grad_enabled())
        return loss_fn(p), kl_fn(p)

    kw = dict(max_kl=0.01, damping=0.1, cg_iters=n, cg_residual_tol=1e-30)
    default, info = trpo_step(params, objective, **kw)
    calls.clear()
    given, info_given = trpo_step(params, objective, fvp=lambda v: fisher @ v, **kw)
    torch.testing.assert_close(flat(given), flat(default))
    assert info_given["backtracks"] == info["backtracks"]
    assert calls[0] and calls[1:] and not any(calls[1:])  # the gradient, then the line search
    with_grad, _ = trpo_step(params, objective, autograd_line_search=True, **kw)
    torch.testing.assert_close(flat(with_grad), flat(default))
    other, _ = trpo_step(params, objective, fvp=lambda v: 2 * fisher @ v, **kw)
    assert not torch.allclose(flat(other) - flat(params), flat(default) - flat(params))


def test_trpo_step_at_a_stationary_point_changes_nothing():
    params, dist, spec = categorical_policy()
    kl_fn = kl_to_start((params, dist, spec))
    new, info = trpo_step(params, lambda p: (kl_fn(p), kl_fn(p)))  # zero gradient at params
    assert not info["accepted"]
    assert torch.equal(flat(new), flat(params))


# --- linear feature baseline --------------------------------------------------------------------


def test_baseline_features_hand_values():
    obs = torch.tensor([[[2.0, -20.0]], [[0.5, 3.0]]])  # [T=2, B=1, D=2]
    t = torch.tensor([[0], [50]])
    f = baseline_features(obs, t)
    assert f.shape == (2, 1, 8)
    assert f[0, 0].tolist() == [2.0, -10.0, 4.0, 100.0, 0.0, 0.0, 0.0, 1.0]
    assert f[1, 0].tolist() == [0.5, 3.0, 0.25, 9.0, 0.5, 0.25, 0.125, 1.0]


def test_fit_linear_baseline_matches_lstsq():
    g = gen(50)
    x = torch.randn(3, 40, 5, generator=g)
    y = torch.randn(3, 40, generator=g)
    coeffs = fit_linear_baseline(x, y, reg=0.0)
    assert coeffs.dtype == torch.float32 and coeffs.shape == (3, 5)
    for i in range(3):
        ref = np.linalg.lstsq(x[i].double().numpy(), y[i].double().numpy(), rcond=None)[0]
        np.testing.assert_allclose(coeffs[i].numpy(), ref, rtol=1e-5, atol=1e-6)
    # the ridge term shrinks towards zero
    assert fit_linear_baseline(x, y, reg=1e3).norm() < coeffs.norm()


def test_fit_linear_baseline_masking_equals_dropping_rows():
    g = gen(51)
    x = torch.randn(2, 30, 4, generator=g, dtype=torch.float64)
    y = torch.randn(2, 30, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 30, generator=g) < 0.6
    y_padded = torch.where(mask, y, torch.nan)  # invalid rows must not matter even as NaN
    coeffs = fit_linear_baseline(x, y_padded, mask, reg=1e-5)
    for i in range(2):
        alone = fit_linear_baseline(x[i, mask[i]][None], y[i, mask[i]][None], reg=1e-5)
        torch.testing.assert_close(coeffs[i], alone[0])


def test_linear_baseline_values_fits_each_group_separately():
    T, G, E = 12, 3, 4
    g = gen(52)
    obs = torch.randn(T, G, E, 2, generator=g)
    t = torch.arange(T).view(T, 1, 1).expand(T, G, E)
    true = torch.randn(G, 8, generator=g, dtype=torch.float64)
    feats = baseline_features(obs.double(), t)
    returns = torch.einsum("tgef,gf->tge", feats, true).float()  # exactly linear per group
    values = linear_baseline_values(obs, t, returns, reg=1e-9)
    assert values.shape == (T, G, E) and values.dtype == torch.float32
    torch.testing.assert_close(values, returns, atol=1e-4, rtol=1e-4)
    # a masked fit ignores garbage outside the mask
    mask = torch.ones(T, G, E, dtype=torch.bool)
    mask[-3:] = False
    noisy = torch.where(mask, returns, torch.full_like(returns, 1e6))
    values = linear_baseline_values(obs, t, noisy, mask=mask, reg=1e-9)
    torch.testing.assert_close(values[mask], returns[mask], atol=1e-4, rtol=1e-4)


# --- rollouts -----------------------------------------------------------------------------------


def bandit_env(B=5, seed=1):
    family = make_family("bandit-bernoulli-v0", k=3)
    env = family.make_env(B)
    env.set_tasks(family.tasks(B, "train", seed=0))
    return env, env.reset(seed=seed)


def uniform_bandit_policy(obs, carry):
    generator, spec = carry
    logits = torch.zeros(obs.shape[0], spec.dim)
    action = sample(spec, logits, generator)
    return action, {"logp": log_prob(spec, logits, action)}, carry


def test_collect_bandit_shapes_and_rewards_match_manual_stepping():
    env, obs = bandit_env()
    carry = (gen(60), DistSpec("categorical", 3))
    ro, last_obs, carry_out = collect(env, uniform_bandit_policy, obs, carry, steps=20)
    assert len(ro) == 20 and carry_out is carry
    assert ro.obs.shape == ro.actions.shape == ro.rewards.shape == ro.next_obs.shape == (20, 5)
    assert ro.actions.dtype == torch.int64 and ro.rewards.dtype == torch.float32
    assert ro.terminated.all() and not ro.truncated.any() and ro.done.all()  # one-pull episodes
    assert set(ro.rewards.unique().tolist()) <= {0.0, 1.0} and ro.actions.unique().numel() == 3
    torch.testing.assert_close(ro.extras["logp"], torch.full((20, 5), -math.log(3)))
    env2, obs2 = bandit_env()
    for t in range(20):
        assert torch.equal(ro.obs[t], obs2)
        step = env2.step(ro.actions[t])
        assert torch.equal(ro.rewards[t], step.reward)
        obs2 = step.obs
    assert torch.equal(last_obs, obs2)
    # same seeds, same rollout
    env3, obs3 = bandit_env()
    again, _, _ = collect(env3, uniform_bandit_policy, obs3, (gen(60), carry[1]), steps=20)
    assert torch.equal(again.actions, ro.actions) and torch.equal(again.rewards, ro.rewards)


GOALS = torch.tensor([[0.15, 0.0], [0.5, 0.5], [-0.05, 0.05], [0.3, -0.1]])


def nav_env():
    family = make_family("nav2d-goal-v0", horizon=6, goal_radius=0.06)
    env = family.make_env(4)
    env.set_tasks(TaskBatch({"goal": GOALS}))
    return env, env.reset(seed=3)


def towards_goal_policy(obs, carry):
    """Rows 0-2 head for their goal, row 3 away from it (so it runs into the time limit)."""
    generator, episodes = carry
    direction = torch.tensor([1.0, 1.0, 1.0, -1.0])[:, None] * (GOALS - obs)
    noise = 0.01 * torch.randn(obs.shape, generator=generator)
    return direction + noise, {"noise": noise}, (generator, episodes)


def count_episodes(carry, action, step):
    generator, episodes = carry
    return generator, episodes + (step.terminated | step.truncated).long()


def test_collect_nav2d_final_obs_and_auto_reset():
    env, obs = nav_env()
    T = 14
    carry = (gen(61), torch.zeros(4, dtype=torch.long))
    ro, last_obs, (_, episodes) = collect(env, towards_goal_policy, obs, carry, T, count_episodes)
    assert ro.obs.shape == ro.next_obs.shape == ro.actions.shape == ro.extras["noise"].shape
    assert ro.obs.shape == (T, 4, 2) and ro.rewards.shape == ro.terminated.shape == (T, 4)
    assert ro.terminated.any() and ro.truncated.any() and not (ro.terminated & ro.truncated).any()
    assert torch.equal(episodes, ro.done.long().sum(0))
    assert torch.equal(ro.truncated[:, 3], torch.arange(1, T + 1) % 6 == 0)
    # physics by hand: the action (clipped to 0.1) moves the point; reward is minus the distance
    moved = ro.obs + ro.actions.clamp(-0.1, 0.1)
    torch.testing.assert_close(ro.next_obs, moved)
    torch.testing.assert_close(ro.rewards, -torch.linalg.vector_norm(moved - GOALS, dim=-1))
    # next_obs is the next observation inside episodes; at an end, the next one is the origin
    following = torch.cat([ro.obs[1:], last_obs[None]])
    done = ro.done[..., None]
    assert torch.equal(torch.where(done, ro.next_obs, following), ro.next_obs)
    assert torch.equal(torch.where(done, following, torch.zeros(())), torch.zeros(T, 4, 2))
    # and exactly what stepping the environment by hand gives
    env2, obs2 = nav_env()
    for t in range(T):
        step = env2.step(ro.actions[t])
        assert torch.equal(ro.obs[t], obs2) and torch.equal(ro.next_obs[t], step.final_obs)
        assert torch.equal(ro.rewards[t], step.reward)
        assert torch.equal(ro.terminated[t], step.terminated)
        assert torch.equal(ro.truncated[t], step.truncated)
        obs2 = step.obs
    assert torch.equal(last_obs, obs2)


def test_collect_rejects_zero_steps():
    env, obs = bandit_env()
    with pytest.raises(ValueError, match="steps >= 1"):
        collect(env, uniform_bandit_policy, obs, (gen(), DistSpec("categorical", 3)), 0)


def test_step_in_episode_and_first_episode_mask():
    done = torch.tensor([[0, 1], [1, 0], [0, 0], [1, 1], [0, 0]], dtype=torch.bool)
    assert step_in_episode(done).T.tolist() == [[0, 1, 0, 1, 0], [0, 0, 1, 2, 0]]
    assert step_in_episode(done, torch.tensor([3, 0])).T.tolist() == [
        [3, 4, 0, 1, 0],
        [0, 0, 1, 2, 0],
    ]
    assert first_episode_mask(done).T.tolist() == [
        [True, True, False, False, False],
        [True, False, False, False, False],
    ]
    # the time index of a real rollout matches the environment's own step counter
    env, obs = nav_env()
    ro, _, _ = collect(env, towards_goal_policy, obs, (gen(62), torch.zeros(4)), 9)
    after_last = torch.where(ro.done[-1], 0, step_in_episode(ro.done)[-1] + 1)
    assert torch.equal(after_last, env.elapsed) and env.elapsed.max() > 0


def test_episode_success_counts_an_episode_with_success_at_any_kept_step():
    # two groups of two rows, 5 steps; columns a, b (group 0), c, d (group 1)
    done = torch.zeros(5, 4, dtype=torch.bool)
    done[[1, 4], 0] = True  # a: episodes of 2 and 3 steps
    done[4, 1] = True  # b: one episode of 5 steps
    done[2, 2] = True  # c: one episode of 3 steps, then one unfinished
    done[4, 3] = True
    success = torch.zeros(5, 4, dtype=torch.bool)
    success[0, 0] = True  # a's first episode succeeds at its first step only
    success[3, 1] = True  # b succeeds one step before its end
    success[3, 2] = True  # c succeeds in its unfinished episode (which is not an episode kept)
    everything = torch.ones(5, 4, dtype=torch.bool)
    # group 0: a 1 of 2 episodes, b 1 of 1 -> 2 / 3; group 1: c 0 of 1 finished, d 0 of 1 -> 0
    rates = episode_success(success, done, everything, groups=2)
    assert rates.tolist() == pytest.approx([2 / 3, 0.0])
    # each row's first episode only (MAML-RL's batches): a 1, b 1 | c 0, d 0
    first = first_episode_mask(done)
    assert episode_success(success, done, first, groups=2).tolist() == [1.0, 0.0]
    # success outside the kept steps does not count; a group with no kept episode has rate 0
    late = torch.zeros_like(success)
    late[4, 3] = True
    assert episode_success(late, done, first, groups=2).tolist() == [0.0, 0.5]  # d, not c
    assert episode_success(success, done, torch.zeros_like(done), groups=2).tolist() == [0, 0]


def test_step_budget_mask_keeps_the_episodes_completed_when_the_budget_is_reached():
    # two groups of two rows; columns: a, b (group 0), c, d (group 1)
    done = torch.zeros(6, 4, dtype=torch.bool)
    done[[1, 3, 5], 0] = True  # a: episodes of 2, 2, 2 steps
    done[3, 1] = True  # b: one of 4 steps, then one unfinished
    done[5, 3] = True  # c never ends, d: one of 6 steps
    # group 0 holds 2 completed steps after t=1 and 2+2+4 = 8 after t=3 (>= 5): it stops at t=3,
    # dropping a's third episode and b's unfinished one; group 1 reaches 6 at t=5 and keeps d only
    mask = step_budget_mask(done, groups=2, budget=5)
    assert mask.T.tolist() == [
        [True] * 4 + [False] * 2,
        [True] * 4 + [False] * 2,
        [False] * 6,
        [True] * 6,
    ]
    # a budget never reached keeps every completed episode
    everything = step_budget_mask(done, groups=2, budget=100)
    assert everything[:, 0].all() and everything[:4, 1].all() and not everything[4:, 1].any()
    # a budget of one step stops each group at its first episode end
    assert step_budget_mask(done, groups=2, budget=1)[:, 0].tolist() == [True] * 2 + [False] * 4
    with pytest.raises(ValueError, match="groups"):
        step_budget_mask(done, groups=3, budget=5)


def test_explained_variance():
    target = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([True, True, True, False])
    assert explained_variance(target, target, mask).item() == 1.0
    assert explained_variance(torch.full((4,), 2.0), target, mask).item() == 0.0
    # errors (0, 0, 1) on targets (1, 2, 3): 1 - (2/9) / (2/3) = 2/3
    pred = torch.tensor([1.0, 2.0, 2.0, 0.0])
    torch.testing.assert_close(explained_variance(pred, target, mask), torch.tensor(2 / 3))
    assert explained_variance(target, torch.ones(4)).item() == 0.0  # constant target
