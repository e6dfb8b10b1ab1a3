"""The explicit tracking API: parity with the seed's R package, for code that cannot use
decorators. ``run_id`` arguments default to the current run.

Every call checks its arguments before touching the database, so a rejected call changes
nothing that was already recorded.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any

from tasker import validate
from tasker.config import Config
from tasker.errors import RunEndedError, TaskerWarning, UnknownRunError, ValidationError
from tasker.models import ReplayResult, RunRecord, Status, parse_status
from tasker.registration import specs_from
from tasker.runtime import console, context, runs
from tasker.runtime import events as ev
from tasker.runtime.capture.process import process_info
from tasker.runtime.recorder import RECORDER
from tasker.tracebacks import format_exception

__all__ = [
    "configure",
    "create_schema",
    "get_config",
    "register_task",
    "register_tasks",
    "subtask_complete",
    "subtask_fail",
    "subtask_increment",
    "subtask_start",
    "subtask_update",
    "task_complete",
    "task_fail",
    "task_start",
    "task_update",
]

_RUN_STATUSES = (
    Status.STARTED,
    Status.RUNNING,
    Status.COMPLETED,
    Status.FAILED,
    Status.SKIPPED,
    Status.CANCELLED,
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _quiet(quiet: bool | None) -> bool:
    return RECORDER.config.quiet if quiet is None else quiet


def resolve_run_id(run_id: str | None) -> str:
    """``run_id`` checked and normalised, or the current run's id."""
    if run_id is None:
        current = context.current_run_id()
        if current is None:
            raise UnknownRunError(
                "no current run: call task_start() first, pass run_id=..., or set "
                f"{context.RUN_ID_ENV} in the environment"
            )
        run_id = current
    return validate.run_id(run_id)


# ---------------------------------------------------------------------------- configuration


def configure(config_file: str | os.PathLike[str] | None = None, **settings: Any) -> Config:
    """Set tasker's configuration explicitly; returns the resolved configuration.

    Keyword arguments take precedence over environment variables and the YAML file. Each call
    replaces the settings of the previous one. Keys: ``url``, ``driver``, ``host``, ``port``,
    ``dbname``, ``user``, ``password``, ``schema``, ``path`` (SQLite), ``heartbeat_interval``,
    ``stale_after``, ``flush_interval``, ``console`` (auto/true/false), ``quiet``, ``strict``,
    ``enabled``, ``environment``, ``version``, ``default_stage``, ``journal_dir``,
    ``max_queued``, ``connect_timeout``, ``statement_timeout``, ``lock_timeout``,
    ``exit_timeout``, ``log_roots``, ``allowed_hosts``.
    """
    return RECORDER.configure(settings, None if config_file is None else os.fspath(config_file))


def get_config() -> Config:
    """The resolved configuration; ``.sources`` says where each value came from."""
    return RECORDER.config


def create_schema() -> bool:
    """Create tasker's tables, views and indexes if missing; True if they were created.

    Idempotent and safe to call from many processes at once.
    """
    return RECORDER.raw_store.create_schema()


# ---------------------------------------------------------------------------- registration


def register_task(
    stage: str,
    name: str,
    task_type: str | None = None,
    *,
    stage_order: int | None = None,
    task_order: int | None = None,
    description: str | None = None,
    stage_description: str | None = None,
    script_path: str | None = None,
    script_filename: str | None = None,
    log_path: str | None = None,
    log_filename: str | None = None,
) -> int:
    """Register a task (and its stage) so the monitor lists it before it runs; returns task_id.

    Registering again updates the task in place: given fields replace the stored ones,
    omitted ones are kept. New stages and tasks without an order go after the existing ones.
    """
    row: dict[str, Any] = {
        "stage": stage,
        "name": name,
        "type": task_type,
        "stage_order": stage_order,
        "task_order": task_order,
        "description": description,
        "stage_description": stage_description,
        "script_path": script_path,
        "script_filename": script_filename,
        "log_path": log_path,
        "log_filename": log_filename,
    }
    return register_tasks([row])[0]


