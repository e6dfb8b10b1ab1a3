"""Batched flushes: the writer's batch is written with a few multi-row statements, with exactly
the outcome of writing its events one by one, on every backend."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

import tasker
from tasker.errors import TaskerWarning
from tasker.models import Status
from tasker.runtime import events as ev
from tasker.runtime import runs as rt
from tasker.runtime.recorder import RECORDER
from tasker.store import multirow
from tasker.store.sql import SqlStore
from tests.conftest import Backend
from tests.helpers import new_run

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@contextmanager
def statements(store: SqlStore) -> Iterator[list[str]]:
    """The statements ``store`` sends to the database in the block (BEGIN included)."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.append(sql)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", count)


def shapes(sent: list[str], store: SqlStore) -> list[str]:
    """Each statement of ``sent`` as its verb and table ("UPDATE task_runs"), in order."""
    out = []
    for sql in sent:
        words = sql.replace(",", " ").split()
        verb = words[0]
        if verb == "BEGIN":
            out.append("BEGIN")
            continue
        table = words[2] if verb == "INSERT" else words[1]
        schema = store.t.schema
        if schema and table.startswith(f"{schema}."):
            table = table[len(schema) + 1 :]
        out.append(f"{verb} {table}")
    return out


def begin(db: Backend) -> list[str]:
    """The statement opening a write transaction that the driver sends as one: SQLite's
    BEGIN IMMEDIATE (psycopg and PyMySQL open theirs without a statement of their own)."""
    return ["BEGIN"] if db.name == "sqlite" else []


def one_flush(db: Backend) -> None:
    """Writes only when flushed: a whole test's events go in one batch."""
    db.configure(flush_interval=3600, heartbeat_interval=3600)


def rows(store: SqlStore, table: Any, where: Any = None) -> list[dict[str, Any]]:
    stmt = select(table)
    if where is not None:
        stmt = stmt.where(where)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


# ---------------------------------------------------------------------------- exact outcomes


def test_many_runs_with_two_subtasks_and_loops_in_one_flush(db: Backend) -> None:
    one_flush(db)
    store = RECORDER.store

    @tasker.task(stage="BATCH", name="two loops", total_subtasks=2)
    def job(i: int) -> None:
        with tasker.subtask("first", items_total=i + 1) as first:
            for _ in tasker.track(range(i + 1)):
                pass
            first.update(message=f"done {i}")
        for _ in tasker.track(range(2 * i), name="second"):
            pass

    @tasker.task(stage="BATCH", name="fails")
    def failing(i: int) -> None:
        for n, _ in enumerate(tasker.track(range(10), name="loop")):
            if n == i % 10:
                raise ValueError(f"item {n}")

    job(0)  # the tasks registered: what is measured is the runs
    with pytest.raises(ValueError, match="item 0"):
        failing(0)
    assert tasker.flush()
    before = datetime.now(timezone.utc)
    for i in range(60):
        job(i)
        with pytest.raises(ValueError, match="item"):
            failing(i)
    with statements(store) as sent:
        assert tasker.flush()
    after = datetime.now(timezone.utc)
    # One multi-row INSERT per table and one UPDATE of the tasks' latest runs, where one by
    # one it took over a dozen statements per run.
    assert shapes(sent, store) == [
        *begin(db),
        "INSERT task_runs",
        "INSERT subtask_progress",
        "UPDATE tasks",
    ], sent

    history = tasker.get_task_history(stage="BATCH", limit=None)
    done = [r for r in history if r.task_name == "two loops"]
    failed = [r for r in history if r.task_name == "fails"]
    done, failed = done[:60], failed[:60]  # the latest first: not the registering ones
    assert len(done) == 60 and len(failed) == 60
    for run in done:
        assert run.status == "COMPLETED" and run.overall_percent_complete == 100.0
        assert run.total_subtasks == 2 and run.current_subtask == 2
        assert before <= run.start_time <= run.end_time <= after
        assert run.error_type is None and run.cpu_seconds is not None
        first, second = tasker.get_subtask_progress(run.run_id)
        i = first.items_complete - 1
        assert (first.subtask_name, first.status, first.items_total) == (
            "first",
            "COMPLETED",
            i + 1,
        )
        assert (first.progress_message, first.percent_complete) == (f"done {i}", 100.0)
        assert (second.subtask_name, second.status) == ("second", "COMPLETED")
        assert (second.items_complete, second.items_total) == (2 * i, 2 * i)
        assert second.percent_complete == 100.0
        assert run.start_time <= first.start_time <= first.end_time <= second.start_time
        assert second.end_time <= run.end_time
    assert sorted(tasker.get_subtask_progress(r.run_id)[0].items_complete for r in done) == list(
        range(1, 61)
    )
    for run in failed:
        assert run.status == "FAILED" and run.error_type == "ValueError"
        (loop,) = tasker.get_subtask_progress(run.run_id)
        assert loop.status == "FAILED" and loop.end_time is not None
        assert loop.items_complete == int(run.error_message.split()[-1])
        assert loop.error_message == run.error_message
    latest = {s.task_name: s.run_id for s in tasker.get_task_status()}
    assert latest["two loops"] == max(done, key=lambda r: r.start_time).run_id


