"""SQLite specifics: the database file (created on first use, never by read commands), its
busy timeout, WAL, and transactions that take the write lock up front."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from tasker.config import Config
from tasker.errors import ConfigError, DatabaseError
from tasker.store.creation import creating_allowed
from tasker.store.errors import is_transient

__all__ = ["missing_database", "sqlite_engine"]


def missing_database(config: Config) -> DatabaseError | None:
    """The error to raise when ``config`` names an SQLite file that does not exist and
    databases may not be created here (see never_create_databases()); else None."""
    if creating_allowed() or config.driver != "sqlite":
        return None
    path = config.path or ":memory:"
    if path == ":memory:" or path.startswith("file:") or Path(path).expanduser().is_file():
        return None
    source = config.sources.get("path", "default")
    given = "the default location" if source == "default" else source
    return DatabaseError(
        f"there is no tasker database at {path} (SQLite, from {given}): create it with "
        "`tasker init` (or by running a tracked task) with this configuration, or point "
        "TASKER_DB_URL or database.path at the existing one"
    )


def sqlite_engine(config: Config) -> Engine:
    path = config.path or ":memory:"
    memory = path == ":memory:" or path.startswith("file::memory:")
    missing = missing_database(config)
    if missing is not None:
        raise missing
    if not memory and creating_allowed():
        try:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the folder for the SQLite database {path}: {exc.strerror}"
            ) from None
    busy_ms = round(config.lock_timeout * 1000)
    url = config.sqlalchemy_url()
    connect_args: dict[str, Any] = {"timeout": config.lock_timeout, "check_same_thread": False}
    if not memory:
        full = str(Path(path).expanduser())
        if creating_allowed():
            url = url.set(database=full)
        else:
            # mode=rw: read and write (the reaper writes) a file that exists, never create
            # one, even when the file goes away after the check above.
            absolute = os.path.abspath(full)
            url = url.set(database=f"file:{quote(absolute)}", query={"mode": "rw", "uri": "true"})
    kwargs: dict[str, Any] = {"connect_args": connect_args, "enable_from_linting": False}
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cur.execute("PRAGMA foreign_keys = ON")
        if not memory:
            # Switching to WAL needs a moment of exclusive access; many processes opening a
            # new file together may find it busy, so try for a while.
            deadline = time.monotonic() + config.lock_timeout
            while True:
                try:
                    cur.execute("PRAGMA journal_mode = WAL")
                    break
                except Exception as exc:  # sqlite3.OperationalError: locked or busy
                    if not is_transient(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock up front: a deferred transaction that later needs to write
        # can fail at once with "database is locked" instead of waiting its turn.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