def register_tasks(tasks: Any) -> list[int]:
    """Register many tasks in one transaction; returns their task_ids in order.

    ``tasks`` is a list of dicts (keys as :func:`register_task`'s arguments; ``type`` for the
    task type), a pandas DataFrame with those columns, or the path of a YAML or CSV file.
    """
    specs = specs_from(tasks)
    if not specs:
        return []
    return RECORDER.synced_store().register_tasks(specs, _now())


# ---------------------------------------------------------------------------- runs


def _lookup_task_by_script(stage: str | None) -> tuple[str, str]:
    info = process_info()
    if info.script_filename is None:
        raise ValidationError(
            "task_start() needs a task name: none was given and this process has no script "
            "file to look one up by"
        )
    matches = RECORDER.store.find_task_by_script(info.script_filename)
    if stage is not None:
        matches = [m for m in matches if m.stage_name == stage]
    if len(matches) == 1:
        return matches[0].stage_name, matches[0].task_name
    if len(matches) > 1:
        found = ", ".join(f"{m.stage_name} / {m.task_name}" for m in matches)
        raise ValidationError(
            f"script {info.script_filename} is registered for several tasks ({found}): pass "
            "stage and task to task_start()"
        )
    return stage or RECORDER.config.default_stage, info.script_filename.rsplit(".", 1)[0]


def task_start(
    stage: str | None = None,
    task: str | None = None,
    total_subtasks: int | None = None,
    message: str | None = None,
    *,
    version: str | None = None,
    git_commit: str | None = None,
    task_type: str | None = None,
    parent_run_id: str | None = None,
    log_path: str | None = None,
    log_filename: str | None = None,
    quiet: bool | None = None,
    on_behalf_of: int | None = None,
    script_path: str | None = None,
) -> str:
    """Start a run of ``stage`` / ``task`` and make it the current run; returns its run_id.

    ``on_behalf_of`` (a PID) records the run as that process's (``tasker start`` in a shell
    script passes the shell's): it is not made current here, and not ended at this
    process's exit. ``script_path`` names the script the run executes (default: this
    process's own).

    An unregistered task is registered on the fly. With no ``task``, the task registered for
    this script's file name is used (else the script's name in the default stage).
    """
    total = validate.count(total_subtasks, "total_subtasks", validate.NUMBER_MAX)
    message = validate.optional_text(message, "message")
    version = validate.optional_text(version, "version", 100)
    git_commit = validate.optional_text(git_commit, "git_commit", 64)
    task_type = validate.optional_text(task_type, "task_type", 20)
    if stage is not None:
        stage = validate.name(stage, "stage", validate.STAGE_NAME_MAX)
    if task is not None:
        task = validate.name(task, "task", validate.TASK_NAME_MAX)
    parent = resolve_run_id(parent_run_id) if parent_run_id is not None else None
    log_path, log_filename = validate.split_path(
        validate.optional_text(log_path, "log_path"),
        validate.optional_text(log_filename, "log_filename", validate.SHORT_TEXT_MAX),
    )
    if task is None:
        stage, task = _lookup_task_by_script(stage)
    elif stage is None:
        stage = RECORDER.config.default_stage
    state = runs.start_run(
        stage,
        task,
        sync=True,
        total_subtasks=total,
        message=message,
        version=version,
        git_commit=git_commit,
        task_type=task_type,
        parent_run_id=parent,
        log_path=log_path,
        log_filename=log_filename,
        quiet=quiet,
        on_behalf_of=validate.positive_int32(on_behalf_of, "on_behalf_of"),
        script_path=validate.optional_text(script_path, "script_path"),
    )
    return state.run_id


