"""MLP backbone and action-distribution heads: exact agreement with torch.distributions,
generator-only sampling, vmap/functional use, and clear errors."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal, kl_divergence
from torch.func import functional_call, grad, vmap

from adaptrl.core.errors import ConfigError
from adaptrl.nn import (
    CategoricalHead,
    DistSpec,
    GaussianHead,
    action_input_dim,
    encode_action,
    entropy,
    fisher_product,
    kl,
    log_prob,
    make_head,
    mlp,
    mode,
    sample,
    spec_for,
)

CAT = DistSpec("categorical", 4)
GAU = DistSpec("gaussian", 3)


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def cat_params(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, 4, generator=gen(1), dtype=torch.float64)


def gau_params(*shape: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(*shape, 6, generator=gen(seed), dtype=torch.float64) * 0.7


def torch_dist(spec: DistSpec, params: torch.Tensor):
    if spec.kind == "categorical":
        return Categorical(logits=params)
    return Independent(Normal(params[..., :3], params[..., 3:].exp()), 1)


# --- mlp -----------------------------------------------------------------------------------


def test_mlp_structure_and_init():
    net = mlp(5, [16, 8], 3, activation="relu", out_gain=0.5)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 16), (16, 8), (8, 3)]
    assert sum(isinstance(m, nn.ReLU) for m in net) == 2
    assert isinstance(net[-1], nn.Linear)
    for m in linears:
        assert torch.count_nonzero(m.bias) == 0
    # orthogonal with gain g: W W^T = g^2 I for a wide matrix (rows <= cols)
    w = linears[-1].weight.detach()
    torch.testing.assert_close(w @ w.T, 0.25 * torch.eye(3), atol=1e-5, rtol=0)
    w = linears[1].weight.detach()  # 8 x 16
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(8), atol=1e-5, rtol=0)
    assert net(torch.zeros(7, 5)).shape == (7, 3)


def test_mlp_tanh_default_and_no_hidden():
    net = mlp(2, [], 1)
    assert len(net) == 1 and isinstance(net[0], nn.Linear)
    assert any(isinstance(m, nn.Tanh) for m in mlp(2, [4], 1))


def test_mlp_bad_activation_and_sizes():
    with pytest.raises(ConfigError, match="activation"):
        mlp(2, [4], 1, activation="sigmoid")
    with pytest.raises(ConfigError, match=">= 1"):
        mlp(2, [0], 1)


# --- specs and heads --------------------------------------------------------------------------


def test_spec_for_spaces():
    assert spec_for(gym.spaces.Discrete(5)) == DistSpec("categorical", 5)
    assert spec_for(gym.spaces.Box(-1, 1, (2,), np.float32)) == DistSpec("gaussian", 2)
    with pytest.raises(ConfigError, match="Discrete or a 1-D Box"):
        spec_for(gym.spaces.Box(-1, 1, (2, 2), np.float32))
    with pytest.raises(ConfigError, match="start at 0"):
        spec_for(gym.spaces.Discrete(3, start=1))
    with pytest.raises(ConfigError, match="kind"):
        DistSpec("beta", 2)  # type: ignore[arg-type]


def test_heads_shapes():
    h = make_head(gym.spaces.Discrete(4), 8)
    assert isinstance(h, CategoricalHead) and h(torch.zeros(2, 5, 8)).shape == (2, 5, 4)
    g = make_head(gym.spaces.Box(-1, 1, (3,), np.float32), 8, init_log_std=-0.5)
    assert isinstance(g, GaussianHead)
    out = g(torch.randn(2, 5, 8, generator=gen()))
    assert out.shape == (2, 5, 6)
    torch.testing.assert_close(out[..., 3:], torch.full((2, 5, 3), -0.5))
    sd = GaussianHead(8, 3, init_log_std=-1.0, state_dependent_std=True)
    out = sd(torch.zeros(4, 8))
    torch.testing.assert_close(out[..., 3:], torch.full((4, 3), -1.0))
    assert sd(torch.randn(4, 8, generator=gen())).shape == (4, 6)
    with pytest.raises(ConfigError, match="no options"):
        make_head(gym.spaces.Discrete(4), 8, init_log_std=0.0)


def test_gaussian_head_log_std_is_trainable():
    head = GaussianHead(2, 3)
    head(torch.randn(5, 2, generator=gen())).sum().backward()
    assert head.log_std.grad is not None
    torch.testing.assert_close(head.log_std.grad, torch.full((3,), 5.0))


# --- exact agreement with torch.distributions ---------------------------------------------


@pytest.mark.parametrize("spec", [CAT, GAU], ids=["categorical", "gaussian"])
def test_log_prob_entropy_kl_match_torch_distributions(spec):
    p = cat_params(5, 2) if spec is CAT else gau_params(5, 2)
    q = cat_params(5, 2).flip(-1) * 1.3 if spec is CAT else gau_params(5, 2, seed=3)
    dp, dq = torch_dist(spec, p), torch_dist(spec, q)
    action = dp.sample()
    torch.testing.assert_close(log_prob(spec, p, action), dp.log_prob(action))
    torch.testing.assert_close(entropy(spec, p), dp.entropy())
    torch.testing.assert_close(kl(spec, p, q), kl_divergence(dp, dq))
    torch.testing.assert_close(kl(spec, p, p), torch.zeros(5, 2, dtype=p.dtype))
    assert log_prob(spec, p, action).shape == entropy(spec, p).shape == (5, 2)


def test_categorical_hand_values():
    logits = torch.log(
        torch.tensor([0.5, 0.25, 0.25, 0.0], dtype=torch.float64)
    )  # class 3 impossible
    h = 1.5 * math.log(2)
    assert torch.isclose(entropy(CAT, logits), torch.tensor(h, dtype=torch.float64))
    assert torch.isclose(
        log_prob(CAT, logits, torch.tensor(1)), torch.tensor(math.log(0.25), dtype=torch.float64)
    )
    uniform = torch.zeros(4, dtype=torch.float64)
    # KL(p || uniform) = log 4 - H(p)
    assert torch.isclose(
        kl(CAT, logits, uniform), torch.tensor(math.log(4) - h, dtype=torch.float64)
    )
    assert torch.isinf(kl(CAT, uniform, logits))  # q gives zero mass where p does not
    # a class both exclude adds nothing, to the value or to the gradient
    both = logits.clone().requires_grad_()
    q = torch.log(torch.tensor([0.25, 0.25, 0.5, 0.0], dtype=torch.float64))  # excludes class 3 too
    value = kl(CAT, both, q)
    value.backward()
    assert torch.isclose(value, torch.tensor(0.25 * math.log(2), dtype=torch.float64))
    assert torch.isfinite(both.grad).all()


def test_gaussian_hand_values():
    params = torch.tensor([1.0, 0.0, 0.0, 0.0, math.log(2.0), 0.0], dtype=torch.float64)
    a = torch.tensor([2.0, 2.0, 0.0], dtype=torch.float64)
    # z = (1, 1, 0); log-stds (0, log 2, 0)
    expected = -0.5 - 0.5 - math.log(2) - 1.5 * math.log(2 * math.pi)
    assert torch.isclose(log_prob(GAU, params, a), torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(mode(GAU, params), params[:3])


def test_shape_errors():
    with pytest.raises(ValueError, match="last dimension 6"):
        log_prob(GAU, torch.zeros(2, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="last dimension 4"):
        entropy(CAT, torch.zeros(2, 5))


# --- sampling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [CAT, GAU], ids=["categorical", "gaussian"])
def test_sampling_uses_only_the_generator(spec):
    p = cat_params(3, 5) if spec is CAT else gau_params(3, 5)
    torch.manual_seed(0)
    a = sample(spec, p, gen(7))
    torch.manual_seed(1)  # the global generator must not matter
    b = sample(spec, p, gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(spec, p, gen(8)))
    assert a.shape == ((3, 5) if spec is CAT else (3, 5, 3))
    assert a.dtype == (torch.int64 if spec is CAT else p.dtype)


def test_categorical_sample_frequencies():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().expand(100_000, 4)
    a = sample(CAT, logits, gen(3))
    freq = torch.bincount(a, minlength=4).float() / a.numel()
    # binomial standard error <= 0.0016; 5 sigma
    torch.testing.assert_close(freq, probs, atol=0.008, rtol=0)
    masked = torch.tensor([0.0, float("-inf"), 0.0, float("-inf")]).expand(10_000, 4)
    assert set(sample(CAT, masked, gen(4)).unique().tolist()) == {0, 2}


def test_gaussian_sample_moments():
    params = torch.tensor([1.0, -2.0, 0.5, math.log(0.5), 0.0, math.log(2.0)]).expand(100_000, 6)
    a = sample(GAU, params, gen(5))
    torch.testing.assert_close(a.mean(0), params[0, :3], atol=0.03, rtol=0)
    torch.testing.assert_close(a.std(0), torch.tensor([0.5, 1.0, 2.0]), atol=0.03, rtol=0)


def test_mode():
    logits = torch.tensor([[0.1, 2.0, -1.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    assert mode(CAT, logits).tolist() == [1, 0]


def test_encode_action():
    assert encode_action(CAT, torch.tensor([2, 0])).tolist() == [[0, 0, 1, 0], [1, 0, 0, 0]]
    assert encode_action(CAT, torch.tensor([2, 0])).dtype == torch.float32
    a = torch.randn(2, 3, generator=gen())
    assert torch.equal(encode_action(GAU, a), a)
    assert action_input_dim(CAT) == 4 and action_input_dim(GAU) == 3


# --- functional use ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [CAT, GAU], ids=["categorical", "gaussian"])
def test_functions_work_under_vmap(spec):
    p = cat_params(6, 5) if spec is CAT else gau_params(6, 5)
    q = p.flip(0)
    a = mode(spec, q)
    torch.testing.assert_close(vmap(lambda x, y: log_prob(spec, x, y))(p, a), log_prob(spec, p, a))
    torch.testing.assert_close(vmap(lambda x: entropy(spec, x))(p), entropy(spec, p))
    torch.testing.assert_close(vmap(lambda x, y: kl(spec, x, y))(p, q), kl(spec, p, q))
    assert torch.equal(vmap(lambda x: encode_action(spec, x))(a), encode_action(spec, a))


def test_policy_gradient_through_functional_call_and_vmap():
    """Per-task gradients of a head via vmap(grad(functional_call)) equal a loop over tasks."""
    torch.manual_seed(0)
    head = GaussianHead(4, 3)
    params = {k: v.detach() for k, v in head.named_parameters()}
    feats = torch.randn(5, 7, 4, generator=gen(1))
    actions = torch.randn(5, 7, 3, generator=gen(2))

    def loss(p, f, a):
        return -log_prob(GAU, functional_call(head, p, (f,)), a).mean()

    batched = vmap(grad(loss), in_dims=(None, 0, 0))(params, feats, actions)
    for i in range(5):
        one = grad(loss)(params, feats[i], actions[i])
        for k in params:
            torch.testing.assert_close(batched[k][i], one[k])


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_fisher_product_is_the_kl_hessian_at_equal_distributions(kind):
    spec = DistSpec(kind, 3)
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(spec.param_dim, generator=gen, dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(lambda q: kl(spec, p, q), p.clone())
    for _ in range(3):
        w = torch.randn(spec.param_dim, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(fisher_product(spec, p, w), hessian @ w)
    # rows are independent
    rows = torch.randn(4, spec.param_dim, generator=gen, dtype=torch.float64)
    ws = torch.randn(4, spec.param_dim, generator=gen, dtype=torch.float64)
    stacked = torch.stack([fisher_product(spec, r, x) for r, x in zip(rows, ws, strict=True)])
    torch.testing.assert_close(fisher_product(spec, rows, ws), stacked)


def test_tanh_gaussian_log_prob_matches_torch_transformed_distribution():
    from torch.distributions import Independent, Normal, TransformedDistribution
    from torch.distributions.transforms import TanhTransform

    from adaptrl.nn.heads import tanh_gaussian_sample

    mean, log_std = (
        torch.tensor([[0.3, -1.0], [2.5, 0.0]]),
        torch.tensor([[-0.5, 0.2], [0.0, -1.0]]),
    )
    a, logp = tanh_gaussian_sample(mean, log_std, torch.Generator().manual_seed(0))
    dist = TransformedDistribution(Independent(Normal(mean, log_std.exp()), 1), [TanhTransform()])
    assert bool((a.abs() < 1).all())
    assert torch.allclose(logp, dist.log_prob(a), atol=1e-4)
