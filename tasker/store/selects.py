"""The SELECT of every read, built from the tables: :mod:`tasker.store.reads` runs them, and
``tests/integration/test_query_plans.py`` EXPLAINs the very same statements on every backend.

Each read is driven by an index of ``task_runs`` however long the history grows, whatever
the backend's planner would do with a plainer statement (MariaDB's, left to itself, starts
a join from the smallest table and sorts the whole history):

- the history picks its run ids first, from one index walked in (start_time, run_id) order
  newest first and stopped by the limit, and only then reads those runs by primary key with
  their task and stage (:func:`history_select`; which index depends on the filters);
- a task's latest success and its recent completed runs are a short range of (task_id,
  status, start_time, run_id) per task;
- active runs come from the active-runs index, one run by primary key, a prefix of run ids
  as a primary-key range, a run's subtasks by (run_id, subtask_number), counts by status
  from each status's range of (status, start_time, run_id);
- every task's latest run is a primary-key lookup through ``tasks.last_run_id``.

The only sorts left are of bounded sets: the runs a limit picked, one row per task, the
active runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Subquery,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql import Executable, Select
from sqlalchemy.sql.elements import ColumnElement

from tasker.models import RunRecord, SubtaskRecord
from tasker.store.schema import (
    Tables,
    active_condition,
    current_task_status_select,
    record_columns,
    run_columns,
    run_select,
)
from tasker.store.triggers import count_columns

__all__ = [
    "active_runs_select",
    "current_subtasks_select",
    "history_select",
    "last_successes_select",
    "like_pattern",
    "ordered",
    "prefix_bounds",
    "recent_completed_select",
    "run_counts_select",
    "run_ids_in_range_select",
    "run_ids_like_select",
    "run_select_by_id",
    "subtasks_select",
    "task_ids_select",
    "task_status_select",
]

_COMPLETED: Any = literal_column("'COMPLETED'")
# Statements are built once per store's tables and shape (building and cache-keying one per
# call would cost more than the database's work); a bound keeps a process that opens many
# stores from holding on to every one.
_SHAPES = 256


def ordered(col: Any) -> Any:
    """NULLs last on every backend (MySQL has no NULLS LAST)."""
    return case((col.is_(None), 1), else_=0)


def _newest_first(runs: Any) -> tuple[Any, Any]:
    return runs.c.start_time.desc(), runs.c.run_id.desc()


def _record_of_runs(t: Tables, picked: Subquery, *, order: Sequence[Any]) -> Select[Any]:
    """RunRecord columns of the runs ``picked`` names (its ``run_id``), each joined with its
    task and stage by primary key, in ``order``."""
    runs = t.task_runs
    available = run_columns(t, log_tail=False)  # lists of runs read no log (RunRecord)
    return (
        select(*record_columns(RunRecord, available))
        .select_from(
            picked.join(runs, runs.c.run_id == picked.c.run_id)
            .join(t.tasks, t.tasks.c.task_id == runs.c.task_id)
            .join(t.stages, t.stages.c.stage_id == t.tasks.c.stage_id)
        )
        .order_by(*order)
        # MariaDB would start from the stages, joining every task with every picked run.
        .prefix_with("STRAIGHT_JOIN", dialect="mysql")
    )


# The escape character of the patterns of name searches (like_pattern).
_ESCAPE = "/"


def like_pattern(text: str) -> str:
    """``%text%``, a LIKE pattern (ESCAPE '/') of the names that hold ``text``: the ``%``,
    ``_`` and ``/`` a user types match themselves, not any text."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def _holds(column: Any, pattern: Any) -> ColumnElement[bool]:
    """``column`` holds the text of ``pattern`` (a bound like_pattern), in any case: lower()
    on both sides, since SQLite's LIKE ignores the case of ASCII letters only, PostgreSQL's
    ignores none, and MariaDB's compares tasker's utf8mb4_bin columns exactly."""
    return func.lower(column).like(func.lower(pattern), escape=_ESCAPE)


def _names(
    stage_name: Any,
    task_name: Any,
    stage: Any,
    task: Any,
    search: Any,
    contains: bool,
) -> list[ColumnElement[bool]]:
    """The conditions on the stage and task names: each of ``stage`` and ``task`` (values or
    bound parameters, None for none) the name itself, or with ``contains`` a like_pattern the
    name holds in any case; ``search`` a like_pattern that either name holds."""
    conds: list[ColumnElement[bool]] = []
    for column, value in ((stage_name, stage), (task_name, task)):
        if value is not None:
            conds.append(_holds(column, value) if contains else column == value)
    if search is not None:
        conds.append(or_(_holds(stage_name, search), _holds(task_name, search)))
    return conds


