"""Engines tuned per backend, and the translation of driver errors into tasker's own.

Every wait on the database is bounded, on every driver, from the ``tracking:`` settings
``connect_timeout``, ``statement_timeout`` and ``lock_timeout``:

- PostgreSQL (psycopg): ``connect_timeout``; TCP keepalives and ``tcp_user_timeout``, so the
  kernel gives up on a peer that vanished; server-side ``statement_timeout``, ``lock_timeout``
  and ``idle_in_transaction_session_timeout``; and a watchdog (below) for the one wait libpq
  cannot bound by itself: an answer that never comes over a connection that stays open.
- MySQL/MariaDB (PyMySQL): ``connect_timeout``, socket ``read_timeout``/``write_timeout``,
  TCP keepalives, and server-side lock waits and statement time.
- SQLite: the busy timeout (``lock_timeout``), in the driver and as ``PRAGMA busy_timeout``.

A connection pool waits at most ``statement_timeout`` for a free connection, and the ping
before a pooled connection is reused at most ``connect_timeout``.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import StaticPool

from tasker.config import Config
from tasker.errors import ConfigError, DatabaseError

__all__ = [
    "describe_target",
    "existing_databases_only",
    "is_transient",
    "make_engine",
    "might_be_oversized",
    "missing_database",
    "never_create_databases",
    "refused_for_size",
    "wrap_db_error",
]

# An answer may take this long beyond the server's own statement_timeout to arrive (the
# server's "canceled" error crossing the network) before the client gives up on it.
ANSWER_GRACE_S = 1.0

# Read commands and the dashboard must never create a database that is not there (see
# never_create_databases()); tracking and `tasker init` do create it.
_create_missing = True


def never_create_databases(enabled: bool = True) -> bool:
    """From now on (in this process) open only SQLite files that exist, and never create a
    folder for one: for read commands and the dashboard. ``enabled=False`` restores the
    default, in which the first use creates the file and its folder. Returns the previous
    state (True when databases were not created)."""
    global _create_missing
    before = not _create_missing
    _create_missing = not enabled
    return before


@contextlib.contextmanager
def existing_databases_only() -> Iterator[None]:
    """never_create_databases() for the duration of a block."""
    before = never_create_databases()
    try:
        yield
    finally:
        never_create_databases(before)


def missing_database(config: Config) -> DatabaseError | None:
    """The error to raise when ``config`` names an SQLite file that does not exist and
    databases may not be created here (see never_create_databases()); else None."""
    if _create_missing or config.driver != "sqlite":
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
    elif timed_out(exc):
        first_line = (
            f"{first_line}: no answer within connect_timeout ({config.connect_timeout:g} s) or "
            f"statement_timeout ({config.statement_timeout:g} s); the network or the server stalls"
        )
    return DatabaseError(
        _scrub(f"{doing} failed on {describe_target(config)}: {first_line}", config),
        unavailable=refused is None and (is_unavailable(exc) or expired is not None),
    )


# MySQL/MariaDB refuse a statement larger than their max_allowed_packet by closing the
# connection: the client sees 1153 (packet too large) or only the lost connection, 2006
# ("server has gone away") or 2013 ("lost connection during query"), as in an outage.
_PACKET_TOO_LARGE = 1153
_CONNECTION_GONE = (2006, 2013)
# A lost connection while sending at least this much may be the server refusing it for its
# size (max_allowed_packet is 4 MiB and more by default): not resent at once, but judged by
# refused_for_size. Smaller statements that lose their connection are retried as before.
_LARGE_STATEMENT = 1 << 20


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (the failed rollback
    after a refused statement hides the refusal), nearest first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 16 and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _mysql_codes(exc: BaseException) -> set[int]:
    codes = set()
    for link in _chain(exc):
        orig = link.orig if isinstance(link, DBAPIError) else link
        args: tuple[Any, ...] = getattr(orig, "args", ())
        if args and isinstance(args[0], int) and "mysql" in type(orig).__module__.lower():
            codes.add(args[0])
    return codes


def _statement_size(exc: BaseException) -> int:
    """About how many bytes the failed statement sent: its text and values, escaped."""
    size = 0
    for link in _chain(exc):
        if isinstance(link, DBAPIError):
            sizes = (_value_size(v) for v in _param_values(link.params))
            size = max(size, len(link.statement or "") + sum(sizes))
    return size


def _param_values(params: Any) -> Iterator[Any]:
    for row in params if isinstance(params, list) else [params]:  # a list: executemany
        if isinstance(row, dict):
            yield from row.values()
        elif isinstance(row, (list, tuple)):
            yield from row
        else:
            yield row


# What MySQL string literals escape (each becomes two bytes).
_ESCAPED = tuple(b"\\'\"\0\n\r\x1a")


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray)):
        return len(value) + sum(value.count(c) for c in _ESCAPED)
    return 24  # a number, a date, NULL: a few bytes


def might_be_oversized(exc: BaseException) -> bool:
    """Could ``exc`` be MySQL/MariaDB refusing a statement for its size rather than an
    outage? (:func:`refused_for_size` tells.) Such a statement is not resent at once."""
    codes = _mysql_codes(exc)
    if _PACKET_TOO_LARGE in codes:
        return True
    return bool(codes & set(_CONNECTION_GONE)) and _statement_size(exc) >= _LARGE_STATEMENT


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
    codes = _mysql_codes(exc)
    if not codes & {_PACKET_TOO_LARGE, *_CONNECTION_GONE}:
        return None
    size = _statement_size(exc)
    try:
        target = make_engine(config) if engine is None else engine
        try:
            with target.connect() as conn:
                limit = int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or 0)
        finally:
            if engine is None:
                target.dispose()
    except Exception:  # the server does not answer: an outage, unless it said "too large"
        return _too_large(size, None) if _PACKET_TOO_LARGE in codes else None
    if _PACKET_TOO_LARGE in codes or (limit and size >= limit):
        return _too_large(size, limit)
    return None


def _too_large(size: int, limit: int | None) -> str:
    bound = f" ({limit:,} bytes)" if limit else ""
    return (
        f"refused for its size: the statement (about {size:,} bytes) is larger than the "
        f"server's max_allowed_packet{bound}"
    )


def is_unavailable(exc: BaseException) -> bool:
    """The database is away or busy (connection refused or lost, login refused, locked,
    disk full), rather than refusing what was sent: worth keeping the events and retrying."""
    return is_transient(exc) or isinstance(exc, (OperationalError, InterfaceError))


def timed_out(exc: BaseException) -> bool:
    """Did the call fail because the database gave no answer in time (a bound of ours
    fired: the watchdog, the driver's connect or read timeout)?"""
    if WATCHDOG.expired_here() is not None:
        return True
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if type(orig).__name__ == "ConnectionTimeout":  # psycopg's connect_timeout
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    # PyMySQL: 2013 "Lost connection ... (timed out)" from its connect/read/write timeouts.
    return len(args) > 1 and args[0] in _CONNECTION_GONE and "timed out" in str(args[1])


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: locks, deadlocks, serialization failures, dropped connections.

    Not a connection closed because the database did not answer in time: a stalled network
    would only make the retry wait as long again (the writer retries later, with backoff).
    """
    if might_be_oversized(exc):
        return False  # refused for its size: resending it at once is refused again
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return not timed_out(exc)
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


# ---------------------------------------------------------------------------- the watchdog


class _Lease:
    __slots__ = ("conn", "deadline", "kill", "seconds", "setting", "thread")

    def __init__(self, conn: Any, seconds: float, setting: str, kill: Callable[[Any], None]):
        self.conn = conn
        self.seconds = seconds
        self.setting = setting
        self.deadline = time.monotonic() + seconds
        self.kill = kill
        self.thread = threading.get_ident()


class Expired:
    """A connection the watchdog closed: after how long, which setting set the bound."""

    __slots__ = ("at", "seconds", "setting")

    def __init__(self, seconds: float, setting: str) -> None:
        self.seconds = seconds
        self.setting = setting
        self.at = time.monotonic()


# How long after closing a connection the watchdog's note explains the errors of the thread
# that used it: the failing call, and a reconnection attempt it may make, raise within this.
_EXPIRED_NOTE_S = 30.0


class Watchdog:
    """Closes the socket of a connection whose driver call has waited too long.

    libpq waits for an answer as long as its connection stays open, and a connection through
    a network that silently drops packets (or a hung proxy) stays open. Each connection in
    use holds a lease, renewed whenever a driver call starts or ends; a connection whose
    lease runs out has its socket shut down, which wakes the waiting call with an error
    (the connection is then discarded, and the error says why). One daemon thread per
    process, started on first use, with every signal blocked (they belong to the program's
    main thread).
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also the after-fork hook: the parent's connections, leases and thread are not the
        # child's, and a socket shut down here would be shut down for the parent too.
        self._cond = threading.Condition(threading.Lock())
        self._leases: dict[int, _Lease] = {}
        self._expired: dict[int, Expired] = {}
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def arm(self, conn: Any, seconds: float, setting: str, kill: Callable[[Any], None]) -> None:
        """Give ``conn`` ``seconds`` from now (replacing its lease); ``setting`` names the
        configuration key the bound comes from, for the error message."""
        lease = _Lease(conn, seconds, setting, kill)
        with self._cond:
            self._leases[id(conn)] = lease
            if self._thread is None:
                self._start()
            if lease.deadline < self._wake_at:
                self._cond.notify()

    def disarm(self, conn: Any) -> None:
        with self._cond:
            self._leases.pop(id(conn), None)

    def expired_here(self, *, forget: bool = False) -> Expired | None:
        """The connection of this thread the watchdog closed lately, if any; ``forget``
        clears the note (once the error it explains is raised)."""
        with self._cond:
            note = self._expired.get(threading.get_ident())
            if note is not None and (forget or time.monotonic() - note.at > _EXPIRED_NOTE_S):
                del self._expired[threading.get_ident()]
        if note is None or time.monotonic() - note.at > _EXPIRED_NOTE_S:
            return None
        return note

    @property
    def armed(self) -> int:
        return len(self._leases)

    def _start(self) -> None:
        import signal

        thread = threading.Thread(target=self._loop, name="tasker-watchdog", daemon=True)
        self._thread = thread
        if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
            thread.start()
            return
        before = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    def _loop(self) -> None:
        while True:
            due: list[_Lease] = []
            with self._cond:
                now = time.monotonic()
                for key, lease in list(self._leases.items()):
                    if lease.deadline <= now:
                        due.append(self._leases.pop(key))
                        self._expired[lease.thread] = Expired(lease.seconds, lease.setting)
                nearest = min((le.deadline for le in self._leases.values()), default=math.inf)
                # Renewed leases move later, so waking at the nearest deadline is never late;
                # an idle watchdog still looks once a minute.
                self._wake_at = min(nearest, now + 60.0)
                if not due:
                    self._cond.wait(max(0.01, self._wake_at - now))
            for lease in due:
                with contextlib.suppress(Exception):  # already closed: nothing left to wake
                    lease.kill(lease.conn)


WATCHDOG = Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=WATCHDOG._reset)


