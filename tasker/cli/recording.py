"""The commands that record: ``tasker run`` (a command as a tracked task) and ``tasker start``,
``update``, ``complete``, ``fail`` and ``subtask ...`` (a shell script tracking itself)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tasker.cli.common import EXIT_OK, log_tail_of, run_id_of

__all__ = [
    "cmd_complete",
    "cmd_fail",
    "cmd_run",
    "cmd_start",
    "cmd_subtask",
    "cmd_update",
]


def cmd_run(args: argparse.Namespace) -> int:
    from tasker.cli.common import UsageError
    from tasker.cli.run import run_command

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no command given: tasker run --stage S -- COMMAND ARGS...")
    return run_command(command, args.stage, args.name, args.log, quiet=args.quiet)


def cmd_start(args: argparse.Namespace) -> int:
    import tasker
    from tasker.runtime import shell_runs

    run_id = tasker.task_start(
        args.stage,
        args.task,
        total_subtasks=args.total_subtasks,
        message=args.message,
        task_type="sh",
        quiet=True,
        on_behalf_of=os.getppid(),  # the calling shell owns the run
    )
    shell_runs.remember(run_id)  # its subtasks are numbered here, never by the database
    print(run_id)
    return EXIT_OK


def cmd_update(args: argparse.Namespace) -> int:
    import tasker

    tasker.task_update(
        args.status,
        overall_percent=args.percent,
        message=args.message,
        run_id=run_id_of(args),
        quiet=True,
    )
    return EXIT_OK


def cmd_complete(args: argparse.Namespace) -> int:
    import tasker
    from tasker.runtime import shell_runs

    run_id = run_id_of(args)
    # A run that has ended already is refused (exit 1), never ended a second time.
    tasker.task_complete(
        args.message,
        run_id=run_id,
        quiet=True,
        _refuse_ended=True,
        _log_tail=log_tail_of(args.log),
    )
    shell_runs.forget(run_id)
    return EXIT_OK


def cmd_fail(args: argparse.Namespace) -> int:
    import tasker
    from tasker.runtime import shell_runs

    run_id = run_id_of(args)
    tasker.task_fail(
        args.message,
        exit_code=args.exit_code,
        run_id=run_id,
        quiet=True,
        _refuse_ended=True,
        _log_tail=log_tail_of(args.log),
    )
    shell_runs.forget(run_id)
    return EXIT_OK


def cmd_subtask(args: argparse.Namespace) -> int:
    import tasker
    from tasker.runtime import shell_runs

    run_id = run_id_of(args)
    common: dict[str, Any] = {"run_id": run_id, "quiet": True}
    number: int | None = args.number
    if args.action == "start":
        # Numbered from this machine's state of the shell run (tasker.runtime.shell_runs), so that
        # it works, and the script goes on, while the database is away.
        if number is None:
            number = shell_runs.next_subtask(run_id)
        else:
            shell_runs.note_subtask(run_id, number)
        started = tasker.subtask_start(
            args.name,
            items_total=args.items,
            message=args.message,
            subtask_number=number,
            **common,
        )
        print(started)
        return EXIT_OK
    if number is None:
        number = shell_runs.current_subtask(run_id)
    if args.action == "update":
        tasker.subtask_update(
            args.status,
            percent=args.percent,
            items_complete=args.items_complete,
            message=args.message,
            subtask_number=number,
            **common,
        )
    elif args.action == "increment":
        tasker.subtask_increment(args.by, subtask_number=number, **common)
    elif args.action == "complete":
        tasker.subtask_complete(
            args.message, items_complete=args.items_complete, subtask_number=number, **common
        )
    else:
        tasker.subtask_fail(args.message, subtask_number=number, **common)
    return EXIT_OK
