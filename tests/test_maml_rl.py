"""MAML-RL: meta-gradients against finite differences and explicit Hessians, the TRPO trust region,
determinism, checkpoints and resume, and a quick "it learns" on 2D navigation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from _resume import full_and_resumed
from adaptrl.algos.maml_rl import MAMLRL, Batch, MAMLRLConfig
from adaptrl.baselines.pg import GRADIENT_BASELINES, make_baseline_learner
from adaptrl.core.checkpoint import load_state, save_state
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.nn import heads
from adaptrl.nn.policies import MLPPolicy, batched_policy_dist
from adaptrl.rl.trpo import fisher_vector_product


def tiny_config(**kw) -> MAMLRLConfig:
    base = MAMLRLConfig(
        family=Nav2DConfig(horizon=6),
        iterations=3,
        meta_batch_size=3,
        rollouts_per_task=4,
        hidden=(5,),
        activation="tanh",
        inner_lr=0.3,
    )
    return dataclasses.replace(base, **kw)


def fresh_rollouts(learner: MAMLRL) -> tuple[dict[str, torch.Tensor], Batch, Batch]:
    """theta, its rollouts on a few training tasks, and the adapted policies' rollouts."""
    c = learner.config
    tasks = learner.family.tasks(c.meta_batch_size, "train", seed=5)
    theta = {k: v.detach().clone() for k, v in learner.params.items()}
    pre = learner.rollouts(tasks, theta, per_task=False, env_seed=1)
    phi = learner.adapt_params(theta, [pre], [c.inner_lr], first_order=True)
    return theta, pre, learner.rollouts(tasks, phi, per_task=True, env_seed=2)


def to_double(batch: Batch) -> Batch:
    def double(x: torch.Tensor | None) -> torch.Tensor | None:
        return x.double() if x is not None and x.is_floating_point() else x

    return Batch(**{f.name: double(getattr(batch, f.name)) for f in dataclasses.fields(batch)})


def collected_data(
    learner: MAMLRL, steps: int = 1, seed: int = 3
) -> tuple[dict[str, torch.Tensor], list[Batch], Batch]:
    """theta, the rollouts of theta and of each of its first ``steps - 1`` adaptations, the
    ``steps``-step policies' rollouts; then everything in float64, with the post-update behaviour
    distribution recomputed exactly."""
    c = learner.config
    tasks = learner.family.tasks(c.meta_batch_size, "train", seed=seed)
    theta = {k: v.detach() for k, v in learner.params.items()}
    lrs = c.train_lrs()[:steps]
    phi, shared, pres = theta, True, []
    for k in range(steps):
        pres.append(learner.rollouts(tasks, phi, per_task=not shared, env_seed=1 + k))
        phi = learner.adapt_params(phi, pres[-1:], [lrs[k]], first_order=True, shared=shared)
        shared = False
    post = learner.rollouts(tasks, phi, per_task=True, env_seed=1 + steps)
    learner.policy.double()
    theta = {k: v.double() for k, v in theta.items()}
    pres, post = [to_double(b) for b in pres], to_double(post)
    for k, batch in enumerate([*pres[1:], post]):  # each behaviour distribution, in float64
        phi = learner.adapt_params(theta, pres[: k + 1], lrs[: k + 1], first_order=True)
        batch.dist = batched_policy_dist(learner.policy, phi, batch.obs).detach()
        batch.logp = heads.log_prob(learner.spec, batch.dist, batch.actions)
    return theta, pres, post


def surrogate(learner: MAMLRL, params, pre, post) -> torch.Tensor:
    """The outer loss of ``learner`` at ``params`` (the first half of ``loss_and_kl``)."""
    return learner.loss_and_kl(params, pre, post)[0]


def mean_kl(learner: MAMLRL, params, pre, post) -> torch.Tensor:
    """The outer KL of ``learner`` at ``params`` (the second half of ``loss_and_kl``)."""
    return learner.loss_and_kl(params, pre, post)[1]


