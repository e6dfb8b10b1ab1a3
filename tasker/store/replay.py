"""Journal replay: a journal file's events applied in one transaction, exactly once per file,
setting aside the operations the database refuses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import SQLAlchemyError

from tasker.config import Config
from tasker.errors import DatabaseError
from tasker.store.core import StoreCore
from tasker.store.engine import refused_for_size, wrap_db_error
from tasker.store.errors import is_unavailable

__all__ = ["JournalReplay"]

# How many times a journal replay starts again after its connection was lost for another
# reason than a value's size (a dropped connection) before it gives up for now.
_REPLAY_RECONNECTS = 3


class _ConnectionLost(Exception):
    """A journal replay lost its connection (and its transaction) at one operation."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _reason(exc: BaseException, config: Config) -> str:
    """Why the database refused a replayed operation, in one line without secrets."""
    if isinstance(exc, SQLAlchemyError):
        return str(wrap_db_error(exc, config, "writing it"))
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class JournalReplay(StoreCore):
    """Replays journal files, each at most once (the journal_replays table)."""

    def replay_journal(
        self,
        journal_id: str,
        hostname: str | None,
        process_id: int | None,
        operations: Sequence[tuple[str, Callable[[], object], Callable[[], bool]]],
        set_aside: Callable[[list[tuple[int, str]]], None] | None = None,
    ) -> tuple[int, int, int] | None:
        """Apply a journal file's ``(what, operation, recorded)`` triples in one transaction
        that also records ``journal_id``; None when that file was replayed before. Returns
        (operations written, operations the database held already, operations refused).

        An operation the database refuses is rolled back alone (a savepoint) and the rest go
        on. ``recorded`` is then asked, on the same transaction, whether the database holds
        what the operation records already (a write whose outcome its process never saw
        committed it): such an operation is counted apart, not refused. One that makes
        MySQL/MariaDB drop the connection for its size (beyond ``max_allowed_packet``, which
        takes the whole transaction with it) is left out of a new attempt of the file.
        ``set_aside`` gets the refused operations, as (index in ``operations``, reason),
        before the transaction commits: when it raises, nothing is committed."""
        marks = self.t.journal_replays
        skipped: dict[int, str] = {}  # index -> why: refused for its size (MySQL/MariaDB)

        def seen(conn: Connection) -> bool:
            found = conn.execute(
                select(marks.c.journal_id).where(marks.c.journal_id == journal_id)
            ).first()
            return found is not None

        def apply(conn: Connection) -> tuple[int, int, int] | None:
            self._local.task_ids = {}
            if seen(conn):
                return None
            conn.execute(
                marks.insert(),
                {
                    "journal_id": journal_id,
                    "hostname": hostname,
                    "process_id": process_id,
                    "events": len(operations),
                    "replayed_at": datetime.now(timezone.utc),
                },
            )
            written = repeated = 0
            refused: list[tuple[int, str]] = []
            task_ids: dict[Any, int] = self._local.task_ids
            self._local.conn = conn
            try:
                for index, (_what, operation, recorded) in enumerate(operations):
                    if index in skipped:
                        refused.append((index, skipped[index]))
                        continue
                    known = len(task_ids)
                    try:
                        with conn.begin_nested():
                            operation()
                        written += 1
                    except Exception as exc:  # whatever the value: set aside, never blocking
                        if conn.invalidated:
                            raise _ConnectionLost(index, exc) from exc
                        if is_unavailable(exc):
                            # A lock or statement timeout, a full disk: the database did
                            # not judge the event. The whole file waits (rolled back,
                            # retried, else left for a later replay), none set aside.
                            raise
                        for key in list(task_ids)[known:]:  # rolled back with it
                            del task_ids[key]
                        if recorded():
                            repeated += 1
                        else:
                            refused.append((index, _reason(exc, self.config)))
            finally:
                self._local.conn = None
            if refused and set_aside is not None:
                set_aside(refused)
            return written, repeated, len(refused)

        dropped = 0  # connections lost for another reason than a value's size
        while True:  # each round skips one more operation, or counts a lost connection
            try:
                done = self._run("replaying a journal file", apply)
            except _ConnectionLost as lost:
                why = refused_for_size(lost.error, self.config, self.engine)
                if why is not None and lost.index not in skipped:
                    skipped[lost.index] = why
                    continue
                dropped += 1
                if dropped < _REPLAY_RECONNECTS:
                    continue
                raise wrap_db_error(lost.error, self.config, "replaying a journal file") from None
            except DatabaseError:
                # Another process replayed the same file at the same moment and won.
                if self._run("reading replayed journals", seen, write=False):
                    return None
                raise
            break
        with self._lock:
            self._task_ids.update(self._local.task_ids)
        return done
