"""Driver- and server-side bounds for PostgreSQL and MySQL/MariaDB connections.

From the ``tracking:`` settings ``connect_timeout``, ``statement_timeout`` and
``lock_timeout``: each driver's connection parameters, TCP keepalives, and the session
settings of each new MySQL/MariaDB connection. SQLite's busy timeout is set with its engine
(:mod:`tasker.store.sqlite`); the one wait libpq cannot bound by itself is the watchdog's
(:mod:`tasker.store.watchdog`).
"""

from __future__ import annotations

import contextlib
import math
import socket
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from tasker.config import Config

__all__ = [
    "ANSWER_GRACE_S",
    "bound_mysql_sessions",
    "bound_pooled_sessions",
    "mysql_args",
    "postgres_args",
]

# An answer may take this long beyond the server's own statement_timeout to arrive (the
# server's "canceled" error crossing the network) before the client gives up on it.
ANSWER_GRACE_S = 1.0


def _keepalive(config: Config) -> tuple[int, int, int]:
    """TCP keepalive (idle, interval, count) in seconds: a silent peer is probed after
    about connect_timeout and given up after about twice that."""
    idle = max(1, math.ceil(config.connect_timeout))
    interval = max(1, math.ceil(config.connect_timeout / 3))
    return idle, interval, 3


def _pg_bounds(config: Config) -> tuple[tuple[str, int], ...]:
    """The server-side bounds of a PostgreSQL session of ours, in milliseconds. A session
    left idle inside a transaction (its client stalled) would hold its locks against every
    other process: the server ends it."""
    statement_ms = round(config.statement_timeout * 1000)
    return (
        ("statement_timeout", statement_ms),
        ("lock_timeout", round(config.lock_timeout * 1000)),
        ("idle_in_transaction_session_timeout", 2 * statement_ms),
    )


def postgres_args(config: Config) -> dict[str, Any]:
    """psycopg's connection parameters; those the URL's query sets are the URL's.

    Behind a pooler (``pooler``) no ``options`` start-up parameter: PgBouncer refuses it (or
    ignores it when told to); the bounds are set as the session starts, or in each
    transaction, instead (:func:`bound_pooled_sessions`). Behind a transaction pooler
    (PgBouncer's transaction mode) the server session is another client's after each
    transaction, so nothing may be kept in it: no server-side prepared statements either
    (psycopg prepares a statement run five times on a connection; through the pooler the
    next transaction may meet a session that never saw it)."""
    import psycopg

    idle, interval, count = _keepalive(config)
    given = dict(config.query)
    ours = (
        " ".join(f"-c {name}={value}" for name, value in _pg_bounds(config))
        if config.pooler == "none"
        else ""
    )
    # The URL's own come last, and win; behind a pooler they are all there is.
    options = " ".join(filter(None, [ours, given.get("options")]))
    args: dict[str, Any] = {
        # Whole seconds, at least 2 (libpq's rule, which psycopg follows).
        "connect_timeout": max(2, math.ceil(config.connect_timeout)),
        "application_name": "tasker",
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
    }
    if options:
        args["options"] = options
    if config.pooler == "transaction":
        args["prepare_threshold"] = None  # psycopg's own argument: never prepare
    if psycopg.pq.version() >= 120000:  # tcp_user_timeout is new in libpq 12
        # Data sent and never acknowledged: the kernel drops the connection.
        args["tcp_user_timeout"] = round((config.statement_timeout + ANSWER_GRACE_S) * 1000)
    return {
        k: v for k, v in args.items() if k in ("options", "prepare_threshold") or k not in given
    }


def bound_pooled_sessions(engine: Engine, config: Config) -> None:
    """The server-side bounds behind a pooler, where the start-up ``options`` cannot carry
    them. In session mode the server session is ours while we are connected: they are set
    once, as we connect. In transaction mode it is ours for one transaction: they are set at
    the start of every transaction, for that transaction only (``set_config(…, true)`` is
    ``SET LOCAL``), by the one statement that opens it — a round trip per transaction."""
    local = config.pooler == "transaction"
    calls = ", ".join(
        f"set_config('{name}', '{value}', {'true' if local else 'false'})"
        for name, value in _pg_bounds(config)
    )
    statement = f"SELECT {calls}"
    if local:

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(statement)

        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(statement)
        finally:
            cur.close()
        dbapi_conn.commit()  # a session setting outlives only a committed transaction


def mysql_args(config: Config) -> dict[str, Any]:
    # The greeting and the login are read and written with these: connect_timeout bounds
    # them. Each new connection then gets statement_timeout's bound (bound_mysql_sessions).
    greeting = config.connect_timeout + ANSWER_GRACE_S
    args: dict[str, Any] = {
        "connect_timeout": config.connect_timeout,
        "read_timeout": greeting,
        "write_timeout": greeting,
        "charset": "utf8mb4",
    }
    given = dict(config.query)
    return {k: v for k, v in args.items() if k not in given}


def _pymysql_bounds(dbapi_conn: Any, seconds: float) -> float | None:
    """Set a PyMySQL connection's read and write timeouts (it applies them to its socket
    before each packet); returns the previous read timeout, None when it has none."""
    before = getattr(dbapi_conn, "_read_timeout", None)
    if before is not None:
        dbapi_conn._read_timeout = seconds
        dbapi_conn._write_timeout = seconds
    return before


def bound_mysql_sessions(engine: Engine, config: Config) -> None:
    """Client- and server-side bounds for each new MySQL/MariaDB session, TCP keepalives,
    and connect_timeout's bound for the ping before a pooled connection is reused."""
    lock_s = max(1, math.ceil(config.lock_timeout))
    idle, interval, count = _keepalive(config)
    answer = config.statement_timeout + ANSWER_GRACE_S
    ping = config.connect_timeout + ANSWER_GRACE_S

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        _pymysql_bounds(dbapi_conn, answer)
        sock = getattr(dbapi_conn, "_sock", None)  # PyMySQL's socket
        if isinstance(sock, socket.socket):
            _set_keepalive(sock, idle, interval, count, config.statement_timeout)
        mariadb = "mariadb" in str(dbapi_conn.get_server_info()).lower()
        statement = (
            f"max_statement_time = {config.statement_timeout:g}"
            if mariadb
            else f"max_execution_time = {round(config.statement_timeout * 1000)}"
        )
        cur = dbapi_conn.cursor()
        try:
            cur.execute(
                f"SET SESSION innodb_lock_wait_timeout = {lock_s}, "
                f"lock_wait_timeout = {lock_s}, {statement}"
            )
        finally:
            cur.close()

    dialect = engine.dialect
    do_ping = dialect.do_ping

    def guarded_ping(dbapi_conn: Any) -> bool:
        before = _pymysql_bounds(dbapi_conn, ping)
        try:
            return do_ping(dbapi_conn)
        finally:
            if before is not None:
                _pymysql_bounds(dbapi_conn, before)

    dialect.do_ping = guarded_ping  # type: ignore[method-assign,assignment]  # this engine's only


def _set_keepalive(
    sock: socket.socket, idle: int, interval: int, count: int, user_timeout: float
) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", interval),
        ("TCP_KEEPCNT", count),
        ("TCP_USER_TIMEOUT", round((user_timeout + ANSWER_GRACE_S) * 1000)),
    ):
        option = getattr(socket, name, None)  # Linux names; elsewhere the OS defaults
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
