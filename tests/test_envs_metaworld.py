"""Meta-World families (metaworld-ml1-v0, metaworld-ml10-v0): declared without metaworld, the
official train/test split, metaworld's pitfalls, success, determinism, row sharding, the missing
extra. Tests that step Meta-World skip when the extra is not installed; the ML10 benchmark is
built once per process (the families cache it) and shared through module-scoped fixtures."""

from __future__ import annotations

import subprocess
import sys
import types
from collections import Counter

import numpy as np
import pytest
import torch

from adaptrl.core.distributed import Rows
from adaptrl.core.errors import ConfigError, MissingExtraError
from adaptrl.core.seeding import derive_seed
from adaptrl.envs import FAMILIES, FamilyEnv, TaskBatch, check_family, make_family
from adaptrl.envs.metaworld import (
    ML10_TEST,
    ML10_TRAIN,
    V3_TASKS,
    MetaWorldFamily,
    official_tasks,
)

NEEDS_METAWORLD = "the metaworld extra is not installed (pip install 'adaptrl[metaworld]')"


def needs_metaworld():
    return pytest.importorskip("metaworld", reason=NEEDS_METAWORLD)


@pytest.fixture(scope="module")
def ml1() -> MetaWorldFamily:
    needs_metaworld()
    family = make_family("metaworld-ml1-v0")
    family.official()  # build once for the module
    return family


@pytest.fixture(scope="module")
def ml10() -> MetaWorldFamily:
    needs_metaworld()
    family = make_family("metaworld-ml10-v0")
    family.official()  # ~10-20 s, once per process
    return family


def goals_of(official, split, name) -> set[bytes]:
    return {row.tobytes() for row in official.goals[split][name]}


def vectors(tasks) -> list[bytes]:
    """The goal vectors (metaworld's rand_vec) of metaworld Task objects, as comparable bytes."""
    from adaptrl.envs.metaworld import _goal_vector

    return [_goal_vector(t).tobytes() for t in tasks]


# --- declared without metaworld -------------------------------------------------------------------


def test_families_are_registered_with_meta_worlds_shapes():
    for fid in ("metaworld-ml1-v0", "metaworld-ml10-v0"):
        assert fid in FAMILIES
        fam = make_family(fid)
        assert fam.max_episode_steps == 500 and fam.episodes_per_trial == 10
        assert fam.observation_space.shape == (39,) and fam.observation_space.dtype == np.float32
        assert fam.action_space.shape == (4,)
        assert (fam.action_space.low == -1).all() and (fam.action_space.high == 1).all()
        assert fam.reports_success and fam.deterministic_start
    assert make_family("metaworld-ml1-v0").config.task == "reach-v3"
    assert make_family("metaworld-ml1-v0", task="pick-place-v3").classes("test") == (
        "pick-place-v3",
    )


def test_declaring_and_drawing_tasks_does_not_import_metaworld():
    code = (
        "import sys; from adaptrl.envs import make_family; "
        "[make_family(f).tasks(30, s, 0) for f in ('metaworld-ml1-v0', 'metaworld-ml10-v0') "
        "for s in ('train', 'test')]; "
        "print('metaworld' in sys.modules, 'mujoco' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_class_lists_are_meta_worlds_v3_names():
    assert len(set(V3_TASKS)) == 50 and list(V3_TASKS) == sorted(V3_TASKS)
    assert len(ML10_TRAIN) == 10 and len(ML10_TEST) == 5
    assert set(ML10_TRAIN) <= set(V3_TASKS) and set(ML10_TEST) <= set(V3_TASKS)
    assert not set(ML10_TRAIN) & set(ML10_TEST)


@pytest.mark.parametrize(
    ("name", "nearest"),
    [("reech-v3", "reach-v3"), ("push-v2", "push-v3"), ("pick-and-place-v3", "pick-place-v3")],
)
def test_unknown_task_is_a_config_error_naming_the_nearest(name, nearest):
    with pytest.raises(ConfigError, match=f"unknown Meta-World task '{name}'.*'{nearest}'") as info:
        make_family("metaworld-ml1-v0", task=name)
    assert "window-open-v3" in str(info.value)  # the known tasks are listed


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="horizon"):
        make_family("metaworld-ml1-v0", horizon=501)  # Meta-World's envs stop at 500
    with pytest.raises(ConfigError, match="test_goals"):
        make_family("metaworld-ml10-v0", test_goals=51)
    with pytest.raises(ConfigError, match="benchmark_seed"):
        make_family("metaworld-ml10-v0", benchmark_seed=-1)


