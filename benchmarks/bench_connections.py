"""A crowd of tracked processes against a PostgreSQL that has far fewer connection slots.

The script starts a PostgreSQL of its own (``max_connections`` 50 by default, three of them
reserved for superusers) and a PgBouncer in front of it (transaction pooling, 20 server
connections), then, for each way of reaching the server, launches ``--processes`` (200)
tracked processes at once, each making ``--runs`` runs of a decorated task with two
subtasks, one of them a ``track()`` loop over ``--items`` items:

- ``direct``: straight to the server, every setting at its default (a connection lingers
  ``connection_linger`` = 2 s after a write). Far more processes want a connection than
  there are slots: the server refuses them ("sorry, too many clients already") and each
  retries with jitter until it gets through;
- ``direct-no-linger``: the same with ``connection_linger: 0`` (each process holds a
  connection only while it writes);
- ``pgbouncer``: through PgBouncer with ``pooler: transaction``.

For each it prints the wall time from the start signal to the last process's exit, runs per
second, the most server connections the workers held at once (sampled every 20 ms by a
superuser, in a reserved slot), how many connections the server refused, the journal files
processes left at exit with events the server did not take in time (replayed by the script:
never lost), and then checks every run:
each process's runs are exactly its own (its PID, its task), COMPLETED, each with its two
subtasks COMPLETED and the loop's items counted exactly. Problems are listed; the exit
status is 1 when there is any.

    python benchmarks/bench_connections.py
    python benchmarks/bench_connections.py --processes 200 --runs 3 --json

Needs PostgreSQL's server programs (initdb, pg_ctl) and PgBouncer (Debian: postgresql,
pgbouncer). ``--modes`` picks some of the three.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

import tasker
from benchmarks.servers import PgBouncer, PrivatePostgres

STAGE = "CONNECTIONS"
ROLE = "tasker_worker"  # the workers' login: no superuser, so the reserved slots stay free
MODES = {
    "direct": {},
    "direct-no-linger": {"TASKER_CONNECTION_LINGER": "0"},
    "pgbouncer": {"TASKER_DB_POOLER": "transaction"},
}

WORKER = r"""
import sys, time
from pathlib import Path
import tasker

index, runs, items = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ready, go = Path(sys.argv[4]), Path(sys.argv[5])

@tasker.task(stage="CONNECTIONS", name=f"process {index}")
def one_run(r):
    with tasker.subtask("prepare"):
        time.sleep(0.02)
    for _ in tasker.track(range(items), name="items"):
        time.sleep(0.1)

# Imported and configured, its store made (not connected) before the start, as in a worker
# that has been up for a while: what the crowd measures is its connections, not 200
# interpreters importing the drivers at once on a machine of a few cores.
from tasker.runtime.recorder import RECORDER
RECORDER.raw_store
(ready / str(index)).write_text("ready")
deadline = time.time() + 600
while not go.exists():                 # all processes start writing together
    if time.time() > deadline:
        sys.exit("no start signal")
    time.sleep(0.005)
for r in range(runs):
    one_run(r)
"""


class Sampler(threading.Thread):
    """The most server connections ``ROLE`` holds at once, sampled every 20 ms."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.wait(0.02):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (ROLE,)
                ).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)


def _refusals(log: Path, start: int) -> int:
    """Connections the server refused for want of a slot since ``start`` (its log's size):
    "sorry, too many clients already", or, for a role without superuser rights while only
    the reserved slots are left, "remaining connection slots are reserved …"."""
    with open(log, "rb") as fh:
        fh.seek(start)
        text = fh.read()
    return text.count(b"too many clients") + text.count(b"remaining connection slots")


