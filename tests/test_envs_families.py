"""Task distributions and exact dynamics of the built-in families.

Statistical tolerances are several standard errors wide (stated next to each), so the tests are
stable under the fixed seeds yet would catch a wrong distribution.
"""

from __future__ import annotations

import math

import pytest
import torch

from adaptrl.core.errors import ConfigError
from adaptrl.envs import TaskBatch, make_family
from adaptrl.envs.check import check_family
from adaptrl.envs.gridworld import GridworldConfig, GridworldGoal


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def run(env, actions: list) -> list:
    return [env.step(torch.as_tensor(a)) for a in actions]


# --- bandit-bernoulli-v0 ----------------------------------------------------------------------


def test_bandit_probs_are_uniform():
    fam = make_family("bandit-bernoulli-v0", k=5)
    probs = fam.sample_tasks(10_000, gen()).probs
    assert probs.shape == (10_000, 5)
    assert probs.min() >= 0 and probs.max() <= 1
    # U[0,1]: mean 0.5 (s.e. 0.0013 over 50k draws), variance 1/12
    assert probs.mean().item() == pytest.approx(0.5, abs=0.02)
    assert probs.var().item() == pytest.approx(1 / 12, abs=0.005)
    # arms are independent: correlation between arm 0 and arm 1 near 0 (s.e. 0.01)
    corr = torch.corrcoef(probs[:, :2].T)[0, 1].item()
    assert abs(corr) < 0.05


def test_bandit_reward_frequency_matches_arm_probability():
    fam = make_family("bandit-bernoulli-v0", k=5)
    p = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.95])
    b = 4000
    env = fam.make_env(b)
    env.set_tasks(TaskBatch({"probs": p.expand(b, 5).clone()}))
    assert torch.equal(env.reset(seed=1), torch.zeros(b, dtype=torch.long))
    arm = torch.arange(b) % 5
    total = torch.zeros(5)
    for _ in range(20):
        s = env.step(arm)
        assert s.terminated.all() and not s.truncated.any()
        assert set(s.reward.unique().tolist()) <= {0.0, 1.0}
        total += torch.zeros(5).index_add_(0, arm, s.reward)
    freq = total / (20 * b / 5)  # 16000 pulls per arm: s.e. <= 0.004
    assert torch.allclose(freq, p, atol=0.02), freq


# --- tabular-mdp-v0 ---------------------------------------------------------------------------


def test_tabular_task_distribution():
    fam = make_family("tabular-mdp-v0", num_states=10, num_actions=5)
    tasks = fam.sample_tasks(2000, gen())
    r, p = tasks.reward_mean, tasks.transition
    assert r.shape == (2000, 10, 5) and p.shape == (2000, 10, 5, 10)
    # reward means ~ N(1, 1): 100k draws, s.e. 0.003 (mean) and ~0.002 (std)
    assert r.mean().item() == pytest.approx(1.0, abs=0.03)
    assert r.std().item() == pytest.approx(1.0, abs=0.03)
    # every transition row is a distribution
    assert (p >= 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(2000, 10, 5), atol=1e-5)
    # Dirichlet(1,...,1) marginals: mean 1/S, variance (1/S)(1 - 1/S)/(S + 1)
    assert p.mean().item() == pytest.approx(0.1, abs=1e-4)  # exact up to round-off (rows sum to 1)
    assert p[..., 0].mean().item() == pytest.approx(0.1, abs=0.005)
    assert p[..., 0].var().item() == pytest.approx(0.1 * 0.9 / 11, rel=0.05)


def test_tabular_non_flat_dirichlet_marginal_mean():
    fam = make_family("tabular-mdp-v0", num_states=4, num_actions=2, dirichlet_alpha=0.5)
    p = fam.sample_tasks(2000, gen()).transition
    assert torch.allclose(p.sum(-1), torch.ones(2000, 4, 2), atol=1e-5)
    # Dirichlet(0.5 x 4): marginal mean 1/4, variance (1/4)(3/4)/(2 + 1) = 0.0625
    assert p[..., 0].mean().item() == pytest.approx(0.25, abs=0.01)
    assert p[..., 0].var().item() == pytest.approx(0.0625, rel=0.1)


