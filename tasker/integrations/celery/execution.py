"""The executing process's side: each execution owns a run, from before the task body runs to
before the process takes its next task.

The run is nested under the sender's run (the message's headers), or, for a message sent from
no run, under the run the worker itself was started in, if any. Its start is made durable
before the task body runs and its end before the next task is taken, because a pool process
may be ended at any moment after that with ``os._exit`` (``--max-tasks-per-child``, a warm
shutdown), which skips atexit. A pool process ended by a signal leaves its run's end to the
worker's main process, which saw why (:mod:`tasker.integrations.celery.main_process`).
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Any

from tasker import validate
from tasker.errors import ValidationError
from tasker.instrument.carry import attach
from tasker.instrument.outcome import Outcome
from tasker.integrations.celery.messages import (
    RUN_ID_KEY,
    new_execution_id,
    parent_of,
    redelivered,
)
from tasker.integrations.celery.outcomes import (
    noted,
    signal_name,
    terminated,
    terminating_signal,
    verdict,
)
from tasker.integrations.celery.state import Execution, Settings, executions
from tasker.models import Status
from tasker.runtime import context, runs
from tasker.runtime.context import RunState
from tasker.runtime.recorder import RECORDER

__all__ = ["end", "note", "script_of", "start"]

_scripts: dict[str, str | None] = {}


def script_of(task: Any) -> str | None:
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


def start(settings: Settings, task_id: str, task: Any) -> None:
    own = getattr(task, "tasker_stage", None)  # @app.task(tasker_stage="...")
    stage = validate.name(own, "tasker_stage", 100) if own is not None else settings.stage
    name = validate.name(task.name, "a Celery task's name", 255)
    request = task.request
    run_id = getattr(request, RUN_ID_KEY, None)
    if not isinstance(run_id, str):  # not received by a worker: an eager call
        run_id = new_execution_id(task_id, vars(request), redelivered(request))
    parent, subtask = parent_of(request)
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
            script_path=script_of(task),
            run_id=run_id,
            root=root,
        )
    except BaseException:
        if attached is not None:
            attached.__exit__(None, None, None)
        raise
    durable = not getattr(request, "is_eager", False)
    executions[task_id] = Execution(state, attached, settings, durable)
    if durable and not RECORDER.writer.failing:  # durable before the task body runs
        RECORDER.flush(settings.flush_timeout)


def note(execution: Execution, exc: BaseException, einfo: Any) -> None:
    """Celery said the task failed or retries (before its postrun): kept for its end."""
    execution.verdict = noted(exc, einfo)
    execution.raised = exc


def end(execution: Execution, state: Any, retval: Any, exc: BaseException | None) -> None:
    run = execution.state
    try:
        if state is None and exc is not None and terminated(exc):
            # The main process saw why (it sent the signal, or saw the child go) and records
            # the end; this process only ends its loops and makes what it counted durable.
            why = f"terminated by {signal_name(terminating_signal(exc))}"
            _correct_loops(run, exc, Outcome(Status.CANCELLED, {}, why))
            _abandon(run)
            return
        status, values, line = verdict(execution.verdict, state, retval, exc)
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


def _correct_loops(state: RunState, exc: BaseException, result: Outcome) -> None:
    """A track() loop that the exception left ended COMPLETED ("stopped after n items"): it
    ends with the run's status instead, as under @tasker.task."""
    from tasker.instrument.decorators import correct_early_closed

    correct_early_closed(state, exc, result)


def _abandon(state: RunState) -> None:
    state.ended = True  # no heartbeat, no end at exit: the main process ends it
    RECORDER.live_runs.discard(state)
    context.pop(state.run_id)
