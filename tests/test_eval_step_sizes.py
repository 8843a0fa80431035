"""`adaptrl eval RUN --inner-lrs / --eval-batch` and `adaptrl adapt RUN --inner-lrs / --eval-batch`:
another test-time step-size schedule or batch for a saved MAML-RL run, without editing its
config.yaml."""

from __future__ import annotations

import dataclasses

import torch

from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.trainer import load_trained, save_trained
from adaptrl.cli.main import main
from adaptrl.core.checkpoint import load_checkpoint
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.eval.curves import load_curve_report
from adaptrl.eval.learners import EvalOptions, evaluate_learner


def _maml_run(path, seed=0):
    config = MAMLRLConfig(
        family=Nav2DConfig(horizon=10),
        iterations=1,
        meta_batch_size=2,
        rollouts_per_task=3,
        hidden=(8,),
        inner_lr=0.1,
    )
    learner = MAMLRL(config, seed=seed)
    learner.meta_train_step()
    save_trained(path, learner, config, seed=seed)


def test_eval_report_names_the_training_seed_apart_from_the_sampling_seeds(tmp_path):
    run = tmp_path / "run"
    _maml_run(run, seed=3)
    assert (
        main(["eval", str(run), "--num-tasks", "2", "--steps", "1", "--out", str(tmp_path / "e")])
        == 0
    )
    text = (tmp_path / "e" / "report.md").read_text()
    assert "- seeds: [0]" in text
    assert "- model: maml-rl, training seed 3, 1 iteration trained" in text
    assert load_curve_report(tmp_path / "e" / "results.json").meta["training_seed"] == 3


def test_eval_inner_lrs_equals_a_run_configured_with_that_schedule(tmp_path):
    run = tmp_path / "run"
    _maml_run(run)
    args = ["eval", str(run), "--num-tasks", "4", "--steps", "2"]
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    assert main([*args, "--inner-lrs", "0.3", "0.02", "--out", str(tmp_path / "sched")]) == 0
    default = load_curve_report(tmp_path / "default" / "results.json")
    sched = load_curve_report(tmp_path / "sched" / "results.json")

    learner = load_trained(run)
    learner.config = dataclasses.replace(learner.config, eval_inner_lrs=(0.3, 0.02))
    evaluate_learner(
        learner, EvalOptions(num_tasks=4, steps=2, show_progress=False), tmp_path / "ref"
    )
    ref = load_curve_report(tmp_path / "ref" / "results.json")

    got, base = sched.curves[0].values, default.curves[0].values
    torch.testing.assert_close(got, ref.curves[0].values, rtol=0, atol=0)
    torch.testing.assert_close(got[:, 0], base[:, 0], rtol=0, atol=0)  # same tasks, no step yet
    assert not torch.equal(got[:, 1], base[:, 1])  # the first step is 0.3, not the run's 0.1
    assert sched.meta["config"]["eval_inner_lrs"] == [0.3, 0.02]
    assert default.meta["config"]["eval_inner_lrs"] == []
    assert load_trained(run).config.eval_inner_lrs == ()  # the run itself is untouched


