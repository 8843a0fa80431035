"""adaptrl bench speed: every speed bench in one command, their headline figures in one table."""

from __future__ import annotations

import json

import pytest

from adaptrl.bench.speed import PARTS, SpeedConfig, run_speed
from adaptrl.cli.main import main
from adaptrl.core.errors import ConfigError


def test_quick_speed_report_gathers_every_part(tmp_path):
    assert main(["bench", "speed", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["parts"]) == list(PARTS)
    for part, entry in results["parts"].items():
        if isinstance(entry, str):  # scaling without torchrun
            assert part == "scaling" and entry.startswith("skipped")
            continue
        assert entry["figures"], part
        assert (tmp_path / entry["report"]).is_file()
        for figure in entry["figures"]:
            assert len(figure) == 4 and figure[1]  # name, ours, vs reference, vs floor
    fewshot = results["parts"]["fewshot-speed"]["figures"]
    assert len(fewshot) == 4 and all("autograd loop" in f[2] for f in fewshot)
    assert results["provenance"]["commit"] and results["provenance"]["machine"]["cores"]
    assert "vs the in-run reference" in (tmp_path / "report.md").read_text()


def test_unknown_parts_are_refused_with_the_list(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown speed part.*the parts: env-throughput"):
        run_speed(SpeedConfig(parts=("maml-speeed",), out=tmp_path))
