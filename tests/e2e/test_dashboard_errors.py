"""The dashboard is honest about what is away: its PostgreSQL server (a private one the test
stops and starts) or the dashboard itself. ``/healthz`` checks the database, ``/metrics``
answers in the exposition format even then, a page loaded during an outage says so and tries
again by itself, and an open page keeps its data, dimmed, under a banner naming which of the
two does not answer — until it does again."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import Dashboard, browser_page, dashboard_env, served
from tests.helpers import PrivateServer

# An outage must show within a few refreshes, and recovery too.
SHOWN_WITHIN = 15.0


@pytest.fixture
def postgres() -> Iterator[PrivateServer]:
    server = PrivateServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def dashboard(postgres: PrivateServer, tmp_path: Path) -> Iterator[Dashboard]:
    env = dashboard_env(
        tmp_path,
        TASKER_DB_URL=postgres.url,
        TASKER_CONNECT_TIMEOUT="2",
        TASKER_STATEMENT_TIMEOUT="2",
    )
    env.pop("TASKER_DB_PATH")
    run = [sys.executable, "-c", "import tasker\nwith tasker.task('ETL', 'load'): pass"]
    subprocess.run(run, env=env, check=True, timeout=60)
    with served(env) as server:
        yield server


def _get(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def _eventually(check: Any, timeout: float = SHOWN_WITHIN) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not so within {timeout} s: {check.__doc__ or check}")
        time.sleep(0.2)


def test_healthz_metrics_and_a_fresh_page_say_the_database_is_away(
    postgres: PrivateServer, dashboard: Dashboard
) -> None:
    assert _get(dashboard.url + "/healthz")[:2] == (200, "ok")
    status, body, headers = _get(dashboard.url + "/metrics")
    assert status == 200 and "tasker_database_up 1\n" in body, body
    assert 'tasker_runs{status="COMPLETED"} 1' in body
    postgres.stop()
    # The answer is kept a second; then one check, bounded by connect_timeout (2 s) and
    # statement_timeout (2 s) plus 1 s.
    status, body, _ = _eventually(lambda: (a := _get(dashboard.url + "/healthz"))[0] == 503 and a)
    assert body.startswith("database unreachable: "), body
    status, body, headers = _get(dashboard.url + "/metrics")
    assert status == 503 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert body.splitlines()[0].startswith("# tasker cannot read the database: ")
    assert "tasker_database_up 0\n" in body and "<" not in body, body
    status, body, headers = _get(dashboard.url + "/")
    assert status == 503 and headers["retry-after"] == "5"
    assert "The database is unreachable" in body and "The dashboard is running" in body
    assert '<meta http-equiv="refresh" content="5">' in body
    status, body, _ = _get(dashboard.url + "/api/overview")
    assert status == 503 and body.startswith('{"error": ')
    postgres.start()
    _eventually(lambda: _get(dashboard.url + "/healthz")[:2] == (200, "ok"))
    assert _get(dashboard.url + "/")[0] == 200


def test_an_open_page_dims_its_data_and_names_what_is_away_then_recovers(
    postgres: PrivateServer, dashboard: Dashboard
) -> None:
    with browser_page(1400) as page:
        page.goto(dashboard.url + "/")
        page.wait_for_selector("#connection.ok")
        banner, live = page.locator("#banner"), page.locator("#live")
        assert banner.is_hidden()
        shown = live.inner_text()
        assert "load" in shown

        def waited(condition: Any) -> None:
            deadline = time.monotonic() + SHOWN_WITHIN
            while not condition():
                if time.monotonic() > deadline:
                    pytest.fail(f"not shown within {SHOWN_WITHIN} s: {banner.inner_text()!r}")
                page.wait_for_timeout(200)

        # The database stops: the dashboard answers 503, the page says the database is away.
        postgres.stop()
        waited(lambda: banner.is_visible() and "database is unreachable" in banner.inner_text())
        text = banner.inner_text()
        assert "the dashboard answers" in text and "The data below is from" in text, text
        assert "stale" in (live.get_attribute("class") or "").split()
        assert live.inner_text() == shown  # the data is kept, not replaced by an error
        assert "database unreachable" in page.locator("#connection").inner_text()
        # It comes back: banner gone, data no longer dimmed, live again.
        postgres.start()
        waited(lambda: banner.is_hidden())
        waited(lambda: "stale" not in (live.get_attribute("class") or "").split())
        page.wait_for_selector("#connection.ok")
        # The dashboard itself stops: no answer at all, which the banner tells apart.
        dashboard.stop()
        waited(lambda: banner.is_visible() and "dashboard is unreachable" in banner.inner_text())
        assert "stale" in (live.get_attribute("class") or "").split()
        dashboard.start()
        waited(lambda: banner.is_hidden())
        page.wait_for_selector("#connection.ok")


def test_a_bad_filter_keeps_the_form_with_the_reason_beside_it(
    dashboard: Dashboard, tmp_path: Path
) -> None:
    status, body, _ = _get(dashboard.url + "/history?stage=ETL&since=yesterday")
    assert status == 400
    assert '<form class="filters"' in body
    assert 'name="stage" value="ETL"' in body  # as it was filled in
    assert 'name="since" value="yesterday" placeholder="7d, 12h or 2024-05-01"' in body
    assert 'aria-invalid="true"' in body.split('name="since"')[1].split(">")[0]
    assert 'role="alert">since: expected an age like 30s' in body
    assert body.count('aria-invalid="true"') == 1
    with browser_page(390) as page:  # the form is still usable: fixed, it filters
        page.goto(dashboard.url + "/history?since=yesterday")
        page.fill('input[name="since"]', "7d")
        page.click("form.filters button")
        page.wait_for_selector("tr.run")
        assert page.locator(".filter-problem").count() == 0