def test_tabular_reward_noise_states_and_transition_frequencies():
    fam = make_family("tabular-mdp-v0", num_states=6, num_actions=3, horizon=4)
    b = 3000
    task = fam.sample_tasks(1, gen(3))
    tasks = TaskBatch({k: v.expand(b, *v.shape[1:]).clone() for k, v in task.params.items()})
    env = fam.make_env(b)
    env.set_tasks(tasks)
    env.reset(seed=0)
    noise, counts = [], torch.zeros(6)
    for t in range(8):
        state = env.state.clone()
        s = env.step(torch.zeros(b, dtype=torch.long))
        assert s.final_obs.min() >= 0 and s.final_obs.max() < 6 and s.obs.dtype == torch.long
        noise.append(s.reward - task.reward_mean[0, state, 0])
        assert bool(s.truncated.all()) == ((t + 1) % 4 == 0) and not s.terminated.any()
        if t == 0:  # every row starts in state 0: next-state frequencies follow P[0, 0]
            counts = torch.bincount(s.final_obs, minlength=6).float() / b
    noise = torch.cat(noise)  # 24k draws of N(0, 1): s.e. 0.006
    assert noise.mean().item() == pytest.approx(0.0, abs=0.03)
    assert noise.std().item() == pytest.approx(1.0, abs=0.03)
    # s.e. of a frequency <= sqrt(0.25 / 3000) = 0.009
    assert torch.allclose(counts, task.transition[0, 0, 0], atol=0.04)


def test_tabular_config_errors():
    with pytest.raises(ConfigError, match="num_actions"):
        make_family("tabular-mdp-v0", num_actions=1)
    with pytest.raises(ConfigError, match="dirichlet_alpha"):
        make_family("tabular-mdp-v0", dirichlet_alpha=0.0)


# --- nav2d-goal-v0 ----------------------------------------------------------------------------


def test_nav2d_goals_fill_the_box():
    fam = make_family("nav2d-goal-v0")
    goal = fam.sample_tasks(10_000, gen()).goal
    assert goal.shape == (10_000, 2)
    assert goal.min() >= -0.5 and goal.max() <= 0.5
    assert goal.min() < -0.49 and goal.max() > 0.49  # reaches the corners
    assert torch.allclose(goal.mean(0), torch.zeros(2), atol=0.02)  # s.e. 0.003
    shifted = (
        make_family("nav2d-goal-v0", goal_low=0.2, goal_high=0.3).sample_tasks(1000, gen()).goal
    )
    assert shifted.min() >= 0.2 and shifted.max() <= 0.3


def nav_env(goals, **config):
    fam = make_family("nav2d-goal-v0", **config)
    env = fam.make_env(len(goals))
    env.set_tasks(TaskBatch({"goal": torch.tensor(goals)}))
    env.reset()
    return env


def test_nav2d_distance_reward_and_clipping():
    env = nav_env([[0.3, 0.4], [0.3, 0.4]])
    s = env.step(torch.tensor([[0.1, 0.0], [5.0, -5.0]]))  # row 1 is clipped to (0.1, -0.1)
    assert torch.allclose(s.obs, torch.tensor([[0.1, 0.0], [0.1, -0.1]]))
    expected = -torch.tensor([math.sqrt(0.2**2 + 0.4**2), math.sqrt(0.2**2 + 0.5**2)])
    assert torch.allclose(s.reward, expected)
    assert s.reward.dtype == torch.float32 and not s.terminated.any()


def test_nav2d_squared_reward():
    env = nav_env([[0.3, 0.4]], reward="squared")
    s = env.step(torch.tensor([[0.1, 0.0]]))
    assert s.reward.item() == pytest.approx(-(0.2**2 + 0.4**2), abs=1e-6)


def test_nav2d_terminates_within_goal_radius_and_resets():
    env = nav_env([[0.1, 0.0], [0.1, 0.0]])
    s = env.step(torch.tensor([[0.1, 0.005], [0.1, 0.011]]))  # 0.005 and 0.011 from the goal
    assert s.terminated.tolist() == [True, False]
    assert not s.truncated.any()
    assert torch.allclose(s.final_obs[0], torch.tensor([0.1, 0.005]))
    assert torch.equal(s.obs[0], torch.zeros(2))  # same-step auto-reset to the origin
    assert torch.equal(s.obs[1], s.final_obs[1])


def test_nav2d_box_goal_region_terminates_in_the_square_corners():
    # (0.008, 0.008) from the goal: 0.0113 away, outside the disc but inside the box
    moves = torch.tensor([[0.1, 0.0], [0.1, 0.003], [0.092, -0.008]])
    disc = nav_env([[0.092, -0.008]] * 3).step(moves)
    box = nav_env([[0.092, -0.008]] * 3, goal_region="box").step(moves)
    assert disc.terminated.tolist() == [False, False, True]
    assert box.terminated.tolist() == [True, False, True]
    assert torch.equal(box.reward, disc.reward)  # the reward does not depend on the region


def test_nav2d_truncates_at_horizon():
    env = nav_env([[0.4, 0.4]], horizon=3)
    flags = [(s.terminated.item(), s.truncated.item()) for s in run(env, [[[-0.1, 0.0]]] * 4)]
    assert flags == [(False, False), (False, False), (False, True), (False, False)]


