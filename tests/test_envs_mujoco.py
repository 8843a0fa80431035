"""MuJoCo task families (halfcheetah-vel/dir, ant-vel/dir): contract, rewards recomputed from the
robot's own velocity and the action, splits, seeding, oracle observations, the missing extra."""

from __future__ import annotations

import gc
import subprocess
import sys

import numpy as np
import pytest
import torch

from adaptrl.core.errors import ConfigError, MissingExtraError
from adaptrl.core.seeding import derive_seed
from adaptrl.envs import FAMILIES, FamilyContractError, TaskBatch, check_family, make_family
from adaptrl.envs.mujoco import HalfCheetahDir, TaskRewardWrapper, build_robot

MUJOCO_FAMILIES = ("halfcheetah-vel-v0", "halfcheetah-dir-v0", "ant-vel-v0", "ant-dir-v0")


def needs_mujoco():
    pytest.importorskip("mujoco")


def random_actions(n_steps: int, b: int, dim: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, dim, generator=g) * 2.4 - 1.2 for _ in range(n_steps)]  # some outside


# --- declared without MuJoCo ----------------------------------------------------------------------


def test_families_are_registered_with_their_maml_defaults():
    for fid in MUJOCO_FAMILIES:
        assert fid in FAMILIES
    vel, hdir = make_family("halfcheetah-vel-v0"), make_family("halfcheetah-dir-v0")
    for fam in (vel, hdir):
        assert fam.max_episode_steps == 200
        assert fam.config.ctrl_cost_weight == 0.05
        assert fam.observation_space.shape == (17,) and fam.observation_space.dtype == np.float32
        assert fam.action_space.shape == (6,)
    assert (vel.config.low, vel.config.high) == (0.0, 2.0)
    ant = make_family("ant-vel-v0")
    assert (ant.config.low, ant.config.high, ant.config.ctrl_cost_weight) == (0.0, 3.0, 0.005)
    assert make_family("ant-dir-v0", oracle=True).observation_space.shape == (106,)


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="low < high"):
        make_family("halfcheetah-vel-v0", low=2.0, high=1.0)
    with pytest.raises(ConfigError, match="horizon"):
        make_family("halfcheetah-dir-v0", horizon=0)
    with pytest.raises(ConfigError, match="ctrl_cost_weight"):
        make_family("halfcheetah-dir-v0", ctrl_cost_weight=-1.0)
    with pytest.raises(ConfigError, match="backend"):
        make_family("halfcheetah-dir-v0", backend="async")


def test_registering_does_not_import_mujoco():
    code = (
        "import sys; import adaptrl.envs as e; "
        "[e.make_family(f).tasks(4, 'train', 0) for f in e.FAMILIES]; "
        "print('mujoco' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_without_mujoco_building_envs_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco", None)  # makes `import mujoco` fail
    fam = make_family("halfcheetah-vel-v0")  # declaring still works (adaptrl list)
    assert len(fam.tasks(3, "train", 0)) == 3
    for fid in ("halfcheetah-vel-v0", "ant-dir-v0"):
        with pytest.raises(MissingExtraError, match=r"pip install 'adaptrl\[mujoco\]'") as info:
            make_family(fid).make_env(2)
        assert isinstance(info.value, ImportError) and fid in str(info.value)


# --- splits (no MuJoCo needed) --------------------------------------------------------------------


def test_velocity_split_is_reproducible_disjoint_and_in_range():
    fam = make_family("halfcheetah-vel-v0", low=0.5, high=1.5)
    train, test = fam.tasks(500, "train", 3), fam.tasks(500, "test", 3)
    assert train.equal(fam.tasks(500, "train", 3)) and not train.equal(fam.tasks(500, "train", 4))
    for batch in (train, test):
        v = batch.goal_velocity
        assert v.dtype == torch.float32 and v.shape == (500,)
        assert 0.5 <= float(v.min()) < 0.6 and 1.4 < float(v.max()) <= 1.5
    assert not set(train.goal_velocity.tolist()) & set(test.goal_velocity.tolist())


def test_direction_split_holds_both_directions_in_both_splits():
    fam = make_family("halfcheetah-dir-v0")
    assert fam.disjoint_split is False
    train, test = fam.tasks(64, "train", 0), fam.tasks(64, "test", 0)
    assert train.equal(fam.tasks(64, "train", 0))
    for batch in (train, test):
        assert set(batch.direction.tolist()) == {-1.0, 1.0}
        assert batch.direction.dtype == torch.float32
    assert not train.equal(test)  # distinct streams
    share = float((fam.tasks(4000, "test", 1).direction > 0).float().mean())
    assert 0.45 < share < 0.55


class DirectionIgnoringSplit(HalfCheetahDir):
    family_id = "broken-dir-ignores-split"

    def tasks(self, n, split, seed, device="cpu"):
        return super().tasks(n, "train", seed, device)


