"""The ``tasker`` command (also ``python -m tasker``).

Thin by design: it parses arguments, calls the API and queries, and prints. Heavy modules are
imported only by the subcommands that need them, so the command starts fast.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from tasker.formatting import duration, json_default, timestamp

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# A reader that went away (a closed pipe): the shell's status of a process ended by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13
# Ages on the command line: 90m, 12h, 7d, 2w.
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _progress(row: Any) -> str:
    parts = []
    if row.items_total:
        parts.append(f"{row.items_complete or 0}/{row.items_total}")
    elif row.items_complete:
        parts.append(str(row.items_complete))
    pct = row.overall_percent_complete
    if pct is None and row.subtask_percent_complete is not None:
        pct = row.subtask_percent_complete
    if pct is not None and row.status != "NOT_STARTED":
        parts.append(f"{pct:.0f}%")
    return " ".join(parts)


def _table(rows: list[list[str]], headers: list[str], status_column: int | None = None) -> str:
    """Rows in aligned columns; the status column coloured on a terminal (not with NO_COLOR)."""
    from tasker.watch import colour, use_colour

    coloured = status_column is not None and use_colour(sys.stdout)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        if coloured and status_column is not None:
            cells[status_column] = colour(cells[status_column], row[status_column], True)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _read_only() -> None:
    """A read command never creates a database: an SQLite file that is not there is an error
    naming it and saying how to create it (`tasker init`), not an empty new database."""
    from tasker.store.engine import never_create_databases

    never_create_databases()


def _replay_waiting() -> None:
    """Write the journal files waiting for the database before anything is reaped or shown:
    a run whose end waits in a journal is not lost. Costs a folder listing when none wait."""
    import tasker
    from tasker.journal import pending_files

    if pending_files(tasker.get_config()):
        tasker.replay_journal()


def _print_status(args: argparse.Namespace) -> int:
    import tasker
    from tasker.queries import elapsed, rate_and_eta, summarize_stages

    _read_only()
    _replay_waiting()

    # A run whose process died shows as FAILED, not RUNNING. Unfiltered, only a status with
    # an active row needs the reaper (most calls then skip its query).
    if args.status:
        tasker.reap_lost_runs()
    rows = tasker.get_task_status(stage=args.stage, status=args.status)
    active = any(r.status.is_active for r in rows)
    if not args.status and active and tasker.reap_lost_runs():
        rows = tasker.get_task_status(stage=args.stage, status=args.status)
    if args.json:
        print(
            json.dumps(
                {
                    "stages": summarize_stages(rows),
                    "tasks": [r.as_dict() for r in rows],
                },
                default=json_default,
                indent=2,
            )
        )
        return EXIT_OK
    if not rows:
        print("no tasks registered yet: run a tracked task or `tasker register FILE`")
        return EXIT_OK
    now = datetime.now(timezone.utc)
    table = []
    for r in rows:
        seconds = elapsed(r, now)
        subtask = f"{r.current_subtask}. {r.subtask_name}" if r.subtask_name else ""
        table.append(
            [
                r.stage_name,
                r.task_name,
                str(r.status),
                _progress(r),
                subtask,
                r.hostname or "",
                timestamp(r.start_time),
                duration(seconds),
                duration(rate_and_eta(r, now)[1]),
            ]
        )
    headers = ["STAGE", "TASK", "STATUS", "PROGRESS", "SUBTASK", "HOST", "STARTED", "DURATION"]
    print(_table(table, [*headers, "ETA"], status_column=2))
    print()
    for s in summarize_stages(rows):
        print(f"{s['stage_name']}: {s['status']} ({s['done']}/{s['total']} done)")
    return EXIT_OK


def _cmd_init(args: argparse.Namespace) -> int:
    import tasker

    created = tasker.create_schema()
    config = tasker.get_config()
    print(f"{'created' if created else 'schema already present in'} {config.url}")
    return EXIT_OK


def _cmd_config(args: argparse.Namespace) -> int:
    import tasker

    config = tasker.get_config()
    rows = config.describe()
    if args.json:
        print(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
    else:
        print(_table([[k, v, s] for k, v, s in rows], ["KEY", "VALUE", "SOURCE"]))
        if config.config_file:
            print(f"\nconfiguration file: {config.config_file}")
    if args.check:
        from tasker.recorder import RECORDER

        _read_only()  # a check that creates what it checks would prove nothing
        version = RECORDER.raw_store.schema_version()
        state = f"schema version {version}" if version else "no tasker schema yet (tasker init)"
        print(f"\nconnected to {config.url}: {state}", file=sys.stderr)
    return EXIT_OK


def _cmd_register(args: argparse.Namespace) -> int:
    import tasker

    ids = tasker.register_tasks(args.file)
    print(f"registered {len(ids)} task(s) from {args.file}")
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tasker.schema import DIALECT_NAMES, render_sql

    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for name in DIALECT_NAMES:
            (out / f"{name}.sql").write_text(render_sql(name), encoding="utf-8")
            print(f"wrote {out / f'{name}.sql'}")
        return EXIT_OK
    print(render_sql(args.dialect), end="")
    return EXIT_OK


def _cmd_reap(args: argparse.Namespace) -> int:
    import tasker

    _replay_waiting()
    lost = tasker.reap_lost_runs(stale_after=args.stale_after)
    for run in lost:
        print(f"{run.stage_name} / {run.task_name} ({run.run_id}): {run.error_message}")
    print(f"{len(lost)} lost run{'s' if len(lost) != 1 else ''} ended FAILED")
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    """Exit status 0 when every file was dealt with: replayed (events the database refused
    set aside in rejected/), found replayed already, left for later because its process
    still writes it, or quarantined because it is damaged. 1 when the database cannot be
    reached, a file could not be dealt with here (it waits: a full disk), or a named file
    does not exist."""
    import tasker

    result = tasker.replay_journal(args.files or None)
    for d in result.details:
        if d.outcome == "replayed":
            line = f"replayed {d.events} event{'s' if d.events != 1 else ''}"
            if d.refused:
                line += f", {d.refused} refused (set aside with the reason in {d.moved_to})"
            if d.reason:
                line += f"; {d.reason}"
        elif d.outcome == "quarantined":
            line = f"quarantined: {d.reason}; moved to {d.moved_to}"
        elif d.outcome == "busy":
            line = "still being written by its process: left for later"
        elif d.outcome == "not replayed":
            line = f"not replayed (left for later): {d.reason}"
        else:
            line = d.outcome
        print(f"{d.path}: {line}")
    print(
        f"replayed {result.files} journal file{'s' if result.files != 1 else ''} "
        f"({result.events} events written, {result.failed} refused and set aside); "
        f"{result.already} already replayed, {result.busy} still being written, "
        f"{result.quarantined} quarantined"
    )
    return EXIT_FAILURE if any(d.outcome == "not replayed" for d in result.details) else EXIT_OK


def _print_json(data: Any) -> None:
    print(json.dumps(data, default=json_default, indent=2))


def _age(text: str) -> timedelta | None:
    """``90m``, ``12h``, ``7d``, ``2w`` as a timedelta; None when ``text`` is not an age."""
    value = text.strip().lower()
    if value[:-1].isdigit() and value[-1:] in _UNITS:
        return timedelta(seconds=int(value[:-1]) * _UNITS[value[-1]])
    return None


def _parse_since(text: str | None) -> datetime | None:
    """``90m``, ``2h``, ``7d``, ``1w`` ago, or an ISO date/time."""
    if text is None:
        return None
    from tasker.errors import ValidationError

    age = _age(text)
    if age is not None:
        return datetime.now(timezone.utc) - age
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            f"--since: expected an age like 90m, 2h, 7d or an ISO date, got {text!r}"
        ) from None
    return when if when.tzinfo else when.astimezone(timezone.utc)


def _run_rows(runs: list[Any]) -> str:
    from tasker.queries import elapsed

    now = datetime.now(timezone.utc)
    table = []
    for r in runs:
        seconds = elapsed(r, now)
        pct = r.overall_percent_complete
        table.append(
            [
                r.run_id[:8],
                r.stage_name,
                r.task_name,
                str(r.status),
                "" if pct is None else f"{pct:.0f}%",
                f"{r.hostname}:{r.process_id}",
                timestamp(r.start_time),
                duration(seconds),
            ]
        )
    headers = ["RUN", "STAGE", "TASK", "STATUS", "PROGRESS", "HOST:PID", "STARTED", "DURATION"]
    return _table(table, headers, status_column=3)


def _print_runs(args: argparse.Namespace, runs: list[Any], empty: str) -> int:
    if args.json:
        _print_json([r.as_dict() for r in runs])
    else:
        print(_run_rows(runs) if runs else empty)
    return EXIT_OK


def _cmd_active(args: argparse.Namespace) -> int:
    import tasker

    _read_only()
    _replay_waiting()
    tasker.reap_lost_runs()
    return _print_runs(args, tasker.get_active_tasks(), "no active runs")


def _cmd_history(args: argparse.Namespace) -> int:
    import tasker

    _read_only()
    runs = tasker.get_task_history(
        stage=args.stage,
        task=args.task,
        status=args.status,
        since=_parse_since(args.since),
        limit=args.limit,
    )
    return _print_runs(args, runs, "no runs")


def _cmd_show(args: argparse.Namespace) -> int:
    import tasker
    from tasker.queries import find_run

    _read_only()
    run = find_run(args.run_id)
    subtasks = tasker.get_subtask_progress(run.run_id)
    if args.json:
        _print_json({**run.as_dict(), "subtasks": [s.as_dict() for s in subtasks]})
        return EXIT_OK
    for key, value in run.as_dict().items():
        if value is not None and key != "error_detail":
            shown = timestamp(value) if isinstance(value, datetime) else value
            print(f"{key:<26}{shown}")
    if subtasks:
        print()
        rows = []
        for sub in subtasks:
            end = sub.end_time or sub.last_update
            secs = (end - sub.start_time).total_seconds() if sub.start_time and end else None
            items = f"{sub.items_complete}/{sub.items_total}" if sub.items_total else ""
            pct = "" if sub.percent_complete is None else f"{sub.percent_complete:.0f}%"
            rows.append(
                [
                    str(sub.subtask_number),
                    sub.subtask_name or "",
                    str(sub.status),
                    items,
                    pct,
                    duration(secs),
                    sub.progress_message or sub.error_message or "",
                ]
            )
        print(_table(rows, ["#", "SUBTASK", "STATUS", "ITEMS", "PERCENT", "DURATION", "MESSAGE"]))
    if run.error_detail:
        print()
        print(run.error_detail.rstrip())
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from tasker.command_run import run_command

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return run_command(command, args.stage, args.name, args.log, quiet=args.quiet)


def _cmd_start(args: argparse.Namespace) -> int:
    import tasker

    run_id = tasker.task_start(
        args.stage,
        args.task,
        total_subtasks=args.total_subtasks,
        message=args.message,
        quiet=True,
        on_behalf_of=os.getppid(),  # the calling shell owns the run
    )
    from tasker import shell_runs

    shell_runs.remember(run_id)  # its subtasks are numbered here, never by the database
    print(run_id)
    return EXIT_OK


def _cmd_update(args: argparse.Namespace) -> int:
    import tasker

    tasker.task_update(
        args.status,
        overall_percent=args.percent,
        message=args.message,
        run_id=args.run_id,
        quiet=True,
    )
    return EXIT_OK


def _cmd_complete(args: argparse.Namespace) -> int:
    import tasker
    from tasker import shell_runs
    from tasker.api import resolve_run_id

    run_id = resolve_run_id(args.run_id)
    # A run that has ended already is refused (exit 1), never ended a second time.
    tasker.task_complete(args.message, run_id=run_id, quiet=True, _refuse_ended=True)
    shell_runs.forget(run_id)
    return EXIT_OK


def _cmd_fail(args: argparse.Namespace) -> int:
    import tasker
    from tasker import shell_runs
    from tasker.api import resolve_run_id

    run_id = resolve_run_id(args.run_id)
    tasker.task_fail(
        args.message,
        exit_code=args.exit_code,
        run_id=run_id,
        quiet=True,
        _refuse_ended=True,
    )
    shell_runs.forget(run_id)
    return EXIT_OK


def _cmd_subtask(args: argparse.Namespace) -> int:
    import tasker
    from tasker import shell_runs
    from tasker.api import resolve_run_id

    run_id = resolve_run_id(args.run_id)
    common: dict[str, Any] = {"run_id": run_id, "quiet": True}
    if args.action == "start":
        # Numbered from this machine's state of the shell run (tasker.shell_runs), so that
        # it works, and the script goes on, while the database is away.
        if args.number is None:
            args.number = shell_runs.next_subtask(run_id)
        else:
            shell_runs.note_subtask(run_id, args.number)
        number = tasker.subtask_start(
            args.name,
            items_total=args.items,
            message=args.message,
            subtask_number=args.number,
            **common,
        )
        print(number)
        return EXIT_OK
    if args.number is None:
        args.number = shell_runs.current_subtask(run_id)
    if args.action == "update":
        tasker.subtask_update(
            args.status,
            percent=args.percent,
            items_complete=args.items_complete,
            message=args.message,
            subtask_number=args.number,
            **common,
        )
    elif args.action == "increment":
        tasker.subtask_increment(args.by, subtask_number=args.number, **common)
    elif args.action == "complete":
        tasker.subtask_complete(args.message, subtask_number=args.number, **common)
    else:
        tasker.subtask_fail(args.message, subtask_number=args.number, **common)
    return EXIT_OK


def _parse_age(text: str) -> timedelta:
    from tasker.errors import ValidationError

    age = _age(text)
    if age is None:
        raise ValidationError(f"expected an age like 90m, 12h, 90d or 2w, got {text!r}")
    return age


def _cmd_export(args: argparse.Namespace) -> int:
    import csv

    import tasker

    _read_only()
    runs = tasker.get_task_history(stage=args.stage, since=_parse_since(args.since), limit=None)
    rows = [r.as_dict() for r in runs]
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "json":
            out.write(json.dumps(rows, default=json_default, indent=2) + "\n")
        else:
            fields = list(tasker.RunRecord.__dataclass_fields__)
            writer = csv.DictWriter(out, fieldnames=fields)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        k: json_default(v)
                        if v is not None and not isinstance(v, (int, float, str))
                        else v
                        for k, v in row.items()
                    }
                )
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"exported {len(rows)} runs to {args.output}", file=sys.stderr)
    return EXIT_OK


def _cmd_purge(args: argparse.Namespace) -> int:
    import tasker

    age = _parse_age(args.older_than)
    count = tasker.purge_runs(age, dry_run=True)
    what = f"{count} run{'s' if count != 1 else ''} that ended more than {args.older_than} ago"
    if count == 0 or args.dry_run:
        print(f"would delete {what}" if args.dry_run else f"nothing to delete: no {what[2:]}")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"tasker: error: would delete {what}; add --yes to confirm", file=sys.stderr)
            return EXIT_FAILURE
        answer = input(f"delete {what}, with their subtasks? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return EXIT_OK
    removed = tasker.purge_runs(age)
    print(f"deleted {removed} run{'s' if removed != 1 else ''}")
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace) -> int:
    from tasker.watch import watch

    _read_only()
    _replay_waiting()  # later refreshes: tasker.reap_lost_runs() replays what waits first
    return watch(args.interval, args.stage, args.count)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from tasker.errors import ConfigError

    try:
        from tasker.dashboard import serve
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the dashboard needs {exc.name}: pip install 'pipeline-tasker[dashboard]'"
        ) from None
    import tasker

    tasker.get_config()  # a bad configuration fails here, not on the first page
    serve(args.host, args.port, args.token)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    import tasker
    from tasker.demo import run_demo

    config = tasker.get_config()
    print(f"running the demo pipeline against {config.url}\n", file=sys.stderr)
    run_demo(delay=args.delay)
    print(file=sys.stderr)
    return _print_status(argparse.Namespace(stage=None, status=None, json=False))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tasker",
        description="Database-backed run tracking for data pipelines.",
        epilog="Examples:\n  tasker demo\n  tasker status --stage STATIC\n  tasker init",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="configuration file (else .tasker.yml)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        command = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"Example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # Also after the command (`tasker status --config FILE`); SUPPRESS keeps a value
        # given before it.
        command.add_argument(
            "--config",
            metavar="FILE",
            default=argparse.SUPPRESS,
            help="configuration file (else .tasker.yml)",
        )
        return command

    p = add("init", "create or upgrade the tasker schema", "tasker init")
    p.set_defaults(func=_cmd_init)
    p = add("config", "show the resolved configuration (password masked)", "tasker config --check")
    p.add_argument("--check", action="store_true", help="also connect and report the schema")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_config)
    p = add(
        "register", "register stages and tasks from a YAML or CSV file", "tasker register tasks.yml"
    )
    p.add_argument("file", help="a .yml/.yaml or .csv file")
    p.set_defaults(func=_cmd_register)
    p = add("status", "every registered task with its latest run", "tasker status --stage STATIC")
    p.add_argument("--stage", help="only this stage")
    p.add_argument("--status", action="append", help="only tasks with this status (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_print_status)
    p = add("schema", "print the schema's SQL for a database", "tasker schema --dialect postgresql")
    p.add_argument("--dialect", choices=("postgresql", "sqlite", "mysql"), default="postgresql")
    p.add_argument("--write", metavar="DIR", help="write <dialect>.sql for every dialect to DIR")
    p.set_defaults(func=_cmd_schema)
    p = add(
        "reap",
        "end the runs whose process is gone as FAILED (process lost)",
        "tasker reap --stale-after 120",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        metavar="SECONDS",
        help="silence after which a run of another host counts as lost (default: setting)",
    )
    p.set_defaults(func=_cmd_reap)
    p = add(
        "replay",
        "write journaled events (saved while the database was away) to the database",
        "tasker replay",
    )
    p.add_argument("files", nargs="*", help="journal files (default: every waiting file)")
    p.set_defaults(func=_cmd_replay)
    p = add("active", "runs that are STARTED or RUNNING (lost ones reaped first)", "tasker active")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_active)
    p = add("history", "past and present runs, newest first", "tasker history --since 7d")
    p.add_argument("--stage", help="only this stage")
    p.add_argument("--task", help="only this task")
    p.add_argument("--status", action="append", help="only runs with this status (repeatable)")
    p.add_argument("--since", help="only runs started since: 90m, 2h, 7d or an ISO date")
    p.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_history)
    p = add("show", "one run: every captured field, its subtasks, its error", "tasker show 3f0c")
    p.add_argument("run_id", help="a run id, or a unique prefix of one (4 characters or more)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_show)
    p = add(
        "run",
        "run a command as a tracked task (exit status -> COMPLETED/FAILED)",
        "tasker run --stage NIGHTLY --name backup -- rsync -a src/ dst/",
    )
    p.add_argument("--stage", required=True, help="the task's stage")
    p.add_argument("--name", help="the task's name (default: the command's name)")
    p.add_argument("--log", metavar="FILE", help="also append the output to FILE (recorded)")
    p.add_argument("--quiet", action="store_true", help="no [TASK ...] lines on stderr")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    p.set_defaults(func=_cmd_run)

    run_id_help = "the run (default: $TASKER_RUN_ID)"
    p = add(
        "start",
        "start a run for the calling shell script; prints its run id",
        'export TASKER_RUN_ID=$(tasker start STATIC "Build Database")',
    )
    p.add_argument("stage")
    p.add_argument("task")
    p.add_argument("--total-subtasks", type=int)
    p.add_argument("--message")
    p.set_defaults(func=_cmd_start)
    p = add("update", "update a run's status, percent or message", "tasker update --percent 50")
    p.add_argument("--status", default="RUNNING")
    p.add_argument("--percent", type=float)
    p.add_argument("--message")
    p.add_argument("--run-id", help=run_id_help)
    p.set_defaults(func=_cmd_update)
    p = add("complete", "end a run COMPLETED", "tasker complete --message done")
    p.add_argument("--message")
    p.add_argument("--run-id", help=run_id_help)
    p.set_defaults(func=_cmd_complete)
    p = add("fail", "end a run FAILED", 'tasker fail --message "no input" --exit-code 2')
    p.add_argument("--message")
    p.add_argument("--exit-code", type=int)
    p.add_argument("--run-id", help=run_id_help)
    p.set_defaults(func=_cmd_fail)
    p = add(
        "subtask",
        "start, update, count, complete or fail a subtask of a run",
        "tasker subtask start Loading --items 56",
    )
    p.add_argument("action", choices=("start", "update", "increment", "complete", "fail"))
    p.add_argument("name", nargs="?", help="the subtask's name (start)")
    p.add_argument("--items", type=int, help="items in all (start)")
    p.add_argument("--items-complete", type=int, help="items done so far (update)")
    p.add_argument("--by", type=int, default=1, help="items to add (increment)")
    p.add_argument("--status", default="RUNNING", help="status (update)")
    p.add_argument("--percent", type=float)
    p.add_argument("--message")
    p.add_argument("--number", type=int, help="the subtask's number (default: the current)")
    p.add_argument("--run-id", help=run_id_help)
    p.set_defaults(func=_cmd_subtask)
    p = add("export", "write runs as CSV or JSON", "tasker export --format csv --since 30d")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--stage", help="only this stage")
    p.add_argument("--since", help="only runs started since: 90m, 2h, 7d or an ISO date")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (default: stdout)")
    p.set_defaults(func=_cmd_export)
    p = add(
        "purge",
        "delete runs that ended long ago (asks first unless --yes)",
        "tasker purge --older-than 90d --yes",
    )
    p.add_argument("--older-than", required=True, metavar="AGE", help="90d, 12h, 2w ...")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true", help="only say how many would go")
    p.set_defaults(func=_cmd_purge)
    p = add(
        "watch",
        "the pipeline live: stages, tasks, progress bars, rates, ETAs (Ctrl-C to stop)",
        "tasker watch --interval 2",
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.add_argument("--stage", help="only this stage")
    p.add_argument("--count", type=int, help="stop after this many refreshes")
    p.set_defaults(func=_cmd_watch)
    p = add(
        "dashboard",
        "serve the live web dashboard (needs the dashboard extra)",
        "tasker dashboard --port 8787",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="port (8787)")
    p.add_argument("--token", help="require this token (one is made up off the loopback)")
    p.set_defaults(func=_cmd_dashboard)
    p = add("demo", "run a small demo pipeline, then show its status", "tasker demo")
    p.add_argument("--delay", type=float, default=0.02, help="seconds per simulated item")
    p.set_defaults(func=_cmd_demo)
    return parser


def _version() -> str:
    from tasker import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from tasker.errors import TaskerError

    try:
        if args.config:
            os.environ["TASKER_CONFIG"] = args.config
        result: int = args.func(args)
        sys.stdout.flush()  # output problems surface here, not in Python's exit
        return result
    except TaskerError as exc:
        print(f"tasker: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`tasker history | head -1`): stop quietly with the status
        # of a process ended by SIGPIPE, as git and the coreutils do.
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG):
            raise
        # The output cannot be written (`tasker export > /dev/full`): one line, no traceback.
        _drop_stdout()
        print(f"tasker: error: cannot write the output: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE


def _drop_stdout() -> None:
    """Send what is left of stdout nowhere, so that Python's own flush at exit is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout: nothing to silence
        pass
