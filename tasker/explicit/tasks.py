"""Runs: ``task_start``, ``task_update``, ``task_complete``, ``task_fail``.

A run ends once: a second ending is refused and the first one kept (see ``end_run_by_id``).
"""

from __future__ import annotations

import warnings
from typing import Any

from tasker import validate
from tasker.errors import RunEndedError, TaskerWarning, ValidationError
from tasker.explicit.common import is_quiet, now, resolve_run_id
from tasker.models import Status, parse_status
from tasker.runtime import console, context, runs
from tasker.runtime import events as ev
from tasker.runtime.capture.process import process_info
from tasker.runtime.recorder import RECORDER
from tasker.tracebacks import format_exception

_RUN_STATUSES = (
    Status.STARTED,
    Status.RUNNING,
    Status.COMPLETED,
    Status.FAILED,
    Status.SKIPPED,
    Status.CANCELLED,
)


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
    _log_tail: str | None = None,
) -> None:
    """Update a run: status, overall percent (0 to 100), current subtask, message.

    A terminal status (COMPLETED, FAILED, SKIPPED, CANCELLED) ends the run: its end time is
    set, it stops being current, and its unfinished subtasks end with the same status. A run
    that has ended stays as it ended: the update is refused with a TaskerWarning (a
    RunEndedError under ``strict``).
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
        _with_log_tail(values, _log_tail)
        end_run_by_id(rid, st, values, msg or err, quiet)
        return
    try:
        runs.write(ev.UPDATE_RUN, rid, ({"status": st.value, **values}, now()), sync=True)
    except RunEndedError as exc:  # ended already: it stays as it ended
        if RECORDER.config.strict:
            raise
        warnings.warn(str(exc), TaskerWarning, stacklevel=2)
        return
    if not is_quiet(quiet):
        console.task_update(rid, st.value, msg)


def _with_log_tail(values: dict[str, Any], tail: str | None) -> None:
    """The end of a log the command line read for the run (``--log FILE``), shipped with
    its end; else the run's own process ships its log file's (tasker.runtime.runs)."""
    if tail is not None:
        values["log_tail"] = validate.optional_text(tail, "log_tail")


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
        args = (status, values, now(), runs.ended_with_run(status))
        runs.write(ev.END_RUN, run_id, args, sync=True)
    except RunEndedError as exc:
        if refuse_ended or RECORDER.config.strict:
            raise
        warnings.warn(str(exc), TaskerWarning, stacklevel=3)
        return
    if not is_quiet(quiet):
        console.task_update(run_id, status.value, line)


def task_complete(
    message: str | None = None,
    *,
    run_id: str | None = None,
    quiet: bool | None = None,
    _refuse_ended: bool = False,
    _log_tail: str | None = None,
) -> None:
    """End a run COMPLETED at 100%; its unfinished subtasks are completed too.

    A run that has ended already keeps its first ending: this one is refused with a
    TaskerWarning (a RunEndedError under ``strict``)."""
    msg = validate.optional_text(message, "message")
    values: dict[str, Any] = {"overall_progress_message": msg} if msg is not None else {}
    _with_log_tail(values, _log_tail)
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
    _log_tail: str | None = None,
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
    _with_log_tail(values, _log_tail)
    end_run_by_id(
        resolve_run_id(run_id), Status.FAILED, values, msg, quiet, refuse_ended=_refuse_ended
    )
