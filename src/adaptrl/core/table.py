"""Tables: the one writer behind every report and bench, as markdown and on the terminal.

Cells are text; floats print with 6 significant digits unless the caller formats them (most
reports pass ``"12.34 ± 0.56"`` strings). On a terminal :func:`print_table` draws a rich table;
in plain mode (CI, pipes) an ASCII one without colour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from adaptrl.core.progress import console, plain_output


def cell(value: Any) -> str:
    """The text of one table cell."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _rows(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[list[str]]:
    out = []
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row {list(row)!r} has {len(row)} cells for {len(columns)} columns")
        out.append([cell(v) for v in row])
    return out


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table (no trailing newline); ``|`` in cells is escaped."""
    esc = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in _rows(columns, rows)]
    return "\n".join(lines)


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a table (rich on a terminal, ASCII without colour in plain mode)."""
    plain = plain_output()
    table = Table(
        title=Text(title) if title else None,
        box=box.ASCII if plain else box.SIMPLE_HEAVY,
        highlight=False,
        title_style=None if plain else "bold",
        header_style=None if plain else "bold",
    )
    for col in columns:
        table.add_column(Text(str(col)), overflow="fold")
    for row in _rows(columns, rows):
        table.add_row(*(Text(c) for c in row))
    console().print(table)


__all__ = ["cell", "markdown_table", "print_table"]
