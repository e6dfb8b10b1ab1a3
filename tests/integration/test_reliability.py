"""Reliability with real processes: a database that goes away and comes back, a database
that is never there (the journal), a file locked for long, processes killed outright (the
reaper), heartbeats while blocked, strict mode, and hostile input."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import tasker
from tasker.models import Status
from tasker.runtime import events, journal
from tasker.runtime.recorder import RECORDER
from tests.conftest import ROOT, Backend
from tests.helpers import (
    PrivateServer,
    new_run,
    run_script,
    start_script,
    tasker_cli,
    wait_for,
    write_script,
)

WARNING = "tasker cannot write to the database"

# Each call tracks a run with one subtask of 500 items; the script's own results and exit
# status prove the tracking left them alone.
PIPELINE = """
import sys, time
import tasker

CALLS = int(sys.argv[1])
PAUSE = float(sys.argv[2])

@tasker.task(stage="RELIABLE", name="step")
def step(i):
    for _ in tasker.track(range(500), name=f"items {i}"):
        pass
    time.sleep(PAUSE)
    return i * 2

total = sum(step(i) for i in range(CALLS))
print("total", total, flush=True)
sys.exit(3)
"""


def _env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env.update(
        TASKER_DB_URL=url,
        TASKER_CONSOLE="false",
        TASKER_FLUSH_INTERVAL="0.2",
        XDG_STATE_HOME=os.environ["XDG_STATE_HOME"],  # the test's own: it replays too
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    env.update(extra)
    return env


def _assert_complete(calls: int) -> None:
    """Every call's run and subtask are in the database, COMPLETED, with exact counts."""
    history = tasker.get_task_history(task="step", limit=None)
    assert len(history) == calls
    assert {r.status for r in history} == {Status.COMPLETED}
    for run in history:
        (sub,) = tasker.get_subtask_progress(run.run_id)
        assert (sub.status, sub.items_complete) == ("COMPLETED", 500), (run, sub)


def _snapshot() -> list[tuple[object, ...]]:
    rows = []
    for run in tasker.get_task_history(limit=None):
        subs = tasker.get_subtask_progress(run.run_id)
        rows.append((run.run_id, run.status, tuple((s.status, s.items_complete) for s in subs)))
    return sorted(rows)


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    pg = PrivateServer()
    pg.start()
    try:
        yield pg
    finally:
        pg.close()


def test_postgres_stopped_mid_run_loses_nothing(server: PrivateServer, tmp_path: Path) -> None:
    tasker.configure(url=server.url, schema="midrun", console="false")
    tasker.create_schema()
    calls = 60
    script = write_script(tmp_path, PIPELINE)
    env = _env(tmp_path, server.url, TASKER_DB_SCHEMA="midrun")
    proc = start_script(script, env, str(calls), "0.1")
    try:
        wait_for(lambda: len(tasker.get_task_history(task="step", limit=None)) >= 5)
        server.stop()
        time.sleep(2.0)  # runs go on meanwhile
        server.start()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, err
    assert out.strip() == f"total {sum(i * 2 for i in range(calls))}"
    assert err.count(WARNING) == 1, err
    tasker.replay_journal()  # whatever the script could not deliver before it ended
    _assert_complete(calls)


def test_unreachable_database_journal_replays_once(server: PrivateServer, tmp_path: Path) -> None:
    password = "s3cret-Pa55"  # trust authentication lets any password in
    url = server.url.replace("postgres@", f"postgres:{password}@")
    tasker.configure(url=url, schema="journaled", console="false")
    tasker.create_schema()
    tasker.flush()
    script = write_script(tmp_path, PIPELINE)
    # A journal folder of the script's own: this test process must not replay it first.
    journal_dir = tmp_path / "journal"
    env = _env(tmp_path, url, TASKER_DB_SCHEMA="journaled", TASKER_JOURNAL_DIR=str(journal_dir))
    server.stop()
    try:
        result = run_script(script, env, "20", "0")
    finally:
        server.start()
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == f"total {sum(i * 2 for i in range(20))}"
    assert result.stderr.count(WARNING) == 1, result.stderr
    assert password not in result.stderr
    files = list(journal_dir.rglob("*.jsonl"))
    assert len(files) == 1, files
    (path,) = files
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert password not in content
    kept = tmp_path / "copy.jsonl"
    shutil.copy(path, kept)

    replay = tasker_cli(env, "replay")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 1 journal file" in replay.stdout
    assert password not in replay.stdout + replay.stderr
    assert not path.exists()
    _assert_complete(20)
    before = _snapshot()
    again = tasker.replay_journal(kept)
    assert (again.files, again.already, again.events) == (0, 1, 0)
    assert _snapshot() == before


