"""How fast every read stays on a long history.

Fills a fresh database with 1,000 registered tasks and 1,000,000 runs (40 of them active,
the latest 10,000 with two subtasks each), then times every read through the public API
and the dashboard's data functions — task status, active runs, the history unfiltered and
with each filter, one run with its subtasks, a run-id prefix, the current subtasks of 50
runs, run counts, last successes, typical durations, the overview and the /metrics text —
next to a trivial ``SELECT 1`` round trip on the same connection pool (the floor), and
prints each as a multiple of the floor.

    python benchmarks/bench_queries.py                          # SQLite in a temp folder
    python benchmarks/bench_queries.py --url postgresql://postgres@127.0.0.1/test --schema bench
    python benchmarks/bench_queries.py --runs 100000            # a quicker look
    python benchmarks/bench_queries.py --runs 10000000          # ten million (a long fill)

The database (or PostgreSQL schema) it fills is its own; it is dropped at the end unless
``--keep`` is given.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_database_options, drop, fill, fresh_store
from sqlalchemy import text

import tasker
from tasker.dashboard import data
from tasker.queries import (
    count_runs_by_status,
    find_run,
    last_successes,
    run_progress,
)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, max) in milliseconds of ``repeat`` calls after one to warm the pool."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def uncached(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with the dashboard's caches emptied first: what a call after expiry costs."""

    def call() -> object:
        data.clear_caches()
        return fn()

    return call


def reads(store: Any, args: argparse.Namespace) -> list[tuple[str, Callable[[], object]]]:
    newest = tasker.get_task_history(limit=1)[0]
    day = newest.start_time - timedelta(days=30)
    recent = tasker.get_task_history(limit=50)
    some = recent[10]
    history = tasker.get_task_history
    active = [r.task_id for r in tasker.get_active_tasks()]

    def select_one() -> None:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def one_run() -> None:
        tasker.get_run(some.run_id)
        tasker.get_subtask_progress(some.run_id)

    return [
        ("SELECT 1 round trip (the floor)", select_one),
        (f"get_task_status() ({args.tasks:,} rows)", tasker.get_task_status),
        (f"get_active_tasks() ({args.active} rows)", tasker.get_active_tasks),
        ("history, limit 50", lambda: history(limit=50)),
        ("history of a stage", lambda: history(stage="STAGE_03", limit=50)),
        ("history of a task", lambda: history(task="task 0007", limit=50)),
        ("history of a stage's task", lambda: history("STAGE_07", "task 0007", limit=50)),
        ("history of a status (FAILED)", lambda: history(status="FAILED", limit=50)),
        ("history of a host", lambda: history(hostname="worker-03", limit=50)),
        (
            "history since/until (a day)",
            lambda: history(since=day, until=day + timedelta(days=1), limit=50),
        ),
        ("history at offset 10,000", lambda: history(limit=50, offset=10_000)),
        ("one run and its subtasks", one_run),
        ("run-id prefix (find_run)", lambda: find_run(some.run_id[:8])),
        ("current subtasks of 50 runs", lambda: run_progress(recent)),
        ("run counts by status", count_runs_by_status),
        ("last success of each task", last_successes),
        ("typical durations of active tasks", uncached(lambda: data.typical_durations(active))),
        ("dashboard overview (uncached)", uncached(data.overview)),
        ("/metrics text (uncached)", uncached(data.metrics_text)),
    ]


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
        took = fill(args.tasks, args.runs, args.active)
        assert len(tasker.get_task_status()) == args.tasks
        assert len(tasker.get_active_tasks()) == args.active
        print(
            f"backend: {store.dialect}; {args.tasks:,} tasks, {args.runs:,} runs "
            f"({args.active} active), filled in {took:.0f} s; median of {args.repeat} calls"
        )
        print(f"  {'read':<38} {'median':>10} {'max':>10} {'x floor':>8}")
        floor = None
        for label, fn in reads(store, args):
            median, worst = timed(fn, args.repeat)
            floor = floor or median
            print(f"  {label:<38} {median:7.2f} ms {worst:7.2f} ms {median / floor:8.1f}")
        rate = args.runs / took
        if args.runs < 10_000_000:
            print(
                f"  (filled {rate:,.0f} runs a second: 10,000,000 runs would take about "
                f"{10_000_000 / rate / 60:.0f} min to fill; --runs 10000000 to measure them)"
            )
    finally:
        if not args.keep:
            drop(store)


if __name__ == "__main__":
    main()
