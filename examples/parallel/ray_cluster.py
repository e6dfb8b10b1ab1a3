"""Ray: a local Ray instance whose workers serve two runs.

python examples/parallel/ray_cluster.py
"""

from __future__ import annotations

import json
import sys

import ray

import tasker
from tasker.integrations import ray as tasker_ray


@tasker.task(stage="SCORING", name="Score item")
def score(item: int) -> int:
    if item == 7:
        raise ValueError(f"bad item {item}")
    return item * item


def count_rows(chunk: list[int]) -> int:
    for _ in tasker.track(chunk):
        pass
    return len(chunk)


def nightly(batch: int) -> str:
    score_remote = tasker_ray.remote(score, num_cpus=1)
    count_remote = tasker_ray.remote(count_rows, num_cpus=1)
    with tasker.task("SCORING", f"Nightly batch {batch}") as run:
        with tasker.subtask("Scoring", items_total=10):
            refs = [score_remote.remote(i) for i in range(10)]
            for ref in tasker.track(refs):
                try:
                    ray.get(ref, timeout=120)
                except ray.exceptions.RayTaskError as exc:
                    print(f"batch {batch}: {exc.cause}", file=sys.stderr)
        with tasker.subtask("Counting rows", items_total=100):
            chunks = [list(range(i, i + 25)) for i in range(0, 100, 25)]
            counted = ray.get([count_remote.remote(c) for c in chunks], timeout=120)
            assert sum(counted) == 100
    return run.run_id


if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        print(json.dumps([nightly(1), nightly(2)]))
    finally:
        ray.shutdown()
