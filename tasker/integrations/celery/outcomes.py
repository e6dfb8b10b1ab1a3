"""How a Celery execution's end maps to its run's status and error fields (the table in
:mod:`tasker.integrations.celery`): as the executing process sees it, and as the worker's main
process sees it when the pool process was killed, revoked or cancelled.
"""

from __future__ import annotations

import importlib
import re
import signal
from typing import Any, TypeAlias

from tasker.instrument.outcome import outcome
from tasker.models import Status

__all__ = [
    "Verdict",
    "connection_lost",
    "killed",
    "noted",
    "revoked",
    "signal_name",
    "terminated",
    "terminating_signal",
    "verdict",
]

# (status, values, console line)
Verdict: TypeAlias = tuple[Status, dict[str, Any], str | None]

_SUCCESS, _FAILURE, _RETRY = "SUCCESS", "FAILURE", "RETRY"
_REJECTED, _IGNORED = "REJECTED", "IGNORED"
_CANCELLING_SIGNALS = frozenset(
    int(getattr(signal, name))
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
    if hasattr(signal, name)
)


def noted(exc: BaseException, einfo: Any) -> Verdict:
    """The end a task's exception means (FAILURE, RETRY), with Celery's formatted traceback
    when the exception no longer has its own."""
    result = outcome(exc)
    values = dict(result.values)
    detail = getattr(einfo, "traceback", None)
    if exc.__traceback__ is None and isinstance(detail, str) and detail:
        values["error_detail"] = detail
    return result.status, values, result.line


def verdict(said: Verdict | None, state: Any, retval: Any, exc: BaseException | None) -> Verdict:
    """The end of an execution from the Celery state it ended in; ``said``: what its failure
    or retry signal said (:func:`noted`), ``exc``: an exception on its way out (no state)."""
    if state == _SUCCESS:
        return Status.COMPLETED, {}, None
    if state in (_FAILURE, _RETRY):
        if said is not None:
            return said
        if isinstance(retval, BaseException):
            result = outcome(retval)
            return result.status, dict(result.values), result.line
    if state == _REJECTED:
        requeue = bool(getattr(retval, "requeue", False))
        reason = getattr(retval, "reason", None)
        message = f"rejected{' and requeued' if requeue else ''}" + (
            f": {reason}" if reason else ""
        )
        status = Status.CANCELLED if requeue else Status.FAILED
        return status, {"error_type": "Reject", "error_message": message}, message
    if state == _IGNORED:
        message = "ended with Ignore (replaced by another task, or asked not to be recorded)"
        return Status.COMPLETED, {"overall_progress_message": message}, message
    if state is None and exc is not None:
        result = outcome(exc)
        return result.status, dict(result.values), result.line
    message = f"the task ended in Celery state {state!r}"
    return Status.FAILED, {"error_type": "CeleryState", "error_message": message}, message


def terminated(exc: BaseException | None) -> bool:
    """The pool process is being ended by a signal (revoke(terminate=True), a time limit,
    a shutdown): billiard's handler raised SystemExit."""
    if not isinstance(exc, SystemExit):
        return False
    try:
        common = importlib.import_module("billiard.common")
        fired = getattr(common, "terminate_handler_fired", None)
        if fired is not None:
            return bool(fired())
    except ImportError:
        pass
    code = exc.code
    return isinstance(code, int) and -255 <= code < 0  # billiard exits with -(256 - signum)


def terminating_signal(exc: BaseException) -> int | None:
    code = exc.code if isinstance(exc, SystemExit) else None
    return 256 + code if isinstance(code, int) and -255 <= code < 0 else None


def signal_name(signum: Any) -> str:
    try:
        return signal.Signals(abs(int(signum))).name  # billiard reports some as -signum
    except (TypeError, ValueError):
        return str(signum) if signum else "a signal"


# ------------------------------------------------------------- seen from the main process


def killed(exception: BaseException, einfo: Any) -> tuple[Status, dict[str, Any]]:
    """The end of an execution whose pool process was killed (a hard time limit, a lost
    child), from the exception Celery reports for it in the main process."""
    kind = type(exception).__name__
    status = Status.FAILED
    if kind == "TimeLimitExceeded":
        limit = exception.args[0] if exception.args else None
        message = "hard time limit exceeded" + (f" ({limit} s)" if limit is not None else "")
        values: dict[str, Any] = {"error_type": kind, "error_message": message}
    elif kind == "WorkerLostError":
        text = str(exception) or kind
        match = re.search(r"signal (\d+)", text)
        if match and int(match.group(1)) in _CANCELLING_SIGNALS:
            status = Status.CANCELLED
        values = {"error_type": kind, "error_message": text}
    else:
        values = dict(outcome(exception).values)
        detail = getattr(einfo, "traceback", None)
        if exception.__traceback__ is None and isinstance(detail, str) and detail:
            values["error_detail"] = detail
    return status, values


def revoked(signum: Any) -> dict[str, Any]:
    """``revoke(terminate=True)``: the run is CANCELLED with these values."""
    name = signal_name(signum)
    return {"error_type": "Revoked", "error_message": f"revoked and terminated by {name}"}


def connection_lost() -> dict[str, Any]:
    """The main process cancelled the task (the broker connection was lost, with
    ``worker_cancel_long_running_tasks_on_connection_loss``): the run is CANCELLED with these
    values, and the task is delivered again."""
    return {
        "error_type": "Cancelled",
        "error_message": "cancelled by Celery: the connection to the broker was lost; "
        "the task is delivered again",
    }
