"""This process's log file as runs record it and ship its end (tasker.runtime.capture.logs):
which FileHandler it is, found again whenever logging changes, and the bounded read of its
end."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasker.runtime.capture.logs import (
    active_log_file,
    file_tail,
    log_handler,
    log_position,
    shipped_tail,
)


@pytest.fixture
def no_file_handlers() -> Iterator[None]:
    """Logging as this test found it afterwards; no FileHandler of anyone else's meanwhile."""
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers = [h for h in saved if not isinstance(h, logging.FileHandler)]
    try:
        yield
    finally:
        root.handlers = saved


def test_the_log_file_is_found_again_whenever_logging_changes(
    tmp_path: Path, no_file_handlers: None
) -> None:
    assert log_handler() is None and active_log_file() == (None, None)
    named = logging.getLogger("tasker-unit.job")
    first = logging.FileHandler(tmp_path / "a.log")
    named.addHandler(first)
    try:
        assert log_handler() is first  # a new handler: logging's list of them grew
        assert active_log_file() == (str(tmp_path), "a.log")
        named.removeHandler(first)  # still alive, no count changed: but no longer logging
        assert log_handler() is None
        # Made before it is attached, which changes no count: not taken for "no handler".
        second = logging.FileHandler(tmp_path / "b.log")
        assert log_handler() is None
        logging.getLogger().addHandler(second)
        try:
            assert log_handler() is second
        finally:
            logging.getLogger().removeHandler(second)
            second.close()
    finally:
        named.removeHandler(first)
        first.close()
    assert log_handler() is None


def test_the_tail_is_bounded_and_starts_at_a_whole_line(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    lines = [f"line {i:04d} of the job\n" for i in range(1, 201)]  # 21 bytes each
    log.write_text("".join(lines), encoding="ascii")
    # The last 100 bytes hold 4 whole lines and the end of one more, which is left out.
    assert file_tail(str(log), 100) == "".join(lines[-4:])
    # Exactly 4 lines: the first is left out too (only N bytes are read, so nothing tells
    # whether the byte before them ended a line).
    assert file_tail(str(log), 84) == "".join(lines[-3:])
    assert file_tail(str(log), 1 << 20) == "".join(lines)  # a short file: all of it
    assert file_tail(str(log), 0) is None
    # From where the log stood when a run started: its own lines, all of them when they fit
    # (the first starts a line), else the last ones from a whole line; a position of another
    # file (rotated, replaced) counts for nothing.
    before = os.stat(log)
    with log.open("a", encoding="ascii") as fh:
        fh.write("the run's first line\nthe run's last line\n")
    since = (before.st_dev, before.st_ino, before.st_size)
    assert file_tail(str(log), 1000, since=since) == "the run's first line\nthe run's last line\n"
    assert file_tail(str(log), 25, since=since) == "the run's last line\n"
    assert file_tail(str(log), 100, since=(before.st_dev, before.st_ino + 1, before.st_size)) == (
        "".join(lines[-2:]) + "the run's first line\nthe run's last line\n"
    )
    log.write_bytes(b"first\nbad \xff byte and NUL \x00\n")
    assert file_tail(str(log), 1000) == "first\nbad \ufffd byte and NUL \ufffd\n"
    log.write_bytes(b"")
    assert file_tail(str(log), 1000) is None
    assert file_tail(str(tmp_path / "missing.log"), 1000) is None
    assert file_tail(str(tmp_path), 1000) is None  # a folder


def test_a_fifo_or_a_device_is_not_read_and_nothing_waits(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)  # no writer: a blocking open or read would wait for good
    started = time.monotonic()
    assert file_tail(str(fifo), 1000) is None
    assert file_tail("/dev/zero", 1000) is None
    assert file_tail("/dev/null", 1000) is None
    assert time.monotonic() - started < 1


def test_the_shipped_tail_includes_what_the_handler_has_not_written_yet(
    tmp_path: Path, no_file_handlers: None
) -> None:
    handler = logging.FileHandler(tmp_path / "app.log")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("tasker-unit.app")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("written")
        assert handler.stream is not None
        handler.stream.write("still in the buffer\n")  # logging itself flushes per record
        assert shipped_tail(1000) == "written\nstill in the buffer\n"
        assert shipped_tail(0) is None
        since = log_position()
        assert since is not None and since[2] == len("written\nstill in the buffer\n")
        assert shipped_tail(1000, since) is None  # nothing logged since
        logger.warning("a run's own line")
        assert shipped_tail(1000, since) == "a run's own line\n"
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()
