"""The dashboard in a real browser (Playwright driving Debian's Chromium), while tracked
pipelines run in other processes. ``UPDATE_DASHBOARD_SCREENSHOT=1`` also saves the overview to
docs/dashboard.png."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.browser import Dashboard, browser_page, dashboard_env, served
from tests.helpers import start_script, wait_for, write_script

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return dashboard_env(tmp_path)


@pytest.fixture
def dashboard(env: dict[str, str]) -> Iterator[Dashboard]:
    with served(env) as server:
        yield server


@pytest.fixture
def page() -> Iterator[Any]:
    with browser_page(1280) as opened:
        yield opened


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
    page.check("input[name=status][value=FAILED]")
    page.click("form.filters button")
    page.wait_for_url("**/history?**")
    statuses = page.locator("tr.run").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses == ["FAILED", "FAILED"]
    page.fill("input[name=stage]", "OTHER")
    page.uncheck("input[name=status][value=FAILED]")
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
    wait_for(lambda: "dashboard unreachable" in badge.inner_text(), timeout=20)
    dashboard.start()
    wait_for(lambda: badge.inner_text() == "live", timeout=30)
