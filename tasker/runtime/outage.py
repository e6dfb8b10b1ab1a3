"""The database away (down, locked for long, full, a wrong password): when the writer tries it
again, the one warning an outage gets, and telling a database that is away from one that
refused what it was sent."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tasker.errors import DatabaseError
from tasker.runtime import console
from tasker.runtime.counters import WriterStats

if TYPE_CHECKING:
    from tasker.config import Config
    from tasker.store.sql import SqlStore

__all__ = ["MAX_BACKOFF", "Outage", "answers", "flush_interval", "unreachable"]

# Backoff between attempts while the database is away, in seconds.
MAX_BACKOFF = 30.0


def flush_interval(settings: Callable[[], Config]) -> float:
    try:
        return settings().flush_interval
    except Exception:  # the configuration itself is what fails
        return 1.0


class Outage:
    """Consecutive failed attempts to reach the database: an outage while there are any.

    The first failure logs the only warning of the outage, and the first write that goes
    through after it says tracking resumed. In between, attempts back off exponentially from
    ``flush_interval`` up to :data:`MAX_BACKOFF`, with jitter, so that the processes that lost
    one database do not all come back to it at the same instant.
    """

    def __init__(self, settings: Callable[[], Config], stats: WriterStats):
        self._settings = settings
        self._stats = stats
        self.failures = 0
        self.retry_at = 0.0  # on the monotonic clock

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            self._stats.outages += 1
            console.problem(
                "tasker cannot write to the database (%s); tracking goes on: events are kept and "
                "retried, and saved to the local journal at exit if still undelivered",
                exc,
            )
        backoff = min(MAX_BACKOFF, flush_interval(self._settings) * 2 ** min(self.failures - 1, 8))
        self.retry_at = time.monotonic() + backoff * (0.75 + random.random() / 2)

    def ended(self) -> None:
        """A write went through."""
        if self.failures:
            console.problem(
                "tasker reached the database again after %d failed attempts; tracking resumed",
                self.failures,
            )
            self.failures = 0

    def backing_off(self) -> bool:
        """True until the next attempt is due."""
        return bool(self.failures) and time.monotonic() < self.retry_at

    def wait(self) -> float:
        """Seconds until the next attempt is due."""
        return max(0.0, min(MAX_BACKOFF, self.retry_at - time.monotonic()))


def unreachable(store: SqlStore, exc: BaseException) -> bool:
    """Did the write fail because the database is away, rather than for its content?"""
    if isinstance(exc, DatabaseError) and exc.unavailable:
        return True
    try:
        store.ping()
    except Exception:
        return True
    return False


def answers(store_factory: Callable[[], SqlStore]) -> bool:
    """Does the database answer now? (Bounded by the drivers' connect timeout.)"""
    try:
        store = store_factory()
        store.ping()
    except Exception:
        return False
    return True
