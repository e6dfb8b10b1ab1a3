"""The per-process background writer: the thread, its states, and the callers' side.

Callers never wait on the database for progress: the automatic layer puts discrete events
(run and subtask starts, updates and ends: :mod:`tasker.runtime.events`) on a queue and bumps
plain counters for progress (:mod:`tasker.runtime.counters`). A writer thread wakes every
``flush_interval`` seconds (at once when asked to flush), snapshots the counters that moved,
drains the queue and writes everything in one transaction, with a few multi-row statements
however many runs it holds (:mod:`tasker.runtime.batches`, :mod:`tasker.store.batched`;
what becomes of a batch the database refuses: :mod:`tasker.runtime.delivery`). It also
heartbeats this process's live runs every ``heartbeat_interval``.

Ordering: a subtask is published for counting only after its start event is queued, and
withdrawn before its end event is queued, so the writer never writes progress for a subtask
row that is not there yet.

The writer's states, and why each exists:

- **running**: the thread sleeps until the next cycle is due (or it is nudged) and writes one
  batch under ``_io_lock``. Callers only append to the queue and bump counters; no lock they
  take is held during a write, so a slow or stalled database never slows the tracked code.
- **backing off** (:mod:`tasker.runtime.outage`): the database is away. A batch it could not
  take went back to the queue, in order; until the next attempt is due a cycle only moves
  events beyond ``max_queued`` to the journal (:mod:`tasker.runtime.journal`), so memory stays
  bounded and nothing is lost.
- **flushing**: a caller waits for the first cycle that *starts* after its call, never for
  one already running, which may have drained the queue before the caller's events were in
  it. A flush is forced: someone waits, so the database is tried even while backing off.
- **paused**: ``pause()`` holds ``_io_lock``, so no write is in progress while the process
  forks (a child inheriting a half-done write would inherit a connection in mid-protocol and
  the driver's locks held, for ever) or while a new configuration or a reset replaces the
  store. The wait is bounded (``PAUSE_TIMEOUT``): a write stuck on a stalled database is not
  waited for, since a forked child drops the parent's writer and connections anyway.
- **closing**: the process is ending (atexit, SIGTERM, a pool process's end), and will not be
  there when the database comes back. A busy database is retried only
  ``CLOSING_RETRY_SECONDS`` (a server out of connection slots until shortly before the
  exit's deadline: slots free up as the crowd's other processes end), what it cannot take
  now goes to the journal, and events about runs not in the database yet are no longer
  waited for.
- **abandoned**: the exit's time ran out while a write was stuck on a database that stalls or
  holds a lock. The exiting thread journals everything not confirmed written — the stuck
  batch, the queue, the counters' unwritten items — and the stuck write's outcome is ignored
  from then on; the journal marks the batch in doubt, and its replay asks the database
  whether it committed after all (:mod:`tasker.runtime.repeats`).

Fork: the writer thread does not exist in a child. The recorder's at-fork hook resets the
child's writer (``_reset_state``, also run by ``submit`` when it sees a new PID): the queue,
counters and parked events it inherited are the parent's to write, and its copy of
``_io_lock`` may be held, by the parent's pause.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from tasker.runtime import console
from tasker.runtime.batches import Heartbeat, drain, with_counts
from tasker.runtime.counters import Counter, WriterStats
from tasker.runtime.delivery import Delivery
from tasker.runtime.events import Event
from tasker.runtime.outage import Outage, answers, flush_interval, unreachable
from tasker.runtime.pid import current_pid
from tasker.runtime.spill import Spill

if TYPE_CHECKING:
    from tasker.config import Config
    from tasker.store.sql import SqlStore

# Counter lives in its own module and is still importable from here.
__all__ = ["Counter", "Writer", "WriterStats"]

# How long the last writes retry a busy database when the process is ending. A server out of
# connection slots is retried until shortly before the exit's deadline instead (the journal
# takes what is left then): CLOSING_MARGIN before it.
CLOSING_RETRY_SECONDS = 2.0
CLOSING_MARGIN = 1.0
# The longest a fork (or a configuration change) waits for a write in progress.
PAUSE_TIMEOUT = 5.0


class Writer:
    """This process's background writer (its states: see the module's description)."""

    def __init__(
        self,
        store_factory: Callable[[], SqlStore],
        settings: Callable[[], Config],
        live_run_ids: Callable[[], list[str]] = list,
        reopen: Callable[[], None] = lambda: None,
        opened_store: Callable[[], SqlStore | None] = lambda: None,
    ):
        self._store_factory = store_factory
        self._settings = settings
        self._live_run_ids = live_run_ids
        self._reopen = reopen
        # The process's store if it is open already (opening it is never the linger's job).
        self._opened_store = opened_store
        self._reset_state()

    def _reset_state(self) -> None:
        self._queue: deque[Event] = deque()
        self._counters: set[Counter] = set()
        # Reentrant: a signal handler may flush while this thread is inside flush() already.
        self._cond = threading.Condition(threading.RLock())
        self._wake = False
        # Events with long texts are queued: fit the next batch to the server's limit.
        self._fit_next = False
        self._forced = False  # a flush asked: try the database even while backing off
        self._closing = False  # the process is ending: journal what cannot be written
        self._closing_deadline = 0.0  # the exit's deadline less CLOSING_MARGIN (monotonic)
        self._cycle = 0  # write cycles started
        self._completed = 0  # write cycles finished
        self._in_flight = 0  # events (and counted items) taken and not yet settled
        # The batch inside the current write, and whether an exit flush took it over.
        self._writing: list[Event] | None = None
        self._write_started = 0.0  # when the current write cycle took the I/O lock (0: none)
        self._abandoned = False
        # The SQLite file written to, and the store that opened it.
        self._file_id: tuple[int, int] | None = None
        self._file_store: SqlStore | None = None
        # Held while writing; a fork waits for it, so no child inherits a half-done write.
        self._io_lock = threading.Lock()
        self._paused = False  # pause() holds _io_lock
        self._thread: threading.Thread | None = None
        self._pid = current_pid()
        self._store: SqlStore | None = None
        # When the connection a write left idle is to be closed (connection_linger), on the
        # monotonic clock; 0.0: none is held.
        self._release_at = 0.0
        self._last_heartbeat = time.monotonic()
        self._limit = 100_000
        self._warned: set[str] = set()
        self.last_error: BaseException | None = None
        self.stats = WriterStats()
        self._outage = Outage(self._settings, self.stats)
        self._spill = Spill(self._settings, self.stats)
        # Writes the batches; holds the events about runs not in the database yet (another
        # process's run whose writer has not written it: a worker is quicker than its parent's
        # flush), retried every cycle until their deadline, and the batch in doubt.
        closing, abandoned = (lambda: self._closing), (lambda: self._abandoned)
        self._delivery = Delivery(
            self._settings, self.stats, self._outage, self._report, closing, abandoned
        )

    # ------------------------------------------------------------------ caller side

    def submit(self, event: Event) -> None:
        queue = self._queue
        queue.append(event)
        if self._thread is None or self._pid != current_pid():
            self._start()
        elif len(queue) > self._limit:
            self._nudge()  # the database is away: let the writer move events to the journal

    def submit_long(self, event: Event) -> None:
        """Queue an event whose texts may be more than the server takes in one statement:
        the batch holding it is fitted to the server's limit first (see
        tasker.runtime.storable). Under the lock the writer drains with, so that the batch
        that takes the event is the one fitted."""
        with self._cond:
            self._queue.append(event)
            self._fit_next = True
        if self._thread is None or self._pid != current_pid():
            self._start()
        elif len(self._queue) > self._limit:
            self._nudge()

    def ensure_started(self) -> None:
        """Start the writer thread (it heartbeats live runs) if it is not running."""
        if self._thread is None or self._pid != current_pid():
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
            or bool(self._delivery.parked)
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
        return self._outage.failures > 0

    def mark_failing(self, exc: BaseException) -> None:
        """A caller found the database unreachable: warn (once per outage) and let the
        writer back off as if it had found out itself."""
        with self._cond:
            if self._outage.failures == 0:
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
        if not self.pending and not (closing and self._spill.file is not None):
            return True
        if self._thread is None or self._pid != current_pid():
            self._start()
        deadline = time.monotonic() + timeout
        with self._cond:
            if closing:
                self._closing = True
                self._closing_deadline = deadline - CLOSING_MARGIN
                store = self._store
                if store is not None:
                    # Also shortens the retries of a write in progress.
                    self._closing_bounds(store)
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
                return not self._outage.failures or (closing and not self._queue)
        if closing:
            # Never wait longer than asked at exit; and never drop what was not written.
            self.abandon()
            return not self._queue
        return False

    def stalled(self, after: float) -> bool:
        """True while one write has been in progress for more than ``after`` seconds (the
        database stalls or holds a lock): callers that would wait for it need not."""
        started = self._write_started
        return started > 0 and time.monotonic() - started > after

    def journal_now(self) -> None:
        """Journal, from the calling thread, what is queued and counted but not written.

        For worker processes while the database is away or stalls: a pool may kill its
        workers at any moment (``Pool.terminate()`` on leaving its ``with`` block,
        ``os._exit``), so what a worker tracked must not stay in its memory only. A write in
        progress is left alone (it may still commit; if it fails its events come back to the
        queue, for the next call to journal), and so are the counters then, which only the
        thread holding the I/O lock may take."""
        idle = self._io_lock.acquire(timeout=0.05)
        try:
            self._to_journal(with_counters=idle, at_exit=False)
        finally:
            if idle:
                self._io_lock.release()

    def discard_pending(self) -> None:
        """Drop every queued event and counter (after a reset: they belong elsewhere)."""
        self._queue.clear()
        self._counters.clear()
        self._delivery.take_parked()
        self._delivery.doubt = []
        self._abandoned = False
        self._in_flight = 0
        self._outage.failures = 0
        self._closing = False
        self._spill.close()
        self._spill.replayed = False

    def new_database(self) -> None:
        """The configuration changed: look for journal files waiting for the new database."""
        self._spill.replayed = False

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

    # ------------------------------------------------------------------ writer thread

    def _start(self) -> None:
        if self._pid != current_pid():  # a forked child: the parent's queue is not ours
            self._reset_state()
        # What the writer imports later is imported now, by the starting thread: a flush
        # from a signal handler that interrupted the main thread inside an import would
        # otherwise wait for a writer waiting for that same import lock.
        import tasker.runtime.replaying  # and the journal it reads
        import tasker.store.sql  # noqa: F401
        from tasker.runtime.threads import started_without_signals

        thread = threading.Thread(target=self._loop, name="tasker-writer", daemon=True)
        self._thread = thread
        started_without_signals(thread)  # signals go to the program's main thread

    def _closing_bounds(self, store: SqlStore) -> None:
        store.retry_seconds = CLOSING_RETRY_SECONDS
        store.crowd_deadline = max(time.monotonic(), self._closing_deadline)

    def _wait_time(self) -> float:
        interval = flush_interval(self._settings)
        wait = self._outage.wait() if self._outage.failures else interval
        if self._release_at:  # wake in time to close the lingering connection
            wait = min(wait, max(0.0, self._release_at - time.monotonic()))
        return wait

    def _linger(self) -> None:
        # After each cycle: idle connections close connection_linger after the last write.
        self._release_at = 0.0
        store = self._opened_store() or self._store
        with contextlib.suppress(Exception):  # closing a dead connection may fail
            self._release_at = (store.release_idle_connections() if store else None) or 0.0

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
                    # Connecting, replaying and writing: what a fork or a worker would wait for.
                    self._write_started = time.monotonic()
                    try:
                        self._write_once(forced or closing, closing)
                    finally:
                        self._write_started = 0.0
                    self._linger()
            except BaseException as exc:  # the writer must outlive any failure
                self._report("tracked events", exc)
            with self._cond:
                self._completed = mine
                self._cond.notify_all()

    def _write_once(self, forced: bool, closing: bool) -> None:
        with contextlib.suppress(Exception):  # no usable configuration: the store says why
            self._limit = self._settings().max_queued
        if not forced and self._outage.backing_off():
            # Backing off: only keep memory bounded.
            if len(self._queue) > self._limit:
                self._to_journal(with_counters=False)
            return
        if closing and self._outage.failures and not answers(self._store_factory):
            # Ending during an outage: one last try (the database may be back since the last
            # attempt), then no more waiting for it.
            self._to_journal(with_counters=True)
            return
        heartbeat = self._heartbeat_due()
        spill = self._spill
        if not (self.pending or heartbeat or spill.file is not None or spill.waiting()):
            return  # nothing to do: not even a connection
        try:
            store = self._store_factory()
            if self._outage.failures:
                store.ping()
        except Exception as exc:
            self._outage_found(exc, closing)
            return
        if self._file_moved(store):
            try:
                store = self._store_factory()
            except Exception as exc:
                self._outage_found(exc, closing)
                return
        self._store = store
        if closing:
            self._closing_bounds(store)
        if (not spill.replayed or spill.file is not None) and not self._replay(store, closing):
            return
        # Marked in flight before anything is taken: items taken from a counter are in no
        # queue and no counter any more, and a flush (at exit, on SIGTERM) must wait for them.
        self._in_flight = 1
        # Counters first, then the queue: a counter is published only after its start event
        # was queued, so that event is in this drain or an earlier one. Parked events go
        # first: they are older than anything drained now.
        moved = [(c, c.take()) for c in list(self._counters) if c.count != c.written]
        with self._cond:
            fit, self._fit_next = self._fit_next, False
            events = drain(self._queue)
        parked = self._delivery.retry_parked()
        if parked:
            events = parked + events
        queue = self._queue
        pending = with_counts(events, moved)
        self._in_flight = len(pending)
        if not pending and heartbeat is None:
            self._in_flight = 0
            return
        # Visible to an exit flush that gives up on this write (see abandon()).
        self._writing = pending
        try:
            lost = self._delivery.write(store, pending, heartbeat, fit=fit)
            if lost is None and heartbeat is not None:
                self._last_heartbeat = time.monotonic()
        finally:
            self._writing = None
        if self._abandoned:
            # The process is ending and has journaled this batch already; whatever this write
            # did (it may have committed after all) is final.
            self._in_flight = 0
            return
        if lost is not None:
            # The database went away meanwhile: everything goes back, in order, for later.
            with self._cond:
                queue.extendleft(reversed(pending))
                self._fit_next = self._fit_next or fit
        self._in_flight = 0
        if lost is not None:
            self._outage_found(lost, closing)

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

    def _outage_found(self, exc: BaseException, closing: bool) -> None:
        self._note_failure(exc)
        if closing:
            self._to_journal(with_counters=True)
        elif len(self._queue) > self._limit:
            self._to_journal(with_counters=False)

    def _note_failure(self, exc: BaseException) -> None:
        self.last_error = exc
        self._outage.failed(exc)

    def _to_journal(
        self, *, with_counters: bool, stuck: int = 0, at_exit: bool | None = None
    ) -> None:
        """Move every queued event (and, at exit, the counters' unwritten items) to the
        journal file, in order. ``stuck``: how many of them a write that did not finish in
        time held (they are journaled all the same: see abandon()). ``at_exit`` (default:
        ``with_counters``): the process is ending, so the file is closed and summed up."""
        events = drain(self._queue)
        parked = self._delivery.take_parked()
        if parked:
            events = parked + events
        queue = self._queue
        if with_counters:
            events = with_counts(events, [(c, c.take()) for c in list(self._counters)])
        if events:
            try:
                # Batches that may have committed unseen are marked: their replay asks first.
                self._spill.save(events, self._delivery.units_in_doubt())
                self._delivery.doubt = []
            except Exception as exc:
                # No journal either: keep the events in memory; nothing more can be done.
                queue.extendleft(reversed(events))
                self._report("tracked events to the journal", exc)
                return
        if with_counters if at_exit is None else at_exit:
            self._spill.close_at_exit(stuck)

    def _replay(self, store: SqlStore, closing: bool) -> bool:
        """Replay this process's own spilled journal (the database is back) and any left by
        earlier processes; False when the database went away again meanwhile."""
        self._spill.close()
        try:
            self._spill.replay(store)
        except Exception as exc:
            if unreachable(store, exc):
                self._outage_found(exc, closing)
                return False
            self._report("a journal file", exc)
        self._spill.replayed = True
        return True

    def _heartbeat_due(self) -> Heartbeat | None:
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