def _open_runs(db: Backend, n: int) -> list[rt.Subtask]:
    """``n`` runs written, each with one open subtask of 10 items (as loops leave them)."""
    subs = []
    tasker.register_tasks([{"stage": "MIX", "name": name} for name in ("run", "new")])
    for _ in range(n):
        state = rt.start_run("MIX", "run", sync=False, total_subtasks=2, quiet=True)
        subs.append(rt.start_subtask(state, "loop", sync=False, items_total=10, quiet=True))
    assert tasker.flush()
    return subs


def test_a_flush_mixing_a_start_counts_and_ends_takes_a_few_statements(db: Backend) -> None:
    one_flush(db)
    store = RECORDER.store
    subs = _open_runs(db, 100)
    new = rt.start_run("MIX", "new", sync=False, quiet=True)  # a run's start …
    loop = rt.start_subtask(new, "fresh", sync=False, items_total=4, quiet=True)
    loop.counter.count = 3
    for i, sub in enumerate(subs):
        sub.counter.count = i % 10 + 1  # … a count into every written run …
        if i % 2:
            rt.end_subtask(sub, Status.COMPLETED, sync=False, quiet=True)  # … half end it …
        if i % 4 == 1:
            rt.end_run(sub.state, Status.COMPLETED, sync=False, quiet=True)  # … and the run
        elif i % 4 == 3:
            rt.end_run(sub.state, Status.FAILED, {"error_type": "E"}, sync=False, quiet=True)
    with statements(store) as sent:
        assert tasker.flush()
    # The new run inserted whole; for the others, level by level (a count, a subtask's end,
    # the run's end), one multi-row statement per table and shape of call: 12 for the 100
    # runs, where one by one it took about 600.
    assert shapes(sent, store) == [
        *begin(db),
        # the new run, with its subtask, and its task's latest run
        "INSERT task_runs",
        "INSERT subtask_progress",
        "UPDATE tasks",
        # level 1, every run: a count, and the run RUNNING if it was STARTED
        "UPDATE subtask_progress",
        "UPDATE task_runs",
        # level 2, half of them: the subtask's end, the run touched, its percent rolled up
        "UPDATE subtask_progress",
        "UPDATE task_runs",
        "UPDATE task_runs",
        # level 3, a quarter each: ended COMPLETED, ended FAILED, each with its open subtasks
        "UPDATE task_runs",
        "UPDATE subtask_progress",
        "UPDATE task_runs",
        "UPDATE subtask_progress",
    ], sent
    written = {r.run_id: r for r in tasker.get_task_history(stage="MIX", limit=None)}
    for i, sub in enumerate(subs):
        run = written[sub.run_id]
        (row,) = tasker.get_subtask_progress(run.run_id)
        assert row.items_complete == i % 10 + 1
        if i % 4 == 1:
            assert (run.status, row.status, run.overall_percent_complete) == (
                "COMPLETED",
                "COMPLETED",
                100.0,
            )
            assert row.percent_complete == 100.0
        elif i % 4 == 3:
            assert (run.status, run.error_type, row.status) == ("FAILED", "E", "COMPLETED")
            assert run.overall_percent_complete == 50.0  # one subtask of two ended
        elif i % 2:
            assert (run.status, row.status, run.overall_percent_complete) == (
                "RUNNING",
                "COMPLETED",
                50.0,
            )
        else:
            assert (run.status, row.status, run.end_time) == ("RUNNING", "RUNNING", None)
            assert row.percent_complete == (i % 10 + 1) * 100.0 / 10
    fresh = written[new.run_id]
    (row,) = tasker.get_subtask_progress(fresh.run_id)
    assert (fresh.status, row.status, row.items_complete, row.percent_complete) == (
        "RUNNING",
        "RUNNING",
        3,
        75.0,
    )
    for sub in subs:
        if not sub.state.ended:
            rt.end_run(sub.state, Status.COMPLETED, sync=False, quiet=True)
    rt.end_run(new, Status.COMPLETED, sync=False, quiet=True)
    assert tasker.flush()
    assert {r.status for r in tasker.get_task_history(stage="MIX", limit=None)} <= {
        "COMPLETED",
        "FAILED",
    }


