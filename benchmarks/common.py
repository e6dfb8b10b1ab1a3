"""What both benchmark scripts share: a command line for the database, and a clean one."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import tasker
from tasker.recorder import RECORDER
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
