"""Dask: a LocalCluster of worker processes, reused by two runs.

Pass ``pure=False``: Dask otherwise reuses the result of an identical earlier call, and the
call (and its run) does not happen again.

    python examples/parallel/dask_cluster.py
"""

from __future__ import annotations

import json
import sys

from dask.distributed import Client, LocalCluster

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


def nightly(client: Client, batch: int) -> str:
    with tasker.task("SCORING", f"Nightly batch {batch}") as run:
        with tasker.subtask("Scoring", items_total=10):
            futures = [client.submit(score, i, pure=False) for i in range(10)]
            for future in tasker.track(futures):
                try:
                    future.result(timeout=60)
                except ValueError as exc:
                    print(f"batch {batch}: {exc}", file=sys.stderr)
        with tasker.subtask("Counting rows", items_total=100):
            chunks = [list(range(i, i + 25)) for i in range(0, 100, 25)]
            counted = client.gather(client.map(tasker.bind(count_rows), chunks, pure=False))
            assert sum(counted) == 100
    return run.run_id


if __name__ == "__main__":
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        print(json.dumps([nightly(client, 1), nightly(client, 2)]))