def test_sqlite_locked_for_long_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    tasker.configure(path=str(path), console="false")
    tasker.create_schema()
    tasker.flush()
    script = write_script(tmp_path, PIPELINE)
    env = _env(tmp_path, url)
    holder = sqlite3.connect(path, isolation_level=None, timeout=30)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = run_script(script, env, "10", "0")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count(WARNING) == 1, result.stderr
    tasker.replay_journal()
    _assert_complete(10)


def test_strict_mode_raises_database_errors(tmp_path: Path) -> None:
    port = _closed_port()
    tasker.configure(url=f"postgresql://u@127.0.0.1:{port}/x", strict=True, console="false")

    @tasker.task(stage="S", name="t")
    def work() -> int:
        return 1

    with pytest.raises(tasker.DatabaseError, match=f"127.0.0.1:{port}"):
        work()


def test_in_strict_mode_the_programs_exception_still_wins(tmp_path: Path) -> None:
    tasker.configure(path=str(tmp_path / "strict.db"), strict=True, console="false")

    @tasker.task(stage="S", name="t")
    def loses_its_run(fail: bool) -> None:
        RECORDER.store.drop_schema()  # the run's end has nowhere to go
        if fail:
            raise KeyError("mine")

    with pytest.raises(tasker.UnknownRunError):
        loses_its_run(False)
    with pytest.raises(KeyError, match="mine"):
        loses_its_run(True)


def test_without_strict_an_unreachable_database_never_reaches_the_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = _closed_port()
    tasker.configure(
        url=f"postgresql://u:hunter22@127.0.0.1:{port}/x", console="false", flush_interval=0.05
    )

    @tasker.task(stage="S", name="t")
    def work(i: int) -> int:
        with tasker.subtask("part") as st:
            st.advance(3)
        return i

    assert [work(i) for i in range(50)] == list(range(50))
    assert not tasker.flush(2)  # not delivered: kept
    assert RECORDER.writer.failing and RECORDER.writer.pending
    warnings = [r for r in caplog.records if WARNING in r.getMessage()]
    assert len(warnings) == 1
    assert "hunter22" not in caplog.text


def _closed_port() -> int:
    from tests.helpers import free_port

    return free_port()  # nothing listens there


# ---------------------------------------------------------------------------- journal


def _journal_with_runs(n: int) -> Path:
    """A journal file as a process would leave it: n finished runs with a counted subtask."""
    config = tasker.get_config()
    now = datetime.now(timezone.utc)
    file = journal.JournalFile(config)
    batch: list[events.Event] = []
    for i in range(n):
        run_id = f"00000000-0000-4000-8000-{i:012d}"
        new = new_run(run_id, "J", f"t{i % 3}", start_time=now)
        batch += [
            (events.START_RUN, run_id, (new,)),
            (events.START_SUBTASK, run_id, (1, "s", 10, None, now)),
            (events.INCREMENT_SUBTASK, run_id, (1, 7, now)),
            (events.END_SUBTASK, run_id, (1, 3, {"status": "COMPLETED", "end_time": now}, now)),
            (events.END_RUN, run_id, (Status.COMPLETED, {}, now, None)),
        ]
    file.write(batch)
    file.close()
    return file.path


@contextlib.contextmanager
def _writer_held() -> Iterator[None]:
    """Keep this process's writer from replaying the test's journal on its own first."""
    RECORDER.writer.pause()
    try:
        yield
    finally:
        RECORDER.writer.resume()


def test_a_journal_replays_in_order_and_only_once(db: Backend) -> None:
    with _writer_held():
        path = _journal_with_runs(5)
        kept = path.with_suffix(".copy")
        shutil.copy(path, kept)
        result = tasker.replay_journal()
    assert (result.files, result.events, result.failed) == (1, 25, 0)
    assert not path.exists()
    runs = tasker.get_task_history(stage="J", limit=None)
    assert len(runs) == 5 and {r.status for r in runs} == {Status.COMPLETED}
    for run in runs:
        (sub,) = tasker.get_subtask_progress(run.run_id)
        assert (sub.status, sub.items_complete) == ("COMPLETED", 10)
    before = _snapshot()
    again = tasker.replay_journal(kept)
    assert (again.files, again.already) == (0, 1)
    assert _snapshot() == before


