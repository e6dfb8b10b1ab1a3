"""The dashboard fits its reader (Playwright driving Debian's Chromium): no horizontal scroll
at 390 px, where every table is a list of cards; light or dark as the browser prefers, with
readable statuses in both; times in the browser's own zone, with how long ago, after every
live refresh too; one search box, "/" to reach it, status chips, and an anchor per stage."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.browser import Dashboard, chromium_browser, dashboard_env, served
from tests.helpers import start_script, wait_for, write_script

LONG_TASK = "load_the_federal_communications_commission_licence_tables_for_every_county"
LONG_STAGE = "NIGHTLY_REBUILD_OF_EVERY_DERIVED_TABLE_AND_REPORT"
LONG_MESSAGE = "could not reach the upstream mirror at " + "/very/deep/path" * 12
PIPELINE = f"""
import tasker
tasker.register_tasks([
    {{"stage": "STATIC", "name": "FCC_load", "stage_order": 1, "task_order": 1}},
    {{"stage": "STATIC", "name": {LONG_TASK!r}, "stage_order": 1, "task_order": 2}},
    {{"stage": "STATIC", "name": "merge results", "stage_order": 1, "task_order": 3}},
    {{"stage": {LONG_STAGE!r}, "name": "fcc_report", "stage_order": 2, "task_order": 1}},
    {{"stage": {LONG_STAGE!r}, "name": "never run", "stage_order": 2, "task_order": 2}},
])
for _ in range(3):
    with tasker.task("STATIC", "FCC_load"):
        tasker.subtask_start("rows", items_total=10)
        tasker.subtask_increment(10)
try:
    with tasker.task("STATIC", {LONG_TASK!r}):
        raise OSError({LONG_MESSAGE!r})
except OSError:
    pass