def task_ids_select(
    t: Tables,
    *,
    stage: str | None,
    task: str | None,
    search: str | None = None,
    contains: bool = False,
) -> Select[Any]:
    """The ids of the tasks a history filter on stage and task name means (a task name may
    be registered in several stages): the names themselves, or with ``contains`` names that
    hold them in any case; ``search``: a text either name holds, in any case. A read of the
    small tasks and stages tables only, whatever it matches."""
    tasks, stages = t.tasks, t.stages
    if contains:
        stage = None if stage is None else like_pattern(stage)
        task = None if task is None else like_pattern(task)
    found = None if search is None else literal(like_pattern(search), String())
    by_stage = None if stage is None else literal(stage, String())
    by_task = None if task is None else literal(task, String())
    conds = _names(stages.c.stage_name, tasks.c.task_name, by_stage, by_task, found, contains)
    return (
        select(tasks.c.task_id)
        .select_from(tasks.join(stages, stages.c.stage_id == tasks.c.stage_id))
        .where(*conds)
        .order_by(tasks.c.task_id)
    )


def history_select(
    t: Tables,
    *,
    task_ids: Sequence[int] | None = None,
    status: Sequence[str] | None = None,
    hostname: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> tuple[Select[Any], dict[str, Any]]:
    """Runs newest first, as RunRecords: the statement (one per shape of the filters, built
    once) and its parameters. ``task_ids`` (from :func:`task_ids_select`; None for any
    task) stands for the stage and task filters.

    The run ids are picked first from task_runs alone, ordered by (start_time, run_id) and
    limited, through the index the filters make best (they all end in start_time, run_id):
    one task's runs by (task_id, start_time, run_id), one status's by (status, ...), one
    host's by (hostname, ...), else every run by (start_time, run_id, task_id), since/until
    a range of each. Then the picked runs are read by primary key and joined with their task
    and stage, and sorted again: at most limit + offset rows.
    """
    tasks = None if task_ids is None else ("one" if len(task_ids) == 1 else "several")
    stmt = _history_shape(
        t,
        tasks,
        bool(status),
        hostname is not None,
        since is not None,
        until is not None,
        limit is not None,
    )
    params: dict[str, Any] = {"x_offset": offset}
    if task_ids is not None:
        params["x_tasks"] = task_ids[0] if len(task_ids) == 1 else list(task_ids)
    if status:
        params["x_statuses"] = list(status)
    if hostname is not None:
        params["x_hostname"] = hostname
    if since is not None:
        params["x_since"] = since
    if until is not None:
        params["x_until"] = until
    if limit is not None:
        params["x_limit"] = limit
    return stmt, params


@functools.lru_cache(maxsize=_SHAPES)
def _history_shape(
    t: Tables,
    tasks: str | None,
    status: bool,
    hostname: bool,
    since: bool,
    until: bool,
    limit: bool,
) -> Select[Any]:
    runs = t.task_runs
    c = runs.c
    conds: list[ColumnElement[bool]] = []
    if tasks == "one":
        conds.append(c.task_id == bindparam("x_tasks", type_=c.task_id.type))
    elif tasks == "several":
        # Several tasks (a stage's): their runs come in time order from the time index,
        # which holds task_id; "+ 0" keeps the planner off (task_id, start_time), whose
        # per-task order would need a sort of every one of their runs.
        several = bindparam("x_tasks", type_=c.task_id.type, expanding=True)
        conds.append((c.task_id + literal_column("0")).in_(several))
    if status:
        conds.append(c.status.in_(bindparam("x_statuses", type_=c.status.type, expanding=True)))
    if hostname:
        conds.append(c.hostname == bindparam("x_hostname", type_=c.hostname.type))
    if since:
        conds.append(c.start_time >= bindparam("x_since", type_=c.start_time.type))
    if until:
        conds.append(c.start_time < bindparam("x_until", type_=c.start_time.type))
    picked_select = (
        select(c.run_id, c.start_time)
        .where(*conds)
        .order_by(*_newest_first(runs))
        .offset(bindparam("x_offset", type_=Integer()))
    )
    if limit:
        picked_select = picked_select.limit(bindparam("x_limit", type_=Integer()))
    picked = picked_select.subquery("picked")
    return _record_of_runs(t, picked, order=(picked.c.start_time.desc(), picked.c.run_id.desc()))


def task_status_select(
    t: Tables,
    *,
    stage: str | None = None,
    task: str | None = None,
    status: Sequence[str] | None = None,
    search: str | None = None,
    contains: bool = False,
) -> tuple[Select[Any], dict[str, Any]]:
    """Every registered task with its latest run (``tasks.last_run_id``, by primary key), in
    stage and task order (a sort of one row per task): the statement and its parameters.
    ``stage``, ``task``, ``search`` and ``contains`` as for :func:`task_ids_select`."""
    stmt = _task_status_shape(
        t, stage is not None, task is not None, bool(status), search is not None, contains
    )
    params: dict[str, Any] = {}
    if stage is not None:
        params["x_stage"] = like_pattern(stage) if contains else stage
    if task is not None:
        params["x_task"] = like_pattern(task) if contains else task
    if status:
        params["x_statuses"] = list(status)
    if search is not None:
        params["x_search"] = like_pattern(search)
    return stmt, params


@functools.lru_cache(maxsize=_SHAPES)
def _task_status_shape(
    t: Tables, stage: bool, task: bool, status: bool, search: bool, contains: bool
) -> Select[Any]:
    view = current_task_status_select(t).subquery("current_task_status")
    c = view.c
    stmt = select(view).where(
        *_names(
            c.stage_name,
            c.task_name,
            bindparam("x_stage", type_=c.stage_name.type) if stage else None,
            bindparam("x_task", type_=c.task_name.type) if task else None,
            bindparam("x_search", type_=c.task_name.type) if search else None,
            contains,
        )
    )
    if status:
        stmt = stmt.where(c.status.in_(bindparam("x_statuses", expanding=True)))
    return stmt.order_by(
        ordered(c.stage_order),
        c.stage_order,
        c.stage_name,
        ordered(c.task_order),
        c.task_order,
        c.task_name,
    )


@functools.lru_cache(maxsize=_SHAPES)
def active_runs_select(t: Tables) -> Select[Any]:
    """Runs that are STARTED or RUNNING, in stage and task order, then by start time.

    Picked from the active-runs index first, so that MariaDB too starts from the few active
    runs rather than from the stages (a sort of the active runs only)."""
    runs = t.task_runs
    picked = select(runs.c.run_id).where(active_condition(t)).subquery("active_runs")
    return _record_of_runs(
        t,
        picked,
        order=(
            ordered(t.stages.c.stage_order),
            t.stages.c.stage_order,
            ordered(t.tasks.c.task_order),
            t.tasks.c.task_order,
            runs.c.start_time,
        ),
    )


@functools.lru_cache(maxsize=_SHAPES)
def run_select_by_id(t: Tables) -> Select[Any]:
    """One run (``:x_run_id``) with its task and stage, by primary key, its log tail too."""
    runs = t.task_runs
    return run_select(t, log_tail=True).where(
        runs.c.run_id == bindparam("x_run_id", type_=runs.c.run_id.type)
    )


@functools.lru_cache(maxsize=_SHAPES)
def subtasks_select(t: Tables) -> Select[Any]:
    """A run's (``:x_run_id``) subtasks by number, through (run_id, subtask_number)."""
    sp = t.subtask_progress
    return (
        select(*record_columns(SubtaskRecord, {c.name: c for c in sp.c}))
        .where(sp.c.run_id == bindparam("x_run_id", type_=sp.c.run_id.type))
        .order_by(sp.c.subtask_number)
    )


_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LOWEST = "00000000-0000-0000-0000-000000000000"
_HIGHEST = "ffffffff-ffff-ffff-ffff-ffffffffffff"


def prefix_bounds(prefix: str) -> tuple[str, str] | None:
    """The lowest and highest run id starting with ``prefix`` (run ids are canonical UUID
    text, lower case), or None when no run id can start with it."""
    if len(prefix) > len(_LOWEST):
        return None
    low = prefix + _LOWEST[len(prefix) :]
    high = prefix + _HIGHEST[len(prefix) :]
    if not (_CANONICAL.fullmatch(low) and _CANONICAL.fullmatch(high)):
        return None
    return low, high


@functools.lru_cache(maxsize=_SHAPES)
def run_ids_in_range_select(t: Tables, limit: int) -> Select[Any]:
    """Run ids from ``:x_low`` to ``:x_high`` (:func:`prefix_bounds`) in order, at most
    ``limit``: a primary-key range on every backend (a LIKE on the id read every run)."""
    runs = t.task_runs
    kind = runs.c.run_id.type
    return (
        select(runs.c.run_id)
        .where(
            runs.c.run_id >= bindparam("x_low", type_=kind),
            runs.c.run_id <= bindparam("x_high", type_=kind),
        )
        .order_by(runs.c.run_id)
        .limit(limit)
    )


@functools.lru_cache(maxsize=_SHAPES)
def run_ids_like_select(t: Tables, limit: int) -> Select[Any]:
    """Run ids LIKE ``:x_prefix``, for a prefix no canonical run id can start with (what
    another tool wrote on SQLite or MySQL could): it reads every run id."""
    runs = t.task_runs
    return (
        select(runs.c.run_id)
        .where(cast(runs.c.run_id, String(36)).like(bindparam("x_prefix")))
        .order_by(runs.c.run_id)
        .limit(limit)
    )


@functools.lru_cache(maxsize=_SHAPES)
def current_subtasks_select(t: Tables) -> Select[Any]:
    """The current subtask of each of the runs ``:x_run_ids`` (a list: the one its run's
    ``current_subtask`` names): each run by primary key, its subtask by (run_id,
    subtask_number)."""
    runs, sp = t.task_runs, t.subtask_progress
    columns = record_columns(SubtaskRecord, {c.name: c for c in sp.c})
    return (
        select(*columns)
        .select_from(
            runs.join(
                sp,
                and_(
                    sp.c.run_id == runs.c.run_id,
                    sp.c.subtask_number == runs.c.current_subtask,
                ),
            )
        )
        .where(runs.c.run_id.in_(bindparam("x_run_ids", type_=runs.c.run_id.type, expanding=True)))
    )


@functools.lru_cache(maxsize=_SHAPES)
def run_counts_select(t: Tables) -> Select[Any]:
    """How many runs there are of each status (in STATUS_VALUES order): the sums of the
    run_counts shards the triggers keep (tasker.store.triggers), a few dozen rows however
    long the history."""
    counts = t.run_counts
    return select(
        *(
            func.coalesce(func.sum(counts.c[name]), 0).label(name)
            for name in count_columns().values()
        )
    )


def _latest_completed(t: Tables, task_id: Any, per_task: int) -> Select[Any]:
    runs = t.task_runs
    return (
        select(runs.c.run_id)
        .where(runs.c.task_id == task_id, runs.c.status == _COMPLETED)
        .order_by(*_newest_first(runs))
        .limit(per_task)
    )


@functools.lru_cache(maxsize=_SHAPES)
def last_successes_select(t: Tables) -> Select[Any]:
    """Each task's latest COMPLETED run (by start time), newest first: one bounded range of
    (task_id, status, start_time, run_id) per task; tasks without one are left out."""
    tasks = t.tasks
    latest = select(
        tasks.c.task_id,
        _latest_completed(t, tasks.c.task_id, 1).scalar_subquery().label("run_id"),
    ).subquery("latest")  # a task without one has NULL here, which joins no run
    return _record_of_runs(t, latest, order=_newest_first(t.task_runs))


@functools.lru_cache(maxsize=_SHAPES)
def recent_completed_select(t: Tables, tasks: int, per_task: int) -> Executable:
    """The latest ``per_task`` COMPLETED runs of each of ``tasks`` tasks (``:x_task_0`` …):
    task_id, start_time and end time (else the last update, as RunRecord.duration), a
    bounded range of (task_id, status, start_time, run_id) per task, in one statement."""
    runs = t.task_runs
    ended = func.coalesce(runs.c.end_time, runs.c.last_update, type_=runs.c.end_time.type)
    arms = []
    for i in range(tasks):
        task_id = bindparam(f"x_task_{i}", type_=runs.c.task_id.type)
        arm = (
            select(runs.c.task_id, runs.c.start_time, ended.label("ended"))
            .where(runs.c.task_id == task_id, runs.c.status == _COMPLETED)
            .order_by(*_newest_first(runs))
            .limit(per_task)
            .subquery(f"recent_{i}")
        )
        arms.append(select(arm))
    if len(arms) == 1:
        return arms[0]
    return union_all(*arms)