def test_a_flush_of_counts_alone_is_two_statements(db: Backend) -> None:
    # What a long loop's flushes are: counts into open subtasks, nothing else.
    one_flush(db)
    store = RECORDER.store
    subs = _open_runs(db, 60)
    for i, sub in enumerate(subs):
        sub.counter.count = i % 12  # none for some; past the total (10) for one in 12
    with statements(store) as sent:
        assert tasker.flush()
    # The counts, and the runs that were STARTED made RUNNING (none here: the subtasks'
    # starts did), where one by one it took two per run.
    assert shapes(sent, store) == [*begin(db), "UPDATE subtask_progress", "UPDATE task_runs"]
    for i, sub in enumerate(subs):
        n = i % 12
        (row,) = tasker.get_subtask_progress(sub.run_id)
        assert (row.items_complete, row.status) == (n, "RUNNING" if n else "STARTED")
        assert row.percent_complete == (min(n * 100.0 / 10, 100.0) if n else 0.0)
        assert tasker.get_run(sub.run_id).status == "RUNNING"


def test_an_ended_run_keeps_its_end_when_a_late_count_arrives(db: Backend) -> None:
    one_flush(db)
    (sub,) = _open_runs(db, 1)
    state = sub.state
    sub.counter.count = 4
    rt.end_subtask(sub, Status.COMPLETED, sync=False, quiet=True)
    rt.end_run(state, Status.FAILED, {"error_type": "Boom"}, sync=False, quiet=True)
    assert tasker.flush()
    run = tasker.get_run(state.run_id)
    ended_at = run.end_time
    # A loop another process ran reports late, in the same flush as a correction of the
    # subtask's status (reend: the automatic layer re-ending a loop) and a second ending that
    # is not a correction.
    lane = rt.remote_subtask(state, sub.number).counter
    RECORDER.writer.publish(lane)
    lane.count = 6
    rt.write(ev.INCREMENT_SUBTASK, state.run_id, (sub.number, 2, BASE), sync=False)
    values = {"status": "FAILED", "end_time": BASE, "error_message": "corrected"}
    rt.write(ev.UPDATE_SUBTASK, state.run_id, (sub.number, values, BASE, None, True), sync=False)
    assert tasker.flush()
    RECORDER.writer.withdraw(lane)
    run = tasker.get_run(state.run_id)
    (row,) = tasker.get_subtask_progress(state.run_id)
    assert (run.status, run.end_time, run.error_type) == ("FAILED", ended_at, "Boom")
    assert row.items_complete == 4 + 6 + 2  # late counts are counted …
    assert (row.status, row.error_message, row.end_time) == ("FAILED", "corrected", BASE)
    # … and an ending without reend is refused: the first ending stays, the rest is written.
    again = {"status": "COMPLETED", "end_time": BASE + timedelta(hours=1)}
    rt.write(ev.UPDATE_SUBTASK, state.run_id, (sub.number, again, BASE), sync=False)
    rt.write(ev.INCREMENT_SUBTASK, state.run_id, (sub.number, 1, BASE), sync=False)
    rt.write(ev.END_RUN, state.run_id, (Status.COMPLETED, {}, BASE, None), sync=False)
    assert tasker.flush()
    run = tasker.get_run(state.run_id)
    (row,) = tasker.get_subtask_progress(state.run_id)
    assert (run.status, run.end_time, row.status, row.end_time) == (
        "FAILED",
        ended_at,
        "FAILED",
        BASE,
    )
    assert row.items_complete == 13


def _end_then_more(run_id: str) -> tuple[list[ev.Event], list[ev.Event]]:
    """A run's events up to an open, counted subtask; and its end followed by what an ended
    run refuses (a status, a new subtask, a status for its ended subtask, a second end),
    with an update without a status (which it takes) last."""
    at = [BASE + timedelta(seconds=i) for i in range(9)]
    run = new_run(run_id, "MIX", "ends once", start_time=at[0], total_subtasks=2)
    before: list[ev.Event] = [
        (ev.START_RUN, run_id, (run,)),
        (ev.START_SUBTASK, run_id, (1, "loop", 4, None, at[1])),
        (ev.INCREMENT_SUBTASK, run_id, (1, 2, at[2])),
    ]
    failed = {"error_type": "Boom", "error_message": "first"}
    after: list[ev.Event] = [
        (ev.END_RUN, run_id, (Status.FAILED, failed, at[3], "ended with its run")),
        (ev.UPDATE_RUN, run_id, ({"status": "RUNNING", "overall_progress_message": "b"}, at[4])),
        (ev.START_SUBTASK, run_id, (2, "late", None, None, at[5])),
        (ev.UPDATE_SUBTASK, run_id, (1, {"status": "RUNNING", "progress_message": "p"}, at[6])),
        (ev.END_RUN, run_id, (Status.COMPLETED, {}, at[7], None)),
        (ev.UPDATE_RUN, run_id, ({"overall_progress_message": "noted"}, at[8])),
    ]
    return before, after