def test_draws_are_class_balanced_reproducible_and_within_the_split():
    fam = make_family("metaworld-ml10-v0")
    train = fam.tasks(40, "train", 3)
    assert train.equal(fam.tasks(40, "train", 3)) and not train.equal(fam.tasks(40, "train", 4))
    names = [V3_TASKS[e] for e in train.env.tolist()]
    for block in range(4):  # every block of 10 rows holds each training class once
        assert sorted(names[10 * block : 10 * block + 10]) == sorted(ML10_TRAIN)
    assert names[:10] != names[10:20]  # in a fresh order per block
    assert train.split.tolist() == [0] * 40
    test = fam.tasks(23, "test", 3)
    counts = Counter(V3_TASKS[e] for e in test.env.tolist())
    assert set(counts) == set(ML10_TEST) and sorted(counts.values()) == [4, 4, 5, 5, 5]
    assert test.split.tolist() == [1] * 23
    many_train, many_test = fam.tasks(4000, "train", 0), fam.tasks(4000, "test", 0)
    assert many_train.goal.unique().tolist() == list(range(50))
    assert many_test.goal.unique().tolist() == list(range(40))  # Meta-World's 40 test goals
    assert all(t.dtype == torch.int64 for t in train.params.values())
    # sample_tasks is the family's distribution as meta-training sees it: the train classes
    gen = torch.Generator().manual_seed(0)
    assert {V3_TASKS[e] for e in fam.sample_tasks(50, gen).env.tolist()} == set(ML10_TRAIN)


def test_without_metaworld_building_envs_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "metaworld", None)  # makes `import metaworld` fail
    # a benchmark seed no other test builds, so the per-process cache cannot answer
    fam = make_family("metaworld-ml1-v0", benchmark_seed=424242)
    assert len(fam.tasks(3, "train", 0)) == 3  # declaring and drawing still work
    for build in (lambda: fam.make_env(2), lambda: fam.task_keys(fam.tasks(2, "train", 0))):
        with pytest.raises(MissingExtraError, match=r"pip install 'adaptrl\[metaworld\]'") as info:
            build()
        assert isinstance(info.value, ImportError) and "metaworld-ml1-v0" in str(info.value)


def test_an_old_metaworld_is_refused_with_the_upgrade_command(monkeypatch):
    old = types.SimpleNamespace(__version__="2.0.0", ML1=object)  # no ML10, no v3 tasks
    monkeypatch.setitem(sys.modules, "metaworld", old)
    fam = make_family("metaworld-ml10-v0", benchmark_seed=434343)  # not in the cache
    with pytest.raises(ConfigError, match=r"needs metaworld>=3.0 .*found 2.0.0.*pip install -U"):
        fam.make_env(1)


def test_evaluation_rounds_visit_every_test_goal_once():
    ml10 = make_family("metaworld-ml10-v0")
    rounds = ml10.evaluation_rounds(20)
    assert len(rounds) == 10 and all(len(r) == 20 for r in rounds)
    seen = Counter(
        (e, g) for r in rounds for e, g in zip(r.env.tolist(), r.goal.tolist(), strict=True)
    )
    assert len(seen) == 5 * 40 and set(seen.values()) == {1}
    assert {V3_TASKS[e] for e, _ in seen} == set(ML10_TEST)
    assert all(r.split.tolist() == [1] * 20 for r in rounds)
    # ML1: 20 rows of one class, 40 goals: two rounds
    assert len(make_family("metaworld-ml1-v0").evaluation_rounds(20)) == 2
    with pytest.raises(ConfigError, match="multiple of 5"):
        ml10.evaluation_rounds(21)
    with pytest.raises(ConfigError, match=r"set test_goals to a multiple of 4 .*uses 40"):
        make_family("metaworld-ml10-v0", test_goals=50).evaluation_rounds(20)


# --- the official split and metaworld's pitfalls --------------------------------------------------


