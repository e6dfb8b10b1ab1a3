"""concurrent.futures: a ProcessPoolExecutor made before the runs and reused by two of them.

python examples/parallel/executor.py [fork|spawn|forkserver]
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
from concurrent.futures import Executor, ProcessPoolExecutor

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


def nightly(executor: Executor, batch: int) -> str:
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
            assert sum(executor.map(tasker.bind(count_rows), chunks)) == 100
    return run.run_id


if __name__ == "__main__":
    # The platform's default start method (fork on Linux before Python 3.14), or one named.
    method = sys.argv[1] if len(sys.argv) > 1 else None
    with ProcessPoolExecutor(3, mp_context=mp.get_context(method)) as executor:
        print(json.dumps([nightly(executor, 1), nightly(executor, 2)]))
