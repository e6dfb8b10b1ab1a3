"""The reaper: ends runs whose process is gone (killed with SIGKILL, out of memory, a lost
host) as FAILED, saying the process was lost and when it was last seen.

No daemon: the CLI's status commands and the dashboard call it, and so can anyone
(``tasker.reap_lost_runs()``). A run of this host is lost at once when its PID no longer
exists, or now belongs to a process that started at another time (the PID was reused). A run
of another host is lost when it has not heartbeaten for ``stale_after`` seconds. A run whose
process is alive is never reaped, however long it runs or blocks.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from tasker.process_info import process_info, process_is_dead, process_start_time

if TYPE_CHECKING:
    from tasker.models import RunRecord
    from tasker.store.sql import SqlStore

__all__ = ["LOST", "Verdict", "judge", "reap"]

LOST = "ProcessLost"
# /proc start times are in clock ticks; two readings of one process agree far better than this.
START_TIME_TOLERANCE = 1.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    lost: bool
    reason: str = ""


def _alive_here(pid: int, started: float | None) -> Verdict:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Verdict(True, f"process {pid} no longer exists")
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:  # cannot tell: never reap on a guess
        return Verdict(False)
    if process_is_dead(pid):
        return Verdict(True, f"process {pid} has exited")
    now_started = process_start_time(pid)
    if (
        started is not None
        and now_started is not None
        and abs(now_started - started) > START_TIME_TOLERANCE
    ):
        return Verdict(True, f"process {pid} no longer exists (its PID was reused)")
    return Verdict(False)


def _last_seen(run: RunRecord) -> datetime | None:
    """The latest sign of life: a heartbeat, or any update (a shell step's ``tasker update``)."""
    times = [t for t in (run.heartbeat, run.last_update, run.start_time) if t is not None]
    return max(times) if times else None


def judge(run: RunRecord, now: datetime, stale_after: float, hostname: str) -> Verdict:
    """Whether ``run`` (an active run) has lost its process, and why."""
    if run.hostname == hostname:
        return _alive_here(run.process_id, run.process_start_time)
    seen = _last_seen(run)
    if seen is None:
        return Verdict(False)
    silent = (now - seen).total_seconds()
    if silent > stale_after:
        return Verdict(True, f"no heartbeat from host {run.hostname} for {silent:.0f} s")
    return Verdict(False)


def _when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def reap(store: SqlStore, stale_after: float) -> list[str]:
    """End every active run whose process is lost; returns their run ids."""
    now = datetime.now(timezone.utc)
    hostname = process_info().hostname
    ended = []
    for run in store.active_runs():
        verdict = judge(run, now, stale_after, hostname)
        if not verdict.lost:
            continue
        seen = _last_seen(run)
        message = (
            f"process {run.process_id} on {run.hostname} was lost: {verdict.reason}; "
            f"last seen {_when(seen)}"
        )
        end_time = seen if seen is not None else now
        # Never before the start (clock steps), never in the future.
        if run.start_time is not None:
            end_time = max(end_time, run.start_time)
        end_time = min(end_time, now)
        values = {"error_type": LOST, "error_message": message, "end_time": end_time}
        if store.mark_lost(run.run_id, values, now):
            ended.append(run.run_id)
    return ended
