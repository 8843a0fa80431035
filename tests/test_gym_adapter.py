"""Gymnasium adapters: FamilyEnv (family -> gymnasium.Env) and GymVectorFamily (gymnasium.Env ->
batched family)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from adaptrl.core.errors import ConfigError
from adaptrl.envs import (
    FAMILIES,
    FamilyContractError,
    FamilyEnv,
    GymVectorFamily,
    TaskBatch,
    check_family,
    family_env,
    make_family,
)

# --- FamilyEnv --------------------------------------------------------------------------------


@pytest.mark.parametrize("family_id", list(FAMILIES))
def test_family_env_passes_check_env(family_id):
    module = FAMILIES.get(family_id).__module__
    if module == "adaptrl.envs.mujoco":
        pytest.importorskip("mujoco")  # the optional extra
    if module == "adaptrl.envs.metaworld":
        pytest.importorskip("metaworld")
    env = family_env(family_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    complaints = [
        str(w.message)
        for w in caught
        if "infinity" not in str(w.message)  # nav2d's unbounded positions: advice only
    ]
    assert complaints == []
    assert env.metadata == {"render_modes": []}
    assert env.spec is not None and env.spec.max_episode_steps == env.family.max_episode_steps


def test_family_env_output_types():
    grid = family_env("gridworld-goal-v0")
    obs, info = grid.reset(seed=0)
    assert type(obs) is np.int64 and info == {}
    obs, reward, terminated, truncated, info = grid.step(2)
    assert type(obs) is np.int64 and obs == 1
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    nav = family_env("nav2d-goal-v0")
    obs, _ = nav.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (2,)
    obs2, *_ = nav.step(np.array([0.1, 0.0], dtype=np.float32))
    assert obs2.dtype == np.float32 and np.allclose(obs2, [0.1, 0.0])
    assert not np.shares_memory(obs, obs2)


def test_reset_seed_fixes_task_and_trajectory():
    env = family_env("nav2d-goal-v0")
    actions = np.random.default_rng(0).uniform(-0.1, 0.1, (30, 2)).astype(np.float32)

    def episode(seed):
        env.reset(seed=seed)
        goal = env.task.goal.clone()
        return goal, [env.step(a)[:4] for a in actions]

    goal_a, traj_a = episode(5)
    goal_b, traj_b = episode(5)
    goal_c, _ = episode(6)
    assert torch.equal(goal_a, goal_b) and not torch.equal(goal_a, goal_c)
    for (oa, *ra), (ob, *rb) in zip(traj_a, traj_b, strict=True):
        assert np.array_equal(oa, ob) and ra == rb
    # without a seed each reset draws a new task
    env.reset()
    first = env.task.goal.clone()
    env.reset()
    assert not torch.equal(first, env.task.goal)


def test_unset_task_draws_meta_train_tasks_only():
    env = family_env("gridworld-goal-v0")
    train = set(env.family.train_cells.tolist())
    goals = set()
    for seed in range(150):
        env.reset(seed=seed)
        goals.add(int(env.task.goal))
    assert goals == train  # every train cell drawn, never a test cell


def test_set_task_fixes_the_task_until_cleared():
    fam = make_family("gridworld-goal-v0")
    env = FamilyEnv(fam)
    task = TaskBatch({"goal": torch.tensor([7])})
    env.set_task(task)
    for seed in (0, 1, None):
        env.reset(seed=seed)
        assert int(env.task.goal) == 7
    env.set_task(None)
    goals = set()
    for seed in range(10):
        env.reset(seed=seed)
        goals.add(int(env.task.goal))
    assert len(goals) > 1
    with pytest.raises(ConfigError, match="one task"):
        env.set_task(TaskBatch({"goal": torch.tensor([7, 8])}))


def test_family_env_returns_final_obs_and_flags():
    nav = FamilyEnv(
        make_family("nav2d-goal-v0", goal_radius=0.02),
        task=TaskBatch({"goal": torch.tensor([[0.05, 0.0]])}),
    )
    nav.reset(seed=0)
    obs, reward, terminated, truncated, _ = nav.step(np.array([0.05, 0.0], dtype=np.float32))
    assert terminated and not truncated
    assert np.allclose(obs, [0.05, 0.0])  # where the episode ended, not the origin
    assert reward == pytest.approx(0.0, abs=1e-6)
    grid = family_env("gridworld-goal-v0", horizon=3, task=TaskBatch({"goal": torch.tensor([24])}))
    grid.reset(seed=0)
    out = [grid.step(3) for _ in range(3)]  # down, down, down
    assert [o[0] for o in out] == [5, 10, 15]
    assert [o[3] for o in out] == [False, False, True]
    assert not any(o[2] for o in out)


def test_family_env_rejects_bad_actions():
    grid = family_env("gridworld-goal-v0")
    grid.reset(seed=0)
    with pytest.raises(ConfigError, match="integer"):
        grid.step(1.5)
    nav = family_env("nav2d-goal-v0")
    nav.reset(seed=0)
    with pytest.raises(ConfigError, match="shape"):
        nav.step(np.zeros(3, dtype=np.float32))


def test_family_env_config_overrides():
    assert family_env("gridworld-goal-v0", height=3).observation_space == gym.spaces.Discrete(15)
    fam = make_family("bandit-bernoulli-v0")
    assert family_env(fam, k=7).action_space == gym.spaces.Discrete(7)
    assert family_env(fam).family is fam
    with pytest.raises(ConfigError, match="no option"):
        family_env(fam, arms=3)
    with pytest.raises(ConfigError, match="no option"):
        family_env("bandit-bernoulli-v0", arms=3)


def test_family_env_spaces_are_copies():
    fam = make_family("gridworld-goal-v0")
    env = FamilyEnv(fam)
    assert env.action_space == fam.action_space and env.action_space is not fam.action_space


# --- GymVectorFamily --------------------------------------------------------------------------


def wrap(family, **kwargs) -> GymVectorFamily:
    return GymVectorFamily(
        lambda: FamilyEnv(family),
        family.sample_tasks,
        family_id=f"{family.family_id}-gym",
        episodes_per_trial=family.episodes_per_trial,
        **kwargs,
    )


def compare_rollouts(family, tasks, actions, exact=True):
    native, wrapped = family.make_env(len(tasks)), wrap(family).make_env(len(tasks))
    for env in (native, wrapped):
        env.set_tasks(tasks)
    assert torch.equal(native.reset(seed=0), wrapped.reset(seed=0))
    ends = 0
    for a in actions:
        n, w = native.step(a), wrapped.step(a)
        for field in ("obs", "final_obs", "reward"):
            x, y = getattr(n, field), getattr(w, field)
            assert x.dtype == y.dtype and x.shape == y.shape
            assert torch.equal(x, y) if exact else torch.allclose(x, y, atol=1e-6), field
        assert torch.equal(n.terminated, w.terminated) and torch.equal(n.truncated, w.truncated)
        ends += int((n.terminated | n.truncated).sum())
    return ends


def test_gym_vector_matches_native_nav2d():
    fam = make_family("nav2d-goal-v0", horizon=12, goal_radius=0.15)
    tasks = fam.tasks(6, "train", seed=0)
    g = torch.Generator().manual_seed(0)
    actions = [0.2 * torch.rand(6, 2, generator=g) - 0.1 for _ in range(40)]
    g2 = torch.Generator().manual_seed(1)  # steer rows toward their goals to get terminations
    actions = [a + 0.05 * torch.sign(tasks.goal) * torch.rand(6, 1, generator=g2) for a in actions]
    native = fam.make_env(6)
    native.set_tasks(tasks)
    native.reset()
    terminated = sum(int(native.step(a).terminated.sum()) for a in actions)
    assert terminated > 0  # the comparison below covers terminations, not only truncations
    assert compare_rollouts(fam, tasks, actions, exact=False) > 6


def test_gym_vector_matches_native_gridworld():
    fam = make_family("gridworld-goal-v0", walls=((1, 1), (3, 2)), horizon=7)
    tasks = fam.tasks(8, "train", seed=0)
    g = torch.Generator().manual_seed(0)
    actions = [torch.randint(5, (8,), generator=g) for _ in range(30)]
    assert compare_rollouts(fam, tasks, actions) == 8 * 4


def test_gym_vector_matches_native_deterministic_tabular():
    fam = make_family(
        "tabular-mdp-v0", num_states=5, num_actions=3, horizon=6, reward_noise_std=0.0
    )
    g = torch.Generator().manual_seed(0)
    nxt = torch.randint(5, (4, 5, 3), generator=g)
    tasks = TaskBatch(
        {
            "reward_mean": torch.randn(4, 5, 3, generator=g),
            "transition": torch.nn.functional.one_hot(nxt, 5).float(),
        }
    )
    actions = [torch.randint(3, (4,), generator=g) for _ in range(20)]
    assert compare_rollouts(fam, tasks, actions) == 4 * 3


class CounterEnv(gym.Env):
    """Counts steps and terminates at the task's target count; float64 observations."""

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 100.0, (1,), np.float64)
        self.action_space = gym.spaces.Discrete(2)
        self.target = 1

    def set_task(self, task: TaskBatch) -> None:
        assert len(task) == 1 and task.target.device.type == "cpu"
        self.target = int(task.target[0])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return np.array([0.0]), {}

    def step(self, action):
        self.count += 1
        obs = np.array([float(self.count)])
        return obs, float(action), self.count >= self.target, False, {}