def _shutdown_psycopg(conn: Any) -> None:
    """Shut down a psycopg connection's socket from another thread: the call waiting on it
    wakes with "server closed the connection" (closing the descriptor itself could hand its
    number to another file while libpq still uses it)."""
    fd = conn.pgconn.socket
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


def _guard_psycopg(engine: Engine, config: Config) -> None:
    """Lease every psycopg connection of ``engine`` to the watchdog while it is in use."""
    statement = config.statement_timeout + ANSWER_GRACE_S
    ping = config.connect_timeout + ANSWER_GRACE_S
    dog = WATCHDOG
    kill = _shutdown_psycopg

    def renew(dbapi_conn: Any) -> None:
        if dbapi_conn is not None:
            dog.arm(dbapi_conn, statement, "statement_timeout", kill)

    def release(dbapi_conn: Any, *_: Any) -> None:
        if dbapi_conn is not None:
            dog.disarm(dbapi_conn)

    def renew_cursor(_conn: Any, cursor: Any, *_: Any) -> None:
        # The DBAPI cursor knows its connection; SQLAlchemy's Connection, once invalidated,
        # would reconnect when asked for it.
        renew(getattr(cursor, "connection", None))

    def renew_after_error(context: Any) -> None:
        renew(getattr(getattr(context, "cursor", None), "connection", None))  # the rollback next

    # From the new connection's first statements (the dialect's own, at first connect)
    # through its checkout and every statement (a commit follows its last statement within
    # the same lease) to its check-in, with the reset (rollback) before it.
    event.listen(engine, "connect", lambda c, _r: renew(c), insert=True)
    event.listen(engine, "checkout", lambda c, _r, _p: renew(c))
    event.listen(engine, "reset", lambda c, _record, _state: renew(c))
    for name in ("checkin", "invalidate", "soft_invalidate", "close", "close_detached"):
        event.listen(engine, name, release)
    for name in ("before_cursor_execute", "after_cursor_execute"):
        event.listen(engine, name, renew_cursor)
    event.listen(engine, "handle_error", renew_after_error)

    # The ping that precedes a pooled connection's checkout: a round trip with no work in
    # it, so connect_timeout bounds it.
    dialect = engine.dialect
    do_ping = dialect.do_ping

    def guarded_ping(dbapi_conn: Any) -> bool:
        dog.arm(dbapi_conn, ping, "connect_timeout", kill)
        return do_ping(dbapi_conn)

    dialect.do_ping = guarded_ping  # type: ignore[method-assign,assignment]  # this engine's only