@pytest.mark.parametrize("written_before", [True, False], ids=["written run", "new run"])
def test_an_end_then_a_status_or_new_subtask_in_one_batch_keeps_the_first_end(
    db: Backend, written_before: bool
) -> None:
    # The run written before goes level by level (tasker.store.levels), the new one is folded
    # into its rows (tasker.store.folding): both refuse what the one-by-one path refuses.
    one_flush(db)
    store = RECORDER.store
    tasker.register_task("MIX", "ends once")
    assert tasker.flush()
    batched, alone = (f"00000000-0000-4000-8000-00000000014{i}" for i in (1, 2))
    # The writer's batch: the run's end and what follows it in one flush.
    before, after = _end_then_more(batched)
    if written_before:
        for event in before:
            rt.write(*event, sync=False)
        assert tasker.flush()
        before = []
    for event in [*before, *after]:
        rt.write(*event, sync=False)
    assert tasker.flush()
    # The unbatched path: each event written on its own (events.apply, as delivery does).
    refused = 0
    for event in [*_end_then_more(alone)[0], *_end_then_more(alone)[1]]:
        try:
            ev.apply(store, event)
        except tasker.TaskerError:
            refused += 1
    assert refused == 4
    run = tasker.get_run(batched)
    subs = tasker.get_subtask_progress(batched)
    assert (run.status, run.error_type, run.error_message) == ("FAILED", "Boom", "first")
    assert run.end_time == BASE + timedelta(seconds=3)
    assert run.overall_progress_message == "noted"  # an update without a status is taken
    assert [(s.subtask_number, s.status, s.error_message, s.items_complete) for s in subs] == [
        (1, "FAILED", "ended with its run", 2)
    ]
    assert len(_rejected()) == 4  # set aside with their reasons, never silently dropped
    # Exactly what the events one by one leave.
    t = store.t
    skip = {"run_id", "task_id", "progress_id"}
    if db.name == "postgresql":  # its trigger stamps now() on every update
        skip |= {"last_update"}

    def state(run_id: str) -> Any:
        return [
            [{k: v for k, v in r.items() if k not in skip} for r in rows(store, table, where)]
            for table, where in (
                (t.task_runs, t.task_runs.c.run_id == run_id),
                (t.subtask_progress, t.subtask_progress.c.run_id == run_id),
            )
        ]

    assert state(batched) == state(alone)


def test_a_refused_value_leaves_the_rest_of_the_batch_written(db: Backend) -> None:
    one_flush(db)
    subs = _open_runs(db, 5)
    for sub in subs:
        sub.counter.count = 7
    # A status the CHECK constraint refuses. (MariaDB reports a CHECK failure, error 4025,
    # as an OperationalError, as it does a lost connection: it is still a refusal, not the
    # database being away — else the writer would back off from it for good.) A text too
    # long for its column is no refusal: it is cut before it is queued
    # (tasker.runtime.storable), with a warning.
    bad = subs[1]
    values = {"status": "BOGUS"}
    rt.write(ev.UPDATE_SUBTASK, bad.run_id, (bad.number, values, BASE), sync=False)
    with pytest.warns(TaskerWarning, match="error_type of run .* only the first 255"):
        rt.write(ev.UPDATE_RUN, subs[3].run_id, ({"error_type": "x" * 300}, BASE), sync=False)
    new = rt.start_run("MIX", "new", sync=False, quiet=True)
    rt.end_run(subs[2].state, Status.COMPLETED, sync=False, quiet=True)
    rt.end_run(new, Status.COMPLETED, sync=False, quiet=True)
    assert tasker.flush()
    for sub in subs:
        (row,) = tasker.get_subtask_progress(sub.run_id)
        assert row.items_complete == 7 and row.status in ("RUNNING", "COMPLETED")
    assert tasker.get_run(subs[2].run_id).status == "COMPLETED"
    assert tasker.get_run(new.run_id).status == "COMPLETED"
    assert tasker.get_run(subs[3].run_id).error_type == "x" * 255
    # Refused events are set aside with their reasons, never silently dropped.
    assert len(_rejected()) == 1
    assert not RECORDER.writer.failing  # and no outage was taken for it


