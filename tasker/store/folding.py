"""The writes of a run that starts within a batch, folded in Python into its finished rows.

A run whose start is in a batch is not in the database before that batch commits: no other
process can see it, count into it, end it or reap it meanwhile. Its writes in the batch — its
start, its subtasks' starts, counts, updates and ends, its own updates and end — therefore
decide its rows entirely. :class:`RunFold` computes those rows the way the store's statements
would, one call after the other: the same CASE logic (a STARTED row moves to RUNNING, an ended
one stays ended, what the reaper wrote is cleared), the same refusals (an ended run takes no
ending, status or new subtask; an ended subtask no status), the same percent arithmetic and roll-up,
and on MySQL the same left-to-right SET evaluation. The batch then inserts each row once,
finished, where the calls would have inserted it and updated it a dozen times.

The percent arithmetic is the databases' own: every backend computes ``count * 100.0 /
total`` in IEEE doubles, because the statements send 100.0 as a float parameter (a DOUBLE
PRECISION on PostgreSQL, a ``100.0e0`` literal from PyMySQL), which is what Python computes.

A run whose calls one by one would fail — a subtask that is not there, an ending refused, a
column that does not exist, a value the database would refuse in a statement whose effect a
later call overwrites — is not folded (:class:`Unfoldable`): its calls are made one by one
inside the batch, fail the same way, and the writer splits the batch into its events as it
always did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from tasker.models import STATUS_VALUES, NewRun, Status
from tasker.store.expressions import LOST_SUBTASK, LOST_TYPE, RUN_ERRORS

__all__ = ["ColumnRule", "FoldContext", "RunFold", "Unfoldable"]

TERMINAL = frozenset(("COMPLETED", "FAILED", "SKIPPED", "CANCELLED"))
_OPEN = frozenset(("NOT_STARTED", "STARTED", "RUNNING"))
_ACTIVE = frozenset(("STARTED", "RUNNING"))
_STATUSES = frozenset(STATUS_VALUES)


class Unfoldable(Exception):
    """These calls cannot be folded: they are made one by one instead (and fail as they do)."""


# What a column takes, for a value that a later call overwrites (see RunFold._set): the
# Python types of a value its statement would store (empty: not checked), the longest text
# the database enforces (None: no limit, or a database that enforces none), and whether NULL
# is allowed.
ColumnRule = tuple[tuple[type, ...], "int | None", bool]


def _running(status: Any) -> Any:
    return "RUNNING" if status == "STARTED" else status


def _percent(count: int, total: Any, previous: Any) -> Any:
    """``tasker.store.expressions.percent_of``, in Python: the same doubles."""
    if total is not None and total > 0:
        return 100.0 if count >= total else count * 100.0 / total
    return previous


def _sub_open_or_reaped(sub: Mapping[str, Any]) -> bool:
    status: str = sub["status"]
    return status in _OPEN or (status == "FAILED" and sub["error_message"] == LOST_SUBTASK)


def _reaped(row: Mapping[str, Any]) -> bool:
    return bool(row["status"] == "FAILED" and row["error_type"] == LOST_TYPE)


def _endable(row: Mapping[str, Any]) -> bool:
    """``Expressions.run_endable``: an active run, or one the reaper ended. Only such a run
    takes an ending, a status or a new subtask; an ended run stays ended."""
    return row["status"] in _ACTIVE or _reaped(row)


class FoldContext:
    """What every fold of one store shares: the column rules of task_runs and
    subtask_progress, an empty run row, and whether SET is evaluated left to right."""

    __slots__ = ("empty_run", "rules", "run_given", "sequential")

    def __init__(
        self,
        rules: tuple[Mapping[str, ColumnRule], Mapping[str, ColumnRule]],
        start_columns: Iterable[str],
        sequential: bool,
    ) -> None:
        self.rules = rules
        # Every task_runs column, as start_run inserts it (task_id comes at write time).
        self.empty_run: dict[str, Any] = dict.fromkeys(rules[0])
        # The columns a run's start gives values to, other than those the store computes.
        self.run_given = frozenset(start_columns) - _COMPUTED_AT_START
        # MySQL evaluates a SET left to right, each assignment seeing the ones before.
        self.sequential = sequential


class RunFold:
    """The rows of one run that starts in the batch, built call by call.

    A value a caller gave (the run's start, a call's values) is written by its statement one
    by one, which fails if the database refuses it. In the rows it may be replaced by a later
    call before anything is written: so the columns holding given values are noted
    (``_given``), and a given value about to be replaced is checked first (``_release``):
    one the database would refuse — of the wrong kind, too long, NULL where not allowed, not
    a status — makes the run unfoldable, so that it fails one by one as it should. Values
    the fold computes itself (statuses, times of the calls, percents) need no check; nor do
    given values that stay: the insert checks them."""

    __slots__ = ("_context", "_given", "row", "run", "subtasks")

    def __init__(self, run: NewRun, start: dict[str, Any], context: FoldContext) -> None:
        self.run = run
        self.row = dict(context.empty_run)
        self.row.update(start)
        # Subtask rows by number, in the order they were first started (their insert order).
        self.subtasks: dict[int, dict[str, Any]] = {}
        self._context = context
        # Columns holding given values, per row: the run's (None), each subtask's by number.
        self._given: dict[int | None, frozenset[str]] = {None: context.run_given}

    # ---------------------------------------------------------------- calls

    def apply(self, name: str, args: Sequence[Any]) -> None:
        """Fold one store call (``tasker.runtime.events.store_calls``) into the rows."""
        fold = _FOLDS.get(name)
        if fold is None:  # a second start of the run: its insert fails, as it would
            raise Unfoldable(name)
        fold(self, *args[1:])

    def start_subtask(
        self,
        number: int | None,
        name: str | None,
        items_total: int | None,
        message: str | None,
        when: datetime,
    ) -> None:
        row, subs = self.row, self.subtasks
        if not _endable(row):
            raise Unfoldable("ended")  # RunEndedError: an ended run takes no new subtask
        n = number if number is not None else max(subs, default=0) + 1
        if type(n) is not int or (items_total is not None and type(items_total) is not int):
            raise Unfoldable("start_subtask")
        if not self._given[None].isdisjoint(_TOUCHED_BY_START):
            self._release(None, _TOUCHED_BY_START)
        row["status"] = _running(row["status"])
        row["last_update"] = when
        row["current_subtask"] = n
        sub = subs.get(n)
        if sub is None:  # a new number: inserted
            subs[n] = {
                "run_id": row["run_id"],
                "subtask_number": n,
                "subtask_name": name,
                "status": "STARTED",
                "start_time": when,
                "end_time": None,
                "last_update": when,
                "items_total": items_total,
                "items_complete": 0,
                "percent_complete": 0.0,
                "progress_message": message,
                "error_message": None,
            }
        else:  # a restart resets it in place (it keeps its place, and so its id)
            self._release(n, _SUBTASK_FIELDS)
            sub.update(
                subtask_name=name,
                status="STARTED",
                start_time=when,
                end_time=None,
                last_update=when,
                items_total=items_total,
                items_complete=0,
                percent_complete=0.0,
                progress_message=message,
                error_message=None,
            )
        self._given[n] = _GIVEN_AT_SUBTASK_START

    def update_subtask(
        self,
        number: int | None,
        values: dict[str, Any],
        when: datetime,
        items: int | None = None,
        reend: bool = False,
    ) -> None:
        n, sub = self._subtask(number)
        if not values.keys() <= self._context.rules[1].keys() or not _SUB_KEYS.isdisjoint(values):
            raise Unfoldable("a column")
        status = values.get("status")
        if status is not None:
            if isinstance(status, Status):
                values = {**values, "status": status.value}
                status = status.value
            elif type(status) is not str:
                raise Unfoldable("status")
        if "status" in values and not reend and not _sub_open_or_reaped(sub):
            # RunEndedError: an ended subtask takes no status again, the first ending is kept.
            raise Unfoldable("ended")
        if items is not None and type(items) is not int:
            raise Unfoldable("items")
        old_total, old_percent = sub["items_total"], sub["percent_complete"]
        old_status, old_error = sub["status"], sub["error_message"]
        given = self._given[n]
        if not (given.isdisjoint(values) and given.isdisjoint(_TOUCHED_BY_UPDATE)):
            self._release(n, _TOUCHED_BY_UPDATE.union(values))
        sub["last_update"] = when
        sub.update(values)
        self._given[n] = self._given[n].union(values)
        if "status" not in values:
            sub["status"] = _running(old_status)
        elif "error_message" not in values:
            # Ended by its process after the reaper ended it with its run: not lost.
            sub["error_message"] = None if old_error == LOST_SUBTASK else old_error
        if type(sub["items_total"]) not in _COUNT_TYPES:
            raise Unfoldable("items_total")
        if items is not None:
            if "percent_complete" not in values:
                total = sub["items_total"] if self._context.sequential else old_total
                sub["percent_complete"] = _percent(items, total, old_percent)
            sub["items_complete"] = items
        self._touch(when)
        if status in TERMINAL:
            self._roll_up()

    def increment_subtask(self, number: int | None, by: int, when: datetime) -> None:
        n, sub = self._subtask(number)
        if type(by) is not int:
            raise Unfoldable("by")
        if not self._given[n].isdisjoint(_TOUCHED_BY_COUNT):
            self._release(n, _TOUCHED_BY_COUNT)
        count = sub["items_complete"] + by
        # Every assignment reads the row as it was (items_complete is assigned last).
        sub["percent_complete"] = _percent(count, sub["items_total"], sub["percent_complete"])
        sub["status"] = _running(sub["status"])
        sub["last_update"] = when
        sub["items_complete"] = count
        row = self.row
        if row["status"] == "STARTED":
            if not self._given[None].isdisjoint(_TOUCHED_BY_START):
                self._release(None, _TOUCHED_BY_START)
            row["status"] = "RUNNING"
            row["last_update"] = when

    def update_run(self, values: dict[str, Any], when: datetime) -> None:
        row = self.row
        self._check_run_columns(values, _RUN_KEYS)
        if "status" in values and isinstance(values["status"], Status):
            values = {**values, "status": values["status"].value}
        if "status" in values and not _endable(row):
            raise Unfoldable("ended")  # RunEndedError: no status brings an ended run back
        cleared: list[str] = []
        if "status" in values and _reaped(row):
            # A new status from the run's process: it lives, whatever the reaper said.
            cleared = [col for col in ("end_time", *RUN_ERRORS) if col not in values]
        self._release(None, frozenset(("last_update", *values, *cleared)))
        row.update(dict.fromkeys(cleared))
        row["last_update"] = when
        row.update(values)
        self._given[None] = self._given[None].union(values)

    def end_run(
        self,
        status: Status,
        values: dict[str, Any],
        when: datetime,
        subtask_message: str | None = None,
    ) -> None:
        row = self.row
        if not isinstance(status, Status):
            raise Unfoldable("status")
        self._check_run_columns(values, _END_KEYS)
        final = dict(values)
        final.setdefault("end_time", when)
        completed = status is Status.COMPLETED
        if completed:
            final.setdefault("overall_percent_complete", 100.0)
        reaped = _reaped(row)
        if not _endable(row):
            raise Unfoldable("ended")  # RunEndedError: an ended run stays ended
        cleared = [col for col in RUN_ERRORS if col not in final] if reaped else []
        given = self._given[None]
        if not (given.isdisjoint(final) and given.isdisjoint(_TOUCHED_BY_END)):
            self._release(None, _TOUCHED_BY_END.union(final, cleared))
        row.update(dict.fromkeys(cleared))
        row["status"] = status.value
        row["last_update"] = row["heartbeat"] = when
        row.update(final)
        self._given[None] = self._given[None].union(values)
        # Open subtasks end with the run, and so do those the reaper ended with it.
        for n, sub in self.subtasks.items():
            if not _sub_open_or_reaped(sub):
                continue
            if not self._given[n].isdisjoint(_TOUCHED_BY_END_WITH_RUN):
                self._release(n, _TOUCHED_BY_END_WITH_RUN)
            error = sub["error_message"]
            sub["status"] = status.value
            sub["end_time"] = sub["last_update"] = when
            if completed:
                sub["percent_complete"] = 100.0
            if not completed and subtask_message is not None:
                sub["error_message"] = subtask_message
            else:
                sub["error_message"] = None if error == LOST_SUBTASK else error

    # ---------------------------------------------------------------- helpers

    def _subtask(self, number: int | None) -> tuple[int, dict[str, Any]]:
        n = number if number is not None else self.row["current_subtask"]
        sub = self.subtasks.get(n) if n is not None else None
        if sub is None:
            raise Unfoldable("subtask")  # UnknownSubtaskError
        return n, sub

    def _touch(self, when: datetime) -> None:
        row = self.row
        if not self._given[None].isdisjoint(_TOUCHED_BY_START):
            self._release(None, _TOUCHED_BY_START)
        row["status"] = _running(row["status"])
        row["last_update"] = when

    def _roll_up(self) -> None:
        """With total_subtasks known, the run's percent is the share of subtasks ended."""
        row = self.row
        total = row["total_subtasks"]
        if type(total) is not int:
            if total is None:
                return
            raise Unfoldable("total_subtasks")
        if total > 0:
            ended = sum(1 for s in self.subtasks.values() if s["status"] in TERMINAL)
            share = ended * 100.0 / total
            if "overall_percent_complete" in self._given[None]:
                self._release(None, _PERCENT)
            row["overall_percent_complete"] = 100.0 if share > 100.0 else share

    def _check_run_columns(self, values: Mapping[str, Any], reserved: frozenset[str]) -> None:
        if not values.keys() <= self._context.rules[0].keys() or not reserved.isdisjoint(values):
            raise Unfoldable("a column")

    def _release(self, key: int | None, cols: frozenset[str]) -> None:
        """``cols`` of the run's row (``key`` None) or of subtask ``key`` are about to be
        replaced: the given values among them must be ones the database takes (see the
        class)."""
        given = self._given[key]
        replaced = given.intersection(cols)
        if not replaced:
            return
        self._given[key] = given - replaced
        row = self.row if key is None else self.subtasks[key]
        rules = self._context.rules[0 if key is None else 1]
        for col in replaced:
            kinds, longest, nullable = rules[col]
            old = row[col]
            if old is None:
                if not nullable:
                    raise Unfoldable(col)
            elif (
                (kinds and type(old) not in kinds)
                or (longest is not None and type(old) is str and len(old) > longest)
                or (col == "status" and old not in _STATUSES)
            ):
                raise Unfoldable(col)


