"""``tasker watch``: the pipeline live in a terminal.

On a terminal the screen is redrawn in place every ``interval`` seconds, fitted to the
terminal's width and height: each stage with its summary, each task with its status, a
progress bar, items, the rate of its current subtask over the last 30 s of what it saw and
the ETA (tasker.live_figures), and under a FAILED task its error.
Elsewhere (a log file, a pipe) it prints a plain line whenever a task's status or progress
changes. It reaps lost runs on each refresh, and stops on Ctrl-C (or after ``count``
refreshes).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import IO, Any

from tasker.cli.tables import Column, colour, fit, output_size, table, use_colour
from tasker.live_figures import PAST_RUNS, RateWindow, eta_text
from tasker.queries import recent_durations, stage_line, status_figures, summarize_stages
from tasker.run_progress import of_status_row

__all__ = ["render", "watch"]

# Columns of a task's line, most important kept longest on a narrow terminal.
_COLUMNS = [
    Column("TASK", priority=10, shrink=True, min_width=12),
    Column("STATUS", priority=9),
    Column("BAR", priority=5),
    Column("PERCENT", priority=8),
    Column("ITEMS", priority=7),
    Column("RATE", priority=2),
    Column("ETA", priority=3),
    Column("SUBTASK", priority=4, shrink=True, min_width=10),
]


def _bar(percent: float | None, width: int) -> str:
    if percent is None:
        return ""
    filled = round(max(0.0, min(100.0, percent)) / 100 * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def render(
    rows: list[Any],
    now: datetime,
    coloured: bool,
    width: int | None = None,
    height: int | None = None,
    *,
    past: dict[int, list[float]] | None = None,
    window: RateWindow | None = None,
) -> list[str]:
    """The screen for ``rows`` (task status records), at most ``width`` columns and
    ``height`` lines (no limit for None); ``past``: the tasks' recent durations (for the
    ETA of a whole run), ``window``: what the watch saw so far (for the rate)."""
    stamp = now.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    lines = [fit(f"tasker watch — {stamp}", width), ""]
    if not rows:
        return [*lines, "no tasks registered yet"]
    bar_width = 24 if width is None or width >= 120 else 10
    cells, notes = [], []
    for row in rows:
        shown = of_status_row(row)
        status = str(row.status)
        live = status_figures(
            row, now, past_durations=(past or {}).get(row.task_id, ()), window=window
        )
        rate = live.rate
        active = row.status.is_active
        cells.append(
            [
                "  " + row.task_name,
                status,
                _bar(shown.percent, bar_width) if status != "NOT_STARTED" else "",
                f"{shown.percent:5.1f}%" if shown.percent is not None else "",
                shown.items,
                f"{rate:,.1f}/s" if rate is not None else "",
                f"ETA {eta_text(live)}" if eta_text(live) else "",
                shown.subtask if active else "",
            ]
        )
        notes.append(f"! {row.error_message}" if status == "FAILED" and row.error_message else None)
    body = table(_COLUMNS, cells, width, status_column="STATUS", coloured=coloured, notes=notes)
    # Stage headings go between the rows (the table's own header line is not shown).
    stages = {s["stage_name"]: s for s in summarize_stages(rows)}
    task_lines = iter(body[1:])
    current = None
    for row, note in zip(rows, notes, strict=True):
        if row.stage_name != current:
            current = row.stage_name
            stage = stages[current]
            head = fit(f"{current}  {stage['status']}  {stage_line(stage)}", width)
            lines.append(colour(head, stage["status"], coloured))
        lines.append(next(task_lines))
        if note:
            lines.append(next(task_lines))
    if height is not None and len(lines) > height - 1:
        hidden = len(lines) - (height - 2)
        lines = [
            *lines[: height - 2],
            fit(f"… {hidden} more lines: a taller terminal or --stage", width),
        ]
    return lines


def _plain_changes(rows: list[Any], seen: dict[Any, Any], now: datetime) -> list[str]:
    """One line per task whose status, item count or percent changed since the last call."""
    out = []
    for row in rows:
        shown = of_status_row(row)
        key = (row.stage_name, row.task_name)
        state = (str(row.status), shown.items, shown.percent, row.run_id)
        if seen.get(key) == state:
            continue
        seen[key] = state
        progress = f" {shown.text}" if shown.text else ""
        error = f": {row.error_message}" if row.status == "FAILED" and row.error_message else ""
        stamp = now.astimezone().strftime("%H:%M:%S")
        out.append(f"[{stamp}] {row.stage_name} / {row.task_name}: {row.status}{progress}{error}")
    return out


def watch(
    interval: float, stage: str | None, count: int | None, stream: IO[str] | None = None
) -> int:
    import tasker

    out = stream or sys.stdout
    live = hasattr(out, "isatty") and out.isatty()
    coloured = use_colour(out)
    seen: dict[Any, Any] = {}
    shown = 0
    window = RateWindow()
    past: dict[int, list[float]] = {}
    past_read, past_ids = 0.0, frozenset[int]()
    if live:
        out.write("\x1b[2J")  # a clean screen to draw on
    try:
        while count is None or shown < count:
            tasker.reap_lost_runs()
            rows = tasker.get_task_status(stage=stage)
            now = datetime.now(timezone.utc)
            if live:
                # The past durations change slowly: read a minute apart, or for a new task.
                ids = frozenset(r.task_id for r in rows if r.status.is_active)
                if ids and (not ids <= past_ids or time.monotonic() - past_read > 60):
                    past = recent_durations(sorted(ids), PAST_RUNS)
                    past_read, past_ids = time.monotonic(), ids
                # The size is read on every refresh: the terminal may have been resized.
                width, height = output_size(out)
                screen = render(rows, now, coloured, width, height, past=past, window=window)
                # Home, draw, clear what is left of the previous screen.
                out.write("\x1b[H" + "\x1b[K\n".join(screen) + "\x1b[J")
            else:
                for line in _plain_changes(rows, seen, now):
                    out.write(line + "\n")
            out.flush()
            shown += 1
            if count is None or shown < count:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        if live:
            out.write("\n")
            out.flush()
    return 0
