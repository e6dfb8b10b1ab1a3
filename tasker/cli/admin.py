"""The commands that look after the database and the pipeline: ``init``, ``config``,
``register``, ``schema``, ``reap``, ``replay``, ``purge``, ``dashboard``, ``demo``."""

from __future__ import annotations

import argparse
import json
import sys

from tasker.cli.common import EXIT_FAILURE, EXIT_OK, read_only, replay_waiting
from tasker.cli.tables import Column, output_size, table

__all__ = [
    "cmd_config",
    "cmd_dashboard",
    "cmd_demo",
    "cmd_init",
    "cmd_purge",
    "cmd_reap",
    "cmd_register",
    "cmd_replay",
    "cmd_schema",
]


def cmd_init(args: argparse.Namespace) -> int:
    import tasker

    created = tasker.create_schema()
    config = tasker.get_config()
    print(f"{'created' if created else 'schema already present in'} {config.url}")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    import tasker

    config = tasker.get_config()
    rows = config.describe()
    if args.json:
        print(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
    else:
        columns = [
            Column("KEY", priority=9),
            Column("VALUE", priority=8, shrink=True, min_width=16),
            Column("SOURCE", priority=5, shrink=True, min_width=10),
        ]
        print("\n".join(table(columns, [[k, v, s] for k, v, s in rows], output_size()[0])))
        if config.config_file:
            print(f"\nconfiguration file: {config.config_file}")
    if args.check:
        from tasker.runtime.recorder import RECORDER
        from tasker.store.ddl import no_tables

        read_only()  # a check that creates what it checks would prove nothing
        version = RECORDER.raw_store.schema_version()
        if version is None:
            raise no_tables(config)  # connected, but nothing there to use: a failed check
        print(f"\nconnected to {config.url}: schema version {version}", file=sys.stderr)
    return EXIT_OK


def cmd_register(args: argparse.Namespace) -> int:
    import tasker

    ids = tasker.register_tasks(args.file)
    print(f"registered {len(ids)} task(s) from {args.file}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tasker.store.schema import DIALECT_NAMES, render_sql

    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for name in DIALECT_NAMES:
            (out / f"{name}.sql").write_text(render_sql(name), encoding="utf-8")
            print(f"wrote {out / f'{name}.sql'}")
        return EXIT_OK
    print(render_sql(args.dialect), end="")
    return EXIT_OK


def cmd_reap(args: argparse.Namespace) -> int:
    import tasker

    read_only()  # no tables, no runs to reap: creating them would only hide the mistake
    replay_waiting()
    lost = tasker.reap_lost_runs(stale_after=args.stale_after)
    for run in lost:
        print(f"{run.stage_name} / {run.task_name} ({run.run_id}): {run.error_message}")
    print(f"{len(lost)} lost run{'s' if len(lost) != 1 else ''} ended FAILED")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
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
            if d.recorded:
                line += f", {d.recorded} already in the database"
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


def cmd_purge(args: argparse.Namespace) -> int:
    import tasker
    from tasker.ages import parse_age
    from tasker.errors import ValidationError

    age = parse_age(args.older_than)
    if age is None:
        raise ValidationError(
            f"--older-than: expected an age like 90d, 12h or 2w, got {args.older_than!r}"
        )
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


def cmd_dashboard(args: argparse.Namespace) -> int:
    from tasker.errors import ConfigError

    try:
        from tasker.dashboard import serve
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the dashboard needs {exc.name}: pip install starlette uvicorn (or, in a clone "
            "of tasker, pip install '.[dashboard]')"
        ) from None
    import tasker

    read_only()
    tasker.get_config()  # a bad configuration fails here, not on the first page
    serve(args.host, args.port, args.token)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    import tasker
    from tasker.cli.demo import run_demo
    from tasker.cli.reading import print_status

    config = tasker.get_config()
    print(f"running the demo pipeline against {config.url}\n", file=sys.stderr)
    run_demo(delay=args.delay)
    print(file=sys.stderr)
    return print_status(None, None, False)
