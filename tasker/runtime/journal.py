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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tasker.models import JournalFileReplay, ReplayResult
from tasker.runtime import console
from tasker.runtime import events as ev
from tasker.runtime.storable import fit_event

if TYPE_CHECKING:
    from tasker.config import Config
    from tasker.store.sql import SqlStore

if sys.platform != "win32":
    import fcntl

__all__ = [
    "JournalFile",
    "ReplayResult",
    "journal_folder",
    "pending_files",
    "replay",
    "replay_waiting",
    "set_aside",
]

FORMAT = 1
SUFFIX = ".jsonl"
QUARANTINE = "quarantine"  # damaged, empty and foreign files, moved aside unreplayed
REJECTED = "rejected"  # events the database refused, with the reason
_NEW = ".new"  # a file being created: not a journal yet (no header on disk)
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


def _lock(fh: IO[Any] | int, *, wait: bool) -> bool:
    if sys.platform == "win32":  # pragma: no cover - no flock: files are not locked
        return True
    fd = fh if isinstance(fh, int) else fh.fileno()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _line(data: Any) -> bytes:
    """One journal line. ASCII only: whatever the text holds, encoding cannot fail, and a
    lone surrogate stays a ``\\udce9`` escape (decoded back to the same string)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str)
    return text.encode("ascii") + b"\n"


def _write_all(fd: int, data: bytes) -> None:
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
        creating = self.path if sys.platform == "win32" else folder / (name + _NEW)
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
            _lock(fd, wait=True)
            _write_all(fd, _line(header))
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

    def write(self, events: Iterable[ev.Event]) -> int:
        """Append ``events`` and make them durable; returns how many were written. When
        they cannot all be written (a full disk), none of them stays in the file: the
        OSError is raised and the file ends where it ended before."""
        if self._fd is None:
            raise OSError(f"journal file {self.path} is closed")
        batch = list(events)
        data = b"".join(_line(ev.encode(event)) for event in batch)
        if data:
            fd = self._fd
            end = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
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
class _Parsed:
    header: dict[str, Any]
    events: list[ev.Event]
    lines: list[int]  # each event's line number in the file
    cut: bool  # the last line was cut short (ignored)


def _parse(data: bytes) -> _Parsed:
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
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        try:
            events.append(ev.decode(json.loads(raw.decode("utf-8", "surrogateescape"))))
        except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
            raise Damaged(f"line {number}: {exc}") from None
        numbers.append(number)
    return _Parsed(header, events, numbers, cut=bool(tail.strip()))


def read_file(path: Path) -> tuple[dict[str, Any], list[ev.Event]]:
    """A journal file's header and events. A last line cut short (the process died while
    writing it) is ignored; any other damage is a ValueError (:class:`Damaged`) saying
    what is wrong."""
    parsed = _parse(Path(path).read_bytes())
    return parsed.header, parsed.events


# ---------------------------------------------------------------------------- replaying


def _aside(path: Path, folder: str) -> Path:
    """Where ``path`` goes in the ``folder`` beside it: a name not taken yet."""
    target_dir = path.parent / folder
    target_dir.mkdir(exist_ok=True, mode=0o700)
    target = target_dir / path.name
    for n in range(1, 1000):
        if not target.exists():
            break
        target = target_dir / f"{path.name}.{n}"
    return target


def _quarantine(path: Path, reason: str, result: ReplayResult) -> None:
    if path.parent.name == QUARANTINE:  # named from the quarantine itself: it stays there
        moved = path
    else:
        moved = _aside(path, QUARANTINE)
        os.rename(path, moved)
    result.quarantined += 1
    result.details.append(
        JournalFileReplay(str(path), "quarantined", reason=reason, moved_to=str(moved))
    )


def _not_replayed(path: Path, reason: str, result: ReplayResult) -> None:
    """A file left in place for a later replay, for a reason of this machine's (a full
    disk, a folder that cannot be written)."""
    result.details.append(JournalFileReplay(str(path), "not replayed", reason=reason))
    console.problem(
        "tasker could not replay journal file %s (it stays for later): %s", path, reason
    )


def _write_rejected(path: Path, parsed: _Parsed, refused: list[tuple[int, str]]) -> Path:
    """Keep the events the database refused, each with its reason and line number, in
    ``rejected/<the journal's name>`` (replaced whole: a replay attempt that did not commit
    wrote the same)."""
    folder = path.parent / REJECTED
    folder.mkdir(exist_ok=True, mode=0o700)
    target = folder / path.name
    rows = [
        {
            "tasker_rejected": FORMAT,
            "journal": path.name,
            "journal_id": parsed.header.get("journal_id"),
            "database": parsed.header.get("database"),
            "rejected_at": datetime.now(timezone.utc).isoformat(),
        }
    ]
    for index, reason in refused:
        event = parsed.events[index]
        rows.append(
            {
                "line": parsed.lines[index],
                "what": ev.describe(event),
                "reason": reason,
                "event": ev.encode(event),
            }
        )
    partial = folder / (path.name + _NEW)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, b"".join(_line(row) for row in rows))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, target)
    return target


def _same_file(fh: IO[bytes], path: Path) -> bool:
    """Is ``path`` still the file ``fh`` opened (not replayed and removed meanwhile)?"""
    try:
        return os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
    except OSError:
        return False


def replay_path(store: SqlStore, path: Path, result: ReplayResult) -> None:
    """Replay one journal file into ``store`` and remove it, or quarantine it when it is
    damaged; see :func:`replay`. Raises DatabaseError when the database cannot be
    reached (the file stays for later)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - held for its lock
    except FileNotFoundError:  # replayed and removed by another process just now
        return
    with fh:
        if not _lock(fh, wait=False):
            result.busy += 1
            result.details.append(JournalFileReplay(str(path), "busy"))
            return
        if not _same_file(fh, path):
            return
        try:
            parsed = _parse(fh.read())
        except Damaged as exc:
            try:
                _quarantine(path, exc.reason, result)
            except OSError as err:
                _not_replayed(path, f"{exc.reason}; cannot move it to {QUARANTINE}/: {err}", result)
            return
        header = parsed.header
        refused: list[tuple[int, str]] = []
        kept: list[Path] = []

        def set_aside(rows: list[tuple[int, str]]) -> None:
            refused[:] = rows
            kept[:] = [_write_rejected(path, parsed, rows)]

        hostname = header.get("hostname")
        process_id = header.get("process_id")
        # Journaled before the server's limit was known (the database was away): fitted now.
        budget = store.text_budget()
        try:
            done = store.replay_journal(
                str(header["journal_id"]),
                hostname[:255] if isinstance(hostname, str) else None,
                process_id if type(process_id) is int and 0 <= process_id < 2**31 else None,
                [_bound(store, fit_event(e, budget)[0]) for e in parsed.events],
                set_aside,
            )
        except OSError as err:  # from set_aside: nothing was committed, the file waits
            _not_replayed(path, f"cannot set refused events aside in {REJECTED}/: {err}", result)
            return
        cut = "its last line was cut short and is ignored" if parsed.cut else None
        if done is None:
            result.already += 1
            result.details.append(JournalFileReplay(str(path), "already replayed"))
        else:
            result.files += 1
            result.events += done[0]
            result.failed += done[1]
            moved = str(kept[0]) if kept else None
            result.details.append(
                JournalFileReplay(str(path), "replayed", done[0], done[1], cut, moved)
            )
            if refused:
                _warn_refused(path, parsed, refused, moved)
        path.unlink(missing_ok=True)


