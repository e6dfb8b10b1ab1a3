"""The command line for shell steps and for reading runs: ``tasker run``, the explicit shell
calls, ``active``, ``history`` and ``show``, each through a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tasker
from tests.conftest import Backend
from tests.helpers import new_run, tasker_cli, wait_for

PY = sys.executable
TASKER = f"{PY} -m tasker"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PY, "-m", "tasker", *args], env=env, capture_output=True, timeout=120, check=False
    )


def test_run_records_a_failing_command_and_returns_its_status(
    db: Backend, child_env: dict[str, str]
) -> None:
    done = _run(
        child_env,
        "run",
        "--stage",
        "SH",
        "--name",
        "three",
        "--",
        "sh",
        "-c",
        "echo out; echo oops >&2; exit 3",
    )
    assert done.returncode == 3
    assert done.stdout == b"out\n" and b"oops\n" in done.stderr
    (run,) = tasker.get_task_history(stage="SH")
    assert (run.task_name, run.status, run.exit_code, run.task_type) == ("three", "FAILED", 3, "sh")
    assert "exited with status 3" in (run.error_message or "")
    assert "oops" in (run.error_detail or "")
    assert run.script_filename == "sh"


def test_run_passes_output_bytes_through_unchanged_and_logs_them(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    payload = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 3)"
    done = _run(child_env, "run", "--stage", "SH", "--", PY, "-c", payload)
    assert done.returncode == 0
    assert done.stdout == bytes(range(256)) * 3
    log = tmp_path / "step.log"
    done = _run(
        child_env,
        "run",
        "--stage",
        "SH",
        "--name",
        "logged",
        "--log",
        str(log),
        "--",
        PY,
        "-c",
        payload,
    )
    assert done.returncode == 0 and done.stdout == bytes(range(256)) * 3
    assert log.read_bytes() == bytes(range(256)) * 3
    (run,) = tasker.get_task_history(task="logged")
    assert run.status == "COMPLETED" and run.log_filename == "step.log"


def test_sigterm_to_run_reaches_the_command_and_cancels_the_run(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    marker = tmp_path / "got-term"
    script = (
        "import signal, sys, time, pathlib\n"
        f"def on_term(*_):\n    pathlib.Path({str(marker)!r}).write_text('yes'); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [PY, "-m", "tasker", "run", "--stage", "SH", "--name", "long", "--", PY, "-c", script],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None or (proc.stdout is not None and not proc.stdout.closed):
            os.killpg(proc.pid, signal.SIGKILL)  # the command too, and close the pipes
            proc.communicate()
    assert proc.returncode == 143
    assert marker.read_text() == "yes"
    (run,) = tasker.get_task_history(task="long")
    assert run.status == "CANCELLED" and "SIGTERM" in (run.error_message or "")


def test_the_command_reports_into_its_run(db: Backend, child_env: dict[str, str]) -> None:
    steps = (
        f"{TASKER} subtask start load --items 3 && {TASKER} subtask increment --by 2 && "
        f"{TASKER} subtask increment && {TASKER} subtask complete --message loaded"
    )
    done = _run(child_env, "run", "--stage", "SH", "--name", "reporting", "--", "sh", "-c", steps)
    assert done.returncode == 0, done.stderr
    (run,) = tasker.get_task_history(task="reporting")
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (run.status, sub.subtask_name, sub.status, sub.items_complete) == (
        "COMPLETED",
        "load",
        "COMPLETED",
        3,
    )


def test_a_shell_script_tracks_itself(db: Backend, child_env: dict[str, str]) -> None:
    script = f"""
set -e
export TASKER_RUN_ID=$({TASKER} start SHELL "nightly load" --total-subtasks 1)
echo "pid $$"
{TASKER} update --percent 10 --message begun
{TASKER} subtask start files --items 4
{TASKER} subtask update --items-complete 4
{TASKER} subtask complete
{TASKER} complete --message finished
"""
    done = subprocess.run(
        ["sh", "-c", script],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shell_pid = int(done.stdout.split("pid ")[1].split()[0])
    (run,) = tasker.get_task_history(stage="SHELL")
    assert (run.task_name, run.status, run.overall_progress_message) == (
        "nightly load",
        "COMPLETED",
        "finished",
    )
    assert run.process_id == shell_pid  # the shell owns it: the reaper watches the shell
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.status, sub.items_complete) == ("COMPLETED", 4)


def test_a_shell_step_that_fails(db: Backend, child_env: dict[str, str]) -> None:
    script = f"""
