"""What the dashboard shows, gathered through tasker's queries (no SQL here)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import tasker
from tasker.live_figures import PAST_RUNS, RateWindow
from tasker.models import RunRecord, Status
from tasker.pipelines import pipeline_view
from tasker.queries import (
    count_runs_by_status,
    get_children,
    get_pipeline_runs,
    last_successes,
    pipeline_root,
    recent_durations,
    run_figures,
    run_progress,
    search_status,
    status_figures,
    subtask_figures,
    summarize_stages,
)
from tasker.run_progress import Progress, of_run, of_status_row, of_subtask
from tasker.runtime.capture.logs import OPEN_FLAGS, read_tail

__all__ = [
    "clear_caches",
    "metrics_text",
    "overview",
    "read_log_tail",
    "run_rows",
    "shown_log",
    "typical_durations",
]

# How long each task's latest COMPLETED runs' durations are kept ("how long does this task
# usually take" changes slowly).
TYPICAL_TTL = 60.0
REAP_EVERY = 5.0

_last_reap = 0.0


def reap_now_and_then() -> None:
    """End lost runs, at most every few seconds (each page refresh would be too often)."""
    global _last_reap
    now = time.monotonic()
    if now - _last_reap >= REAP_EVERY:
        _last_reap = now
        tasker.reap_lost_runs()


class _Typical:
    """Each task's latest ``PAST_RUNS`` COMPLETED runs' durations, kept per task for
    ``ttl`` seconds (forgotten when the configuration points at another database). Only the
    tasks asked for are read: the overview asks for those with an active run, the only ones
    an ETA is shown for."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._database: object = None
        self._kept: dict[int, tuple[float, list[float]]] = {}

    def get(self, task_ids: Iterable[int]) -> dict[int, list[float]]:
        config = tasker.get_config()
        database = (config.url, config.db_schema)
        asked = list(dict.fromkeys(task_ids))
        now = time.monotonic()
        with self._lock:
            if self._database != database:
                self._database, self._kept = database, {}
            kept = {i: self._kept[i] for i in asked if i in self._kept}
        stale = [i for i in asked if i not in kept or now - kept[i][0] >= self._ttl]
        if stale:
            samples = recent_durations(stale, PAST_RUNS)
            for task_id in stale:
                kept[task_id] = (now, samples.get(task_id, []))
            with self._lock:
                if self._database == database:
                    self._kept.update((i, kept[i]) for i in stale)
        return {i: v for i, (_, v) in kept.items() if v}

    def clear(self) -> None:
        with self._lock:
            self._kept = {}


_TYPICAL = _Typical(TYPICAL_TTL)
# What this dashboard saw of each running subtask's count, for rates over a sliding window
# (tasker.live_figures): every page, fragment and API answer of the process reads it.
WINDOW = RateWindow()


def past_durations(task_ids: Iterable[int]) -> dict[int, list[float]]:
    """By task id, the durations of each of these tasks' latest ``PAST_RUNS`` COMPLETED
    runs, newest first (a bounded read through an index per task; each kept for a minute);
    tasks that never completed are left out."""
    return _TYPICAL.get(task_ids)


def typical_durations(task_ids: Iterable[int]) -> dict[int, float]:
    """By task id, the median of :func:`past_durations`."""
    return {i: statistics.median(v) for i, v in past_durations(task_ids).items()}


def clear_caches() -> None:
    """Forget the past durations read so far (the next call reads them again)."""
    _TYPICAL.clear()


def overview(
    stage: str | None = None, search: str | None = None, pipeline: str | None = None
) -> dict[str, Any]:
    """Stages with their derived status, and every task with its latest run and its live
    figures: of the current pipeline run, rows left from an earlier one marked, or of the
    pipeline run ``pipeline`` (a run id) belongs to (tasker.pipelines); only the stages
    whose name holds ``stage`` and the tasks whose stage or task name holds ``search``, in
    any case, when given."""
    reap_now_and_then()
    found = search_status(stage=stage, text=search) if stage or search else None
    view = pipeline_view(tasker.get_task_status() if found is None else found, pipeline)
    rows = view.rows
    past = past_durations(r.task_id for r in rows if Status(r.status).is_active)
    now = datetime.now(timezone.utc)
    tasks = []
    for row in rows:
        item = row.as_dict()
        item["status"] = str(row.status)
        live = status_figures(row, now, past_durations=past.get(row.task_id, ()), window=WINDOW)
        item.update(live.as_dict())
        item["progress"] = _shown(of_status_row(row))
        item["pipeline_run_id"] = view.roots.get(row.run_id) if row.run_id else None
        item["earlier"] = row.task_id in view.earlier and row.task_id not in view.absent
        item["absent"] = row.task_id in view.absent
        tasks.append(item)
    latest = [_pipeline_head(r.run_id, r) for r in get_pipeline_runs(PIPELINES_SHOWN)]
    # The one shown is mostly among the latest, already read; an older one is read alone.
    shown = next((p for p in latest if p and p["run_id"] == view.run_id), None)
    return {
        "generated_at": now.isoformat(),
        "pipeline": shown or _pipeline_head(view.run_id),
        "pipelines": latest,
        "stages": summarize_stages(view.for_stages()),
        "tasks": tasks,
    }


