"""The command line's grammar: every subcommand with its own parser, help text on every
argument, defaults shown, the statuses listed wherever a status is taken."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tasker.models import Status

__all__ = ["build", "parse"]

RUN_STATUSES = ["STARTED", "RUNNING", "COMPLETED", "FAILED", "SKIPPED", "CANCELLED"]
TASK_STATUSES = ["NOT_STARTED", *RUN_STATUSES]
SUBTASK_STATUSES = [s.value for s in Status if s is not Status.NOT_STARTED]
RUN_ID_HELP = (
    "the run: its id or a unique prefix of it, 4 characters or more "
    "(default: $TASKER_RUN_ID, which `tasker start` prints)"
)
CONFIG_HELP = "the configuration file (default: $TASKER_CONFIG, else ./.tasker.yml)"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; an option's default shown after its help when it has one
    (not for flags, and not where the help already says what happens without it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is False
            or default is argparse.SUPPRESS
            or "default" in text
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _status(text: str) -> str:
    return text.strip().upper()


def _count(what: str, minimum: int = 0) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be {minimum} or more, got {value}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


# Every subcommand, in the order of `tasker --help` (tests/e2e/test_cli.py checks them).
_COMMAND_NAMES = (
    "init config register schema reap replay purge status active history show export watch "
    "dashboard demo run start update complete fail subtask"
)
COMMANDS: tuple[str, ...] = tuple(_COMMAND_NAMES.split())


def build(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with ``only``, of that one alone (a command line that
    names it: building the other twenty costs a command's start-up several milliseconds)."""
    parser = argparse.ArgumentParser(
        prog="tasker",
        description="Database-backed run tracking for data pipelines.",
        epilog=(
            "Examples:\n  tasker demo\n  tasker status --stage STATIC\n  tasker init\n\n"
            "Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted,\n"
            "141 output closed (a pipe). See `tasker COMMAND --help` for each command."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def add(
        name: str,
        help_text: str,
        example: str,
        func: str,
        into: Any = sub,
        prog: str | None = None,
    ) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = into.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=f"Example:\n  {example}",
            formatter_class=_Formatter,
            **({"prog": prog} if prog else {}),
        )
        # Also after the command (`tasker status --config FILE`); SUPPRESS keeps a value
        # given before it.
        command.add_argument(
            "--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP
        )
        # "module:function", imported only for the command that runs (start-up time).
        command.set_defaults(func=func, parser=command)
        return command

    def run_id(p: argparse.ArgumentParser) -> None:
        p.add_argument("run_id", nargs="?", metavar="RUN_ID", help=RUN_ID_HELP)
        p.add_argument(
            "--run-id", dest="run_id_option", metavar="RUN_ID", help="the same as RUN_ID"
        )

    def _log_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--log",
            metavar="FILE",
            help="ship the end of the script's log FILE with the run's end "
            "(at most log_tail_bytes; shown by the dashboard and tasker show)",
        )

    def as_json(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON (raw values) instead")

    def run_filters(p: argparse.ArgumentParser, limit: int | None) -> None:
        p.add_argument("--stage", metavar="STAGE", help="only runs of this stage")
        p.add_argument("--task", metavar="TASK", help="only runs of this task")
        p.add_argument(
            "--status",
            action="append",
            type=_status,
            choices=RUN_STATUSES,
            metavar="STATUS",
            help=f"only runs with this status, repeatable: {', '.join(RUN_STATUSES)}",
        )
        p.add_argument("--host", metavar="HOST", help="only runs on this host")
        p.add_argument(
            "--since",
            metavar="WHEN",
            help="only runs started since WHEN: an age (30s, 90m, 12h, 7d, 2w) or an ISO date",
        )
        p.add_argument("--until", metavar="WHEN", help="only runs started before WHEN (same forms)")
        p.add_argument(
            "--limit",
            type=_count("--limit", 1),
            default=limit,
            metavar="N",
            help="at most N runs, newest first" + ("" if limit else " (default: all)"),
        )

    # ---------------------------------------------------------------- the database
    if only in (None, "init"):
        p = add("init", "create or upgrade the tasker schema", "tasker init", "admin:cmd_init")
    if only in (None, "config"):
        p = add(
            "config",
            "show the resolved configuration, passwords masked",
            "tasker config --check",
            "admin:cmd_config",
        )
        p.add_argument("--check", action="store_true", help="also connect and report the schema")
        as_json(p)
    if only in (None, "register"):
        p = add(
            "register",
            "register stages and tasks from a YAML or CSV file",
            "tasker register tasks.yml",
            "admin:cmd_register",
        )
        p.add_argument(
            "file", metavar="FILE", help="a .yml, .yaml or .csv file of stages and tasks"
        )
    if only in (None, "schema"):
        p = add(
            "schema",
            "print the schema's SQL for a database",
            "tasker schema --dialect postgresql",
            "admin:cmd_schema",
        )
        p.add_argument(
            "--dialect",
            choices=("postgresql", "sqlite", "mysql"),
            default="postgresql",
            help="the database whose SQL to print (mysql also serves MariaDB)",
        )
        p.add_argument(
            "--write", metavar="DIR", help="write <dialect>.sql for every dialect to DIR"
        )
    if only in (None, "reap"):
        p = add(
            "reap",
            "end the runs whose process is gone as FAILED (process lost)",
            "tasker reap --stale-after 120",
            "admin:cmd_reap",
        )
        p.add_argument(
            "--stale-after",
            type=_number,
            metavar="SECONDS",
            help="silence after which a run of another host counts as lost "
            "(default: the stale_after setting)",
        )
    if only in (None, "replay"):
        p = add(
            "replay",
            "write journaled events (kept while the database was away) to the database",
            "tasker replay",
            "admin:cmd_replay",
        )
        p.add_argument(
            "files", nargs="*", metavar="FILE", help="journal files (default: every waiting file)"
        )
    if only in (None, "purge"):
        p = add(
            "purge",
            "delete runs that ended long ago, with their subtasks (asks first unless --yes)",
            "tasker purge --older-than 90d --yes",
            "admin:cmd_purge",
        )
        p.add_argument(
            "--older-than",
            required=True,
            metavar="AGE",
            help="runs that ended AGE ago: 90d, 12h, 2w",
        )
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        p.add_argument("--dry-run", action="store_true", help="only say how many would go")

        # ---------------------------------------------------------------- reading
    if only in (None, "status"):
        p = add(
            "status",
            "every registered task with its latest run, and each stage's status",
            "tasker status --stage STATIC",
            "reading:cmd_status",
        )
        p.add_argument("--stage", metavar="STAGE", help="only this stage")
        p.add_argument(
            "--status",
            action="append",
            type=_status,
            choices=TASK_STATUSES,
            metavar="STATUS",
            help=f"only tasks with this status, repeatable: {', '.join(TASK_STATUSES)}",
        )
        as_json(p)
    if only in (None, "active"):
        p = add(
            "active",
            "runs that are STARTED or RUNNING (lost ones reaped first)",
            "tasker active",
            "reading:cmd_active",
        )
        as_json(p)
    if only in (None, "history"):
        p = add(
            "history",
            "past and present runs, newest first",
            "tasker history --since 7d --status FAILED",
            "reading:cmd_history",
        )
        run_filters(p, 50)
        as_json(p)
    if only in (None, "show"):
        p = add(
            "show",
            "one run: every captured field, its subtasks, its error",
            "tasker show 3f0c",
            "reading:cmd_show",
        )
        p.add_argument(
            "run_id",
            metavar="RUN_ID",
            help="a run id, or a unique prefix of one (4 characters or more)",
        )
        as_json(p)
    if only in (None, "export"):
        p = add(
            "export",
            "write runs as CSV or JSON (the filters of `tasker history`)",
            "tasker export --format csv --since 30d -o runs.csv",
            "reading:cmd_export",
        )
        p.add_argument("--format", choices=("csv", "json"), default="csv", help="the output format")
        run_filters(p, None)
        p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (default: stdout)")
    if only in (None, "watch"):
        p = add(
            "watch",
            "the pipeline live: stages, tasks, progress bars, rates, ETAs (Ctrl-C stops)",
            "tasker watch --interval 2",
            "reading:cmd_watch",
        )
        p.add_argument(
            "--interval",
            type=_number,
            default=1.0,
            metavar="SECONDS",
            help="time between refreshes",
        )
        p.add_argument("--stage", metavar="STAGE", help="only this stage")
        p.add_argument(
            "--count", type=_count("--count", 1), metavar="N", help="stop after N refreshes"
        )
    if only in (None, "dashboard"):
        p = add(
            "dashboard",
            "serve the live web dashboard (needs the dashboard extra)",
            "tasker dashboard --port 8787",
            "admin:cmd_dashboard",
        )
        p.add_argument(
            "--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every one)"
        )
        p.add_argument("--port", type=_count("--port", 1), default=8787, help="the port")
        p.add_argument(
            "--token",
            help="require this token (one is made up when listening beyond the loopback)",
        )
    if only in (None, "demo"):
        p = add(
            "demo",
            "run a small demo pipeline, then show its status",
            "tasker demo",
            "admin:cmd_demo",
        )
        p.add_argument(
            "--delay", type=_number, default=0.02, metavar="SECONDS", help="time per simulated item"
        )

        # ---------------------------------------------------------------- recording
    if only in (None, "run"):
        p = add(
            "run",
            "run a command as a tracked task (its exit status gives COMPLETED or FAILED)",
            "tasker run --stage NIGHTLY --name backup -- rsync -a src/ dst/",
            "recording:cmd_run",
        )
        p.add_argument("--stage", required=True, help="the task's stage")
        p.add_argument("--name", help="the task's name (default: the command's name)")
        p.add_argument(
            "--log",
            metavar="FILE",
            help="also append the output to FILE (recorded; its end is shipped with the run)",
        )
        p.add_argument("--quiet", action="store_true", help="no [TASK ...] lines on stderr")
        p.add_argument(
            "command",
            nargs=argparse.REMAINDER,
            metavar="-- COMMAND ARGS",
            help="the command to run",
        )
    if only in (None, "start"):
        p = add(
            "start",
            "start a run for the calling shell script and print its run id",
            'export TASKER_RUN_ID=$(tasker start STATIC "Build Database")',
            "recording:cmd_start",
        )
        p.add_argument("stage", metavar="STAGE", help="the task's stage (registered if new)")
        p.add_argument("task", metavar="TASK", help="the task's name (registered if new)")
        p.add_argument(
            "--total-subtasks",
            type=_count("--total-subtasks", 1),
            metavar="N",
            help="the subtasks the run will have (its percent then follows them)",
        )
        p.add_argument("--message", help="a progress message")
    if only in (None, "update"):
        p = add(
            "update",
            "update a run's status, percent or message",
            'tasker update "$TASKER_RUN_ID" --percent 50 --message "half way"',
            "recording:cmd_update",
        )
        run_id(p)
        p.add_argument(
            "--status",
            type=_status,
            choices=RUN_STATUSES,
            default="RUNNING",
            metavar="STATUS",
            help=f"the run's status: {', '.join(RUN_STATUSES)} (an ending status ends the run)",
        )
        p.add_argument("--percent", type=_number, metavar="P", help="overall percent, 0 to 100")
        p.add_argument("--message", help="a progress message")
    if only in (None, "complete"):
        p = add(
            "complete",
            "end a run COMPLETED",
            "tasker complete --message done",
            "recording:cmd_complete",
        )
        run_id(p)
        p.add_argument("--message", help="a closing message")
        _log_option(p)
    if only in (None, "fail"):
        p = add(
            "fail",
            "end a run FAILED",
            'tasker fail --message "no input" --exit-code 2',
            "recording:cmd_fail",
        )
        run_id(p)
        p.add_argument("--message", help="the error message")
        p.add_argument("--exit-code", type=int, metavar="N", help="the exit status to record")
        _log_option(p)
    if only in (None, "subtask"):
        subtask = sub.add_parser(
            "subtask",
            help="start, update, count, complete or fail a subtask of a run",
            description="Start, update, count, complete or fail a subtask of a run.",
            epilog=(
                "Example:\n  tasker subtask start Loading --items 56\n  tasker subtask increment"
            ),
            formatter_class=_Formatter,
        )
        subtask.set_defaults(func=None, parser=subtask)
        actions = subtask.add_subparsers(dest="action", metavar="ACTION", title="actions")
        number_help = "the subtask's number (default: the one started last)"

        def action(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
            p = add(
                name,
                help_text,
                example,
                "recording:cmd_subtask",
                into=actions,
                prog=f"tasker subtask {name}",
            )
            run_id(p)
            return p

        p = action(
            "start",
            "start the run's next subtask and print its number",
            "tasker subtask start Loading --items 56",
        )
        p.add_argument("name", metavar="NAME", help="the subtask's name")
        p.add_argument(
            "--items", type=_count("--items"), metavar="N", help="the items it has in all"
        )
        p.add_argument("--message", help="a progress message")
        p.add_argument(
            "--number",
            type=_count("--number", 1),
            metavar="N",
            help="its number (default: the next one)",
        )
        p = action(
            "update",
            "update a subtask's status, percent, items done or message",
            "tasker subtask update --items-complete 28",
        )
        p.add_argument(
            "--status",
            type=_status,
            choices=SUBTASK_STATUSES,
            default="RUNNING",
            metavar="STATUS",
            help=f"the subtask's status: {', '.join(SUBTASK_STATUSES)}",
        )
        p.add_argument("--percent", type=_number, metavar="P", help="percent done, 0 to 100")
        p.add_argument(
            "--items-complete",
            type=_count("--items-complete"),
            metavar="N",
            help="items done so far",
        )
        p.add_argument("--message", help="a progress message")
        p.add_argument("--number", type=_count("--number", 1), metavar="N", help=number_help)
        p = action(
            "increment", "add items to a subtask's count", "tasker subtask increment --by 10"
        )
        p.add_argument("--by", type=_count("--by"), default=1, metavar="N", help="items to add")
        p.add_argument("--number", type=_count("--number", 1), metavar="N", help=number_help)
        p = action("complete", "end a subtask COMPLETED", "tasker subtask complete")
        p.add_argument("--message", help="a closing message")
        p.add_argument(
            "--items-complete",
            type=_count("--items-complete"),
            metavar="N",
            help="the final item count",
        )
        p.add_argument("--number", type=_count("--number", 1), metavar="N", help=number_help)
        p = action("fail", "end a subtask FAILED", 'tasker subtask fail --message "bad row"')
        p.add_argument("--message", help="the error message")
        p.add_argument("--number", type=_count("--number", 1), metavar="N", help=number_help)
    return parser


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """The parsed command line, and the top-level parser (for its help).

    Arguments no parser knows are reported by the subcommand they were given to, with that
    subcommand's usage line (argparse alone would report them with the top-level one)."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build(_command_of(words))
    args, extra = parser.parse_known_args(words)
    if args.command is None:
        return args, parser
    if args.command == "subtask" and args.action is None:
        args.parser.error("name an action: start, update, increment, complete or fail")
    if extra:
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args, parser


def _command_of(words: Sequence[str]) -> str | None:
    """The subcommand ``words`` run, when only its parser is needed; None when the whole
    parser is (top-level help, an option or a word before it that is not the command's)."""
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--config":
            skip = True  # its value comes next
        elif word.startswith("--config="):
            continue
        else:
            return word if word in COMMANDS else None
    return None


def _version() -> str:
    from tasker import __version__

    return __version__
