"""The database schema: SQLAlchemy Core tables, views and per-dialect DDL.

This module is the single source of truth. The store creates the schema from
:func:`ddl_statements`, and ``schema/*.sql`` are generated from the same function
(``tasker schema --write schema``); a test fails when the files drift from it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    and_,
    case,
    literal,
    literal_column,
    null,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeDecorator, UserDefinedType

from tasker.models import STATUS_VALUES, RunRecord, TaskStatusRecord
from tasker.store.triggers import (
    count_trigger_statements,
    run_counts_table,
    shard_rows_statement,
    touch_trigger_statements,
)

__all__ = ["SCHEMA_VERSION", "Tables", "build_tables", "ddl_statements"]

# Bump when the schema changes, and add the upgrade step to tasker.store.migrations.
SCHEMA_VERSION = 7
DIALECT_NAMES = ("postgresql", "sqlite", "mysql")
ACTIVE_STATUS_VALUES = ("STARTED", "RUNNING")


@functools.cache
def dialect_for(name: str) -> Dialect:
    """SQLAlchemy's dialect ``name``, loaded on first use: a process talking to one database
    never loads the other two dialects."""
    import importlib

    module = importlib.import_module(f"sqlalchemy.dialects.{name}")
    return module.dialect()  # type: ignore[no-any-return]


class _SQLiteDateTime(UserDefinedType[str]):
    """DATETIME in SQLite's DDL, with the text conversion left to UTCDateTime (which does it
    with ``fromisoformat``, several times faster than the generic regex parser)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "DATETIME"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores TIMESTAMPTZ; SQLite and MySQL have no time zone, so tasker stores UTC
    there and attaches UTC again on the way out. On SQLite the text is always
    ``YYYY-MM-DD HH:MM:SS.ffffff``, so that text order is time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        if dialect.name == "sqlite":
            return _SQLiteDateTime()
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        tz = value.tzinfo
        if tz is None:
            value = value.replace(tzinfo=timezone.utc)
        elif tz is not timezone.utc:
            value = value.astimezone(timezone.utc)
        name = dialect.name
        if name == "sqlite":
            # "YYYY-MM-DD HH:MM:SS.ffffff+00:00" without the offset: C-fast, fixed width.
            return value.isoformat(" ", "microseconds")[:26]
        if name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)  # type: ignore[no-any-return]
        return value.astimezone(timezone.utc)  # type: ignore[no-any-return]


def _uuid() -> Any:
    # Native UUID on PostgreSQL; the canonical 36-character text elsewhere, so that ids read
    # the same in every database and in every tool.
    return Uuid(as_uuid=False).with_variant(String(36), "sqlite", "mysql", "mariadb")


class _LongText(UserDefinedType[str]):
    """MySQL's LONGTEXT, named without loading the MySQL dialect."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "LONGTEXT"


def _long_text() -> Any:
    # MySQL's TEXT holds only 64 KB; tracebacks and messages may be longer.
    return Text().with_variant(_LongText(), "mysql", "mariadb")


def _serial() -> Any:
    # INTEGER PRIMARY KEY is SQLite's rowid alias; BIGINT elsewhere for long histories.
    return BigInteger().with_variant(Integer(), "sqlite")


def _for(dialect: str | None, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Dialect-specific options, only for that dialect (or all when building for every one):
    naming another dialect's option makes SQLAlchemy load that dialect."""
    return options if dialect in (None, name) else {}


def _mysql_options(dialect: str | None) -> dict[str, Any]:
    return _for(
        dialect,
        "mysql",
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},
    )


def _status_check(table: str) -> CheckConstraint:
    values = ", ".join(f"'{v}'" for v in STATUS_VALUES)
    return CheckConstraint(f"status IN ({values})", name=f"ck_{table}_status")


@dataclasses.dataclass(frozen=True)
class Tables:
    """The tables of one tasker schema."""

    metadata: MetaData
    schema_info: Table
    stages: Table
    tasks: Table
    task_runs: Table
    subtask_progress: Table
    journal_replays: Table
    run_counts: Table
    schema: str | None

    def qualified(self, name: str) -> str:
        """``schema.name`` or ``name``: for the views, which are not Table objects."""
        return f"{self.schema}.{name}" if self.schema else name


