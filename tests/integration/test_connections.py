"""Connections at scale: no idle connection held beyond connection_linger, a server out of
connection slots treated as back-pressure (retried with jitter, nothing lost), PgBouncer in
transaction pooling mode (no session state, no server-side prepared statements), and 200
processes against a PostgreSQL of 50 connection slots, with and without PgBouncer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasker
from benchmarks.servers import PgBouncer, ServerError
from tasker.runtime.recorder import RECORDER
from tests.conftest import ROOT, Backend
from tests.helpers import PrivateServer, skip_or_fail, write_script


def _held(db: Backend, name: str) -> int:
    """Server connections of the sessions named ``name`` (PostgreSQL: application_name;
    MySQL/MariaDB: the user), read on a connection of the test's own."""
    if db.name == "postgresql":
        import psycopg

        with psycopg.connect(db.settings["url"], autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
    else:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (name,)
                )
                row = cur.fetchone()
        finally:
            conn.close()
    return int(row[0]) if row else 0


@pytest.fixture
def named(db: Backend) -> Iterator[tuple[dict[str, Any], str]]:
    """Settings for ``db`` whose connections the server can tell apart: a PostgreSQL
    application_name, or a MySQL/MariaDB user of their own (dropped afterwards)."""
    if db.name == "sqlite":
        pytest.skip("SQLite holds no server connections")
    name = f"linger_{uuid.uuid4().hex[:8]}"
    url = db.settings["url"]
    if db.name == "postgresql":
        yield {**db.settings, "url": f"{url}?application_name={name}"}, name
        return
    import pymysql

    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    database = url.rsplit("/", 1)[1]
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY ''")
            cur.execute(f"GRANT ALL ON `{database}`.* TO '{name}'@'%'")
        yield {**db.settings, "url": url.replace("root@", f"{name}@")}, name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        admin.close()


