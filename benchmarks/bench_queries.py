"""How fast the status queries stay on a long history.

Fills a fresh database with 1,000 registered tasks and 1,000,000 runs (a few dozen of them
active), then times ``get_task_status()`` and ``get_active_tasks()`` through the public API,
next to a trivial ``SELECT 1`` round trip on the same connection pool for scale.

    python benchmarks/bench_queries.py                          # SQLite in a temp folder
    python benchmarks/bench_queries.py --url postgresql://postgres@127.0.0.1/test --schema bench
    python benchmarks/bench_queries.py --runs 100000            # a quicker look

The database (or PostgreSQL schema) it fills is its own; it is dropped at the end unless
``--keep`` is given.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from common import add_database_options, fresh_store
from sqlalchemy import text

import tasker
from tasker.recorder import RECORDER


def fill(tasks: int, runs: int, active: int) -> None:
    stages = max(1, tasks // 50)
    tasker.register_tasks(
        [
            {"stage": f"STAGE_{i % stages:02d}", "name": f"task {i:04d}", "type": "python"}
            for i in range(tasks)
        ]
    )
    task_ids = [t.task_id for t in tasker.get_tasks()]
    store = RECORDER.store
    base = datetime.now(timezone.utc) - timedelta(days=365)
    rng = random.Random(7)
    batch: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i in range(runs):
        start = base + timedelta(seconds=i * 30)
        is_active = i >= runs - active
        status = "RUNNING" if is_active else rng.choice(["COMPLETED"] * 8 + ["FAILED", "SKIPPED"])
        batch.append(
            {
                "run_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "task_id": task_ids[i % len(task_ids)],
                "status": status,
                "hostname": f"worker-{i % 16:02d}",
                "process_id": 1000 + i % 30000,
                "user_name": "etl",
                "start_time": start,
                "end_time": None if is_active else start + timedelta(seconds=25),
                "last_update": start + timedelta(seconds=25),
                "total_subtasks": 3,
                "current_subtask": None,
                "overall_percent_complete": 50.0 if is_active else 100.0,
            }
        )
        if len(batch) == 20_000:
            store.insert_runs(batch)
            batch.clear()
    if batch:
        store.insert_runs(batch)
    store.refresh_latest_runs()
    print(f"filled {runs:,} runs of {tasks:,} tasks in {time.perf_counter() - t0:.1f} s")
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(text(f"ANALYZE {store.t.qualified('task_runs')}"))
    elif store.dialect == "sqlite":
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE TABLE task_runs"))


def timed(fn: Any, repeat: int) -> tuple[float, float]:
    fn()  # warm the pool and the caches
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_database_options(parser)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the filled database")
    args = parser.parse_args()

    store = fresh_store(args)
    try:
        fill(args.tasks, args.runs, args.active)

        def select_one() -> None:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        rows = tasker.get_task_status()
        active = tasker.get_active_tasks()
        assert len(rows) == args.tasks and len(active) == args.active
        print(f"backend: {store.dialect}; {args.tasks:,} tasks, {args.runs:,} runs")
        for label, fn in (
            ("SELECT 1 round trip", select_one),
            ("get_task_status()", tasker.get_task_status),
            ("get_active_tasks()", tasker.get_active_tasks),
        ):
            median, worst = timed(fn, args.repeat)
            print(f"  {label:<22} median {median:8.2f} ms   max {worst:8.2f} ms")
    finally:
        if not args.keep:
            store.drop_schema()


if __name__ == "__main__":
    main()
