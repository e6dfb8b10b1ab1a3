"""Threads: a ThreadPoolExecutor's workers report into the run they work for.

A thread with no run of its own reports into the process's innermost live run: decorated
calls nest under it and ``track()`` counts into its open subtask — no ``bind`` needed.

    python examples/parallel/threads.py
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import tasker


@tasker.task(stage="SCORING", name="Score item")
def score(item: int) -> int:
    if item == 7:
        raise ValueError(f"bad item {item}")
    return item * item


def count_rows(chunk: list[int]) -> int:
    for _ in tasker.track(chunk):
        pass
    return len(chunk)


def nightly(executor: ThreadPoolExecutor, batch: int) -> str:
    with tasker.task("SCORING", f"Nightly batch {batch}") as run:
        with tasker.subtask("Scoring", items_total=10):
            futures = [executor.submit(score, i) for i in range(10)]
            for future in tasker.track(futures):
                try:
                    future.result(timeout=60)
                except ValueError as exc:
                    print(f"batch {batch}: {exc}", file=sys.stderr)
        with tasker.subtask("Counting rows", items_total=100):
            chunks = [list(range(i, i + 25)) for i in range(0, 100, 25)]
            assert sum(executor.map(count_rows, chunks)) == 100
    return run.run_id


if __name__ == "__main__":
    with ThreadPoolExecutor(4) as executor:
        print(json.dumps([nightly(executor, 1), nightly(executor, 2)]))
