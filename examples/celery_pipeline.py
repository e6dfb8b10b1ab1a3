"""A pipeline step fanned out to Celery workers: every task execution is a run nested under
the step's run, FAILED with its traceback when it raises.

Needs a broker (``CELERY_BROKER_URL``, by default Redis on 127.0.0.1:6379) and starts a
prefork worker of its own for the demonstration (``--no-worker`` when one is already running
for the queue ``CELERY_QUEUE``, see ``celery_tasks.py``)::

    python examples/celery_pipeline.py
    tasker history --stage DAILY
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # celery_tasks, when run from another folder

from celery_tasks import QUEUE, refresh_state  # noqa: E402

import tasker  # noqa: E402

# State: number of counties.
STATES = {
    "Alabama": 67,
    "Alaska": 30,
    "Arizona": 15,
    "Arkansas": 75,
    "California": 58,
    "Colorado": 64,
}


def start_worker() -> subprocess.Popen[bytes]:
    """A worker for the queue; the tasks wait in the queue until it is up."""
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "celery", "--quiet", "-A", "celery_tasks", "worker"]
    command += ["--pool=prefork", "-c", "2", "--max-tasks-per-child=3", "-Q", QUEUE]
    command += ["-n", f"{QUEUE}@%h", "--without-gossip", "--without-mingle", "-l", "error"]
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.Popen(command, cwd=HERE, env=env, stdout=sys.stderr)


def refresh_coverage() -> tuple[int, int]:
    with tasker.task("DAILY", "Refresh coverage"):
        with tasker.subtask("Sending states", items_total=len(STATES)) as sending:
            results = {}
            for state, counties in STATES.items():
                results[state] = refresh_state.delay(state, counties)
                sending.advance()
        counted = failed = 0
        for state, result in tasker.track(results.items(), name="Collecting states"):
            try:
                counted += result.get(timeout=60)
            except ValueError as exc:
                print(f"{state} failed: {exc}")
                failed += 1
            finally:
                result.forget()
    return counted, failed


def main() -> None:
    worker = None if "--no-worker" in sys.argv else start_worker()
    try:
        counted, failed = refresh_coverage()
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)  # warm shutdown: nothing is lost
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    states = len(STATES) - failed
    print(f"counted {counted:,} counties in {states} states; {failed} state failed")


if __name__ == "__main__":
    main()
