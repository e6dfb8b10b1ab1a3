"""Every example runs, on every backend, and leaves the rows it promises."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import tasker
from tests.conftest import ROOT, Backend


def run_example(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_seed_pipeline(db: Backend, child_env: dict[str, str]) -> None:
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    result = run_example("seed_pipeline.py", {**child_env, "TASKER_CONSOLE": "true"})
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()

    rows = {(r.stage_name, r.task_name): r for r in tasker.get_task_status()}
    assert [k for k in rows] == [
        ("PREREQ", "Install System Dependencies"),
        ("PREREQ", "Install R Packages"),
        ("STATIC", "Process FCC Data"),
        ("STATIC", "Build Census Data"),
    ]
    for key in [k for k in rows if k[1] != "Process FCC Data"]:
        assert rows[key].status == "NOT_STARTED" and rows[key].run_id is None

    run = tasker.get_run(run_id)
    assert run.status == "COMPLETED"
    assert run.total_subtasks == 5 and run.current_subtask == 5
    assert run.overall_percent_complete == 100.0
    assert run.overall_progress_message == "FCC data processing complete"
    assert run.hostname == socket.gethostname()
    assert run.process_id != os.getpid() and run.process_id > 0
    assert run.user_name
    assert run.script_filename == "seed_pipeline.py"
    assert run.start_time is not None and run.end_time is not None
    assert started <= run.start_time <= run.end_time <= datetime.now(timezone.utc)

    subs = tasker.get_subtask_progress(run_id)
    assert [s.subtask_number for s in subs] == [1, 2, 3, 4, 5]
    assert all(s.status == "COMPLETED" for s in subs)
    states = subs[1]
    assert (states.items_total, states.items_complete) == (56, 56)
    assert states.percent_complete == 100.0
    assert states.progress_message == "All states loaded"

    lines = [line.split("] ", 1)[1] for line in result.stderr.splitlines() if "] [" in line]
    assert lines[0] == f"[TASK START] STATIC / Process FCC Data (run_id: {run_id})"
    assert lines[1] == "[SUBTASK START] Subtask 1: Loading FCC data"
    assert "[SUBTASK UPDATE] Subtask 2 - RUNNING: Processing state 28/56" in lines
    assert "[SUBTASK UPDATE] Subtask 2 - COMPLETED: All states loaded" in lines
    assert lines[-1] == f"[TASK UPDATE] {run_id} - COMPLETED: FCC data processing complete"


def test_fcc_pipeline_the_decorator_way(db: Backend, child_env: dict[str, str]) -> None:
    result = run_example("fcc_pipeline.py", child_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "refresh failed: coverage.example: connection reset by peer",
        "56000",
    ]
    rows = {r.task_name: r for r in tasker.get_task_status()}
    assert {name: str(r.status) for name, r in rows.items()} == {
        "Install System Dependencies": "COMPLETED",
        "Process FCC Data": "COMPLETED",
        "Build Census Data": "SKIPPED",
        "Refresh Coverage": "FAILED",
    }
    fcc = tasker.get_subtask_progress(rows["Process FCC Data"].run_id)
    assert [(s.subtask_name, s.items_complete, s.status) for s in fcc] == [
        ("Loading FCC data", 0, "COMPLETED"),
        ("Processing broadband data", 56, "COMPLETED"),
        ("Writing outputs", 0, "COMPLETED"),
    ]
    failed = tasker.get_run(rows["Refresh Coverage"].run_id)
    assert failed.error_type == "ConnectionError"
    assert failed.error_detail is not None and "raise ConnectionError" in failed.error_detail
    (loop,) = tasker.get_subtask_progress(failed.run_id)
    assert (loop.status, loop.items_complete) == ("FAILED", 3)


def test_async_pipeline(db: Backend, child_env: dict[str, str]) -> None:
    result = run_example("async_pipeline.py", child_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[20, 30, 10]"
    history = tasker.get_task_history()
    assert sorted(r.task_name.rsplit(".", 1)[-1] for r in history) == [
        "Merge",
        "fetch",
        "fetch",
        "fetch",
    ]
    assert all(r.status == "COMPLETED" for r in history)
    counts = sorted(
        tasker.get_subtask_progress(r.run_id)[1].items_complete
        for r in history
        if r.task_name.endswith("fetch")
    )
    assert counts == [10, 20, 30]


def test_multiprocessing_pipeline(db: Backend, child_env: dict[str, str]) -> None:
    result = run_example("multiprocessing_pipeline.py", child_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sum(v * v for v in range(200)))
    (run,) = tasker.get_task_history()
    subs = tasker.get_subtask_progress(run.run_id)
    assert [(s.subtask_name, s.items_complete, s.items_total, s.status) for s in subs] == [
        ("Squaring", 200, 200, "COMPLETED"),
        ("Adding up", 8, 8, "COMPLETED"),
    ]


def test_shell_pipeline(db: Backend, child_env: dict[str, str]) -> None:
    env = {**child_env, "TASKER": f"{sys.executable} -m tasker"}
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "shell_pipeline.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    check_shell_pipeline(result.stderr)


def check_shell_pipeline(stderr: str) -> None:
    """What examples/shell_pipeline.sh leaves: its three runs, exactly."""
    assert "no network" in stderr and "publish failed" in stderr
    runs = {r.task_name: r for r in tasker.get_task_history(limit=None)}
    assert sorted(runs) == ["Check tools", "Count words", "Publish"]
    assert runs["Check tools"].status == "COMPLETED"
    assert (runs["Publish"].status, runs["Publish"].exit_code) == ("FAILED", 4)
    count = runs["Count words"]
    assert (count.status, count.overall_progress_message) == ("COMPLETED", "4 files")
    (sub,) = tasker.get_subtask_progress(count.run_id)
    assert (sub.subtask_number, sub.status, sub.items_complete, sub.items_total) == (
        1,
        "COMPLETED",
        4,
        4,
    )


def test_make_pipeline(db: Backend, child_env: dict[str, str]) -> None:
    result = subprocess.run(
        [
            "make",
            "-C",
            str(ROOT / "examples" / "make_pipeline"),
            f"TASKER={sys.executable} -m tasker",
        ],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "report ready" in result.stdout
    runs = tasker.get_task_history(limit=None)
    assert sorted((r.task_name, r.status) for r in runs) == [
        ("make build", "COMPLETED"),
        ("make prereq", "COMPLETED"),
        ("make report", "COMPLETED"),
    ]
    order = sorted(runs, key=lambda r: r.start_time or datetime.min.replace(tzinfo=timezone.utc))
    assert [r.task_name for r in order] == ["make prereq", "make build", "make report"]