def _warn_refused(
    path: Path, parsed: _Parsed, refused: list[tuple[int, str]], moved: str | None
) -> None:
    shown = "; ".join(f"{ev.describe(parsed.events[i])}: {why}" for i, why in refused[:3])
    more = f"; and {len(refused) - 3} more" if len(refused) > 3 else ""
    console.problem(
        "tasker could not replay %d event%s of journal file %s (the database refused %s); "
        "the rest was replayed, the refused events are kept with the reason in %s: %s%s",
        len(refused),
        "" if len(refused) == 1 else "s",
        path.name,
        "it" if len(refused) == 1 else "them",
        moved,
        shown,
        more,
    )


def _bound(store: SqlStore, event: ev.Event) -> tuple[str, Any]:
    return ev.describe(event), lambda: ev.apply(store, event)


def _warn_quarantined(result: ReplayResult, first: int) -> None:
    """One warning naming every file this replay quarantined, where it went and why."""
    moved = [d for d in result.details[first:] if d.outcome == "quarantined"]
    if not moved:
        return
    console.problem(
        "tasker moved %d journal file%s it cannot replay to quarantine (not replayed; the "
        "other files were): %s",
        len(moved),
        "" if len(moved) == 1 else "s",
        "; ".join(f"{d.path} -> {d.moved_to} ({d.reason})" for d in moved),
    )


def replay(store: SqlStore, config: Config, paths: Iterable[Path] | None = None) -> ReplayResult:
    """Replay journal files (by default every file waiting for ``config``'s database) in
    order, each exactly once. A damaged file is quarantined and the others replay; raises
    DatabaseError only when the database cannot be reached (what is left waits)."""
    result = ReplayResult()
    try:
        for path in pending_files(config) if paths is None else paths:
            replay_path(store, Path(path), result)
    finally:
        _warn_quarantined(result, 0)
    return result


def set_aside(config: Config, refused: Iterable[tuple[ev.Event, str]]) -> Path | None:
    """Keep events the database refused outside a replay (the writer's own writes), each
    with its reason, in this process's file in ``rejected/`` of ``config``'s journal folder;
    returns the file (None when there was nothing to keep)."""
    now = datetime.now(timezone.utc).isoformat()
    rows = [
        {
            "what": ev.describe(event),
            "reason": reason,
            "rejected_at": now,
            "event": ev.encode(event),
        }
        for event, reason in refused
    ]
    if not rows:
        return None
    folder = journal_folder(config) / REJECTED
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"writer-{socket.gethostname()}-{os.getpid()}{SUFFIX}"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        _write_all(fd, b"".join(_line(row) for row in rows))
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def replay_waiting(store: SqlStore, config: Config) -> ReplayResult | None:
    """Replay the journal files waiting for ``config``'s database, if any (None when there
    are none: a folder listing, no database access). The reaper's callers do this first:
    a run whose end waits in a journal is not lost."""
    if not pending_files(config):
        return None
    return replay(store, config)