def test_nav2d_config_errors():
    with pytest.raises(ConfigError, match="goal_low"):
        make_family("nav2d-goal-v0", goal_low=1.0, goal_high=0.0)
    with pytest.raises(ConfigError, match="reward"):
        make_family("nav2d-goal-v0", reward="l1")
    with pytest.raises(ConfigError, match="goal_region"):
        make_family("nav2d-goal-v0", goal_region="circle")


# --- gridworld-goal-v0 ------------------------------------------------------------------------

STAY, UP, RIGHT, DOWN, LEFT = range(5)


def grid_env(goal: int, **config):
    fam = make_family("gridworld-goal-v0", **config)
    env = fam.make_env(1)
    env.set_tasks(TaskBatch({"goal": torch.tensor([goal])}))
    env.reset()
    return env


def cells(steps) -> list[int]:
    return [s.final_obs.item() for s in steps]


def test_gridworld_moves_and_grid_edges():
    env = grid_env(goal=24)
    path = cells(run(env, [[UP], [LEFT], [RIGHT], [DOWN], [STAY], [RIGHT], [DOWN], [LEFT]]))
    # (0,0): up and left are blocked; right -> 1; down -> 6; stay; right -> 7; down -> 12; left -> 11
    assert path == [0, 0, 1, 6, 6, 7, 12, 11]


def test_gridworld_walls_block_moves():
    env = grid_env(goal=24, walls=((0, 1), (2, 0)))
    assert cells(run(env, [[RIGHT], [DOWN], [DOWN], [RIGHT], [UP]])) == [0, 5, 5, 6, 6]


def test_gridworld_four_rooms_layout():
    """Walls across the middle row and down the middle column, two doorways each; the rooms
    connect only through them, and the family keeps the environment contract."""
    config = GridworldConfig(height=9, width=9, layout="four-rooms")
    walls = config.blocked()
    assert walls == ({(r, 4) for r in range(9)} | {(4, c) for c in range(9)}) - {
        (2, 4),
        (6, 4),
        (4, 2),
        (4, 6),
    }
    fam = GridworldGoal(config)
    assert fam.walls.sum().item() == len(walls) == 13
    assert len(fam.goal_cells) == 81 - 13 - 1  # every free cell but the start
    check_family(fam, num_envs=4)
    # from (0,3) right is the wall; down to (2,3), then right through the doorway (2,4) to (2,5)
    env = grid_env(goal=80, height=9, width=9, layout="four-rooms", start=(0, 3))
    assert cells(run(env, [[RIGHT], [DOWN], [DOWN], [RIGHT], [RIGHT]])) == [3, 12, 21, 22, 23]
    # explicit walls add to the layout's
    assert GridworldConfig(
        height=9, width=9, layout="four-rooms", walls=((0, 0),), start=(1, 1)
    ).blocked() == walls | {(0, 0)}


