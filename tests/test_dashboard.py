"""The dashboard's JSON API, pages and metrics, served by a real uvicorn server on a free
loopback port, on every backend."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import tasker
from tests.conftest import Backend
from tests.helpers import free_port

uvicorn = pytest.importorskip("uvicorn")
XSS = "<img src=x onerror=alert(1)>"


class Served:
    """The real app under uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, token: str | None = None, log_level: str = "warning") -> None:
        from tasker.dashboard import create_app

        self.port = free_port()
        config = uvicorn.Config(
            create_app(token), host="127.0.0.1", port=self.port, log_level=log_level
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                pytest.fail("the dashboard did not start")
            time.sleep(0.02)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), exc.headers

    def json(self, path: str) -> Any:
        status, body, _ = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def served(db: Backend) -> Iterator[Served]:
    server = Served()
    try:
        yield server
    finally:
        server.stop()


def _pipeline(tmp_path: Path) -> dict[str, str]:
    tasker.register_tasks(
        [
            {"stage": "PREP", "name": "fetch", "stage_order": 1, "task_order": 1},
            {"stage": "PREP", "name": "never run", "stage_order": 1, "task_order": 2},
            {"stage": "BUILD", "name": XSS, "stage_order": 2, "task_order": 1},
        ]
    )
    log = tmp_path / "fetch.log"
    log.write_text("line one\nthe last line\n")
    done = tasker.task_start("PREP", "fetch", log_path=str(log))
    tasker.subtask_start("download", items_total=10)
    tasker.subtask_increment(10)
    tasker.subtask_complete("downloaded")
    tasker.task_complete("fetched")
    failed = tasker.task_start("BUILD", XSS)
    try:
        raise ValueError(f"broken {XSS}")
    except ValueError as exc:
        tasker.task_fail(exc, run_id=failed)
    live = tasker.task_start("PREP", "fetch")
    tasker.subtask_start("download", items_total=100)
    tasker.subtask_increment(25)
    tasker.flush()
    return {"done": done, "failed": failed, "live": live}


def test_overview_api(served: Served, tmp_path: Path) -> None:
    runs = _pipeline(tmp_path)
    data = served.json("/api/overview")
    assert [s["stage_name"] for s in data["stages"]] == ["PREP", "BUILD"]
    assert {s["stage_name"]: s["status"] for s in data["stages"]} == {
        "PREP": "RUNNING",
        "BUILD": "FAILED",
    }
    tasks = {t["task_name"]: t for t in data["tasks"]}
    assert tasks["never run"]["status"] == "NOT_STARTED" and tasks["never run"]["run_id"] is None
    fetch = tasks["fetch"]
    assert (fetch["run_id"], fetch["status"], fetch["items_complete"]) == (
        runs["live"],
        "RUNNING",
        25,
    )
    assert fetch["rate"] > 0 and fetch["eta_rate"] is not None
    assert fetch["eta_history"] is not None  # a completed run of the same task exists
    assert tasks[XSS]["status"] == "FAILED"


def test_runs_api_filters_and_pages(served: Served, tmp_path: Path) -> None:
    runs = _pipeline(tmp_path)
    everything = served.json("/api/runs")
    assert len(everything["runs"]) == 3 and not everything["more"]
    failed = served.json("/api/runs?status=FAILED")
    assert [r["run_id"] for r in failed["runs"]] == [runs["failed"]]
    assert {r["run_id"] for r in served.json("/api/runs?stage=PREP")["runs"]} == {
        runs["done"],
        runs["live"],
    }
    assert served.json("/api/runs?host=elsewhere")["runs"] == []
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert served.json(f"/api/runs?since={urllib.request.quote(future)}")["runs"] == []
    first = served.json("/api/runs?limit=2")
    second = served.json("/api/runs?limit=2&offset=2")
    assert first["more"] and not second["more"]
    ids = [r["run_id"] for r in first["runs"] + second["runs"]]
    assert sorted(ids) == sorted(runs.values())
    status, body, _ = served.get("/api/runs?limit=abc")
    assert status == 400 and "limit" in json.loads(body)["error"]


def test_run_api_and_page(db: Backend, tmp_path: Path) -> None:
    db.configure(log_roots=[str(tmp_path)])  # the log file's folder is one the operator lists
    runs = _pipeline(tmp_path)
    served = Served()
    try:
        _check_run_api_and_page(served, runs)
    finally:
        served.stop()


