"""Real processes: exit paths, signals, child processes and workers, live progress seen from
another process. Each test runs a small tracked script and reads the database afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tasker
from tests.conftest import Backend
from tests.helpers import run_script, wait_for, write_script


def test_runs_are_durable_at_a_normal_exit(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    script = write_script(
        tmp_path,
        """
        import tasker

        @tasker.task(stage="STATIC", name="Build Database", total_subtasks=2)
        def main():
            with tasker.subtask("Loading data"):
                pass
            for _ in tasker.track(range(1000), name="Processing states"):
                pass

        main()
        """,
    )
    result = run_script(script, child_env)
    assert result.returncode == 0, result.stderr
    (run,) = tasker.get_task_history()
    assert run.status == "COMPLETED" and run.script_filename == "job.py"
    subs = tasker.get_subtask_progress(run.run_id)
    assert [(s.status, s.items_complete) for s in subs] == [("COMPLETED", 0), ("COMPLETED", 1000)]


@pytest.mark.parametrize(("code", "status", "exit_code"), [(0, "COMPLETED", 0), (3, "FAILED", 3)])
def test_sys_exit(
    db: Backend, child_env: dict[str, str], tmp_path: Path, code: int, status: str, exit_code: int
) -> None:
    script = write_script(
        tmp_path,
        f"""
        import sys
        import tasker

        @tasker.task(stage="S", name="exits")
        def main():
            sys.exit({code})

        main()
        """,
    )
    result = run_script(script, child_env)
    assert result.returncode == code
    (run,) = tasker.get_task_history()
    assert (run.status, run.exit_code) == (status, exit_code)


def test_uncaught_exception_fails_the_run_and_the_process_as_usual(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    script = write_script(
        tmp_path,
        """
        import tasker

        @tasker.task(stage="S", name="crashes")
        def main():
            raise RuntimeError("the input is corrupt")

        main()
        """,
    )
    result = run_script(script, child_env)
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("RuntimeError: the input is corrupt")
    (run,) = tasker.get_task_history()
    assert (run.status, run.error_type, run.error_message) == (
        "FAILED",
        "RuntimeError",
        "the input is corrupt",
    )


LONG_LOOP = """
import sys, time
import tasker
{setup}

@tasker.task(stage="S", name="long")
def main():
    for i in tasker.track(range(100000), name="slow loop"):
        time.sleep(0.01)

main()
"""


def _start_long(script: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**env, "TASKER_FLUSH_INTERVAL": "0.1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def running() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the tracked script ended early: {proc.communicate()[1]}")
        runs = tasker.get_active_tasks()
        if not runs:
            return False
        subs = tasker.get_subtask_progress(runs[0].run_id)
        return bool(subs) and subs[0].items_complete > 5

    wait_for(running)
    return proc


def test_sigterm_cancels_the_run_and_the_process_dies_by_sigterm(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    proc = _start_long(write_script(tmp_path, LONG_LOOP.format(setup="")), child_env)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    (run,) = tasker.get_task_history()
    assert run.status == "CANCELLED" and run.end_time is not None
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert sub.status == "CANCELLED" and sub.items_complete > 5


SIGTERM_IN_START = """
import os, signal, sys
import tasker
from tasker.runtime import events, runs

original = runs.write
when = sys.argv[1]

def write(kind, run_id, args, **kwargs):
    # SIGTERM arrives in the middle of starting the nested run: just before its start is
    # queued, or just after (before the run is made current).
    nested = kind == events.START_RUN and args[0].task == "nested"
    if nested and when == "before":
        os.kill(os.getpid(), signal.SIGTERM)
    result = original(kind, run_id, args, **kwargs)
    if nested and when == "after":
        os.kill(os.getpid(), signal.SIGTERM)
    return result

runs.write = write

with tasker.task("S", "outer"):
    with tasker.task("S", "nested"):
        pass
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_sigterm_while_a_run_starts_leaves_no_run_started(
    db: Backend, child_env: dict[str, str], tmp_path: Path, when: str
) -> None:
    result = run_script(write_script(tmp_path, SIGTERM_IN_START), child_env, when)
    assert result.returncode == -signal.SIGTERM, result.stderr
    runs = {r.task_name: r for r in tasker.get_task_history()}
    assert runs["outer"].status == "CANCELLED"
    # Before its start was queued: the run never existed. After: it is ended with the rest.
    if when == "before":
        assert "nested" not in runs
    else:
        assert runs["nested"].status == "CANCELLED"
        assert runs["nested"].parent_run_id == runs["outer"].run_id


