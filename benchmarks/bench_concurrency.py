"""Many tracked processes writing to one database at once.

Each of ``--processes`` workers makes ``--calls`` calls of a decorated task, each call
looping with ``track()`` over ``--items`` items in a subtask of its own. The script prints
the wall time, the worst single write (one transaction of a worker's writer) and the
errors, then checks every run, subtask and item count in the database.

    python benchmarks/bench_concurrency.py                       # a temporary SQLite file
    python benchmarks/bench_concurrency.py --url postgresql://user@host/db
    python benchmarks/bench_concurrency.py --json                # one JSON object

Workers are launched with the database given by the environment (``TASKER_*``) when
``--use-environment`` is passed: the tests use that to run it against their own database.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tasker
from tasker.runtime.recorder import RECORDER

STAGE = "CONCURRENT"


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def worker(index: int, calls: int, items: int, start_at: float) -> None:
    """One worker: prints a JSON line with what it saw."""
    counted = _Count()
    logging.getLogger("tasker").addHandler(counted)

    @tasker.task(stage=STAGE, name=f"worker {index}")
    def call(i: int) -> int:
        done = 0
        for _ in tasker.track(range(items), name=f"call {i}"):
            done += 1
        return done

    while time.time() < start_at:  # all workers start together
        time.sleep(0.001)
    began = time.perf_counter()
    total = sum(call(i) for i in range(calls))
    durable = tasker.flush(timeout=300)
    elapsed = time.perf_counter() - began
    stats = RECORDER.writer.stats
    print(
        json.dumps(
            {
                "items": total,
                "durable": durable,
                "seconds": elapsed,
                "slowest_write": stats.slowest_write,
                "writes": stats.writes,
                "errors": counted.messages,
            }
        ),
        flush=True,
    )


def run(processes: int, calls: int, items: int, env: dict[str, str]) -> dict[str, Any]:
    start_at = time.time() + 2.0 + processes * 0.15  # time for every interpreter to start
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                str(i),
                "--calls",
                str(calls),
                "--items",
                str(items),
                "--start-at",
                str(start_at),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    reports, failures = [], []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0 or not out.strip():
                failures.append(f"worker exited {proc.returncode}: {err.strip()[-2000:]}")
                continue
            reports.append(json.loads(out.strip().splitlines()[-1]))
            if err.strip():
                failures.append(f"worker printed to stderr: {err.strip()[-2000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = max(time.time() - start_at, 0.0)
    return {
        "processes": processes,
        "calls": calls,
        "items": items,
        "wall_seconds": wall,
        "slowest_write": max((r["slowest_write"] for r in reports), default=None),
        "errors": failures + [m for r in reports for m in r["errors"]],
        "not_durable": sum(1 for r in reports if not r["durable"]),
        "counted": sum(r["items"] for r in reports),
    }


def check(processes: int, calls: int, items: int) -> list[str]:
    """What the database holds, against what the workers did: a list of discrepancies."""
    problems = []
    runs = tasker.get_task_history(stage=STAGE, limit=None)
    if len(runs) != processes * calls:
        problems.append(f"{len(runs)} runs recorded, expected {processes * calls}")
    bad = [r for r in runs if r.status != "COMPLETED"]
    if bad:
        problems.append(f"{len(bad)} runs not COMPLETED")
    subs = [s for r in runs for s in tasker.get_subtask_progress(r.run_id)]
    if len(subs) != processes * calls:
        problems.append(f"{len(subs)} subtasks recorded, expected {processes * calls}")
    wrong = [s for s in subs if (s.status, s.items_complete) != ("COMPLETED", items)]
    if wrong:
        problems.append(f"{len(wrong)} subtasks without exactly {items} items COMPLETED")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--schema", default="tasker_bench", help="PostgreSQL schema to use")
    parser.add_argument("--use-environment", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.calls, args.items, args.start_at)
        return

    env = dict(os.environ)
    env["TASKER_CONSOLE"] = "false"
    if not args.use_environment:
        from common import database_env, fresh_store

        store = fresh_store(args)
        env = database_env(args)
    tasker.create_schema()
    result = run(args.processes, args.calls, args.items, env)
    result["problems"] = check(args.processes, args.calls, args.items)
    result["backend"] = tasker.get_config().driver
    if not args.use_environment:
        store.drop_schema()
    if args.json:
        print(json.dumps(result))
    else:
        runs = args.processes * args.calls
        print(f"backend: {result['backend']}")
        print(
            f"{args.processes} processes x {args.calls} task calls x {args.items:,} items: "
            f"{result['wall_seconds']:.2f} s wall, {runs / result['wall_seconds']:,.0f} runs/s"
        )
        print(f"worst single write: {result['slowest_write'] * 1000:.1f} ms")
        print(f"errors: {len(result['errors'])}; discrepancies: {result['problems'] or 'none'}")
    if result["errors"] or result["problems"] or result["not_durable"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
