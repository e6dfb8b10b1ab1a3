"""Status lines in the seed's console format, sent to the ``tasker`` logger.

    [TASK START] STATIC / Build Database (run_id: 123e4567-...)
    [SUBTASK START] Subtask 1: Loading data
    [SUBTASK UPDATE] Subtask 1 - RUNNING: Processing state 28/56
    [TASK UPDATE] 123e4567-... - COMPLETED

When the program has configured no logging at all, tasker attaches its own stderr handler
(``tracking.console: auto``), so the lines reach cron and SLURM log files without setup.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["logger", "setup_console"]

logger = logging.getLogger("tasker")
# Library convention: with console output off and no logging configured, say nothing (rather
# than Python's last-resort handler printing warnings and errors).
logger.addHandler(logging.NullHandler())
_HANDLER_NAME = "tasker-console"


def setup_console(mode: str) -> None:
    """Attach or remove tasker's own stderr handler according to ``mode`` (auto/true/false)."""
    ours = [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]
    want = mode == "true" or (mode == "auto" and not logging.getLogger().handlers)
    if want and not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    elif not want and ours:
        for old in ours:
            logger.removeHandler(old)
        logger.propagate = True


def _tail(message: str | None) -> str:
    return f": {message}" if message else ""


def task_start(stage: str, task: str, run_id: str) -> None:
    logger.info("[TASK START] %s / %s (run_id: %s)", stage, task, run_id)


def task_update(run_id: str, status: str, message: str | None) -> None:
    level = logging.ERROR if status == "FAILED" else logging.INFO
    logger.log(level, "[TASK UPDATE] %s - %s%s", run_id, status, _tail(message))


def subtask_start(number: int | None, name: str | None, message: str | None) -> None:
    logger.info(
        "[SUBTASK START] Subtask %s: %s%s", number, name or "", _tail(message) if message else ""
    )


def subtask_update(number: int | None, status: str, message: str | None) -> None:
    level = logging.ERROR if status == "FAILED" else logging.INFO
    logger.log(level, "[SUBTASK UPDATE] Subtask %s - %s%s", number, status, _tail(message))


def subtask_increment(number: int | None, by: int) -> None:
    logger.debug("[SUBTASK INCREMENT] Subtask %s: +%d", number, by)


def _handled(lg: logging.Logger) -> bool:
    """Does a record of ``lg`` reach a handler other than a NullHandler?"""
    current: logging.Logger | None = lg
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def problem(message: str, *args: object) -> None:
    """Warn about a tracking problem (the database is away, an event was refused).

    Unlike the status lines these always reach somebody: through logging when the program
    has set any up, else straight to stderr, even with console output off.
    """
    if _handled(logger):
        logger.warning(message, *args)
        return
    try:
        sys.stderr.write(f"tasker: warning: {message % args if args else message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # no stderr (closed, a daemon): nowhere left to tell
        pass
