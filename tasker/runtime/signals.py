"""SIGTERM and process exit: runs end CANCELLED (or FAILED) durably before the process goes,
and the process then ends exactly as it would have without tasker.

- SIGTERM with the default action: every live run of this process is recorded CANCELLED, the
  writer flushes, and the signal is delivered again with the default action, so the exit
  status is the usual "killed by SIGTERM".
- SIGTERM with a handler the program installed: the handler runs; an exception it raises ends
  the enclosing runs CANCELLED.
- SIGTERM ignored by the program: tasker leaves it ignored.
- KeyboardInterrupt is left to Python; decorators and ``with`` blocks record CANCELLED.
- At exit, a run started with ``task_start()`` and never ended is ended: CANCELLED after
  Ctrl-C, FAILED with the exception when one went uncaught, otherwise FAILED with a message
  saying the process exited without ending it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from tasker.models import Status
from tasker.runtime.recorder import RECORDER, ProcessHooks
from tasker.tracebacks import format_exception

__all__ = [
    "end_live_runs_at_exit",
    "install",
    "terminating",
    "uninstall",
]

_previous: Any = None
_terminating = False


_raised_by_handler: BaseException | None = None


def terminating(exc: BaseException | None = None) -> bool:
    """True while a SIGTERM is being handled, or for the exception the program's own SIGTERM
    handler raised: such exceptions mean CANCELLED."""
    return _terminating or (exc is not None and exc is _raised_by_handler)


def install() -> bool:
    """Install the SIGTERM handler (main thread only); True when installed."""
    global _previous
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        current = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):  # pragma: no cover - platforms without SIGTERM
        return False
    if current is _on_sigterm:
        return True
    if current == signal.SIG_IGN:
        return True  # the program chose to ignore it; nothing to record
    _previous = current
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # pragma: no cover - not the main interpreter
        return False
    return True


def uninstall() -> bool:
    """Give SIGTERM back to what the program had (main thread only); True when done.

    Worker processes call this when they go idle between calls (tasker.runtime.runs.idle_worker): a
    Python-level handler can be missed there. The kernel runs the C-level handler, but
    Python runs the handler itself only when the main thread next executes bytecode or is
    interrupted in a blocking call; a SIGTERM that lands just before the main thread blocks
    in a lock (a pool worker waiting for its next task, the moment Pool.terminate() holds
    the task queue's lock) then leaves it blocked forever. With the default action restored,
    an idle worker ends at once, as it would without tasker.
    """
    global _previous
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, _previous if _previous is not None else signal.SIG_DFL)
    except (ValueError, OSError):  # pragma: no cover - not the main interpreter
        return False
    return True


def _end_all(
    status: Status, values: dict[str, Any], line: str, deadline: float | None = None
) -> None:
    from tasker.runtime import runs

    for state in list(RECORDER.live_runs):
        if state.is_local and not state.ended:
            # Shutting down: record what can be recorded, never fail the exit.
            with contextlib.suppress(Exception):
                runs.end_run(state, status, dict(values), sync=False, line=line)
    if deadline is None:
        deadline = time.monotonic() + RECORDER.exit_timeout()
    # Bounded: what is not written by then goes to the journal (writer.abandon()).
    RECORDER.writer.flush(max(0.0, deadline - time.monotonic()), closing=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _terminating, _raised_by_handler
    previous = _previous
    if callable(previous):
        _terminating = True
        try:
            previous(signum, frame)
        except BaseException as exc:
            _raised_by_handler = exc
            raise
        finally:
            _terminating = False
        return
    _end_all(
        Status.CANCELLED,
        {"error_type": "SIGTERM", "error_message": "terminated by SIGTERM"},
        "terminated by SIGTERM",
    )
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def end_live_runs_at_exit(deadline: float | None = None) -> None:
    if not any(s.is_local and not s.ended for s in RECORDER.live_runs):
        return
    exc = getattr(sys, "last_value", None)
    if isinstance(exc, KeyboardInterrupt):
        _end_all(Status.CANCELLED, {"error_type": "KeyboardInterrupt"}, "interrupted", deadline)
    elif isinstance(exc, BaseException):
        detail = format_exception(exc)
        _end_all(
            Status.FAILED,
            {
                "error_type": type(exc).__qualname__,
                "error_message": str(exc) or type(exc).__qualname__,
                "error_detail": detail,
            },
            str(exc),
            deadline,
        )
    else:
        message = "the process exited without ending the run (no task_complete or task_fail)"
        _end_all(
            Status.FAILED,
            {"error_type": "ExitedWithoutEnding", "error_message": message},
            message,
            deadline,
        )


class _Hooks(ProcessHooks):
    """This module's handling, as the recorder calls it (see ProcessHooks)."""

    def install_signals(self) -> bool:
        return install()

    def uninstall_signals(self) -> bool:
        return uninstall()

    def end_live_runs_at_exit(self, deadline: float | None) -> None:
        end_live_runs_at_exit(deadline)


# Importing this module (tasker's start-up does) hands the handling to the recorder.
RECORDER.hooks = _Hooks()
