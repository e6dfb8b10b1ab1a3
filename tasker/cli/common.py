"""What the command's modules share: exit statuses, the run a command is about, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from tasker.formatting import json_default

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "log_tail_of",
    "print_json",
    "read_only",
    "replay_waiting",
    "run_id_of",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# A reader that went away (a closed pipe): the shell's status of a process ended by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13


class UsageError(Exception):
    """A command line that does not say what to do: reported with the subcommand's usage
    line, exit status 2."""


def run_id_of(args: argparse.Namespace) -> str:
    """The run a command is about: RUN_ID (a run id or a unique prefix of one, 4 characters
    or more), else ``--run-id``, else ``$TASKER_RUN_ID``.

    A whole run id is taken as it is (no database read: a script goes on while the database
    is away, its events journaled); a prefix is looked up, in the database or, while it is
    away, among the shell runs this machine started."""
    given = getattr(args, "run_id", None)
    option = getattr(args, "run_id_option", None)
    if given and option and given != option:
        raise UsageError(f"two runs named: RUN_ID {given} and --run-id {option}")
    text = given or option
    if not text:
        text = os.environ.get("TASKER_RUN_ID", "").strip()
        if not text:
            raise UsageError(
                "no run named: give RUN_ID (a run id or a unique prefix of one) or set "
                "TASKER_RUN_ID, as `export TASKER_RUN_ID=$(tasker start STAGE TASK)` does"
            )
    from tasker import validate
    from tasker.errors import DatabaseError, ValidationError

    try:
        return validate.run_id(text, "RUN_ID")
    except ValidationError:
        pass
    from tasker.queries import find_run

    try:
        return find_run(text).run_id
    except DatabaseError as exc:
        if not exc.unavailable:
            raise
        # The database is away: a run a shell script of this machine started is known here
        # too (tasker.runtime.shell_runs), so the script goes on and its events are journaled.
        from tasker.runtime import shell_runs

        known = shell_runs.with_prefix(text.strip().lower())
        if len(known) != 1:
            raise DatabaseError(
                f"cannot tell which run {text!r} is the start of: {exc} (while the database is "
                "away, give the whole run id, or the prefix of a run a shell script started "
                "on this machine)",
                unavailable=True,
            ) from None
        return known[0]


def read_only() -> None:
    """A read command never creates a database: an SQLite file that is not there is an error
    naming it and saying how to create it (`tasker init`), not an empty new database."""
    from tasker.store.engine import never_create_databases

    never_create_databases()


def replay_waiting() -> None:
    """Write the journal files waiting for the database before anything is reaped or shown:
    a run whose end waits in a journal is not lost. Costs a folder listing when none wait."""
    import tasker
    from tasker.runtime.journal import pending_files
    from tasker.runtime.recorder import RECORDER

    # The recorder's configuration, as tasker.get_config() returns it, without loading the
    # explicit API's configuration module (and the registration parser) for every read.
    if pending_files(RECORDER.config):
        tasker.replay_journal()


def print_json(data: Any) -> None:
    print(json.dumps(data, default=json_default, indent=2))


def log_tail_of(path: str | None, *, say: bool = True) -> str | None:
    """The end of the log file ``--log`` names, as the run's end ships it (at most
    ``log_tail_bytes``), or None. A file that cannot be read is said on stderr (``say``)
    and the run ends all the same: a shell script's exit status never depends on
    tracking."""
    if path is None:
        return None
    import tasker
    from tasker.runtime.capture.logs import file_tail

    limit = tasker.get_config().log_tail_bytes
    tail = file_tail(os.path.abspath(path), limit)
    if tail is None and limit > 0 and say:
        print(
            f"tasker: no log tail shipped: {path} is no readable regular file, or empty",
            file=sys.stderr,
        )
    return tail
