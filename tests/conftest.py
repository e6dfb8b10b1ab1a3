"""Shared fixtures: an isolated environment for every test, and the ``db`` fixture that runs a
test once per backend (SQLite always; PostgreSQL and MySQL/MariaDB when their test URLs are
set, failing - not skipping - when a URL is set but the server cannot be reached)."""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import tasker
from tasker.runtime import context
from tasker.runtime.recorder import RECORDER

PG_ENV = "TASKER_TEST_POSTGRES_URL"
MYSQL_ENV = "TASKER_TEST_MYSQL_URL"
BACKENDS = ("sqlite", "postgresql", "mysql")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No TASKER_* variables, no config file from the checkout, private XDG folders."""
    for key in list(os.environ):
        if key.startswith("TASKER_") and key not in (PG_ENV, MYSQL_ENV):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.chdir(home / "work")
    RECORDER.reset()
    token = context._current.set(None)
    yield
    context._current.reset(token)
    RECORDER.live_runs.clear()  # runs a test left open are not this process's to end at exit
    context.forget_all()
    RECORDER.reset()


def _server_url(env: str, name: str) -> str:
    url = os.environ.get(env)
    if not url:
        pytest.skip(f"{name} tests need {env} (CI sets it)")
    return url


def _check_reachable(url: str, name: str, env: str) -> None:
    engine = create_engine(_driver_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # the failure itself is the test result
        pytest.fail(f"{env} is set but the {name} server cannot be reached: {exc}")
    finally:
        engine.dispose()


def _driver_url(url: str) -> str:
    u = make_url(url)
    backend = u.drivername.split("+")[0]
    if "+" not in u.drivername:
        u = u.set(
            drivername="postgresql+psycopg" if backend.startswith("postgres") else "mysql+pymysql"
        )
    return u.render_as_string(hide_password=False)


@dataclasses.dataclass
class Backend:
    """One database for one test: how to configure tasker for it, in-process and in children."""

    name: str
    settings: dict[str, Any]
    env: dict[str, str]
    admin_url: str | None = None

    def configure(self, **extra: Any) -> tasker.Config:
        return tasker.configure(**{**self.settings, "console": "false", **extra})

    def scalar(self, sql: str) -> Any:
        """Run raw SQL against the test database (for checks the API does not expose)."""
        store = RECORDER.raw_store
        with store.engine.connect() as conn:
            return conn.execute(text(sql)).scalar()

    def table(self, name: str) -> str:
        schema = self.settings.get("schema")
        return f"{schema}.{name}" if schema else name


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """tasker configured against a fresh, empty database on each backend."""
    name = request.param
    tag = "t" + uuid.uuid4().hex[:12]
    if name == "sqlite":
        path = str(tmp_path / "tasker.db")
        backend = Backend(name, {"path": path}, {"TASKER_DB_PATH": path})
        backend.configure()
        yield backend
        return
    if name == "postgresql":
        url = _server_url(PG_ENV, "PostgreSQL")
        _check_reachable(url, "PostgreSQL", PG_ENV)
        backend = Backend(
            name,
            {"url": url, "schema": tag},
            {"TASKER_DB_URL": url, "TASKER_DB_SCHEMA": tag},
        )
        backend.configure()
        try:
            yield backend
        finally:
            RECORDER.live_runs.clear()
            RECORDER.reset()
            engine = create_engine(_driver_url(url))
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {tag} CASCADE"))
            engine.dispose()
        return
    url = _server_url(MYSQL_ENV, "MySQL/MariaDB")
    _check_reachable(url, "MySQL/MariaDB", MYSQL_ENV)
    admin = create_engine(_driver_url(url))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE {tag} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    test_url = make_url(url).set(database=tag).render_as_string(hide_password=False)
    backend = Backend(name, {"url": test_url}, {"TASKER_DB_URL": test_url})
    backend.configure()
    try:
        yield backend
    finally:
        RECORDER.live_runs.clear()
        RECORDER.reset()
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {tag}"))
        admin.dispose()


@pytest.fixture
def child_env(db: Backend) -> dict[str, str]:
    """An environment for a child Python process that reports into the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env.update(db.env)
    env["TASKER_CONSOLE"] = "false"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


PYTHON = sys.executable
