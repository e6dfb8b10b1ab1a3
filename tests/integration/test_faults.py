"""Unfriendly faults and input: a database that holds a lock for the program's whole life, text
that is not valid Unicode, numbers out of range, a run ended twice, and shell scripts that
track themselves while the database is away."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tasker
from tasker import validate
from tests.conftest import ROOT, Backend
from tests.e2e.test_examples import check_shell_pipeline
from tests.helpers import start_script, tasker_cli, write_script
from tests.integration.test_reliability import PIPELINE, _assert_complete, _closed_port, _env

# ---------------------------------------------------------------------------- bounded exit


def _exit_delay(
    script: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the pipeline script; also return the seconds from its last line of output (its
    own work done) to its exit: what tracking added to its end."""

    proc = start_script(script, env, *args)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "total …", printed as the program's work ends
        done = time.monotonic()
        out, err = proc.communicate(timeout=120)
        delay = time.monotonic() - done
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert line.startswith("total"), (line, err)
    return subprocess.CompletedProcess(proc.args, proc.returncode, line + out, err), delay


def test_a_sqlite_lock_held_for_the_whole_life_delays_the_exit_only_by_exit_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    tasker.configure(path=str(path), console="false")
    tasker.create_schema()
    tasker.flush()
    script = write_script(tmp_path, PIPELINE)
    env = _env(tmp_path, f"sqlite:///{path}", TASKER_EXIT_TIMEOUT="3")
    holder = sqlite3.connect(path, isolation_level=None, timeout=30)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result, delay = _exit_delay(script, env, "10", "0")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    # From the program's last line to its exit: the stalled write costs it at most the exit
    # budget (3 s), and it says what it did.
    assert delay < 3 + 1.5, (delay, result.stderr)
    assert "saved" in result.stderr and "journal" in result.stderr, result.stderr
    tasker.replay_journal()
    _assert_complete(10)


@pytest.mark.parametrize("hold", ["LOCK TABLE", "BEGIN EXCLUSIVE"])
def test_a_lock_held_for_the_whole_life_loses_nothing_and_delays_the_exit_boundedly(
    db: Backend, child_env: dict[str, str], tmp_path: Path, hold: str
) -> None:
    """Another session holds the runs table for the program's whole life: every write waits.
    The program still ends on time (exit_timeout) and the journal has every run."""
    if (hold == "LOCK TABLE") == (db.name == "sqlite"):
        pytest.skip("LOCK TABLE on the servers, BEGIN EXCLUSIVE on SQLite")
    tasker.create_schema()
    tasker.flush()
    script = write_script(tmp_path, PIPELINE)
    env = {**child_env, "TASKER_EXIT_TIMEOUT": "3", "TASKER_FLUSH_INTERVAL": "0.2"}
    if db.name == "sqlite":
        holder: Any = sqlite3.connect(db.settings["path"], isolation_level=None, timeout=30)
        holder.execute("BEGIN EXCLUSIVE")
    else:
        from sqlalchemy import create_engine, text

        from tests.conftest import _driver_url

        engine = create_engine(_driver_url(db.settings["url"]))
        holder = engine.connect()
        holder.begin()
        if db.name == "mysql":
            holder.execute(text("LOCK TABLES task_runs WRITE, subtask_progress WRITE"))
        else:
            holder.execute(text(f"LOCK TABLE {db.table('task_runs')} IN ACCESS EXCLUSIVE MODE"))
    try:
        result, delay = _exit_delay(script, env, "10", "0")
    finally:
        if db.name == "sqlite":
            holder.execute("ROLLBACK")
            holder.close()
        else:
            holder.rollback()
            holder.close()
            engine.dispose()
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert delay < 3 + 1.5, (delay, result.stderr)  # exit_timeout, from its last line
    assert "events to the journal" in result.stderr, result.stderr
    journals = sorted(Path(os.environ["XDG_STATE_HOME"]).rglob("*.jsonl"))
    tasker.replay_journal(journals)
    _assert_complete(10)


