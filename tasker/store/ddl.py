"""The schema's life: creating it (safely from many processes at once, never for read
commands: see tasker.store.creation), upgrading it in place, checking its version, dropping it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.exc import DBAPIError

from tasker.config import Config
from tasker.errors import DatabaseError, SchemaVersionError
from tasker.store.core import StoreCore
from tasker.store.creation import creating_allowed
from tasker.store.engine import describe_target
from tasker.store.schema import SCHEMA_VERSION, ddl_statements

__all__ = ["SchemaDdl", "no_tables"]

T = TypeVar("T")

# A lock id every tasker process agrees on, for serialising schema creation.
_PG_LOCK_KEY = 0x7A5C3E1


def no_tables(config: Config) -> DatabaseError:
    """The error of a read command (or the dashboard) that finds no tasker tables where
    ``config`` points, which it may not create (see tasker.store.creation): one line saying
    where it looked and how to create them."""
    where = describe_target(config)
    if config.db_schema:
        source = config.sources.get("schema", "default")
        place = f"schema {config.db_schema!r} (from {source}) of the {where}"
        other = "TASKER_DB_SCHEMA or database.schema at the schema"
    elif config.driver == "sqlite":
        place = f"the {where}"
        other = "TASKER_DB_URL or database.path at the file"
    else:
        place = f"the {where}"
        other = "TASKER_DB_URL or database.dbname at the database"
    return DatabaseError(
        f"there are no tasker tables in {place} yet: create them with `tasker init` (or by "
        f"running a tracked task) with this configuration, or point {other} that has them"
    )


class SchemaDdl(StoreCore):
    """Create, upgrade, check and drop the schema."""

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

    def missing_tables(self) -> DatabaseError | None:
        """The error of :func:`no_tables` when the database answers and has no tasker tables;
        None when it has them, or cannot be reached now (the caller decides what then)."""
        try:
            version = self.schema_version()
        except DatabaseError:
            return None
        return no_tables(self.config) if version is None else None

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
        # MySQL's named locks are the server's, not a database's: the name holds the
        # database's, so that creating tasker's tables in one database never waits for (or
        # on a stuck creation in) another on the same server. Hashed, since a lock name
        # takes at most 64 characters and a database name as many.
        name = "CONCAT('tasker_schema.', SHA1(COALESCE(:db, DATABASE())))"
        params = {"db": self.t.schema}
        got = lock.execute(text(f"SELECT GET_LOCK({name}, {wait})"), params).scalar()
        if got != 1:
            raise DatabaseError(
                "timed out waiting for another process creating the schema", unavailable=True
            )
        try:
            return self._run("creating the schema", fn)
        finally:
            lock.execute(text(f"SELECT RELEASE_LOCK({name})"), params)

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
        if version is None and not creating_allowed():
            # A read command: creating the schema (PostgreSQL) or the tables would answer
            # from an empty database made up for it, and leave it behind.
            raise no_tables(self.config)
        if version is None or version < SCHEMA_VERSION:
            self.create_schema()  # creates, or upgrades in place (an existing schema)
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
