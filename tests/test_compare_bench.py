"""`adaptrl bench compare`: every learner of a family on the same tasks beside the classic agents,
with budgets; labels that tell variants apart; seeds averaged; clear errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from adaptrl.algos.trainer import new_run, train_run
from adaptrl.bench.common import preset_with_changes
from adaptrl.bench.compare import SETTINGS, CompareConfig, differing_fields, run_compare
from adaptrl.core.errors import ConfigError
from adaptrl.envs.bandit import BanditConfig


def test_quick_gridworld_scores_every_learner_beside_the_exact_agent(tmp_path):
    out = run_compare(CompareConfig("gridworld-varibad", quick=True, out=tmp_path))
    labels = [row["label"] for row in out["rows"]]
    expected = ["rl2", "hyper-policy", "meta-q[td_samples=trials]", "meta-dqn", "pearl"]
    assert [lab for lab in labels if lab in expected] == expected
    assert {
        "meta-q[td_samples=trials]+propensity",
        *SETTINGS["gridworld-varibad"].baselines,
    } <= set(labels)
    mpo = next(r for r in out["rows"] if r["label"] == "mpo")  # a gradient learner's row
    assert mpo["per_episode"] is None and len(mpo["per_step"][0]) == 2  # tasks x (0, 1 step)
    for learner in out["learners"]:  # budgets, timed: trial learners collect a trial per row
        cfg, horizon = learner["config"], learner["config"]["family"]["horizon"]
        if learner["label"] == "mpo":  # episodes per task before each update and after the last
            per = cfg["tasks"] * cfg["episodes"] * horizon * (cfg["inner_updates"] + 1)
        else:
            per = cfg["trials"] * horizon * cfg["family"]["n"]
        assert learner["env_steps"] == cfg["iterations"] * per and learner["seconds"] > 0
    bayes = next(r for r in out["rows"] if r["label"] == "bayes-optimal")
    assert len(bayes["per_episode"]) == 8 and len(bayes["per_episode"][0]) == 2  # tasks x episodes
    report = (tmp_path / "report.md").read_text()
    assert "meta-train env steps" in report and (tmp_path / "curves.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["provenance"]["seeds"] == [0]


def test_quick_nav2d_scores_gradient_learners_per_step(tmp_path):
    out = run_compare(
        CompareConfig(
            "nav2d",
            quick=True,
            learners=("maml-rl/nav2d-authors", "hyper-policy/nav2d"),
            baselines=("random",),
            out=tmp_path,
        )
    )
    rows = {r["label"]: r for r in out["rows"]}
    assert rows["maml-rl"]["per_episode"] is None and len(rows["maml-rl"]["per_step"][0]) == 2
    assert (
        rows["hyper-policy"]["per_step"] is None
        and len(rows["hyper-policy"]["per_episode"][0]) == 3
    )
    assert "after 1 steps" in (tmp_path / "report.md").read_text()


def test_runs_of_one_algorithm_with_other_configs_get_their_own_rows_and_seeds_average(tmp_path):
    base = preset_with_changes("hyper-policy/bandits-10:iterations=1,trials=8,minibatches=2")[1]
    runs = []
    for init in ("bias-hyperinit", "naive"):
        for seed in (0, 1):
            cfg = dataclasses.replace(base, hyper_init=init)
            path = new_run(tmp_path / f"{init}-{seed}", cfg, seed=seed).path
            train_run(path, show_progress=False)
            runs.append(path)
    out = run_compare(
        CompareConfig(
            "bandits-10", runs=tuple(runs), baselines=("random",), num_tasks=20, out=tmp_path / "o"
        )
    )
    rows = {r["label"]: r for r in out["rows"]}
    assert set(rows) == {
        "hyper-policy[hyper_init=bias-hyperinit]",
        "hyper-policy[hyper_init=naive]",
        "random",
    }
    assert len(out["learners"]) == 4 and all(lr["seconds"] > 0 for lr in out["learners"])
    report = (tmp_path / "o" / "report.md").read_text()
    assert report.count(", ") >= 2  # the per-seed trial returns listed beside each mean


def test_differing_fields_name_only_what_varies():
    a = {"lr": 1, "family": {"n": 10}, "hidden": 8}
    b = {"lr": 2, "family": {"n": 10}, "hidden": 8}
    c = {"lr": 2, "family": {"n": 20}, "hidden": 8}
    assert differing_fields([a, b]) == [{"lr": 1}, {"lr": 2}]
    assert differing_fields([a, c]) == [
        {"family": {"n": 10}, "lr": 1},
        {"family": {"n": 20}, "lr": 2},
    ]
    assert differing_fields([a, a]) == [{}, {}]


def test_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="ALGO/PRESET"):
        preset_with_changes("hyper-policy")
    with pytest.raises(ConfigError, match="no_such_field"):
        preset_with_changes("rl2/bandits-10:no_such_field=1")
    runs = []
    for n in (4, 5):
        cfg = preset_with_changes("hyper-policy/bandits-10:iterations=1,trials=8,minibatches=2")[1]
        cfg = dataclasses.replace(cfg, family=BanditConfig(k=3, n=n))
        path = new_run(tmp_path / f"n{n}", cfg).path
        train_run(path, show_progress=False)
        runs.append(path)
    with pytest.raises(ConfigError, match="same tasks"):
        run_compare(CompareConfig("bandits-10", runs=tuple(runs), num_tasks=4, out=tmp_path / "o"))
