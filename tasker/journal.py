"""The local journal: events the database could not take, kept on disk until it can.

While the database is away the writer holds events in memory up to ``max_queued``; beyond
that, and for whatever is still undelivered when the process exits, it appends them to a
journal file. Each file belongs to one process and one database (a subfolder per database,
named by a hash of where the database is, never of its password) and starts with a header
line. Files are created readable by their owner only and held under an exclusive lock while
their process writes them, so a replay never takes a file that is still growing.

A replay applies a file's events in order, in one transaction that also records the file's
id in ``journal_replays``: replaying a file twice (two processes at once, or a file whose
deletion failed) changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tasker import events as ev
from tasker.models import ReplayResult

if TYPE_CHECKING:
    from tasker.config import Config
    from tasker.store.sql import SqlStore

if sys.platform != "win32":
    import fcntl

__all__ = ["JournalFile", "ReplayResult", "journal_folder", "pending_files", "replay"]

FORMAT = 1
SUFFIX = ".jsonl"


def database_key(config: Config) -> str:
    """A short, stable name for the database ``config`` points at (no secrets in it)."""
    where = "|".join(
        str(part)
        for part in (
            config.driver,
            config.host,
            config.port,
            config.dbname,
            config.db_schema,
            os.path.abspath(os.path.expanduser(config.path)) if config.path else None,
        )
    )
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def journal_folder(config: Config) -> Path:
    """The folder holding ``config``'s database's journal files."""
    base = Path(config.journal_dir or ".").expanduser()
    return base / database_key(config)


def _lock(fh: IO[Any], *, wait: bool) -> bool:
    if sys.platform == "win32":  # pragma: no cover - no flock: files are not locked
        return True
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


class JournalFile:
    """One process's journal file, appended to and locked while the process lives."""

    def __init__(self, config: Config) -> None:
        from tasker.store.engine import describe_target

        folder = journal_folder(config)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.journal_id = _new_id()
        host = socket.gethostname()
        name = f"{time.time_ns():020d}-{os.getpid()}-{self.journal_id}{SUFFIX}"
        self.path = folder / name
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        _lock(self._fh, wait=True)
        self.pid = os.getpid()
        self.events = 0
        header = {
            "tasker_journal": FORMAT,
            "journal_id": self.journal_id,
            "database": describe_target(config),
            "hostname": host,
            "process_id": self.pid,
            "created": datetime.now(timezone.utc).isoformat(),
        }
        self._write_line(header)

    def _write_line(self, data: Any) -> None:
        self._fh.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")

    def write(self, events: Iterable[ev.Event]) -> int:
        """Append ``events`` and make them durable; returns how many were written."""
        n = 0
        for event in events:
            self._write_line(ev.encode(event))
            n += 1
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.events += n
        return n

    def close(self) -> None:
        """Close the file and release its lock (it may then be replayed); a file that never
        got an event is removed."""
        with contextlib.suppress(OSError):
            if self.events == 0:
                self.path.unlink()
            self._fh.close()


def _new_id() -> str:
    from tasker.ids import new_run_id

    return new_run_id()


def pending_files(config: Config) -> list[Path]:
    """Journal files waiting for ``config``'s database, oldest first."""
    folder = journal_folder(config)
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))
    except OSError:
        return []


def read_file(path: Path) -> tuple[dict[str, Any], list[ev.Event]]:
    """A journal file's header and events. A last line cut short (the process died while
    writing it) is ignored; any other damage is a ValueError naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    complete = lines[:-1]  # whatever follows the last newline was never finished
    if not complete:
        raise ValueError(f"{path}: empty journal file")
    try:
        header = json.loads(complete[0])
    except json.JSONDecodeError:
        raise ValueError(f"{path}: line 1 is not a tasker journal header") from None
    if not isinstance(header, dict) or header.get("tasker_journal") != FORMAT:
        raise ValueError(f"{path}: line 1 is not a tasker journal header")
    events = []
    for number, line in enumerate(complete[1:], start=2):
        try:
            events.append(ev.decode(json.loads(line)))
        except ValueError as exc:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}: line {number}: {exc}") from None
    return header, events


def replay_path(store: SqlStore, path: Path, result: ReplayResult) -> None:
    """Replay one journal file into ``store`` and remove it; see :func:`replay`."""
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 - held for its lock
    except FileNotFoundError:  # replayed and removed by another process just now
        return
    with fh:
        if not _lock(fh, wait=False):
            result.busy += 1
            return
        header, events = read_file(path)
        done = store.replay_journal(
            str(header["journal_id"]),
            header.get("hostname"),
            header.get("process_id"),
            [_bound(store, e) for e in events],
        )
        if done is None:
            result.already += 1
        else:
            result.files += 1
            result.events += done[0]
            result.failed += done[1]
        path.unlink(missing_ok=True)


def _bound(store: SqlStore, event: ev.Event) -> tuple[str, Any]:
    return ev.describe(event), lambda: ev.apply(store, event)


def replay(store: SqlStore, config: Config, paths: Iterable[Path] | None = None) -> ReplayResult:
    """Replay journal files (by default every file waiting for ``config``'s database) in
    order, each exactly once."""
    result = ReplayResult()
    for path in pending_files(config) if paths is None else paths:
        replay_path(store, Path(path), result)
    return result
