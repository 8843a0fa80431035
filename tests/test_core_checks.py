"""Field ranges and choices declared in annotations (core.config.Config), the table writer, preset
files that extend each other, and the one --config flag parser."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import pytest

from adaptrl.core.config import Config, Ge, Gt, Interval, Size, Unit, take_config_flag
from adaptrl.core.errors import ConfigError
from adaptrl.core.presets import preset_data
from adaptrl.core.table import markdown_table


@dataclasses.dataclass(frozen=True)
class Checked(Config):
    n: Size = 1
    p: Annotated[float, Interval(gt=0, le=1)] = 0.5
    lam: Unit = 0.3
    maybe: Annotated[int, Ge(0)] | None = None
    kind: Literal["a", "b"] = "a"
    widths: tuple[Annotated[float, Gt(0)], ...] = ()
    pair: tuple[Size, Annotated[int, Ge(2)]] = (1, 2)


@dataclasses.dataclass(frozen=True)
class Tied(Checked):
    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n > 10 and self.kind == "a":
            raise ConfigError("kind 'a' takes at most 10")


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"n": 0}, "n must be >= 1, got 0"),
        ({"p": 0.0}, r"p must be in \(0, 1\], got 0.0"),
        ({"p": 1.5}, r"p must be in \(0, 1\], got 1.5"),
        ({"lam": -0.1}, r"lam must be in \[0, 1\], got -0.1"),
        ({"maybe": -1}, "maybe must be >= 0, got -1"),
        ({"kind": "c"}, "kind must be one of 'a', 'b', got 'c'"),
        ({"widths": (1.0, 0.0)}, r"widths\[1\] must be > 0, got 0.0"),
        ({"pair": (1, 1)}, r"pair\[1\] must be >= 2, got 1"),
    ],
)
def test_a_field_outside_its_annotation_is_a_one_line_error(kw, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        Checked(**kw)


def test_values_inside_their_annotations_and_replace_are_checked():
    ok = Checked(n=3, p=1.0, lam=0.0, maybe=0, kind="b", widths=(0.5,), pair=(2, 2))
    assert ok.p == 1.0 and ok.maybe == 0
    assert Checked(maybe=None).maybe is None
    with pytest.raises(ConfigError, match="n must be >= 1"):
        dataclasses.replace(ok, n=-2)  # replace builds a new instance: checked again
    with pytest.raises(ConfigError, match="kind 'a' takes at most 10"):
        Tied(n=11)
    with pytest.raises(ConfigError, match="n must be >= 1"):
        Tied(n=0)  # the annotations first, then the subclass's own rule
    assert Tied(n=11, kind="b").n == 11


def test_markdown_table_is_github_markdown():
    text = markdown_table(["agent", "mean"], [["ucb1", 6.71], ["a|b", None]])
    assert text.splitlines() == [
        "| agent | mean |",
        "|---|---|",
        "| ucb1 | 6.71 |",
        "| a\\|b |  |",
    ]
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [[1, 2]])


def test_presets_extend_in_order_and_cycles_are_refused(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("# base\nhidden: 32\nlr: 0.1\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {base}\nlr: 0.2\n")
    assert preset_data("rl2", str(child)) == {"hidden": 32, "lr": 0.2}
    base.write_text(f"extends: {child}\n")
    with pytest.raises(ConfigError, match="in a cycle"):
        preset_data("rl2", str(child))


def test_the_config_flag_is_taken_out_in_both_spellings():
    assert take_config_flag(["--seed", "1", "--config", "x.yaml", "y"]) == (
        "x.yaml",
        ["--seed", "1", "y"],
    )
    assert take_config_flag(["--config=p"]) == ("p", [])
    assert take_config_flag(["--k", "5"]) == (None, ["--k", "5"])
    with pytest.raises(ConfigError, match="--config needs"):
        take_config_flag(["--config"])
