"""Many tracked processes writing to one database at once.

Each of ``--processes`` workers makes ``--calls`` calls of a decorated task, each call
looping with ``track()`` over ``--items`` items in a subtask of its own. The script prints
the wall time, the worst single write (one transaction of a worker's writer) and the
errors, then checks every run, subtask and item count in the database.

    python benchmarks/bench_concurrency.py                       # a temporary SQLite file
    python benchmarks/bench_concurrency.py --url postgresql://user@host/db
    python benchmarks/bench_concurrency.py --json                # one JSON object

``--scaling`` measures throughput against the raw driver instead, for 1, 4, 16 and 32
processes (``--process-counts``): each worker makes ``--calls`` (default 1,000) runs with two
subtasks, one of them a ``track()`` loop over ``--items`` (default 100) items, until all are
durable; then the same number of workers build the same rows (a run and its two subtasks,
the same columns and values) and INSERT them with the driver alone (sqlite3, psycopg,
PyMySQL) in one transaction per worker, after running the same loop bare. It prints runs per
second for both and their ratio, each the best of ``--repeat`` (3) attempts taken in turns:
on a shared machine a single attempt moves by a factor of two.

    python benchmarks/bench_concurrency.py --scaling --url postgresql://user@host/db

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
SCALING = "SCALING"


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


def two_subtasks(index: int, calls: int, items: int, start_at: float) -> None:
    """One worker of --scaling: ``calls`` runs with two subtasks (one a loop) until all are
    durable; prints a JSON line with when it was done."""

    @tasker.task(stage=SCALING, name=f"worker {index}")
    def call(i: int) -> int:
        with tasker.subtask("prepare"):
            pass
        done = 0
        for _ in tasker.track(range(items), name="loop"):
            done += 1
        return done

    call(-1)  # the task registered, the statements prepared: what is timed is the runs
    assert tasker.flush(timeout=300)
    ready = time.time() < start_at
    while time.time() < start_at:
        time.sleep(0.001)
    total = sum(call(i) for i in range(calls))
    durable = tasker.flush(timeout=300)
    print(json.dumps({"items": total, "durable": durable, "ready": ready, "end": time.time()}))


def raw_rows(index: int, calls: int, items: int, start_at: float) -> None:
    """One worker of --scaling's baseline: builds the rows tasker writes for ``calls`` such
    runs (each after the same loop, bare) and INSERTs them with the driver alone in one
    transaction; prints a JSON line with when it was done."""
    from datetime import datetime, timezone
    from resource import RUSAGE_SELF, getrusage

    from tasker.runtime.capture.process import process_info
    from tasker.runtime.ids import new_run_id

    config = tasker.get_config()
    tasker.register_tasks([{"stage": SCALING, "name": f"raw {index}"}])
    (task,) = [t for t in tasker.get_tasks() if t.task_name == f"raw {index}"]
    store = RECORDER.raw_store
    run_cols = [c.name for c in store.t.task_runs.c]
    sub_cols = [c.name for c in store.t.subtask_progress.c if c.name != "progress_id"]
    info = process_info()
    if config.driver == "sqlite":
        import sqlite3

        conn: Any = sqlite3.connect(str(config.path), isolation_level=None, timeout=300)
        # The settings tasker's own connections have (tasker.store.sqlite).
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        mark, prefix = "?", ""

        def stamp(t: datetime) -> Any:
            return t.isoformat(" ", "microseconds")[:26]

    elif config.driver == "postgresql":
        import psycopg

        conn = psycopg.connect(
            host=config.host,
            port=config.port,
            dbname=config.dbname,
            user=config.user,
            password=config.password,
        )
        mark, prefix = "%s", f"{config.db_schema}." if config.db_schema else ""

        def stamp(t: datetime) -> Any:
            return t

    else:
        import pymysql

        conn = pymysql.connect(
            host=config.host,
            port=config.port or 3306,
            database=config.dbname,
            user=config.user,
            password=config.password or "",
            charset="utf8mb4",
        )
        mark, prefix = "%s", ""

        def stamp(t: datetime) -> Any:
            return t.replace(tzinfo=None)

    insert_run = (
        f"INSERT INTO {prefix}task_runs ({', '.join(run_cols)}) "
        f"VALUES ({', '.join(mark for _ in run_cols)})"
    )
    insert_sub = (
        f"INSERT INTO {prefix}subtask_progress ({', '.join(sub_cols)}) "
        f"VALUES ({', '.join(mark for _ in sub_cols)})"
    )
    utc = timezone.utc
    ready = time.time() < start_at
    while time.time() < start_at:
        time.sleep(0.001)
    cpu = time.process_time()
    runs, subs = [], []
    for _ in range(calls):
        run_id, start = new_run_id(), datetime.now(utc)
        first, first_end = datetime.now(utc), datetime.now(utc)
        loop = datetime.now(utc)
        done = 0
        for _ in range(items):
            done += 1
        loop_end = end = datetime.now(utc)
        s0, s1, s2, s3, e = stamp(first), stamp(first_end), stamp(loop), stamp(loop_end), stamp(end)
        subs.append((run_id, 1, "prepare", "COMPLETED", s0, s1, s1, 100.0, None, None, 0, None))
        subs.append((run_id, 2, "loop", "COMPLETED", s2, s3, s3, 100.0, None, items, done, None))
        values = {
            "run_id": run_id,
            "task_id": task.task_id,
            "status": "COMPLETED",
            "hostname": info.hostname,
            "process_id": info.process_id,
            "parent_pid": info.parent_pid,
            "process_start_time": info.process_start_time,
            "user_name": info.user_name,
            "python_version": info.python_version,
            "command_line": info.command_line,
            "script_path": info.script_path,
            "script_filename": info.script_filename,
            "start_time": stamp(start),
            "end_time": e,
            "last_update": e,
            "heartbeat": e,
            "current_subtask": 2,
            "overall_percent_complete": 100.0,
            "cpu_seconds": time.process_time() - cpu,
            "peak_memory_mb": getrusage(RUSAGE_SELF).ru_maxrss / 1024,
            "boot_id": info.boot_id,
            "pid_namespace": info.pid_namespace,
        }
        runs.append(tuple(values.get(c) for c in run_cols))
    cursor = conn.cursor()
    if config.driver == "sqlite":
        cursor.execute("BEGIN IMMEDIATE")
    cursor.executemany(insert_run, runs)
    cursor.executemany(insert_sub, subs)
    conn.commit()
    conn.close()
    print(json.dumps({"items": calls * items, "durable": True, "ready": ready, "end": time.time()}))


def _spawn(
    processes: int,
    extra: list[str],
    calls: int,
    items: int,
    start_at: float,
    env: dict[str, str],
) -> list[subprocess.Popen[str]]:
    """Start ``processes`` copies of this script as workers, all to begin at ``start_at``."""
    common = ["--calls", str(calls), "--items", str(items), "--start-at", str(start_at)]
    return [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(i), *extra, *common],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]


def sweep(mode: str, processes: int, calls: int, items: int, env: dict[str, str]) -> dict[str, Any]:
    """``processes`` workers of ``mode`` ("tasker" or "raw") at once: runs per second until
    the last one's rows are durable."""
    # Time for every interpreter to start and prepare, on two cores shared with the database.
    start_at = time.time() + 3.0 + processes * 0.4
    procs = _spawn(processes, ["--mode", mode], calls, items, start_at, env)
    reports, failures = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        if proc.returncode != 0 or not out.strip():
            failures.append(f"{mode} worker exited {proc.returncode}: {err.strip()[-2000:]}")
        else:
            reports.append(json.loads(out.strip().splitlines()[-1]))
    late = sum(1 for r in reports if not r["ready"])
    notes = [f"{late} of {processes} {mode} workers were not ready in time"] if late else []
    wall = max((r["end"] for r in reports), default=start_at) - start_at
    return {
        "runs_per_second": processes * calls / wall if wall > 0 and not failures else None,
        "errors": failures,
        "notes": notes,
        "not_durable": sum(1 for r in reports if not r["durable"]),
    }