def _wait_for(check: Any, seconds: float) -> float:
    """Seconds until ``check()`` is true (fails after ``seconds``)."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < seconds, "not within the time allowed"
        time.sleep(0.02)
    return time.monotonic() - began


def test_an_idle_connection_is_closed_after_the_linger_and_opened_again(
    db: Backend, named: tuple[dict[str, Any], str]
) -> None:
    settings, name = named
    tasker.configure(**settings, console="false", connection_linger=0.5, flush_interval=0.1)
    run_id = tasker.task_start("LINGER", "one")
    tasker.subtask_start("items", items_total=10)
    tasker.subtask_increment(3)
    assert tasker.flush()
    # Held just after the write, closed once it has been idle for the linger.
    assert _held(db, name) >= 1
    closed_after = _wait_for(lambda: _held(db, name) == 0, 10)
    assert closed_after < 5
    # The next write connects again: nothing of the run is lost.
    tasker.subtask_increment(4)
    tasker.task_complete(run_id=run_id)
    assert tasker.flush()
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (tasker.get_run(run_id).status, sub.items_complete) == ("COMPLETED", 7)
    _wait_for(lambda: _held(db, name) == 0, 10)


def test_a_connection_in_use_is_kept_past_the_linger(
    db: Backend, named: tuple[dict[str, Any], str]
) -> None:
    # A process that writes more often than its linger keeps its one connection.
    settings, name = named
    tasker.configure(**settings, console="false", connection_linger=1.0, flush_interval=0.1)
    run_id = tasker.task_start("LINGER", "busy")
    tasker.subtask_start("items", items_total=100)
    seen = []
    for _ in range(30):  # 3 s of progress, a write every 0.1 s
        tasker.subtask_increment(1)
        time.sleep(0.1)
        seen.append(_held(db, name))
    assert min(seen[5:]) >= 1 and max(seen) <= 2, seen
    tasker.task_complete(run_id=run_id)
    assert tasker.flush()
    _wait_for(lambda: _held(db, name) == 0, 10)


# ----------------------------------------------------------------- a server out of slots


@pytest.fixture
def crowded() -> Iterator[PrivateServer]:
    """A PostgreSQL of 4 connection slots, none reserved."""
    server = PrivateServer({"max_connections": "4", "superuser_reserved_connections": "0"})
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_no_connection_slot_free_is_back_pressure_not_an_outage(
    crowded: PrivateServer, caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg

    tasker.configure(url=crowded.url, console="false", flush_interval=0.1)
    tasker.create_schema()
    RECORDER.store.engine.dispose()
    # The writer's stats are the process's, since its first test: only this test's count.
    outages = RECORDER.writer.stats.outages
    hogs = [psycopg.connect(crowded.url) for _ in range(4)]  # every slot taken
    with pytest.raises(psycopg.OperationalError, match="too many clients"):
        psycopg.connect(crowded.url)  # the fault is real
    release = threading.Timer(1.5, hogs.pop().close)
    release.start()
    began = time.monotonic()
    try:
        # The explicit API writes at once: refused for want of a slot, it is retried with
        # jitter until a slot frees up, then written; no outage is declared.
        run_id = tasker.task_start("CROWD", "waits for a slot")
        waited = time.monotonic() - began
        tasker.task_complete(run_id=run_id)
        assert tasker.flush()
    finally:
        release.cancel()
        for hog in hogs:
            hog.close()
    assert waited >= 1.0
    assert tasker.get_run(run_id).status == "COMPLETED"
    assert RECORDER.writer.stats.outages == outages
    assert "cannot write to the database" not in caplog.text


def test_too_many_connections_on_mariadb_is_back_pressure(db: Backend) -> None:
    if db.name != "mysql":
        pytest.skip("MySQL/MariaDB's max_user_connections")
    import pymysql

    name = f"slots_{uuid.uuid4().hex[:8]}"
    database = db.settings["url"].rsplit("/", 1)[1]
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    hogs: list[Any] = []
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '' WITH MAX_USER_CONNECTIONS 2")
            cur.execute(f"GRANT ALL ON `{database}`.* TO '{name}'@'%'")
        tasker.configure(url=db.settings["url"].replace("root@", f"{name}@"), console="false")
        tasker.create_schema()
        RECORDER.store.engine.dispose()
        outages = RECORDER.writer.stats.outages  # the process's, since its first test
        # Two: creating the schema holds a lock on a connection of its own beside the DDL's.
        hogs = [pymysql.connect(host="127.0.0.1", port=3306, user=name, password="") for _ in "ab"]
        with pytest.raises(pymysql.err.OperationalError) as refused:
            pymysql.connect(host="127.0.0.1", port=3306, user=name, password="")
        assert refused.value.args[0] == 1226  # the fault is real: the user's slots are taken
        release = threading.Timer(1.5, hogs.pop().close)
        release.start()
        began = time.monotonic()
        run_id = tasker.task_start("CROWD", "waits for a slot")
        waited = time.monotonic() - began
        release.join()
        tasker.task_complete(run_id=run_id)
        assert tasker.flush()
        assert waited >= 1.0 and tasker.get_run(run_id).status == "COMPLETED"
        assert RECORDER.writer.stats.outages == outages
    finally:
        for hog in hogs:
            hog.close()
        RECORDER.store.engine.dispose()
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        admin.close()


# ----------------------------------------------------------------- PgBouncer


@pytest.fixture
def bouncer(crowded: PrivateServer) -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling mode with ONE server connection in front of
    ``crowded``: every client's transaction runs on the same server session in turn."""
    try:
        pool = PgBouncer(crowded, pool_size=1)
    except ServerError as exc:
        skip_or_fail(str(exc))
    try:
        pool.start()
        yield pool
    finally:
        pool.close()


def test_without_the_pooler_setting_pgbouncer_is_a_clear_error(bouncer: PgBouncer) -> None:
    tasker.configure(url=bouncer.url, console="false")
    with pytest.raises(tasker.DatabaseError) as info:
        tasker.create_schema()
    message = str(info.value)
    assert "unsupported startup parameter: options" in message
    assert "database.pooler: transaction or session" in message


def test_through_pgbouncer_the_bounds_hold_in_every_transaction(bouncer: PgBouncer) -> None:
    tasker.configure(url=bouncer.url, console="false", pooler="transaction", statement_timeout=1.5)
    tasker.create_schema()
    store = RECORDER.store
    for _ in range(3):  # each transaction sets them for itself
        shown = store._run(
            "reading the bounds",
            lambda conn: conn.exec_driver_sql(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
            ).one(),
        )
        assert tuple(shown) == ("1500ms", "5s")
    with pytest.raises(tasker.DatabaseError, match="statement timeout"):
        store._run("sleeping", lambda conn: conn.exec_driver_sql("SELECT pg_sleep(5)"))
    # Outside tasker's transactions the server session keeps none of them.
    import psycopg

    with psycopg.connect(bouncer.url, autocommit=True) as conn:
        row = conn.execute("SHOW statement_timeout").fetchone()
    assert row is not None and row[0] == "0"