def task_update(
    status: str | Status = Status.RUNNING,
    *,
    overall_percent: float | None = None,
    current_subtask: int | None = None,
    message: str | None = None,
    error_message: str | None = None,
    error_detail: str | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
) -> None:
    """Update a run: status, overall percent (0 to 100), current subtask, message.

    A terminal status (COMPLETED, FAILED, SKIPPED, CANCELLED) ends the run: its end time is
    set, it stops being current, and its unfinished subtasks end with the same status.
    """
    st = parse_status(status, allowed=_RUN_STATUSES)
    values: dict[str, Any] = {}
    pct = validate.percent(overall_percent, "overall_percent")
    if pct is not None:
        values["overall_percent_complete"] = pct
    cur = validate.positive_int32(current_subtask, "current_subtask")
    if cur is not None:
        values["current_subtask"] = cur
    msg = validate.optional_text(message, "message")
    if msg is not None:
        values["overall_progress_message"] = msg
    err = validate.optional_text(error_message, "error_message")
    if err is not None:
        values["error_message"] = err
    detail = validate.optional_text(error_detail, "error_detail")
    if detail is not None:
        values["error_detail"] = detail
    rid = resolve_run_id(run_id)
    if st.is_terminal:
        end_run_by_id(rid, st, values, msg or err, quiet)
        return
    runs.write(ev.UPDATE_RUN, rid, ({"status": st.value, **values}, _now()), sync=True)
    if not _quiet(quiet):
        console.task_update(rid, st.value, msg)


def end_run_by_id(
    run_id: str,
    status: Status,
    values: dict[str, Any],
    line: str | None,
    quiet: bool | None,
    *,
    refuse_ended: bool = False,
) -> None:
    """End ``run_id``. A run that has ended already stays as it ended: the second ending is
    refused with a TaskerWarning (RunEndedError under ``strict``, or with
    ``refuse_ended``: the command line, whose exit status must say so)."""
    state = context.find(run_id)
    try:
        if state is not None and state.owned:
            if state.ended:
                raise RunEndedError(
                    f"run {run_id} has ended already; ending it again as {status.value} is "
                    "refused (the first ending is kept)"
                )
            runs.end_run(state, status, values, sync=True, line=line, quiet=quiet)
            return
        args = (status, values, _now(), runs.ended_with_run(status))
        runs.write(ev.END_RUN, run_id, args, sync=True)
    except RunEndedError as exc:
        if refuse_ended or RECORDER.config.strict:
            raise
        warnings.warn(str(exc), TaskerWarning, stacklevel=3)
        return
    if not _quiet(quiet):
        console.task_update(run_id, status.value, line)


def task_complete(
    message: str | None = None,
    *,
    run_id: str | None = None,
    quiet: bool | None = None,
    _refuse_ended: bool = False,
) -> None:
    """End a run COMPLETED at 100%; its unfinished subtasks are completed too.

    A run that has ended already keeps its first ending: this one is refused with a
    TaskerWarning (a RunEndedError under ``strict``)."""
    msg = validate.optional_text(message, "message")
    values = {"overall_progress_message": msg} if msg is not None else {}
    end_run_by_id(
        resolve_run_id(run_id), Status.COMPLETED, values, msg, quiet, refuse_ended=_refuse_ended
    )


def task_fail(
    error_message: str | BaseException | None = None,
    error_detail: str | None = None,
    *,
    error_type: str | None = None,
    exit_code: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
    _refuse_ended: bool = False,
) -> None:
    """End a run FAILED; its unfinished subtasks end FAILED too.

    ``error_message`` may be an exception: its type, message and traceback are recorded. A
    run that has ended already keeps its first ending (TaskerWarning; RunEndedError under
    ``strict``).
    """
    if isinstance(error_message, BaseException):
        exc = error_message
        error_type = error_type or type(exc).__qualname__
        error_detail = error_detail or format_exception(exc)
        error_message = str(exc) or type(exc).__qualname__
    values: dict[str, Any] = {}
    msg = validate.optional_text(error_message, "error_message")
    for key, value in (
        ("error_message", msg),
        ("error_detail", validate.optional_text(error_detail, "error_detail")),
        ("error_type", validate.optional_text(error_type, "error_type", validate.SHORT_TEXT_MAX)),
    ):
        if value is not None:
            values[key] = value
    if exit_code is not None:
        if (
            isinstance(exit_code, bool)
            or not isinstance(exit_code, int)
            or not -(2**31) <= exit_code < 2**31
        ):
            raise ValidationError(
                f"exit_code must be a whole number (a process's exit status), got {exit_code!r}"
            )
        values["exit_code"] = exit_code
    end_run_by_id(
        resolve_run_id(run_id), Status.FAILED, values, msg, quiet, refuse_ended=_refuse_ended
    )