def fixed_data(learner: MAMLRL) -> tuple[dict[str, torch.Tensor], Batch, Batch]:
    """Pre- and post-update rollouts of one inner step, in float64."""
    theta, pres, post = collected_data(learner)
    return theta, pres[0], post


def flat_grad(learner, theta, pre, post) -> torch.Tensor:
    leaves = {k: v.clone().requires_grad_() for k, v in theta.items()}
    loss = surrogate(learner, leaves, [pre], post)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(leaves.values()))])


def assert_matches_finite_differences(learner, theta, pre, post, analytic, seed=0, draws=4):
    """``analytic`` (a flat meta-gradient at ``theta``) agrees with central differences of the
    outer loss along random directions."""
    names = list(theta)
    sizes = [theta[k].numel() for k in names]
    gen = torch.Generator().manual_seed(seed)
    eps = 1e-6
    for _ in range(draws):
        direction = torch.randn(sum(sizes), generator=gen, dtype=torch.float64)
        parts = direction.split(sizes)

        def at(sign: float, parts=parts) -> float:
            p = {
                k: theta[k] + sign * eps * d.view_as(theta[k])
                for k, d in zip(names, parts, strict=True)
            }
            return float(surrogate(learner, p, [pre], post))

        numeric = (at(1.0) - at(-1.0)) / (2 * eps)
        assert analytic.dot(direction).item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_second_order_meta_gradient_matches_finite_differences():
    learner = MAMLRL(tiny_config(), seed=0)
    theta, pre, post = fixed_data(learner)
    analytic = flat_grad(learner, theta, pre, post)
    assert_matches_finite_differences(learner, theta, pre, post, analytic)
    # the first-order gradient is a different vector: the test above would catch a dropped term
    fo = MAMLRL(tiny_config(first_order=True), seed=0)
    fo.policy.double()
    assert not torch.allclose(flat_grad(fo, theta, pre, post), analytic, rtol=1e-3, atol=1e-8)


