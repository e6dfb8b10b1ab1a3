"""Run and subtask lifecycles, shared by the explicit API and the automatic layer.

``sync=True`` (the explicit API) writes at once and lets errors reach the caller, after
flushing whatever the writer still holds so that order is kept. ``sync=False`` (decorators,
``with`` blocks, ``track()``) queues events for the background writer: the caller never waits
on the database.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from tasker.config import Config
from tasker.errors import DatabaseError, UnknownRunError, UnknownSubtaskError
from tasker.models import NewRun, Status
from tasker.runtime import console, context
from tasker.runtime import events as ev
from tasker.runtime.capture.git import git_info
from tasker.runtime.capture.logs import active_log_file, log_position, shipped_tail
from tasker.runtime.capture.process import (
    command_of,
    in_worker_process,
    process_info,
    process_start,
    usage,
)
from tasker.runtime.context import RunState
from tasker.runtime.counters import Counter
from tasker.runtime.dispatch import apply_now, write
from tasker.runtime.ids import new_run_id
from tasker.runtime.recorder import RECORDER
from tasker.runtime.storable import LONG_BYTES, fit_values, fitted
from tasker.validate import WIDTHS

__all__ = [
    "Subtask",
    "apply_now",
    "await_parent",
    "end_run",
    "end_subtask",
    "loop_ended_in_worker",
    "make_durable",
    "remote_subtask",
    "start_run",
    "start_subtask",
    "write",
]

T = TypeVar("T")


def make_durable() -> None:
    """Write what this process tracked so far, within ``exit_timeout``; never raises. Runs
    that end in a worker process are made durable so before the call returns: pool workers,
    Celery's prefork children and Ray workers may end with os._exit(), which runs no atexit
    handler.

    In a worker process with nothing tracked left live, SIGTERM then goes back to its default
    action until the next call tracks something (see tasker.runtime.signals.uninstall)."""
    try:
        writer = RECORDER.writer
        if writer.pending and threading.current_thread().name != "tasker-writer":
            # Not while the database is known to be away, nor while a write is stuck on it:
            # each call would wait for a write that cannot happen.
            bound = RECORDER.exit_timeout()
            written = not writer.failing and not writer.stalled(bound / 2) and writer.flush(bound)
            if not written and in_worker_process():
                # A worker may be killed the moment it returns (Pool.terminate()): what it
                # could not write goes to its journal now, not at an exit that may not come.
                writer.journal_now()
        if (
            not any(s.is_local and not s.ended for s in list(RECORDER.live_runs))
            and not context.handed_over_work()
            and in_worker_process()
        ):
            RECORDER.release_signal_handlers()
    except Exception:  # tracking never breaks the work it tracks
        pass


def loop_ended_in_worker() -> None:
    """A track() loop ended: in a worker process (a pool's fork child counting into its
    parent's subtask, say), what it counted is made durable and the worker, idle again, gets
    SIGTERM's default action back (make_durable), as after a decorated call. A Python-level
    handler left in an idle pool worker can miss the SIGTERM of Pool.terminate() and leave the
    worker blocked on the task queue's lock for good. Elsewhere: nothing (one cached check)."""
    try:
        if in_worker_process():
            make_durable()
    except Exception:  # tracking never breaks the work it tracks
        pass


def write_queued_starts() -> None:
    """Before work is handed to another process: write what is queued (run and subtask
    starts), within ``lock_timeout``; never raises."""
    try:
        writer = RECORDER.writer
        bound = RECORDER.lock_timeout()
        if (
            writer.queued
            and threading.current_thread().name != "tasker-writer"
            # Not with the database known to be away, or stuck: every call sent would wait.
            and not writer.failing
            and not writer.stalled(bound / 2)
        ):
            writer.flush(bound)
    except Exception:  # tracking never breaks the work it tracks
        pass


def now() -> datetime:
    return datetime.now(timezone.utc)


def await_parent(state: RunState | None, fn: Callable[[], T], run_id: str | None = None) -> T:
    """Call ``fn``; for a run another process owns, wait a while for that process's writer to
    record the run (or subtask) this call refers to, instead of failing at once. A subtask
    missing from a run that has ended is not waited for: it will never come."""
    if state is not None and state.is_local:
        return fn()
    deadline = time.monotonic() + max(10.0, 5 * RECORDER.config.flush_interval)
    delay = 0.02
    while True:
        try:
            return fn()
        except (UnknownRunError, UnknownSubtaskError) as exc:
            if time.monotonic() > deadline or (
                isinstance(exc, UnknownSubtaskError) and run_id is not None and _ended(run_id)
            ):
                raise
            time.sleep(delay)
            delay = min(0.5, delay * 2)


def _ended(run_id: str) -> bool:
    try:
        return not Status(RECORDER.store.get_run(run_id).status).is_active
    except Exception:  # cannot tell: keep waiting out the deadline
        return False


def start_run(
    stage: str,
    task: str,
    *,
    sync: bool,
    total_subtasks: int | None = None,
    message: str | None = None,
    version: str | None = None,
    git_commit: str | None = None,
    task_type: str | None = None,
    parent_run_id: str | None = None,
    log_path: str | None = None,
    log_filename: str | None = None,
    script_path: str | None = None,
    quiet: bool | None = None,
    on_behalf_of: int | None = None,
    run_id: str | None = None,
    root: bool = False,
) -> RunState:
    """Record a new run of ``stage`` / ``task`` and make it current.

    ``on_behalf_of``: the run belongs to that process (a shell script calling ``tasker
    start``), not to this one: it is recorded with that PID, for the reaper, and this process
    neither makes it current nor ends it at exit. ``run_id``: the new run's id, when the
    caller must know it beforehand (an engine integration that may have to end the run from
    another process); by default a fresh random one. ``root``: a top-level run even where a
    run is current (an engine's worker thread starting work that came with no run)."""
    config = RECORDER.config
    info = process_info()
    script_dir, script_file = info.script_path, info.script_filename
    command_line: str | None = info.command_line
    if on_behalf_of is not None:
        # The run is the owner's (the shell script that called `tasker start`): its command
        # line and script, not this short-lived process's.
        command_line, script_dir, script_file = command_of(on_behalf_of)
    if script_path is not None:  # a decorated function's own file
        script_dir, script_file = _split(script_path)
    git = git_info(script_dir) if git_commit is None else None
    if sync and log_path is None and log_filename is None:
        # (Queued starts get theirs from the writer, once per batch: see tasker.runtime.writer.)
        log_path, log_filename = active_log_file()
    if parent_run_id is None and not root:
        parent_run_id = context.current_run_id()
    if run_id is None:
        run_id = new_run_id()
    if len(stage) > _STAGE_WIDTH or len(task) > _TASK_WIDTH:  # names from elsewhere
        stage, task = _wide_name(stage, "stage"), _wide_name(task, "task")
    settings = _settings(config)
    started = (
        (info.process_start_time, info.process_start_uptime)
        if on_behalf_of is None
        else process_start(on_behalf_of)
    )
    new = NewRun(
        run_id=run_id,
        stage=stage,
        task=task,
        task_type=task_type,
        status=Status.STARTED,
        start_time=now(),
        hostname=info.hostname,
        process_id=info.process_id if on_behalf_of is None else on_behalf_of,
        parent_pid=info.parent_pid if on_behalf_of is None else None,
        process_start_time=started[0],
        process_start_uptime=started[1],
        parent_run_id=parent_run_id,
        user_name=info.user_name,
        python_version=info.python_version if on_behalf_of is None else None,
        command_line=command_line,
        script_path=script_dir,
        script_filename=script_file,
        log_path=log_path,
        log_filename=log_filename,
        version=version or settings[0],
        git_commit=git_commit if git is None else git.commit,
        git_branch=None if git is None else git.branch,
        git_dirty=None if git is None else git.dirty,
        environment=settings[1],
        total_subtasks=total_subtasks,
        overall_progress_message=message,
        # This process's, also for on_behalf_of: the shell runs on this host and namespace.
        boot_id=info.boot_id,
        pid_namespace=info.pid_namespace,
    )
    state = RunState(
        run_id=run_id,
        stage=stage,
        task=task,
        total_subtasks=total_subtasks,
        owned=on_behalf_of is None,
    )
    if state.owned:
        # Live before its start is queued: a SIGTERM arriving in between must find the run
        # to end it (else its start would be written and the run left STARTED).
        if not RECORDER._signals_installed:
            RECORDER.install_signal_handlers()
        RECORDER.live_runs.add(state)
    # The process's facts and the names came storable; only the message may be long.
    long = info.long_texts or (message is not None and 4 * len(message) > LONG_BYTES)
    try:
        write(ev.START_RUN, run_id, (new,), sync=sync, long=long)
    except BaseException:
        RECORDER.live_runs.discard(state)
        raise
    if state.owned:
        context.push(state)
        RECORDER.writer.ensure_started()  # it heartbeats the run
        if config.log_tail_bytes and _outermost(state):
            # An outermost run ships what is logged from here on (end_run): a program that
            # calls a top-level task for each of thousands of items stores each call's own
            # lines, not the same end of the file thousands of times.
            state.log_from = log_position()
    if not (config.quiet if quiet is None else quiet):
        console.task_start(stage, task, run_id)
    return state


_settings_of: tuple[Config | None, tuple[str | None, str | None]] = (None, (None, None))
_ENV_WIDTH = WIDTHS["environment"]
_STAGE_WIDTH = WIDTHS["stage"]
_TASK_WIDTH = WIDTHS["task"]


def _settings(config: Config) -> tuple[str | None, str | None]:
    """The configuration's version and environment, made storable once per configuration."""
    global _settings_of
    if _settings_of[0] is not config:
        version, environment = config.version, config.environment
        _settings_of = (
            config,
            (
                None if version is None else fitted(version, "version", WIDTHS["version"]),
                None if environment is None else fitted(environment, "environment", _ENV_WIDTH),
            ),
        )
    return _settings_of[1]


@functools.lru_cache(maxsize=64)
def _wide_name(name: str, field: str) -> str:
    """A name too wide for its column (from the configuration, an engine), cut once."""
    return fitted(name, field, WIDTHS[field])


def _outermost(state: RunState) -> bool:
    """No run of this process around it: none in its context, nor one its thread works for
    (a thread-pool call's run nests under the submitting run: see context.push, ``shared``)."""
    parent = state.parent
    return state.shared if parent is None else not parent.is_local


@functools.lru_cache(maxsize=1024)
def _split(path: str) -> tuple[str, str]:
    """A script's path as (folder, file name), made storable once per path."""
    folder, _, name = path.rpartition(os.sep)
    folder = fitted(folder or os.sep, "script_path")
    return folder, fitted(name, "script_filename", WIDTHS["script_filename"])


def ended_with_run(status: Status) -> str | None:
    """The error message of subtasks a FAILED or CANCELLED run ends with it."""
    if status in (Status.FAILED, Status.CANCELLED):
        return f"ended {status.value} with its run"
    return None


def _quiet(quiet: bool | None) -> bool:
    return RECORDER.config.quiet if quiet is None else quiet


def end_run(
    state: RunState,
    status: Status,
    values: dict[str, Any] | None = None,
    *,
    sync: bool,
    line: str | None = None,
    quiet: bool | None = None,
) -> None:
    """End ``state``'s run with ``status``; its open subtasks end the same way (COMPLETED
    for a completed run)."""
    if state.ended:
        return
    state.ended = True
    size = 0
    if values:  # what the caller gives (an exception's text, say) made storable
        values, size = fit_values(values, lambda: f"run {state.run_id}")
    values = dict(values) if values else {}
    ended_with = ended_with_run(status)
    if state.subtasks:
        for sub in list(reversed(state.subtasks)):
            end_subtask(sub, status, sync=sync, error=ended_with, quiet=True)
    parent = state.parent
    if state.is_local:
        cpu, peak = usage()
        values.setdefault("cpu_seconds", max(0.0, cpu - state.cpu_start))
        if peak is not None:
            values.setdefault("peak_memory_mb", peak)
        # The end of the process's log file goes with the run's end: for the process's
        # outermost runs and for every failure, not for each nested call that succeeded
        # (each would store the same bytes again, and pay a read for them).
        if "log_tail" not in values and (status is Status.FAILED or _outermost(state)):
            tail = shipped_tail(RECORDER.config.log_tail_bytes, state.log_from)
            if tail is not None:
                values["log_tail"] = tail
    when = now()
    run_id = state.run_id
    try:
        args = (status, values, when, ended_with)
        write(ev.END_RUN, run_id, args, sync=sync, long=size > LONG_BYTES)
    finally:
        context.pop(run_id)
        RECORDER.live_runs.discard(state)
    if not _quiet(quiet):
        console.task_update(run_id, status.value, line)
    # The outermost run of this process ended. In a worker, or under a run handed over from
    # elsewhere, the process may be ended without warning once the call returns.
    if (
        not sync
        and (parent is None or not parent.is_local)
        and ((parent is not None and parent.handed_over) or in_worker_process())
    ):
        make_durable()


@dataclasses.dataclass(eq=False)
class Subtask:
    """A numbered subtask this process has open: its handle and live counter."""

    state: RunState
    number: int
    name: str | None
    counter: Counter
    ended: bool = False
    status: Status = Status.STARTED
    # Opened by another process (handed over with the work): counted into, never ended here.
    remote: bool = False

    @property
    def run_id(self) -> str:
        return self.state.run_id


def remote_subtask(state: RunState, number: int) -> Subtask:
    """The handle of subtask ``number``, open in another process's run ``state``: loops and
    increments here count into it."""
    return Subtask(state, number, None, Counter(state.run_id, number), remote=True)


def start_subtask(
    state: RunState,
    name: str | None,
    *,
    sync: bool,
    items_total: int | None = None,
    message: str | None = None,
    number: int | None = None,
    quiet: bool | None = None,
) -> Subtask:
    """Start the next numbered subtask of ``state``'s run (or ``number``)."""
    run_id = state.run_id
    when = now()
    if number is None and state.is_local and state.handed_off:
        # Work sent from this run may open subtasks of its own, numbered by the database
        # (under the run's row lock): from now on this process takes its numbers there too,
        # at once, so that no two subtasks get one number. Its own earlier starts were
        # written before the work was sent. With the database away: the next local number.
        got = None
        if not RECORDER.writer.failing:
            try:
                got = apply_now(
                    (ev.START_SUBTASK, run_id, (None, name, items_total, message, when))
                )
            except (DatabaseError, UnknownRunError):
                if RECORDER.config.strict:
                    raise
        if got is not None:
            number = int(got)
            state.note_subtask_number(number)
            return _opened(state, number, name, items_total, message, quiet)
    if number is None and state.is_local:
        number = state.next_subtask_number()
    elif number is not None and state.is_local:
        state.note_subtask_number(number)
    if number is None or sync:
        # A run owned elsewhere is numbered by the database, so processes never collide.
        args = (number, name, items_total, message, when)
        given = number
        number = await_parent(
            state, lambda: write(ev.START_SUBTASK, run_id, args, sync=True, default=given)
        )
        if number is None:  # numbered by the database, which is away
            raise DatabaseError(
                f"cannot number a new subtask of run {run_id}: the database is unreachable; "
                "pass subtask_number to report while it is away",
                unavailable=True,
            )
    else:
        write(ev.START_SUBTASK, run_id, (number, name, items_total, message, when), sync=False)
    return _opened(state, number, name, items_total, message, quiet)


def _opened(
    state: RunState,
    number: int,
    name: str | None,
    items_total: int | None,
    message: str | None,
    quiet: bool | None,
) -> Subtask:
    sub = Subtask(state, number, name, Counter(state.run_id, number, items_total=items_total))
    RECORDER.writer.publish(sub.counter)
    state.subtasks.append(sub)
    state.current_subtask = number
    context.subtasks_changed(state)
    if not _quiet(quiet):
        console.subtask_start(number, name, message)
    return sub


def correct_subtask(sub: Subtask, status: Status, *, error: str | None = None) -> None:
    """Re-end a subtask already ended (a track() loop closed by a failure): the scope's
    status wins."""
    run_id, number, when = sub.run_id, sub.number, now()
    values: dict[str, Any] = {"status": status.value, "end_time": when}
    if error is not None:
        values["error_message"] = error
    sub.status = status
    write(ev.UPDATE_SUBTASK, run_id, (number, values, when, None, True), sync=False)


def update_run(run_id: str, values: dict[str, Any]) -> None:
    """Queue an update of a run's fields."""
    write(ev.UPDATE_RUN, run_id, (values, now()), sync=False)


def update_subtask(run_id: str, number: int, values: dict[str, Any]) -> None:
    """Queue an update of a subtask's fields."""
    write(ev.UPDATE_SUBTASK, run_id, (number, values, now()), sync=False)


def retire_counter(counter: Counter) -> None:
    """A loop that counted into someone else's subtask is done: write its last items."""
    RECORDER.writer.withdraw(counter)
    delta = counter.take()
    if delta:
        run_id, number, when = counter.run_id, counter.number, now()
        write(ev.INCREMENT_SUBTASK, run_id, (number, delta, when), sync=False)


def detach_subtask(sub: Subtask, status: Status) -> int:
    """Close ``sub`` in this process: no longer open, no longer counted by the writer.
    Returns the items counted but not yet written, which the caller writes."""
    sub.ended = True
    sub.status = status
    RECORDER.writer.withdraw(sub.counter)
    if sub in sub.state.subtasks:
        sub.state.subtasks.remove(sub)
        context.subtasks_changed(sub.state)
    return sub.counter.take()


def end_subtask(
    sub: Subtask,
    status: Status,
    *,
    sync: bool,
    message: str | None = None,
    error: str | None = None,
    extra: dict[str, Any] | None = None,
    quiet: bool | None = None,
) -> None:
    """End ``sub`` with ``status``, writing its final count."""
    if sub.ended:
        return
    delta = detach_subtask(sub, status)
    run_id, number, when = sub.run_id, sub.number, now()
    values: dict[str, Any] = {"status": status.value, "end_time": when, **(extra or {})}
    if status is Status.COMPLETED and "percent_complete" not in values:
        values["percent_complete"] = 100.0
    if message is not None:
        values["progress_message"] = message
    if error is not None:
        values["error_message"] = error
    write(ev.END_SUBTASK, run_id, (number, delta, values, when), sync=sync)
    if not _quiet(quiet):
        console.subtask_update(number, status.value, message or error)
