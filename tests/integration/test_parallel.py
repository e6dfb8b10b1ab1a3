"""Work that leaves the process, with the real engines: every run recorded, under the run
that sent it, and every subtask holding exactly its own items.

The engine scenarios are the examples in examples/parallel/: each makes one worker pool
(before the runs) and reuses it for two runs, "Nightly batch 1" and "Nightly batch 2". Each
batch sends ten calls of the decorated ``score`` (item 7 fails) and four chunks of 25 rows
to a plain function bound with ``tasker.bind`` whose ``track()`` counts into the batch's
"Counting rows" subtask.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tasker
from tasker.runtime import context
from tests.conftest import ROOT, Backend
from tests.helpers import need, run_script, write_script

EXAMPLES = ROOT / "examples" / "parallel"


def _run_example(name: str, env: dict[str, str], *args: str) -> list[str]:
    result = run_script(EXAMPLES / name, env, *args)
    assert result.returncode == 0, result.stderr
    batches: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return batches


def _check_batches(batches: list[str], *, in_processes: bool, pool_size: int | None = None) -> None:
    history = tasker.get_task_history(limit=1000)
    # Nothing else was recorded: no run was lost, doubled or filed under another run.
    assert len(history) == 22
    assert sorted(r.task_name for r in history if r.parent_run_id is None) == [
        "Nightly batch 1",
        "Nightly batch 2",
    ]
    worker_pids: set[int] = set()
    for n, batch_id in enumerate(batches, start=1):
        batch = tasker.get_run(batch_id)
        assert (batch.task_name, batch.status) == (f"Nightly batch {n}", "COMPLETED")
        children = [r for r in history if r.parent_run_id == batch_id]
        assert len(children) == 10 and len({r.run_id for r in children}) == 10
        assert {r.task_name for r in children} == {"Score item"}
        failed = [r for r in children if r.status == "FAILED"]
        assert [(r.error_type, r.error_message) for r in failed] == [("ValueError", "bad item 7")]
        # The worker's traceback, down to the line that raised (its source, where the worker
        # has the file; a function sent by value has none).
        detail = failed[0].error_detail or ""
        assert re.search(r"in score\n(.*\n)*ValueError: bad item 7\n$", detail)
        assert sorted(r.status for r in children).count("COMPLETED") == 9
        pids = {r.process_id for r in children}
        if in_processes:
            assert batch.process_id not in pids
        else:
            assert pids == {batch.process_id}
        worker_pids |= pids
        subs = tasker.get_subtask_progress(batch_id)
        assert [
            (s.subtask_number, s.subtask_name, s.status, s.items_complete, s.items_total)
            for s in subs
        ] == [
            (1, "Scoring", "COMPLETED", 10, 10),
            (2, "Counting rows", "COMPLETED", 100, 100),
        ]
        for child in children:
            assert tasker.get_subtask_progress(child.run_id) == []
    if in_processes:
        # Worker processes of one pool that served both runs: never more than the pool holds
        # (how the pool spreads the calls among them is its own business: under load one
        # worker may take them all).
        assert worker_pids and batch.process_id not in worker_pids
        if pool_size is not None:
            assert len(worker_pids) <= pool_size, worker_pids


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_pool_reused_by_two_runs(
    db: Backend, child_env: dict[str, str], method: str
) -> None:
    batches = _run_example("process_pool.py", child_env, method)
    _check_batches(batches, in_processes=True, pool_size=3)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_pool_executor_made_before_the_runs(
    db: Backend, child_env: dict[str, str], method: str
) -> None:
    # fork: the workers start at the first submit, inside the first run, and inherit it.
    batches = _run_example("executor.py", child_env, method)
    _check_batches(batches, in_processes=True, pool_size=3)


def test_thread_pool_executor(db: Backend, child_env: dict[str, str]) -> None:
    _check_batches(_run_example("threads.py", child_env), in_processes=False)


def test_joblib_loky_reused_by_two_runs(db: Backend, child_env: dict[str, str]) -> None:
    need("joblib")
    _check_batches(_run_example("joblib_loky.py", child_env), in_processes=True, pool_size=2)


def test_dask_local_cluster_reused_by_two_runs(db: Backend, child_env: dict[str, str]) -> None:
    need("distributed")
    _check_batches(_run_example("dask_cluster.py", child_env), in_processes=True, pool_size=2)


def test_ray_workers(db: Backend, child_env: dict[str, str]) -> None:
    if db.name == "mysql":
        pytest.skip("engine-specific: SQLite and PostgreSQL cover Ray (one Ray start each)")
    need("ray")
    _check_batches(_run_example("ray_cluster.py", child_env), in_processes=True)


RAY_DIRECT = """
import json, warnings
import ray
import tasker

