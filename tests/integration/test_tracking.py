"""The automatic layer in-process: @task, task()/subtask() blocks, track(), skip(), status
rules, capture, threads and asyncio, on every backend."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import tasker
from tasker import Status
from tests.conftest import Backend


def only_run() -> tasker.RunRecord:
    (run,) = tasker.get_task_history()
    return run


def test_bare_decorator_records_a_completed_run(db: Backend) -> None:
    @tasker.task
    def build_database(n: int, *, scale: float = 1.0) -> float:
        """Builds it."""
        return n * scale

    assert build_database(4, scale=2.5) == 10.0
    run = only_run()
    assert run.status == "COMPLETED"
    assert run.stage_name == "DEFAULT"
    assert run.task_name.endswith("build_database")
    assert run.hostname == socket.gethostname() and run.process_id == os.getpid()
    assert run.end_time is not None and run.cpu_seconds is not None
    assert run.peak_memory_mb is not None and run.peak_memory_mb > 0
    assert run.script_filename == "test_tracking.py"
    assert build_database.__name__ == "build_database"
    assert build_database.__doc__ == "Builds it."
    assert (
        str(inspect.signature(build_database)) == "(n: 'int', *, scale: 'float' = 1.0) -> 'float'"
    )


def test_a_run_records_the_cpu_it_used_and_a_forked_child_its_own_pid(db: Backend) -> None:
    # CPU seconds and peak memory come from one getrusage() at the run's end, against the
    # same clock read at its start; the PID from a value read once per process and again
    # in every forked child (tasker.runtime.pid).
    @tasker.task(name="spin")
    def spin() -> None:
        start = time.thread_time()
        while time.thread_time() - start < 0.3:  # bounded: 0.3 s of this thread's CPU
            pass

    @tasker.task(name="idle")
    def idle() -> None:
        pass

    spin()
    idle()
    pid = os.fork()
    if pid == 0:  # the child: one run, then out without the parent's atexit
        code = 1
        try:
            idle()
            code = 0 if tasker.flush(timeout=30) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    runs = {(r.task_name, r.process_id): r for r in tasker.get_task_history()}
    assert set(runs) == {("spin", os.getpid()), ("idle", os.getpid()), ("idle", pid)}
    spun = runs["spin", os.getpid()].cpu_seconds
    assert spun is not None and spun >= 0.29, spun
    assert all(r.peak_memory_mb is not None and r.peak_memory_mb > 0 for r in runs.values())


def test_decorator_with_arguments_and_subtasks(db: Backend) -> None:
    @tasker.task(stage="STATIC", name="Build Database", total_subtasks=2, version="1.2")
    def build() -> None:
        with tasker.subtask("Loading data", items_total=3) as st:
            for _ in range(3):
                st.advance()
        assert tasker.get_run().overall_percent_complete == pytest.approx(50.0)
        for _ in tasker.track(range(5), name="Processing"):
            pass

    build()
    run = only_run()
    assert (run.stage_name, run.task_name, run.version) == ("STATIC", "Build Database", "1.2")
    assert run.total_subtasks == 2 and run.overall_percent_complete == 100.0
    subs = tasker.get_subtask_progress(run.run_id)
    assert [
        (s.subtask_number, s.subtask_name, s.status, s.items_complete, s.items_total) for s in subs
    ] == [
        (1, "Loading data", "COMPLETED", 3, 3),
        (2, "Processing", "COMPLETED", 5, 5),
    ]


def test_methods_are_tracked_with_their_instance(db: Backend) -> None:
    class Pipeline:
        def __init__(self) -> None:
            self.factor = 3

        @tasker.task(stage="S")
        def step(self, x: int) -> int:
            return x * self.factor

    assert Pipeline().step(2) == 6
    assert only_run().task_name.endswith("Pipeline.step")


def test_exception_fails_the_run_and_propagates_unchanged(db: Backend) -> None:
    error = ValueError("bad row 17")

    @tasker.task(stage="S", name="T")
    def work() -> None:
        with tasker.subtask("parse"):
            raise error

    with pytest.raises(ValueError, match="bad row 17") as info:
        work()
    assert info.value is error
    run = only_run()
    assert run.status == "FAILED"
    assert (run.error_type, run.error_message) == ("ValueError", "bad row 17")
    assert run.error_detail is not None and "raise error" in run.error_detail
    assert "Traceback (most recent call last)" in run.error_detail
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert sub.status == "FAILED" and sub.error_message == "bad row 17"


@pytest.mark.parametrize(
    ("exc", "status", "exit_code"),
    [
        (KeyboardInterrupt(), "CANCELLED", None),
        (SystemExit(0), "COMPLETED", 0),
        (SystemExit(None), "COMPLETED", 0),
        (SystemExit(3), "FAILED", 3),
        (SystemExit("fatal: no input"), "FAILED", 1),
    ],
)
def test_status_rules_for_base_exceptions(
    db: Backend, exc: BaseException, status: str, exit_code: int | None
) -> None:
    @tasker.task(stage="S", name="T")
    def work() -> None:
        with tasker.subtask("step"):
            raise exc

    with pytest.raises(type(exc)) as info:
        work()
    assert info.value is exc
    run = only_run()
    assert run.status == status
    assert run.exit_code == exit_code
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert sub.status == status


def test_skip_ends_the_run_skipped(db: Backend) -> None:
    @tasker.task(stage="S", name="T")
    def work() -> int:
        try:
            tasker.skip("no new data")
        except Exception:
            pytest.fail("skip() was caught by except Exception")
        return 1

    assert work() is None
    run = only_run()
    assert run.status == "SKIPPED" and run.end_time is not None
    assert run.overall_progress_message == "no new data"


def test_skip_inside_a_subtask_skips_only_the_subtask(db: Backend) -> None:
    with tasker.task("S", "T") as run:
        with tasker.subtask("optional step"):
            tasker.skip("not needed today")
        with tasker.subtask("main step") as st:
            st.advance(2)
    record = tasker.get_run(run.run_id)
    assert record.status == "COMPLETED"
    subs = tasker.get_subtask_progress(run.run_id)
    assert [(s.subtask_name, s.status) for s in subs] == [
        ("optional step", "SKIPPED"),
        ("main step", "COMPLETED"),
    ]
    assert subs[0].progress_message == "not needed today"


def test_nested_tasks_record_their_parent(db: Backend) -> None:
    @tasker.task(stage="S", name="inner")
    def inner() -> str | None:
        run = tasker.current_run()
        return run.run_id if run else None

    with tasker.task("S", "outer") as outer:
        inner_id = inner()
        current = tasker.current_run()
        assert current is not None and current.run_id == outer.run_id
    assert inner_id is not None
    assert tasker.get_run(inner_id).parent_run_id == outer.run_id
    assert tasker.current_run() is None


def test_with_block_handle_update_fail_skip(db: Backend) -> None:
    with tasker.task("S", "updates") as run:
        run.update(percent=40, message="reading")
        tasker.flush()
        record = tasker.get_run(run.run_id)
        assert (record.status, record.overall_percent_complete) == ("RUNNING", 40.0)
        assert record.overall_progress_message == "reading"
    with tasker.task("S", "fails") as failing:
        failing.fail("upstream file missing")
    with tasker.task("S", "skips") as skipping:
        skipping.skip("holiday")
        pytest.fail("skip() returned")
    assert tasker.get_run(run.run_id).status == "COMPLETED"
    failed = tasker.get_run(failing.run_id)
    assert (failed.status, failed.error_message) == ("FAILED", "upstream file missing")
    assert tasker.get_run(skipping.run_id).status == "SKIPPED"


def test_subtask_decorator_and_numbering(db: Backend) -> None:
    @tasker.subtask("load one file")
    def load(name: str) -> str:
        return name.upper()

    with tasker.task("S", "T") as run:
        assert [load(n) for n in ("a", "b", "c")] == ["A", "B", "C"]
    subs = tasker.get_subtask_progress(run.run_id)
    assert [(s.subtask_number, s.status) for s in subs] == [
        (1, "COMPLETED"),
        (2, "COMPLETED"),
        (3, "COMPLETED"),
    ]


def test_outside_any_run_subtask_and_track_do_nothing(db: Backend) -> None:
    items = [1, 2, 3]
    with tasker.subtask("nothing") as st:
        st.advance(5)
        st.update(percent=10)
        assert st.number is None
    tracked = tasker.track(items)
    assert list(tracked) == items
    assert tasker.get_task_history() == []
    assert tasker.current_run() is None
    tasker.skip("nothing to skip")  # a no-op, not an error


def test_track_is_lazy_and_passes_items_unchanged(db: Backend) -> None:
    def endless() -> Iterator[dict[str, int]]:
        i = 0
        while True:
            yield {"i": i}
            i += 1

    seen = []
    with tasker.task("S", "T") as run:
        for item in tasker.track(endless(), name="stream"):
            seen.append(item)
            if item["i"] == 9:
                break
    assert seen == [{"i": i} for i in range(10)]
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert sub.status == "COMPLETED"
    assert sub.items_total is None and sub.items_complete == 9
    assert sub.progress_message == "stopped after 9 items"


def test_track_totals(db: Backend) -> None:
    class Hinted:
        def __iter__(self) -> Iterator[int]:
            return iter(range(4))

        def __length_hint__(self) -> int:
            return 4

    with tasker.task("S", "T") as run:
        for _ in tasker.track([1, 2, 3], name="len"):
            pass
        for _ in tasker.track(Hinted(), name="hint"):
            pass
        for _ in tasker.track((x for x in range(6)), total=6, name="given"):
            pass
        for _ in tasker.track((x for x in range(2)), name="unknown"):
            pass
    subs = tasker.get_subtask_progress(run.run_id)
    assert [(s.subtask_name, s.items_total, s.items_complete, s.status) for s in subs] == [
        ("len", 3, 3, "COMPLETED"),
        ("hint", 4, 4, "COMPLETED"),
        ("given", 6, 6, "COMPLETED"),
        ("unknown", None, 2, "COMPLETED"),
    ]
    assert all(s.percent_complete == 100.0 for s in subs)


def test_track_break_completes_with_the_true_count(db: Backend) -> None:
    with tasker.task("S", "T") as run:
        for x in tasker.track(range(10), name="loop"):
            if x == 6:
                break
        after = "went on"
    assert after == "went on"
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.status, sub.items_complete, sub.items_total) == ("COMPLETED", 6, 10)
    assert sub.percent_complete == pytest.approx(60.0)
    assert sub.progress_message == "stopped after 6 of 10 items"
    assert tasker.get_run(run.run_id).status == "COMPLETED"


def test_track_exception_out_of_the_body_fails_loop_and_run(db: Backend) -> None:
    @tasker.task(stage="S", name="T")
    def work() -> None:
        for x in tasker.track(range(10), name="loop"):
            if x == 3:
                raise RuntimeError("item 3 is corrupt")

    with pytest.raises(RuntimeError):
        work()
    run = only_run()
    assert run.status == "FAILED"
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.status, sub.items_complete) == ("FAILED", 3)
    assert sub.error_message == "item 3 is corrupt"


def test_track_exception_raised_after_a_break_does_not_fail_the_loop(db: Backend) -> None:
    @tasker.task(stage="S", name="T")
    def work() -> None:
        for x in tasker.track(range(10), name="loop"):
            if x == 2:
                break
        raise RuntimeError("later failure")

    with pytest.raises(RuntimeError):
        work()
    run = only_run()
    assert run.status == "FAILED"
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.status, sub.items_complete) == ("COMPLETED", 2)


def test_track_exception_from_the_iterable_fails_the_loop(db: Backend) -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk read error")

    with tasker.task("S", "T") as run:
        try:
            for _ in tasker.track(broken(), name="read"):
                pass
        except OSError:
            pass
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.status, sub.items_complete) == ("FAILED", 1)
    assert sub.error_message == "OSError: disk read error"
    assert tasker.get_run(run.run_id).status == "COMPLETED"


def test_track_inside_a_subtask_counts_that_subtask(db: Backend) -> None:
    with tasker.task("S", "T") as run, tasker.subtask("states") as st:
        for _ in tasker.track(range(56)):
            pass
        st.advance(4)
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.subtask_name, sub.items_complete, sub.items_total) == ("states", 60, 56)
    assert sub.status == "COMPLETED"


def test_track_progress_reaches_the_database_while_the_loop_runs(db: Backend) -> None:
    db.configure(flush_interval=0.2)
    release = threading.Event()
    seen: list[int | None] = []

    def slow() -> Iterator[int]:
        for i in range(100):
            if i == 40:
                release.wait(60)
            yield i

    def watch(run_id: str) -> None:
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            subs = tasker.get_subtask_progress(run_id)
            if subs and subs[0].items_complete >= 40:
                seen.append(subs[0].items_complete)
                break
            time.sleep(0.05)
        release.set()

    with tasker.task("S", "T") as run:
        watcher = threading.Thread(target=watch, args=(run.run_id,))
        watcher.start()
        for _ in tasker.track(slow(), name="slow"):
            pass
        watcher.join()
    assert seen == [40]


def test_generator_task_spans_its_iteration(db: Backend) -> None:
    @tasker.task(stage="S", name="produce")
    def produce(n: int) -> Iterator[int]:
        for i in tasker.track(range(n), name="items"):
            yield i * 10

    outside: list[object] = []
    results = []
    for value in produce(3):
        outside.append(tasker.current_run())
        results.append(value)
    assert results == [0, 10, 20]
    assert outside == [None, None, None]  # the consumer's code is not inside the run
    run = only_run()
    assert run.status == "COMPLETED"
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.items_complete, sub.status) == (3, "COMPLETED")


def test_generator_task_failure_and_early_stop(db: Backend) -> None:
    @tasker.task(stage="S", name="bad")
    def bad() -> Iterator[int]:
        yield 1
        raise LookupError("gone")

    @tasker.task(stage="S", name="stopped")
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    with pytest.raises(LookupError):
        list(bad())
    gen = endless()
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    runs = {r.task_name: r for r in tasker.get_task_history()}
    assert runs["bad"].status == "FAILED" and runs["bad"].error_type == "LookupError"
    assert runs["stopped"].status == "COMPLETED"
    assert runs["stopped"].overall_progress_message == "stopped early by its consumer"


def test_async_function_and_blocks(db: Backend) -> None:
    async def numbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    @tasker.task(stage="ASYNC", name="fetch")
    async def fetch(n: int) -> int:
        total = 0
        async with tasker.subtask("download", items_total=n) as st:
            for _ in range(n):
                await asyncio.sleep(0)
                st.advance()
        async for i in tasker.track(numbers(n), name="parse"):
            total += i
        return total

    async def main() -> tuple[int, str]:
        result = await fetch(5)
        async with tasker.task("ASYNC", "block") as run:
            await asyncio.sleep(0)
        return result, run.run_id

    result, block_id = asyncio.run(main())
    assert result == 10
    runs = {r.task_name: r for r in tasker.get_task_history()}
    assert runs["fetch"].status == "COMPLETED" and runs["block"].status == "COMPLETED"
    subs = tasker.get_subtask_progress(runs["fetch"].run_id)
    assert [(s.subtask_name, s.items_complete, s.status) for s in subs] == [
        ("download", 5, "COMPLETED"),
        ("parse", 5, "COMPLETED"),
    ]
    assert tasker.get_run(block_id).status == "COMPLETED"


def test_async_generator_task(db: Backend) -> None:
    @tasker.task(stage="ASYNC", name="stream")
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def main() -> list[int]:
        return [i async for i in stream(4)]

    assert asyncio.run(main()) == [0, 1, 2, 3]
    assert only_run().status == "COMPLETED"


def test_each_asyncio_task_has_its_own_run(db: Backend) -> None:
    @tasker.task(stage="ASYNC")
    async def job(i: int) -> str:
        await asyncio.sleep(0.01 * (3 - i))
        run = tasker.current_run()
        assert run is not None
        return run.run_id

    async def main() -> list[str]:
        return await asyncio.gather(*(job(i) for i in range(3)))

    ids = asyncio.run(main())
    assert len(set(ids)) == 3
    assert {r.run_id for r in tasker.get_task_history()} == set(ids)


def test_each_thread_has_its_own_run(db: Backend) -> None:
    ids: dict[int, str] = {}

    @tasker.task(stage="THREADS")
    def job(i: int) -> None:
        for _ in tasker.track(range(50), name=f"items {i}"):
            pass
        run = tasker.current_run()
        assert run is not None
        ids[i] = run.run_id

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = tasker.get_task_history()
    assert len(history) == 4 and {r.run_id for r in history} == set(ids.values())
    for run in history:
        (sub,) = tasker.get_subtask_progress(run.run_id)
        assert sub.items_complete == 50


def test_track_in_the_parent_over_a_pools_results(db: Backend) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with tasker.task("S", "pool") as run, ThreadPoolExecutor(4) as pool:
        results = list(tasker.track(pool.map(lambda x: x * x, range(20)), total=20, name="map"))
    assert results == [x * x for x in range(20)]
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.items_complete, sub.items_total) == (20, 20)


def test_capture_version_environment_and_log_file(db: Backend, tmp_path: Path) -> None:
    db.configure(version="3.1.4", environment="staging")
    handler = logging.FileHandler(tmp_path / "pipeline.log")
    logging.getLogger("some.pipeline").addHandler(handler)
    try:
        with tasker.task("S", "T") as run:
            tasker.flush()  # the log file is looked up when the run's start is written
    finally:
        logging.getLogger("some.pipeline").removeHandler(handler)
        handler.close()
    record = tasker.get_run(run.run_id)
    assert (record.version, record.environment) == ("3.1.4", "staging")
    assert (record.log_path, record.log_filename) == (str(tmp_path), "pipeline.log")


def test_git_commit_branch_and_dirty(db: Backend, tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "feature-x"], check=True)
    script = repo / "job.py"
    script.write_text("def job():\n    return 1\n", encoding="utf-8")
    subprocess.run([*git, "add", "job.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    from tasker.runtime.capture.git import _git_info_for_path, _info_for, git_info

    info = git_info(script)
    assert (info.commit, info.branch, info.dirty) == (head, "feature-x", False)
    script.write_text("def job():\n    return 2  # edited\n", encoding="utf-8")
    _info_for.cache_clear()
    _git_info_for_path.cache_clear()
    assert git_info(script).dirty is True
    assert git_info(tmp_path / "elsewhere").commit is None

    namespace: dict[str, object] = {}
    exec(compile(script.read_text(), str(script), "exec"), namespace)
    tracked = tasker.task(stage="S", name="git")(namespace["job"])
    tracked()
    run = only_run()
    assert (run.git_commit, run.git_branch, run.git_dirty) == (head, "feature-x", True)
    assert (run.script_path, run.script_filename) == (str(repo), "job.py")


def test_tracking_failures_never_reach_the_tracked_code(tmp_path: Path) -> None:
    tasker.configure(url="postgresql://nobody@127.0.0.1:1/nowhere", console="false")

    @tasker.task(stage="S", name="T")
    def work(x: int) -> int:
        with tasker.subtask("step") as st:
            st.advance()
        return sum(tasker.track(range(x)))

    assert work(4) == 6
    with pytest.raises(ZeroDivisionError):
        tasker.task(stage="S", name="T")(lambda: 1 / 0)()


def test_strict_mode_raises_tracking_errors(tmp_path: Path) -> None:
    tasker.configure(path=str(tmp_path / "x.db"), console="false", strict=True)
    with pytest.raises(tasker.ValidationError), tasker.task("S", "T") as run:
        run.update(percent=500)


def test_status_enum_values_are_the_seeds() -> None:
    assert [s.value for s in Status] == [
        "NOT_STARTED",
        "STARTED",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "SKIPPED",
        "CANCELLED",
    ]


def test_the_writer_keeps_everything_while_the_database_is_missing(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from tasker.runtime import events
    from tasker.runtime.recorder import RECORDER
    from tasker.runtime.writer import Writer
    from tests.helpers import new_run

    tasker.configure(path=str(tmp_path / "w.db"), console="false", flush_interval=1000)
    store = RECORDER.store
    attempts: list[int] = []

    def store_when_back() -> object:
        attempts.append(1)
        if len(attempts) == 1:
            raise tasker.DatabaseError("the database is not there yet", unavailable=True)
        return store

    writer = Writer(store_when_back, lambda: RECORDER.config)  # type: ignore[arg-type]
    when = datetime.now(timezone.utc)
    new = new_run("00000000-0000-4000-8000-00000000000a", "S", "T", start_time=when)
    writer.submit((events.START_RUN, new.run_id, (new,)))
    writer.submit((events.END_RUN, new.run_id, (Status.COMPLETED, {}, when, None)))
    assert not writer.flush(10)  # the database is away: nothing written, nothing dropped
    assert tasker.get_task_history() == [] and writer.pending and writer.failing
    assert writer.flush(10)
    (run,) = tasker.get_task_history()
    assert (run.run_id, run.status) == (new.run_id, "COMPLETED")
    assert not writer.pending
