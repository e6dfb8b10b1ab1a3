"""The dashboard's pages and the fragments they refresh from, rendered from the templates
in ``templates/`` (Jinja2, autoescape on: a task named ``<img src=x onerror=alert(1)>`` is
text). What needs arithmetic (the duration chart) is worked out here; the rest is markup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from tasker.dashboard.templating import render
from tasker.models import Status
from tasker.queries import stage_line

__all__ = [
    "error_page",
    "history_page",
    "overview_fragment",
    "overview_page",
    "run_fragment",
    "run_page",
    "task_page",
]

# The run fields the run page lists, in this order (those the run has).
RUN_FIELDS = (
    "run_id", "stage_name", "task_name", "status", "hostname", "process_id", "parent_pid",
    "user_name", "command_line", "script_path", "script_filename", "git_commit", "git_branch",
    "git_dirty", "python_version", "environment", "version", "parent_run_id", "start_time",
    "end_time", "last_update", "heartbeat", "duration", "overall_percent_complete",
    "overall_progress_message", "exit_code", "cpu_seconds", "peak_memory_mb", "log_path",
    "log_filename", "error_type", "error_message",
)  # fmt: skip


def _overview_context(
    data: dict[str, Any] | None, refresh: str | None, search: dict[str, str]
) -> dict[str, Any]:
    data = data or {
        "stages": [],
        "tasks": [],
        "generated_at": None,
        "pipeline": None,
        "pipelines": [],
    }
    tasks_by_stage: dict[str, list[dict[str, Any]]] = {}
    for task in data["tasks"]:
        tasks_by_stage.setdefault(task["stage_name"], []).append(task)
    stages = [
        {
            **stage,
            "line": stage_line(stage),
            "share": 100.0 * stage["done"] / stage["total"] if stage["total"] else 0.0,
            "tasks": tasks_by_stage.get(stage["stage_name"], []),
        }
        for stage in data["stages"]
    ]
    searched = any(search.values())
    return {
        "data": data,
        "stages": stages,
        "refresh": refresh,
        "search": search,
        "searched": searched,
    }


# The header's refresh state (class, text) as a page starts.
LIVE = ("ok", "live")
ENDED = ("idle", "the run has ended: not refreshing")
STILL = ("idle", "")


def overview_page(
    data: dict[str, Any] | None,
    refresh: str | None,
    search: dict[str, str],
    *,
    problem: tuple[str, str] | None = None,
) -> str:
    """The overview; it refreshes itself from ``refresh`` (see overview_fragment).
    ``search``: the search box's ``q`` and the ``stage`` filter as given; ``problem``:
    (field, message) of one that cannot be used, shown beside the search box (no data, no
    refresh then)."""
    context = _overview_context(data, refresh, search)
    connection = STILL if problem else LIVE
    return render(
        "overview.html", title="Overview", connection=connection, problem=problem, **context
    )


def overview_fragment(data: dict[str, Any], refresh: str, search: dict[str, str]) -> str:
    """The overview's live part, which the page morphs itself into every second."""
    return render("overview_live.html", **_overview_context(data, refresh, search))


def _run_context(run: dict[str, Any]) -> dict[str, Any]:
    fields = [(key, run[key]) for key in RUN_FIELDS if run.get(key) is not None]
    # A run that has ended changes no more: its page stops asking.
    live = Status(run["status"]).is_active
    refresh = f"/fragments/runs/{run['run_id']}" if live else None
    return {"run": run, "fields": fields, "refresh": refresh, "ended_note": ENDED[1]}


def run_page(run: dict[str, Any]) -> str:
    context = _run_context(run)
    connection = ENDED if context["refresh"] is None else LIVE
    title = f"Run {run['run_id'][:8]}"
    return render("run.html", title=title, connection=connection, **context)


def run_fragment(run: dict[str, Any]) -> str:
    """The run page's live part; without polling attributes once the run has ended, so that
    the page morphed into it stops asking."""
    return render("run_live.html", **_run_context(run))


def history_page(
    runs: Sequence[dict[str, Any]],
    filters: dict[str, Any],
    offset: int,
    limit: int,
    more: bool,
    *,
    problem: tuple[str, str] | None = None,
    run_ids: Sequence[str] = (),
) -> str:
    """The history page; ``problem``: (field, message) of a filter that cannot be used, shown
    beside the form as it was filled in (no runs then); ``run_ids``: the runs whose id starts
    with the search."""
    kept = {k: v for k, v in filters.items() if v}
    newer = older = None
    if offset > 0:
        back = {**kept, "offset": max(0, offset - limit), "limit": limit}
        newer = "/history?" + urlencode(back, doseq=True)
    if more:
        older = "/history?" + urlencode(
            {**kept, "offset": offset + limit, "limit": limit}, doseq=True
        )
    shown = f"runs {offset + 1} to {offset + len(runs)}" if runs else "no runs match"
    if problem is not None:
        shown = ""
    return render(
        "history.html",
        title="History",
        connection=STILL,
        runs=runs,
        filters=filters,
        problem=problem,
        run_ids=run_ids,
        shown=shown,
        newer=newer,
        older=older,
    )


# The duration chart's size in SVG units, and its margin.
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 720, 200, 30


def _chart(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The points of a chart of the runs' durations, oldest left; None without any."""
    points = [r for r in reversed(runs) if r["duration"] is not None]
    if not points:
        return None
    width, height, pad = CHART_WIDTH, CHART_HEIGHT, CHART_PAD
    top = max(p["duration"] for p in points) or 1.0
    step = (width - 2 * pad) / max(1, len(points) - 1)
    dots = [
        {
            "x": f"{pad + i * step:.1f}",
            "y": f"{height - pad - (p['duration'] / top) * (height - 2 * pad):.1f}",
            "run": p,
        }
        for i, p in enumerate(points)
    ]
    return {
        "width": width,
        "height": height,
        "pad": pad,
        "top": top,
        "line": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "dots": dots,
    }


def task_page(stage: str, task: str, runs: Sequence[dict[str, Any]]) -> str:
    """A task's past runs: a chart of their durations (oldest left) and the list."""
    return render(
        "task.html",
        title=f"{stage} / {task}",
        connection=STILL,
        stage=stage,
        task=task,
        runs=runs,
        chart=_chart(runs),
    )


def error_page(message: str) -> str:
    return render("error.html", title="Error", connection=STILL, message=message, retry=None)


# How soon a page that found the database away loads itself again.
RETRY_SECONDS = 5


def unreachable_page(message: str) -> str:
    """A page asked for while the database is away: says so (not the dashboard: it
    answers) and loads itself again every ``RETRY_SECONDS``, with or without scripts."""
    return render(
        "error.html",
        title="Database unreachable",
        connection=("lost", "database unreachable"),
        message=message,
        retry=RETRY_SECONDS,
    )
