"""What the dashboard shows, gathered through tasker's queries (no SQL here)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from datetime import datetime, timezone
from typing import Any

import tasker
from tasker.models import RunRecord, TaskStatusRecord
from tasker.queries import count_runs_by_status, summarize_stages

__all__ = ["log_tail", "metrics_text", "overview", "typical_durations"]

ACTIVE = ("STARTED", "RUNNING")
# Past runs looked at for "how long does this task usually take", and for how long.
HISTORY_SAMPLE = 5000
TYPICAL_TTL = 60.0
REAP_EVERY = 5.0

_lock = threading.Lock()
# (database, when computed, durations): recomputed after TYPICAL_TTL or for another database.
_typical: tuple[object, float, dict[tuple[str, str], float]] = (None, 0.0, {})
_last_reap = 0.0


def reap_now_and_then() -> None:
    """End lost runs, at most every few seconds (each page refresh would be too often)."""
    global _last_reap
    now = time.monotonic()
    if now - _last_reap >= REAP_EVERY:
        _last_reap = now
        tasker.reap_lost_runs()


def typical_durations() -> dict[tuple[str, str], float]:
    """Median duration of each task's recent COMPLETED runs (cached for a minute)."""
    global _typical
    config = tasker.get_config()
    database = (config.url, config.db_schema)
    with _lock:
        seen_for, stamp, cached = _typical
        if seen_for == database and time.monotonic() - stamp < TYPICAL_TTL:
            return cached
    samples: dict[tuple[str, str], list[float]] = {}
    for run in tasker.get_task_history(status="COMPLETED", limit=HISTORY_SAMPLE):
        if run.duration is not None:
            samples.setdefault((run.stage_name, run.task_name), []).append(run.duration)
    result = {key: statistics.median(values) for key, values in samples.items()}
    with _lock:
        _typical = (database, time.monotonic(), result)
    return result


def _eta(row: TaskStatusRecord, now: datetime, typical: float | None) -> dict[str, Any]:
    """Seconds left: from the live rate of the current subtask's items, and from how long the
    task's past runs took."""
    out: dict[str, Any] = {"eta_rate": None, "eta_history": None, "rate": None}
    if str(row.status) not in ACTIVE or row.start_time is None:
        return out
    elapsed = (now - row.start_time).total_seconds()
    done = row.items_complete or 0
    if elapsed > 0 and done > 0:
        out["rate"] = done / elapsed
        if row.items_total and row.items_total > done:
            out["eta_rate"] = (row.items_total - done) / out["rate"]
    if typical is not None:
        out["eta_history"] = max(0.0, typical - elapsed)
    return out


def overview(stage: str | None = None) -> dict[str, Any]:
    """Stages with their derived status, and every task with its latest run, ETAs included."""
    reap_now_and_then()
    rows = tasker.get_task_status(stage=stage)
    typical = typical_durations()
    now = datetime.now(timezone.utc)
    tasks = []
    for row in rows:
        item = row.as_dict()
        item["status"] = str(row.status)
        end = row.end_time or (now if item["status"] in ACTIVE else row.last_update)
        item["duration"] = (
            (end - row.start_time).total_seconds() if row.start_time and end else None
        )
        item.update(_eta(row, now, typical.get((row.stage_name, row.task_name))))
        tasks.append(item)
    return {"generated_at": now.isoformat(), "stages": summarize_stages(rows), "tasks": tasks}


def run_detail(run: RunRecord) -> dict[str, Any]:
    data = run.as_dict()
    data["status"] = str(run.status)
    data["duration"] = run.duration
    subtasks = []
    for sub in tasker.get_subtask_progress(run.run_id):
        item = sub.as_dict()
        item["status"] = str(sub.status)
        end = sub.end_time or sub.last_update
        item["duration"] = (
            (end - sub.start_time).total_seconds() if sub.start_time and end else None
        )
        subtasks.append(item)
    data["subtasks"] = subtasks
    data["log_tail"] = log_tail(run)
    return data


def log_tail(run: RunRecord, max_bytes: int = 16384) -> str | None:
    """The end of the run's log file, when it names one this process can read."""
    if not run.log_filename:
        return None
    path = os.path.join(run.log_path or "", run.log_filename)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes:
        text = text.split("\n", 1)[-1]  # start at a whole line
    return text


# Counting every run scans the whole history: once per COUNTS_TTL is enough for scrapes.
COUNTS_TTL = 10.0
_counts: tuple[object, float, dict[str, int]] = (None, 0.0, {})


def _run_counts() -> dict[str, int]:
    global _counts
    config = tasker.get_config()
    database = (config.url, config.db_schema)
    seen_for, stamp, cached = _counts
    if seen_for == database and time.monotonic() - stamp < COUNTS_TTL:
        return cached
    counts = count_runs_by_status()
    _counts = (database, time.monotonic(), counts)
    return counts


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text() -> str:
    """Prometheus text exposition: runs by status (latest per task), active runs, and the
    last success time and duration per task."""
    rows = tasker.get_task_status()
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[str(row.status)] = by_status.get(str(row.status), 0) + 1
    active = tasker.get_active_tasks()
    lines = [
        "# HELP tasker_tasks Registered tasks by the status of their latest run.",
        "# TYPE tasker_tasks gauge",
    ]
    for status in sorted(by_status):
        lines.append(f'tasker_tasks{{status="{status}"}} {by_status[status]}')
    lines += [
        "# HELP tasker_runs Runs in the database, by status.",
        "# TYPE tasker_runs gauge",
    ]
    counts = _run_counts()
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
    seen: set[tuple[str, str]] = set()
    for run in tasker.get_task_history(status="COMPLETED", limit=HISTORY_SAMPLE):
        key = (run.stage_name, run.task_name)
        if key in seen or run.end_time is None:
            continue
        seen.add(key)
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
