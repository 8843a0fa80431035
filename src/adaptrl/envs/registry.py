"""Registry of built-in task families by versioned id (``bandit-bernoulli-v0``, ...)."""

from __future__ import annotations

import dataclasses
from typing import Any

from adaptrl.core.errors import ConfigError
from adaptrl.core.registry import Registry
from adaptrl.envs.base import FamilyConfig, TaskFamily

FAMILIES: Registry[type[TaskFamily]] = Registry("family")


def register_family(cls: type[TaskFamily]) -> type[TaskFamily]:
    """Class decorator: register a family under its ``family_id`` (ids carry a version)."""
    FAMILIES.add(cls.family_id, cls)
    cls.config_cls.family_id = cls.family_id
    return cls


def make_family(spec: str | FamilyConfig, **overrides: Any) -> TaskFamily:
    """Build a family from its id (with config overrides) or from a config instance."""
    if isinstance(spec, FamilyConfig):
        cls = FAMILIES.get(spec.family_id)
        config = dataclasses.replace(spec, **overrides) if overrides else spec
        return cls(config)
    cls = FAMILIES.get(spec)
    names = {f.name for f in dataclasses.fields(cls.config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(
            f"{spec} has no option(s) {', '.join(unknown)}; its options are {', '.join(sorted(names))}"
        )
    return cls(cls.config_cls(**overrides))


def family_config_union() -> Any:
    """A ``Union`` of every registered family config, each a tyro subcommand named by its id.

    Use it as the type of a config field holding a family (``adaptrl eval``, algorithm configs).
    Families registered after the call are not in it.
    """
    from typing import Annotated, Union

    import tyro

    members = tuple(
        Annotated[
            cls.config_cls,
            tyro.conf.subcommand(fid, description=(cls.__doc__ or "").strip().splitlines()[0]),
        ]
        for fid, cls in FAMILIES.items()
    )
    return Union[members]  # noqa: UP007  (built at run time from the registry)
