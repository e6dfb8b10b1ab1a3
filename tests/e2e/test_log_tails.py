"""Log tails shipped by the tracked process: a run's end carries the end of the program's
own log file into the database (``tracking.log_tail_bytes``), and the dashboard and
``tasker show`` show it from there, without opening any file a row names. Real programs in
subprocesses, on every backend."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

import tasker
from tasker.models import RunRecord
from tests.conftest import Backend
from tests.e2e.test_dashboard import Served
from tests.helpers import run_script, tasker_cli, write_script

# A program logging to a file (through the root logger, as logging.basicConfig does), with
# a top-level run, a nested run that succeeds and a nested run that fails, then another
# top-level run.
JOB = """
import logging
import os

import tasker

logging.basicConfig(filename=os.environ["JOB_LOG"], level=logging.INFO, format="%(message)s")
log = logging.getLogger("job")


@tasker.task(stage="LOGS", name="inner")
def inner(fail):
    log.info("inner %s", "fails" if fail else "succeeds")
    if fail:
        raise ValueError("inner failed")


@tasker.task(stage="LOGS", name="job")
def job():
    for i in range(1, 1001):
        log.info("line %05d of the job", i)
    inner(False)
    try:
        inner(True)
    except ValueError:
        pass
    log.info("the last line of the job")


@tasker.task(stage="LOGS", name="after")
def after():
    log.info("the only line of the next task")