BACKOFF = """
import sys, time
from pathlib import Path
import tasker
from tasker.runtime.recorder import RECORDER

@tasker.task(stage="S", name="during backoff")
def step(i):
    return i

for i in range(20):
    step(i)
tasker.flush(timeout=10)  # the writer's first attempt now (not a flush interval from now)
deadline = time.monotonic() + 60
while not RECORDER.writer.failing and time.monotonic() < deadline:
    time.sleep(0.05)  # until the writer has found the database away and backs off
Path(sys.argv[1]).write_text("away" if RECORDER.writer.failing else "never away")
while not Path(sys.argv[2]).exists() and time.monotonic() < deadline:
    time.sleep(0.05)  # the test brings the database back
"""


def test_exiting_during_backoff_tries_the_database_once_more(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    """A real outage: the server refuses connections (nothing listens on its port), or the
    SQLite file's folder cannot be reached (a file stands where it should be, as an unmounted
    share leaves a path that cannot be opened), so the writer fails and backs off for 30 s or
    more. The database comes back while it waits; the program then ends at once. Its exit
    tries the database once more instead of journaling everything: all 20 runs are written,
    nothing is journaled."""
    from tests.helpers import free_port
    from tests.proxy import StallProxy

    tasker.create_schema()
    tasker.flush()
    script = write_script(tmp_path, BACKOFF)
    away, back = tmp_path / "away", tmp_path / "back"
    # A long flush interval: the writer backs off for 30 s or more, far past the program's end.
    env = {**child_env, "TASKER_FLUSH_INTERVAL": "30", "TASKER_LOCK_TIMEOUT": "0.5"}
    proxy: StallProxy | None = None
    folder = tmp_path / "unreachable"
    if db.name == "sqlite":
        folder.write_text("not a folder")
        env["TASKER_DB_PATH"] = str(folder / "tasker.db")
    else:
        from sqlalchemy.engine import make_url

        port = free_port()  # nothing listens there: connections are refused
        real = make_url(db.settings["url"])
        env["TASKER_DB_URL"] = real.set(port=port).render_as_string(False)
    proc = start_script(script, env, str(away), str(back))
    try:
        deadline = time.monotonic() + 60
        while not away.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert away.read_text() == "away", proc.stderr.read() if proc.stderr else ""
        if db.name == "sqlite":
            folder.unlink()
            folder.mkdir()
        else:
            proxy = StallProxy(real.port or 0, port=port)  # the server answers there now
        came_back = time.monotonic()
        back.write_text("back")
        _out, err = proc.communicate(timeout=60)
        ended_in = time.monotonic() - came_back
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if proxy is not None:
            proxy.close()
    assert proc.returncode == 0, err
    # At once: one more try, not a wait for the end of the backoff.
    assert ended_in < 10, (ended_in, err)
    if db.name == "sqlite":
        db.configure(path=str(folder / "tasker.db"))
    runs = [r for r in tasker.get_task_history(limit=None) if r.task_name == "during backoff"]
    assert len(runs) == 20 and {r.status for r in runs} == {"COMPLETED"}
    assert len({r.run_id for r in runs}) == 20
    assert {r.process_id for r in runs} == {proc.pid}
    assert "events to the journal" not in err, err
    assert "reached the database again" in err, err
    assert not list(Path(os.environ["XDG_STATE_HOME"]).rglob("*.jsonl"))


# ---------------------------------------------------------------------------- text


def test_an_argument_that_is_not_utf8_loses_no_run(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    script = write_script(
        tmp_path,
        """
        import sys
        import tasker

        @tasker.task(stage="S", name="reads a file")
        def read(i):
            return i

        for i in range(10):
            read(i)
        run_id = tasker.task_start("S", "explicit " + sys.argv[1])
        tasker.task_fail(RuntimeError("cannot open " + sys.argv[1]))
        print("done")
        """,
    )
    # A file name from a Latin-1 file system: Python decodes it with lone surrogates.
    result = subprocess.run(
        [sys.executable, str(script), os.fsdecode(b"caf\xe9.csv")],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "done"), result.stderr
    history = tasker.get_task_history(limit=None)
    reads = [r for r in history if r.task_name == "reads a file"]
    assert len(reads) == 10 and {r.status for r in reads} == {"COMPLETED"}
    assert all("caf\\xe9.csv" in (r.command_line or "") for r in reads), reads[0].command_line
    # The decorated runs' command line was escaped before it was queued, and said so once.
    told = [ln for ln in result.stderr.splitlines() if "TaskerWarning: command_line" in ln]
    assert [ln.split("TaskerWarning: ", 1)[1] for ln in told] == [
        "command_line (of this process) contains text that is not valid Unicode (lone "
        "surrogates); they are stored as \\x escapes"
    ], result.stderr
    (explicit,) = [r for r in history if r.task_name.startswith("explicit")]
    assert explicit.task_name == "explicit caf\\xe9.csv"
    assert (explicit.status, explicit.error_message) == ("FAILED", "cannot open caf\\xe9.csv")


def test_storable_text() -> None:
    assert validate.storable_text("plain") == ("plain", None)
    assert validate.storable_text("caf\udce9") == ("caf\\xe9", "text that is not valid Unicode")
    assert validate.storable_text("x\ud800") == ("x\\ud800", "text that is not valid Unicode")
    assert validate.storable_text("a\x00b") == ("a\ufffdb", "NUL")
    assert validate.storable_text("héllo wörld") == ("héllo wörld", None)


# ---------------------------------------------------------------------------- numbers


def test_numbers_out_of_range_are_refused_clearly_and_lose_nothing(db: Backend) -> None:
    run_id = tasker.task_start("S", "counts")
    tasker.subtask_start("items", items_total=10)
    tasker.subtask_increment(4)
    for bad in (10**30, 2**63 - 1, -1, None, 1.5, "3"):
        with pytest.raises(tasker.ValidationError, match="increment must be a whole number"):
            tasker.subtask_increment(bad)  # type: ignore[arg-type]
    with pytest.raises(tasker.ValidationError, match="from 0 to 1,000,000,000,000,000"):
        tasker.subtask_start("too many", items_total=10**16)
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.items_complete, sub.items_total) == (4, 10)
    assert isinstance(sub.items_complete, int)


def test_subtask_numbers_and_totals_past_32_bits_are_refused_on_every_backend(db: Backend) -> None:
    # Subtask numbers, subtask totals and PIDs live in 32-bit columns: 2**31 used to reach
    # PostgreSQL and come back as a driver error ("integer out of range").
    run_id = tasker.task_start("S", "numbers", total_subtasks=2)
    tasker.subtask_start("items", items_total=10)
    tasker.subtask_increment(3)
    limit = "from 1 to 2,147,483,647"
    with pytest.raises(tasker.ValidationError, match=f"subtask_number must be .* {limit}"):
        tasker.subtask_increment(1, subtask_number=2**31)
    with pytest.raises(tasker.ValidationError, match=f"subtask_number must be .* {limit}"):
        tasker.subtask_update("RUNNING", subtask_number=2**31)
    with pytest.raises(tasker.ValidationError, match=f"current_subtask must be .* {limit}"):
        tasker.task_update("RUNNING", current_subtask=2**31)
    with pytest.raises(tasker.ValidationError, match=r"total_subtasks must be .* 2,147,483,647"):
        tasker.task_start("S", "too many subtasks", total_subtasks=2**31)
    with pytest.raises(tasker.ValidationError, match=f"on_behalf_of must be .* {limit}"):
        tasker.task_start("S", "no such pid", on_behalf_of=2**31)
    tasker.subtask_increment(1, subtask_number=1)
    tasker.task_update("RUNNING", current_subtask=2**31 - 1)
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.subtask_number, sub.items_complete, sub.items_total) == (1, 4, 10)
    run = tasker.get_run(run_id)
    assert (run.total_subtasks, run.current_subtask) == (2, 2**31 - 1)