def test_sigterm_calls_the_programs_own_handler(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    setup = textwrap.dedent(
        """
        import signal
        def on_term(signum, frame):
            print("own handler ran", flush=True)
            raise SystemExit(143)
        signal.signal(signal.SIGTERM, on_term)
        """
    )
    proc = _start_long(write_script(tmp_path, LONG_LOOP.format(setup=setup)), child_env)
    proc.send_signal(signal.SIGTERM)
    out, _err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "own handler ran" in out
    (run,) = tasker.get_task_history()
    assert run.status == "CANCELLED"


def test_sigint_cancels_the_run_and_exits_as_without_tasker(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    control = write_script(
        tmp_path,
        "import time\nprint('ready', flush=True)\ntime.sleep(60)\n",
        name="control.py",
    )
    plain = subprocess.Popen(
        [sys.executable, str(control)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert plain.stdout is not None and plain.stdout.readline().strip() == "ready"
    plain.send_signal(signal.SIGINT)
    plain.communicate(timeout=60)

    proc = _start_long(write_script(tmp_path, LONG_LOOP.format(setup="")), child_env)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == plain.returncode
    assert "KeyboardInterrupt" in err
    (run,) = tasker.get_task_history()
    assert (run.status, run.error_type) == ("CANCELLED", "KeyboardInterrupt")


def test_an_explicit_run_left_open_is_ended_at_exit(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    script = write_script(
        tmp_path,
        """
        import tasker
        tasker.task_start("S", "forgotten")
        tasker.subtask_start("step")
        """,
    )
    assert run_script(script, child_env).returncode == 0
    (run,) = tasker.get_task_history()
    assert (run.status, run.error_type) == ("FAILED", "ExitedWithoutEnding")
    assert tasker.get_subtask_progress(run.run_id)[0].status == "FAILED"


WORKERS = """
import multiprocessing as mp
import sys
import tasker

def work(chunk):
    tasker.subtask_increment(len(chunk))          # the parent's current subtask
    for _ in tasker.track(chunk):                  # counts into the same subtask
        pass
    return sum(chunk)

@tasker.task(stage="PARALLEL", name=sys.argv[1])
def main():
    chunks = [list(range(i * 10, i * 10 + 10)) for i in range(8)]
    with tasker.subtask("fan out", items_total=160):
        ctx = mp.get_context(sys.argv[1])
        with ctx.Pool(3) as pool:
            total = sum(pool.map(work, chunks))
    print(total)

if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_workers_report_into_the_run(
    db: Backend, child_env: dict[str, str], tmp_path: Path, method: str
) -> None:
    script = write_script(tmp_path, WORKERS)
    result = run_script(script, child_env, method)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sum(range(80)))
    (run,) = tasker.get_task_history()
    assert run.status == "COMPLETED"
    # 80 by subtask_increment and 80 by track(), all into the parent's open subtask: forked
    # workers inherit it, spawned ones are told in TASKER_SUBTASK; none opens one of its own.
    subs = tasker.get_subtask_progress(run.run_id)
    assert [(s.subtask_number, s.subtask_name, s.status, s.items_complete) for s in subs] == [
        (1, "fan out", "COMPLETED", 160)
    ]


IDLE_WORKERS = """
import multiprocessing as mp
import signal
import sys
import tasker

def work(chunk):
    for _ in tasker.track(chunk):                  # counts into the parent's subtask
        pass
    # Idle again: SIGTERM must have its default action, or Pool.terminate() can leave this
    # worker blocked on the task queue's lock for good.
    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

@tasker.task(stage="PARALLEL", name="idle workers")
def main():
    with tasker.subtask("fan out", items_total=80):
        with mp.get_context("fork").Pool(2) as pool:
            print(pool.map(work, [list(range(10))] * 8))

if __name__ == "__main__":
    main()
"""


def test_a_pool_worker_gets_sigterm_back_once_its_loop_ends(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_script(write_script(tmp_path, IDLE_WORKERS), child_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str([True] * 8)
    (run,) = tasker.get_task_history()
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (run.status, sub.status, sub.items_complete) == ("COMPLETED", "COMPLETED", 80)


def test_a_child_script_reports_into_the_run_through_the_environment(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    child = write_script(
        tmp_path,
        """
        import tasker
        run = tasker.current_run()
        assert run is not None
        for _ in tasker.track(range(25), name="child loop"):
            pass
        print(run.run_id)
        """,
        name="child.py",
    )
    parent = write_script(
        tmp_path,
        f"""
        import subprocess, sys
        import tasker

        with tasker.task("S", "parent") as run:
            out = subprocess.run([sys.executable, {str(child)!r}], capture_output=True,
                                 text=True, check=True).stdout.strip()
            assert out == run.run_id, (out, run.run_id)
        """,
        name="parent.py",
    )
    result = run_script(parent, child_env)
    assert result.returncode == 0, result.stderr
    (run,) = tasker.get_task_history()
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.subtask_name, sub.items_complete, sub.status) == ("child loop", 25, "COMPLETED")


def test_progress_is_visible_to_another_process_while_the_loop_runs(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    proc = _start_long(write_script(tmp_path, LONG_LOOP.format(setup="")), child_env)
    try:
        (run,) = tasker.get_active_tasks()
        first = tasker.get_subtask_progress(run.run_id)[0].items_complete
        later = wait_for(
            lambda: (
                (n := tasker.get_subtask_progress(run.run_id)[0].items_complete) > first + 10 and n
            )
        )
        assert later > first
        assert tasker.get_run(run.run_id).status == "RUNNING"
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def _blocked(native_id: int) -> int:
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("SigBlk:")).split()[1], 16)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads Linux's /proc")
def test_tasker_threads_leave_signals_to_the_main_thread(db: Backend) -> None:
    # A signal taken by a background thread would not wake a main thread blocked in sleep or
    # waitpid: SIGTERM could then wait as long as the program sleeps.
    import threading

    from tasker.runtime.recorder import RECORDER

    with tasker.task("S", "T"):
        tasker.flush()
    writer = RECORDER.writer._thread
    assert writer is not None and writer.native_id is not None
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        assert _blocked(writer.native_id) & (1 << (sig - 1)), sig
        main = threading.main_thread().native_id
        assert main is not None and not _blocked(main) & (1 << (sig - 1)), sig
