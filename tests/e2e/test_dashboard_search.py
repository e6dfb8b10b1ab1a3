"""The dashboard's search, on every backend, through the JSON API and the pages: parts of
stage and task names in any case (``%``, ``_`` and ``/`` meaning themselves), several
statuses at once, the start of a run id, times read in the page's zone, and bad input a 400
that names the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

import tasker
from tests.conftest import Backend
from tests.e2e.test_dashboard import Served


@pytest.fixture
def served(db: Backend) -> Iterator[Served]:
    server = Served()
    try:
        yield server
    finally:
        server.stop()


def _runs() -> dict[str, str]:
    """One run of each task, in this order (so newest last): their ids by task name."""
    tasker.register_tasks(
        [
            {"stage": "STATIC", "name": "FCC_load", "stage_order": 1, "task_order": 1},
            {"stage": "STATIC", "name": "fcc parse", "stage_order": 1, "task_order": 2},
            {"stage": "Static_2", "name": "100% done", "stage_order": 2, "task_order": 1},
            {"stage": "Static_2", "name": "a_b", "stage_order": 2, "task_order": 2},
            {"stage": "Static_2", "name": "axb", "stage_order": 2, "task_order": 3},
            {"stage": "OTHER", "name": "in/out", "stage_order": 3, "task_order": 1},
        ]
    )
    ids = {}
    outcomes = ["COMPLETED", "FAILED", "COMPLETED", "CANCELLED", "COMPLETED", "SKIPPED"]
    names = ["FCC_load", "fcc parse", "100% done", "a_b", "axb", "in/out"]
    stages = ["STATIC", "STATIC", "Static_2", "Static_2", "Static_2", "OTHER"]
    for stage, name, outcome in zip(stages, names, outcomes, strict=True):
        run = tasker.task_start(stage, name)
        tasker.task_update(outcome, run_id=run)
        ids[name] = run
    tasker.flush()
    return ids


def _ids(served: Served, query: str) -> list[str]:
    return [r["run_id"] for r in served.json("/api/runs?" + query)["runs"]]


def test_names_are_searched_in_any_case_as_parts(served: Served) -> None:
    ids = _runs()

    def runs(*names: str) -> list[str]:
        return [ids[n] for n in names]

    assert _ids(served, "task=fcc") == runs("fcc parse", "FCC_load")
    assert _ids(served, "task=FCC_LOAD") == runs("FCC_load")
    assert _ids(served, "stage=static") == runs("axb", "a_b", "100% done", "fcc parse", "FCC_load")
    assert _ids(served, "stage=STATIC_") == runs("axb", "a_b", "100% done")
    # One box for both names: a stage's name or a task's.
    assert _ids(served, "q=LOAD") == runs("FCC_load")
    assert _ids(served, "q=static_2") == runs("axb", "a_b", "100% done")
    assert _ids(served, "q=other") == runs("in/out")
    # What LIKE would read as a wildcard is itself.
    assert _ids(served, "q=a_b") == runs("a_b")
    assert _ids(served, "q=" + quote("100%")) == runs("100% done")
    assert _ids(served, "q=" + quote("%")) == runs("100% done")
    assert _ids(served, "q=" + quote("n/o")) == runs("in/out")
    assert _ids(served, "q=_") == runs("axb", "a_b", "100% done", "FCC_load")
    # With the other filters.
    assert _ids(served, "q=fcc&status=FAILED") == runs("fcc parse")
    assert _ids(served, "q=nothing") == []
    # The overview, the same way.
    overview = served.json("/api/overview?q=FCC")
    assert [t["task_name"] for t in overview["tasks"]] == ["FCC_load", "fcc parse"]
    assert [s["stage_name"] for s in overview["stages"]] == ["STATIC"]
    overview = served.json("/api/overview?stage=static_")
    assert [t["task_name"] for t in overview["tasks"]] == ["100% done", "a_b", "axb"]
    assert served.json("/api/overview?q=a_b")["tasks"][0]["task_name"] == "a_b"
    assert len(served.json("/api/overview?q=a_b")["tasks"]) == 1


def test_several_statuses_and_run_ids(served: Served) -> None:
    ids = _runs()
    both = [ids["in/out"], ids["a_b"]]
    assert _ids(served, "status=SKIPPED&status=CANCELLED") == both
    assert _ids(served, "status=skipped,cancelled") == both
    assert _ids(served, "status=CANCELLED&status=SKIPPED&status=CANCELLED") == both
    assert _ids(served, "status=FAILED,COMPLETED&stage=static") == [
        ids["axb"],
        ids["100% done"],
        ids["fcc parse"],
        ids["FCC_load"],
    ]
    run = ids["axb"]
    answer = served.json(f"/api/runs?q={run[:8]}")
    assert answer["run_ids"] == [run] and answer["runs"] == []
    assert served.json("/api/runs?q=fcc")["run_ids"] == []  # not 4 characters of an id
    status, body, _ = served.get(f"/history?q={run[:6].upper()}")
    assert status == 200 and f'<a href="/runs/{run}">{run}</a>' in body


def test_since_without_an_offset_is_read_in_the_zone_given(served: Served) -> None:
    ids = _runs()
    tokyo = datetime.now(ZoneInfo("Asia/Tokyo")).replace(tzinfo=None, microsecond=0)
    hour_ago = quote((tokyo - timedelta(hours=1)).isoformat())
    assert len(_ids(served, f"since={hour_ago}&tz=Asia/Tokyo")) == len(ids)
    assert _ids(served, f"until={hour_ago}&tz=Asia%2FTokyo") == []
    # Without a zone, UTC: nine hours after that.
    assert _ids(served, f"since={hour_ago}") == []
    status, body, _ = served.get("/history?tz=Asia/Tokyo")
    assert status == 200 and body.count("data-zone-label>(Asia/Tokyo)</span>") == 2
    status, body, _ = served.get("/history")
    assert body.count("data-zone-label>(UTC)</span>") == 2


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("status=BOGUS", "status", "unknown status 'BOGUS': expected one of NOT_STARTED, "),
        ("status=FAILED,nope", "status", "unknown status 'nope'"),
        ("status=" + "X" * 300, "status", "unknown status 'XXXXXXXXXXXXXXXXXXXX...'"),
        ("q=" + "x" * 201, "q", "search: at most 200 characters, got 201"),
        ("task=" + "x" * 300, "task", "task: at most 200 characters, got 300"),
        ("since=2024-05-01&tz=Mars/Olympus", "since", "tz: expected a time zone name"),
        ("since=2024-05-01&tz=../../etc/passwd", "since", "tz: expected a time zone name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    served: Served, query: str, field: str, message: str
) -> None:
    status, body, _ = served.get("/api/runs?" + query)
    assert status == 400
    answer = json.loads(body)
    assert answer["field"] == field and answer["error"].startswith(message), answer
    # The history page keeps the form with the reason beside the field.
    status, body, _ = served.get("/history?" + query)
    assert status == 400
    assert '<p id="filter-problem" class="filter-problem" role="alert">' in body
    assert 'aria-invalid="true"' in body and '<tr class="run"' not in body


def test_an_overlong_overview_search_keeps_the_box(served: Served) -> None:
    _runs()
    status, body, _ = served.get("/?q=" + "x" * 201)
    assert status == 400
    assert "search: at most 200 characters, got 201" in body
    assert 'id="search" name="q" value="' + "x" * 201 + '"' in body
    assert "hx-trigger" not in body
    status, body, _ = served.get("/api/overview?q=" + "x" * 201)
    assert status == 400 and json.loads(body)["field"] == "q"
    status, body, _ = served.get("/fragments/overview?q=" + "x" * 201)
    assert status == 400
