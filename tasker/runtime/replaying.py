"""Replaying journal files (:mod:`tasker.runtime.journal` holds their format): each file
applied in order, in one transaction, exactly once; damaged files quarantined, events the
database refuses set aside with the reason, batches in doubt asked about first
(:mod:`tasker.runtime.repeats`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tasker.models import JournalFileReplay, ReplayResult
from tasker.runtime import console
from tasker.runtime import events as ev
from tasker.runtime.journal import (
    FORMAT,
    NEW_SUFFIX,
    QUARANTINE,
    REJECTED,
    SUFFIX,
    Damaged,
    Parsed,
    journal_folder,
    json_line,
    lock_file,
    parse,
    pending_files,
    write_all,
)
from tasker.runtime.repeats import Origin, batch_committed, recorded_already
from tasker.runtime.storable import fit_event

if TYPE_CHECKING:
    from tasker.config import Config
    from tasker.store.sql import SqlStore

__all__ = ["ReplayResult", "replay", "replay_path", "replay_waiting", "set_aside"]


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


def _write_rejected(path: Path, parsed: Parsed, refused: list[tuple[int, str]]) -> Path:
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
    partial = folder / (path.name + NEW_SUFFIX)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, b"".join(json_line(row) for row in rows))
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
        if not lock_file(fh, wait=False):
            result.busy += 1
            result.details.append(JournalFileReplay(str(path), "busy"))
            return
        if not _same_file(fh, path):
            return
        try:
            parsed = parse(fh.read())
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
            rows = [(keep[i], why) for i, why in rows]  # indexes in the file's events
            refused[:] = rows
            kept[:] = [_write_rejected(path, parsed, rows)]

        hostname = header.get("hostname")
        process_id = header.get("process_id")
        # Journaled before the server's limit was known (the database was away): fitted now.
        budget = store.text_budget()
        writer: Origin = (
            hostname if isinstance(hostname, str) else None,
            process_id if type(process_id) is int else None,
        )
        # A batch in doubt that the database holds already is not replayed at all (its
        # progress would count twice): see tasker.runtime.repeats.
        keep, held = _not_written(store, parsed, writer)
        try:
            done = store.replay_journal(
                str(header["journal_id"]),
                hostname[:255] if isinstance(hostname, str) else None,
                process_id if type(process_id) is int and 0 <= process_id < 2**31 else None,
                [_bound(store, fit_event(parsed.events[i], budget)[0], writer) for i in keep],
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
            written, repeated, failed = done
            repeated += held
            result.files += 1
            result.events += written
            result.recorded += repeated
            result.failed += failed
            moved = str(kept[0]) if kept else None
            result.details.append(
                JournalFileReplay(str(path), "replayed", written, failed, cut, moved, repeated)
            )
            if refused:
                _warn_refused(path, parsed, refused, moved)
        path.unlink(missing_ok=True)


def _not_written(store: SqlStore, parsed: Parsed, writer: Origin) -> tuple[list[int], int]:
    """The indexes of the events to replay: all but those of the batches in doubt that were
    committed after all; and how many those held. Raises when the database cannot be
    asked (the file waits)."""
    skip: set[int] = set()
    for at, count in parsed.doubt:
        if batch_committed(store, parsed.events[at : at + count], writer):
            skip.update(range(at, at + count))
    return [i for i in range(len(parsed.events)) if i not in skip], len(skip)


def _warn_refused(
    path: Path, parsed: Parsed, refused: list[tuple[int, str]], moved: str | None
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


def _bound(
    store: SqlStore, event: ev.Event, writer: Origin
) -> tuple[str, Callable[[], object], Callable[[], bool]]:
    return (
        ev.describe(event),
        lambda: ev.apply(store, event),
        lambda: recorded_already(store, event, writer),
    )


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
        write_all(fd, b"".join(json_line(row) for row in rows))
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
