"""meta-q (context-conditioned Q-learning): the trial's replay rows, bit-identical resume with the
replay buffer in the checkpoint, clear errors, and learning on bandits beside Gittins."""

from __future__ import annotations

import pytest
import torch

from _bandits import train_and_score
from _resume import full_and_resumed
from adaptrl.algos.meta_q import MetaQ, MetaQConfig, epsilon_at, trial_contexts
from adaptrl.core.errors import ConfigError
from adaptrl.envs.bandit import BanditConfig
from adaptrl.envs.gridworld import GridworldConfig
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.eval import evaluate

SMALL_GRID = GridworldConfig(height=3, width=3, horizon=4, n=2, step_reward=-0.1)


def test_collected_trials_fill_the_replay_rows_in_order():
    cfg = MetaQConfig(family=SMALL_GRID, trials=3, updates=1, batch=4, buffer_trials=2)
    learner = MetaQ(cfg, seed=0)
    tasks = learner.family.tasks(3, "train", seed=0)
    trial, returns = learner.collect(tasks)  # iteration 0: epsilon 1, uniform actions
    T = learner.steps
    assert T == 8 and trial["obs"].shape == (3, T) and returns.shape == (3, 2)
    assert trial["episode"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert trial["last"][0].tolist() == [False] * 7 + [True]
    # The trial's next decision state crosses the episode boundary to the reset start cell.
    assert trial["next_obs"][:, 3].tolist() == [learner.family.initial_state] * 3
    assert torch.equal(trial["next_obs"][:, :3], trial["obs"][:, 1:4])
    # Per-episode returns are the rewards summed per episode.
    assert torch.allclose(returns, trial["reward"].reshape(3, 2, 4).sum(-1))
    learner.replay.add(trial)
    assert learner.replay.size.tolist() == [T] * 3


def test_epsilon_decays_linearly_then_stays():
    cfg = MetaQConfig(iterations=100, epsilon=1.0, epsilon_final=0.1, epsilon_decay=0.5)
    assert [epsilon_at(cfg, i) for i in (0, 25, 50, 99)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


@pytest.mark.parametrize(
    "family", [SMALL_GRID, Nav2DConfig(horizon=5, n=2)], ids=["double-dqn", "td3"]
)
def test_resume_is_bit_identical_with_the_replay_in_the_checkpoint(tmp_path, family):
    cfg = MetaQConfig(
        family=family,
        iterations=4,
        trials=2,
        updates=2,
        batch=3,
        buffer_trials=2,
        hidden=(16,),
        context_size=8,
    )
    full, resumed = full_and_resumed(tmp_path, cfg, kill_at=3)
    for a, b in zip(
        full.state_dict()["net"].values(), resumed.state_dict()["net"].values(), strict=True
    ):
        assert torch.equal(a, b)
    assert torch.equal(full.replay.data["obs"], resumed.replay.data["obs"])


def test_errors_are_clear():
    with pytest.raises(ConfigError, match=r"--context 9 is longer than a trial \(8 steps"):
        MetaQ(MetaQConfig(family=SMALL_GRID, context=9))
    with pytest.raises(ConfigError, match="even --context-size"):
        MetaQ(MetaQConfig(family=SMALL_GRID, encoder="set", context_size=7))
    with pytest.raises(MemoryError, match="lower --buffer-trials"):
        MetaQ(MetaQConfig(family=BanditConfig(k=5, n=10), trials=10**4, buffer_trials=10**6))


def test_trial_samples_read_the_contexts_a_window_encoder_reads():
    """td_samples="trials": one GRU pass per stored trial gives, at every step, exactly the
    context that encoding the left-padded window of the transitions before it gives."""
    cfg = MetaQConfig(family=SMALL_GRID, trials=3, batch=5, hidden=(8,), context_size=6)
    learner = MetaQ(cfg, seed=0)
    trial = learner.collect(learner.family.tasks(3, "train", seed=0))[0]
    feats = learner.features(trial["obs"], trial["action"], trial["reward"], trial["final_obs"])
    T = learner.steps
    states = trial_contexts(learner.net.encoder, feats)
    assert states.shape == (3, T + 1, 6) and not states[:, 0].any()
    for t in range(T + 1):
        window = torch.cat([torch.zeros(3, T - t, feats.shape[-1]), feats[:, :t]], dim=1)
        mask = torch.arange(T).expand(3, T) >= T - t
        torch.testing.assert_close(states[:, t], learner.net.context(window, mask))


def test_trial_samples_draw_steps_of_stored_trials():
    cfg = MetaQConfig(
        family=SMALL_GRID,
        trials=3,
        batch=20,
        buffer_trials=2,
        hidden=(8,),
        context_size=6,
        td_samples="trials",
    )
    learner = MetaQ(cfg, seed=0)
    learner.replay.add(learner.collect(learner.family.tasks(3, "train", seed=0))[0])
    now, ctx, ctx_next, t_next = learner.trial_samples()
    assert ctx.shape == ctx_next.shape == t_next.shape == (3, 20, 6)
    assert now["obs"].shape == (3, 20)
    # ceil(20 / 8) = 3 trials per row; one is held, so every sample is a step of it
    held = learner.replay.data
    T = learner.steps
    for r in range(3):
        step = (now["progress"][r] * T).round().long()
        assert torch.equal(now["action"][r], held["action"][r, step])
    assert len(set(now["progress"].flatten().tolist())) > 4  # steps across the trial
    learner.update()  # and a TD step runs on them
    with pytest.raises(ConfigError, match="--td-samples trials needs a GRU over the whole trial"):
        MetaQ(MetaQConfig(family=SMALL_GRID, td_samples="trials", context=4))


@pytest.mark.parametrize("td_samples", ["windows", "trials"])
def test_meta_q_learns_to_explore_bandits(td_samples):
    torch.manual_seed(0)
    cfg = MetaQConfig(
        family=BanditConfig(k=5, n=10),
        iterations=120,
        trials=32,
        updates=8,
        batch=16,
        td_samples=td_samples,
    )
    learner = MetaQ(cfg, seed=0)
    meta_q, gittins, random = train_and_score(learner)
    # Random scores 5.0 in expectation and Gittins ~6.8: ask for most of that gap.
    assert meta_q > random + 0.6 * (gittins - random), (meta_q, gittins, random)


def test_adapt_returns_the_context_after_the_context_episodes(tmp_path):
    from adaptrl.algos.trainer import new_run, train_run

    cfg = MetaQConfig(
        family=SMALL_GRID, iterations=1, trials=2, updates=1, batch=2, hidden=(8,), context_size=4
    )
    learner = train_run(new_run(tmp_path / "run", cfg).path, show_progress=False)
    tasks = learner.family.tasks(3, "test", seed=0)
    empty = learner.adapt(tasks, 0, torch.Generator().manual_seed(0))["context"]
    assert torch.equal(empty, torch.zeros(3, 4))  # a GRU over no transitions
    one = learner.adapt(tasks, 1, torch.Generator().manual_seed(0))["context"]
    assert one.shape == (3, 4) and bool((one != 0).any())


def test_a_nan_td_loss_stops_training_with_the_checkpoints_kept(tmp_path, monkeypatch):
    from adaptrl.algos import meta_q
    from adaptrl.algos.trainer import new_run, train_run
    from adaptrl.core.errors import TrainingError

    cfg = MetaQConfig(
        family=SMALL_GRID, iterations=4, trials=2, updates=1, batch=2, hidden=(8,), context_size=4
    )
    run = new_run(tmp_path / "run", cfg, checkpoint_every=2).path
    real = meta_q.td_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 2 else loss

    monkeypatch.setattr(meta_q, "td_loss", poisoned)
    with pytest.raises(TrainingError, match=r"td_loss.* at iteration 3"):
        train_run(run, show_progress=False)
    assert [p.name for p in sorted((run / "checkpoints").glob("*.json"))] == [
        "ckpt-000000000002.json"
    ]


def _tiny_trained(tmp_path, family, **kw):
    from adaptrl.algos.trainer import new_run, train_run

    cfg = MetaQConfig(
        family=family,
        iterations=3,
        trials=2,
        updates=2,
        batch=3,
        hidden=(16,),
        context_size=8,
        propensity_bank=20,
        **kw,
    )
    return train_run(new_run(tmp_path / "run", cfg).path, show_progress=False)


@pytest.mark.parametrize(
    "family", [SMALL_GRID, Nav2DConfig(horizon=4, n=2)], ids=["double-dqn", "td3"]
)
def test_propensity_step_equals_a_per_task_autograd_reference(tmp_path, family):
    """One vmapped adaptation step equals, task by task, plain autograd on a copy of the heads
    with the loss written out (new-task TD loss + propensity-weighted bank TD loss (+ actor
    loss), proximal term zero at the start) and Adam's first step."""
    import copy

    from adaptrl.rl.propensity import propensity_weights

    learner = _tiny_trained(tmp_path, family, adapt_steps=1, adapt_lr=0.1)
    net, cfg = learner.net, learner.config
    B, T = 3, learner.horizon
    S = net.state(
        torch.zeros(1, *learner.obs_field()[0], dtype=learner.obs_field()[1]),
        torch.zeros(1),
        torch.zeros(1, cfg.context_size),
    ).shape[-1]
    gen = torch.Generator().manual_seed(0)
    state = torch.randn(B, T + 1, S, generator=gen)
    if net.discrete:
        action = torch.randint(net.spec.dim, (B, T), generator=gen)
    else:
        action = torch.rand(B, T, net.spec.dim, generator=gen) * 2 - 1
    reward = torch.randn(B, T, generator=gen)
    adapted = learner.propensity_adapt(state, action, reward)

    bank = learner.adaptation_bank()
    ctx = slice(S - cfg.context_size, None)
    beta, _ = propensity_weights(
        state[:, :-1, ctx], bank["state"][:, ctx], l2=cfg.propensity_l2, clip=cfg.propensity_clip
    )
    for b in range(B):
        heads = {n: copy.deepcopy(m) for n, m in net.heads().items()}
        with torch.no_grad():
            y = net.bootstrap_target(
                reward[b], torch.zeros(T, dtype=torch.bool), state[b, 1:], cfg.gamma
            )

        def td(s, a, yy, w, heads=heads):
            if net.discrete:
                q = heads["q"](s).gather(-1, a.unsqueeze(-1)).squeeze(-1)
                return (0.5 * w * (q - yy) ** 2).mean()
            total = 0.0
            for n in ("q1", "q2"):
                q = heads[n](torch.cat([s, a], -1)).squeeze(-1)
                total = total + (0.5 * w * (q - yy) ** 2).mean()
            pi = torch.tanh(heads["actor"](s))
            q_pi = torch.func.functional_call(
                heads["q1"],
                {k: v.detach() for k, v in heads["q1"].named_parameters()},
                (torch.cat([s, pi], -1),),
            ).squeeze(-1)
            return total - (w * q_pi).mean()

        loss = td(state[b, :-1], action[b], y, 1.0) + td(
            bank["state"], bank["action"], bank["y"], beta[b]
        )
        params = [p for m in heads.values() for p in m.parameters()]
        grads = torch.autograd.grad(loss, params)
        # Adam's first step: m / sqrt(v) = g / |g| after bias correction
        expected = [p - 0.1 * g / (g.abs() + 1e-8) for p, g in zip(params, grads, strict=True)]
        got = [adapted[n][k][b] for n, m in heads.items() for k, _ in m.named_parameters()]
        for e, g in zip(expected, got, strict=True):
            torch.testing.assert_close(g, e.detach(), rtol=1e-5, atol=1e-6)


def test_propensity_is_scored_beside_the_context_alone_and_survives_export(tmp_path):
    from adaptrl.algos.trainer import export_model, load_trained

    learner = _tiny_trained(tmp_path, SMALL_GRID)
    assert list(learner.trial_agents()) == ["meta-q", "meta-q+propensity"]
    export_model(tmp_path / "run", tmp_path / "small")
    small = load_trained(tmp_path / "small")
    assert small.replay.size.sum() == 0  # exported without the replay ...
    for k, v in learner.adaptation_bank().items():  # ... but with the bank it adapts with
        assert torch.equal(small.adaptation_bank()[k], v)
    scores = []
    for lr in (learner, small):
        res = evaluate(
            lr.family,
            [(n, lambda f, m=m: m()) for n, m in lr.trial_agents().items()],
            num_tasks=8,
            show_progress=False,
        )
        scores.append([a.returns for a in res.agents])
        assert [a.name for a in res.agents] == ["meta-q", "meta-q+propensity"]
    for a, b in zip(*scores, strict=True):
        assert torch.equal(a, b)


def test_adapting_changes_the_policy_only_after_the_context_episodes(tmp_path):
    learner = _tiny_trained(tmp_path, SMALL_GRID, adapt_lr=5.0, adapt_steps=5)
    plain, adapting = learner.trial_agent("none"), learner.trial_agent("propensity")
    env = learner.family.make_env(4, "cpu")
    tasks = learner.family.tasks(4, "test", seed=0)
    env.set_tasks(tasks)
    for agent in (plain, adapting):
        agent.begin_trial(env, tasks, torch.Generator().manual_seed(0))
    obs = env.reset(seed=0)
    first, after = [], []
    for t in range(learner.steps):
        a, b = plain.act(obs), adapting.act(obs)
        (first if t < learner.horizon else after).append(bool(torch.equal(a, b)))
        step = env.step(a)  # both see the same transitions
        plain.observe(obs, a, step)
        adapting.observe(obs, a, step)
        obs = step.obs
    assert all(first) and adapting.head is not None
    assert not all(after)  # a large step moved the heads


def test_propensity_needs_an_episode_after_adapting():
    with pytest.raises(ConfigError, match=r"--adapt-episodes 2 leaves no episode.* at most 1"):
        MetaQ(MetaQConfig(family=SMALL_GRID, adaptation="propensity", adapt_episodes=2))
    learner = MetaQ(MetaQConfig(family=SMALL_GRID, adapt_episodes=2))
    assert list(learner.trial_agents()) == ["meta-q"]
    with pytest.raises(ConfigError, match="no meta-training transitions"):
        MetaQ(MetaQConfig(family=SMALL_GRID)).adaptation_bank()


def test_functional_adam_matches_torch_adam():
    from adaptrl.algos.meta_q import adam_moments, adam_step

    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, generator=gen)
    ref = w.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.01)
    params = {"h": {"w": w}}
    moments = adam_moments(params)
    for t in range(1, 6):
        g = torch.randn(3, 4, generator=gen)
        ref.grad = g.clone()
        opt.step()
        params, moments = adam_step(params, {"h": {"w": g}}, moments, t, 0.01)
    torch.testing.assert_close(params["h"]["w"], ref.detach(), rtol=1e-6, atol=1e-7)
