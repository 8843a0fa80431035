"""Few-shot backbones: shapes, functional use, and batch-statistics BatchNorm under vmap and
second-order differentiation, checked against a per-task loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from adaptrl.core.errors import ConfigError
from adaptrl.nn.backbones import (
    MLP,
    ConvNet,
    batch_norm,
    conv_net_tasks,
    forward_tasks,
    make_backbone,
    parameters_dict,
    sub_params,
)


def test_batch_norm_equals_torch_training_mode():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 5, 5, generator=gen) * 3 + 1
    w, b = torch.randn(3, generator=gen), torch.randn(3, generator=gen)
    expected = F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    torch.testing.assert_close(batch_norm(x, w, b), expected, rtol=1e-5, atol=1e-5)
    flat = torch.randn(7, 4, generator=gen)
    torch.testing.assert_close(
        batch_norm(flat, w[:1].expand(4), b[:1].expand(4)),
        F.batch_norm(flat, None, None, w[:1].expand(4), b[:1].expand(4), training=True),
        rtol=1e-5,
        atol=1e-5,
    )


def test_mlp_shapes_names_and_embedding():
    net = MLP(1, 1, (40, 40))
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "trunk.0.weight",
        "trunk.0.bias",
        "trunk.2.weight",
        "trunk.2.bias",
        "head.weight",
        "head.bias",
    ]
    x = torch.randn(10, 1)
    assert net(x).shape == (10, 1)
    assert net.embed(x).shape == (10, net.feature_dim) == (10, 40)
    torch.testing.assert_close(net.head(net.embed(x)), net(x))
    trunk_params = sub_params(parameters_dict(net), "trunk")
    torch.testing.assert_close(functional_call(net.trunk, trunk_params, (x,)), net.embed(x))


@pytest.mark.parametrize(
    ("kwargs", "size", "features"),
    [
        ({"hidden": 64}, 28, 64),
        ({"hidden": 32}, 84, 32 * 5 * 5),
        ({"hidden": 64, "pool": "stride"}, 28, 64),
    ],
)
def test_conv_net_shapes(kwargs, size, features):
    net = ConvNet(3, 5, image_size=size, **kwargs)
    x = torch.randn(4, 3, size, size)
    assert net.feature_dim == features
    assert net.embed(x).shape == (4, features)
    assert net(x).shape == (4, 5)
    embed_only = ConvNet(3, None, image_size=size, **kwargs)
    assert embed_only(x).shape == (4, features)
    assert not any(n.startswith("head") for n, _ in embed_only.named_parameters())


def test_batch_norm_keeps_no_running_statistics_and_ignores_eval_mode():
    net = ConvNet(1, 5)
    assert not list(net.buffers())
    x = torch.randn(5, 1, 28, 28)
    before = net(x)
    net.eval()
    torch.testing.assert_close(net(x), before)


def test_make_backbone_picks_by_input_shape():
    assert isinstance(make_backbone((1,), 1), MLP)
    omni = make_backbone((1, 28, 28), 20)
    assert isinstance(omni, ConvNet) and omni.feature_dim == 64
    mini = make_backbone((3, 84, 84), 5)
    assert mini.trunk.blocks[0].conv.out_channels == 32
    with pytest.raises(ConfigError, match="shape"):
        make_backbone((2, 3), 5)
    with pytest.raises(ConfigError, match="square"):
        make_backbone((1, 28, 30), 5)
    with pytest.raises(ConfigError, match="fewer blocks"):
        ConvNet(1, 5, image_size=8, blocks=4)


def _task_params(net, tasks, gen):
    """Per-task copies of the net's parameters with small per-task perturbations."""
    return {
        k: (v.detach() + 0.1 * torch.randn(tasks, *v.shape, generator=gen)).requires_grad_()
        for k, v in net.named_parameters()
    }


