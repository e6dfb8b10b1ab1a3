"""The read side, shared by the Python API, the CLI and the dashboard.

Each query returns immutable records (``tasker.models``); ``as_frame=True`` returns a pandas
DataFrame with the same columns instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tasker.errors import UnknownRunError, ValidationError
from tasker.live_figures import Figures, RateWindow, figures, run_duration
from tasker.models import (
    RunRecord,
    StageRecord,
    Status,
    SubtaskRecord,
    TaskRecord,
    TaskStatusRecord,
    parse_status,
)
from tasker.run_progress import Progress, of_run
from tasker.runtime import context
from tasker.runtime.recorder import RECORDER

__all__ = [
    "get_active_tasks",
    "get_children",
    "get_pipeline_run",
    "get_pipeline_runs",
    "get_run",
    "get_stages",
    "get_subtask_progress",
    "get_task_history",
    "get_task_status",
    "get_tasks",
    "pipeline_root",
    "pipeline_roots",
    "run_ids_starting_with",
    "run_progress",
    "search_history",
    "search_status",
    "stage_line",
    "stage_status",
    "summarize_stages",
    "to_frame",
]


def to_frame(records: Sequence[Any], columns: Sequence[str]) -> Any:
    """Records as a pandas DataFrame (statuses as strings)."""
    try:
        import pandas as pd
    except ModuleNotFoundError:
        raise ValidationError("as_frame=True needs pandas: pip install pandas") from None
    return pd.DataFrame([r.as_dict() for r in records], columns=list(columns))


def _frame_or_list(records: list[Any], record_type: type, as_frame: bool) -> Any:
    if not as_frame:
        return records
    import dataclasses

    return to_frame(records, [f.name for f in dataclasses.fields(record_type)])


def _statuses(status: str | Status | Sequence[str | Status] | None) -> list[str] | None:
    if status is None:
        return None
    items = [status] if isinstance(status, (str, Status)) else list(status)
    return [parse_status(s).value for s in items]


def _limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"limit must be a whole number of 1 or more, got {limit!r}")
    return limit


def get_task_status(
    stage: str | None = None,
    task: str | None = None,
    status: str | Status | Sequence[str | Status] | None = None,
    *,
    as_frame: bool = False,
) -> Any:
    """Every registered task with its latest run, in stage and task order.

    Tasks that never ran are NOT_STARTED. ``status`` filters on one status or several.
    Returns ``list[TaskStatusRecord]`` (or a DataFrame).
    """
    records = RECORDER.synced_store().task_status(stage=stage, task=task, status=_statuses(status))
    return _frame_or_list(records, TaskStatusRecord, as_frame)


def get_active_tasks(*, as_frame: bool = False) -> Any:
    """Runs that are STARTED or RUNNING, in stage and task order (``list[RunRecord]``)."""
    return _frame_or_list(RECORDER.synced_store().active_runs(), RunRecord, as_frame)


def get_task_history(
    stage: str | None = None,
    task: str | None = None,
    limit: int | None = 100,
    *,
    status: str | Status | Sequence[str | Status] | None = None,
    hostname: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
    as_frame: bool = False,
) -> Any:
    """Past and present runs, newest first (``list[RunRecord]``)."""
    records = _history(
        stage=stage,
        task=task,
        status=status,
        hostname=hostname,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return _frame_or_list(records, RunRecord, as_frame)


def _history(
    *,
    status: str | Status | Sequence[str | Status] | None,
    limit: object,
    offset: object,
    **filters: Any,
) -> list[RunRecord]:
    """The history read of :func:`get_task_history` and :func:`search_history`: the status,
    limit and offset checked, the other filters as the store takes them."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError(f"offset must be a whole number of 0 or more, got {offset!r}")
    return RECORDER.synced_store().history(
        status=_statuses(status), limit=_limit(limit), offset=offset, **filters
    )


