"""The per-process background writer.

Callers never wait on the database for progress: the automatic layer puts discrete events
(run and subtask starts, updates and ends: :mod:`tasker.runtime.events`) on a queue and bumps plain
counters for progress. A writer thread wakes every ``flush_interval`` seconds (at once when
asked to flush), snapshots the counters that moved, drains the queue and writes everything in
one transaction. It also heartbeats this process's live runs every ``heartbeat_interval``.

Ordering: a subtask is published for counting only after its start event is queued, and
withdrawn before its end event is queued, so the writer never writes progress for a subtask
row that is not there yet.

When the database cannot be reached (down, locked, full, wrong password), nothing is lost and
nothing reaches the tracked code: the events go back on the queue, the writer retries with
backoff and logs one warning for the whole outage. Beyond ``max_queued`` events, and for
whatever is still undelivered when the process exits, the events go to the local journal
(:mod:`tasker.runtime.journal`), which is replayed once the database is back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import operator
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from tasker.errors import UnknownRunError, UnknownSubtaskError
from tasker.models import NewRun
from tasker.runtime import console
from tasker.runtime import events as ev
from tasker.runtime.capture.process import active_log_file
from tasker.runtime.events import END_RUN, END_SUBTASK, INCREMENT_SUBTASK, START_RUN, Event
from tasker.validate import storable_text

if TYPE_CHECKING:
    from tasker.config import Config
    from tasker.runtime.journal import JournalFile
    from tasker.store.sql import SqlStore

__all__ = ["Counter", "Writer"]

log = logging.getLogger("tasker")

# Backoff between attempts while the database is away, in seconds.
MAX_BACKOFF = 30.0
# How long the last writes retry a busy database when the process is ending.
CLOSING_RETRY_SECONDS = 2.0
# The longest a fork (or a configuration change) waits for a write in progress.
PAUSE_TIMEOUT = 5.0
# How long an event about a run or subtask that is not in the database yet waits for it (its
# owner's writer may not have written it yet) before it is reported and dropped.
PARK_SECONDS = 30.0


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


@dataclasses.dataclass
class WriterStats:
    """What the writer has done in this process (for benchmarks and diagnostics)."""

    writes: int = 0  # transactions committed
    events: int = 0  # events delivered to the database
    journaled: int = 0  # events written to the journal
    slowest_write: float = 0.0  # seconds, the longest single transaction
    outages: int = 0  # times the database became unreachable


class Writer:
    def __init__(
        self,
        store_factory: Callable[[], SqlStore],
        settings: Callable[[], Config],
        live_run_ids: Callable[[], list[str]] = list,
        reopen: Callable[[], None] = lambda: None,
    ):
        self._store_factory = store_factory
        self._settings = settings
        self._live_run_ids = live_run_ids
        self._reopen = reopen
        self._reset_state()

    def _reset_state(self) -> None:
        self._queue: deque[Event] = deque()
        self._counters: set[Counter] = set()
        # Reentrant: a signal handler may flush while this thread is inside flush() already.
        self._cond = threading.Condition(threading.RLock())
        self._wake = False
        self._forced = False  # a flush asked: try the database even while backing off
        self._closing = False  # the process is ending: journal what cannot be written
        self._cycle = 0  # write cycles started
        self._completed = 0  # write cycles finished
        self._in_flight = 0  # events (and counted items) taken and not yet settled
        # Events about a run or subtask not in the database yet: another process's run whose
        # writer has not written it (a worker is quicker than its parent's flush). Retried
        # every cycle until their deadline. (event, deadline on the monotonic clock)
        self._parked: list[tuple[Event, float]] = []
        # The batch inside the current write, and whether an exit flush took it over.
        self._writing: list[Event] | None = None
        self._abandoned = False
        self._deadlines: dict[int, float] = {}  # of the parked events in the current write
        # The SQLite file written to, and the store that opened it.
        self._file_id: tuple[int, int] | None = None
        self._file_store: SqlStore | None = None
        # Held while writing; a fork waits for it, so no child inherits a half-done write.
        self._io_lock = threading.Lock()
        self._paused = False  # pause() holds _io_lock
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._failures = 0  # consecutive failed attempts (an outage while > 0)
        self._retry_at = 0.0
        self._journal: JournalFile | None = None
        self._store: SqlStore | None = None
        self._replayed = False  # waiting journal files replayed since this writer started
        self._last_heartbeat = time.monotonic()
        self._limit = 100_000
        self._warned: set[str] = set()
        self.last_error: BaseException | None = None
        self.stats = WriterStats()

    # ------------------------------------------------------------------ caller side

    def submit(self, event: Event) -> None:
        queue = self._queue
        queue.append(event)
        if self._thread is None or self._pid != os.getpid():
            self._start()
        elif len(queue) > self._limit:
            self._nudge()  # the database is away: let the writer move events to the journal

    def ensure_started(self) -> None:
        """Start the writer thread (it heartbeats live runs) if it is not running."""
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
        """True while something tracked is neither in the database nor in the journal."""
        return (
            bool(self._queue)
            or bool(self._parked)
            or self._in_flight > 0
            or any(c.count != c.written for c in list(self._counters))
        )

    @property
    def queued(self) -> bool:
        """True while events (not counts) wait for the writer."""
        return bool(self._queue)

    @property
    def failing(self) -> bool:
        """True while the database cannot be reached."""
        return self._failures > 0

    def mark_failing(self, exc: BaseException) -> None:
        """A caller found the database unreachable: warn (once per outage) and let the
        writer back off as if it had found out itself."""
        with self._cond:
            if self._failures == 0:
                self._note_failure(exc)

    def _nudge(self) -> None:
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    def flush(self, timeout: float = 60.0, *, closing: bool = False) -> bool:
        """Write everything submitted so far (and the counters' current values); True when
        it is all in the database (or, with ``closing``, in the journal) within ``timeout``.

        ``closing`` (the process is ending): what the database cannot take now is written to
        the journal instead of waiting for the database to come back.
        """
        if not self.pending and not (closing and self._journal is not None):
            return True
        if self._thread is None or self._pid != os.getpid():
            self._start()
        deadline = time.monotonic() + timeout
        with self._cond:
            if closing:
                self._closing = True
                store = self._store
                if store is not None:
                    store.retry_seconds = CLOSING_RETRY_SECONDS
            # The next cycle to start snapshots everything submitted before this call.
            want = self._cycle + 1
            self._wake = self._forced = True
            self._cond.notify_all()
            while self._completed < want:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            else:
                # Written, or (closing) journaled; False while the database is away.
                return not self._failures or (closing and not self._queue)
        if closing:
            # Never wait longer than asked at exit; and never drop what was not written.
            self.abandon()
            return not self._queue
        return False

    def discard_pending(self) -> None:
        """Drop every queued event and counter (after a reset: they belong elsewhere)."""
        self._queue.clear()
        self._counters.clear()
        self._parked.clear()
        self._abandoned = False
        self._in_flight = 0
        self._failures = 0
        self._closing = False
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self._replayed = False

    def new_database(self) -> None:
        """The configuration changed: look for journal files waiting for the new database."""
        self._replayed = False

    def pause(self, timeout: float = PAUSE_TIMEOUT) -> None:
        """Wait (at most ``timeout`` seconds) for a write in progress to finish and hold the
        next one (before a fork). A write stuck on a stalled database is not waited for: a
        forked child drops the parent's writer and connections anyway, so holding writes
        only keeps the parent's batches whole."""
        if threading.current_thread() is not self._thread and not self._paused:
            self._paused = self._io_lock.acquire(timeout=timeout)

    def resume(self) -> None:
        """Let writes go on (in the parent, after a fork)."""
        if self._paused and threading.current_thread() is not self._thread:
            self._paused = False
            self._io_lock.release()

    # ------------------------------------------------------------------ writer thread

    def _start(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's queue is not ours
            self._reset_state()
        # What the writer imports later is imported now, by the starting thread: a flush
        # from a signal handler that interrupted the main thread inside an import would
        # otherwise wait for a writer waiting for that same import lock.
        import tasker.runtime.journal
        import tasker.store.sql  # noqa: F401
        from tasker.runtime.threads import started_without_signals

        thread = threading.Thread(target=self._loop, name="tasker-writer", daemon=True)
        self._thread = thread
        started_without_signals(thread)  # signals go to the program's main thread

    def _wait_time(self) -> float:
        try:
            interval = self._settings().flush_interval
        except Exception:
            interval = 1.0
        if self._failures:
            return max(0.0, min(MAX_BACKOFF, self._retry_at - time.monotonic()))
        return interval

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._wake:
                    self._cond.wait(self._wait_time())
                self._wake = False
                forced, self._forced = self._forced, False
                closing = self._closing
                self._cycle += 1
                mine = self._cycle
            try:
                with self._io_lock:
                    self._write_once(forced or closing, closing)
            except BaseException as exc:  # the writer must outlive any failure
                self._report("tracked events", exc)
            with self._cond:
                self._completed = mine
                self._cond.notify_all()

    def _write_once(self, forced: bool, closing: bool) -> None:
        with contextlib.suppress(Exception):  # no usable configuration: the store says why
            self._limit = self._settings().max_queued
        if self._failures and not forced and time.monotonic() < self._retry_at:
            # Backing off: only keep memory bounded.
            if len(self._queue) > self._limit:
                self._to_journal(with_counters=False)
            return
        if closing and self._failures and not self._answers():
            # Ending during an outage: one last try (the database may be back since the last
            # attempt), then no more waiting for it.
            self._to_journal(with_counters=True)
            return
        heartbeat = self._heartbeat_due()
        if not (self.pending or heartbeat or self._journal is not None or self._journals_waiting()):
            return  # nothing to do: not even a connection
        try:
            store = self._store_factory()
            if self._failures:
                store.ping()
        except Exception as exc:
            self._outage(exc, closing)
            return
        if self._file_moved(store):
            try:
                store = self._store_factory()
            except Exception as exc:
                self._outage(exc, closing)
                return
        self._store = store
        if closing:
            store.retry_seconds = CLOSING_RETRY_SECONDS
        if (not self._replayed or self._journal is not None) and not self._replay(store, closing):
            return
        # Marked in flight before anything is taken: items taken from a counter are in no
        # queue and no counter any more, and a flush (at exit, on SIGTERM) must wait for them.
        self._in_flight = 1
        # Counters first, then the queue: a counter is published only after its start event
        # was queued, so that event is in this drain or an earlier one.
        moved = [(c, c.take()) for c in list(self._counters) if c.count != c.written]
        events = self._drain()
        if self._parked:
            parked, self._parked = self._parked, []
            self._deadlines = {id(e): d for e, d in parked}
            events = [e for e, _ in parked] + events
        queue = self._queue
        pending = _with_counts(events, moved)
        self._in_flight = len(pending)
        if not pending and heartbeat is None:
            self._in_flight = 0
            return
        # Visible to an exit flush that gives up on this write (see abandon()).
        self._writing = pending
        try:
            lost = self._write(store, pending, heartbeat)
        finally:
            self._writing = None
        if self._abandoned:
            # The process is ending and has journaled this batch already; whatever this write
            # did (it may have committed after all) is final.
            self._in_flight = 0
            return
        if lost is not None:
            # The database went away meanwhile: everything goes back, in order, for later.
            queue.extendleft(reversed(pending))
        self._in_flight = 0
        if lost is not None:
            self._outage(lost, closing)

    def _file_moved(self, store: SqlStore) -> bool:
        """Was the SQLite file deleted or replaced since the store opened it? Writes to the
        open connection would go on "succeeding" into a file no one can read any more: the
        store is opened again on the file now at the path (a new one is created)."""
        now = store.file_identity()
        if self._file_store is not store:  # a store opened since: what it opened is the file
            self._file_store, self._file_id = store, now
            return False
        if now == self._file_id:
            return False
        console.problem(
            "tasker: the SQLite database %s was deleted or replaced while this process wrote to "
            "it; writing to the file now at that path (runs started before are not in it)",
            store.config.path,
        )
        self._reopen()
        self._file_store = None
        return True

    def _answers(self) -> bool:
        """Does the database answer now? (Bounded by the drivers' connect timeout.)"""
        try:
            store = self._store_factory()
            store.ping()
        except Exception:
            return False
        return True

    def abandon(self) -> None:
        """The process is ending and the writer did not finish in time (the database stalls,
        or holds a lock): journal everything not confirmed written — the batch the writer is
        stuck on, the queue and the counters' unwritten items — from the calling thread."""
        with self._cond:
            if self._abandoned:
                return
            self._abandoned = True
            stuck = list(self._writing or [])
            self._writing = None
        if stuck:
            self._queue.extendleft(reversed(stuck))
        self._to_journal(with_counters=True, stuck=len(stuck))
        self._in_flight = 0

    def _drain(self) -> list[Event]:
        """Take every queued event, in order (callers may go on appending meanwhile)."""
        events: list[Event] = []
        queue = self._queue
        while True:
            try:
                events.append(queue.popleft())
            except IndexError:
                return events

    def _write(
        self, store: SqlStore, pending: list[Event], heartbeat: tuple[list[str], datetime] | None
    ) -> BaseException | None:
        """Write ``pending`` (and the heartbeat) in one transaction. Returns the error when
        the database is unreachable (then nothing was written). Events the database refuses
        for what they hold are reported and dropped, so one bad event cannot hold up the
        rest."""
        batch = _add_log_files(pending)
        started = time.perf_counter()
        try:
            self._write_batch(store, batch, heartbeat)
        except Exception as exc:
            if self._unreachable(store, exc):
                return exc
            # Refused for what it holds. Text no driver can encode (lone surrogates, NUL) is
            # the usual reason: made storable (only now, so the usual batch costs nothing),
            # the batch is tried again whole; else event by event.
            cleaned, changed = storable(batch)
            if not changed:
                self._one_by_one(store, batch, heartbeat)
            else:
                try:
                    self._write_batch(store, cleaned, heartbeat)
                except Exception as again:
                    if self._unreachable(store, again):
                        return again
                    self._one_by_one(store, cleaned, heartbeat)
                else:
                    self._deadlines = {}
                    self._delivered(len(pending), time.perf_counter() - started)
        else:
            self._deadlines = {}
            self._delivered(len(pending), time.perf_counter() - started)
        if heartbeat is not None:
            self._last_heartbeat = time.monotonic()
        return None

    def _write_batch(
        self, store: SqlStore, batch: list[Event], heartbeat: tuple[list[str], datetime] | None
    ) -> None:
        rest, whole_runs = _whole_runs(batch)
        ops: list[Callable[[], object]] = []
        if whole_runs:
            ops.append(lambda: store.insert_whole_runs(whole_runs))
        ops.extend(_bind(store, e) for e in rest)
        if heartbeat is not None:
            ops.append(lambda: store.heartbeat(*heartbeat))
        store.batch(ops)

    def _one_by_one(
        self,
        store: SqlStore,
        events: list[Event],
        heartbeat: tuple[list[str], datetime] | None,
    ) -> None:
        """A batch failed for what it held: write what can be written, report the rest."""
        deadlines = self._deadlines
        now = time.monotonic()
        for event in events:
            try:
                ev.apply(store, event)
            except (UnknownRunError, UnknownSubtaskError) as exc:
                deadline = deadlines.get(id(event), now + PARK_SECONDS)
                if event[0] != START_RUN and now < deadline and not self._closing:
                    self._parked.append((event, deadline))
                else:
                    self._refused(event, exc)
            except Exception as exc:
                self._refused(event, exc)
        self._deadlines = {}
        if heartbeat is not None:
            try:
                store.heartbeat(*heartbeat)
            except Exception as exc:
                self._report("a heartbeat", exc)
        self.stats.events += len(events)

    def _refused(self, event: Event, exc: BaseException) -> None:
        """The database refused ``event`` for what it holds: reported (once per kind), and
        kept with its reason beside the journal (``rejected/``), never silently dropped."""
        self._report(ev.describe(event), exc)
        try:
            from tasker.runtime.journal import set_aside

            set_aside(self._settings(), [(event, str(exc))])
        except Exception as keep:  # nowhere to keep it: the report above says what was lost
            self._report("a refused event beside the journal", keep)

    def _delivered(self, n: int, seconds: float) -> None:
        stats = self.stats
        stats.writes += 1
        stats.events += n
        stats.slowest_write = max(stats.slowest_write, seconds)
        if self._failures:
            console.problem(
                "tasker reached the database again after %d failed attempts; tracking resumed",
                self._failures,
            )
            self._failures = 0

    def _unreachable(self, store: SqlStore, exc: BaseException) -> bool:
        """Did the write fail because the database is away, rather than for its content?"""
        from tasker.errors import DatabaseError

        if isinstance(exc, DatabaseError) and exc.unavailable:
            return True
        try:
            store.ping()
        except Exception:
            return True
        return False

    def _outage(self, exc: BaseException, closing: bool) -> None:
        self._note_failure(exc)
        if closing:
            self._to_journal(with_counters=True)
        elif len(self._queue) > self._limit:
            self._to_journal(with_counters=False)

    def _note_failure(self, exc: BaseException) -> None:
        self.last_error = exc
        self._failures += 1
        if self._failures == 1:
            self.stats.outages += 1
            console.problem(
                "tasker cannot write to the database (%s); tracking goes on: events are kept and "
                "retried, and saved to the local journal at exit if still undelivered",
                exc,
            )
        try:
            interval = self._settings().flush_interval
        except Exception:  # the configuration itself is what fails
            interval = 1.0
        backoff = min(MAX_BACKOFF, interval * 2 ** min(self._failures - 1, 8))
        self._retry_at = time.monotonic() + backoff * (0.75 + random.random() / 2)

    def _to_journal(self, *, with_counters: bool, stuck: int = 0) -> None:
        """Move every queued event (and, at exit, the counters' unwritten items) to the
        journal file, in order. ``stuck``: how many of them a write that did not finish in
        time held (they are journaled all the same: see abandon())."""
        from tasker.runtime.journal import JournalFile

        events = self._drain()
        if self._parked:
            events = [e for e, _ in self._parked] + events
            self._parked = []
        queue = self._queue
        if with_counters:
            events = _with_counts(events, [(c, c.take()) for c in list(self._counters)])
        if events:
            try:
                if self._journal is None:
                    self._journal = JournalFile(self._settings())
                self._journal.write(_add_log_files(events))
            except Exception as exc:
                # No journal either: keep the events in memory; nothing more can be done.
                queue.extendleft(reversed(events))
                self._report("tracked events to the journal", exc)
                return
            self.stats.journaled += len(events)
        if with_counters and self._journal is not None:
            self._journal.close()
            self._journal = None
            if stuck:
                console.problem(
                    "tasker: the database did not finish a write in time at exit (it stalls or "
                    "holds a lock); %d events it held and %d others were saved to the journal",
                    stuck,
                    self.stats.journaled - stuck,
                )
            console.problem(
                "tasker saved %d undelivered events to the journal; they are written to the "
                "database by the next tasker process that reaches it (or `tasker replay`)",
                self.stats.journaled,
            )

    def _replay(self, store: SqlStore, closing: bool) -> bool:
        """Replay this process's own spilled journal (the database is back) and any left by
        earlier processes; False when the database went away again meanwhile."""
        from tasker.runtime.journal import replay

        if self._journal is not None:
            self._journal.close()
            self._journal = None
        try:
            result = replay(store, self._settings())
        except Exception as exc:
            if self._unreachable(store, exc):
                self._outage(exc, closing)
                return False
            self._report("a journal file", exc)
        else:
            if result.files:
                log.info(
                    "tasker replayed %d journal files (%d events)", result.files, result.events
                )
        self._replayed = True
        return True

    def _journals_waiting(self) -> bool:
        """Journal files wait for this database (checked once per writer)."""
        if self._replayed:
            return False
        from tasker.runtime.journal import pending_files

        try:
            waiting = bool(pending_files(self._settings()))
        except Exception:
            waiting = False
        self._replayed = not waiting
        return waiting

    def _heartbeat_due(self) -> tuple[list[str], datetime] | None:
        try:
            interval = self._settings().heartbeat_interval
        except Exception:
            return None
        if time.monotonic() - self._last_heartbeat < interval:
            return None
        run_ids = self._live_run_ids()
        if not run_ids:
            self._last_heartbeat = time.monotonic()
            return None
        return run_ids, datetime.now(timezone.utc)

    def _report(self, what: str, exc: BaseException) -> None:
        """Log a failure once per kind of event and error, not once per event."""
        self.last_error = exc
        key = f"{what.split(' of ')[0]}:{type(exc).__name__}"
        if key not in self._warned:
            self._warned.add(key)
            console.problem("tasker could not record %s: %s", what, exc)


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


def _bind(store: SqlStore, event: Event) -> Callable[[], object]:
    return lambda: ev.apply(store, event)


def _with_counts(events: list[Event], moved: list[tuple[Counter, int]]) -> list[Event]:
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


def _add_log_files(events: list[Event]) -> list[Event]:
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


def _whole_runs(events: list[Event]) -> tuple[list[Event], list[Any]]:
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
