"""The shared meta-learning infrastructure: trainer, run directories, resume, eval of trained
learners, adapt, adaptation-curve reports and the train/eval/adapt CLI, on a tiny real learner."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Annotated, Any

import pytest
import torch
import tyro

from _resume import full_and_resumed
from adaptrl.algos import ALGOS, AlgoSpec, MetaLearner, register_algo
from adaptrl.algos.trainer import (
    export_model,
    load_trained,
    new_run,
    read_run,
    train,
    train_run,
    training_seconds,
)
from adaptrl.cli.main import main
from adaptrl.core.checkpoint import list_checkpoints, load_checkpoint
from adaptrl.core.errors import ConfigError, TrainingError
from adaptrl.core.logging import read_metrics
from adaptrl.core.seeding import generator_state, make_generator, set_generator_state
from adaptrl.envs import FamilyConfigUnion, make_family
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.eval.curves import (
    AdaptationCurve,
    CurveReport,
    curve_markdown,
    load_curve_report,
    save_curve_report,
)
from adaptrl.eval.learners import EvalOptions, evaluate_learner


@dataclasses.dataclass(frozen=True)
class GoalGuessConfig:
    """Meta-learn an initial guess of the goal; adapt by gradient steps on noisy goal readings."""

    family: Annotated[FamilyConfigUnion, tyro.conf.arg(name="")] = Nav2DConfig()
    iterations: int = 6
    """Outer iterations."""
    lr: float = 0.1
    """Outer Adam learning rate."""
    inner_lr: float = 0.5
    """Inner step size."""
    nan_at: int = -1
    """Make the loss NaN at this iteration (to test the trainer's check)."""


class GoalGuess(MetaLearner):
    """A two-parameter meta-learner: small, but trained, resumed and evaluated like a real one."""

    default_eval_steps = 2

    def __init__(self, config: GoalGuessConfig, *, seed: int = 0, device: Any = "cpu"):
        super().__init__(config, seed=seed, device=device)
        self.family = make_family(config.family)
        self.theta = torch.nn.Parameter(torch.ones(2, device=self.device))
        self.opt = torch.optim.Adam([self.theta], lr=config.lr)
        self.gen = make_generator(seed, "goal-guess", device=self.device)

    def meta_train_step(self) -> dict[str, Any]:
        goals = self.family.sample_tasks(8, self.gen).goal.to(self.device)
        noise = 0.05 * torch.randn(goals.shape, generator=self.gen, device=self.device)
        loss = ((self.theta - goals - noise) ** 2).sum(1).mean()
        if self.iteration + 1 == self.config.nan_at:
            loss = loss * float("nan")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.iteration += 1
        return {"loss": loss.detach(), "theta_norm": self.theta.detach().norm()}

    def _inner(self, goals: torch.Tensor, steps: int, gen: torch.Generator) -> list[torch.Tensor]:
        theta = self.theta.detach().expand_as(goals)
        out = [theta]
        for _ in range(steps):
            reading = goals + 0.05 * torch.randn(goals.shape, generator=gen, device=goals.device)
            theta = theta - self.config.inner_lr * 2 * (theta - reading)
            out.append(theta)
        return out

    def adaptation_curve(self, tasks, steps, generator):
        thetas = self._inner(tasks.goal, steps, generator)
        return torch.stack([-(t - tasks.goal).norm(dim=1) for t in thetas], dim=1)

    def adapt(self, tasks, steps, generator):
        return {"theta": self._inner(tasks.goal, steps, generator)[-1]}

    def state_dict(self) -> dict[str, Any]:
        return {
            "theta": self.theta.detach().clone(),
            "opt": self.opt.state_dict(),
            "gen": generator_state(self.gen),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.theta.copy_(state["theta"])
        self.opt.load_state_dict(state["opt"])
        set_generator_state(self.gen, state["gen"])
        self.iteration = int(state["iteration"])


@pytest.fixture(autouse=True)
def goal_guess_registered():
    spec = register_algo(
        AlgoSpec("goal-guess-test", GoalGuessConfig, GoalGuess, "test learner", "rl")
    )
    yield spec
    ALGOS._items.pop("goal-guess-test")


def test_spec_requires_family_and_iterations():
    @dataclasses.dataclass(frozen=True)
    class NoIterations:
        family: Nav2DConfig = Nav2DConfig()

    with pytest.raises(TypeError, match="iterations"):
        AlgoSpec("x", NoIterations, GoalGuess, "", "rl")


def test_train_writes_metrics_checkpoints_and_model(tmp_path):
    run = new_run(tmp_path / "r", GoalGuessConfig(iterations=7), checkpoint_every=3, keep=2)
    learner = train_run(run.path, show_progress=False)
    assert learner.iteration == 7
    rows = read_metrics(run.metrics_path)
    assert [r["step"] for r in rows] == list(range(1, 8))
    steps = [int(p.name.rsplit("-", 1)[-1]) for p in list_checkpoints(run.checkpoint_dir)]
    assert steps == [6, 7]
    loaded = load_trained(run.path)
    assert torch.equal(loaded.theta, learner.theta) and loaded.iteration == 7
    assert read_run(run.path)[1].config == GoalGuessConfig(iterations=7)


def test_slow_iterations_are_checkpointed_by_time(tmp_path, monkeypatch):
    """Iterations slower than checkpoint_minutes each get a checkpoint, whatever
    checkpoint_every says: a run of hour-long iterations killed loses at most one."""
    import adaptrl.algos.trainer as trainer

    clock = iter(range(0, 10_000, 700))  # every reading 700 s (over 10 minutes) after the last
    monkeypatch.setattr(trainer, "_now", lambda: float(next(clock)))
    run = new_run(tmp_path / "r", GoalGuessConfig(iterations=5), checkpoint_every=50, keep=9)
    learner = GoalGuess(GoalGuessConfig(iterations=5))
    train(learner, run, iterations=5, checkpoint_every=50, keep=9, show_progress=False)
    steps = [int(p.name.rsplit("-", 1)[-1]) for p in list_checkpoints(run.checkpoint_dir)]
    assert steps == [1, 2, 3, 4, 5]
    monkeypatch.undo()
    # fast iterations (well under 10 minutes) keep to checkpoint_every
    fast = new_run(tmp_path / "f", GoalGuessConfig(iterations=5), checkpoint_every=50, keep=9)
    train_run(fast.path, show_progress=False)
    assert [p.name for p in list_checkpoints(fast.checkpoint_dir)] == ["ckpt-000000000005"]


def test_resume_after_a_kill_is_identical(tmp_path):
    # killed after the checkpoint at 6: iteration 7 is logged, then lost
    full, resumed = full_and_resumed(tmp_path, GoalGuessConfig(iterations=10), kill_at=7)
    assert torch.equal(resumed.theta, full.theta)


def test_training_seconds_add_up_over_resumes_and_travel_with_an_exported_model(tmp_path):
    def slow(learner, metrics):
        time.sleep(0.02)
        if learner.iteration == 5:
            raise KeyboardInterrupt

    path = new_run(tmp_path / "r", GoalGuessConfig(iterations=8), checkpoint_every=2, keep=9).path
    with pytest.raises(KeyboardInterrupt):
        train_run(path, show_progress=False, on_iteration=slow)
    at_four = training_seconds(path, iteration=4)
    assert at_four is not None and at_four >= 4 * 0.02
    assert training_seconds(path) == at_four  # no model yet: the newest checkpoint's
    train_run(path, resume=True, show_progress=False, on_iteration=lambda lr, m: time.sleep(0.02))
    total = training_seconds(path)
    assert total is not None and total >= at_four + 4 * 0.02  # iterations 5-8 on top of 1-4
    assert training_seconds(export_model(path, tmp_path / "exported").path) == total
    assert training_seconds(export_model(path, tmp_path / "at4", iteration=4).path) == at_four


def test_nan_metric_stops_training_with_a_clear_error(tmp_path):
    run = new_run(tmp_path / "r", GoalGuessConfig(iterations=5, nan_at=3), checkpoint_every=1)
    with pytest.raises(TrainingError, match="iteration 3"):
        train_run(run.path, show_progress=False)
    assert [int(p.name[-3:]) for p in list_checkpoints(run.checkpoint_dir)] == [1, 2]


def test_train_rejects_negative_iterations(tmp_path):
    run = new_run(tmp_path / "r", GoalGuessConfig())
    with pytest.raises(ConfigError):
        train(GoalGuess(GoalGuessConfig()), run, iterations=-1)


def test_evaluate_learner_writes_a_curve_report(tmp_path):
    learner = GoalGuess(GoalGuessConfig())
    md = evaluate_learner(
        learner, EvalOptions(num_tasks=50, steps=2, show_progress=False), tmp_path
    )
    assert "gradient steps = 2" in md
    report = load_curve_report(tmp_path / "results.json")
    values = report.curves[0].values
    assert values.shape == (50, 3)
    # theta starts at (1, 1), far from goals in [-0.5, 0.5]^2; each inner step halves... moves to the goal
    assert values[:, 0].mean() < -1.0 and values[:, 2].mean() > -0.1
    assert (tmp_path / "curve.png").stat().st_size > 0
    with pytest.raises(ConfigError, match="--steps"):
        evaluate_learner(learner, EvalOptions(num_tasks=5, episodes=2), tmp_path / "x")


def test_curve_report_round_trip_and_markdown(tmp_path):
    vals = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    report = CurveReport(
        "t",
        "mse",
        "gradient steps",
        [0, 1],
        False,
        [AdaptationCurve("a", vals)],
        meta={"num_tasks": 3},
        reference={"paper (Table 2)": [None, 2.5]},
    )
    md = curve_markdown(report)
    assert "| a | 3.000 ± 4.968 | 4.000 ± 4.968 |" in md  # t(0.975, 2) * 2 / sqrt(3) = 4.968
    assert "| paper (Table 2) | — | 2.5 |" in md
    save_curve_report(report, tmp_path)
    back = load_curve_report(tmp_path / "results.json")
    assert torch.equal(back.curves[0].values, vals.double()) and back.reference == report.reference
    data = json.loads((tmp_path / "results.json").read_text())
    assert "commit" in data["provenance"]
    with pytest.raises(ValueError, match="points"):
        CurveReport("t", "m", "x", [0, 1, 2], True, [AdaptationCurve("a", vals)])


def test_cli_train_eval_adapt_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "goal-guess-test",
                "--family",
                "nav2d-goal-v0",
                "--iterations",
                "4",
                "--out",
                str(out),
                "--checkpoint-every",
                "2",
                "--goal-high",
                "0.4",
            ]
        )
        == 0
    )
    _, record = read_run(out)
    assert record.config.iterations == 4 and record.config.family.goal_high == 0.4
    assert main(["eval", str(out), "--num-tasks", "20", "--steps", "1"]) == 0
    assert load_curve_report(out / "eval" / "results.json").curves[0].values.shape == (20, 2)
    assert main(["adapt", str(out), "--num-tasks", "3", "--steps", "1"]) == 0
    tensors, meta = load_checkpoint(out / "adapted")
    assert tensors["params.theta"].shape == (3, 2) and tensors["task.goal"].shape == (3, 2)
    assert meta["steps"] == 1
    assert main(["train", "--resume", str(out)]) == 0  # already finished: a no-op that succeeds