def search_history(
    *,
    stage: str | None = None,
    task: str | None = None,
    text: str | None = None,
    status: str | Status | Sequence[str | Status] | None = None,
    hostname: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> list[RunRecord]:
    """Runs newest first, as the dashboard searches them: ``stage`` and ``task`` are parts of
    the names in any case (``static`` finds STATIC and STATIC_2), ``text`` a part of either
    name; the names are matched in the tasks and stages first, then those tasks' runs read."""
    return _history(
        stage=stage,
        task=task,
        search=text,
        contains=True,
        status=status,
        hostname=hostname,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


def search_status(*, stage: str | None = None, text: str | None = None) -> list[TaskStatusRecord]:
    """Registered tasks with their latest run, in stage and task order, whose stage name holds
    ``stage`` and whose stage or task name holds ``text``, in any case."""
    return RECORDER.synced_store().task_status(stage=stage, search=text, contains=True)


def run_ids_starting_with(prefix: str, limit: int = 5) -> list[str]:
    """The ids of the runs (at most ``limit``, in order) that start with ``prefix``, when it
    can be the start of a run id (4 or more of its characters); else none."""
    text = prefix.strip().lower()
    if len(text) < 4 or any(c not in "0123456789abcdef-" for c in text):
        return []
    return RECORDER.synced_store().run_ids_with_prefix(text, _limit(limit) or 1)


def get_run(run_id: str | None = None) -> RunRecord:
    """One run with everything captured about it (the current run by default)."""
    from tasker.explicit import resolve_run_id

    return RECORDER.synced_store().get_run(resolve_run_id(run_id))


def get_subtask_progress(run_id: str | None = None, *, as_frame: bool = False) -> Any:
    """The subtasks of a run (the current run by default), by number."""
    from tasker.explicit import resolve_run_id

    rid = resolve_run_id(run_id if run_id is not None else context.current_run_id())
    return _frame_or_list(RECORDER.synced_store().subtasks(rid), SubtaskRecord, as_frame)


def get_children(run_id: str | None = None) -> list[RunRecord]:
    """The runs directly under a run (the current run by default), oldest first."""
    from tasker.explicit import resolve_run_id

    return RECORDER.synced_store().children(resolve_run_id(run_id))


def get_pipeline_runs(limit: int = 20) -> list[RunRecord]:
    """The latest pipeline runs, newest first: runs without a parent, under each of which
    its nested runs, child processes and the scripts it started are recorded."""
    return RECORDER.synced_store().pipeline_roots(_limit(limit) or 20)


def pipeline_root(run_id: str) -> str:
    """The pipeline run ``run_id`` belongs to: the topmost run above it (itself when it has
    no parent)."""
    return RECORDER.synced_store().roots_of([run_id]).get(run_id, run_id)


def pipeline_roots(run_ids: Sequence[str]) -> dict[str, str]:
    """For each of ``run_ids``, the pipeline run it belongs to (see :func:`pipeline_root`)."""
    return RECORDER.synced_store().roots_of(list(dict.fromkeys(run_ids)))


def get_pipeline_run(run_id: str) -> list[tuple[RunRecord, int]]:
    """The whole pipeline run ``run_id`` belongs to: its topmost run and every run under it,
    oldest first, each with its depth below the top (0 for the top run itself)."""
    return RECORDER.synced_store().pipeline(pipeline_root(run_id))


def run_progress(runs: Sequence[RunRecord]) -> list[Progress]:
    """Each run's progress as every view shows it (``tasker.run_progress``), read with their
    current subtasks in one query per 500 runs."""
    current = RECORDER.synced_store().current_subtasks([r.run_id for r in runs])
    return [of_run(r, current.get(r.run_id)) for r in runs]


def get_tasks(stage: str | None = None, *, as_frame: bool = False) -> Any:
    """Registered tasks with their stages, in stage and task order (``list[TaskRecord]``)."""
    return _frame_or_list(RECORDER.synced_store().tasks(stage=stage), TaskRecord, as_frame)


def get_stages(*, as_frame: bool = False) -> Any:
    """Registered stages in stage order (``list[StageRecord]``)."""
    return _frame_or_list(RECORDER.synced_store().stages(), StageRecord, as_frame)


def stage_status(statuses: Sequence[Status]) -> Status:
    """A stage's status from its tasks': any FAILED → FAILED; else any RUNNING → RUNNING;
    else all COMPLETED (or SKIPPED) → COMPLETED; else any started → STARTED; else NOT_STARTED."""
    if not statuses:
        return Status.NOT_STARTED
    if Status.FAILED in statuses:
        return Status.FAILED
    if Status.RUNNING in statuses:
        return Status.RUNNING
    if all(s in (Status.COMPLETED, Status.SKIPPED) for s in statuses):
        return Status.COMPLETED
    if any(s is not Status.NOT_STARTED for s in statuses):
        return Status.STARTED
    return Status.NOT_STARTED


def summarize_stages(rows: Sequence[TaskStatusRecord]) -> list[dict[str, Any]]:
    """Per stage, in order: name, derived status, tasks done (COMPLETED or SKIPPED), running
    (STARTED or RUNNING), failed, cancelled, not started, and in all."""
    stages: dict[str, list[TaskStatusRecord]] = {}
    for row in rows:
        stages.setdefault(row.stage_name, []).append(row)
    return [
        {
            "stage_name": name,
            "status": stage_status([r.status for r in members]).value,
            "done": sum(r.status in (Status.COMPLETED, Status.SKIPPED) for r in members),
            "running": sum(Status(r.status).is_active for r in members),
            "failed": sum(r.status is Status.FAILED for r in members),
            "cancelled": sum(r.status is Status.CANCELLED for r in members),
            "not_started": sum(r.status is Status.NOT_STARTED for r in members),
            "total": len(members),
        }
        for name, members in stages.items()
    ]


def stage_line(stage: dict[str, Any]) -> str:
    """``2/3 tasks done, 1 not started``: what a stage's status stands for, in words."""
    parts = [f"{stage['done']}/{stage['total']} tasks done"]
    for key in ("running", "failed", "cancelled", "not_started"):
        if stage.get(key):
            parts.append(f"{stage[key]} {key.replace('_', ' ')}")
    return ", ".join(parts)


def find_run(run_id_or_prefix: str) -> RunRecord:
    """The run whose id is ``run_id_or_prefix`` or starts with it (a unique prefix of at least
    4 characters, as ``tasker show`` accepts)."""
    text = run_id_or_prefix.strip().lower() if isinstance(run_id_or_prefix, str) else ""
    if len(text) < 4 or any(c not in "0123456789abcdef-" for c in text):
        raise ValidationError(
            f"expected a run id or a prefix of at least 4 of its characters, got "
            f"{run_id_or_prefix!r}"
        )
    store = RECORDER.synced_store()
    found = store.run_ids_with_prefix(text)
    if not found:
        raise UnknownRunError(f"no run id starts with {text!r}")
    if len(found) > 1 and text not in found:
        raise ValidationError(f"{text!r} is the start of several run ids: give more of it")
    return store.get_run(text if text in found else found[0])


def check_database() -> None:
    """Raise DatabaseError unless the database answers now and holds tasker's tables: one
    attempt, bounded by ``connect_timeout`` and ``statement_timeout`` (a health check)."""
    from tasker.store.ddl import no_tables

    store = RECORDER.store
    with store.retrying(0.0):
        if store.schema_version() is None:
            raise no_tables(store.config)


def count_runs_by_status() -> dict[str, int]:
    """How many runs the database holds of each status (all history)."""
    return RECORDER.synced_store().run_counts()


def last_successes() -> list[RunRecord]:
    """Each task's latest COMPLETED run (by start time), newest first; tasks that never
    completed are left out."""
    return RECORDER.synced_store().last_successes()


def recent_durations(task_ids: Sequence[int], per_task: int) -> dict[int, list[float]]:
    """By task id, the durations in seconds of each of these tasks' latest ``per_task``
    COMPLETED runs, newest first (tasks that never completed are left out)."""
    return RECORDER.synced_store().recent_durations(task_ids, _limit(per_task) or 1)


def elapsed(row: TaskStatusRecord | RunRecord, now: datetime) -> float | None:
    """Seconds from the run's start to its end; to ``now`` while it is active."""
    return run_duration(row.status, row.start_time, row.end_time, now, row.last_update)


def status_figures(
    row: TaskStatusRecord,
    now: datetime,
    *,
    past_durations: Sequence[float] = (),
    window: RateWindow | None = None,
) -> Figures:
    """The live figures of a task's latest run (``tasker.live_figures``): its duration, its
    current subtask's rate and ETA, and the ETA of the whole run from ``past_durations``
    (``recent_durations()`` of the task)."""
    return figures(
        status=row.status,
        start_time=row.start_time,
        end_time=row.end_time,
        last_update=row.last_update,
        now=now,
        run_id=row.run_id,
        subtask_number=row.current_subtask if row.subtask_name is not None else None,
        subtask_start=row.subtask_start_time,
        total_subtasks=row.total_subtasks,
        items_complete=row.items_complete,
        items_total=row.items_total,
        past_durations=past_durations,
        window=window,
    )


def run_figures(
    run: RunRecord,
    current: SubtaskRecord | None,
    now: datetime,
    *,
    past_durations: Sequence[float] = (),
    window: RateWindow | None = None,
) -> Figures:
    """The live figures of ``run`` given its current subtask (None when it has none), as
    :func:`status_figures` gives them for a task's latest run."""
    return figures(
        status=run.status,
        start_time=run.start_time,
        end_time=run.end_time,
        last_update=run.last_update,
        now=now,
        run_id=run.run_id,
        subtask_number=None if current is None else current.subtask_number,
        subtask_start=None if current is None else current.start_time,
        total_subtasks=run.total_subtasks,
        items_complete=None if current is None else current.items_complete,
        items_total=None if current is None else current.items_total,
        past_durations=past_durations,
        window=window,
    )


def subtask_figures(sub: SubtaskRecord, now: datetime, window: RateWindow | None = None) -> Figures:
    """One subtask's own figures: its duration (to ``now`` while it runs), its rate and the
    time its items still need."""
    return figures(
        status=sub.status,
        start_time=sub.start_time,
        end_time=sub.end_time,
        last_update=sub.last_update,
        now=now,
        run_id=sub.run_id,
        subtask_number=sub.subtask_number,
        subtask_start=sub.start_time,
        items_complete=sub.items_complete,
        items_total=sub.items_total,
        window=window,
    )
