"""The models behind `bench compare`'s headline rows are shipped: re-score them from a fresh clone
on the report's own tasks and check the report's figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adaptrl.algos.trainer import load_trained
from adaptrl.eval.protocol import EVAL_SEED, evaluate

ROOT = Path(__file__).resolve().parents[1]


def rescore(model: str, label: str, report: str) -> tuple[np.ndarray, dict]:
    """Per-task returns ``[tasks, episodes]`` of a shipped model under the label the compare bench
    evaluated it with (each evaluation unit is seeded by its label), and the report's data."""
    data = json.loads((ROOT / report).read_text())
    learner = load_trained(ROOT / model)
    result = evaluate(
        learner.family,
        [(label, lambda f: learner.trial_agent())],
        num_tasks=data["num_tasks"],
        episodes=len(data["rows"][0]["per_episode"][0]),
        eval_seed=EVAL_SEED,
        show_progress=False,
    )
    return result.agents[0].returns[0].double().numpy(), data


def test_meta_dqn_gridworld_row_rescores_exactly():
    returns, data = rescore(
        "docs/results/meta-dqn/models/varibad-s0",
        "meta-dqn seed#0",
        "docs/results/compare/gridworld-varibad/results.json",
    )
    row = next(r for r in data["rows"] if r["label"] == "meta-dqn")
    np.testing.assert_allclose(returns, np.array(row["per_episode"]), atol=1e-4)


@pytest.mark.parametrize("seed, expected", [(0, 6.65)])
def test_hyper_policy_bandit_seed_rescores_to_its_reported_trial_return(seed, expected):
    returns, _ = rescore(
        f"docs/results/hyper-policy/models/bandits10-s{seed}",
        f"hyper-policy seed#{seed}",
        "docs/results/compare/bandits-10/results.json",
    )
    assert round(float(returns.sum(-1).mean()), 2) == expected
