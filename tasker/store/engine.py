"""Engines tuned per backend, and the translation of driver errors into tasker's own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import StaticPool

from tasker.config import Config
from tasker.errors import ConfigError, DatabaseError

__all__ = ["describe_target", "is_transient", "make_engine", "wrap_db_error"]

# Each wait for SQLite's lock; the store retries for longer (SqlStore.retry_seconds).
SQLITE_BUSY_TIMEOUT_MS = 5_000
CONNECT_TIMEOUT_S = 10


def describe_target(config: Config) -> str:
    """Where the database is, for error messages: never the password."""
    if config.driver == "sqlite":
        return f"SQLite database {config.path}"
    return (
        f"{config.driver} database {config.dbname!r} at {config.host}:{config.port} "
        f"as user {config.user!r}"
    )


def _scrub(text: str, config: Config) -> str:
    if config.password:
        text = text.replace(config.password, "***")
    return text


def wrap_db_error(exc: BaseException, config: Config, doing: str) -> DatabaseError:
    """A DatabaseError saying what failed and where, with the driver's own reason."""
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first_line = (
        str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    )
    return DatabaseError(
        _scrub(f"{doing} failed on {describe_target(config)}: {first_line}", config),
        unavailable=is_unavailable(exc),
    )


def is_unavailable(exc: BaseException) -> bool:
    """The database is away or busy (connection refused or lost, login refused, locked,
    disk full), rather than refusing what was sent: worth keeping the events and retrying."""
    return is_transient(exc) or isinstance(exc, (OperationalError, InterfaceError))


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: locks, deadlocks, serialization failures, dropped connections."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", exc)
    if type(orig).__module__ == "sqlite3" and type(orig).__name__ == "OperationalError":
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    # MySQL: 1213 deadlock, 1205 lock wait timeout.
    return bool(args) and args[0] in (1213, 1205)


def _sqlite_engine(config: Config) -> Engine:
    path = config.path or ":memory:"
    memory = path == ":memory:" or path.startswith("file::memory:")
    if not memory:
        try:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the folder for the SQLite database {path}: {exc.strerror}"
            ) from None
    url = config.sqlalchemy_url()
    if not memory:
        url = url.set(database=str(Path(path).expanduser()))
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        "enable_from_linting": False,
    }
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        if not memory:
            # Switching to WAL needs a moment of exclusive access; many processes opening a
            # new file together may find it busy, so try for a while.
            deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
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


def make_engine(config: Config) -> Engine:
    """An engine for ``config``; a missing driver package is a clear ConfigError."""
    if config.driver == "sqlite":
        return _sqlite_engine(config)
    url = config.sqlalchemy_url()
    kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        # The latest-run lookup is a correlated subquery in a join condition, which the
        # cartesian-product linter misreads.
        "enable_from_linting": False,
    }
    if config.driver == "postgresql":
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "tasker",
        }
    else:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S, "charset": "utf8mb4"}
        kwargs["isolation_level"] = "READ COMMITTED"
    try:
        return create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        extra = "postgres" if config.driver == "postgresql" else "mysql"
        raise ConfigError(
            f"the {config.driver} driver ({exc.name}) is not installed: "
            f"pip install 'pipeline-tasker[{extra}]'"
        ) from None
    except OperationalError as exc:  # pragma: no cover - create_engine does not connect
        raise wrap_db_error(exc, config, "connecting") from None