def test_gridworld_reward_on_goal_and_staying():
    env = grid_env(goal=1)
    steps = run(env, [[DOWN], [RIGHT], [UP], [STAY], [LEFT], [RIGHT]])
    assert [s.reward.item() for s in steps] == [0.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert not any(s.terminated.item() for s in steps)


def test_gridworld_truncates_at_horizon_and_restarts():
    env = grid_env(goal=24, horizon=3, start=(1, 1))
    steps = run(env, [[RIGHT]] * 4)
    assert [s.truncated.item() for s in steps] == [False, False, True, False]
    assert steps[2].final_obs.item() == 9  # (1,4)
    assert steps[2].obs.item() == 6  # back at the start (1,1)
    assert steps[3].obs.item() == 7


def test_gridworld_step_is_batched_over_rows():
    fam = make_family("gridworld-goal-v0", height=3, width=4)
    env = fam.make_env(4)
    env.set_tasks(TaskBatch({"goal": torch.tensor([1, 4, 5, 11])}))
    assert env.reset().tolist() == [0, 0, 0, 0]
    s = env.step(torch.tensor([RIGHT, DOWN, STAY, LEFT]))
    assert s.obs.tolist() == [1, 4, 0, 0]
    assert s.reward.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_gridworld_split_is_a_reproducible_partition():
    fam = GridworldGoal(GridworldConfig(walls=((2, 2),), test_fraction=0.25))
    train, test = set(fam.train_cells.tolist()), set(fam.test_cells.tolist())
    candidates = set(range(25)) - {0, 12}
    assert train | test == candidates and not train & test
    assert len(test) == round(0.25 * 23)
    again = GridworldGoal(GridworldConfig(walls=((2, 2),), test_fraction=0.25))
    assert set(again.test_cells.tolist()) == test
    other = GridworldGoal(GridworldConfig(walls=((2, 2),), test_fraction=0.25, split_seed=1))
    assert set(other.test_cells.tolist()) != test
    # tasks of a split only use its cells, whatever the sampling seed
    for seed in range(3):
        assert set(fam.tasks(500, "train", seed).goal.tolist()) == train  # 500 draws hit all 18
        assert set(fam.tasks(200, "test", seed).goal.tolist()) == test
    assert fam.tasks(50, "train", 7).equal(fam.tasks(50, "train", 7))
    assert not fam.tasks(50, "train", 7).equal(fam.tasks(50, "train", 8))


def test_gridworld_small_split_keeps_one_cell_each_side():
    fam = make_family("gridworld-goal-v0", height=2, width=2, walls=((1, 1),), test_fraction=0.9)
    assert len(fam.train_cells) == 1 and len(fam.test_cells) == 1


def test_gridworld_sample_tasks_is_uniform_over_all_goal_cells():
    fam = make_family("gridworld-goal-v0")
    goals = fam.sample_tasks(24_000, gen()).goal
    counts = torch.bincount(goals, minlength=25).float()
    assert counts[0] == 0  # never the start
    assert torch.allclose(counts[1:] / 24_000, torch.full((24,), 1 / 24), atol=0.006)  # s.e. 0.0013


def test_gridworld_tabular_model_matches_env_and_value_iteration():
    fam = make_family("gridworld-goal-v0", walls=((1, 1), (1, 2)), horizon=10)
    assert fam.initial_state == 0
    tasks = TaskBatch({"goal": torch.tensor([13, 24, 3])})
    p, r = fam.tabular_model(tasks)
    assert p.shape == (3, 25, 5, 25) and r.shape == (3, 25, 5)
    assert torch.equal(p.sum(-1), torch.ones(3, 25, 5))
    nxt = p.argmax(-1)
    assert torch.equal(nxt[0], fam.move_table)
    assert torch.equal(r, (nxt == tasks.goal.view(3, 1, 1)).float())
    # finite-horizon value iteration: optimal return = horizon - shortest path + 1 (goal reward
    # is paid from the step that reaches it on); 13=(2,3) is 5 moves away around the wall
    v = torch.zeros(3, 25)
    for _ in range(10):
        v = (r + torch.einsum("nsat,nt->nsa", p, v)).max(-1).values
    assert v[:, fam.initial_state].tolist() == [10 - 5 + 1, 10 - 8 + 1, 10 - 3 + 1]


def test_tabular_mdp_declares_its_initial_state():
    assert make_family("tabular-mdp-v0").initial_state == 0


def test_gridworld_varibad_protocol():
    fam = make_family("gridworld-goal-v0", step_reward=-0.1, goal_exclusion=2, test_fraction=0)
    c = fam.config
    assert (c.height, c.width, c.start, c.horizon, c.n) == (5, 5, (0, 0), 15, 4)
    block = {0, 1, 5, 6}
    assert sorted(fam.goal_cells.tolist()) == [s for s in range(25) if s not in block]
    assert torch.equal(fam.train_cells, fam.test_cells)
    tasks = fam.tasks(2000, "test", seed=0)
    assert set(tasks.goal.tolist()) == set(fam.goal_cells.tolist())
    env = fam.make_env(2)
    env.set_tasks(TaskBatch({"goal": torch.tensor([2, 24])}))
    env.reset()
    step = env.step(torch.tensor([2, 2]))  # right: row 0 col 1 -> col 1; goal 2 is col 2
    assert step.reward.tolist() == pytest.approx([-0.1, -0.1])
    step = env.step(torch.tensor([2, 2]))
    assert step.reward.tolist() == pytest.approx([1.0, -0.1])
    step = env.step(torch.tensor([0, 0]))  # staying on the goal keeps paying
    assert step.reward.tolist() == pytest.approx([1.0, -0.1])
    _, r = fam.tabular_model(TaskBatch({"goal": torch.tensor([2])}))
    assert r[0, 1, 2].item() == 1.0 and r[0, 0, 0].item() == pytest.approx(-0.1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"height": 1}, "height"),
        ({"width": 0}, "width"),
        ({"start": (5, 0)}, "start"),
        ({"walls": ((0, 7),)}, "wall"),
        ({"walls": ((0, 0),)}, "start .* is a wall"),
        ({"height": 2, "width": 2, "walls": ((1, 1), (0, 1))}, "at least 2"),
        ({"walls": ((0, 1), (1, 0))}, "cannot be reached"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"step_reward": 1.0}, "step_reward"),
        ({"goal_exclusion": 0}, "goal_exclusion"),
        ({"height": 3, "width": 3, "goal_exclusion": 3}, "only 0 goal cell"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"horizon": 0}, "horizon"),
        ({"n": 0}, "n must be >= 1, got 0"),
        ({"height": 4, "layout": "four-rooms"}, "four-rooms layout needs a grid of at least 5x5"),
        ({"height": 9, "width": 9, "layout": "four-rooms", "start": (4, 4)}, "start .* is a wall"),
    ],
)
def test_gridworld_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_family("gridworld-goal-v0", **overrides)
