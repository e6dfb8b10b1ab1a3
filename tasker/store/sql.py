"""The SQLAlchemy store: every statement tasker runs against its database is built here."""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql.elements import ClauseElement, ColumnElement

from tasker.config import Config
from tasker.errors import (
    DatabaseError,
    RunEndedError,
    SchemaVersionError,
    TaskerError,
    UnknownRunError,
    UnknownSubtaskError,
)
from tasker.models import (
    NewRun,
    RunRecord,
    StageRecord,
    Status,
    SubtaskRecord,
    TaskRecord,
    TaskSpec,
    TaskStatusRecord,
)
from tasker.store.engine import is_transient, make_engine, refused_for_size, wrap_db_error
from tasker.store.schema import (
    ACTIVE_STATUS_VALUES,
    SCHEMA_VERSION,
    Tables,
    UTCDateTime,
    active_tasks_select,
    build_tables,
    current_task_status_select,
    ddl_statements,
    record_columns,
    run_select,
)

__all__ = ["SqlStore", "open_store"]

T = TypeVar("T")
_OPEN_SUBTASK = ("NOT_STARTED", "STARTED", "RUNNING")
_TERMINAL = ("COMPLETED", "FAILED", "SKIPPED", "CANCELLED")
_RETRY_SECONDS = 60.0
# A lock id every tasker process agrees on, for serialising schema creation.
_PG_LOCK_KEY = 0x7A5C3E1
# The error_type the reaper ends a lost run with (tasker.runtime.reaper.LOST: the store, a layer
# below the reaper, cannot import it), and what mark_lost writes on the run's open subtasks.
_LOST_TYPE = "ProcessLost"
_LOST_SUBTASK = "ended FAILED with its run (process lost)"
_RUN_ERRORS = ("error_message", "error_detail", "error_type")  # error_type last: see _x_unlost


def _ordered(col: Any) -> Any:
    """NULLs last on every backend (MySQL has no NULLS LAST)."""
    return case((col.is_(None), 1), else_=0)


# How many times a journal replay starts again after its connection was lost for another
# reason than a value's size (a dropped connection) before it gives up for now.
_REPLAY_RECONNECTS = 3