def _check_run_api_and_page(served: Served, runs: dict[str, str]) -> None:
    done = served.json(f"/api/runs/{runs['done']}")
    assert done["status"] == "COMPLETED" and done["hostname"] and done["process_id"]
    assert done["subtasks"][0]["items_complete"] == 10
    assert done["log_tail"].endswith("the last line\n")
    failed = served.json(f"/api/runs/{runs['failed'][:8]}")  # a prefix is enough
    assert "Traceback" in failed["error_detail"] and "ValueError" in failed["error_detail"]
    status, page, _ = served.get(f"/runs/{runs['failed']}")
    assert status == 200 and "Traceback" in page
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    status, body, _ = served.get("/api/runs/ffffffff-0000-4000-8000-000000000000")
    assert status == 404 and "no run id" in json.loads(body)["error"]


def test_pages_escape_what_they_show(served: Served, tmp_path: Path) -> None:
    _pipeline(tmp_path)
    for path in (
        "/",
        "/fragments/overview",
        "/history",
        "/history?task=" + urllib.request.quote(XSS),
    ):
        status, page, _ = served.get(path)
        assert status == 200
        assert XSS not in page, path
    status, page, _ = served.get("/history?task=" + urllib.request.quote(XSS))
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and 'class="run"' in page
    status, page, _ = served.get("/tasks/BUILD/" + urllib.request.quote(XSS, safe=""))
    assert status == 200 and XSS not in page and "<svg" in page


def test_metrics(served: Served, tmp_path: Path) -> None:
    _pipeline(tmp_path)
    status, text, headers = served.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'tasker_tasks{status="RUNNING"} 1' in text
    assert 'tasker_tasks{status="NOT_STARTED"} 1' in text
    assert 'tasker_tasks{status="FAILED"} 1' in text
    assert "tasker_active_runs 1" in text
    assert 'tasker_runs{status="COMPLETED"} 1' in text and 'tasker_runs{status="FAILED"} 1' in text
    assert 'tasker_runs{status="RUNNING"} 1' in text
    assert 'tasker_last_success_timestamp_seconds{stage="PREP",task="fetch"}' in text
    assert 'tasker_last_success_duration_seconds{stage="PREP",task="fetch"}' in text


def test_a_token_is_required_when_set(db: Backend) -> None:
    server = Served(token="s3cr3t-token")
    try:
        assert server.get("/api/overview")[0] == 401
        assert server.get("/api/overview?token=wrong")[0] == 401
        status, _, headers = server.get("/?token=s3cr3t-token")
        assert status == 200 and "tasker_token=s3cr3t-token" in headers["set-cookie"]
        assert server.get("/api/overview", {"Cookie": "tasker_token=s3cr3t-token"})[0] == 200
        bearer = {"Authorization": "Bearer s3cr3t-token"}
        assert server.get("/metrics", bearer)[0] == 200
    finally:
        server.stop()


def test_no_password_in_any_page(db: Backend, tmp_path: Path) -> None:
    if db.name != "postgresql":
        pytest.skip("needs a server that accepts any password")
    url = tasker.get_config().sqlalchemy_url().set(password="pw-never-shown")
    schema = tasker.get_config().schema
    tasker.configure(url=url.render_as_string(hide_password=False), schema=schema)
    _pipeline(tmp_path)
    server = Served()
    try:
        for path in ("/", "/history", "/api/overview", "/api/runs", "/metrics"):
            status, body, _ = server.get(path)
            assert status == 200 and "pw-never-shown" not in body, path
    finally:
        server.stop()


def test_serve_off_loopback_makes_up_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tasker.dashboard import app

    seen: dict[str, Any] = {}

    def fake_run(application: Any, host: str, port: int, log_level: str) -> None:
        seen.update(app=application, host=host)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    tasker.create_schema()  # the dashboard serves only a database that exists
    app.serve("0.0.0.0", 8787)
    err = capsys.readouterr().err
    assert "WARNING" in err and "?token=" in err
    assert isinstance(seen["app"], app.HostGuard) and isinstance(seen["app"].app, app.TokenGuard)
    app.serve("127.0.0.1", 8787)
    assert not isinstance(seen["app"].app, app.TokenGuard)


def test_an_unreachable_database_is_a_503_not_a_crash(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    tasker.configure(url=f"postgresql://u@127.0.0.1:{port}/x", console="false")
    server = Served()
    try:
        status, body, _ = server.get("/api/overview")
        assert status == 503 and f"127.0.0.1:{port}" in json.loads(body)["error"]
        status, page, _ = server.get("/")
        assert status == 503 and "Traceback" not in page
    finally:
        server.stop()