def test_non_disjoint_split_check_still_catches_an_ignored_split():
    needs_mujoco()
    with pytest.raises(FamilyContractError, match="split is ignored"):
        check_family(DirectionIgnoringSplit(), num_envs=2, steps=3)


# --- contract, rewards, seeding (MuJoCo) ---------------------------------------------------------


@pytest.mark.parametrize("family_id", MUJOCO_FAMILIES)
def test_short_horizon_families_pass_the_contract(family_id):
    needs_mujoco()
    check_family(make_family(family_id, horizon=7), num_envs=3)


def test_default_horizon_and_sync_backend_pass_the_contract():
    needs_mujoco()
    check_family(make_family("halfcheetah-dir-v0"), num_envs=2)  # 401 steps: truncation at 200
    check_family(make_family("halfcheetah-vel-v0", horizon=5, backend="sync"), num_envs=3)


def gym_reference(family, seed: int, rows: int):
    """Raw Gymnasium robots with Gymnasium's default options, seeded as the batched env seeds rows."""
    robots = [build_robot(family.robot, family.family_id) for _ in range(rows)]
    first = [r.reset(seed=derive_seed(seed, "gym-vector-row", i))[0] for i, r in enumerate(robots)]
    return robots, np.stack(first)


@pytest.mark.parametrize(
    ("family_id", "tasks"),
    [
        ("halfcheetah-vel-v0", [0.0, 0.7, 2.0]),
        ("halfcheetah-dir-v0", [1.0, -1.0, 1.0]),
        ("ant-vel-v0", [0.3, 1.5, 3.0]),
        ("ant-dir-v0", [-1.0, 1.0, -1.0]),
    ],
)
def test_reward_is_the_formula_on_gymnasiums_velocity(family_id, tasks):
    needs_mujoco()
    fam = make_family(family_id)
    key, w = fam.task_key, fam.config.ctrl_cost_weight
    env = fam.make_env(3)
    env.set_tasks(TaskBatch({key: torch.tensor(tasks)}))
    obs = env.reset(seed=11)
    robots, first = gym_reference(fam, 11, 3)
    np.testing.assert_array_equal(obs.numpy(), first.astype(np.float32))
    goal = np.array(tasks)
    for action in random_actions(4, 3, fam.action_space.shape[0]):
        step = env.step(action)
        a = action.numpy().astype(np.float64)
        expected = []
        for i, robot in enumerate(robots):
            o, _, _, _, info = robot.step(action[i].numpy())
            np.testing.assert_array_equal(step.obs[i].numpy(), o.astype(np.float32))
            v = info["x_velocity"]
            task = -abs(v - goal[i]) if fam.kind == "vel" else goal[i] * v
            r = task - w * float(np.sum(a[i] ** 2))
            if fam.robot == "Ant":  # Gymnasium's defaults: healthy 1.0, contact weight 5e-4
                r += fam.config.healthy_reward * info["reward_survive"] + info["reward_contact"]
            expected.append(r)
        np.testing.assert_allclose(step.reward.numpy(), expected, rtol=1e-6, atol=1e-6)
        assert not step.terminated.any() and not step.truncated.any()


def test_clipped_control_cost_charges_at_most_the_action_bounds():
    needs_mujoco()
    tasks = TaskBatch({"direction": torch.tensor([1.0, 1.0])})
    rewards = {}
    for clip in (False, True):
        env = make_family("halfcheetah-dir-v0", clip_ctrl_cost=clip).make_env(2)
        env.set_tasks(tasks)
        env.reset(seed=0)
        rewards[clip] = env.step(torch.tensor([[3.0] * 6, [0.5] * 6])).reward
    # same physics (MuJoCo clamps the control); row 0 is charged 0.05 * 6 * (9 - 1) more unclipped
    assert rewards[True][0] - rewards[False][0] == pytest.approx(0.05 * 6 * 8, abs=1e-4)
    assert rewards[True][1] == rewards[False][1]


def test_wrapper_reward_and_info_match_the_batched_env():
    needs_mujoco()
    fam = make_family("halfcheetah-vel-v0")
    task = TaskBatch({"goal_velocity": torch.tensor([1.25])})
    wrapper = TaskRewardWrapper(fam.make_robot(), fam)
    wrapper.set_task(task)
    env = fam.make_env(1)
    env.set_tasks(task)
    obs, _ = wrapper.reset(seed=derive_seed(5, "gym-vector-row", 0))
    np.testing.assert_array_equal(obs, env.reset(seed=5)[0].numpy())
    for action in random_actions(3, 1, 6):
        o, r, *_, info = wrapper.step(action[0].numpy())
        step = env.step(action)
        assert o.dtype == np.float32 and np.array_equal(o, step.obs[0].numpy())
        assert r == pytest.approx(float(step.reward[0]), abs=1e-5)
        assert r == pytest.approx(info["reward_task"] + info["reward_ctrl"])
        assert info["reward_task"] == pytest.approx(-abs(info["x_velocity"] - 1.25))
    with pytest.raises(ConfigError, match="one task"):
        wrapper.set_task(TaskBatch({"goal_velocity": torch.tensor([1.0, 2.0])}))


