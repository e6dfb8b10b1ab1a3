"""The dashboard's HTML, rendered on the server. Every value that comes from the database or
the request goes through ``esc``: a task named ``<img src=x onerror=alert(1)>`` is text."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from tasker.formatting import duration, timestamp
from tasker.models import Status
from tasker.queries import stage_line

__all__ = ["history_page", "layout", "overview_fragment", "run_fragment", "task_fragment"]

STATUSES = tuple(s.value for s in Status)


def esc(value: object) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def layout(title: str, body: str, refresh: str | None = None) -> str:
    """A whole page; ``refresh`` names the fragment the script reloads it from."""
    live = f' data-refresh="{esc(refresh)}"' if refresh else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · tasker</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head><body>
<header><a class="brand" href="/">tasker</a>
<nav><a href="/">Overview</a><a href="/history">History</a></nav>
<span id="connection" class="connection ok" role="status">live</span></header>
<main id="content"{live}>{body}</main>
<script src="/static/dashboard.js"></script>
</body></html>"""


def badge(status: object) -> str:
    s = esc(status)
    return f'<span class="badge s-{s}">{s}</span>'


def bar(percent: float | None, label: str = "") -> str:
    if percent is None:
        return '<div class="bar empty"></div>'
    p = max(0.0, min(100.0, float(percent)))
    return (
        f'<div class="bar" role="progressbar" aria-valuenow="{p:.0f}" aria-valuemin="0" '
        f'aria-valuemax="100"><div class="fill" style="width:{p:.1f}%"></div>'
        f"<span>{esc(label) or f'{p:.0f}%'}</span></div>"
    )


def _task_url(stage: str, task: str) -> str:
    return f"/tasks/{quote(stage, safe='')}/{quote(task, safe='')}"


def overview_fragment(data: dict[str, Any]) -> str:
    tasks_by_stage: dict[str, list[dict[str, Any]]] = {}
    for task in data["tasks"]:
        tasks_by_stage.setdefault(task["stage_name"], []).append(task)
    parts = []
    for stage in data["stages"]:
        name = stage["stage_name"]
        share = 100.0 * stage["done"] / stage["total"] if stage["total"] else 0.0
        rows = []
        for t in tasks_by_stage.get(name, []):
            shown = t["progress"]
            subtask = esc(shown["subtask"])
            message = t["overall_progress_message"] or t["error_message"] or ""
            eta = t["eta_rate"] if t["eta_rate"] is not None else t["eta_history"]
            eta_note = "" if t["eta_rate"] is not None or eta is None else " (typical)"
            run_link = (
                f'<a href="/runs/{esc(t["run_id"])}">{timestamp_of(t["start_time"])}</a>'
                if t["run_id"]
                else ""
            )
            task_name = esc(t["task_name"])
            rows.append(
                f'<tr class="task" data-task="{task_name}" data-status="{esc(t["status"])}">'
                f'<td><a href="{esc(_task_url(name, t["task_name"]))}">{task_name}</a></td>'
                f"<td>{badge(t['status'])}</td>"
                f"<td>{bar(shown['percent'], shown['items']) if shown['text'] else ''}</td>"
                f'<td>{subtask}<div class="message">{esc(message)}</div></td>'
                f"<td>{esc(t['hostname'])}</td><td>{run_link}</td>"
                f"<td>{esc(duration(t['duration']))}</td>"
                f"<td>{esc(duration(eta))}{esc(eta_note)}</td></tr>"
            )
        done_label = f"{stage['done']}/{stage['total']}"
        parts.append(
            f'<section class="stage" data-stage="{esc(name)}">'
            f"<h2>{esc(name)} {badge(stage['status'])}"
            f'<span class="count">{esc(stage_line(stage))}</span></h2>'
            f"{bar(share, done_label)}"
            "<table><thead><tr><th>Task</th><th>Status</th><th>Progress</th>"
            "<th>Subtask</th><th>Host</th><th>Started</th><th>Duration</th><th>ETA</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
        )
    if not parts:
        parts.append('<p class="empty">No tasks registered yet.</p>')
    return (
        f'<h1>Pipeline</h1><p class="stamp">as of {timestamp_of(data["generated_at"])}</p>'
        + "".join(parts)
    )


