"""User-facing errors. Every one carries a message that names the fix; the CLI prints it on one
line and exits with code 2 (no traceback unless ``--debug``)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AdaptrlError(Exception):
    """Base class of errors caused by the user's input or environment, not by a bug."""

    exit_code = 2


class ConfigError(AdaptrlError):
    """A configuration value or file is invalid (unknown key, impossible size, wrong type).

    Deliberately not a ``ValueError``: tyro turns ValueErrors raised while building configs into
    multi-line boxes, and we want the one-line message of ``adaptrl.cli.main``.
    """


def plural(noun: str) -> str:
    """English plural of a registry kind (``family`` -> ``families``, ``bench`` -> ``benches``)."""
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "o", "u"):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


class UnknownIdError(AdaptrlError, KeyError):
    """An id (family, agent, bench) is not registered; the message suggests the nearest ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}.{hint} Known {plural(kind)}: {', '.join(known)} "
            f"(see `adaptrl list`)."
        )
        self.name = name

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class CheckpointError(AdaptrlError):
    """A checkpoint is missing, truncated, tampered with, or of an incompatible version."""


class MissingExtraError(AdaptrlError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` to run."""

    def __init__(self, extra: str, module: str, feature: str):
        super().__init__(
            f"{feature} needs the optional package {module!r}, which is not installed. "
            f"Install it with: pip install 'adaptrl[{extra}]'"
        )


class TrainingError(AdaptrlError):
    """Training cannot go on (a loss or metric became NaN or infinite); checkpoints are kept."""


class DeviceError(AdaptrlError):
    """The requested device is unavailable or the batch does not fit in its memory."""


class BufferTooLargeError(AdaptrlError, MemoryError):
    """A buffer would not fit in memory; the message gives its size and the option that shrinks it."""


def require(module: str, extra: str, feature: str):
    """Import an optional module or raise :class:`MissingExtraError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, module, feature) from exc