def rollout(env, tasks, seed, actions):
    env.set_tasks(tasks)
    out = [env.reset(seed=seed)]
    for a in actions:
        out.extend(env.step(a))
    return out


def test_seeding_is_deterministic_and_backends_agree():
    needs_mujoco()
    loop = make_family("halfcheetah-dir-v0", horizon=6, oracle=True)
    sync = make_family("halfcheetah-dir-v0", horizon=6, oracle=True, backend="sync")
    tasks = loop.tasks(3, "train", 0)
    actions = random_actions(14, 3, 6)  # crosses two auto-resets
    a = rollout(loop.make_env(3), tasks, 2, actions)
    for other in (
        rollout(loop.make_env(3), tasks, 2, actions),
        rollout(sync.make_env(3), tasks, 2, actions),
    ):
        assert all(torch.equal(x, y) for x, y in zip(a, other, strict=True))
    b = rollout(loop.make_env(3), tasks, 3, actions)
    assert not torch.equal(a[0], b[0])
    env = loop.make_env(3)
    env.set_tasks(tasks)
    assert torch.equal(env.reset(), rollout(loop.make_env(3), tasks, 0, [])[0])  # unseeded = 0
    assert not torch.equal(env.reset(), a[0])  # a later unseeded reset continues the stream


def test_worker_processes_give_identical_trajectories():
    needs_mujoco()
    one = make_family("ant-vel-v0", horizon=4, oracle=True)
    two = make_family("ant-vel-v0", horizon=4, oracle=True, workers=2)
    tasks = one.tasks(5, "train", 0)
    actions = random_actions(9, 5, 8)
    env = two.make_env(5)
    assert [p.process.is_alive() for p in env._parts] == [True, True]
    assert env._bounds == [(0, 3), (3, 5)]
    a, b = rollout(one.make_env(5), tasks, 1, actions), rollout(env, tasks, 1, actions)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert env.elapsed.tolist() == [1] * 5  # 9 steps at horizon 4
    processes = [p.process for p in env._parts]
    env.close()
    assert not any(p.is_alive() for p in processes)
    env = two.make_env(2)
    processes = [p.process for p in env._parts]
    del env  # garbage collection stops the workers too
    gc.collect()
    assert not any(p.is_alive() for p in processes)
    check_family(make_family("halfcheetah-dir-v0", horizon=3, workers=3), num_envs=2)
    with pytest.raises(ConfigError, match="workers"):
        make_family("halfcheetah-dir-v0", workers=2, backend="sync")
    with pytest.raises(ConfigError, match="workers"):
        make_family("halfcheetah-dir-v0", workers=0)


def test_oracle_observation_carries_the_task_across_resets():
    needs_mujoco()
    fam = make_family("halfcheetah-vel-v0", horizon=3, oracle=True)
    assert fam.observation_space.shape == (18,)
    goals = torch.tensor([0.25, 1.5])
    env = fam.make_env(2)
    env.set_tasks(TaskBatch({"goal_velocity": goals}))
    assert torch.equal(env.reset(seed=0)[:, -1], goals)
    plain = make_family("halfcheetah-vel-v0", horizon=3).make_env(2)
    plain.set_tasks(TaskBatch({"goal_velocity": goals}))
    plain_obs = plain.reset(seed=0)
    for action in random_actions(5, 2, 6):
        step, ref = env.step(action), plain.step(action)
        assert torch.equal(step.obs[:, -1], goals) and torch.equal(step.final_obs[:, -1], goals)
        assert torch.equal(step.obs[:, :-1], ref.obs) and torch.equal(step.reward, ref.reward)
    assert not torch.equal(plain_obs, ref.obs)


def test_ant_terminates_when_unhealthy_and_auto_resets():
    needs_mujoco()
    fam = make_family("ant-dir-v0", horizon=50)
    env = fam.make_env(2)
    env.set_tasks(TaskBatch({"direction": torch.tensor([1.0, -1.0])}))
    env.reset(seed=0)
    robot = env.envs[0]
    qpos, qvel = robot.data.qpos.copy(), robot.data.qvel.copy()
    qpos[2] = 5.0  # torso far above the healthy range [0.2, 1.0]
    robot.set_state(qpos, qvel)
    step = env.step(torch.zeros(2, 8))
    assert step.terminated.tolist() == [True, False] and not step.truncated.any()
    assert not torch.equal(step.obs[0], step.final_obs[0])  # row 0 already restarted
    assert torch.equal(step.obs[1], step.final_obs[1])
    assert env.elapsed.tolist() == [0, 1]
