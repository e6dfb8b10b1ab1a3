"""The queries: task status, active runs, history, one run, its subtasks, tasks and stages,
read into tasker.models records. Their statements are built in :mod:`tasker.store.selects`
(where each one's index is explained)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, select

from tasker.models import (
    STATUS_VALUES,
    RunRecord,
    StageRecord,
    Status,
    SubtaskRecord,
    TaskRecord,
    TaskStatusRecord,
)
from tasker.store.core import StoreCore
from tasker.store.schema import record_columns
from tasker.store.selects import (
    active_runs_select,
    current_subtasks_select,
    history_select,
    last_successes_select,
    ordered,
    prefix_bounds,
    recent_completed_select,
    run_counts_select,
    run_ids_in_range_select,
    run_ids_like_select,
    run_select_by_id,
    subtasks_select,
    task_ids_select,
    task_status_select,
)

__all__ = ["Reads"]

# Tasks whose recent runs one statement reads (recent_durations): one UNION ALL arm each.
_TASKS_PER_STATEMENT = 100


class Reads(StoreCore):
    """Reads of tasker's tables, as tasker.models records."""

    def task_status(
        self,
        stage: str | None = None,
        task: str | None = None,
        status: Sequence[str] | None = None,
        *,
        search: str | None = None,
        contains: bool = False,
    ) -> list[TaskStatusRecord]:
        """``stage``, ``task``, ``search`` and ``contains``: see selects.task_ids_select."""
        stmt, params = task_status_select(
            self.t, stage=stage, task=task, status=status, search=search, contains=contains
        )
        rows = self._run(
            "reading task status", lambda c: c.execute(stmt, params).all(), write=False
        )
        return [_task_status_record(r) for r in rows]

    def active_runs(self) -> list[RunRecord]:
        stmt = active_runs_select(self.t)
        rows = self._run("reading active runs", lambda c: c.execute(stmt).all(), write=False)
        return [_run_record(r) for r in rows]

    def history(
        self,
        *,
        stage: str | None = None,
        task: str | None = None,
        status: Sequence[str] | None = None,
        hostname: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        offset: int = 0,
        search: str | None = None,
        contains: bool = False,
    ) -> list[RunRecord]:
        """Runs newest first; ``stage``, ``task``, ``search`` and ``contains``: see
        selects.task_ids_select."""

        def read(conn: Connection) -> list[Any]:
            task_ids = None
            if stage is not None or task is not None or search is not None:
                # The name filters as task ids, matched in the small tasks and stages tables,
                # so that the runs are read from an index of task_runs alone
                # (tasker.store.selects.history_select).
                found = task_ids_select(
                    self.t, stage=stage, task=task, search=search, contains=contains
                )
                task_ids = list(conn.execute(found).scalars())
                if not task_ids:
                    return []
            stmt, params = history_select(
                self.t,
                task_ids=task_ids,
                status=status,
                hostname=hostname,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
            )
            return list(conn.execute(stmt, params).all())

        rows = self._run("reading run history", read, write=False)
        return [_run_record(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        stmt = run_select_by_id(self.t)

        def read(conn: Connection) -> RunRecord:
            row = conn.execute(stmt, {"x_run_id": run_id}).first()
            if row is None:
                raise self._missing_run(conn, run_id)
            return _run_record(row)

        return self._run("reading a run", read, write=False)

    def run_counts(self) -> dict[str, int]:
        """How many runs there are of each status (the statuses that have runs)."""
        stmt = run_counts_select(self.t)
        row = self._run("counting runs", lambda c: c.execute(stmt).one(), write=False)
        return {status: int(n) for status, n in zip(STATUS_VALUES, row, strict=True) if n}

    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Run ids starting with ``prefix`` (at most ``limit``), in order."""
        # SQLite's LIKE ignores the case of ASCII letters; the others' compare exactly.
        bounds = prefix_bounds(prefix.lower() if self.dialect == "sqlite" else prefix)
        if bounds is not None:
            stmt = run_ids_in_range_select(self.t, limit)
            params = {"x_low": bounds[0], "x_high": bounds[1]}
        else:  # no canonical id starts so (tasker validates what it finds): every id read
            stmt = run_ids_like_select(self.t, limit)
            params = {"x_prefix": prefix + "%"}
        rows = self._run(
            "finding a run", lambda c: c.execute(stmt, params).scalars().all(), write=False
        )
        return [str(r) for r in rows]

    def subtasks(self, run_id: str) -> list[SubtaskRecord]:
        stmt = subtasks_select(self.t)

        def read(conn: Connection) -> list[SubtaskRecord]:
            rows = conn.execute(stmt, {"x_run_id": run_id}).all()
            if not rows and not self._run_exists(conn, run_id):
                raise self._missing_run(conn, run_id)
            return [_subtask_record(r) for r in rows]

        return self._run("reading subtasks", read, write=False)

    def current_subtasks(self, run_ids: Sequence[str]) -> dict[str, SubtaskRecord]:
        """Each run's current subtask (the one its ``current_subtask`` names), by run id;
        runs without one are left out. Read in chunks, so any number of runs may be asked."""
        found: dict[str, SubtaskRecord] = {}
        wanted = list(dict.fromkeys(run_ids))
        stmt = current_subtasks_select(self.t)
        for start in range(0, len(wanted), 500):
            chunk = {"x_run_ids": wanted[start : start + 500]}

            def read(conn: Connection, given: Any = chunk) -> list[Any]:
                return list(conn.execute(stmt, given).all())

            rows = self._run("reading current subtasks", read, write=False)
            found.update((r.run_id, _subtask_record(r)) for r in rows)
        return found

    def last_successes(self) -> list[RunRecord]:
        """Each task's latest COMPLETED run (by start time), newest first."""
        stmt = last_successes_select(self.t)
        rows = self._run("reading the last successes", lambda c: c.execute(stmt).all(), write=False)
        return [_run_record(r) for r in rows]

    def recent_durations(self, task_ids: Sequence[int], per_task: int) -> dict[int, list[float]]:
        """The durations in seconds of each of ``task_ids``' latest ``per_task`` COMPLETED
        runs, newest first, by task id (tasks without one are left out)."""
        wanted = list(dict.fromkeys(task_ids))
        found: dict[int, list[float]] = {}
        for start in range(0, len(wanted), _TASKS_PER_STATEMENT):
            chunk = wanted[start : start + _TASKS_PER_STATEMENT]
            stmt = recent_completed_select(self.t, len(chunk), per_task)
            params = {f"x_task_{i}": task_id for i, task_id in enumerate(chunk)}

            def read(conn: Connection, query: Any = stmt, given: Any = params) -> list[Any]:
                return list(conn.execute(query, given).all())

            for task_id, started, ended in self._run("reading recent durations", read, write=False):
                if started is not None and ended is not None:
                    found.setdefault(int(task_id), []).append((ended - started).total_seconds())
        return found

    def tasks(self, stage: str | None = None) -> list[TaskRecord]:
        st, tk = self.t.stages, self.t.tasks
        columns = record_columns(
            TaskRecord, {**{c.name: c for c in st.c}, **{c.name: c for c in tk.c}}
        )
        stmt = select(*columns).select_from(tk.join(st, st.c.stage_id == tk.c.stage_id))
        if stage is not None:
            stmt = stmt.where(st.c.stage_name == stage)
        stmt = stmt.order_by(
            ordered(st.c.stage_order),
            st.c.stage_order,
            st.c.stage_name,
            ordered(tk.c.task_order),
            tk.c.task_order,
            tk.c.task_name,
        )
        rows = self._run("reading tasks", lambda c: c.execute(stmt).all(), write=False)
        return [_task_record(r) for r in rows]

    def stages(self) -> list[StageRecord]:
        st = self.t.stages
        stmt = select(*record_columns(StageRecord, {c.name: c for c in st.c})).order_by(
            ordered(st.c.stage_order), st.c.stage_order, st.c.stage_name
        )
        rows = self._run("reading stages", lambda c: c.execute(stmt).all(), write=False)
        return [_stage_record(r) for r in rows]

    def find_task_by_script(self, script_filename: str) -> list[TaskRecord]:
        return [t for t in self.tasks() if t.script_filename == script_filename]


_STATUSES = {s.value: s for s in Status}


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _status_or_none(value: Any) -> Status | None:
    return None if value is None else _STATUSES[value]


R = TypeVar("R")


def _converter(record: type[R], **fixups: Callable[[Any], Any]) -> Callable[[Sequence[Any]], R]:
    """Row → record by position (queries select the record's fields in its field order, see
    ``tasker.store.schema.record_columns``).

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which
    costs more than the query itself for a thousand 28-field rows; the records are slotted,
    so this sets the slots directly, in a function generated once per record type.
    """
    names = [f.name for f in dataclasses.fields(record)]  # type: ignore[arg-type]
    env: dict[str, Any] = {"new": object.__new__, "R": record}
    lines = ["def convert(row):", "    o = new(R)"]
    for i, name in enumerate(names):
        env[f"set_{i}"] = getattr(record, name).__set__
        value = f"row[{i}]"
        if name in fixups:
            env[f"fix_{i}"] = fixups[name]
            value = f"fix_{i}({value})"
        lines.append(f"    set_{i}(o, {value})")
    lines.append("    return o")
    exec("\n".join(lines), env)
    convert: Callable[[Sequence[Any]], R] = env["convert"]
    return convert


_task_status_record = _converter(
    TaskStatusRecord,
    status=_STATUSES.__getitem__,
    subtask_status=_status_or_none,
    run_id=_str_or_none,
)
_run_record = _converter(
    RunRecord,
    status=_STATUSES.__getitem__,
    run_id=str,
    parent_run_id=_str_or_none,
    git_dirty=_bool_or_none,
)
_subtask_record = _converter(SubtaskRecord, status=_STATUSES.__getitem__, run_id=str)
_task_record = _converter(TaskRecord)
_stage_record = _converter(StageRecord)
