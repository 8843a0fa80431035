"""Registry of built-in task families by versioned id (``bandit-bernoulli-v0``, ...)."""

from __future__ import annotations

from typing import Any

from adaptrl.core.registry import (
    Registry,
    config_union,
    make_registered_family,
    register_family_class,
)
from adaptrl.envs.base import FamilyConfig, TaskFamily

FAMILIES: Registry[type[TaskFamily]] = Registry("family")


def register_family(cls: type[TaskFamily]) -> type[TaskFamily]:
    """Class decorator: register a family under its ``family_id`` (ids carry a version)."""
    return register_family_class(FAMILIES, cls)


def make_family(spec: str | FamilyConfig, **overrides: Any) -> TaskFamily:
    """Build a family from its id (with config overrides) or from a config instance."""
    return make_registered_family(FAMILIES, spec, FamilyConfig, overrides)


def family_config_union() -> Any:
    """A ``Union`` of every registered family config, each a tyro subcommand named by its id.

    Use it as the type of a config field holding a family (``adaptrl eval``, algorithm configs).
    Families registered after the call are not in it.
    """
    return config_union(FAMILIES)