def test_the_next_process_replays_waiting_journals(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    with _writer_held():  # the child, not this process, must find the journal
        _journal_with_runs(3)
        result = _run_later_script(tmp_path, child_env)
    assert result.returncode == 0, result.stderr
    assert len(tasker.get_task_history(stage="J", limit=None)) == 3
    assert len(tasker.get_task_history(stage="NEXT", limit=None)) == 1
    assert journal.pending_files(tasker.get_config()) == []


def _run_later_script(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = write_script(
        tmp_path,
        """
        import tasker

        @tasker.task(stage="NEXT", name="later")
        def later():
            return None

        later()
        """,
    )
    return run_script(script, env)


def test_a_journal_being_written_is_not_replayed(db: Backend) -> None:
    file = journal.JournalFile(tasker.get_config())
    file.write(
        [
            (
                events.UPDATE_RUN,
                "00000000-0000-4000-8000-000000000001",
                ({}, datetime.now(timezone.utc)),
            )
        ]
    )
    try:
        result = tasker.replay_journal()
        assert (result.files, result.busy) == (0, 1)
    finally:
        file.close()


def test_a_damaged_journal_is_a_clear_error(db: Backend, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tasker_journal": 1, "journal_id": "x"}\n["nonsense"]\n')
    result = tasker.replay_journal(bad)  # quarantined, saying why (integration/test_journal.py)
    (detail,) = result.details
    assert (result.quarantined, detail.outcome) == (1, "quarantined")
    assert "line 2" in (detail.reason or "") and (tmp_path / "quarantine" / "bad.jsonl").exists()
    with pytest.raises(tasker.ValidationError, match="does not exist"):
        tasker.replay_journal(tmp_path / "missing.jsonl")


def test_a_cut_last_line_is_ignored(db: Backend) -> None:
    with _writer_held():
        path = _journal_with_runs(1)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write('["end_run", "00000000-0000-4000-8000-0000')  # the process died mid-line
        result = tasker.replay_journal()
    assert (result.files, result.events) == (1, 5)


def test_journal_files_are_private(db: Backend) -> None:
    file = journal.JournalFile(tasker.get_config())
    file.write([])
    try:
        assert stat.S_IMODE(file.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(file.path.parent.stat().st_mode) == 0o700
        header = json.loads(file.path.read_text().splitlines()[0])
        assert header["tasker_journal"] == 1 and "password" not in json.dumps(header)
    finally:
        file.close()


# ---------------------------------------------------------------------------- reaper

HANG = """
import sys, time
import tasker

with tasker.task("LIVE", sys.argv[1]):
    tasker.flush()
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _start(script: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    proc = start_script(script, env, *args)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return proc


def test_a_killed_process_is_reaped_at_once(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    script = write_script(tmp_path, HANG)
    proc = _start(script, child_env, "doomed", "60")
    proc.kill()
    proc.communicate(timeout=30)
    (run,) = tasker.get_active_tasks()
    assert tasker.reap_lost_runs() != []
    lost = tasker.get_run(run.run_id)
    assert lost.status == "FAILED" and lost.error_type == "ProcessLost"
    assert f"process {run.process_id}" in (lost.error_message or "")
    assert "last seen" in (lost.error_message or "")
    assert lost.end_time is not None
    assert tasker.get_active_tasks() == []
    assert tasker.reap_lost_runs() == []  # once


def test_a_live_run_blocked_in_sleep_is_not_reaped(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    from tasker.runtime.reaper import judge

    script = write_script(tmp_path, HANG)
    env = {**child_env, "TASKER_HEARTBEAT_INTERVAL": "0.2"}
    proc = _start(script, env, "sleeper", "10")
    try:
        (run,) = tasker.get_active_tasks()
        # Longer than stale_after below, all of it in time.sleep; stale_after is 15
        # heartbeat intervals, so that a loaded machine delaying a few of them cannot fail it.
        time.sleep(4.0)
        assert tasker.reap_lost_runs(stale_after=3.0) == []
        fresh = tasker.get_run(run.run_id)
        assert fresh.status in ("STARTED", "RUNNING")
        # Heartbeats kept coming while the main thread slept: from another host's point of
        # view, too, the run is alive.
        assert fresh.heartbeat is not None and run.heartbeat is not None
        assert fresh.heartbeat > run.heartbeat
        now = datetime.now(timezone.utc)
        assert not judge(fresh, now, 3.0, "another-host").lost
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_a_run_of_another_host_is_reaped_only_after_stale_after(db: Backend) -> None:
    store = RECORDER.store
    now = datetime.now(timezone.utc)
    run_id = "00000000-0000-4000-8000-0000000000aa"
    store.start_run(
        new_run(
            run_id,
            "FAR",
            "away",
            start_time=now - timedelta(seconds=300),
            hostname="another-host.example",
            process_id=os.getpid(),
        )
    )
    store.heartbeat([run_id], now - timedelta(seconds=30))
    assert tasker.reap_lost_runs(stale_after=60) == []
    store.heartbeat([run_id], now - timedelta(seconds=90))
    (lost,) = tasker.reap_lost_runs(stale_after=60)
    assert (lost.run_id, lost.status, lost.error_type) == (run_id, "FAILED", "ProcessLost")
    assert "another-host.example" in (lost.error_message or "")


def test_a_reused_pid_does_not_keep_a_lost_run_alive(db: Backend) -> None:
    from tasker.runtime.capture.process import process_info

    store = RECORDER.store
    now = datetime.now(timezone.utc)
    info = process_info()
    run_id = "00000000-0000-4000-8000-0000000000bb"
    store.start_run(
        new_run(
            run_id,
            "REUSED",
            "pid",
            start_time=now,
            hostname=info.hostname,
            process_id=os.getpid(),  # alive, but started at another time than recorded
            process_start_time=(info.process_start_time or 0) - 3600,
        )
    )
    (lost,) = tasker.reap_lost_runs()
    assert lost.run_id == run_id and "reused" in (lost.error_message or "")


def test_tasker_status_reaps(db: Backend, child_env: dict[str, str], tmp_path: Path) -> None:
    script = write_script(tmp_path, HANG)
    proc = _start(script, child_env, "killed", "60")
    proc.kill()
    proc.communicate(timeout=30)
    status = tasker_cli(child_env, "status")
    assert status.returncode == 0, status.stderr
    (line,) = [ln for ln in status.stdout.splitlines() if "killed" in ln]
    assert "FAILED" in line


# ---------------------------------------------------------------------------- hostile input

HOSTILE = [
    'it\'s "quoted"',
    "'); DROP TABLE task_runs; --",
    "Robert'); DELETE FROM tasks WHERE ('1'='1",
    "ünïcødé — 中文 — العربية",
    "emoji 🚀🔥👩‍👩‍👧",
    "control \t\r\n\x07\x1b[31m chars",
    "percent %s %(x)s {0} \\ backslash",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_stored_faithfully(db: Backend, text: str) -> None:
    with tasker.task("HOSTILE", text[:200], message=text) as run:
        with tasker.subtask(text[:400]) as st:
            st.update(message=text)
        run.update(message=text)
    tasker.flush()
    (stored,) = tasker.get_task_history(stage="HOSTILE")
    assert stored.task_name == text[:200]
    assert stored.overall_progress_message == text
    (sub,) = tasker.get_subtask_progress(stored.run_id)
    assert sub.subtask_name == text[:400] and sub.progress_message == text
    assert {t.task_name for t in tasker.get_tasks()} == {text[:200]}  # nothing dropped


def test_nul_bytes_and_huge_values_are_kept_or_cut_with_a_warning(db: Backend) -> None:
    huge = "x" * (1024 * 1024)
    with (
        pytest.warns(tasker.TaskerWarning, match="NUL"),
        tasker.task("HOSTILE", "nul\x00name") as run,
    ):
        run.update(message="a\x00b")
    with (
        pytest.warns(tasker.TaskerWarning, match="only the first 255"),
        tasker.task("HOSTILE", "n" * 1000) as run,
    ):
        run.update(message=huge)
    with tasker.task("HOSTILE", "huge") as run:
        run.fail(huge)
    tasker.flush()
    names = {r.task_name: r for r in tasker.get_task_history(stage="HOSTILE", limit=None)}
    assert names["nul\ufffdname"].overall_progress_message == "a\ufffdb"
    assert names["n" * 255].overall_progress_message == huge
    assert names["huge"].error_message == huge and names["huge"].status == "FAILED"


def test_every_guarantee_names_a_test_that_exists() -> None:
    import re

    text = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    cited = re.findall(r"`(test_\w+\.py)::(test_\w+)`", text)
    assert len(cited) >= 20
    for module, name in cited:
        (path,) = (ROOT / "tests").glob(f"*/{module}")  # the module, in its tier
        source = path.read_text(encoding="utf-8")
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{module}::{name}"


def test_the_explicit_api_keeps_working_while_the_database_is_away(
    server: PrivateServer, caplog: pytest.LogCaptureFixture
) -> None:
    tasker.configure(url=server.url, schema="explicit", console="false", flush_interval=0.1)
    tasker.create_schema()
    server.stop()
    try:
        run_id = tasker.task_start("EXPLICIT", "offline", total_subtasks=1)
        assert tasker.subtask_start("part", items_total=5) == 1
        tasker.subtask_increment(2)
        tasker.subtask_update(items_complete=4, message="nearly")
        tasker.task_update(message="still going")
        tasker.subtask_complete()
        tasker.task_complete("done")
        assert not tasker.flush(1)
    finally:
        server.start()
    assert tasker.flush(30)
    run = tasker.get_run(run_id)
    assert (run.status, run.overall_progress_message) == ("COMPLETED", "done")
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.status, sub.items_complete) == ("COMPLETED", 4)
    assert len([r for r in caplog.records if WARNING in r.getMessage()]) == 1


def test_a_refused_login_never_reaches_the_code(
    db: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    if db.name == "sqlite":
        pytest.skip("SQLite has no login")
    url = tasker.get_config().sqlalchemy_url().set(username="no_such_user", password="wrong-pw")
    tasker.configure(url=url.render_as_string(hide_password=False), console="false")

    @tasker.task(stage="S", name="t")
    def work() -> str:
        return "result"

    assert [work() for _ in range(5)] == ["result"] * 5
    assert not tasker.flush(2)
    assert len([r for r in caplog.records if WARNING in r.getMessage()]) == 1
    assert "wrong-pw" not in caplog.text


def test_memory_stays_bounded_while_the_database_is_away(tmp_path: Path) -> None:
    port = _closed_port()
    tasker.configure(
        url=f"postgresql://u@127.0.0.1:{port}/x",
        console="false",
        max_queued=50,
        flush_interval=0.05,
    )

    @tasker.task(stage="S", name="t")
    def work() -> None:
        return None

    journaled = RECORDER.writer.stats.journaled  # the process's count: earlier tests' too
    for _ in range(400):  # 800 events
        work()
    wait_for(lambda: RECORDER.writer.stats.journaled > journaled)
    wait_for(lambda: len(RECORDER.writer._queue) <= 100)
    (own,) = journal.pending_files(tasker.get_config())  # this process's, still open
    saved = RECORDER.writer.stats.journaled - journaled
    assert own.read_text().count("\n") >= 1 + saved > 1  # header + events (more may follow)


def test_a_full_sqlite_disk_loses_nothing(tmp_path: Path) -> None:
    from sqlalchemy import event

    tasker.configure(path=str(tmp_path / "full.db"), console="false", flush_interval=0.05)
    tasker.create_schema()
    engine = RECORDER.store.engine

    def full(dbapi_conn: object, _record: object) -> None:
        # SQLite's own "database or disk is full": no page may be added any more.
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        pages = cur.execute("PRAGMA page_count").fetchone()[0]
        cur.execute(f"PRAGMA max_page_count = {pages}")
        cur.close()

    event.listen(engine, "connect", full)
    engine.dispose()

    @tasker.task(stage="FULL", name="step")
    def step(i: int) -> int:
        for _ in tasker.track(range(500), name=f"items {i}"):
            pass
        return i

    assert [step(i) for i in range(300)] == list(range(300))
    assert not tasker.flush(5)
    assert RECORDER.writer.failing
    assert "full" in str(RECORDER.writer.last_error)
    assert RECORDER.writer.flush(30, closing=True)  # as at exit: into the journal
    assert len(journal.pending_files(tasker.get_config())) == 1

    event.remove(engine, "connect", full)
    engine.dispose()  # space again
    result = tasker.replay_journal()
    assert (result.files, result.failed) == (1, 0)
    runs = tasker.get_task_history(stage="FULL", limit=None)
    assert len(runs) == 300 and {r.status for r in runs} == {Status.COMPLETED}
