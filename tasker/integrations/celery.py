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
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import inspect
import os
import re
import signal
import sys
import threading
import time
import uuid
import weakref
from typing import Any

from tasker import validate
from tasker.errors import DatabaseError, RunEndedError, UnknownRunError, ValidationError
from tasker.instrument.carry import attach
from tasker.instrument.outcome import Outcome, guarded, outcome
from tasker.models import Status
from tasker.runtime import console, context, runs
from tasker.runtime import events as ev
from tasker.runtime.context import RunState
from tasker.runtime.recorder import RECORDER
from tasker.runtime.threads import started_without_signals

__all__ = ["HEADER_RUN", "HEADER_SUBTASK", "install", "run_id_for"]

HEADER_RUN = "tasker_parent_run_id"
HEADER_SUBTASK = "tasker_parent_subtask"
# Set by the worker's main process on each request it receives, read by the process that
# executes it: one id per execution, known to both (never sent through the broker).
RUN_ID_KEY = "tasker_run_id"

# Run ids of executions: uuid5 in this namespace (fixed forever: ids must agree across
# versions, hosts and processes).
RUN_ID_NAMESPACE = uuid.UUID("6d1f3b1e-6c53-5a0f-9b1c-7a3c2f0e4d21")
# How long the worker's main process waits for the run of a killed child to appear in the
# database (the child writes its start before the task body runs; this covers a kill that
# came first).
CONCLUDE_WAIT = 30.0

_SUCCESS, _FAILURE, _RETRY = "SUCCESS", "FAILURE", "RETRY"
_REJECTED, _IGNORED = "REJECTED", "IGNORED"
_CANCELLING_SIGNALS = frozenset(
    int(getattr(signal, name))
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
    if hasattr(signal, name)
)


@dataclasses.dataclass(frozen=True)
class _Settings:
    stage: str
    flush_timeout: float


@dataclasses.dataclass(eq=False)
class _Execution:
    """A task executing in this process: its run, and how it ended if Celery said so."""

    state: RunState
    attached: attach | None
    settings: _Settings
    # Made durable at its start and end (not for an eager call: its process goes on).
    durable: bool
    verdict: tuple[Status, dict[str, Any], str | None] | None = None
    raised: BaseException | None = None  # what the task raised (FAILURE, RETRY)


_installed: weakref.WeakKeyDictionary[Any, _Settings] = weakref.WeakKeyDictionary()
_connect_lock = threading.Lock()
_connected = False
# Executions in this process, by Celery task id.
_executions: dict[str, _Execution] = {}
# The worker's main process: requests by task id, while Celery holds them (the pool process
# and the run id of an execution whose pool process is killed).
_requests: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
# Threads of the main process recording the end of runs of killed children.
_concluding: set[threading.Thread] = set()


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
            _connect()
            _connected = True
        _installed[app] = _Settings(stage, float(flush_timeout))


def run_id_for(task_id: str, retries: int = 0) -> str:
    """The run id of the execution of Celery task ``task_id`` (an ``AsyncResult.id``) at
    attempt ``retries`` (0 for the first). An execution that is not the first of its attempt
    (a message delivered again, a task replacing itself with ``self.replace()``, a task id
    sent twice) has a random id instead."""
    return str(uuid.uuid5(RUN_ID_NAMESPACE, f"{task_id}/{int(retries)}"))


# Deterministic ids the worker's main process handed out, most recent last: a task id that
# arrives again (sent twice on purpose) gets a random id, never one already used.
_handed_out: collections.OrderedDict[str, None] = collections.OrderedDict()
_HANDED_OUT_KEPT = 10_000


def _new_execution_id(task_id: str, request_dict: Any, redelivered: bool) -> str:
    """The id of a new execution: ``run_id_for`` for the first delivery of an attempt."""
    retries = _int(request_dict.get("retries"))
    if redelivered or _int(request_dict.get("replaced_task_nesting")):
        return str(uuid.uuid4())
    run_id = run_id_for(task_id, retries)
    if run_id in _handed_out:
        return str(uuid.uuid4())
    _handed_out[run_id] = None
    if len(_handed_out) > _HANDED_OUT_KEPT:
        _handed_out.popitem(last=False)
    return run_id


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _connect() -> None:
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
    if _installed and isinstance(headers, dict):
        guarded("the run sending a Celery task", _add_headers, headers)


def _add_headers(headers: dict[str, Any]) -> None:
    headers.pop(RUN_ID_KEY, None)  # a retry copies its request's headers: a new execution
    if headers.get(HEADER_RUN) is not None:
        return  # a retry (Celery copies the request's headers) or set by the caller: kept
    handoff = context.handoff()
    if handoff is None:
        return
    run_id, subtask = handoff
    headers[HEADER_RUN] = run_id
    if subtask is not None:
        headers[HEADER_SUBTASK] = subtask


