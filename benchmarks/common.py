"""What the benchmark scripts share: a command line for the database, a clean one, and a
filled one."""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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


def fill(tasks: int, runs: int, active: int) -> None:
    """``tasks`` registered tasks and ``runs`` runs of them (the last ``active`` RUNNING, on
    other hosts), bulk-inserted; the latest-run pointers refreshed."""
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
