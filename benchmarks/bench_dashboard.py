"""How fast the dashboard serves its overview on a large history.

Fills a database with 200 tasks and 1,000,000 runs (20 active), serves the dashboard with
uvicorn on a free loopback port, and times GET /, GET /api/overview, GET /history and GET
/metrics over HTTP: the first call (which fills the dashboard's caches: typical durations
for a minute, run counts for 10 s) and the median of 20 more, next to GET /healthz (the
HTTP round trip, the floor).

    python benchmarks/bench_dashboard.py
    python benchmarks/bench_dashboard.py --url postgresql://user@host/db
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn
from common import add_database_options, drop, fill, fresh_store

from tasker.dashboard import create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(url: str, repeat: int) -> tuple[float, float, int]:
    """(median ms, first call ms, bytes): the first call fills the dashboard's caches."""
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        size = len(response.read())
    first = (time.perf_counter() - began) * 1000
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:
            response.read()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1000, first, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_database_options(parser)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    store = fresh_store(args)
    try:
        fill(args.tasks, args.runs, args.active)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        print(f"backend: {store.dialect}; {args.tasks} tasks, {args.runs:,} runs")
        floor = None
        for path in ("/healthz", "/", "/api/overview", "/history", "/metrics"):
            ms, first, size = timed(f"http://127.0.0.1:{port}{path}", args.repeat)
            floor = floor or ms
            print(
                f"    GET {path:<14} {ms:7.1f} ms median ({ms / floor:5.1f}x /healthz), "
                f"first {first:7.1f} ms  ({size:,} bytes)"
            )
        server.should_exit = True
        thread.join(timeout=30)
    finally:
        drop(store)


if __name__ == "__main__":
    main()
