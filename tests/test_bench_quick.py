"""The quick forms of the reproduction commands docs/results.md gives, run end to end through the
command line with the presets they name: each trains, evaluates and writes its report."""

from __future__ import annotations

import importlib.util
import json

import pytest

from adaptrl.cli.main import main

COMMANDS = [
    ["rl2-bandits", "--config", "bandits-100", "--num-tasks", "20"],
    ["rl2-mdps", "--config", "mdps-25", "--num-tasks", "20"],
    ["maml-nav2d", "--config", "nav2d-curriculum", "--baselines"],
    ["maml-cheetah", "--config", "cheetah-vel"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:3]))
def test_quick_form_of_a_documented_reproduction_runs(command, tmp_path):
    if "cheetah" in command[2] and importlib.util.find_spec("mujoco") is None:
        pytest.skip("needs the mujoco extra")
    out = tmp_path / "out"
    assert main(["bench", *command, "--quick", "--out", str(out)]) == 0
    assert (out / "report.md").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["commit"]
    if command[0].startswith("rl2"):
        setting = results["settings"][0]
        preset = {"bandits-100": (100, 5), "mdps-25": 25}[command[2]]
        assert setting["setting"] == (
            "x".join(map(str, preset)) if isinstance(preset, tuple) else "25"
        )
        assert setting["config"]["iterations"] == 5 and setting["config"]["trials"] == 32
    else:
        assert results["meta"]["family"] in ("nav2d-goal-v0", "halfcheetah-vel-v0")