def test_vmapped_conv_net_equals_a_per_task_loop():
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    net = ConvNet(1, 5, hidden=8, image_size=28)
    params = _task_params(net, 3, gen)
    x = torch.randn(3, 6, 1, 28, 28, generator=gen)
    batched = vmap(lambda p, xt: functional_call(net, p, (xt,)))(params, x)
    for t in range(3):
        single = functional_call(net, {k: v[t] for k, v in params.items()}, (x[t],))
        torch.testing.assert_close(batched[t], single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", ["max", "stride"])
def test_grouped_conv_graph_equals_vmap(pool):
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    net = ConvNet(1, 5, hidden=8, image_size=28, pool=pool).double()
    params = {k: v.double().detach().requires_grad_() for k, v in _task_params(net, 4, gen).items()}
    x = torch.randn(4, 5, 1, 28, 28, generator=gen, dtype=torch.float64)
    expected = vmap(lambda p, xt: functional_call(net, p, (xt,)))(params, x)
    torch.testing.assert_close(conv_net_tasks(net, params, x), expected, rtol=1e-9, atol=1e-10)
    # and the gradients agree (float64: the conv bias before BatchNorm has a zero gradient)
    g1 = torch.autograd.grad(conv_net_tasks(net, params, x).square().sum(), list(params.values()))
    g2 = torch.autograd.grad(expected.square().sum(), list(params.values()))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def test_second_order_meta_gradient_through_batch_norm_vmap_equals_loop():
    """One MAML inner step through per-task BatchNorm: vmap(grad) meta-gradient == per-task loop
    with autograd.grad(create_graph=True). Batch statistics make every image's output depend on
    the other images of its task, so a wrong per-task grouping would change these numbers."""
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    net = ConvNet(1, 3, hidden=4, image_size=12, blocks=2)
    params = {k: v.detach().clone().requires_grad_() for k, v in net.named_parameters()}
    xs = torch.randn(4, 6, 1, 12, 12, generator=gen)
    ys = torch.randint(0, 3, (4, 6), generator=gen)
    xq = torch.randn(4, 9, 1, 12, 12, generator=gen)
    yq = torch.randint(0, 3, (4, 9), generator=gen)
    lr = 0.5

    def loss(p, x, y):
        return F.cross_entropy(functional_call(net, p, (x,)), y)

    def task_loss(p, x_s, y_s, x_q, y_q):
        g = grad(loss)(p, x_s, y_s)
        return loss({k: p[k] - lr * g[k] for k in p}, x_q, y_q)

    outer = vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(params, xs, ys, xq, yq).mean()
    meta_vmap = torch.autograd.grad(outer, list(params.values()))

    total = 0.0
    for t in range(4):
        g = torch.autograd.grad(
            loss(params, xs[t], ys[t]), list(params.values()), create_graph=True
        )
        adapted = {k: p - lr * gk for (k, p), gk in zip(params.items(), g, strict=True)}
        total = total + loss(adapted, xq[t], yq[t]) / 4
    meta_loop = torch.autograd.grad(total, list(params.values()))
    for a, b in zip(meta_vmap, meta_loop, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the second-order term is present: dropping it (first order) changes the BatchNorm gains
    first_order = torch.autograd.grad(
        sum(
            loss(
                {
                    k: p - lr * gk.detach()
                    for (k, p), gk in zip(
                        params.items(),
                        torch.autograd.grad(loss(params, xs[t], ys[t]), list(params.values())),
                        strict=True,
                    )
                },
                xq[t],
                yq[t],
            )
            / 4
            for t in range(4)
        ),
        list(params.values()),
    )
    assert max((a - b).abs().max() for a, b in zip(first_order, meta_loop, strict=True)) > 1e-4


def test_batched_mlp_graph_equals_vmap():
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    net = MLP(2, 3, (6, 5))
    params = _task_params(net, 4, gen)
    x = torch.randn(4, 7, 2, generator=gen)
    expected = vmap(lambda p, xt: functional_call(net, p, (xt,)))(params, x)
    torch.testing.assert_close(forward_tasks(net, params, x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="vmap"):
        forward_tasks(torch.nn.Linear(2, 2), params, x)