# The latest pipeline runs an overview offers to step back to.
PIPELINES_SHOWN = 10


def _pipeline_head(run_id: str | None, run: RunRecord | None = None) -> dict[str, Any] | None:
    """A pipeline run as the overview names it: its top run's id, task, status and start."""
    if run_id is None:
        return None
    if run is None:
        run = tasker.get_run(run_id)
    return {
        "run_id": run.run_id,
        "stage_name": run.stage_name,
        "task_name": run.task_name,
        "status": str(run.status),
        "start_time": run.start_time,
    }


def _shown(progress: Progress) -> dict[str, Any]:
    """Progress as the pages and the API show it (``tasker.run_progress``)."""
    return {
        "items": progress.items,
        "percent": progress.percent,
        "text": progress.text,
        "subtask": progress.subtask,
    }


def run_rows(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """Runs as the API and the pages list them, each with its progress (one query for the
    current subtasks of them all)."""
    rows = []
    for run, progress in zip(runs, run_progress(runs), strict=True):
        row = run_row(run)
        row["progress"] = _shown(progress)
        rows.append(row)
    return rows


def run_row(run: RunRecord) -> dict[str, Any]:
    """A run as the API and the pages show it: every field, its status as text, its
    duration."""
    row: dict[str, Any] = run.as_dict()
    row["status"] = str(run.status)
    row["duration"] = run.duration
    return row


def run_detail(run: RunRecord) -> dict[str, Any]:
    """A run with its subtasks (each with its own live figures), its live figures and the
    end of its log (see shown_log)."""
    data = run_row(run)
    now = datetime.now(timezone.utc)
    current = None
    subtasks = []
    for sub in tasker.get_subtask_progress(run.run_id):
        item = sub.as_dict()
        item["status"] = str(sub.status)
        item["progress"] = _shown(of_subtask(sub))
        if sub.subtask_number == run.current_subtask:
            current = sub
        item.update(subtask_figures(sub, now, WINDOW).as_dict())
        subtasks.append(item)
    data["subtasks"] = subtasks
    data["children"] = run_rows(get_children(run.run_id))
    data["pipeline_run_id"] = pipeline_root(run.run_id) if run.parent_run_id else run.run_id
    past = past_durations([run.task_id]).get(run.task_id, ()) if run.status.is_active else ()
    live = run_figures(run, current, now, past_durations=past, window=WINDOW)
    data.update(live.as_dict())
    data["progress"] = _shown(of_run(run, current))
    data.update(shown_log(run, tasker.get_config().log_roots))
    return data


# The end of a log file shown on a run's page: enough for the last screens of output, and a
# bound on what one request reads, whatever the file.
LOG_TAIL_BYTES = 64 * 1024
# As the tracked process opens its own log (never blocking on a FIFO), and never following
# a link in the last step: the name comes from the database.
_OPEN_FLAGS = OPEN_FLAGS | getattr(os, "O_NOFOLLOW", 0)


def _inside(path: str, roots: list[str]) -> bool:
    for root in roots:
        try:
            if os.path.commonpath([path, root]) == root:
                return True
        except ValueError:  # another drive (Windows)
            continue
    return False


def shown_log(run: RunRecord, log_roots: tuple[str, ...]) -> dict[str, str | None]:
    """What a run's page shows of its log: ``log_tail``, where it came from
    (``log_source``: "shipped" by the run's process with its end, or read from the "file"
    inside ``dashboard.log_roots``), and ``log_note``, why there is none or where it is from.

    A shipped tail wins: the dashboard then opens no file at all. The file is read only for
    runs that shipped none (still running, or recorded before schema version 5, or with
    ``log_tail_bytes: 0``)."""
    if run.log_tail is not None:
        return {
            "log_tail": run.log_tail,
            "log_source": "shipped",
            "log_note": "shipped by the run's process when the run ended",
        }
    text, note = read_log_tail(run, log_roots)
    return {"log_tail": text, "log_source": None if text is None else "file", "log_note": note}


def read_log_tail(
    run: RunRecord, log_roots: tuple[str, ...], max_bytes: int = LOG_TAIL_BYTES
) -> tuple[str | None, str | None]:
    """(the end of the run's log file, None) when the dashboard may show it; else (None,
    why not), or (None, None) when the run names no log file.

    The file's name comes from the database, which any tracked program writes: it is read
    only when it resolves (links and ``..`` followed) to a regular file inside one of the
    operator's ``dashboard.log_roots``, and at most its last ``max_bytes``."""
    if not run.log_filename:
        return None, None
    if not log_roots:
        return None, "log files are shown only inside the folders listed in dashboard.log_roots"
    path = os.path.join(run.log_path or "", run.log_filename)
    refused = "the log file is not a regular file inside dashboard.log_roots"
    if not os.path.isabs(path):
        return None, refused  # relative to a working directory the dashboard does not know
    roots = [os.path.realpath(root) for root in log_roots]
    real = os.path.realpath(path)
    if not _inside(real, roots):
        return None, refused
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError:
        return None, "the log file cannot be read"
    try:
        # What was opened is what was checked (no folder on the way swapped for a link).
        opened = f"/proc/self/fd/{fd}"
        if os.path.islink(opened) and not _inside(os.path.realpath(opened), roots):
            return None, refused
        text = read_tail(fd, max_bytes)  # None for a FIFO, a device (/dev/zero), a folder
    except OSError:
        return None, "the log file cannot be read"
    finally:
        os.close(fd)
    if text is None:
        return None, refused
    return text, None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_DATABASE_UP = (
    "# HELP tasker_database_up Whether the dashboard could read the database.",
    "# TYPE tasker_database_up gauge",
)


def metrics_text() -> str:
    """Prometheus text exposition: runs by status (latest per task), active runs, and the
    last success time and duration per task."""
    rows = tasker.get_task_status()
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[str(row.status)] = by_status.get(str(row.status), 0) + 1
    active = tasker.get_active_tasks()
    lines = [
        *_DATABASE_UP,
        "tasker_database_up 1",
        "# HELP tasker_tasks Registered tasks by the status of their latest run.",
        "# TYPE tasker_tasks gauge",
    ]
    for status in sorted(by_status):
        lines.append(f'tasker_tasks{{status="{status}"}} {by_status[status]}')
    lines += [
        "# HELP tasker_runs Runs in the database, by status.",
        "# TYPE tasker_runs gauge",
    ]
    # Kept by triggers in the database (tasker.store.triggers): current at every scrape.
    counts = count_runs_by_status()
    for status in sorted(counts):
        lines.append(f'tasker_runs{{status="{status}"}} {counts[status]}')
    lines += [
        "# HELP tasker_active_runs Runs that are STARTED or RUNNING.",
        "# TYPE tasker_active_runs gauge",
        f"tasker_active_runs {len(active)}",
        "# HELP tasker_last_success_timestamp_seconds End of each task's latest COMPLETED run.",
        "# TYPE tasker_last_success_timestamp_seconds gauge",
    ]
    durations = []
    for run in last_successes():
        if run.end_time is None:
            continue
        key = (run.stage_name, run.task_name)
        labels = f'stage="{_label(key[0])}",task="{_label(key[1])}"'
        lines.append(
            f"tasker_last_success_timestamp_seconds{{{labels}}} {run.end_time.timestamp()}"
        )
        if run.duration is not None:
            durations.append(f"tasker_last_success_duration_seconds{{{labels}}} {run.duration}")
    lines += [
        "# HELP tasker_last_success_duration_seconds Duration of each task's latest success.",
        "# TYPE tasker_last_success_duration_seconds gauge",
        *durations,
    ]
    return "\n".join(lines) + "\n"


def metrics_failure(exc: Exception) -> str:
    """``/metrics`` when the database cannot be read: the exposition format still, with
    ``tasker_database_up 0`` and the reason as a comment."""
    reason = " ".join(str(exc).split())
    lines = [f"# tasker cannot read the database: {reason}", *_DATABASE_UP, "tasker_database_up 0"]
    return "\n".join(lines) + "\n"
