"""``tasker watch``: the pipeline live in a terminal.

On a terminal the screen is redrawn in place every ``interval`` seconds: each stage with its
summary, each task with its status, a progress bar, items, rate and ETA of its current
subtask. Elsewhere (a log file, a pipe) it prints a plain line whenever a task's status or
progress changes. It reaps lost runs on each refresh, and stops on Ctrl-C (or after
``count`` refreshes).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from typing import IO, Any

from tasker.formatting import duration
from tasker.queries import live_percent, rate_and_eta, summarize_stages

__all__ = ["colour", "use_colour", "watch"]

_COLOURS = {
    "COMPLETED": "32",
    "FAILED": "31",
    "CANCELLED": "35",
    "RUNNING": "33",
    "STARTED": "33",
    "SKIPPED": "90",
    "NOT_STARTED": "90",
}
BAR_WIDTH = 24


def use_colour(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def colour(text: str, status: str, enabled: bool) -> str:
    code = _COLOURS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if enabled and code else text


def _bar(percent: float | None) -> str:
    if percent is None:
        return " " * (BAR_WIDTH + 2)
    filled = round(max(0.0, min(100.0, percent)) / 100 * BAR_WIDTH)
    return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"


def _percent(row: Any) -> float | None:
    return live_percent(row.status, row.subtask_percent_complete, row.overall_percent_complete)


def render(rows: list[Any], now: datetime, coloured: bool) -> list[str]:
    """The screen for ``rows`` (task status records)."""
    lines = [f"tasker watch — {now.astimezone().strftime('%Y-%m-%d %H:%M:%S')}", ""]
    stages = {s["stage_name"]: s for s in summarize_stages(rows)}
    current = None
    for row in rows:
        if row.stage_name != current:
            current = row.stage_name
            stage = stages[current]
            head = f"{current}  {stage['status']}  ({stage['done']}/{stage['total']} done)"
            lines.append(colour(head, stage["status"], coloured))
        status = str(row.status)
        items = ""
        if row.items_total:
            items = f"{row.items_complete or 0}/{row.items_total}"
        elif row.items_complete:
            items = str(row.items_complete)
        rate, eta = rate_and_eta(row, now)
        pct = _percent(row)
        detail = [
            _bar(pct) if status != "NOT_STARTED" else " " * (BAR_WIDTH + 2),
            f"{pct:5.1f}%" if pct is not None and status != "NOT_STARTED" else "      ",
            items,
        ]
        if rate is not None:
            detail.append(f"{rate:,.1f}/s")
        if eta is not None:
            detail.append(f"ETA {duration(eta)}")
        if row.subtask_name and row.status.is_active:
            detail.append(f"{row.current_subtask}. {row.subtask_name}")
        lines.append(
            f"  {row.task_name[:40]:<40} {colour(f'{status:<11}', status, coloured)} "
            + " ".join(d for d in detail if d)
        )
    if not rows:
        lines.append("no tasks registered yet")
    return lines


def _plain_changes(rows: list[Any], seen: dict[Any, Any], now: datetime) -> list[str]:
    """One line per task whose status, item count or percent changed since the last call."""
    out = []
    for row in rows:
        key = (row.stage_name, row.task_name)
        state = (str(row.status), row.items_complete, _percent(row), row.run_id)
        if seen.get(key) == state:
            continue
        seen[key] = state
        pct = _percent(row)
        items = f" {row.items_complete}/{row.items_total}" if row.items_total else ""
        share = f" {pct:.0f}%" if pct is not None and row.status != "NOT_STARTED" else ""
        stamp = now.astimezone().strftime("%H:%M:%S")
        out.append(f"[{stamp}] {row.stage_name} / {row.task_name}: {row.status}{items}{share}")
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
    if live:
        out.write("\x1b[2J")  # a clean screen to draw on
    try:
        while count is None or shown < count:
            tasker.reap_lost_runs()
            rows = tasker.get_task_status(stage=stage)
            now = datetime.now(timezone.utc)
            if live:
                # Home, draw, clear what is left of the previous screen.
                out.write("\x1b[H" + "\x1b[K\n".join(render(rows, now, coloured)) + "\x1b[J")
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