def test_ml1_tasks_are_metaworlds_own_train_and_test_tasks(ml1):
    metaworld = needs_metaworld()
    bench = metaworld.ML1("reach-v3", seed=0)  # built independently of the family's cache
    train, test = ml1.tasks(300, "train", 0), ml1.tasks(300, "test", 0)
    assert vectors(ml1.task_objects(train)) == [
        vectors(bench.train_tasks)[g] for g in train.goal.tolist()
    ]
    assert vectors(ml1.task_objects(test)) == [
        vectors(bench.test_tasks)[g] for g in test.goal.tolist()
    ]
    # held-out goals never appear in train draws
    assert not set(vectors(ml1.task_objects(train))) & set(vectors(bench.test_tasks))
    keys_train = {r.numpy().tobytes() for r in ml1.task_keys(train)}
    keys_test = {r.numpy().tobytes() for r in ml1.task_keys(test)}
    assert not keys_train & keys_test


def test_ml10_split_is_metaworlds_with_held_out_classes(ml10):
    metaworld = needs_metaworld()
    official = ml10.official()
    bench = official.benchmark
    assert isinstance(bench, metaworld.ML10)
    assert tuple(bench.train_classes) == ML10_TRAIN and tuple(bench.test_classes) == ML10_TEST
    assert set(metaworld.env_dict.ALL_V3_ENVIRONMENTS) == set(V3_TASKS)
    train, test = ml10.tasks(200, "train", 1), ml10.tasks(200, "test", 1)
    train_goals, test_goals = vectors(bench.train_tasks), vectors(bench.test_tasks)
    cases = [(train, bench.train_tasks, ML10_TRAIN), (test, bench.test_tasks, ML10_TEST)]
    for tasks, pool, classes in cases:
        objects = ml10.task_objects(tasks)
        assert {t.env_name for t in objects} == set(classes)
        for t, e, g in zip(objects, tasks.env.tolist(), tasks.goal.tolist(), strict=True):
            assert t == [p for p in pool if p.env_name == V3_TASKS[e]][g]  # the same object data
    assert not set(vectors(ml10.task_objects(train))) & set(test_goals)
    assert set(vectors(ml10.task_objects(train))) <= set(train_goals)


def test_make_vec_ml1_train_still_returns_the_test_goals(ml1):
    """metaworld 3.1.1's ``Meta-World/ML1-train`` entry point binds ``split`` late, so it builds
    the *test* goals: why the families build benchmarks with ``metaworld.ML1`` instead."""
    needs_metaworld()
    import gymnasium as gym

    envs = gym.make_vec("Meta-World/ML1-train", env_name="reach-v3", seed=0, meta_batch_size=1)
    try:
        got = set(vectors(envs.envs[0].get_wrapper_attr("tasks")))
    finally:
        envs.close()
    official = ml1.official()  # benchmark_seed 0, like seed=0 above
    assert got == goals_of(official, "test", "reach-v3"), (
        "metaworld's make_vec('Meta-World/ML1-train') no longer returns ML1's test goals: "
        "the pitfall is fixed, update this test and docs/architecture.md"
    )
    assert not got & goals_of(official, "train", "reach-v3")


def test_meta_worlds_evaluation_needs_40_goals_per_test_class(ml10, monkeypatch):
    """metaworld's own test envs for a meta-batch of 20 refuse ML10's 50 goals per test class;
    with 40 they give each row the goals :meth:`evaluation_rounds` gives it."""
    metaworld = needs_metaworld()
    import gymnasium as gym

    # capture each row's goal list instead of building 20 MuJoCo scenes
    monkeypatch.setattr(
        gym.vector, "SyncVectorEnv", lambda fns, **_: [fn.keywords["tasks"] for fn in fns]
    )
    bench = ml10.official().benchmark
    with pytest.raises(AssertionError, match="Invalid division of subtasks"):
        metaworld._make_ml_envs_inner(bench, meta_batch_size=20, split="test")
    rows = metaworld._make_ml_envs_inner(
        bench, meta_batch_size=20, split="test", total_tasks_per_cls=40
    )
    rounds = ml10.evaluation_rounds(20)
    for r, row_tasks in enumerate(rows):
        ours = ml10.task_objects(TaskBatch.cat([batch[r] for batch in rounds]))
        assert vectors(ours) == vectors(row_tasks)


def test_ml1_test_goals_of_one_benchmark_seed_are_the_train_goals_of_the_next(ml1):
    """metaworld makes ML1's test goals with seed + 1, so the benchmark seed must travel with a
    model (it is in the family config): evaluated with seed - 1 it would be tested on its
    training goals."""
    needs_metaworld()
    other = make_family("metaworld-ml1-v0", benchmark_seed=1).official()
    official = ml1.official()
    assert goals_of(official, "test", "reach-v3") == goals_of(other, "train", "reach-v3")
    assert not goals_of(official, "train", "reach-v3") & goals_of(other, "train", "reach-v3")


