"""The benchmarks' server-side fill (benchmarks/bulk_fill.py) makes the rows the driver-side
fill would: what the query benchmarks measure at ten million runs is the same history they
measure at a million."""

from __future__ import annotations

import itertools
import sys
import uuid
from collections import Counter
from datetime import timedelta

import tasker
from tests.conftest import ROOT, Backend

sys.path.insert(0, str(ROOT / "benchmarks"))

import bulk_fill
import common

from tasker.runtime.recorder import RECORDER

TASKS, RUNS, ACTIVE, WITH_SUBTASKS = 20, 2_500, 5, 300
BULK = RUNS - WITH_SUBTASKS


def _expected_status(i: int) -> str:
    """The server's status of row i, computed here the same way."""
    return {8: "FAILED", 9: "SKIPPED"}.get((i * 2654435761) % 1000003 % 10, "COMPLETED")


def test_the_server_makes_the_old_history_and_the_driver_the_newest_runs(db: Backend) -> None:
    store = RECORDER.raw_store
    assert bulk_fill.supported(store)
    common.fill(TASKS, RUNS, ACTIVE, subtask_runs=WITH_SUBTASKS)

    runs = tasker.get_task_history(limit=RUNS)
    assert len(runs) == RUNS
    oldest_first = runs[::-1]
    bulk, newest = oldest_first[:BULK], oldest_first[BULK:]
    task_ids = sorted(t.task_id for t in tasker.get_tasks())

    # Row i of the server's part: its id, task, host, status and times, exactly.
    for i, run in enumerate(bulk):
        assert run.run_id == f"{i >> 16:08x}-{i & 65535:04x}-4000-8000-000000000000"
        assert run.task_id == task_ids[i % TASKS]
        assert run.hostname == f"worker-{i % 16:02d}"
        assert run.process_id == 1000 + i % 30000
        assert run.status == _expected_status(i)
        assert run.end_time - run.start_time == timedelta(seconds=25)
        assert run.last_update == run.end_time
        assert run.overall_percent_complete == 100.0
    assert Counter(r.status for r in bulk) == Counter(_expected_status(i) for i in range(BULK))
    # One run every 30 s across the whole history, the seam between the two parts included.
    gaps = {
        round((b.start_time - a.start_time).total_seconds())
        for a, b in itertools.pairwise(oldest_first)
    }
    assert gaps == {30}
    # The newest runs are made as tasker makes them: random version 4 ids, the last ones
    # active, each with two subtasks.
    assert all(uuid.UUID(r.run_id).version == 4 for r in newest)
    assert [r.status for r in newest[-ACTIVE:]] == ["RUNNING"] * ACTIVE
    assert len(tasker.get_active_tasks()) == ACTIVE
    assert [s.subtask_number for s in tasker.get_subtask_progress(newest[0].run_id)] == [1, 2]
    assert tasker.get_subtask_progress(bulk[-1].run_id) == []
    # Every task still has successes in the server's part (the hash spreads the statuses).
    done = {r.task_id for r in bulk if r.status == "COMPLETED"}
    assert done == set(task_ids)
    # The latest-run pointers were refreshed over both parts.
    latest = {row.task_id: row.run_id for row in tasker.get_task_status()}
    assert set(latest.values()) == {r.run_id for r in newest[-TASKS:]}


def test_a_fill_through_the_driver_makes_the_same_history(db: Backend) -> None:
    common.fill(TASKS, RUNS, ACTIVE, subtask_runs=WITH_SUBTASKS, server_side=False)
    runs = tasker.get_task_history(limit=RUNS)
    assert len(runs) == RUNS
    oldest_first = runs[::-1]
    task_ids = sorted(t.task_id for t in tasker.get_tasks())
    assert [r.task_id for r in oldest_first] == [task_ids[i % TASKS] for i in range(RUNS)]
    assert [r.hostname for r in oldest_first] == [f"worker-{i % 16:02d}" for i in range(RUNS)]
    assert len(tasker.get_active_tasks()) == ACTIVE
