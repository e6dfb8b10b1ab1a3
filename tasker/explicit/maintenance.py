"""Keeping the database right: ending lost runs, replaying journals, purging old runs."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from tasker.errors import ValidationError
from tasker.explicit.common import now
from tasker.models import ReplayResult, RunRecord
from tasker.runtime.recorder import RECORDER


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
    from tasker.runtime.replaying import replay_waiting

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

    from tasker.runtime.replaying import replay

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
    return store.purge_runs(now() - older_than, dry_run=dry_run)
