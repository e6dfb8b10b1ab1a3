"""The watchdog: the bound on the one wait libpq cannot bound by itself, an answer that never
comes over a connection that stays open (see :class:`Watchdog`)."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from tasker.config import Config
from tasker.store.timeouts import ANSWER_GRACE_S

__all__ = ["WATCHDOG", "Expired", "Watchdog", "guard_psycopg"]


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


def guard_psycopg(engine: Engine, config: Config) -> None:
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
