"""Propensity weights (adaptrl.rl.propensity): ESS on hand values, the logistic fit's optimality
and its recovery of a known density ratio."""

from __future__ import annotations

import math

import pytest
import torch

from adaptrl.rl.propensity import fit_logistic, normalized_ess, propensity_weights


def test_normalized_ess_on_hand_values():
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [2.0, 1.0, 1.0, 0.0]])
    assert normalized_ess(w).tolist() == pytest.approx([1.0, 0.25, 16 / 24])
    assert normalized_ess(torch.zeros(3)).item() == 0.0


def _objective(w, pos, neg, l2):
    zp = pos @ w[:-1] + w[-1]
    zn = neg @ w[:-1] + w[-1]
    nll = torch.nn.functional.softplus(-zp).mean() / 2 + torch.nn.functional.softplus(zn).mean() / 2
    return nll + l2 / 2 * w[:-1].square().sum()


def test_newton_fit_is_the_minimiser_of_each_tasks_objective():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(3, 7, 4, generator=gen, dtype=torch.float64) + 0.5
    neg = torch.randn(40, 4, generator=gen, dtype=torch.float64)
    w = fit_logistic(pos, neg, l2=0.3)
    for b in range(3):
        wb = w[b].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_objective(wb, pos[b], neg, 0.3), wb)
        assert g.abs().max().item() < 1e-10
        # and a perturbed point is worse
        worse = _objective(w[b] + 0.01, pos[b], neg, 0.3)
        assert worse > _objective(w[b], pos[b], neg, 0.3)


def test_logit_recovers_the_log_density_ratio_of_two_gaussians():
    # N(mu, 1) against N(0, 1): log p_new / p_meta = mu x - mu^2 / 2.
    gen = torch.Generator().manual_seed(1)
    mu = 0.8
    pos = torch.randn(1, 40000, 1, generator=gen, dtype=torch.float64) + mu
    neg = torch.randn(40000, 1, generator=gen, dtype=torch.float64)
    w = fit_logistic(pos, neg, l2=0.0)[0]
    assert w[0].item() == pytest.approx(mu, abs=0.03)
    assert w[1].item() == pytest.approx(-(mu**2) / 2, abs=0.03)


def test_propensity_weights_favour_meta_samples_like_the_new_task_and_clip():
    gen = torch.Generator().manual_seed(2)
    meta = torch.cat(
        [torch.randn(200, 2, generator=gen) - 3, torch.randn(200, 2, generator=gen) + 3]
    )
    new = torch.randn(2, 30, 2, generator=gen) + torch.tensor([[[3.0, 3.0]], [[-3.0, -3.0]]])
    beta, ess = propensity_weights(new, meta, l2=0.01, clip=2.0)
    assert beta.shape == (2, 400) and ess.shape == (2,)
    assert beta.max().item() <= 2.0 + 1e-6
    # task 0 is like the second half of the meta sample, task 1 like the first
    assert beta[0, 200:].mean() > 10 * beta[0, :200].mean()
    assert beta[1, :200].mean() > 10 * beta[1, 200:].mean()
    # about half the meta sample is useful to each task
    assert ess.min().item() > 0.3
    assert ess.max().item() < 0.7
    assert math.isfinite(beta.sum().item())


def test_a_strong_penalty_weighs_every_meta_sample_alike():
    gen = torch.Generator().manual_seed(3)
    meta = torch.randn(100, 3, generator=gen)
    new = torch.randn(1, 10, 3, generator=gen) + 2.0
    beta, ess = propensity_weights(new, meta, l2=1e6, clip=10.0)
    assert beta.std().item() < 1e-3 and ess.item() == pytest.approx(1.0, abs=1e-6)
