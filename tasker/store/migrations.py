"""In-place schema upgrades.

``UPGRADES[n]`` takes a schema from version ``n`` to ``n + 1``. ``SqlStore.create_schema()``
(``tasker init``) applies every step from the stored version to
``tasker.store.schema.SCHEMA_VERSION`` under the same database-wide lock as creation,
records the new version after each step, and then recreates the views
(:func:`refresh_views`). Add a step here whenever ``SCHEMA_VERSION``
is bumped.

Every step must be safe to run again on a schema it already changed: MySQL commits DDL as it
goes, so a step interrupted there is run again, from the start, by the next upgrade; and a
step may find its change already made.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect
from sqlalchemy.schema import CreateIndex, CreateTable

from tasker.store.schema import Tables, dialect_for, view_statements
from tasker.store.triggers import (
    count_trigger_statements,
    pg_touch_function,
    seed_statements,
    shard_rows_statement,
)

__all__ = ["UPGRADES", "Upgrade", "refresh_views"]

# (connection, dialect name, tables of the target version) → None
Upgrade = Callable[[Connection, str, Tables], None]


def _exec(conn: Connection, dialect: str, stmt: str) -> None:
    conn.exec_driver_sql(stmt.replace("%", "%%") if dialect != "sqlite" else stmt)


def refresh_views(conn: Connection, dialect: str, t: Tables) -> None:
    """Recreate the views from the target version's tables, once every step has run.

    Not in the steps themselves: ``t`` describes the target version, so a view built from it
    in an early step could name a column that only a later step adds (a version-1 database
    has no ``boot_id`` when version 2's step runs). The views only ever gain columns at
    their end, as PostgreSQL's ``CREATE OR REPLACE VIEW`` requires."""
    for stmt in view_statements(dialect, t):
        _exec(conn, dialect, stmt)


def _to_2(conn: Connection, dialect: str, t: Tables) -> None:
    """Version 2: the journal_replays table (idempotent journal replay); active_tasks shows
    process_start_time (see refresh_views); on PostgreSQL a heartbeat alone no longer moves a
    run's last_update."""
    create = CreateTable(t.journal_replays, if_not_exists=True)
    conn.exec_driver_sql(str(create.compile(dialect=dialect_for(dialect))))
    if dialect == "postgresql":
        _exec(conn, dialect, pg_touch_function(t))


def _to_3(conn: Connection, dialect: str, t: Tables) -> None:
    """Version 3: task_runs.boot_id and task_runs.pid_namespace, which tell the reaper
    whether a run's PID belongs to its own kernel boot and PID namespace (a hostname alone
    does not); active_tasks shows them (see refresh_views). Older rows keep NULL there and
    are judged by hostname, as before."""
    _add_run_columns(conn, dialect, t, ("boot_id", "pid_namespace"))


def _add_run_columns(conn: Connection, dialect: str, t: Tables, names: tuple[str, ...]) -> None:
    """Add the nullable columns ``names`` to task_runs, those it has not got yet."""
    runs = t.task_runs
    have = {c["name"] for c in inspect(conn).get_columns(runs.name, schema=runs.schema)}
    compiler = dialect_for(dialect)
    for name in names:
        if name in have:  # a fresh schema, or a step run before (MySQL DDL is not undone)
            continue
        column = runs.c[name]
        kind = column.type.compile(dialect=compiler)
        _exec(conn, dialect, f"ALTER TABLE {t.qualified(runs.name)} ADD COLUMN {name} {kind}")


# Indexes that later versions replaced by wider ones: version 3's on start_time alone (by
# (start_time, run_id, task_id), version 4); version 6's on parent_run_id alone (by
# (parent_run_id, start_time, run_id), version 7).
_RETIRED_INDEXES = {4: ("ix_task_runs_start_time",), 7: ("ix_task_runs_parent_run",)}


def _build_indexes(conn: Connection, dialect: str, t: Tables, version: int) -> None:
    """Build each index of task_runs unless it is there already (a fresh schema, or a step
    run before: MySQL DDL is not undone), and drop those ``version`` retired."""
    runs = t.task_runs
    have = {i["name"] for i in inspect(conn).get_indexes(runs.name, schema=runs.schema)}
    compiler = dialect_for(dialect)
    for index in sorted(runs.indexes, key=lambda i: str(i.name)):
        if index.name in have:
            continue
        create = CreateIndex(index).compile(
            dialect=compiler, compile_kwargs={"literal_binds": True}
        )
        _exec(conn, dialect, str(create))
    for name in _RETIRED_INDEXES.get(version, ()):
        if name not in have:
            continue
        if dialect == "mysql":
            _exec(conn, dialect, f"DROP INDEX {name} ON {t.qualified(runs.name)}")
        else:  # a PostgreSQL index lives in its table's schema
            _exec(conn, dialect, f"DROP INDEX IF EXISTS {t.qualified(name)}")


def _to_4(conn: Connection, dialect: str, t: Tables) -> None:
    """Version 4: the indexes that keep every read of the history index-driven however long
    it grows (see tasker.store.selects): (start_time, run_id, task_id), (status, start_time,
    run_id), (hostname, start_time, run_id) and (task_id, status, start_time, run_id) on
    task_runs; version 3's index on start_time alone goes. Each index is built unless it is
    there already; on a long history building them takes a while (minutes at ten million
    runs), under the schema lock."""
    _build_indexes(conn, dialect, t, 4)


def _to_5(conn: Connection, dialect: str, t: Tables) -> None:
    """Version 5: task_runs.log_tail, the end of the run's log file that its process ships
    with the run's end (tasker.runtime.capture.logs). Not in the views. Older rows keep
    NULL there: the dashboard reads their log file inside dashboard.log_roots, as before."""
    _add_run_columns(conn, dialect, t, ("log_tail",))


def _to_6(conn: Connection, dialect: str, t: Tables) -> None:
    """Version 6: task_runs.process_start_uptime, when the run's process started in seconds
    after its kernel booted: what the reaper compares to tell a reused PID, since the epoch
    time moves whenever the clock is changed (tasker.runtime.reaper); active_tasks shows it
    last (see refresh_views). Older rows keep NULL there and are compared by
    process_start_time, as before."""
    _add_run_columns(conn, dialect, t, ("process_start_uptime",))


def _to_7(conn: Connection, dialect: str, t: Tables) -> None:
    """Version 7: the index (parent_run_id, start_time, run_id) in place of parent_run_id's
    own; ``subtask_start_time`` last in current_task_status (see refresh_views); the
    run_counts table and the triggers on task_runs that keep it
    (tasker.store.triggers), seeded from the runs there are: ``/metrics`` reads it instead of
    counting the history.

    The seeding is exact although other processes may be writing runs meanwhile: the table
    is held from before the triggers exist until the counts are made. PostgreSQL's CREATE
    TRIGGER takes a lock that keeps writers out until this transaction commits (and counts
    what was committed before it); MySQL's DDL commits as it goes, so the step holds
    ``LOCK TABLES … WRITE`` on both tables across the triggers and the counts. Counting a
    long history reads it once, under the schema lock (seconds at ten million runs)."""
    create = CreateTable(t.run_counts, if_not_exists=True)
    conn.exec_driver_sql(str(create.compile(dialect=dialect_for(dialect))))
    _exec(conn, dialect, shard_rows_statement(dialect, t))
    # (parent_run_id, start_time, run_id) in place of parent_run_id alone: a run's children
    # and the latest pipeline runs, each a range (tasker.store.pipelines).
    _build_indexes(conn, dialect, t, 7)
    if dialect == "mysql":
        runs, counts = t.qualified("task_runs"), t.qualified("run_counts")
        _exec(conn, dialect, f"LOCK TABLES {runs} WRITE, {counts} WRITE")
    try:
        for stmt in count_trigger_statements(dialect, t) + seed_statements(dialect, t):
            _exec(conn, dialect, stmt)
    finally:
        if dialect == "mysql":
            _exec(conn, dialect, "UNLOCK TABLES")  # commits the counts


UPGRADES: dict[int, Upgrade] = {
    1: _to_2,
    2: _to_3,
    3: _to_4,
    4: _to_5,
    5: _to_6,
    6: _to_7,
}
