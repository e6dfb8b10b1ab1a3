"""The schema: generated DDL files, creation, views, constraints, triggers, versioning."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import tasker
from tasker.runtime.recorder import RECORDER
from tasker.store import migrations
from tasker.store.schema import DIALECT_NAMES, SCHEMA_VERSION, render_sql
from tests.conftest import ROOT, Backend


@pytest.mark.parametrize("dialect", sorted(DIALECT_NAMES))
def test_generated_sql_files_match_the_metadata(dialect: str) -> None:
    path = ROOT / "schema" / f"{dialect}.sql"
    assert path.read_text(encoding="utf-8") == render_sql(dialect), (
        f"{path} is out of date: run `tasker schema --write schema`"
    )


def test_create_schema_is_idempotent_and_stores_the_version(db: Backend) -> None:
    assert tasker.create_schema() is True
    assert tasker.create_schema() is False
    assert RECORDER.raw_store.schema_version() == SCHEMA_VERSION


def test_schema_is_created_on_first_use(db: Backend) -> None:
    assert RECORDER.raw_store.schema_version() is None
    tasker.register_task("S", "T")
    assert RECORDER.raw_store.schema_version() == SCHEMA_VERSION


def test_views_answer_current_status_and_active_runs(db: Backend) -> None:
    tasker.register_task("PREREQ", "never run")
    done = tasker.task_start("STATIC", "done")
    tasker.task_complete()
    running = tasker.task_start("STATIC", "running")
    tasker.subtask_start("step", items_total=10)
    tasker.subtask_increment(3)
    with RECORDER.raw_store.engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT task_name, status, items_complete FROM {db.table('current_task_status')}")
        ).all()
    statuses = {row[0]: tuple(row[1:]) for row in rows}
    assert statuses == {
        "never run": ("NOT_STARTED", None),
        "done": ("COMPLETED", None),
        "running": ("RUNNING", 3),
    }
    active = db.scalar(f"SELECT COUNT(*) FROM {db.table('active_tasks')}")
    assert active == 1
    assert str(db.scalar(f"SELECT run_id FROM {db.table('active_tasks')}")) == running
    assert done != running


def test_status_check_constraint_rejects_unknown_statuses(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    with (
        pytest.raises(Exception, match=r"(?i)check|constraint"),
        RECORDER.raw_store.engine.begin() as conn,
    ):
        conn.execute(
            text(f"UPDATE {db.table('task_runs')} SET status = 'DONE' WHERE run_id = :r"),
            {"r": run_id},
        )
    assert tasker.get_run(run_id).status == "STARTED"


def test_newer_schema_version_is_refused(db: Backend) -> None:
    tasker.create_schema()
    with RECORDER.raw_store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {db.table('schema_info')} SET value = '999'"))
    db.configure()  # a new process, in effect
    with pytest.raises(tasker.SchemaVersionError, match=r"version 999.*upgrade tasker"):
        tasker.get_tasks()


def test_postgresql_trigger_keeps_last_update(db: Backend) -> None:
    if db.name != "postgresql":
        pytest.skip("the last_update trigger is PostgreSQL's")
    run_id = tasker.task_start("S", "T")
    before = tasker.get_run(run_id).last_update
    with RECORDER.raw_store.engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE {db.table('task_runs')} SET overall_progress_message = 'by hand' "
                "WHERE run_id = :r"
            ),
            {"r": run_id},
        )
    after = tasker.get_run(run_id).last_update
    assert before is not None and after is not None and after > before


def test_postgresql_schema_name_is_configurable(db: Backend) -> None:
    if db.name != "postgresql":
        pytest.skip("schemas are PostgreSQL's")
    tasker.register_task("S", "T")
    schema = db.settings["schema"]
    where = db.scalar(
        "SELECT COUNT(*) FROM information_schema.tables "
        f"WHERE table_schema = '{schema}' AND table_name IN "
        "('stages', 'tasks', 'task_runs', 'subtask_progress', 'schema_info')"
    )
    assert where == 5


def test_sqlite_runs_in_wal_mode_with_foreign_keys(db: Backend) -> None:
    if db.name != "sqlite":
        pytest.skip("SQLite pragmas")
    tasker.register_task("S", "T")
    assert db.scalar("PRAGMA journal_mode") == "wal"
    assert db.scalar("PRAGMA foreign_keys") == 1
    assert db.scalar("PRAGMA busy_timeout") >= 1000
    assert Path(db.settings["path"]).is_file()


def test_an_older_schema_is_upgraded_in_place(db: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = tasker.task_start("S", "T")
    with RECORDER.raw_store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {db.table('schema_info')} SET value = '{SCHEMA_VERSION - 1}'"))
    applied: list[int] = []

    def step(conn: object, dialect: str, tables: object) -> None:
        applied.append(SCHEMA_VERSION - 1)

    monkeypatch.setitem(migrations.UPGRADES, SCHEMA_VERSION - 1, step)
    db.configure()
    assert tasker.get_run(run_id).status == "STARTED"  # first use upgrades, data kept
    assert applied == [SCHEMA_VERSION - 1]
    assert RECORDER.raw_store.schema_version() == SCHEMA_VERSION
    assert tasker.create_schema() is False


def test_an_older_schema_without_an_upgrade_path_is_refused(
    db: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(migrations.UPGRADES, SCHEMA_VERSION - 1)
    tasker.create_schema()
    with RECORDER.raw_store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {db.table('schema_info')} SET value = '{SCHEMA_VERSION - 1}'"))
    db.configure()
    with pytest.raises(tasker.SchemaVersionError, match=r"no upgrade from version"):
        tasker.get_tasks()


def test_latest_run_is_the_one_started_last(db: Backend) -> None:
    from datetime import datetime, timedelta, timezone

    from tasker.models import NewRun, Status
    from tests.helpers import new_run

    store = RECORDER.store
    tasker.register_task("S", "T")
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def new(run_id: str, minutes: int) -> NewRun:
        return new_run(run_id, "S", "T", start_time=base + timedelta(minutes=minutes))

    late, early = "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000001"
    store.start_run(new(late, 10))
    store.start_run(new(early, 5))  # recorded later, started earlier (a replayed journal)
    assert tasker.get_task_status()[0].run_id == late
    store.insert_whole_runs(
        [(new("00000000-0000-4000-8000-000000000003", 1), Status.FAILED, {}, base)]
    )
    assert tasker.get_task_status()[0].run_id == late
    with store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {db.table('tasks')} SET last_run_id = NULL"))
    assert tasker.get_task_status()[0].status == "NOT_STARTED"
    store.refresh_latest_runs()
    assert tasker.get_task_status()[0].run_id == late


# What each version added to task_runs (and, but for log_tail, to the active_tasks view),
# newest last.
_ADDED_RUN_COLUMNS = {
    2: ("process_start_time",),
    3: ("boot_id", "pid_namespace"),
    5: ("log_tail",),
    6: ("process_start_uptime",),
}


def _make_older(db: Backend, version: int) -> None:
    """Turn the fresh schema into what ``version`` created: later columns dropped, the views
    as that version defined them, ``journal_replays`` gone before version 2."""
    from tasker.store.schema import VIEWS, dialect_for

    store = RECORDER.raw_store
    t, dialect = store.t, store.dialect
    later = [c for v, cols in _ADDED_RUN_COLUMNS.items() if v > version for c in cols]
    # process_start_time is a column of version 1 too, only not shown in its view.
    dropped = [c for c in later if c != "process_start_time"]
    with store.engine.begin() as conn:

        def run(sql: str) -> None:
            conn.exec_driver_sql(sql if dialect == "sqlite" else sql.replace("%", "%%"))

        for name in VIEWS:
            run(f"DROP VIEW IF EXISTS {t.qualified(name)}")
        for column in dropped:
            run(f"ALTER TABLE {t.qualified('task_runs')} DROP COLUMN {column}")
        for name, build in VIEWS.items():
            sel = build(t)
            sel = sel.with_only_columns(*[c for c in sel.selected_columns if c.name not in later])
            body = sel.compile(dialect=dialect_for(dialect), compile_kwargs={"literal_binds": True})
            run(f"CREATE VIEW {t.qualified(name)} AS {body}")
        if version < 2:
            run(f"DROP TABLE {t.qualified('journal_replays')}")
        if version < 7:  # the run counts and the triggers that keep them
            for event in ("insert", "update", "delete"):
                name = f"trg_task_runs_count_{event}"
                on = f" ON {t.qualified('task_runs')}" if dialect == "postgresql" else ""
                run(f"DROP TRIGGER {t.qualified(name) if dialect == 'mysql' else name}{on}")
            run(f"DROP TABLE {t.qualified('run_counts')}")
        run(f"UPDATE {t.qualified('schema_info')} SET value = '{version}'")


def test_a_version_1_database_is_upgraded_in_place(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    _make_older(db, 1)
    db.configure()
    assert tasker.get_run(run_id).status == "STARTED"  # first use upgrades, data kept
    assert RECORDER.raw_store.schema_version() == SCHEMA_VERSION
    from tasker.store.sql import SqlStore

    store: SqlStore = RECORDER.store
    assert store.replay_journal("00000000-0000-4000-8000-000000000001", "h", 1, []) == (0, 0, 0)
    (active,) = tasker.get_active_tasks()
    assert active.process_start_time is not None
    assert db.scalar(f"SELECT COUNT(process_start_time) FROM {db.table('active_tasks')}") == 1


def test_a_version_2_database_is_upgraded_to_version_3(db: Backend) -> None:
    from tasker.runtime.capture.process import process_info

    old = tasker.task_start("S", "old")
    tasker.task_complete("done")
    running = tasker.task_start("S", "running")
    _make_older(db, 2)
    db.configure()
    # First use adds boot_id and pid_namespace in place; every row and its data are kept,
    # the older ones without a boot id (the reaper judges those by hostname, as before).
    kept = tasker.get_run(old)
    assert (kept.status, kept.overall_progress_message) == ("COMPLETED", "done")
    assert (kept.boot_id, kept.pid_namespace) == (None, None)
    assert tasker.get_run(running).status == "STARTED"
    assert RECORDER.raw_store.schema_version() == SCHEMA_VERSION
    assert db.scalar(f"SELECT COUNT(*) FROM {db.table('task_runs')}") == 2
    new = tasker.task_start("S", "new")
    info = process_info()
    recorded = tasker.get_run(new)
    assert (recorded.boot_id, recorded.pid_namespace) == (info.boot_id, info.pid_namespace)
    # The view was recreated with the new columns.
    assert db.scalar(f"SELECT COUNT(boot_id) FROM {db.table('active_tasks')}") == 1
    assert tasker.create_schema() is False


def test_the_version_3_step_is_safe_to_run_again(db: Backend) -> None:
    # MySQL commits DDL as it goes: an interrupted upgrade runs its step again on a table
    # that may already have the columns.
    tasker.create_schema()
    store = RECORDER.raw_store
    with store.engine.begin() as conn:
        migrations.UPGRADES[2](conn, store.dialect, store.t)
        migrations.UPGRADES[2](conn, store.dialect, store.t)
        migrations.refresh_views(conn, store.dialect, store.t)
    run_id = tasker.task_start("S", "T")
    assert tasker.get_run(run_id).boot_id is not None


def test_a_schema_created_by_another_process_between_two_looks_is_read(
    db: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker reads the version while its parent is creating the schema: the first read
    # finds no table, the catalog then shows it. The version is read, not an error raised.
    tasker.create_schema()
    store = RECORDER.raw_store
    real_run = store._run
    failed: list[str] = []

    def first_read_finds_nothing(doing: str, fn: Any, **kwargs: Any) -> Any:
        if doing == "reading the schema version" and not failed:
            failed.append(doing)
            raise tasker.DatabaseError("relation schema_info does not exist")
        return real_run(doing, fn, **kwargs)

    monkeypatch.setattr(store, "_run", first_read_finds_nothing)
    assert store.schema_version() == SCHEMA_VERSION and failed


def _run_columns(db: Backend) -> list[str]:
    from sqlalchemy import inspect

    store = RECORDER.raw_store
    runs = store.t.task_runs
    with store.engine.connect() as conn:
        return [c["name"] for c in inspect(conn).get_columns(runs.name, schema=runs.schema)]


def _view_columns(db: Backend) -> list[str]:
    with RECORDER.raw_store.engine.connect() as conn:
        result = conn.execute(text(f"SELECT * FROM {db.table('active_tasks')} WHERE 1 = 0"))
        return list(result.keys())


def test_a_version_4_database_is_upgraded_to_version_5(db: Backend, tmp_path: Path) -> None:
    import logging

    old = tasker.task_start("S", "old")
    tasker.task_complete("done")
    running = tasker.task_start("S", "running")
    view_before = _view_columns(db)
    _make_older(db, 4)
    assert "log_tail" not in _run_columns(db)
    db.configure()
    # First use adds task_runs.log_tail in place (then version 6's column); every row and its
    # data are kept, the older ones without a tail. The view is as it was: no log_tail in it.
    kept = tasker.get_run(old)
    assert (kept.status, kept.overall_progress_message, kept.log_tail) == (
        "COMPLETED",
        "done",
        None,
    )
    assert tasker.get_run(running).status == "STARTED"
    assert RECORDER.raw_store.schema_version() == SCHEMA_VERSION
    assert _run_columns(db)[-2:] == ["log_tail", "process_start_uptime"]
    assert _view_columns(db) == view_before and "log_tail" not in view_before
    # A run of this process that logs to a file ships its tail into the new column (the
    # explicit API's end, written at once).
    handler = logging.FileHandler(tmp_path / "explicit.log")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("tasker-test.upgraded")
    logger.addHandler(handler)
    try:
        logger.warning("written before the end")
        tasker.task_fail("broken", run_id=running)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert tasker.get_run(running).log_tail == "written before the end\n"
    assert db.scalar(f"SELECT COUNT(log_tail) FROM {db.table('task_runs')}") == 1
    assert tasker.create_schema() is False


def test_a_version_5_database_is_upgraded_to_version_6(db: Backend) -> None:
    from tasker.runtime.capture.process import process_info

    old = tasker.task_start("S", "old")  # this process's, recorded before the upgrade
    view_before = _view_columns(db)
    _make_older(db, 5)
    assert "process_start_uptime" not in _run_columns(db) + _view_columns(db)
    db.configure()
    # First use adds task_runs.process_start_uptime in place, last, and in the view, last;
    # the older row keeps NULL there and is still judged alive by its epoch start time.
    kept = tasker.get_run(old)
    assert RECORDER.raw_store.schema_version() == SCHEMA_VERSION
    assert _run_columns(db)[-1] == "process_start_uptime"
    assert _view_columns(db) == view_before and view_before[-1] == "process_start_uptime"
    assert (kept.status, kept.process_start_uptime) == ("STARTED", None)
    assert kept.process_start_time is not None
    assert tasker.reap_lost_runs(stale_after=10**9) == []
    new = tasker.task_start("S", "new")
    assert tasker.get_run(new).process_start_uptime == process_info().process_start_uptime
    assert db.scalar(f"SELECT COUNT(process_start_uptime) FROM {db.table('active_tasks')}") == 1
    assert tasker.create_schema() is False


@pytest.mark.parametrize("version", [5, 6])
def test_the_steps_that_add_a_column_are_safe_to_run_again(db: Backend, version: int) -> None:
    # MySQL commits DDL as it goes: an interrupted upgrade runs its steps again on a table
    # that may have their columns already. Each step from version - 1 on runs twice.
    tasker.create_schema()
    _make_older(db, version - 1)
    store = RECORDER.raw_store
    with store.engine.begin() as conn:
        for step in range(version - 1, SCHEMA_VERSION):
            migrations.UPGRADES[step](conn, store.dialect, store.t)
            migrations.UPGRADES[step](conn, store.dialect, store.t)  # finds its column there
        migrations.refresh_views(conn, store.dialect, store.t)
    columns = _run_columns(db)
    for added in range(version, SCHEMA_VERSION + 1):
        for name in _ADDED_RUN_COLUMNS.get(added, ()):
            assert columns.count(name) == 1, name
    run_id = tasker.task_start("S", "T")
    assert tasker.get_run(run_id).process_start_uptime is not None


def test_a_creation_stuck_in_one_mysql_database_never_holds_up_another(db: Backend) -> None:
    # MySQL's named locks are the server's: with one name for every database, a creation of
    # tasker's tables stuck in one database (here, waiting at its first statement) held up
    # the creation in every other database of the server until it gave up.
    if db.name != "mysql":
        pytest.skip("the creation lock of MySQL/MariaDB is a named lock of the server")
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from tasker.config import load_config
    from tasker.store.sql import SqlStore

    url = make_url(db.settings["url"])
    other = url.database + "_other"
    admin = create_engine(url.set(drivername="mysql+pymysql", database=None))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE {other} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    stuck = SqlStore(load_config({"url": db.settings["url"], "console": "false"}))
    free = SqlStore(
        load_config(
            {
                "url": url.set(database=other).render_as_string(hide_password=False),
                "console": "false",
            }
        )
    )
    entered, release = threading.Event(), threading.Event()
    real_exec = stuck._exec_ddl

    def wait_first(conn: Any, stmt: str) -> None:
        entered.set()
        release.wait(60)
        real_exec(conn, stmt)

    stuck._exec_ddl = wait_first  # type: ignore[method-assign]
    stuck.drop_schema()
    creating = threading.Thread(target=stuck.create_schema)
    creating.start()
    try:
        assert entered.wait(30)  # the first database's creation holds its lock, and waits
        started = time.monotonic()
        assert free.create_schema() is True
        assert time.monotonic() - started < 5.0
        assert free.schema_version() == SCHEMA_VERSION
        assert creating.is_alive()  # still stuck meanwhile
    finally:
        release.set()
        creating.join(60)
        free.dispose()
        stuck.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {other}"))
        admin.dispose()
    assert not creating.is_alive()
    assert stuck.schema_version() == SCHEMA_VERSION