@tasker.task(stage="S", name="score")
def score(i):
    return i

score_remote = ray.remote(score)  # not tasker.integrations.ray.remote

if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for n in (1, 2):
                with tasker.task("S", f"batch {n}"):
                    calls = [score_remote.remote(i) for i in range(4)]
                    assert ray.get(calls, timeout=120) == [0, 1, 2, 3]
    finally:
        ray.shutdown()
    print(json.dumps([str(w.message) for w in caught if w.category is tasker.TaskerWarning]))
"""


def test_a_plain_ray_remote_of_a_tracked_function_warns_and_loses_no_run(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    # Ray pickles a remote function once and reuses the copy for every call: it cannot carry
    # each call's run. Its runs are then top-level (not filed under the first caller's run
    # long after it ended), none is lost at ray.shutdown(), and the user is told once.
    if db.name != "sqlite":
        pytest.skip("engine-specific: one Ray start covers it")
    need("ray")
    result = run_script(write_script(tmp_path, RAY_DIRECT), child_env)
    assert result.returncode == 0, result.stderr
    (warning,) = json.loads(result.stdout.strip().splitlines()[-1])
    assert "use tasker.integrations.ray.remote(score) instead" in warning
    history = tasker.get_task_history()
    assert (
        sorted((r.task_name, r.parent_run_id, r.status) for r in history)
        == [
            ("batch 1", None, "COMPLETED"),
            ("batch 2", None, "COMPLETED"),
        ]
        + [("score", None, "COMPLETED")] * 8
    )


# ---------------------------------------------------------------------------- fork pools


FORK_POOL = """
import json, multiprocessing as mp
import tasker

@tasker.task(stage="S", name="child")
def child(i):
    return i

if __name__ == "__main__":
    pool = mp.get_context("fork").Pool(4)  # made before the run: workers know no run
    with tasker.task("S", "parent") as run:
        assert pool.map(child, range(200)) == list(range(200))
    pool.close()
    pool.join()
    print(json.dumps(run.run_id))
"""


def test_a_fork_pool_records_every_run_with_its_own_id(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_script(write_script(tmp_path, FORK_POOL), child_env)
    assert result.returncode == 0, result.stderr
    parent = json.loads(result.stdout)
    children = [r for r in tasker.get_task_history(limit=1000) if r.task_name == "child"]
    assert len(children) == 200 and len({r.run_id for r in children}) == 200
    assert {r.parent_run_id for r in children} == {parent}
    assert {r.status for r in children} == {"COMPLETED"}
    assert {r.error_type for r in children} == {None}
    assert tasker.get_run(parent).process_id not in {r.process_id for r in children}


FORKED_WORKERS = """
import json, os, sys, multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
import tasker

@tasker.task(stage="S", name="score")
def score(i):
    return os.getpid()

def batch(n, pool_map):
    with tasker.task("S", f"batch {n}") as run:
        pids = pool_map(score, range(10))
    return [run.run_id, pids]

if __name__ == "__main__":
    kind, fork = sys.argv[1], mp.get_context("fork")
    out = []
    if kind == "executor":
        # Made before the runs; its workers fork at the first submit, inside batch 1.
        with ProcessPoolExecutor(3, mp_context=fork) as executor:
            out = [batch(n, lambda f, xs: list(executor.map(f, xs))) for n in (1, 2, 3)]
    elif kind == "inside":
        # Made inside batch 1, whose run its workers inherit, then reused by two more runs.
        pool = None
        def in_pool(f, xs):
            global pool
            pool = pool or fork.Pool(3)
            return pool.map(f, xs)
        out = [batch(n, in_pool) for n in (1, 2, 3)]
        pool.close()
        pool.join()
    else:
        # New workers forked in the middle of each batch.
        with fork.Pool(2, maxtasksperchild=2) as pool:
            out = [batch(n, lambda f, xs: pool.map(f, xs, chunksize=1)) for n in (1, 2, 3)]
    print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["executor", "inside", "maxtasks"])
