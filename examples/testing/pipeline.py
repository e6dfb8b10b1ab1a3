"""The code under test: a tracked pipeline step (see test_pipeline.py)."""

from __future__ import annotations

import tasker


@tasker.task(stage="STATIC", name="Build Database", total_subtasks=2)
def build_database(states: list[str]) -> int:
    with tasker.subtask("Loading data"):
        if not states:
            raise ValueError("no states to load")
    for _ in tasker.track(states, name="Processing states"):
        pass
    return len(states)
