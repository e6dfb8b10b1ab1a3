"""Celery: real workers (prefork, recycled by --max-tasks-per-child) against the RabbitMQ and
Redis servers of the machine. Every task execution is a run nested under the run that sent it;
the tests read the database afterwards.

Each test starts its own worker on a queue of its own, bounds every wait, and kills the
worker's whole process group when it is done. The brokers are ``TASKER_TEST_AMQP_URL`` and
``TASKER_TEST_REDIS_URL`` (by default the local servers); a broker that cannot be reached
skips the test, or fails it with ``TASKER_TEST_BROKERS=1`` (CI).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import tasker
from tests.conftest import ROOT, Backend
from tests.helpers import need

celery = need("celery")

from tasker.integrations.celery import install, run_id_for  # noqa: E402

AMQP_URL = os.environ.get("TASKER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("TASKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STAGE = "CELERY"
T = TypeVar("T")

APP = """
import os
import time

from celery import Celery
from celery.signals import worker_ready

import tasker
from tasker.integrations.celery import install

app = Celery("tasker_test_app", broker=os.environ["TT_BROKER"])
# Tasks sent from tasks (self.replace) go to the test's own queue too.
app.conf.task_default_queue = os.environ["TT_QUEUE"]
app.conf.broker_connection_retry_on_startup = True
install(app, stage="CELERY")


@worker_ready.connect
def _ready(**_):
    with open(os.environ["TT_READY"], "w") as f:
        f.write(str(os.getpid()))


@app.task(name="tt.add")
def add(i):
    for _ in tasker.track(range(i % 5 + 1), name="items"):
        pass
    return i


@app.task(name="tt.fail")
def fail(i):
    for n in tasker.track(range(10), name="items"):
        if n == 3:
            raise ValueError(f"bad input {i}")


@app.task(name="tt.sleep")
def sleep(seconds):
    for _ in tasker.track(range(int(seconds * 20)), name="sleeping"):
        time.sleep(0.05)
    return seconds


@app.task(bind=True, name="tt.flaky", max_retries=3, default_retry_delay=0.1)
def flaky(self):
    try:
        if self.request.retries < 2:
            raise ConnectionError(f"attempt {self.request.retries} failed")
    except ConnectionError as exc:
        raise self.retry(exc=exc)
    return self.request.retries


@app.task(bind=True, name="tt.replaced")
def replaced(self):
    raise self.replace(add.s(7))  # keeps the task id