def test_more_rows_than_one_statement_takes(db: Backend) -> None:
    # MySQL's multi-row UPDATE holds its rows in its text: it is cut into several.
    store = RECORDER.store
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1200)]
    starts: list[Any] = []
    for run_id in ids:
        starts.append(("start_run", (new_run(run_id, "MIX", "many", start_time=BASE),)))
        starts.append(("start_subtask", (run_id, 1, "loop", None, None, BASE)))
    store.write_calls(starts)
    long_text = "m" * 5000  # a few MB of values in all
    later = BASE + timedelta(seconds=1)
    with statements(store) as sent:
        store.write_calls(
            [("increment_subtask", (run_id, 1, i + 1, later)) for i, run_id in enumerate(ids)]
            + [
                ("update_run", (run_id, {"overall_progress_message": f"{i} {long_text}"}, later))
                for i, run_id in enumerate(ids)
            ]
        )
    if db.name == "mysql":
        # 500 rows per statement at most (1,200 counts, their runs: 3 each), and about 1 MB
        # of values (5 kB messages: 208 a statement, 6 for 1,200).
        expected = ["UPDATE subtask_progress"] * 3 + ["UPDATE task_runs"] * 9
    else:  # arrays on PostgreSQL, executemany on SQLite: one statement each
        expected = ["UPDATE subtask_progress", "UPDATE task_runs", "UPDATE task_runs"]
    assert shapes(sent, store) == [*begin(db), *expected]
    sp, runs = store.t.subtask_progress, store.t.task_runs
    by_run = {r["run_id"]: r for r in rows(store, sp)}
    runs_by_id = {r["run_id"]: r for r in rows(store, runs)}
    assert len(by_run) == len(runs_by_id) == 1200
    for i, run_id in enumerate(ids):
        sub, run = by_run[run_id], runs_by_id[run_id]
        assert (sub["items_complete"], sub["status"], sub["last_update"]) == (
            i + 1,
            "RUNNING",
            later,
        )
        assert sub["percent_complete"] == 0.0  # no total: the percent it had
        assert (run["status"], run["overall_progress_message"]) == ("RUNNING", f"{i} {long_text}")
        if db.name != "postgresql":  # (PostgreSQL's trigger stamps its own time)
            assert run["last_update"] == later


def _rejected() -> list[str]:
    """The events set aside beside the journal (one line each)."""
    rejected = Path(tasker.get_config().journal_dir).rglob("rejected/*")
    return [line for path in rejected for line in path.read_text().splitlines()]


def test_a_refused_value_a_later_event_replaces_is_still_refused(db: Backend) -> None:
    # A run that starts in the flush is written whole: a value one of its events gives and a
    # later one replaces never reaches the database. One by one it would have been refused:
    # so it is, and set aside, and the rest is written.
    one_flush(db)
    tasker.register_task("MIX", "new")
    assert tasker.flush()
    state = rt.start_run("MIX", "new", sync=False, quiet=True)
    sub = rt.start_subtask(state, "loop", sync=False, items_total=3, quiet=True)
    refused = 0
    if db.name != "mysql":  # (see test_a_refused_value_leaves_the_rest_of_the_batch_written)
        bogus = (sub.number, {"status": "BOGUS"}, BASE)
        rt.write(ev.UPDATE_SUBTASK, state.run_id, bogus, sync=False)
        refused += 1
    # Too long for its column: cut before it is queued (tasker.runtime.storable), not refused.
    with pytest.warns(TaskerWarning, match="error_type of run .* only the first 255"):
        rt.write(ev.UPDATE_RUN, state.run_id, ({"error_type": "x" * 300}, BASE), sync=False)
    sub.counter.count = 3
    rt.end_subtask(sub, Status.COMPLETED, sync=False, quiet=True)
    rt.end_run(state, Status.FAILED, {"error_type": "Replaced"}, sync=False, quiet=True)
    assert tasker.flush()
    run = tasker.get_run(state.run_id)
    (row,) = tasker.get_subtask_progress(state.run_id)
    assert (run.status, run.error_type) == ("FAILED", "Replaced")
    assert (row.status, row.items_complete, row.percent_complete) == ("COMPLETED", 3, 100.0)
    assert len(_rejected()) == refused


