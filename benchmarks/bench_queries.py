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
import statistics
import time
from typing import Any

from common import add_database_options, fill, fresh_store
from sqlalchemy import text

import tasker


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
