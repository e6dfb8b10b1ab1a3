"""The ``tasker`` command (also ``python -m tasker``).

Thin by design: it parses arguments, calls the API and queries, and prints. Heavy modules are
imported only by the subcommands that need them, so the command starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _fmt_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


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


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _print_status(args: argparse.Namespace) -> int:
    import tasker
    from tasker.queries import summarize_stages

    tasker.reap_lost_runs()  # a run whose process died shows as FAILED, not RUNNING
    rows = tasker.get_task_status(stage=args.stage, status=args.status)
    if args.json:
        print(
            json.dumps(
                {
                    "stages": summarize_stages(rows),
                    "tasks": [r.as_dict() for r in rows],
                },
                default=_json_default,
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
        end = r.end_time or (now if r.status in ("STARTED", "RUNNING") else r.last_update)
        duration = (end - r.start_time).total_seconds() if r.start_time and end else None
        subtask = f"{r.current_subtask}. {r.subtask_name}" if r.subtask_name else ""
        table.append(
            [
                r.stage_name,
                r.task_name,
                str(r.status),
                _progress(r),
                subtask,
                r.hostname or "",
                _fmt_time(r.start_time),
                _fmt_duration(duration),
            ]
        )
    print(
        _table(
            table,
            ["STAGE", "TASK", "STATUS", "PROGRESS", "SUBTASK", "HOST", "STARTED", "DURATION"],
        )
    )
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

    from tasker.schema import DIALECTS, render_sql

    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for name in DIALECTS:
            (out / f"{name}.sql").write_text(render_sql(name), encoding="utf-8")
            print(f"wrote {out / f'{name}.sql'}")
        return EXIT_OK
    print(render_sql(args.dialect), end="")
    return EXIT_OK


def _cmd_reap(args: argparse.Namespace) -> int:
    import tasker

    lost = tasker.reap_lost_runs(stale_after=args.stale_after)
    for run in lost:
        print(f"{run.stage_name} / {run.task_name} ({run.run_id}): {run.error_message}")
    print(f"{len(lost)} lost run{'s' if len(lost) != 1 else ''} ended FAILED")
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    import tasker

    result = tasker.replay_journal(args.files or None)
    print(
        f"replayed {result.files} journal file{'s' if result.files != 1 else ''} "
        f"({result.events} events written, {result.failed} refused); "
        f"{result.already} already replayed, {result.busy} still being written"
    )
    return EXIT_FAILURE if result.failed else EXIT_OK


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
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"Example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

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
        return result
    except TaskerError as exc:
        print(f"tasker: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
