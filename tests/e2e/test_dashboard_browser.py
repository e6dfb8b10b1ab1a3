"""The dashboard in a real browser (Playwright driving Debian's Chromium), while tracked
pipelines run in other processes. ``UPDATE_DASHBOARD_SCREENSHOT=1`` also saves the overview to
docs/dashboard.png."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.helpers import free_port, start_script, wait_for, write_script

playwright_api = pytest.importorskip("playwright.sync_api")
XSS = "<img src=x onerror=alert(1)>"


BROWSER_ENV = "TASKER_TEST_BROWSER"


def _chromium() -> str:
    """The browser, found on PATH. Without one the browser tests skip, with the reason; with
    TASKER_TEST_BROWSER=1 (CI sets it, after installing Chromium) they fail instead: the same
    rule as the database URLs."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    reason = (
        "Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it "
        f"and sets {BROWSER_ENV}=1)"
    )
    if os.environ.get(BROWSER_ENV) == "1":
        pytest.fail(f"{BROWSER_ENV}=1 but {reason}")
    pytest.skip(reason)


class Dashboard:
    """``tasker dashboard`` in its own process, which the test may stop and start again."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tasker", "dashboard", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read() if self.proc.stderr else ""
                    pytest.fail(f"the dashboard did not start: {err}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env.update(
        TASKER_DB_PATH=str(tmp_path / "dash.db"),
        TASKER_CONSOLE="false",
        TASKER_FLUSH_INTERVAL="0.2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


@pytest.fixture
def dashboard(env: dict[str, str]) -> Iterator[Dashboard]:
    subprocess.run([sys.executable, "-m", "tasker", "init"], env=env, check=True, timeout=60)
    server = Dashboard(env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


LIVE = """
import time, tasker

@tasker.task(stage="NIGHTLY", name="live step")
def step():
    time.sleep(1.5)
    for _ in tasker.track(range(40), name="items"):
        time.sleep(0.15)

@tasker.task(stage="NIGHTLY", name="breaks")
def breaks():
    raise RuntimeError("disk full on /data")

step()
try:
    breaks()
except RuntimeError:
    pass
"""


def _status(page: Any, task: str) -> str:
    row = page.locator(f'tr.task[data-task="{task}"]')
    return str(row.get_attribute("data-status")) if row.count() else ""


def test_a_run_goes_live_to_completed_without_a_reload(
    dashboard: Dashboard, page: Any, env: dict[str, str], tmp_path: Path
) -> None:
    page.goto(dashboard.url + "/")
    page.evaluate("window.__sameDocument = true")
    script = write_script(tmp_path, LIVE)
    proc = start_script(script, env)
    try:
        wait_for(lambda: _status(page, "live step") in ("STARTED", "RUNNING"))
        bar = page.locator('tr.task[data-task="live step"] [role=progressbar]')
        wait_for(lambda: bar.count() and float(bar.get_attribute("aria-valuenow") or 0) > 0)
        first = float(bar.get_attribute("aria-valuenow") or 0)
        wait_for(lambda: float(bar.get_attribute("aria-valuenow") or 0) > first + 10)
        assert _status(page, "live step") == "RUNNING"
        wait_for(lambda: _status(page, "live step") == "COMPLETED")
        wait_for(lambda: _status(page, "breaks") == "FAILED")
        assert page.evaluate("window.__sameDocument") is True  # never reloaded
        page.wait_for_timeout(600)  # bars move to their new width in 0.4 s
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("UPDATE_DASHBOARD_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "dashboard.png")
    finally:
        proc.communicate(timeout=60)
    assert proc.returncode == 0

    # The failed run's page shows the error and its traceback.
    page.locator('tr.task[data-task="breaks"] td:nth-child(6) a').click()
    page.wait_for_selector("pre.traceback")
    text = page.locator("pre.traceback").inner_text()
    assert "RuntimeError: disk full on /data" in text and "Traceback" in text
    assert "FAILED" in page.locator("h1").inner_text()


def test_filters_narrow_the_history(
    dashboard: Dashboard, page: Any, env: dict[str, str], tmp_path: Path
) -> None:
    script = write_script(
        tmp_path,
        """
        import tasker
        for i in range(3):
            with tasker.task("HIST", f"ok {i}"):
                pass
        for i in range(2):
            try:
                with tasker.task("HIST", f"bad {i}"):
                    raise ValueError(i)
            except ValueError:
                pass
        with tasker.task("OTHER", "elsewhere"):
            pass
        """,
    )
    assert subprocess.run([sys.executable, str(script)], env=env, timeout=60).returncode == 0
    page.goto(dashboard.url + "/history")
    assert page.locator("tr.run").count() == 6
    page.select_option("select[name=status]", "FAILED")
    page.click("form.filters button")
    page.wait_for_url("**/history?**")
    statuses = page.locator("tr.run").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses == ["FAILED", "FAILED"]
    page.fill("input[name=stage]", "OTHER")
    page.select_option("select[name=status]", "")
    page.click("form.filters button")
    page.wait_for_url("**stage=OTHER**")
    assert page.locator("tr.run").count() == 1


def test_a_hostile_task_name_is_shown_as_text(
    dashboard: Dashboard, page: Any, env: dict[str, str]
) -> None:
    code = f"import tasker; tasker.register_task('XSS', {XSS!r})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(dashboard.url + "/")
    page.wait_for_selector('section[data-stage="XSS"]')
    page.wait_for_timeout(1500)  # a refresh or two
    assert XSS in page.locator('section[data-stage="XSS"]').inner_text()
    assert page.locator("section img").count() == 0 and dialogs == []


def test_the_page_recovers_after_the_server_restarts(dashboard: Dashboard, page: Any) -> None:
    page.goto(dashboard.url + "/")
    badge = page.locator("#connection")
    wait_for(lambda: badge.inner_text() == "live")
    dashboard.stop()
    wait_for(lambda: "connection lost" in badge.inner_text(), timeout=20)
    dashboard.start()
    wait_for(lambda: badge.inner_text() == "live", timeout=30)