def run_mode(
    name: str, url: str, admin_url: str, log: Path, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    schema = "m_" + "".join(c if c.isalnum() else "_" for c in name)
    folder = work / schema
    (folder / "ready").mkdir(parents=True)
    script = folder / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    go = folder / "go"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKER_")},
        "TASKER_DB_URL": url,
        "TASKER_DB_SCHEMA": schema,
        "TASKER_JOURNAL_DIR": str(folder / "journal"),
        "TASKER_CONSOLE": "false",
        "TASKER_FLUSH_INTERVAL": str(args.flush_interval),
        **MODES[name],
    }
    # The schema first, once: what is measured is the crowd's writes, not its creation race.
    tasker.configure(url=url, schema=schema, console="false", **_settings(MODES[name]))
    tasker.create_schema()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(i),
                str(args.runs),
                str(args.items),
                str(folder / "ready"),
                str(go),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(args.processes)
    ]
    sampler = Sampler(admin_url)
    try:
        deadline = time.time() + 600
        while len(list((folder / "ready").iterdir())) < args.processes:
            if time.time() > deadline or any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        log_start = log.stat().st_size
        sampler.start()
        began = time.perf_counter()
        go.write_text("go")
        results = [p.communicate(timeout=900) for p in procs]
        seconds = time.perf_counter() - began
    finally:
        sampler.stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    sampler.join(timeout=10)
    problems = [
        f"process {i} exited with {p.returncode}: {err.strip()[-500:]}"
        for i, (p, (_out, err)) in enumerate(zip(procs, results, strict=True))
        if p.returncode != 0 or "Traceback" in err
    ]
    said = sorted({err.strip().splitlines()[-1][:300] for _out, err in results if err.strip()})
    files = sorted((folder / "journal").rglob("*.jsonl"))
    journaled = 0
    if files:  # left by a process that could not write before its exit: replayed, not lost
        replayed = tasker.replay_journal(files)
        journaled = replayed.events
        if replayed.failed or replayed.quarantined:
            problems.append(f"journal replay: {replayed}")
    problems += check(procs, args)
    total = args.processes * args.runs
    return {
        "mode": name,
        "processes": args.processes,
        "runs": total,
        "seconds": round(seconds, 2),
        "runs_per_second": round(total / seconds, 1),
        "peak_connections": sampler.peak,
        "refused_connections": _refusals(log, log_start),
        "journal_files": len(files),
        "journaled_events": journaled,
        "said": said[:10],  # what the processes logged (the last line of each, deduplicated)
        "problems": problems,
    }


def _settings(env: dict[str, str]) -> dict[str, Any]:
    """The mode's settings for this process's own tasker (the checks, the replay)."""
    names = {"TASKER_CONNECTION_LINGER": "connection_linger", "TASKER_DB_POOLER": "pooler"}
    return {names[k]: v for k, v in env.items()}


def check(procs: list[subprocess.Popen[str]], args: argparse.Namespace) -> list[str]:
    """Every process's runs exactly as it made them; a list of what is not."""
    problems: list[str] = []
    by_task: dict[str, list[Any]] = {}
    for run in tasker.get_task_history(stage=STAGE, limit=None):
        by_task.setdefault(run.task_name, []).append(run)
    expected = {f"process {i}" for i in range(len(procs))}
    if set(by_task) != expected:
        problems.append(f"tasks with runs: {len(by_task)} of {len(expected)}")
    for i, proc in enumerate(procs):
        runs = by_task.get(f"process {i}", [])
        if len(runs) != args.runs:
            problems.append(f"process {i}: {len(runs)} runs, expected {args.runs}")
        for run in runs:
            if (run.status, run.process_id) != ("COMPLETED", proc.pid):
                problems.append(f"process {i}: run {run.run_id} {run.status} pid {run.process_id}")
            subs = [
                (s.subtask_name, s.status, s.items_complete)
                for s in tasker.get_subtask_progress(run.run_id)
            ]
            if subs != [("prepare", "COMPLETED", 0), ("items", "COMPLETED", args.items)]:
                problems.append(f"process {i}: run {run.run_id} subtasks {subs}")
    return problems[:50]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="runs per process")
    parser.add_argument(
        "--items", type=int, default=30, help="items of each run's loop (0.1 s each)"
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=2.0,
        help="the workers' flush_interval: 200 processes flushing every second keep two cores busy",
    )
    parser.add_argument("--max-connections", type=int, default=50)
    parser.add_argument("--pool-size", type=int, default=20, help="PgBouncer's server side")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES)
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per mode")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}: expected some of {', '.join(MODES)}")
    # Stopped like an interrupt, so that the servers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    server = PrivatePostgres(
        {"max_connections": str(args.max_connections), "superuser_reserved_connections": "3"}
    )
    bouncer: PgBouncer | None = None
    work = Path(tempfile.mkdtemp(prefix="tasker-bench-connections-"))
    failed = False
    try:
        server.start()
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN")
            conn.execute(f"GRANT CREATE ON DATABASE postgres TO {ROLE}")
        bouncer = PgBouncer(server, pool_size=args.pool_size, users=(ROLE,))
        bouncer.start()
        direct = server.url.replace("postgres@", f"{ROLE}@")
        pooled = bouncer.url.replace("postgres@", f"{ROLE}@")
        for name in modes:
            url = pooled if name == "pgbouncer" else direct
            result = run_mode(name, url, server.url, server.log, args, work)
            failed = failed or bool(result["problems"])
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(
                    f"{name:18} {result['runs']} runs of {result['processes']} processes in "
                    f"{result['seconds']:.1f} s ({result['runs_per_second']:.0f} runs/s); "
                    f"peak {result['peak_connections']} server connections of "
                    f"{args.max_connections}; {result['refused_connections']} refused; "
                    f"{result['journal_files']} journal files ({result['journaled_events']} "
                    "events) replayed; "
                    f"{len(result['problems'])} problems",
                    flush=True,
                )
                for problem in result["problems"]:
                    print(f"    {problem}")
    finally:
        if bouncer is not None:
            bouncer.close()
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
