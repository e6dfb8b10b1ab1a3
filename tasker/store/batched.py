"""Writing the background writer's batch — many runs' store calls — with a few statements.

The writer hands the store a batch as the list of store calls its events stand for
(``tasker.runtime.events.store_calls``): ``start_run``, ``start_subtask``,
``increment_subtask``, ``update_subtask``, ``update_run``, ``end_run``, in order. Written one
by one they take about a dozen statements per run, each a round trip. :meth:`write_calls`
writes them in one transaction with a number of statements that does not grow with the
number of runs, and with the same outcome as the calls made one after the other:

1. Calls are grouped by run. Calls about different runs touch different rows (a subtask row
   belongs to its run; a run's percent is rolled up from its own subtasks), so only the order
   within a run matters, and it is kept.
2. A run whose first call in the batch is its start is not in the database yet: its calls are
   folded in Python into its finished rows (:mod:`tasker.store.folding`), and all such runs
   are inserted together: one INSERT into task_runs, one into subtask_progress, one UPDATE of
   the tasks' latest-run pointers.
3. The calls of runs already in the database are written level by level: the first call of
   every such run, then the second, and so on, each level one multi-row statement per table
   and shape of call (:mod:`tasker.store.levels`). A statement that matches fewer rows than
   it was given (a run or subtask not there, an ending refused) fails the batch: the writer
   then splits it into its events and writes them one by one, as it always did
   (``tasker.runtime.delivery``).
4. Anything else — a call that needs the database to choose a subtask's number, a column that
   is not there, a run whose calls cannot be folded — is made one by one, in its run's order,
   inside the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, Float, Integer, String, Uuid, or_

from tasker.models import NewRun, Status
from tasker.store.calls import StoreCall, StoreCalls
from tasker.store.folding import ColumnRule, FoldContext, RunFold, Unfoldable
from tasker.store.levels import LevelWrites, Op
from tasker.store.schema import UTCDateTime

__all__ = ["BatchedWrites", "StoreCall"]

_ACTIVE = ("STARTED", "RUNNING")


# A run, for the names of the columns a start gives values to.
_A_RUN = NewRun(
    run_id="",
    stage="",
    task="",
    task_type=None,
    status=Status.STARTED,
    start_time=datetime(2000, 1, 1),
    hostname="",
    process_id=0,
)


class BatchedWrites(LevelWrites, StoreCalls):
    """Batches of store calls, written with few statements (see the module)."""

    def write_calls(self, calls: Sequence[StoreCall], apart: Collection[str] = ()) -> None:
        """Make ``calls`` in one transaction (the batch's, inside :meth:`batch`), with the
        outcome of making them one after the other; raises when one of them would. The runs
        ``apart`` (their texts together might be more than the server takes in one
        statement: :func:`tasker.runtime.storable.fit_batch`) are not folded into one row:
        their calls are made one by one, each its own statement."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.batch([lambda: self.write_calls(calls, apart)])
            return
        by_run: dict[str, list[StoreCall]] = {}
        for call in calls:
            first = call[1][0]
            by_run.setdefault(first.run_id if call[0] == "start_run" else first, []).append(call)
        folds: list[RunFold] = []
        levels: list[list[Op]] = []
        one_by_one: list[StoreCall] = []
        context = self._fold_context()
        for run_id, group in by_run.items():
            if group[0][0] == "start_run":
                fold = None if run_id in apart else self._fold(group, context)
                if fold is not None:
                    folds.append(fold)
                    continue
            else:
                ops = self._level_ops(group)
                if ops is not None:
                    levels.append(ops)
                    continue
            one_by_one.extend(group)
        if "prepared" not in self._stmts and (
            levels or any(fold.row["status"] in _ACTIVE for fold in folds)
        ):
            # Runs that a later batch will end: ready their statements now.
            self._prepare_usual(conn)
        if folds:
            self._insert_folded(conn, folds)
        if levels:
            self._write_levels(conn, levels)
        for call in one_by_one:
            self.write_call(call)

    def insert_whole_runs(
        self, rows: Sequence[tuple[NewRun, Status, dict[str, Any], datetime]]
    ) -> None:
        """Insert runs that started and ended between two writes, each as its finished row,
        in one statement (the common case of many short tracked calls)."""
        columns = self._run_columns()

        def apply(conn: Connection) -> None:
            out: list[dict[str, Any]] = []
            latest: dict[int, tuple[str, datetime]] = {}
            for run, status, values, when in rows:
                for col in values:
                    if col not in columns:
                        raise ValueError(f"task_runs has no column {col!r}")
                row: dict[str, Any] = dict.fromkeys(columns)
                row.update(self._start_values(run))
                row.update(values)
                task_id = self._task_id_for(conn, run)
                row["task_id"] = task_id
                row["status"] = status.value
                row["last_update"] = row["heartbeat"] = when
                if row["end_time"] is None:
                    row["end_time"] = when
                if status is Status.COMPLETED and row["overall_percent_complete"] is None:
                    row["overall_percent_complete"] = 100.0
                out.append(row)
                best = latest.get(task_id)
                if best is None or run.start_time >= best[1]:
                    latest[task_id] = (run.run_id, run.start_time)
            self._insert_dicts(conn, self.t.task_runs, columns, out)
            self._point_to_latest_rows(conn, latest)

        self._run("recording finished runs", apply)

    def _prepare_usual(self, conn: Connection) -> None:
        """Prepare the statements the automatic layer's runs end with, at the first batch
        that leaves runs open.

        Not only to save the time later: SQLAlchemy generates some of its code with exec()
        the first time it compiles a kind of expression, and an exec() while the program
        exits on a KeyboardInterrupt resets CPython's note of it, so that the program would
        exit with status 1 instead of by SIGINT (a tracked loop that is interrupted ends its
        subtask and run in the exit's flush, which would often be the first to compile
        these). A batch whose runs all ended (a short script's only one, at exit) is not
        made to wait for it."""
        self._rows_increment(conn, [])
        self._rows_start_subtask(conn, [])
        self._rows_roll_up(conn, [])
        for keys in (
            ("status", "end_time", "percent_complete"),
            ("status", "end_time", "error_message"),
        ):
            self._rows_update_subtask(conn, ("sub", keys, False, True), [], [])
        usual = ("cpu_seconds", "peak_memory_mb", "end_time")
        self._rows_end_run(conn, ("end", (*usual, "overall_percent_complete"), True, False), [])
        failed = ("error_type", "error_message", "error_detail", *usual)
        self._rows_end_run(conn, ("end", failed, False, True), [])
        self._stmts["prepared"] = True

    # ------------------------------------------------------------ runs that start here

    def _fold(self, group: list[StoreCall], context: FoldContext) -> RunFold | None:
        run = group[0][1][0]
        fold = RunFold(run, self._start_values(run), context)
        try:
            for name, args in group[1:]:
                fold.apply(name, args)
        except Unfoldable:
            return None
        return fold

    def _insert_folded(self, conn: Connection, folds: list[RunFold]) -> None:
        runs: list[dict[str, Any]] = []
        subs: list[dict[str, Any]] = []
        latest: dict[int, tuple[str, datetime]] = {}
        for fold in folds:
            run = fold.run
            task_id = self._task_id_for(conn, run)
            fold.row["task_id"] = task_id
            runs.append(fold.row)
            subs.extend(fold.subtasks.values())
            best = latest.get(task_id)
            if best is None or run.start_time >= best[1]:
                latest[task_id] = (run.run_id, run.start_time)
        self._insert_dicts(conn, self.t.task_runs, self._run_columns(), runs)
        self._insert_dicts(conn, self.t.subtask_progress, self._sub_columns(), subs)
        self._point_to_latest_rows(conn, latest)

    def _point_to_latest_rows(
        self, conn: Connection, latest: Mapping[int, tuple[str, datetime]]
    ) -> None:
        """Make each run its task's latest run unless a later-started one already is (as
        ``_point_to_latest`` does for one)."""
        tasks = self.t.tasks
        last = tasks.c.last_start_time

        def build(src: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
            start = src["start"]
            return (
                [tasks.c.task_id == src["task_id"], or_(last.is_(None), last <= start)],
                [(tasks.c.last_run_id, src["run_id"]), (last, start)],
            )

        source = [
            ("task_id", tasks.c.task_id.type),
            ("run_id", tasks.c.last_run_id.type),
            ("start", last.type),
        ]
        rows = [(task_id, run_id, start) for task_id, (run_id, start) in latest.items()]
        self._update_rows(conn, "latest", tasks, source, build, rows)

    # ------------------------------------------------------------ columns

    def _run_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.t.task_runs.c)

    def _fold_context(self) -> FoldContext:
        context = self._stmts.get("fold context")
        if context is None:
            start = self._start_values(_A_RUN)
            context = FoldContext(self._fold_rules(), start, self.dialect == "mysql")
            self._stmts["fold context"] = context
        return context

    def _fold_rules(self) -> tuple[Mapping[str, ColumnRule], Mapping[str, ColumnRule]]:
        """What each column of task_runs and subtask_progress takes (see ColumnRule)."""
        rules = self._stmts.get("fold rules")
        if rules is None:
            enforced = self.dialect != "sqlite"  # SQLite stores text of any length
            rules = (
                {c.name: _rule(c, enforced) for c in self.t.task_runs.c},
                {
                    c.name: _rule(c, enforced)
                    for c in self.t.subtask_progress.c
                    if c.name != "progress_id"
                },
            )
            self._stmts["fold rules"] = rules
        return rules


def _rule(col: Any, enforced: bool) -> ColumnRule:
    t = col.type
    longest = None
    if isinstance(t, UTCDateTime):
        kinds: tuple[type, ...] = (datetime,)
    elif isinstance(t, Boolean):
        kinds = (bool,)
    elif isinstance(t, Integer):
        kinds = (int,)
    elif isinstance(t, Float):
        kinds = (float, int)
    elif isinstance(t, (String, Uuid)):
        kinds = (str,)
        if enforced and isinstance(t, String) and t.length is not None:
            longest = t.length
    else:
        kinds = ()  # not checked
    return kinds, longest, bool(col.nullable)