def test_the_automatic_layer_clamps_numbers_with_a_warning(db: Backend) -> None:
    with tasker.task("S", "clamped") as run, tasker.subtask("items") as st:
        st.advance(2)
        with pytest.warns(tasker.TaskerWarning, match="advance"):
            st.advance(10**30)
        with pytest.warns(tasker.TaskerWarning, match="advance"):
            st.advance("many")  # type: ignore[arg-type]
        with pytest.warns(tasker.TaskerWarning, match="total"):
            for _ in tasker.track(range(3), total=-5):
                pass
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert sub.items_complete == 2 + validate.COUNT_MAX + 3
    assert isinstance(sub.items_complete, int)


# ---------------------------------------------------------------------------- ended twice


def test_an_ended_run_stays_ended(db: Backend) -> None:
    run_id = tasker.task_start("S", "ends once")
    tasker.task_fail("broken", exit_code=3)
    with pytest.warns(tasker.TaskerWarning, match="already ended FAILED"):
        tasker.task_complete(run_id=run_id)
    with pytest.warns(tasker.TaskerWarning, match="already ended FAILED"):
        tasker.task_update("COMPLETED", run_id=run_id)
    run = tasker.get_run(run_id)
    assert (run.status, run.exit_code, run.error_message) == ("FAILED", 3, "broken")
    tasker.configure(**db.settings, console="false", strict=True)
    with pytest.raises(tasker.RunEndedError, match="is refused"):
        tasker.task_complete(run_id=run_id)
    assert tasker.get_run(run_id).status == "FAILED"