class _ConnectionLost(Exception):
    """A journal replay lost its connection (and its transaction) at one operation."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _reason(exc: BaseException, config: Config) -> str:
    """Why the database refused a replayed operation, in one line without secrets."""
    if isinstance(exc, SQLAlchemyError):
        return str(wrap_db_error(exc, config, "writing it"))
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class SqlStore:
    """Reads and writes tasker's tables. Thread-safe; one per process and configuration."""

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
        self._lock = threading.Lock()
        self._schema_checked = False
        # A thread applying a batch runs every operation in its one open transaction.
        self._local = threading.local()
        # Statements are built once per shape and run with parameters: building and
        # cache-keying a statement per call would cost more than the database's own work.
        self._stmts: dict[Any, Any] = {}
        runs, sp = self.t.task_runs, self.t.subtask_progress
        self._x_run_running = _started_to_running(runs.c.status)
        self._x_sub_running = _started_to_running(sp.c.status)
        self._x_sub_open = sp.c.status.in_([literal_column(f"'{v}'") for v in _OPEN_SUBTASK])
        self._x_items = bindparam("x_items", type_=BigInteger())
        self._x_pct_items = _percent_of(self._x_items, sp)
        self._x_new_count = sp.c.items_complete + bindparam("x_by", type_=BigInteger())
        self._x_pct_new_count = _percent_of(self._x_new_count, sp)
        self._x_run_is_started = runs.c.status == literal_column("'STARTED'")
        self._x_run_active = runs.c.status.in_(
            [literal_column(f"'{v}'") for v in ACTIVE_STATUS_VALUES]
        )
        last = self.t.tasks.c.last_start_time
        self._x_not_later = or_(last.is_(None), last <= bindparam("x_start", type_=last.type))
        # A run the reaper ended, and the subtasks it ended with it. The reaper can be wrong
        # (a process stopped for long, a heartbeat lost): when the run's own end, or a status
        # update, arrives after all, the process was alive and what it says wins. Each field
        # the arriving write does not set is cleared where the reaper set it, else kept; they
        # read error_type and status, so they come before both in a SET (MySQL evaluates it
        # left to right).
        reaped = and_(
            runs.c.status == literal_column("'FAILED'"),
            runs.c.error_type == literal_column(f"'{_LOST_TYPE}'"),
        )
        self._x_unlost = {
            name: case((reaped, null()), else_=runs.c[name]) for name in (*_RUN_ERRORS, "end_time")
        }
        sub_reaped = and_(
            sp.c.status == literal_column("'FAILED'"),
            sp.c.error_message == literal_column(f"'{_LOST_SUBTASK}'"),
        )
        self._x_sub_open_or_reaped = or_(self._x_sub_open, sub_reaped)
        # A run that may still be ended: an active one, or one the reaper ended. An ended run
        # stays ended: a second ending is refused, the first kept intact.
        self._x_run_endable = or_(self._x_run_active, reaped)
        self._x_sub_unlost = case(
            (sp.c.error_message == literal_column(f"'{_LOST_SUBTASK}'"), null()),
            else_=sp.c.error_message,
        )

    # ------------------------------------------------------------------ plumbing

    def dispose(self) -> None:
        self.engine.dispose()

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

    def _run(self, doing: str, fn: Callable[[Connection], T], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction, retrying transient failures (locks, deadlocks).

        Inside :meth:`batch` the operation joins the batch's transaction instead.
        """
        batch_conn: Connection | None = getattr(self._local, "conn", None)
        if batch_conn is not None:
            return fn(batch_conn)
        deadline = time.monotonic() + self.retry_seconds
        attempt = 0
        while True:
            try:
                with self.engine.connect() as conn:
                    if not write and self.dialect == "sqlite":
                        conn = conn.execution_options(sqlite_begin="DEFERRED")
                    with conn.begin():
                        return fn(conn)
            except TaskerError:
                raise
            except SQLAlchemyError as exc:
                attempt += 1
                if is_transient(exc) and time.monotonic() < deadline:
                    time.sleep(min(1.0, 0.01 * 2**attempt) * (0.5 + random.random()))
                    continue
                raise wrap_db_error(exc, self.config, doing) from None

    def batch(self, operations: Sequence[Callable[[], object]]) -> None:
        """Run ``operations`` (calls of this store's write methods) in one transaction.

        Raises what the first failing operation raised; then nothing of the batch is written.
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
        self._run("writing tracked events", apply)
        with self._lock:  # only now committed: safe to remember
            self._task_ids.update(self._local.task_ids)

    def replay_journal(
        self,
        journal_id: str,
        hostname: str | None,
        process_id: int | None,
        operations: Sequence[tuple[str, Callable[[], object]]],
        set_aside: Callable[[list[tuple[int, str]]], None] | None = None,
    ) -> tuple[int, int] | None:
        """Apply a journal file's ``(what, operation)`` pairs in one transaction that also
        records ``journal_id``; None when that file was replayed before. Returns (operations
        written, operations refused).

        An operation the database refuses is rolled back alone (a savepoint) and the rest go
        on. One that makes MySQL/MariaDB drop the connection for its size (beyond
        ``max_allowed_packet``, which takes the whole transaction with it) is left out of a
        new attempt of the file. ``set_aside`` gets the refused operations, as (index in
        ``operations``, reason), before the transaction commits: when it raises, nothing is
        committed."""
        marks = self.t.journal_replays
        skipped: dict[int, str] = {}  # index -> why: refused for its size (MySQL/MariaDB)

        def seen(conn: Connection) -> bool:
            found = conn.execute(
                select(marks.c.journal_id).where(marks.c.journal_id == journal_id)
            ).first()
            return found is not None

        def apply(conn: Connection) -> tuple[int, int] | None:
            self._local.task_ids = {}
            if seen(conn):
                return None
            conn.execute(
                marks.insert(),
                {
                    "journal_id": journal_id,
                    "hostname": hostname,
                    "process_id": process_id,
                    "events": len(operations),
                    "replayed_at": datetime.now(timezone.utc),
                },
            )
            written = 0
            refused: list[tuple[int, str]] = []
            task_ids: dict[Any, int] = self._local.task_ids
            self._local.conn = conn
            try:
                for index, (_what, operation) in enumerate(operations):
                    if index in skipped:
                        refused.append((index, skipped[index]))
                        continue
                    known = len(task_ids)
                    try:
                        with conn.begin_nested():
                            operation()
                        written += 1
                    except Exception as exc:  # whatever the value: set aside, never blocking
                        if conn.invalidated:
                            raise _ConnectionLost(index, exc) from exc
                        for key in list(task_ids)[known:]:  # rolled back with it
                            del task_ids[key]
                        refused.append((index, _reason(exc, self.config)))
            finally:
                self._local.conn = None
            if refused and set_aside is not None:
                set_aside(refused)
            return written, len(refused)

        dropped = 0  # connections lost for another reason than a value's size
        while True:  # each round skips one more operation, or counts a lost connection
            try:
                done = self._run("replaying a journal file", apply)
            except _ConnectionLost as lost:
                why = refused_for_size(lost.error, self.config, self.engine)
                if why is not None and lost.index not in skipped:
                    skipped[lost.index] = why
                    continue
                dropped += 1
                if dropped < _REPLAY_RECONNECTS:
                    continue
                raise wrap_db_error(lost.error, self.config, "replaying a journal file") from None
            except DatabaseError:
                # Another process replayed the same file at the same moment and won.
                if self._run("reading replayed journals", seen, write=False):
                    return None
                raise
            break
        with self._lock:
            self._task_ids.update(self._local.task_ids)
        return done

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

    def _insert_many(self, conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        """INSERT many rows with the same keys straight through the driver's executemany:
        at thousands of rows a second, SQLAlchemy's per-row parameter processing would cost
        more than the database. Timestamps are converted here as UTCDateTime would."""
        keys = tuple(rows[0])
        shape = ("insert", table.name, keys)
        prepared = self._stmts.get(shape)
        if prepared is None:
            compiled = table.insert().compile(dialect=self.engine.dialect, column_keys=list(keys))
            order = list(compiled.positiontup) if compiled.positional else list(keys)
            dialect = self.engine.dialect
            converters = {
                k: functools.partial(table.c[k].type.process_bind_param, dialect=dialect)
                for k in order
                if isinstance(table.c[k].type, UTCDateTime)
            }
            prepared = (compiled.string, compiled.positional, order, converters)
            self._stmts[shape] = prepared
        sql, positional, order, converters = prepared

        def value(row: dict[str, Any], key: str) -> Any:
            v = row[key]
            conv = converters.get(key)
            return v if conv is None or v is None else conv(v)

        if positional:
            params: list[Any] = [tuple(value(row, k) for k in order) for row in rows]
        else:
            params = [{k: value(row, k) for k in order} for row in rows]
        conn.exec_driver_sql(sql, params)

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

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int | None:
        """The stored schema version, or None when the schema does not exist."""
        info = self.t.schema_info

        def read(conn: Connection) -> int | None:
            value = conn.execute(
                select(info.c.value).where(info.c.key == "schema_version")
            ).scalar_one_or_none()
            return int(value) if value is not None else None

        def exists(conn: Connection) -> bool:
            return bool(self.engine.dialect.has_table(conn, "schema_info", schema=self.t.schema))

        # One statement in the usual case (every short-lived command pays for this); the
        # catalog is asked only when it fails, to tell a missing schema from a real error.
        try:
            return self._run("reading the schema version", read, write=False)
        except DatabaseError:
            if not self._run("looking for the schema", exists, write=False):
                return None
        # Another process created the schema between the two looks: read it now (a real
        # error, of a schema that was there all along, is raised by this second read).
        return self._run("reading the schema version", read, write=False)

    def create_schema(self) -> bool:
        """Create every table, index, view and trigger unless they exist; True if created.

        Safe when many processes call it at once on an empty database: creation runs under
        a database-wide lock (an advisory lock, GET_LOCK, or SQLite's write lock).
        """

        def create(conn: Connection) -> bool:
            if self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            version = self._read_version(conn)
            if version is not None:
                self._check_version(version)
                if version < SCHEMA_VERSION:
                    self._upgrade(conn, version)
                    return True
                return False
            for stmt in ddl_statements(self.dialect, self.t.schema):
                self._exec_ddl(conn, stmt)
            conn.execute(
                self.t.schema_info.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
            )
            return True

        if self.dialect != "mysql":
            created = self._run("creating the schema", create)
        else:
            # MySQL's DDL commits as it goes, so the lock must be a session lock held on a
            # connection of its own until the version row is committed.
            created = self._run(
                "creating the schema", lambda lock: self._mysql_locked(lock, create)
            )
        self._schema_checked = True
        return created

    def _mysql_locked(self, lock: Connection, fn: Callable[[Connection], T]) -> T:
        # Within the statement limit the session has (a longer wait would be cut off as a
        # stalled server); a busy lock is retried by _run like any other.
        wait = max(1, int(self.config.statement_timeout) - 1)
        got = lock.execute(text(f"SELECT GET_LOCK('tasker_schema', {wait})")).scalar()
        if got != 1:
            raise DatabaseError(
                "timed out waiting for another process creating the schema", unavailable=True
            )
        try:
            return self._run("creating the schema", fn)
        finally:
            lock.execute(text("SELECT RELEASE_LOCK('tasker_schema')"))

    def _exec_ddl(self, conn: Connection, stmt: str) -> None:
        if self.dialect == "mysql" and stmt.startswith("CREATE INDEX"):
            # MySQL DDL is not transactional: after an interrupted creation an index may
            # already exist. 1061 = duplicate key name.
            try:
                conn.exec_driver_sql(stmt)
            except DBAPIError as exc:
                if getattr(exc.orig, "args", (None,))[0] != 1061:
                    raise
            return
        conn.exec_driver_sql(stmt.replace("%", "%%") if self.dialect != "sqlite" else stmt)

    def _read_version(self, conn: Connection) -> int | None:
        if not self.engine.dialect.has_table(conn, "schema_info", schema=self.t.schema):
            return None
        value = conn.execute(
            select(self.t.schema_info.c.value).where(self.t.schema_info.c.key == "schema_version")
        ).scalar_one_or_none()
        return int(value) if value is not None else None

    def _upgrade(self, conn: Connection, version: int) -> None:
        from tasker.store.migrations import UPGRADES, refresh_views

        for step in range(version, SCHEMA_VERSION):
            if step not in UPGRADES:
                raise SchemaVersionError(
                    f"the database holds tasker schema version {version} and this tasker has no "
                    f"upgrade from version {step}: upgrade with the tasker release that "
                    f"introduced version {step + 1} first"
                )
            UPGRADES[step](conn, self.dialect, self.t)
            if step + 1 < SCHEMA_VERSION:
                self._record_version(conn, step + 1)
        # The views last, from the final tables; the final version only after them, so that
        # an upgrade interrupted before them (MySQL commits DDL as it goes) is run again.
        refresh_views(conn, self.dialect, self.t)
        self._record_version(conn, SCHEMA_VERSION)

    def _record_version(self, conn: Connection, version: int) -> None:
        conn.execute(
            update(self.t.schema_info)
            .where(self.t.schema_info.c.key == "schema_version")
            .values(value=str(version))
        )

    @staticmethod
    def _check_version(version: int) -> None:
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database holds tasker schema version {version}, newer than the version "
                f"{SCHEMA_VERSION} this tasker understands: upgrade tasker"
            )

    def ensure_schema(self) -> None:
        """Create the schema on first use; check its version once per store."""
        if not self._schema_checked:
            with self._lock:
                self._ensure_schema_locked()

    def _ensure_schema_locked(self) -> None:
        if self._schema_checked:  # another thread did it while this one waited
            return
        version = self.schema_version()
        if version is None or version < SCHEMA_VERSION:
            self.create_schema()  # creates, or upgrades in place
        else:
            self._check_version(version)
        self._schema_checked = True

    def drop_schema(self) -> None:
        """Drop every tasker object (for tests and ``tasker purge --all``)."""

        def drop(conn: Connection) -> None:
            for view in ("current_task_status", "active_tasks"):
                conn.exec_driver_sql(f"DROP VIEW IF EXISTS {self.t.qualified(view)}")
            self.t.metadata.drop_all(conn, checkfirst=True)

        self._run("dropping the schema", drop)
        self._task_ids.clear()
        self._schema_checked = False

    # ------------------------------------------------------------------ registration

    def _ensure_stage(
        self,
        conn: Connection,
        name: str,
        order: int | None,
        description: str | None,
        now: datetime,
    ) -> int:
        stages = self.t.stages
        row = conn.execute(
            select(stages.c.stage_id, stages.c.stage_order, stages.c.description).where(
                stages.c.stage_name == name
            )
        ).first()
        if row is None:
            if order is None:
                order = (
                    conn.execute(
                        select(func.coalesce(func.max(stages.c.stage_order), 0))
                    ).scalar_one()
                    + 1
                )
            self._insert_ignore(
                conn,
                stages,
                {
                    "stage_name": name,
                    "stage_order": order,
                    "description": description,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            return int(
                conn.execute(
                    select(stages.c.stage_id).where(stages.c.stage_name == name)
                ).scalar_one()
            )
        changes: dict[str, Any] = {}
        if order is not None and order != row.stage_order:
            changes["stage_order"] = order
        if description is not None and description != row.description:
            changes["description"] = description
        if changes:
            changes["updated_at"] = now
            conn.execute(update(stages).where(stages.c.stage_id == row.stage_id).values(changes))
        return int(row.stage_id)

    def _ensure_task(self, conn: Connection, spec: TaskSpec, now: datetime) -> int:
        tasks = self.t.tasks
        stage_id = self._ensure_stage(
            conn, spec.stage, spec.stage_order, spec.stage_description, now
        )
        given = {
            "task_type": spec.task_type,
            "task_order": spec.task_order,
            "description": spec.description,
            "script_path": spec.script_path,
            "script_filename": spec.script_filename,
            "log_path": spec.log_path,
            "log_filename": spec.log_filename,
        }
        given = {k: v for k, v in given.items() if v is not None}
        where = and_(tasks.c.stage_id == stage_id, tasks.c.task_name == spec.name)
        row = conn.execute(select(tasks).where(where)).first()
        if row is None:
            if "task_order" not in given:
                given["task_order"] = (
                    conn.execute(
                        select(func.coalesce(func.max(tasks.c.task_order), 0)).where(
                            tasks.c.stage_id == stage_id
                        )
                    ).scalar_one()
                    + 1
                )
            self._insert_ignore(
                conn,
                tasks,
                {
                    "stage_id": stage_id,
                    "task_name": spec.name,
                    "created_at": now,
                    "updated_at": now,
                    **given,
                },
            )
            return int(conn.execute(select(tasks.c.task_id).where(where)).scalar_one())
        changes: dict[str, Any] = {k: v for k, v in given.items() if getattr(row, k) != v}
        if changes:
            changes["updated_at"] = now
            conn.execute(update(tasks).where(tasks.c.task_id == row.task_id).values(changes))
        return int(row.task_id)

    def register_tasks(self, specs: Sequence[TaskSpec], now: datetime) -> list[int]:
        """Register (or update in place) every task in one transaction; return their ids."""

        def register(conn: Connection) -> list[int]:
            return [self._ensure_task(conn, spec, now) for spec in specs]

        ids = self._run("registering tasks", register)
        for spec, task_id in zip(specs, ids, strict=True):
            self._remember_task((spec.stage, spec.name), task_id)
        return ids

    # ------------------------------------------------------------------ runs

    def insert_runs(self, rows: Sequence[dict[str, Any]], chunk: int = 5000) -> None:
        """Bulk-insert complete run rows (imports, benchmarks); one transaction per chunk.
        Call :meth:`refresh_latest_runs` afterwards."""
        for start in range(0, len(rows), chunk):
            part = list(rows[start : start + chunk])

            def insert(conn: Connection, part: list[dict[str, Any]] = part) -> None:
                conn.execute(self.t.task_runs.insert(), part)

            self._run("inserting runs", insert)

    _RUN_FIELDS = (
        "parent_run_id",
        "hostname",
        "process_id",
        "parent_pid",
        "process_start_time",
        "boot_id",
        "pid_namespace",
        "user_name",
        "python_version",
        "command_line",
        "script_path",
        "script_filename",
        "log_path",
        "log_filename",
        "version",
        "git_commit",
        "git_branch",
        "git_dirty",
        "environment",
        "start_time",
        "total_subtasks",
        "overall_progress_message",
    )

    @classmethod
    def _start_values(cls, run: NewRun) -> dict[str, Any]:
        return {
            "run_id": run.run_id,
            "status": run.status.value,
            "last_update": run.start_time,
            "heartbeat": run.start_time,
            **{name: getattr(run, name) for name in cls._RUN_FIELDS},
        }

    def _task_id_for(self, conn: Connection, run: NewRun) -> int:
        key = (run.stage, run.task)
        task_id = self._cached_task(key)
        if task_id is None:
            spec = TaskSpec(stage=run.stage, name=run.task, task_type=run.task_type)
            task_id = self._ensure_task(conn, spec, run.start_time)
            self._remember_task(key, task_id)
        return task_id

    def _point_to_latest(
        self, conn: Connection, task_id: int, run_id: str, start_time: datetime
    ) -> None:
        """Make ``run_id`` its task's latest run unless a later-started one already is."""
        self._update(
            conn,
            self.t.tasks,
            [("task_id", task_id), self._x_not_later],
            [("last_run_id", run_id), ("last_start_time", start_time)],
            {"x_start": start_time},
        )

    def refresh_latest_runs(self) -> None:
        """Recompute every task's latest run from the runs themselves (after bulk imports,
        purges, or runs written by other tools)."""
        tasks, runs = self.t.tasks, self.t.task_runs
        inner = runs.alias("latest_run")
        latest = (
            select(inner.c.run_id)
            .where(inner.c.task_id == tasks.c.task_id)
            .order_by(inner.c.start_time.desc(), inner.c.run_id.desc())
            .limit(1)
            .scalar_subquery()
        )
        newest = (
            select(func.max(inner.c.start_time))
            .where(inner.c.task_id == tasks.c.task_id)
            .scalar_subquery()
        )

        def apply(conn: Connection) -> None:
            conn.execute(update(tasks).values(last_run_id=latest, last_start_time=newest))

        self._run("finding the latest runs", apply)

    def insert_whole_runs(
        self, rows: Sequence[tuple[NewRun, Status, dict[str, Any], datetime]]
    ) -> None:
        """Insert runs that started and ended between two writes, each as its finished row,
        in one statement (the common case of many short tracked calls)."""
        keys = [c.name for c in self.t.task_runs.c]

        def apply(conn: Connection) -> None:
            params = []
            for run, status, values, when in rows:
                row: dict[str, Any] = dict.fromkeys(keys)
                row.update(self._start_values(run))
                row.update(values)
                row["task_id"] = self._task_id_for(conn, run)
                row["status"] = status.value
                row["last_update"] = row["heartbeat"] = when
                if row["end_time"] is None:
                    row["end_time"] = when
                if status is Status.COMPLETED and row["overall_percent_complete"] is None:
                    row["overall_percent_complete"] = 100.0
                params.append(row)
            self._insert_many(conn, self.t.task_runs, params)
            latest: dict[int, dict[str, Any]] = {}
            for row in params:
                best = latest.get(row["task_id"])
                if best is None or row["start_time"] >= best["start_time"]:
                    latest[row["task_id"]] = row
            for task_id, row in latest.items():
                self._point_to_latest(conn, task_id, row["run_id"], row["start_time"])

        self._run("recording finished runs", apply)

    def start_run(self, run: NewRun) -> None:
        """Insert a run, registering its stage and task on the fly when they are new."""
        key = (run.stage, run.task)
        values = self._start_values(run)

        def insert(conn: Connection) -> None:
            task_id = self._task_id_for(conn, run)
            conn.execute(self.t.task_runs.insert(), {"task_id": task_id, **values})
            self._point_to_latest(conn, task_id, run.run_id, run.start_time)

        try:
            self._run("recording the start of a run", insert)
        except DatabaseError:
            if key not in self._task_ids or getattr(self._local, "conn", None) is not None:
                raise
            # The cached task may have been purged meanwhile: look it up again.
            self._task_ids.pop(key, None)
            self._run("recording the start of a run", insert)

    def _missing_run(self, conn: Connection, run_id: str) -> UnknownRunError:
        return UnknownRunError(
            f"no run with run_id {run_id!r} in {self.config.driver} database: expected the "
            "run_id returned by task_start()"
        )

    def _run_exists(self, conn: Connection, run_id: str) -> bool:
        runs = self.t.task_runs
        return (
            conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is not None
        )

    def update_run(self, run_id: str, values: dict[str, Any], now: datetime) -> None:
        """Set fields of a run (status, percent, message, …)."""
        runs = self.t.task_runs

        def apply(conn: Connection) -> None:
            sets: list[tuple[str, Any]] = []
            if "status" in values:
                # A new status from the run's process: it lives, whatever the reaper said.
                sets += self._unlost(values, ("end_time", *_RUN_ERRORS))
            sets += [("last_update", now), *values.items()]
            if self._update(conn, runs, [("run_id", run_id)], sets) == 0:
                raise self._missing_run(conn, run_id)

        self._run("updating a run", apply)

    def _unlost(self, given: dict[str, Any], names: Sequence[str]) -> list[tuple[str, Any]]:
        """SET entries clearing what the reaper wrote in ``names`` (kept on a run it did not
        end), for the fields that ``given`` does not set itself."""
        return [(name, self._x_unlost[name]) for name in names if name not in given]

    def end_run(
        self,
        run_id: str,
        status: Status,
        values: dict[str, Any],
        now: datetime,
        subtask_message: str | None = None,
    ) -> None:
        """End a run with ``status``; its unfinished subtasks end the same way."""
        runs, sp = self.t.task_runs, self.t.subtask_progress

        def apply(conn: Connection) -> None:
            final = dict(values)
            final.setdefault("end_time", now)
            if status is Status.COMPLETED:
                final.setdefault("overall_percent_complete", 100.0)
            sets = [
                # A run the reaper ended that ends now after all: the real end wins, with
                # none of the reaper's error left (never COMPLETED with ProcessLost).
                *self._unlost(final, _RUN_ERRORS),
                ("status", status.value),
                ("last_update", now),
                ("heartbeat", now),
                *final.items(),
            ]
            if self._update(conn, runs, [("run_id", run_id), self._x_run_endable], sets) == 0:
                raise self._ended_or_missing(conn, run_id, status)
            sub_values: list[tuple[str, Any]] = [
                ("status", status.value),
                ("end_time", now),
                ("last_update", now),
            ]
            if status is Status.COMPLETED:
                sub_values.append(("percent_complete", 100.0))
            if status is not Status.COMPLETED and subtask_message is not None:
                sub_values.append(("error_message", subtask_message))
            else:
                sub_values.append(("error_message", self._x_sub_unlost))
            # Open subtasks end with the run, and so do those the reaper ended with it.
            self._update(conn, sp, [("run_id", run_id), self._x_sub_open_or_reaped], sub_values)

        self._run("recording the end of a run", apply)

    def _ended_or_missing(self, conn: Connection, run_id: str, status: Status) -> TaskerError:
        runs = self.t.task_runs
        row = conn.execute(
            select(runs.c.status, runs.c.end_time).where(runs.c.run_id == run_id)
        ).first()
        if row is None:
            return self._missing_run(conn, run_id)
        end = row.end_time
        when = f" at {end:%Y-%m-%d %H:%M:%S}" if isinstance(end, datetime) else ""
        return RunEndedError(
            f"run {run_id} already ended {row.status}{when}; ending it again as "
            f"{status.value} is refused (the first ending is kept)"
        )

    def purge_runs(self, ended_before: datetime, *, dry_run: bool = False) -> int:
        """Delete runs that ended before ``ended_before`` (never an active one), with their
        subtasks; returns how many. Tasks' latest-run pointers are recomputed."""
        runs, sp = self.t.task_runs, self.t.subtask_progress
        old = and_(
            runs.c.end_time.is_not(None),
            runs.c.end_time < bindparam("x_before", type_=runs.c.end_time.type),
            runs.c.status.not_in(ACTIVE_STATUS_VALUES),
        )
        params = {"x_before": ended_before}

        def count(conn: Connection) -> int:
            return int(
                conn.execute(select(func.count()).select_from(runs).where(old), params).scalar_one()
            )

        if dry_run:
            return self._run("counting old runs", count, write=False)

        def purge(conn: Connection) -> int:
            doomed = select(runs.c.run_id).where(old)
            if self.dialect == "mysql":  # MySQL cannot read the table it deletes from
                doomed = select(doomed.subquery().c.run_id)
            conn.execute(sp.delete().where(sp.c.run_id.in_(doomed)), params)
            return int(conn.execute(runs.delete().where(old), params).rowcount)

        removed = self._run("deleting old runs", purge)
        if removed:
            self.refresh_latest_runs()
        return removed

    def heartbeat(self, run_ids: Sequence[str], now: datetime) -> None:
        """Mark active runs ``run_ids`` as alive at ``now``."""
        runs = self.t.task_runs
        stmt = self._stmts.get("heartbeat")
        if stmt is None:
            stmt = (
                update(runs)
                .where(
                    runs.c.run_id.in_(bindparam("x_ids", expanding=True)),
                    runs.c.status.in_(ACTIVE_STATUS_VALUES),
                )
                .values(heartbeat=bindparam("x_now", type_=runs.c.heartbeat.type))
            )
            self._stmts["heartbeat"] = stmt

        def apply(conn: Connection) -> None:
            conn.execute(stmt, {"x_ids": list(run_ids), "x_now": now})

        self._run("recording a heartbeat", apply)

    def mark_lost(self, run_id: str, values: dict[str, Any], now: datetime) -> bool:
        """End an active run FAILED because its process is gone; False when it was no longer
        active (it ended meanwhile, or another reaper got there first)."""
        runs, sp = self.t.task_runs, self.t.subtask_progress

        def apply(conn: Connection) -> bool:
            sets = [("status", Status.FAILED.value), ("last_update", now), *values.items()]
            matched = self._update(conn, runs, [("run_id", run_id), self._x_run_active], sets)
            if matched == 0:
                return False
            self._update(
                conn,
                sp,
                [("run_id", run_id), self._x_sub_open],
                [
                    ("status", Status.FAILED.value),
                    ("end_time", values.get("end_time", now)),
                    ("last_update", now),
                    ("error_message", _LOST_SUBTASK),
                ],
            )
            return True

        return self._run("ending a lost run", apply)

    # ------------------------------------------------------------------ subtasks

    def _current_subtask(self, conn: Connection, run_id: str) -> int:
        runs = self.t.task_runs
        row = conn.execute(select(runs.c.current_subtask).where(runs.c.run_id == run_id)).first()
        if row is None:
            raise self._missing_run(conn, run_id)
        if row.current_subtask is None:
            raise UnknownSubtaskError(
                f"run {run_id} has no subtask yet: call subtask_start() first, or pass "
                "subtask_number"
            )
        return int(row.current_subtask)

    def _missing_subtask(self, conn: Connection, run_id: str, number: int) -> TaskerError:
        if not self._run_exists(conn, run_id):
            return self._missing_run(conn, run_id)
        sp = self.t.subtask_progress
        numbers = (
            conn.execute(
                select(sp.c.subtask_number)
                .where(sp.c.run_id == run_id)
                .order_by(sp.c.subtask_number)
            )
            .scalars()
            .all()
        )
        have = ", ".join(str(n) for n in numbers) or "none yet"
        return UnknownSubtaskError(f"run {run_id} has no subtask {number}: its subtasks are {have}")

    def start_subtask(
        self,
        run_id: str,
        number: int | None,
        name: str | None,
        items_total: int | None,
        message: str | None,
        now: datetime,
    ) -> int:
        """Start subtask ``number`` (the next free one when None); return its number.

        Restarting an existing number resets it. The run becomes RUNNING.
        """
        runs, sp = self.t.task_runs, self.t.subtask_progress

        def apply(conn: Connection) -> int:
            # Touching the run first both checks it exists and, on PostgreSQL and MySQL,
            # locks its row, so concurrent auto-numbering of one run is serialised.
            touched = self._update(
                conn,
                runs,
                [("run_id", run_id)],
                [("status", self._x_run_running), ("last_update", now)],
            )
            if touched == 0:
                raise self._missing_run(conn, run_id)
            n = number
            if n is None:
                n = (
                    int(
                        conn.execute(
                            select(func.coalesce(func.max(sp.c.subtask_number), 0)).where(
                                sp.c.run_id == run_id
                            )
                        ).scalar_one()
                    )
                    + 1
                )
            fields = {
                "subtask_name": name,
                "status": Status.STARTED.value,
                "start_time": now,
                "end_time": None,
                "last_update": now,
                "items_total": items_total,
                "items_complete": 0,
                "percent_complete": 0.0,
                "progress_message": message,
                "error_message": None,
            }
            # A restart of an existing number resets it; a new number is inserted.
            restarted = self._update(
                conn, sp, [("run_id", run_id), ("subtask_number", n)], list(fields.items())
            )
            if restarted == 0:
                conn.execute(sp.insert(), {"run_id": run_id, "subtask_number": n, **fields})
            self._update(conn, runs, [("run_id", run_id)], [("current_subtask", n)])
            return n

        try:
            return self._run("starting a subtask", apply)
        except DatabaseError as exc:
            # Two writers numbered the same new subtask at once (SQLite and MySQL can let
            # that through): number again.
            reason = str(exc).lower()
            if number is None and ("unique" in reason or "duplicate" in reason):
                return self._run("starting a subtask", apply)
            raise

    def update_subtask(
        self,
        run_id: str,
        number: int | None,
        values: dict[str, Any],
        now: datetime,
        *,
        items_complete: int | None = None,
        reend: bool = False,
    ) -> int:
        """Set fields of a subtask (the run's current one when ``number`` is None).

        A subtask that has ended stays ended: ending it again is refused (RunEndedError),
        unless ``reend`` (the automatic layer correcting a loop's status)."""
        runs, sp = self.t.task_runs, self.t.subtask_progress
        ending = values.get("status") in _TERMINAL and not reend

        def apply(conn: Connection) -> int:
            n = number if number is not None else self._current_subtask(conn, run_id)
            fields: dict[str, Any] = {"last_update": now, **values}
            if "status" not in fields:
                fields["status"] = self._x_sub_running
            elif "error_message" not in fields:
                # Ended by its process after the reaper ended it with its run: not lost.
                fields["error_message"] = self._x_sub_unlost
            params: dict[str, Any] = {}
            if items_complete is not None:
                if "percent_complete" not in fields:
                    fields["percent_complete"] = self._x_pct_items
                    params["x_items"] = items_complete
                fields["items_complete"] = items_complete  # after the percent: MySQL order
            where: list[Any] = [("run_id", run_id), ("subtask_number", n)]
            if ending:
                where.append(self._x_sub_open_or_reaped)
            matched = self._update(conn, sp, where, list(fields.items()), params)
            if matched == 0:
                raise self._ended_subtask_or_missing(conn, run_id, n, ending, values)
            self._update(
                conn,
                runs,
                [("run_id", run_id)],
                [("status", self._x_run_running), ("last_update", now)],
            )
            if fields.get("status") in _TERMINAL:
                self._roll_up_percent(conn, run_id)
            return n

        return self._run("updating a subtask", apply)

    def _ended_subtask_or_missing(
        self, conn: Connection, run_id: str, n: int, ending: bool, values: dict[str, Any]
    ) -> TaskerError:
        sp = self.t.subtask_progress
        if ending:
            row = conn.execute(
                select(sp.c.status).where(sp.c.run_id == run_id, sp.c.subtask_number == n)
            ).first()
            if row is not None:
                return RunEndedError(
                    f"subtask {n} of run {run_id} already ended {row.status}; ending it again "
                    f"as {values['status']} is refused (the first ending is kept)"
                )
        return self._missing_subtask(conn, run_id, n)

    def increment_subtask(self, run_id: str, number: int | None, by: int, now: datetime) -> int:
        """Add ``by`` items to a subtask atomically (safe with many concurrent writers)."""
        runs, sp = self.t.task_runs, self.t.subtask_progress

        def apply(conn: Connection) -> int:
            n = number if number is not None else self._current_subtask(conn, run_id)
            # MySQL evaluates SET assignments left to right, each seeing the ones before:
            # everything that reads items_complete must come before it is assigned.
            matched = self._update(
                conn,
                sp,
                [("run_id", run_id), ("subtask_number", n)],
                [
                    ("percent_complete", self._x_pct_new_count),
                    ("status", self._x_sub_running),
                    ("last_update", now),
                    ("items_complete", self._x_new_count),
                ],
                {"x_by": by},
            )
            if matched == 0:
                raise self._missing_subtask(conn, run_id, n)
            self._update(
                conn,
                runs,
                [("run_id", run_id), self._x_run_is_started],
                [("status", Status.RUNNING.value), ("last_update", now)],
            )
            return n

        return self._run("incrementing a subtask", apply)

    def _roll_up_percent(self, conn: Connection, run_id: str) -> None:
        """With total_subtasks known, the run's percent is the share of subtasks ended."""
        runs, sp = self.t.task_runs, self.t.subtask_progress
        ended = (
            select(func.count())
            .select_from(sp)
            .where(sp.c.run_id == run_id, sp.c.status.in_(_TERMINAL))
            .scalar_subquery()
        )
        share = ended * 100.0 / runs.c.total_subtasks
        conn.execute(
            update(runs)
            .where(runs.c.run_id == run_id, runs.c.total_subtasks > 0)
            .values(overall_percent_complete=case((share > 100.0, 100.0), else_=share))
        )

    # ------------------------------------------------------------------ queries

    def task_status(
        self,
        stage: str | None = None,
        task: str | None = None,
        status: Sequence[str] | None = None,
    ) -> list[TaskStatusRecord]:
        view = current_task_status_select(self.t).subquery("current_task_status")
        stmt = select(view)
        if stage is not None:
            stmt = stmt.where(view.c.stage_name == stage)
        if task is not None:
            stmt = stmt.where(view.c.task_name == task)
        if status:
            stmt = stmt.where(view.c.status.in_(list(status)))
        stmt = stmt.order_by(
            _ordered(view.c.stage_order),
            view.c.stage_order,
            view.c.stage_name,
            _ordered(view.c.task_order),
            view.c.task_order,
            view.c.task_name,
        )
        rows = self._run("reading task status", lambda c: c.execute(stmt).all(), write=False)
        return [_task_status_record(r) for r in rows]

    def active_runs(self) -> list[RunRecord]:
        sel = active_tasks_select(self.t).subquery("active_tasks")
        stmt = select(sel).order_by(
            _ordered(sel.c.stage_order),
            sel.c.stage_order,
            _ordered(sel.c.task_order),
            sel.c.task_order,
            sel.c.start_time,
        )
        rows = self._run("reading active runs", lambda c: c.execute(stmt).all(), write=False)
        return [_run_record(r) for r in rows]

    def history(
        self,
        *,
        stage: str | None = None,
        task: str | None = None,
        status: Sequence[str] | None = None,
        hostname: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[RunRecord]:
        runs = self.t.task_runs
        stmt = run_select(self.t)
        conds: list[ColumnElement[bool]] = []
        if stage is not None:
            conds.append(self.t.stages.c.stage_name == stage)
        if task is not None:
            conds.append(self.t.tasks.c.task_name == task)
        if status:
            conds.append(runs.c.status.in_(list(status)))
        if hostname is not None:
            conds.append(runs.c.hostname == hostname)
        if since is not None:
            conds.append(runs.c.start_time >= since)
        if until is not None:
            conds.append(runs.c.start_time < until)
        if conds:
            stmt = stmt.where(*conds)
        stmt = stmt.order_by(runs.c.start_time.desc(), runs.c.run_id.desc()).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = self._run("reading run history", lambda c: c.execute(stmt).all(), write=False)
        return [_run_record(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        stmt = run_select(self.t).where(self.t.task_runs.c.run_id == run_id)

        def read(conn: Connection) -> RunRecord:
            row = conn.execute(stmt).first()
            if row is None:
                raise self._missing_run(conn, run_id)
            return _run_record(row)

        return self._run("reading a run", read, write=False)

    def run_counts(self) -> dict[str, int]:
        """How many runs there are of each status."""
        runs = self.t.task_runs
        stmt = select(runs.c.status, func.count()).group_by(runs.c.status)
        rows = self._run("counting runs", lambda c: c.execute(stmt).all(), write=False)
        return {str(status): int(n) for status, n in rows}

    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Run ids starting with ``prefix`` (at most ``limit``)."""
        runs = self.t.task_runs
        stmt = (
            select(runs.c.run_id)
            .where(cast(runs.c.run_id, String(36)).like(bindparam("x_prefix")))
            .order_by(runs.c.run_id)
            .limit(limit)
        )
        rows = self._run(
            "finding a run",
            lambda c: c.execute(stmt, {"x_prefix": prefix + "%"}).scalars().all(),
            write=False,
        )
        return [str(r) for r in rows]

    def subtasks(self, run_id: str) -> list[SubtaskRecord]:
        sp = self.t.subtask_progress
        stmt = (
            select(*record_columns(SubtaskRecord, {c.name: c for c in sp.c}))
            .where(sp.c.run_id == run_id)
            .order_by(sp.c.subtask_number)
        )

        def read(conn: Connection) -> list[SubtaskRecord]:
            rows = conn.execute(stmt).all()
            if not rows and not self._run_exists(conn, run_id):
                raise self._missing_run(conn, run_id)
            return [_subtask_record(r) for r in rows]

        return self._run("reading subtasks", read, write=False)

    def current_subtasks(self, run_ids: Sequence[str]) -> dict[str, SubtaskRecord]:
        """Each run's current subtask (the one its ``current_subtask`` names), by run id;
        runs without one are left out. Read in chunks, so any number of runs may be asked."""
        runs, sp = self.t.task_runs, self.t.subtask_progress
        columns = record_columns(SubtaskRecord, {c.name: c for c in sp.c})
        found: dict[str, SubtaskRecord] = {}
        wanted = list(dict.fromkeys(run_ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            stmt = (
                select(*columns)
                .select_from(
                    sp.join(
                        runs,
                        and_(
                            runs.c.run_id == sp.c.run_id,
                            runs.c.current_subtask == sp.c.subtask_number,
                        ),
                    )
                )
                .where(sp.c.run_id.in_(chunk))
            )

            def read(conn: Connection, query: Any = stmt) -> list[Any]:
                return list(conn.execute(query).all())

            rows = self._run("reading current subtasks", read, write=False)
            found.update((r.run_id, _subtask_record(r)) for r in rows)
        return found

    def tasks(self, stage: str | None = None) -> list[TaskRecord]:
        st, tk = self.t.stages, self.t.tasks
        columns = record_columns(
            TaskRecord, {**{c.name: c for c in st.c}, **{c.name: c for c in tk.c}}
        )
        stmt = select(*columns).select_from(tk.join(st, st.c.stage_id == tk.c.stage_id))
        if stage is not None:
            stmt = stmt.where(st.c.stage_name == stage)
        stmt = stmt.order_by(
            _ordered(st.c.stage_order),
            st.c.stage_order,
            st.c.stage_name,
            _ordered(tk.c.task_order),
            tk.c.task_order,
            tk.c.task_name,
        )
        rows = self._run("reading tasks", lambda c: c.execute(stmt).all(), write=False)
        return [_task_record(r) for r in rows]

    def stages(self) -> list[StageRecord]:
        st = self.t.stages
        stmt = select(*record_columns(StageRecord, {c.name: c for c in st.c})).order_by(
            _ordered(st.c.stage_order), st.c.stage_order, st.c.stage_name
        )
        rows = self._run("reading stages", lambda c: c.execute(stmt).all(), write=False)
        return [_stage_record(r) for r in rows]

    def find_task_by_script(self, script_filename: str) -> list[TaskRecord]:
        return [t for t in self.tasks() if t.script_filename == script_filename]


def _started_to_running(col: Any) -> Any:
    return case((col == Status.STARTED.value, Status.RUNNING.value), else_=col)


def _percent_of(count: Any, sp: Any) -> Any:
    share = count * 100.0 / sp.c.items_total
    return case(
        (sp.c.items_total > 0, case((count >= sp.c.items_total, 100.0), else_=share)),
        else_=sp.c.percent_complete,
    )


_STATUSES = {s.value: s for s in Status}


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _status_or_none(value: Any) -> Status | None:
    return None if value is None else _STATUSES[value]


R = TypeVar("R")


def _converter(record: type[R], **fixups: Callable[[Any], Any]) -> Callable[[Sequence[Any]], R]:
    """Row → record by position (queries select the record's fields in its field order, see
    ``tasker.store.schema.record_columns``).

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which
    costs more than the query itself for a thousand 28-field rows; the records are slotted,
    so this sets the slots directly, in a function generated once per record type.
    """
    names = [f.name for f in dataclasses.fields(record)]  # type: ignore[arg-type]
    env: dict[str, Any] = {"new": object.__new__, "R": record}
    lines = ["def convert(row):", "    o = new(R)"]
    for i, name in enumerate(names):
        env[f"set_{i}"] = getattr(record, name).__set__
        value = f"row[{i}]"
        if name in fixups:
            env[f"fix_{i}"] = fixups[name]
            value = f"fix_{i}({value})"
        lines.append(f"    set_{i}(o, {value})")
    lines.append("    return o")
    exec("\n".join(lines), env)
    convert: Callable[[Sequence[Any]], R] = env["convert"]
    return convert


_task_status_record = _converter(
    TaskStatusRecord,
    status=_STATUSES.__getitem__,
    subtask_status=_status_or_none,
    run_id=_str_or_none,
)
_run_record = _converter(
    RunRecord,
    status=_STATUSES.__getitem__,
    run_id=str,
    parent_run_id=_str_or_none,
    git_dirty=_bool_or_none,
)
_subtask_record = _converter(SubtaskRecord, status=_STATUSES.__getitem__, run_id=str)
_task_record = _converter(TaskRecord)
_stage_record = _converter(StageRecord)


def open_store(config: Config) -> SqlStore:
    """A store for ``config`` (nothing is connected until the first operation)."""
    return SqlStore(config)
