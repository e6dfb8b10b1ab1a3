"""The dashboard's JSON API, pages and metrics, served by a real uvicorn server on a free
loopback port, on every backend."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
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
from tests.helpers import free_port, need, start_script, write_script

uvicorn = need("uvicorn")
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
    from tasker.runtime.recorder import RECORDER

    runs = _pipeline(tmp_path)
    began = datetime.now(timezone.utc) - timedelta(seconds=60)  # longer than the done run
    RECORDER.store.update_run(runs["live"], {"start_time": began}, began)
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
    assert fetch["rate"] > 0 and fetch["eta_subtask"] is not None
    # A completed run of the same task exists, and took less than this one so far: overdue,
    # with nothing left to say of the whole run but what its current subtask still needs.
    assert fetch["overdue"] is True and fetch["eta_task"] == fetch["eta_subtask"]
    assert tasks[XSS]["status"] == "FAILED"


LOOP = r"""
import time
import tasker

@tasker.task(stage="LIVE", name="indexing")
def index():
    with tasker.subtask("prepare"):
        time.sleep(6)
    for _ in tasker.track(range(3000), name="index"):
        time.sleep(0.05)

index()
"""


def test_live_figures_are_the_current_subtasks_own(
    served: Served, child_env: dict[str, str], tmp_path: Path
) -> None:
    # A run that spent 6 s in its first subtask, then counts 20 items a second: the rate is
    # the loop's own (the run's whole time would say under 12 a second 8 s in), the ETA its
    # items left at that rate, the duration now - start; the API, which watches the count
    # over a sliding window, and a one-shot `tasker status` say the same.
    from tests.e2e.test_cli import run_cli

    proc = start_script(write_script(tmp_path, LOOP), child_env)
    try:
        deadline = time.monotonic() + 90
        task: dict[str, Any] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            tasks = {t["task_name"]: t for t in served.json("/api/overview")["tasks"]}
            task = tasks.get("indexing", {})
            if task.get("subtask_name") == "index" and (task["items_complete"] or 0) >= 160:
                break
            time.sleep(0.5)
        assert task.get("subtask_name") == "index", (task, proc.poll())
        now = datetime.now(timezone.utc)
        assert 14 <= task["rate"] <= 20.5, task
        assert 5 <= task["rate_seconds"] <= 30, task  # the window: what the dashboard saw
        assert task["eta_subtask"] == pytest.approx((3000 - task["items_complete"]) / task["rate"])
        started = datetime.fromisoformat(task["start_time"])
        assert (
            (now - started).total_seconds() - 2
            <= task["duration"]
            <= (now - started).total_seconds()
        )
        assert task["duration"] >= 14  # 6 s preparing, 8 s counting
        status = run_cli("status", "--stage", "LIVE", "--json", env=child_env)
        (once,) = json.loads(status.stdout)["tasks"]
        assert 14 <= once["rate"] <= 20.5 and once["rate_seconds"] >= 8, once
        page = served.get(f"/runs/{task['run_id']}")[1]
        assert re.search(r"running \d+s · 1\d\.\d/s|running \d+s · 20\.\d/s", page), page
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)


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


def test_an_error_page_escapes_what_it_repeats(served: Served) -> None:
    status, page, _ = served.get("/runs/" + urllib.request.quote(XSS, safe=""))
    assert status == 400 and XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_run_page_polls_while_its_run_is_live_and_then_stops(
    served: Served, tmp_path: Path
) -> None:
    runs = _pipeline(tmp_path)
    for path in (f"/runs/{runs['live']}", f"/fragments/runs/{runs['live']}"):
        status, page, _ = served.get(path)
        assert status == 200
        assert f'hx-get="/fragments/runs/{runs["live"]}" hx-trigger="every 1s"' in page, path
    for run in ("done", "failed"):
        # Ended: the page, and the fragment a live page morphs itself into, ask no more.
        for path in (f"/runs/{runs[run]}", f"/fragments/runs/{runs[run]}"):
            status, page, _ = served.get(path)
            assert status == 200 and 'id="live"' in page, path
            assert "hx-trigger" not in page and "hx-get" not in page, path
    for path in ("/", "/fragments/overview"):  # the overview always polls
        status, page, _ = served.get(path)
        assert 'hx-get="/fragments/overview" hx-trigger="every 1s"' in page, path
    status, page, _ = served.get("/?stage=PREP")  # it refreshes what it shows
    assert 'hx-get="/fragments/overview?stage=PREP"' in page
    assert 'data-stage="PREP"' in page and 'data-stage="BUILD"' not in page


def test_pages_carry_a_content_security_policy_and_their_own_scripts(served: Served) -> None:
    status, page, headers = served.get("/")
    assert status == 200
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert "unsafe-eval" not in policy and "script-src 'self' 'unsafe-inline'" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert "<script>" not in page  # no inline script (the policy would refuse it)
    assert len(scripts) == 3 and all(s.startswith("/static/") for s in scripts)
    for src in scripts:
        status, body, headers = served.get(src)
        assert status == 200 and "javascript" in headers["content-type"] and body, src
    assert served.get("/api/overview")[2]["content-security-policy"] == policy


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

    def fake_run(uvicorn_module: Any, application: Any, sock: socket.socket) -> None:
        seen.update(app=application, address=sock.getsockname())

    monkeypatch.setattr(app, "_run_server", fake_run)
    tasker.create_schema()  # the dashboard serves only a database that exists
    app.serve("0.0.0.0", 0)  # port 0: any free port, which the URL then names
    err = capsys.readouterr().err
    assert "WARNING" in err and "?token=" in err
    assert f"http://127.0.0.1:{seen['address'][1]}/?token=" in err
    assert isinstance(seen["app"], app.HostGuard) and isinstance(seen["app"].app, app.TokenGuard)
    app.serve("127.0.0.1", 0)
    assert not isinstance(seen["app"].app, app.TokenGuard)
    assert capsys.readouterr().err == f"tasker dashboard: http://127.0.0.1:{seen['address'][1]}/\n"


def test_the_url_printed_is_one_a_browser_can_open() -> None:
    from tasker.dashboard.app import _announce

    name = _machine_name()
    assert _announce("127.0.0.1", 8787, None) == "tasker dashboard: http://127.0.0.1:8787/"
    assert _announce("::1", 8787, None) == "tasker dashboard: http://[::1]:8787/"
    assert _announce("0.0.0.0", 8787, "t0k") == (
        "tasker dashboard: WARNING: listening on all interfaces (0.0.0.0), reachable from "
        f"other machines; open http://{name}:8787/?token=t0k; on this machine "
        "http://127.0.0.1:8787/?token=t0k"
    )
    assert _announce("::", 8787, "t0k").endswith(
        f"open http://{name}:8787/?token=t0k; on this machine http://[::1]:8787/?token=t0k"
    )
    assert _announce("fd00::5", 8787, "t0k") == (
        "tasker dashboard: WARNING: listening on [fd00::5], reachable from other machines; "
        "open http://[fd00::5]:8787/?token=t0k"
    )


def test_bound_to_all_interfaces_the_machine_name_printed_is_accepted() -> None:
    from tasker.dashboard.app import HostGuard

    name = _machine_name()
    guard = HostGuard(lambda *a: None, (), host="0.0.0.0")  # type: ignore[arg-type, misc]
    assert guard.permits(f"{name}:8787", ("192.0.2.7", 8787))
    assert guard.permits("192.0.2.7:8787", ("192.0.2.7", 8787))
    assert not guard.permits(f"{name}:9999", ("192.0.2.7", 8787))
    assert not guard.permits("evil.example:8787", ("192.0.2.7", 8787))
    # Bound to one address, only that address (and allowed_hosts) is accepted.
    assert not HostGuard(lambda *a: None, (), host="192.0.2.7").permits(  # type: ignore[arg-type, misc]
        f"{name}:8787", ("192.0.2.7", 8787)
    )


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


def _machine_name() -> str:
    from tasker.dashboard import app

    name = app._machine_name()
    if name is None:
        pytest.skip("this machine has no name but localhost")
    return name


def test_runs_api_takes_the_ages_the_cli_takes(served: Served, tmp_path: Path) -> None:
    runs = _pipeline(tmp_path)
    for since in ("30s", "90m", "12h", "7d", "2w", "7D"):
        found = served.json(f"/api/runs?since={since}")["runs"]
        assert sorted(r["run_id"] for r in found) == sorted(runs.values()), since
    assert served.json("/api/runs?until=1h")["runs"] == []  # all started within the hour
    assert len(served.json("/api/runs?since=2w&until=2024-01-01")["runs"]) == 0
    assert len(served.json("/api/runs?since=2000-01-01")["runs"]) == 3
    status, page, _ = served.get("/history?since=7d")
    assert status == 200 and 'class="run"' in page


@pytest.mark.parametrize(
    ("query", "what"),
    [("since=yesterday", "since"), ("since=7%20days", "since"), ("until=-1d", "until")],
)
def test_a_bad_since_is_a_400_saying_what_was_wrong(served: Served, query: str, what: str) -> None:
    status, body, headers = served.get(f"/api/runs?{query}")
    assert status == 400 and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error.startswith(f"{what}: expected an age like 30s, 90m, 12h, 7d or 2w")
    assert "ISO date/time" in error


# ---------------------------------------------------------------------------- tasker dashboard


def _start_dashboard(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tasker", "dashboard", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    """End the dashboard started by the test (by its PID), whatever state it is in."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _first_line(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The first line the dashboard writes to stderr, waited for at most ``timeout``."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: lines.put(stderr.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"tasker dashboard printed nothing in {timeout} s")


