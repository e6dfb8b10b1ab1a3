"""The reaper: ends runs whose process is gone (killed with SIGKILL, out of memory, a lost
host) as FAILED, saying the process was lost and when it was last seen.

No daemon: the CLI's status commands and the dashboard call it, and so can anyone
(``tasker.reap_lost_runs()``).

A PID means something only to the kernel that handed it out, and only inside its PID
namespace. So a run's PID is checked only when the run was recorded on this host, in this boot
of its kernel and in this PID namespace (hostname, ``boot_id`` and ``pid_namespace`` all the
reaper's own); then the run is lost at once when its PID no longer exists, or now belongs to
a process that started at another time (the PID was reused). That time is compared as the
kernel counts it, in ticks since boot (``process_start_uptime``), which no change of the clock
moves; the epoch time (``process_start_time``) moves with the clock, by a second as NTP slews
it and by the whole step when the clock is set, so it is compared, within seconds, only for
rows recorded without the other (before schema version 6). A run of this host's previous
boot (last seen before this boot began) is lost at once: no process survives a reboot. A run
of another host, or of this host in another PID namespace (a container on the host network,
``unshare --pid``), whose PID this process cannot look at, is lost when it has not heartbeaten
for ``stale_after`` seconds. Runs recorded without a boot id or namespace (before schema
version 3, or not on Linux) are judged by hostname alone, as before. A run whose process is
alive is never reaped, however long it runs or blocks.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from tasker.runtime.capture.process import (
    boot_time,
    process_info,
    process_is_dead,
    process_start_time,
    process_start_uptime,
)

if TYPE_CHECKING:
    from tasker.models import RunRecord
    from tasker.store.sql import SqlStore

__all__ = ["LOST", "Host", "Verdict", "judge", "reap"]

LOST = "ProcessLost"
# Two readings of one process's start: in seconds after boot they are the same tick (a tick is
# 1/100 s or less), whatever the clock did; in seconds since the epoch they differ by a whole
# second whenever the kernel's boot time (whole seconds, the clock less the time since boot)
# crosses a second as NTP slews the clock, and by more when the clock is set.
START_UPTIME_TOLERANCE = 0.0005
START_TIME_TOLERANCE = 2.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    lost: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Host:
    """Where the reaper runs: whose PIDs it can check (see the module's docstring)."""

    hostname: str
    boot_id: str | None = None
    pid_namespace: str | None = None
    boot_time: float | None = None  # when this boot began, seconds since the epoch

    @classmethod
    def here(cls) -> Host:
        info = process_info()
        return cls(info.hostname, info.boot_id, info.pid_namespace, boot_time())


def _alive_here(run: RunRecord) -> Verdict:
    """Whether the PID of ``run``, recorded in this boot and namespace, is still its process."""
    pid = run.process_id
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
    started: float | None
    if run.boot_id is not None and run.process_start_uptime is not None:
        # Seconds after this very boot (judge checked the boot id): exact.
        started, now_started = run.process_start_uptime, process_start_uptime(pid)
        tolerance = START_UPTIME_TOLERANCE
    else:
        started, now_started = run.process_start_time, process_start_time(pid)
        tolerance = START_TIME_TOLERANCE
    if started is not None and now_started is not None and abs(now_started - started) > tolerance:
        return Verdict(True, f"process {pid} no longer exists (its PID was reused)")
    return Verdict(False)


def _last_seen(run: RunRecord) -> datetime | None:
    """The latest sign of life: a heartbeat, or any update (a shell step's ``tasker update``)."""
    times = [t for t in (run.heartbeat, run.last_update, run.start_time) if t is not None]
    return max(times) if times else None


def _stale(run: RunRecord, now: datetime, stale_after: float, where: str) -> Verdict:
    seen = _last_seen(run)
    if seen is None:
        return Verdict(False)
    silent = (now - seen).total_seconds()
    if silent > stale_after:
        return Verdict(True, f"no heartbeat from {where} for {silent:.0f} s")
    return Verdict(False)


def judge(run: RunRecord, now: datetime, stale_after: float, host: Host | str) -> Verdict:
    """Whether ``run`` (an active run) has lost its process, and why. ``host`` is where the
    reaper runs (a bare hostname: a host of unknown boot and namespace)."""
    if isinstance(host, str):
        host = Host(host)
    if run.hostname != host.hostname:
        return _stale(run, now, stale_after, f"host {run.hostname}")
    if run.boot_id is not None and run.boot_id != host.boot_id:
        # Another boot. Last seen before this boot began, it was this host's earlier boot,
        # and no process outlives a reboot: lost at once. (A boot id alone cannot tell a
        # reboot from another machine given the same name, a cloned VM, which is alive.)
        seen = _last_seen(run)
        if (
            host.boot_id is not None
            and host.boot_time is not None
            and seen is not None
            and seen.timestamp() < host.boot_time
        ):
            return Verdict(
                True,
                f"host {run.hostname} has rebooted since (its boot {run.boot_id} has ended), "
                "so its process cannot exist",
            )
        # Seen during this boot, or a reaper that cannot tell its own boot (not Linux): not
        # this kernel's PID, but another machine's of the same name. Its heartbeat tells.
        return _stale(run, now, stale_after, f"host {run.hostname} (boot {run.boot_id})")
    if run.pid_namespace is not None and run.pid_namespace != host.pid_namespace:
        # Same kernel, but the PID is another namespace's number (a container sharing the
        # host's name): looking it up here would find another process, or none.
        return _stale(
            run, now, stale_after, f"PID namespace {run.pid_namespace} on host {run.hostname}"
        )
    return _alive_here(run)


def _when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def reap(store: SqlStore, stale_after: float) -> list[str]:
    """End every active run whose process is lost; returns their run ids."""
    now = datetime.now(timezone.utc)
    host = Host.here()
    ended = []
    for run in store.active_runs():
        verdict = judge(run, now, stale_after, host)
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
