"""The MAML-RL benches run end to end at toy sizes and write their reports."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.mktn import MKTN
from adaptrl.algos.rl2 import RL2
from adaptrl.algos.trainer import load_trained, save_trained
from adaptrl.baselines.pg import mktn_config
from adaptrl.bench import maml_rl as bench
from adaptrl.bench import maml_speed
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.envs import make_family
from adaptrl.eval.curves import load_curve_report


def test_nav2d_reference_points_match_closed_forms():
    family = make_family("nav2d-goal-v0")
    tasks = family.tasks(50, "test", 0)
    still = bench.stand_still_returns(family, tasks)
    dist = tasks.goal.norm(dim=1)
    assert still["distance"] == pytest.approx(float(-100 * dist.mean()), rel=1e-6)
    assert still["squared"] == pytest.approx(float(-100 * dist.square().mean()), rel=1e-6)
    oracle = bench.controller_oracle_return(family, tasks)
    # it reaches every goal within ceil(max|g_i| / 0.1) <= 5 moves and then stops
    assert (oracle > -2.0).all() and (oracle <= 0).all()


def test_maml_nav2d_quick_writes_a_curve_report(tmp_path):
    authors = bench.maml_preset("nav2d-authors")
    maml = dataclasses.replace(
        authors,
        family=dataclasses.replace(authors.family, horizon=20),
        eval_rollouts_per_task=5,
        inner_steps=2,
        inner_lrs=(0.5, 0.4),
        step_loss_weights=(1.0, 2.0),
        single_step_iterations=2,
        batch="steps",
    )
    out = tmp_path / "nav"
    result = bench.run_maml_nav2d(bench.MAMLNav2DConfig(quick=True, out=out, maml=maml))
    labels = [c.label for c in result["report"].curves]
    assert labels == ["MAML", "scratch", "pretrained", "oracle"]
    assert all(c.values.shape == (8, 4) for c in result["report"].curves)
    text = (out / "report.md").read_text()
    assert "MAML (paper)" in text and "-40.41" in text and "stands still" in text
    # every trained learner is a run directory that `adaptrl eval` scores again
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        "MAML-s0",
        "oracle-s0",
        "pretrained-s0",
    ]
    again = load_trained(out / "models" / "MAML-s0")
    assert again.config == dataclasses.replace(maml, **bench.NAV2D_QUICK)  # --quick's sizes
    assert again.iteration == 3
    pretrained = load_trained(out / "models" / "pretrained-s0").config
    assert pretrained.inner_steps == 0 and pretrained.inner_lrs == ()
    assert pretrained.eval_inner_lrs == (0.5, 0.25)  # tested with MAML's schedule
    assert again.config.batch == pretrained.batch == "steps"  # and drawn as MAML's batches
    assert again.config.eval_batch == pretrained.eval_batch == "steps"
    tasks = again.family.tasks(8, "test", bench.EVAL_SEED)
    gen = make_generator(bench.EVAL_SEED, "maml-nav2d", "eval")
    torch.testing.assert_close(
        again.adaptation_curve(tasks, 3, gen).double(), result["report"].curves[0].values
    )
    payload = json.loads((out / "bench.json").read_text())
    assert payload["config"]["inner_lr"] == 0.5 and payload["config"]["eval_inner_lrs"] == [
        0.5,
        0.25,
    ]
    assert payload["config"]["family"]["goal_region"] == "box"
    assert "x 4 rollouts per inner step; tested with 5 rollouts per task and step, 3 steps" in text
    assert (
        "Reward `distance`, goal region `box`. Inner step size in training 0.5; at test time 0.5, "
        "0.25 (the last repeated), 5 rollouts per task and step; 2 inner step(s) in meta-training "
        "with step sizes 0.5, 0.4 and outer-loss weights 1.0, 2.0, the first 2 meta-iterations "
        "with one inner step; batches of steps in training, of steps at test time." in text
    )
    # a second run into the same folder replaces its models
    bench.run_maml_nav2d(bench.MAMLNav2DConfig(quick=True, out=out, baselines=("oracle",)))
    assert (out / "models" / "oracle-s0" / "model.json").is_file()
    with pytest.raises(ConfigError, match="unknown baselines"):
        bench.run_maml_nav2d(bench.MAMLNav2DConfig(quick=True, baselines=("nope",), out=out))
    with pytest.raises(ConfigError, match="runs on nav2d-goal-v0"):
        bench.run_maml_nav2d(bench.MAMLNav2DConfig(maml=bench.maml_preset("cheetah-dir")))


def test_maml_nav2d_trains_mktn_beside_maml_on_the_same_streams(tmp_path):
    """``--baselines mktn``: MKTN (head-only inner loop) from MAML's configuration and seed, with
    both learners' seconds per meta-iteration and the ANIL paper's figures in the report."""
    out = tmp_path / "anil"
    result = bench.run_maml_nav2d(bench.MAMLNav2DConfig(quick=True, out=out, baselines=("mktn",)))
    assert [c.label for c in result["report"].curves] == ["MAML", "mktn"]
    maml, mktn = (load_trained(out / "models" / f"{k}-s0") for k in ("MAML", "mktn"))
    assert isinstance(mktn, MKTN) and mktn.config.inner_layers == 1
    assert {f.name: getattr(mktn.config, f.name) for f in dataclasses.fields(maml.config)} == (
        dataclasses.asdict(maml.config) | {"family": maml.config.family}
    )
    text = (out / "report.md").read_text()
    assert "Seconds per meta-iteration" in text and "mktn" in text
    assert "ANIL -20.1 vs MAML -20.3" in text
    tasks = mktn.family.tasks(8, "test", bench.EVAL_SEED)
    gen = make_generator(bench.EVAL_SEED, "maml-nav2d", "eval")
    torch.testing.assert_close(
        mktn.adaptation_curve(tasks, 3, gen).double(), result["report"].curves[1].values
    )


def test_direction_breakdown_weighs_the_two_directions_equally():
    values = torch.tensor([[-200.0, 100.0], [100.0, 400.0], [-100.0, 80.0], [-210.0, 120.0]])
    directions = torch.tensor([1.0, -1.0, 1.0, 1.0])
    split = bench.direction_breakdown(values, directions)
    assert (split["forward_tasks"], split["backward_tasks"]) == (3, 1)
    assert split["forward"] == pytest.approx([-170.0, 100.0])
    assert split["backward"] == pytest.approx([100.0, 400.0])
    assert split["balanced"] == pytest.approx([-35.0, 250.0])  # the plain mean would be 175 at 1
    with pytest.raises(ConfigError, match="both directions"):
        bench.direction_breakdown(values[:1], directions[:1])


def test_maml_cheetah_quick_writes_the_target_line(tmp_path):
    pytest.importorskip("mujoco")
    payload = bench.run_maml_cheetah(bench.MAMLCheetahConfig(quick=True, out=tmp_path))
    text = (tmp_path / "report.md").read_text()
    assert "Target after 1 step: >= 234.6 (80% of the paper's 293.19" in text
    assert payload["benchmark"] == "maml-cheetah-dir"
    assert len(payload["per_seed"]["MAML"][0]) == 2  # returns after 0 and 1 steps
    # the two quick test tasks (eval seed 20161102) run one each way
    split = payload["maml_by_direction"]
    assert (split["forward_tasks"], split["backward_tasks"]) == (1, 1)
    assert split["balanced"] == pytest.approx(payload["per_seed"]["MAML"][0], abs=1e-3)
    assert "MAML by direction (1 forward, 1 backward test tasks)" in text


def _one_iteration_run(path, config, seed):
    learner = MAMLRL(config, seed=seed)
    learner.meta_train_step()
    save_trained(path, learner, config, seed=seed)
    return learner


def test_maml_cheetah_scores_a_trained_run_instead_of_training(tmp_path):
    pytest.importorskip("mujoco")
    config = dataclasses.replace(
        bench.maml_preset("cheetah-dir"), **bench.CHEETAH_QUICK | {"iterations": 7}
    )
    _one_iteration_run(tmp_path / "run", config, seed=3)
    payload = bench.run_maml_cheetah(
        bench.MAMLCheetahConfig(quick=True, maml_run=tmp_path / "run", out=tmp_path / "b")
    )
    # the run's model, evaluated like the bench evaluates (same test tasks, same generator)
    learner = load_trained(tmp_path / "run")
    learner.config = dataclasses.replace(learner.config, eval_inner_lrs=(0.1, 0.05))
    tasks = learner.family.tasks(2, "test", payload["report"].meta["eval_seed"])
    gen = make_generator(payload["report"].meta["eval_seed"], "maml-cheetah-dir", "eval")
    expected = learner.adaptation_curve(tasks, 1, gen).mean(0)
    assert payload["per_seed"]["MAML"][0] == pytest.approx(expected.tolist(), abs=1e-4)
    assert payload["training"]["MAML"] == []  # nothing trained
    assert payload["provenance"]["seeds"] == [3]  # the run's seed, not the bench's
    meta = payload["report"].meta
    assert meta["config"]["iterations"] == 1  # the completed iterations, not the run's 7
    assert meta["config"]["eval_inner_lrs"] == [0.1, 0.05]  # the bench's test schedule
    assert "model of training run" in (tmp_path / "b" / "report.md").read_text()


def test_load_maml_run_refuses_another_family(tmp_path):
    config = dataclasses.replace(
        bench.maml_preset("nav2d"), **bench.NAV2D_QUICK | {"iterations": 1}
    )
    _one_iteration_run(tmp_path / "nav", config, seed=0)
    with pytest.raises(ConfigError, match="trained on nav2d-goal-v0, not halfcheetah-dir-v0"):
        bench.load_maml_run(tmp_path / "nav", "halfcheetah-dir-v0")
    learner, derived, seed = bench.load_maml_run(tmp_path / "nav", "nav2d-goal-v0")
    assert (learner.iteration, derived.iterations, seed) == (1, 1, 0)
    with pytest.raises(ConfigError, match="is a maml-rl run, not a rl2 one"):
        load_trained(tmp_path / "nav", expect=RL2)


def tiny_speed_config(iterations: int) -> MAMLRLConfig:
    """The maml-speed preset on 2 tasks x 3 rollouts of 10 steps, an 8-unit policy."""
    cfg = maml_speed.MAMLSpeedConfig().maml
    family = dataclasses.replace(cfg.family, horizon=10)
    return dataclasses.replace(
        cfg,
        iterations=iterations,
        meta_batch_size=2,
        rollouts_per_task=3,
        hidden=(8,),
        family=family,
    )


def test_maml_speed_runs_ours_reference_and_floor(tmp_path):
    result = maml_speed.run_maml_speed(
        maml_speed.MAMLSpeedConfig(
            maml=tiny_speed_config(3),
            quick=True,
            traced_iterations=2,
            variant_iterations=1,
            product_blocks=(3,),
            out=tmp_path,
        )
    )
    assert result["ours_seconds_per_iteration"]["iterations"] == 3
    assert result["floor_seconds_per_iteration"] > 0
    assert set(result["variants_seconds_per_iteration"]) == {
        "autograd-fvp",
        "first-order",
        "fvp-subsample-0.1",
        "mktn",
    }
    assert result["exact_fisher_products_seconds"] > 0
    assert set(result["exact_fisher_products_blocked_seconds"]) == {"blocks of 3"}
    assert "blocks of 3 time steps" in (tmp_path / "report.md").read_text()
    assert len(result["memory"]["rss_mb_peak_by_tenth"]) == 3  # one value per iteration here
    assert result["speedup_vs_reference"] > 0
    assert (tmp_path / "report.md").read_text().startswith("# maml-speed")


def test_reference_implementation_computes_the_same_meta_update():
    """The per-task-loop reference and ours are the same algorithm: on identical rollouts their
    surrogate losses agree (ours batched with vmap, the reference looping over tasks)."""
    cfg = tiny_speed_config(1)
    ref = maml_speed.ReferenceMAMLTRPO(cfg, seed=0)
    ours = MAMLRL(cfg, seed=0)
    goal = torch.tensor([0.3, -0.2])
    theta = {k: v.detach() for k, v in ours.params.items()}
    train = ref.sample(goal.numpy(), theta, seed=0)
    phi = {
        k: v.detach()
        for k, v in ref.adapt(
            {k: v.clone().requires_grad_() for k, v in theta.items()}, train, create_graph=False
        ).items()
    }
    # ours on the same data, laid out [G=1, T, E, ...]
    from adaptrl.algos.maml_rl import Batch

    def as_batch(ep):
        return Batch(
            obs=ep["obs"][None],
            actions=ep["actions"][None],
            mask=ep["mask"][None],
            advantages=ep["advantages"][None],
            dist=ep["dist"][None],
            logp=ep["logp"][None],
            returns=torch.zeros(1),
        )

    ours_phi = ours.adapt_params(theta, [as_batch(train)], [cfg.inner_lr], first_order=True)
    for k in phi:
        torch.testing.assert_close(ours_phi[k][0], phi[k], rtol=1e-5, atol=1e-6)
    ref.close()


def test_shipped_table4_models_load_with_their_reports_protocol():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "docs/results/maml-rl"
    report = root / "maml-nav2d-100it-authors-box-evalsteps"
    per_seed = json.loads((report / "bench.json").read_text())["per_seed"]["MAML"]
    for seed in range(3):
        learner = load_trained(report / "models" / f"MAML-s{seed}")
        c = learner.config
        assert learner.iteration == 100 and learner.seed == seed
        assert (c.inner_lr, c.eval_inner_lrs, c.eval_rollouts_per_task) == (0.5, (0.5, 0.25), 40)
        assert c.family.goal_region == "box" and c.eval_batch == "steps"
        assert len(per_seed[seed]) == 4
    # seed 0's model re-scores its report exactly: the bench's tasks and generator, first chunk
    seed0 = load_trained(report / "models" / "MAML-s0")
    chunk = seed0.config.eval_chunk
    tasks = seed0.family.tasks(100, "test", bench.EVAL_SEED)[:chunk]
    gen = make_generator(bench.EVAL_SEED, "maml-nav2d", "eval")
    curve = seed0.adaptation_curve(tasks, 3, gen).double()
    reported = load_curve_report(report / "baselines-s0" / "results.json").curves[0]
    assert reported.label == "MAML"
    torch.testing.assert_close(curve, reported.values[:chunk], rtol=1e-5, atol=1e-4)


def test_shipped_curriculum_models_load_and_rescore_their_report():
    """The step-curriculum models (100 one-step + 10 two-step meta-iterations) load with their
    schedule, and seed 0's re-scores its report's mean over the 100 test tasks exactly."""
    from pathlib import Path

    report = Path(__file__).resolve().parents[1] / "docs/results/maml-rl"
    report = report / "maml-nav2d-110it-curriculum-evalsteps"
    per_seed = json.loads((report / "bench.json").read_text())["per_seed"]["MAML"]
    for seed in range(3):
        c = load_trained(report / "models" / f"MAML-s{seed}").config
        assert (c.iterations, c.single_step_iterations, c.inner_steps) == (110, 100, 2)
        assert c.inner_lrs == (0.5, 0.25) and c.step_loss_weights == (1.0, 1.0)
        assert c.eval_inner_lrs == (0.5, 0.25) and c.eval_batch == "steps"
    seed0 = load_trained(report / "models" / "MAML-s0")
    assert seed0.iteration == 110
    tasks = seed0.family.tasks(100, "test", bench.EVAL_SEED)
    gen = make_generator(bench.EVAL_SEED, "maml-nav2d", "eval")
    curve = seed0.adaptation_curve(tasks, 3, gen).double().mean(0)
    torch.testing.assert_close(
        curve, torch.tensor(per_seed[0], dtype=torch.float64), rtol=1e-5, atol=1e-4
    )


def test_shipped_mktn_models_pair_with_maml_and_rescore_their_report():
    """The ANIL comparison's models: MKTN and MAML with the same seeds and configuration; MKTN
    seed 0 re-scores its report's mean over the 100 test tasks exactly."""
    from pathlib import Path

    report = Path(__file__).resolve().parents[1] / "docs/results/maml-rl/mktn-nav2d-3seeds"
    per_seed = json.loads((report / "bench.json").read_text())["per_seed"]["mktn"]
    for seed in range(3):
        mktn = load_trained(report / "models" / f"mktn-s{seed}")
        maml = load_trained(report / "models" / f"MAML-s{seed}")
        assert isinstance(mktn, MKTN) and mktn.adapted()[0].startswith("head.")
        assert mktn.iteration == maml.iteration == 100 and mktn.seed == maml.seed == seed
        assert mktn.config == mktn_config(maml.config)
    seed0 = load_trained(report / "models" / "mktn-s0")
    tasks = seed0.family.tasks(100, "test", bench.EVAL_SEED)
    gen = make_generator(bench.EVAL_SEED, "maml-nav2d", "eval")
    curve = seed0.adaptation_curve(tasks, 3, gen).double().mean(0)
    torch.testing.assert_close(
        curve, torch.tensor(per_seed[0], dtype=torch.float64), rtol=1e-5, atol=1e-4
    )


def test_shipped_cheetah_model_loads_with_its_training_configuration():
    """The second HalfCheetah forward/backward seed (Table 5) is shipped as a run directory."""
    from pathlib import Path

    pytest.importorskip("mujoco")
    root = Path(__file__).resolve().parents[1] / "docs/results/maml-rl/maml-cheetah-paper-budget"
    learner = load_trained(root / "seed1" / "model")
    c = learner.config
    assert (learner.iteration, learner.seed) == (160, 1)
    assert c.family.family_id == "halfcheetah-dir-v0" and c.eval_inner_lrs == (0.1, 0.05)
    assert (c.meta_batch_size, c.rollouts_per_task, c.hidden, c.inner_lr) == (
        40,
        20,
        (100, 100),
        0.1,
    )
    report = load_curve_report(root / "seed1" / "eval-160it-100tasks-lr005" / "results.json")
    assert report.meta["training_seed"] == 1 and report.meta["num_tasks"] == 100
    assert report.curves[0].values.mean(0)[1] > 0.8 * 293.19  # the target after one step
