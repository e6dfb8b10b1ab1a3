"""The local journal: events the database could not take, kept on disk until it can.

While the database is away the writer holds events in memory up to ``max_queued``; beyond
that, and for whatever is still undelivered when the process exits, it appends them to a
journal file. Each file belongs to one process and one database (a subfolder per database,
named by a hash of where the database is, never of its password) and starts with a header
line. Files are created readable by their owner only and held under an exclusive lock while
their process writes them, so a replay never takes a file that is still growing.

The format is one JSON line per event, pure ASCII (lone surrogates from a non-UTF-8 argv,
NUL and every other character are ``\\u`` escapes, so encoding never fails), each batch
written whole and fsync'd: a crash or a full disk leaves every earlier line readable, and a
batch that could not be written whole is cut off again. A file appears under its final name
only once its header is on disk.

A replay applies a file's events in order, in one transaction that also records the file's
id in ``journal_replays``: replaying a file twice (two processes at once, or a file whose
deletion failed) changes nothing. No file blocks the others:

- a last line cut short (the process died while writing it) is ignored;
- a damaged, empty or foreign file (not a tasker journal) is moved, unreplayed, to the
  ``quarantine/`` folder beside it, named in one warning with the reason;
- its events are made storable for the database first (:mod:`tasker.runtime.storable`:
  text cut to the columns and to what the server takes in one statement, e.g. MySQL/MariaDB's
  ``max_allowed_packet``); an event the database refuses all the same is set aside with
  the reason in a file of the same name in the ``rejected/`` folder beside it, and the rest
  of its file replays.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tasker.runtime import events as ev

if TYPE_CHECKING:
    from tasker.config import Config

if sys.platform != "win32":
    import fcntl

__all__ = [
    "DOUBT",
    "Damaged",
    "JournalFile",
    "journal_folder",
    "parse",
    "pending_files",
    "read_file",
]

FORMAT = 1
SUFFIX = ".jsonl"
QUARANTINE = "quarantine"  # damaged, empty and foreign files, moved aside unreplayed
REJECTED = "rejected"  # events the database refused, with the reason
NEW_SUFFIX = ".new"  # a file being created: not a journal yet (no header on disk)
DOUBT = "tasker_in_doubt"  # a line marking the next n events as a batch in doubt
_JOURNAL_ID_MAX = 36  # journal_replays.journal_id


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


def lock_file(fh: IO[Any] | int, *, wait: bool) -> bool:
    if sys.platform == "win32":  # pragma: no cover - no flock: files are not locked
        return True
    fd = fh if isinstance(fh, int) else fh.fileno()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def json_line(data: Any) -> bytes:
    """One journal line. ASCII only: whatever the text holds, encoding cannot fail, and a
    lone surrogate stays a ``\\udce9`` escape (decoded back to the same string)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str)
    return text.encode("ascii") + b"\n"


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # each round writes at least one byte, or raises
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - regular files never do this
            raise OSError("the journal file takes no more bytes")
        view = view[written:]


def _sync_folder(folder: Path) -> None:
    """Make a new name in ``folder`` durable (where the system allows it)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
        # Made under a name no replay looks at, locked, given its header, then renamed: a
        # replay never finds it empty or unlocked while its process lives.
        # (Windows cannot rename an open file; there files are not locked either.)
        creating = self.path if sys.platform == "win32" else folder / (name + NEW_SUFFIX)
        fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
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
        try:
            lock_file(fd, wait=True)
            write_all(fd, json_line(header))
            os.fsync(fd)
            if creating != self.path:
                os.rename(creating, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                creating.unlink()
            raise
        self._fd: int | None = fd
        _sync_folder(folder)

    def write(self, events: Iterable[ev.Event], units: Sequence[int | None] | None = None) -> int:
        """Append ``events`` and make them durable; returns how many were written. When
        they cannot all be written (a full disk), none of them stays in the file: the
        OSError is raised and the file ends where it ended before. ``units``: for each
        event, which batch in doubt it belongs to (None: none), marked in the file."""
        if self._fd is None:
            raise OSError(f"journal file {self.path} is closed")
        batch = list(events)
        if units is None:
            data = b"".join(json_line(ev.encode(event)) for event in batch)
        else:
            data = _with_doubt_marks(batch, units)
        if data:
            fd = self._fd
            end = os.fstat(fd).st_size
            try:
                write_all(fd, data)
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end)  # no half batch, no cut line in the middle
                raise
        self.events += len(batch)
        return len(batch)

    def close(self) -> None:
        """Close the file and release its lock (it may then be replayed); a file that never
        got an event is removed."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if self.events == 0:
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(fd)