# ---------------------------------------------------------------------------- subtasks


def _state_for(run_id: str) -> context.RunState:
    """This process's state for ``run_id``: its own run, or one it reports into."""
    return context.find(run_id) or context.attached_state(run_id)


def _local_subtask(run_id: str, number: int | None) -> int | None:
    """The subtask to act on: the one given, else this process's current one for the run
    (None lets the store read the run's current subtask from the database)."""
    if number is not None:
        return number
    state = context.find(run_id)
    return state.current_subtask if state is not None else None


def _open_subtask(run_id: str, number: int | None) -> runs.Subtask | None:
    state = context.find(run_id)
    if state is None:
        return None
    for sub in reversed(state.subtasks):
        if number is None or sub.number == number:
            return sub  # type: ignore[no-any-return]
    return None


def subtask_start(
    name: str,
    items_total: int | None = None,
    message: str | None = None,
    *,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
) -> int:
    """Start the next numbered subtask of a run (1, 2, 3 …) and return its number.

    The run becomes RUNNING. Passing an existing ``subtask_number`` restarts that subtask.
    """
    name = validate.name(name, "subtask name", validate.SUBTASK_NAME_MAX)
    total = validate.count(items_total, "items_total")
    msg = validate.optional_text(message, "message")
    number = validate.positive_int32(subtask_number)
    rid = resolve_run_id(run_id)
    sub = runs.start_subtask(
        _state_for(rid), name, sync=True, items_total=total, message=msg, number=number, quiet=quiet
    )
    return sub.number


def subtask_update(
    status: str | Status = Status.RUNNING,
    *,
    percent: float | None = None,
    items_complete: int | None = None,
    items_total: int | None = None,
    message: str | None = None,
    error_message: str | None = None,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
) -> None:
    """Update a subtask (the current one unless ``subtask_number``): status, percent,
    ``items_complete`` (absolute; percent follows from it when items_total is known),
    message. COMPLETED, FAILED, SKIPPED and CANCELLED end it."""
    st = parse_status(status, allowed=tuple(s for s in Status if s is not Status.NOT_STARTED))
    values: dict[str, Any] = {"status": st.value}
    pct = validate.percent(percent, "percent")
    if pct is not None:
        values["percent_complete"] = pct
    items = validate.count(items_complete, "items_complete")
    total = validate.count(items_total, "items_total")
    if total is not None:
        values["items_total"] = total
    msg = validate.optional_text(message, "message")
    if msg is not None:
        values["progress_message"] = msg
    err = validate.optional_text(error_message, "error_message")
    if err is not None:
        values["error_message"] = err
    number = validate.positive_int32(subtask_number)
    rid = resolve_run_id(run_id)
    if st.is_terminal:
        values["end_time"] = _now()
        if st is Status.COMPLETED and pct is None:
            values["percent_complete"] = 100.0
    target = _local_subtask(rid, number)
    args = (target, values, _now(), items)
    try:
        n = runs.await_parent(
            context.find(rid),
            lambda: runs.write(ev.UPDATE_SUBTASK, rid, args, sync=True, default=target),
            rid,
        )
    except RunEndedError as exc:  # ended already: the first ending stays
        if RECORDER.config.strict:
            raise
        warnings.warn(str(exc), TaskerWarning, stacklevel=2)
        return
    if st.is_terminal:
        sub = _open_subtask(rid, n)
        if sub is not None:
            # Closed here too; items it counted and the writer has not written yet are added.
            delta = runs.detach_subtask(sub, st)
            if delta:
                runs.write(ev.INCREMENT_SUBTASK, rid, (n, delta, _now()), sync=True)
    if not _quiet(quiet):
        console.subtask_update(n, st.value, msg or err)


