"""joblib with its default loky backend, whose worker processes are reused across calls.

python examples/parallel/joblib_loky.py
"""

from __future__ import annotations

import json
import sys

from joblib import Parallel, delayed

import tasker


@tasker.task(stage="SCORING", name="Score item")
def score(item: int) -> int | None:
    if item == 7:
        raise ValueError(f"bad item {item}")
    return item * item


def score_or_none(item: int) -> int | None:
    try:
        return score(item)
    except ValueError as exc:
        print(f"{exc}", file=sys.stderr)
        return None


def count_rows(chunk: list[int]) -> int:
    for _ in tasker.track(chunk):
        pass
    return len(chunk)


def nightly(parallel: Parallel, batch: int) -> str:
    with tasker.task("SCORING", f"Nightly batch {batch}") as run:
        with tasker.subtask("Scoring", items_total=10):
            results = parallel(delayed(tasker.bind(score_or_none))(i) for i in range(10))
            for _ in tasker.track(results):
                pass
        with tasker.subtask("Counting rows", items_total=100):
            chunks = [list(range(i, i + 25)) for i in range(0, 100, 25)]
            assert sum(parallel(delayed(tasker.bind(count_rows))(c) for c in chunks)) == 100
    return run.run_id


if __name__ == "__main__":
    with Parallel(n_jobs=2) as parallel:
        print(json.dumps([nightly(parallel, 1), nightly(parallel, 2)]))
