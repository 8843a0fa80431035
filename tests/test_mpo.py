"""MPO (Distral prior): the regulariser and its closed forms, the distilled prior as the average
task policy, two columns, the batched inner loop, errors, determinism, resume, the command line,
and it learns."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from _resume import full_and_resumed
from adaptrl.algos.mpo import (
    MPO,
    MPOConfig,
    distill_loss,
    distral_coefficients,
    regularised_pg_loss,
    regulariser,
    two_column_logits,
)
from adaptrl.algos.trainer import read_run
from adaptrl.baselines.mpo import MPO_BASELINES, baseline_config
from adaptrl.bench.mpo import episodes_to_reach, share_of_scratch
from adaptrl.cli.main import main
from adaptrl.core.checkpoint import load_checkpoint
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.envs.gridworld import GridworldConfig
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.eval.curves import load_curve_report, tick_step
from adaptrl.nn import heads
from adaptrl.rl.optim import adam_init, adam_step

CAT = heads.DistSpec("categorical", 4)
GAUSS = heads.DistSpec("gaussian", 2)


def tiny(**kw) -> MPOConfig:
    base = dict(
        family=GridworldConfig(height=5, width=5, horizon=8),
        iterations=3,
        tasks=3,
        episodes=4,
        inner_updates=2,
        test_updates=2,
        hidden=(8,),
        distill_steps=2,
    )
    return MPOConfig(**{**base, **kw})


def random_dists(spec: heads.DistSpec, *shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, spec.param_dim, generator=gen, dtype=torch.float64)


# --- the regulariser -------------------------------------------------------------------------
def test_distral_coefficients():
    alpha, beta = distral_coefficients(0.3, 0.1)
    assert alpha == pytest.approx(0.75) and beta == pytest.approx(2.5)
    assert distral_coefficients(0.5, 0.0) == (1.0, 2.0)
    with pytest.raises(ConfigError, match="kl_weight \\+ entropy_weight > 0"):
        distral_coefficients(0.0, 0.0)


@pytest.mark.parametrize("spec", [CAT, GAUSS], ids=lambda s: s.kind)
def test_kl_term_vanishes_when_the_task_policy_equals_the_prior(spec):
    prior = random_dists(spec, 5)
    task = prior.clone().requires_grad_()
    reg = regulariser(spec, task, prior, kl_weight=0.7, entropy_weight=0.0)
    assert torch.equal(reg, torch.zeros(5, dtype=torch.float64))
    (g,) = torch.autograd.grad(reg.sum(), task)  # a minimum: no pull at equality either
    assert g.abs().max() < 1e-12
    with_entropy = regulariser(spec, prior, prior, kl_weight=0.7, entropy_weight=0.2)
    assert torch.equal(with_entropy, 0.2 * heads.entropy(spec, prior))


def test_learner_task_policies_start_as_the_prior_so_their_kl_is_zero():
    learner = MPO(tiny(), seed=0)
    tasks = learner.family.tasks(3, "train", 0)
    batch = learner.collect(tasks, learner.start_params(3), 0.5, 0, make_generator(0))
    # equal up to rounding: the task policies run batched (vmap), the prior shared
    torch.testing.assert_close(batch.dist, batch.prior, atol=1e-7, rtol=0)
    assert heads.kl(learner.spec, batch.dist, batch.prior).abs().max() < 1e-9


def test_regulariser_is_the_expectation_of_distrals_log_terms():
    """``sum_a pi_i(a) ((alpha/beta) log pi_0(a) - (1/beta) log pi_i(a))`` in closed form."""
    c_kl, c_ent = 0.3, 0.1
    alpha, beta = distral_coefficients(c_kl, c_ent)
    task, prior = random_dists(CAT, 6, seed=1), random_dists(CAT, 6, seed=2)
    logp_i, logp_0 = task.log_softmax(-1), prior.log_softmax(-1)
    expected = (logp_i.exp() * (alpha / beta * logp_0 - logp_i / beta)).sum(-1)
    torch.testing.assert_close(regulariser(CAT, task, prior, c_kl, c_ent), expected)


def test_gaussian_regulariser_matches_sampled_log_ratios():
    c_kl, c_ent = 0.4, 0.2
    alpha, beta = distral_coefficients(c_kl, c_ent)
    task, prior = random_dists(GAUSS, 1, seed=3), random_dists(GAUSS, 1, seed=4)
    a = heads.sample(GAUSS, task.expand(400_000, -1), torch.Generator().manual_seed(0))
    sampled = alpha / beta * heads.log_prob(GAUSS, prior, a) - heads.log_prob(GAUSS, task, a) / beta
    closed = regulariser(GAUSS, task, prior, c_kl, c_ent)
    assert abs(sampled.mean() - closed[0]) < 4 * sampled.std() / math.sqrt(len(a))


def test_regularised_pg_loss_is_vpg_plus_the_regulariser():
    task = random_dists(CAT, 3, 5, seed=5).requires_grad_()
    prior = random_dists(CAT, 3, 5, seed=6)
    actions = torch.randint(4, (3, 5), generator=torch.Generator().manual_seed(0))
    adv = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.ones(3, 5, dtype=torch.float64)
    mask[2, 3:] = 0
    loss = regularised_pg_loss(CAT, task, prior, actions, adv, mask, 0.3, 0.1)
    logp = heads.log_prob(CAT, task, actions)
    reg = 0.1 * heads.entropy(CAT, task) - 0.3 * heads.kl(CAT, task, prior)
    expected = -((logp * adv + reg) * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, expected)


# --- distillation: the prior becomes the average task policy -----------------------------------
def fit_prior(spec: heads.DistSpec, tasks: torch.Tensor) -> torch.Tensor:
    """The prior's distribution parameters minimising :func:`distill_loss` over ``tasks``
    (``[n, P]``, one state), fitted by L-BFGS from zero."""
    prior = torch.zeros(spec.param_dim, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [prior],
        max_iter=1000,
        tolerance_grad=1e-13,
        tolerance_change=0,
        line_search_fn="strong_wolfe",
    )
    mask = torch.ones(len(tasks), dtype=torch.float64)

    def closure():
        opt.zero_grad()
        loss = distill_loss(spec, tasks, prior.expand_as(tasks), mask)
        loss.backward()
        return loss

    opt.step(closure)
    return prior.detach()


def test_distilled_categorical_prior_is_the_mixture_of_the_task_policies():
    tasks = random_dists(CAT, 3, seed=7)
    prior = fit_prior(CAT, tasks)
    torch.testing.assert_close(prior.softmax(-1), tasks.softmax(-1).mean(0), atol=1e-7, rtol=0)


def test_distilled_gaussian_prior_matches_the_moments_of_the_task_policies():
    means = torch.tensor([[0.5, -1.0], [-0.3, 2.0], [1.0, 0.0]], dtype=torch.float64)
    stds = torch.tensor([[0.5, 1.0], [1.5, 0.2], [1.0, 1.0]], dtype=torch.float64)
    prior = fit_prior(GAUSS, torch.cat([means, stds.log()], -1))
    mean, std = prior[:2], prior[2:].exp()
    torch.testing.assert_close(mean, means.mean(0), atol=1e-6, rtol=0)
    variance = stds.square().mean(0) + means.var(0, unbiased=False)
    torch.testing.assert_close(std.square(), variance, atol=1e-6, rtol=0)


def test_distillation_lowers_the_kl_to_the_task_policies():
    metrics = MPO(tiny(distill_steps=5), seed=0).meta_train_step()
    assert metrics["kl_after_distill"] < metrics["kl_to_prior"]


@pytest.mark.parametrize("where", ["start", "trained", "both"])
def test_distill_data_holds_the_named_states(where):
    learner = MPO(tiny(distill_on=where), seed=0)
    tasks = learner.family.tasks(3, "train", 0)
    params, _, first, last = learner.train_tasks(tasks, 2, 0.1, [1, 2, 3], make_generator(0))
    obs, target, mask = learner.distill_data(params, first, last)
    both = torch.cat([first.mask, last.mask], 2)
    assert torch.equal(mask, {"start": first.mask, "trained": last.mask, "both": both}[where])
    E = learner.config.episodes
    assert obs.shape[2] == (2 * E if where == "both" else E)
    if where != "start":  # the trained policies' own distributions on their episodes
        assert torch.equal(target[:, :, -E:], last.dist)
    if where != "trained":  # the trained policies evaluated on the first episodes' states
        expected = torch.func.vmap(learner.task_dist)(params, first.obs, first.prior)
        torch.testing.assert_close(target[:, :, :E], expected)
        assert torch.equal(obs[:, :, :E], first.obs)


# --- two columns ---------------------------------------------------------------------------------
def test_two_column_policy_is_the_tempered_prior_times_the_task_column():
    h, f = random_dists(CAT, 5, seed=8), random_dists(CAT, 5, seed=9)
    alpha, beta = distral_coefficients(0.3, 0.1)
    logp = two_column_logits(h, f, alpha, beta).log_softmax(-1)  # log pi_i(a) for every a
    rest = logp - alpha * h.log_softmax(-1) - beta * f  # log pi_i - alpha log pi_0 - beta f
    torch.testing.assert_close(rest, rest[:, :1].expand_as(rest))  # constant over actions
    two = MPO(tiny(two_column=True), seed=0)
    tasks = two.family.tasks(3, "train", 0)
    batch = two.collect(tasks, two.start_params(3), 0.3, 0, make_generator(0))
    column = torch.func.functional_call(two.net, two.column_init, (batch.obs,))
    torch.testing.assert_close(batch.dist, two.alpha * batch.prior + two.beta * column)


def test_bad_options_are_clear_errors():
    with pytest.raises(ConfigError, match="two_column needs kl_weight"):
        tiny(two_column=True, kl_weight=0.0, entropy_weight=0.0)
    with pytest.raises(ConfigError, match="no task columns"):
        tiny(two_column=True, outer="multitask")
    with pytest.raises(ConfigError, match="two_column needs discrete actions"):
        MPO(tiny(two_column=True, family=Nav2DConfig(horizon=5)), seed=0)
    with pytest.raises(ConfigError, match="kl_weight must be >= 0"):
        tiny(kl_weight=-0.1)
    learner = MPO(tiny(), seed=0)
    with pytest.raises(ConfigError, match="steps must be >= 0"):
        learner.adaptation_curve(learner.family.tasks(2, "test", 0), -1, make_generator(0))
    other = MPO(tiny(hidden=(8, 8)), seed=0).state_dict()
    with pytest.raises(ConfigError, match="do not match"):
        learner.load_state_dict(other)


# --- the batched inner loop --------------------------------------------------------------------
def test_functional_adam_is_one_torch_adam_per_task():
    gen = torch.Generator().manual_seed(0)
    start = {"w": torch.randn(3, 4, 2, generator=gen), "b": torch.randn(3, 2, generator=gen)}
    grads = [{k: torch.randn(v.shape, generator=gen) for k, v in start.items()} for _ in range(4)]
    params, state = start, adam_init(start)
    for g in grads:
        params, state = adam_step(params, g, state, lr=0.05)
    for task in range(3):
        leaves = [start[k][task].clone().requires_grad_() for k in ("w", "b")]
        opt = torch.optim.Adam(leaves, lr=0.05)
        for g in grads:
            for leaf, k in zip(leaves, ("w", "b"), strict=True):
                leaf.grad = g[k][task].clone()
            opt.step()
        for leaf, k in zip(leaves, ("w", "b"), strict=True):
            torch.testing.assert_close(params[k][task], leaf.detach())


def test_inner_update_of_all_tasks_equals_each_task_alone():
    learner = MPO(tiny(), seed=0)
    tasks = learner.family.tasks(3, "train", 0)
    params = learner.start_params(3)
    params = {k: v + 0.1 * torch.randn_like(v) for k, v in params.items()}  # tasks differ
    batch = learner.collect(tasks, params, 0.2, 0, make_generator(0))
    together, _ = learner.inner_update(params, adam_init(params), batch, 0.2)
    for g in range(3):
        one = {k: v[g : g + 1] for k, v in params.items()}
        part = dataclasses.replace(
            batch, **{f.name: getattr(batch, f.name)[g : g + 1] for f in dataclasses.fields(batch)}
        )
        alone, _ = learner.inner_update(one, adam_init(one), part, 0.2)
        for k in params:
            torch.testing.assert_close(together[k][g], alone[k][0])


def test_adaptation_curve_and_adapt_shapes_and_the_prior_stays_frozen():
    learner = MPO(tiny(two_column=True), seed=0)
    prior = {k: v.detach().clone() for k, v in learner.prior.items()}
    tasks = learner.family.tasks(5, "test", 0)
    curve = learner.adaptation_curve(tasks, 3, make_generator(0))
    assert curve.shape == (5, 4)
    adapted = learner.adapt(tasks, 1, make_generator(0))
    assert set(adapted) == {f"column.{k}" for k in prior}
    assert all(v.shape == (5, *prior[k.removeprefix("column.")].shape) for k, v in adapted.items())
    assert all(torch.equal(learner.prior[k], prior[k]) for k in prior)
    again = learner.adaptation_curve(tasks, 3, make_generator(0))
    assert torch.equal(curve, again)


def test_nav2d_gaussian_policy_trains_and_adapts():
    learner = MPO(tiny(family=Nav2DConfig(horizon=6)), seed=0)
    metrics = learner.meta_train_step()
    assert set(metrics) >= {"return_pre", "return_post", "kl_to_prior", "prior_entropy"}
    curve = learner.adaptation_curve(learner.family.tasks(2, "test", 0), 2, make_generator(0))
    assert curve.shape == (2, 3) and torch.isfinite(curve).all() and (curve < 0).all()


# --- baselines ---------------------------------------------------------------------------------
def test_baselines_are_configured_variants():
    config = tiny(two_column=True, kl_weight=0.2)
    scratch, pretrained = (baseline_config(n, config) for n in ("scratch", "pretrained"))
    assert scratch == dataclasses.replace(
        config, iterations=0, test_kl_weight=0.0, two_column=False
    )
    assert pretrained == dataclasses.replace(
        config, outer="multitask", test_kl_weight=0.0, two_column=False
    )
    assert not MPO_BASELINES["scratch"].trained and MPO_BASELINES["pretrained"].trained
    with pytest.raises(ConfigError, match="unknown mpo baseline"):
        baseline_config("oracle", config)
    learner = MPO(pretrained, seed=0)
    before = {k: v.detach().clone() for k, v in learner.prior.items()}
    metrics = learner.meta_train_step()
    assert set(metrics) == {"return_pre", "return_post", "entropy"}
    assert not all(torch.equal(before[k], learner.prior[k]) for k in before)


# --- determinism, resume, command line ---------------------------------------------------------
def test_same_seed_same_result_and_another_seed_differs():
    def run(seed: int) -> dict[str, torch.Tensor]:
        learner = MPO(tiny(), seed=seed)
        for _ in range(2):
            learner.meta_train_step()
        return learner.state_dict()["prior"]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("outer", ["distill", "multitask"])
def test_resume_after_a_kill_is_bit_identical(tmp_path, outer):
    full, resumed = full_and_resumed(tmp_path, tiny(iterations=4, outer=outer), kill_at=3)
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a["prior"][k], b["prior"][k]) for k in a["prior"])
    assert a["generator"] == b["generator"] and a["iteration"] == b["iteration"] == 4


def test_cli_train_eval_adapt(tmp_path):
    out = tmp_path / "run"
    flags = ["--height", "5", "--width", "5", "--horizon", "6", "--tasks", "2", "--episodes", "2"]
    args = ["train", "mpo", "--iterations", "2", "--inner-updates", "1", "--hidden", "8", *flags]
    assert main([*args, "--test-updates", "2", "--out", str(out)]) == 0
    assert read_run(out)[1].config.family.layout == "four-rooms"
    assert main(["eval", str(out), "--num-tasks", "3"]) == 0
    curve = load_curve_report(out / "eval" / "results.json").curves[0].values
    assert curve.shape == (3, 3)  # the run's test_updates: 0, 1, 2 updates
    assert main(["adapt", str(out), "--num-tasks", "2", "--steps", "1"]) == 0
    tensors, meta = load_checkpoint(out / "adapted")
    assert tensors["params.head.linear.weight"].shape == (2, 5, 8) and meta["algo"] == "mpo"
    assert main(["train", "--resume", str(out)]) == 0


# --- it learns -----------------------------------------------------------------------------------
def test_it_learns_a_prior_that_speeds_up_new_tasks():
    """Meta-trained on a 7x7 four-room grid's goals, the prior makes held-out goals' policies
    better after 12 updates than the same updates from a random start (scratch: about 2.3 here),
    and far above a random policy's return (scratch before its first update: about 0.25)."""
    config = MPOConfig(
        family=GridworldConfig(height=7, width=7, horizon=16, layout="four-rooms"),
        iterations=20,
        tasks=8,
        episodes=8,
        inner_updates=10,
        outer_lr=0.01,
        hidden=(32,),
    )
    tasks = MPO(config).family.tasks(24, "test", 3)
    mpo = MPO(config, seed=0)
    for _ in range(config.iterations):
        mpo.meta_train_step()
    scratch = MPO(baseline_config("scratch", config), seed=0)
    ours = mpo.adaptation_curve(tasks, 12, make_generator(0)).mean(0)
    theirs = scratch.adaptation_curve(tasks, 12, make_generator(0)).mean(0)
    assert ours[-1] > 1.5 * theirs[-1] and ours[-1] > theirs[-1] + 1.5, (ours, theirs)
    assert ours[-1] > 10 * theirs[0], (ours, theirs)


