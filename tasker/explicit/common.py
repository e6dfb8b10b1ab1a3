"""What every explicit call shares: the run it acts on, the clock, the console setting."""

from __future__ import annotations

from datetime import datetime, timezone

from tasker import validate
from tasker.errors import UnknownRunError
from tasker.runtime import context
from tasker.runtime.recorder import RECORDER


def now() -> datetime:
    return datetime.now(timezone.utc)


def is_quiet(quiet: bool | None) -> bool:
    """Whether a call keeps its console line to itself (the ``quiet`` setting by default)."""
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