run = tasker.task_start("STATIC", "merge results")
tasker.task_update("CANCELLED", message="stopped by the operator", run_id=run)
run = tasker.task_start({LONG_STAGE!r}, "fcc_report")
tasker.task_update("SKIPPED", message="nothing new today", run_id=run)
"""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    tmp_path = tmp_path_factory.mktemp("fit")
    env = dashboard_env(tmp_path)
    with served(env) as server:
        script = write_script(tmp_path, PIPELINE)
        assert subprocess.run([sys.executable, str(script)], env=env, timeout=60).returncode == 0
        server.env = env
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium_browser() as opened:
        yield opened


def _api(dashboard: Dashboard, path: str) -> Any:
    with urllib.request.urlopen(dashboard.url + path, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """Opens a page of its own (a context of its own: its zone, colour scheme and size)."""
    contexts: list[Any] = []

    def open_one(width: int = 390, height: int = 844, **options: Any) -> Any:
        options.setdefault("locale", "en-US")
        context = browser.new_context(viewport={"width": width, "height": height}, **options)
        contexts.append(context)
        return context.new_page()

    yield open_one
    for context in contexts:
        context.close()


def _pages(dashboard: Dashboard) -> dict[str, str]:
    runs = _api(dashboard, "/api/runs")["runs"]
    failed = next(r for r in runs if r["status"] == "FAILED")
    loaded = next(r for r in runs if r["task_name"] == "FCC_load")  # with a subtask
    task = f"/tasks/STATIC/{quote(LONG_TASK)}"
    return {
        "overview": "/",
        "history": "/history",
        "task": task,
        "run": f"/runs/{failed['run_id']}",
        "run with subtasks": f"/runs/{loaded['run_id']}",
    }


# ---------------------------------------------------------------------------- layout


def test_at_390_px_no_page_scrolls_sideways_and_tables_are_cards(
    dashboard: Dashboard, open_page: Any
) -> None:
    page = open_page(390, 844)
    for name, path in _pages(dashboard).items():
        page.goto(dashboard.url + path)
        page.wait_for_selector("time[data-shown]")
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1] == 390, (name, widths)
        # Each row a card: the header row out of sight, each cell saying its column.
        cells = page.evaluate(
            """() => [...document.querySelectorAll(
                    'table.runs td, table.tasks td, table.subtasks td')]
                .filter(td => td.getBoundingClientRect().height > 0).map(td => [
                    td.dataset.label, getComputedStyle(td, '::before').content,
                    getComputedStyle(td.closest('tr')).display])"""
        )
        if name != "run":
            assert cells and all(c[1] == json.dumps(c[0]) and c[2] == "block" for c in cells)
            header = page.locator("thead").first.bounding_box()
            assert header is not None and header["width"] <= 1
    page.goto(dashboard.url + "/")
    labels = page.locator('tr.task[data-task="FCC_load"] td[data-label]').evaluate_all(
        "tds => tds.filter(td => td.offsetHeight).map(td => td.dataset.label)"
    )
    assert labels == ["Task", "Status", "Progress", "Subtask", "Host", "Started", "Duration"]


def test_at_1400_px_the_tables_stay_tables(dashboard: Dashboard, open_page: Any) -> None:
    page = open_page(1400, 900)
    for name, path in _pages(dashboard).items():
        page.goto(dashboard.url + path)
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1] == 1400, (name, widths)
    page.goto(dashboard.url + "/history")
    assert page.locator("table.runs tr.run").first.evaluate("r => getComputedStyle(r).display") == (
        "table-row"
    )
    assert page.locator("table.runs thead th").count() == 9
    assert (page.locator("table.runs thead th").first.bounding_box() or {})["width"] > 20


# ---------------------------------------------------------------------------- colours


def _luminance(css: str) -> float:
    """The relative luminance (WCAG) of an ``rgb(...)`` colour."""
    parts = css[css.index("(") + 1 : css.index(")")].replace(",", " ").split()
    channels = []
    for value in parts[:3]:
        c = float(value) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


STATUSES = ["NOT_STARTED", "STARTED", "RUNNING", "COMPLETED", "FAILED", "SKIPPED", "CANCELLED"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_theme_follows_the_browser_and_statuses_stay_readable(
    dashboard: Dashboard, open_page: Any, scheme: str
) -> None:
    page = open_page(1280, 900, color_scheme=scheme)
    page.goto(dashboard.url + "/history")
    body = page.evaluate(
        "() => { const s = getComputedStyle(document.body); return [s.backgroundColor, s.color] }"
    )
    background, text = (_luminance(c) for c in body)
    if scheme == "dark":
        assert background < 0.05 and text > 0.7, body
    else:
        assert background > 0.9 and text < 0.05, body
    # Every status badge (the chips show one of each) and link, against what it is on.
    colours = page.evaluate(
        """() => [...document.querySelectorAll('label.chip .badge')].map(b => [
            b.textContent, getComputedStyle(b).color, getComputedStyle(b).backgroundColor])"""
    )
    assert [c[0] for c in colours] == STATUSES
    for status, fg, bg in colours:
        assert _contrast(fg, bg) >= 4.5, (scheme, status, fg, bg)
    link = page.locator("table.runs a").first.evaluate("a => getComputedStyle(a).color")
    page_bg = body[0]
    assert _contrast(link, page_bg) >= 4.5, (scheme, link, page_bg)
    muted = page.locator("p.count").evaluate("e => getComputedStyle(e).color")
    assert _contrast(muted, page_bg) >= 4.5, (scheme, muted, page_bg)


# ---------------------------------------------------------------------------- times


def _expected(when: datetime, zone: str, name: str) -> str:
    local = when.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M:%S} {name}"


def _zone_name(when: datetime, zone: str) -> str:
    """The zone's short name as Chromium's Intl gives it in en-US: EST/EDT for New York,
    GMT+9 for Tokyo (CLDR has no English abbreviation for it)."""
    return str(when.astimezone(ZoneInfo(zone)).tzname()) if zone.startswith("America") else "GMT+9"


def test_times_are_the_browsers_local_times_with_their_zone_and_age(
    dashboard: Dashboard, open_page: Any
) -> None:
    newest = _api(dashboard, "/api/runs?limit=1")["runs"][0]
    started = datetime.fromisoformat(newest["start_time"]).replace(microsecond=0)
    shown = {}
    for zone in ("America/New_York", "Asia/Tokyo"):
        page = open_page(1280, 900, timezone_id=zone)
        page.goto(dashboard.url + "/history")
        first = page.locator("tr.run").first.locator("td[data-label=Started] time")
        page.wait_for_selector("time[data-shown]")
        text = first.inner_text()
        expected = _expected(started, zone, _zone_name(started, zone))
        assert text.startswith(expected + " ("), (zone, text)
        assert text.endswith(" ago)") or text.endswith("(now)"), text
        # The UTC text the server wrote stays as the tooltip; the attribute is UTC.
        assert first.get_attribute("title") == f"{started:%Y-%m-%d %H:%M:%S} UTC"
        assert first.get_attribute("datetime") == f"{started:%Y-%m-%dT%H:%M:%S}Z"
        # Since and until say which zone they are read in, and the form sends it.
        assert page.locator("[data-zone-label]").all_inner_texts() == [f"({zone})"] * 2
        assert page.locator("input[name=tz]").input_value() == zone
        shown[zone] = text
    assert shown["America/New_York"] != shown["Asia/Tokyo"]


def test_how_long_ago_is_kept_up_to_date(dashboard: Dashboard, open_page: Any) -> None:
    newest = _api(dashboard, "/api/runs?limit=1")["runs"][0]
    started = datetime.fromisoformat(newest["start_time"]).replace(microsecond=0)
    page = open_page(1280, 900, timezone_id="Asia/Tokyo")
    page.clock.install(time=started + timedelta(seconds=10))
    page.goto(dashboard.url + "/history")
    first = page.locator("tr.run").first.locator("td[data-label=Started] time .ago")
    page.wait_for_selector("time[data-shown]")
    assert first.inner_text() in (" (10 seconds ago)", " (11 seconds ago)")
    page.clock.fast_forward("03:00")
    page.wait_for_timeout(200)
    assert first.inner_text() == " (3 minutes ago)"
    page.clock.fast_forward("02:00:00")
    page.wait_for_timeout(200)
    assert first.inner_text() == " (2 hours ago)"


def test_since_is_read_in_the_browsers_zone(dashboard: Dashboard, open_page: Any) -> None:
    zone = "Asia/Tokyo"
    page = open_page(1280, 900, timezone_id=zone)
    now = datetime.now(ZoneInfo(zone)).replace(tzinfo=None, microsecond=0)
    for since, count in ((now - timedelta(hours=1), 6), (now + timedelta(hours=1), 0)):
        page.goto(dashboard.url + "/history")
        page.fill("input[name=since]", since.isoformat(sep=" "))
        page.click("form.filters button")
        page.wait_for_url("**since=**")
        assert "tz=Asia%2FTokyo" in page.url
        assert page.locator("tr.run").count() == count, since
    # In UTC (the zone of a form sent without the page's script), the same text names a
    # time nine hours later: no run started since.
    stamp = quote((now - timedelta(hours=1)).isoformat(sep=" "))
    assert _api(dashboard, f"/api/runs?since={stamp}")["runs"] == []
    assert len(_api(dashboard, f"/api/runs?since={stamp}&tz=Asia/Tokyo")["runs"]) == 6


TICKS = """
import time, tasker
for i in range(40):
    with tasker.task("LIVE", "tick"):
        time.sleep(1.0)