def test_the_command_line_refuses_a_second_ending(db: Backend, child_env: dict[str, str]) -> None:
    start = tasker_cli(child_env, "start", "S", "shell step")
    assert start.returncode == 0, start.stderr
    run_id = start.stdout.strip()
    assert tasker_cli(child_env, "fail", "--run-id", run_id, "--exit-code", "3").returncode == 0
    again = tasker_cli(child_env, "complete", "--run-id", run_id)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"tasker: error: run {run_id} already ended FAILED at "
        f"{tasker.get_run(run_id).end_time:%Y-%m-%d %H:%M:%S}; ending it again as COMPLETED "
        "is refused (the first ending is kept)"
    ]
    run = tasker.get_run(run_id)
    assert (run.status, run.exit_code) == ("FAILED", 3)


# ---------------------------------------------------------------------------- shell scripts


def test_a_set_e_shell_script_runs_through_while_the_database_is_away(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    away = {
        **child_env,
        "TASKER_DB_URL": f"postgresql://nobody@127.0.0.1:{_closed_port()}/gone",
        "TASKER": f"{sys.executable} -m tasker",
    }
    away.pop("TASKER_DB_PATH", None)
    away.pop("TASKER_DB_SCHEMA", None)
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "shell_pipeline.sh")],
        env=away,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Everything the script tracked was journaled; the next process that reaches the
    # database (here, this one) writes it, complete.
    journals = sorted(Path(os.environ["XDG_STATE_HOME"]).rglob("*.jsonl"))
    assert journals, result.stderr
    replayed = tasker.replay_journal(journals)
    assert replayed.failed == 0 and replayed.files == len(journals)
    check_shell_pipeline(result.stderr)


def _away_env(child_env: dict[str, str]) -> dict[str, str]:
    """child_env with the database replaced by a port nothing listens on."""
    away = {**child_env, "TASKER_DB_URL": f"postgresql://nobody@127.0.0.1:{_closed_port()}/gone"}
    away.pop("TASKER_DB_PATH", None)
    away.pop("TASKER_DB_SCHEMA", None)
    return away


