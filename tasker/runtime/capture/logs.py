"""This process's log file and its end.

A run records the file of the first logging ``FileHandler`` of its process, and its end
ships the last bytes of that file (``tracking.log_tail_bytes``; for an outermost run, of what
was written to it since the run started): the dashboard then shows a
run's log from the database, without opening a file a row names (see
:func:`tasker.dashboard.data.read_log_tail`, which reads files only inside
``dashboard.log_roots``, through :func:`read_tail` too).

Finding the handler means looking at every logger, which costs tens of microseconds in a
program with hundreds of them: the answer is kept until logging's list of live handlers or
of loggers changes, or the handler found leaves its logger. Reading the end of a file is
bounded whatever the file is: opening never blocks (a FIFO), only a regular file is read
(not /dev/zero, a terminal or a pipe), and at most the bytes asked for.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import weakref
from collections.abc import Callable
from typing import TypeAlias

from tasker.runtime.storable import warn
from tasker.validate import WIDTHS, fit_text, storable_text

__all__ = [
    "OPEN_FLAGS",
    "active_log_file",
    "file_tail",
    "log_handler",
    "log_position",
    "read_tail",
    "shipped_tail",
]

# Opening never blocks (a FIFO), never takes a terminal as the controlling one, and is not
# inherited by children.
OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
# The most a run's end waits for another thread writing to the log (the handler's lock)
# before reading the file as it is.
FLUSH_WAIT = 0.1


def read_tail(fd: int, max_bytes: int, since: int = 0) -> str | None:
    """The last ``max_bytes`` (at most) of the file open as ``fd`` after its first ``since``
    bytes, decoded (undecodable bytes replaced), from its first whole line on; None when
    ``fd`` is not a regular file. ``since``: where a line starts (the file's size when a run
    started); past the file's end (a file truncated or replaced meanwhile) it counts from 0.

    One ``pread`` of at most ``max_bytes``, wherever the file ends meanwhile: a file that
    grows, a device that never ends (/dev/zero, which is refused anyway) cannot make it read
    more."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # a FIFO, a device, a folder, a socket
        return None
    if since > info.st_size:
        since = 0
    start = max(since, info.st_size - max_bytes)
    if hasattr(os, "pread"):
        data = os.pread(fd, max_bytes, start)
    else:  # pragma: no cover - Windows
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, max_bytes)
    text = data.decode("utf-8", errors="replace")
    if start > since:
        text = text.split("\n", 1)[-1]  # the first line read is most likely cut
    return text


# logging keeps a weak reference to every live handler (for its shutdown at exit): a handler
# created or collected changes that list's length, a new logger the loggers' count. None
# where that private list is missing (another logging): then look every time.
_handler_refs: list[Callable[[], object]] | None = getattr(logging, "_handlerList", None)
if not isinstance(_handler_refs, list):  # pragma: no cover - another logging
    _handler_refs = None
# When looked: the two counts, and the logger and the handler found (weakly: a handler the
# program drops must go, and with it its file), or None for none found. Asked at every
# outermost run's start and end, so the unchanged case is a few comparisons.
_Found: TypeAlias = (
    "tuple[int, int, weakref.ref[logging.Logger] | None, weakref.ref[logging.FileHandler] | None]"
)
_found: _Found | None = None


def _look() -> tuple[logging.Logger, logging.FileHandler] | None:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg
        for lg in list(logging.Logger.manager.loggerDict.values())
        if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in list(lg.handlers):
            if isinstance(handler, logging.FileHandler) and handler.baseFilename != os.devnull:
                return lg, handler
    return None


def _unattached_file_handler() -> bool:
    """True when a FileHandler exists that no logger had when looked: it may be added to
    one without any count changing, so that no answer is kept meanwhile."""
    return any(isinstance(ref(), logging.FileHandler) for ref in list(_handler_refs or ()))