export TASKER_RUN_ID=$({TASKER} start SHELL broken)
{TASKER} fail --message "input missing" --exit-code 2
"""
    done = subprocess.run(["sh", "-c", script], env=child_env, timeout=120, check=False)
    assert done.returncode == 0
    (run,) = tasker.get_task_history(stage="SHELL")
    assert (run.status, run.error_message, run.exit_code) == ("FAILED", "input missing", 2)


def test_active_history_and_show(db: Backend, child_env: dict[str, str]) -> None:
    run_id = tasker.task_start("READ", "live one")
    tasker.subtask_start("part", items_total=10)
    tasker.subtask_increment(4)
    done_id = tasker.task_start("READ", "finished one")
    tasker.task_fail("bad thing", error_detail="Traceback: line 1", run_id=done_id)
    tasker.flush()

    active = tasker_cli(child_env, "active", "--json")
    assert active.returncode == 0, active.stderr
    assert [r["run_id"] for r in json.loads(active.stdout)] == [run_id]
    assert "live one" in tasker_cli(child_env, "active").stdout

    history = tasker_cli(child_env, "history", "--json", "--stage", "READ", "--since", "1h")
    assert {r["task_name"] for r in json.loads(history.stdout)} == {"live one", "finished one"}
    failed = tasker_cli(child_env, "history", "--json", "--status", "FAILED")
    assert [r["run_id"] for r in json.loads(failed.stdout)] == [done_id]
    old = tasker_cli(child_env, "history", "--json", "--since", "2000-01-01")
    assert len(json.loads(old.stdout)) == 2
    assert tasker_cli(child_env, "history", "--since", "soon").returncode == 2  # usage

    shown = tasker_cli(child_env, "show", run_id[:8], "--json")
    data = json.loads(shown.stdout)
    assert data["run_id"] == run_id and data["subtasks"][0]["items_complete"] == 4
    text = tasker_cli(child_env, "show", done_id[:6]).stdout
    assert "bad thing" in text and "Traceback: line 1" in text
    missing = tasker_cli(child_env, "show", "ffffffff")
    assert missing.returncode == 1 and "no run id starts with" in missing.stderr
    assert tasker_cli(child_env, "show", "ab").returncode == 2  # too short: a usage error


def test_help_has_an_example_for_every_command(child_env: dict[str, str]) -> None:
    commands = [
        "active",
        "history",
        "show",
        "run",
        "start",
        "update",
        "complete",
        "fail",
        "subtask",
        "reap",
        "replay",
        "status",
        "init",
        "config",
        "register",
        "schema",
        "demo",
    ]
    for command in commands:
        shown = tasker_cli(child_env, command, "--help")
        assert shown.returncode == 0 and "Example:" in shown.stdout, command


def test_a_run_started_by_a_shell_that_died_is_reaped(
    db: Backend, child_env: dict[str, str]
) -> None:
    shell = subprocess.Popen(
        ["sh", "-c", f"{TASKER} start SHELL orphan; sleep 60"],
        env=child_env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert shell.stdout is not None
    run_id = shell.stdout.readline().strip()
    time.sleep(0.2)
    assert tasker.reap_lost_runs() == []  # the shell lives
    os.killpg(shell.pid, signal.SIGKILL)  # the shell and its sleep
    shell.communicate()
    wait_for(lambda: tasker.reap_lost_runs() or tasker.get_run(run_id).status == "FAILED")
    assert tasker.get_run(run_id).error_type == "ProcessLost"


def test_export_csv_and_json(db: Backend, child_env: dict[str, str], tmp_path: Path) -> None:
    import csv

    first = tasker.task_start("EXP", "one, with a comma")
    tasker.task_fail('bad "quoted" thing', run_id=first)
    tasker.task_complete(run_id=tasker.task_start("EXP", "two"))
    tasker.flush()
    data = json.loads(tasker_cli(child_env, "export", "--format", "json").stdout)
    assert {r["task_name"] for r in data} == {"one, with a comma", "two"}
    out = tmp_path / "runs.csv"
    done = tasker_cli(child_env, "export", "--since", "1h", "-o", str(out))
    assert done.returncode == 0 and "exported 2 runs" in done.stderr
    with open(out, newline="", encoding="utf-8") as fh:
        rows = {r["task_name"]: r for r in csv.DictReader(fh)}
    assert rows["one, with a comma"]["error_message"] == 'bad "quoted" thing'
    assert rows["two"]["status"] == "COMPLETED" and rows["two"]["run_id"]


def test_purge_asks_then_deletes_only_old_ended_runs(
    db: Backend, child_env: dict[str, str]
) -> None:
    from datetime import datetime, timedelta, timezone

    from tasker.runtime.recorder import RECORDER

    old = tasker.task_start("PURGE", "old")
    tasker.subtask_start("part")
    tasker.task_complete(run_id=old)
    live = tasker.task_start("PURGE", "live")
    recent = tasker.task_start("PURGE", "recent")
    tasker.task_complete(run_id=recent)
    long_ago = datetime.now(timezone.utc) - timedelta(days=100)
    store = RECORDER.store
    for run_id in (old, live):  # live: started long ago, still running
        store.update_run(run_id, {"start_time": long_ago}, long_ago)
    store.update_run(old, {"end_time": long_ago}, long_ago)  # ended long ago

    refused = tasker_cli(child_env, "purge", "--older-than", "90d")
    assert refused.returncode == 1 and "add --yes" in refused.stderr  # no terminal: no prompt
    dry = tasker_cli(child_env, "purge", "--older-than", "90d", "--dry-run")
    assert "would delete 1 run" in dry.stdout
    done = tasker_cli(child_env, "purge", "--older-than", "90d", "--yes")
    assert done.returncode == 0 and "deleted 1 run" in done.stdout
    left = {r.task_name for r in tasker.get_task_history(stage="PURGE", limit=None)}
    assert left == {"live", "recent"}
    (old_task,) = [t for t in tasker.get_task_status(stage="PURGE") if t.task_name == "old"]
    assert old_task.status == "NOT_STARTED"  # its latest run pointer moved on
    assert tasker_cli(child_env, "purge", "--older-than", "soon").returncode == 2  # usage


def _read_until(fd: int, needle: bytes, timeout: float = 30.0) -> bytes:
    import select

    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} never shown; screen so far: {seen[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the terminal closed
                break
    return seen


def test_watch_on_a_terminal_shows_progress_advancing(
    db: Backend, child_env: dict[str, str]
) -> None:
    import pty

    run_id = tasker.task_start("WATCH", "loop")
    tasker.subtask_start("items", items_total=100)
    tasker.subtask_update(items_complete=10)
    tasker.flush()
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [PY, "-m", "tasker", "watch", "--interval", "0.2"],
        env={k: v for k, v in child_env.items() if k != "NO_COLOR"},
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(slave)
    try:
        first = _read_until(master, b"10/100")
        assert b"\x1b[H" in first  # redrawn in place
        assert b"WATCH" in first and b"[#-" in first  # stage line and a progress bar
        assert b"\x1b[33m" in first  # RUNNING in colour on a terminal
        tasker.subtask_update(items_complete=60, run_id=run_id)
        tasker.flush()
        later = _read_until(master, b"60/100")
        assert b"60.0%" in later
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        os.close(master)


def test_watch_without_a_terminal_prints_changes_as_lines(
    db: Backend, child_env: dict[str, str]
) -> None:
    tasker.task_start("WATCH", "plain")
    tasker.subtask_start("items", items_total=4)
    tasker.subtask_update(items_complete=1)
    tasker.flush()
    shown = tasker_cli(child_env, "watch", "--count", "2", "--interval", "0.1")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 1 and "WATCH / plain: RUNNING 1/4 25%" in lines[0]  # unchanged: once
    assert "\x1b[" not in shown.stdout


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from tasker.cli.tables import colour, use_colour

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert colour("FAILED", "FAILED", True) == "\x1b[31mFAILED\x1b[0m"
    assert colour("FAILED", "FAILED", False) == "FAILED"
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Terminal()) and not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Terminal())


def test_reap_command_ends_lost_runs(db: Backend, child_env: dict[str, str]) -> None:
    from datetime import datetime, timedelta, timezone

    from tasker.runtime.recorder import RECORDER

    now = datetime.now(timezone.utc)
    RECORDER.store.start_run(
        new_run(
            "00000000-0000-4000-8000-0000000000cc",
            "FAR",
            "silent",
            start_time=now - timedelta(minutes=10),
            hostname="elsewhere.example",
            process_id=4242,
        )
    )
    RECORDER.store.heartbeat(["00000000-0000-4000-8000-0000000000cc"], now - timedelta(minutes=5))
    kept = tasker_cli(child_env, "reap", "--stale-after", "3600")
    assert kept.returncode == 0 and "0 lost runs ended FAILED" in kept.stdout
    done = tasker_cli(child_env, "reap", "--stale-after", "120")
    assert done.returncode == 0
    assert "FAR / silent" in done.stdout and "1 lost run ended FAILED" in done.stdout
    assert tasker.get_run("00000000-0000-4000-8000-0000000000cc").status == "FAILED"


def test_a_signal_before_the_command_starts_still_reaches_it(
    db: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasker.cli import run as command_run

    real_popen = subprocess.Popen

    def popen_after_a_sigterm(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's SIGTERM, just before the start
        return real_popen(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(command_run.subprocess, "Popen", popen_after_a_sigterm)
    began = time.monotonic()
    code = command_run.run_command(
        [PY, "-c", "import time; time.sleep(60)"], "SH", "early", None, quiet=True
    )
    # The command was ended by that SIGTERM at once, not left to sleep its minute.
    assert code == 128 + signal.SIGTERM and time.monotonic() - began < 30
    handler = signal.getsignal(signal.SIGTERM)
    assert getattr(handler, "__name__", "") != "forward"  # its handlers given back
    (run,) = tasker.get_task_history(task="early")
    assert run.status == "CANCELLED" and "ended by SIGTERM" in (run.error_message or "")
