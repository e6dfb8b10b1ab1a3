"""What tracking costs the tracked code, next to the peers, measured in one process.

(a) per-item cost of ``track()`` inside a live task (database on), next to a bare loop,
    tqdm (writing to /dev/null) and ``rich.progress.track`` (console on /dev/null);
(b) the caller-side cost of calling a trivial ``@task`` function, and end-to-end runs per
    second until every run is durable in the database;
(c) resident memory growth of ``track()`` over 10,000,000 items.

    python benchmarks/bench_tracking.py                 # SQLite in a temporary folder
    python benchmarks/bench_tracking.py --url postgresql://postgres@127.0.0.1/test

Needs the dev extras (tqdm, rich).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from common import add_database_options, fresh_store

import tasker

ITEMS = 2_000_000


def best_of(fn: Callable[[], None], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def loop(make: Callable[[], Iterable[Any]]) -> Callable[[], None]:
    def run() -> None:
        for _ in make():
            pass

    return run


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def per_item(items: int) -> None:
    from rich.console import Console
    from rich.progress import track as rich_track
    from tqdm import tqdm

    data = range(items)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives for the benchmark
    bare = best_of(loop(lambda: data))
    results: dict[str, float] = {}
    with tasker.task("BENCH", "track per item"):
        results["tasker track()"] = best_of(loop(lambda: tasker.track(data, name="bench")))
    results["tqdm"] = best_of(loop(lambda: tqdm(data, file=devnull, mininterval=0.1)))
    console = Console(file=devnull)
    results["rich track()"] = best_of(loop(lambda: rich_track(data, console=console)))
    print(
        f"(a) per-item cost over {items:,} items (overhead above a bare loop of "
        f"{bare / items * 1e9:.1f} ns/item)"
    )
    tqdm_cost = (results["tqdm"] - bare) / items
    for name, seconds in results.items():
        cost = (seconds - bare) / items
        print(f"    {name:<16} {cost * 1e9:7.1f} ns/item   {cost / tqdm_cost:5.2f}x tqdm")


def task_calls(calls: int) -> None:
    @tasker.task(stage="BENCH", name="trivial")
    def trivial(x: int) -> int:
        return x + 1

    def nothing(x: int) -> int:
        return x + 1

    # Best of three rounds, as (a) is: a 2-core machine's other work moves one round by
    # several microseconds a call.
    caller = durable = float("inf")
    for _ in range(3):
        tasker.flush()
        t0 = time.perf_counter()
        for i in range(calls):
            nothing(i)
        plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(calls):
            trivial(i)
        caller = min(caller, time.perf_counter() - t0 - plain)
        assert tasker.flush(timeout=600), "the writer did not finish"
        durable = min(durable, time.perf_counter() - t0)
    done = sum(1 for r in tasker.get_task_history(task="trivial", limit=None))
    assert done >= 3 * calls, done
    print(f"(b) {calls:,} calls of a trivial @task function (best of 3 rounds)")
    print(f"    caller-side cost   {caller / calls * 1e6:7.1f} us/call")
    print(f"    durable runs/s     {calls / durable:9,.0f}  ({durable:.2f} s until all written)")
    from tasker.testing import disabled

    with disabled():
        trivial(0)  # loads the configuration that turns tracking off
        t0 = time.perf_counter()
        for i in range(calls):
            trivial(i)
        off = time.perf_counter() - t0
    print(f"    tracking off       {(off - plain) / calls * 1e6:7.2f} us/call  (TASKER_ENABLED=0)")


def memory(items: int) -> None:
    before = rss_mb()
    with tasker.task("BENCH", "memory"):
        for _ in tasker.track(range(items), name="ten million"):
            pass
    tasker.flush()
    print(f"(c) track() over {items:,} items: resident memory grew {rss_mb() - before:.2f} MB")


def run_ids(count: int = 200_000) -> None:
    """One id per run start: tasker's seeded generator next to str(uuid.uuid4()) (a system
    call per id), and the reseed every forked child makes once."""
    import uuid

    from tasker.runtime.ids import new_run_id, reseed

    ours = best_of(lambda: [new_run_id() for _ in range(count)]) / count
    theirs = best_of(lambda: [str(uuid.uuid4()) for _ in range(count)]) / count
    fork = best_of(lambda: [reseed() for _ in range(1_000)]) / 1_000
    print(
        f"(d) run id {ours * 1e9:5.0f} ns ({ours / theirs:.2f}x str(uuid.uuid4()), "
        f"{theirs * 1e9:.0f} ns); reseed after a fork {fork * 1e6:.1f} us, once per child"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_database_options(parser)
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--memory-items", type=int, default=10_000_000)
    args = parser.parse_args()
    store = fresh_store(args)
    tasker.create_schema()
    print(f"backend: {store.dialect}")
    try:
        per_item(args.items)
        task_calls(args.calls)
        memory(args.memory_items)
        run_ids()
    finally:
        tasker.flush()
        store.drop_schema()


if __name__ == "__main__":
    main()
