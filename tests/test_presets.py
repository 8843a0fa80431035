"""Presets: YAML files in the package that `adaptrl train|bench --config` start from, strictly read,
with flags on top; and the small command-line errors a new user hits first."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from adaptrl.algos import ALGOS, load_config, make_learner
from adaptrl.algos.maml_rl import MAMLRLConfig
from adaptrl.algos.mktn import MKTNConfig
from adaptrl.algos.rl2 import RL2Config
from adaptrl.algos.trainer import read_run
from adaptrl.baselines.pg import mktn_config
from adaptrl.bench import BENCHES
from adaptrl.cli.main import main
from adaptrl.core.config import config_to_dict, read_yaml
from adaptrl.core.errors import ConfigError, UnknownIdError
from adaptrl.core.presets import list_presets, load_preset, preset_path, presets_root
from adaptrl.envs import FAMILIES


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


ROOT = Path(__file__).resolve().parents[1]
PRESETS = [p for p in list_presets() if p.group in ALGOS]


def test_every_algorithm_preset_builds_its_learner():
    """A preset is read strictly and its learner is built (family, network shapes): a renamed
    field or family option breaks this, not a user's run hours later."""
    assert {"rl2/bandits-10", "rl2/mdps-25", "maml-rl/nav2d-curriculum"} <= {p.id for p in PRESETS}
    for preset in PRESETS:
        assert preset.description, preset.id
        config = load_config(preset.group, preset.name)
        if config.family.family_id.startswith(
            ("halfcheetah", "ant")
        ) and not importlib.util.find_spec("mujoco"):
            continue
        make_learner(preset.group, config)


def test_presets_extend_each_other_and_list_only_what_differs():
    ten, twenty_five = (
        load_preset(RL2Config, "rl2", "mdps-10"),
        load_preset(RL2Config, "rl2", "mdps-25"),
    )
    assert (twenty_five.family.n, twenty_five.iterations) == (25, 3000)
    assert twenty_five == dataclasses.replace(ten, family=twenty_five.family, iterations=3000)
    text = preset_path("rl2", "mdps-25").read_text()
    assert "extends: mdps-10" in text and "hidden" not in text


@pytest.mark.parametrize("name", ["nav2d", "cheetah-dir"])
def test_a_preset_extends_another_groups(name):
    """mktn's presets are MAML-RL's with the head alone adapted, and restate nothing else."""
    maml = load_preset(MAMLRLConfig, "maml-rl", name)
    mktn = load_preset(MKTNConfig, "mktn", name)
    assert mktn == mktn_config(maml) and mktn.inner_layers == 1
    assert read_yaml(preset_path("mktn", name)) == {
        "extends": f"maml-rl/{name}",
        "inner_layers": 1,
    }


