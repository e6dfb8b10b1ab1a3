"""Host identity the reaper can trust: a run records the kernel boot and PID namespace of its
PID, and the reaper checks the PID only when both are its own; a run the reaper ended that
ends after all keeps a consistent row (the real end wins)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import tasker
from tasker.models import RunRecord, Status
from tasker.runtime.capture.process import boot_time, process_info
from tasker.runtime.recorder import RECORDER
from tests.conftest import Backend
from tests.helpers import new_run, skip_or_fail, start_script, wait_for, write_script

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="boot ids and PID namespaces")

LOST = "ProcessLost"


def _lost_values(when: datetime) -> dict[str, object]:
    """What the reaper passes to mark_lost."""
    return {
        "error_type": LOST,
        "error_message": "process 1 on h was lost: process 1 no longer exists; last seen x",
        "end_time": when,
    }


def test_a_process_records_its_boot_and_pid_namespace() -> None:
    info = process_info()
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
        assert info.boot_id == fh.read().strip()
    assert info.pid_namespace == os.readlink("/proc/self/ns/pid")
    assert info.pid_namespace is not None and info.pid_namespace.startswith("pid:[")


def test_every_way_a_run_is_recorded_keeps_its_boot_and_namespace(
    db: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasker.store.sql import SqlStore

    me = process_info()
    whole_runs: list[int] = []
    insert_whole_runs = SqlStore.insert_whole_runs

    def counted(self: SqlStore, rows: Any) -> None:
        whole_runs.append(len(rows))
        insert_whole_runs(self, rows)

    monkeypatch.setattr(SqlStore, "insert_whole_runs", counted)

    @tasker.task(stage="REC", name="short")
    def short() -> None:
        pass

    short()  # started and ended between two writes: inserted as one finished row
    with tasker.task("REC", "long"):
        tasker.flush()  # the start alone, then the end
    tasker.flush()
    explicit = tasker.task_start("REC", "explicit", quiet=True)
    tasker.task_complete(run_id=explicit, quiet=True)
    runs = tasker.get_task_history(stage="REC")
    assert len(runs) == 3 and whole_runs == [1]
    for run in runs:
        assert (run.boot_id, run.pid_namespace) == (me.boot_id, me.pid_namespace), run.task_name
    now = datetime.now(timezone.utc)
    whole = "00000000-0000-4000-8000-00000000a001"
    fields = {"boot_id": "b" * 36, "pid_namespace": "pid:[9]"}
    store = RECORDER.store
    store.insert_whole_runs([(new_run(whole, "REC", "w", **fields), Status.COMPLETED, {}, now)])
    started = "00000000-0000-4000-8000-00000000a002"
    store.start_run(new_run(started, "REC", "s", **fields))
    for run_id in (whole, started):
        run = tasker.get_run(run_id)
        assert (run.boot_id, run.pid_namespace) == ("b" * 36, "pid:[9]")


# ---------------------------------------------------------------------------- a real namespace

NAMESPACED = """
import sys, time
from pathlib import Path
import tasker

@tasker.task(stage="NS", name="namespaced")
def job(stop: str) -> str:
    with tasker.subtask("waiting"):
        while not Path(stop).exists():
            time.sleep(0.05)
    return "done"

