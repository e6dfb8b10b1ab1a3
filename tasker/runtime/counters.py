"""Counting without a lock on the hot path: the live item counts of loops and subtask handles
(:class:`Counter`), and the tallies of what the background writer did (:class:`WriterStats`).
"""

from __future__ import annotations

import dataclasses
import threading

__all__ = ["Counter", "WriterStats"]


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
