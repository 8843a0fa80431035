"""MKTN (ANIL for RL): the trunk gets no inner update, the meta-gradient and the Fisher product
are exact with a frozen trunk, every layer adapted is MAML-RL bit for bit, resume, and it learns."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from _resume import full_and_resumed
from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.mktn import MKTN, MKTNConfig, policy_layers
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.rl.trpo import fisher_vector_product
from test_maml_rl import (
    LEARNS_NAV2D,
    assert_matches_finite_differences,
    fixed_data,
    flat_grad,
    fresh_rollouts,
    mean_kl,
    one_step_curve,
    tiny_config,
)


def as_mktn(config: MAMLRLConfig, **kw) -> MKTNConfig:
    """The MKTN config with ``config``'s MAML-RL fields."""
    return MKTNConfig(**{**dataclasses.asdict(config), "family": config.family, **kw})


def tiny_mktn(**kw) -> MKTNConfig:
    return as_mktn(tiny_config(hidden=(5, 4)), **kw)


def test_policy_layers_group_parameters_input_to_output():
    names = [
        "trunk.0.0.weight",
        "trunk.0.0.bias",
        "trunk.0.2.weight",
        "trunk.0.2.bias",
        "head.log_std",
        "head.mean.weight",
        "head.mean.bias",
    ]
    assert policy_layers(names) == [
        ["trunk.0.0.weight", "trunk.0.0.bias"],
        ["trunk.0.2.weight", "trunk.0.2.bias"],
        ["head.log_std", "head.mean.weight", "head.mean.bias"],
    ]
    learner = MKTN(tiny_mktn(), seed=0)
    assert learner.adapted() == ["head.log_std", "head.mean.weight", "head.mean.bias"]
    assert MKTN(tiny_mktn(inner_layers=2), seed=0).adapted() == [
        "trunk.0.2.weight",
        "trunk.0.2.bias",
        *learner.adapted(),
    ]
    assert MKTN(tiny_mktn(inner_layers=None), seed=0).adapted() == list(learner.params)


def test_the_trunk_gets_no_inner_update_and_the_head_does():
    learner = MKTN(tiny_mktn(), seed=0)
    theta, pre, _ = fixed_data(learner)
    phi = learner.adapt_params(theta, [pre], [0.3], first_order=False)
    groups = learner.config.meta_batch_size
    for k, v in phi.items():
        assert v.shape == (groups, *theta[k].shape)
        same = torch.equal(v, theta[k].expand_as(v))
        assert same == k.startswith("trunk."), k
    # a second step from per-task parameters keeps the trunk too
    phi2 = learner.adapt_params(phi, [pre], [0.3], first_order=True, shared=False)
    assert all(torch.equal(phi2[k], phi[k]) for k in phi if k.startswith("trunk."))


def test_second_order_meta_gradient_reaches_the_trunk_and_matches_finite_differences():
    """The trunk is not adapted but the outer loss depends on it through the head's inner step:
    its meta-gradient includes that term (checked against central differences)."""
    learner = MKTN(tiny_mktn(), seed=0)
    theta, pre, post = fixed_data(learner)
    analytic = flat_grad(learner, theta, pre, post)
    assert_matches_finite_differences(learner, theta, pre, post, analytic, seed=1, draws=3)
    fo = MKTN(tiny_mktn(first_order=True), seed=0)
    fo.policy.double()
    trunk = sum(v.numel() for k, v in theta.items() if k.startswith("trunk."))
    # the second-order term changes the trunk's gradient (first order it comes from phi alone)
    assert not torch.allclose(flat_grad(fo, theta, pre, post)[:trunk], analytic[:trunk])