def test_every_shell_call_exits_0_while_the_database_is_away_and_replays_exactly(
    db: Backend, child_env: dict[str, str]
) -> None:
    """Each recording command a shell script may call (update, fail, subtask start, update,
    increment, complete and fail, a run named by a prefix, an ending given as update's
    status) exits 0 while the database is away and journals its event; replayed, the runs
    hold exactly those values."""
    away = _away_env(child_env)

    def call(env: dict[str, str], *args: str) -> str:
        done = tasker_cli(env, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stdout.strip()

    run_id = call(away, "start", "S", "away", "--total-subtasks", "3", "--message", "begun")
    env = {**away, "TASKER_RUN_ID": run_id}
    call(env, "update", "--status", "RUNNING", "--percent", "10", "--message", "warming up")
    assert call(env, "subtask", "start", "load", "--items", "5") == "1"
    call(env, "subtask", "update", "--items-complete", "2", "--message", "two in")
    call(env, "subtask", "increment", "--by", "2")
    call(env, "subtask", "fail", "--message", "bad row")
    # A prefix of the run's id: known on this machine, without the database.
    assert call(away, "subtask", "start", run_id[:8], "check") == "2"
    call(away, "subtask", "update", run_id[:8], "--status", "RUNNING", "--percent", "40")
    call(env, "subtask", "complete", "--message", "checked")
    call(env, "update", "--percent", "60", "--message", "two of three")
    assert call(env, "subtask", "start", "publish", "--number", "3", "--items", "1") == "3"
    call(env, "subtask", "update", "--number", "3", "--percent", "50")
    call(env, "fail", "--message", "broke", "--exit-code", "3")
    # A second run, ended by update's status.
    other = call(away, "start", "S", "ended by update")
    call(away, "subtask", "start", other, "copy", "--items", "3")
    call(away, "subtask", "increment", other, "--by", "3", "--number", "1")
    call(away, "subtask", "complete", other, "--items-complete", "3")
    call(away, "update", other, "--status", "COMPLETED", "--message", "copied")

    journals = sorted(Path(os.environ["XDG_STATE_HOME"]).rglob("*.jsonl"))
    assert len(journals) == 18  # one file per call: each recorded one event
    replayed = tasker.replay_journal(journals)
    assert (replayed.failed, replayed.files, replayed.events) == (0, 18, 18)

    run = tasker.get_run(run_id)
    assert (run.task_name, run.task_type, run.status, run.exit_code, run.error_message) == (
        "away",
        "sh",
        "FAILED",
        3,
        "broke",
    )
    assert (
        run.total_subtasks,
        run.current_subtask,
        run.overall_percent_complete,
        run.overall_progress_message,
    ) == (3, 3, 60.0, "two of three")
    subtasks = [
        (
            s.subtask_number,
            s.subtask_name,
            s.status,
            s.items_complete,
            s.items_total,
            s.percent_complete,
            s.progress_message,
            s.error_message,
        )
        for s in tasker.get_subtask_progress(run_id)
    ]
    assert subtasks == [
        (1, "load", "FAILED", 4, 5, 80.0, "two in", "bad row"),
        (2, "check", "COMPLETED", 0, None, 100.0, "checked", None),
        (3, "publish", "FAILED", 0, 1, 50.0, None, "ended FAILED with its run"),
    ]
    second = tasker.get_run(other)
    assert (second.status, second.overall_progress_message, second.error_message) == (
        "COMPLETED",
        "copied",
        None,
    )
    ((number, status, done, total),) = [
        (s.subtask_number, s.status, s.items_complete, s.items_total)
        for s in tasker.get_subtask_progress(other)
    ]
    assert (number, status, done, total) == (1, "COMPLETED", 3, 3)


def test_a_usage_error_while_the_database_is_away_still_exits_2(
    db: Backend, child_env: dict[str, str]
) -> None:
    away = _away_env(child_env)
    start = tasker_cli(away, "start", "S", "usage")
    assert start.returncode == 0, start.stderr
    run_id = start.stdout.strip()
    env = {**away, "TASKER_RUN_ID": run_id}
    usage_errors: list[tuple[dict[str, str], tuple[str, ...], str]] = [
        (env, ("update", "--percent", "500"), "overall_percent must be a number from 0 to 100"),
        (env, ("update", "--status", "BOGUS"), "argument --status: invalid choice: 'BOGUS'"),
        (env, ("fail", "--exit-code", "x"), "argument --exit-code: invalid int value: 'x'"),
        (env, ("subtask", "start"), "the following arguments are required: NAME"),
        (env, ("subtask", "update", "--percent", "abc"), "argument --percent: expected a number"),
        (env, ("subtask", "increment", "--by", "-1"), "--by must be 0 or more, got -1"),
        (env, ("subtask", "fail", "abc"), "a prefix of at least 4 of its characters, got 'abc'"),
        (away, ("complete",), "no run named: give RUN_ID"),
        (away, ("subtask", "update", "--items-complete", "2"), "no run named: give RUN_ID"),
    ]
    for call_env, args, message in usage_errors:
        done = tasker_cli(call_env, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr.splitlines()[-1], (args, done.stderr)
        assert "Traceback" not in done.stderr
    # A prefix no run of this machine has cannot be resolved while the database is away:
    # a failure (1), saying so, not a usage error.
    unknown = tasker_cli(away, "update", "0000", "--message", "x")
    assert unknown.returncode == 1
    (line,) = unknown.stderr.splitlines()
    assert line.startswith("tasker: error: cannot tell which run '0000' is the start of: ")
    assert line.endswith(
        "(while the database is away, give the whole run id, or the prefix of a run a shell "
        "script started on this machine)"
    )
    # Only the start was journaled: the refused calls recorded nothing.
    journals = sorted(Path(os.environ["XDG_STATE_HOME"]).rglob("*.jsonl"))
    assert tasker.replay_journal(journals).events == 1
    run = tasker.get_run(run_id)
    assert (run.status, run.overall_percent_complete, run.exit_code) == ("STARTED", None, None)
    assert tasker.get_subtask_progress(run_id) == []


# ---------------------------------------------------------------------------- the file


def test_a_sqlite_file_deleted_mid_run_is_noticed_and_written_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "runs.db"
    tasker.configure(path=str(path), console="false")

    @tasker.task(stage="S", name="before")
    def before() -> None:
        return None

    @tasker.task(stage="S", name="after")
    def after() -> None:
        return None

    before()
    assert tasker.flush()
    for leftover in tmp_path.glob("runs.db*"):
        leftover.unlink()  # someone deletes the database under a running program
    after()
    assert tasker.flush()
    told = caplog.text + capsys.readouterr().err
    assert told.count("was deleted or replaced") == 1, told
    assert path.exists()
    (run,) = tasker.get_task_history()
    assert (run.task_name, run.status) == ("after", "COMPLETED")


def test_an_ended_subtask_stays_ended(db: Backend) -> None:
    run_id = tasker.task_start("S", "subtask ends once")
    tasker.subtask_start("step", items_total=4)
    tasker.subtask_increment(4)
    tasker.subtask_fail("disk full")
    with pytest.warns(tasker.TaskerWarning, match="subtask 1 of run .* already ended FAILED"):
        tasker.subtask_complete(subtask_number=1)
    tasker.subtask_increment(1, subtask_number=1)  # late counts still count
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.status, sub.error_message, sub.items_complete) == ("FAILED", "disk full", 5)


def test_under_strict_a_subtask_ended_again_raises(db: Backend) -> None:
    db.configure(strict=True)
    run_id = tasker.task_start("S", "strict subtask ends once")
    tasker.subtask_start("step", items_total=4)
    tasker.subtask_fail("disk full")
    refused = r"subtask 1 of run .* already ended FAILED; {} as {} is refused"
    with pytest.raises(tasker.RunEndedError, match=refused.format("ending it again", "COMPLETED")):
        tasker.subtask_complete(subtask_number=1)
    with pytest.raises(tasker.RunEndedError, match=refused.format("updating it", "RUNNING")):
        tasker.subtask_update("RUNNING", subtask_number=1, message="back")
    tasker.task_complete()
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.status, sub.error_message, sub.progress_message) == ("FAILED", "disk full", None)
    with pytest.raises(tasker.RunEndedError, match=r"already ended COMPLETED.*updating it as"):
        tasker.task_update("RUNNING", message="again", run_id=run_id)
    with pytest.raises(tasker.RunEndedError, match="starting a subtask in it is refused"):
        tasker.subtask_start("late", run_id=run_id)


