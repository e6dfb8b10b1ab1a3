"""The bulk of a benchmark's history, made by the database server itself.

A fill through the driver sends every row over the wire and runs 3,600 to 11,500 runs a second
here, so ten million runs took a quarter of an hour or more per backend. These statements
make the rows on the server instead — ``INSERT … SELECT`` over a sequence of numbers
(PostgreSQL's ``generate_series``, MariaDB's SEQUENCE engine, a recursive CTE on SQLite) —
a hundred thousand rows a statement, through a connection without tasker's time bounds.

The rows are what ``common.fill`` made through the driver for the old, finished part of the
history: one run every 30 s, the tasks in turn, 16 hosts, 8 in 10 COMPLETED and the rest
FAILED or SKIPPED (spread by a multiplicative hash of the row number, so that no task has
only failures), no subtasks. One difference, on purpose: their ids are ordered by start
time (the row number in the id's first twelve hex digits, the rest fixed), so that each
insert appends to the primary key; tasker's own ids are random, and with random keys
MariaDB's clustered primary key in its default 128 MB buffer pool turns a ten-million-row
fill into hours of random page reads. No read measured picks runs by id order, and the
newest runs, which the reads look up by id, are still made with random ids by ``common.fill``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tasker.store.sql import SqlStore
from tasker.store.triggers import (
    count_trigger_statements,
    drop_count_trigger_statements,
    seed_statements,
)

CHUNK = 100_000

# The columns filled, and each one's expression in terms of the row number ``i``, per dialect.
# :first_task, :tasks and :base are bound; the host, status and id depend on i alone.
COLUMNS = (
    "run_id",
    "task_id",
    "status",
    "hostname",
    "process_id",
    "user_name",
    "start_time",
    "end_time",
    "last_update",
    "total_subtasks",
    "overall_percent_complete",
)

# 8 in 10 COMPLETED, 1 FAILED, 1 SKIPPED; the hash keeps a task (i modulo the task count)
# from always drawing the same status.
_STATUS = (
    "CASE (i * 2654435761) % 1000003 % 10 WHEN 8 THEN 'FAILED' WHEN 9 THEN 'SKIPPED' "
    "ELSE 'COMPLETED' END"
)

_EXPRESSIONS: dict[str, dict[str, str]] = {
    "postgresql": {
        "run_id": (
            "(lpad(to_hex(i >> 16), 8, '0') || '-' || lpad(to_hex(i & 65535), 4, '0') "
            "|| '-4000-8000-000000000000')::uuid"
        ),
        "hostname": "'worker-' || lpad((i % 16)::text, 2, '0')",
        "start": "CAST(:base AS timestamptz) + i * interval '30 seconds'",
        "end": "CAST(:base AS timestamptz) + (i * 30 + 25) * interval '1 second'",
    },
    "mysql": {
        "run_id": (
            "CONCAT(LOWER(LPAD(HEX(i >> 16), 8, '0')), '-', LOWER(LPAD(HEX(i & 65535), 4, '0')), "
            "'-4000-8000-000000000000')"
        ),
        "hostname": "CONCAT('worker-', LPAD(i % 16, 2, '0'))",
        "start": "CAST(:base AS DATETIME(6)) + INTERVAL (i * 30) SECOND",
        "end": "CAST(:base AS DATETIME(6)) + INTERVAL (i * 30 + 25) SECOND",
    },
    "sqlite": {
        "run_id": "printf('%08x-%04x-4000-8000-000000000000', i >> 16, i & 65535)",
        "hostname": "printf('worker-%02d', i % 16)",
        # The text form tasker stores on SQLite: always six decimals, so text order is time
        # order (tasker.store.schema.UTCDateTime).
        "start": "strftime('%Y-%m-%d %H:%M:%S', :base + i * 30, 'unixepoch') || '.000000'",
        "end": "strftime('%Y-%m-%d %H:%M:%S', :base + i * 30 + 25, 'unixepoch') || '.000000'",
    },
}


def supported(store: SqlStore) -> bool:
    """Whether this database can make the rows itself (MySQL proper has no SEQUENCE engine)."""
    if store.dialect == "mysql":
        with store.engine.connect() as conn:
            version = str(conn.execute(text("SELECT VERSION()")).scalar())
        return "mariadb" in version.lower()
    return store.dialect in _EXPRESSIONS


def _select(dialect: str) -> str:
    e = _EXPRESSIONS[dialect]
    values = (
        e["run_id"],
        ":first_task + i % :tasks",
        _STATUS,
        e["hostname"],
        "1000 + i % 30000",
        "'etl'",
        e["start"],
        e["end"],
        e["end"],
        "3",
        "100.0",
    )
    return f"SELECT {', '.join(values)}"


def _statement(store: SqlStore, lo: int, hi: int) -> str:
    """Rows ``lo`` to ``hi - 1``; the bounds are integers this module computed, not input."""
    table = store.t.qualified("task_runs")
    insert = f"INSERT INTO {table} ({', '.join(COLUMNS)}) "
    select = _select(store.dialect)
    if store.dialect == "postgresql":
        return f"{insert}{select} FROM generate_series({lo}::bigint, {hi - 1}) AS g(i)"
    if store.dialect == "mysql":
        # The SEQUENCE engine's table seq_LO_to_HI, its one column named seq.
        return f"{insert}{select} FROM (SELECT seq AS i FROM seq_{lo}_to_{hi - 1}) AS g"
    return (
        f"WITH RECURSIVE g(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM g WHERE i < {hi - 1}) "
        f"{insert}{select} FROM g"
    )


def fill_history(store: SqlStore, task_ids: Sequence[int], runs: int, base: datetime) -> None:
    """Insert runs 0 to ``runs - 1`` of the history that starts at ``base``, made by the
    server, a hundred thousand a transaction. ``task_ids`` must be consecutive (as registration
    makes them in an empty database)."""
    first = min(task_ids)
    if sorted(task_ids) != list(range(first, first + len(task_ids))):
        raise ValueError("the server-side fill needs consecutive task ids")
    if store.dialect == "sqlite":
        bound: object = int(base.timestamp())
    elif store.dialect == "postgresql":
        bound = base
    else:
        bound = base.astimezone(timezone.utc).replace(tzinfo=None)
    params = {"first_task": first, "tasks": len(task_ids), "base": bound}
    t0 = time.perf_counter()
    # The secondary indexes are built once the rows are in (a sort each), not kept up to date
    # row by row: ten million rows fill in a fraction of the time, into the same indexes.
    # (MySQL keeps those a foreign key needs: the ones led by task_id.)
    indexes = sorted(
        (
            ix
            for ix in store.t.task_runs.indexes
            if store.dialect != "mysql" or not next(iter(ix.columns)).foreign_keys
        ),
        key=lambda ix: str(ix.name),
    )
    # Through a connection of its own, without the time bounds tasker's sessions carry (a
    # hundred thousand rows, or an index of ten million, may take longer than a statement
    # of tasker's may; its MySQL sessions also give up on an answer slower than that).
    plain = create_engine(store.engine.url, poolclass=NullPool)
    # MariaDB's and SQLite's run counts are kept by row triggers, one counter update per row
    # (twice the fill's time on MariaDB): dropped for the fill, made again after it and the
    # counts made anew from the rows, as the schema upgrade does. PostgreSQL counts once per
    # statement. Nothing else writes the benchmark's database meanwhile.
    recount = store.dialect != "postgresql"
    try:
        with plain.begin() as conn:
            for index in indexes:
                index.drop(conn)
            if recount:
                for stmt in drop_count_trigger_statements(store.dialect, store.t):
                    conn.exec_driver_sql(stmt)
        for lo in range(0, runs, CHUNK):
            hi = min(runs, lo + CHUNK)
            with plain.begin() as conn:
                conn.execute(text(_statement(store, lo, hi)), params)
            if hi % 1_000_000 == 0 or hi == runs:
                took = time.perf_counter() - t0
                print(f"  server-side fill: {hi:,} of {runs:,} runs, {took:.0f} s", flush=True)
        with plain.begin() as conn:
            if store.dialect == "postgresql":
                conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
            for index in indexes:
                index.create(conn)
            if recount:
                stmts = count_trigger_statements(store.dialect, store.t)
                for stmt in stmts + seed_statements(store.dialect, store.t):
                    conn.exec_driver_sql(
                        stmt.replace("%", "%%") if store.dialect != "sqlite" else stmt
                    )
    finally:
        plain.dispose()
    took = time.perf_counter() - t0
    print(f"  server-side fill: {len(indexes)} indexes built, {took:.0f} s", flush=True)
