"""Local state of runs tracked from a shell script (``tasker start`` … ``tasker complete``).

Each ``tasker`` command is a process of its own, and a shell script using ``set -e`` must not
stop because the database is away. So the subtask numbers of a shell run are kept here, in a
small file per run on this machine, and never asked of the database: ``tasker subtask start``
numbers the next subtask at once (and the other subtask commands know the current one) while
the events themselves wait in the journal for the database.

The file holds two numbers, "last current": the highest subtask number given out, and the
subtask the run is in now. Commands of one script may run at once (``cmd &``), so each
read-and-update holds an exclusive lock on the file.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tasker.config import user_state_dir

__all__ = [
    "current_subtask",
    "forget",
    "next_subtask",
    "note_subtask",
    "remember",
    "with_prefix",
]

# Files of runs a script never ended are removed after this long.
KEEP_SECONDS = 30 * 24 * 3600


def _folder() -> Path:
    return user_state_dir() / "shell-runs"


def _path(run_id: str) -> Path:
    return _folder() / str(uuid.UUID(run_id))  # a UUID: never a path of its own


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: one command at a time
            pass
        yield fd
    finally:
        os.close(fd)


def _read(fd: int) -> tuple[int, int | None]:
    os.lseek(fd, 0, os.SEEK_SET)
    parts = os.read(fd, 100).split()
    try:
        last = int(parts[0])
        current = int(parts[1]) if len(parts) > 1 and parts[1] != b"-" else None
    except (IndexError, ValueError):
        return 0, None
    return last, current


def _write(fd: int, last: int, current: int | None) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, f"{last} {current if current is not None else '-'}\n".encode())


def remember(run_id: str) -> None:
    """A shell run was started: keep its numbering here (and tidy up old files)."""
    folder = _folder()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(_path(run_id), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write(fd, 0, None)
        finally:
            os.close(fd)
        cutoff = time.time() - KEEP_SECONDS
        for old in folder.iterdir():
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()
    except OSError:
        pass  # numbering falls back to the database


def next_subtask(run_id: str) -> int | None:
    """The number of the shell run's next subtask (it becomes the current one), or None
    when this machine keeps no state for the run (then the database numbers it)."""
    try:
        with _locked(_path(run_id)) as fd:
            last, _ = _read(fd)
            _write(fd, last + 1, last + 1)
            return last + 1
    except (OSError, ValueError):
        return None


def note_subtask(run_id: str, number: int) -> None:
    """Subtask ``number`` was started with an explicit number: numbering goes on after it."""
    with contextlib.suppress(OSError, ValueError), _locked(_path(run_id)) as fd:
        last, _ = _read(fd)
        _write(fd, max(last, number), number)


def current_subtask(run_id: str) -> int | None:
    """The subtask the shell run is in now, if this machine keeps its state."""
    try:
        with _locked(_path(run_id)) as fd:
            return _read(fd)[1]
    except (OSError, ValueError):
        return None


def forget(run_id: str) -> None:
    """The shell run ended."""
    with contextlib.suppress(OSError, ValueError):
        _path(run_id).unlink()


def with_prefix(prefix: str) -> list[str]:
    """The shell runs this machine keeps state for whose id starts with ``prefix``: how a
    run id prefix is known while the database, which would look it up, is away."""
    try:
        names = [entry.name for entry in _folder().iterdir()]
    except OSError:
        return []
    return sorted(name for name in names if name.startswith(prefix) and _is_run_id(name))


def _is_run_id(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False
