"""What the browser tests share: the dashboard in a process of its own, a page of Chromium
(Playwright driving Debian's), and the environment both report into."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.helpers import free_port

playwright_api = pytest.importorskip("playwright.sync_api")
BROWSER_ENV = "TASKER_TEST_BROWSER"


def chromium() -> str:
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


def dashboard_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for the dashboard and the pipelines it shows: one SQLite file, writes
    flushed every 0.2 s, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env.update(
        TASKER_DB_PATH=str(tmp_path / "dash.db"),
        TASKER_CONSOLE="false",
        TASKER_FLUSH_INTERVAL="0.2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **extra,
    )
    return env


@contextmanager
def served(env: dict[str, str]) -> Iterator[Dashboard]:
    """A database made with ``tasker init``, and the dashboard serving it until the block ends."""
    subprocess.run([sys.executable, "-m", "tasker", "init"], env=env, check=True, timeout=60)
    server = Dashboard(env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """A fresh Chromium, closed with the block: for tests that open pages of several kinds
    (time zones, colour schemes, sizes)."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_page(width: int, height: int = 900, **options: Any) -> Iterator[Any]:
    """A page of a fresh Chromium, ``width`` by ``height`` pixels, closed with the block;
    ``options`` for Playwright's new_page (timezone_id, color_scheme, locale ...)."""
    with chromium_browser() as browser:
        yield browser.new_page(viewport={"width": width, "height": height}, **options)
