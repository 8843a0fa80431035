"""The examples in examples/ run as documented."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_custom_family_example_passes_the_contract_and_learns(tmp_path):
    module = runpy.run_path(str(EXAMPLES / "custom_family.py"))
    gain = module["main"](out=str(tmp_path / "run"), num_tasks=300)
    # random scores 0 in expectation; exploiting the best sample mean of 5 N(0,1) arms earns ~1/pull
    assert gain > 10
    assert (tmp_path / "run" / "curve.png").exists()