# --- the bench -------------------------------------------------------------------------------------
def test_episodes_to_reach_and_share_of_scratch():
    curve = torch.tensor([0.0, 1.0, 3.0, 2.0, 4.0])
    assert episodes_to_reach(curve, 2.5) == 3  # reached at update 2: three batches run
    assert episodes_to_reach(curve, 5.0) is None
    curves = {
        "scratch": torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0, 6.0]]),
        "mpo": torch.tensor([[1.0, 5.0, 5.0, 5.0, 5.0], [1.0, 5.0, 6.0, 6.0, 6.0]]),
    }
    reach = share_of_scratch(curves, episodes=8)
    assert reach["scratch_final"] == 5.0 and reach["scratch_episodes"] == 40
    assert reach["learners"]["mpo"] == {"episodes": 16, "share": 0.4}
    assert reach["learners"]["scratch"] == {"episodes": 40, "share": 1.0}


def test_quick_bench_writes_curves_and_the_target(tmp_path):
    out = tmp_path / "out"
    args = ["bench", "mpo-curves", "--config", "gridworld-four-rooms", "--quick"]
    assert main([*args, "--out", str(out)]) == 0
    report = load_curve_report(out / "results.json")
    assert [c.label for c in report.curves] == ["mpo", "scratch", "pretrained"]
    assert report.x == [0, 1, 2, 3] and report.meta["family"] == "gridworld-goal-v0"
    assert (
        "Target (MPO reaches scratch's final return within 20%" in (out / "report.md").read_text()
    )
    assert (out / "models" / "mpo-s0" / "config.yaml").is_file()
    assert main(["eval", str(out / "models" / "mpo-s0"), "--num-tasks", "2", "--steps", "1"]) == 0


def test_long_curves_get_round_tick_steps():
    assert [tick_step(n) for n in (4, 20, 21, 51, 101, 1001)] == [1, 1, 2, 5, 10, 100]
