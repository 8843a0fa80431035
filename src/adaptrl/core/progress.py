"""Progress bars on the terminal, plain text in logs and CI.

On a terminal, :class:`Progress` is a `rich` bar with percentage, elapsed time, ETA and custom
fields (``loss=0.31 return=12.5``). When stdout is not a terminal or the ``CI`` environment
variable is set (to anything but ``0``/``false``), it prints at most one plain line per 10% of
progress instead (one line at the end when the total is unknown), so logs stay short and
greppable; ``quiet=True`` prints nothing.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as _RichProgress

T = TypeVar("T")

_consoles: dict[bool, Console] = {}


def plain_output() -> bool:
    """True under CI (``CI`` set) or when stdout is not a terminal: no live bars, no colour."""
    ci = os.environ.get("CI", "")
    if ci and ci.strip().lower() not in ("0", "false", "no", "off"):
        return True
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return True


def console() -> Console:
    """The shared rich console on stdout (no colour and a fixed width when output is plain)."""
    plain = plain_output()
    if plain not in _consoles:
        if plain:
            width = int(os.environ.get("COLUMNS", "0") or 0) or 120
            _consoles[plain] = Console(
                no_color=True, highlight=False, width=width, color_system=None, emoji=False
            )
        else:
            _consoles[plain] = Console(highlight=False)
    return _consoles[plain]


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def _fields_text(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        parts.append(f"{k}={v}")
    return " ".join(parts)


class Progress(Generic[T]):
    """A progress display; a context manager, and iterable when built with an iterable.

    ::

        with Progress(total=n_iters, description="meta-train") as bar:
            for it in range(n_iters):
                ...
                bar.advance(1, loss=loss_value)
    """

    def __init__(
        self,
        total: float | None = None,
        description: str = "",
        *,
        iterable: Iterable[T] | None = None,
        quiet: bool = False,
        disable: bool = False,
        plain: bool | None = None,
        **fields: Any,
    ):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.description = description
        self.completed: float = 0
        self.fields: dict[str, Any] = dict(fields)
        self.quiet = quiet or disable  # ``disable`` as in tqdm
        self.plain = plain_output() if plain is None else plain
        self._iterable = iterable
        self._rich: _RichProgress | None = None
        self._task: Any = None
        self._start: float | None = None
        self._printed_decile = 0
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> Progress[T]:
        if self._start is not None:
            return self
        self._start = time.monotonic()
        if not self.quiet and not self.plain:
            self._rich = _RichProgress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}", markup=False),
                console=console(),
            )
            self._rich.start()
            self._task = self._rich.add_task(
                self.description, total=self.total, info=_fields_text(self.fields)
            )
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._rich is not None:
            self._rich.stop()
        elif not self.quiet and self.plain and self._start is not None and self.total is None:
            self._print_line()

    def __enter__(self) -> Progress[T]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        if self._iterable is None:
            raise TypeError("this Progress was built without an iterable")
        self.start()
        try:
            for item in self._iterable:
                yield item
                self.advance(1)
        finally:
            self.close()

    # --- updates --------------------------------------------------------------------------
    def advance(self, amount: float = 1, **fields: Any) -> None:
        """Move forward by ``amount`` and update custom fields."""
        self.update(completed=self.completed + amount, **fields)

    def update(
        self,
        completed: float | None = None,
        *,
        total: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        """Set the position, total, description or custom fields."""
        self.start()
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        self.fields.update(fields)
        if self._rich is not None:
            self._rich.update(
                self._task,
                completed=self.completed,
                total=self.total,
                description=self.description,
                info=_fields_text(self.fields),
            )
        elif not self.quiet and self.plain and self.total:
            decile = min(10, int(self.completed / self.total * 10 + 1e-9))
            if decile > self._printed_decile:
                self._printed_decile = decile
                self._print_line()

    @property
    def elapsed(self) -> float:
        return 0.0 if self._start is None else time.monotonic() - self._start

    def _print_line(self) -> None:
        elapsed = self.elapsed
        head = f"{self.description}: " if self.description else ""
        if self.total:
            frac = self.completed / self.total
            eta = elapsed * (1 - frac) / frac if frac > 0 else None
            text = (
                f"{head}{frac * 100:3.0f}% ({_num(self.completed)}/{_num(self.total)}) "
                f"elapsed {_clock(elapsed)} eta {_clock(eta)}"
            )
        else:
            text = f"{head}done {_num(self.completed)} in {_clock(elapsed)}"
        extra = _fields_text(self.fields)
        print(f"{text}  {extra}" if extra else text, file=sys.stdout, flush=True)


def progress(
    iterable: Iterable[T] | None = None,
    total: float | None = None,
    description: str = "",
    *,
    quiet: bool = False,
    disable: bool = False,
    **fields: Any,
) -> Progress[T]:
    """Wrap an iterable (or ``range(total)``) in a :class:`Progress`; iterate over the result.

    ::

        for batch in (bar := progress(loader, description="eval")):
            bar.update(acc=running_acc)
    """
    if iterable is None:
        if total is None:
            raise ValueError("progress() needs an iterable or a total")
        iterable = range(int(total))  # type: ignore[assignment]
    return Progress(total, description, iterable=iterable, quiet=quiet or disable, **fields)


__all__ = ["Progress", "console", "plain_output", "progress"]
