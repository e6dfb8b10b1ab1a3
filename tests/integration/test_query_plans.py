"""Every read is driven by an index, on every backend: EXPLAIN of each statement the store
runs (built by ``tasker.store.selects``, or captured as the public API and the dashboard run
them) over a history of 20,000 runs shows no full scan of task_runs or subtask_progress, no
walk of a whole index that a limit does not stop, and no sort of their rows beyond a bounded
set (the runs a limit picked, one row per task, the active runs, one run's subtasks). The
reads' answers are checked against the runs as inserted.

On PostgreSQL the plans are read after VACUUM ANALYZE with ``enable_seqscan`` off (the
table is small enough that a sequential scan would win here and lose at a million runs); on
MariaDB/MySQL from the tabular EXPLAIN; on SQLite from EXPLAIN QUERY PLAN after ANALYZE.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, inspect, text

import tasker
import tasker.queries
from tasker.dashboard import data
from tasker.queries import find_run
from tasker.runtime.recorder import RECORDER
from tasker.store import migrations, pipelines, selects
from tasker.store.schema import SCHEMA_VERSION
from tests.conftest import Backend

TASKS, RUNS, ACTIVE, STAGES = 200, 20_000, 20, 4
HOSTS = 16
# The tables that grow with the history, and their lookups by key: one run, or one run's
# subtasks (a handful of rows, which may be sorted).
TABLES = ("task_runs", "subtask_progress")
SQLITE_KEYS = (
    "sqlite_autoindex_task_runs_1 (run_id=?)",
    "sqlite_autoindex_subtask_progress_1 (run_id=?",
)
PG_KEYS = ("task_runs_pkey", "uq_subtask_progress_run_number")
MYSQL_KEYS = ("PRIMARY", "uq_subtask_progress_run_number")
ACTIVE_INDEXES = ("ix_task_runs_active", "ix_task_runs_status_start")
VERSION_4_INDEXES = (
    "ix_task_runs_start_run",
    "ix_task_runs_status_start",
    "ix_task_runs_host_start",
    "ix_task_runs_task_status",
)


def _fill(backend: Backend) -> dict[str, Any]:
    """TASKS tasks in STAGES stages and RUNS runs of them (pairs of runs share a start time,
    the last ACTIVE are RUNNING with a fresh heartbeat), two subtasks each, bulk-inserted;
    then the planner's statistics."""
    tasker.register_tasks(
        [
            {"stage": f"STAGE_{i % STAGES}", "name": f"task {i:04d}", "type": "python"}
            for i in range(TASKS)
        ]
    )
    task_ids = [t.task_id for t in tasker.get_tasks()]
    store = RECORDER.store
    rng = random.Random(14)
    now = datetime.now(timezone.utc)
    base = now - timedelta(days=30)
    runs: list[dict[str, Any]] = []
    subtasks: list[dict[str, Any]] = []
    for i in range(RUNS):
        start = base + timedelta(seconds=(i // 2) * 60)
        active = i >= RUNS - ACTIVE
        status = "RUNNING" if active else rng.choice(["COMPLETED"] * 8 + ["FAILED", "SKIPPED"])
        end = None if active else start + timedelta(seconds=20 + i % 40)
        run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        runs.append(
            {
                "run_id": run_id,
                "task_id": task_ids[(i * 7) % len(task_ids)],
                "status": status,
                "hostname": f"worker-{i % HOSTS:02d}",
                "process_id": 1000 + i,
                "start_time": start,
                "end_time": end,
                "last_update": now if active else end,
                "heartbeat": now if active else None,
                "total_subtasks": 2,
                "current_subtask": 2,
                "overall_percent_complete": 50.0 if active else 100.0,
            }
        )
        for number in (1, 2):
            subtasks.append(
                {
                    "run_id": run_id,
                    "subtask_number": number,
                    "subtask_name": f"step {number}",
                    "status": "RUNNING" if active and number == 2 else "COMPLETED",
                    "start_time": start,
                    "last_update": end or now,
                    "items_total": 100,
                    "items_complete": 50 if active and number == 2 else 100,
                }
            )
    store.insert_runs(runs)
    with store.engine.begin() as conn:
        for at in range(0, len(subtasks), 5000):
            conn.execute(store.t.subtask_progress.insert(), subtasks[at : at + 5000])
    store.refresh_latest_runs()
    _analyze(store)
    return {"runs": runs, "task_ids": task_ids, "now": now}


def _analyze(store: Any) -> None:
    q = store.t.qualified
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("stages", "tasks", "task_runs", "subtask_progress"):
                conn.execute(text(f"VACUUM ANALYZE {q(table)}"))
    elif store.dialect == "sqlite":
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE TABLE stages, tasks, task_runs, subtask_progress"))


# ---------------------------------------------------------------------------- plans


def _captured(store: Any, run: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SELECTs on the history's tables that ``run`` sends, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        read = statement.lstrip().upper().startswith(("SELECT", "WITH"))
        if read and any(table in statement for table in TABLES):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        run()
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    return seen


def _explain(store: Any, statement: str, parameters: Any) -> Any:
    """The plan of one statement: SQLite's rows, PostgreSQL's JSON, MySQL's rows as dicts."""
    with store.engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            if store.dialect == "sqlite":
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                return [(row[0], row[1], row[3]) for row in cursor.fetchall()]
            if store.dialect == "postgresql":
                cursor.execute("SET LOCAL enable_seqscan = off")
                cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0]
                return json.loads(plan) if isinstance(plan, str) else plan
            cursor.execute("EXPLAIN " + statement, parameters)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            cursor.close()
            conn.rollback()


_SQLITE_TABLES = re.compile(r"^(SCAN|SEARCH)( TABLE)? (task_runs|subtask_progress)\b")


def _sqlite_problems(plan: list[tuple[int, int, str]], active_ok: bool) -> list[str]:
    problems = []
    groups: dict[int, list[str]] = {}
    for _, parent, detail in plan:
        groups.setdefault(parent, []).append(detail)
    for details in groups.values():
        sorts = any(d.startswith("USE TEMP B-TREE") for d in details)
        for d in details:
            if d.startswith("AUTOMATIC") and any(table in d for table in TABLES):
                problems.append(f"builds a temporary index: {d}")
            if not _SQLITE_TABLES.match(d):
                continue
            if d.startswith("SCAN") and "INDEX" not in d:
                problems.append(f"reads the whole table: {d}")
            elif d.startswith("SCAN") and sorts and "ix_task_runs_active" not in d:
                problems.append(f"walks a whole index and sorts: {d}")
            by_key = any(key in d for key in SQLITE_KEYS)
            by_active = active_ok and "ix_task_runs_active" in d
            if sorts and not (by_key or by_active):
                problems.append(f"sorts what it reads through {d}")
    return problems


_PG_BLOCKING = {"Sort", "Incremental Sort", "Aggregate", "Hash", "SetOp", "Unique", "WindowAgg"}


def _pg_problems(plan: Any, active_ok: bool) -> list[str]:
    problems: list[str] = []

    def walk(node: dict[str, Any], limited: bool, sorted_above: bool) -> None:
        kind = node["Node Type"]
        if node.get("Relation Name") in TABLES:
            index = node.get("Index Name", "")
            if kind == "Bitmap Heap Scan":
                index = node["Plans"][0].get("Index Name", "")
            what = f"{kind} {index}".strip()
            # The partial index of active runs holds only those: walking it is bounded.
            bounded = index == "ix_task_runs_active" or any(
                k in node for k in ("Index Cond", "Recheck Cond")
            )
            if kind == "Seq Scan":
                problems.append(f"reads the whole table: {what}")
            elif not bounded and not limited:
                problems.append(f"walks a whole index with no limit: {what}")
            cond = node.get("Index Cond", node.get("Recheck Cond", ""))
            by_key = index in PG_KEYS and "(run_id = " in cond
            by_active = active_ok and index in ACTIVE_INDEXES
            if sorted_above and not (by_key or by_active):
                problems.append(f"sorts what it reads through {what}")
        if kind == "Limit":
            limited, sorted_above = True, False
        elif kind in _PG_BLOCKING:
            limited = False
            sorted_above = sorted_above or kind in ("Sort", "Incremental Sort")
        for child in node.get("Plans", []):
            walk(child, limited, sorted_above)

    walk(plan[0]["Plan"], False, False)
    return problems


def _mysql_problems(plan: list[dict[str, Any]], active_ok: bool) -> list[str]:
    problems = []
    sorting = {
        row["id"]
        for row in plan
        if any(s in (row.get("Extra") or "") for s in ("Using filesort", "Using temporary"))
    }
    for row in plan:
        if row.get("table") not in TABLES:
            continue
        what = f"{row['type']} {row['key']} ({row.get('Extra')})"
        if row["type"] == "ALL" or row["key"] is None:
            problems.append(f"reads the whole table: {what}")
        elif row["type"] == "index" and row["id"] in sorting:
            problems.append(f"walks a whole index and sorts: {what}")
        by_key = row["type"] in ("eq_ref", "const", "ref") and row["key"] in MYSQL_KEYS
        by_active = active_ok and row["type"] == "range" and row["key"] in ACTIVE_INDEXES
        if row["id"] in sorting and not (by_key or by_active):
            problems.append(f"sorts what it reads through {what}")
    return problems


def _plan_text(plan: Any) -> str:
    if isinstance(plan, list) and plan and isinstance(plan[0], tuple):
        return "\n".join(f"  {parent:>3} {detail}" for _, parent, detail in plan)
    if isinstance(plan, list) and plan and "Plan" in plan[0]:
        return json.dumps(plan[0]["Plan"], indent=1)[:4000]
    return "\n".join(f"  {row}" for row in plan)


def _check(store: Any, name: str, run: Callable[[], object]) -> list[str]:
    """What is wrong with the plan of each statement on task_runs that ``run`` sends. The
    active runs (named by their literal statuses) may be sorted: there are few of them."""
    statements = _captured(store, run)
    if not statements:
        return [f"{name}: sent no statement on the history's tables"]
    found = []
    for statement, parameters in statements:
        plan = _explain(store, statement, parameters)
        check = {"sqlite": _sqlite_problems, "postgresql": _pg_problems}.get(
            store.dialect, _mysql_problems
        )
        problems = check(plan, "IN ('STARTED', 'RUNNING')" in statement)
        if problems:
            found.append(f"{name}: " + "; ".join(problems) + f"\n{statement}\n{_plan_text(plan)}")
    return found


@pytest.fixture
def filled(db: Backend) -> dict[str, Any]:
    return _fill(db)


def test_every_read_is_index_driven(db: Backend, filled: dict[str, Any]) -> None:
    store = RECORDER.store
    t = store.t
    runs = filled["runs"]
    newest = max(r["start_time"] for r in runs)
    some = [r["run_id"] for r in runs[-60:]]

    def execute(stmt: Any, params: dict[str, Any] | None = None) -> Callable[[], object]:
        if isinstance(stmt, tuple):  # a statement with its parameters
            stmt, params = stmt

        def run() -> object:
            with store.engine.connect() as conn:
                return conn.execute(stmt, params or {}).all()

        return run

    def ids(**names: str) -> list[int]:
        with store.engine.connect() as conn:
            return list(conn.execute(selects.task_ids_select(t, **names)).scalars())

    stage_ids = ids(stage="STAGE_1", task=None)
    task_ids = ids(stage=None, task="task 0007")
    assert len(stage_ids) == TASKS // STAGES and len(task_ids) == 1
    history = selects.history_select
    low, high = selects.prefix_bounds(some[0][:6]) or ("", "")
    reads: dict[str, Callable[[], object]] = {
        "history": execute(history(t, limit=50)),
        "history of a stage": execute(history(t, task_ids=stage_ids, limit=50)),
        "history of a task": execute(history(t, task_ids=task_ids, limit=50)),
        "history of a status": execute(history(t, status=["FAILED"], limit=50)),
        "history of a host": execute(history(t, hostname="worker-03", limit=50)),
        "history since/until": execute(
            history(t, since=newest - timedelta(days=3), until=newest - timedelta(days=2))
        ),
        "history at an offset": execute(history(t, limit=50, offset=2000)),
        "history of a stage's failures": execute(
            history(t, task_ids=stage_ids, status=["FAILED"], limit=50)
        ),
        "task status": execute(selects.task_status_select(t)),
        "active runs": execute(selects.active_runs_select(t)),
        "get_active_tasks()": tasker.get_active_tasks,
        "one run": execute(selects.run_select_by_id(t), {"x_run_id": some[0]}),
        "its subtasks": lambda: tasker.get_subtask_progress(some[0]),
        "run-id prefix": execute(
            selects.run_ids_in_range_select(t, 2), {"x_low": low, "x_high": high}
        ),
        "current subtasks": execute(selects.current_subtasks_select(t), {"x_run_ids": some}),
        "last successes": execute(selects.last_successes_select(t)),
        "a run's children": execute(
            pipelines.children_select(t), {"x_run_id": some[0], "x_limit": 1000}
        ),
        "the latest pipeline runs": execute(pipelines.roots_select(t), {"x_limit": 20}),
        "a pipeline run": lambda: store.pipeline(some[0]),
        "runs' pipeline runs": lambda: store.roots_of(some),
        "recent durations": execute(
            selects.recent_completed_select(t, 3, 20),
            {f"x_task_{i}": task_id for i, task_id in enumerate(stage_ids[:3])},
        ),
        # The public API and the dashboard, as they run them.
        "get_task_history(stage=, task=)": lambda: tasker.get_task_history(
            stage="STAGE_0", task="task 0004", limit=50
        ),
        "get_task_history(limit=5000)": lambda: tasker.get_task_history(limit=5000),
        # The dashboard's search: names matched in tasks and stages, then their runs.
        "search_history(text=)": lambda: tasker.queries.search_history(text="TASK 000", limit=50),
        "search_history(stage=, status=)": lambda: tasker.queries.search_history(
            stage="stage_1", status=["FAILED", "SKIPPED"], limit=50
        ),
        "search_history(task=, offset=)": lambda: tasker.queries.search_history(
            task="task 0", limit=50, offset=300
        ),
        "task status of a search": execute(
            selects.task_status_select(t, stage="stage_2", search="TASK 00", contains=True)
        ),
        "overview of a search": _uncached(lambda: data.overview("stage", "task 01")),
        "find_run": lambda: find_run(some[1][:8]),
        "overview": _uncached(data.overview),
        "/metrics": _uncached(data.metrics_text),
    }
    problems = []
    for name, run in reads.items():
        problems += _check(store, name, run)
    assert not problems, "\n\n".join(problems)
    # The run counts (of /metrics) add up the shards the triggers keep: no read of the
    # history at all, however long it grows.
    assert _captured(store, tasker.queries.count_runs_by_status) == []


def _uncached(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        data.clear_caches()
        return fn()

    return run


def test_history_reads_the_same_runs_in_the_same_order(db: Backend, filled: dict[str, Any]) -> None:
    runs = filled["runs"]
    tasks = {t.task_id: t for t in tasker.get_tasks()}
    newest_first = sorted(runs, key=lambda r: (r["start_time"], r["run_id"]), reverse=True)

    def expect(keep: Callable[[dict[str, Any]], bool], limit: int, offset: int = 0) -> list[str]:
        return [r["run_id"] for r in newest_first if keep(r)][offset : offset + limit]

    def got(**filters: Any) -> list[str]:
        return [r.run_id for r in tasker.get_task_history(**filters)]

    since = newest_first[5000]["start_time"]
    until = newest_first[3000]["start_time"]
    assert got(limit=50) == expect(lambda r: True, 50)
    assert got(limit=50, offset=777) == expect(lambda r: True, 50, 777)
    assert got(stage="STAGE_2", limit=80) == expect(
        lambda r: tasks[r["task_id"]].stage_name == "STAGE_2", 80
    )
    assert got(task="task 0009", limit=30, offset=5) == expect(
        lambda r: tasks[r["task_id"]].task_name == "task 0009", 30, 5
    )
    assert got(stage="STAGE_1", task="task 0009", limit=10) == expect(
        lambda r: tasks[r["task_id"]].task_name == "task 0009", 10
    )
    assert got(stage="STAGE_0", task="task 0009") == []  # STAGE_1's
    assert got(status=["FAILED", "SKIPPED"], limit=40) == expect(
        lambda r: r["status"] in ("FAILED", "SKIPPED"), 40
    )
    assert got(hostname="worker-05", since=since, until=until, limit=1000) == expect(
        lambda r: r["hostname"] == "worker-05" and since <= r["start_time"] < until, 1000
    )
    # The dashboard's search: parts of names in any case, "_" itself (not any character).
    searched = tasker.queries.search_history
    assert [r.run_id for r in searched(text="TASK 0009", limit=30)] == expect(
        lambda r: tasks[r["task_id"]].task_name == "task 0009", 30
    )
    assert [r.run_id for r in searched(text="_1", limit=100, offset=50)] == expect(
        lambda r: tasks[r["task_id"]].stage_name == "STAGE_1", 100, 50
    )
    assert [r.run_id for r in searched(stage="stage_", task="K 01", limit=60)] == expect(
        lambda r: "task 01" in tasks[r["task_id"]].task_name, 60
    )
    failures = searched(text="task 01", status=["FAILED", "SKIPPED"], limit=40)
    assert [r.run_id for r in failures] == expect(
        lambda r: (
            "task 01" in tasks[r["task_id"]].task_name and r["status"] in ("FAILED", "SKIPPED")
        ),
        40,
    )
    everything = got(limit=None)
    assert everything == [r["run_id"] for r in newest_first]


def test_counts_successes_and_durations_are_the_runs_own(
    db: Backend, filled: dict[str, Any]
) -> None:
    runs = filled["runs"]
    by_status: dict[str, int] = {}
    for r in runs:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    assert tasker.queries.count_runs_by_status() == by_status
    completed = sorted(
        (r for r in runs if r["status"] == "COMPLETED"),
        key=lambda r: (r["start_time"], r["run_id"]),
        reverse=True,
    )
    latest: dict[int, dict[str, Any]] = {}
    for r in completed:
        latest.setdefault(r["task_id"], r)
    successes = tasker.queries.last_successes()
    assert [s.run_id for s in successes] == [
        r["run_id"]
        for r in sorted(latest.values(), key=lambda r: (r["start_time"], r["run_id"]), reverse=True)
    ]
    some = filled["task_ids"][:5]
    durations = tasker.queries.recent_durations(some, 20)
    for task_id in some:
        mine = [r for r in completed if r["task_id"] == task_id][:20]
        assert durations[task_id] == [
            (r["end_time"] - r["start_time"]).total_seconds() for r in mine
        ]


def test_a_version_3_database_gets_the_indexes(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.task_complete()
    store = RECORDER.raw_store
    t, dialect = store.t, store.dialect
    runs = t.qualified("task_runs")
    with store.engine.begin() as conn:

        def run(sql: str) -> None:
            conn.exec_driver_sql(sql)

        for name in VERSION_4_INDEXES:
            run(
                f"DROP INDEX {name} ON {runs}"
                if dialect == "mysql"
                else f"DROP INDEX {t.qualified(name)}"
            )
        run(f"CREATE INDEX ix_task_runs_start_time ON {runs} (start_time)")
        run(f"UPDATE {t.qualified('schema_info')} SET value = '3'")
    db.configure()
    assert tasker.get_run(run_id).status == "COMPLETED"  # first use upgrades in place
    store = RECORDER.raw_store
    assert store.schema_version() == SCHEMA_VERSION

    def indexes() -> set[str]:
        with store.engine.connect() as conn:
            found = inspect(conn).get_indexes("task_runs", schema=store.t.schema)
        return {i["name"] for i in found}

    assert set(VERSION_4_INDEXES) <= indexes()
    assert "ix_task_runs_start_time" not in indexes()
    # MySQL commits DDL as it goes: an interrupted upgrade runs its step again.
    with store.engine.begin() as conn:
        migrations.UPGRADES[3](conn, store.dialect, store.t)
        migrations.UPGRADES[3](conn, store.dialect, store.t)
    assert set(VERSION_4_INDEXES) <= indexes()
    assert [r.run_id for r in tasker.get_task_history(status="COMPLETED")] == [run_id]
