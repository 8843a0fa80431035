"""The metric learners and the learned LSTM optimizer as MetaLearners: they learn (well clear of
chance / of tuned SGD on held-out tasks), are deterministic, and resume bit-identically."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from adaptrl.algos.lstm_optimizer import (
    LSTMOptimizerConfig,
    LSTMOptimizerLearner,
    hand_designed_curve,
    tune_learning_rate,
)
from adaptrl.algos.matching import MatchingConfig, MatchingLearner
from adaptrl.algos.protonet import ProtoNetConfig, ProtoNetLearner
from adaptrl.core.checkpoint import load_state, save_state
from adaptrl.core.errors import ConfigError
from adaptrl.eval.stats import mean_ci
from adaptrl.fewshot import SinusoidConfig, make_fewshot_family
from adaptrl.fewshot.glyphs import GlyphsConfig

SMALL_LSTM = LSTMOptimizerConfig(
    family=SinusoidConfig(shots=20, queries=20),
    iterations=150,
    tasks_per_batch=8,
    inner_steps=10,
    unroll=10,
    optimizee_hidden=(20,),
    lr=3e-3,
)


def _params(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.net.parameters()]


def test_lstm_optimizer_beats_tuned_sgd_on_held_out_tasks():
    learner = LSTMOptimizerLearner(SMALL_LSTM, seed=0)
    for _ in range(SMALL_LSTM.iterations):
        learner.meta_train_step()
    family = make_fewshot_family(SMALL_LSTM.family)
    steps = SMALL_LSTM.inner_steps
    tune_tasks = family.tasks(100, "val", seed=1)
    theta = learner.optimizee.init(100, torch.Generator().manual_seed(2), torch.device("cpu"))
    lr, _ = tune_learning_rate(
        learner.optimizee, theta, tune_tasks, steps, kind="sgd", grid=(0.003, 0.01, 0.03, 0.1)
    )
    test = family.tasks(300, "test", seed=3)
    ours = learner.adaptation_curve(test, steps, torch.Generator().manual_seed(4))
    assert ours.shape == (300, steps + 1)
    theta = learner.optimizee.init(300, torch.Generator().manual_seed(4), torch.device("cpu"))
    sgd = hand_designed_curve(learner.optimizee, theta, test, steps, kind="sgd", lr=lr)
    torch.testing.assert_close(ours[:, 0], sgd[:, 0])  # same initialisations
    diff, ci = mean_ci((sgd[:, -1] - ours[:, -1]).numpy())
    assert diff > max(ci, 0.3), (diff, ci)  # lower query MSE than tuned SGD after 10 steps


def test_lstm_optimizer_resumes_bit_identically(tmp_path):
    cfg = dataclasses.replace(SMALL_LSTM, iterations=4, unroll=5)
    a = LSTMOptimizerLearner(cfg, seed=7)
    for _ in range(2):
        a.meta_train_step()
    save_state(tmp_path / "ckpt", a.state_dict())
    for _ in range(2):
        a.meta_train_step()
    b = LSTMOptimizerLearner(cfg, seed=7)
    state, _ = load_state(tmp_path / "ckpt")
    b.load_state_dict(state)
    assert b.iteration == 2
    for _ in range(2):
        b.meta_train_step()
    for pa, pb in zip(_params(a), _params(b), strict=True):
        assert torch.equal(pa, pb)
    c = LSTMOptimizerLearner(cfg, seed=7)
    for _ in range(4):
        c.meta_train_step()
    assert all(torch.equal(x, y) for x, y in zip(_params(a), _params(c), strict=True))
    adapted = c.adapt(make_fewshot_family(cfg.family).tasks(3), 2, torch.Generator())
    assert {k: tuple(v.shape) for k, v in adapted.items()}["head.weight"] == (3, 1, 20)


def test_lstm_optimizer_rejects_bad_config():
    with pytest.raises(ConfigError, match="unroll"):
        LSTMOptimizerConfig(unroll=0)
    with pytest.raises(ConfigError, match="lr"):
        LSTMOptimizerConfig(lr=-1.0)


# --- Prototypical and Matching Networks on glyphs --------------------------------------------
GLYPHS = GlyphsConfig(ways=5, shots=1, queries=5)


def test_protonet_learns_5way_1shot_glyphs_on_held_out_classes():
    learner = ProtoNetLearner(ProtoNetConfig(family=GLYPHS, iterations=40, filters=32), seed=0)
    for _ in range(40):
        metrics = learner.meta_train_step()
    assert learner.iteration == 40 and torch.isfinite(metrics["loss"])
    tasks = make_fewshot_family(GLYPHS).tasks(100, "test", seed=1)
    acc = learner.adaptation_curve(tasks, 0, torch.Generator())
    assert acc.shape == (100, 1)
    # steps are ignored: a ProtoNet adapts by reading the support set
    torch.testing.assert_close(learner.adaptation_curve(tasks, 5, torch.Generator()), acc)
    mean, ci = mean_ci(acc.numpy())
    assert mean - ci > 0.5, (mean, ci)  # chance is 0.2
    protos = learner.adapt(tasks.chunk(0, 3), 0, torch.Generator())["prototypes"]
    assert protos.shape == (3, 5, learner.net.feature_dim)


def test_matching_net_with_fce_learns_5way_1shot_glyphs():
    cfg = MatchingConfig(family=GLYPHS, iterations=25, tasks_per_batch=2, filters=32, fce=True)
    learner = MatchingLearner(cfg, seed=0)
    for _ in range(25):
        learner.meta_train_step()
    acc = learner.adaptation_curve(make_fewshot_family(GLYPHS).tasks(60, "test", seed=1), 0, None)
    mean, ci = mean_ci(acc.numpy())
    assert mean - ci > 0.4, (mean, ci)  # chance is 0.2


def test_protonet_trains_with_more_ways_than_it_tests(monkeypatch):
    learner = ProtoNetLearner(
        ProtoNetConfig(family=GLYPHS, filters=8, train_ways=12, train_shots=2), seed=0
    )
    seen = []
    original = learner.family.sample

    def spy(*args, **kwargs):
        batch = original(*args, **kwargs)
        seen.append((batch.ways, batch.shots, batch.support_x.shape[1]))
        return batch

    monkeypatch.setattr(learner.family, "sample", spy)
    learner.meta_train_step()
    assert seen == [(12, 2, 24)]
    tasks = make_fewshot_family(GLYPHS).tasks(4, "test")
    assert learner.adaptation_curve(tasks, 0, None).shape == (4, 1)


@pytest.mark.parametrize("name", ["protonet", "matching"])
def test_metric_learners_resume_bit_identically(tmp_path, name):
    if name == "protonet":
        cfg, cls = ProtoNetConfig(family=GLYPHS, filters=8, lr_halve_every=2), ProtoNetLearner
    else:
        cfg, cls = (
            MatchingConfig(family=GLYPHS, filters=8, fce=True, tasks_per_batch=2),
            (MatchingLearner),
        )
    a = cls(cfg, seed=3)
    a.meta_train_step()
    save_state(tmp_path / "ckpt", a.state_dict())
    a.meta_train_step()
    a.meta_train_step()
    b = cls(cfg, seed=3)
    b.load_state_dict(load_state(tmp_path / "ckpt")[0])
    b.meta_train_step()
    b.meta_train_step()
    assert a.iteration == b.iteration == 3
    for pa, pb in zip(_params(a), _params(b), strict=True):
        assert torch.equal(pa, pb)
    other = _params(cls(cfg, seed=4))
    assert not all(torch.equal(x, y) for x, y in zip(_params(a), other, strict=True))


def test_metric_learners_refuse_regression_families():
    with pytest.raises(ConfigError, match="classification family"):
        ProtoNetLearner(ProtoNetConfig(family=SinusoidConfig()), seed=0)
    with pytest.raises(ConfigError, match="classification family"):
        MatchingLearner(MatchingConfig(family=SinusoidConfig()), seed=0)
    with pytest.raises(ConfigError, match="train_ways must be >= 2"):
        ProtoNetConfig(train_ways=1)
