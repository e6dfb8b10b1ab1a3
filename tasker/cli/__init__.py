"""The ``tasker`` command (also ``python -m tasker``).

Thin by design: it parses arguments, calls the API and queries, and prints. Heavy modules are
imported only by the subcommands that need them, so the command starts fast. The parser is
the standard library's argparse: click costs about 15 ms more to import than argparse's 2 ms,
on a command whose whole budget is a few hundred milliseconds, and argparse's subparsers give
every subcommand its own options, help and errors.

Exit statuses: 0 success; 1 failure (the database refused or could not be reached, a run that
is not there, an output that cannot be written); 2 usage (an unknown option, a missing or bad
argument); 130 interrupted (Ctrl-C); 141 the reader of the output went away (a closed pipe,
as for a process that SIGPIPE ended).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from tasker.cli.common import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    from tasker.cli.parser import parse

    args, parser = parse(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from tasker.errors import TaskerError, ValidationError

    try:
        if args.config:
            _use_config_file(args.config)
        result: int = _command(args.func)(args)
        sys.stdout.flush()  # output problems surface here, not in Python's exit
        return result
    except UsageError as exc:
        args.parser.error(str(exc))  # the subcommand's usage line, exit status 2
        return EXIT_USAGE  # (not reached: error() exits)
    except ValidationError as exc:
        # A value on the command line that tasker cannot take: a usage error.
        print(f"tasker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
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


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """The function a subcommand runs, from its ``module:function`` name."""
    module, function = name.split(":")
    found: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(f"tasker.cli.{module}"), function
    )
    return found


def _use_config_file(path: str) -> None:
    """``--config FILE``: the configuration file for this command. A file that is not there
    is named as the option's, not as TASKER_CONFIG's (which the option sets for the API)."""
    if not os.path.isfile(path):
        raise UsageError(f"--config {path}: no such file")
    os.environ["TASKER_CONFIG"] = path


def _drop_stdout() -> None:
    """Send what is left of stdout nowhere, so that Python's own flush at exit is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout: nothing to silence
        pass
