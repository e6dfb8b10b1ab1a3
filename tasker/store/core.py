"""What every part of the store shares: the engine and tables, one transaction per operation
(retried while the database is busy) or per batch of operations, the task ids learned so far,
and statements prepared once per shape."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ClauseElement

from tasker.config import Config
from tasker.errors import RunEndedError, TaskerError, UnknownRunError
from tasker.store.engine import make_engine, packet_limit, wrap_db_error
from tasker.store.errors import is_transient, timed_out, too_many_connections
from tasker.store.expressions import Expressions
from tasker.store.schema import Tables, build_tables
from tasker.validate import TextBudget

__all__ = ["StoreCore"]

T = TypeVar("T")
_RETRY_SECONDS = 60.0
# Backoff between retries of a busy database: first delay and longest, in seconds (each with
# jitter). A server out of connection slots waits longer between tries than a lock: each
# refused try costs it a connection's start (PostgreSQL forks a backend to say no), and a
# crowd hammering it every few milliseconds would take the CPU its clients need.
_BACKOFF = (0.01, 1.0)
_CROWD_BACKOFF = (0.1, 2.0)
# What a statement holds besides its long texts (its SQL, every short value, the protocol's
# framing): far more than the largest INSERT of a run takes.
_STATEMENT_RESERVE = 64 * 1024
# PostgreSQL holds at most 1 GB in one value, and takes at most that in one message.
_PG_LIMIT = 2**30 - 1
# SQLite's length limit holds each value and each whole row (SQLITE_MAX_LENGTH's default).
_SQLITE_LIMIT = 1_000_000_000
# The long text columns of task_runs, which one row holds together on SQLite.
_RUN_LONG_TEXTS = 6


@functools.cache
def _sqlite_limit() -> int:
    """SQLite's length limit as this build of it has it (Python 3.11 can ask)."""
    import sqlite3

    conn = sqlite3.connect(":memory:")
    try:
        getlimit = getattr(conn, "getlimit", None)
        return int(getlimit(0)) if getlimit is not None else _SQLITE_LIMIT  # LIMIT_LENGTH
    finally:
        conn.close()


def _outcome_unknown(exc: SQLAlchemyError) -> bool:
    """A failed COMMIT whose outcome is unknown: the connection was lost or given up on (a
    refusal of the COMMIT itself, a serialization failure say, rolled the transaction back
    and may be retried)."""
    return bool(getattr(exc, "connection_invalidated", False)) or timed_out(exc)


