"""The adaptrl command: help, bad input (one line, exit 2, nothing lost), run dirs, kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from adaptrl.cli.main import main
from adaptrl.core.errors import MissingExtraError, require

BANDIT = ["eval", "bandit-bernoulli-v0", "--k", "3", "--n", "5", "--num-tasks", "20"]


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_families_agents_and_benches(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    for name in ["bandit-bernoulli-v0", "tabular-mdp-v0", "nav2d-goal-v0", "gridworld-goal-v0"]:
        assert name in out
    for name in ["gittins", "ucb1", "psrl", "oracle", "baselines-bandits", "env-throughput"]:
        assert name in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["eval", "--help"], "--num-tasks"),
        (["eval", "bandit-bernoulli-v0", "--help"], "(default: 5)"),
        (["eval", "nav2d-goal-v0", "--help"], "--reward"),
        (["bench", "baselines-bandits", "--help"], "--quick"),
        (["bench", "env-throughput", "--help"], "--batch-sizes"),
        (["demo", "--help"], "--num-tasks"),
        (["plot", "--help"], "RUN"),
        (["--help"], "eval"),
        # a Meta-World task is an option's value, not a mistyped family id
        (
            ["train", "maml-rl", "--family", "metaworld-ml1-v0", "--task", "push-v3", "--help"],
            "--benchmark-seed",
        ),
    ],
)
def test_help_shows_typed_options_with_defaults(args, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    assert expected in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "bandit-bernouli-v0"], "Did you mean 'bandit-bernoulli-v0'"),
        (["bench", "baselines-bandit"], "Did you mean 'baselines-bandits'"),
        ([*BANDIT, "--agents", "gittns"], "Did you mean 'gittins'"),
        (["eval", "bandit-bernoulli-v0", "--k", "1"], "k must be >= 2, got 1"),
        (["eval", "bandit-bernoulli-v0", "--n", "-3"], "n must be >= 1, got -3"),
        (["eval", "tabular-mdp-v0", "--horizon", "0"], "horizon must be >= 1"),
        ([*BANDIT, "--episodes", "0"], "at least 1 episode"),
        ([*BANDIT, "--agents", "psrl"], "does not run on bandit-bernoulli-v0"),
        ([*BANDIT, "--agents", "ucb1", "--params", "ucb1.q=3"], "has no parameter(s) q"),
        ([*BANDIT, "--device", "cuda:7"], "--device cpu"),
        (
            ["train", "maml-rl", "--family", "metaworld-ml1-v0", "--task", "reech-v3"],
            "unknown Meta-World task 'reech-v3'. Did you mean 'reach-v3'",
        ),
        (
            ["eval", "metaworld-ml1-v0", "--task", "push-v2", "--agents", "random"],
            "Did you mean 'push-v3'",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="must be >= 2"):
        main(["eval", "bandit-bernoulli-v0", "--k", "1", "--debug"])


def test_missing_extra_names_the_pip_install():
    with pytest.raises(MissingExtraError, match=r"pip install 'adaptrl\[mujoco\]'"):
        require("adaptrl_no_such_module", "mujoco", "MuJoCo task families")


def test_eval_writes_a_complete_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli([*BANDIT, "--agents", "random", "gittins", "--out", str(out)], capsys)
    assert code == 0
    for name in ["config.yaml", "metrics.csv", "results.json", "report.md", "curve.png"]:
        assert (out / name).exists(), name
    assert list((out / "checkpoints").glob("*.safetensors"))
    assert any(p.name.startswith("events.out.tfevents") for p in out.rglob("*"))
    data = json.loads((out / "results.json").read_text())
    assert data["num_tasks"] == 20
    assert data["family_config"] == {"family_id": "bandit-bernoulli-v0", "k": 3, "n": 5}
    assert "gittins" in stdout
    # plot redraws from the run directory
    (out / "curve.png").unlink()
    assert main(["plot", str(out)]) == 0 and (out / "curve.png").exists()


def test_eval_refuses_to_overwrite_a_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*BANDIT, "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run_cli([*BANDIT, "--agents", "gittins", "--out", str(out)], capsys)
    assert code == 2 and "--resume" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_config_file_with_unknown_keys_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*BANDIT, "--out", str(out)]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["num_taks"] = 5
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["eval", "--resume", str(out)], capsys)
    assert code == 2 and "num_taks" in err and "num_tasks" in err
    assert (out / "results.json").exists()


def test_eval_reads_a_config_file_and_flags_override_it(tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        "family: {family_id: tabular-mdp-v0, n: 3, horizon: 4}\n"
        "agents: [psrl, random]\nnum_tasks: 7\n"
    )
    out = tmp_path / "run"
    assert main(["eval", "--config", str(cfg), "--num-tasks", "5", "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["family"]["n"] == 3 and saved["family"]["horizon"] == 4
    assert saved["agents"] == ["psrl", "random"] and saved["num_tasks"] == 5
    data = json.loads((out / "results.json").read_text())
    assert data["num_tasks"] == 5 and data["episodes"] == 3
    cfg.write_text("agents: [psrl]\nnum_task: 7\n")
    code, _, err = run_cli(["eval", "--config", str(cfg)], capsys)
    assert code == 2 and "num_task" in err and "num_tasks" in err


def test_tampered_checkpoint_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*BANDIT, "--out", str(out)]) == 0
    ckpt = next((out / "checkpoints").glob("*.safetensors"))
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    code, _, err = run_cli(["eval", "--resume", str(out)], capsys)
    assert code == 2 and "checkpoint" in err.lower()
    assert ckpt.read_bytes() == bytes(data)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "adaptrl.cli.main", *args]


def test_killed_eval_resumes_to_identical_results(tmp_path):
    """SIGKILL an evaluation mid-way, resume it, and compare with an uninterrupted run."""
    args = ["eval", "bandit-bernoulli-v0", "--k", "10", "--n", "200", "--num-tasks", "1200"]
    args += ["--chunk-size", "30", "--agents", "thompson", "ucb1"]
    env = {**os.environ, "CI": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_cli(*args, "--out", str(ref)), check=True, env=env, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--out", str(run)), env=env, stdout=subprocess.DEVNULL)
    meta = run / "checkpoints" / "partial.json"
    deadline = time.time() + 120
    while time.time() < deadline and not meta.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(meta.read_text())["meta"]["units"] if meta.exists() else []
    assert 0 < len(done) < 80, "the kill should land mid-way"
    assert not (run / "results.json").exists()

    subprocess.run(_cli("eval", "--resume", str(run)), check=True, env=env, capture_output=True)
    a = json.loads((ref / "results.json").read_text())
    b = json.loads((run / "results.json").read_text())
    assert [x["returns"] for x in a["agents"]] == [x["returns"] for x in b["agents"]]
    rows_ref = (ref / "metrics.csv").read_text().splitlines()
    rows_run = (run / "metrics.csv").read_text().splitlines()
    assert rows_ref == rows_run


def test_demo_writes_a_report_and_never_deletes_what_it_did_not_make(tmp_path, capsys):
    out = tmp_path / "demo"
    threads = torch.get_num_threads()
    assert main(["demo", "--out", str(out), "--num-tasks", "50", "--rl2-iterations", "3"]) == 0
    assert torch.get_num_threads() == threads  # the demo's one thread does not leak out
    for fid in ["bandit-bernoulli-v0", "tabular-mdp-v0", "gridworld-goal-v0", "nav2d-goal-v0"]:
        assert (out / fid / "curve.png").exists() and (out / fid / "results.json").exists()
    assert (out / "overview.png").stat().st_size > 10_000
    assert "goal-search" in (out / "README.md").read_text()
    assert "RL² trained live" in (out / "README.md").read_text()
    assert (out / "rl2-bandits" / "training.png").exists()
    assert (out / "rl2-bandits" / "curve.png").exists()
    args = ["demo", "--out", str(out), "--num-tasks", "50", "--rl2-iterations", "0"]
    assert main(args) == 0  # its own folder: replaced
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    code, _, err = run_cli(["demo", "--out", str(precious)], capsys)
    assert code == 2 and "not made by `adaptrl demo`" in err
    assert (precious / "notes.txt").read_text() == "keep me"