"""


def test_times_of_a_live_refresh_are_shown_local_too(open_page: Any, tmp_path: Path) -> None:
    env = dashboard_env(tmp_path)
    with served(env) as dashboard:
        _live_times(dashboard, open_page(1280, 900, timezone_id="America/New_York"), tmp_path)


def _live_times(dashboard: Dashboard, page: Any, tmp_path: Path) -> None:
    proc = start_script(write_script(tmp_path, TICKS, "ticks.py"), dashboard.env)
    try:
        page.goto(dashboard.url + "/?q=tick")
        page.evaluate(
            """() => { window.__utc = 0; window.__swaps = 0;
            document.addEventListener('htmx:afterSwap', () => { window.__swaps += 1;
                if ([...document.querySelectorAll('time')].some(t => t.textContent.includes('UTC')))
                    window.__utc += 1; }); }"""
        )
        cell = page.locator('tr.task[data-task="tick"] time')
        seen: set[str] = set()

        def new_runs() -> bool:
            page.wait_for_timeout(200)
            if cell.count():
                seen.add(str(cell.get_attribute("datetime")))
            return len(seen) >= 3

        wait_for(new_runs, timeout=30)  # three runs, each shown by a refresh
        iso = str(cell.get_attribute("datetime"))
        started = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        zone = str(_zone_name(started, "America/New_York"))
        expected = _expected(started, "America/New_York", zone)
        wait_for(lambda: page.wait_for_timeout(100) or cell.inner_text().startswith(expected))
        assert page.evaluate("window.__swaps") >= 3 and page.evaluate("window.__utc") == 0
        stamp = page.locator("p.stamp time")
        assert stamp.inner_text().endswith(" " + zone)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# ---------------------------------------------------------------------------- search


def _tasks(page: Any) -> list[str]:
    return [
        str(n) for n in page.locator("tr.task").evaluate_all("rs => rs.map(r => r.dataset.task)")
    ]


def test_slash_focuses_one_search_box_that_ignores_case(
    dashboard: Dashboard, open_page: Any
) -> None:
    page = open_page(1280, 900)
    page.goto(dashboard.url + "/")
    assert _tasks(page) == ["FCC_load", LONG_TASK, "merge results", "fcc_report", "never run"]
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("fcc")
    page.keyboard.press("Enter")
    page.wait_for_url("**/?q=fcc")
    assert _tasks(page) == ["FCC_load", "fcc_report"]
    page.wait_for_timeout(2500)  # two refreshes: the same search
    assert _tasks(page) == ["FCC_load", "fcc_report"]
    # A stage filter ignores case too; nothing found says so.
    page.goto(dashboard.url + "/?stage=static")
    assert _tasks(page) == ["FCC_load", LONG_TASK, "merge results"]
    page.goto(dashboard.url + "/?q=nothing%20like%20it")
    assert page.locator("p.empty").inner_text() == (
        "No stage or task name holds what was searched for."
    )
    # In the history, "/" typed into another field is that field's text.
    page.goto(dashboard.url + "/history")
    page.locator("input[name=stage]").focus()
    page.keyboard.type("a/b")
    assert page.locator("input[name=stage]").input_value() == "a/b"
    assert page.evaluate("document.activeElement.name") == "stage"
    page.locator("h1").click()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"


def test_history_search_and_status_chips(dashboard: Dashboard, open_page: Any) -> None:
    page = open_page(390, 844)
    page.goto(dashboard.url + "/history?task=fcc")
    names = page.locator("tr.run td[data-label=Task]").all_inner_texts()
    assert names == ["fcc_report", "FCC_load", "FCC_load", "FCC_load"]
    page.goto(dashboard.url + "/history")
    page.fill("input[name=q]", "LOAD")
    page.check("input[name=status][value=FAILED]")
    page.check("input[name=status][value=COMPLETED]")
    page.click("form.filters button")
    page.wait_for_url("**q=LOAD**")
    rows = page.locator("tr.run").evaluate_all(
        "rs => rs.map(r => [r.dataset.status, r.querySelector('[data-label=Task]').innerText])"
    )
    assert rows == [["FAILED", LONG_TASK]] + [["COMPLETED", "FCC_load"]] * 3
    checked = page.locator("input[name=status]:checked").evaluate_all("i => i.map(e => e.value)")
    assert checked == ["COMPLETED", "FAILED"]  # the form as it was sent
    # A run id's start finds the run.
    run_id = _api(dashboard, "/api/runs?status=CANCELLED")["runs"][0]["run_id"]
    page.goto(dashboard.url + f"/history?q={run_id[:8]}")
    assert page.locator("p.run-ids a").all_inner_texts() == [run_id]


def test_bad_filters_keep_the_form_with_the_reason_beside_the_field(
    dashboard: Dashboard, open_page: Any
) -> None:
    page = open_page(390, 844)
    response = page.goto(dashboard.url + "/history?q=fcc&status=FAILED&status=BOGUS")
    assert response.status == 400
    assert page.locator("#filter-problem").inner_text() == (
        "unknown status 'BOGUS': expected one of " + ", ".join(STATUSES)
    )
    assert page.locator("fieldset.chips").get_attribute("aria-invalid") == "true"
    assert page.locator("input[name=q]").input_value() == "fcc"
    assert page.locator("tr.run").count() == 0
    response = page.goto(dashboard.url + "/?q=" + "x" * 201)
    assert response.status == 400
    assert page.locator("#filter-problem").inner_text() == "search: at most 200 characters, got 201"
    assert page.locator("#search").get_attribute("aria-invalid") == "true"
    assert page.locator("#live[hx-get]").count() == 0  # nothing to refresh
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


# ---------------------------------------------------------------------------- anchors


def _scrolled_to(page: Any, anchor: str) -> bool:
    """The page is scrolled as far towards the element as it goes: to its top, or to the
    page's end when it is the last."""
    return bool(
        page.evaluate(
            """id => { const top = document.getElementById(id).getBoundingClientRect().top;
            const end = document.documentElement.scrollHeight - window.innerHeight;
            return window.scrollY > 0 && (Math.abs(top) < 2 || Math.abs(window.scrollY - end) < 2)
                && top < window.innerHeight }""",
            anchor,
        )
    )


def test_each_stage_has_an_anchor_and_links_to_it(dashboard: Dashboard, open_page: Any) -> None:
    page = open_page(390, 844)
    page.goto(dashboard.url + "/")
    ids = page.locator("section.stage").evaluate_all("ss => ss.map(s => s.id)")
    assert ids == ["stage-STATIC", f"stage-{LONG_STAGE}"]
    jumps = page.locator("nav.jump a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert jumps == ["#stage-STATIC", f"#stage-{LONG_STAGE}"]
    page.locator("nav.jump a").nth(1).click()
    assert page.evaluate("location.hash") == f"#stage-{LONG_STAGE}"
    assert page.locator(f"#stage-{LONG_STAGE}").evaluate("s => s.matches(':target')")
    assert _scrolled_to(page, f"stage-{LONG_STAGE}")
    heading = page.locator(f"#stage-{LONG_STAGE} h2 a.anchor")
    assert heading.get_attribute("href") == f"#stage-{LONG_STAGE}"
    # Opened by its address, the page starts at the stage.
    page.goto(f"{dashboard.url}/?x=1#stage-{LONG_STAGE}")
    assert _scrolled_to(page, f"stage-{LONG_STAGE}")
