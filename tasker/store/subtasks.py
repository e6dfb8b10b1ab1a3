"""Subtasks: their start (numbered by the store when no number is given), updates, atomic
increments by many writers, and the run's percent rolled up from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, select, update

from tasker.errors import DatabaseError, RunEndedError, TaskerError, UnknownSubtaskError
from tasker.models import Status
from tasker.store.core import StoreCore

__all__ = ["SubtaskWrites"]

_TERMINAL = ("COMPLETED", "FAILED", "SKIPPED", "CANCELLED")


class SubtaskWrites(StoreCore):
    """Writes of subtask_progress."""

    def _current_subtask(self, conn: Connection, run_id: str) -> int:
        runs = self.t.task_runs
        row = conn.execute(select(runs.c.current_subtask).where(runs.c.run_id == run_id)).first()
        if row is None:
            raise self._missing_run(conn, run_id)
        if row.current_subtask is None:
            raise UnknownSubtaskError(
                f"run {run_id} has no subtask yet: call subtask_start() first, or pass "
                "subtask_number"
            )
        return int(row.current_subtask)

    def _missing_subtask(self, conn: Connection, run_id: str, number: int) -> TaskerError:
        if not self._run_exists(conn, run_id):
            return self._missing_run(conn, run_id)
        sp = self.t.subtask_progress
        numbers = (
            conn.execute(
                select(sp.c.subtask_number)
                .where(sp.c.run_id == run_id)
                .order_by(sp.c.subtask_number)
            )
            .scalars()
            .all()
        )
        have = ", ".join(str(n) for n in numbers) or "none yet"
        return UnknownSubtaskError(f"run {run_id} has no subtask {number}: its subtasks are {have}")

    def start_subtask(
        self,
        run_id: str,
        number: int | None,
        name: str | None,
        items_total: int | None,
        message: str | None,
        now: datetime,
    ) -> int:
        """Start subtask ``number`` (the next free one when None); return its number.

        Restarting an existing number resets it. The run becomes RUNNING.
        """
        runs, sp = self.t.task_runs, self.t.subtask_progress

        def apply(conn: Connection) -> int:
            # Touching the run first both checks it exists and, on PostgreSQL and MySQL,
            # locks its row, so concurrent auto-numbering of one run is serialised.
            # A run that has ended takes no new subtask (a reaped one does: its process lives).
            touched = self._update(
                conn,
                runs,
                [("run_id", run_id), self._x.run_endable],
                [("status", self._x.run_running), ("last_update", now)],
            )
            if touched == 0:
                raise self._ended_or_missing(conn, run_id, "starting a subtask in it")
            n = number
            if n is None:
                n = (
                    int(
                        conn.execute(
                            select(func.coalesce(func.max(sp.c.subtask_number), 0)).where(
                                sp.c.run_id == run_id
                            )
                        ).scalar_one()
                    )
                    + 1
                )
            fields = {
                "subtask_name": name,
                "status": Status.STARTED.value,
                "start_time": now,
                "end_time": None,
                "last_update": now,
                "items_total": items_total,
                "items_complete": 0,
                "percent_complete": 0.0,
                "progress_message": message,
                "error_message": None,
            }
            # A restart of an existing number resets it; a new number is inserted.
            restarted = self._update(
                conn, sp, [("run_id", run_id), ("subtask_number", n)], list(fields.items())
            )
            if restarted == 0:
                conn.execute(sp.insert(), {"run_id": run_id, "subtask_number": n, **fields})
            self._update(conn, runs, [("run_id", run_id)], [("current_subtask", n)])
            return n

        try:
            return self._run("starting a subtask", apply)
        except DatabaseError as exc:
            # Two writers numbered the same new subtask at once (SQLite and MySQL can let
            # that through): number again.
            reason = str(exc).lower()
            if number is None and ("unique" in reason or "duplicate" in reason):
                return self._run("starting a subtask", apply)
            raise

    def update_subtask(
        self,
        run_id: str,
        number: int | None,
        values: dict[str, Any],
        now: datetime,
        *,
        items_complete: int | None = None,
        reend: bool = False,
    ) -> int:
        """Set fields of a subtask (the run's current one when ``number`` is None).

        A subtask that has ended stays ended: ending it again, or giving it a status again,
        is refused (RunEndedError), unless ``reend`` (the automatic layer correcting a loop's
        status)."""
        runs, sp = self.t.task_runs, self.t.subtask_progress
        ending = "status" in values and not reend

        def apply(conn: Connection) -> int:
            n = number if number is not None else self._current_subtask(conn, run_id)
            fields: dict[str, Any] = {"last_update": now, **values}
            if "status" not in fields:
                fields["status"] = self._x.sub_running
            elif "error_message" not in fields:
                # Ended by its process after the reaper ended it with its run: not lost.
                fields["error_message"] = self._x.sub_unlost
            params: dict[str, Any] = {}
            if items_complete is not None:
                if "percent_complete" not in fields:
                    fields["percent_complete"] = self._x.pct_items
                    params["x_items"] = items_complete
                fields["items_complete"] = items_complete  # after the percent: MySQL order
            where: list[Any] = [("run_id", run_id), ("subtask_number", n)]
            if ending:
                where.append(self._x.sub_open_or_reaped)
            matched = self._update(conn, sp, where, list(fields.items()), params)
            if matched == 0:
                raise self._ended_subtask_or_missing(conn, run_id, n, ending, values)
            self._update(
                conn,
                runs,
                [("run_id", run_id)],
                [("status", self._x.run_running), ("last_update", now)],
            )
            if fields.get("status") in _TERMINAL:
                self._roll_up_percent(conn, run_id)
            return n

        return self._run("updating a subtask", apply)

    def _ended_subtask_or_missing(
        self, conn: Connection, run_id: str, n: int, ending: bool, values: dict[str, Any]
    ) -> TaskerError:
        sp = self.t.subtask_progress
        if ending:
            row = conn.execute(
                select(sp.c.status).where(sp.c.run_id == run_id, sp.c.subtask_number == n)
            ).first()
            if row is not None:
                again = "ending it again" if values["status"] in _TERMINAL else "updating it"
                return RunEndedError(
                    f"subtask {n} of run {run_id} already ended {row.status}; {again} "
                    f"as {values['status']} is refused (the first ending is kept)"
                )
        return self._missing_subtask(conn, run_id, n)

    def increment_subtask(self, run_id: str, number: int | None, by: int, now: datetime) -> int:
        """Add ``by`` items to a subtask atomically (safe with many concurrent writers)."""
        runs, sp = self.t.task_runs, self.t.subtask_progress

        def apply(conn: Connection) -> int:
            n = number if number is not None else self._current_subtask(conn, run_id)
            # MySQL evaluates SET assignments left to right, each seeing the ones before:
            # everything that reads items_complete must come before it is assigned.
            matched = self._update(
                conn,
                sp,
                [("run_id", run_id), ("subtask_number", n)],
                [
                    ("percent_complete", self._x.pct_new_count),
                    ("status", self._x.sub_running),
                    ("last_update", now),
                    ("items_complete", self._x.new_count),
                ],
                {"x_by": by},
            )
            if matched == 0:
                raise self._missing_subtask(conn, run_id, n)
            self._update(
                conn,
                runs,
                [("run_id", run_id), self._x.run_is_started],
                [("status", Status.RUNNING.value), ("last_update", now)],
            )
            return n

        return self._run("incrementing a subtask", apply)

    def _roll_up_percent(self, conn: Connection, run_id: str) -> None:
        """With total_subtasks known, the run's percent is the share of subtasks ended."""
        runs, sp = self.t.task_runs, self.t.subtask_progress
        ended = (
            select(func.count())
            .select_from(sp)
            .where(sp.c.run_id == run_id, sp.c.status.in_(_TERMINAL))
            .scalar_subquery()
        )
        share = ended * 100.0 / runs.c.total_subtasks
        conn.execute(
            update(runs)
            .where(runs.c.run_id == run_id, runs.c.total_subtasks > 0)
            .values(overall_percent_complete=case((share > 100.0, 100.0), else_=share))
        )
