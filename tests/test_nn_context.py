"""Context encoders (adaptrl.nn.context): the product-of-Gaussians posterior against its closed
form, permutation invariance, masks, and the recurrent encoder's padding."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from adaptrl.nn import DistSpec
from adaptrl.nn.context import (
    ProbabilisticContextEncoder,
    RecurrentContextEncoder,
    kl_to_standard_normal,
    posterior_from_sums,
    product_of_gaussians,
    transition_dim,
    transition_features,
)


def test_product_of_two_gaussians_matches_the_closed_form():
    mu = torch.tensor([[[1.0, 0.0], [3.0, 2.0]]])  # [1 task, 2 factors, 2 dims]
    var = torch.tensor([[[1.0, 4.0], [3.0, 4.0]]])
    post_mu, post_var = product_of_gaussians(mu, var)
    # dim 0: precisions 1 and 1/3 -> var 3/4, mu = 3/4 (1 + 1) = 1.5; dim 1: var 2, mu = 1.
    assert post_var.tolist() == [pytest.approx([0.75, 2.0])]
    assert post_mu.tolist() == [pytest.approx([1.5, 1.0])]


def test_posterior_is_the_bayes_update_of_a_gaussian_mean():
    # Observations x_i ~ N(theta, s2) with the factor N(x_i, s2) each: the product is the
    # flat-prior posterior N(mean(x), s2 / n).
    x = torch.tensor([0.3, -1.2, 2.5, 0.7, 1.1]).reshape(1, 5, 1)
    mu, var = product_of_gaussians(x, torch.full_like(x, 0.5))
    assert mu.item() == pytest.approx(x.mean().item())
    assert var.item() == pytest.approx(0.1)


def test_order_and_masked_factors_do_not_change_the_posterior():
    torch.manual_seed(0)
    mu, var = torch.randn(3, 6, 4), torch.rand(3, 6, 4) + 0.1
    perm = torch.randperm(6)
    a = product_of_gaussians(mu, var)
    b = product_of_gaussians(mu[:, perm], var[:, perm])
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-6)
    mask = torch.tensor([[True] * 4 + [False] * 2, [False] * 6, [True] * 6])
    m_mu, m_var = product_of_gaussians(mu, var, mask)
    ref = product_of_gaussians(mu[:1, :4], var[:1, :4])
    assert torch.allclose(m_mu[0], ref[0][0]) and torch.allclose(m_var[0], ref[1][0])
    # No transitions: the N(0, 1) prior.
    assert m_mu[1].tolist() == [0.0] * 4 and m_var[1].tolist() == [1.0] * 4


def test_kl_to_the_prior_matches_torch_distributions():
    mu, var = torch.tensor([[0.5, -1.0, 0.0]]), torch.tensor([[0.2, 1.0, 3.0]])
    want = kl_divergence(Normal(mu, var.sqrt()), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(kl_to_standard_normal(mu, var), want)
    assert kl_to_standard_normal(torch.zeros(1, 3), torch.ones(1, 3)).item() == 0.0


def test_transition_features_layout():
    spec = DistSpec("categorical", 3)
    f = transition_features(
        spec, torch.tensor([[1.0, 2.0]]), torch.tensor([2]), torch.tensor([0.5])
    )
    assert f.tolist() == [[1.0, 2.0, 0.0, 0.0, 1.0, 0.5]]
    g = transition_features(
        spec, torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1), torch.ones(1, 2)
    )
    assert g.shape[-1] == transition_dim(2, spec, next_obs=True) == 8


def test_probabilistic_encoder_gives_a_posterior_per_task_and_samples_it():
    torch.manual_seed(1)
    enc = ProbabilisticContextEncoder(in_dim=5, latent=3, hidden=(16,))
    feats = torch.randn(2, 4, 7, 5)  # lead dims [2, 4], 7 transitions
    mu, var = enc(feats)
    assert mu.shape == var.shape == (2, 4, 3) and bool((var > 0).all())
    # More evidence never widens the posterior.
    _, var_fewer = enc(feats[:, :, :3])
    assert bool((var <= var_fewer + 1e-6).all())
    z = enc.sample(mu, var, torch.Generator().manual_seed(0))
    assert z.shape == (2, 4, 3) and torch.equal(
        z, enc.sample(mu, var, torch.Generator().manual_seed(0))
    )


def test_recurrent_encoder_ignores_left_padding():
    torch.manual_seed(2)
    enc = RecurrentContextEncoder(in_dim=4, hidden=8)
    valid = torch.randn(3, 5, 4)
    padded = torch.cat([torch.randn(3, 2, 4), valid], dim=1)
    mask = torch.cat([torch.zeros(3, 2, dtype=torch.bool), torch.ones(3, 5, dtype=torch.bool)], 1)
    assert torch.allclose(enc(padded, mask), enc(valid), atol=1e-6)
    assert not torch.allclose(enc(padded), enc(valid), atol=1e-3)
    assert enc(torch.randn(2, 3, 6, 4)).shape == (2, 3, 8)
    steps = enc.states(padded, mask)
    assert steps.shape == (3, 7, 8) and torch.equal(steps[:, 0], torch.zeros(3, 8))
    assert torch.allclose(steps[:, -2], enc(valid[:, :-1]), atol=1e-6)


def test_running_sums_give_the_same_posterior_as_the_batch_product():
    torch.manual_seed(3)
    mu, var = torch.randn(2, 5, 3), torch.rand(2, 5, 3) + 0.2
    precision, weighted = torch.zeros(2, 3), torch.zeros(2, 3)
    for i in range(5):
        precision, weighted = precision + 1 / var[:, i], weighted + mu[:, i] / var[:, i]
    a, b = posterior_from_sums(precision, weighted), product_of_gaussians(mu, var)
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-6)
