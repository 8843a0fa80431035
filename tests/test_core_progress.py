"""Progress and tables: plain output under CI, nothing when quiet."""

from __future__ import annotations

import pytest

from adaptrl.core import Progress, console, plain_output, print_table, progress


@pytest.fixture
def ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")


def test_plain_mode_under_ci(ci: None) -> None:
    assert plain_output()
    assert console().no_color


def test_plain_progress_prints_at_most_one_line_per_tenth(
    ci: None, capsys: pytest.CaptureFixture
) -> None:
    items = list(progress(range(1000), description="train"))
    assert items == list(range(1000))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("train:  10% (100/1000) elapsed 0:00:")
    assert lines[-1].startswith("train: 100% (1000/1000)")
    assert all("\x1b" not in line for line in lines)  # no ANSI escapes


def test_plain_progress_fields_and_manual_updates(ci: None, capsys: pytest.CaptureFixture) -> None:
    with Progress(total=4, description="eval", score=0.0) as bar:
        for i in range(4):
            bar.advance(1, score=i / 3, it=i)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[-1].endswith("score=1 it=3") and "eval: 100% (4/4)" in lines[-1]


def test_plain_progress_unknown_total_prints_once_at_end(
    ci: None, capsys: pytest.CaptureFixture
) -> None:
    for _ in progress(iter(range(5)), description="collect"):
        pass
    assert capsys.readouterr().out.splitlines() == ["collect: done 5 in 0:00:00"]


def test_quiet_prints_nothing(ci: None, capsys: pytest.CaptureFixture) -> None:
    assert sum(progress(total=50, quiet=True)) == sum(range(50))
    with progress(total=3, disable=True) as bar:  # tqdm spelling
        bar.advance(3)
    assert capsys.readouterr().out == ""


def test_progress_needs_iterable_or_total() -> None:
    with pytest.raises(ValueError, match="iterable or a total"):
        progress()


def test_print_table_plain(ci: None, capsys: pytest.CaptureFixture) -> None:
    print_table("Results [nav]", ["agent", "return"], [["maml", 1.23456789], ["random", None]])
    out = capsys.readouterr().out
    assert "Results [nav]" in out  # not swallowed as rich markup
    assert "maml" in out and "1.23457" in out and "random" in out
    assert "\x1b" not in out and "+" in out  # ASCII box, no colour
    with pytest.raises(ValueError, match="cells"):
        print_table(None, ["a", "b"], [[1]])


def test_rich_mode_renders_bar_percentage_and_fields(capsys: pytest.CaptureFixture) -> None:
    with Progress(total=4, description="meta-train", plain=False) as bar:
        for _ in range(4):
            bar.advance(1, loss=0.25)
    out = capsys.readouterr().out
    assert "meta-train" in out and "100%" in out and "loss=0.25" in out
