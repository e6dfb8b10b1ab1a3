"""Celery: every task execution is a run, nested under the run that sent it.

::

    from celery import Celery
    from tasker.integrations.celery import install

    app = Celery("pipeline", broker="redis://127.0.0.1:6379/0")
    install(app, stage="DAILY")

Call ``install(app)`` where the application is defined, so that both the programs sending
tasks and the workers executing them run it. Then:

- **Sending** (``delay``, ``apply_async``, ``send_task``, canvas): the message carries the run
  current in the sending thread, and the subtask open in it, in two headers
  (``tasker_parent_run_id``, ``tasker_parent_subtask``). Sent from outside any run, it carries
  nothing.
- **Executing**: each execution is a run of stage ``stage`` (or the task's own
  ``tasker_stage`` option: ``@app.task(tasker_stage="STATIC")``), task name = the Celery
  task's name, ``task_type`` ``celery``, nested under the sender's run (``parent_run_id``),
  with the worker child's PID and the worker's main PID as ``parent_pid``. Inside the task,
  ``tasker.track()``, ``tasker.subtask()`` and ``@tasker.task`` calls report into that run.
  The run's start is written before the task body runs, its end before the next task is
  taken: a child recycled by ``--max-tasks-per-child`` (which ends with ``os._exit``) or a
  warm shutdown loses nothing.

How an execution ends:

============================================  ==============================================
Celery                                        run
============================================  ==============================================
returns (SUCCESS)                             COMPLETED
raises (FAILURE)                              FAILED: ``error_type``, message, traceback
``self.retry()`` (RETRY)                      this attempt FAILED with ``error_type`` Retry;
                                              the next attempt is a new run under the same
                                              parent
``Reject(requeue=True)`` / ``(False)``        CANCELLED / FAILED, ``error_type`` Reject
``Ignore`` (``self.replace()`` too)           COMPLETED
``revoke(terminate=True)``                    CANCELLED, ``error_type`` Revoked
hard time limit                               FAILED, ``error_type`` TimeLimitExceeded
worker child killed (OOM, SIGKILL)            FAILED (CANCELLED for SIGTERM/SIGINT/SIGHUP),
                                              ``error_type`` WorkerLostError
============================================  ==============================================

A child that is killed can record nothing itself: the worker's main process, which sees it
happen, records those last three. A task revoked before it started never ran, and has no run.

The worker's main process gives each execution its run id when it receives the message, and
hands it to the pool process with the request, so both know it. For the first delivery of an
attempt the id follows from the Celery task id, so you know it too: ``run_id_for(result.id)``
is the run of the task's first attempt (``retries=1`` the second ...); a message delivered
again, a task that replaced itself (``self.replace()``, which keeps the task id) and a task id
sent twice get random ids, so that every execution is a run of its own.

Celery's signals are process-wide: the handlers act on tasks of installed applications only,
except on sending, where Celery does not say which application sends (a message of another
application in the same process carries the two headers too, harmlessly). Celery's default
task protocol (2) is needed for the headers to reach the worker.

The parts: :mod:`~tasker.integrations.celery.handlers` (the signal handlers, which hand over
to the others), :mod:`~tasker.integrations.celery.messages` (the headers and run ids),
:mod:`~tasker.integrations.celery.execution` (the executing process's runs),
:mod:`~tasker.integrations.celery.main_process` (the worker's main process),
:mod:`~tasker.integrations.celery.outcomes` (the table above) and
:mod:`~tasker.integrations.celery.state` (what a process knows of applications and
executions).
"""

from __future__ import annotations

import threading
from typing import Any

from tasker import validate
from tasker.errors import ValidationError
from tasker.integrations.celery.handlers import connect
from tasker.integrations.celery.messages import HEADER_RUN, HEADER_SUBTASK, run_id_for
from tasker.integrations.celery.state import Settings, installed

__all__ = ["HEADER_RUN", "HEADER_SUBTASK", "install", "run_id_for"]

_connect_lock = threading.Lock()
_connected = False


def install(app: Any, stage: str = "celery", *, flush_timeout: float = 10.0) -> None:
    """Track every execution of ``app``'s tasks as a run of stage ``stage``, nested under the
    run that sent it. Idempotent: a second call only replaces ``stage`` and
    ``flush_timeout`` (the bound, in seconds, on writing a run's start and end).

    Call it where the application is defined, in the senders and the workers alike."""
    stage = validate.name(stage, "stage", 100)
    if isinstance(flush_timeout, bool) or not isinstance(flush_timeout, (int, float)):
        raise ValidationError(f"flush_timeout must be a number of seconds, got {flush_timeout!r}")
    if not flush_timeout > 0:
        raise ValidationError(f"flush_timeout must be positive, got {flush_timeout!r}")
    global _connected
    with _connect_lock:
        if not _connected:
            connect()
            _connected = True
        installed[app] = Settings(stage, float(flush_timeout))
