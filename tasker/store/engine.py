"""Engines tuned per backend, and the translation of driver errors into tasker's own.

Every wait on the database is bounded, on every driver, from the ``tracking:`` settings
``connect_timeout``, ``statement_timeout`` and ``lock_timeout``:

- PostgreSQL (psycopg): ``connect_timeout``; TCP keepalives and ``tcp_user_timeout``, so the
  kernel gives up on a peer that vanished; server-side ``statement_timeout``, ``lock_timeout``
  and ``idle_in_transaction_session_timeout`` (:mod:`tasker.store.timeouts`); and a watchdog
  (:mod:`tasker.store.watchdog`) for the one wait libpq cannot bound by itself: an answer
  that never comes over a connection that stays open.
- MySQL/MariaDB (PyMySQL): ``connect_timeout``, socket ``read_timeout``/``write_timeout``,
  TCP keepalives, and server-side lock waits and statement time (:mod:`tasker.store.timeouts`).
- SQLite: the busy timeout (``lock_timeout``), in the driver and as ``PRAGMA busy_timeout``
  (:mod:`tasker.store.sqlite`).

A connection pool waits at most ``statement_timeout`` for a free connection, and the ping
before a pooled connection is reused at most ``connect_timeout``.

What a driver error means (retry it? the database away? no answer in time?) is decided in
:mod:`tasker.store.errors`; :func:`wrap_db_error` says it in a DatabaseError.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from weakref import WeakKeyDictionary

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from tasker.config import Config
from tasker.errors import ConfigError, DatabaseError
from tasker.store.creation import (
    creating_allowed,
    existing_databases_only,
    never_create_databases,
)
from tasker.store.errors import (
    CONNECTION_GONE,
    PACKET_TOO_LARGE,
    is_transient,
    is_unavailable,
    might_be_oversized,
    mysql_codes,
    statement_size,
    timed_out,
)
from tasker.store.sqlite import missing_database, sqlite_engine
from tasker.store.timeouts import (
    ANSWER_GRACE_S,
    bound_mysql_sessions,
    bound_pooled_sessions,
    mysql_args,
    postgres_args,
)
from tasker.store.watchdog import WATCHDOG, guard_psycopg

__all__ = [
    "WATCHDOG",
    "creating_allowed",
    "describe_target",
    "existing_databases_only",
    "is_transient",
    "is_unavailable",
    "make_engine",
    "might_be_oversized",
    "missing_database",
    "never_create_databases",
    "packet_limit",
    "refused_for_size",
    "timed_out",
    "wrap_db_error",
]


# MySQL/MariaDB: "Unknown database" when connecting to one that is not there.
_UNKNOWN_DATABASE = 1049


def make_engine(config: Config) -> Engine:
    """An engine for ``config``; a missing driver package is a clear ConfigError."""
    if config.driver == "sqlite":
        return sqlite_engine(config)
    url = config.sqlalchemy_url()
    kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        # Waiting for a free pooled connection: each one in use answers (or is closed)
        # within statement_timeout.
        "pool_timeout": config.statement_timeout,
        # The latest-run lookup is a correlated subquery in a join condition, which the
        # cartesian-product linter misreads.
        "enable_from_linting": False,
    }
    # The package itself, which installs anywhere (the extra's name needs a clone).
    package = "'psycopg[binary]'" if config.driver == "postgresql" else "PyMySQL"
    extra = "postgres" if config.driver == "postgresql" else "mysql"
    try:
        if config.driver == "postgresql":
            kwargs["connect_args"] = postgres_args(config)
        else:
            kwargs["connect_args"] = mysql_args(config)
            kwargs["isolation_level"] = "READ COMMITTED"
        engine = create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the {config.driver} driver ({exc.name}) is not installed: pip install "
            f"{package} (or, in a clone of tasker, pip install '.[{extra}]')"
        ) from None
    except OperationalError as exc:  # pragma: no cover - create_engine does not connect
        raise wrap_db_error(exc, config, "connecting") from None
    if engine.dialect.driver == "psycopg":
        guard_psycopg(engine, config)
        if config.pooler != "none":
            bound_pooled_sessions(engine, config)
    elif engine.dialect.driver == "pymysql":
        bound_mysql_sessions(engine, config)
        _read_packet_limits(engine)
    return engine


# The smallest max_allowed_packet of the sessions each MySQL/MariaDB engine opened: a session
# keeps the server's value of when it connected, so the smallest is what every one takes.
_PACKET_LIMITS: WeakKeyDictionary[Engine, int] = WeakKeyDictionary()


def _read_packet_limits(engine: Engine) -> None:
    """Read max_allowed_packet once per new session (one statement as it connects)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("SELECT @@session.max_allowed_packet")
            row = cur.fetchone()
        finally:
            cur.close()
        if row and row[0]:
            known = _PACKET_LIMITS.get(engine)
            _PACKET_LIMITS[engine] = int(row[0]) if known is None else min(known, int(row[0]))


