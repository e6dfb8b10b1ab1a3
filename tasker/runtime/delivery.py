"""Delivering one batch of the writer to the database, and what becomes of a batch it refuses.

A batch is written in one transaction. When that fails, the first question is whether the
database is away (:func:`tasker.runtime.outage.unreachable`): then nothing was written, and
the whole batch goes back to the writer's queue, in order, for the next attempt. Otherwise
the database refused the batch for what it holds, and one bad event must not hold up the
others, now or on every later attempt:

1. Values are made storable before they are queued (:mod:`tasker.runtime.storable`), and a
   batch holding long texts is fitted to the server's limit before it is written; a value
   that still reaches the database unfitted (text no driver can encode, wider than its
   column, beyond ``max_allowed_packet``) would be the reason. The batch is made storable
   and written whole again; when nothing in it needed that, this retry is skipped, as it
   would only fail the same way.
2. Still refused: each event is written on its own, so that everything that can be written
   is. An event about a run or subtask that is not in the database *yet* is parked (another
   process's writer may not have written that run: a pool worker is often quicker than its
   parent's next flush) and goes first in the next batches, until ``PARK_SECONDS`` after it
   was first parked. Any other event refused, a parked one past its deadline, or one the
   process can no longer wait for (it is ending) is reported once per kind and set aside with
   the reason beside the journal (``rejected/``): kept, never silently dropped, and never
   retried for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tasker.errors import UnknownRunError, UnknownSubtaskError
from tasker.runtime import events as ev
from tasker.runtime.batches import BatchAbandoned, Heartbeat, add_log_files, write_batch
from tasker.runtime.capture.process import process_info
from tasker.runtime.counters import WriterStats
from tasker.runtime.events import START_RUN, Event
from tasker.runtime.outage import Outage, unreachable
from tasker.runtime.repeats import Origin, batch_committed, recorded_already
from tasker.runtime.storable import fit_batch

if TYPE_CHECKING:
    from tasker.config import Config
    from tasker.store.sql import SqlStore

__all__ = ["PARK_SECONDS", "Delivery"]

# How long an event about a run or subtask that is not in the database yet waits for it (its
# owner's writer may not have written it yet) before it is reported and dropped.
PARK_SECONDS = 30.0


class Delivery:
    """Writes the writer's batches, and keeps the events parked for runs not written yet.

    Batches are written by the writer thread; ``parked`` is also read, and emptied, by the
    threads that flush, journal at exit or reset the writer."""

    def __init__(
        self,
        settings: Callable[[], Config],
        stats: WriterStats,
        outage: Outage,
        report: Callable[[str, BaseException], None],
        closing: Callable[[], bool],
        abandoned: Callable[[], bool] = lambda: False,
    ):
        self._settings = settings
        self._stats = stats
        self._outage = outage
        self._report = report
        self._closing = closing
        self._abandoned = abandoned
        # (event, deadline on the monotonic clock), in the order they were parked.
        self.parked: list[tuple[Event, float]] = []
        # The deadlines of the parked events in the batch being written, by id(event).
        self._deadlines: dict[int, float] = {}
        # The last batch whose COMMIT went out and whose answer was lost with the connection:
        # it may have committed. Its events are back in the writer's queue (or in the
        # journal, marked), and are not written again before the database says which.
        self.doubt: list[Event] = []
        # The batch being written now, and whether its COMMIT may have gone out: then it is
        # in doubt too, should the exit give up on the write.
        self.writing: list[Event] = []
        self._committing = False

    def retry_parked(self) -> list[Event]:
        """The parked events, to go first in the next batch; each keeps its deadline."""
        if not self.parked:
            return []
        parked, self.parked = self.parked, []
        self._deadlines = {id(e): d for e, d in parked}
        return [e for e, _ in parked]

    def take_parked(self) -> list[Event]:
        """The parked events, no longer waited for (to the journal)."""
        parked, self.parked = self.parked, []
        return [e for e, _ in parked]

    def write(
        self,
        store: SqlStore,
        pending: list[Event],
        heartbeat: Heartbeat | None,
        *,
        fit: bool = False,
    ) -> BaseException | None:
        """Write ``pending`` (and the heartbeat) in one transaction. Returns the error when
        the database is unreachable: the batch goes back to the writer's queue, and is in
        doubt (``doubt``) when the answer to its COMMIT was lost. Refused events are dealt
        with here (see the module's description). ``fit``: the batch may hold more text
        than the server takes in one statement, and is fitted to its limit first.

        A batch in doubt found committed is taken out of ``pending`` (in place: what is
        left of it is what the writer takes back should this write fail too)."""
        if self.doubt:
            lost = self._settle_doubt(store, pending)
            if lost is not None:
                return lost
            if not pending and heartbeat is None:
                return None
        self.writing = pending
        try:
            lost = self._write(store, pending, heartbeat, fit)
        finally:
            self.writing, self._committing = [], False
        if getattr(lost, "in_doubt", False):  # a COMMIT whose answer was lost
            self.doubt = pending
        return lost

    def units_in_doubt(self) -> list[list[Event]]:
        """The batches whose write may have committed unseen, each one transaction (for the
        journal, which marks them: :mod:`tasker.runtime.repeats`)."""
        writing = self.writing if self._committing else []
        return [unit for unit in (self.doubt, writing) if unit]

    def _given_up(self) -> bool:
        """The batch write's last question before its COMMIT: has the exit given up on this
        write (it then rolls back)? Marked as committing first, so that an exit giving up
        at this very moment either sees the mark (and journals the batch as in doubt) or is
        seen here."""
        self._committing = True
        if self._abandoned():
            self._committing = False
            return True
        return False

    def _settle_doubt(self, store: SqlStore, pending: list[Event]) -> BaseException | None:
        """Before the batch in doubt goes again: was it committed after all? Then none of
        it is written again (not even its progress, which would count twice)."""
        doubt = self.doubt
        try:
            committed = batch_committed(store, doubt, _writer())
        except Exception as exc:
            if unreachable(store, exc):
                return exc  # still away: still in doubt
            committed = False  # no answer to go by: written again (see tasker.runtime.repeats)
        self.doubt = []
        if committed:
            done = {id(e) for e in doubt}
            before = len(pending)
            pending[:] = [e for e in pending if id(e) not in done]
            self._stats.events += before - len(pending)
        return None

    def _write(
        self, store: SqlStore, pending: list[Event], heartbeat: Heartbeat | None, fit: bool
    ) -> BaseException | None:
        batch = add_log_files(pending)
        started = time.perf_counter()

        def asked(events: list[Event]) -> Callable[[], bool]:
            return lambda: batch_committed(store, events, _writer())

        apart: set[str] = set()
        if fit:
            try:
                batch, apart = fit_batch(batch, store.text_budget())
            except Exception as exc:
                if unreachable(store, exc):
                    return exc
                self._report("the server's limit on a statement", exc)
        try:
            write_batch(
                store, batch, heartbeat, apart, abandoned=self._given_up, committed=asked(batch)
            )
        except BatchAbandoned as exc:
            return exc  # rolled back: the journal has the events
        except Exception as exc:
            if unreachable(store, exc):
                return exc
            # Made storable only now (escaped, cut to the columns and the server's limit),
            # so the usual batch costs nothing; not again when it was already.
            cleaned = batch
            if not fit:
                try:
                    cleaned, apart = fit_batch(batch, store.text_budget())
                except Exception as again:
                    if unreachable(store, again):
                        return again
            if all(c is b for c, b in zip(cleaned, batch, strict=True)):
                self._one_by_one(store, batch, heartbeat)
            else:
                try:
                    write_batch(
                        store,
                        cleaned,
                        heartbeat,
                        apart,
                        abandoned=self._given_up,
                        committed=asked(cleaned),
                    )
                except BatchAbandoned as again:
                    return again
                except Exception as again:
                    if unreachable(store, again):
                        return again
                    self._one_by_one(store, cleaned, heartbeat)
                else:
                    self._deadlines = {}
                    self._delivered(len(pending), time.perf_counter() - started)
        else:
            self._deadlines = {}
            self._delivered(len(pending), time.perf_counter() - started)
        return None

    def _one_by_one(
        self, store: SqlStore, events: list[Event], heartbeat: Heartbeat | None
    ) -> None:
        """A batch failed for what it held: write what can be written, report the rest.

        Each write is tried once (waiting at most the lock timeout), not retried for the
        store's ``retry_seconds``: one that meets a lock waits, with the events after it, for
        the next batch, and a batch of events that each met the lock would otherwise hold the
        writer for a minute per event."""
        self._committing = False  # each event is its own transaction now: no batch in doubt
        with store.retrying(0.0):
            if not self._each(store, events):
                return  # the exit journaled the batch: what is left here is its to replay
        if heartbeat is not None:
            try:
                store.heartbeat(*heartbeat)
            except Exception as exc:
                self._report("a heartbeat", exc)
        self._stats.events += len(events)

    def _each(self, store: SqlStore, events: list[Event]) -> bool:
        """Write ``events`` one by one; False when the exit abandoned them meanwhile."""
        deadlines = self._deadlines
        now = time.monotonic()
        for index, event in enumerate(events):
            if self._abandoned():
                return False
            try:
                ev.apply(store, event)
            except (UnknownRunError, UnknownSubtaskError) as exc:
                deadline = deadlines.get(id(event), now + PARK_SECONDS)
                if event[0] != START_RUN and now < deadline and not self._closing():
                    self.parked.append((event, deadline))
                else:
                    self._refused(event, exc)
            except Exception as exc:
                if not unreachable(store, exc):
                    # A batch written again after a commit its process did not see (the
                    # connection dropped during it) is refused for being there already.
                    if not recorded_already(store, event, _writer()):
                        self._refused(event, exc)
                    continue
                # Not judged at all: a lock or statement timeout, the database gone since the
                # batch failed. This event and every one after it wait, in their order, for
                # the next batch (parked events go first; at exit, to the journal) — setting
                # them aside would lose runs the database never looked at.
                self.parked.extend(
                    (e, deadlines.get(id(e), now + PARK_SECONDS)) for e in events[index:]
                )
                break
        self._deadlines = {}
        return True

    def _refused(self, event: Event, exc: BaseException) -> None:
        """The database refused ``event`` for what it holds: reported (once per kind), and
        kept with its reason beside the journal (``rejected/``), never silently dropped."""
        self._report(ev.describe(event), exc)
        try:
            from tasker.runtime.replaying import set_aside

            set_aside(self._settings(), [(event, str(exc))])
        except Exception as keep:  # nowhere to keep it: the report above says what was lost
            self._report("a refused event beside the journal", keep)

    def _delivered(self, n: int, seconds: float) -> None:
        stats = self._stats
        stats.writes += 1
        stats.events += n
        stats.slowest_write = max(stats.slowest_write, seconds)
        self._outage.ended()


def _writer() -> Origin:
    """This process, as its runs record it (who wrote an event: tasker.runtime.repeats)."""
    info = process_info()
    return info.hostname, info.process_id
