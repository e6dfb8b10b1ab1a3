"""The queries: task status, active runs, history, one run, its subtasks, tasks and stages,
read into tasker.models records."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, String, and_, bindparam, case, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from tasker.models import (
    RunRecord,
    StageRecord,
    Status,
    SubtaskRecord,
    TaskRecord,
    TaskStatusRecord,
)
from tasker.store.core import StoreCore
from tasker.store.schema import (
    active_tasks_select,
    current_task_status_select,
    record_columns,
    run_select,
)

__all__ = ["Reads"]


def _ordered(col: Any) -> Any:
    """NULLs last on every backend (MySQL has no NULLS LAST)."""
    return case((col.is_(None), 1), else_=0)


class Reads(StoreCore):
    """Reads of tasker's tables, as tasker.models records."""

    def task_status(
        self,
        stage: str | None = None,
        task: str | None = None,
        status: Sequence[str] | None = None,
    ) -> list[TaskStatusRecord]:
        view = current_task_status_select(self.t).subquery("current_task_status")
        stmt = select(view)
        if stage is not None:
            stmt = stmt.where(view.c.stage_name == stage)
        if task is not None:
            stmt = stmt.where(view.c.task_name == task)
        if status:
            stmt = stmt.where(view.c.status.in_(list(status)))
        stmt = stmt.order_by(
            _ordered(view.c.stage_order),
            view.c.stage_order,
            view.c.stage_name,
            _ordered(view.c.task_order),
            view.c.task_order,
            view.c.task_name,
        )
        rows = self._run("reading task status", lambda c: c.execute(stmt).all(), write=False)
        return [_task_status_record(r) for r in rows]

    def active_runs(self) -> list[RunRecord]:
        sel = active_tasks_select(self.t).subquery("active_tasks")
        stmt = select(sel).order_by(
            _ordered(sel.c.stage_order),
            sel.c.stage_order,
            _ordered(sel.c.task_order),
            sel.c.task_order,
            sel.c.start_time,
        )
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
    ) -> list[RunRecord]:
        runs = self.t.task_runs
        stmt = run_select(self.t)
        conds: list[ColumnElement[bool]] = []
        if stage is not None:
            conds.append(self.t.stages.c.stage_name == stage)
        if task is not None:
            conds.append(self.t.tasks.c.task_name == task)
        if status:
            conds.append(runs.c.status.in_(list(status)))
        if hostname is not None:
            conds.append(runs.c.hostname == hostname)
        if since is not None:
            conds.append(runs.c.start_time >= since)
        if until is not None:
            conds.append(runs.c.start_time < until)
        if conds:
            stmt = stmt.where(*conds)
        stmt = stmt.order_by(runs.c.start_time.desc(), runs.c.run_id.desc()).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = self._run("reading run history", lambda c: c.execute(stmt).all(), write=False)
        return [_run_record(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        stmt = run_select(self.t).where(self.t.task_runs.c.run_id == run_id)

        def read(conn: Connection) -> RunRecord:
            row = conn.execute(stmt).first()
            if row is None:
                raise self._missing_run(conn, run_id)
            return _run_record(row)

        return self._run("reading a run", read, write=False)

    def run_counts(self) -> dict[str, int]:
        """How many runs there are of each status."""
        runs = self.t.task_runs
        stmt = select(runs.c.status, func.count()).group_by(runs.c.status)
        rows = self._run("counting runs", lambda c: c.execute(stmt).all(), write=False)
        return {str(status): int(n) for status, n in rows}

    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Run ids starting with ``prefix`` (at most ``limit``)."""
        runs = self.t.task_runs
        stmt = (
            select(runs.c.run_id)
            .where(cast(runs.c.run_id, String(36)).like(bindparam("x_prefix")))
            .order_by(runs.c.run_id)
            .limit(limit)
        )
        rows = self._run(
            "finding a run",
            lambda c: c.execute(stmt, {"x_prefix": prefix + "%"}).scalars().all(),
            write=False,
        )
        return [str(r) for r in rows]

    def subtasks(self, run_id: str) -> list[SubtaskRecord]:
        sp = self.t.subtask_progress
        stmt = (
            select(*record_columns(SubtaskRecord, {c.name: c for c in sp.c}))
            .where(sp.c.run_id == run_id)
            .order_by(sp.c.subtask_number)
        )

        def read(conn: Connection) -> list[SubtaskRecord]:
            rows = conn.execute(stmt).all()
            if not rows and not self._run_exists(conn, run_id):
                raise self._missing_run(conn, run_id)
            return [_subtask_record(r) for r in rows]

        return self._run("reading subtasks", read, write=False)

    def current_subtasks(self, run_ids: Sequence[str]) -> dict[str, SubtaskRecord]:
        """Each run's current subtask (the one its ``current_subtask`` names), by run id;
        runs without one are left out. Read in chunks, so any number of runs may be asked."""
        runs, sp = self.t.task_runs, self.t.subtask_progress
        columns = record_columns(SubtaskRecord, {c.name: c for c in sp.c})
        found: dict[str, SubtaskRecord] = {}
        wanted = list(dict.fromkeys(run_ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            stmt = (
                select(*columns)
                .select_from(
                    sp.join(
                        runs,
                        and_(
                            runs.c.run_id == sp.c.run_id,
                            runs.c.current_subtask == sp.c.subtask_number,
                        ),
                    )
                )
                .where(sp.c.run_id.in_(chunk))
            )

            def read(conn: Connection, query: Any = stmt) -> list[Any]:
                return list(conn.execute(query).all())

            rows = self._run("reading current subtasks", read, write=False)
            found.update((r.run_id, _subtask_record(r)) for r in rows)
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
            _ordered(st.c.stage_order),
            st.c.stage_order,
            st.c.stage_name,
            _ordered(tk.c.task_order),
            tk.c.task_order,
            tk.c.task_name,
        )
        rows = self._run("reading tasks", lambda c: c.execute(stmt).all(), write=False)
        return [_task_record(r) for r in rows]

    def stages(self) -> list[StageRecord]:
        st = self.t.stages
        stmt = select(*record_columns(StageRecord, {c.name: c for c in st.c})).order_by(
            _ordered(st.c.stage_order), st.c.stage_order, st.c.stage_name
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
