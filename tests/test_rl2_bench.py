"""The RL² benches run end to end (tiny budgets) and write their JSON with provenance and markdown."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from adaptrl.algos.rl2 import RL2
from adaptrl.algos.trainer import load_trained, save_trained
from adaptrl.bench.rl2 import (
    BANDITS,
    MDPS,
    RL2BanditBenchConfig,
    RL2MDPBenchConfig,
    RL2SpeedBenchConfig,
    load_rl2_runs,
    rl2_preset,
    run_rl2_speed,
    run_table,
    setting_configs,
    time_to_target,
)
from adaptrl.core.errors import ConfigError
from adaptrl.envs import make_family
from adaptrl.eval.protocol import evaluate


def test_rl2_bandit_and_mdp_benches_write_results(tmp_path):
    out = tmp_path / "b"
    rl2 = dataclasses.replace(rl2_preset("bandits-10"), iterations=3)
    payload = run_table(RL2BanditBenchConfig(rl2=rl2, quick=True, num_tasks=40, out=out), BANDITS)
    agents = [r["agent"] for r in payload["rows"]]
    assert agents == ["rl2 (ours)", "gittins", "ucb1", "thompson", "random"]
    assert payload["rows"][0]["paper"] == 6.7 and payload["rows"][1]["paper"] == 6.6
    data = json.loads((out / "results.json").read_text())
    assert data["provenance"]["seeds"] == [0] and data["settings"][0]["config"]["iterations"] == 3
    assert "ratio to gittins" in (out / "report.md").read_text()
    assert data["settings"][0]["config"]["outer"] == "ppo"
    # --quick caps a preset's budget; --settings moves it to other families
    capped = RL2BanditBenchConfig(quick=True, settings=("10x10",), num_tasks=20, out=out)
    assert [(c.iterations, c.trials) for c in setting_configs(capped, BANDITS)] == [(5, 32)]
    assert setting_configs(capped, BANDITS)[0].family.k == 10
    with pytest.raises(ConfigError, match="this table runs on bandit-bernoulli-v0"):
        setting_configs(RL2BanditBenchConfig(rl2=rl2_preset("mdps-10")), BANDITS)
    out = tmp_path / "m"
    rl2 = dataclasses.replace(rl2_preset("mdps-10"), outer="trpo", memory="transformer")
    rl2 = dataclasses.replace(rl2, iterations=1)
    bench = RL2MDPBenchConfig(rl2=rl2, quick=True, num_tasks=20, out=out)
    payload = run_table(bench, MDPS)
    assert [r["agent"] for r in payload["rows"]] == ["rl2 (ours)", "psrl", "random"]
    assert payload["rows"][0]["paper"] == 156.2
    assert len(payload["settings"][0]["rl2_episode_curve"]) == 10
    config = payload["settings"][0]["config"]
    assert (config["outer"], config["memory"], config["iterations"]) == ("trpo", "transformer", 1)
    assert "transformer / trpo" in (out / "report.md").read_text()


def test_rl2_speed_bench_reports_ratios_and_time_to_target(tmp_path):
    cfg = RL2SpeedBenchConfig(quick=True, eval_every=10, eval_tasks=30, target=100.0, out=tmp_path)
    payload = run_rl2_speed(cfg)
    assert list(payload["throughput"]) == [
        "bandit 10x5",
        "tabular MDP n=10",
        "tabular MDP n=10, transformer",
    ]
    for t in payload["throughput"].values():
        assert t["policy_forward_steps_per_s"] > 0 and t["train_steps_per_s"] > 0
        assert t["batch"] == 32
    target = payload["time_to_target"]
    assert not target["reached"]  # 100 is impossible in 10 pulls
    assert [h["iteration"] for h in target["history"]] == [10, 20, 30, 40]
    assert target["test_score"] is None
    assert (tmp_path / "report.md").exists()


def test_time_to_target_stops_on_validation_tasks_and_scores_the_test_tasks():
    cfg = RL2SpeedBenchConfig(quick=True, eval_every=5, eval_tasks=40, target=0.0)
    target = time_to_target(cfg)
    assert target["reached"] and target["iterations"] == 5
    assert len(target["history"]) == 1  # stopped at the first check
    validation, test = target["history"][0]["validation"], target["test_score"]
    assert set(test) == {"mean", "ci95"} and test["ci95"] > 0
    assert validation != test["mean"]  # different task draws: meta-train split vs held-out test


def _saved_rl2_run(path, config, seed):
    learner = RL2(config, seed=seed)
    for _ in range(config.iterations):
        learner.meta_train_step()
    save_trained(path, learner, config, seed=seed)
    return learner


def test_rl2_bandit_bench_scores_trained_runs_instead_of_training(tmp_path):
    config = dataclasses.replace(rl2_preset("bandits-10"), iterations=2, trials=16)
    runs = (tmp_path / "a", tmp_path / "b")
    for path, seed in zip(runs, (4, 5), strict=True):
        _saved_rl2_run(path, config, seed)
    bench = RL2BanditBenchConfig(quick=True, num_tasks=40, runs=runs, out=tmp_path / "out")
    payload = run_table(bench, BANDITS)
    assert payload["provenance"]["seeds"] == [4, 5]  # the runs' seeds, not the bench's
    setting = payload["settings"][0]
    assert setting["train_seconds"] == [None, None] and setting["config"]["trials"] == 16
    family = make_family(config.family)
    for path, seed, score in zip(runs, (4, 5), payload["rows"][0]["per_seed"], strict=True):
        learner = load_trained(path)
        spec = (f"rl2-seed{seed}", lambda f, lr=learner: lr.trial_agent())  # the bench's label
        res = evaluate(family, [spec], num_tasks=40)
        assert score == pytest.approx(res.agents[0].returns.sum(-1).double().mean().item())
    assert "| run / run |" in (tmp_path / "out" / "report.md").read_text()


def test_rl2_bench_runs_must_match_the_setting(tmp_path):
    config = dataclasses.replace(rl2_preset("bandits-10"), iterations=1, trials=8)
    _saved_rl2_run(tmp_path / "a", config, 0)
    other = RL2BanditBenchConfig(settings=("10x10",), num_tasks=10, runs=(tmp_path / "a",))
    with pytest.raises(ConfigError, match="was trained on"):
        run_table(dataclasses.replace(other, out=tmp_path / "o1"), BANDITS)
    two = dataclasses.replace(other, settings=("10x5", "10x10"), out=tmp_path / "o2")
    with pytest.raises(ConfigError, match="--runs scores one setting"):
        run_table(two, BANDITS)
    _saved_rl2_run(tmp_path / "b", dataclasses.replace(config, hidden=32), 1)
    with pytest.raises(ConfigError, match=r"differs from .* score them separately"):
        load_rl2_runs((tmp_path / "a", tmp_path / "b"), config.family)


SHIPPED = Path(__file__).resolve().parents[1] / "docs/results/rl2"


@pytest.mark.parametrize(
    "report, model, preset, iterations",
    [
        ("table1-10x5", "bandits-10x5-s0", "bandits-10", 300),
        ("table1-100x5", "bandits-100x5-s0", "bandits-100", 1500),
        ("table2-n10", "mdps-10-s0", "mdps-10", 1500),
        ("table2-n25", "mdps-25-s0-1750it", "mdps-25", 1750),
    ],
)
def test_a_shipped_table_model_rescores_its_report_exactly(report, model, preset, iterations):
    """The models behind the Table 1 and Table 2 rows are shipped; seed 0's reproduces its
    report's score on the same 1000 held-out tasks (the bench's labels, tasks and environment
    seeds)."""
    data = json.loads((SHIPPED / report / "results.json").read_text())
    assert data["settings"][0]["seeds"][0] == 0
    learner = load_trained(SHIPPED / "models" / model)
    assert learner.config == rl2_preset(preset) and learner.iteration == iterations
    spec = (f"rl2-seed{learner.seed}", lambda f: learner.trial_agent())
    res = evaluate(make_family(learner.config.family), [spec], num_tasks=1000)
    score = res.agents[0].returns.sum(-1).double().mean().item()
    assert score == pytest.approx(data["rows"][0]["per_seed"][0], abs=1e-9)
