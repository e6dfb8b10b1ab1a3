"""Numbered subtasks of a run: ``subtask_start``, ``subtask_update``, ``subtask_increment``,
``subtask_complete``, ``subtask_fail``. A process may act on its own runs' subtasks or on
those of a run it reports into (another process's, by ``run_id``)."""

from __future__ import annotations

import warnings
from typing import Any

from tasker import validate
from tasker.errors import RunEndedError, TaskerWarning, ValidationError
from tasker.explicit.common import is_quiet, now, resolve_run_id
from tasker.models import Status, parse_status
from tasker.runtime import console, context, runs
from tasker.runtime import events as ev
from tasker.runtime.recorder import RECORDER


def _state_for(run_id: str) -> context.RunState:
    """This process's state for ``run_id``: its own run, or one it reports into."""
    return context.find(run_id) or context.attached_state(run_id)


def _local_subtask(run_id: str, number: int | None) -> int | None:
    """The subtask to act on: the one given, else this process's current one for the run
    (None lets the store read the run's current subtask from the database)."""
    if number is not None:
        return number
    state = context.find(run_id)
    return state.current_subtask if state is not None else None


def _open_subtask(run_id: str, number: int | None) -> runs.Subtask | None:
    state = context.find(run_id)
    if state is None:
        return None
    for sub in reversed(state.subtasks):
        if number is None or sub.number == number:
            return sub  # type: ignore[no-any-return]
    return None


def subtask_start(
    name: str,
    items_total: int | None = None,
    message: str | None = None,
    *,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
) -> int:
    """Start the next numbered subtask of a run (1, 2, 3 …) and return its number.

    The run becomes RUNNING. Passing an existing ``subtask_number`` restarts that subtask.
    A run that has ended takes no new subtask: the call is refused with a TaskerWarning and
    returns 0 (a RunEndedError under ``strict``).
    """
    name = validate.name(name, "subtask name", validate.SUBTASK_NAME_MAX)
    total = validate.count(items_total, "items_total")
    msg = validate.optional_text(message, "message")
    number = validate.positive_int32(subtask_number)
    rid = resolve_run_id(run_id)
    try:
        sub = runs.start_subtask(
            _state_for(rid),
            name,
            sync=True,
            items_total=total,
            message=msg,
            number=number,
            quiet=quiet,
        )
    except RunEndedError as exc:  # the run has ended: it takes no new subtask
        if RECORDER.config.strict:
            raise
        warnings.warn(str(exc), TaskerWarning, stacklevel=2)
        return 0
    return sub.number


def subtask_update(
    status: str | Status = Status.RUNNING,
    *,
    percent: float | None = None,
    items_complete: int | None = None,
    items_total: int | None = None,
    message: str | None = None,
    error_message: str | None = None,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
) -> None:
    """Update a subtask (the current one unless ``subtask_number``): status, percent,
    ``items_complete`` (absolute; percent follows from it when items_total is known),
    message. COMPLETED, FAILED, SKIPPED and CANCELLED end it."""
    st = parse_status(status, allowed=tuple(s for s in Status if s is not Status.NOT_STARTED))
    values: dict[str, Any] = {"status": st.value}
    pct = validate.percent(percent, "percent")
    if pct is not None:
        values["percent_complete"] = pct
    items = validate.count(items_complete, "items_complete")
    total = validate.count(items_total, "items_total")
    if total is not None:
        values["items_total"] = total
    msg = validate.optional_text(message, "message")
    if msg is not None:
        values["progress_message"] = msg
    err = validate.optional_text(error_message, "error_message")
    if err is not None:
        values["error_message"] = err
    number = validate.positive_int32(subtask_number)
    rid = resolve_run_id(run_id)
    if st.is_terminal:
        values["end_time"] = now()
        if st is Status.COMPLETED and pct is None:
            values["percent_complete"] = 100.0
    target = _local_subtask(rid, number)
    args = (target, values, now(), items)
    try:
        n = runs.await_parent(
            context.find(rid),
            lambda: runs.write(ev.UPDATE_SUBTASK, rid, args, sync=True, default=target),
            rid,
        )
    except RunEndedError as exc:  # ended already: the first ending stays
        if RECORDER.config.strict:
            raise
        warnings.warn(str(exc), TaskerWarning, stacklevel=2)
        return
    if st.is_terminal:
        sub = _open_subtask(rid, n)
        if sub is not None:
            # Closed here too; items it counted and the writer has not written yet are added.
            delta = runs.detach_subtask(sub, st)
            if delta:
                runs.write(ev.INCREMENT_SUBTASK, rid, (n, delta, now()), sync=True)
    if not is_quiet(quiet):
        console.subtask_update(n, st.value, msg or err)


def subtask_increment(
    increment: int = 1,
    *,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = True,
) -> None:
    """Add ``increment`` items to a subtask's count, atomically in the database: safe when
    many threads, processes or hosts count into the same subtask."""
    by = validate.count(increment, "increment")
    if by is None:
        raise ValidationError("increment must be a whole number of items, got None")
    number = validate.positive_int32(subtask_number)
    rid = resolve_run_id(run_id)
    target = _local_subtask(rid, number)
    n = runs.await_parent(
        context.find(rid),
        lambda: runs.write(
            ev.INCREMENT_SUBTASK, rid, (target, by, now()), sync=True, default=target
        ),
        rid,
    )
    if not is_quiet(quiet):
        console.subtask_increment(n, by)


def subtask_complete(
    message: str | None = None,
    *,
    items_complete: int | None = None,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
) -> None:
    """End a subtask COMPLETED at 100% (optionally with its final item count)."""
    subtask_update(
        Status.COMPLETED,
        message=message,
        items_complete=items_complete,
        subtask_number=subtask_number,
        run_id=run_id,
        quiet=quiet,
    )


def subtask_fail(
    error_message: str | None = None,
    *,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
) -> None:
    """End a subtask FAILED with an error message (the run itself goes on)."""
    subtask_update(
        Status.FAILED,
        error_message=error_message,
        subtask_number=subtask_number,
        run_id=run_id,
        quiet=quiet,
    )
