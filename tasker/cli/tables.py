"""Tables and lines that fit the terminal, with statuses coloured where colour is wanted.

A table is fitted to a width: the terminal's when the output is a terminal, ``$COLUMNS`` when
set, else unlimited (a pipe or a file gets every character, for scripts). Columns are dropped
lowest priority first until the rest fit with their names at a readable width, then the
widest shrinkable cells are cut with an ellipsis.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

__all__ = ["Column", "colour", "fit", "output_size", "table", "use_colour"]

ELLIPSIS = "…"
GAP = 2
_COLOURS = {
    "COMPLETED": "32",
    "FAILED": "31",
    "CANCELLED": "35",
    "RUNNING": "33",
    "STARTED": "33",
    "SKIPPED": "90",
    "NOT_STARTED": "90",
}


def use_colour(stream: IO[str]) -> bool:
    """Colour on a terminal, never with NO_COLOR set (https://no-color.org)."""
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def colour(text: str, status: str, enabled: bool) -> str:
    code = _COLOURS.get(status.strip())
    return f"\x1b[{code}m{text}\x1b[0m" if enabled and code else text


def output_size(stream: IO[str] | None = None) -> tuple[int | None, int | None]:
    """(columns, lines) to fit: the terminal's; ``$COLUMNS``/``$LINES`` when set; else None
    (no limit) for output that is not a terminal."""
    out = stream or sys.stdout
    columns = _env_int("COLUMNS")
    lines = _env_int("LINES")
    if hasattr(out, "isatty") and out.isatty():
        size = shutil.get_terminal_size()
        return columns or size.columns, lines or size.lines
    return columns, lines


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def fit(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis when cut."""
    if width is None or len(text) <= width:
        return text
    return text[: max(0, width - 1)] + ELLIPSIS if width > 0 else ""


@dataclass(frozen=True)
class Column:
    """``priority``: higher stays longer when the table is too wide. ``shrink``: cells may be
    cut (with an ellipsis) down to ``min_width``."""

    header: str
    priority: int = 0
    shrink: bool = False
    min_width: int = 8


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    width: int | None = None,
    *,
    status_column: str | None = None,
    coloured: bool = False,
    notes: Sequence[str | None] | None = None,
) -> list[str]:
    """The lines of a table fitted to ``width``. ``notes[i]``, when given, is printed under
    row ``i``, indented (a FAILED run's error), and cut to the width too."""
    keep = list(range(len(columns)))
    natural = [
        max(len(columns[i].header), *(len(r[i]) for r in rows)) if rows else len(columns[i].header)
        for i in range(len(columns))
    ]

    def need(indices: list[int]) -> int:
        return sum(
            min(natural[i], columns[i].min_width) if columns[i].shrink else natural[i]
            for i in indices
        ) + GAP * (len(indices) - 1)

    if width is not None:
        # Drop the least important columns while even shrunk ones would not fit.
        while len(keep) > 1 and need(keep) > width:
            keep.remove(min(keep, key=lambda i: (columns[i].priority, -i)))
    widths = {i: natural[i] for i in keep}
    if width is not None:
        excess = sum(widths.values()) + GAP * (len(keep) - 1) - width
        # Take the excess from the widest shrinkable column, a character at a time in bulk.
        while excess > 0:
            shrinkable = [i for i in keep if columns[i].shrink and widths[i] > columns[i].min_width]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            others = [widths[i] for i in shrinkable if i != widest]
            floor = max([columns[widest].min_width, *others])
            cut = min(excess, widths[widest] - floor) or 1
            widths[widest] -= cut
            excess -= cut
    status_at = next(
        (i for i in keep if status_column is not None and columns[i].header == status_column),
        None,
    )

    def line(cells: Sequence[str], colour_status: bool) -> str:
        parts = []
        for i in keep:
            text = fit(cells[i], widths[i]).ljust(widths[i])
            if colour_status and i == status_at:
                text = colour(text, cells[i], coloured)
            parts.append(text)
        return fit((" " * GAP).join(parts).rstrip(), None if colour_status else width)

    out = [fit(line([c.header for c in columns], False), width)]
    for n, row in enumerate(rows):
        out.append(line(row, True))
        note = notes[n] if notes is not None and n < len(notes) else None
        if note:
            out.append(fit("    " + " ".join(note.split()), width))
    return out