"""


@dataclasses.dataclass
class Worker:
    """A worker of its own (``proc`` is its main process) and an app that sends to it."""

    proc: subprocess.Popen[bytes]
    queue: str
    client: Any
    log: Path

    def send(self, name: str, *args: Any) -> Any:
        return self.client.send_task(f"tt.{name}", args=args, queue=self.queue)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def until(self, condition: Callable[[], T], timeout: float, what: str) -> T:
        """Poll ``condition`` until it returns something true; fail (with the worker's log)
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                runs = "\n".join(
                    f"  {r.task_name} {r.status} {r.error_type} {r.run_id} <- {r.parent_run_id}"
                    for r in _celery_runs()
                )
                pytest.fail(
                    f"{what}: not within {timeout} s; runs:\n{runs}\nworker log:\n{self.output()}"
                )
            time.sleep(0.05)

    def warm_shutdown(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no warm shutdown within {timeout} s; worker log:\n{self.output()}")


def _reachable(url: str, port: int) -> None:
    """A broker that cannot be reached skips the test, saying so; with TASKER_TEST_BROKERS=1
    (CI sets it, and starts the servers) it fails it instead."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except OSError as exc:
        reason = f"the broker {url.split('@')[-1]} cannot be reached: {exc}"
        if os.environ.get("TASKER_TEST_BROKERS") == "1":
            pytest.fail(f"TASKER_TEST_BROKERS=1 but {reason}")
        pytest.skip(reason)


@contextlib.contextmanager
def celery_worker(broker: str, tmp_path: Path, env: dict[str, str]) -> Iterator[Worker]:
    """A prefork worker (2 children, each recycled after 3 tasks) on a queue of its own."""
    _reachable(broker, 5672 if broker.startswith("amqp") else 6379)
    queue = f"tasker-test-{uuid.uuid4().hex[:12]}"
    (tmp_path / "tasker_test_app.py").write_text(textwrap.dedent(APP), encoding="utf-8")
    ready = tmp_path / "worker-ready"
    log = tmp_path / "worker.log"
    env = {
        **env,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), env["PYTHONPATH"]]),
        "TT_BROKER": broker,
        "TT_QUEUE": queue,
        "TT_READY": str(ready),
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasker_test_app",
        "worker",
        "--pool=prefork",
        "-c",
        "2",
        "--max-tasks-per-child=3",
        "-Q",
        queue,
        "-n",
        f"{queue}@%h",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "warning",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = celery.Celery("tasker-test-client", broker=broker, set_as_current=False)
    client.conf.broker_connection_retry_on_startup = True
    install(client, stage=STAGE)
    worker = Worker(proc, queue, client, log)
    try:
        worker.until(
            lambda: ready.exists() or proc.poll() is not None, 30, "the worker to be ready"
        )
        if proc.poll() is not None:
            pytest.fail(f"the worker did not start:\n{worker.output()}")
        yield worker
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its children too, if any are left
        proc.wait(30)
        _delete_queue(client, queue)
        client.close()


def _delete_queue(client: Any, name: str) -> None:
    """Leave nothing behind on the broker: the queue, its exchange and (Redis) bindings."""
    from kombu import Exchange, Queue

    with client.connection_for_write() as conn:
        channel = conn.default_channel
        exchange = Exchange(name, type="direct")
        queue = Queue(name, exchange, routing_key=name).bind(channel)
        queue.declare()  # kombu's Redis transport deletes only the bindings it knows
        queue.delete()
        exchange.bind(channel).delete()


def _celery_runs() -> list[tasker.RunRecord]:
    return list(tasker.get_task_history(stage=STAGE, limit=None))


def _all_ended(n: int) -> list[tasker.RunRecord] | None:
    runs = _celery_runs()
    if len(runs) >= n and all(r.status not in ("STARTED", "RUNNING") for r in runs):
        return runs
    return None


def _items(run_id: str) -> list[tuple[str | None, str, int]]:
    return [
        (s.subtask_name, s.status, s.items_complete) for s in tasker.get_subtask_progress(run_id)
    ]


def test_every_execution_is_a_run_under_the_run_that_sent_it(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    with celery_worker(AMQP_URL, tmp_path, child_env) as worker:
        with tasker.task("PIPELINE", "dispatch") as dispatch, tasker.subtask("fan out"):
            sent = [worker.send("fail" if i == 13 else "add", i) for i in range(30)]
        worker.until(lambda: _all_ended(30), 60, "30 ended runs")
        # Idle now: a warm shutdown ends the worker cleanly and loses nothing.
        assert worker.warm_shutdown() == 0

    runs = _celery_runs()
    assert len(runs) == 30 and len({r.run_id for r in runs}) == 30
    assert {r.run_id for r in runs} == {run_id_for(s.id) for s in sent}
    by_id = {r.run_id: r for r in runs}
    assert collections.Counter(r.task_name for r in runs) == {"tt.add": 29, "tt.fail": 1}
    assert {r.parent_run_id for r in runs} == {dispatch.run_id}
    assert {r.task_type for r in runs} == {"celery"}
    assert {r.script_filename for r in runs} == {"tasker_test_app.py"}
    assert tasker.get_active_tasks() == []

    failed = by_id[run_id_for(sent[13].id)]
    assert [r.run_id for r in runs if r.status != "COMPLETED"] == [failed.run_id]
    assert (failed.status, failed.error_type, failed.error_message) == (
        "FAILED",
        "ValueError",
        "bad input 13",
    )
    assert failed.error_detail is not None
    assert failed.error_detail.startswith("Traceback (most recent call last):")
    assert 'raise ValueError(f"bad input {i}")' in failed.error_detail
    assert failed.error_detail.rstrip().endswith("ValueError: bad input 13")
    assert _items(failed.run_id) == [("items", "FAILED", 3)]
    for i, s in enumerate(sent):
        if i != 13:
            assert _items(run_id_for(s.id)) == [("items", "COMPLETED", i % 5 + 1)]

    # Two children, each recycled after 3 tasks: at least 10 processes, none ran more than 3,
    # all children of the worker's main process.
    per_pid = collections.Counter(r.process_id for r in runs)
    assert len(per_pid) >= 10 and max(per_pid.values()) <= 3, per_pid
    assert worker.proc.pid not in per_pid
    assert {r.parent_pid for r in runs} == {worker.proc.pid}


def test_revoke_with_terminate_cancels_the_run(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    with celery_worker(REDIS_URL, tmp_path, child_env) as worker:
        with tasker.task("PIPELINE", "dispatch") as dispatch:
            sleeping = worker.send("sleep", 60)
        run_id = run_id_for(sleeping.id)

        def counting() -> bool:
            runs = [r for r in _celery_runs() if r.run_id == run_id]
            return bool(runs) and any(n > 0 for _, _, n in _items(run_id))

        worker.until(counting, 30, "the sleeping task to run and count")
        revoked_at = time.monotonic()
        worker.client.control.revoke(sleeping.id, terminate=True)
        (run,) = worker.until(lambda: _all_ended(1), 20, "the revoked run to end")
        assert time.monotonic() - revoked_at < 20
        assert (run.run_id, run.status, run.error_type) == (run_id, "CANCELLED", "Revoked")
        assert run.error_message == "revoked and terminated by SIGTERM"
        assert run.parent_run_id == dispatch.run_id and run.end_time is not None
        ((name, status, counted),) = _items(run_id)
        assert (name, status) == ("sleeping", "CANCELLED") and 0 < counted < 1200

        # The worker goes on with a new child. Every attempt of a retried task is a run of its
        # own under the sender; so is a task that replaced itself (keeping its task id).
        with tasker.task("PIPELINE", "dispatch again") as again:
            flaky = worker.send("flaky")
            replaced = worker.send("replaced")
        runs = worker.until(lambda: _all_ended(6), 30, "the retried and replaced tasks")
        assert tasker.reap_lost_runs() == []
        assert worker.warm_shutdown() == 0

    attempts = [tasker.get_run(run_id_for(flaky.id, n)) for n in range(3)]
    assert [(r.status, r.error_type) for r in attempts] == [
        ("FAILED", "Retry"),
        ("FAILED", "Retry"),
        ("COMPLETED", None),
    ]
    assert attempts[0].error_message == "Retry in 0.1s: ConnectionError('attempt 0 failed')"
    assert "ConnectionError: attempt 0 failed" in (attempts[0].error_detail or "")
    assert {r.parent_run_id for r in attempts} == {again.run_id}
    replacing = tasker.get_run(run_id_for(replaced.id))
    assert (replacing.task_name, replacing.status) == ("tt.replaced", "COMPLETED")
    assert replacing.parent_run_id == again.run_id
    (replacement,) = [r for r in runs if r.parent_run_id == replacing.run_id]
    assert (replacement.task_name, replacement.status) == ("tt.add", "COMPLETED")
    assert len({r.run_id for r in runs}) == 6
    assert tasker.get_run(run_id).status == "CANCELLED"


def test_warm_shutdown_finishes_and_records_the_running_tasks(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    with celery_worker(REDIS_URL, tmp_path, child_env) as worker:
        with tasker.task("PIPELINE", "dispatch") as dispatch:
            quick = [worker.send("add", i) for i in range(2)]
            slow = [worker.send("sleep", 1.0) for _ in range(2)]

        def both_slow_running() -> bool:
            ids = {run_id_for(s.id) for s in slow}
            return len([r for r in _celery_runs() if r.run_id in ids]) == 2

        worker.until(both_slow_running, 30, "both slow tasks to start")
        assert worker.warm_shutdown() == 0  # waits for the running tasks

    runs = {r.run_id: r for r in _celery_runs()}
    assert set(runs) == {run_id_for(s.id) for s in quick + slow}
    assert {r.status for r in runs.values()} == {"COMPLETED"}
    assert {r.parent_run_id for r in runs.values()} == {dispatch.run_id}
    for s in slow:
        assert _items(run_id_for(s.id)) == [("sleeping", "COMPLETED", 20)]
    assert tasker.get_active_tasks() == []


def test_eager_calls_nest_under_the_callers_run(db: Backend) -> None:
    app = celery.Celery("tasker-test-eager", broker="memory://", set_as_current=False)
    app.conf.task_always_eager = True
    install(app)
    install(app, stage="EAGER")  # again: idempotent, the stage replaced

    @app.task(name="eager.double")
    def double(x: int) -> int:
        @tasker.task(stage="EAGER", name="inner")
        def inner() -> int:
            return x * 2

        return inner()

    @app.task(name="eager.broken", tasker_stage="OTHER")
    def broken() -> None:
        raise KeyError("missing")

    with tasker.task("PIPELINE", "caller") as caller:
        assert double.delay(21).get() == 42
        with pytest.raises(KeyError):
            broken.apply(throw=True)
    tasker.flush()

    (outer,) = tasker.get_task_history(stage="EAGER", task="eager.double")
    assert (outer.status, outer.parent_run_id, outer.task_type) == (
        "COMPLETED",
        caller.run_id,
        "celery",
    )
    (nested,) = tasker.get_task_history(stage="EAGER", task="inner")
    assert nested.parent_run_id == outer.run_id and nested.status == "COMPLETED"
    (failed,) = tasker.get_task_history(stage="OTHER")
    assert (failed.task_name, failed.status, failed.error_type) == (
        "eager.broken",
        "FAILED",
        "KeyError",
    )
    assert failed.parent_run_id == caller.run_id


def test_install_checks_its_arguments() -> None:
    app = celery.Celery("tasker-test-args", broker="memory://", set_as_current=False)
    with pytest.raises(tasker.ValidationError, match="stage"):
        install(app, stage="")
    with pytest.raises(tasker.ValidationError, match="flush_timeout"):
        install(app, flush_timeout=0)


def test_the_example_pipeline(db: Backend, child_env: dict[str, str]) -> None:
    _reachable(REDIS_URL, 6379)
    queue = f"tasker-example-{uuid.uuid4().hex[:12]}"
    env = {**child_env, "CELERY_BROKER_URL": REDIS_URL, "CELERY_QUEUE": queue}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "celery_pipeline.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the example did not finish in 90 s:\n{err}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        client = celery.Celery("tasker-test-cleanup", broker=REDIS_URL, set_as_current=False)
        _delete_queue(client, queue)
        client.close()
    assert proc.returncode == 0, err
    assert out.splitlines() == [
        "Alaska failed: Alaska has boroughs, not counties",
        "counted 279 counties in 5 states; 1 state failed",
    ]
    (pipeline,) = tasker.get_task_history(stage="DAILY", task="Refresh coverage")
    assert pipeline.status == "COMPLETED"
    states = tasker.get_task_history(stage="DAILY", task="celery_tasks.refresh_state")
    assert len(states) == 6 and {r.parent_run_id for r in states} == {pipeline.run_id}
    assert collections.Counter(r.status for r in states) == {"COMPLETED": 5, "FAILED": 1}
