"""What a driver error means: worth retrying at once (a lock, a deadlock, a dropped
connection), the database away, no answer in time, or possibly a statement that
MySQL/MariaDB refused for its size. (tasker.store.engine turns such errors into
:class:`~tasker.errors.DatabaseError`.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from tasker.store.watchdog import WATCHDOG

__all__ = [
    "CONNECTION_GONE",
    "PACKET_TOO_LARGE",
    "is_transient",
    "is_unavailable",
    "might_be_oversized",
    "mysql_codes",
    "not_about_the_values",
    "statement_size",
    "timed_out",
    "too_many_connections",
]


# MySQL/MariaDB refuse a statement larger than their max_allowed_packet by closing the
# connection: the client sees 1153 (packet too large) or only the lost connection, 2006
# ("server has gone away") or 2013 ("lost connection during query"), as in an outage.
PACKET_TOO_LARGE = 1153
CONNECTION_GONE = (2006, 2013)
# A lost connection while sending at least this much may be the server refusing it for its
# size (max_allowed_packet is 4 MiB and more by default): not resent at once, but judged by
# tasker.store.engine.refused_for_size. Smaller statements that lose their connection are
# retried as before.
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


def mysql_codes(exc: BaseException) -> set[int]:
    """The MySQL/MariaDB error numbers anywhere in ``exc``'s chain."""
    codes = set()
    for link in _chain(exc):
        orig = link.orig if isinstance(link, DBAPIError) else link
        args: tuple[Any, ...] = getattr(orig, "args", ())
        if args and isinstance(args[0], int) and "mysql" in type(orig).__module__.lower():
            codes.add(args[0])
    return codes


def statement_size(exc: BaseException) -> int:
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
    outage? (:func:`tasker.store.engine.refused_for_size` tells.) Such a statement is not
    resent at once."""
    codes = mysql_codes(exc)
    if PACKET_TOO_LARGE in codes:
        return True
    return bool(codes & set(CONNECTION_GONE)) and statement_size(exc) >= _LARGE_STATEMENT


def is_unavailable(exc: BaseException) -> bool:
    """The database did not judge what was sent: it is away or busy (connection refused or
    lost, login refused, locked, a statement timeout, disk full, the schema not there), so
    the same events may well be written later — keep them and retry; never set them aside
    as refused. The one rule for the live writer, the one-by-one fallback and journal
    replays alike.

    MySQL/MariaDB (PyMySQL) report many refusals of a value as OperationalError too — a
    CHECK constraint (4025), an incorrect datetime (1292): a server error number that is
    not one of the server's state or the connection's is a verdict on the statement, else
    one such event would stall every write of the process as an "outage"."""
    if not_about_the_values(exc):
        return True
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    codes = mysql_codes(exc)
    if codes:
        # 2000-2999: the client's own errors (cannot connect, connection lost).
        return any(2000 <= code < 3000 for code in codes)
    return True  # PostgreSQL, SQLite: their refusals of a value are other classes


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
    return len(args) > 1 and args[0] in CONNECTION_GONE and "timed out" in str(args[1])


# The server (or a pooler) has no connection slot free. libpq reports a refused login by its
# message alone (no SQLSTATE before a session exists): PostgreSQL's "sorry, too many clients
# already", "remaining connection slots are reserved …", "too many connections for role/
# database …" (all 53300), PgBouncer's "no more connections allowed (max_client_conn)".
# MySQL/MariaDB: 1040 too many connections, 1203 max_user_connections, 1226 a user's limit.
_NO_SLOT_TEXTS = (
    "too many clients",
    "remaining connection slots are reserved",
    "too many connections",
    "no more connections allowed",
)
_NO_SLOT_CODES = frozenset({1040, 1203, 1226})


def too_many_connections(exc: BaseException) -> bool:
    """The database refused a connection for want of a free slot: back-pressure from a crowd
    of processes, which a later attempt gets through (see is_transient)."""
    if mysql_codes(exc) & _NO_SLOT_CODES:
        return True
    for link in _chain(exc):
        orig = link.orig if isinstance(link, DBAPIError) else link
        if getattr(orig, "sqlstate", None) == "53300":
            return True
        if "psycopg" in type(orig).__module__ and any(t in str(orig) for t in _NO_SLOT_TEXTS):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: locks, deadlocks, serialization failures, dropped connections,
    and no connection slot free (many processes at once against ``max_connections``: each
    retries with jitter, so that the crowd goes through as slots free up).

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
    return (bool(args) and args[0] in (1213, 1205)) or too_many_connections(exc)


# Failures that come from the database's state, never from what a statement holds: PostgreSQL
# classes 53 (insufficient resources: disk full, out of memory, too many connections) and 57
# (operator intervention: statement timeout, shutdown) and 08 (connection exceptions);
# MySQL/MariaDB 1021 disk full, 1030 storage engine error, 1036 table read only, 1037/1038/
# 1041 out of memory, 1040 and 1203 too many connections, 1042/1043/1129/1130 host refused,
# 1044/1045 access denied, 1049 unknown database, 1053 shutdown, 1114 table full, 1142/1143
# command denied, 1146 table missing, 1226 resource limit, 1317 query interrupted, 1927
# connection killed, 1969 max_statement_time (MariaDB), 3024 max_execution_time (MySQL),
# 4031 disconnected for inactivity.
_STATE_CLASSES = ("53", "57", "08")
_STATE_CODES = frozenset(
    {1021, 1030, 1036, 1037, 1038, 1040, 1041, 1042, 1043, 1044, 1045, 1049, 1053, 1114}
    | {1129, 1130, 1142, 1143, 1146, 1203, 1226, 1317, 1927, 1969, 3024, 4031}
)


def not_about_the_values(exc: BaseException) -> bool:
    """True when ``exc`` says nothing against the statement's values — a lock or statement
    timeout, a deadlock, a lost connection, a full disk — so the same statement may well
    succeed later. A journal replay that meets one must leave the file for later: setting
    its events aside as refused would lose runs the database never looked at."""
    if is_transient(exc) or timed_out(exc):  # locks, deadlocks, any lost connection
        return True
    orig = getattr(exc, "orig", exc)
    if type(orig).__module__ == "sqlite3" and type(orig).__name__ == "OperationalError":
        text = str(orig).lower()  # (locked and busy: transient, above)
        return any(w in text for w in ("disk", "full", "no such table"))
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate[:2] in _STATE_CLASSES:
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _STATE_CODES