def test_cli_plot_redraws_a_curve_and_draws_evaluations_beside_each_other(tmp_path, capsys):
    runs = {}
    for name, iterations, tasks in (("a", 4, 20), ("b", 1, 20), ("c", 1, 10)):
        runs[name] = tmp_path / name
        train_args = ["--iterations", str(iterations), "--out", str(runs[name])]
        assert main(["train", "goal-guess-test", *train_args]) == 0
        assert main(["eval", str(runs[name]), "--num-tasks", str(tasks), "--steps", "1"]) == 0
    a, b, c = (runs[k] / "eval" for k in "abc")
    (a / "curve.png").unlink()
    assert main(["plot", str(a)]) == 0 and (a / "curve.png").stat().st_size > 1000
    out = tmp_path / "both"
    assert main(["plot", str(a), "--beside", str(b / "results.json"), "--out", str(out)]) == 0
    merged = load_curve_report(out / "results.json")
    assert [c.label for c in merged.curves] == [
        "a/eval: goal-guess-test",
        "b/eval: goal-guess-test",
    ]
    for got, src in zip(merged.curves, (a, b), strict=True):
        assert torch.equal(got.values, load_curve_report(src / "results.json").curves[0].values)
    assert (out / "curve.png").stat().st_size > 1000 and "b/eval" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["plot", str(a), "--beside", str(c), "--out", str(tmp_path / "x")]) == 2
    assert "num_tasks 10" in capsys.readouterr().err
    bandit = tmp_path / "bandit"
    assert main(["eval", "bandit-bernoulli-v0", "--num-tasks", "5", "--out", str(bandit)]) == 0
    capsys.readouterr()
    assert main(["plot", str(a), "--beside", str(bandit), "--out", str(tmp_path / "y")]) == 2
    assert "gradient learners" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "goal-guess-tst"]) == 2
    assert "Did you mean 'goal-guess-test'" in capsys.readouterr().err
    assert main(["train", "goal-guess-test", "nav2d-goal-v9"]) == 2
    assert "unknown family" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["adapt", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    out = tmp_path / "r"
    assert main(["train", "goal-guess-test", "--iterations", "1", "--out", str(out)]) == 0
    assert main(["train", "goal-guess-test", "--iterations", "1", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_train_help_lists_algorithms(capsys):
    assert main(["train", "--help"]) == 0
    assert "goal-guess-test" in capsys.readouterr().out


def test_cli_final_eval_is_recorded_in_the_run_and_done_again_on_resume(tmp_path):
    out = tmp_path / "run"
    args = ["train", "goal-guess-test", "--iterations", "2", "--out", str(out)]
    assert main([*args, "--final-eval-tasks", "7"]) == 0
    assert read_run(out)[1].final_eval_tasks == 7
    assert load_curve_report(out / "eval" / "results.json").curves[0].values.shape[0] == 7
    (out / "eval" / "results.json").unlink()
    assert main(["train", "--resume", str(out)]) == 0
    assert (out / "eval" / "results.json").exists()
    with pytest.raises(ConfigError, match="final_eval_tasks"):
        new_run(tmp_path / "bad", GoalGuessConfig(), final_eval_tasks=-1)


def test_train_in_memory_checks_metrics_and_stops_when_asked(tmp_path):
    learner = GoalGuess(GoalGuessConfig(iterations=9), seed=0)
    seen = []
    train(
        learner,
        iterations=9,
        show_progress=False,
        on_iteration=lambda lr, m: seen.append(m) or lr.iteration == 4,
    )
    assert learner.iteration == 4 and len(seen) == 4 and set(seen[0]) == {"loss", "theta_norm"}
    assert not any(tmp_path.iterdir())  # nothing written without a run directory
    train(learner, iterations=6, show_progress=False)  # continues from where it stopped
    assert learner.iteration == 6
    with pytest.raises(
        TrainingError, match="loss, theta_norm became nan at iteration 3; lower the"
    ):
        train(GoalGuess(GoalGuessConfig(nan_at=3)), iterations=5, show_progress=False)


def test_a_run_stopped_early_saves_its_model_and_last_checkpoint(tmp_path):
    run = new_run(tmp_path / "r", GoalGuessConfig(iterations=9), checkpoint_every=5)
    learner = train(
        GoalGuess(GoalGuessConfig(iterations=9)),
        run,
        iterations=9,
        checkpoint_every=5,
        show_progress=False,
        on_iteration=lambda lr, m: lr.iteration == 3,
    )
    assert learner.iteration == 3
    assert [int(p.stem.split("-")[1]) for p in list_checkpoints(run.checkpoint_dir)] == [3]
    assert load_trained(run.path).iteration == 3
