"""Meta-learners on Meta-World: success beside return in training metrics and in evaluation, for
gradient learners (MAML-RL: the success rate of the episodes after 0..S inner steps) and memory
learners (RL²: per episode of the trial). Skips when the metaworld extra is not installed."""

from __future__ import annotations

import json

import pytest
import torch

from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.envs.metaworld import MetaWorldEnv, MetaWorldML1Config
from adaptrl.eval.learners import EvalOptions, evaluate_learner

pytest.importorskip("metaworld", reason="the metaworld extra is not installed")

REACH = MetaWorldML1Config(task="reach-v3", horizon=20, n=2)


@pytest.fixture
def first_rows_succeed(monkeypatch):
    """Meta-World envs whose first ``rows[0]`` rows report success at their 3rd step of every
    episode and the others never: known success rates, whatever the policy does."""
    rows = [0]
    step = MetaWorldEnv.step

    def forced(self, action):
        out = step(self, action)
        third = self.elapsed == 3
        self.success = torch.zeros_like(self.success)
        self.success[: rows[0]] = third[: rows[0]]
        return out

    monkeypatch.setattr(MetaWorldEnv, "step", forced)
    return rows


def maml(**kw) -> MAMLRL:
    config = MAMLRLConfig(
        family=REACH, meta_batch_size=2, rollouts_per_task=3, hidden=(16,), eval_chunk=2, **kw
    )
    return MAMLRL(config, seed=0)


def test_maml_rl_reports_success_rates_in_training_and_after_each_inner_step(first_rows_succeed):
    learner = maml()
    first_rows_succeed[0] = 3  # every rollout of the first task succeeds, none of the second
    metrics = learner.meta_train_step()
    assert metrics["success_pre"].item() == metrics["success_post"].item() == 0.5
    tasks = learner.family.tasks(2, "test", seed=1)
    curve, success = learner.adaptation_success(tasks, 2, torch.Generator().manual_seed(0))
    assert success.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    # the curve is the one adaptation_curve gives from the same generator
    again = learner.adaptation_curve(tasks, 2, torch.Generator().manual_seed(0))
    assert torch.equal(curve, again)
    first_rows_succeed[0] = 1  # one of the first task's three rollouts
    _, success = learner.adaptation_success(tasks, 1, torch.Generator().manual_seed(0))
    assert torch.allclose(success, torch.tensor([[1 / 3, 1 / 3], [0.0, 0.0]]))


def test_maml_rl_evaluation_writes_a_success_report_beside_the_return_report(
    tmp_path, first_rows_succeed
):
    first_rows_succeed[0] = 3
    markdown = evaluate_learner(
        maml(), EvalOptions(num_tasks=2, steps=1, chunk_size=2, show_progress=False), tmp_path
    )
    assert "success rate" in markdown and (tmp_path / "success" / "curve.png").exists()
    returns = json.loads((tmp_path / "results.json").read_text())
    success = json.loads((tmp_path / "success" / "results.json").read_text())
    assert returns["metric"] == "return" and returns["meta"]["success_report"]
    assert success["metric"] == "success rate"
    assert success["curves"][0]["mean"] == [0.5, 0.5]
    assert (tmp_path / "report.md").read_text() == markdown


def test_rl2_reports_the_success_of_each_episode_of_its_trials(first_rows_succeed):
    first_rows_succeed[0] = 1  # the first of two trials succeeds in both of its episodes
    config = RL2Config(family=REACH, trials=2, iterations=1, hidden=8, minibatches=1)
    metrics = RL2(config, seed=0).meta_train_step()
    assert metrics["first_episode_success"].item() == metrics["last_episode_success"].item() == 0.5


def test_meta_batches_must_give_every_ml10_class_the_same_share():
    from adaptrl.algos.pearl import PEARL, PEARLConfig
    from adaptrl.core.errors import ConfigError
    from adaptrl.envs.metaworld import MetaWorldML10Config

    ml10 = MetaWorldML10Config(horizon=20)
    with pytest.raises(ConfigError, match="meta_batch_size=15 does not split evenly over the 10"):
        MAMLRL(MAMLRLConfig(family=ml10, meta_batch_size=15), seed=0)
    with pytest.raises(ConfigError, match="trials=5 does not split evenly over the 10 training"):
        RL2(RL2Config(family=ml10, trials=5), seed=0)
    with pytest.raises(ConfigError, match="trials=4 does not split evenly"):
        PEARL(PEARLConfig(family=ml10, trials=4), seed=0)
    assert MAMLRL(MAMLRLConfig(family=ml10, meta_batch_size=20), seed=0).shard.count == 20
    assert RL2(RL2Config(family=REACH, trials=3, minibatches=1), seed=0).shard.count == 3


def test_families_without_success_do_not_measure_it():
    from adaptrl.core.errors import ConfigError

    config = MAMLRLConfig(meta_batch_size=2, rollouts_per_task=2, hidden=(8,))
    learner = MAMLRL(config, seed=0)
    assert "success_post" not in learner.meta_train_step()
    with pytest.raises(ConfigError, match="does not report success"):
        learner.adaptation_success(learner.family.tasks(2, "test", 0), 1, torch.Generator())


