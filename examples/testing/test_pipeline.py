"""Testing tracked code with tasker.testing: run with `python -m pytest examples/testing`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pipeline import build_database

from tasker.testing import Captured, capture, disabled


@pytest.fixture
def tracked() -> Iterator[Captured]:
    with capture() as captured:
        yield captured


def test_a_build_records_its_run_and_subtasks(tracked: Captured) -> None:
    assert build_database(["AL", "AK", "AZ"]) == 3
    run = tracked.run("Build Database")
    assert (run.stage_name, run.status, run.overall_percent_complete) == (
        "STATIC",
        "COMPLETED",
        100.0,
    )
    subs = tracked.subtasks(run)
    assert [(s.subtask_name, s.status, s.items_complete) for s in subs] == [
        ("Loading data", "COMPLETED", 0),
        ("Processing states", "COMPLETED", 3),
    ]


def test_a_failed_build_is_recorded_failed(tracked: Captured) -> None:
    with pytest.raises(ValueError, match="no states"):
        build_database([])
    run = tracked.run("Build Database")
    assert (run.status, run.error_type, run.error_message) == (
        "FAILED",
        "ValueError",
        "no states to load",
    )
    assert [s.status for s in tracked.subtasks(run)] == ["FAILED"]


def test_with_tracking_off_the_function_is_just_called() -> None:
    with disabled():
        assert build_database(["AL"]) == 1
