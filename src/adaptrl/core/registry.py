"""A tiny name -> factory registry with helpful errors for unknown names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Generic, TypeVar, Union

from adaptrl.core.errors import ConfigError, UnknownIdError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps ids to objects (classes or factories). ``get`` suggests the nearest id on a miss."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownIdError(self.kind, name, self._items) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())


# --- families: classes with a ``family_id`` and a frozen-dataclass ``config_cls`` ---------------
# (the RL task families of adaptrl.envs and the few-shot families of adaptrl.fewshot)
def register_family_class(registry: Registry[Any], cls: Any) -> Any:
    """Register the family class ``cls`` under its ``family_id`` and give its config class the
    same id (so a config instance names its family)."""
    registry.add(cls.family_id, cls)
    cls.config_cls.family_id = cls.family_id
    return cls


def make_registered_family(
    registry: Registry[Any], spec: Any, config_base: type, overrides: dict[str, Any]
) -> Any:
    """Build a family from a config instance (an instance of ``config_base``, with ``overrides``
    replaced) or from its id (a config built from ``overrides``; unknown or missing options are a
    :class:`ConfigError` listing the options)."""
    if isinstance(spec, config_base):
        cls = registry.get(spec.family_id)
        config = dataclasses.replace(spec, **overrides) if overrides else spec
        return cls(config)
    cls = registry.get(spec)
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


def config_union(registry: Registry[Any]) -> Any:
    """A ``Union`` of the config classes of every family in ``registry``, each a tyro subcommand
    named by its id (with the first line of the family's docstring). Families registered after
    the call are not in it."""
    import tyro

    members = tuple(
        Annotated[
            cls.config_cls,
            tyro.conf.subcommand(fid, description=(cls.__doc__ or "").strip().splitlines()[0]),
        ]
        for fid, cls in registry.items()
    )
    return Union[members]  # noqa: UP007  (built at run time from the registry)
