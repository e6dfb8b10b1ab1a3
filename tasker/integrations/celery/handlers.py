"""The Celery signal handlers: each checks what the signal names, then hands over to the
sending side (:mod:`~tasker.integrations.celery.messages`), the executing process
(:mod:`~tasker.integrations.celery.execution`) or the worker's main process
(:mod:`~tasker.integrations.celery.main_process`), guarded so that tracking never breaks the
task.

The same signal can come in either process: ``task_failure`` and ``task_retry`` name an
execution of this process (the executing process, inside Celery's ``except``), or one whose
pool process the main process saw killed or cancelled.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from tasker.instrument.outcome import guarded
from tasker.integrations.celery import execution, main_process
from tasker.integrations.celery.messages import add_headers
from tasker.integrations.celery.outcomes import connection_lost, killed, revoked
from tasker.integrations.celery.state import executions, flush_timeout, installed, settings_of
from tasker.models import Status
from tasker.runtime.recorder import RECORDER

__all__ = ["connect"]


def connect() -> None:
    signals = importlib.import_module("celery.signals")
    handlers = {
        "before_task_publish": _on_publish,
        "task_received": _on_received,
        "task_prerun": _on_prerun,
        "task_failure": _on_failure,
        "task_retry": _on_retry,
        "task_postrun": _on_postrun,
        "task_revoked": _on_revoked,
        "worker_init": _on_worker_init,
        "worker_process_shutdown": _on_process_shutdown,
        "worker_shutdown": _on_worker_shutdown,
    }
    for name, handler in handlers.items():
        getattr(signals, name).connect(
            handler, weak=False, dispatch_uid=f"tasker.integrations.celery.{name}"
        )


# ------------------------------------------------------------------------ sending


def _on_publish(sender: Any = None, headers: Any = None, **_: Any) -> None:
    if installed and isinstance(headers, dict):
        guarded("the run sending a Celery task", add_headers, headers)


# ------------------------------------------------------------------------ executing


def _on_prerun(sender: Any = None, task_id: Any = None, task: Any = None, **_: Any) -> None:
    task = task if task is not None else sender
    settings = settings_of(task)
    if settings is not None and isinstance(task_id, str):
        guarded("the start of a Celery task", execution.start, settings, task_id, task)


def _on_failure(
    sender: Any = None, task_id: Any = None, exception: Any = None, einfo: Any = None, **_: Any
) -> None:
    if not isinstance(task_id, str):
        return
    running = executions.get(task_id)
    if running is not None:
        # In the executing process, inside Celery's `except`: the exception as raised.
        raised = sys.exc_info()[1]
        exc = raised if raised is not None else exception
        if isinstance(exc, BaseException):
            guarded("a Celery task's failure", execution.note, running, exc, einfo)
    elif settings_of(sender) is not None and isinstance(exception, BaseException):
        # The worker's main process: a child killed by a time limit, or lost.
        guarded("the end of a Celery task", _conclude_killed, task_id, exception, einfo)


def _conclude_killed(task_id: str, exception: BaseException, einfo: Any) -> None:
    main_process.conclude_elsewhere(task_id, *killed(exception, einfo))


def _on_retry(
    sender: Any = None, request: Any = None, reason: Any = None, einfo: Any = None, **_: Any
) -> None:
    task_id = getattr(request, "id", None)
    if not isinstance(task_id, str):
        return
    running = executions.get(task_id)
    if running is not None:
        raised = sys.exc_info()[1]
        exc = raised if raised is not None else reason
        if isinstance(exc, BaseException):
            guarded("a Celery task's retry", execution.note, running, exc, einfo)
    elif settings_of(sender) is not None:
        # The main process cancelled the task (the broker connection was lost, with
        # worker_cancel_long_running_tasks_on_connection_loss): it is delivered again.
        guarded(
            "the end of a Celery task",
            main_process.conclude_elsewhere,
            task_id,
            Status.CANCELLED,
            connection_lost(),
        )


def _on_postrun(
    sender: Any = None,
    task_id: Any = None,
    task: Any = None,
    state: Any = None,
    retval: Any = None,
    **_: Any,
) -> None:
    if not isinstance(task_id, str):
        return
    running = executions.pop(task_id, None)
    if running is None:
        return
    # No state: an exception is on its way through Celery's `finally` (SystemExit from a
    # terminating signal, KeyboardInterrupt, tasker.skip()).
    exc = sys.exc_info()[1] if state is None else None
    guarded("the end of a Celery task", execution.end, running, state, retval, exc)


# ------------------------------------------------------------------------ the main process


def _on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """The worker's main process received a request (before it executes anywhere)."""
    task_id = getattr(request, "id", None)
    request_dict = getattr(request, "request_dict", None)
    if (
        isinstance(task_id, str)
        and isinstance(request_dict, dict)
        and settings_of(getattr(request, "task", None)) is not None
    ):
        guarded("a Celery task's run id", main_process.receive, task_id, request, request_dict)


def _on_revoked(
    sender: Any = None,
    request: Any = None,
    terminated: Any = False,
    signum: Any = None,
    **_: Any,
) -> None:
    task_id = getattr(request, "id", None)
    if not terminated or not isinstance(task_id, str) or settings_of(sender) is None:
        return  # revoked before it started: it never ran
    guarded(
        "the end of a Celery task",
        main_process.conclude_elsewhere,
        task_id,
        Status.CANCELLED,
        revoked(signum),
    )


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    if settings_of(sender) is not None:
        guarded("the worker's start", main_process.prepare_children, sender.app)


def _on_process_shutdown(**_: Any) -> None:
    # A pool process ending (recycled, shut down): billiard ends it with os._exit, without
    # atexit. What the database cannot take now goes to the journal, as at any exit.
    if installed:
        guarded("tracked events", RECORDER.writer.flush, flush_timeout(), closing=True)


def _on_worker_shutdown(**_: Any) -> None:
    if installed:
        main_process.shut_down()