def test_times_and_numbers_go_to_the_driver_as_sqlalchemy_would_send_them(db: Backend) -> None:
    from sqlalchemy import Double

    from tasker.store.multirow import _converter
    from tasker.store.schema import UTCDateTime

    dialect = RECORDER.store.engine.dialect
    convert = _converter(UTCDateTime(), dialect)
    assert convert is not None
    east = timezone(timedelta(hours=5, minutes=30))
    for when in (
        datetime(2026, 3, 1, 12, 0, 0, 0, tzinfo=timezone.utc),  # no microseconds
        datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=east),
        datetime(2026, 3, 1, 12, 0, 0, 5),  # naive: UTC
        None,
    ):
        assert convert(when) == UTCDateTime().process_bind_param(when, dialect), when
    double = _converter(Double(), dialect)
    if double is not None:  # PostgreSQL's arrays take one type
        assert [double(v) for v in (1, 2.5, None)] == [1.0, 2.5, None]


WORKER = r"""
import sys
import tasker

run_id, loops = sys.argv[1], int(sys.argv[2])
with tasker.attach(run_id, 1):
    for _ in range(loops):
        for _ in tasker.track(range(250)):
            pass
assert tasker.flush(timeout=120)
"""


def test_many_processes_counting_into_one_subtask_give_the_exact_total(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    run_id = tasker.task_start("MANY", "counted", quiet=True)
    tasker.subtask_start("shared", items_total=6 * 40 * 250, run_id=run_id, quiet=True)
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    env = {**child_env, "TASKER_FLUSH_INTERVAL": "0.01"}  # many small batches, interleaved
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), run_id, "40"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and not err.strip(), err
    (row,) = tasker.get_subtask_progress(run_id)
    assert row.items_complete == 6 * 40 * 250
    assert row.percent_complete == 100.0
    tasker.task_complete(run_id=run_id, quiet=True)


# ---------------------------------------------------------------------------- one by one


class _Run:
    """The calls a tracker makes about one run, at random: mostly what trackers do (subtasks
    started, counted, updated, ended; the run updated and ended), sometimes what the database
    refuses (a subtask that is not there, a second ending)."""

    def __init__(self, rng: random.Random, clock: Iterator[datetime]) -> None:
        self.rng, self.clock = rng, clock
        self.numbers: list[int] = []
        self.closed: set[int] = set()
        self.ended = False

    def calls(self, count: int, numbered: bool) -> list[Any]:
        """``count`` call templates ("kind", args…) without the run id. ``numbered``: no
        subtask left for the database to number."""
        return [self._call(next(self.clock), numbered) for _ in range(count)]

    def _call(self, when: datetime, numbered: bool) -> Any:
        rng, numbers = self.rng, self.numbers
        roll = rng.random()
        if roll < 0.2 or not numbers:
            n = rng.choice([len(numbers) + 1, len(numbers) + 1, None, 1])
            numbers.append(n if n is not None else len(numbers) + 1)
            if numbered:
                n = numbers[-1]
            return (
                "start_subtask",
                n,
                rng.choice(["a", "b"]),
                rng.choice([None, 3, 10, 7]),
                None,
                when,
            )
        if roll < 0.5:
            n = rng.choice([*numbers, 99] if rng.random() < 0.05 else numbers)
            return ("increment_subtask", n, rng.randint(1, 6), when)
        if roll < 0.7:
            n = rng.choice(numbers)
            status = rng.choice(["COMPLETED", "FAILED", "SKIPPED", "RUNNING", None])
            if n in self.closed and rng.random() < 0.8:
                status = rng.choice(["RUNNING", None])  # only rarely an ending refused
            elif status in ("COMPLETED", "FAILED", "SKIPPED"):
                self.closed.add(n)
            values: dict[str, Any] = {}
            if status is not None:
                values["status"] = status
                if status != "RUNNING":
                    values["end_time"] = when
            if rng.random() < 0.3:
                values["progress_message"] = rng.choice(["m", "n"])
            if rng.random() < 0.2:
                values["items_total"] = rng.choice([5, 9, None])
            if status == "COMPLETED" and rng.random() < 0.7:
                values["percent_complete"] = 100.0
            items = rng.choice([None, None, 4, 8])
            if not values and items is None:
                values["progress_message"] = "x"
            return ("update_subtask", n, values, when, items, rng.random() < 0.2)
        if roll < 0.8:
            values = rng.choice(
                [
                    {"overall_percent_complete": rng.choice([10.0, 55.5])},
                    {"overall_progress_message": "halfway"},
                    {"status": "RUNNING", "overall_progress_message": "again"},
                ]
            )
            return ("update_run", values, when)
        if roll < 0.88 and (not self.ended or rng.random() < 0.3):
            self.ended = True
            self.closed.update(numbers)
            status = rng.choice(list(Status)[3:])
            values = rng.choice([{}, {"exit_code": 1, "error_message": "e"}, {"cpu_seconds": 1.5}])
            return ("end_run", status, values, when, rng.choice([None, "ended with its run"]))
        return ("increment_subtask", rng.choice(numbers), 1, when)


