"""Helpers for tests that run real tracked scripts."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from benchmarks.servers import PrivatePostgres, ServerError
from tasker.models import NewRun, Status

# CI sets TASKER_TEST_ENGINES=1: a test that needs an engine (joblib, Dask, Ray, Celery …) or
# a facility (unshare) then fails when it is missing, instead of skipping, so that a missing
# install step cannot pass unnoticed.
ENGINES_MUST_RUN = os.environ.get("TASKER_TEST_ENGINES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip, saying why; fail instead under TASKER_TEST_ENGINES=1."""
    if ENGINES_MUST_RUN:
        pytest.fail(f"TASKER_TEST_ENGINES=1 but {reason}")
    pytest.skip(reason)


def need(module: str) -> Any:
    """``pytest.importorskip(module)``, which fails under TASKER_TEST_ENGINES=1."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        skip_or_fail(f"{module} cannot be imported ({exc}); pip install -e '.[dev]' brings it")


def write_script(tmp_path: Path, body: str, name: str = "job.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def start_script(path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start a script in its own process group, its output piped."""
    return subprocess.Popen(
        [sys.executable, str(path), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def tasker_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``tasker`` command (as ``python -m tasker``)."""
    return subprocess.run(
        [sys.executable, "-m", "tasker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_script(path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run a script in its own process group; on a time-out the whole group (workers too)
    is killed and the test fails with what the script printed."""
    proc = start_script(path, env, *args)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{path.name} did not finish in 120 s:\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(condition, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail("condition not met in time")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_run(run_id: str, stage: str, task: str, **fields: Any) -> NewRun:
    """A run as the store records it: STARTED now on host "h", PID 1, unless ``fields``
    say otherwise."""
    values: dict[str, Any] = {
        "task_type": None,
        "status": Status.STARTED,
        "start_time": datetime.now(timezone.utc),
        "hostname": "h",
        "process_id": 1,
    }
    values.update(fields)
    return NewRun(run_id=run_id, stage=stage, task=task, **values)


def cli_commands(parser: Any, prefix: str = "") -> dict[str, Any]:
    """Every command and subcommand of the ``tasker`` parser by its name (``subtask start``)."""
    import argparse

    found: dict[str, Any] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(cli_commands(sub, f"{prefix}{name} "))
    return found


class PrivateServer(PrivatePostgres):
    """A PostgreSQL server of the test's own, on a free loopback port, that the test may stop
    and start at will (benchmarks/servers.py); a server program that is missing or fails
    fails the test, with its output."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        try:
            super().__init__(settings)
        except ServerError as exc:
            pytest.fail(str(exc))

    def _run(self, program: str, *args: str) -> None:
        try:
            super()._run(program, *args)
        except ServerError as exc:
            pytest.fail(str(exc))
