"""Typed configs: dict/YAML round trips, strict errors, unions of family configs, parse_cli."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

import pytest
import tyro

from adaptrl.core import (
    ConfigError,
    config_from_dict,
    config_hash,
    config_to_dict,
    load_yaml_config,
    parse_cli,
    save_yaml_config,
)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class BanditCfg:
    """Bernoulli bandit."""

    family_id: ClassVar[str] = "test-bandit-v0"
    k: int = 5
    """Number of arms."""
    n: int = 10

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ConfigError(f"k must be >= 2, got {self.k}")


@dataclasses.dataclass(frozen=True)
class NavCfg:
    """2-D navigation."""

    family_id: ClassVar[str] = "test-nav-v0"
    radius: float = 1.0
    """Goal radius."""


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 3e-4
    """Learning rate."""
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass(frozen=True)
class Train:
    """Train a learner."""

    family: Union[  # noqa: UP007 (Annotated members read better this way)
        Annotated[BanditCfg, tyro.conf.subcommand("bandit")],
        Annotated[NavCfg, tyro.conf.subcommand("nav")],
    ] = BanditCfg()
    """Which task family."""
    tags: tuple[str, ...] = ()
    """Free-form tags."""
    mode: Literal["fast", "slow"] = "fast"
    """Speed mode."""
    out: Path | None = None
    """Output directory."""
    colour: Colour = Colour.RED
    optim: Optim = Optim(lr=1e-3)
    seed: int = 0
    """Random seed."""


@dataclasses.dataclass(frozen=True)
class Required:
    name: str
    size: int = 3


def test_dict_round_trip_and_plain_types() -> None:
    cfg = Train(family=NavCfg(radius=2.5), tags=("a", "b"), out=Path("/tmp/x"), colour=Colour.BLUE)
    data = config_to_dict(cfg)
    assert data["family"] == {"family_id": "test-nav-v0", "radius": 2.5}
    assert data["tags"] == ["a", "b"]
    assert data["out"] == "/tmp/x"
    assert data["colour"] == "blue"
    assert data["optim"]["betas"] == [0.9, 0.999]
    assert config_from_dict(Train, data) == cfg


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = Train(family=NavCfg(radius=0.25), tags=("x",), mode="slow", seed=7)
    path = save_yaml_config(cfg, tmp_path / "sub" / "config.yaml")
    text = path.read_text()
    assert "family_id: test-nav-v0" in text
    assert load_yaml_config(Train, path) == cfg
    assert not list(path.parent.glob("*.tmp"))


def test_missing_keys_take_defaults_of_the_default_instance() -> None:
    cfg = config_from_dict(Train, {"optim": {"betas": [0.5, 0.6]}})
    assert cfg.optim == Optim(lr=1e-3, betas=(0.5, 0.6))  # lr from Train's default Optim
    assert cfg.family == BanditCfg()


def test_union_without_family_id_uses_the_default_class() -> None:
    assert config_from_dict(Train, {"family": {"k": 3}}).family == BanditCfg(k=3)
    with pytest.raises(ConfigError, match="unknown key 'radius' for BanditCfg"):
        config_from_dict(Train, {"family": {"radius": 3.0}})
    assert config_from_dict(Train, {"family": {"family_id": "test-nav-v0"}}).family == NavCfg()


def test_unknown_key_names_key_class_and_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(Train, {"sed": 1})
    msg = str(err.value)
    assert "'sed'" in msg and "Train" in msg and "Did you mean 'seed'?" in msg
    with pytest.raises(
        ConfigError, match=r"optim: unknown key 'lrr' for Optim\. Did you mean 'lr'"
    ):
        config_from_dict(Train, {"optim": {"lrr": 0.1}})


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\nfamly:\n  k: 4\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'famly' .*Did you mean 'family'"):
        load_yaml_config(Train, path)


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"seed": "zero"}, r"seed: expected int, got 'zero'"),
        ({"seed": True}, r"seed: expected int"),
        ({"seed": 1.5}, r"seed: expected int"),
        ({"optim": {"lr": "fast"}}, r"optim\.lr: expected float"),
        ({"optim": {"betas": [0.1, 0.2, 0.3]}}, r"optim\.betas: expected 2 values"),
        ({"tags": "abc"}, r"tags: expected tuple\[str, \.\.\.\]"),
        ({"tags": ["a", 3]}, r"tags\[1\]: expected str"),
        ({"mode": "fsat"}, r"mode: 'fsat' is not one of 'fast', 'slow'\. Did you mean 'fast'"),
        ({"colour": "green"}, r"colour: 'green' is not a valid Colour"),
        ({"out": 3}, r"out: expected"),
        ({"optim": 3}, r"optim: expected a mapping of Optim options"),
        (
            {"family": {"family_id": "test-nav-v1"}},
            r"unknown family_id 'test-nav-v1'.*'test-nav-v0'",
        ),
        ({"family": {"k": 1}}, r"family: k must be >= 2"),
    ],
)
def test_wrong_values_name_the_field(data: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(Train, data)


def test_conversions() -> None:
    cfg = config_from_dict(Train, {"optim": {"lr": "1e-3", "betas": [1, 2]}, "colour": "BLUE"})
    assert cfg.optim.lr == 1e-3 and cfg.optim.betas == (1.0, 2.0)
    assert isinstance(cfg.optim.betas[0], float)
    assert cfg.colour is Colour.BLUE
    assert config_from_dict(Train, {"out": "runs/a"}).out == Path("runs/a")
    assert config_from_dict(Train, {"out": None}).out is None


def test_family_id_mismatch_at_top_level() -> None:
    assert config_from_dict(NavCfg, {"family_id": "test-nav-v0", "radius": 2}) == NavCfg(2.0)
    with pytest.raises(ConfigError, match="does not match NavCfg"):
        config_from_dict(NavCfg, {"family_id": "test-bandit-v0"})


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match="missing required key 'name' for Required"):
        config_from_dict(Required, {"size": 2})
    assert config_from_dict(Required, {"name": "a"}) == Required("a", 3)


def test_load_overrides_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\noptim:\n  lr: 0.5\n")
    cfg = load_yaml_config(Train, path, overrides={"optim.betas": [0.1, 0.2], "seed": 9})
    assert cfg.seed == 9 and cfg.optim == Optim(lr=0.5, betas=(0.1, 0.2))
    cfg = load_yaml_config(Train, path, overrides={"family": {"family_id": "test-nav-v0"}})
    assert cfg.family == NavCfg()
    with pytest.raises(ConfigError, match="not found"):
        load_yaml_config(Train, tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_yaml_config(Train, tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml_config(Train, tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml_config(Train, tmp_path / "empty.yaml") == Train()


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    save_yaml_config(Train(seed=1), path)
    before = path.read_bytes()

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_yaml_config(Train(seed=2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_config_hash_is_stable_and_content_sensitive() -> None:
    assert config_hash(Train()) == config_hash(Train())
    assert config_hash(Train()) != config_hash(Train(seed=1))
    assert len(config_hash(Train())) == 8


# --- parse_cli -------------------------------------------------------------------------------


def test_parse_cli_defaults_and_flags() -> None:
    assert parse_cli(Train, []) == Train()
    cfg = parse_cli(
        Train,
        [
            *("--seed", "4", "--tags", "a", "b", "--mode", "slow", "--out", "/tmp/o"),
            *("--optim.betas", "0.5", "0.6", "family:nav", "--family.radius", "2"),
        ],
    )
    assert cfg == Train(
        family=NavCfg(radius=2.0),
        tags=("a", "b"),
        mode="slow",
        out=Path("/tmp/o"),
        optim=Optim(lr=1e-3, betas=(0.5, 0.6)),
        seed=4,
    )


def test_parse_cli_parent_flags_may_follow_the_subcommand() -> None:
    cfg = parse_cli(Train, ["family:nav", "--family.radius", "2", "--seed", "3"])
    assert cfg.family == NavCfg(radius=2.0) and cfg.seed == 3


def test_parse_cli_config_file_then_flags(tmp_path: Path) -> None:
    path = save_yaml_config(
        Train(family=NavCfg(radius=3.0), seed=7, tags=("y",)), tmp_path / "c.yaml"
    )
    cfg = parse_cli(Train, ["--config", str(path), "--seed", "8"])
    assert cfg == Train(family=NavCfg(radius=3.0), seed=8, tags=("y",))
    # The file's family is the default subcommand; its flags work without naming it.
    cfg = parse_cli(Train, [f"--config={path}", "--family.radius", "9"])
    assert cfg.family == NavCfg(radius=9.0) and cfg.seed == 7
    # Choosing another subcommand replaces the family.
    cfg = parse_cli(Train, ["--config", str(path), "family:bandit", "--family.k", "3"])
    assert cfg.family == BanditCfg(k=3) and cfg.seed == 7


def test_parse_cli_partial_config_with_required_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("size: 9\n")
    assert parse_cli(Required, ["--config", str(path), "--name", "z"]) == Required("z", 9)
    with pytest.raises(SystemExit) as exit_info:
        parse_cli(Required, ["--config", str(path)])
    assert exit_info.value.code == 2


def test_parse_cli_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config needs a preset name or a path"):
        parse_cli(Train, ["--config"])
    with pytest.raises(ConfigError, match="not found"):
        parse_cli(Train, ["--config", str(tmp_path / "nope.yaml")])
    (tmp_path / "c.yaml").write_text("seeed: 1\n")
    with pytest.raises(ConfigError, match="Did you mean 'seed'"):
        parse_cli(Train, ["--config", str(tmp_path / "c.yaml")])


def test_parse_cli_bad_subcommand_and_bad_value_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_cli(Train, ["family:navv"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "family:navv" in err and "family:nav" in err
    # A ConfigError from __post_init__ is not a ValueError, so tyro lets it through to the
    # caller (the CLI prints it on one line) instead of boxing it.
    with pytest.raises(ConfigError, match="k must be >= 2"):
        parse_cli(Train, ["--family.k", "1"])


def test_parse_cli_help_shows_docstrings_and_config_flag(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit) as exit_info:
        parse_cli(Train, ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Train a learner." in out and "--config PATH.yaml" in out
    assert "Random seed." in out and "family:bandit" in out and "2-D navigation." in out


def test_parse_cli_without_config_flag_rejects_it() -> None:
    with pytest.raises(SystemExit):
        parse_cli(Train, ["--config", "x.yaml"], config_flag=False)
