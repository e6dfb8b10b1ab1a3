"""The run counts by status (``/metrics``, ``count_runs_by_status()``) are kept by triggers in
the database (tasker.store.triggers), not counted from the history: after every kind of
write — tasker's, another client's SQL, many processes at once — they equal a count of the
rows, and the upgrade to schema version 7 seeds them exactly while another client writes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

import tasker
import tasker.queries
from tasker.runtime.recorder import RECORDER
from tasker.store import migrations
from tests.conftest import Backend
from tests.helpers import start_script, write_script
from tests.integration.test_schema import _make_older


def _counted(db: Backend) -> dict[str, int]:
    """The runs by status, counted from the rows."""
    store = RECORDER.raw_store
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT status, COUNT(*) FROM {db.table('task_runs')} GROUP BY status")
        ).all()
    return {str(status): int(n) for status, n in rows}


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_the_counts_follow_every_kind_of_write(db: Backend) -> None:
    db.configure()
    assert tasker.queries.count_runs_by_status() == {}

    @tasker.task(stage="S", name="decorated")
    def work(i: int) -> None:
        with tasker.subtask("step"):
            if i % 3 == 0:
                raise ValueError(i)

    for i in range(7):  # 3 FAILED (0, 3, 6), 4 COMPLETED
        with contextlib.suppress(ValueError):
            work(i)

    @tasker.task(stage="S", name="interrupted")
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()  # CANCELLED
    kept = tasker.task_start("S", "explicit")  # STARTED
    lost = tasker.task_start("S", "lost", on_behalf_of=_dead_pid())
    tasker.flush()
    expected = {"FAILED": 3, "COMPLETED": 4, "STARTED": 2, "CANCELLED": 1}
    assert tasker.queries.count_runs_by_status() == expected == _counted(db)

    # The reaper ends the dead process's run as FAILED: a status changed by an UPDATE.
    assert [r.run_id for r in tasker.reap_lost_runs()] == [lost]
    expected = {"FAILED": 4, "COMPLETED": 4, "STARTED": 1, "CANCELLED": 1}
    assert tasker.queries.count_runs_by_status() == expected == _counted(db)

    # Another client's SQL: a status set by hand, a row deleted by hand.
    runs = db.table("task_runs")
    with RECORDER.raw_store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {runs} SET status = 'SKIPPED' WHERE run_id = :r"), {"r": kept})
        conn.execute(text(f"UPDATE {runs} SET status = 'SKIPPED' WHERE run_id = :r"), {"r": kept})
        one_failed = (
            conn.execute(text(f"SELECT run_id FROM {runs} WHERE status = 'FAILED' ORDER BY run_id"))
            .scalars()
            .first()
        )
        conn.execute(
            text(f"DELETE FROM {db.table('subtask_progress')} WHERE run_id = :r"), {"r": one_failed}
        )
        conn.execute(text(f"DELETE FROM {runs} WHERE run_id = :r"), {"r": one_failed})
    expected = {"FAILED": 3, "COMPLETED": 4, "SKIPPED": 1, "CANCELLED": 1}
    assert tasker.queries.count_runs_by_status() == expected == _counted(db)

    # Purging the ended runs (the one set SKIPPED by hand has no end time): counted out.
    time.sleep(0.05)
    assert tasker.purge_runs(timedelta(seconds=0.01)) == 8
    assert tasker.queries.count_runs_by_status() == {"SKIPPED": 1} == _counted(db)


WRITER = r"""
import sys, time
import tasker

@tasker.task(stage="CROWD", name=f"process {sys.argv[1]}")
def call(i):
    with tasker.subtask("step"):
        for _ in tasker.track(range(20), name="items"):
            pass
    if i % 4 == 0:
        raise RuntimeError(i)

start_at = float(sys.argv[2])
while time.time() < start_at:          # all processes leave this line together
    time.sleep(0.001)
for i in range(60):
    try:
        call(i)
    except RuntimeError:
        pass
    if i % 10 == 0:
        tasker.flush()                 # many small transactions, each moving the counts
"""


def test_processes_writing_at_once_keep_the_counts_exact(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    # Eight processes of 60 runs each (15 FAILED), flushed in many transactions at once:
    # on the servers they share the counter shards of their sessions, and none may be lost
    # to a race, nor fail on a deadlock.
    db.configure()
    tasker.create_schema()
    script = write_script(tmp_path, WRITER)
    start_at = time.time() + 3
    procs = [start_script(script, child_env, str(i), str(start_at)) for i in range(8)]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert _counted(db) == {"COMPLETED": 8 * 45, "FAILED": 8 * 15}
    assert tasker.queries.count_runs_by_status() == _counted(db)


CLIENT = r"""
import sys, time, uuid
from datetime import datetime, timezone
from pathlib import Path
from sqlalchemy import update
from tasker.runtime.recorder import RECORDER

# Another client of the tables (an older tasker, the R package): rows written with plain
# SQL, one transaction each, until told to stop; the store's engine only, no schema check.
task_id, started, stop = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
store = RECORDER.raw_store
runs = store.t.task_runs
written = 0
deadline = time.time() + 60
while not stop.exists() and time.time() < deadline:
    now = datetime.now(timezone.utc)
    run_id = str(uuid.uuid4())
    with store.engine.begin() as conn:
        conn.execute(runs.insert().values(
            run_id=run_id, task_id=task_id, status="RUNNING", hostname="other",
            process_id=1, start_time=now, last_update=now))
    with store.engine.begin() as conn:
        end = "FAILED" if written % 3 == 0 else "COMPLETED"
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(status=end, end_time=now))
    written += 1
    print(time.time(), flush=True)
    if written == 20:
        started.write_text("writing")
"""


def test_the_upgrade_seeds_the_counts_exactly_while_another_client_writes(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    # A version 6 database with runs, written to all along by another client; this process
    # upgrades it to version 7 meanwhile. Whatever the client wrote before, during and after
    # the upgrade is counted once.
    db.configure()
    for i in range(30):
        tasker.task_start("S", "old")
        tasker.task_complete() if i % 2 else tasker.task_fail("no")
    tasker.flush()
    (task,) = [t for t in tasker.get_tasks() if t.task_name == "old"]
    _make_older(db, 6)
    db.configure()  # a new store: its schema is checked (and upgraded) at its first use
    started, stop = tmp_path / "started", tmp_path / "stop"
    client = start_script(
        write_script(tmp_path, CLIENT), child_env, str(task.task_id), str(started), str(stop)
    )
    try:
        deadline = time.time() + 60
        while not started.exists() and client.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        began = time.time()
        assert tasker.create_schema() is True  # the upgrade
        ended = time.time()
        time.sleep(0.5)
        stop.write_text("stop")
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            os.killpg(client.pid, 9)
            client.wait()
    assert client.returncode == 0, err[-2000:]
    writes = [float(line) for line in out.split()]
    assert any(w < began for w in writes) and any(w > ended for w in writes)  # all along
    assert RECORDER.raw_store.schema_version() == 7
    assert tasker.queries.count_runs_by_status() == _counted(db)
    assert sum(_counted(db).values()) == 30 + len(writes)
    # MySQL commits DDL as it goes: an interrupted upgrade runs the step again, from the
    # start, on a table and triggers that are there already; the counts come out the same.
    store = RECORDER.raw_store
    with store.engine.begin() as conn:
        migrations.UPGRADES[6](conn, store.dialect, store.t)
    assert tasker.queries.count_runs_by_status() == _counted(db)
    tasker.task_start("S", "after")
    assert tasker.queries.count_runs_by_status() == _counted(db)
