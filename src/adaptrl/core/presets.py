"""Preset configurations shipped inside the package: ``adaptrl/configs/<group>/<name>.yaml``.

A preset is a YAML file holding one config (an algorithm's, usually): only the fields that differ
from the class defaults, read strictly by :func:`adaptrl.core.config.load_yaml_config`, so a
mistyped key is an error naming the nearest valid one. Its leading ``#`` comment lines describe
it (``adaptrl list`` shows the first sentence). The group is the id of what the preset configures: an
algorithm (``adaptrl train rl2 --config bandits-100`` reads ``configs/rl2/bandits-100.yaml``) or
a benchmark whose options it sets; anything that names an existing file is read as that file.
A preset may start from another of its group with ``extends: NAME``, or from another group's with
``extends: GROUP/NAME`` (an ``mktn`` preset starts from the ``maml-rl`` one it modifies), and list
only what differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from adaptrl.core.config import config_from_dict, merge, read_yaml
from adaptrl.core.errors import ConfigError, UnknownIdError

T = TypeVar("T")
SUFFIX = ".yaml"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One shipped preset: its group (what it configures), name, file and description."""

    group: str
    name: str
    path: Path
    description: str

    @property
    def id(self) -> str:
        return f"{self.group}/{self.name}"

    @property
    def summary(self) -> str:
        """The description's first sentence."""
        return self.description.split(". ")[0].rstrip(".") + "."


def presets_root() -> Path:
    """The folder of the shipped presets (inside the installed package)."""
    return Path(str(resources.files("adaptrl") / "configs"))


def _description(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def list_presets(group: str | None = None) -> list[Preset]:
    """Every shipped preset (of ``group`` only, if given), sorted by group and name."""
    root = presets_root()
    folders = [root / group] if group is not None else sorted(p for p in root.iterdir())
    out = []
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.glob(f"*{SUFFIX}")):
                out.append(Preset(folder.name, path.stem, path, _description(path)))
    return out


def preset_path(group: str, name_or_path: str | Path) -> Path:
    """The file of preset ``name_or_path`` of ``group`` (``NAME`` or ``GROUP/NAME``), the YAML
    file at that path, or a run directory's ``config.yaml``."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.is_dir() and (candidate / "config.yaml").is_file():
        return candidate / "config.yaml"  # a run directory: the configuration it ran with
    if candidate.is_file():
        return candidate
    name = text.removesuffix(SUFFIX)
    if "/" in name and name.split("/", 1)[0] == group:
        name = name.split("/", 1)[1]
    known = {p.name: p.path for p in list_presets(group)}
    if name in known:
        return known[name]
    if text.endswith((SUFFIX, ".yml")) or "/" in text:
        raise ConfigError(
            f"{text}: no such file, and not a {group} preset ({', '.join(known) or 'none'})"
        )
    raise UnknownIdError(f"{group} preset", name, known)


def preset_data(group: str, name_or_path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The plain data of a preset, with the presets it ``extends`` merged underneath."""
    path = preset_path(group, name_or_path)
    if path in _seen:
        raise ConfigError(f"{path}: presets extend each other in a cycle")
    data = read_yaml(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    base, base_group = str(base), group
    head = base.split("/", 1)[0]
    if "/" in base and head and (presets_root() / head).is_dir() and not Path(base).exists():
        base_group, base = base.split("/", 1)
    return merge(preset_data(base_group, base, (*_seen, path)), data)


def load_preset(
    cls: type[T], group: str, name_or_path: str | Path, overrides: Mapping[str, Any] | None = None
) -> T:
    """Read preset ``name_or_path`` of ``group`` as a ``cls`` (``overrides`` on top)."""
    data = preset_data(group, name_or_path)
    try:
        return config_from_dict(cls, merge(data, overrides or {}))
    except ConfigError as exc:
        raise ConfigError(f"preset {name_or_path} ({group}): {exc}") from None


__all__ = ["Preset", "list_presets", "load_preset", "preset_data", "preset_path", "presets_root"]