def timestamp_of(value: object) -> str:
    from datetime import datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return esc(timestamp(value)) if isinstance(value, datetime) else ""


_RUN_FIELDS = (
    "run_id", "stage_name", "task_name", "status", "hostname", "process_id", "parent_pid",
    "user_name", "command_line", "script_path", "script_filename", "git_commit", "git_branch",
    "git_dirty", "python_version", "environment", "version", "parent_run_id", "start_time",
    "end_time", "last_update", "heartbeat", "duration", "overall_percent_complete",
    "overall_progress_message", "exit_code", "cpu_seconds", "peak_memory_mb", "log_path",
    "log_filename", "error_type", "error_message",
)  # fmt: skip


def _field(key: str, value: object) -> str:
    if key == "status":
        return badge(value)
    if key == "duration":
        return esc(duration(value))  # type: ignore[arg-type]
    if key in ("start_time", "end_time", "last_update", "heartbeat"):
        return timestamp_of(value)
    if key == "parent_run_id" and value:
        return f'<a href="/runs/{esc(value)}">{esc(value)}</a>'
    return esc(value)


def run_fragment(run: dict[str, Any]) -> str:
    fields = "".join(
        f"<tr><th>{esc(k)}</th><td>{_field(k, run.get(k))}</td></tr>"
        for k in _RUN_FIELDS
        if run.get(k) is not None
    )
    subs = "".join(
        f"<tr><td>{esc(s['subtask_number'])}</td><td>{esc(s['subtask_name'])}</td>"
        f"<td>{badge(s['status'])}</td>"
        f"<td>{bar(s['progress']['percent'], s['progress']['items'])}</td>"
        f"<td>{esc(duration(s['duration']))}</td>"
        f"<td>{esc(s['progress_message'] or s['error_message'] or '')}</td></tr>"
        for s in run["subtasks"]
    )
    out = [
        f"<h1>{esc(run['stage_name'])} / {esc(run['task_name'])} {badge(run['status'])}</h1>",
        f'<p><a href="{esc(_task_url(run["stage_name"], run["task_name"]))}">'
        "all runs of this task</a></p>",
        f'<table class="fields">{fields}</table>',
    ]
    if subs:
        out.append(
            "<h2>Subtasks</h2><table><thead><tr><th>#</th><th>Name</th><th>Status</th>"
            f"<th>Progress</th><th>Duration</th><th>Message</th></tr></thead><tbody>{subs}"
            "</tbody></table>"
        )
    if run.get("error_detail"):
        out.append(f'<h2>Error</h2><pre class="traceback">{esc(run["error_detail"])}</pre>')
    if run.get("log_tail"):
        # Say where it comes from: shipped by the run's process, or read from the file now.
        source = (
            f'<p class="message log-source">{esc(run["log_note"])}</p>'
            if run.get("log_source") == "shipped" and run.get("log_note")
            else ""
        )
        out.append(f'<h2>Log (end)</h2>{source}<pre class="log">{esc(run["log_tail"])}</pre>')
    elif run.get("log_note"):
        out.append(f'<h2>Log</h2><p class="message">{esc(run["log_note"])}</p>')
    return "".join(out)


def _progress_cell(shown: dict[str, Any] | None) -> str:
    """A run's progress bar and subtask (``tasker.run_progress``), or nothing."""
    if not shown or not shown["text"]:
        return ""
    subtask = f'<div class="message">{esc(shown["subtask"])}</div>' if shown["subtask"] else ""
    return bar(shown["percent"], shown["items"]) + subtask