def test_forked_workers_report_each_call_into_the_run_that_sent_it(
    db: Backend, child_env: dict[str, str], tmp_path: Path, kind: str
) -> None:
    # A forked worker inherits the run current at the fork and keeps it for life; each call
    # must still report into the run that sent it, whichever runs came between.
    result = run_script(write_script(tmp_path, FORKED_WORKERS), child_env, kind)
    assert result.returncode == 0, result.stderr
    batches = json.loads(result.stdout)
    history = tasker.get_task_history(limit=1000)
    assert len(history) == 33
    assert sorted(r.task_name for r in history if r.parent_run_id is None) == [
        "batch 1",
        "batch 2",
        "batch 3",
    ]
    for batch_id, pids in batches:
        batch = tasker.get_run(batch_id)
        children = [r for r in history if r.parent_run_id == batch_id]
        assert len({r.run_id for r in children}) == 10
        assert {(r.task_name, r.status) for r in children} == {("score", "COMPLETED")}
        # Each call's run was recorded by the worker that made it, a child of the program.
        assert sorted(r.process_id for r in children) == sorted(pids)
        assert {tasker.get_run(r.run_id).parent_pid for r in children} == {batch.process_id}


THREADED_PIPELINES = """
import json, threading
from concurrent.futures import ThreadPoolExecutor
import tasker

@tasker.task(stage="S", name="child")
def child(i):
    return tasker.current_run().run_id

def pipeline(name, both_inside, out):
    with tasker.task("S", name) as run:
        both_inside.wait(30)  # the two runs overlap from here on
        with tasker.subtask("work", items_total=8):
            with ThreadPoolExecutor(2) as pool:
                seen = list(pool.map(child, range(4)))
                list(pool.map(lambda _: tasker.subtask_increment(2), range(4)))
        helper = threading.Thread(target=lambda: out.append((name, tasker.current_run().run_id)))
        helper.start()
        helper.join(30)
        both_inside.wait(30)
    out.append((run.run_id, seen))

if __name__ == "__main__":
    out, both_inside = [], threading.Barrier(2)
    threads = [
        threading.Thread(target=pipeline, args=(name, both_inside, out)) for name in "AB"
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    print(json.dumps(out))
"""


def test_two_pipelines_in_threads_never_report_into_each_other(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_script(write_script(tmp_path, THREADED_PIPELINES), child_env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    out = json.loads(result.stdout)
    helpers = {name: run_id for name, run_id in out if name in ("A", "B")}
    ends = [(run_id, seen) for run_id, seen in out if run_id not in ("A", "B")]
    history = tasker.get_task_history(limit=100)
    assert len(history) == 10
    pipelines = {r.task_name: r for r in history if r.task_name in ("A", "B")}
    assert {r.parent_run_id for r in pipelines.values()} == {None}
    # A plain thread started inside a run works for that run.
    assert helpers == {name: pipelines[name].run_id for name in "AB"}
    for run_id, seen in ends:
        children = [r for r in history if r.parent_run_id == run_id]
        # Each pool call nested under the run that submitted it, and saw its own run.
        assert len(children) == 4 and sorted(seen) == sorted(r.run_id for r in children)
        (sub,) = tasker.get_subtask_progress(run_id)
        assert (sub.subtask_name, sub.items_complete, sub.status) == ("work", 8, "COMPLETED")


OS_EXIT = """
import json, os, sys, multiprocessing as mp
import tasker

@tasker.task(stage="S", name="vanishing worker")
def work():
    for _ in tasker.track(range(50), name="rows"):
        pass

def worker():
    work()
    os._exit(0)  # as Celery's recycled prefork children and Ray workers end: no atexit

if __name__ == "__main__":
    with tasker.task("S", "parent") as run:
        p = mp.get_context(sys.argv[1]).Process(target=tasker.bind(worker))
        p.start()
        p.join(60)
    print(json.dumps(run.run_id))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_run_that_ended_in_a_worker_survives_os_exit(
    db: Backend, child_env: dict[str, str], tmp_path: Path, method: str
) -> None:
    result = run_script(write_script(tmp_path, OS_EXIT), child_env, method)
    assert result.returncode == 0, result.stderr
    parent = json.loads(result.stdout)
    (child,) = [r for r in tasker.get_task_history() if r.task_name == "vanishing worker"]
    assert (child.status, child.parent_run_id) == ("COMPLETED", parent)
    (sub,) = tasker.get_subtask_progress(child.run_id)
    assert (sub.subtask_name, sub.status, sub.items_complete) == ("rows", "COMPLETED", 50)


IDLE_WORKER = """
import json, multiprocessing as mp
import tasker

@tasker.task(stage="S", name="call")
def call(i):
    return i

def sigterm_caught():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << 14))  # signal 15

