"""Did a write whose outcome its process never learned commit? Is an event the database
refused one it holds already?

A write can commit without its process learning so: the connection drops during the commit,
or the process's exit gives up on a write stuck on a stalled database and journals the batch
(see the writer's *abandoned* state), after which the stuck write commits all the same. Its
events then reach the database a second time — written again by the writer, or replayed from
the journal.

Such a batch is *in doubt*, and it was one transaction: written whole or not at all.
:func:`batch_committed` asks the database which, from the traces of one or a few of its
events, before the batch goes again; when it was written, none of it goes again — progress
increments included, which the database would otherwise add twice. The writer asks before
writing a batch again, and a journal replay before replaying a batch the journal marks in
doubt.

Where no batch is known to be in doubt (a journal written by an older tasker, an event
journaled apart from its batch), an event can still be found refused for being there
already: a run id taken, a run or subtask ended already. :func:`recorded_already` tells those
from real refusals, which are reported and set aside.

Each kind of event is recognised by what only its own write leaves behind, so that an event
the database never took is never mistaken for one it did:

- a run's start: the run id is taken by a run of the same task started at the same instant;
- an end (of a run or a subtask) or an ending update of a subtask: it ended with the same
  status at the same instant;
- a subtask's start: the subtask started at that instant;
- an update of a run or subtask that has ended since: the end is at or after the update's
  time and was written by the process that wrote the update (a process writes its events in
  order, so the update went before its own end). An update from another process (a pool
  worker's, about its parent's run) is not presumed written.

- a progress increment (asked only of a batch in doubt that holds nothing else to go by):
  the subtask was last updated at the increment's instant.

All of it is asked only after a failure: it costs the usual write nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasker.errors import UnknownRunError, UnknownSubtaskError
from tasker.models import RunRecord, Status, SubtaskRecord
from tasker.runtime import events as ev

if TYPE_CHECKING:
    from tasker.store.sql import SqlStore

__all__ = ["Origin", "batch_committed", "recorded_already"]

# (hostname, process id) of the process that wrote an event; None where unknown.
Origin = tuple[str | None, int | None]

# The kinds whose trace in the database is there exactly when their write committed.
_TELLING = frozenset((ev.START_RUN, ev.END_RUN, ev.START_SUBTASK, ev.END_SUBTASK))
# How many telling events of a batch in doubt are asked about before it counts as unwritten.
_PROBES = 3

# Times are stored to the microsecond on every backend; the margin only absorbs rounding.
_SAME_INSTANT = timedelta(milliseconds=1)


def _same(stored: datetime | None, given: Any) -> bool:
    return (
        stored is not None
        and isinstance(given, datetime)
        and given.tzinfo is not None
        and abs(stored - given) <= _SAME_INSTANT
    )


def _ended_since_by(end: datetime | None, run: RunRecord, when: Any, writer: Origin) -> bool:
    """Was ``end`` (of ``run`` or of one of its subtasks) at or after ``when``, ``run``'s
    process being ``writer``? (An end by the reaper takes updates, so it refuses none.)"""
    return (
        end is not None
        and isinstance(when, datetime)
        and end >= when - _SAME_INSTANT
        and writer[1] is not None
        and (run.hostname, run.process_id) == writer
    )


def _subtask(store: SqlStore, run_id: str, number: Any) -> SubtaskRecord | None:
    if type(number) is not int:
        return None
    for sub in store.subtasks(run_id):
        if sub.subtask_number == number:
            return sub
    return None


def _ending_matches(sub: SubtaskRecord | None, values: Any) -> bool:
    if sub is None or not isinstance(values, dict) or "status" not in values:
        return False
    return sub.status.value == values["status"] and _same(sub.end_time, values.get("end_time"))


def recorded_already(store: SqlStore, event: ev.Event, writer: Origin) -> bool:
    """True when the database holds what ``event``, which it just refused, records (see the
    module's description); False when it does not, or cannot be asked: the refusal then
    stands."""
    try:
        return _recorded(store, event, writer)
    except Exception:  # no answer (the database is away): the refusal stands
        return False


def batch_committed(store: SqlStore, events: list[ev.Event], writer: Origin) -> bool:
    """Was the one-transaction write of ``events``, whose outcome is unknown, committed?
    Asks about up to ``_PROBES`` of its telling events (one is enough to know: the batch was
    written whole or not at all), else about its first progress increment or update. Raises
    when the database cannot be asked (the batch stays in doubt)."""
    asked = 0
    for event in events:
        kind, _, args = event
        if kind not in _TELLING and not (kind == ev.UPDATE_SUBTASK and _ending(args[1])):
            continue
        if kind == ev.START_SUBTASK and type(args[0]) is not int:
            continue
        if _known(store, event, writer):
            return True
        asked += 1
        if asked == _PROBES:
            return False
    if asked:
        return False
    for event in events:  # nothing telling in it: progress and updates only
        kind, run_id, args = event
        try:
            if kind in (ev.INCREMENT_SUBTASK, ev.UPDATE_SUBTASK):  # (number, _, when, ...)
                sub = _subtask(store, run_id, args[0])
                return sub is not None and _exactly(sub.last_update, args[2])
            if kind == ev.UPDATE_RUN:
                return _exactly(store.get_run(run_id).last_update, args[1])
        except (UnknownRunError, UnknownSubtaskError):
            return False
    return False


def _known(store: SqlStore, event: ev.Event, writer: Origin) -> bool:
    try:
        return _recorded(store, event, writer)
    except (UnknownRunError, UnknownSubtaskError):
        return False


def _exactly(stored: datetime | None, given: Any) -> bool:
    return stored is not None and isinstance(given, datetime) and stored == given


def _ending(values: Any) -> bool:
    return isinstance(values, dict) and "status" in values and "end_time" in values


def _recorded(store: SqlStore, event: ev.Event, writer: Origin) -> bool:
    kind, run_id, args = event
    run = store.get_run(run_id)
    if kind == ev.START_RUN:
        new = args[0]
        return (run.stage_name, run.task_name) == (new.stage, new.task) and _same(
            run.start_time, new.start_time
        )
    if kind == ev.END_RUN:
        status, values, when = args[0], args[1], args[2]
        end = values.get("end_time", when) if isinstance(values, dict) else when
        return isinstance(status, Status) and run.status is status and _same(run.end_time, end)
    if kind == ev.UPDATE_RUN:
        return run.status.is_terminal and _ended_since_by(run.end_time, run, args[1], writer)
    if kind == ev.START_SUBTASK:
        sub = _subtask(store, run_id, args[0])
        return sub is not None and _same(sub.start_time, args[4])
    if kind == ev.END_SUBTASK:
        return _ending_matches(_subtask(store, run_id, args[0]), args[2])
    if kind == ev.UPDATE_SUBTASK:
        number, values, when = args[0], args[1], args[2]
        sub = _subtask(store, run_id, number)
        if _ending_matches(sub, values):
            return True
        return sub is not None and _ended_since_by(sub.end_time, run, when, writer)
    return False
