"""The schema's triggers, and the run_counts table the counting ones keep.

Two kinds, both there for any writer of the tables, tasker or not (the R package, a
replayed journal, an administrator's UPDATE):

- ``tasker_touch`` (PostgreSQL): keeps last_update / updated_at current;
- the run counts (every backend): ``run_counts`` holds how many runs there are of each
  status, moved by triggers on task_runs in the same transaction as the rows, so that
  ``/metrics`` reads a few dozen rows instead of counting a history of millions
  (schema version 7).

The counts are split into shards, one row each: a writer moves the row of its own database
session (``pg_backend_pid()`` or ``CONNECTION_ID()`` modulo :data:`SHARDS`), so that
concurrent writers seldom wait on one another's row, and never deadlock over two of them (a
transaction moves one counter row only). A reader sums the shards. SQLite has one writer at
a time and one shard.

PostgreSQL counts once per statement, from its transition tables (a batched INSERT of a
thousand runs moves the counters once); MariaDB/MySQL and SQLite have row triggers only.
An UPDATE that leaves the status as it was moves nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table

from tasker.models import STATUS_VALUES

__all__ = [
    "SHARDS",
    "count_columns",
    "count_trigger_statements",
    "drop_count_trigger_statements",
    "pg_touch_function",
    "run_counts_table",
    "seed_statements",
    "shard_rows_statement",
    "touch_trigger_statements",
]

# Shards of the counts on the servers: more than the writers that usually run at once, so
# that two of them seldom share a row; few enough that summing them costs nothing.
SHARDS = 64

_EVENTS = ("insert", "update", "delete")


class Tables(Protocol):
    """What these statements need of tasker.store.schema.Tables (which builds on this
    module): each object's name, qualified by the schema."""

    def qualified(self, name: str) -> str: ...


def count_columns() -> dict[str, str]:
    """The run_counts column of each status: ``{"COMPLETED": "n_completed", …}``."""
    return {status: f"n_{status.lower()}" for status in STATUS_VALUES}


def run_counts_table(md: MetaData, options: dict[str, Any]) -> Table:
    """How many runs there are of each status, in shards (see the module)."""
    return Table(
        "run_counts",
        md,
        Column("shard", Integer, primary_key=True, autoincrement=False),
        *(
            Column(name, BigInteger, nullable=False, server_default="0")
            for name in count_columns().values()
        ),
        **options,
    )


def _shards(dialect: str) -> int:
    return 1 if dialect == "sqlite" else SHARDS


def shard_rows_statement(dialect: str, t: Tables) -> str:
    """The shards' rows, at zero; those already there are kept (a step run again)."""
    table = t.qualified("run_counts")
    values = ", ".join(f"({i})" for i in range(_shards(dialect)))
    if dialect == "postgresql":
        return f"INSERT INTO {table} (shard) VALUES {values} ON CONFLICT (shard) DO NOTHING"
    if dialect == "mysql":
        return f"INSERT IGNORE INTO {table} (shard) VALUES {values}"
    return f"INSERT OR IGNORE INTO {table} (shard) VALUES {values}"


def seed_statements(dialect: str, t: Tables) -> list[str]:
    """Counts made anew from the runs there are: every shard to zero, then the first to the
    count of each status, from one read of task_runs (MySQL's LOCK TABLES allows one
    reference to a locked table a statement). Exact only while no run is written (the
    upgrade holds the table)."""
    table, runs = t.qualified("run_counts"), t.qualified("task_runs")
    columns = count_columns()
    zero = ", ".join(f"{name} = 0" for name in columns.values())
    sums = ", ".join(
        f"COALESCE(SUM(CASE WHEN status = '{status}' THEN 1 ELSE 0 END), 0) AS {name}"
        for status, name in columns.items()
    )
    if dialect == "mysql":
        moves = ", ".join(f"{table}.{name} = c.{name}" for name in columns.values())
        seed = (
            f"UPDATE {table}, (SELECT {sums} FROM {runs}) AS c SET {moves} WHERE {table}.shard = 0"
        )
    else:
        names = ", ".join(columns.values())
        seed = f"UPDATE {table} SET ({names}) = (SELECT {sums} FROM {runs}) WHERE shard = 0"
    return [f"UPDATE {table} SET {zero}", seed]


def _pg_count_function(t: Tables) -> str:
    """The statement-level counting function of PostgreSQL: each status's runs among the
    statement's new rows less those among its old, over the rows whose status changed."""
    columns = count_columns()

    def counts(rows: str, where: str = "") -> str:
        return ", ".join(
            f"count(*) FILTER (WHERE {rows}.status = '{status}'{where})" for status in columns
        )

    zeros = ", ".join("0" for _ in columns)
    moves = ", ".join(f"{name} = {name} + d[{i}]" for i, name in enumerate(columns.values(), 1))
    changed = ", ".join(
        f"count(*) FILTER (WHERE n.status = '{status}') "
        f"- count(*) FILTER (WHERE o.status = '{status}')"
        for status in columns
    )
    return (
        f"CREATE OR REPLACE FUNCTION {t.qualified('tasker_count_runs')}() RETURNS trigger "
        "LANGUAGE plpgsql AS $$\n"
        "DECLARE\n"
        "    d bigint[];\n"
        "BEGIN\n"
        "    IF TG_OP = 'INSERT' THEN\n"
        f"        SELECT ARRAY[{counts('n')}] INTO d FROM tasker_new AS n;\n"
        "    ELSIF TG_OP = 'DELETE' THEN\n"
        f"        SELECT ARRAY[{counts('o')}] INTO d FROM tasker_old AS o;\n"
        "        d := ARRAY(SELECT -x FROM unnest(d) AS x);\n"
        "    ELSE\n"
        f"        SELECT ARRAY[{changed}] INTO d\n"
        "        FROM tasker_old AS o JOIN tasker_new AS n ON n.run_id = o.run_id\n"
        "        WHERE n.status IS DISTINCT FROM o.status;\n"
        "    END IF;\n"
        f"    IF d <> ARRAY[{zeros}]::bigint[] THEN\n"
        f"        UPDATE {t.qualified('run_counts')} SET {moves}\n"
        f"        WHERE shard = pg_backend_pid() % {SHARDS};\n"
        "    END IF;\n"
        "    RETURN NULL;\n"
        "END\n"
        "$$"
    )


