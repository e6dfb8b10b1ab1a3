"""``track()``: progress of a loop, at less per-item cost than a progress bar.

The loop itself only bumps a plain integer; the background writer picks the count up every
``flush_interval``. Loop exhausted → the subtask is COMPLETED; ``break`` → COMPLETED with the
true count and a message saying where it stopped; an exception out of the loop body → the
enclosing task or subtask fails, and so does the loop's subtask.

How the last case is told from a ``break``: both close the generator with GeneratorExit. When
that happens the loop's frame is remembered with the instruction it was at. An exception that
closed the loop was raised at (or passed through) exactly that instruction, so when the
enclosing scope sees an exception whose traceback holds that frame and instruction, it ends
the loop's subtask with its own status.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from types import FrameType
from typing import Any, TypeVar, overload

from tasker import validate
from tasker.instrument.outcome import guarded
from tasker.models import Status
from tasker.runtime import context, runs
from tasker.runtime.context import RunState, reporting_state
from tasker.runtime.counters import Counter
from tasker.runtime.recorder import RECORDER

__all__ = ["track"]

T = TypeVar("T")
DEFAULT_NAME = "Processing items"


def _total(iterable: Any, total: int | None) -> int | None:
    if total is not None:
        return validate.clamped_count(total, "total")
    try:
        return len(iterable)
    except TypeError:
        hint = operator.length_hint(iterable, -1)
        return hint if hint >= 0 else None


def _stopped(n: int, total: int | None) -> tuple[str, dict[str, Any]]:
    if total:
        return f"stopped after {n} of {total} items", {
            "percent_complete": min(100.0, n * 100.0 / total)
        }
    return f"stopped after {n} items", {}


def _closed_early(sub: runs.Subtask, frame: FrameType | None, n: int, total: int | None) -> None:
    message, extra = _stopped(n, total)
    guarded(
        "the end of a loop",
        runs.end_subtask,
        sub,
        Status.COMPLETED,
        sync=False,
        message=message,
        extra=extra,
        quiet=True,
    )
    if frame is not None:
        sub.state.early_closed.append((sub, frame, frame.f_lasti))


def _iterable_failed(sub: runs.Subtask, exc: BaseException) -> None:
    guarded(
        "the end of a loop",
        runs.end_subtask,
        sub,
        Status.FAILED,
        sync=False,
        error=f"{type(exc).__qualname__}: {exc}",
    )


def _own_loop(
    sub: runs.Subtask, iterator: Iterator[T], total: int | None, frame: FrameType | None
) -> Iterator[T]:
    counter = sub.counter
    n = 0
    try:
        for item in iterator:
            yield item
            n += 1
            counter.count = n
    except GeneratorExit:
        counter.count = n
        _closed_early(sub, frame, n, total)
        raise
    except BaseException as exc:  # the iterable itself failed
        counter.count = n
        _iterable_failed(sub, exc)
        raise
    finally:
        del frame
    counter.count = n
    guarded("the end of a loop", runs.end_subtask, sub, Status.COMPLETED, sync=False)
    runs.loop_ended_in_worker()


def _lane_loop(counter: Counter, iterator: Iterator[T]) -> Iterator[T]:
    n = 0
    try:
        for item in iterator:
            yield item
            n += 1
            counter.count = n
    finally:
        counter.count = n
        guarded("the progress of a loop", runs.retire_counter, counter)
        runs.loop_ended_in_worker()


async def _own_async_loop(
    sub: runs.Subtask, iterator: AsyncIterator[T], total: int | None, frame: FrameType | None
) -> AsyncIterator[T]:
    counter = sub.counter
    n = 0
    try:
        async for item in iterator:
            yield item
            n += 1
            counter.count = n
    except GeneratorExit:
        counter.count = n
        _closed_early(sub, frame, n, total)
        raise
    except BaseException as exc:
        counter.count = n
        _iterable_failed(sub, exc)
        raise
    finally:
        del frame
    counter.count = n
    guarded("the end of a loop", runs.end_subtask, sub, Status.COMPLETED, sync=False)
    runs.loop_ended_in_worker()


async def _lane_async_loop(counter: Counter, iterator: AsyncIterator[T]) -> AsyncIterator[T]:
    n = 0
    try:
        async for item in iterator:
            yield item
            n += 1
            counter.count = n
    finally:
        counter.count = n
        guarded("the progress of a loop", runs.retire_counter, counter)
        runs.loop_ended_in_worker()


def _open_subtask(state: RunState) -> runs.Subtask | None:
    for sub in reversed(state.subtasks):
        if not sub.ended:
            return sub  # type: ignore[no-any-return]
    number = context.inherited_subtask(state)
    if number is not None and not state.subtasks:
        # A child started (spawn, exec) while its parent had this subtask open: count into
        # it, as a forked child does with the subtasks it inherits.
        sub = runs.remote_subtask(state, number)
        state.subtasks.append(sub)
        return sub
    return None


@overload
def track(
    iterable: AsyncIterable[T], total: int | None = None, name: str | None = None
) -> AsyncIterator[T]: ...


@overload
def track(
    iterable: Iterable[T], total: int | None = None, name: str | None = None
) -> Iterator[T]: ...


def track(iterable: Any, total: int | None = None, name: str | None = None) -> Any:
    """Yield the items of ``iterable`` unchanged (lazily) and report the loop's progress.

    Inside a subtask it counts that subtask's items; otherwise it opens a subtask named
    ``name`` for the loop's life. The total comes from ``total=``, ``len()`` or
    ``__length_hint__``, and may stay unknown. Works with ``for`` and ``async for``. Outside
    any run it is a plain pass-through.
    """
    is_async = hasattr(iterable, "__aiter__") and not hasattr(iterable, "__iter__")
    state = reporting_state()
    if state is None or RECORDER.disabled:
        return aiter(iterable) if is_async else iter(iterable)
    n_total = _total(iterable, total)
    iterator = aiter(iterable) if is_async else iter(iterable)
    current = _open_subtask(state)
    if current is not None:
        # A subtask another process opened keeps the size it was given there.
        if n_total is not None and current.counter.items_total is None and not current.remote:
            current.counter.items_total = n_total
            guarded(
                "the size of a loop",
                runs.update_subtask,
                current.run_id,
                current.number,
                {"items_total": n_total},
            )
        lane = Counter(current.run_id, current.number)
        RECORDER.writer.publish(lane)
        return _lane_async_loop(lane, iterator) if is_async else _lane_loop(lane, iterator)
    sub: runs.Subtask | None = guarded(
        "the start of a loop",
        runs.start_subtask,
        state,
        name or DEFAULT_NAME,
        sync=False,
        items_total=n_total,
    )
    if sub is None:
        return iterator
    frame = sys._getframe(1)
    if is_async:
        return _own_async_loop(sub, iterator, n_total, frame)
    return _own_loop(sub, iterator, n_total, frame)