# The columns the store computes in a run's start; those a subtask's start is given.
_COMPUTED_AT_START = frozenset(("run_id", "status", "last_update", "heartbeat"))
_GIVEN_AT_SUBTASK_START = frozenset(("subtask_name", "items_total", "progress_message"))
# The columns a call's values may not set (its statement sets them, or they are the key).
_SUB_KEYS = frozenset(("run_id", "subtask_number"))
_RUN_KEYS = frozenset(("run_id", "task_id", "last_update"))
_END_KEYS = _RUN_KEYS | {"status", "heartbeat"}
# The columns each call replaces itself.
_TOUCHED_BY_START = frozenset(("status", "last_update", "current_subtask"))
_SUBTASK_FIELDS = frozenset(
    (
        "subtask_name",
        "status",
        "start_time",
        "end_time",
        "last_update",
        "items_total",
        "items_complete",
        "percent_complete",
        "progress_message",
        "error_message",
    )
)
_TOUCHED_BY_UPDATE = frozenset(
    ("last_update", "status", "error_message", "percent_complete", "items_complete")
)
_TOUCHED_BY_COUNT = frozenset(("percent_complete", "status", "last_update", "items_complete"))
_TOUCHED_BY_END = frozenset(("status", "last_update", "heartbeat"))
_TOUCHED_BY_END_WITH_RUN = frozenset(
    ("status", "end_time", "last_update", "percent_complete", "error_message")
)
_PERCENT = frozenset(("overall_percent_complete",))
_COUNT_TYPES = (int, type(None))

_FOLDS: dict[str, Any] = {
    "increment_subtask": RunFold.increment_subtask,
    "update_subtask": RunFold.update_subtask,
    "start_subtask": RunFold.start_subtask,
    "end_run": RunFold.end_run,
    "update_run": RunFold.update_run,
}
