"""Lower layers never import higher ones (DESIGN.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import adaptrl

LAYERS = ["core", "envs", "nn", "rl", "fewshot", "algos", "baselines", "eval", "bench", "cli"]
ROOT = Path(adaptrl.__file__).parent


def imported_layers(path: Path) -> set[str]:
    """The adaptrl sub-packages a module imports (absolute imports only; we use no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "adaptrl" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", [layer for layer in LAYERS if (ROOT / layer).is_dir()])
def test_no_upward_imports(layer):
    rank = LAYERS.index(layer)
    for path in sorted((ROOT / layer).rglob("*.py")):
        for used in imported_layers(path):
            if used in LAYERS:
                assert LAYERS.index(used) <= rank, (
                    f"{path.relative_to(ROOT)} imports adaptrl.{used}"
                )


def test_the_checker_sees_imports(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from adaptrl.cli.main import main\nimport adaptrl.eval.stats\n")
    assert imported_layers(bad) == {"cli", "eval"}