def _scenario(rng: random.Random) -> tuple[list[list[Any]], list[list[Any]]]:
    """A few runs' calls: (what was written before, per run; the batch, per run). A run
    written before starts there; the others start in the batch."""
    setups: list[list[Any]] = []
    batches: list[list[Any]] = []
    clock = iter(BASE + timedelta(microseconds=i) for i in range(10**9))
    for _ in range(rng.randint(3, 8)):
        run = _Run(rng, clock)
        start = ("start_run", rng.choice([None, 1, 2, 3]), next(clock))
        if rng.random() < 0.6:
            setup = [start, *run.calls(rng.randint(0, 4), numbered=True)]
            if rng.random() < 0.15 and not run.ended:
                setup.append(("mark_lost", next(clock)))  # the reaper ended it
            setups.append(setup)
            batches.append(run.calls(rng.randint(1, 7), numbered=False))
        else:
            setups.append([])
            batches.append([start, *run.calls(rng.randint(1, 7), numbered=False)])
    return setups, batches


def _calls(templates: list[Any], run_id: str, task: str) -> list[Any]:
    out = []
    for kind, *args in templates:
        if kind == "start_run":
            total, when = args
            run = new_run(run_id, "ONE", task, start_time=when, total_subtasks=total)
            out.append(("start_run", (run,)))
        elif kind == "mark_lost":
            out.append(("mark_lost", (run_id, *args)))
        else:
            out.append((kind, (run_id, *args)))
    return out


def _state(store: SqlStore, run_ids: list[str], task: str, trigger: bool) -> Any:
    """What the database holds about ``run_ids`` (by position), comparable across runs."""
    t = store.t
    skip = {"run_id", "task_id", "progress_id"}
    if trigger:  # PostgreSQL's trigger stamps now() on an update that leaves it unchanged
        skip |= {"last_update"}
    out = []
    for run_id in run_ids:
        run = rows(store, t.task_runs, t.task_runs.c.run_id == run_id)
        subs = sorted(
            rows(store, t.subtask_progress, t.subtask_progress.c.run_id == run_id),
            key=lambda r: r["progress_id"],
        )
        out.append(
            (
                [{k: v for k, v in r.items() if k not in skip} for r in run],
                [{k: v for k, v in r.items() if k not in skip} for r in subs],
            )
        )
    pointer = rows(store, t.tasks, t.tasks.c.task_name == task)
    latest = pointer[0]["last_run_id"] if pointer else None
    return out, None if latest is None else run_ids.index(str(latest))


def _apply(store: SqlStore, calls: list[Any]) -> None:
    for name, args in calls:
        if name == "mark_lost":
            run_id, when = args
            store.mark_lost(
                run_id, {"end_time": when, "error_type": "ProcessLost", "error_message": "l"}, when
            )
        else:
            store.write_call((name, args))


def _outcome(fn: Callable[[], None]) -> str:
    try:
        fn()
    except Exception as exc:
        return f"refused ({type(exc).__name__})"
    return "written"


@pytest.mark.parametrize("seed", range(40))
def test_a_batch_is_written_as_its_calls_one_by_one(db: Backend, seed: int) -> None:
    rng = random.Random(seed)
    store = RECORDER.store
    setups, batches = _scenario(rng)
    results = []
    for way in ("one by one", "batched"):
        ids = [
            f"00000000-0000-4000-8000-{seed:04d}{i:04d}{'1' if way == 'batched' else '0'}000"
            for i in range(len(batches))
        ]
        task = f"{way} {seed}"
        for i, setup in enumerate(setups):  # what was written before, each call on its own
            for call in _calls(setup, ids[i], task):
                _outcome(lambda call=call: _apply(store, [call]))
        per_run = [_calls(b, ids[i], task) for i, b in enumerate(batches)]
        # The same interleaving of the runs' calls both ways.
        cursors = [iter(calls) for calls in per_run]
        owners = [i for i, b in enumerate(batches) for _ in b]
        random.Random(seed + 1000).shuffle(owners)
        calls = [next(cursors[i]) for i in owners]
        if way == "one by one":  # as the store wrote the writer's batches before
            ops = [lambda c=c: _apply(store, [c]) for c in calls]
            outcome = _outcome(lambda ops=ops: store.batch(ops))
        else:
            outcome = _outcome(lambda calls=calls: store.write_calls(calls))
        results.append((outcome, _state(store, ids, task, db.name == "postgresql")))
    assert results[1][0].startswith("refused") == results[0][0].startswith("refused"), results
    assert results[1][1] == results[0][1]


