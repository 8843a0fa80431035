"""Metric-based few-shot kernels (ProtoNets, Matching Networks) and the learned LSTM optimizer's
math: exact values, shapes, permutation behaviour and a finite-difference meta-gradient check."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from adaptrl.algos.lstm_optimizer import (
    CoordinatewiseLSTM,
    Optimizee,
    hand_designed_curve,
    preprocess_gradients,
    tune_learning_rate,
    unrolled_loss,
)
from adaptrl.algos.matching import (
    FullContextEmbedding,
    MatchingNet,
    cosine_attention,
    matching_loss,
    matching_probs,
)
from adaptrl.algos.protonet import class_prototypes, prototype_logits
from adaptrl.nn.backbones import MLP


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- ProtoNets -------------------------------------------------------------------------------
def test_prototype_logits_are_minus_squared_distances_to_class_means():
    g = _gen()
    t, ways, shots, q, d = 3, 4, 3, 5, 6
    support = torch.randn(t, ways * shots, d, generator=g, dtype=torch.float64)
    labels = torch.stack([torch.randperm(ways * shots, generator=g) % ways for _ in range(t)])
    query = torch.randn(t, q, d, generator=g, dtype=torch.float64)
    logits = prototype_logits(query, support, labels, ways)
    assert logits.shape == (t, q, ways)
    for i in range(t):
        for c in range(ways):
            mean = support[i][labels[i] == c].mean(0)
            for j in range(q):
                expected = -((query[i, j] - mean) ** 2).sum()
                assert logits[i, j, c].item() == pytest.approx(expected.item(), rel=1e-12)


def test_prototypes_average_uneven_shots_per_class():
    emb = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [0.0, 5.0], [2.0, 0.0]]])
    labels = torch.tensor([[0, 0, 1, 0]])
    protos = class_prototypes(emb, labels, 2)
    torch.testing.assert_close(protos, torch.tensor([[[2.0, 0.0], [0.0, 5.0]]]))


# --- Matching Networks -----------------------------------------------------------------------
def test_cosine_attention_rows_sum_to_one_and_match_the_formula():
    g = _gen(1)
    f, s = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    att = cosine_attention(f, s)
    assert att.shape == (2, 3, 5)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 3))
    cos = torch.nn.functional.cosine_similarity(f[1, 2].unsqueeze(0), s[1], dim=-1)
    torch.testing.assert_close(att[1, 2], torch.softmax(cos, 0))
    torch.testing.assert_close(cosine_attention(f, s, 10.0)[1, 2], torch.softmax(10 * cos, 0))
    probs = matching_probs(att, torch.tensor([[0, 1, 2, 0, 1]] * 2), 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3))
    torch.testing.assert_close(probs[0, 0, 0], att[0, 0, 0] + att[0, 0, 3])
    labels = torch.zeros(2, 3, dtype=torch.long)
    expected = -probs[..., 0].log().mean()
    torch.testing.assert_close(matching_loss(probs, labels), expected)


def test_fce_shapes_and_attention_lstm_is_invariant_to_support_order():
    torch.manual_seed(0)
    fce = FullContextEmbedding(dim=8, steps=3).double()
    g = _gen(2)
    f = torch.randn(2, 4, 8, generator=g, dtype=torch.float64)
    sup = torch.randn(2, 6, 8, generator=g, dtype=torch.float64)
    fq, gs = fce(f, sup)
    assert fq.shape == (2, 4, 8) and gs.shape == (2, 6, 8)
    perm = torch.randperm(6, generator=g)
    # The attention LSTM reads the support set as a set: its output ignores the order ...
    torch.testing.assert_close(fce.query(f, gs[:, perm]), fce.query(f, gs))
    # ... while the bidirectional LSTM's context embeddings depend on the order they are read in.
    assert not torch.allclose(fce.support(sup[:, perm]), fce.support(sup)[:, perm])


def _batch(g: torch.Generator, ways=3, shots=2, q=4):
    x_s = torch.randn(2, ways * shots, 5, generator=g)
    y_s = torch.arange(ways).repeat(shots).expand(2, -1)
    x_q = torch.randn(2, q, 5, generator=g)
    return SimpleNamespace(support_x=x_s, support_y=y_s, query_x=x_q, ways=ways)


def test_matching_net_without_fce_is_permutation_invariant_in_the_support_set():
    torch.manual_seed(0)
    net = MatchingNet(nn.Linear(5, 7), dim=7, fce=False, fce_steps=1)
    g = _gen(3)
    b = _batch(g)
    perm = torch.randperm(b.support_x.shape[1], generator=g)
    shuffled = SimpleNamespace(**{**vars(b), "support_x": b.support_x[:, perm]})
    shuffled.support_y = b.support_y[:, perm]
    probs = net(b)
    torch.testing.assert_close(net(shuffled), probs)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4))
    fce = MatchingNet(nn.Linear(5, 7), dim=7, fce=True, fce_steps=2)
    out = fce(b)
    assert out.shape == (2, 4, 3)
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 4))


# --- LSTM optimizer --------------------------------------------------------------------------
def test_preprocessing_exact_values():
    p = 10.0
    g = torch.tensor([1.0, -math.exp(-5), 1e-5, 0.0, -2e-6, math.e**3], dtype=torch.float64)
    out = preprocess_gradients(g, p)
    expected = torch.tensor(
        [
            [0.0, 1.0],
            [-0.5, -1.0],
            [-1.0, math.exp(10) * 1e-5],  # 1e-5 < e^-10 = 4.54e-5: the small-gradient branch
            [-1.0, 0.0],
            [-1.0, -math.exp(10) * 2e-6],
            [0.3, 1.0],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert preprocess_gradients(torch.zeros(3, 4)).shape == (3, 4, 2)


def _tiny_problem():
    torch.manual_seed(0)
    net = CoordinatewiseLSTM(hidden=4).double()
    opt = Optimizee(MLP(1, 1, (3,)).double())
    g = _gen(4)
    theta = opt.init(2, g, torch.device("cpu")).double()
    x = torch.randn(2, 5, 1, generator=g, dtype=torch.float64)
    y = torch.sin(x) * torch.tensor([1.0, 2.0], dtype=torch.float64).view(2, 1, 1)
    return net, opt, theta, x, y


def test_unrolled_loss_gradient_matches_finite_differences():
    net, opt, theta, x, y = _tiny_problem()

    def meta_loss(second_order=True):
        state = net.initial_state(theta.numel(), theta)
        return unrolled_loss(net, opt, theta, state, x, y, 3, second_order=second_order)[0]

    params = list(net.parameters())
    exact = torch.autograd.grad(meta_loss(), params)
    first_order = torch.autograd.grad(meta_loss(second_order=False), params)
    eps = 1e-6
    checked = 0
    for p, gp, gfo in zip(params, exact, first_order, strict=True):
        for idx in [0, p.numel() // 2, p.numel() - 1]:
            flat = p.data.view(-1)
            old = flat[idx].item()
            flat[idx] = old + eps
            up = meta_loss().item()
            flat[idx] = old - eps
            down = meta_loss().item()
            flat[idx] = old
            fd = (up - down) / (2 * eps)
            assert gp.view(-1)[idx].item() == pytest.approx(fd, rel=1e-4, abs=1e-8)
            checked += 1
        assert torch.isfinite(gfo).all()
    assert checked == 3 * len(params)
    # The paper's first-order meta-gradient drops the second-order term: it differs.
    assert not all(torch.allclose(a, b) for a, b in zip(exact, first_order, strict=True))


def test_hand_designed_adam_and_sgd_match_torch_optim_per_task():
    _, opt, theta, x, y = _tiny_problem()
    tasks = SimpleNamespace(support_x=x, support_y=y, query_x=x[:, :3], query_y=y[:, :3])
    for kind, cls, lr in (("sgd", torch.optim.SGD, 0.1), ("adam", torch.optim.Adam, 0.05)):
        curve = hand_designed_curve(opt, theta, tasks, 4, kind=kind, lr=lr)
        assert curve.shape == (2, 5)
        for i in range(2):
            w = theta[i].clone().requires_grad_()
            torch_opt = cls([w], lr=lr)
            for t in range(5):
                q = opt.loss(w.unsqueeze(0), tasks.query_x[i : i + 1], tasks.query_y[i : i + 1])
                assert curve[i, t].item() == pytest.approx(q.item(), rel=1e-9)
                torch_opt.zero_grad()
                opt.loss(w.unsqueeze(0), x[i : i + 1], y[i : i + 1]).sum().backward()
                torch_opt.step()
    best, scores = tune_learning_rate(opt, theta, tasks, 4, kind="sgd", grid=(1e-4, 0.1, 1e6))
    assert best == 0.1 and scores[1e6] > scores[0.1]