# ------------------------------------------------------------------------ executing


def _settings_of(task: Any) -> _Settings | None:
    try:
        app = task.app
    except Exception:
        return None
    try:
        return _installed.get(app)
    except TypeError:  # not weak-referenceable: not an application installed here
        return None


def _on_prerun(sender: Any = None, task_id: Any = None, task: Any = None, **_: Any) -> None:
    task = task if task is not None else sender
    settings = _settings_of(task)
    if settings is not None and isinstance(task_id, str):
        guarded("the start of a Celery task", _start, settings, task_id, task)


def _parent_of(request: Any) -> tuple[str | None, int | None]:
    """The run (and subtask) the message names: custom headers are attributes of the request
    (protocol 2), and are also in ``request.headers``."""
    run_id = getattr(request, HEADER_RUN, None)
    subtask = getattr(request, HEADER_SUBTASK, None)
    if run_id is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict):
            run_id = headers.get(HEADER_RUN)
            subtask = headers.get(HEADER_SUBTASK)
    if not isinstance(run_id, str):
        return None, None
    if isinstance(subtask, bool) or not isinstance(subtask, int):
        subtask = None
    return run_id, subtask


def _redelivered(request: Any) -> bool:
    info = getattr(request, "delivery_info", None)
    return bool(info.get("redelivered")) if isinstance(info, dict) else False


_scripts: dict[str, str | None] = {}


def _script_of(task: Any) -> str | None:
    """The file defining the task's function (the run's script and git repository)."""
    name = str(task.name)
    if name not in _scripts:
        path: str | None
        try:
            path = inspect.getsourcefile(inspect.unwrap(task.run))
        except (AttributeError, TypeError, ValueError):
            path = None
        _scripts[name] = os.path.abspath(path) if path else None
    return _scripts[name]


def _attached(run_id: str, subtask: int | None) -> attach | None:
    """The hand-over the headers name; None when they name no run (sent by something
    else), without the subtask when that is not a subtask number."""
    try:
        return attach(run_id, subtask)
    except ValidationError:
        pass
    if subtask is not None:
        with contextlib.suppress(ValidationError):
            return attach(run_id)
    return None


def _start(settings: _Settings, task_id: str, task: Any) -> None:
    own = getattr(task, "tasker_stage", None)  # @app.task(tasker_stage="...")
    stage = validate.name(own, "tasker_stage", 100) if own is not None else settings.stage
    name = validate.name(task.name, "a Celery task's name", 255)
    request = task.request
    run_id = getattr(request, RUN_ID_KEY, None)
    if not isinstance(run_id, str):  # not received by a worker: an eager call
        run_id = _new_execution_id(task_id, vars(request), _redelivered(request))
    parent, subtask = _parent_of(request)
    attached = _attached(parent, subtask) if parent is not None else None
    if attached is None:
        parent = None
    else:
        attached.__enter__()
    root = False
    if parent is None and not getattr(request, "is_eager", False):
        # Not sent from a run: the run a parent process handed down, if the worker was
        # started inside one (an eager call nests under the caller's run by itself); else
        # a run of its own, whatever other thread (a threads pool) has a run meanwhile.
        parent = context.inherited_run_id()
        root = parent is None and context.current_run_id() is not None
    try:
        state = runs.start_run(
            stage,
            name,
            sync=False,
            task_type="celery",
            parent_run_id=parent,
            script_path=_script_of(task),
            run_id=run_id,
            root=root,
        )
    except BaseException:
        if attached is not None:
            attached.__exit__(None, None, None)
        raise
    durable = not getattr(request, "is_eager", False)
    _executions[task_id] = _Execution(state, attached, settings, durable)
    if durable and not RECORDER.writer.failing:  # durable before the task body runs
        RECORDER.flush(settings.flush_timeout)


def _on_failure(
    sender: Any = None, task_id: Any = None, exception: Any = None, einfo: Any = None, **_: Any
) -> None:
    if not isinstance(task_id, str):
        return
    execution = _executions.get(task_id)
    if execution is not None:
        # In the executing process, inside Celery's `except`: the exception as raised.
        raised = sys.exc_info()[1]
        exc = raised if raised is not None else exception
        if isinstance(exc, BaseException):
            guarded("a Celery task's failure", _note, execution, exc, einfo)
    elif _settings_of(sender) is not None and isinstance(exception, BaseException):
        # The worker's main process: a child killed by a time limit, or lost.
        guarded("the end of a Celery task", _conclude_failure, task_id, exception, einfo)