def test_adapt_inner_lrs_changes_the_steps_and_is_recorded(tmp_path):
    run = tmp_path / "run"
    _maml_run(run)
    args = ["adapt", str(run), "--num-tasks", "2", "--steps", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--inner-lrs", "0.5", "--out", str(tmp_path / "b")]) == 0
    a, meta_a = load_checkpoint(tmp_path / "a")
    b, meta_b = load_checkpoint(tmp_path / "b")
    assert meta_a["inner_lrs"] == [] and meta_b["inner_lrs"] == [0.5]
    theta = load_trained(run).params
    for name, value in theta.items():
        # same tasks and rollouts, so the step differs only by its size: 0.5 vs 0.1
        step_a = a[f"params.{name}"] - value
        step_b = b[f"params.{name}"] - value
        torch.testing.assert_close(step_b, 5.0 * step_a, rtol=1e-4, atol=1e-6)


def test_inner_lrs_errors_name_the_problem(tmp_path, capsys):
    run = tmp_path / "run"
    _maml_run(run)
    assert main(["eval", str(run), "--num-tasks", "2", "--inner-lrs", "0.1", "0"]) == 2
    assert "--inner-lrs must all be > 0" in capsys.readouterr().err
    other = tmp_path / "rl2"
    train = ["train", "rl2", "bandit-bernoulli-v0", "--iterations", "1", "--trials", "4"]
    assert main([*train, "--hidden", "8", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["eval", str(other), "--num-tasks", "2", "--inner-lrs", "0.1"]) == 2
    assert "that rl2 does not have (MAML-RL runs do)" in capsys.readouterr().err
    assert main(["eval", str(other), "--num-tasks", "2", "--eval-batch", "steps"]) == 2
    assert "--eval-batch sets a test-time option (eval_batch)" in capsys.readouterr().err


def test_eval_batch_steps_equals_a_run_configured_with_step_budgets(tmp_path):
    run = tmp_path / "run"
    _maml_run(run)
    args = ["eval", str(run), "--num-tasks", "3", "--steps", "1"]
    assert main([*args, "--eval-batch", "steps", "--out", str(tmp_path / "steps")]) == 0
    got = load_curve_report(tmp_path / "steps" / "results.json")
    learner = load_trained(run)
    learner.config = dataclasses.replace(learner.config, eval_batch="steps")
    evaluate_learner(
        learner, EvalOptions(num_tasks=3, steps=1, show_progress=False), tmp_path / "ref"
    )
    ref = load_curve_report(tmp_path / "ref" / "results.json")
    torch.testing.assert_close(got.curves[0].values, ref.curves[0].values, rtol=0, atol=0)
    assert got.meta["config"]["eval_batch"] == "steps"
    assert load_trained(run).config.eval_batch == "episodes"  # the run itself is untouched
    adapt = ["adapt", str(run), "--num-tasks", "2", "--steps", "1", "--eval-batch", "steps"]
    assert main([*adapt, "--out", str(tmp_path / "adapted")]) == 0
    assert load_checkpoint(tmp_path / "adapted")[1]["eval_batch"] == "steps"


def test_adapt_family_adapts_to_another_familys_tasks_and_refuses_other_spaces(tmp_path, capsys):
    """`adaptrl adapt RUN --family ID [options]`: the run's policy adapted on tasks of that family
    (here goals outside the training square), recorded in the output; other spaces are refused."""
    run = tmp_path / "run"
    _maml_run(run)
    args = ["adapt", str(run), "--num-tasks", "3", "--steps", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    far = ["--family", "nav2d-goal-v0", "--goal-low", "0.6", "--goal-high", "0.9"]
    assert main([*args, "--out", str(tmp_path / "b"), *far]) == 0
    a, meta_a = load_checkpoint(tmp_path / "a")
    b, meta_b = load_checkpoint(tmp_path / "b")
    assert meta_a["family_config"] is None
    assert (
        meta_b["family_config"]["goal_low"] == 0.6 and meta_b["family_config"]["goal_high"] == 0.9
    )
    assert bool((a["task.goal"].abs() <= 0.5).all())
    assert bool(((b["task.goal"] >= 0.6) & (b["task.goal"] <= 0.9)).all())
    assert not torch.equal(a["params.trunk.0.0.weight"], b["params.trunk.0.0.weight"])
    capsys.readouterr()
    assert main([*args, "--family", "bandit-bernoulli-v0", "--out", str(tmp_path / "c")]) == 2
    assert "the policy cannot act there" in capsys.readouterr().err


def test_eval_family_scores_a_run_on_another_familys_tasks(tmp_path, capsys):
    """`adaptrl eval RUN --family ID [options]` evaluates on that family's tasks and records it."""
    run = tmp_path / "run"
    _maml_run(run)
    args = ["eval", str(run), "--num-tasks", "3", "--steps", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    far = [
        "--family",
        "nav2d-goal-v0",
        "--horizon",
        "10",
        "--goal-low",
        "0.6",
        "--goal-high",
        "0.9",
    ]
    assert main([*args, "--out", str(tmp_path / "b"), *far]) == 0
    a = load_curve_report(tmp_path / "a" / "results.json")
    b = load_curve_report(tmp_path / "b" / "results.json")
    assert a.meta["config"]["family"]["goal_high"] == 0.5
    assert b.meta["config"]["family"]["goal_low"] == 0.6
    # farther goals, same policy: more distance to cover within the same horizon
    assert float(b.curves[0].values[:, 0].mean()) < float(a.curves[0].values[:, 0].mean())
    capsys.readouterr()
    assert main([*args, "--family", "bandit-bernoulli-v0", "--out", str(tmp_path / "c")]) == 2
    assert "the policy cannot act there" in capsys.readouterr().err


def test_family_of_a_few_shot_run_is_refused(tmp_path, capsys):
    run = tmp_path / "proto"
    train = ["train", "protonet", "glyphs-v0", "--iterations", "1", "--out", str(run)]
    assert main(train) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--num-tasks", "2", "--family", "nav2d-goal-v0"]) == 2
    assert "protonet learns few-shot tasks" in capsys.readouterr().err