def busy(i):
    with tasker.task("S", "busy"):
        return sigterm_caught()

if __name__ == "__main__":
    with mp.get_context("fork").Pool(1) as pool:
        with tasker.task("S", "parent"):
            pool.map(call, range(3))
            during = pool.apply(busy, (0,))
        idle = pool.apply(sigterm_caught)
    print(json.dumps([during, idle]))
"""


def test_an_idle_pool_worker_leaves_sigterm_to_its_default_action(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    # Pool.terminate() sends SIGTERM while holding the task queue's lock; a Python-level
    # handler in a worker about to wait for that lock can be missed, leaving it (and the
    # program joining it) blocked forever. Between calls, a worker has none.
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the signal mask from /proc")
    result = run_script(write_script(tmp_path, IDLE_WORKER), child_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [True, False]
    assert len([r for r in tasker.get_task_history() if r.task_name == "call"]) == 3


OWN_SUBTASKS = """
import json, multiprocessing as mp, sys
import tasker

def worker(items):
    with tasker.subtask("the worker's own"):  # a subtask of the run it was handed
        for _ in tasker.track(range(items)):
            pass

if __name__ == "__main__":
    with tasker.task("S", "owner") as run:
        with tasker.subtask("before"):
            pass
        p = mp.get_context(sys.argv[1]).Process(target=tasker.bind(worker), args=(5,))
        p.start()
        p.join(60)
        for _ in tasker.track(range(7), name="after"):  # opened after the worker's
            pass
    print(json.dumps(run.run_id))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_subtasks_opened_by_the_owner_and_a_worker_never_share_a_number(
    db: Backend, child_env: dict[str, str], tmp_path: Path, method: str
) -> None:
    result = run_script(write_script(tmp_path, OWN_SUBTASKS), child_env, method)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)
    subs = tasker.get_subtask_progress(run_id)
    assert [(s.subtask_number, s.subtask_name, s.status, s.items_complete) for s in subs] == [
        (1, "before", "COMPLETED", 0),
        (2, "the worker's own", "COMPLETED", 5),
        (3, "after", "COMPLETED", 7),
    ]


# ---------------------------------------------------------------------------- by value


SENDER = """
import sys
import cloudpickle
import tasker

@tasker.task(stage="S", name="sent by value")
def job(n):
    for _ in tasker.track(range(n)):
        pass
    return n * 2

with tasker.task("S", "sender") as run:
    with tasker.subtask("fan out"):
        payload = cloudpickle.dumps(job)
with open(sys.argv[1], "wb") as fh:
    fh.write(payload)
print(run.run_id)
"""

RECEIVER = """
import pickle, sys
import tasker

with open(sys.argv[1], "rb") as fh:
    job = pickle.load(fh)  # defined nowhere here: sent by value, decorated anew
print(job(7))
"""