def test_goals_depend_on_the_benchmark_seed_only(ml1):
    """Every process of a distributed run builds the same goals: NumPy's global state, which
    metaworld seeds and restores around goal generation, does not leak in."""
    needs_metaworld()
    state = np.random.get_state()
    try:
        np.random.seed(12345)
        rebuilt = official_tasks.__wrapped__("reach-v3", 0)  # bypass the cache
    finally:
        np.random.set_state(state)
    for split in ("train", "test"):
        assert np.array_equal(
            rebuilt.goals[split]["reach-v3"], ml1.official().goals[split]["reach-v3"]
        )


def test_import_metaworld_without_packaging_names_the_extra():
    needs_metaworld()
    code = (
        "import sys; from adaptrl.envs import make_family\n"
        "for m in [m for m in sys.modules if m == 'packaging' or m.startswith('packaging.')]:\n"
        "    sys.modules[m] = None\n"
        "sys.modules['packaging'] = sys.modules['packaging.version'] = None\n"
        "try:\n"
        "    make_family('metaworld-ml1-v0').make_env(1)\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith(
        "MissingExtraError metaworld-ml1-v0 needs the optional package 'packaging'"
    )
    assert "pip install 'adaptrl[metaworld]'" in out


# --- the contract, success, determinism, sharding (metaworld) --------------------------------------


def test_ml1_reach_passes_the_contract_at_meta_worlds_horizon(ml1):
    check_family(ml1, num_envs=2)  # 1001 steps: truncation at 500, auto-reset, the Gymnasium view


def test_ml10_passes_the_contract_on_every_training_class(ml10):
    family = make_family("metaworld-ml10-v0", horizon=20)  # same benchmark, shorter episodes
    check_family(family, num_envs=10)  # the first 10 draws hold all 10 training classes


def run(env, tasks, actions, seed=0):
    """Observations, rewards, flags and success of ``actions`` on ``tasks`` from ``reset(seed)``."""
    env.set_tasks(tasks)
    out = [env.reset(seed=seed)]
    for a in actions:
        step = env.step(a)
        out += [*step, env.success.clone()]
    return out


def test_rows_run_the_official_metaworld_env_of_their_task(ml10):
    """Each row steps exactly as metaworld's own env with the official task set."""
    tasks = TaskBatch.cat([ml10.tasks(10, "train", 5)[:2], ml10.tasks(10, "test", 5)[:1]])
    actions = torch.rand((30, 3, 4), generator=torch.Generator().manual_seed(1)) * 2.4 - 1.2
    env = ml10.make_env(3)
    try:
        out = run(env, tasks, actions)
    finally:
        env.close()
    official = ml10.official()
    for row, task in enumerate(ml10.task_objects(tasks)):
        ref = official.env_classes[task.env_name]()
        ref.set_task(task)
        obs = [ref.reset()[0]]
        rewards, successes = [], []
        for a in actions[:, row].numpy():
            o, r, _, _, info = ref.step(a)
            obs.append(o)
            rewards.append(r)
            successes.append(info["success"] > 0)
        ref.close()
        assert torch.equal(out[0][row], torch.tensor(obs[0], dtype=torch.float32))
        finals = torch.stack([out[1 + 6 * t + 4][row] for t in range(30)])
        assert torch.equal(finals, torch.tensor(np.stack(obs[1:]), dtype=torch.float32))
        got_rewards = torch.stack([out[1 + 6 * t + 1][row] for t in range(30)])
        assert torch.equal(got_rewards, torch.tensor(rewards, dtype=torch.float32))
        assert [bool(out[1 + 6 * t + 5][row]) for t in range(30)] == successes


def reach_actions(family, tasks, obs):
    """Move the hand toward each row's (hidden) reach goal: the goal is the last 3 numbers of the
    task's goal vector, the hand's position the first 3 of the observation."""
    goal_vectors = family.official().goals["train"]
    rows = zip(tasks.env.tolist(), tasks.goal.tolist(), strict=True)
    goals = torch.tensor(np.stack([goal_vectors[V3_TASKS[e]][g][-3:] for e, g in rows]))
    xyz = ((goals.float() - obs[:, :3]) * 50).clamp(-1, 1)
    return torch.cat([xyz, torch.zeros(len(xyz), 1)], dim=1)  # the gripper stays as it is


