"""The SQL expressions the store's writes share, built once per store: status moves, percent
arithmetic, and how a write recognises (and undoes) what the reaper wrote.

Built once because statements are cached by shape, and a shape names each expression by its
identity (see ``StoreCore._update``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, case, literal_column, null, or_

from tasker.models import Status
from tasker.store.schema import ACTIVE_STATUS_VALUES, Tables

__all__ = [
    "LOST_SUBTASK",
    "LOST_TYPE",
    "RUN_ERRORS",
    "Expressions",
    "percent_of",
    "started_to_running",
]

_OPEN_SUBTASK = ("NOT_STARTED", "STARTED", "RUNNING")
# The error_type the reaper ends a lost run with (tasker.runtime.reaper.LOST: the store, a layer
# below the reaper, cannot import it), and what mark_lost writes on the run's open subtasks.
LOST_TYPE = "ProcessLost"
LOST_SUBTASK = "ended FAILED with its run (process lost)"
RUN_ERRORS = ("error_message", "error_detail", "error_type")  # error_type last: see unlost


class Expressions:
    """One store's shared expressions, over its tables."""

    def __init__(self, t: Tables) -> None:
        runs, sp = t.task_runs, t.subtask_progress
        self.run_running = started_to_running(runs.c.status)
        self.sub_running = started_to_running(sp.c.status)
        self.sub_open = sp.c.status.in_([literal_column(f"'{v}'") for v in _OPEN_SUBTASK])
        self.pct_items = percent_of(bindparam("x_items", type_=BigInteger()), sp)
        self.new_count = sp.c.items_complete + bindparam("x_by", type_=BigInteger())
        self.pct_new_count = percent_of(self.new_count, sp)
        self.run_is_started = runs.c.status == literal_column("'STARTED'")
        self.run_active = runs.c.status.in_(
            [literal_column(f"'{v}'") for v in ACTIVE_STATUS_VALUES]
        )
        last = t.tasks.c.last_start_time
        self.not_later = or_(last.is_(None), last <= bindparam("x_start", type_=last.type))
        # A run the reaper ended, and the subtasks it ended with it. The reaper can be wrong
        # (a process stopped for long, a heartbeat lost): when the run's own end, or a status
        # update, arrives after all, the process was alive and what it says wins. Each field
        # the arriving write does not set is cleared where the reaper set it, else kept; they
        # read error_type and status, so they come before both in a SET (MySQL evaluates it
        # left to right).
        reaped = and_(
            runs.c.status == literal_column("'FAILED'"),
            runs.c.error_type == literal_column(f"'{LOST_TYPE}'"),
        )
        self.unlost = {
            name: case((reaped, null()), else_=runs.c[name]) for name in (*RUN_ERRORS, "end_time")
        }
        sub_reaped = and_(
            sp.c.status == literal_column("'FAILED'"),
            sp.c.error_message == literal_column(f"'{LOST_SUBTASK}'"),
        )
        self.sub_open_or_reaped = or_(self.sub_open, sub_reaped)
        # A run that may still be ended: an active one, or one the reaper ended. An ended run
        # stays ended: a second ending is refused, the first kept intact.
        self.run_endable = or_(self.run_active, reaped)
        self.sub_unlost = case(
            (sp.c.error_message == literal_column(f"'{LOST_SUBTASK}'"), null()),
            else_=sp.c.error_message,
        )


def started_to_running(col: Any) -> Any:
    """``col`` with STARTED moved to RUNNING (a status column, in a SET)."""
    return case((col == Status.STARTED.value, Status.RUNNING.value), else_=col)


def percent_of(count: Any, sp: Any) -> Any:
    """A subtask's percent with ``count`` items done: of its total when it has one, else the
    percent it has. 100.0 is a bound float: the arithmetic is in doubles on every backend."""
    share = count * 100.0 / sp.c.items_total
    return case(
        (sp.c.items_total > 0, case((count >= sp.c.items_total, 100.0), else_=share)),
        else_=sp.c.percent_complete,
    )