def check_scaling(processes: int, calls: int, items: int) -> list[str]:
    """What the database holds for --scaling's tasker runs of ``processes`` workers."""
    from sqlalchemy import func, select

    store = RECORDER.raw_store
    t = store.t
    runs, sp, tasks, stages = t.task_runs, t.subtask_progress, t.tasks, t.stages
    mine = (
        select(runs.c.run_id)
        .join(tasks, tasks.c.task_id == runs.c.task_id)
        .join(stages, stages.c.stage_id == tasks.c.stage_id)
        .where(stages.c.stage_name == SCALING, tasks.c.task_name.like("worker %"))
    )
    with store.engine.connect() as conn:
        by_status = dict(
            conn.execute(
                select(runs.c.status, func.count())
                .where(runs.c.run_id.in_(mine))
                .group_by(runs.c.status)
            ).all()
        )
        subs = conn.execute(
            select(sp.c.subtask_name, sp.c.status, func.count(), func.sum(sp.c.items_complete))
            .where(sp.c.run_id.in_(mine))
            .group_by(sp.c.subtask_name, sp.c.status)
        ).all()
    expected = processes * (calls + 1)  # and each worker's first, untimed run
    problems = []
    if by_status != {"COMPLETED": expected}:
        problems.append(f"runs by status {by_status}, expected {expected} COMPLETED")
    want = {
        ("prepare", "COMPLETED"): (expected, 0),
        ("loop", "COMPLETED"): (expected, expected * items),
    }
    got = {(name, status): (n, int(total or 0)) for name, status, n, total in subs}
    if got != want:
        problems.append(f"subtasks {got}, expected {want}")
    return problems