def test_an_ended_run_takes_no_update_and_no_new_subtask(db: Backend) -> None:
    """task_update with a status, or subtask_start, aimed at a run that ended used to bring
    it back (RUNNING) or grow it; now refused with a warning, the run kept as it ended."""
    run_id = tasker.task_start("S", "stays ended")
    tasker.subtask_start("step", items_total=2)
    tasker.subtask_fail("bad input")
    tasker.task_complete("done")
    before = tasker.get_run(run_id)
    with pytest.warns(tasker.TaskerWarning, match=r"already ended COMPLETED.*updating it as"):
        tasker.task_update("RUNNING", overall_percent=5, message="again", run_id=run_id)
    with pytest.warns(tasker.TaskerWarning, match="starting a subtask in it is refused"):
        assert tasker.subtask_start("late", run_id=run_id) == 0
    with pytest.warns(tasker.TaskerWarning, match=r"subtask 1 .* updating it as RUNNING"):
        tasker.subtask_update("RUNNING", subtask_number=1, message="back", run_id=run_id)
    tasker.subtask_increment(2, subtask_number=1, run_id=run_id)  # late counts still count
    after = tasker.get_run(run_id)
    assert (after.status, after.end_time, after.overall_progress_message) == (
        "COMPLETED",
        before.end_time,
        "done",
    )
    assert after.overall_percent_complete == before.overall_percent_complete
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.status, sub.error_message, sub.items_complete) == ("FAILED", "bad input", 2)


