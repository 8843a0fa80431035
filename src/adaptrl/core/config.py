"""Typed configs: frozen dataclasses, YAML files and command lines.

Every configurable thing in adaptrl is a ``@dataclasses.dataclass(frozen=True)`` with defaults and a
docstring under each field (tyro shows those docstrings as ``--help`` text). This module turns such
configs into plain dicts and YAML and back, strictly, and builds command lines with `tyro`_.

Conventions (checked against tyro 1.0.x):

* **Dicts and YAML.** :func:`config_to_dict` gives plain data: nested dataclasses become dicts,
  tuples and lists become lists, paths become strings, enums become their values. A class with a
  non-empty ``ClassVar`` ``family_id`` (task-family configs) also writes ``family_id`` as the first
  key, so a field typed as a union of such classes can be read back:
  ``family: {family_id: nav2d-goal-v0, goal_radius: 1.0}``. :func:`config_from_dict` is strict: an
  unknown key is a :class:`ConfigError` naming the key, the class and the nearest valid key; a wrong
  type names the field (``optim.lr: expected float, got 'fast' (str)``). Missing keys take the
  field's default (for a nested dataclass: the defaults of the default instance). Because PyYAML
  follows YAML 1.1, ``1e-3`` (no dot) loads as a string; float fields accept such strings.
* **Unions of dataclasses.** A dict is matched to the member whose ``family_id`` equals its
  ``family_id`` key; without that key, to the class of the field's default, or to the only member
  that accepts its keys (otherwise an error asks for ``family_id``).
* **Command lines.** :func:`parse_cli` wraps :func:`tyro.cli`. ``--config PATH.yaml`` is read first
  (with argparse) and becomes tyro's ``default=`` instance, so flags override the file. Fields:
  ``tuple[str, ...]`` takes space-separated values (``--tags a b``; ``--tags`` alone is empty);
  ``Literal["a", "b"]`` becomes ``{a,b}`` choices; ``Path | None`` accepts ``None`` or a path; a
  nested dataclass gives ``--optim.lr``-style flags; a union of dataclasses becomes subcommands
  named ``<field>:<name>`` (``family:nav``), where ``<name>`` comes from
  ``Annotated[NavConfig, tyro.conf.subcommand("nav")]`` or else from the class name in kebab case
  (``family:nav-config``); ``subcommand("nav", prefix_name=False)`` drops the ``family:`` part. The
  default's class is the default subcommand. The class docstring is the subcommand's help. We pass
  ``tyro.conf.CascadeSubcommandArgs`` so parent flags may come after a subcommand; a subcommand's
  own flags (``--family.goal-radius``) still need the subcommand chosen first, unless it is the
  default. Underscores in flags print as hyphens; both spellings parse.
* **Checks.** :class:`Config` is the base of every frozen config dataclass: on construction
  :func:`check_fields` checks each field against its annotation, so a range is declared once,
  beside the field, instead of in a hand-written ``__post_init__``: ``Literal[...]`` choices and
  the bounds of `annotated-types`_ (``Annotated[int, Ge(1)]``, ``Annotated[float, Interval(gt=0,
  le=1)]``), also inside ``X | None`` and ``tuple[X, ...]``. A subclass with rules that tie
  fields together overrides ``__post_init__`` and calls ``super().__post_init__()`` first.
* **Errors.** tyro prints its own boxed message to stderr and raises ``SystemExit(2)`` on bad flags,
  an unknown subcommand (``Unrecognized options: family:navv ... Available subcommands: ...``), a
  missing required subcommand, or a ``ValueError`` raised by a config's ``__post_init__`` (shown
  as ``Error parsing <field>: <message>``). :class:`ConfigError` is deliberately not a
  ``ValueError``: it passes through tyro to the caller, and the CLI prints it on one line and exits
  2. Problems with the ``--config`` file itself also raise :class:`ConfigError`.

.. _tyro: https://brentyi.github.io/tyro/
.. _annotated-types: https://github.com/annotated-types/annotated-types
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import enum
import functools
import hashlib
import json
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Gt, Interval, Le, Lt

from adaptrl.core.errors import ConfigError

T = TypeVar("T")

FAMILY_KEY = "family_id"
"""The discriminator key written for classes that carry a ``ClassVar`` ``family_id``."""

_NOTHING: Any = object()  # "no fill value" sentinel for required fields


# --------------------------------------------------------------------------------------------
# dataclass -> plain data


def family_id_of(cls: type) -> str | None:
    """The non-empty ``ClassVar`` ``family_id`` of a config class, else ``None``."""
    if FAMILY_KEY in {f.name for f in dataclasses.fields(cls)}:
        return None  # an ordinary field of that name, not a discriminator
    fid = getattr(cls, FAMILY_KEY, None)
    return fid if isinstance(fid, str) and fid else None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-friendly data for a dataclass config (see the module docstring)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {type(cfg).__name__}")
    return _to_plain(cfg, type(cfg).__name__)


def _to_plain(value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        fid = family_id_of(type(value))
        if fid:
            out[FAMILY_KEY] = fid
        for f in dataclasses.fields(value):
            if f.init:
                out[f.name] = _to_plain(getattr(value, f.name), f"{where}.{f.name}")
        return out
    if isinstance(value, enum.Enum):
        return _to_plain(value.value, where)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(_to_plain(v, where) for v in value)
    if isinstance(value, Mapping):
        return {k: _to_plain(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where}: cannot store a {type(value).__name__} in a config file")


def config_hash(cfg: Any, length: int = 8) -> str:
    """A short stable hash of a config's contents (used in run-directory names)."""
    text = json.dumps(config_to_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# --------------------------------------------------------------------------------------------
# plain data -> dataclass


def config_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` from plain data, strictly (unknown keys and wrong types are errors)."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"config_from_dict needs a dataclass type, got {cls!r}")
    return _build(cls, data, "", None, _NOTHING)


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)  # resolves string annotations, strips Annotated[...]
    except NameError as exc:
        raise TypeError(
            f"cannot resolve the type annotations of {cls.__name__}: {exc}; define the config "
            "class at module level"
        ) from exc


def _label(where: str, cls: type) -> str:
    return where or cls.__name__


def _build(cls: type[T], data: Any, where: str, base: Any, fill: Any) -> T:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{_label(where, cls)}: expected a mapping of {cls.__name__} options, "
            f"got {data!r} ({type(data).__name__})"
        )
    data = dict(data)
    fid = family_id_of(cls)
    if fid is not None and FAMILY_KEY in data:
        given = data.pop(FAMILY_KEY)
        if given != fid:
            raise ConfigError(
                f"{_label(where, cls)}: family_id {given!r} does not match {cls.__name__} "
                f"(family_id {fid!r})"
            )
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            at = f"{where}: " if where else ""
            raise ConfigError(
                f"{at}unknown key {key!r} for {cls.__name__}.{hint} Valid keys: {', '.join(names)}"
            )
    hints = _type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields:
        path = f"{where}.{f.name}" if where else f.name
        default = _field_default(f, base)
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], path, default, fill)
        elif base is not None:
            kwargs[f.name] = getattr(base, f.name)
        elif default is _NOTHING:
            if fill is _NOTHING:
                raise ConfigError(
                    f"{_label(where, cls)}: missing required key {f.name!r} for {cls.__name__}"
                )
            kwargs[f.name] = fill
    try:
        return cls(**kwargs)
    except (ConfigError, TypeError, ValueError) as exc:
        if fill is not _NOTHING and any(v is fill for v in kwargs.values()):
            # Defaults for tyro with unfilled required fields: skip validation, tyro validates
            # the final instance.
            obj = object.__new__(cls)
            for name, value in kwargs.items():
                object.__setattr__(obj, name, value)
            return obj
        msg = str(exc)
        raise ConfigError(f"{where}: {msg}" if where else msg) from exc


def _field_default(f: dataclasses.Field, base: Any) -> Any:
    if base is not None:
        return getattr(base, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _NOTHING


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if tp is type(None):
        return "None"
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(tp, "__name__", str(tp))


def _wrong(tp: Any, value: Any, where: str) -> ConfigError:
    return ConfigError(
        f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})"
    )


def _convert(tp: Any, value: Any, where: str, default: Any, fill: Any, lenient: bool = True) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists -> tuples, ...)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or tp is object:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise _wrong(tp, value, where)
    if origin in (Union, types.UnionType):
        return _convert_union(tp, args, value, where, default, fill)
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}.{hint}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        base = default if isinstance(default, tp) and isinstance(value, Mapping) else None
        return _build(tp, value, where, base, fill)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if member.value == value and type(member.value) is type(value):
                return member
        if isinstance(value, str) and value in tp.__members__:
            return tp[value]
        choices = ", ".join(repr(m.value) for m in tp)
        raise ConfigError(f"{where}: {value!r} is not a valid {tp.__name__} (one of {choices})")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(tp, value, where)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _wrong(tp, value, where)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if lenient and isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                pass
        raise _wrong(tp, value, where)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _wrong(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, (str, PurePath)):
            return tp(value)
        raise _wrong(tp, value, where)
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise _wrong(tp, value, where)
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(
                _convert(args[0], v, f"{where}[{i}]", _NOTHING, fill, lenient)
                for i, v in enumerate(value)
            )
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _convert(a, v, f"{where}[{i}]", _NOTHING, fill, lenient)
            for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin in (list, Sequence) or tp in (list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise _wrong(tp, value, where)
        if not args:
            return list(value)
        return [
            _convert(args[0], v, f"{where}[{i}]", _NOTHING, fill, lenient)
            for i, v in enumerate(value)
        ]
    if origin in (set, frozenset) or tp in (set, frozenset):
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise _wrong(tp, value, where)
        kind = origin or tp
        if not args:
            return kind(value)
        return kind(_convert(args[0], v, where, _NOTHING, fill, lenient) for v in value)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _wrong(tp, value, where)
        if not args:
            return dict(value)
        return {
            _convert(args[0], k, f"{where} key", _NOTHING, fill, lenient): _convert(
                args[1], v, f"{where}.{k}", _NOTHING, fill, lenient
            )
            for k, v in value.items()
        }
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _wrong(tp, value, where)
    return value  # an annotation we do not model (TypeVar, Callable, ...): accept as is


def _convert_union(
    tp: Any, args: tuple[Any, ...], value: Any, where: str, default: Any, fill: Any
) -> Any:
    if value is None and type(None) in args:
        return None
    members = [a for a in args if a is not type(None)]
    classes = [a for a in members if dataclasses.is_dataclass(a) and isinstance(a, type)]
    if classes and isinstance(value, tuple(classes)):
        return value
    if classes and isinstance(value, Mapping):
        if FAMILY_KEY in value:
            by_id = {family_id_of(c): c for c in classes if family_id_of(c)}
            chosen = by_id.get(value[FAMILY_KEY])
            if chosen is None:
                known = sorted(by_id)
                close = difflib.get_close_matches(str(value[FAMILY_KEY]), known, n=1, cutoff=0.5)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{where}: unknown family_id {value[FAMILY_KEY]!r}.{hint} "
                    f"Expected one of: {', '.join(known)}"
                )
            base = default if isinstance(default, chosen) else None
            return _build(chosen, value, where, base, fill)
        if len(classes) == 1:
            return _convert(classes[0], value, where, default, fill)
        for c in classes:
            if isinstance(default, c):
                try:
                    return _build(c, value, where, default, fill)
                except ConfigError as exc:
                    ids = [family_id_of(o) for o in classes if o is not c and family_id_of(o)]
                    if not ids:
                        raise
                    raise ConfigError(
                        f"{exc} (the default is {c.__name__}; for another kind add "
                        f"'{FAMILY_KEY}: <id>', one of: {', '.join(ids)})"
                    ) from None
        fits = []
        for c in classes:
            with contextlib.suppress(ConfigError):
                fits.append(_build(c, value, where, None, fill))
        if len(fits) == 1:
            return fits[0]
        ids = [family_id_of(c) or c.__name__ for c in classes]
        raise ConfigError(
            f"{where}: cannot tell which of {', '.join(c.__name__ for c in classes)} this is; "
            f"add a '{FAMILY_KEY}' key (one of: {', '.join(ids)})"
        )
    # Plain members: exact matches first, then lenient conversions (e.g. "1e-3" -> float).
    for lenient in (False, True):
        for member in members:
            try:
                return _convert(member, value, where, default, fill, lenient)
            except ConfigError:
                continue
    raise _wrong(tp, value, where)


# --------------------------------------------------------------------------------------------
# checks declared in the annotations


Count = Annotated[int, Ge(0)]
"""A non-negative integer field."""
Size = Annotated[int, Ge(1)]
"""A positive integer field (sizes, iterations)."""
Positive = Annotated[float, Gt(0)]
"""A strictly positive float field (learning rates, scales)."""
Unit = Annotated[float, Interval(ge=0, le=1)]
"""A float field in [0, 1] (discounts, GAE lambda, fractions)."""


class Config:
    """Base of frozen config dataclasses: fields are checked against their annotations on
    construction (see the module docstring)."""

    def __post_init__(self) -> None:
        check_fields(self)


@functools.cache
def _annotations(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except NameError as exc:
        raise TypeError(f"cannot resolve the type annotations of {cls.__name__}: {exc}") from exc


def check_fields(cfg: Any) -> None:
    """Raise :class:`ConfigError` if a field of the dataclass ``cfg`` is outside its declared
    ``Literal`` choices or annotated-types bounds."""
    hints = _annotations(type(cfg))
    for f in dataclasses.fields(cfg):
        if f.init:
            _check(hints[f.name], getattr(cfg, f.name), f.name)


def _bounds_text(m: Any) -> str:
    if isinstance(m, Interval):
        low = f"({m.gt}" if m.gt is not None else f"[{m.ge}" if m.ge is not None else "(-inf"
        high = f"{m.lt})" if m.lt is not None else f"{m.le}]" if m.le is not None else "inf)"
        return f"in {low}, {high}"
    for kind, op, attr in ((Ge, ">=", "ge"), (Gt, ">", "gt"), (Le, "<=", "le"), (Lt, "<", "lt")):
        if isinstance(m, kind):
            return f"{op} {getattr(m, attr)}"
    return repr(m)


def _within(m: Any, value: Any) -> bool:
    if isinstance(m, Interval):
        return all(_within(part, value) for part in m)  # an Interval iterates its Ge/Gt/Le/Lt
    if isinstance(m, Ge):
        return value >= m.ge
    if isinstance(m, Gt):
        return value > m.gt
    if isinstance(m, Le):
        return value <= m.le
    if isinstance(m, Lt):
        return value < m.lt
    return True


def _check(tp: Any, value: Any, where: str) -> None:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        _check(args[0], value, where)
        for m in args[1:]:
            if isinstance(value, (int, float)) and not _within(m, value):
                raise ConfigError(f"{where} must be {_bounds_text(m)}, got {value!r}")
    elif origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    elif origin in (Union, types.UnionType):
        if value is None:
            return
        for member in args:
            base = get_args(member)[0] if get_origin(member) is Annotated else member
            plain = get_origin(base) or base
            if isinstance(plain, type) and isinstance(value, plain):
                _check(member, value, where)
                return
            if get_origin(base) is Literal and value in get_args(base):
                return
    elif origin is tuple and isinstance(value, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            for i, v in enumerate(value):
                _check(args[0], v, f"{where}[{i}]")
        elif len(args) == len(value):
            for i, (a, v) in enumerate(zip(args, value, strict=True)):
                _check(a, v, f"{where}[{i}]")


def parse_dotted(items: Sequence[str], owner: str = "NAME") -> dict[str, dict[str, Any]]:
    """``("ucb1.c=0.2", "maml.meta-batch=8")`` -> ``{"ucb1": {"c": 0.2}, "maml": {"meta_batch": 8}}``.

    Values are read as YAML scalars; hyphens in field names become underscores. ``owner`` names
    the first part in the error message (``AGENT``, ``METHOD``)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        name, dot, field = head.rpartition(".")
        if not sep or not dot or not name or not field:
            raise ConfigError(f"options look like {owner}.FIELD=VALUE, got {item!r}")
        out.setdefault(name, {})[field.replace("-", "_")] = yaml.safe_load(value)
    return out


# --------------------------------------------------------------------------------------------
# YAML files


def merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``; ``"a.b": v`` keys address nested dicts."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(key, str) and "." in key:
            head, rest = key.split(".", 1)
            value, key = {rest: value}, head
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        elif isinstance(value, Mapping):
            out[key] = merge({}, value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (an empty file is ``{}``); problems are :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found; check the path") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return data


def load_yaml_config(
    cls: type[T], path: str | Path, overrides: Mapping[str, Any] | None = None
) -> T:
    """Read ``cls`` from a YAML file, with ``overrides`` (nested or ``"a.b"`` keys) on top."""
    return _load(cls, path, overrides, _NOTHING)


def _load(cls: type[T], path: str | Path, overrides: Mapping[str, Any] | None, fill: Any) -> T:
    data = read_yaml(path)
    if overrides:
        data = merge(data, overrides)
    try:
        return _build(cls, data, "", None, fill)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_yaml_config(cfg: Any, path: str | Path) -> Path:
    """Write a config as YAML atomically (``family_id`` included where the class has one)."""
    from adaptrl.core.checkpoint import atomic_write

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    return atomic_write(Path(path), text.encode())


# --------------------------------------------------------------------------------------------
# command line


def parse_cli(
    cls: type[T],
    args: Sequence[str] | None = None,
    *,
    description: str | None = None,
    config_flag: bool = True,
    default: T | None = None,
    prog: str | None = None,
    markers: Sequence[Any] | None = None,
) -> T:
    """Parse a command line into ``cls`` with tyro; ``--config PATH.yaml`` supplies defaults.

    Precedence, lowest first: the class defaults, ``default``, the ``--config`` file, flags.
    ``markers`` are tyro.conf markers (default: ``CascadeSubcommandArgs``).
    """
    import tyro

    argv = list(sys.argv[1:] if args is None else args)
    if config_flag:
        if "config" in {f.name for f in dataclasses.fields(cls)}:
            raise TypeError(f"{cls.__name__} has a field named 'config'; pass config_flag=False")
        path, argv = take_config_flag(argv)
        if path is not None:
            default = _load_over(cls, Path(path), default, tyro.MISSING)
        doc = description if description is not None else _class_doc(cls)
        note = "Use --config PATH.yaml to load defaults from a file; flags override it."
        description = f"{doc}\n\n{note}" if doc else note
    kwargs: dict[str, Any] = {
        "args": argv,
        "description": description,
        "prog": prog,
        "config": tuple(markers) if markers is not None else (tyro.conf.CascadeSubcommandArgs,),
    }
    if default is not None:
        kwargs["default"] = default
    return tyro.cli(cls, **kwargs)


def take_config_flag(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """``--config VALUE`` (or ``--config=VALUE``) taken out of ``args``: ``(VALUE or None, the
    other arguments)``."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    pre.add_argument("--config", default=None)
    try:
        known, rest = pre.parse_known_args(list(args))
    except argparse.ArgumentError:
        raise ConfigError("--config needs a preset name or a path to a YAML file") from None
    return known.config, rest


def _load_over(cls: type[T], path: Path, base: T | None, fill: Any) -> T:
    if base is None:
        return _load(cls, path, None, fill)
    data = read_yaml(path)
    try:
        return _build(cls, data, "", base, fill)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _class_doc(cls: type) -> str | None:
    doc = cls.__doc__
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature
        return None
    import inspect

    return inspect.cleandoc(doc)


__all__ = [
    "FAMILY_KEY",
    "Config",
    "Count",
    "Ge",
    "Gt",
    "Interval",
    "Le",
    "Lt",
    "Positive",
    "Size",
    "Unit",
    "check_fields",
    "config_from_dict",
    "config_hash",
    "config_to_dict",
    "family_id_of",
    "load_yaml_config",
    "merge",
    "parse_cli",
    "parse_dotted",
    "read_yaml",
    "save_yaml_config",
    "take_config_flag",
]
