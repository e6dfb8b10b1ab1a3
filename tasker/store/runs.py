"""Runs: their start, updates, end, heartbeats and end by the reaper, one by one (runs
written whole, many at once: :mod:`tasker.store.batched`); each task's latest run; bulk
inserts and purges."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select, update

from tasker.errors import DatabaseError
from tasker.models import NewRun, Status
from tasker.store.expressions import LOST_SUBTASK, RUN_ERRORS
from tasker.store.schema import ACTIVE_STATUS_VALUES
from tasker.store.tasks import TaskRegistration

__all__ = ["RunWrites"]


class RunWrites(TaskRegistration):
    """Writes of task_runs (and of the subtasks that end with their run)."""

    def insert_runs(self, rows: Sequence[dict[str, Any]], chunk: int = 5000) -> None:
        """Bulk-insert complete run rows (imports, benchmarks); one transaction per chunk.
        Call :meth:`refresh_latest_runs` afterwards."""
        for start in range(0, len(rows), chunk):
            part = list(rows[start : start + chunk])

            def insert(conn: Connection, part: list[dict[str, Any]] = part) -> None:
                conn.execute(self.t.task_runs.insert(), part)

            self._run("inserting runs", insert)

    _RUN_FIELDS = (
        "parent_run_id",
        "hostname",
        "process_id",
        "parent_pid",
        "process_start_time",
        "boot_id",
        "pid_namespace",
        "process_start_uptime",
        "user_name",
        "python_version",
        "command_line",
        "script_path",
        "script_filename",
        "log_path",
        "log_filename",
        "version",
        "git_commit",
        "git_branch",
        "git_dirty",
        "environment",
        "start_time",
        "total_subtasks",
        "overall_progress_message",
    )

    _run_fields = operator.attrgetter(*_RUN_FIELDS)

    @classmethod
    def _start_values(cls, run: NewRun) -> dict[str, Any]:
        values = dict(zip(cls._RUN_FIELDS, cls._run_fields(run), strict=True))
        values["run_id"] = run.run_id
        values["status"] = run.status.value
        values["last_update"] = values["heartbeat"] = run.start_time
        return values

    def _point_to_latest(
        self, conn: Connection, task_id: int, run_id: str, start_time: datetime
    ) -> None:
        """Make ``run_id`` its task's latest run unless a later-started one already is."""
        self._update(
            conn,
            self.t.tasks,
            [("task_id", task_id), self._x.not_later],
            [("last_run_id", run_id), ("last_start_time", start_time)],
            {"x_start": start_time},
        )

    def refresh_latest_runs(self) -> None:
        """Recompute every task's latest run from the runs themselves (after bulk imports,
        purges, or runs written by other tools)."""
        tasks, runs = self.t.tasks, self.t.task_runs
        inner = runs.alias("latest_run")
        latest = (
            select(inner.c.run_id)
            .where(inner.c.task_id == tasks.c.task_id)
            .order_by(inner.c.start_time.desc(), inner.c.run_id.desc())
            .limit(1)
            .scalar_subquery()
        )
        newest = (
            select(func.max(inner.c.start_time))
            .where(inner.c.task_id == tasks.c.task_id)
            .scalar_subquery()
        )

        def apply(conn: Connection) -> None:
            conn.execute(update(tasks).values(last_run_id=latest, last_start_time=newest))

        self._run("finding the latest runs", apply)

    def start_run(self, run: NewRun) -> None:
        """Insert a run, registering its stage and task on the fly when they are new."""
        key = (run.stage, run.task)
        values = self._start_values(run)

        def insert(conn: Connection) -> None:
            task_id = self._task_id_for(conn, run)
            conn.execute(self.t.task_runs.insert(), {"task_id": task_id, **values})
            self._point_to_latest(conn, task_id, run.run_id, run.start_time)

        try:
            self._run("recording the start of a run", insert)
        except DatabaseError:
            if key not in self._task_ids or getattr(self._local, "conn", None) is not None:
                raise
            # The cached task may have been purged meanwhile: look it up again.
            self._task_ids.pop(key, None)
            self._run("recording the start of a run", insert)

    def update_run(self, run_id: str, values: dict[str, Any], now: datetime) -> None:
        """Set fields of a run (status, percent, message, …)."""
        runs = self.t.task_runs

        def apply(conn: Connection) -> None:
            sets: list[tuple[str, Any]] = []
            where: list[Any] = [("run_id", run_id)]
            if "status" in values:
                # A new status from the run's process: it lives, whatever the reaper said.
                sets += self._unlost(values, ("end_time", *RUN_ERRORS))
                # An ended run stays ended: no status brings it back (the reaper's end is
                # not one: the process that reports was alive after all).
                where.append(self._x.run_endable)
            sets += [("last_update", now), *values.items()]
            if self._update(conn, runs, where, sets) == 0:
                raise self._ended_or_missing(conn, run_id, f"updating it as {values['status']}")

        self._run("updating a run", apply)

    def _unlost(self, given: dict[str, Any], names: Sequence[str]) -> list[tuple[str, Any]]:
        """SET entries clearing what the reaper wrote in ``names`` (kept on a run it did not
        end), for the fields that ``given`` does not set itself."""
        return [(name, self._x.unlost[name]) for name in names if name not in given]

    def end_run(
        self,
        run_id: str,
        status: Status,
        values: dict[str, Any],
        now: datetime,
        subtask_message: str | None = None,
    ) -> None:
        """End a run with ``status``; its unfinished subtasks end the same way."""
        runs, sp = self.t.task_runs, self.t.subtask_progress

        def apply(conn: Connection) -> None:
            final = dict(values)
            final.setdefault("end_time", now)
            if status is Status.COMPLETED:
                final.setdefault("overall_percent_complete", 100.0)
            sets = [
                # A run the reaper ended that ends now after all: the real end wins, with
                # none of the reaper's error left (never COMPLETED with ProcessLost).
                *self._unlost(final, RUN_ERRORS),
                ("status", status.value),
                ("last_update", now),
                ("heartbeat", now),
                *final.items(),
            ]
            if self._update(conn, runs, [("run_id", run_id), self._x.run_endable], sets) == 0:
                raise self._ended_or_missing(conn, run_id, f"ending it again as {status.value}")
            sub_values: list[tuple[str, Any]] = [
                ("status", status.value),
                ("end_time", now),
                ("last_update", now),
            ]
            if status is Status.COMPLETED:
                sub_values.append(("percent_complete", 100.0))
            if status is not Status.COMPLETED and subtask_message is not None:
                sub_values.append(("error_message", subtask_message))
            else:
                sub_values.append(("error_message", self._x.sub_unlost))
            # Open subtasks end with the run, and so do those the reaper ended with it.
            self._update(conn, sp, [("run_id", run_id), self._x.sub_open_or_reaped], sub_values)

        self._run("recording the end of a run", apply)

    def purge_runs(self, ended_before: datetime, *, dry_run: bool = False) -> int:
        """Delete runs that ended before ``ended_before`` (never an active one), with their
        subtasks; returns how many. Tasks' latest-run pointers are recomputed."""
        runs, sp = self.t.task_runs, self.t.subtask_progress
        old = and_(
            runs.c.end_time.is_not(None),
            runs.c.end_time < bindparam("x_before", type_=runs.c.end_time.type),
            runs.c.status.not_in(ACTIVE_STATUS_VALUES),
        )
        params = {"x_before": ended_before}

        def count(conn: Connection) -> int:
            return int(
                conn.execute(select(func.count()).select_from(runs).where(old), params).scalar_one()
            )

        if dry_run:
            return self._run("counting old runs", count, write=False)

        def purge(conn: Connection) -> int:
            doomed = select(runs.c.run_id).where(old)
            if self.dialect == "mysql":  # MySQL cannot read the table it deletes from
                doomed = select(doomed.subquery().c.run_id)
            conn.execute(sp.delete().where(sp.c.run_id.in_(doomed)), params)
            return int(conn.execute(runs.delete().where(old), params).rowcount)

        removed = self._run("deleting old runs", purge)
        if removed:
            self.refresh_latest_runs()
        return removed

    def heartbeat(self, run_ids: Sequence[str], now: datetime) -> None:
        """Mark active runs ``run_ids`` as alive at ``now``."""
        runs = self.t.task_runs
        stmt = self._stmts.get("heartbeat")
        if stmt is None:
            stmt = (
                update(runs)
                .where(
                    runs.c.run_id.in_(bindparam("x_ids", expanding=True)),
                    runs.c.status.in_(ACTIVE_STATUS_VALUES),
                )
                .values(heartbeat=bindparam("x_now", type_=runs.c.heartbeat.type))
            )
            self._stmts["heartbeat"] = stmt

        def apply(conn: Connection) -> None:
            conn.execute(stmt, {"x_ids": list(run_ids), "x_now": now})

        self._run("recording a heartbeat", apply)

    def mark_lost(self, run_id: str, values: dict[str, Any], now: datetime) -> bool:
        """End an active run FAILED because its process is gone; False when it was no longer
        active (it ended meanwhile, or another reaper got there first)."""
        runs, sp = self.t.task_runs, self.t.subtask_progress

        def apply(conn: Connection) -> bool:
            sets = [("status", Status.FAILED.value), ("last_update", now), *values.items()]
            matched = self._update(conn, runs, [("run_id", run_id), self._x.run_active], sets)
            if matched == 0:
                return False
            self._update(
                conn,
                sp,
                [("run_id", run_id), self._x.sub_open],
                [
                    ("status", Status.FAILED.value),
                    ("end_time", values.get("end_time", now)),
                    ("last_update", now),
                    ("error_message", LOST_SUBTASK),
                ],
            )
            return True

        return self._run("ending a lost run", apply)