def test_unknown_presets_and_keys_are_one_line_errors(tmp_path):
    with pytest.raises(UnknownIdError, match="Did you mean 'bandits-10'"):
        load_config("rl2", "bandit-10")
    with pytest.raises(ConfigError, match="no such file"):
        load_config("rl2", str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("hiden: 32\n")
    with pytest.raises(ConfigError, match="Did you mean 'hidden'"):
        load_config("rl2", str(bad))
    bad.write_text("hidden: 0\n")
    with pytest.raises(ConfigError, match="hidden must be >= 1, got 0"):
        load_config("rl2", str(bad))


def test_train_from_a_preset_with_flags_on_top_saves_the_resolved_config(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "rl2", "--config", "bandits-100", "--iterations", "1", "--trials", "8"]
    code, _, err = run_cli([*args, "--out", str(out)], capsys)
    assert code == 0, err
    config = read_run(out)[1].config
    expected = load_config("rl2", "bandits-100", {"iterations": 1, "trials": 8})
    assert config == expected and config.gae_lambda == 0.95 and config.family.n == 100
    # the run's directory is a --config too: the same configuration, another seed
    again = tmp_path / "again"
    code, _, err = run_cli(
        ["train", "rl2", "--config", str(out), "--seed", "3", "--out", str(again)], capsys
    )
    assert code == 0, err
    assert read_run(again)[1].config == config and read_run(again)[1].seed == 3
    # another algorithm's run is refused
    code, _, err = run_cli(["train", "maml-rl", "--config", str(out)], capsys)
    assert code == 2 and "is a rl2 run's configuration, not maml-rl's" in err


def test_bench_config_fills_its_learner_field_or_the_whole_bench(monkeypatch):
    seen = []
    monkeypatch.setattr("adaptrl.bench.registry.run_bench", lambda cfg: seen.append(cfg) or 0)
    assert main(["bench", "rl2-mdps", "--config", "mdps-25", "--rl2.hidden", "32"]) == 0
    assert seen[-1].rl2 == load_config("rl2", "mdps-25", {"hidden": 32})
    assert main(["bench", "maml-nav2d", "--config", "nav2d-curriculum", "--num-tasks", "7"]) == 0
    bench = seen[-1]
    assert bench.maml == load_config("maml-rl", "nav2d-curriculum") and bench.num_tasks == 7
    assert main(["bench", "glyphs", "--config", "budget-100", "--iterations", "50"]) == 0
    glyphs = seen[-1]
    assert (glyphs.iterations, glyphs.queries, glyphs.num_tasks) == (50, 5, 600)
    assert "maml.meta_batch=8" in glyphs.params
    # a run directory is a --config too (its configuration)
    shipped = ROOT / "docs/results/maml-rl/maml-nav2d-110it-curriculum-evalsteps/models/MAML-s0"
    run = read_run(shipped)
    assert main(["bench", "maml-nav2d", "--config", str(shipped)]) == 0
    assert seen[-1].maml == run[1].config
    # every bench names a preset group that exists, or none
    groups = {p.group for p in list_presets()}
    for name, spec in BENCHES.items():
        if spec.preset_field is not None:
            assert spec.presets in groups, name


def test_list_shows_the_presets(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0 and "Presets" in out
    for name in ("bandits-100", "mdps-25", "nav2d-curriculum", "cheetah-vel", "budget-100"):
        assert name in out


def test_eval_of_a_missing_run_directory_says_so(capsys):
    code, out, err = run_cli(["eval", "/path/that/does/not/exist"], capsys)
    assert code == 2
    assert "/path/that/does/not/exist: no such run directory" in err
    assert "Unrecognized" not in err + out and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_a_missing_device_creates_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "rl2", "--device", "cuda", "--out", str(out)], capsys)
    assert code == 2 and "CUDA is not available" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["meta-q", "--buffer-trials", "100000000"], "lower --buffer-trials"),
        (["meta-q", "gridworld-goal-v0", "--context", "1000"], "longer than a trial"),
        (
            ["meta-q", "gridworld-goal-v0", "--adaptation", "propensity", "--adapt-episodes", "9"],
            "leaves no episode",
        ),
    ],
)
def test_train_refused_by_the_learner_creates_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", *args, "--out", str(out)], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_ids_name_their_kind_in_the_plural():
    with pytest.raises(UnknownIdError, match="Known families: ") as exc:
        FAMILIES.get("nav2d-gaol-v0")
    assert "familys" not in str(exc.value)
    with pytest.raises(UnknownIdError, match="Known benches: "):
        BENCHES.get("rl2-bandit")


def test_preset_files_hold_only_known_keys_in_plain_yaml():
    for preset in list_presets():
        data = yaml.safe_load(preset.path.read_text())
        assert isinstance(data, dict) and data, preset.id
        assert presets_root() in preset.path.parents  # shipped inside the package
    # a preset round-trips through the config serialiser
    config = load_config("maml-rl", "nav2d-authors")
    assert load_config("maml-rl", "nav2d-authors", config_to_dict(config)) == config
