"""The commands that read: ``status``, ``active``, ``history``, ``show``, ``export``, ``watch``.

None of them creates a database (``read_only``). Progress is shown as
``tasker.run_progress`` defines it, the same in every one of them and on the dashboard.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any

from tasker.cli.common import EXIT_OK, print_json, read_only, replay_waiting
from tasker.cli.tables import Column, output_size, table, use_colour
from tasker.formatting import duration, json_default, timestamp

__all__ = [
    "cmd_active",
    "cmd_export",
    "cmd_history",
    "cmd_show",
    "cmd_status",
    "cmd_watch",
    "print_status",
]

_STATUS_COLUMNS = [
    Column("STAGE", priority=8, shrink=True, min_width=8),
    Column("TASK", priority=10, shrink=True, min_width=12),
    Column("STATUS", priority=9),
    Column("PROGRESS", priority=7),
    Column("SUBTASK", priority=3, shrink=True, min_width=10),
    Column("HOST", priority=1, shrink=True, min_width=6),
    Column("STARTED", priority=4),
    Column("DURATION", priority=5),
    Column("ETA", priority=2),
]
_RUN_COLUMNS = [
    Column("RUN", priority=9),
    Column("STAGE", priority=7, shrink=True, min_width=8),
    Column("TASK", priority=10, shrink=True, min_width=12),
    Column("STATUS", priority=9),
    Column("PROGRESS", priority=6),
    Column("SUBTASK", priority=2, shrink=True, min_width=10),
    Column("HOST:PID", priority=1, shrink=True, min_width=8),
    Column("STARTED", priority=5),
    Column("DURATION", priority=4),
]


def _error_note(status: str, error: str | None) -> str | None:
    """The line shown under a FAILED row: its error, so no one has to look it up."""
    return f"! {error}" if status == "FAILED" and error else None


def cmd_status(args: argparse.Namespace) -> int:
    return print_status(args.stage, args.status, args.json)


def print_status(stage: str | None, statuses: list[str] | None, as_json: bool) -> int:
    import tasker
    from tasker.live_figures import PAST_RUNS, eta_text
    from tasker.queries import recent_durations, stage_line, status_figures, summarize_stages
    from tasker.run_progress import of_status_row

    read_only()
    replay_waiting()
    # A run whose process died shows as FAILED, not RUNNING. Unfiltered, only a status with
    # an active row needs the reaper (most calls then skip its query).
    if statuses:
        tasker.reap_lost_runs()
    rows = tasker.get_task_status(stage=stage, status=statuses)
    active = any(r.status.is_active for r in rows)
    if not statuses and active and tasker.reap_lost_runs():
        rows = tasker.get_task_status(stage=stage, status=statuses)
    now = datetime.now(timezone.utc)
    # The ETA of a whole run comes from its task's past runs: one bounded read of them, for
    # the tasks with an active run only.
    active_ids = [r.task_id for r in rows if r.status.is_active]
    past = recent_durations(active_ids, PAST_RUNS) if active_ids else {}
    live = [status_figures(r, now, past_durations=past.get(r.task_id, ())) for r in rows]
    if as_json:
        tasks = [{**r.as_dict(), **f.as_dict()} for r, f in zip(rows, live, strict=True)]
        print_json({"stages": summarize_stages(rows), "tasks": tasks})
        return EXIT_OK
    if not rows:
        print("no tasks registered yet: run a tracked task or `tasker register FILE`")
        return EXIT_OK
    cells, notes = [], []
    for r, f in zip(rows, live, strict=True):
        shown = of_status_row(r)
        cells.append(
            [
                r.stage_name,
                r.task_name,
                str(r.status),
                shown.text,
                shown.subtask,
                r.hostname or "",
                timestamp(r.start_time),
                duration(f.duration),
                eta_text(f),
            ]
        )
        notes.append(_error_note(str(r.status), r.error_message))
    width, _ = output_size()
    coloured = use_colour(sys.stdout)
    lines = table(
        _STATUS_COLUMNS, cells, width, status_column="STATUS", coloured=coloured, notes=notes
    )
    print("\n".join(lines))
    print()
    for s in summarize_stages(rows):
        print(f"{s['stage_name']}: {s['status']} ({stage_line(s)})")
    return EXIT_OK


def _print_runs(args: argparse.Namespace, runs: list[Any], empty: str) -> int:
    from tasker.queries import elapsed, run_progress

    if args.json:
        print_json([r.as_dict() for r in runs])
        return EXIT_OK
    if not runs:
        print(empty)
        return EXIT_OK
    now = datetime.now(timezone.utc)
    cells, notes = [], []
    for r, shown in zip(runs, run_progress(runs), strict=True):
        cells.append(
            [
                r.run_id[:8],
                r.stage_name,
                r.task_name,
                str(r.status),
                shown.text,
                shown.subtask,
                f"{r.hostname}:{r.process_id}",
                timestamp(r.start_time),
                duration(elapsed(r, now)),
            ]
        )
        notes.append(_error_note(str(r.status), r.error_message))
    width, _ = output_size()
    coloured = use_colour(sys.stdout)
    lines = table(
        _RUN_COLUMNS, cells, width, status_column="STATUS", coloured=coloured, notes=notes
    )
    print("\n".join(lines))
    return EXIT_OK


def cmd_active(args: argparse.Namespace) -> int:
    import tasker

    read_only()
    replay_waiting()
    tasker.reap_lost_runs()
    return _print_runs(args, tasker.get_active_tasks(), "no active runs")


def _history(args: argparse.Namespace, limit: int | None) -> list[Any]:
    import tasker
    from tasker.ages import parse_since

    return list(
        tasker.get_task_history(
            stage=args.stage,
            task=args.task,
            status=args.status,
            hostname=args.host,
            since=parse_since(args.since, "--since"),
            until=parse_since(args.until, "--until"),
            limit=limit,
        )
    )


def cmd_history(args: argparse.Namespace) -> int:
    read_only()
    return _print_runs(args, _history(args, args.limit), "no runs")


# The lines of a run's shipped log tail `tasker show` prints (--json has all of it).
SHOW_LOG_LINES = 20


# How `tasker show` prints a field for people (--json keeps the raw values).
def _shown_value(key: str, value: Any) -> str:
    if isinstance(value, datetime):
        return _zoned(value)
    if key == "process_start_time" and isinstance(value, (int, float)):
        return _zoned(datetime.fromtimestamp(value, timezone.utc))
    if key == "cpu_seconds" and isinstance(value, (int, float)):
        return f"{value:.3f} s" if value < 60 else f"{value:.0f} s ({duration(value)})"
    if key == "peak_memory_mb" and isinstance(value, (int, float)):
        return f"{value:,.1f} MB"
    if key == "overall_percent_complete" and isinstance(value, (int, float)):
        return f"{value:.1f}%"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _zoned(value: datetime) -> str:
    """Local time with its zone: ``2026-05-01 08:00:03 CEST``."""
    local = value.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.strftime("%Z") or local.strftime("%z"))


def cmd_show(args: argparse.Namespace) -> int:
    import tasker
    from tasker.queries import elapsed, find_run, run_progress
    from tasker.run_progress import of_subtask

    read_only()
    run = find_run(args.run_id)
    subtasks = tasker.get_subtask_progress(run.run_id)
    if args.json:
        print_json({**run.as_dict(), "subtasks": [s.as_dict() for s in subtasks]})
        return EXIT_OK
    fields = run.as_dict()
    (shown,) = run_progress([run])
    lines: list[tuple[str, str]] = []
    for key, value in fields.items():
        if value is not None and key not in ("error_detail", "log_tail"):
            lines.append((key, _shown_value(key, value)))
            if key == "end_time" or (key == "start_time" and fields.get("end_time") is None):
                took = elapsed(run, datetime.now(timezone.utc))
                if took is not None:
                    lines.append(("duration", duration(took)))
    if shown.text:
        lines.append(("progress", " ".join(p for p in (shown.text, shown.subtask) if p)))
    for key, text in lines:
        print(f"{key:<26}{text}")
    if subtasks:
        print()
        rows = []
        for sub in subtasks:
            end = sub.end_time or sub.last_update
            secs = (end - sub.start_time).total_seconds() if sub.start_time and end else None
            own = of_subtask(sub)
            rows.append(
                [
                    str(sub.subtask_number),
                    sub.subtask_name or "",
                    str(sub.status),
                    own.items,
                    own.percent_text,
                    duration(secs),
                    sub.error_message or sub.progress_message or "",
                ]
            )
        columns = [
            Column("#", priority=9),
            Column("SUBTASK", priority=10, shrink=True, min_width=12),
            Column("STATUS", priority=9),
            Column("ITEMS", priority=7),
            Column("PERCENT", priority=8),
            Column("DURATION", priority=5),
            Column("MESSAGE", priority=3, shrink=True, min_width=12),
        ]
        width, _ = output_size()
        print("\n".join(table(columns, rows, width)))
    if run.error_detail:
        print()
        print(run.error_detail.rstrip())
    if run.log_tail:
        lines_shipped = run.log_tail.rstrip("\n").split("\n")
        shown_lines = lines_shipped[-SHOW_LOG_LINES:]
        cut = len(lines_shipped) - len(shown_lines)
        print()
        print(
            f"log (the end shipped by the run's process; last {len(shown_lines)} lines"
            + (f", {cut} earlier ones in --json" if cut else "")
            + "):"
        )
        print("\n".join(_inert(line) for line in shown_lines))
    return EXIT_OK


def _inert(line: str) -> str:
    """A line from the database as a terminal shows it without obeying it: control
    characters (escape sequences that move the cursor or retitle the window) escaped."""
    if line.isprintable():
        return line
    return "".join(
        c if c.isprintable() or c == "\t" else c.encode("unicode_escape").decode() for c in line
    )


def cmd_export(args: argparse.Namespace) -> int:
    import csv

    import tasker

    read_only()
    runs = _history(args, args.limit)
    rows = [r.as_dict() for r in runs]
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "json":
            out.write(json.dumps(rows, default=json_default, indent=2) + "\n")
        else:
            fields = list(tasker.RunRecord.__dataclass_fields__)
            writer = csv.DictWriter(out, fieldnames=fields)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        k: json_default(v)
                        if v is not None and not isinstance(v, (int, float, str))
                        else v
                        for k, v in row.items()
                    }
                )
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"exported {len(rows)} runs to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from tasker.cli.watch import watch

    read_only()
    replay_waiting()  # later refreshes: tasker.reap_lost_runs() replays what waits first
    return watch(args.interval, args.stage, args.count)
