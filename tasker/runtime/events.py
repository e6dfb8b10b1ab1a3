"""Tracked events as plain data: what the writer queues, writes, and saves to the journal.

An event is a tuple ``(kind, run_id, args)``: cheap for the caller to build (no closure, no
object), and, being data, it can be written to a journal file while the database is away and
replayed later (see :mod:`tasker.runtime.journal`). ``apply`` turns one into a store call.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasker.models import NewRun, Status
from tasker.validate import storable_text

if TYPE_CHECKING:
    from tasker.store.calls import StoreCall
    from tasker.store.sql import SqlStore

__all__ = [
    "END_RUN",
    "END_SUBTASK",
    "INCREMENT_SUBTASK",
    "START_RUN",
    "START_SUBTASK",
    "UPDATE_RUN",
    "UPDATE_SUBTASK",
    "Event",
    "apply",
    "decode",
    "describe",
    "encode",
    "store_calls",
]

# (kind, run_id, args): see each kind's args below.
Event = tuple[str, str, tuple[Any, ...]]

START_RUN = "start_run"  # (NewRun,)
END_RUN = "end_run"  # (Status, values, when, subtask_message)
UPDATE_RUN = "update_run"  # (values, when)
START_SUBTASK = "start_subtask"  # (number, name, items_total, message, when)
UPDATE_SUBTASK = "update_subtask"  # (number, values, when[, items_complete[, reend]])
INCREMENT_SUBTASK = "increment_subtask"  # (number, by, when)
END_SUBTASK = "end_subtask"  # (number, items not yet written, values, when)


_KINDS = frozenset(
    (START_RUN, END_RUN, UPDATE_RUN, START_SUBTASK, UPDATE_SUBTASK, INCREMENT_SUBTASK, END_SUBTASK)
)


def store_calls(events: list[Event]) -> list[StoreCall]:
    """The store calls that write ``events``, in order, as (SqlStore write method, positional
    arguments): the one mapping from events to store writes, used to write an event alone
    (``apply``) and to hand a whole batch to the store (``SqlStore.write_calls``), which
    writes many of them together. Each kind but END_SUBTASK names its store method."""
    calls: list[StoreCall] = []
    append = calls.append
    for kind, run_id, args in events:
        if kind == END_SUBTASK:
            number, delta, values, when = args
            # The items counted and not yet written go first: a subtask's count before its
            # end.
            if delta:
                append((INCREMENT_SUBTASK, (run_id, number, delta, when)))
            append((UPDATE_SUBTASK, (run_id, number, values, when, None, False)))
        elif kind == START_RUN:
            append((START_RUN, args))
        elif kind == UPDATE_SUBTASK:
            number, values, when, *rest = args  # items_complete and reend are optional
            items = rest[0] if rest else None
            append(
                (UPDATE_SUBTASK, (run_id, number, values, when, items, len(rest) > 1 and rest[1]))
            )
        elif kind in _KINDS:
            append((kind, (run_id, *args)))
        else:
            raise ValueError(f"not a tasker event: {kind!r}")
    return calls


def apply(store: SqlStore, event: Event) -> Any:
    """Write ``event`` through ``store``; returns what the (last) store method returned."""
    result = None
    for call in store_calls([event]):
        result = store.write_call(call)
    return result


def describe(event: Event) -> str:
    """What ``event`` records, for warnings."""
    kind, run_id, args = event
    if kind == START_RUN:
        return f"the start of {args[0].stage} / {args[0].task}"
    if kind == END_RUN:
        return f"the end of run {run_id}"
    if kind == UPDATE_RUN:
        return f"an update of run {run_id}"
    number = args[0]
    if kind == START_SUBTASK:
        return f"the start of subtask {number} of run {run_id}"
    if kind == END_SUBTASK:
        return f"the end of subtask {number} of run {run_id}"
    if kind == INCREMENT_SUBTASK:
        return f"progress of subtask {number} of run {run_id}"
    return f"an update of subtask {number} of run {run_id}"


# ---------------------------------------------------------------------------- journal form


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, Status):
        return {"$status": value.value}
    if isinstance(value, NewRun):
        return {"$run": {f.name: _plain(getattr(value, f.name)) for f in _RUN_FIELDS}}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, str):
        # Journaled text may hold what no database stores: lone surrogates (kept by the
        # journal as \udce9 escapes) as \xNN escapes, NUL as U+FFFD.
        return value if value.isascii() and "\x00" not in value else storable_text(value)[0]
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "$dt":
                return datetime.fromisoformat(inner)
            if tag == "$status":
                return Status(inner)
            if tag == "$run":
                fields = {k: _typed(v) for k, v in inner.items()}
                return NewRun(**fields)
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value


_RUN_FIELDS = dataclasses.fields(NewRun)


def encode(event: Event) -> list[Any]:
    """``event`` as JSON-ready data (datetimes, statuses and runs tagged)."""
    kind, run_id, args = event
    return [kind, run_id, _plain(args)]


def decode(data: Any) -> Event:
    """The event ``encode`` made ``data`` from, its text made storable (see ``_typed``);
    ValueError when it is not one."""
    if not isinstance(data, list) or len(data) != 3 or data[0] not in _KINDS:
        raise ValueError(f"not a tasker event: {str(data)[:200]}")
    kind, run_id, args = data
    if not isinstance(run_id, str) or not isinstance(args, list):
        raise ValueError(f"not a tasker event: {str(data)[:200]}")
    return (kind, run_id, tuple(_typed(a) for a in args))
