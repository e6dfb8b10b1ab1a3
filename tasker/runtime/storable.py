"""Every value made storable before it is sent: text escaped (lone surrogates, NUL), cut to
its column's width, and the long texts of one statement held to what the database takes.

The database refuses a whole statement for one value it cannot hold — a name wider than its
column, text no driver can encode, a statement beyond MySQL/MariaDB's ``max_allowed_packet``
(which it answers by dropping the connection, as in an outage) — so a refused value would
cost the event it is in, and, written in a batch, the events beside it. Each value is made
storable once, where it is cheapest:

- Facts read once per process (host, user, command line, script, log file, git) are made
  storable when they are read (:mod:`tasker.runtime.capture`), names when a decorator or
  block is made: the hot path (a decorated call, a ``track()`` item) pays nothing.
- Every other event is escaped and cut to its columns' widths before it is queued
  (:func:`fit_event`, called by :func:`tasker.runtime.dispatch.write`).
- What the server takes in one statement (:meth:`tasker.store.core.StoreCore.text_budget`:
  MySQL/MariaDB's ``max_allowed_packet``, PostgreSQL's 1 GB per value, SQLite's length limit)
  is known only once the database has been reached, which a queued event must never wait
  for. An explicit call fits its event to it before writing it; a queued event with more
  than ``LONG_BYTES`` of text is fitted by the writer before the batch that holds it
  (:meth:`tasker.runtime.writer.Writer.submit_long`), and a replayed journal's events before
  they are replayed. Shorter texts fit any server (one statement of a run's start and end
  together stays far below 1 MiB).

Each change is told by one TaskerWarning naming the field.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

from tasker.errors import TaskerWarning
from tasker.models import NewRun
from tasker.runtime.events import (
    END_RUN,
    END_SUBTASK,
    START_RUN,
    START_SUBTASK,
    UPDATE_RUN,
    UPDATE_SUBTASK,
    Event,
)
from tasker.validate import WIDTHS, TextBudget, cut_to_size, fit_text, sent_size

__all__ = ["LONG_BYTES", "fit_batch", "fit_event", "fit_values", "fitted", "warn"]

# A queued event whose texts may take more than this (four bytes a character at most) has
# them checked against the server's limit by the writer; below it, every server takes them.
LONG_BYTES = 64 * 1024
# The error message an END_RUN gives the subtasks that end with their run (its 4th argument).
_SUBTASKS_ERROR = "error_message of its subtasks"

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def warn(message: str) -> None:
    """A TaskerWarning pointing at the first frame outside tasker (the tracked code's line)."""
    level = 2  # the caller of this function
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, TaskerWarning, stacklevel=level)


def fitted(value: str, what: str, width: int | None = None) -> str:
    """``value`` escaped and cut to ``width`` (see tasker.validate.fit_text), each change
    told by a TaskerWarning."""
    if value.isascii() and "\x00" not in value and (width is None or len(value) <= width):
        return value
    fixed, said = fit_text(value, what, width)
    for sentence in said:
        warn(sentence)
    return fixed


# Whose fields a warning names ("run …", "subtask 2 of run …"), built only for a warning.
Whose = Callable[[], str]
Budget = TextBudget | None


def _fit(texts: dict[str, str], budget: Budget, whose: Whose) -> tuple[dict[str, str], int]:
    """The texts of one statement that change, and (at most) how many bytes its long texts
    take afterwards."""
    changes: dict[str, str] = {}
    longs: dict[str, str] = {}
    for field, value in texts.items():
        width = WIDTHS.get(field)
        fixed = value
        if not value.isascii() or "\x00" in value or (width is not None and len(value) > width):
            fixed = fitted(value, f"{field} of {whose()}", width)
            if fixed is not value:
                changes[field] = fixed
        if width is None:
            longs[field] = fixed
    size = 4 * sum(map(len, longs.values()))
    if budget is None or size <= budget.size:
        return changes, size
    sizes = {field: sent_size(text) for field, text in longs.items()}
    size = sum(sizes.values())
    if size <= budget.size:
        return changes, size
    # Shared out smallest first: a text within its share is kept whole, and what it leaves
    # goes to the larger ones, which are cut to equal shares of the rest.
    left, count, size = budget.size, len(sizes), 0
    for field in sorted(sizes, key=sizes.__getitem__):
        share = left // count
        count -= 1
        if sizes[field] > share:
            cut = cut_to_size(longs[field], share)
            warn(
                f"{field} of {whose()} takes {sizes[field]:,} bytes, more than the database "
                f"takes of text in one statement ({budget.size:,} bytes: {budget.source}); "
                f"only its first {sent_size(cut):,} bytes are stored"
            )
            changes[field] = cut
            sizes[field] = sent_size(cut)
        left -= sizes[field]
        size += sizes[field]
    return changes, size


