"""The dashboard's refresh never fights the user: in a real browser (Playwright driving
Debian's Chromium), while a tracked pipeline runs in another process, a selection, the
keyboard focus and the log box's scroll position survive ten refreshes; columns line up
across stages and stay put; a finished run's page stops asking; screen readers hear status
changes only; and all of it runs under the pages' Content-Security-Policy."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import Dashboard, browser_page, dashboard_env, served
from tests.helpers import start_script, write_script

# Two stages whose contents differ in width (a long task name and message in one, a short
# one in the other), so that columns sized by their contents would not line up.
LONG_TASK = "load the census tables for every state and county"
PIPELINE = """
import logging, sys, time, tasker

logging.basicConfig(filename=sys.argv[1], level=logging.INFO, format="%(message)s")
log = logging.getLogger("job")
steps, pause = int(sys.argv[2]), float(sys.argv[3])
tasker.register_tasks([
    {"stage": "FIRST", "name": "LONG_TASK", "stage_order": 1, "task_order": 1},
    {"stage": "SECOND", "name": "x", "stage_order": 2, "task_order": 1},
])

with tasker.task("SECOND", "x"):
    pass

@tasker.task(stage="FIRST", name="LONG_TASK")
def slow():
    for i in range(300):
        log.info("warming up, line %d of 300", i)
    for i in tasker.track(range(steps), name="rows of the biggest table of them all"):
        log.info("row %d", i)
        time.sleep(pause)

slow()
""".replace("LONG_TASK", LONG_TASK)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "logs").mkdir()
    # The run page shows the log.
    return dashboard_env(tmp_path, TASKER_DASHBOARD_LOG_ROOTS=str(tmp_path / "logs"))


@pytest.fixture
def dashboard(env: dict[str, str]) -> Iterator[Dashboard]:
    with served(env) as server:
        yield server


@pytest.fixture
def page() -> Iterator[Any]:
    with browser_page(1400) as opened:
        yield opened


class Pipeline:
    """The pipeline above in its own process: ``steps`` items, ``pause`` seconds each."""

    def __init__(self, tmp_path: Path, env: dict[str, str], steps: int, pause: float) -> None:
        script = write_script(tmp_path, PIPELINE, "pipeline.py")
        log = tmp_path / "logs" / "pipeline.log"
        self.proc = start_script(script, env, str(log), str(steps), str(pause))

    def stop(self) -> None:
        """End it (by its PID) if it still runs; a tracked run ends CANCELLED on SIGTERM."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=30)


@pytest.fixture
def pipeline(tmp_path: Path, env: dict[str, str]) -> Iterator[Pipeline]:
    """A pipeline that runs for about 40 s: longer than any test below needs."""
    running = Pipeline(tmp_path, env, steps=200, pause=0.2)
    try:
        yield running
    finally:
        running.stop()