def test_a_write_the_exit_gave_up_on_rolls_back_instead_of_committing_too(
    db: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The exit journals the batch a write is stuck on (a lock, a stalled network); if that
    # write then got through and committed, replaying the journal would find every run twice.
    import threading

    from tasker.runtime.recorder import RECORDER
    from tasker.store.sql import SqlStore

    tasker.create_schema()
    inside, release = threading.Event(), threading.Event()
    original = SqlStore.insert_whole_runs

    def stuck(self: SqlStore, rows: Any) -> Any:
        result = original(self, rows)  # the rows are in the transaction, not yet committed
        inside.set()
        release.wait(30)  # the exit gives up meanwhile
        return result

    monkeypatch.setattr(SqlStore, "insert_whole_runs", stuck)

    @tasker.task(stage="S", name="given up")
    def job() -> int:
        return 1

    assert [job() for _ in range(3)] == [1, 1, 1]
    RECORDER.writer.ensure_started()
    assert inside.wait(30)
    assert RECORDER.writer.flush(timeout=0.2, closing=True)  # journaled, not written
    release.set()
    deadline = time.monotonic() + 30
    while RECORDER.writer.stalled(0.0) and time.monotonic() < deadline:
        time.sleep(0.01)  # the stuck write goes on, and must roll back
    monkeypatch.setattr(SqlStore, "insert_whole_runs", original)
    assert db.scalar(f"SELECT COUNT(*) FROM {db.table('task_runs')}") == 0
    journals = sorted(Path(os.environ["XDG_STATE_HOME"]).rglob("*.jsonl"))
    result = tasker.replay_journal(journals)
    assert (result.events, result.failed) == (6, 0)
    runs = tasker.get_task_history()
    assert [(r.task_name, r.status) for r in runs] == [("given up", "COMPLETED")] * 3