def build_tables(schema: str | None = None, dialect: str | None = None) -> Tables:
    """Build the tables in ``schema`` (a PostgreSQL schema or MySQL database), or unqualified,
    with the options of ``dialect`` (of every dialect when None)."""
    md = MetaData(schema=schema)
    schema_info = Table(
        "schema_info",
        md,
        Column("key", String(64), primary_key=True),
        Column("value", String(255), nullable=False),
        **_mysql_options(dialect),
    )
    stages = Table(
        "stages",
        md,
        Column("stage_id", _serial(), primary_key=True, autoincrement=True),
        Column("stage_name", String(100), nullable=False),
        Column("stage_order", Integer),
        Column("description", _long_text()),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        UniqueConstraint("stage_name", name="uq_stages_stage_name"),
        Index("ix_stages_stage_order", "stage_order"),
        **_mysql_options(dialect),
    )
    tasks = Table(
        "tasks",
        md,
        Column("task_id", _serial(), primary_key=True, autoincrement=True),
        Column(
            "stage_id",
            _serial(),
            ForeignKey(stages.c.stage_id, name="fk_tasks_stage"),
            nullable=False,
        ),
        Column("task_name", String(255), nullable=False),
        Column("task_type", String(20)),
        Column("task_order", Integer),
        Column("description", _long_text()),
        Column("script_path", _long_text()),
        Column("script_filename", String(255)),
        Column("log_path", _long_text()),
        Column("log_filename", String(255)),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        # The task's latest run (by start time), kept by the store as runs start: "status of
        # every task" is then one primary-key lookup per task, however long the history.
        Column("last_run_id", _uuid()),
        Column("last_start_time", UTCDateTime()),
        UniqueConstraint("stage_id", "task_name", name="uq_tasks_stage_task"),
        Index("ix_tasks_task_order", "stage_id", "task_order"),
        **_mysql_options(dialect),
    )
    task_runs = Table(
        "task_runs",
        md,
        Column("run_id", _uuid(), primary_key=True),
        Column(
            "task_id",
            _serial(),
            ForeignKey(tasks.c.task_id, name="fk_task_runs_task", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("parent_run_id", _uuid()),
        Column("status", String(20), nullable=False),
        Column("hostname", String(255), nullable=False),
        Column("process_id", Integer, nullable=False),
        Column("parent_pid", Integer),
        Column("process_start_time", Double),
        Column("user_name", String(100)),
        Column("python_version", String(50)),
        Column("command_line", _long_text()),
        Column("script_path", _long_text()),
        Column("script_filename", String(255)),
        Column("log_path", _long_text()),
        Column("log_filename", String(255)),
        Column("version", String(100)),
        Column("git_commit", String(64)),
        Column("git_branch", String(255)),
        Column("git_dirty", Boolean),
        Column("environment", String(100)),
        Column("start_time", UTCDateTime()),
        Column("end_time", UTCDateTime()),
        Column("last_update", UTCDateTime(), nullable=False),
        Column("heartbeat", UTCDateTime()),
        Column("total_subtasks", Integer),
        Column("current_subtask", Integer),
        Column("overall_percent_complete", Double),
        Column("overall_progress_message", _long_text()),
        Column("exit_code", Integer),
        Column("cpu_seconds", Double),
        Column("peak_memory_mb", Double),
        Column("error_type", String(255)),
        Column("error_message", _long_text()),
        Column("error_detail", _long_text()),
        # Version 3, last so that an upgraded table has its columns in the same order as a
        # new one. The kernel boot and PID namespace the PID belongs to: see
        # tasker.runtime.capture.process.ProcessInfo.
        Column("boot_id", String(64)),
        Column("pid_namespace", String(64)),
        # Version 5: the end of the run's log file, shipped by its process with the run's
        # end (tasker.runtime.capture.logs), so that the dashboard opens no file a row names.
        Column("log_tail", _long_text()),
        # Version 6: when the process started, in seconds after its kernel booted. With
        # boot_id and the PID, the process's identity that no clock change moves (the
        # epoch's process_start_time moves with the clock: tasker.runtime.reaper).
        Column("process_start_uptime", Double),
        _status_check("task_runs"),
        # A task's runs by time: its history, and finding its latest run again.
        Index("ix_task_runs_task_start", "task_id", "start_time", "run_id"),
        # Version 4: every read of the history walks one of these in (start_time, run_id)
        # order, newest first, and stops at its limit (tasker.store.selects): the whole
        # history, or since/until, and runs of several tasks (task_id, so that the filter
        # reads the index alone); a status; a host; a task's runs of one status (its latest
        # success, its recent durations).
        Index("ix_task_runs_start_run", "start_time", "run_id", "task_id"),
        Index("ix_task_runs_status_start", "status", "start_time", "run_id"),
        Index("ix_task_runs_host_start", "hostname", "start_time", "run_id"),
        Index("ix_task_runs_task_status", "task_id", "status", "start_time", "run_id"),
        # A run's children, oldest first; the runs without a parent (the pipeline runs),
        # newest first: the NULL range (tasker.store.pipelines).
        Index("ix_task_runs_parent_start", "parent_run_id", "start_time", "run_id"),
        # Active runs: a partial index stays tiny however long the history grows. MySQL has
        # no partial indexes; its plain index on status serves the same range scan.
        Index(
            "ix_task_runs_active",
            "status",
            "hostname",
            **_for(
                dialect,
                "postgresql",
                {"postgresql_where": literal_column_in("status", ACTIVE_STATUS_VALUES)},
            ),
            **_for(
                dialect,
                "sqlite",
                {"sqlite_where": literal_column_in("status", ACTIVE_STATUS_VALUES)},
            ),
        ),
        **_mysql_options(dialect),
    )
    subtask_progress = Table(
        "subtask_progress",
        md,
        Column("progress_id", _serial(), primary_key=True, autoincrement=True),
        Column(
            "run_id",
            _uuid(),
            ForeignKey(task_runs.c.run_id, name="fk_subtask_progress_run", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("subtask_number", Integer, nullable=False),
        Column("subtask_name", String(500)),
        Column("status", String(20), nullable=False),
        Column("start_time", UTCDateTime()),
        Column("end_time", UTCDateTime()),
        Column("last_update", UTCDateTime(), nullable=False),
        Column("percent_complete", Double),
        Column("progress_message", _long_text()),
        Column("items_total", BigInteger),
        Column("items_complete", BigInteger, nullable=False, server_default="0"),
        Column("error_message", _long_text()),
        _status_check("subtask_progress"),
        UniqueConstraint("run_id", "subtask_number", name="uq_subtask_progress_run_number"),
        **_mysql_options(dialect),
    )
    journal_replays = journal_replays_table(md, dialect)
    run_counts = run_counts_table(md, _mysql_options(dialect))
    return Tables(
        md,
        schema_info,
        stages,
        tasks,
        task_runs,
        subtask_progress,
        journal_replays,
        run_counts,
        schema,
    )


def journal_replays_table(md: MetaData, dialect: str | None = None) -> Table:
    """Journal files already replayed: a replay inserts its file's id in the same transaction
    as the file's events, so replaying a file again changes nothing (schema version 2)."""
    return Table(
        "journal_replays",
        md,
        Column("journal_id", String(36), primary_key=True),
        Column("hostname", String(255)),
        Column("process_id", Integer),
        Column("events", Integer, nullable=False),
        Column("replayed_at", UTCDateTime(), nullable=False),
        **_mysql_options(dialect),
    )


def literal_column_in(name: str, values: Sequence[str]) -> Any:
    from sqlalchemy import column

    return column(name).in_([literal(v) for v in values])


def current_task_status_select(t: Tables) -> Select[Any]:
    """Every registered task with its latest run (by start time, through
    ``tasks.last_run_id``) and that run's current subtask; a task that never ran has status
    NOT_STARTED and no run fields."""
    runs, sp = t.task_runs, t.subtask_progress
    status = case((runs.c.status.is_(None), literal("NOT_STARTED")), else_=runs.c.status)
    available = {
        **{c.name: c for c in runs.c},
        **{c.name: c for c in t.stages.c},
        **{c.name: c for c in t.tasks.c},  # the task's registered script and log paths
        "status": status.label("status"),
        "subtask_name": sp.c.subtask_name,
        "subtask_status": sp.c.status.label("subtask_status"),
        "subtask_percent_complete": sp.c.percent_complete.label("subtask_percent_complete"),
        "items_total": sp.c.items_total,
        "items_complete": sp.c.items_complete,
        "subtask_start_time": sp.c.start_time.label("subtask_start_time"),
    }
    return select(*record_columns(TaskStatusRecord, available)).select_from(
        t.stages.join(t.tasks, t.tasks.c.stage_id == t.stages.c.stage_id)
        .outerjoin(runs, runs.c.run_id == t.tasks.c.last_run_id)
        .outerjoin(
            sp,
            and_(sp.c.run_id == runs.c.run_id, sp.c.subtask_number == runs.c.current_subtask),
        )
    )


def run_columns(t: Tables, *, log_tail: bool) -> dict[str, Any]:
    """What RunRecord's fields are read from: the run's columns, its task's and stage's.
    ``log_tail`` (up to tracking.log_tail_bytes a run) only when asked, for one run; else
    NULL in its place, so that a list of runs reads no log."""
    runs = t.task_runs
    return {
        **{c.name: c for c in t.stages.c},
        **{c.name: c for c in t.tasks.c},
        **{c.name: c for c in runs.c},  # the run's own script and log paths win
        "log_tail": runs.c.log_tail if log_tail else null().label("log_tail"),
    }


def run_select(t: Tables, *, log_tail: bool = False) -> Select[Any]:
    """Runs joined with their task and stage: the shape of a RunRecord (see run_columns)."""
    runs = t.task_runs
    available = run_columns(t, log_tail=log_tail)
    return select(*record_columns(RunRecord, available)).select_from(
        runs.join(t.tasks, t.tasks.c.task_id == runs.c.task_id).join(
            t.stages, t.stages.c.stage_id == t.tasks.c.stage_id
        )
    )


def record_columns(record: type, available: Mapping[str, Any]) -> list[Any]:
    """The columns for ``record``'s fields, in its field order: the store builds records by
    position."""
    return [available[f.name] for f in dataclasses.fields(record)]


def active_condition(t: Tables) -> Any:
    """``status IN ('STARTED', 'RUNNING')`` with the values written into the SQL: SQLite uses a
    partial index only when the query repeats its condition literally, not through
    parameters."""
    return t.task_runs.c.status.in_([literal_column(f"'{v}'") for v in ACTIVE_STATUS_VALUES])


def active_tasks_select(t: Tables) -> Select[Any]:
    """Runs that are STARTED or RUNNING: every RunRecord column but log_tail, which a run
    ships only when it ends (views only ever gain columns at their end)."""
    stmt = run_select(t)
    shown = [c for c in stmt.selected_columns if c.name != "log_tail"]
    return stmt.with_only_columns(*shown).where(active_condition(t))


VIEWS = {
    "current_task_status": current_task_status_select,
    "active_tasks": active_tasks_select,
}


def _compile(stmt: Any, dialect: Dialect) -> str:
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True})).strip()


def view_statements(dialect_name: str, t: Tables) -> list[str]:
    """The statements (re)creating the views."""
    dialect = dialect_for(dialect_name)
    stmts = []
    for name, build in VIEWS.items():
        body = _compile(build(t), dialect)
        if dialect_name == "sqlite":
            stmts.append(f"DROP VIEW IF EXISTS {name}")
            stmts.append(f"CREATE VIEW {name} AS\n{body}")
        else:
            stmts.append(f"CREATE OR REPLACE VIEW {t.qualified(name)} AS\n{body}")
    return stmts


def ddl_statements(dialect_name: str, schema: str | None = None) -> list[str]:
    """Every statement that creates the schema on ``dialect_name``, in order.

    ``schema_info`` comes last, so that its presence means the schema is complete.
    """
    dialect = dialect_for(dialect_name)
    t = build_tables(schema, dialect_name)
    stmts: list[str] = []
    if dialect_name == "postgresql" and schema:
        stmts.append(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table in t.metadata.sorted_tables:
        if table is t.schema_info:
            continue
        stmts.append(_compile(CreateTable(table, if_not_exists=True), dialect))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            stmts.append(_compile(CreateIndex(index), dialect))
    stmts.extend(view_statements(dialect_name, t))
    if dialect_name == "postgresql":
        stmts.extend(touch_trigger_statements(t))
    stmts.append(shard_rows_statement(dialect_name, t))
    stmts.extend(count_trigger_statements(dialect_name, t))
    stmts.append(_compile(CreateTable(t.schema_info, if_not_exists=True), dialect))
    return stmts


def render_sql(dialect_name: str) -> str:
    """The generated ``schema/<dialect>.sql`` text (PostgreSQL in the default schema)."""
    schema = "tasker" if dialect_name == "postgresql" else None
    head = (
        f"-- tasker schema version {SCHEMA_VERSION} for {dialect_name}.\n"
        "-- Generated from tasker/store/schema.py by `tasker schema --write schema`; do not edit.\n"
    )
    body = ";\n\n".join(ddl_statements(dialect_name, schema)) + ";\n"
    version = (
        f"\nINSERT INTO {schema + '.' if schema else ''}schema_info (key, value) "
        f"VALUES ('schema_version', '{SCHEMA_VERSION}');\n"
    )
    if dialect_name == "mysql":
        version = version.replace("(key, value)", "(`key`, value)")
    return head + "\n" + body + version