def sample_targets(n: int, generator: torch.Generator) -> TaskBatch:
    return TaskBatch({"target": torch.randint(1, 10, (n,), generator=generator)})


def test_gym_vector_time_limit_terminal_at_limit_and_final_obs():
    fam = GymVectorFamily(CounterEnv, sample_targets, "counter-v0", max_episode_steps=4)
    assert fam.max_episode_steps == 4
    assert fam.observation_space.dtype == np.float32
    env = fam.make_env(3)
    env.set_tasks(TaskBatch({"target": torch.tensor([2, 4, 6])}))
    assert env.reset(seed=0).tolist() == [[0.0]] * 3
    steps = [env.step(torch.tensor([1, 0, 1])) for _ in range(4)]
    assert steps[0].reward.tolist() == [1.0, 0.0, 1.0] and steps[0].reward.dtype == torch.float32
    assert steps[1].terminated.tolist() == [True, False, False]
    # row 1 terminates exactly at the limit: terminated, not truncated; row 2 hits the limit
    assert steps[3].terminated.tolist() == [True, True, False]
    assert steps[3].truncated.tolist() == [False, False, True]
    assert steps[3].final_obs.tolist() == [[2.0], [4.0], [4.0]]
    assert steps[3].obs.tolist() == [[0.0], [0.0], [0.0]]
    assert steps[2].obs.tolist() == [[1.0], [3.0], [3.0]] and steps[2].obs.dtype == torch.float32


