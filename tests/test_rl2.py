"""RL²: trial bookkeeping, whole-trial GAE, memory semantics, PPO/TRPO updates, determinism,
checkpoints, and a quick "it learns" on bandits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from adaptrl.algos.rl2 import (
    RL2,
    RL2Config,
    collect_trials,
    episode_index,
    episode_returns,
    episode_successes,
    linear_schedule,
    next_episode_step,
    trial_advantages,
    trial_masks,
)
from adaptrl.core.checkpoint import load_state, save_state
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.envs import make_family
from adaptrl.envs.bandit import BanditConfig
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.envs.tabular import TabularMDPConfig
from adaptrl.eval.protocol import evaluate, run_trials
from adaptrl.nn import heads
from adaptrl.nn.recurrent import RecurrentActorCritic

TINY = RL2Config(family=BanditConfig(k=3, n=6), trials=16, hidden=16, epochs=2, minibatches=2)


def test_episode_index_and_trial_masks():
    done = torch.tensor([[0, 1], [1, 0], [0, 1], [1, 1], [1, 0]], dtype=torch.bool)
    assert episode_index(done).tolist() == [[0, 0], [0, 1], [1, 1], [1, 2], [2, 3]]
    valid, end = trial_masks(done, episodes=2)
    assert valid.tolist() == [[1, 1], [1, 1], [1, 1], [1, 0], [0, 0]]
    # column 0 ends its trial at step 3 (end of episode 2); column 1 at step 2
    assert end.tolist() == [[0, 0], [0, 0], [0, 1], [1, 0], [0, 0]]
    # a trial still running at the last collected step ends there
    _, end = trial_masks(torch.zeros(3, 1, dtype=torch.bool), episodes=2)
    assert end[:, 0].tolist() == [False, False, True]


def test_trial_advantages_flow_across_episode_boundaries():
    # Two one-step episodes (every step is done), one trial: reward only in the second episode.
    rewards = torch.tensor([[0.0], [1.0]])
    values = torch.tensor([[0.2], [0.5]])
    done = torch.ones(2, 1, dtype=torch.bool)
    valid, end = trial_masks(done, episodes=2)
    adv, ret = trial_advantages(rewards, values, valid, end, gamma=0.9, lam=0.5)
    d1 = 1.0 - 0.5  # last step: no bootstrap after the trial end
    d0 = 0.0 + 0.9 * 0.5 - 0.2  # bootstraps from the next *episode's* value
    torch.testing.assert_close(adv[:, 0], torch.tensor([d0 + 0.9 * 0.5 * d1, d1]))
    torch.testing.assert_close(ret, adv + values)
    # steps after the trial's end are not rewarded and do not leak into it
    rewards = torch.tensor([[1.0], [5.0]])
    valid, end = trial_masks(done, episodes=1)
    adv, _ = trial_advantages(rewards, torch.zeros(2, 1), valid, end, gamma=1.0, lam=1.0)
    assert adv[0, 0].item() == 1.0


def test_episode_returns():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    done = torch.tensor([[0, 1], [1, 1], [1, 0]], dtype=torch.bool)
    assert episode_returns(rewards, done, 2).tolist() == [[4.0, 5.0], [2.0, 4.0]]


def test_episode_successes_marks_episodes_with_success_at_any_step():
    done = torch.tensor([[0, 1], [1, 1], [0, 0], [1, 0]], dtype=torch.bool)
    success = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 1]], dtype=torch.bool)
    # row 0: episodes [0-1] succeed at step 0, [2-3] not; row 1: [0], [1] not, [2-3] beyond 2
    assert episode_successes(success, done, 2).tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert episode_successes(success, done, 3).tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


@pytest.mark.parametrize(
    "family", [BanditConfig(k=4, n=5), TabularMDPConfig(num_states=3, n=2), Nav2DConfig(horizon=4)]
)
@pytest.mark.parametrize("memory", ["gru", "transformer"])
def test_actor_critic_shapes(family, memory):
    fam = make_family(family)
    net = (
        RecurrentActorCritic(
            fam.observation_space, fam.action_space, hidden=8, memory=memory, max_len=20, heads=2
        )
        if memory == "transformer"
        else RecurrentActorCritic(fam.observation_space, fam.action_space, hidden=8)
    )
    env = fam.make_env(3)
    env.set_tasks(fam.tasks(3, "train", 0))
    batch = collect_trials(net, env, env.reset(seed=0), 6, make_generator(0))
    spec = heads.spec_for(fam.action_space)
    assert batch.inputs.shape == (6, 3, net.in_dim)
    assert batch.actions.shape == ((6, 3) if spec.kind == "categorical" else (6, 3, spec.dim))
    for t in (batch.logp, batch.values, batch.rewards, batch.done):
        assert t.shape == (6, 3)
    params, values, _ = net(batch.inputs)
    assert params.shape == (6, 3, spec.param_dim)
    torch.testing.assert_close(values, batch.values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        heads.log_prob(spec, params, batch.actions), batch.logp, atol=1e-5, rtol=1e-5
    )
    # the first step reads zeros for the previous action, reward and done flag
    assert batch.inputs[0, :, -spec.dim - 2 :].abs().sum() == 0


def test_memory_is_kept_across_episodes_and_reset_between_trials():
    learner = RL2(TINY, seed=0)
    for _ in range(3):
        learner.meta_train_step()
    net = learner.net
    fam = learner.family
    env = fam.make_env(8)
    tasks_a, tasks_b = fam.tasks(8, "test", 1), fam.tasks(8, "test", 2)
    # Kept across episodes: what happened in the first pull changes the policy at the second.
    x = net.inputs(
        torch.zeros(2, 8, dtype=torch.long),
        torch.zeros(2, 8, 3),
        torch.zeros(2, 8),
        torch.ones(2, 8),
    )
    x2 = x.clone()
    x2[1, :, -2] = 1.0  # the first pull paid 1 instead of 0
    assert (net(x)[0][1] - net(x2)[0][1]).abs().max() > 1e-4
    # Reset between trials: a trial on B gives the same actions whether or not A ran before it.
    agent = learner.trial_agent()
    run_trials(agent, env, tasks_a, 6, make_generator(5), env_seed=5)
    after_a = run_trials(agent, env, tasks_b, 6, make_generator(7), env_seed=7)
    fresh = run_trials(learner.trial_agent(), env, tasks_b, 6, make_generator(7), env_seed=7)
    assert torch.equal(after_a, fresh)


def test_ppo_update_lowers_the_clipped_loss_on_a_fixed_batch():
    from adaptrl.algos.rl2 import trial_advantages as adv_fn
    from adaptrl.rl.losses import ppo_clip_loss
    from adaptrl.rl.returns import normalize

    learner = RL2(dataclasses.replace(TINY, epochs=4, minibatches=1, entropy_coef=0.0), seed=1)
    env = learner.env
    env.set_tasks(learner.family.tasks(16, "train", 3))
    batch = collect_trials(learner.net, env, env.reset(seed=3), learner.steps, learner.generator)
    valid, end = trial_masks(batch.done, learner.episodes)
    adv, ret = adv_fn(batch.rewards, batch.values, valid, end, 0.99, 0.3)
    adv = normalize(adv, valid)

    def clipped_loss():
        with torch.no_grad():
            params, _, _ = learner.net(batch.inputs)
            logp = heads.log_prob(learner.net.spec, params, batch.actions)
            return ppo_clip_loss(logp, batch.logp, adv, 0.2, valid)[0]

    before = clipped_loss()
    learner.update(batch, adv, ret, valid)
    assert clipped_loss() < before - 1e-3


def test_same_seed_gives_identical_metrics_and_other_seeds_differ():
    def run(seed):
        learner = RL2(TINY, seed=seed)
        return [{k: float(v) for k, v in learner.meta_train_step().items()} for _ in range(3)]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_state_dict_round_trip_continues_identically(tmp_path):
    a = RL2(TINY, seed=3)
    for _ in range(2):
        a.meta_train_step()
    save_state(tmp_path / "ckpt", a.state_dict())
    expected = [{k: float(v) for k, v in a.meta_train_step().items()} for _ in range(2)]
    b = RL2(TINY, seed=3)
    b.load_state_dict(load_state(tmp_path / "ckpt")[0])
    assert b.iteration == 2
    assert [{k: float(v) for k, v in b.meta_train_step().items()} for _ in range(2)] == expected


@pytest.mark.parametrize(
    "family", [Nav2DConfig(horizon=5), TabularMDPConfig(num_states=3, horizon=3, n=2)]
)
def test_other_families_and_options_train(family):
    for extra in (
        {},
        {"memory": "transformer", "transformer_heads": 2},
        {"memory": "transformer", "transformer_heads": 2, "outer": "trpo"},
        {"outer": "trpo"},
        {"prev_obs_input": True, "embed": (8,), "outer": "trpo"},
    ):
        cfg = dataclasses.replace(TINY, family=family, hidden=8, **extra)
        learner = RL2(cfg, seed=0)
        metrics = learner.meta_train_step()
        assert all(torch.isfinite(torch.as_tensor(v)) for v in metrics.values())
        assert learner.iteration == 1


def test_linear_schedules_of_the_entropy_bonus_and_learning_rate():
    assert [linear_schedule(0.05, 0.01, i, 5) for i in (0, 2, 4, 9)] == pytest.approx(
        [0.05, 0.03, 0.01, 0.01]
    )
    assert linear_schedule(1.0, 0.0, 0, 1) == 1.0  # one iteration: the start value
    cfg = dataclasses.replace(TINY, iterations=5, lr=4e-3, lr_final=0.0)
    learner, resumed = RL2(cfg, seed=0), RL2(cfg, seed=0)
    seen = []
    for i in range(5):
        if i == 3:  # a learner resumed from a checkpoint follows the same schedule
            resumed.load_state_dict(learner.state_dict())
            resumed.meta_train_step()
            assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
        learner.meta_train_step()
        seen.append(learner.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([4e-3, 3e-3, 2e-3, 1e-3, 0.0])
    constant = RL2(TINY, seed=0)
    constant.meta_train_step()
    assert constant.optimizer.param_groups[0]["lr"] == TINY.lr


@pytest.mark.parametrize("memory", ["gru", "transformer"])
def test_trpo_step_stays_in_the_trust_region(memory):
    # The transformer needs double backward through attention (the Fisher-vector products),
    # which PyTorch's fused CPU attention kernel does not have.
    cfg = dataclasses.replace(TINY, outer="trpo", max_kl=0.005, memory=memory)
    learner = RL2(cfg, seed=0)
    metrics = learner.meta_train_step()
    assert 0 < float(metrics["approx_kl"]) <= 0.005 * 1.5


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="minibatches"):
        RL2Config(trials=2, minibatches=4)
    with pytest.raises(ConfigError, match="iterations"):
        RL2Config(iterations=0)
    with pytest.raises(ConfigError, match="gamma"):
        RL2Config(gamma=1.5)
    with pytest.raises(ConfigError, match="lr_final"):
        RL2Config(lr_final=-1e-3)


def test_it_learns_bandits_beating_random_on_held_out_tasks():
    cfg = RL2Config(family=BanditConfig(k=5, n=10), iterations=120, trials=128, hidden=32)
    learner = RL2(cfg, seed=0)
    for _ in range(cfg.iterations):
        learner.meta_train_step()
    res = evaluate(
        learner.family,
        [("rl2", lambda f: learner.trial_agent()), "random"],
        num_tasks=500,
        show_progress=False,
    )
    rl2, random = (a.trial_return()[0] for a in res.agents)
    assert random < 5.3  # chance: 10 pulls of an average arm of U[0,1]
    assert rl2 > random + 0.8, (rl2, random)


def test_sigkill_and_resume_end_with_the_same_evaluation(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from adaptrl.cli.main import main

    args = ["rl2", "--iterations", "60", "--trials", "16", "--hidden", "8", "--epochs", "1"]
    args += ["--checkpoint-every", "5", "bandit-bernoulli-v0", "--k", "3", "--n", "4"]
    killed, full = tmp_path / "killed", tmp_path / "full"
    env = {**os.environ, "CI": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptrl.cli.main", "train", *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not list((killed / "checkpoints").glob("ckpt-*10.json")) and time.time() < deadline:
        time.sleep(0.05)
    finished_before_kill = (killed / "model.json").exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not finished_before_kill, "the run ended before it could be killed"
    assert main(["train", "--resume", str(killed)]) == 0
    assert main(["train", *args, "--out", str(full)]) == 0
    scores = []
    for run in (killed, full):
        out = tmp_path / f"{run.name}-eval"
        assert main(["eval", str(run), "--num-tasks", "40", "--out", str(out)]) == 0
        scores.append(json.loads((out / "results.json").read_text())["agents"])
    assert scores[0] == scores[1]


def assert_agent_reads_what_collection_stored(learner: RL2) -> None:
    """The trial agent feeds the network exactly the inputs the collection loop does (one trial
    of the family's episodes on 16 test tasks, the same env seed and sampling generator)."""
    env, net = learner.env, learner.net
    tasks = learner.family.tasks(16, "test", 3)
    env.set_tasks(tasks)
    collected = collect_trials(net, env, env.reset(seed=4), learner.steps, make_generator(4))
    seen = []
    build = net.inputs
    net.inputs = lambda *a, **kw: seen.append(build(*a, **kw)) or seen[-1]
    try:
        run_trials(learner.trial_agent(), env, tasks, learner.episodes, make_generator(4), 4)
    finally:
        del net.inputs
    torch.testing.assert_close(torch.stack(seen), collected.inputs, rtol=0, atol=0)


def test_previous_observation_input_makes_each_input_a_transition():
    family = TabularMDPConfig(num_states=4, num_actions=3, horizon=3, n=2)
    cfg = dataclasses.replace(TINY, family=family, prev_obs_input=True, embed=(12, 8), hidden=8)
    learner = RL2(cfg, seed=0)
    net = learner.net
    assert net.in_dim == 4 + 3 + 2 + 4  # obs, previous action, reward, done, previous obs
    env = learner.env
    env.set_tasks(learner.family.tasks(16, "train", 0))
    batch = collect_trials(net, env, env.reset(seed=0), 6, make_generator(0))
    prev_obs, obs = batch.inputs[..., -4:], batch.inputs[..., :4]
    assert torch.equal(prev_obs[0], torch.zeros(16, 4))  # nothing before the trial's first step
    torch.testing.assert_close(prev_obs[1:], obs[:-1])  # across episode boundaries too (t = 3)
    assert_agent_reads_what_collection_stored(learner)
    # the embedding sits before each memory; the critic's own one belongs to the value parameters
    cfg = dataclasses.replace(cfg, separate_critic=True)
    net = RL2(cfg, seed=0).net
    assert "embed.0.weight" in net.policy_parameters()
    assert not any(n.startswith("value_embed") for n in net.policy_parameters())
    value_ids = {id(p) for p in net.value_parameters()}
    assert id(net.value_embed[0].weight) in value_ids
    with pytest.raises(ConfigError, match=r"embed\[0\] must be >= 1"):
        dataclasses.replace(cfg, embed=(0,))


def test_time_input_feeds_the_share_of_the_trial_spent():
    learner = RL2(dataclasses.replace(TINY, time_input=True), seed=0)
    assert learner.net.in_dim == 1 + 3 + 2 + 1
    env = learner.env
    env.set_tasks(learner.family.tasks(16, "train", 0))
    batch = collect_trials(learner.net, env, env.reset(seed=0), 6, make_generator(0))
    expected = (torch.arange(6) / 6).unsqueeze(1).expand(6, 16)
    torch.testing.assert_close(batch.inputs[..., -1], expected)
    metrics = learner.meta_train_step()
    assert torch.isfinite(metrics["trial_return"])
    agent = learner.trial_agent()
    out = run_trials(agent, env, learner.family.tasks(16, "test", 0), 6, make_generator(1), 1)
    assert out.shape == (16, 6) and agent.t == 6


def test_next_episode_step():
    step = torch.tensor([0, 3, 9, 2])
    done = torch.tensor([False, True, False, True])
    assert next_episode_step(step, done).tolist() == [1, 0, 10, 0]


def test_episode_time_input_feeds_the_share_of_the_episode_spent():
    # nav2d with goals near the start: some episodes end early at the goal, so rows drift apart.
    family = Nav2DConfig(
        goal_low=-0.2, goal_high=0.2, max_action=0.2, goal_radius=0.15, horizon=4, n=3
    )
    cfg = dataclasses.replace(TINY, family=family, time_input=True, episode_time_input=True)
    learner = RL2(cfg, seed=0)
    net = learner.net
    assert net.in_dim == 2 + 2 + 2 + 1 + 1  # obs, action, reward, done, trial and episode time
    env = learner.env
    env.set_tasks(learner.family.tasks(16, "train", 0))
    batch = collect_trials(net, env, env.reset(seed=0), 12, make_generator(0))
    expected = torch.zeros(12, 16, dtype=torch.long)
    for t in range(1, 12):  # steps since the episode began, from the done flags alone
        expected[t] = (expected[t - 1] + 1) * ~batch.done[t - 1]
    assert (batch.done.sum(0) != 3).any()  # early ends happened
    torch.testing.assert_close(batch.inputs[..., -1], expected / 4)
    assert_agent_reads_what_collection_stored(learner)
    with pytest.raises(ConfigError, match="episode_step"):
        net.inputs(env.reset(seed=0), *net.initial_prev(16))
    with pytest.raises(ConfigError, match="episode_steps must be >= 1"):
        RecurrentActorCritic(net.observation_space, net.action_space, episode_steps=0)


def test_untrained_critic_cannot_steer_the_policy_on_mdps():
    """A fresh critic is exactly 0, so the first advantages are the rewards' alone. A random critic
    (the old init) made the TD errors prefer whichever previous action it liked, and on MDPs with
    rewards scaled down the policy collapsed onto it within ten iterations with no gain."""
    cfg = RL2Config(
        family=TabularMDPConfig(n=10),
        iterations=100,
        trials=64,
        hidden=128,
        lr=5e-4,
        minibatches=2,
        gae_lambda=0.3,
        reward_scale=0.02,
        entropy_coef=0.01,
        entropy_final=0.001,
        time_input=True,
    )
    learner = RL2(cfg, seed=0)
    env = learner.env
    env.set_tasks(learner.family.tasks(64, "train", 3))
    batch = collect_trials(learner.net, env, env.reset(seed=3), learner.steps, learner.generator)
    assert batch.values.abs().max() == 0
    for _ in range(10):
        metrics = learner.meta_train_step()
    # uniform over 5 actions: log 5 = 1.61; the old init was at 0.72 here
    assert float(metrics["entropy"]) > 1.4


def test_separate_critic_keeps_the_value_loss_out_of_the_policy():
    learner = RL2(dataclasses.replace(TINY, separate_critic=True, entropy_coef=0.0), seed=0)
    net = learner.net
    assert not net.shared and net.value_memory is not None
    env = learner.env
    env.set_tasks(learner.family.tasks(16, "train", 3))
    batch = collect_trials(net, env, env.reset(seed=3), learner.steps, learner.generator)
    valid, _ = trial_masks(batch.done, learner.episodes)
    policy_before = {k: v.detach().clone() for k, v in net.policy_parameters().items()}
    value_before = [p.detach().clone() for p in net.value_parameters()]
    # zero advantages: only the value loss moves anything, and only the critic's parameters
    learner.update(batch, torch.zeros_like(batch.rewards), batch.rewards + 1.0, valid)
    for k, v in net.policy_parameters().items():
        assert torch.equal(v, policy_before[k]), k
    assert any(
        not torch.equal(p, b) for p, b in zip(net.value_parameters(), value_before, strict=True)
    )


@pytest.mark.parametrize("normalize", [True, False])
def test_gaussian_policy_acts_in_unit_coordinates_rescaled_to_the_box(normalize):
    """nav2d's velocities lie in [-0.1, 0.1]: with ``normalize_actions`` the environment receives
    0.1 x the policy's action, while the batch (log-probabilities) and the memory's previous-action
    input keep the policy's own; the trial agent does the same at evaluation time."""
    cfg = dataclasses.replace(TINY, family=Nav2DConfig(horizon=4), hidden=8, trials=3)
    learner = RL2(dataclasses.replace(cfg, normalize_actions=normalize), seed=0)
    env = learner.env
    sent: list[torch.Tensor] = []
    real_step = env.step

    def spy(action):
        sent.append(action.clone())
        return real_step(action)

    env.step = spy  # type: ignore[method-assign]
    env.set_tasks(learner.family.tasks(3, "train", 0))
    batch = collect_trials(
        learner.net, env, env.reset(seed=0), 8, learner.generator, learner.action_map
    )
    scale = 0.1 if normalize else 1.0
    torch.testing.assert_close(torch.stack(sent), scale * batch.actions)
    assert batch.actions.abs().max() > 0.3  # unit-scale samples (std 1 at init)
    # step t's input holds action t-1 as the policy sampled it
    assert not cfg.time_input  # inputs end with [..., action (2), reward, done]
    torch.testing.assert_close(batch.inputs[1:, :, -4:-2], batch.actions[:-1])

    agent = learner.trial_agent()
    agent.begin_trial(env, learner.family.tasks(3, "test", 0), make_generator(1))
    obs = env.reset(seed=1)
    action = agent.act(obs)
    torch.testing.assert_close(action, scale * agent.action)
    agent.observe(obs, action, env.step(action))
    torch.testing.assert_close(agent.prev[0], agent.action)


def test_eval_report_says_which_model_it_scored(tmp_path):
    """A run evaluated part-way (its newest checkpoint) says so: iterations trained of planned."""
    import json

    from adaptrl.algos.trainer import save_trained
    from adaptrl.cli.main import main

    config = dataclasses.replace(TINY, iterations=5)
    learner = RL2(config, seed=2)
    learner.meta_train_step()
    save_trained(tmp_path / "run", learner, config, seed=2)
    out = tmp_path / "eval"
    assert main(["eval", str(tmp_path / "run"), "--num-tasks", "8", "--out", str(out)]) == 0
    expected = "rl2, training seed 2, 1 of 5 iterations trained"
    assert f"- model: {expected}\n" in (out / "report.md").read_text()
    assert json.loads((out / "results.json").read_text())["model"] == expected


def test_an_exported_model_scores_as_the_run_and_leaves_the_optimizer_out(tmp_path):
    from adaptrl.algos.trainer import export_model, load_trained, new_run, train_run

    config = dataclasses.replace(TINY, iterations=4)
    run = new_run(tmp_path / "run", config, seed=3, checkpoint_every=2, keep=5).path
    train_run(run, show_progress=False)
    for iteration, source in ((None, "model"), (2, "checkpoints/ckpt-000000000002")):
        out = export_model(run, tmp_path / f"export-{iteration}", iteration=iteration).path
        model, original = load_state(out / "model")[0], load_state(run / source)[0]
        assert "optimizer" not in model and "optimizer" in original
        assert (out / "model.safetensors").stat().st_size < (
            run / f"{source}.safetensors"
        ).stat().st_size
        exported = load_trained(out)
        assert exported.iteration == (iteration or 4) and exported.config == config
        family = make_family(config.family)
        scores = []
        for learner in (exported, RL2(config, seed=3)):
            if learner is not exported:
                learner.load_state_dict(original)
            res = evaluate(family, [("rl2", lambda f, lr=learner: lr.trial_agent())], num_tasks=16)
            scores.append(res.agents[0].returns)
        assert torch.equal(scores[0], scores[1])
