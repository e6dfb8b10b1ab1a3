"""A multiprocessing pool made before the runs and reused by two of them.

Each call of the decorated ``score`` is a run nested under the run that sent it (the run
context travels with each call, not with the worker process); ``tasker.bind`` hands a plain
function the run and the subtask open when it was sent, so the workers' ``track()`` loops
count into exactly that subtask.

    python examples/parallel/process_pool.py [fork|spawn|forkserver]
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys

import tasker


@tasker.task(stage="SCORING", name="Score item")
def score(item: int) -> int:
    if item == 7:
        raise ValueError(f"bad item {item}")
    return item * item


def count_rows(chunk: list[int]) -> int:
    for _ in tasker.track(chunk):  # counts into the sender's open subtask
        pass
    return len(chunk)


def nightly(pool: mp.pool.Pool, batch: int) -> str:
    with tasker.task("SCORING", f"Nightly batch {batch}") as run:
        with tasker.subtask("Scoring", items_total=10):
            pending = [pool.apply_async(score, (i,)) for i in range(10)]
            for result in tasker.track(pending):
                try:
                    result.get(timeout=60)
                except ValueError as exc:
                    print(f"batch {batch}: {exc}", file=sys.stderr)
        with tasker.subtask("Counting rows", items_total=100):
            chunks = [list(range(i, i + 25)) for i in range(0, 100, 25)]
            assert sum(pool.map(tasker.bind(count_rows), chunks)) == 100
    return run.run_id


if __name__ == "__main__":
    method = sys.argv[1] if len(sys.argv) > 1 else "spawn"
    with mp.get_context(method).Pool(3) as pool:
        print(json.dumps([nightly(pool, 1), nightly(pool, 2)]))
