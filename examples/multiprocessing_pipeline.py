"""A process pool reporting into one run.

The run id reaches the workers through the environment (spawn) or the copied context (fork);
``subtask_increment`` counts atomically in the database, so every worker's items add up.

    python examples/multiprocessing_pipeline.py [fork|spawn]
"""

from __future__ import annotations

import multiprocessing as mp
import sys

import tasker


def process_chunk(chunk: list[int]) -> int:
    total = 0
    for value in chunk:
        total += value * value
        tasker.subtask_increment()  # one item done, in the parent's current subtask
    return total


@tasker.task(stage="PARALLEL", name="Sum of squares")
def main(method: str = "spawn") -> int:
    chunks = [list(range(i * 25, (i + 1) * 25)) for i in range(8)]
    with tasker.subtask("Squaring", items_total=200):
        ctx = mp.get_context(method)
        with ctx.Pool(4) as pool:
            results = pool.map(process_chunk, chunks)
    return sum(tasker.track(results, name="Adding up"))


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "spawn"))