class Refreshes:
    """Counts the page's requests and answers for its live part."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.requests = 0
        self.answers = 0
        page.on("request", self._request)
        page.on("response", self._response)

    def _request(self, request: Any) -> None:
        if "/fragments/" in request.url:
            self.requests += 1

    def _response(self, response: Any) -> None:
        if "/fragments/" in response.url and response.ok:
            self.answers += 1

    def wait(self, count: int = 10, timeout: float = 40.0) -> None:
        """Until ``count`` more answers came, and the page had a moment to morph itself into
        the last one. The browser's events are handled only while Playwright waits, hence
        wait_for_timeout rather than sleep."""
        target = self.answers + count
        deadline = time.monotonic() + timeout
        while self.answers < target:
            if time.monotonic() > deadline:
                pytest.fail(f"{self.answers} refreshes, {target} expected in {timeout} s")
            self.page.wait_for_timeout(100)
        self.page.wait_for_timeout(300)


def until(page: Any, condition: Any, timeout: float = 40.0) -> Any:
    """``condition()`` once true, waited for at most ``timeout`` seconds (the browser's
    events handled meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        page.wait_for_timeout(100)


def _api(dashboard: Dashboard, path: str) -> Any:
    with urllib.request.urlopen(dashboard.url + path, timeout=10) as response:
        return json.loads(response.read())


def _live_run(dashboard: Dashboard, page: Any) -> str:
    """The id of the long task's run, once it is RUNNING with its log written."""

    def running() -> str | None:
        for task in _api(dashboard, "/api/overview")["tasks"]:
            if task["task_name"] == LONG_TASK and task["status"] == "RUNNING":
                return str(task["run_id"])
        return None

    return str(until(page, running))


def _items_done(page: Any) -> float:
    bar = page.locator('h2:has-text("Subtasks") + table [role=progressbar]').first
    return float(bar.get_attribute("aria-valuenow") or 0)


def test_a_selected_run_id_stays_selected_across_ten_refreshes(
    dashboard: Dashboard, page: Any, pipeline: Pipeline
) -> None:
    run_id = _live_run(dashboard, page)
    page.goto(f"{dashboard.url}/runs/{run_id}")
    refreshes = Refreshes(page)
    cell = page.locator("table.fields tr", has=page.locator("th", has_text="run_id")).locator("td")
    cell.select_text()
    assert page.evaluate("getSelection().toString()") == run_id
    before = _items_done(page)
    refreshes.wait(10)
    assert _items_done(page) > before  # the page did change meanwhile
    assert page.evaluate("getSelection().toString()") == run_id


def test_keyboard_focus_stays_on_its_link_across_ten_refreshes(
    dashboard: Dashboard, page: Any, pipeline: Pipeline
) -> None:
    _live_run(dashboard, page)
    page.goto(dashboard.url + "/")
    refreshes = Refreshes(page)
    link = page.locator(f'tr.task[data-task="{LONG_TASK}"] td:first-child a')
    link.focus()
    page.evaluate("window.__focused = document.activeElement")
    assert page.evaluate("document.activeElement.textContent") == LONG_TASK
    row = page.locator(f'tr.task[data-task="{LONG_TASK}"] [role=progressbar]')
    before = float(row.get_attribute("aria-valuenow") or 0)
    refreshes.wait(10)
    assert float(row.get_attribute("aria-valuenow") or 0) > before  # the row did change
    assert page.evaluate("document.activeElement === window.__focused")
    assert page.evaluate("document.activeElement.textContent") == LONG_TASK
    # And the keyboard goes on from there: Tab moves to the next link, not to the page's top.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('tr.task') !== null")


def test_the_log_box_keeps_its_scroll_position_across_ten_refreshes(
    dashboard: Dashboard, page: Any, pipeline: Pipeline
) -> None:
    run_id = _live_run(dashboard, page)
    page.goto(f"{dashboard.url}/runs/{run_id}")
    refreshes = Refreshes(page)
    log = page.locator("pre.log")
    assert log.evaluate("e => e.scrollHeight > e.clientHeight + 400")  # it scrolls
    assert log.evaluate("e => { e.scrollTop = 400; return e.scrollTop }") == 400
    lines = log.inner_text().count("\n")
    refreshes.wait(10)
    assert log.inner_text().count("\n") > lines  # new lines came in meanwhile
    assert log.evaluate("e => e.scrollTop") == 400


def _column_lefts(page: Any) -> list[list[float]]:
    """For each stage, the left edge of each column (its header cell), in pixels."""
    lefts: list[list[float]] = page.evaluate(
        """() => [...document.querySelectorAll('section.stage')].map(
            s => [...s.querySelectorAll('thead th')].map(th => th.getBoundingClientRect().left))"""
    )
    return lefts


def test_columns_line_up_across_stages_and_stay_put(
    dashboard: Dashboard, page: Any, pipeline: Pipeline
) -> None:
    _live_run(dashboard, page)
    page.goto(dashboard.url + "/")
    refreshes = Refreshes(page)
    seen = []
    for _ in range(10):
        refreshes.wait(1)
        first, second = _column_lefts(page)
        assert len(first) == len(second) == 8
        assert first == pytest.approx(second, abs=0.5)  # the same column in both stages
        seen.append(first)
    for lefts in seen[1:]:
        assert lefts == pytest.approx(seen[0], abs=0.5)  # no column moved


def test_a_finished_run_page_asks_for_nothing(
    dashboard: Dashboard, page: Any, tmp_path: Path, env: dict[str, str]
) -> None:
    short = Pipeline(tmp_path, env, steps=30, pause=0.1)
    try:
        run_id = _live_run(dashboard, page)
        refreshes = Refreshes(page)
        page.goto(f"{dashboard.url}/runs/{run_id}")
        until(page, lambda: refreshes.answers >= 2)  # a live run's page asks every second
        until(page, lambda: "COMPLETED" in page.locator("h1").inner_text())
        page.wait_for_timeout(500)
        asked = refreshes.requests
        page.wait_for_timeout(3500)
        assert refreshes.requests == asked  # the run ended: the page stopped asking
        assert "not refreshing" in page.locator("#connection").inner_text()
        # A run already finished when its page opens: not one request.
        finished = _api(dashboard, "/api/runs?stage=SECOND&task=x")["runs"][0]["run_id"]
        page.goto(f"{dashboard.url}/runs/{finished}")
        asked = refreshes.requests
        page.wait_for_timeout(3500)
        assert refreshes.requests == asked
        assert "COMPLETED" in page.locator("h1").inner_text()
    finally:
        short.stop()
    assert short.proc.returncode == 0


def test_screen_readers_hear_status_changes_not_the_table(
    dashboard: Dashboard, page: Any, tmp_path: Path, env: dict[str, str]
) -> None:
    page.goto(dashboard.url + "/")
    refreshes = Refreshes(page)
    refreshes.wait(1)
    short = Pipeline(tmp_path, env, steps=15, pause=0.1)
    try:
        region = page.locator("[aria-live]")
        assert region.count() == 1 and region.get_attribute("aria-live") == "polite"
        until(page, lambda: f"{LONG_TASK}: COMPLETED" in region.inner_text())
    finally:
        short.stop()
    text = region.inner_text()
    assert len(text) < 300, text  # a sentence, not the table
    assert region.locator("*").count() == 0  # text only: no table, rows or links
    assert "Pipeline" not in text and "as of" not in text
    # The region that is refreshed is not itself read out.
    live = page.locator("#live")
    assert live.evaluate(
        """e => {
            const announcing = n => n.hasAttribute('aria-live')
                || ['status', 'log', 'alert'].includes(n.getAttribute('role'));
            for (let n = e; n; n = n.parentElement) { if (announcing(n)) return false; }
            return ![...e.querySelectorAll('*')].some(announcing);
        }"""
    )


def test_the_pages_run_under_their_content_security_policy(
    dashboard: Dashboard, page: Any, pipeline: Pipeline
) -> None:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(dashboard.url) else elsewhere.append(r.url),
    )
    run_id = _live_run(dashboard, page)
    for path in ("/", f"/runs/{run_id}", "/history"):
        response = page.goto(dashboard.url + path)
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-eval" not in policy
        assert "default-src 'none'" in policy
        page.wait_for_timeout(2500)  # a couple of refreshes
    assert page.evaluate("typeof htmx !== 'undefined' && typeof Idiomorph !== 'undefined'")
    assert problems == [] and elsewhere == []