PAIR = """
import sys
import tasker

@tasker.task(stage="BOUNCER", name=f"process {sys.argv[1]}")
def one_run(i):
    for _ in tasker.track(range(10), name="items"):
        pass

for i in range(60):
    one_run(i)
"""


def _pair(bouncer: PgBouncer, tmp_path: Path, pooler: str) -> list[tuple[int, int, str]]:
    """Two processes of PAIR through ``bouncer`` told ``pooler``: (PID, exit status, stderr)."""
    script = write_script(tmp_path, PAIR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "TASKER_DB_URL": bouncer.url,
            "TASKER_DB_POOLER": pooler,
            "TASKER_CONSOLE": "false",
            "TASKER_FLUSH_INTERVAL": "0.05",
            "TASKER_JOURNAL_DIR": str(tmp_path / "journal"),
        }
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.pid, p.returncode, err) for p, (_out, err) in zip(procs, results, strict=True)]


def _server_errors(server: PrivateServer, since: int) -> str:
    """The server log's ERROR lines written after byte ``since``."""
    with open(server.log, "rb") as fh:
        fh.seek(since)
        lines = fh.read().decode(errors="replace").splitlines()
    return "\n".join(line for line in lines if "ERROR:" in line)


def test_two_processes_share_one_server_session_through_pgbouncer(
    crowded: PrivateServer, bouncer: PgBouncer, tmp_path: Path
) -> None:
    # One server connection for both, each transaction of either on it in turn: every run
    # of both is written, and the server refused none of their statements.
    tasker.configure(url=bouncer.url, console="false", pooler="transaction")
    tasker.create_schema()
    since = crowded.log.stat().st_size
    procs = _pair(bouncer, tmp_path, "transaction")
    for _pid, status, err in procs:
        assert status == 0 and err == "", err
    assert _server_errors(crowded, since) == ""
    assert not list((tmp_path / "journal").rglob("*.jsonl"))
    runs = tasker.get_task_history(stage="BOUNCER", limit=None)
    by_process: dict[str, set[int]] = {}
    for run in runs:
        assert run.status == "COMPLETED"
        by_process.setdefault(run.task_name, set()).add(run.process_id)
    assert by_process == {f"process {i}": {pid} for i, (pid, _, _) in enumerate(procs)}
    assert len(runs) == 120


# ----------------------------------------------------------------- 200 processes

BENCH = ROOT / "benchmarks" / "bench_connections.py"


def test_two_hundred_processes_against_fifty_slots_with_and_without_pgbouncer() -> None:
    # 200 processes x 3 runs with two subtasks each against a PostgreSQL of 50 connection
    # slots: straight to it (refused connections retried; what a process could not write
    # before its exit is journaled and replayed, never lost), and through PgBouncer (20
    # server connections). The script checks every run of every process exactly.
    if not os.path.exists("/usr/sbin/pgbouncer") and not _on_path("pgbouncer"):
        skip_or_fail("PgBouncer is not installed (Debian: apt-get install pgbouncer)")
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), "--json", "--modes", "direct,pgbouncer"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the script stops its servers
            try:
                proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    results = {r["mode"]: r for r in map(json.loads, out.strip().splitlines())}
    assert set(results) == {"direct", "pgbouncer"}
    for result in results.values():
        assert result["problems"] == [] and result["runs"] == 600, result
    direct, pooled = results["direct"], results["pgbouncer"]
    assert direct["refused_connections"] > 0  # the crowd met the limit for real
    assert direct["peak_connections"] <= 47  # 50 less the 3 superuser slots
    assert pooled["peak_connections"] <= 20 and pooled["refused_connections"] == 0, pooled
    # Queued by PgBouncer, the crowd writes as it goes: on a quiet machine no process has
    # anything left to journal at its exit (the README's figures). Two hundred interpreters
    # ending at once on two cores can still be starved of CPU past exit_timeout on a busy
    # one, and a few then journal what they hold (every run arrived, checked above); the
    # pooled path must never journal as a crowd refused its connections does.
    assert pooled["journal_files"] <= 10, pooled


def _on_path(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None