def log_handler() -> logging.FileHandler | None:
    """The first logging FileHandler of this process (the root logger's first, then the
    other loggers' in the order they were made), or None."""
    global _found
    kept = _found
    refs = _handler_refs
    if (
        kept is not None
        and refs is not None
        and kept[0] == len(refs)
        and kept[1] == len(logging.Logger.manager.loggerDict)
    ):
        if kept[3] is None:
            return None
        logger = kept[2]() if kept[2] is not None else None
        handler = kept[3]()
        if logger is not None and handler is not None and handler in logger.handlers:
            return handler
    counts = None if refs is None else (len(refs), len(logging.Logger.manager.loggerDict))
    looked = _look()
    if counts is None:
        _found = None
    elif looked is None:
        _found = None if _unattached_file_handler() else (*counts, None, None)
    else:
        _found = (*counts, weakref.ref(looked[0]), weakref.ref(looked[1]))
    return None if looked is None else looked[1]


def active_log_file() -> tuple[str | None, str | None]:
    """(folder, file name) of the first logging FileHandler configured in this process,
    made storable."""
    handler = log_handler()
    if handler is None:
        return None, None
    return _log_file(handler.baseFilename)


@functools.lru_cache(maxsize=64)
def _log_file(name: str) -> tuple[str, str]:
    """A log file's (folder, file name), made storable once per file."""
    folder, base = os.path.split(name)  # absolute: FileHandler made it so
    folder, said = fit_text(folder or os.sep, "log_path (of this process)")
    filename, more = fit_text(base, "log_filename (of this process)", WIDTHS["log_filename"])
    for sentence in said + more:
        warn(sentence)
    return folder, filename


def _flush(handler: logging.Handler) -> None:
    """What the handler has buffered, written to the file; not waiting long for a thread
    in the middle of writing a record (tracking never holds the program up)."""
    lock = handler.lock
    if lock is not None and not lock.acquire(timeout=FLUSH_WAIT):
        return
    try:
        stream = getattr(handler, "stream", None)
        if stream is not None and hasattr(stream, "flush"):
            stream.flush()
    except Exception:  # a full disk, a closed stream: the file is read as it is
        pass
    finally:
        if lock is not None:
            lock.release()


def log_position() -> tuple[int, int, int] | None:
    """Where this process's log file stands now (device, inode, size), for
    :func:`shipped_tail` ``since``; None when it logs to no regular file. Never raises."""
    try:
        handler = log_handler()
        if handler is None:
            return None
        info = os.stat(handler.baseFilename)
    except Exception:  # not there yet (a delayed FileHandler), unreadable: from the start
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_dev, info.st_ino, info.st_size


def file_tail(
    path: str,
    max_bytes: int,
    flush: logging.Handler | None = None,
    since: tuple[int, int, int] | None = None,
) -> str | None:
    """At most the last ``max_bytes`` of the file ``path``, from a whole line, as text every
    database stores; None when it is no regular file, cannot be read or ends with nothing
    (or ``max_bytes`` is 0). ``flush``: the handler writing to it, whose buffer is written
    out first (only into a regular file: a pipe with no room would block). ``since``: only
    what was written after that :func:`log_position`, when it is of this very file. Never
    raises."""
    if max_bytes <= 0:
        return None
    try:
        fd = os.open(path, OPEN_FLAGS)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            if flush is not None:
                _flush(flush)
            mine = since is not None and since[:2] == (info.st_dev, info.st_ino)
            text = read_tail(fd, max_bytes, since[2] if since is not None and mine else 0)
        finally:
            os.close(fd)
    except (OSError, ValueError):  # gone, unreadable, a NUL in the name: no tail, then
        return None
    if not text:
        return None
    return storable_text(text)[0]


def shipped_tail(max_bytes: int, since: tuple[int, int, int] | None = None) -> str | None:
    """The end of this process's log file as a run's end ships it: :func:`file_tail` of
    the first logging FileHandler's file (after ``since``, where it stood when the run
    started, if known); None when the process logs to no regular file, or logged nothing
    since. Never raises: tracking never breaks the work it tracks."""
    if max_bytes <= 0:
        return None
    try:
        handler = log_handler()
        if handler is None:
            return None
        return file_tail(handler.baseFilename, max_bytes, flush=handler, since=since)
    except Exception:  # a handler in a state of its own making: no tail, then
        return None
