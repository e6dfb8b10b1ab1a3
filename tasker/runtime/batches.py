"""How the writer builds a batch and writes it in one transaction.

A batch is what one write cycle drained: the queued events in order, with the items the
counters moved as increments, and the log file of runs that start in it. Runs that start and
end within one batch, with nothing else about them, become one finished row each, inserted
together. When the database refuses a batch for its text, :func:`storable` makes a copy that
every driver can take; the usual batch never pays for that.
"""

from __future__ import annotations

import dataclasses
import operator
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeAlias

from tasker.models import NewRun
from tasker.runtime import console
from tasker.runtime import events as ev
from tasker.runtime.capture.logs import active_log_file
from tasker.runtime.counters import Counter
from tasker.runtime.events import END_RUN, END_SUBTASK, INCREMENT_SUBTASK, START_RUN, Event
from tasker.validate import storable_text

if TYPE_CHECKING:
    from tasker.store.sql import SqlStore

__all__ = [
    "Heartbeat",
    "add_log_files",
    "drain",
    "storable",
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


def whole_runs(events: list[Event]) -> tuple[list[Event], list[Any]]:
    """Split off the runs whose start and end are both in ``events`` with nothing else
    about them: each becomes one finished row, inserted together with the others."""
    starts = {e[1]: e for e in events if e[0] == START_RUN}
    if not starts:
        return events, []
    ends = {e[1]: e for e in events if e[0] == END_RUN and e[1] in starts}
    busy = {e[1] for e in events if e[0] != START_RUN and e[0] != END_RUN}
    whole = {rid for rid in ends if rid not in busy}
    if not whole:
        return events, []
    # (run, status, values, end time): the end's subtask message has no subtask to go to.
    rows = [(starts[rid][2][0], *ends[rid][2][:3]) for rid in starts if rid in whole]
    return [e for e in events if e[1] not in whole], rows


def write_batch(store: SqlStore, batch: list[Event], heartbeat: Heartbeat | None) -> None:
    """Write ``batch`` (and the heartbeat) in one transaction: all of it, or none."""
    rest, whole = whole_runs(batch)
    ops: list[Callable[[], object]] = []
    if whole:
        ops.append(lambda: store.insert_whole_runs(whole))
    ops.extend(_bind(store, e) for e in rest)
    if heartbeat is not None:
        ops.append(lambda: store.heartbeat(*heartbeat))
    store.batch(ops)


def _bind(store: SqlStore, event: Event) -> Callable[[], object]:
    return lambda: ev.apply(store, event)


def storable(events: list[Event]) -> tuple[list[Event], bool]:
    """``events`` with every text made storable — lone surrogates (an argv element or a file
    name that was not UTF-8, an exception message holding one) escaped, NUL replaced — so
    that no driver refuses a run for its text; and whether anything changed. Used when the
    database refused a write: the usual write pays nothing for it."""
    out: list[Event] = []
    changed = False
    for kind, run_id, args in events:
        fixed = _scrubbed(args, kind, run_id)
        changed = changed or fixed != args
        out.append((kind, run_id, fixed))
    return out, changed


_SCRUB_WARNED: set[str] = set()


def _scrubbed(value: Any, field: str, run_id: str) -> Any:
    if type(value) is str:
        if value.isascii() and "\x00" not in value:
            return value
        fixed, problem = storable_text(value)
        if problem is not None and field not in _SCRUB_WARNED:
            _SCRUB_WARNED.add(field)
            console.problem(
                "tasker: %s of run %s held %s; it is stored with escapes (told once per field)",
                field,
                run_id,
                problem,
            )
        return fixed
    if isinstance(value, dict):
        return {k: _scrubbed(v, str(k), run_id) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_scrubbed(v, field, run_id) for v in value)
    if isinstance(value, NewRun):
        texts = _run_texts(value)
        if all(type(t) is not str or (t.isascii() and "\x00" not in t) for t in texts):
            return value  # nearly always: one pass, no copy
        changes = {}
        for f in _RUN_TEXT_FIELDS:
            text = getattr(value, f)
            if text is not None:
                fixed = _scrubbed(text, f, run_id)
                if fixed is not text:
                    changes[f] = fixed
        return dataclasses.replace(value, **changes) if changes else value
    return value


_RUN_TEXT_FIELDS = tuple(
    f.name for f in dataclasses.fields(NewRun) if "str" in str(f.type) and f.name != "run_id"
)
_run_texts = operator.attrgetter(*_RUN_TEXT_FIELDS)
