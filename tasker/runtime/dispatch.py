"""One event on its way to the database: written now (the explicit API, ``strict`` mode), so
that errors reach the caller, or queued for the background writer; made storable first
(:mod:`tasker.runtime.storable`) either way."""

from __future__ import annotations

from typing import Any

from tasker.errors import DatabaseError, SchemaVersionError
from tasker.runtime import events as ev
from tasker.runtime.recorder import RECORDER
from tasker.runtime.storable import LONG_BYTES, fit_event, warn

__all__ = ["apply_now", "write"]

# Queued events fitted here; a run's start and end come fitted from their producers
# (tasker.runtime.runs), which keeps a decorated call's cost as it was.
_FIT_WHEN_QUEUED = frozenset({ev.UPDATE_RUN, ev.START_SUBTASK, ev.UPDATE_SUBTASK, ev.END_SUBTASK})


def write(
    kind: str,
    run_id: str,
    args: tuple[Any, ...],
    *,
    sync: bool,
    default: Any = None,
    long: bool = False,
) -> Any:
    """Write one event: now (``sync``, or in ``strict`` mode, so errors reach the caller),
    else through the background writer. ``long``: the event may hold more text than every
    server takes (see tasker.runtime.storable.LONG_BYTES).

    A synchronous write that finds the database unreachable is queued instead (unless
    ``strict``): like everything queued it is retried, and journaled at exit if need be, and
    the call returns ``default`` rather than failing the program. One the database refuses
    for what it holds is set aside beside the journal (``rejected/``) with a TaskerWarning:
    without ``strict``, no tracking error reaches the program.
    """
    event = (kind, run_id, args)
    if RECORDER.disabled:  # tracking turned off: nothing is written anywhere
        return default
    strict = RECORDER.config.strict
    if not (sync or strict):
        if kind in _FIT_WHEN_QUEUED:
            event, size = fit_event(event)
            long = long or size > LONG_BYTES
        if long:
            RECORDER.submit_long(event)
        else:  # a decorated call's start and end: one call more than before, no more
            RECORDER.submit(event)
        return None
    # No writer built yet (a command of the command line): the database was never found away.
    writer = RECORDER.built_writer
    if not strict and writer is not None and writer.failing:
        _queue(fit_event(event)[0], True)  # no waiting on a database known to be away
        return default
    try:
        return apply_now(event)
    except DatabaseError as exc:
        if strict or isinstance(exc, SchemaVersionError):
            raise
        if exc.unavailable:
            RECORDER.writer.mark_failing(exc)
            # Fitted to the server's limit by the writer, once it reaches the database.
            _queue(fit_event(event)[0], True)
        else:
            _set_aside(event, exc)
        return default


def _queue(event: ev.Event, long: bool) -> None:
    if long:
        RECORDER.submit_long(event)
    else:
        RECORDER.submit(event)


def apply_now(event: ev.Event) -> Any:
    """Write ``event`` now, made storable for this database first (its texts escaped, cut
    to their columns and to what the server takes in one statement)."""
    store = RECORDER.synced_store()
    fitted, _ = fit_event(event, store.text_budget())
    return ev.apply(store, fitted)


def _set_aside(event: ev.Event, exc: DatabaseError) -> None:
    """The database refused ``event`` for what it holds: kept with the reason beside the
    journal (``rejected/``), and said in a TaskerWarning, instead of failing the program."""
    from tasker.runtime.replaying import set_aside

    try:
        kept = f"it is kept in {set_aside(RECORDER.config, [(event, str(exc))])}"
    except Exception as keep:  # nowhere to keep it: the warning says what was lost
        kept = f"it could not be kept beside the journal either ({keep})"
    warn(f"tasker could not record {ev.describe(event)}: {exc}; {kept}")
