"""Registry of few-shot families by id (``sinusoid-v0``, ``glyphs-v0``, ``imagefolder``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from adaptrl.core.errors import ConfigError
from adaptrl.core.registry import Registry
from adaptrl.fewshot.base import FewShotConfig, FewShotFamily

FEWSHOT_FAMILIES: Registry[type[FewShotFamily]] = Registry("few-shot family")


def register_fewshot_family(cls: type[FewShotFamily]) -> type[FewShotFamily]:
    """Class decorator: register a few-shot family under its ``family_id``."""
    FEWSHOT_FAMILIES.add(cls.family_id, cls)
    cls.config_cls.family_id = cls.family_id
    return cls


def make_fewshot_family(spec: str | FewShotConfig, **overrides: Any) -> FewShotFamily:
    """Build a few-shot family from its id (with config overrides) or from a config instance."""
    if isinstance(spec, FewShotConfig):
        cls = FEWSHOT_FAMILIES.get(spec.family_id)
        config = dataclasses.replace(spec, **overrides) if overrides else spec
        return cls(config)
    cls = FEWSHOT_FAMILIES.get(spec)
    fields = dataclasses.fields(cls.config_cls)
    names = {f.name for f in fields}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(
            f"{spec} has no option(s) {', '.join(unknown)}; its options are {', '.join(sorted(names))}"
        )
    missing = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in overrides
    ]
    if missing:
        raise ConfigError(f"{spec} needs {', '.join(f'{m}=...' for m in missing)}")
    return cls(cls.config_cls(**overrides))


def fewshot_config_union() -> Any:
    """A ``Union`` of every registered few-shot config, each a tyro subcommand named by its id.

    Use it as the type of a config field holding a few-shot family (algorithm configs);
    ``adaptrl.fewshot.FewShotConfigUnion`` is this union over the built-in families.
    Families registered after the call are not in it.
    """
    from typing import Annotated, Union

    import tyro

    members = tuple(
        Annotated[
            cls.config_cls,
            tyro.conf.subcommand(fid, description=(cls.__doc__ or "").strip().splitlines()[0]),
        ]
        for fid, cls in FEWSHOT_FAMILIES.items()
    )
    return Union[members]  # noqa: UP007  (built at run time from the registry)
