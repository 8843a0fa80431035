"""``adaptrl bench glyphs / omniglot / miniimagenet / lstm-optimizer``: the table covers every
registered few-shot classifier, runs end to end on tiny budgets, prints the papers' numbers, and
refuses a missing data folder with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adaptrl.bench import fewshot as fewshot_bench
from adaptrl.bench.fewshot import (
    MINIIMAGENET_PAPER,
    OMNIGLOT_PAPER,
    QUICK_DEFAULTS,
    GlyphsBenchConfig,
    MiniImageNetBenchConfig,
    OmniglotBenchConfig,
    Setting,
    build_config,
    classification_methods,
    parse_setting,
    run_glyphs,
    run_miniimagenet,
    run_omniglot,
)
from adaptrl.cli.main import main
from adaptrl.core.config import parse_dotted
from adaptrl.core.errors import ConfigError
from adaptrl.fewshot.glyphs import GlyphsConfig


def test_settings_and_overrides_parse_or_fail_clearly():
    assert parse_setting("20w5s") == Setting(20, 5) and Setting(5, 1).label == "5w1s"
    for bad in ("5x1", "w1s", "5w1"):
        with pytest.raises(ConfigError, match="5w1s"):
            parse_setting(bad)
    assert parse_dotted(["protonet.train-ways=20", "matching.fce=true"], "METHOD") == {
        "protonet": {"train_ways": 20},
        "matching": {"fce": True},
    }
    with pytest.raises(ConfigError, match=r"METHOD\.FIELD=VALUE"):
        parse_dotted(["train_ways=20"], "METHOD")


def test_the_table_iterates_the_registry():
    labels = [m.label for m in classification_methods()]
    for name in ("protonet", "matching", "maml", "fomaml", "reptile", "anil", "metasgd"):
        assert name in labels
    assert "lstm-optimizer" not in labels  # it trains MLPs on sinusoids, not image classifiers
    assert next(m for m in classification_methods(["fomaml"])).fixed == {"first_order": True}
    with pytest.raises(ConfigError, match="unknown few-shot classification method"):
        classification_methods(["protonets"])
    # --quick shrinks meta-batches where a method has one; --params still win
    glyphs = GlyphsConfig(ways=5, shots=1)
    fomaml = next(m for m in classification_methods(["fomaml"]))
    cfg = build_config(fomaml, glyphs, 7, {}, QUICK_DEFAULTS)
    assert (cfg.meta_batch, cfg.first_order, cfg.iterations, cfg.family) == (4, True, 7, glyphs)
    assert build_config(fomaml, glyphs, 7, {"meta_batch": 2}, QUICK_DEFAULTS).meta_batch == 2
    assert build_config(fomaml, glyphs, 7, {"iterations": 11}).iterations == 11  # per-method budget
    proto = next(m for m in classification_methods(["protonet"]))
    assert build_config(proto, glyphs, 7, {}, QUICK_DEFAULTS).tasks_per_batch == 1
    # every paper row names a method we can run
    assert set(OMNIGLOT_PAPER) <= set(labels)
    assert set(MINIIMAGENET_PAPER) - set(labels) == {"lstm-meta-learner"}


def test_glyphs_bench_quick_writes_one_table(tmp_path):
    cfg = GlyphsBenchConfig(
        quick=True,
        methods=("protonet", "matching"),
        iterations=3,
        num_tasks=20,
        queries=3,
        params=(
            "protonet.filters=8",
            "matching.filters=8",
            "matching.fce=true",
            "matching.iterations=2",
        ),
        out=tmp_path,
    )
    saved = []
    real_report = fewshot_bench.report

    def spy(*args, **kwargs):
        text = real_report(*args, **kwargs)
        if not kwargs.get("complete", True):
            saved.append(json.loads((tmp_path / "results.json").read_text()))
        return text

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fewshot_bench, "report", spy)
        text = run_glyphs(cfg)
    assert "| protonet |" in text and "| matching |" in text and "5w1s ours (%)" in text
    assert "| matching | 5w1s | 2 |" in text  # each cell's own budget
    data = json.loads((tmp_path / "results.json").read_text())
    assert [c["method"] for c in data["cells"]] == ["protonet", "matching"]
    assert [c["iterations"] for c in data["cells"]] == [3, 2]
    assert all(0 <= c["mean"] <= 100 and c["ci95"] > 0 for c in data["cells"])
    assert data["complete"] is True
    # a partial table was saved after each cell, so a stopped run keeps what it measured
    assert [len(p["cells"]) for p in saved] == [1, 2]
    assert all(p["complete"] is False for p in saved)
    assert data["provenance"]["seeds"] == [0]
    with pytest.raises(ConfigError, match="has no option"):
        run_glyphs(GlyphsBenchConfig(quick=True, methods=("protonet",), params=("protonet.x=1",)))


def _png_tree(root: Path, classes: int, per_class: int, size: int, rgb: bool = False) -> None:
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"alphabet{c % 3}" / f"character{c:02d}"
        folder.mkdir(parents=True)
        base = rng.random((size, size)) > 0.7
        for i in range(per_class):
            noisy = base ^ (rng.random((size, size)) > 0.95)
            img = (noisy * 255).astype(np.uint8)
            Image.fromarray(np.stack([img] * 3, -1) if rgb else img).save(folder / f"{i}.png")


def test_omniglot_bench_runs_on_a_folder_and_prints_the_papers(tmp_path):
    _png_tree(tmp_path / "omniglot", classes=24, per_class=6, size=28)
    cfg = OmniglotBenchConfig(
        data=tmp_path / "omniglot",
        quick=True,
        methods=("protonet",),
        iterations=2,
        num_tasks=10,
        queries=3,
        params=("protonet.filters=8",),
        out=tmp_path / "out",
    )
    text = run_omniglot(cfg)
    assert "5w1s paper" in text and "| 98.8 |" in text  # ProtoNets Table 1
    cell = json.loads((tmp_path / "out" / "results.json").read_text())["cells"][0]
    assert cell["paper"] == 98.8 and cell["error"] is None


def test_miniimagenet_bench_reads_the_splits_layout(tmp_path):
    for split in ("train", "val", "test"):
        _png_tree(tmp_path / "mini" / split, classes=5, per_class=4, size=20, rgb=True)
    cfg = MiniImageNetBenchConfig(
        data=tmp_path / "mini",
        quick=True,
        methods=("matching",),
        iterations=1,
        num_tasks=4,
        queries=2,
        params=("matching.filters=4",),
        out=tmp_path / "out",
    )
    assert "| 43.56 |" in run_miniimagenet(cfg)  # Matching Nets FCE, as quoted


@pytest.mark.parametrize("bench", ["omniglot", "miniimagenet"])
def test_missing_data_folder_is_one_clear_error(tmp_path, capsys, bench):
    code = main(["bench", bench, "--data", str(tmp_path / "nope"), "--quick"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "no such folder" in err and "downloads nothing" in err and "\n" not in err


def test_train_eval_adapt_from_the_cli(tmp_path):
    run = tmp_path / "proto"
    args = ["train", "protonet", "--iterations", "3", "--filters", "8", "glyphs-v0"]
    assert main([*args, "--queries", "3", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--num-tasks", "8", "--out", str(tmp_path / "ev")]) == 0
    result = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert json.dumps(result).count("protonet") >= 1
    assert main(["adapt", str(run), "--num-tasks", "2", "--out", str(tmp_path / "ad")]) == 0
    assert (tmp_path / "ad.safetensors").exists()
