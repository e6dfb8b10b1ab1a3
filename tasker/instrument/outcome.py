"""How a run or subtask ends, from the exception (if any) that left its scope."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from tasker.models import Status
from tasker.runtime import console
from tasker.tracebacks import format_exception

__all__ = ["Outcome", "Skipped", "guarded", "outcome"]


class Skipped(BaseException):
    """Raised by :func:`tasker.skip` to end the enclosing task run or subtask as SKIPPED.

    The enclosing ``@task``/``task()``/``subtask()`` scope catches it: a skipped decorated
    function returns None. It derives from BaseException so that ``except Exception`` in the
    code being skipped does not swallow it.
    """

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: Status
    values: dict[str, Any]
    line: str | None
    suppress: bool = False  # the scope swallows the exception (a skip)


def _is_cancellation(exc: BaseException) -> bool:
    from tasker.runtime.signals import terminating

    if isinstance(exc, KeyboardInterrupt) or terminating(exc):
        return True
    try:
        import asyncio
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, asyncio.CancelledError)


def outcome(exc: BaseException | None) -> Outcome:
    """return → COMPLETED; skip() → SKIPPED; KeyboardInterrupt, SIGTERM, asyncio
    cancellation → CANCELLED; SystemExit(0/None) → COMPLETED; SystemExit(n) → FAILED with the
    code; any other exception → FAILED with its type, message and traceback."""
    if exc is None:
        return Outcome(Status.COMPLETED, {}, None)
    if isinstance(exc, Skipped):
        values = {"overall_progress_message": exc.reason} if exc.reason else {}
        return Outcome(Status.SKIPPED, values, exc.reason, suppress=True)
    if isinstance(exc, GeneratorExit):
        message = "stopped early by its consumer"
        return Outcome(Status.COMPLETED, {"overall_progress_message": message}, message)
    if _is_cancellation(exc):
        kind = type(exc).__qualname__
        return Outcome(
            Status.CANCELLED,
            {"error_type": kind, "error_message": str(exc) or kind},
            str(exc) or kind,
        )
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None or code == 0:
            return Outcome(Status.COMPLETED, {"exit_code": 0}, None)
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) else 1
        message = f"SystemExit({code!r})"
        return Outcome(
            Status.FAILED,
            {"exit_code": exit_code, "error_type": "SystemExit", "error_message": message},
            message,
        )
    detail = format_exception(exc)
    message = str(exc) or type(exc).__qualname__
    return Outcome(
        Status.FAILED,
        {
            "error_type": type(exc).__qualname__,
            "error_message": message,
            "error_detail": detail,
        },
        message,
    )


_warned: set[str] = set()


def guarded(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a tracking step; a failure is logged once per kind (or raised in strict mode)
    instead of reaching the tracked code. Returns None when the step failed."""
    outer = sys.exc_info()[1]
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        from tasker.runtime.recorder import RECORDER

        try:
            strict = RECORDER.config.strict
        except Exception:
            strict = False
        # An exception of the program's already on its way out always wins over ours.
        if strict and outer is None:
            raise
        key = f"{what}:{type(exc).__name__}"
        if key not in _warned:
            _warned.add(key)
            console.problem("tasker could not record %s (tracking continues): %s", what, exc)
        return None