# ---------------------------------------------------------------------------- engines


def _sqlite_engine(config: Config) -> Engine:
    path = config.path or ":memory:"
    memory = path == ":memory:" or path.startswith("file::memory:")
    missing = missing_database(config)
    if missing is not None:
        raise missing
    if not memory and _create_missing:
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
        if _create_missing:
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


def _keepalive(config: Config) -> tuple[int, int, int]:
    """TCP keepalive (idle, interval, count) in seconds: a silent peer is probed after
    about connect_timeout and given up after about twice that."""
    idle = max(1, math.ceil(config.connect_timeout))
    interval = max(1, math.ceil(config.connect_timeout / 3))
    return idle, interval, 3


def _postgres_args(config: Config) -> dict[str, Any]:
    """psycopg's connection parameters; those the URL's query sets are the URL's."""
    import psycopg

    statement_ms = round(config.statement_timeout * 1000)
    lock_ms = round(config.lock_timeout * 1000)
    idle, interval, count = _keepalive(config)
    # A session of ours left idle inside a transaction (its client stalled) would hold its
    # locks against every other process: the server ends it.
    options = (
        f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms} "
        f"-c idle_in_transaction_session_timeout={2 * statement_ms}"
    )
    given = dict(config.query)
    if given.get("options"):
        options = f"{options} {given['options']}"  # the URL's own come last, and win
    args: dict[str, Any] = {
        # Whole seconds, at least 2 (libpq's rule, which psycopg follows).
        "connect_timeout": max(2, math.ceil(config.connect_timeout)),
        "application_name": "tasker",
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
        "options": options,
    }
    if psycopg.pq.version() >= 120000:  # tcp_user_timeout is new in libpq 12
        # Data sent and never acknowledged: the kernel drops the connection.
        args["tcp_user_timeout"] = round((config.statement_timeout + ANSWER_GRACE_S) * 1000)
    return {k: v for k, v in args.items() if k == "options" or k not in given}


def _mysql_args(config: Config) -> dict[str, Any]:
    # The greeting and the login are read and written with these: connect_timeout bounds
    # them. Each new connection then gets statement_timeout's bound (_mysql_session).
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


def _mysql_session(engine: Engine, config: Config) -> None:
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


def make_engine(config: Config) -> Engine:
    """An engine for ``config``; a missing driver package is a clear ConfigError."""
    if config.driver == "sqlite":
        return _sqlite_engine(config)
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
            kwargs["connect_args"] = _postgres_args(config)
        else:
            kwargs["connect_args"] = _mysql_args(config)
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
        _guard_psycopg(engine, config)
    elif engine.dialect.driver == "pymysql":
        _mysql_session(engine, config)
    return engine