def _with_doubt_marks(events: list[ev.Event], units: Sequence[int | None]) -> bytes:
    """The lines of ``events``, each run of events of one batch in doubt preceded by a line
    ``{"tasker_in_doubt": n}``: the next n events were one write whose outcome its process
    never learned (written whole or not at all)."""
    parts: list[bytes] = []
    i = 0
    while i < len(events):
        unit = units[i]
        j = i + 1
        while j < len(events) and unit is not None and units[j] == unit:
            j += 1
        if unit is not None:
            parts.append(json_line({DOUBT: j - i}))
        parts.extend(json_line(ev.encode(e)) for e in events[i:j])
        i = j
    return b"".join(parts)


def _new_id() -> str:
    from tasker.runtime.ids import new_run_id

    return new_run_id()


def pending_files(config: Config) -> list[Path]:
    """Journal files waiting for ``config``'s database, oldest first."""
    folder = journal_folder(config)
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX) and p.is_file())
    except OSError:
        return []


# ---------------------------------------------------------------------------- reading


class Damaged(ValueError):
    """A journal file that cannot be replayed at all (it is quarantined): ``reason`` says
    why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Parsed:
    header: dict[str, Any]
    events: list[ev.Event]
    lines: list[int]  # each event's line number in the file
    cut: bool  # the last line was cut short (ignored)
    # Batches whose write may have committed unseen: (index of the first event, count).
    doubt: list[tuple[int, int]] = field(default_factory=list)


def parse(data: bytes) -> Parsed:
    """A journal file's content; Damaged when it is not a tasker journal, or a line other
    than a cut last one cannot be read. Bytes that are not UTF-8 (a file written by
    something else, a damaged disk) are kept as lone surrogates, stored as escapes."""
    if not data:
        raise Damaged("empty file (nothing was written to it: a crash or a full disk)")
    lines = data.split(b"\n")
    tail = lines.pop()  # whatever follows the last newline was never finished
    if not lines:
        raise Damaged("no complete line (cut short before its header was written)")
    try:
        header = json.loads(lines[0].decode("utf-8", "surrogateescape"))
    except ValueError:
        header = None
    if not isinstance(header, dict) or "tasker_journal" not in header:
        raise Damaged("not a tasker journal (line 1 is not a tasker journal header)")
    if header["tasker_journal"] != FORMAT:
        raise Damaged(
            f"journal format {header['tasker_journal']!r}: this tasker reads format {FORMAT}"
        )
    journal_id = header.get("journal_id")
    if not isinstance(journal_id, str) or not 0 < len(journal_id) <= _JOURNAL_ID_MAX:
        raise Damaged(f"line 1: the header has no valid journal id ({journal_id!r})")
    events: list[ev.Event] = []
    numbers: list[int] = []
    doubt: list[tuple[int, int]] = []
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        try:
            item: Any = json.loads(raw.decode("utf-8", "surrogateescape"))
            if isinstance(item, dict) and DOUBT in item:
                count = item[DOUBT]
                if type(count) is not int or count < 1:
                    raise ValueError(f"{DOUBT} must be a positive count of events, not {count!r}")
                doubt.append((len(events), count))
                continue
            events.append(ev.decode(item))
        except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
            raise Damaged(f"line {number}: {exc}") from None
        numbers.append(number)
    # A batch is written whole: a mark counting more events than follow it was cut short
    # with the file's last line.
    doubt = [(at, min(n, len(events) - at)) for at, n in doubt if at < len(events)]
    return Parsed(header, events, numbers, cut=bool(tail.strip()), doubt=doubt)


def read_file(path: Path) -> tuple[dict[str, Any], list[ev.Event]]:
    """A journal file's header and events. A last line cut short (the process died while
    writing it) is ignored; any other damage is a ValueError (:class:`Damaged`) saying
    what is wrong."""
    parsed = parse(Path(path).read_bytes())
    return parsed.header, parsed.events
