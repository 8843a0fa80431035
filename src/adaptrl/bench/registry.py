"""Registry of benchmarks by id; ``adaptrl bench NAME`` is built from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from adaptrl.core.registry import Registry


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """A benchmark: its id, config class (its flags), the function that runs it, and the presets
    its ``--config NAME`` reads: the preset group (an algorithm id, or the bench's own id) and the
    config field a preset fills (``None``: the preset is a whole bench config)."""

    name: str
    config_cls: type
    run: Callable[[Any], Any]
    description: str
    presets: str | None = None
    preset_field: str | None = None


BENCHES: Registry[BenchSpec] = Registry("bench")


def register_bench(spec: BenchSpec) -> BenchSpec:
    BENCHES.add(spec.name, spec)
    return spec


def run_bench(config: Any) -> int:
    """Run the benchmark whose config class ``config`` is an instance of; its exit code."""
    for _, spec in BENCHES.items():
        if type(config) is spec.config_cls:
            code = spec.run(config)
            return code if isinstance(code, int) else 0
    raise TypeError(f"{type(config).__name__} is not a registered bench config")