@pytest.mark.parametrize("first_order", [False, True])
def test_structured_fisher_product_with_a_frozen_trunk_equals_double_backward(first_order):
    """With only the head adapted the inner step's Jacobian is I - lr P H (not symmetric): the
    structured product J^T F J still equals rl.trpo's double backward through the adaptation."""
    learner = MKTN(tiny_mktn(first_order=first_order), seed=3)
    theta, pre, post = fixed_data(learner)
    names = list(theta)
    reference = fisher_vector_product(
        lambda v: mean_kl(learner, dict(zip(names, v, strict=True)), [pre], post),
        [theta[k] for k in names],
        0.1,
    )
    ours = learner.structured_fvp(theta, [pre], post, 0.1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        v = torch.randn(sum(t.numel() for t in theta.values()), generator=gen, dtype=torch.float64)
        torch.testing.assert_close(ours(v), reference(v), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("outer", ["trpo", "ppo"])
def test_every_layer_adapted_is_maml_rl_bit_for_bit(outer):
    base = tiny_config(outer=outer)
    maml = MAMLRL(base, seed=4)
    mktn = MKTN(as_mktn(base, inner_layers=None), seed=4)
    head = MKTN(as_mktn(base), seed=4)
    assert all(torch.equal(maml.params[k], head.params[k]) for k in maml.params)  # same init
    for _ in range(2):
        a, b, _ = maml.meta_train_step(), mktn.meta_train_step(), head.meta_train_step()
        assert float(a["return_pre"]) == float(b["return_pre"])
    assert all(torch.equal(maml.params[k], mktn.params[k]) for k in maml.params)
    assert not all(torch.equal(maml.params[k], head.params[k]) for k in maml.params)
    tasks = maml.family.tasks(3, "test", 7)
    curves = [m.adaptation_curve(tasks, 2, make_generator(7, "eval")) for m in (maml, mktn)]
    assert torch.equal(*curves)


def test_trpo_step_respects_the_kl_bound():
    learner = MKTN(tiny_mktn(rollouts_per_task=8, max_kl=1e-3), seed=2)
    theta, pre, post = fresh_rollouts(learner)
    info = learner.update([pre], post)
    new = {k: v.detach() for k, v in learner.params.items()}
    assert info["accepted"]
    assert 0 < float(mean_kl(learner, new, [pre], post)) <= 1e-3 * (1 + 1e-4)
    assert any(not torch.equal(new[k], theta[k]) for k in new if k.startswith("trunk."))


def test_too_many_inner_layers_is_a_clear_error():
    with pytest.raises(ConfigError, match="inner_layers=4 but the policy has 3 layers"):
        tiny_mktn(inner_layers=4)


def test_resume_after_a_kill_is_identical(tmp_path):
    full, resumed = full_and_resumed(tmp_path, tiny_mktn(iterations=4), kill_at=3)
    for k, v in full.params.items():
        assert torch.equal(v, resumed.params[k]), k


def test_it_learns_on_nav2d():
    """After a short meta-training, one inner step of the head alone clearly improves the return
    on held-out tasks."""
    curve = one_step_curve(MKTN(as_mktn(LEARNS_NAV2D), seed=0))
    assert curve[1] > curve[0] + 5.0, curve


def test_maml_rl_config_is_refused():
    with pytest.raises(ConfigError, match="MKTNConfig"):
        from adaptrl.algos import make_learner

        make_learner("mktn", MAMLRLConfig())


def test_the_shipped_cheetah_dir_model_rescores_its_report():
    """MKTN behind the HalfCheetah-Dir row (ANIL's Table 2) is shipped; its first chunk of test
    tasks scores the report's values before and after one step (the report was made under
    MuJoCo 3.3.0, the release metaworld pins; other releases differ in the last bits, which a
    rollout amplifies)."""
    import json
    from pathlib import Path

    mujoco = pytest.importorskip("mujoco")
    if mujoco.__version__ != "3.3.0":
        pytest.skip("the shipped MKTN HalfCheetah-Dir report was made under MuJoCo 3.3.0")
    from adaptrl.algos.trainer import load_trained

    shipped = Path(__file__).resolve().parents[1] / "docs/results/maml-rl/mktn-cheetah-dir-s1"
    data = json.loads((shipped / "eval-160it-100tasks-lr005/results.json").read_text())
    learner = load_trained(shipped / "model", expect=MKTN)
    assert learner.iteration == 160 and learner.seed == 1
    meta = data["meta"]
    tasks = learner.family.tasks(meta["num_tasks"], "test", seed=meta["eval_seed"])
    first = learner.config.eval_chunk
    gen = make_generator(meta["eval_seed"], "adapt", 0, 0)  # adaptrl eval's first chunk
    curve = learner.adaptation_curve(tasks[:first], 1, gen)
    expected = torch.tensor(data["curves"][0]["values"], dtype=torch.float64)[:first, :2]
    torch.testing.assert_close(curve.double(), expected, rtol=0, atol=1e-4)
