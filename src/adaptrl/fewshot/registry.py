"""Registry of few-shot families by id (``sinusoid-v0``, ``glyphs-v0``, ``imagefolder``)."""

from __future__ import annotations

from typing import Any

from adaptrl.core.registry import (
    Registry,
    config_union,
    make_registered_family,
    register_family_class,
)
from adaptrl.fewshot.base import FewShotConfig, FewShotFamily

FEWSHOT_FAMILIES: Registry[type[FewShotFamily]] = Registry("few-shot family")


def register_fewshot_family(cls: type[FewShotFamily]) -> type[FewShotFamily]:
    """Class decorator: register a few-shot family under its ``family_id``."""
    return register_family_class(FEWSHOT_FAMILIES, cls)


def make_fewshot_family(spec: str | FewShotConfig, **overrides: Any) -> FewShotFamily:
    """Build a few-shot family from its id (with config overrides) or from a config instance."""
    return make_registered_family(FEWSHOT_FAMILIES, spec, FewShotConfig, overrides)


def fewshot_config_union() -> Any:
    """A ``Union`` of every registered few-shot config, each a tyro subcommand named by its id.

    Use it as the type of a config field holding a few-shot family (algorithm configs);
    ``adaptrl.fewshot.FewShotConfigUnion`` is this union over the built-in families.
    Families registered after the call are not in it.
    """
    return config_union(FEWSHOT_FAMILIES)
