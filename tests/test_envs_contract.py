"""The family contract: check_family on every registered family, on families broken on purpose,
and the argument errors of the base classes and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptrl.core.errors import ConfigError, UnknownIdError
from adaptrl.envs import (
    FAMILIES,
    FamilyContractError,
    FamilyEnv,
    GymVectorFamily,
    TaskBatch,
    check_family,
    make_family,
)
from adaptrl.envs.bandit import BernoulliBandit
from adaptrl.envs.base import TaskFamily
from adaptrl.envs.gridworld import GridworldEnv, GridworldGoal
from adaptrl.envs.nav2d import Nav2DEnv, Nav2DGoal
from adaptrl.envs.tabular import TabularEnv, TabularMDP


@pytest.mark.parametrize("family_id", list(FAMILIES))
def test_builtin_families_pass_the_contract(family_id):
    module = FAMILIES.get(family_id).__module__
    if module == "adaptrl.envs.metaworld":
        pytest.skip("checked in tests/test_envs_metaworld.py with few rows (a 20 MB scene each)")
    if module == "adaptrl.envs.mujoco":
        pytest.importorskip("mujoco")  # the optional extra
    check_family(make_family(family_id))


def test_small_configs_pass_the_contract():
    check_family(make_family("gridworld-goal-v0", height=2, width=3, horizon=2), num_envs=3)
    check_family(make_family("nav2d-goal-v0", horizon=5, goal_radius=0.3), num_envs=16)
    check_family(make_family("tabular-mdp-v0", num_states=1, horizon=2), num_envs=1)


def test_one_step_time_limit_passes_despite_check_env():
    # check_env refuses envs that truncate after one step; check_family tolerates exactly that
    check_family(make_family("gridworld-goal-v0", horizon=1))


def test_gym_vector_family_passes_the_contract():
    nav = make_family("nav2d-goal-v0", horizon=10, goal_radius=0.2)
    family = GymVectorFamily(lambda: FamilyEnv(nav), nav.sample_tasks, "nav2d-gym-v0")
    check_family(family, num_envs=4)


# --- families broken on purpose ---------------------------------------------------------------


class Float64RewardEnv(Nav2DEnv):
    def _transition(self, action):
        obs, reward, terminated = super()._transition(action)
        return obs, reward.double(), terminated


class Float64Reward(Nav2DGoal):
    family_id = "broken-float64-reward"

    def make_env(self, num_envs, device="cpu"):
        return Float64RewardEnv(self, num_envs, device)


class LeakySplit(GridworldGoal):
    """Draws train and test goals from all cells: held-out goals leak into training."""

    family_id = "broken-leaky-split"

    def tasks(self, n, split, seed, device="cpu"):
        return TaskFamily.tasks(self, n, split, seed, device)


class LateTruncation(GridworldGoal):
    """Declares a limit of 15 steps but its environments stop at 16."""

    family_id = "broken-late-truncation"

    def make_env(self, num_envs, device="cpu"):
        env = GridworldEnv(self, num_envs, device)
        env.max_episode_steps += 1
        return env


class GlobalRngEnv(TabularEnv):
    def _transition(self, action):
        self.generator.manual_seed(int(torch.randint(2**31, ())))  # global RNG sneaks in
        return super()._transition(action)


class GlobalRng(TabularMDP):
    family_id = "broken-global-rng"

    def make_env(self, num_envs, device="cpu"):
        return GlobalRngEnv(self, num_envs, device)


class NoAutoResetEnv(GridworldEnv):
    """Resets on reset() but leaves ended episodes where they are."""

    _resetting = False

    def reset(self, seed=None):
        self._resetting = True
        try:
            return super().reset(seed)
        finally:
            self._resetting = False

    def _reset_rows(self, mask):
        return super()._reset_rows(mask) if self._resetting else self.state


class NoAutoReset(GridworldGoal):
    family_id = "broken-no-auto-reset"

    def make_env(self, num_envs, device="cpu"):
        return NoAutoResetEnv(self, num_envs, device)


class RandomStartEnv(GridworldEnv):
    def _reset_rows(self, mask):
        start = torch.randint(25, mask.shape, generator=self.generator, device=self.device)
        self.state = torch.where(mask, start, self.state)
        return self.state


class RandomStart(GridworldGoal):
    """Legitimate, if it says so: episodes start in a random cell drawn from env.generator."""

    family_id = "random-start-grid"

    def make_env(self, num_envs, device="cpu"):
        return RandomStartEnv(self, num_envs, device)


class OffGridEnv(GridworldEnv):
    def _transition(self, action):
        obs, reward, terminated = super()._transition(action)
        return obs + 25, reward, terminated


class OffGrid(GridworldGoal):
    family_id = "broken-off-grid"

    def make_env(self, num_envs, device="cpu"):
        return OffGridEnv(self, num_envs, device)


class IgnoresSeed(BernoulliBandit):
    family_id = "broken-ignores-seed"

    def tasks(self, n, split, seed, device="cpu"):
        return super().tasks(n, split, 0, device)


class RaggedTasks(BernoulliBandit):
    family_id = "broken-ragged-tasks"

    def sample_tasks(self, n, generator):
        return TaskBatch({"probs": super().sample_tasks(n, generator).probs[:, :3]})

    def tasks(self, n, split, seed, device="cpu"):
        return TaskBatch(
            {"probs": super().sample_tasks(n, torch.Generator().manual_seed(seed)).probs}
        )


class SqueezedRewardEnv(Nav2DEnv):
    def _transition(self, action):
        obs, reward, terminated = super()._transition(action)
        return obs, reward.squeeze(), terminated  # a 0-d reward when there is one row


class SqueezedReward(Nav2DGoal):
    """Fine with 8 rows; its one-row env (the Gymnasium view) breaks."""

    family_id = "broken-squeezed-reward"

    def make_env(self, num_envs, device="cpu"):
        return SqueezedRewardEnv(self, num_envs, device)


class GoalSuccessEnv(Nav2DEnv):
    """Reports success (the optional channel of BatchedEnv): reaching the goal."""

    as_float = False

    def reset(self, seed=None):
        obs = super().reset(seed)
        self.success = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return obs

    def step(self, action):
        step = super().step(action)
        self.success = step.terminated.float() if self.as_float else step.terminated.clone()
        return step


class GoalSuccess(Nav2DGoal):
    family_id = "nav2d-goal-success"
    reports_success = True

    def make_env(self, num_envs, device="cpu"):
        return GoalSuccessEnv(self, num_envs, device)


class UndeclaredSuccess(GoalSuccess):
    family_id = "broken-undeclared-success"
    reports_success = False


class SilentSuccess(Nav2DGoal):
    family_id = "broken-silent-success"
    reports_success = True


class FloatSuccess(GoalSuccess):
    family_id = "broken-float-success"

    def make_env(self, num_envs, device="cpu"):
        env = GoalSuccessEnv(self, num_envs, device)
        env.as_float = True
        return env


@pytest.mark.parametrize(
    ("family", "message"),
    [
        (Float64Reward(), r"reward must be a torch.float32 tensor"),
        (LeakySplit(), r"both the train and the test split"),
        (LateTruncation(), r"truncated=False after 15 steps"),
        (GlobalRng(), r"differs between two envs with the same tasks"),
        (NoAutoReset(), r"not the first observation of a fresh episode"),
        (OffGrid(), r"lies outside Discrete\(25\)"),
        (IgnoresSeed(), r"seed is ignored"),
        (RaggedTasks(), r"layout"),
        (SqueezedReward(), r"Gymnasium view \(FamilyEnv\) fails check_env"),
        (RandomStart(), r"not the first observation of a fresh episode"),
        (UndeclaredSuccess(), r"env.success is set after reset\(\) but .* reports_success"),
        (SilentSuccess(), r"reports_success is True but env.success is None after reset"),
        (FloatSuccess(), r"env.success after step 0 must be a bool tensor of shape \[8\]"),
    ],
    ids=lambda x: getattr(x, "family_id", ""),
)
def test_check_family_rejects_broken_families(family, message):
    with pytest.raises(FamilyContractError, match=message) as info:
        check_family(family)
    assert isinstance(info.value, AssertionError)
    assert str(info.value).startswith(family.family_id)


def test_a_declared_success_channel_passes_and_reaches_the_gymnasium_view():
    family = GoalSuccess(make_family("nav2d-goal-v0", goal_radius=0.5).config)
    check_family(family)
    env = FamilyEnv(family, task=TaskBatch({"goal": torch.tensor([[0.05, 0.0]])}))
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(np.array([0.1, 0.0], dtype=np.float32))
    assert terminated and info == {"success": True}
    plain = FamilyEnv(make_family("nav2d-goal-v0"))
    plain.reset(seed=0)
    assert plain.step(np.zeros(2, dtype=np.float32))[4] == {}  # no success notion: empty info


def test_auto_reset_check_is_skipped_for_declared_random_starts():
    family = RandomStart()
    family.deterministic_start = False
    check_family(family)


# --- argument errors of the base classes and the registry ------------------------------------


def test_reset_before_set_tasks_and_step_before_reset():
    env = make_family("gridworld-goal-v0").make_env(2)
    with pytest.raises(ConfigError, match="set_tasks"):
        env.reset()
    env.set_tasks(TaskBatch({"goal": torch.tensor([3, 4])}))
    with pytest.raises(ConfigError, match="reset"):
        env.step(torch.zeros(2, dtype=torch.long))


def test_wrong_task_count_and_action_shape():
    env = make_family("nav2d-goal-v0").make_env(2)
    with pytest.raises(ConfigError, match="3 tasks for 2 environments"):
        env.set_tasks(TaskBatch({"goal": torch.zeros(3, 2)}))
    env.set_tasks(TaskBatch({"goal": torch.zeros(2, 2)}))
    env.reset()
    with pytest.raises(ConfigError, match=r"shape \(2,\), expected \(2, 2\)"):
        env.step(torch.zeros(2))
    grid = make_family("gridworld-goal-v0").make_env(1)
    grid.set_tasks(TaskBatch({"goal": torch.tensor([3])}))
    grid.reset()
    with pytest.raises(ConfigError, match="integers"):
        grid.step(torch.tensor([1.0]))


def test_bad_config_values_name_the_option():
    with pytest.raises(ConfigError, match="k must be >= 2, got 1"):
        make_family("bandit-bernoulli-v0", k=1)
    with pytest.raises(ConfigError, match="horizon must be >= 1"):
        make_family("nav2d-goal-v0", horizon=0)


def test_unknown_family_id_suggests_the_nearest():
    with pytest.raises(UnknownIdError, match="Did you mean 'bandit-bernoulli-v0'"):
        make_family("bandit-bernouli-v0")


def test_unknown_config_key_lists_the_options():
    with pytest.raises(ConfigError, match=r"no option\(s\) arms; its options are k, n"):
        make_family("bandit-bernoulli-v0", arms=3)


def test_tasks_rejects_bad_split_and_count():
    for family_id in FAMILIES:
        family = make_family(family_id)
        with pytest.raises(ConfigError, match="split"):
            family.tasks(2, "val", 0)
        with pytest.raises(ConfigError, match="number of tasks"):
            family.tasks(0, "train", 0)