print(job(sys.argv[1]), flush=True)
"""


def _unshare_or_skip() -> str:
    unshare = shutil.which("unshare")
    if unshare is None:
        skip_or_fail("needs util-linux's unshare")
    probe = subprocess.run(
        [unshare, "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        if "not permitted" in probe.stderr.lower():  # EPERM: no CAP_SYS_ADMIN here
            skip_or_fail(f"unshare --pid is not permitted here: {probe.stderr.strip()}")
        pytest.fail(f"unshare --pid failed: {probe.stderr}")
    return unshare


def test_a_live_run_in_its_own_pid_namespace_is_not_reaped(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    # The process has this host's name and boot, but PIDs of its own (it is PID 1 there):
    # looked up here, its PID is another, older process, which once made the reaper end the
    # run within 0.1 s as "PID reused".
    unshare = _unshare_or_skip()
    script = write_script(tmp_path, NAMESPACED)
    stop = tmp_path / "stop"
    # --kill-child: the process dies with unshare (and both with their process group).
    command = [unshare, "--pid", "--fork", "--kill-child", "--mount-proc"]
    proc = subprocess.Popen(
        [*command, sys.executable, str(script), str(stop)],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        (run,) = wait_for(tasker.get_active_tasks)
        wait_for(lambda: tasker.get_subtask_progress(run.run_id))
        me = process_info()
        assert (run.hostname, run.boot_id) == (me.hostname, me.boot_id)
        assert run.pid_namespace is not None and run.pid_namespace != me.pid_namespace
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert tasker.reap_lost_runs() == []
            time.sleep(0.1)
        alive = tasker.get_run(run.run_id)
        assert alive.status in ("STARTED", "RUNNING") and alive.error_type is None
        stop.touch()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
    done = tasker.get_run(run.run_id)
    assert (done.status, done.error_type, done.error_message) == ("COMPLETED", None, None)
    assert done.pid_namespace == run.pid_namespace and done.boot_id == me.boot_id
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert sub.status == "COMPLETED"


# ---------------------------------------------------------------------------- judged rows


def _insert(run_id: str, **fields: object) -> None:
    me = process_info()
    values: dict[str, object] = {
        "hostname": me.hostname,
        "process_id": os.getpid(),
        "process_start_time": me.process_start_time,
        "process_start_uptime": me.process_start_uptime,
        "boot_id": me.boot_id,
        "pid_namespace": me.pid_namespace,
    }
    values.update(fields)
    RECORDER.store.start_run(new_run(run_id, "HOST", run_id[-4:], **values))


def _no_such_pid() -> int:
    """A PID no process has here (above the kernel's largest)."""
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as fh:
        return int(fh.read()) + 1


def test_a_run_of_an_earlier_boot_of_this_host_is_reaped_at_once(db: Backend) -> None:
    booted = boot_time()
    assert booted is not None
    before_boot = datetime.fromtimestamp(booted - 600, timezone.utc)
    run_id = "00000000-0000-4000-8000-00000000b001"
    # Its PID and start time are this very process's: only the boot id says it is gone.
    _insert(run_id, boot_id="11111111-2222-4333-8444-555555555555", start_time=before_boot)
    (lost,) = tasker.reap_lost_runs(stale_after=10**9)
    assert (lost.run_id, lost.status, lost.error_type) == (run_id, "FAILED", LOST)
    assert "rebooted" in (lost.error_message or "")
    assert "cannot exist" in (lost.error_message or "")


def test_another_boot_id_seen_during_this_boot_is_judged_by_heartbeat(db: Backend) -> None:
    # Another machine of the same name (a cloned VM): its PIDs are not this kernel's, and it
    # was alive after this host booted, so only its heartbeat can tell.
    now = datetime.now(timezone.utc)
    run_id = "00000000-0000-4000-8000-00000000b002"
    _insert(
        run_id,
        boot_id="11111111-2222-4333-8444-555555555555",
        process_id=_no_such_pid(),
        start_time=now - timedelta(seconds=120),
    )
    RECORDER.store.heartbeat([run_id], now - timedelta(seconds=30))
    assert tasker.reap_lost_runs(stale_after=60) == []
    RECORDER.store.heartbeat([run_id], now - timedelta(seconds=90))
    (lost,) = tasker.reap_lost_runs(stale_after=60)
    assert (lost.run_id, lost.error_type) == (run_id, LOST)
    assert "no heartbeat" in (lost.error_message or "")


def test_a_run_of_another_pid_namespace_is_judged_by_heartbeat(db: Backend) -> None:
    # Same kernel, another namespace: a PID that does not exist here may well exist there.
    now = datetime.now(timezone.utc)
    run_id = "00000000-0000-4000-8000-00000000b003"
    _insert(
        run_id,
        pid_namespace="pid:[1]",
        process_id=_no_such_pid(),
        start_time=now - timedelta(seconds=300),
    )
    RECORDER.store.heartbeat([run_id], now - timedelta(seconds=1))
    assert tasker.reap_lost_runs(stale_after=60) == []
    assert tasker.get_run(run_id).status == "STARTED"
    RECORDER.store.heartbeat([run_id], now - timedelta(seconds=90))
    (lost,) = tasker.reap_lost_runs(stale_after=60)
    assert (lost.run_id, lost.status, lost.error_type) == (run_id, "FAILED", LOST)
    message = lost.error_message or ""
    assert "PID namespace pid:[1]" in message and "no heartbeat" in message


def test_runs_without_a_boot_id_are_judged_by_hostname_as_before(db: Backend) -> None:
    run_id = "00000000-0000-4000-8000-00000000b004"
    _insert(run_id, boot_id=None, pid_namespace=None, process_id=_no_such_pid())
    (lost,) = tasker.reap_lost_runs(stale_after=10**9)
    assert lost.run_id == run_id and "no longer exists" in (lost.error_message or "")
    alive = "00000000-0000-4000-8000-00000000b005"
    _insert(alive, boot_id=None, pid_namespace=None)  # this process: alive
    assert tasker.reap_lost_runs(stale_after=10**9) == []


def test_a_run_of_this_boot_and_namespace_is_still_checked_by_pid(db: Backend) -> None:
    run_id = "00000000-0000-4000-8000-00000000b006"
    _insert(run_id, process_id=_no_such_pid())
    (lost,) = tasker.reap_lost_runs(stale_after=10**9)
    assert lost.run_id == run_id and "no longer exists" in (lost.error_message or "")
    _insert("00000000-0000-4000-8000-00000000b007")  # this process, boot and namespace
    assert tasker.reap_lost_runs(stale_after=10**9) == []


# The kernel's boot time (/proc/stat btime) is the clock now less the time since boot, in whole
# seconds: it moves with the clock, and with it every start time in seconds since the epoch
# read afterwards. A row records what the clock made of the start then; the reaper reads what
# the clock makes of it now. These rows hold what a clock set since would leave.


def test_a_clock_set_since_the_run_started_does_not_make_its_live_process_lost(
    db: Backend,
) -> None:
    me = process_info()
    assert me.process_start_time is not None and me.process_start_uptime is not None
    stepped = {
        "00000000-0000-4000-8000-00000000c001": me.process_start_time + 1.0,  # a slew
        "00000000-0000-4000-8000-00000000c002": me.process_start_time - 3600.0,  # set back
        "00000000-0000-4000-8000-00000000c003": me.process_start_time + 86400.0,  # set ahead
    }
    for run_id, started in stepped.items():
        _insert(run_id, process_start_time=started)
    assert tasker.reap_lost_runs(stale_after=10**9) == []
    assert {tasker.get_run(r).status for r in stepped} == {"STARTED"}


def test_a_reused_pid_is_told_by_its_start_after_boot_whatever_the_clock_says(
    db: Backend,
) -> None:
    me = process_info()
    assert me.process_start_uptime is not None
    run_id = "00000000-0000-4000-8000-00000000c004"
    # The epoch time agrees (the clock moved by just as much), the ticks since boot do not:
    # a process that started one tick earlier had this PID.
    _insert(run_id, process_start_uptime=me.process_start_uptime - 0.01)
    (lost,) = tasker.reap_lost_runs(stale_after=10**9)
    assert (lost.run_id, lost.error_type) == (run_id, LOST)
    assert "its PID was reused" in (lost.error_message or "")


def test_rows_without_a_start_after_boot_allow_the_clock_a_second_either_way(
    db: Backend,
) -> None:
    # Rows of schema version 5 and earlier: only the epoch time, compared within seconds.
    me = process_info()
    assert me.process_start_time is not None
    slewed = "00000000-0000-4000-8000-00000000c005"
    _insert(slewed, process_start_uptime=None, process_start_time=me.process_start_time - 1.0)
    assert tasker.reap_lost_runs(stale_after=10**9) == []
    reused = "00000000-0000-4000-8000-00000000c006"
    _insert(reused, process_start_uptime=None, process_start_time=me.process_start_time - 60)
    (lost,) = tasker.reap_lost_runs(stale_after=10**9)
    assert lost.run_id == reused and "its PID was reused" in (lost.error_message or "")
    assert tasker.get_run(slewed).status == "STARTED"


# ---------------------------------------------------------------------------- the real end wins

SURVIVOR = """
import sys, time
from pathlib import Path
import tasker

@tasker.task(stage="LATE", name="survivor")
def job(stop: str) -> None:
    with tasker.subtask("waiting"):
        while not Path(stop).exists():
            time.sleep(0.05)

job(sys.argv[1])
"""


def test_a_reaped_run_that_completes_after_all_is_completed_without_error(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    script = write_script(tmp_path, SURVIVOR)
    stop = tmp_path / "stop"
    proc = start_script(script, child_env, str(stop))
    try:
        (run,) = wait_for(tasker.get_active_tasks)
        wait_for(lambda: tasker.get_subtask_progress(run.run_id))
        # What the reaper does to a run it wrongly judged lost (a stopped process, a
        # heartbeat that did not arrive in time).
        now = datetime.now(timezone.utc)
        assert RECORDER.store.mark_lost(run.run_id, _lost_values(now), now)
        reaped = tasker.get_run(run.run_id)
        assert (reaped.status, reaped.error_type) == ("FAILED", LOST)
        (sub,) = tasker.get_subtask_progress(run.run_id)
        assert sub.status == "FAILED"
        stop.touch()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
    done = tasker.get_run(run.run_id)
    assert done.status == "COMPLETED"
    assert (done.error_type, done.error_message, done.error_detail) == (None, None, None)
    assert done.end_time is not None and reaped.end_time is not None
    assert done.end_time > reaped.end_time
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.status, sub.error_message) == ("COMPLETED", None)


def _reaped(stage: str) -> RunRecord:
    run_id = tasker.task_start(stage, "T", quiet=True)
    tasker.subtask_start("open", 10, quiet=True)
    now = datetime.now(timezone.utc)
    assert RECORDER.store.mark_lost(run_id, _lost_values(now), now)
    return tasker.get_run(run_id)


def test_the_real_end_of_a_reaped_run_wins(db: Backend) -> None:
    # Ended COMPLETED by its own process (subtasks the reaper ended with it too).
    run = _reaped("A")
    tasker.task_complete("all done", run_id=run.run_id, quiet=True)
    done = tasker.get_run(run.run_id)
    assert (done.status, done.error_type, done.error_message, done.error_detail) == (
        "COMPLETED",
        None,
        None,
        None,
    )
    assert done.overall_percent_complete == 100.0
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.status, sub.error_message) == ("COMPLETED", None)

    # Ended FAILED by its own process: its error, none of the reaper's.
    run = _reaped("B")
    tasker.task_fail("disk full", error_type="OSError", run_id=run.run_id, quiet=True)
    failed = tasker.get_run(run.run_id)
    assert (failed.status, failed.error_type, failed.error_message) == (
        "FAILED",
        "OSError",
        "disk full",
    )
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert sub.status == "FAILED" and "process lost" not in (sub.error_message or "")

    # A status update from its process: the run is alive again, not lost.
    run = _reaped("C")
    tasker.task_update(overall_percent=50, run_id=run.run_id, quiet=True)
    alive = tasker.get_run(run.run_id)
    assert (alive.status, alive.error_type, alive.error_message, alive.end_time) == (
        "RUNNING",
        None,
        None,
        None,
    )


def test_an_end_after_an_ordinary_failure_is_refused(db: Backend) -> None:
    # Only the reaper's verdict gives way: a run that failed otherwise stays as it ended.
    run_id = tasker.task_start("ORD", "T", quiet=True)
    tasker.task_fail("boom", error_type="ValueError", run_id=run_id, quiet=True)
    store = RECORDER.store
    with pytest.raises(tasker.RunEndedError, match="already ended FAILED"):
        store.end_run(run_id, Status.COMPLETED, {}, datetime.now(timezone.utc))
    run = tasker.get_run(run_id)
    assert (run.status, run.error_type, run.error_message) == ("FAILED", "ValueError", "boom")


def test_the_store_and_the_reaper_agree_on_the_lost_error_type() -> None:
    from tasker.runtime import reaper
    from tasker.store import sql

    assert reaper.LOST == sql._LOST_TYPE == LOST