def test_first_order_drops_exactly_the_second_order_term():
    """SO - FO = -alpha * sum_g H_g dM/dphi_g, H_g the inner loss' Hessian of task g (per-task
    autograd, no vmap), M the outer loss."""
    c = tiny_config()
    so = MAMLRL(c, seed=1)
    theta, pre, post = fixed_data(so)
    fo = MAMLRL(dataclasses.replace(c, first_order=True), seed=1)
    fo.policy.double()
    diff = flat_grad(so, theta, pre, post) - flat_grad(fo, theta, pre, post)

    phi = so.adapt_params(theta, [pre], [c.inner_lr], first_order=True)
    phi = {k: v.detach().requires_grad_() for k, v in phi.items()}
    from adaptrl.algos.maml_rl import task_mean

    logp = heads.log_prob(so.spec, batched_policy_dist(so.policy, phi, post.obs), post.actions)
    outer = -task_mean(torch.exp(logp - post.logp) * post.advantages, post.mask)
    d_phi = torch.autograd.grad(outer, list(phi.values()))
    expected = torch.zeros_like(diff)
    for g in range(c.meta_batch_size):
        p = {k: v.clone().requires_grad_() for k, v in theta.items()}
        inner = so.task_loss(p, pre.obs[g], pre.actions[g], pre.advantages[g], pre.mask[g])
        grads = torch.autograd.grad(inner, list(p.values()), create_graph=True)
        dot = sum((gr * d[g]).sum() for gr, d in zip(grads, d_phi, strict=True))
        hv = torch.autograd.grad(dot, list(p.values()))
        expected -= c.inner_lr * torch.cat([h.reshape(-1) for h in hv])
    assert expected.norm() > 1e-4  # the term is not negligible here
    torch.testing.assert_close(diff, expected, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("inner_steps", [1, 0])
@pytest.mark.parametrize("block", [None, 3])
def test_structured_fisher_product_equals_double_backward(first_order, inner_steps, block):
    """J^T F J (two inner Hessian-vector products + a Fisher product) is the exact Hessian of the
    mean KL through the adaptation at the data-collecting parameters: it matches rl.trpo's
    double-backward product, also computed in blocks of time steps (``fvp_block``, a block size
    that does not divide the horizon)."""
    learner = MAMLRL(tiny_config(first_order=first_order, fvp_block=block), seed=3)
    theta, pre, post = fixed_data(learner)
    pres = [pre] * inner_steps
    if not pres:  # the post-update data then comes from theta itself
        shared = {k: v.expand(post.obs.shape[0], *v.shape) for k, v in theta.items()}
        post.dist = batched_policy_dist(learner.policy, shared, post.obs).detach()
    names = list(theta)
    reference = fisher_vector_product(
        lambda v: mean_kl(learner, dict(zip(names, v, strict=True)), pres, post),
        [theta[k] for k in names],
        0.1,
    )
    ours = learner.structured_fvp(theta, pres, post, 0.1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        v = torch.randn(sum(t.numel() for t in theta.values()), generator=gen, dtype=torch.float64)
        torch.testing.assert_close(ours(v), reference(v), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fvp", ["structured", "autograd"])
@pytest.mark.parametrize("max_kl", [1e-2, 1e-4])
def test_trpo_line_search_respects_the_kl_bound(max_kl, fvp):
    learner = MAMLRL(tiny_config(max_kl=max_kl, rollouts_per_task=8, fvp=fvp), seed=2)
    theta, pre, post = fresh_rollouts(learner)
    info = learner.update([pre], post)
    new = {k: v.detach() for k, v in learner.params.items()}
    kl = float(mean_kl(learner, new, [pre], post))
    assert info["accepted"]
    assert 0 < kl <= max_kl * (1 + 1e-4)
    assert kl == pytest.approx(info["kl"], rel=1e-4)
    assert float(surrogate(learner, new, [pre], post)) < float(
        surrogate(learner, theta, [pre], post)
    )


def test_first_rollouts_slices_each_tasks_rollouts():
    learner = MAMLRL(tiny_config(), seed=0)
    _, pre, _ = fixed_data(learner)
    sub = pre.first_rollouts(2)
    assert sub.obs.shape == (*pre.obs.shape[:2], 2, pre.obs.shape[3])
    assert torch.equal(sub.advantages, pre.advantages[:, :, :2])
    assert sub.obs.is_contiguous() and sub.returns is pre.returns
    assert pre.first_rollouts(pre.mask.shape[2]) is pre


@pytest.mark.parametrize("subsample, expected", [(0.5, 2), (0.1, 1), (1.0, 4)])
def test_fisher_products_use_the_subsampled_rollouts(subsample, expected, monkeypatch):
    """fvp_subsample picks the first k rollouts of each task for the products only; the step still
    respects the trust region, whose KL is measured on all rollouts."""
    learner = MAMLRL(tiny_config(fvp_subsample=subsample, rollouts_per_task=4), seed=2)
    seen = []
    real = learner.structured_fvp

    def spy(theta, pre, post, damping):
        seen.append((post.mask.shape[2], [b.mask.shape[2] for b in pre]))
        return real(theta, pre, post, damping)

    monkeypatch.setattr(learner, "structured_fvp", spy)
    _, pre, post = fresh_rollouts(learner)
    learner.update([pre], post)
    assert seen == [(expected, [expected])]
    new = {k: v.detach() for k, v in learner.params.items()}
    assert float(mean_kl(learner, new, [pre], post)) <= learner.config.max_kl * (1 + 1e-4)


def test_step_blocks_cover_every_step_once():
    from adaptrl.algos.maml_rl import step_blocks

    assert step_blocks(7, None) == [slice(0, 7)]
    assert step_blocks(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert step_blocks(6, 3) == [slice(0, 3), slice(3, 6)]
    assert step_blocks(2, 5) == [slice(0, 2)]


def test_fvp_subsample_errors():
    with pytest.raises(ConfigError, match="fvp_subsample"):
        tiny_config(fvp_subsample=0.0)
    with pytest.raises(ConfigError, match="fvp_subsample"):
        tiny_config(fvp_subsample=1.5)
    with pytest.raises(ConfigError, match="structured"):
        tiny_config(fvp_subsample=0.5, fvp="autograd")


def test_same_seed_same_result_and_different_seed_differs():
    def run(seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        learner = MAMLRL(tiny_config(), seed=seed)
        for _ in range(2):
            learner.meta_train_step()
        curve = learner.adaptation_curve(
            learner.family.tasks(3, "test", 7), 2, make_generator(7, "eval")
        )
        return learner.state_dict()["params"], curve

    a, ca = run(0)
    b, cb = run(0)
    c, _ = run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(ca, cb)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("outer", ["trpo", "ppo"])
def test_state_dict_round_trip_continues_identically(tmp_path, outer):
    cfg = tiny_config(outer=outer, ppo_epochs=2)
    straight = MAMLRL(cfg, seed=4)
    for _ in range(3):
        straight.meta_train_step()

    first = MAMLRL(cfg, seed=4)
    first.meta_train_step()
    save_state(tmp_path / "ckpt", first.state_dict())
    resumed = MAMLRL(cfg, seed=4)
    resumed.load_state_dict(load_state(tmp_path / "ckpt")[0])
    assert resumed.iteration == 1
    for _ in range(2):
        resumed.meta_train_step()
    for k, v in straight.state_dict()["params"].items():
        assert torch.equal(v, resumed.state_dict()["params"][k]), k


def test_hooks_shapes_and_errors():
    learner = MAMLRL(tiny_config(eval_chunk=2), seed=0)
    tasks = learner.family.tasks(5, "test", 0)
    curve = learner.adaptation_curve(tasks, 3, make_generator(0, "e"))
    assert curve.shape == (5, 4) and torch.isfinite(curve).all()
    params = learner.adapt(tasks, 2, make_generator(0, "e"))
    assert set(params) == set(learner.params)
    for k, v in params.items():
        assert v.shape == (5, *learner.params[k].shape)
    zero = learner.adapt(tasks, 0, make_generator(0, "e"))
    for k, v in zero.items():
        assert torch.equal(v, learner.params[k].detach().expand_as(v))
    with pytest.raises(ConfigError):
        learner.adaptation_curve(tasks, -1, make_generator(0, "e"))
    with pytest.raises(ConfigError):
        tiny_config(meta_batch_size=0)
    with pytest.raises(ConfigError):
        MLPPolicy(2, learner.family.action_space, (), "tanh")
    with pytest.raises(ConfigError):
        MLPPolicy(2, learner.family.action_space, (4,), "sigmoid")


def test_baselines_are_configured_variants():
    cfg = tiny_config()
    scratch = make_baseline_learner("scratch", cfg)
    assert scratch.config.iterations == 0 and not GRADIENT_BASELINES["scratch"].trained
    pre = make_baseline_learner("pretrained", cfg)
    assert pre.config.inner_steps == 0
    oracle = make_baseline_learner("oracle", cfg)
    assert oracle.config.observe_task and oracle.policy.trunk[0][0].in_features == 4
    m = oracle.meta_train_step()  # multi-task TRPO with no inner step runs
    assert float(m["return_post"]) == float(m["return_pre"])
    with pytest.raises(ConfigError):
        make_baseline_learner("nope", cfg)
    # without inner steps of their own, the baselines are tested with MAML's step sizes
    assert pre.config.eval_inner_lrs == (0.3,)
    two = tiny_config(inner_steps=2, inner_lrs=(0.5, 0.25), step_loss_weights=(1.0, 1.0))
    for name in ("pretrained", "oracle"):
        derived = make_baseline_learner(name, two)
        assert derived.config.inner_lrs == () and derived.config.step_loss_weights == ()
        assert [derived.config.test_lr(k) for k in range(3)] == [0.5, 0.25, 0.25]
    curriculum = dataclasses.replace(two, single_step_iterations=2)
    assert make_baseline_learner("pretrained", curriculum).config.single_step_iterations == 0


LEARNS_NAV2D = MAMLRLConfig(
    family=Nav2DConfig(),
    iterations=12,
    meta_batch_size=10,
    rollouts_per_task=10,
    hidden=(32, 32),
    activation="relu",
    first_order=True,
)
"""A short first-order meta-training on 2D navigation that a working learner learns from."""


def one_step_curve(learner: MAMLRL) -> torch.Tensor:
    """Train ``learner`` to its iterations; its mean return on 20 held-out tasks after 0, 1 steps."""
    for _ in range(learner.config.iterations):
        learner.meta_train_step()
    tasks = learner.family.tasks(20, "test", 11)
    return learner.adaptation_curve(tasks, 1, make_generator(11, "eval")).mean(0)


def test_it_learns_on_nav2d():
    """After a short meta-training, one inner step clearly improves the return on held-out tasks,
    and the meta-trained initialisation adapts better than a random one."""
    curve = one_step_curve(MAMLRL(LEARNS_NAV2D, seed=0))
    scratch = one_step_curve(make_baseline_learner("scratch", LEARNS_NAV2D))  # 0 iterations
    assert curve[1] > curve[0] + 5.0, curve
    assert curve[1] > scratch[1] + 5.0, (curve, scratch)


def test_trainer_resume_after_a_kill_is_identical(tmp_path):
    # killed after the checkpoint at 2: iteration 3 is logged, then lost
    full, resumed = full_and_resumed(tmp_path, tiny_config(iterations=4), kill_at=3)
    for k, v in full.params.items():
        assert torch.equal(v, resumed.params[k]), k


@pytest.mark.parametrize("normalize", [True, False])
def test_policy_acts_in_unit_coordinates_rescaled_to_the_box(normalize, monkeypatch):
    """nav2d's velocities are in [-0.1, 0.1]: with normalize_actions the batch keeps the policy's
    own samples (what log-probabilities are taken of) and the environment gets 0.1 x them."""
    learner = MAMLRL(tiny_config(normalize_actions=normalize), seed=0)
    sent = []
    env = learner.env(learner.config.meta_batch_size * learner.config.rollouts_per_task)
    real_step = env.step

    def spy(action):
        sent.append(action.clone())
        return real_step(action)

    monkeypatch.setattr(env, "step", spy)
    theta = {k: v.detach() for k, v in learner.params.items()}
    tasks = learner.family.tasks(learner.config.meta_batch_size, "train", seed=1)
    batch = learner.rollouts(tasks, theta, per_task=False, env_seed=1)
    first = batch.actions[:, 0].reshape(-1, 2)  # [G, E, 2] at t = 0, row order g * E + e
    scale = 0.1 if normalize else 1.0
    torch.testing.assert_close(sent[0], scale * first)
    assert batch.actions.abs().max() > 0.1  # std-1 samples: clearly outside the box when unscaled


def test_unit_box_rescale():
    import gymnasium as gym

    from adaptrl.nn.policies import unit_box_rescale

    scale, offset = unit_box_rescale(gym.spaces.Box(low=-2.0, high=4.0, shape=(3,)))
    torch.testing.assert_close(offset + scale * torch.full((3,), -1.0), torch.full((3,), -2.0))
    torch.testing.assert_close(offset + scale * torch.ones(3), torch.full((3,), 4.0))
    assert unit_box_rescale(gym.spaces.Box(low=-float("inf"), high=1.0, shape=(2,))) is None
    assert unit_box_rescale(gym.spaces.Discrete(4)) is None


def test_two_inner_steps_meta_gradient_matches_finite_differences():
    """With S = 2 the meta-gradient runs through both vmapped inner steps (the second one on
    per-task parameters); a dropped or detached second-step term would fail this."""
    learner = MAMLRL(tiny_config(inner_steps=2), seed=4)
    theta, pres, post = collected_data(learner, steps=2, seed=4)
    leaves = {k: v.clone().requires_grad_() for k, v in theta.items()}
    loss = surrogate(learner, leaves, pres, post)
    analytic = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(leaves.values()))])
    names = list(theta)
    sizes = [theta[k].numel() for k in names]
    gen = torch.Generator().manual_seed(1)
    eps = 1e-6
    for _ in range(3):
        parts = torch.randn(sum(sizes), generator=gen, dtype=torch.float64).split(sizes)

        def at(sign: float, parts=parts) -> float:
            p = {
                k: theta[k] + sign * eps * d.view_as(theta[k])
                for k, d in zip(names, parts, strict=True)
            }
            return float(surrogate(learner, p, pres, post))

        numeric = (at(1.0) - at(-1.0)) / (2 * eps)
        assert torch.cat(parts).dot(analytic).item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    # one step only gives a different loss on the same data: the second step is not a no-op
    one_step = MAMLRL(tiny_config(inner_steps=1), seed=4)
    assert float(surrogate(one_step, theta, pres[:1], post)) != pytest.approx(float(loss.detach()))


def test_step_loss_weights_score_each_adapted_policy_on_its_own_rollouts():
    """MAML++'s multi-step loss: with weights (1, 3) the outer loss is 1/4 of the one-step
    policy's surrogate on the rollouts it collected (the second step's batch) plus 3/4 of the
    two-step policy's on the post-update rollouts; likewise the KL. Inner steps use inner_lrs."""
    config = tiny_config(inner_steps=2, inner_lrs=(0.3, 0.1), step_loss_weights=(1.0, 3.0))
    learner = MAMLRL(config, seed=4)
    theta, pres, post = collected_data(learner, steps=2, seed=4)
    last_only = MAMLRL(dataclasses.replace(config, step_loss_weights=()), seed=4)
    one_step = MAMLRL(tiny_config(inner_steps=1, inner_lr=0.3), seed=4)
    for m in (last_only, one_step):
        m.policy.double()
    gen = torch.Generator().manual_seed(0)
    moved = {
        k: v + 0.05 * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in theta.items()
    }
    for part in (0, 1):  # the loss, then the KL
        got = learner.loss_and_kl(moved, pres, post)[part]
        first = one_step.loss_and_kl(moved, pres[:1], pres[1])[part]
        last = last_only.loss_and_kl(moved, pres, post)[part]
        torch.testing.assert_close(got, 0.25 * first + 0.75 * last)
        assert float(first) != pytest.approx(float(last))  # the two terms differ: a real mix
    # every adapted policy collected its own rollouts, so the weighted KL vanishes at theta
    assert float(mean_kl(learner, theta, pres, post)) == pytest.approx(0.0, abs=1e-12)
    # the second step used its own rate: 0.3 for both would give another loss
    both_03 = MAMLRL(dataclasses.replace(config, inner_lrs=(), step_loss_weights=()), seed=4)
    both_03.policy.double()
    assert float(surrogate(both_03, moved, pres, post)) != pytest.approx(
        float(surrogate(last_only, moved, pres, post))
    )


def test_inner_lrs_set_the_default_test_schedule_and_bad_values_fail():
    learner = MAMLRL(tiny_config(inner_steps=2, inner_lrs=(0.5, 0.25)), seed=0)
    assert [learner.config.test_lr(k) for k in range(4)] == [0.5, 0.25, 0.25, 0.25]
    given = MAMLRL(tiny_config(inner_steps=2, inner_lrs=(0.5, 0.25), eval_inner_lrs=(0.1,)), seed=0)
    assert given.config.test_lr(0) == 0.1
    for bad in (
        {"inner_lrs": (0.1,)},
        {"inner_lrs": (0.1, -0.1)},
        {"step_loss_weights": (1.0, 1.0, 1.0)},
        {"step_loss_weights": (1.0, -1.0)},
        {"step_loss_weights": (0.0, 0.0)},
        {"fvp_subsample": 0.5},
        {"single_step_iterations": -1},
    ):
        with pytest.raises(ConfigError):
            tiny_config(inner_steps=2, **bad)
    with pytest.raises(ConfigError, match="inner_steps >= 2"):
        tiny_config(single_step_iterations=2)


def test_single_step_curriculum_trains_one_step_then_the_multi_step_schedule():
    """Its first iterations equal a one-step model's (the schedule's first step size, the loss on
    that policy alone); from then on it equals the S-step model resumed from those parameters."""
    curriculum = tiny_config(
        inner_steps=2, inner_lrs=(0.5, 0.25), step_loss_weights=(1.0, 1.0), single_step_iterations=2
    )
    assert [curriculum.steps_at(i) for i in range(4)] == [1, 1, 2, 2]
    assert curriculum.train_lrs(1) == [0.5] and curriculum.loss_weights(1) == [1.0]
    assert curriculum.loss_weights(2) == [0.5, 0.5]
    learner = MAMLRL(curriculum, seed=3)
    one_step = MAMLRL(tiny_config(inner_lr=0.5), seed=3)
    for _ in range(2):
        a, b = learner.meta_train_step(), one_step.meta_train_step()
        assert float(a["return_post"]) == float(b["return_post"])
    for k in learner.params:
        torch.testing.assert_close(learner.params[k], one_step.params[k], rtol=0, atol=0)
    two_step = MAMLRL(dataclasses.replace(curriculum, single_step_iterations=0), seed=3)
    two_step.load_state_dict(learner.state_dict())
    a, b = learner.meta_train_step(), two_step.meta_train_step()
    assert float(a["return_post"]) == float(b["return_post"])
    for k in learner.params:
        torch.testing.assert_close(learner.params[k], two_step.params[k], rtol=0, atol=0)
    # and the step-2 update differs from another one-step update from the same parameters
    one_step.meta_train_step()
    assert any(not torch.equal(learner.params[k], one_step.params[k]) for k in learner.params)


@pytest.mark.parametrize("outer", ["trpo", "ppo"])
def test_multi_step_loss_updates(outer: str):
    """Both outer loops take the weighted loss; TRPO's step keeps the weighted KL in bound."""
    config = tiny_config(
        inner_steps=2, step_loss_weights=(1.0, 1.0), rollouts_per_task=8, max_kl=1e-3, outer=outer
    )
    learner = MAMLRL(config, seed=5)
    theta, pres, post = collected_data(learner, steps=2, seed=4)
    learner.params = {k: v.clone().requires_grad_() for k, v in theta.items()}
    if outer == "ppo":
        learner.optimizer = torch.optim.Adam(learner.params.values(), lr=1e-3)
        learner.update(pres, post)
    else:
        assert learner.update(pres, post)["accepted"]
        new = {k: v.detach() for k, v in learner.params.items()}
        assert 0 < float(mean_kl(learner, new, pres, post)) <= 1e-3 * (1 + 1e-4)
    new = {k: v.detach() for k, v in learner.params.items()}
    assert float(surrogate(learner, new, pres, post)) < float(surrogate(learner, theta, pres, post))
    metrics = MAMLRL(dataclasses.replace(config, iterations=1), seed=5).meta_train_step()
    assert torch.isfinite(torch.as_tensor(metrics["return_post"]))


def test_two_inner_steps_trpo_update_respects_the_kl_bound():
    """S = 2 takes rl.trpo's double-backward product (the structured one covers S <= 1)."""
    learner = MAMLRL(tiny_config(inner_steps=2, rollouts_per_task=8, max_kl=1e-3), seed=5)
    theta, pres, post = collected_data(learner, steps=2, seed=4)
    learner.params = {k: v.clone() for k, v in theta.items()}
    info = learner.update(pres, post)
    new = {k: v.detach() for k, v in learner.params.items()}
    kl = float(mean_kl(learner, new, pres, post))
    assert info["accepted"]
    assert 0 < kl <= 1e-3 * (1 + 1e-4)
    assert float(surrogate(learner, new, pres, post)) < float(surrogate(learner, theta, pres, post))
    metrics = MAMLRL(tiny_config(inner_steps=2), seed=5).meta_train_step()
    assert torch.isfinite(torch.as_tensor(metrics["return_post"]))


def test_evaluation_uses_its_own_rollout_count(monkeypatch):
    learner = MAMLRL(tiny_config(eval_rollouts_per_task=7), seed=0)
    seen = []
    real = learner.rollouts

    def spy(*args, **kw):
        seen.append(kw.get("rollouts"))
        return real(*args, **kw)

    monkeypatch.setattr(learner, "rollouts", spy)
    curve = learner.adaptation_curve(learner.family.tasks(2, "test", 0), 2, make_generator(0))
    assert curve.shape == (2, 3) and seen == [7, 7, 7]
    seen.clear()
    learner.meta_train_step()  # training keeps rollouts_per_task
    assert seen == [None, None]
    with pytest.raises(ConfigError, match="eval_rollouts_per_task"):
        tiny_config(eval_rollouts_per_task=0)


def test_step_budget_batch_without_early_ends_is_the_first_episode_batch():
    # goal_radius 0: no episode ends before H, so the budget of E x H steps is reached exactly when
    # every environment's first episode ends, and the 2H-step batch holds those episodes only
    learner = MAMLRL(tiny_config(family=Nav2DConfig(horizon=6, goal_radius=0.0)), seed=0)
    tasks = learner.family.tasks(3, "train", seed=5)
    theta = {k: v.detach() for k, v in learner.params.items()}
    first = learner.rollouts(tasks, theta, per_task=False, env_seed=1, generator=make_generator(0))
    budget = learner.rollouts(
        tasks, theta, per_task=False, env_seed=1, generator=make_generator(0), step_budget=True
    )
    assert budget.mask.shape == (3, 12, 4) and not budget.mask[:, 6:].any()
    for name in ("obs", "actions", "mask", "dist", "logp"):
        assert torch.equal(getattr(budget, name)[:, :6], getattr(first, name)), name
    torch.testing.assert_close(budget.advantages[:, :6], first.advantages)
    torch.testing.assert_close(budget.returns, first.returns)


def test_step_budget_batch_keeps_every_episode_completed_within_the_budget(monkeypatch):
    import adaptrl.algos.maml_rl as module
    from adaptrl.rl.rollout import step_budget_mask

    learner = MAMLRL(tiny_config(family=Nav2DConfig(horizon=6, goal_radius=0.3)), seed=0)
    collected, real_collect = [], module.collect

    def spy(*args, **kw):
        out = real_collect(*args, **kw)
        collected.append(out[0])
        return out

    monkeypatch.setattr(module, "collect", spy)
    tasks = learner.family.tasks(3, "train", seed=5)
    theta = {k: v.detach() for k, v in learner.params.items()}
    batch = learner.rollouts(tasks, theta, per_task=False, env_seed=1, step_budget=True)
    ro = collected[0]
    kept = step_budget_mask(ro.done, 3, 4 * 6)
    ends = (ro.done & kept).reshape(12, 3, 4).sum((0, 2))
    assert (ends > 4).any(), "the goal radius should end some episodes early"
    assert (batch.mask.sum((1, 2)) >= 24).all()  # at least E x H kept steps per task
    assert torch.equal(batch.mask, kept.reshape(12, 3, 4).permute(1, 0, 2).float())
    expected = (ro.rewards * kept).reshape(12, 3, 4).sum((0, 2)) / ends
    torch.testing.assert_close(batch.returns, expected)


def test_step_budget_batches_in_training_and_evaluation(monkeypatch):
    learner = MAMLRL(
        tiny_config(batch="steps", eval_batch="steps", eval_rollouts_per_task=5), seed=0
    )
    seen = []
    real = learner.rollouts

    def spy(*args, **kw):
        seen.append((kw.get("rollouts"), kw.get("step_budget")))
        return real(*args, **kw)

    monkeypatch.setattr(learner, "rollouts", spy)
    metrics = learner.meta_train_step()
    assert seen == [(None, True), (None, True)]
    assert torch.isfinite(torch.as_tensor(metrics["return_post"]))
    seen.clear()
    curve = learner.adaptation_curve(learner.family.tasks(2, "test", 0), 1, make_generator(0))
    assert curve.shape == (2, 2) and seen == [(5, True), (5, True)]
    for name in ("batch", "eval_batch"):
        with pytest.raises(ConfigError, match=name):
            tiny_config(**{name: "rollouts"})
