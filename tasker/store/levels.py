"""The calls of runs already in the database, written level by level with multi-row
statements.

Calls about different runs touch different rows, so only the order of one run's calls
matters. The batch's runs that are in the database already are written level by level: the
first call of every such run, then the second, and so on; a level is one multi-row statement
per table and shape of call (:mod:`tasker.store.multirow`), whatever the number of runs, and
each means for each of its rows exactly what the one-row statements of
:mod:`tasker.store.runs` and :mod:`tasker.store.subtasks` mean: the same expressions, in the
same order, the same conditions. Consecutive counts into one subtask are added up first (and
stay an atomic increment: many processes may count into one subtask).

Where a one-row statement raises because it matched no row (a run or subtask that is not
there, an ending refused, a status or a new subtask for an ended run, a status for an ended
subtask: an ended run or subtask stays ended), its multi-row statement
matches fewer rows than it was given, and fails the batch (:class:`Mismatch`): the writer then
writes the batch event by event, which finds which event it was and deals with it
(``tasker.runtime.delivery``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Connection, case, func, literal, select

from tasker.errors import TaskerError
from tasker.models import Status
from tasker.store.calls import StoreCall
from tasker.store.expressions import RUN_ERRORS, percent_of
from tasker.store.folding import TERMINAL
from tasker.store.multirow import MultiRowWrites

__all__ = ["LevelWrites", "Mismatch", "StoreCall"]

# One run's call at one level: (shape, row of values, whether the run's percent rolls up).
Op = tuple[Any, tuple[Any, ...], bool]
_TERMINAL = tuple(TERMINAL)
# Columns a call's values may not set: the statements set them themselves.
_SUB_OWN = frozenset(("progress_id", "run_id", "subtask_number", "last_update"))
_RUN_OWN = frozenset(("run_id", "task_id", "last_update"))
_END_OWN = _RUN_OWN | {"status", "heartbeat"}


class Mismatch(TaskerError):
    """A multi-row statement matched fewer rows than it was given: some run or subtask of the
    batch is not in the database, or has ended. The writer writes the batch event by event,
    which finds out which and deals with it."""


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Status) else value


def _is_text(value: Any) -> bool:
    return type(value) is str or isinstance(value, Status)


class LevelWrites(MultiRowWrites):
    """The calls of runs already in the database, level by level (see the module)."""

    def _columns(self) -> tuple[frozenset[str], frozenset[str]]:
        """The column names of task_runs and subtask_progress."""
        names = self._stmts.get("column names")
        if names is None:
            names = (
                frozenset(c.name for c in self.t.task_runs.c),
                frozenset(c.name for c in self.t.subtask_progress.c),
            )
            self._stmts["column names"] = names
        return names

    def _level_ops(self, group: list[StoreCall]) -> list[Op] | None:
        """The run's calls as (shape, row of values, rolls up), or None when one of them is
        written one by one (then all of them are, in order)."""
        run_cols, sub_cols = self._columns()
        ops: list[Op] = []
        for name, args in group:
            if name == "increment_subtask":
                run_id, n, by, when = args
                if type(n) is not int or type(by) is not int:
                    return None
                last = ops[-1] if ops else None
                if last is not None and last[0] == "inc" and last[1][1] == n:
                    # Counts add up; the run moved to RUNNING (if it did) at the first.
                    ops[-1] = ("inc", (run_id, n, last[1][2] + by, when, last[1][4]), False)
                else:
                    ops.append(("inc", (run_id, n, by, when, when), False))
            elif name == "update_subtask":
                run_id, n, values, when, items, reend = args
                if type(n) is not int or any(c not in sub_cols or c in _SUB_OWN for c in values):
                    return None
                if items is not None and (
                    type(items) is not int
                    # Set twice in one statement (PostgreSQL refuses it): one by one.
                    or "items_complete" in values
                    # MySQL reads the new total in the percent (left to right), a multi-row
                    # UPDATE in no guaranteed order: one by one.
                    or (self.dialect == "mysql" and "items_total" in values)
                ):
                    return None
                status = values.get("status")
                if status is not None and not _is_text(status):
                    return None
                terminal = status in _TERMINAL
                # Any status, not only an ending, is refused on an ended subtask (unless
                # reend), as update_subtask refuses it: the first ending is kept.
                ending = "status" in values and not reend
                shape = ("sub", tuple(values), items is not None, ending)
                row = (run_id, n, when, *map(_plain, values.values()))
                ops.append((shape, (*row, items) if items is not None else row, terminal))
            elif name == "start_subtask":
                run_id, n, sub_name, total, message, when = args
                if type(n) is not int:
                    return None  # numbered by the database
                ops.append(("start", (run_id, n, sub_name, total, message, when), False))
            elif name == "update_run":
                run_id, values, when = args
                if any(c not in run_cols or c in _RUN_OWN for c in values):
                    return None
                ops.append(
                    (("run", tuple(values)), (run_id, when, *map(_plain, values.values())), False)
                )
            elif name == "end_run":
                run_id, status, values, when, message = args
                if not isinstance(status, Status) or any(
                    c not in run_cols or c in _END_OWN for c in values
                ):
                    return None
                final = dict(values)
                final.setdefault("end_time", when)
                completed = status is Status.COMPLETED
                if completed:
                    final.setdefault("overall_percent_complete", 100.0)
                with_message = not completed and message is not None
                row = (run_id, status.value, when, *map(_plain, final.values()))
                shape = ("end", tuple(final), completed, with_message)
                ops.append((shape, (*row, message) if with_message else row, False))
            else:  # a start that is not the run's first call here: one by one, as it fails
                return None
        return ops

    def _write_levels(self, conn: Connection, runs: list[list[Op]]) -> None:
        level = 0
        while runs:
            groups: dict[Any, tuple[list[tuple[Any, ...]], list[str]]] = {}
            for ops in runs:
                shape, row, rolls_up = ops[level]
                rows, roll_ups = groups.setdefault(shape, ([], []))
                rows.append(row)
                if rolls_up:
                    roll_ups.append(row[0])
            for shape, (rows, roll_ups) in groups.items():
                kind = shape if isinstance(shape, str) else shape[0]
                if kind == "inc":
                    self._rows_increment(conn, rows)
                elif kind == "sub":
                    self._rows_update_subtask(conn, shape, rows, roll_ups)
                elif kind == "start":
                    self._rows_start_subtask(conn, rows)
                elif kind == "run":
                    self._rows_update_run(conn, shape, rows)
                else:
                    self._rows_end_run(conn, shape, rows)
            level += 1
            runs = [ops for ops in runs if len(ops) > level]

    def _check(self, matched: int, rows: Sequence[Any], what: str) -> None:
        if matched != len(rows):
            raise Mismatch(
                f"{what} matched {matched} of {len(rows)} rows: a run or subtask of the batch "
                "is not in the database or has ended"
            )

    def _rows_increment(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """``increment_subtask`` for each (run_id, number, by, when, when of the run)."""
        sp, x = self.t.subtask_progress, self._x

        def build(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            count = sp.c.items_complete + src["by"]
            return (
                [sp.c.run_id == src["run_id"], sp.c.subtask_number == src["n"]],
                [
                    # Every assignment reads the row as it was: items_complete comes last.
                    (sp.c.percent_complete, percent_of(count, sp)),
                    (sp.c.status, x.sub_running),
                    (sp.c.last_update, src["when"]),
                    (sp.c.items_complete, count),
                ],
            )

        source = [
            ("run_id", sp.c.run_id.type),
            ("n", sp.c.subtask_number.type),
            ("by", BigInteger()),
            ("when", sp.c.last_update.type),
            ("run_when", sp.c.last_update.type),
        ]
        matched = self._update_rows(conn, "inc", sp, source, build, rows)
        self._check(matched, rows, "counting into subtasks")
        self._rows_started_to_running(conn, [(r[0], r[4]) for r in rows])

    def _rows_started_to_running(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        runs, x = self.t.task_runs, self._x

        def build(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            return (
                [runs.c.run_id == src["run_id"], x.run_is_started],
                [
                    (runs.c.status, literal(Status.RUNNING.value, runs.c.status.type)),
                    (runs.c.last_update, src["when"]),
                ],
            )

        source = [("run_id", runs.c.run_id.type), ("when", runs.c.last_update.type)]
        self._update_rows(conn, "started to running", runs, source, build, rows)

    def _rows_touch(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        runs, x = self.t.task_runs, self._x

        def build(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            return (
                [runs.c.run_id == src["run_id"]],
                [(runs.c.status, x.run_running), (runs.c.last_update, src["when"])],
            )

        source = [("run_id", runs.c.run_id.type), ("when", runs.c.last_update.type)]
        self._update_rows(conn, "touch", runs, source, build, rows)

    def _rows_update_subtask(
        self, conn: Connection, shape: Any, rows: list[tuple[Any, ...]], roll_ups: list[str]
    ) -> None:
        """``update_subtask`` for each (run_id, number, when, *values[, items])."""
        _, keys, with_items, ending = shape
        sp, x = self.t.subtask_progress, self._x

        def build(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            where = [sp.c.run_id == src["run_id"], sp.c.subtask_number == src["n"]]
            if ending:
                where.append(x.sub_open_or_reaped)
            sets: list[tuple[Any, Any]] = [(sp.c.last_update, src["when"])]
            sets += [(sp.c[k], src[f"v_{k}"]) for k in keys]
            if "status" not in keys:
                sets.append((sp.c.status, x.sub_running))
            elif "error_message" not in keys:
                # Ended by its process after the reaper ended it with its run: not lost.
                sets.append((sp.c.error_message, x.sub_unlost))
            if with_items:
                if "percent_complete" not in keys:
                    sets.append((sp.c.percent_complete, percent_of(src["items"], sp)))
                sets.append((sp.c.items_complete, src["items"]))
            return where, sets

        source = [
            ("run_id", sp.c.run_id.type),
            ("n", sp.c.subtask_number.type),
            ("when", sp.c.last_update.type),
            *[(f"v_{k}", sp.c[k].type) for k in keys],
        ]
        if with_items:
            source.append(("items", BigInteger()))
        matched = self._update_rows(conn, shape, sp, source, build, rows)
        self._check(matched, rows, "updating subtasks")
        self._rows_touch(conn, [(r[0], r[2]) for r in rows])
        if roll_ups:
            self._rows_roll_up(conn, [(run_id,) for run_id in roll_ups])

    def _rows_roll_up(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """With total_subtasks known, each run's percent is the share of subtasks ended."""
        runs, sp = self.t.task_runs, self.t.subtask_progress

        def build(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            ended = (
                select(func.count())
                .select_from(sp)
                .where(sp.c.run_id == src["run_id"], sp.c.status.in_(_TERMINAL))
                .scalar_subquery()
            )
            share = ended * 100.0 / runs.c.total_subtasks
            return (
                [runs.c.run_id == src["run_id"], runs.c.total_subtasks > 0],
                [(runs.c.overall_percent_complete, case((share > 100.0, 100.0), else_=share))],
            )

        source = [("run_id", runs.c.run_id.type)]
        self._update_rows(conn, "roll up", runs, source, build, rows)

    def _rows_start_subtask(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """``start_subtask`` for each (run_id, number, name, items_total, message, when)."""
        runs, sp, x = self.t.task_runs, self.t.subtask_progress, self._x

        def build(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            return (
                # A run that has ended takes no new subtask (a reaped one does: its process
                # lives), as start_subtask refuses it.
                [runs.c.run_id == src["run_id"], x.run_endable],
                [
                    (runs.c.status, x.run_running),
                    (runs.c.last_update, src["when"]),
                    (runs.c.current_subtask, src["n"]),
                ],
            )

        source = [
            ("run_id", runs.c.run_id.type),
            ("when", runs.c.last_update.type),
            ("n", runs.c.current_subtask.type),
        ]
        matched = self._update_rows(
            conn, "start", runs, source, build, [(r[0], r[5], r[1]) for r in rows]
        )
        self._check(matched, rows, "starting subtasks")
        # A restart of an existing number resets that row; a new number is inserted.
        fresh = [
            (run_id, n, name, "STARTED", when, None, when, 0.0, message, total, 0, None)
            for run_id, n, name, total, message, when in rows
        ]
        self._insert_rows(conn, sp, self._sub_columns(), fresh, ("run_id", "subtask_number"))

    def _rows_update_run(self, conn: Connection, shape: Any, rows: list[tuple[Any, ...]]) -> None:
        """``update_run`` for each (run_id, when, *values)."""
        _, keys = shape
        runs = self.t.task_runs

        def build(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            sets: list[tuple[Any, Any]] = []
            if "status" in keys:
                # A new status from the run's process: it lives, whatever the reaper said.
                sets += [
                    (runs.c[name], self._x.unlost[name])
                    for name in ("end_time", *RUN_ERRORS)
                    if name not in keys
                ]
            sets.append((runs.c.last_update, src["when"]))
            sets += [(runs.c[k], src[f"v_{k}"]) for k in keys]
            where = [runs.c.run_id == src["run_id"]]
            if "status" in keys:
                # An ended run stays ended: no status brings it back (the reaper's end is
                # not one), as update_run refuses it.
                where.append(self._x.run_endable)
            return where, sets

        source = [
            ("run_id", runs.c.run_id.type),
            ("when", runs.c.last_update.type),
            *[(f"v_{k}", runs.c[k].type) for k in keys],
        ]
        matched = self._update_rows(conn, shape, runs, source, build, rows)
        self._check(matched, rows, "updating runs")

    def _rows_end_run(self, conn: Connection, shape: Any, rows: list[tuple[Any, ...]]) -> None:
        """``end_run`` for each (run_id, status, when, *final values[, subtask message])."""
        _, keys, completed, with_message = shape
        runs, sp, x = self.t.task_runs, self.t.subtask_progress, self._x

        def build(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            sets: list[tuple[Any, Any]] = [
                # A run the reaper ended that ends now after all: the real end wins.
                *[(runs.c[name], x.unlost[name]) for name in RUN_ERRORS if name not in keys],
                (runs.c.status, src["status"]),
                (runs.c.last_update, src["when"]),
                (runs.c.heartbeat, src["when"]),
                *[(runs.c[k], src[f"v_{k}"]) for k in keys],
            ]
            return [runs.c.run_id == src["run_id"], x.run_endable], sets

        source = [
            ("run_id", runs.c.run_id.type),
            ("status", runs.c.status.type),
            ("when", runs.c.last_update.type),
            *[(f"v_{k}", runs.c[k].type) for k in keys],
        ]
        width = len(source)
        matched = self._update_rows(conn, shape, runs, source, build, [r[:width] for r in rows])
        self._check(matched, rows, "ending runs")

        def build_subs(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            sets: list[tuple[Any, Any]] = [
                (sp.c.status, src["status"]),
                (sp.c.end_time, src["when"]),
                (sp.c.last_update, src["when"]),
            ]
            if completed:
                sets.append((sp.c.percent_complete, literal(100.0, sp.c.percent_complete.type)))
            sets.append((sp.c.error_message, src["message"] if with_message else x.sub_unlost))
            # Open subtasks end with the run, and so do those the reaper ended with it.
            return [sp.c.run_id == src["run_id"], x.sub_open_or_reaped], sets

        sub_source = [
            ("run_id", sp.c.run_id.type),
            ("status", sp.c.status.type),
            ("when", sp.c.last_update.type),
        ]
        sub_rows: list[tuple[Any, ...]]
        if with_message:
            sub_source.append(("message", sp.c.error_message.type))
            sub_rows = [(r[0], r[1], r[2], r[-1]) for r in rows]
        else:
            sub_rows = [(r[0], r[1], r[2]) for r in rows]
        self._update_rows(
            conn, ("end subtasks", completed, with_message), sp, sub_source, build_subs, sub_rows
        )

    def _sub_columns(self) -> tuple[str, ...]:
        # In the order _rows_start_subtask builds its rows.
        return (
            "run_id",
            "subtask_number",
            "subtask_name",
            "status",
            "start_time",
            "end_time",
            "last_update",
            "percent_complete",
            "progress_message",
            "items_total",
            "items_complete",
            "error_message",
        )