def subtask_increment(
    increment: int = 1,
    *,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = True,
) -> None:
    """Add ``increment`` items to a subtask's count, atomically in the database: safe when
    many threads, processes or hosts count into the same subtask."""
    by = validate.count(increment, "increment")
    if by is None:
        raise ValidationError("increment must be a whole number of items, got None")
    number = validate.positive_int32(subtask_number)
    rid = resolve_run_id(run_id)
    target = _local_subtask(rid, number)
    n = runs.await_parent(
        context.find(rid),
        lambda: runs.write(
            ev.INCREMENT_SUBTASK, rid, (target, by, _now()), sync=True, default=target
        ),
        rid,
    )
    if not _quiet(quiet):
        console.subtask_increment(n, by)


def subtask_complete(
    message: str | None = None,
    *,
    items_complete: int | None = None,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
) -> None:
    """End a subtask COMPLETED at 100% (optionally with its final item count)."""
    subtask_update(
        Status.COMPLETED,
        message=message,
        items_complete=items_complete,
        subtask_number=subtask_number,
        run_id=run_id,
        quiet=quiet,
    )


def subtask_fail(
    error_message: str | None = None,
    *,
    subtask_number: int | None = None,
    run_id: str | None = None,
    quiet: bool | None = None,
) -> None:
    """End a subtask FAILED with an error message (the run itself goes on)."""
    subtask_update(
        Status.FAILED,
        error_message=error_message,
        subtask_number=subtask_number,
        run_id=run_id,
        quiet=quiet,
    )


def reap_lost_runs(stale_after: float | None = None) -> list[RunRecord]:
    """End the active runs whose process is gone, as FAILED with ``error_type`` ProcessLost
    and a message saying when the process was last seen; returns them as ended.

    A run of this host is lost at once when its process no longer exists (or its PID now
    belongs to another process); a run of another host after ``stale_after`` seconds
    (default: the ``stale_after`` setting) without a heartbeat. Live runs are never reaped.
    The CLI's status commands and the dashboard call this; no daemon is needed.
    """
    from tasker.runtime.reaper import reap

    limit = RECORDER.config.stale_after if stale_after is None else stale_after
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        raise ValidationError(f"stale_after must be a positive number of seconds, got {limit!r}")
    from tasker.runtime.journal import replay_waiting

    store = RECORDER.synced_store()
    replay_waiting(store, RECORDER.config)  # a run whose end waits in a journal is not lost
    return [store.get_run(run_id) for run_id in reap(store, float(limit))]


def replay_journal(paths: Any = None) -> ReplayResult:
    """Write journaled events (saved while the database was unreachable) to the database.

    By default every journal file waiting for the configured database is replayed, oldest
    first; ``paths`` names particular files. Each file is replayed once: replaying it again
    changes nothing. tasker also does this on its own once it reaches the database.
    """
    from pathlib import Path

    from tasker.runtime.journal import replay

    files = None
    if paths is not None:
        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        files = [Path(p) for p in items]
        for path in files:
            if not path.is_file():
                raise ValidationError(f"journal file {path} does not exist")
    try:
        return replay(RECORDER.synced_store(), RECORDER.config, files)
    except ValueError as exc:
        raise ValidationError(f"cannot replay a damaged journal file: {exc}") from None


def purge_runs(older_than: timedelta | float, *, dry_run: bool = False) -> int:
    """Delete the runs that ended more than ``older_than`` ago (a timedelta, or days), with
    their subtasks; active runs are never deleted. Returns how many runs were (with
    ``dry_run``: would be) deleted."""
    if isinstance(older_than, (int, float)) and not isinstance(older_than, bool):
        older_than = timedelta(days=older_than)
    if not isinstance(older_than, timedelta) or older_than.total_seconds() < 0:
        raise ValidationError(
            f"older_than must be a timedelta or a number of days of 0 or more, got {older_than!r}"
        )
    store = RECORDER.synced_store()
    return store.purge_runs(_now() - older_than, dry_run=dry_run)
