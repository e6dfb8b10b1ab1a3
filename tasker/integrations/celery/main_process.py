"""The worker's main process: it gives each execution its run id when it receives the
request, and records the end of executions whose pool process was killed (a time limit, a
lost child, ``revoke(terminate=True)``), which can record nothing themselves.

Those ends are written from a thread of their own, so that the worker's event loop never
waits on the database, and with forks held off (``_holding_forks``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from tasker.errors import DatabaseError, RunEndedError, UnknownRunError
from tasker.instrument.outcome import guarded
from tasker.integrations.celery.execution import script_of
from tasker.integrations.celery.messages import RUN_ID_KEY, new_execution_id, redelivered
from tasker.integrations.celery.state import concluding, flush_timeout, requests
from tasker.models import Status
from tasker.runtime import console, runs
from tasker.runtime import events as ev
from tasker.runtime.recorder import RECORDER
from tasker.runtime.threads import started_without_signals

__all__ = ["CONCLUDE_WAIT", "conclude_elsewhere", "prepare_children", "receive", "shut_down"]

# How long the worker's main process waits for the run of a killed child to appear in the
# database (the child writes its start before the task body runs; this covers a kill that
# came first).
CONCLUDE_WAIT = 30.0


def receive(task_id: str, request: Any, request_dict: dict[str, Any]) -> None:
    request_dict[RUN_ID_KEY] = new_execution_id(task_id, request_dict, redelivered(request))
    with contextlib.suppress(TypeError):  # not weak-referenceable: not a worker's request
        requests[task_id] = request


def conclude_elsewhere(task_id: str, status: Status, values: dict[str, Any]) -> None:
    """Record the end of the run of ``task_id``, which a child process was executing when it
    was killed; in a thread, so the worker's event loop never waits on the database."""
    request = requests.get(task_id)
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
    concluding.add(thread)
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
        concluding.discard(threading.current_thread())


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


def prepare_children(app: Any) -> None:
    """In the worker's main process, before it forks its pool: what every child needs for
    its first run (the store's code and the database's driver, the tasks' files and git
    details) is loaded once here and inherited, instead of once per child (with
    ``--max-tasks-per-child``, once per few tasks). Nothing is connected."""
    import tasker.runtime.replaying  # and the journal it reads
    import tasker.store.sql  # noqa: F401
    from tasker.runtime.capture.git import git_info

    RECORDER.raw_store.engine  # noqa: B018 - creating the engine loads the driver
    for task in list(app.tasks.values()):
        if str(task.name).startswith("celery."):
            continue  # Celery's own (chord_unlock, backend_cleanup ...)
        script = script_of(task)
        if script is not None:
            git_info(os.path.dirname(script))


def shut_down() -> None:
    """The worker is shutting down: let the threads recording killed children's ends finish,
    then write everything, all within ``flush_timeout`` (the last write gets a second at
    least)."""
    deadline = time.monotonic() + flush_timeout()
    for thread in list(concluding):
        thread.join(max(0.0, deadline - time.monotonic()))
    guarded("tracked events", RECORDER.flush, max(1.0, deadline - time.monotonic()))