def scaling(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """--scaling: tasker and the raw driver, 1 to 32 processes, each the best of
    ``--repeat`` attempts (taken in turns, so that both see the same machine)."""
    from sqlalchemy import delete

    rows, errors, notes = [], [], []
    store = RECORDER.raw_store
    for processes in (int(n) for n in args.process_counts.split(",")):
        best = {"tasker": 0.0, "raw": 0.0}
        for _ in range(args.repeat):
            # Each attempt starts from empty tables: the same work every time.
            with store.engine.begin() as conn:
                conn.execute(delete(store.t.subtask_progress))
                conn.execute(delete(store.t.task_runs))
            for mode in ("tasker", "raw"):
                result = sweep(mode, processes, args.calls, args.items, env)
                if mode == "tasker":
                    errors += check_scaling(processes, args.calls, args.items)
                    if result["not_durable"]:
                        errors.append(f"{result['not_durable']} tasker workers not durable")
                errors += result["errors"]
                notes += result["notes"]
                best[mode] = max(best[mode], result["runs_per_second"] or 0.0)
        rows.append(
            {
                "processes": processes,
                "tasker_runs_per_second": best["tasker"],
                "raw_runs_per_second": best["raw"],
                "ratio": best["tasker"] / best["raw"] if best["raw"] else None,
            }
        )
    return {
        "backend": tasker.get_config().driver,
        "calls": args.calls,
        "items": args.items,
        "repeat": args.repeat,
        "rows": rows,
        "errors": errors,
        "notes": notes,
    }


def run(processes: int, calls: int, items: int, env: dict[str, str]) -> dict[str, Any]:
    start_at = time.time() + 2.0 + processes * 0.15  # time for every interpreter to start
    procs = _spawn(processes, [], calls, items, start_at, env)
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
    parser.add_argument(
        "--calls", type=int, help="runs per worker (default 100; 1,000 with --scaling)"
    )
    parser.add_argument(
        "--items", type=int, help="items per loop (default 2,000; 100 with --scaling)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--scaling", action="store_true", help="runs/s against the raw driver, 1 to 32 processes"
    )
    parser.add_argument("--process-counts", default="1,4,16,32", help="with --scaling")
    parser.add_argument(
        "--repeat", type=int, default=3, help="with --scaling: the best of this many attempts"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.calls is None:
        args.calls = 1000 if args.scaling or args.mode != "default" else 100
    if args.items is None:
        args.items = 100 if args.scaling or args.mode != "default" else 2000
    if args.worker is not None:
        work = {"default": worker, "tasker": two_subtasks, "raw": raw_rows}[args.mode]
        work(args.worker, args.calls, args.items, args.start_at)
        return

    env = dict(os.environ)
    env["TASKER_CONSOLE"] = "false"
    if not args.use_environment:
        from common import database_env, fresh_store

        store = fresh_store(args)
        env = database_env(args)
    tasker.create_schema()
    if args.scaling:
        result = scaling(args, env)
        if not args.use_environment:
            store.drop_schema()
        if args.json:
            print(json.dumps(result))
        else:
            print(f"backend: {result['backend']}")
            print(
                f"runs with two subtasks (one a track() loop over {args.items:,} items), "
                f"{args.calls:,} per process, until durable; the raw driver builds the same "
                "rows and inserts them in one transaction per process; best of "
                f"{args.repeat} attempts"
            )
            print(f"{'processes':>9}  {'tasker runs/s':>13}  {'raw runs/s':>10}  {'ratio':>6}")
            for row in result["rows"]:
                tracked, raw, ratio = (
                    row["tasker_runs_per_second"],
                    row["raw_runs_per_second"],
                    row["ratio"],
                )
                print(
                    f"{row['processes']:>9}  {tracked or 0:>13,.0f}  {raw or 0:>10,.0f}  "
                    f"{(ratio or 0) * 100:>5.1f}%"
                )
            print(f"errors: {result['errors'] or 'none'}")
            for note in result["notes"]:
                print(f"note: {note} (its attempt's figure is low; the best attempt is shown)")
        if result["errors"]:
            sys.exit(1)
        return
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
