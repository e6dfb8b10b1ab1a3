"""In-place schema upgrades.

``UPGRADES[n]`` takes a schema from version ``n`` to ``n + 1``. ``SqlStore.create_schema()``
(``tasker init``) applies every step from the stored version to ``tasker.schema.SCHEMA_VERSION``
under the same database-wide lock as creation, and records the new version. Add a step here
whenever ``SCHEMA_VERSION`` is bumped.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection
from sqlalchemy.schema import CreateTable

from tasker.schema import Tables, dialect_for, pg_touch_function, view_statements

__all__ = ["UPGRADES", "Upgrade"]

# (connection, dialect name, tables of the target version) → None
Upgrade = Callable[[Connection, str, Tables], None]


def _to_2(conn: Connection, dialect: str, t: Tables) -> None:
    """Version 2: the journal_replays table (idempotent journal replay); active_tasks shows
    process_start_time; on PostgreSQL a heartbeat alone no longer moves a run's last_update."""
    create = CreateTable(t.journal_replays, if_not_exists=True)
    conn.exec_driver_sql(str(create.compile(dialect=dialect_for(dialect))))
    for stmt in view_statements(dialect, t):
        conn.exec_driver_sql(stmt.replace("%", "%%") if dialect != "sqlite" else stmt)
    if dialect == "postgresql":
        conn.exec_driver_sql(pg_touch_function(t).replace("%", "%%"))


UPGRADES: dict[int, Upgrade] = {1: _to_2}
