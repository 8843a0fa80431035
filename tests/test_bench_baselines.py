"""The RL² Table 1/2 baseline benches in --quick mode: structure, provenance, sanity vs the paper."""

from __future__ import annotations

import json

import pytest

from adaptrl.bench.baselines import (
    BanditBenchConfig,
    MDPBenchConfig,
    parse_bandit_setting,
    run_bandits,
    run_mdps,
)
from adaptrl.bench.reference import RL2_TABLE1, RL2_TABLE2
from adaptrl.core.errors import ConfigError


def rows_by(payload, setting, agent, **params):
    return [
        r
        for r in payload["rows"]
        if r["setting"] == setting
        and r["agent"] == agent
        and all(r["params"].get(k) == v for k, v in params.items())
    ]


def test_quick_bandit_bench(tmp_path):
    payload = run_bandits(BanditBenchConfig(quick=True, out=tmp_path))
    assert {r["setting"] for r in payload["rows"]} == {"10x5", "100x5"}
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["provenance"]["commit"] and on_disk["provenance"]["machine"]["cores"]
    assert "200 held-out test tasks" in on_disk["tasks"]
    assert "| 10x5 | gittins |" in (tmp_path / "report.md").read_text()
    (gittins,) = rows_by(payload, "100x5", "gittins")
    (random,) = rows_by(payload, "100x5", "random")
    assert gittins["paper"] == RL2_TABLE1[(100, 5)]["gittins"]
    assert gittins["mean"] > random["mean"] + 20  # far clear of chance
    assert random["match"] and gittins["match"]  # random ~ 49.9 and Gittins ~ 78.3 within CI
    (ucb,) = rows_by(payload, "10x5", "ucb1")
    assert "c" in ucb["params"]  # tuned on meta-train tasks


def test_quick_mdp_bench_reports_both_psrl_priors(tmp_path):
    payload = run_mdps(MDPBenchConfig(quick=True, settings=("10",), out=tmp_path))
    assert {r["setting"] for r in payload["rows"]} == {"10"}
    (true_prior,) = [
        r for r in rows_by(payload, "10", "psrl") if "reward_prior_mean" not in r["params"]
    ]
    (zero_prior,) = rows_by(payload, "10", "psrl", reward_prior_mean=0.0)
    (random,) = rows_by(payload, "10", "random")
    (oracle,) = rows_by(payload, "10", "oracle")
    assert oracle["paper"] is None and oracle["match"] is None
    assert random["match"] and random["paper"] == RL2_TABLE2[10]["random"]
    assert oracle["mean"] > true_prior["mean"] > random["mean"] + 20
    assert zero_prior["mean"] != true_prior["mean"]


def test_bad_bandit_setting_is_a_config_error():
    assert parse_bandit_setting("100x50") == (100, 50)
    with pytest.raises(ConfigError, match="10x5"):
        parse_bandit_setting("100-50")