def runs_table(runs: Sequence[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr class="run" data-status="{esc(r["status"])}">'
        f'<td><a href="/runs/{esc(r["run_id"])}">{esc(str(r["run_id"])[:8])}</a></td>'
        f"<td>{esc(r['stage_name'])}</td>"
        f'<td><a href="{esc(_task_url(r["stage_name"], r["task_name"]))}">'
        f"{esc(r['task_name'])}</a></td>"
        f"<td>{badge(r['status'])}</td>"
        f"<td>{_progress_cell(r.get('progress'))}</td><td>{esc(r['hostname'])}</td>"
        f"<td>{timestamp_of(r['start_time'])}</td><td>{esc(duration(r['duration']))}</td>"
        f"<td>{esc(r['error_message'] or r['overall_progress_message'] or '')}</td></tr>"
        for r in runs
    )
    return (
        '<table class="runs"><thead><tr><th>Run</th><th>Stage</th><th>Task</th><th>Status</th>'
        "<th>Progress</th><th>Host</th><th>Started</th><th>Duration</th><th>Message</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def history_page(
    runs: Sequence[dict[str, Any]], filters: dict[str, str], offset: int, limit: int, more: bool
) -> str:
    def field(name: str, label: str, kind: str = "text") -> str:
        return (
            f'<label>{esc(label)} <input type="{kind}" name="{name}" '
            f'value="{esc(filters.get(name, ""))}"></label>'
        )

    options = "".join(
        f'<option value="{s}"{" selected" if filters.get("status") == s else ""}>{s}</option>'
        for s in ("", *STATUSES)
    )
    form = (
        '<form class="filters" method="get" action="/history">'
        + field("stage", "Stage")
        + field("task", "Task")
        + f'<label>Status <select name="status">{options}</select></label>'
        + field("host", "Host")
        + field("since", "Since", "datetime-local")
        + field("until", "Until", "datetime-local")
        + '<button type="submit">Filter</button></form>'
    )
    kept = {k: v for k, v in filters.items() if v}
    pages = []
    if offset > 0:
        prev = urlencode({**kept, "offset": max(0, offset - limit), "limit": limit})
        pages.append(f'<a rel="prev" href="/history?{esc(prev)}">newer</a>')
    if more:
        nxt = urlencode({**kept, "offset": offset + limit, "limit": limit})
        pages.append(f'<a rel="next" href="/history?{esc(nxt)}">older</a>')
    shown = f"runs {offset + 1} to {offset + len(runs)}" if runs else "no runs match"
    return (
        f'<h1>History</h1>{form}<p class="count">{esc(shown)}</p>{runs_table(runs)}'
        f'<p class="pages">{" ".join(pages)}</p>'
    )


def task_fragment(stage: str, task: str, runs: Sequence[dict[str, Any]]) -> str:
    """A task's past runs: a chart of their durations (oldest left) and the list."""
    points = [r for r in reversed(runs) if r["duration"] is not None]
    chart = '<p class="empty">No finished runs yet.</p>'
    if points:
        width, height, pad = 720, 200, 30
        top = max(p["duration"] for p in points) or 1.0
        step = (width - 2 * pad) / max(1, len(points) - 1)
        coords = [
            (pad + i * step, height - pad - (p["duration"] / top) * (height - 2 * pad), p)
            for i, p in enumerate(points)
        ]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coords)
        dots = "".join(
            f'<circle class="s-{esc(p["status"])}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
            f"<title>{timestamp_of(p['start_time'])}: {esc(duration(p['duration']))}</title>"
            "</circle>"
            for x, y, p in coords
        )
        chart = (
            f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="durations of the last {len(points)} runs">'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"/>'
            f'<text x="{pad}" y="{pad - 10}">{esc(duration(top))}</text>'
            f'<polyline points="{line}"/>{dots}</svg>'
        )
    return (
        f"<h1>{esc(stage)} / {esc(task)}</h1><h2>Duration of past runs</h2>{chart}"
        f"<h2>Runs</h2>{runs_table(runs)}"
    )