def _on_retry(
    sender: Any = None, request: Any = None, reason: Any = None, einfo: Any = None, **_: Any
) -> None:
    task_id = getattr(request, "id", None)
    if not isinstance(task_id, str):
        return
    execution = _executions.get(task_id)
    if execution is not None:
        raised = sys.exc_info()[1]
        exc = raised if raised is not None else reason
        if isinstance(exc, BaseException):
            guarded("a Celery task's retry", _note, execution, exc, einfo)
    elif _settings_of(sender) is not None:
        # The main process cancelled the task (the broker connection was lost, with
        # worker_cancel_long_running_tasks_on_connection_loss): it is delivered again.
        values = {
            "error_type": "Cancelled",
            "error_message": "cancelled by Celery: the connection to the broker was lost; "
            "the task is delivered again",
        }
        guarded("the end of a Celery task", _conclude_elsewhere, task_id, Status.CANCELLED, values)


def _note(execution: _Execution, exc: BaseException, einfo: Any) -> None:
    result = outcome(exc)
    values = dict(result.values)
    detail = getattr(einfo, "traceback", None)
    if exc.__traceback__ is None and isinstance(detail, str) and detail:
        values["error_detail"] = detail
    execution.verdict = (result.status, values, result.line)
    execution.raised = exc


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
    execution = _executions.pop(task_id, None)
    if execution is None:
        return
    # No state: an exception is on its way through Celery's `finally` (SystemExit from a
    # terminating signal, KeyboardInterrupt, tasker.skip()).
    exc = sys.exc_info()[1] if state is None else None
    guarded("the end of a Celery task", _end, execution, state, retval, exc)


def _terminated(exc: BaseException | None) -> bool:
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


def _end(execution: _Execution, state: Any, retval: Any, exc: BaseException | None) -> None:
    run = execution.state
    try:
        if state is None and exc is not None and _terminated(exc):
            # The main process saw why (it sent the signal, or saw the child go) and records
            # the end; this process only ends its loops and makes what it counted durable.
            why = f"terminated by {_signal_name(_terminating_signal(exc))}"
            _correct_loops(run, exc, Outcome(Status.CANCELLED, {}, why))
            _abandon(run)
            return
        status, values, line = _verdict(execution, state, retval, exc)
        raised = exc if exc is not None else execution.raised
        if raised is not None:
            _correct_loops(run, raised, Outcome(status, values, line))
        runs.end_run(run, status, values, sync=False, line=line)
    finally:
        if execution.attached is not None:
            execution.attached.__exit__(None, None, None)
        if execution.durable and not RECORDER.writer.failing:
            # Before the process takes its next task, or is ended. (With the database away,
            # the writer retries; the process's end journals what is still undelivered.)
            RECORDER.flush(execution.settings.flush_timeout)


def _terminating_signal(exc: BaseException) -> int | None:
    code = exc.code if isinstance(exc, SystemExit) else None
    return 256 + code if isinstance(code, int) and -255 <= code < 0 else None


def _correct_loops(state: RunState, exc: BaseException, result: Outcome) -> None:
    """A track() loop that the exception left ended COMPLETED ("stopped after n items"): it
    ends with the run's status instead, as under @tasker.task."""
    from tasker.instrument.decorators import correct_early_closed

    correct_early_closed(state, exc, result)


def _abandon(state: RunState) -> None:
    state.ended = True  # no heartbeat, no end at exit: the main process ends it
    RECORDER.live_runs.discard(state)
    context.pop(state.run_id)


def _verdict(
    execution: _Execution, state: Any, retval: Any, exc: BaseException | None
) -> tuple[Status, dict[str, Any], str | None]:
    if state == _SUCCESS:
        return Status.COMPLETED, {}, None
    if state in (_FAILURE, _RETRY):
        if execution.verdict is not None:
            return execution.verdict
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


# ------------------------------------------------------------------------ the main process


def _on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """The worker's main process received a request (before it executes anywhere)."""
    task_id = getattr(request, "id", None)
    request_dict = getattr(request, "request_dict", None)
    if (
        isinstance(task_id, str)
        and isinstance(request_dict, dict)
        and _settings_of(getattr(request, "task", None)) is not None
    ):
        guarded("a Celery task's run id", _receive, task_id, request, request_dict)


def _receive(task_id: str, request: Any, request_dict: dict[str, Any]) -> None:
    request_dict[RUN_ID_KEY] = _new_execution_id(task_id, request_dict, _redelivered(request))
    with contextlib.suppress(TypeError):  # not weak-referenceable: not a worker's request
        _requests[task_id] = request


def _on_revoked(
    sender: Any = None,
    request: Any = None,
    terminated: Any = False,
    signum: Any = None,
    **_: Any,
) -> None:
    task_id = getattr(request, "id", None)
    if not terminated or not isinstance(task_id, str) or _settings_of(sender) is None:
        return  # revoked before it started: it never ran
    name = _signal_name(signum)
    values = {"error_type": "Revoked", "error_message": f"revoked and terminated by {name}"}
    guarded("the end of a Celery task", _conclude_elsewhere, task_id, Status.CANCELLED, values)


