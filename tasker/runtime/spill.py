"""The writer's side of the journal (:mod:`tasker.runtime.journal`): the one file this process
spills undelivered events to, and the replay of the files waiting for its database.

The file is opened at the first spill, during an outage beyond ``max_queued`` or at exit, and
closed before anything is replayed: a file is replayed only once no process writes it any
more, this process's own included. Waiting files (left by earlier processes, or by this one
before the database came back) are looked for once per writer and database, not per write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tasker.runtime import console
from tasker.runtime.batches import add_log_files
from tasker.runtime.counters import WriterStats
from tasker.runtime.events import Event

if TYPE_CHECKING:
    from tasker.config import Config
    from tasker.runtime.journal import JournalFile
    from tasker.store.sql import SqlStore

__all__ = ["Spill"]

log = logging.getLogger("tasker")


class Spill:
    def __init__(self, settings: Callable[[], Config], stats: WriterStats):
        self._settings = settings
        self._stats = stats
        self.file: JournalFile | None = None
        self.replayed = False  # waiting journal files replayed since the writer started
        # The writer thread and another (Writer.journal_now, an exit's abandon()) may both
        # save, and one close the file while the other writes to it: one at a time.
        self._lock = threading.RLock()

    def save(self, events: list[Event], in_doubt: Sequence[list[Event]] = ()) -> None:
        """Append ``events`` to this process's journal file, in order (raises when no
        journal can take them). ``in_doubt``: batches among them whose write may have
        committed unseen, marked so in the file."""
        from tasker.runtime.journal import JournalFile

        # Which batch in doubt each event belongs to, by position (add_log_files may
        # replace an event by a copy).
        unit = {id(e): k for k, batch in enumerate(in_doubt) for e in batch}
        units = [unit.get(id(e)) for e in events] if unit else None
        with self._lock:
            if self.file is None:
                self.file = JournalFile(self._settings())
            self.file.write(add_log_files(events), units)
            self._stats.journaled += len(events)

    def close(self) -> None:
        with self._lock:
            if self.file is not None:
                self.file.close()
                self.file = None

    def close_at_exit(self, stuck: int) -> None:
        """The process is ending: close the file and say what it holds. ``stuck``: how many
        of the events a write that did not finish in time held."""
        with self._lock:
            if self.file is None:
                return
            self.close()
            journaled = self._stats.journaled
        if stuck:
            console.problem(
                "tasker: the database did not finish a write in time at exit (it stalls or "
                "holds a lock); %d events it held and %d others were saved to the journal",
                stuck,
                journaled - stuck,
            )
        console.problem(
            "tasker saved %d undelivered events to the journal; they are written to the "
            "database by the next tasker process that reaches it (or `tasker replay`)",
            journaled,
        )

    def replay(self, store: SqlStore) -> None:
        """Replay the waiting journal files, this process's own included (close it first)."""
        from tasker.runtime.replaying import replay

        result = replay(store, self._settings())
        if result.files:
            log.info("tasker replayed %d journal files (%d events)", result.files, result.events)

    def waiting(self) -> bool:
        """Journal files wait for this database (checked once per writer)."""
        if self.replayed:
            return False
        from tasker.runtime.journal import pending_files

        try:
            waiting = bool(pending_files(self._settings()))
        except Exception:
            waiting = False
        self.replayed = not waiting
        return waiting
