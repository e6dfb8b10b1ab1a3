"""The per-process background writer.

Callers never wait on the database for progress: the automatic layer puts discrete events
(run and subtask starts and ends) on a queue and bumps plain counters for progress. A writer
thread wakes every ``flush_interval`` seconds (at once when asked to flush), snapshots the
counters that moved, drains the queue and writes everything in one transaction.

Ordering: a subtask is published for counting only after its start event is queued, and
withdrawn before its end event is queued, so the writer never writes progress for a subtask
row that is not there yet, nor after its end.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tasker.process_info import active_log_file

if TYPE_CHECKING:
    from tasker.store.sql import SqlStore

__all__ = ["Counter", "Event", "Writer"]

log = logging.getLogger("tasker")


@dataclasses.dataclass(eq=False)
class Counter:
    """One loop's (or handle's) live item count for a subtask.

    Only its owner bumps ``count``, without a lock: that is the hot path. ``take()`` hands the
    items counted since the last take to whoever writes them (the writer thread, or the
    subtask's end), under a lock so no item is written twice or lost. Several counters may
    count into one subtask; the database adds their increments atomically.
    """

    run_id: str
    number: int
    count: int = 0
    written: int = 0
    items_total: int | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def take(self) -> int:
        with self.lock:
            delta = self.count - self.written
            self.written += delta
        return delta


@dataclasses.dataclass(slots=True)
class Event:
    """One write: ``apply(store)``. ``ends`` names the subtask an end event closes;
    ``run_id`` the run the event concerns; a run's start and end events also carry what they
    record (``start``: the NewRun; ``end``: status, values, time, subtask message), so that a
    run that starts and ends between two writes is written as one row."""

    apply: Callable[[SqlStore], object]
    what: str
    ends: tuple[str, int] | None = None
    run_id: str | None = None
    start: Any = None
    end: Any = None


class Writer:
    def __init__(self, store_factory: Callable[[], SqlStore], interval: Callable[[], float]):
        self._store_factory = store_factory
        self._interval = interval
        self._reset_state()

    def _reset_state(self) -> None:
        self._queue: deque[Event] = deque()
        self._counters: set[Counter] = set()
        # Reentrant: a signal handler may flush while this thread is inside flush() already.
        self._cond = threading.Condition(threading.RLock())
        self._submitted = 0
        self._done = 0
        self._wake = False
        self._cycle = 0  # write cycles started
        self._completed = 0  # write cycles finished
        # Held while writing; a fork waits for it, so no child inherits a half-done write.
        self._io_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._failures = 0
        self.last_error: BaseException | None = None

    # ------------------------------------------------------------------ caller side

    def submit(self, event: Event) -> None:
        self._queue.append(event)
        self._submitted += 1
        if self._thread is None or self._pid != os.getpid():
            self._start()

    def publish(self, counter: Counter) -> None:
        """Let the writer poll ``counter`` (after its subtask's start event is queued)."""
        self._counters.add(counter)

    def withdraw(self, counter: Counter) -> None:
        """Stop polling ``counter`` (before its subtask's end event is queued)."""
        self._counters.discard(counter)

    @property
    def pending(self) -> bool:
        return self._done < self._submitted or any(
            c.count != c.written for c in list(self._counters)
        )

    def flush(self, timeout: float = 60.0) -> bool:
        """Write everything submitted so far (and the counters' current values); True if done
        within ``timeout``."""
        if not self.pending:
            return True
        if self._thread is None or self._pid != os.getpid():
            self._start()
        deadline = time.monotonic() + timeout
        with self._cond:
            # The next cycle to start snapshots everything submitted before this call.
            want = self._cycle + 1
            self._wake = True
            self._cond.notify_all()
            while self._completed < want:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def discard_pending(self) -> None:
        """Drop every queued event and counter (after a reset: they belong elsewhere)."""
        self._queue.clear()
        self._counters.clear()
        self._done = self._submitted

    def pause(self) -> None:
        """Wait for a write in progress to finish and hold the next one (before a fork)."""
        if threading.current_thread() is not self._thread:
            self._io_lock.acquire()

    def resume(self) -> None:
        """Let writes go on (in the parent, after a fork)."""
        if self._io_lock.locked() and threading.current_thread() is not self._thread:
            self._io_lock.release()

    # ------------------------------------------------------------------ writer thread

    def _start(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's queue is not ours
            self._reset_state()
        thread = threading.Thread(target=self._loop, name="tasker-writer", daemon=True)
        self._thread = thread
        thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._wake:
                    self._cond.wait(self._interval())
                self._wake = False
                self._cycle += 1
                mine = self._cycle
            try:
                with self._io_lock:
                    self._write_once()
            except BaseException as exc:  # the writer must outlive any failure
                self._report(f"tracked events ({exc})", exc)
            with self._cond:
                self._completed = mine
                self._cond.notify_all()

    def _write_once(self) -> None:
        # Counters first, then the queue: a counter is published only after its start event
        # was queued, so that event is in this drain or an earlier one.
        # No database yet: everything stays queued and counted for the next cycle.
        store = self._store_factory()
        moved = [(c, c.take()) for c in list(self._counters) if c.count != c.written]
        target = self._submitted
        events: list[Event] = []
        while True:
            try:
                events.append(self._queue.popleft())
            except IndexError:
                break
        ended = {e.ends for e in events if e.ends is not None}
        _add_log_files(events)
        events, whole_runs = _whole_runs(events, {c.run_id for c, _ in moved})
        ops: list[Callable[[], object]] = [functools.partial(e.apply, store) for e in events]
        if whole_runs:
            ops.insert(0, functools.partial(store.insert_whole_runs, whole_runs))
        progress = [(c, n) for c, n in moved if n and (c.run_id, c.number) not in ended]
        for counter, delta in progress:
            ops.append(functools.partial(_write_count, store, counter, delta))
        if not ops:
            self._done = max(self._done, target)
            return
        try:
            store.batch(ops)
        except BaseException as exc:  # tracking must never stop the writer
            if whole_runs:
                try:
                    store.insert_whole_runs(whole_runs)
                except BaseException as whole_exc:
                    self._report(f"{len(whole_runs)} runs: {whole_exc}", whole_exc)
            self._one_by_one(store, events, progress)
            del exc
        else:
            self._failures = 0
        self._done = max(self._done, target)

    def _one_by_one(
        self,
        store: SqlStore,
        events: list[Event],
        progress: list[tuple[Counter, int]],
    ) -> None:
        """A batch failed: write what can be written, report what cannot (once)."""
        for event in events:
            try:
                event.apply(store)
            except BaseException as exc:
                self._report(f"{event.what}: {exc}", exc)
        for counter, delta in progress:
            try:
                _write_count(store, counter, delta)
            except BaseException as exc:
                self._report(f"progress of subtask {counter.number}: {exc}", exc)

    def _report(self, message: str, exc: BaseException) -> None:
        self.last_error = exc
        self._failures += 1
        if self._failures == 1:
            log.warning("tasker could not record %s", message)


def _start_run(run: Any, store: SqlStore) -> None:
    store.start_run(run)


def _add_log_files(events: list[Event]) -> None:
    """Runs record the log file of the logging FileHandler active when they started. Looking
    it up scans every logger, so it is done here, once per write, not in the caller."""
    found: tuple[str | None, str | None] | None = None
    for i, event in enumerate(events):
        run = event.start
        if run is None or run.log_path is not None or run.log_filename is not None:
            continue
        if found is None:
            found = active_log_file()
        if found == (None, None):
            return
        run = dataclasses.replace(run, log_path=found[0], log_filename=found[1])
        events[i] = dataclasses.replace(event, start=run, apply=functools.partial(_start_run, run))


def _whole_runs(events: list[Event], counting: set[str]) -> tuple[list[Event], list[Any]]:
    """Split off the runs whose start and end are both in ``events`` with nothing else
    about them: each becomes one finished row, inserted together with the others."""
    starts = {e.run_id: e for e in events if e.start is not None}
    if not starts:
        return events, []
    ends = {e.run_id: e for e in events if e.end is not None and e.run_id in starts}
    busy = {e.run_id for e in events if e.start is None and e.end is None} | counting
    whole = {rid for rid in ends if rid not in busy}
    if not whole:
        return events, []
    rows = [(starts[rid].start, *ends[rid].end) for rid in starts if rid in whole]
    return [e for e in events if e.run_id not in whole], rows


def _write_count(store: SqlStore, counter: Counter, delta: int) -> None:
    from datetime import datetime, timezone

    store.increment_subtask(counter.run_id, counter.number, delta, datetime.now(timezone.utc))