def fit_values(
    values: dict[str, Any], whose: Whose, budget: Budget = None
) -> tuple[dict[str, Any], int]:
    """``values`` (a run's or subtask's fields) made storable; and at most how many bytes
    their long texts take. The same dict when nothing changed."""
    texts = {k: v for k, v in values.items() if isinstance(v, str)}
    if not texts:
        return values, 0
    changes, size = _fit(texts, budget, whose)
    return ({**values, **changes} if changes else values), size


# Fits one kind of event's arguments: (arguments, at most the bytes of their long texts).
Fitter = Callable[[tuple[Any, ...], Budget, Whose], tuple[Any, int]]

_RUN_TEXT_FIELDS = tuple(
    f.name for f in dataclasses.fields(NewRun) if "str" in str(f.type) and f.name != "run_id"
)
_run_texts = operator.attrgetter(*_RUN_TEXT_FIELDS)


def _start_run(args: tuple[Any, ...], budget: Budget, whose: Whose) -> tuple[Any, int]:
    run: NewRun = args[0]
    texts = {
        f: t for f, t in zip(_RUN_TEXT_FIELDS, _run_texts(run), strict=True) if isinstance(t, str)
    }
    fixed, size = _fit(texts, budget, whose)
    changes: dict[str, Any] = fixed
    return ((dataclasses.replace(run, **changes),) if changes else args), size


def _in_values(at: int) -> Fitter:
    """The fitter of an event whose fields are a dict at position ``at`` of its arguments."""

    def fit(args: tuple[Any, ...], budget: Budget, whose: Whose) -> tuple[Any, int]:
        values, size = fit_values(args[at], whose, budget)
        if values is args[at]:
            return args, size
        return (*args[:at], values, *args[at + 1 :]), size

    return fit


def _end_run(args: tuple[Any, ...], budget: Budget, whose: Whose) -> tuple[Any, int]:
    status, values, when, subtasks_error = args
    fixed, size = fit_values(values, whose, budget)
    if isinstance(subtasks_error, str):  # written to the subtasks: a statement of its own
        subtasks_error = _fit({_SUBTASKS_ERROR: subtasks_error}, budget, whose)[0].get(
            _SUBTASKS_ERROR, subtasks_error
        )
    if fixed is values and subtasks_error is args[3]:
        return args, size
    return (status, fixed, when, subtasks_error), size


def _start_subtask(args: tuple[Any, ...], budget: Budget, whose: Whose) -> tuple[Any, int]:
    number, name, items_total, message, when = args
    texts = {}
    if isinstance(name, str):
        texts["subtask_name"] = name
    if isinstance(message, str):
        texts["progress_message"] = message
    if not texts:
        return args, 0
    changes, size = _fit(texts, budget, whose)
    if not changes:
        return args, size
    name = changes.get("subtask_name", name)
    message = changes.get("progress_message", message)
    return (number, name, items_total, message, when), size


_FITTERS: dict[str, Fitter] = {
    START_RUN: _start_run,
    END_RUN: _end_run,
    UPDATE_RUN: _in_values(0),
    START_SUBTASK: _start_subtask,
    UPDATE_SUBTASK: _in_values(1),
    END_SUBTASK: _in_values(2),
}


def fit_event(event: Event, budget: Budget = None) -> tuple[Event, int]:
    """``event`` with every text made storable: escaped, cut to its column's width, and
    with ``budget`` (bytes: what the database takes in one statement) the long texts held
    to it together. Returns the event (the same one when nothing changed) and at most how
    many bytes its long texts take."""
    kind, run_id, args = event
    fit = _FITTERS.get(kind)
    if fit is None:  # an increment: numbers only
        return event, 0

    def whose() -> str:
        if kind.endswith("_run") or args[0] is None:
            return f"run {run_id}"
        return f"subtask {args[0]} of run {run_id}"

    fixed, size = fit(args, budget, whose)
    return (event if fixed is args else (kind, run_id, fixed)), size


def fit_batch(events: list[Event], budget: TextBudget) -> tuple[list[Event], set[str]]:
    """``events`` fitted to ``budget`` (see fit_event); and the runs whose start, updates
    and end, in one row, might together exceed it: those are written as a statement each
    (a run that starts in a batch is otherwise written as its finished row:
    :func:`tasker.runtime.batches.whole_runs`, :mod:`tasker.store.folding`)."""
    out: list[Event] = []
    sizes: dict[str, int] = {}
    for event in events:
        fixed, size = fit_event(event, budget)
        out.append(fixed)
        if event[0] in _RUN_ROW_EVENTS:
            sizes[event[1]] = sizes.get(event[1], 0) + size
    return out, {rid for rid, size in sizes.items() if size > budget.size}


# The events whose texts go to the run's own row.
_RUN_ROW_EVENTS = frozenset((START_RUN, UPDATE_RUN, END_RUN))