def test_gym_vector_time_limit_from_spec_and_the_smaller_one_wins():
    grid = make_family("gridworld-goal-v0", horizon=15)
    assert wrap(grid).max_episode_steps == 15
    short = wrap(grid, max_episode_steps=5)
    assert short.max_episode_steps == 5
    env = short.make_env(2)
    env.set_tasks(grid.tasks(2, "train", 0))
    env.reset()
    truncated = [env.step(torch.zeros(2, dtype=torch.long)).truncated.tolist() for _ in range(5)]
    assert truncated == [[False, False]] * 4 + [[True, True]]
    assert wrap(grid, max_episode_steps=50).max_episode_steps == 15


def test_gym_vector_requires_set_task_and_a_time_limit():
    def no_set_task():
        return gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, 10)

    with pytest.raises(ConfigError, match="no set_task"):
        GymVectorFamily(no_set_task, sample_targets)
    with pytest.raises(ConfigError, match="max_episode_steps"):
        GymVectorFamily(CounterEnv, sample_targets)
    with pytest.raises(ConfigError, match=r"gymnasium\.Env"):
        GymVectorFamily(object, sample_targets, max_episode_steps=3)


def test_gym_vector_tasks_reach_sub_envs_through_wrappers():
    def wrapped():
        return gym.wrappers.RecordEpisodeStatistics(CounterEnv())

    fam = GymVectorFamily(wrapped, sample_targets, "counter-v0", max_episode_steps=20)
    env = fam.make_env(2)
    env.set_tasks(TaskBatch({"target": torch.tensor([1, 3])}))
    env.reset()
    assert env.step(torch.zeros(2, dtype=torch.long)).terminated.tolist() == [True, False]
    assert [e.unwrapped.target for e in env.vec.envs] == [1, 3]


def test_gym_vector_reset_seed_is_reproducible():
    bandit = make_family("bandit-bernoulli-v0")
    fam = wrap(bandit)
    tasks = bandit.tasks(4, "train", 0)

    def rewards(seed):
        env = fam.make_env(4)
        env.set_tasks(tasks)
        env.reset(seed=seed)
        return torch.stack([env.step(torch.arange(4)).reward for _ in range(30)])

    assert torch.equal(rewards(3), rewards(3))
    assert not torch.equal(rewards(3), rewards(4))
    assert torch.equal(rewards(None), rewards(0))  # an unseeded first reset is seed 0


def test_gym_vector_contract_errors():
    fam = GymVectorFamily(CounterEnv, sample_targets, "counter-v0", max_episode_steps=4)
    env = fam.make_env(2)
    with pytest.raises(ConfigError, match="set_tasks"):
        env.reset()
    env.set_tasks(TaskBatch({"target": torch.tensor([2, 3])}))
    with pytest.raises(ConfigError, match="reset"):
        env.step(torch.zeros(2, dtype=torch.long))
    env.reset()
    with pytest.raises(ConfigError, match="shape"):
        env.step(torch.zeros(3, dtype=torch.long))
    # integer targets form a finite task space: the default split of TaskFamily.tasks is not
    # disjoint there, and the contract check says so
    with pytest.raises(FamilyContractError, match="both the train and the test split"):
        check_family(fam, num_envs=3)