def packet_limit(engine: Engine) -> int | None:
    """The max_allowed_packet of ``engine``'s sessions (MySQL/MariaDB); None before its first
    connection, and on other backends."""
    return _PACKET_LIMITS.get(engine)


def describe_target(config: Config) -> str:
    """Where the database is, for error messages: never the password."""
    if config.driver == "sqlite":
        return f"SQLite database {config.path}"
    return (
        f"{config.driver} database {config.dbname!r} at {config.host}:{config.port} "
        f"as user {config.user!r}"
    )


def _secrets(config: Config) -> list[str]:
    """Every secret of ``config`` as it may appear in a driver's message."""
    found = [config.password] if config.password else []
    found += [v for k, v in config.query if "pass" in k.lower() or k.lower() == "pwd" if v]
    return [variant for s in found for variant in {s, quote(s, safe="")}]


def _scrub(text: str, config: Config) -> str:
    for secret in sorted(_secrets(config), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def wrap_db_error(exc: BaseException, config: Config, doing: str) -> DatabaseError:
    """A DatabaseError saying what failed and where, with the driver's own reason."""
    missing = missing_database(config)
    if missing is not None:
        return missing
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first_line = (
        str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    )
    expired = WATCHDOG.expired_here(forget=True)
    refused = refused_for_size(exc, config) if might_be_oversized(exc) else None
    if refused is not None:
        first_line = refused  # not an outage: sending it again would be refused again
    elif expired is not None:
        # The driver only saw its socket closed, or a reconnection fail after it: say why.
        first_line = (
            f"no answer from the database within {expired.seconds:g} s ({expired.setting} plus "
            f"{ANSWER_GRACE_S:g} s), so tasker closed the connection: the network or the "
            f"server stalls ({first_line})"
        )
    elif _no_such_database(exc, config, first_line):
        # Never created by tasker (it needs rights a tracked program should not have).
        first_line = (
            f"there is no database {config.dbname!r} on that server ({first_line}): create it "
            f"(CREATE DATABASE {config.dbname}), then its tables with `tasker init`"
        )
    elif config.driver == "postgresql" and "unsupported startup parameter" in first_line:
        # PgBouncer (and poolers like it) refuse the options that set a session's bounds.
        first_line = (
            f"{first_line}: a connection pooler such as PgBouncer answers at that address; "
            "tell tasker which way it pools with database.pooler: transaction or session "
            "(TASKER_DB_POOLER)"
        )
    elif timed_out(exc):
        first_line = (
            f"{first_line}: no answer within connect_timeout ({config.connect_timeout:g} s) or "
            f"statement_timeout ({config.statement_timeout:g} s); the network or the server stalls"
        )
    return DatabaseError(
        _scrub(f"{doing} failed on {describe_target(config)}: {first_line}", config),
        unavailable=refused is None and (is_unavailable(exc) or expired is not None),
    )


def _no_such_database(exc: BaseException, config: Config, first_line: str) -> bool:
    """Did connecting fail because the database the configuration names is not there?
    MySQL/MariaDB say so with error 1049; libpq only in its message (no SQLSTATE before the
    connection is made)."""
    if config.driver == "mysql":
        return _UNKNOWN_DATABASE in mysql_codes(exc)
    return config.driver == "postgresql" and f'database "{config.dbname}" does not exist' in (
        first_line
    )


def refused_for_size(
    exc: BaseException, config: Config, engine: Engine | None = None
) -> str | None:
    """Why MySQL/MariaDB refused the statement that failed with ``exc`` for its size
    (beyond the server's ``max_allowed_packet``); None for any other reason or backend.

    The server refuses such a statement by closing the connection. After a lost connection
    (2006/2013) the server is asked for its limit on a new connection (from ``engine``, else
    a short-lived one for ``config``; bounded like every other statement): when it answers
    and the statement was at least that large, it was refused for its size and would be
    refused again; when it does not answer, it is an outage.
    """
    codes = mysql_codes(exc)
    if not codes & {PACKET_TOO_LARGE, *CONNECTION_GONE}:
        return None
    size = statement_size(exc)
    try:
        target = make_engine(config) if engine is None else engine
        try:
            with target.connect() as conn:
                limit = int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or 0)
        finally:
            if engine is None:
                target.dispose()
    except Exception:  # the server does not answer: an outage, unless it said "too large"
        return _too_large(size, None) if PACKET_TOO_LARGE in codes else None
    if PACKET_TOO_LARGE in codes or (limit and size >= limit):
        return _too_large(size, limit)
    return None


def _too_large(size: int, limit: int | None) -> str:
    bound = f" ({limit:,} bytes)" if limit else ""
    return (
        f"refused for its size: the statement (about {size:,} bytes) is larger than the "
        f"server's max_allowed_packet{bound}"
    )
