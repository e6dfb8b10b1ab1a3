"""Many processes at once: schema creation races and atomic increments, on every backend."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import tasker
from tests.conftest import ROOT, Backend

WORKER = r"""
import sys, time
from pathlib import Path
import tasker

start_at, index = float(sys.argv[1]), sys.argv[4]
go_file, ready_dir = Path(sys.argv[2]), Path(sys.argv[3])
while time.time() < start_at:          # all workers leave this line together
    time.sleep(0.001)
tasker.create_schema()
(ready_dir / index).write_text("ready")
deadline = time.time() + 120
while not go_file.exists() or not go_file.read_text().strip():
    if time.time() > deadline:
        sys.exit("no go signal")
    time.sleep(0.01)
run_id = go_file.read_text().strip()
for _ in range(200):
    tasker.subtask_increment(run_id=run_id, subtask_number=1)
"""

PROCESSES = 8


def test_eight_processes_create_the_schema_and_increment_one_subtask(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    go_file = tmp_path / "go"
    ready = tmp_path / "ready"
    ready.mkdir()
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(start_at), str(go_file), str(ready), str(i)],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    try:
        deadline = time.time() + 120
        while len(list(ready.iterdir())) < PROCESSES and time.time() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        run_id = tasker.task_start("LOAD", "parallel increments")
        tasker.subtask_start("shared counter", items_total=PROCESSES * 200)
        go_file.write_text(run_id)
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    (sub,) = tasker.get_subtask_progress(run_id)
    assert sub.items_complete == PROCESSES * 200
    assert sub.percent_complete == 100.0
    assert sub.status == "RUNNING"


BENCH = ROOT / "benchmarks" / "bench_concurrency.py"


def test_sixteen_processes_track_at_once_and_nothing_is_lost(
    db: Backend, child_env: dict[str, str]
) -> None:
    # 16 processes x (100 decorated calls, each a track() over 2,000 items in its own
    # subtask), all at once against one database; the script checks every row it expects.
    done = subprocess.run(
        [sys.executable, str(BENCH), "--use-environment", "--json", "--processes", "16"],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == [] and result["problems"] == []
    assert result["counted"] == 16 * 100 * 2000 and result["not_durable"] == 0
    runs = tasker.get_task_history(stage="CONCURRENT", limit=None)
    assert len(runs) == 1600 and {r.status for r in runs} == {"COMPLETED"}
    assert len({r.process_id for r in runs}) == 16


CREATOR = r"""
import sys, time
import tasker

@tasker.task(stage="CROWD", name=f"process {sys.argv[2]}")
def call(i):
    return i

start_at = float(sys.argv[1])
while time.time() < start_at:          # all processes leave this line together
    time.sleep(0.001)
for i in range(30):                    # the first write of each creates the schema
    call(i)
"""

CROWD = 64


def test_sixty_four_processes_creating_the_schema_at_once_lose_no_run(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    """A fresh, empty schema: the first write of every process creates it, all at once.
    Runs lost here were silent (90 to 1,290 of 1,920 on PostgreSQL: processes journaled
    their events while the schema was being created, and a journal replay that met the
    creators' locks set them aside). Every run must be in the database, or in a journal
    that replays, with its own process's PID."""
    script = tmp_path / "creator.py"
    script.write_text(CREATOR, encoding="utf-8")
    env = {**child_env, "TASKER_JOURNAL_DIR": str(tmp_path / "journal")}
    start_at = time.time() + 8.0  # time for 64 interpreters to start on a small machine
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(start_at), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(CROWD)
    ]
    try:
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err, err
    files = sorted((tmp_path / "journal").rglob("*.jsonl"))
    if files:  # left by a process that could not write in time: they must replay whole
        replayed = tasker.replay_journal(files)
        assert (replayed.failed, replayed.quarantined) == (0, 0), replayed
    assert not (tmp_path / "journal" / "rejected").exists()
    runs: dict[str, set[str]] = {}
    pids: dict[str, set[int]] = {}
    for run in tasker.get_task_history(stage="CROWD", limit=None):
        assert run.status == "COMPLETED", run
        runs.setdefault(run.task_name, set()).add(run.run_id)
        pids.setdefault(run.task_name, set()).add(run.process_id)
    assert {name: len(ids) for name, ids in runs.items()} == {
        f"process {i}": 30 for i in range(CROWD)
    }
    assert pids == {f"process {i}": {p.pid} for i, p in enumerate(procs)}
