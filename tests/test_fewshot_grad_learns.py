"""Quick "it learns" checks of the gradient few-shot learners, and smoke runs of their benches.
Thresholds sit well clear of chance: predicting zero on sinusoids gives an MSE of about 4.2, and
5-way classification has 20% accuracy by chance."""

from __future__ import annotations

import json

import pytest
import torch

from adaptrl.algos import make_learner
from adaptrl.baselines.pretrained import PretrainedConfig, PretrainedFinetune
from adaptrl.bench.fewshot_speed import FewShotSpeedConfig
from adaptrl.bench.fewshot_speed import run as run_speed
from adaptrl.bench.sinusoid import SinusoidBenchConfig
from adaptrl.bench.sinusoid import run as run_sinusoid
from adaptrl.core.errors import ConfigError
from adaptrl.fewshot import GlyphsConfig, SinusoidConfig


@pytest.mark.parametrize(
    ("name", "iterations", "bound"), [("maml", 300, 2.6), ("metasgd", 300, 2.6)]
)
def test_sinusoid_one_step_adaptation_improves_with_meta_training(name, iterations, bound):
    from adaptrl.algos import ALGOS

    config = ALGOS.get(name).config_cls(iterations=iterations)
    untrained = make_learner(name, config, seed=0)
    learner = make_learner(name, config, seed=0)
    for _ in range(iterations):
        learner.meta_train_step()
    tasks = learner.family.tasks(200, "test", seed=0, shots=5, queries=50)
    before = untrained.adaptation_curve(tasks, 1)[:, 1].mean()
    after = learner.adaptation_curve(tasks, 1)[:, 1].mean()
    assert after < bound < before


@pytest.mark.parametrize(("name", "bound"), [("maml", 0.33), ("anil", 0.33)])
def test_glyphs_5way_1shot_accuracy_well_above_chance(name, bound):
    from adaptrl.algos import ALGOS

    family = GlyphsConfig(ways=5, shots=1, queries=2)
    config = ALGOS.get(name).config_cls(family=family, meta_batch=4, filters=8, iterations=40)
    learner = make_learner(name, config, seed=0)
    for _ in range(40):
        learner.meta_train_step()
    tasks = learner.family.tasks(60, "test", seed=0, queries=5)
    curve = learner.adaptation_curve(tasks, 3).mean(0)
    assert curve[0] < 0.3  # before adapting, labels are a coin toss
    assert curve[3] > bound


def test_pretrained_baseline_fits_the_mean_function_and_refuses_classification():
    learner = PretrainedFinetune(PretrainedConfig(family=SinusoidConfig()), seed=0)
    tasks = learner.family.tasks(100, "test", seed=0)
    before = learner.adaptation_curve(tasks, 0)[:, 0].mean()
    for _ in range(200):
        learner.meta_train_step()
    after = learner.adaptation_curve(tasks, 0)[:, 0].mean()
    assert after < before and after < 5.0
    with pytest.raises(ConfigError, match="regression"):
        PretrainedFinetune(PretrainedConfig(family=GlyphsConfig()), seed=0)


def test_sinusoid_bench_quick_writes_a_report_with_the_paper_rows(tmp_path):
    cfg = SinusoidBenchConfig(methods=("maml", "pretrained"), quick=True, out=tmp_path)
    assert run_sinusoid(cfg) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert [c["label"] for c in data["curves"]] == ["MAML (ours)", "pretrained + fine-tune (ours)"]
    assert len(data["curves"][0]["values"]) == 100 and len(data["x"]) == 11
    maml_paper = next(v for k, v in data["reference"].items() if k.startswith("MAML"))
    assert maml_paper[1] == 0.67 and maml_paper[5] == 0.38 and maml_paper[10] == 0.35
    assert (tmp_path / "models" / "maml.safetensors").exists()
    # a second run reuses the trained models and gives the same numbers
    assert run_sinusoid(cfg) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["curves"][0]["mean"] == data["curves"][0]["mean"]
    with pytest.raises(ConfigError, match="unknown method"):
        SinusoidBenchConfig(methods=("mamll",))


def test_fewshot_speed_quick_runs_every_implementation(tmp_path):
    assert run_speed(FewShotSpeedConfig(shapes=(3,), quick=True, out=tmp_path)) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    (result,) = data["results"]
    assert set(result["meta_it_per_s"]) == {
        "ours (vmap)",
        "ours (batched)",
        "ours (loop)",
        "higher",
        "autograd loop",
        "floor",
    }
    assert all(v > 0 for v in result["meta_it_per_s"].values())
    assert result["memory"]["iterations"] == 10
    assert "provenance" in data
    with pytest.raises(ConfigError, match="indices"):
        FewShotSpeedConfig(shapes=(7,))


def test_strategies_give_the_same_glyph_meta_gradient():
    """vmap, batched (grouped convs) and loop agree on the conv net with BatchNorm."""
    grads = {}
    for strategy in ("vmap", "batched", "loop"):
        from adaptrl.algos.maml import MAMLConfig

        config = MAMLConfig(
            family=GlyphsConfig(ways=3, shots=2, queries=2), filters=4, strategy=strategy
        )
        learner = make_learner("maml", config, seed=0)
        batch = learner.family.sample(3, generator=torch.Generator().manual_seed(0))
        loss, _ = learner.meta_loss(batch)
        grads[strategy] = torch.autograd.grad(loss, list(learner.model.parameters()))
    for other in ("batched", "loop"):
        for a, b in zip(grads["vmap"], grads[other], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "series, grows",
    [
        ([600.0] * 5 + [610.0] * 95, False),  # a warm-up step, then a plateau
        ([600.0 + 0.5 * i for i in range(100)], True),  # steady growth
    ],
)
def test_memory_check_ignores_warm_up_and_flags_growth(series, grows, monkeypatch):
    from adaptrl.bench import fewshot_speed

    values = iter(series)
    monkeypatch.setattr(fewshot_speed, "make_case", lambda shape, tasks, seed: (None, None))
    monkeypatch.setattr(
        fewshot_speed, "make_steps", lambda shape, net, batch: {"ours (batched)": lambda: None}
    )
    monkeypatch.setattr(fewshot_speed, "resident_mb", lambda: next(values))
    out = fewshot_speed.memory_check(
        fewshot_speed.SHAPES[3], "batched", tasks=1, iterations=100, seed=0
    )
    assert out["grows"] is grows
    assert len(out["peak_mb_by_tenth"]) == 10