# --- adaptrl bench metaworld-ml1 / metaworld-ml10 -------------------------------------------------


def _bench(tmp_path, *args: str) -> dict:
    from adaptrl.cli.main import main

    assert main(["bench", *args, "--out", str(tmp_path)]) == 0
    return json.loads((tmp_path / "results.json").read_text())


@pytest.mark.parametrize(
    ("name", "goals", "trials"), [("metaworld-ml1", 4, 2), ("metaworld-ml10", 20, 10)]
)
def test_bench_quick_scores_a_memory_and_a_gradient_learner_on_every_test_goal(
    tmp_path, name, goals, trials
):
    results = _bench(tmp_path, name, "--quick")
    assert [s["algo"] for s in results["learners"]] == ["rl2", "maml-rl"]
    for scored in results["learners"]:
        for key in ("success_before", "success_after", "return_after"):
            assert len(scored[key]) == goals  # each of the first 4 goals of each test class once
        assert all(0.0 <= v <= 1.0 for v in scored["success_after"])
    assert results["learners"][0]["env_steps"] == 2 * trials * 10 * 20  # 2 iterations
    assert "success after adaptation" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "success.png").stat().st_size > 0


@pytest.fixture(scope="module")
def reach_run(tmp_path_factory):
    """A tiny RL² run on ML1 reach with 20-step episodes, trained by `adaptrl train`."""
    from adaptrl.cli.main import main

    out = tmp_path_factory.mktemp("runs") / "rl2-reach"
    args = ["train", "rl2", "metaworld-ml1-v0", "--horizon", "20", "--n", "2", "--iterations", "1"]
    args += ["--trials", "2", "--hidden", "8", "--minibatches", "1", "--out", str(out)]
    assert main(args) == 0
    return out


def test_bench_scores_trained_runs_by_meta_worlds_protocol(tmp_path, reach_run):
    results = _bench(tmp_path, "metaworld-ml1", "--runs", str(reach_run))
    (scored,) = results["learners"]
    assert scored["algo"] == "rl2" and scored["run"] == str(reach_run)
    assert len(scored["success_after"]) == 40  # Meta-World's 40 test goals, each once
    assert results["protocol"]["adaptation_episodes"] == 10
    assert scored["training_seconds"] > 0 and scored["env_steps"] == 2 * 2 * 20
    assert scored["iterations_trained"] == "1"


def test_bench_refuses_runs_of_another_benchmark_and_bad_rounds(reach_run):
    from adaptrl.bench.metaworld import (
        MetaWorldML1Bench,
        MetaWorldML10Bench,
        run_metaworld_ml1,
        run_metaworld_ml10,
    )
    from adaptrl.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"adaptrl train rl2 --config metaworld-ml1"):
        run_metaworld_ml1(MetaWorldML1Bench())
    with pytest.raises(ConfigError, match="not both"):
        run_metaworld_ml1(MetaWorldML1Bench(runs=(reach_run,), quick=True))
    with pytest.raises(ConfigError, match="trained on ML1 reach-v3, not push-v3"):
        run_metaworld_ml1(MetaWorldML1Bench(runs=(reach_run,), task="push-v3"))
    with pytest.raises(ConfigError, match="trained on metaworld-ml1-v0, this benchmark is"):
        run_metaworld_ml10(MetaWorldML10Bench(runs=(reach_run,)))
    with pytest.raises(ConfigError, match="40 test goals per class do not split evenly"):
        run_metaworld_ml1(MetaWorldML1Bench(runs=(reach_run,), meta_batch_size=3))


def test_the_shipped_maml_ml1_reach_model_rescores_its_first_round():
    """MAML-TRPO behind the ML1 reach figure is shipped; the bench's first evaluation round (10
    of the 40 held-out goals, its own random streams) scores the report's values exactly."""
    from pathlib import Path

    from adaptrl.algos.trainer import load_trained
    from adaptrl.bench.metaworld import MetaWorldML1Bench, score_gradient

    shipped = Path(__file__).resolve().parents[1] / "docs/results/metaworld"
    data = json.loads((shipped / "ml1-reach/results.json").read_text())
    learner = load_trained(shipped / "models/maml-ml1-reach-s0", expect=MAMLRL)
    (first, *_) = learner.family.evaluation_rounds(data["protocol"]["meta_batch_size"])
    before, after, returns = score_gradient(learner, [first], MetaWorldML1Bench())
    (scored,) = [s for s in data["learners"] if s["algo"] == "maml-rl"]
    rows = len(first)
    assert before.tolist() == pytest.approx(scored["success_before"][:rows], abs=1e-9)
    assert after.tolist() == pytest.approx(scored["success_after"][:rows], abs=1e-9)
    assert returns.tolist() == pytest.approx(scored["return_after"][:rows], abs=1e-3)
