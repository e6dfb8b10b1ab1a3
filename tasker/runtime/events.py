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


def _end_subtask(
    store: SqlStore, run_id: str, number: int, delta: int, values: Any, when: Any
) -> Any:
    if delta:
        store.increment_subtask(run_id, number, delta, when)
    return store.update_subtask(run_id, number, values, when)


_APPLY: dict[str, Any] = {
    START_RUN: lambda s, run_id, run: s.start_run(run),
    END_RUN: lambda s, run_id, *a: s.end_run(run_id, *a),
    UPDATE_RUN: lambda s, run_id, *a: s.update_run(run_id, *a),
    START_SUBTASK: lambda s, run_id, *a: s.start_subtask(run_id, *a),
    UPDATE_SUBTASK: lambda s, run_id, number, values, when, items=None, reend=False: (
        s.update_subtask(run_id, number, values, when, items_complete=items, reend=reend)
    ),
    INCREMENT_SUBTASK: lambda s, run_id, *a: s.increment_subtask(run_id, *a),
    END_SUBTASK: _end_subtask,
}


def apply(store: SqlStore, event: Event) -> Any:
    """Write ``event`` through ``store``; returns what the store method returned."""
    kind, run_id, args = event
    return _APPLY[kind](store, run_id, *args)


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
    if not isinstance(data, list) or len(data) != 3 or data[0] not in _APPLY:
        raise ValueError(f"not a tasker event: {str(data)[:200]}")
    kind, run_id, args = data
    if not isinstance(run_id, str) or not isinstance(args, list):
        raise ValueError(f"not a tasker event: {str(data)[:200]}")
    return (kind, run_id, tuple(_typed(a) for a in args))