def test_success_is_reported_and_can_end_episodes(ml1):
    tasks = ml1.tasks(2, "train", 0)
    env = ml1.make_env(2)
    try:
        env.set_tasks(tasks)
        obs = env.reset(seed=0)
        assert env.success is not None and not env.success.any()
        seen = torch.zeros(2, dtype=torch.bool)
        for _ in range(150):
            step = env.step(reach_actions(ml1, tasks, obs))
            seen |= env.success
            obs = step.obs
            assert not step.terminated.any()  # training episodes run the whole horizon
        assert seen.all()
        assert env.success.all() and (step.reward > 9).all()  # at the goal: reward near 10
        # one step from the start is not a success
        env.reset(seed=0)
        step = env.step(torch.zeros(2, 4))
        assert not env.success.any()
    finally:
        env.close()
    ending = make_family("metaworld-ml1-v0", terminate_on_success=True)
    env = ending.make_env(2)
    try:
        env.set_tasks(tasks)
        first = obs = env.reset(seed=0)
        steps = 0
        while not env.success.any() and steps < 150:
            step = env.step(reach_actions(ending, tasks, obs))
            obs, steps = step.obs, steps + 1
        assert torch.equal(step.terminated, env.success) and not step.truncated.any()
        done = step.terminated.nonzero().squeeze(1)
        assert len(done) and steps < 150
        assert torch.equal(step.obs[done], first[done])  # the next episode started
        assert (env.elapsed[done] == 0).all()
    finally:
        env.close()


def test_the_gymnasium_view_puts_success_in_info(ml1):
    tasks = ml1.tasks(1, "train", 0)
    view = FamilyEnv(ml1, task=tasks)
    try:
        obs, info = view.reset(seed=0)
        assert info == {}
        successes = []
        for _ in range(150):
            action = reach_actions(ml1, tasks, torch.from_numpy(obs)[None])[0].numpy()
            obs, _, _, _, info = view.step(action)
            successes.append(info["success"])
        assert all(isinstance(s, bool) for s in successes) and successes[-1] and not successes[0]
    finally:
        view.close()


def test_rebinding_rows_to_other_classes_reuses_envs_and_changes_nothing(ml10):
    """ML10 rows move between task classes; envs come from a per-class pool, and a row's
    trajectory depends only on its task, never on which pooled env runs it."""
    a, b = ml10.tasks(4, "train", 0), ml10.tasks(4, "train", 1)
    actions = torch.rand((12, 4, 4), generator=torch.Generator().manual_seed(2)) * 2 - 1
    env, fresh = ml10.make_env(4), ml10.make_env(4)
    try:
        first = run(env, a, actions)
        built = {id(e) for e in env.envs}
        run(env, b, actions)
        built |= {id(e) for e in env.envs}
        again = run(env, a, actions)
        assert {id(e) for e in env.envs} <= built  # nothing rebuilt for classes seen before
        assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
        assert all(torch.equal(x, y) for x, y in zip(first, run(fresh, a, actions), strict=True))
    finally:
        env.close()
        fresh.close()


def test_a_block_of_rows_steps_and_seeds_like_the_whole_batch(ml1):
    from gymnasium.utils import seeding

    tasks = ml1.tasks(4, "train", 0)
    actions = torch.rand((6, 4, 4), generator=torch.Generator().manual_seed(3)) * 2 - 1

    def block(lo: int, hi: int):
        env = ml1.make_env(hi - lo)
        env.set_rows(Rows(lo, hi - lo, 4))
        out = run(env, tasks[lo:hi], actions[:, lo:hi], seed=7)
        states = [e.np_random.bit_generator.state for e in env.envs]
        env.close()
        return out, states

    whole, whole_states = block(0, 4)
    halves = [block(0, 2), block(2, 4)]
    parts = [torch.cat(p) for p in zip(halves[0][0], halves[1][0], strict=True)]
    assert all(torch.equal(x, y) for x, y in zip(whole, parts, strict=True))
    # each row's np_random is seeded from its index in the whole batch
    expected = [
        seeding.np_random(derive_seed(7, "gym-vector-row", i))[0].bit_generator.state
        for i in range(4)
    ]
    assert whole_states == expected == halves[0][1] + halves[1][1]