def _row_moves(event: str) -> str:
    """The SET list of a row trigger: each status's column moved by the row's new status
    (1 or 0) less its old."""
    parts = []
    for status, name in count_columns().items():
        move = ""
        if event != "delete":
            move += f" + (NEW.status = '{status}')"
        if event != "insert":
            move += f" - (OLD.status = '{status}')"
        parts.append(f"{name} = {name}{move}")
    return ", ".join(parts)


def _drop_count_trigger(dialect: str, t: Tables, event: str) -> str:
    name = f"trg_task_runs_count_{event}"
    if dialect == "postgresql":  # a trigger of PostgreSQL is its table's, named within it
        return f"DROP TRIGGER IF EXISTS {name} ON {t.qualified('task_runs')}"
    return f"DROP TRIGGER IF EXISTS {t.qualified(name)}"


def drop_count_trigger_statements(dialect: str, t: Tables) -> list[str]:
    """The statements dropping the counting triggers (a bulk load that recounts after)."""
    return [_drop_count_trigger(dialect, t, event) for event in _EVENTS]


def count_trigger_statements(dialect: str, t: Tables) -> list[str]:
    """The statements (re)creating the counting triggers on task_runs."""
    runs, counts = t.qualified("task_runs"), t.qualified("run_counts")
    stmts = [_pg_count_function(t)] if dialect == "postgresql" else []
    for event in _EVENTS:
        name = f"trg_task_runs_count_{event}"
        when = event.upper()
        stmts.append(_drop_count_trigger(dialect, t, event))
        if dialect == "postgresql":
            tables = {
                "insert": "NEW TABLE AS tasker_new",
                "update": "OLD TABLE AS tasker_old NEW TABLE AS tasker_new",
                "delete": "OLD TABLE AS tasker_old",
            }[event]
            stmts.append(
                f"CREATE TRIGGER {name} AFTER {when} ON {runs} REFERENCING {tables} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {t.qualified('tasker_count_runs')}()"
            )
            continue
        moves = _row_moves(event)
        if dialect == "mysql":
            # One statement, no BEGIN … END: the generated SQL file needs no DELIMITER.
            where = f"shard = CONNECTION_ID() % {SHARDS}"
            if event == "update":
                where += " AND NOT (NEW.status <=> OLD.status)"
            stmts.append(
                f"CREATE TRIGGER {t.qualified(name)} AFTER {when} ON {runs} FOR EACH ROW "
                f"UPDATE {counts} SET {moves} WHERE {where}"
            )
        else:
            of = " OF status" if event == "update" else ""
            cond = " WHEN NEW.status IS NOT OLD.status" if event == "update" else ""
            stmts.append(
                f"CREATE TRIGGER {name} AFTER {when}{of} ON {runs} FOR EACH ROW{cond}\n"
                f"BEGIN\n    UPDATE {counts} SET {moves} WHERE shard = 0;\nEND"
            )
    return stmts


def pg_touch_function(t: Tables) -> str:
    """A BEFORE UPDATE trigger function keeping last_update / updated_at current for any
    writer, tasker or not, while keeping a timestamp the writer set on purpose (e.g. a replayed
    journal). A heartbeat alone is not an update of the run's progress."""
    return (
        f"CREATE OR REPLACE FUNCTION {t.qualified('tasker_touch')}() RETURNS trigger "
        "LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "    IF TG_TABLE_NAME = 'task_runs' THEN\n"
        "        IF NEW.last_update IS NOT DISTINCT FROM OLD.last_update\n"
        "                AND NEW.heartbeat IS NOT DISTINCT FROM OLD.heartbeat THEN\n"
        "            NEW.last_update := now();\n"
        "        END IF;\n"
        "    ELSIF TG_TABLE_NAME = 'subtask_progress' THEN\n"
        "        IF NEW.last_update IS NOT DISTINCT FROM OLD.last_update THEN\n"
        "            NEW.last_update := now();\n"
        "        END IF;\n"
        "    ELSIF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN\n"
        "        NEW.updated_at := now();\n"
        "    END IF;\n"
        "    RETURN NEW;\n"
        "END\n"
        "$$"
    )


def touch_trigger_statements(t: Tables) -> list[str]:
    """PostgreSQL's touch function and its BEFORE UPDATE triggers."""
    fn = t.qualified("tasker_touch")
    stmts = [pg_touch_function(t)]
    for table in ("stages", "tasks", "task_runs", "subtask_progress"):
        trigger = f"trg_{table}_touch"
        stmts.append(f"DROP TRIGGER IF EXISTS {trigger} ON {t.qualified(table)}")
        stmts.append(
            f"CREATE TRIGGER {trigger} BEFORE UPDATE ON {t.qualified(table)} "
            f"FOR EACH ROW EXECUTE FUNCTION {fn}()"
        )
    return stmts