def _signal_name(signum: Any) -> str:
    try:
        return signal.Signals(abs(int(signum))).name  # billiard reports some as -signum
    except (TypeError, ValueError):
        return str(signum) if signum else "a signal"


def _conclude_failure(task_id: str, exception: BaseException, einfo: Any) -> None:
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
    _conclude_elsewhere(task_id, status, values)


def _conclude_elsewhere(task_id: str, status: Status, values: dict[str, Any]) -> None:
    """Record the end of the run of ``task_id``, which a child process was executing when it
    was killed; in a thread, so the worker's event loop never waits on the database."""
    request = _requests.get(task_id)
    if request is None:
        return
    pid = getattr(request, "worker_pid", None)
    if not isinstance(pid, int) or pid == os.getpid():
        return  # never given to a child, or executed here: this process's handlers record it
    run_id = (getattr(request, "request_dict", None) or {}).get(RUN_ID_KEY)
    if not isinstance(run_id, str):
        return
    import tasker.store.sql  # noqa: F401 - imported here, in the thread that forks

    thread = threading.Thread(
        target=guarded,
        args=("the end of a Celery task", _conclude, run_id, status, values),
        name="tasker-celery",
        daemon=True,
    )
    _concluding.add(thread)
    started_without_signals(thread)


def _conclude(run_id: str, status: Status, values: dict[str, Any]) -> None:
    try:
        deadline = time.monotonic() + CONCLUDE_WAIT
        delay = 0.05
        while not _holding_forks(_end_if_active, run_id, status, values):
            if time.monotonic() >= deadline:
                return  # the child was killed before it could record the start
            time.sleep(delay)
            delay = min(1.0, delay * 2)
    finally:
        _concluding.discard(threading.current_thread())


def _holding_forks(fn: Any, *args: Any) -> Any:
    """Call ``fn`` with forks held off: the worker forks children at any moment (recycling,
    replacing a killed one), and a child forked while this thread is inside an import or a
    connection would inherit its locks held, for ever. tasker's writer takes the same lock
    for its writes, and every fork waits for it."""
    writer = RECORDER.writer
    writer.pause()
    try:
        return fn(*args)
    finally:
        writer.resume()


def _end_if_active(run_id: str, status: Status, values: dict[str, Any]) -> bool:
    """End the run if it is still active; False while it is not in the database yet."""
    when = runs.now()
    try:
        # One conditional UPDATE: the store never ends a run twice (RunEndedError).
        RECORDER.store.end_run(run_id, status, values, when, runs.ended_with_run(status))
    except UnknownRunError:
        return False
    except RunEndedError:
        return True  # it ended before its process was killed
    except DatabaseError as exc:
        if not exc.unavailable:
            raise
        # The database is away: the writer keeps the end, retries it, journals it at exit.
        RECORDER.submit((ev.END_RUN, run_id, (status, values, when, runs.ended_with_run(status))))
    if not RECORDER.config.quiet:
        console.task_update(run_id, status.value, values.get("error_message"))
    return True


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    if _settings_of(sender) is not None:
        guarded("the worker's start", _prepare_children, sender.app)


def _prepare_children(app: Any) -> None:
    """In the worker's main process, before it forks its pool: what every child needs for
    its first run (the store's code and the database's driver, the tasks' files and git
    details) is loaded once here and inherited, instead of once per child (with
    ``--max-tasks-per-child``, once per few tasks). Nothing is connected."""
    import tasker.runtime.journal
    import tasker.store.sql  # noqa: F401
    from tasker.runtime.capture.git import git_info

    RECORDER.raw_store.engine  # noqa: B018 - creating the engine loads the driver
    for task in list(app.tasks.values()):
        if str(task.name).startswith("celery."):
            continue  # Celery's own (chord_unlock, backend_cleanup ...)
        script = _script_of(task)
        if script is not None:
            git_info(os.path.dirname(script))


def _on_process_shutdown(**_: Any) -> None:
    # A pool process ending (recycled, shut down): billiard ends it with os._exit, without
    # atexit. What the database cannot take now goes to the journal, as at any exit.
    if _installed:
        guarded("tracked events", RECORDER.writer.flush, _flush_timeout(), closing=True)


def _on_worker_shutdown(**_: Any) -> None:
    if not _installed:
        return
    deadline = time.monotonic() + _flush_timeout()
    for thread in list(_concluding):
        thread.join(max(0.0, deadline - time.monotonic()))
    guarded("tracked events", RECORDER.flush, max(1.0, deadline - time.monotonic()))


def _flush_timeout() -> float:
    return max((s.flush_timeout for s in list(_installed.values())), default=10.0)


def _after_fork_in_child() -> None:
    # A pool child starts with no executions, requests or threads of its parent's.
    _executions.clear()
    _requests.clear()
    _concluding.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