def test_a_busy_port_is_one_clear_error_line(db: Backend, child_env: dict[str, str]) -> None:
    tasker.create_schema()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _start_dashboard(child_env, "--port", str(port))
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            _stop(proc)
    assert proc.returncode == 1
    assert out == ""
    assert err == (
        f"tasker: error: cannot listen on 127.0.0.1:{port}: the port is in use; "
        "choose another with --port\n"
    )


def test_on_all_interfaces_it_prints_urls_that_open(db: Backend, child_env: dict[str, str]) -> None:
    tasker.create_schema()
    port = free_port()
    proc = _start_dashboard(child_env, "--host", "0.0.0.0", "--port", str(port))
    try:
        line = _first_line(proc)
        assert "listening on all interfaces (0.0.0.0)" in line and "http://0.0.0.0" not in line
        local = re.search(rf"on this machine (http://127\.0\.0\.1:{port}/\?token=\S+)$", line)
        assert local is not None, line
        url = local.group(1)
        # Printed once listening: the first request is answered, with no waiting or retry.
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
        name = _machine_name()
        assert f"open http://{name}:{port}/?token=" in line
        # The machine's name is accepted as the Host (connecting over loopback here, so that
        # the test needs no name service).
        request = urllib.request.Request(
            url.replace("/?", "/api/overview?"), headers={"Host": f"{name}:{port}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200 and "stages" in json.loads(response.read())
    finally:
        _stop(proc)