def test_a_text_too_long_for_its_column_is_refused_in_a_batch_not_cut(db: Backend) -> None:
    # One by one, the server refuses a text longer than its column; a batch must too (on
    # PostgreSQL a cast to the column's varchar(n) in the statement would cut it instead).
    if db.name == "sqlite":
        pytest.skip("SQLite stores text of any length")
    from tasker.errors import DatabaseError

    store = RECORDER.store
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(6)]
    setup: list[Any] = []
    for run_id in ids[:2]:
        setup.append(("start_run", (new_run(run_id, "MIX", "long", start_time=BASE),)))
        setup.append(("start_subtask", (run_id, 1, "loop", 10, None, BASE)))
    store.write_calls(setup)
    t = store.t
    before = (rows(store, t.task_runs), rows(store, t.subtask_progress))
    long_run = new_run(ids[3], "MIX", "long", start_time=BASE, version="v" * 101)
    cases: dict[str, list[Any]] = {
        "a run's update": [("update_run", (ids[0], {"error_type": "x" * 256}, BASE))],
        "a run's end": [
            ("end_run", (ids[0], Status.FAILED, {"error_type": "e" * 256}, BASE, None))
        ],
        "a subtask's update": [
            ("update_subtask", (ids[1], 1, {"subtask_name": "n" * 501}, BASE, None, False))
        ],
        "a subtask's start": [("start_subtask", (ids[1], 2, "s" * 501, None, None, BASE))],
        "a new run's subtask": [
            ("start_run", (new_run(ids[2], "MIX", "long", start_time=BASE),)),
            ("start_subtask", (ids[2], 1, "s" * 501, None, None, BASE)),
        ],
        "a new run's field": [("start_run", (long_run,))],
    }
    for what, calls in cases.items():
        with pytest.raises(DatabaseError):
            store.write_calls(calls)
        assert (rows(store, t.task_runs), rows(store, t.subtask_progress)) == before, what
    with pytest.raises(DatabaseError):
        store.insert_whole_runs([(long_run, Status.COMPLETED, {}, BASE)])
    assert (rows(store, t.task_runs), rows(store, t.subtask_progress)) == before


def _long_messages(db: Backend, count: int, size: int) -> tuple[SqlStore, list[str], list[str]]:
    """``count`` runs started, then one batch giving each a progress message of ``size``
    characters; returns the store, the ids and the statements the batch sent."""
    if db.name != "postgresql":
        pytest.skip("PostgreSQL sends a batch's rows as array parameters of one message")
    store = RECORDER.store
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(count)]
    store.write_calls([("start_run", (new_run(r, "LONG", "texts", start_time=BASE),)) for r in ids])
    text = "m" * size
    later = BASE + timedelta(seconds=1)
    with statements(store) as sent:
        store.write_calls(
            [
                ("update_run", (r, {"overall_progress_message": f"{i:02d}{text}"}, later))
                for i, r in enumerate(ids)
            ]
        )
    return store, ids, sent


def _message_lengths(db: Backend, store: SqlStore) -> dict[str, tuple[int, str]]:
    """Each run's message length and first characters, read on the server."""
    runs = store.t.task_runs
    stmt = select(
        runs.c.run_id,
        func.length(runs.c.overall_progress_message),
        func.substr(runs.c.overall_progress_message, 1, 4),
    )
    with store.engine.connect() as conn:
        return {str(r[0]): (int(r[1]), str(r[2])) for r in conn.execute(stmt)}


def test_a_postgresql_batch_of_long_texts_is_split_below_the_message_limit(
    db: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A statement takes at most _PG_CHUNK_BYTES, counting four bytes a character: with 1 MB,
    # four runs of 50,000-character messages (about 200 kB each) go in each statement.
    monkeypatch.setattr(multirow, "_PG_CHUNK_BYTES", 1_000_000)
    store, ids, sent = _long_messages(db, 20, 50_000)
    assert shapes(sent, store) == ["UPDATE task_runs"] * 5
    assert _message_lengths(db, store) == {r: (50_002, f"{i:02d}mm") for i, r in enumerate(ids)}


def test_a_postgresql_batch_of_more_than_a_gigabyte_is_written_whole(db: Backend) -> None:
    # The real limit: PostgreSQL closes the connection on a message over 1 GB, which looked
    # like the database going away (the batch retried as an outage, never written). Five
    # messages of 220 MB are sent in parts and every one arrives whole.
    store, ids, sent = _long_messages(db, 5, 220_000_000)
    assert shapes(sent, store) == ["UPDATE task_runs"] * 5
    assert _message_lengths(db, store) == {
        r: (220_000_002, f"{i:02d}mm") for i, r in enumerate(ids)
    }
    assert not RECORDER.writer.failing
