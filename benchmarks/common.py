"""What the benchmark scripts share: a command line for the database, a clean one, and a
filled one."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bulk_fill
from sqlalchemy import text

import tasker
from tasker.runtime.recorder import RECORDER
from tasker.store.sql import SqlStore


def add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--schema", default="tasker_bench", help="PostgreSQL schema to use")


def fresh_store(args: argparse.Namespace) -> SqlStore:
    """Configure tasker for the benchmark's own database (emptied first) and return its store."""
    settings: dict[str, Any] = {"console": "false"}
    if args.url:
        settings["url"] = args.url
        if args.url.startswith("postgres"):
            settings["schema"] = args.schema
    else:
        settings["path"] = str(Path(tempfile.mkdtemp(prefix="tasker-bench-")) / "bench.db")
    tasker.configure(**settings)
    store = RECORDER.raw_store
    if store.schema_version() is not None:
        store.drop_schema()
    return store


def drop(store: SqlStore) -> None:
    """Drop the benchmark's schema, and its temporary SQLite file with it (a dropped table
    does not shrink the file: a million runs leave over 600 MB behind)."""
    store.drop_schema()
    store.dispose()
    path = tasker.get_config().path
    if store.dialect == "sqlite" and path and Path(path).parent.name.startswith("tasker-bench-"):
        shutil.rmtree(Path(path).parent, ignore_errors=True)


def database_env(args: argparse.Namespace) -> dict[str, str]:
    """This process's environment for a child that must use the benchmark's database."""
    config = tasker.get_config()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env["TASKER_CONSOLE"] = "false"
    if config.driver == "sqlite":
        env["TASKER_DB_PATH"] = str(config.path)
    else:
        env["TASKER_DB_URL"] = str(args.url)
        if config.schema:
            env["TASKER_DB_SCHEMA"] = config.schema
    return env


def fill(
    tasks: int, runs: int, active: int, subtask_runs: int = 10_000, server_side: bool = True
) -> float:
    """``tasks`` registered tasks and ``runs`` runs of them (the last ``active`` RUNNING, on
    other hosts, with a fresh heartbeat); the latest ``subtask_runs`` runs with two subtasks
    each, bulk-inserted through the driver, and the older ones made by the server itself
    where it can (``bulk_fill``; ``server_side=False`` sends every row); the latest-run
    pointers refreshed and the planner's statistics gathered. Returns the seconds it took."""
    stages = max(1, tasks // 50)
    tasker.register_tasks(
        [
            {"stage": f"STAGE_{i % stages:02d}", "name": f"task {i:04d}", "type": "python"}
            for i in range(tasks)
        ]
    )
    task_ids = [t.task_id for t in tasker.get_tasks()]
    store = RECORDER.store
    now = datetime.now(timezone.utc)
    # Whole seconds: SQLite's server-side fill counts in them (bulk_fill).
    base = (now - timedelta(seconds=runs * 30)).replace(microsecond=0)
    rng = random.Random(7)
    batch: list[dict[str, Any]] = []
    subtasks: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    first = 0
    if server_side and runs > subtask_runs and bulk_fill.supported(store):
        first = runs - max(subtask_runs, active)
        bulk_fill.fill_history(store, task_ids, first, base)
    for i in range(first, runs):
        start = base + timedelta(seconds=i * 30)
        is_active = i >= runs - active
        status = "RUNNING" if is_active else rng.choice(["COMPLETED"] * 8 + ["FAILED", "SKIPPED"])
        run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        with_subtasks = i >= runs - subtask_runs
        end = None if is_active else start + timedelta(seconds=25)
        batch.append(
            {
                "run_id": run_id,
                "task_id": task_ids[i % len(task_ids)],
                "status": status,
                "hostname": f"worker-{i % 16:02d}",
                "process_id": 1000 + i % 30000,
                "user_name": "etl",
                "start_time": start,
                "end_time": end,
                "last_update": now if is_active else end,
                "heartbeat": now if is_active else None,
                "total_subtasks": 3,
                "current_subtask": 2 if with_subtasks else None,
                "overall_percent_complete": 50.0 if is_active else 100.0,
            }
        )
        if with_subtasks:
            for number in (1, 2):
                running = is_active and number == 2
                subtasks.append(
                    {
                        "run_id": run_id,
                        "subtask_number": number,
                        "subtask_name": f"step {number}",
                        "status": "RUNNING" if running else "COMPLETED",
                        "start_time": start,
                        "last_update": end or now,
                        "items_total": 1000,
                        "items_complete": 500 if running else 1000,
                    }
                )
        if len(batch) == 20_000:
            store.insert_runs(batch)
            batch.clear()
    if batch:
        store.insert_runs(batch)
    with store.engine.begin() as conn:
        for at in range(0, len(subtasks), 5000):
            conn.execute(store.t.subtask_progress.insert(), subtasks[at : at + 5000])
    store.refresh_latest_runs()
    analyze(store)
    took = time.perf_counter() - t0
    print(f"filled {runs:,} runs of {tasks:,} tasks in {took:.1f} s")
    return took


def analyze(store: SqlStore) -> None:
    """The planner's statistics for every table (on PostgreSQL with VACUUM, as autovacuum
    would have done, so that index-only scans see a visibility map)."""
    tables = ("stages", "tasks", "task_runs", "subtask_progress")
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in tables:
                conn.execute(text(f"VACUUM ANALYZE {store.t.qualified(table)}"))
    elif store.dialect == "sqlite":
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(text(f"ANALYZE TABLE {', '.join(tables)}"))