job()
after()
"""
LAST = "the last line of the job\n"
FAILED_LAST = "inner fails\n"


def _run_job(
    tmp_path: Path, child_env: dict[str, str], log: Path | str, **env: str
) -> dict[str, RunRecord]:
    """Run JOB logging to ``log``; its four runs as get_run reads them, by what they were:
    "job", "inner ok", "inner failed", "after"."""
    script = write_script(tmp_path, JOB)
    started = time.monotonic()
    done = run_script(script, {**child_env, "JOB_LOG": str(log), **env})
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60, "the program took far too long"
    tasker.flush()
    runs: dict[str, RunRecord] = {}
    for listed in tasker.get_task_history(stage="LOGS", limit=None):
        assert listed.log_tail is None  # lists of runs carry no log
        run = tasker.get_run(listed.run_id)
        if run.task_name in ("job", "after"):
            runs[run.task_name] = run
        else:
            runs["inner ok" if run.status == "COMPLETED" else "inner failed"] = run
    assert {k: str(r.status) for k, r in runs.items()} == {
        "job": "COMPLETED",
        "inner ok": "COMPLETED",
        "inner failed": "FAILED",
        "after": "COMPLETED",
    }
    return runs


def _tail(text: str, limit: int) -> str:
    """What a run ships of a log that holds ``text`` when it ends: its last ``limit`` bytes
    (ASCII here), from the first whole line."""
    if len(text) <= limit:
        return text
    return text[-limit:].split("\n", 1)[1]


def _until(text: str, last: str) -> str:
    """``text`` up to the end of the line ``last`` (what the log held when a run ended)."""
    return text[: text.index(last) + len(last)]


def test_the_dashboard_shows_the_shipped_tail_of_a_log_file_that_is_gone(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "not-a-log-root"
    elsewhere.mkdir()
    log = elsewhere / "job.log"
    runs = _run_job(tmp_path, child_env, log, TASKER_LOG_TAIL_BYTES="4096")
    content = log.read_text(encoding="ascii")
    log.unlink()  # nothing left to read: what is shown came from the database
    expected = _tail(_until(content, LAST), 4096)
    job = runs["job"]
    assert job.log_path == str(elsewhere) and job.log_filename == "job.log"
    assert job.log_tail == expected
    assert expected.endswith(LAST) and "line 01000 of the job\n" in expected
    lines = expected.split("\n")
    assert lines[0] in content.split("\n")  # a whole line of the log first
    assert len(expected.encode()) <= 4096 and len(expected.encode()) > 4096 - 100
    db.configure()  # no log roots: the dashboard may read no log file at all
    served = Served()
    try:
        data = served.json(f"/api/runs/{job.run_id}")
        assert data["log_tail"] == expected
        assert data["log_source"] == "shipped"
        assert data["log_note"] == "shipped by the run's process when the run ended"
        status, page, _ = served.get(f"/runs/{job.run_id}")
        assert status == 200
        assert "shipped by the run&#39;s process" in page and "the last line of the job" in page
        # A run that shipped nothing: the file is not read (no roots), and the page says so.
        quiet = served.json(f"/api/runs/{runs['inner ok'].run_id}")
        assert quiet["log_tail"] is None and quiet["log_source"] is None
        assert "dashboard.log_roots" in quiet["log_note"]
    finally:
        served.stop()
    shown = tasker_cli(child_env, "show", job.run_id)
    assert shown.returncode == 0, shown.stderr
    printed = shown.stdout.split("log (the end shipped by the run's process; last 20 lines", 1)
    assert len(printed) == 2, shown.stdout
    assert printed[1].split("\n", 1)[1] == "\n".join(expected.rstrip("\n").split("\n")[-20:]) + "\n"
    as_json = tasker_cli(child_env, "show", job.run_id, "--json")
    assert json.loads(as_json.stdout)["log_tail"] == expected


def test_a_failed_nested_run_ships_its_tail_and_a_successful_one_none(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "job.log"
    runs = _run_job(tmp_path, child_env, log)  # the default: 16 KiB
    content = log.read_text(encoding="ascii")
    failed = runs["inner failed"].log_tail
    assert failed == _tail(_until(content, FAILED_LAST), 16 * 1024)
    assert failed is not None and failed.endswith(FAILED_LAST)
    assert 16 * 1024 - 100 < len(failed.encode()) <= 16 * 1024
    assert runs["inner ok"].log_tail is None  # nested and successful: nothing shipped
    assert runs["job"].log_tail == _tail(_until(content, LAST), 16 * 1024)
    # A later top-level run ships what was logged from its own start on, not the job's
    # lines again (a program calling a top-level task per item stores each call's lines).
    after = runs["after"]
    assert after.log_tail == (
        f"[TASK START] LOGS / after (run_id: {after.run_id})\nthe only line of the next task\n"
    )


def test_log_tail_bytes_0_ships_nothing(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "job.log"
    runs = _run_job(tmp_path, child_env, log, TASKER_LOG_TAIL_BYTES="0")
    assert LAST in log.read_text(encoding="ascii")
    assert {k: r.log_tail for k, r in runs.items()} == dict.fromkeys(runs)
    assert runs["job"].log_filename == "job.log"  # the file is still recorded


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_fifo_or_a_device_as_the_log_file_ships_nothing_and_does_not_hang(
    db: Backend, child_env: dict[str, str], tmp_path: Path, kind: str
) -> None:
    read: list[bytes] = []
    reader = None
    if kind == "fifo":
        log = tmp_path / "job.log"
        os.mkfifo(log)

        def drain() -> None:  # the program's log goes somewhere: this reader
            with open(log, "rb") as fh:
                read.append(fh.read())

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        runs = _run_job(tmp_path, child_env, log)
    else:
        runs = _run_job(tmp_path, child_env, kind)
    assert {k: r.log_tail for k, r in runs.items()} == dict.fromkeys(runs)
    if reader is not None:
        reader.join(timeout=30)
        # Nothing was taken from the pipe: its reader got every line the program wrote.
        assert read and read[0].count(b"\nline ") == 1000 and LAST.encode() in read[0]


def test_shell_runs_ship_the_tail_of_the_log_they_name(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "step.log"
    log.write_text("".join(f"step line {i}\n" for i in range(1, 2001)), encoding="ascii")
    env = {**child_env, "TASKER_LOG_TAIL_BYTES": "1000"}
    started = tasker_cli(env, "start", "SHELL", "step")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    done = tasker_cli(env, "complete", run_id, "--log", str(log))
    assert done.returncode == 0, done.stderr
    content = log.read_text(encoding="ascii")
    assert tasker.get_run(run_id).log_tail == _tail(content, 1000)
    # A log that is no regular file: the run ends all the same, with a note, and no tail.
    other = tasker_cli(env, "start", "SHELL", "other").stdout.strip()
    failed = tasker_cli(env, "fail", other, "--message", "no input", "--log", "/dev/zero")
    assert failed.returncode == 0 and "no log tail shipped" in failed.stderr
    run = tasker.get_run(other)
    assert (run.status, run.log_tail) == ("FAILED", None)
    # tasker run --log: the copy of the command's output it keeps ends with the run.
    output = tmp_path / "command.log"
    ran = tasker_cli(
        env, "run", "--stage", "SHELL", "--name", "cmd", "--log", str(output), "--",
        "sh", "-c", "echo first; echo 'the last line' >&2; exit 3",
    )  # fmt: skip
    assert ran.returncode == 3, ran.stderr
    (cmd,) = tasker.get_task_history(task="cmd")
    assert tasker.get_run(cmd.run_id).log_tail == output.read_text(encoding="utf-8")
    assert "the last line\n" in output.read_text(encoding="utf-8")
