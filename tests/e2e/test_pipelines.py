"""Pipeline runs (tasker.pipelines): a run without a parent and every run under it — nested
decorated calls and a child process here — shown together by the dashboard's overview, its
run pages and its API, on every backend."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasker
from tests.conftest import Backend
from tests.e2e.test_dashboard import Served
from tests.helpers import write_script

CHILD = r"""
import tasker

@tasker.task(stage="LOAD", name="export")
def export():
    return 1

export()
"""


@pytest.fixture
def served(db: Backend) -> Iterator[Served]:
    server = Served()
    try:
        yield server
    finally:
        server.stop()


def _two_pipeline_runs(tmp_path: Path, child_env: dict[str, str]) -> dict[str, Any]:
    """Last night's pipeline run (its check FAILED, caught), then tonight's, still running,
    which has fetched so far and neither exported nor checked."""
    script = write_script(tmp_path, CHILD, "export.py")

    @tasker.task(stage="LOAD", name="fetch")
    def fetch() -> None:
        pass

    @tasker.task(stage="STATIC", name="check")
    def check() -> None:
        raise ValueError("the check found a problem")

    @tasker.task(stage="PIPE", name="nightly")
    def nightly() -> str:
        fetch()
        # A child process started inside the run, with the environment the run gives it
        # (TASKER_RUN_ID): its run is recorded under it.
        env = {**child_env, "TASKER_RUN_ID": os.environ["TASKER_RUN_ID"]}
        subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=120)
        with contextlib.suppress(ValueError):
            check()
        return str(tasker.current_run().run_id)

    tasker.register_tasks(
        [
            {"stage": "PIPE", "name": "nightly", "stage_order": 1},
            {"stage": "LOAD", "name": "fetch", "stage_order": 2, "task_order": 1},
            {"stage": "LOAD", "name": "export", "stage_order": 2, "task_order": 2},
            {"stage": "STATIC", "name": "check", "stage_order": 3},
        ]
    )
    last = nightly()
    tonight = tasker.task_start("PIPE", "nightly")
    fetch()
    tasker.flush()
    return {"last": last, "tonight": tonight}


def _by_task(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["task_name"]: t for t in data["tasks"]}


def test_the_overview_shows_the_current_pipeline_run_and_marks_what_is_left_from_the_last(
    served: Served, child_env: dict[str, str], tmp_path: Path
) -> None:
    runs = _two_pipeline_runs(tmp_path, child_env)
    data = served.json("/api/overview")
    assert data["pipeline"]["run_id"] == runs["tonight"]
    assert [p["run_id"] for p in data["pipelines"]] == [runs["tonight"], runs["last"]]
    tasks = _by_task(data)
    assert {name for name, t in tasks.items() if t["earlier"]} == {"export", "check"}
    assert {t["pipeline_run_id"] for t in tasks.values()} == {runs["tonight"], runs["last"]}
    assert (tasks["check"]["status"], tasks["nightly"]["status"]) == ("FAILED", "STARTED")
    # Last night's FAILED check does not make tonight's STATIC stage FAILED: it has not got
    # there yet.
    assert {s["stage_name"]: s["status"] for s in data["stages"]} == {
        "PIPE": "STARTED",
        "LOAD": "STARTED",
        "STATIC": "NOT_STARTED",
    }
    page = served.get("/")[1]
    assert page.count('class="task earlier"') == 2 and "from an earlier pipeline run" in page


def test_an_earlier_pipeline_run_can_be_chosen_and_its_runs_are_listed_under_it(
    served: Served, child_env: dict[str, str], tmp_path: Path
) -> None:
    runs = _two_pipeline_runs(tmp_path, child_env)
    last = runs["last"]
    data = served.json(f"/api/overview?pipeline={last[:8]}")  # a unique prefix is enough
    assert data["pipeline"]["run_id"] == last
    tasks = _by_task(data)
    assert {name: t["status"] for name, t in tasks.items()} == {
        "nightly": "COMPLETED",
        "fetch": "COMPLETED",
        "export": "COMPLETED",
        "check": "FAILED",
    }
    assert not any(t["earlier"] or t["absent"] for t in tasks.values())
    assert {t["pipeline_run_id"] for t in tasks.values()} == {last}
    assert {s["stage_name"]: s["status"] for s in data["stages"]}["STATIC"] == "FAILED"
    # The run page of the top run lists the runs under it, the child process's too.
    top = served.json(f"/api/runs/{last}")
    assert [(c["task_name"], c["parent_run_id"]) for c in top["children"]] == [
        ("fetch", last),
        ("export", last),
        ("check", last),
    ]
    assert top["pipeline_run_id"] == last
    export = top["children"][1]
    assert served.json(f"/api/runs/{export['run_id']}")["pipeline_run_id"] == last
    tree = served.json(f"/api/pipelines/{export['run_id']}")
    assert tree["pipeline_run_id"] == last
    assert [(r["task_name"], r["depth"]) for r in tree["runs"]] == [
        ("nightly", 0),
        ("fetch", 1),
        ("export", 1),
        ("check", 1),
    ]
    page = served.get(f"/runs/{last}")[1]
    assert page.count('<tr id="child-') == 3
    tonight = served.json(f"/api/overview?pipeline={runs['tonight']}")
    assert {n for n, t in _by_task(tonight).items() if t["absent"]} == {"export", "check"}
    assert {n: t["status"] for n, t in _by_task(tonight).items()}["check"] == "NOT_STARTED"


def test_a_pipeline_run_that_is_not_there_is_a_404(served: Served) -> None:
    tasker.task_start("S", "T")
    tasker.flush()
    status, body, _ = served.get("/api/overview?pipeline=00000000-0000-4000-8000-000000000000")
    assert status == 404, body
    assert served.get("/?pipeline=ffffffff")[0] == 404
    assert served.json("/api/overview")["pipeline"] is None  # one run alone: nothing to group