class StoreCore:
    """The state and plumbing that :class:`tasker.store.sql.SqlStore`'s parts share."""

    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine if engine is not None else make_engine(config)
        self.dialect = self.engine.dialect.name
        if self.dialect == "mariadb":
            self.dialect = "mysql"
        self.t: Tables = build_tables(config.db_schema, self.dialect)
        self._task_ids: dict[tuple[str, str], int] = {}
        # How long a write keeps retrying a busy database; the writer shortens it when the
        # process is ending, so that undelivered events reach the journal in time.
        self.retry_seconds = _RETRY_SECONDS
        # Set when the process is ending (the writer's exit flush): a refusal for want of a
        # connection slot is retried until then (monotonic clock) rather than retry_seconds,
        # as slots free up while the crowd's other processes end; a lock is not.
        self.crowd_deadline: float | None = None
        # When the last transaction ended (monotonic clock): an idle connection is closed
        # connection_linger after it (release_idle_connections).
        self.last_used = 0.0
        self._lock = threading.Lock()
        self._schema_checked = False
        # A thread applying a batch runs every operation in its one open transaction.
        self._local = threading.local()
        # Statements are built once per shape and run with parameters: building and
        # cache-keying a statement per call would cost more than the database's own work.
        self._stmts: dict[Any, Any] = {}
        self._x = Expressions(self.t)

    def dispose(self) -> None:
        self.engine.dispose()

    def text_budget(self) -> TextBudget:
        """What this database takes of text in one statement (see tasker.runtime.storable).

        MySQL/MariaDB: the sessions' ``max_allowed_packet``, read once per session as it
        connects (connecting now if no session has yet); PostgreSQL: 1 GB; SQLite: a sixth
        of its length limit, which holds a whole row with its six long texts. Each less a
        reserve for the rest of the statement."""
        if self.dialect == "mysql":
            limit = packet_limit(self.engine)
            if limit is None:
                self.ping()  # the first session reads it
                limit = packet_limit(self.engine) or _STATEMENT_RESERVE * 2
            return TextBudget(
                max(limit - _STATEMENT_RESERVE, _STATEMENT_RESERVE),
                f"the server's max_allowed_packet of {limit:,} bytes, less "
                f"{_STATEMENT_RESERVE:,} for the rest of the statement",
            )
        if self.dialect == "postgresql":
            return TextBudget(
                _PG_LIMIT - _STATEMENT_RESERVE,
                "PostgreSQL's 1 GB bound on a value and on a message, less "
                f"{_STATEMENT_RESERVE:,} for the rest of the statement",
            )
        limit = _sqlite_limit()
        return TextBudget(
            (limit - _STATEMENT_RESERVE) // _RUN_LONG_TEXTS,
            f"a sixth of SQLite's length limit of {limit:,} bytes, which holds a whole row",
        )

    def file_identity(self) -> tuple[int, int] | None:
        """The SQLite file's (device, inode) as it is on disk now; None for a server
        database, an in-memory one, or a file that is not there."""
        if self.dialect != "sqlite":
            return None
        path = self.config.path
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        try:
            st = os.stat(os.path.expanduser(path))
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _run(
        self,
        doing: str,
        fn: Callable[[Connection], T],
        *,
        write: bool = True,
        settle: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``fn`` in one transaction, retrying transient failures (locks, deadlocks).

        Inside :meth:`batch` the operation joins the batch's transaction instead. A COMMIT
        whose answer was lost is not simply done again: see :meth:`batch`'s ``committed``.
        """
        batch_conn: Connection | None = getattr(self._local, "conn", None)
        if batch_conn is not None:
            return fn(batch_conn)
        started = time.monotonic()
        attempt = 0
        while True:
            committing = False
            try:
                with self.engine.connect() as conn:
                    if not write and self.dialect == "sqlite":
                        conn = conn.execution_options(sqlite_begin="DEFERRED")
                    try:
                        with conn.begin():
                            result = fn(conn)
                            committing = True  # the block's end commits
                        return result
                    finally:
                        self.last_used = time.monotonic()  # the linger counts from here
            except TaskerError:
                raise
            except SQLAlchemyError as exc:
                if committing and write and _outcome_unknown(exc):
                    # The COMMIT went out and its answer never came back: the transaction
                    # may be written, and doing it again could write it twice (progress
                    # added twice). Asked on a new connection when the caller can tell;
                    # else, or on a stalled network (asking would wait as long again), the
                    # database counts as away and the writer asks later
                    # (tasker.runtime.repeats).
                    done: bool | None = None  # None: not known
                    if settle is not None and not timed_out(exc) and is_transient(exc):
                        with contextlib.suppress(Exception):  # cannot be asked now
                            done = settle()
                    if done:
                        return result
                    if done is None:
                        error = wrap_db_error(exc, self.config, doing)
                        error.in_doubt = True
                        raise error from None
                    # Not written: done again, as after any dropped connection.
                attempt += 1
                # The budget is read at each failure: the writer shortens it when the process
                # is ending, and that must reach a write already retrying.
                budget = getattr(self._local, "retry_seconds", None)
                if budget is None:
                    budget = self.retry_seconds
                crowd = too_many_connections(exc)
                now = time.monotonic()
                if crowd and self.crowd_deadline is not None:
                    until = self.crowd_deadline
                else:
                    until = started + budget
                if now < until and is_transient(exc):
                    first, longest = _CROWD_BACKOFF if crowd else _BACKOFF
                    pause = min(longest, first * 2**attempt) * (0.5 + random.random())
                    time.sleep(min(pause, max(0.0, until - now)))  # never past the bound
                    continue
                raise wrap_db_error(exc, self.config, doing) from None

    @contextlib.contextmanager
    def retrying(self, seconds: float) -> Iterator[None]:
        """Writes of this thread inside the block retry a busy database for at most
        ``seconds`` (0: one attempt, which waits at most the lock timeout), whatever
        ``retry_seconds`` says for the others."""
        before = getattr(self._local, "retry_seconds", None)
        self._local.retry_seconds = seconds
        try:
            yield
        finally:
            self._local.retry_seconds = before

    def batch(
        self,
        operations: Sequence[Callable[[], object]],
        committed: Callable[[], bool] | None = None,
    ) -> None:
        """Run ``operations`` (calls of this store's write methods) in one transaction.

        Raises what the first failing operation raised; then nothing of the batch is written.
        ``committed`` is asked when the answer to the COMMIT was lost with its connection
        (True: the batch is written; False: it is written again, as after any dropped
        connection); without it, or when it cannot answer, the database counts as away.
        """

        def apply(conn: Connection) -> None:
            self._local.conn = conn
            self._local.task_ids = {}
            try:
                for operation in operations:
                    operation()
            finally:
                self._local.conn = None

        self._local.task_ids = {}
        self._run("writing tracked events", apply, settle=committed)
        with self._lock:  # only now committed: safe to remember
            self._task_ids.update(self._local.task_ids)

    def release_idle_connections(self) -> float | None:
        """Close the connections this store's pool holds idle once no transaction has run
        for ``connection_linger`` seconds, so that a process between writes holds no server
        connection (a thousand processes would hold a thousand, and a server's
        max_connections is soon reached); the next operation connects again. The writer asks
        after each cycle. Returns when to ask again (the monotonic clock), None when no
        connection is held. Not while any connection is lent out (a transaction of another
        thread). SQLite's one connection is kept: it costs no server anything."""
        if self.dialect == "sqlite":
            return None
        pool = self.engine.pool
        idle = getattr(pool, "checkedin", None)
        lent = getattr(pool, "checkedout", None)
        if idle is None or lent is None or not idle():
            return None  # a pool that keeps nothing idle (NullPool), or nothing idle now
        due = self.last_used + self.config.connection_linger
        if lent() or time.monotonic() < due:
            return max(due, time.monotonic() + 0.05)
        # A fresh pool (same settings and listeners) replaces the old one, whose idle
        # connections are closed now.
        self.engine.dispose(close=True)
        return None

    def ping(self) -> None:
        """Reach the database (raises DatabaseError when it cannot be reached)."""
        self._run("reaching the database", lambda conn: conn.exec_driver_sql("SELECT 1"))

    def _remember_task(self, key: tuple[str, str], task_id: int) -> None:
        if getattr(self._local, "conn", None) is not None:
            self._local.task_ids[key] = task_id
        else:
            with self._lock:
                self._task_ids[key] = task_id

    def _cached_task(self, key: tuple[str, str]) -> int | None:
        if getattr(self._local, "conn", None) is not None and key in self._local.task_ids:
            return int(self._local.task_ids[key])
        return self._task_ids.get(key)

    def _missing_run(self, conn: Connection, run_id: str) -> UnknownRunError:
        return UnknownRunError(
            f"no run with run_id {run_id!r} in {self.config.driver} database: expected the "
            "run_id returned by task_start()"
        )

    def _ended_or_missing(self, conn: Connection, run_id: str, doing: str) -> TaskerError:
        """Why a write of an ended run (``doing`` it) matched no row: the run ended (a
        RunEndedError), or there is no such run."""
        runs = self.t.task_runs
        row = conn.execute(
            select(runs.c.status, runs.c.end_time).where(runs.c.run_id == run_id)
        ).first()
        if row is None:
            return self._missing_run(conn, run_id)
        end = row.end_time
        when = f" at {end:%Y-%m-%d %H:%M:%S}" if isinstance(end, datetime) else ""
        return RunEndedError(
            f"run {run_id} already ended {row.status}{when}; {doing} is refused (the first "
            "ending is kept)"
        )

    def _run_exists(self, conn: Connection, run_id: str) -> bool:
        runs = self.t.task_runs
        return (
            conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is not None
        )

    def _update(
        self,
        conn: Connection,
        table: Any,
        where: Sequence[Any],
        values: Sequence[tuple[str, Any]],
        params: dict[str, Any] | None = None,
    ) -> int:
        """UPDATE ``table`` SET ``values`` WHERE ``where``; returns the rows matched.

        A ``where`` entry is ``(column, value)`` for equality or a prepared condition; a
        ``values`` entry's value is a plain value or a prepared expression (one of the
        store's own, so that the statement is built once per shape). Values are set in the
        order given: MySQL evaluates SET left to right, each seeing the ones before.
        """
        shape = (
            table.name,
            tuple(w[0] if isinstance(w, tuple) else id(w) for w in where),
            tuple((c, id(v) if isinstance(v, ClauseElement) else None) for c, v in values),
        )
        stmt = self._stmts.get(shape)
        if stmt is None:
            conds = [
                table.c[w[0]] == bindparam(f"w_{w[0]}", type_=table.c[w[0]].type)
                if isinstance(w, tuple)
                else w
                for w in where
            ]
            sets = [
                (
                    table.c[c],
                    v
                    if isinstance(v, ClauseElement)
                    else bindparam(f"v_{c}", type_=table.c[c].type),
                )
                for c, v in values
            ]
            stmt = update(table).where(*conds).ordered_values(*sets)
            self._stmts[shape] = stmt
        bound = {f"w_{w[0]}": w[1] for w in where if isinstance(w, tuple)}
        bound.update({f"v_{c}": v for c, v in values if not isinstance(v, ClauseElement)})
        if params:
            bound.update(params)
        return int(conn.execute(stmt, bound).rowcount)

    def _insert_ignore(self, conn: Connection, table: Any, values: dict[str, Any]) -> None:
        """Insert unless a unique key already holds the row (another writer's, just now)."""
        # Each dialect's own INSERT, imported here: the others' dialects are never loaded.
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(table).values(values).on_conflict_do_nothing()
        elif self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table).values(values).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            pk = next(iter(table.primary_key.columns))
            stmt = mysql_insert(table).values(values).on_duplicate_key_update({pk.name: pk})
        conn.execute(stmt)
