"""Hypernetworks (nn/hyper.py): generated shapes, Bias-HyperInit's promise (every task starts from
the same, normally initialised network), the naive initialisation's embedding-dependent scale,
gradients against finite differences, and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from _gradcheck import assert_gradient_matches_finite_differences
from adaptrl.core.errors import ConfigError
from adaptrl.nn.hyper import HyperMLP, apply_generated
from adaptrl.nn.mlp import HIDDEN_GAIN


def test_generated_shapes_and_forward_equal_a_plain_mlp_per_task():
    torch.manual_seed(0)
    hyper = HyperMLP(6, 3, (8, 5), 2, hyper_hidden=(7,), init="naive")
    e = torch.randn(4, 6)
    layers = hyper.generate(e)
    assert [(tuple(w.shape), tuple(b.shape)) for w, b in layers] == [
        ((4, 8, 3), (4, 8)),
        ((4, 5, 8), (4, 5)),
        ((4, 2, 5), (4, 2)),
    ]
    x = torch.randn(4, 10, 3)
    out = hyper(e, x)
    assert out.shape == (4, 10, 2)
    for t in range(4):  # task t's network, written out with F.linear
        h = torch.relu(F.linear(x[t], layers[0][0][t], layers[0][1][t]))
        h = torch.relu(F.linear(h, layers[1][0][t], layers[1][1][t]))
        torch.testing.assert_close(out[t], F.linear(h, layers[2][0][t], layers[2][1][t]))


@pytest.mark.parametrize("hyper_hidden", [(), (16,)])
def test_bias_hyperinit_gives_every_task_the_same_standard_network(hyper_hidden):
    torch.manual_seed(1)
    hyper = HyperMLP(5, 4, (32, 32), 3, hyper_hidden=hyper_hidden, out_gain=0.5)
    e = torch.randn(64, 5) * 3.0
    layers = hyper.generate(e)
    gains = [HIDDEN_GAIN, HIDDEN_GAIN, 0.5]
    for (w, b), gain in zip(layers, gains, strict=True):
        assert torch.equal(w, w[:1].expand_as(w)) and not b.any()  # the same for every task
        # an orthogonal matrix times the gain: its rows (or columns) are orthogonal of norm gain
        m = w[0] if w.shape[1] <= w.shape[2] else w[0].T
        torch.testing.assert_close(m @ m.T, gain**2 * torch.eye(m.shape[0]), atol=1e-5, rtol=0)
    # so every task's outputs are those of one network, with the scale of a standard init
    x = torch.randn(64, 20, 4)
    out = hyper(e, x)
    torch.testing.assert_close(
        out, apply_generated([(w[:1], b[:1]) for w, b in layers], x, nn.ReLU()).expand_as(out)
    )


def test_naive_init_makes_the_network_depend_on_the_embedding_at_a_different_scale():
    torch.manual_seed(2)
    naive = HyperMLP(5, 4, (32,), 3, init="naive")
    standard = HyperMLP(5, 4, (32,), 3)
    e = torch.randn(64, 5) * 3.0
    w_naive = naive.generate(e)[0][0]
    w_std = standard.generate(e)[0][0]
    assert not torch.allclose(w_naive[0], w_naive[1])  # each task its own network
    # per-weight spread across tasks: none for Bias-HyperInit, of the order of the weights for naive
    assert w_std.std(0).max() == 0 and w_naive.std(0).mean() > 0.5 * w_naive.abs().mean()
    # and its scale is not the standard one (orthogonal, gain sqrt 2: rows of norm sqrt 2)
    row_norms = w_naive.norm(dim=-1).mean()
    assert abs(row_norms - HIDDEN_GAIN) > 0.3, row_norms


def test_gradients_of_the_hypernetwork_match_finite_differences():
    torch.manual_seed(3)
    hyper = HyperMLP(3, 2, (4,), 1, hyper_hidden=(5,), init="naive").double()
    e, x = torch.randn(2, 3).double(), torch.randn(2, 6, 2).double()
    target = torch.randn(2, 6, 1).double()

    def loss() -> torch.Tensor:
        return ((hyper(e, x) - target) ** 2).mean()

    assert_gradient_matches_finite_differences(loss, list(hyper.parameters()))


def test_errors_are_clear():
    with pytest.raises(ConfigError, match="activation must be one of"):
        HyperMLP(2, 2, (3,), 1, activation="gelu")
    with pytest.raises(ConfigError, match="init must be 'bias-hyperinit' or 'naive'"):
        HyperMLP(2, 2, (3,), 1, init="zeros")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sizes must be >= 1"):
        HyperMLP(2, 0, (3,), 1)


def test_fan_in_scale_divides_the_features_the_heads_read_by_sqrt_width():
    torch.manual_seed(4)
    plain = HyperMLP(16, 3, (5,), 2, init="naive")
    scaled = HyperMLP(16, 3, (5,), 2, init="naive", fan_in_scale=True)
    scaled.load_state_dict(plain.state_dict())
    e = torch.randn(7, 16)
    for (w, b), (w0, b0) in zip(scaled.generate(e), plain.generate(e / 4.0), strict=True):
        torch.testing.assert_close(w, w0)
        torch.testing.assert_close(b, b0)
    # Bias-HyperInit's promise holds with the scale: every embedding, the same network
    layers = HyperMLP(16, 3, (5,), 2, fan_in_scale=True).generate(e)
    assert all(torch.equal(w, w[:1].expand_as(w)) for w, _ in layers)