def test_a_main_function_sent_by_value_keeps_its_decorator(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    need("cloudpickle")
    payload = tmp_path / "payload.pkl"
    sent = run_script(write_script(tmp_path, SENDER, "sender.py"), child_env, str(payload))
    assert sent.returncode == 0, sent.stderr
    sender = sent.stdout.strip()
    received = run_script(write_script(tmp_path, RECEIVER, "receiver.py"), child_env, str(payload))
    assert (received.returncode, received.stdout.strip()) == (0, "14"), received.stderr
    (run,) = [r for r in tasker.get_task_history() if r.task_name == "sent by value"]
    assert (run.status, run.parent_run_id) == ("COMPLETED", sender)
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.status, sub.items_complete) == ("COMPLETED", 7)


# ---------------------------------------------------------------------------- attach()


ATTACHED = """
import sys
import tasker

run_id, subtask = sys.argv[1], int(sys.argv[2])

@tasker.task(stage="S", name="handed over")
def step():
    return "done"

with tasker.attach(run_id, subtask=subtask):
    for _ in tasker.track(range(30)):
        pass
    tasker.subtask_increment(5)
    step()
"""


def test_attach_hands_a_run_over_to_another_process(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    run_id = tasker.task_start("S", "queue consumer parent")
    tasker.subtask_start("first", items_total=10)
    second = tasker.subtask_start("received", items_total=35)
    script = write_script(tmp_path, ATTACHED)
    result = run_script(script, child_env, run_id, str(second))
    assert result.returncode == 0, result.stderr
    tasker.task_complete()
    subs = tasker.get_subtask_progress(run_id)
    assert [(s.subtask_name, s.items_complete) for s in subs] == [("first", 0), ("received", 35)]
    (child,) = [r for r in tasker.get_task_history() if r.task_name == "handed over"]
    assert (child.parent_run_id, child.status) == (run_id, "COMPLETED")


ATTACHED_ASYNC = """
import asyncio, json, sys
import tasker

@tasker.task(stage="S", name="consumed")
async def consume(message):
    return message.upper()

async def main(run_id, subtask):
    async with tasker.attach(run_id, subtask=subtask):
        handed = tasker.handoff()
        async for _ in tasker.track(aiter_of(range(12))):
            pass
        done = await consume("msg")
    return handed, done

async def aiter_of(items):
    for item in items:
        yield item

print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))))
"""


def test_async_attach_and_handoff_in_another_process(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    with tasker.task("S", "async sender") as run:
        with tasker.subtask("prepare", items_total=1):
            pass
        with tasker.subtask("consume", items_total=12) as sub:
            handed = tasker.handoff()
            assert handed == (run.run_id, sub.number) == (run.run_id, 2)
            result = run_script(
                write_script(tmp_path, ATTACHED_ASYNC), child_env, *map(str, handed)
            )
            assert result.returncode == 0, result.stderr
    # Inside the attach block, handoff() names the run and subtask it was given.
    assert json.loads(result.stdout) == [[run.run_id, 2], "MSG"]
    subs = tasker.get_subtask_progress(run.run_id)
    assert [(s.subtask_name, s.items_complete) for s in subs] == [("prepare", 0), ("consume", 12)]
    (child,) = [r for r in tasker.get_task_history() if r.task_name == "consumed"]
    assert (child.parent_run_id, child.status) == (run.run_id, "COMPLETED")
    assert child.process_id != tasker.get_run(run.run_id).process_id


BOUND_UPDATE = """
import json, multiprocessing as mp, sys
import tasker

def report(step):
    tasker.task_update(message=f"worker says {step}")
    tasker.subtask_increment(3)
    return step

if __name__ == "__main__":
    with tasker.task("S", "bound update") as run:
        with tasker.subtask("steps", items_total=3):
            with mp.get_context(sys.argv[1]).Pool(1) as pool:
                assert pool.apply(tasker.bind(report), ("one",)) == "one"
        run_id = run.run_id
    print(json.dumps(run_id))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_bind_carries_task_update_and_increments_to_a_worker(
    db: Backend, child_env: dict[str, str], tmp_path: Path, method: str
) -> None:
    result = run_script(write_script(tmp_path, BOUND_UPDATE), child_env, method)
    assert result.returncode == 0, result.stderr
    run = tasker.get_run(json.loads(result.stdout))
    assert (run.status, run.overall_progress_message) == ("COMPLETED", "worker says one")
    (sub,) = tasker.get_subtask_progress(run.run_id)
    assert (sub.subtask_name, sub.items_complete, sub.status) == ("steps", 3, "COMPLETED")
    assert len(tasker.get_task_history()) == 1


def test_attach_checks_what_it_is_given(db: Backend) -> None:
    with pytest.raises(tasker.ValidationError, match="is not a UUID"):
        tasker.attach("run-42")
    with pytest.raises(tasker.ValidationError, match="subtask must be a whole number from 1 to"):
        tasker.attach("123e4567-e89b-12d3-a456-426614174000", subtask=0)


def test_parent_run_id_given_to_the_decorator(db: Backend) -> None:
    outer = tasker.task_start("S", "elsewhere")

    @tasker.task(stage="S", name="adopted", parent_run_id=outer)
    def adopted() -> int:
        return 1

    token = context._current.set(None)
    context.forget_all()
    try:
        assert adopted() == 1
    finally:
        context._current.reset(token)
    tasker.flush()
    (run,) = [r for r in tasker.get_task_history() if r.task_name == "adopted"]
    assert run.parent_run_id == outer


# ---------------------------------------------------------------------------- pickling


@tasker.task(stage="S", name="module level")
def module_level(x: int) -> int:
    return x + 1


class Scorer:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    @tasker.task(stage="S", name="method")
    def score(self, x: int) -> int:
        return x + self.offset


def test_outside_a_run_a_decorated_function_unpickles_as_itself(db: Backend) -> None:
    assert pickle.loads(pickle.dumps(module_level)) is module_level
    cloudpickle = need("cloudpickle")
    assert cloudpickle.loads(cloudpickle.dumps(module_level)) is module_level
    assert module_level.__name__ == "module_level" and module_level(1) == 2


def test_inside_a_run_it_carries_the_run_and_its_open_subtask(db: Backend) -> None:
    with tasker.task("S", "sender") as run, tasker.subtask("open") as st:
        payload = pickle.dumps(module_level)
        method = pickle.dumps(Scorer(10).score)
    received = pickle.loads(payload)
    assert received.__name__ == "module_level" and received.__wrapped__ is module_level
    assert received(1) == 2 and pickle.loads(method)(1) == 11
    tasker.flush()
    nested = {r.task_name: r for r in tasker.get_task_history() if r.parent_run_id == run.run_id}
    assert set(nested) == {"module level", "method"}
    assert st.number == 1


def test_a_function_not_reachable_by_name_says_so(db: Backend) -> None:
    @tasker.task(stage="S", name="local")
    def local() -> None:
        return None

    with pytest.raises(tasker.TaskerError, match="not reachable by name at module level"):
        pickle.dumps(local)


# ---------------------------------------------------------------------------- threads


def test_threads_never_write_the_environment_and_children_get_their_threads_run(
    db: Backend, child_env: dict[str, str]
) -> None:
    inside = threading.Event()
    leave = threading.Event()
    from_thread: list[str] = []
    code = "import os; print(os.environ['TASKER_RUN_ID'])"

    def other_thread() -> None:
        with tasker.task("S", "in a thread") as own:
            # A child of this thread gets this thread's run, not the main thread's.
            seen_here = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
            ).stdout.strip()
            from_thread.extend([seen_here, own.run_id])
            inside.set()
            leave.wait(30)

    with tasker.task("S", "main") as main_run:
        thread = threading.Thread(target=other_thread)
        thread.start()
        assert inside.wait(30)
        # The thread's run is live, but the variable still names the main thread's run.
        assert os.environ[context.RUN_ID_ENV] == main_run.run_id
        seen = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
        leave.set()
        thread.join(30)
    assert seen == main_run.run_id
    assert from_thread[0] == from_thread[1] != main_run.run_id
    assert os.environ[context.RUN_ID_ENV] == ""
    tasker.flush()
    (threaded,) = [r for r in tasker.get_task_history() if r.task_name == "in a thread"]
    assert threaded.parent_run_id == main_run.run_id
