"""How the writer builds a batch and writes it in one transaction.

A batch is what one write cycle drained: the queued events in order, with the items the
counters moved as increments, and the log file of runs that start in it. Runs that start and
end within one batch, with nothing else about them, become one finished row each, inserted
together, unless their texts together might be more than the server takes in one statement;
the rest is handed to the store as store calls, which it coalesces per run and subtask into a
few multi-row statements (:mod:`tasker.store.batched`). Values are made storable before they
are queued (:mod:`tasker.runtime.storable`).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeAlias

from tasker.errors import TaskerError
from tasker.runtime import events as ev
from tasker.runtime.capture.logs import active_log_file
from tasker.runtime.counters import Counter
from tasker.runtime.events import END_RUN, END_SUBTASK, INCREMENT_SUBTASK, START_RUN, Event

if TYPE_CHECKING:
    from tasker.store.sql import SqlStore

__all__ = [
    "Heartbeat",
    "add_log_files",
    "drain",
    "whole_runs",
    "with_counts",
    "write_batch",
]

# The live runs of this process to heartbeat in a write, and the time to record.
Heartbeat: TypeAlias = tuple[list[str], datetime]


def drain(queue: deque[Event]) -> list[Event]:
    """Take every queued event, in order (callers may go on appending meanwhile)."""
    events: list[Event] = []
    while True:
        try:
            events.append(queue.popleft())
        except IndexError:
            return events


def with_counts(events: list[Event], moved: list[tuple[Counter, int]]) -> list[Event]:
    """``events`` with the counters' new items as increments: each just before its
    subtask's end when that end is among ``events``, else after everything."""
    if not moved:
        return events
    when = datetime.now(timezone.utc)
    counts: dict[tuple[str, int], int] = {}
    for counter, delta in moved:
        if delta:
            key = (counter.run_id, counter.number)
            counts[key] = counts.get(key, 0) + delta
    if not counts:
        return events
    out: list[Event] = []
    for event in events:
        if event[0] == END_SUBTASK:
            key = (event[1], event[2][0])
            delta = counts.pop(key, 0)
            if delta:
                out.append((INCREMENT_SUBTASK, key[0], (key[1], delta, when)))
        out.append(event)
    out.extend((INCREMENT_SUBTASK, rid, (n, d, when)) for (rid, n), d in counts.items())
    return out


def add_log_files(events: list[Event]) -> list[Event]:
    """Runs record the log file of the logging FileHandler active when they started. Looking
    it up scans every logger, so it is done here, once per write, not in the caller."""
    found: tuple[str | None, str | None] | None = None
    out = events
    for i, event in enumerate(events):
        if event[0] != START_RUN:
            continue
        run = event[2][0]
        if run.log_path is not None or run.log_filename is not None:
            continue
        if found is None:
            found = active_log_file()
        if found == (None, None):
            return out
        if out is events:
            out = list(events)
        run = dataclasses.replace(run, log_path=found[0], log_filename=found[1])
        out[i] = (START_RUN, event[1], (run,))
    return out


def whole_runs(events: list[Event], apart: Collection[str] = ()) -> tuple[list[Event], list[Any]]:
    """Split off the runs whose start and end are both in ``events`` with nothing else
    about them: each becomes one finished row, inserted together with the others. Not the
    runs ``apart`` (too much text for one statement)."""
    starts = {e[1]: e for e in events if e[0] == START_RUN}
    if not starts:
        return events, []
    ends = {e[1]: e for e in events if e[0] == END_RUN and e[1] in starts}
    busy = {e[1] for e in events if e[0] != START_RUN and e[0] != END_RUN}
    whole = {rid for rid in ends if rid not in busy and rid not in apart}
    if not whole:
        return events, []
    # (run, status, values, end time): the end's subtask message has no subtask to go to.
    rows = [(starts[rid][2][0], *ends[rid][2][:3]) for rid in starts if rid in whole]
    return [e for e in events if e[1] not in whole], rows


class BatchAbandoned(TaskerError):
    """The process's exit gave up on this write and journaled its events meanwhile: the
    write must not commit too, or replaying the journal would apply them twice."""


def write_batch(
    store: SqlStore,
    batch: list[Event],
    heartbeat: Heartbeat | None,
    apart: Collection[str] = (),
    *,
    abandoned: Callable[[], bool] = lambda: False,
    committed: Callable[[], bool] | None = None,
) -> None:
    """Write ``batch`` (and the heartbeat) in one transaction: all of it, or none — none,
    too, when ``abandoned()`` has become true by the time the statements are done (a
    write that waited on a lock or a stalled network past the exit's deadline). The runs
    ``apart`` are written as their start and their end, not as one row. ``committed``
    tells, when the answer to the COMMIT is lost, whether the batch was written (see
    :meth:`tasker.store.core.StoreCore.batch`).

    Runs that started and ended in the batch with nothing else about them go in one insert;
    everything else goes to the store as the calls its events stand for, which it writes with
    a few multi-row statements however many runs the batch holds
    (:meth:`tasker.store.sql.SqlStore.write_calls`). When the database refuses the batch, the
    events are still the batch: :mod:`tasker.runtime.delivery` writes them one by one."""
    rest, whole = whole_runs(batch, apart)
    ops: list[Callable[[], object]] = []
    if whole:
        ops.append(lambda: store.insert_whole_runs(whole))
    if rest:
        calls = ev.store_calls(rest)
        ops.append(lambda: store.write_calls(calls, apart))
    if heartbeat is not None:
        ops.append(lambda: store.heartbeat(*heartbeat))
    ops.append(lambda: _still_wanted(abandoned))  # last, just before the commit
    store.batch(ops, committed)


def _still_wanted(abandoned: Callable[[], bool]) -> None:
    if abandoned():
        raise BatchAbandoned("the exit journaled this batch while its write waited")
