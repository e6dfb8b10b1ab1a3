"""Helpers for tests that run real tracked scripts."""

from __future__ import annotations

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

from tasker.models import NewRun, Status


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


def _pg_bindir() -> Path | None:
    import glob
    import shutil

    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: len(p))
    return Path(candidates[-1]).parent if candidates else None


class PrivateServer:
    """A PostgreSQL server of the test's own, on a free loopback port, that the test may stop
    and start at will. Needs PostgreSQL's server programs (initdb, pg_ctl)."""

    def __init__(self) -> None:
        import shutil
        import tempfile

        bindir = _pg_bindir()
        if bindir is None or not (bindir / "initdb").exists():
            pytest.fail("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.port = free_port()
        # Not under pytest's private temporary folder: the server may run as another user.
        self.base = Path(tempfile.mkdtemp(prefix="tasker-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root
            self.as_user = ["runuser", "-u", "postgres", "--"]
            os.chmod(self.base, 0o755)
            shutil.chown(self.base, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        cmd = [*self.as_user, str(self.bindir / program), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"{program} failed: {done.stderr}\n{log}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -h 127.0.0.1 -F"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def close(self) -> None:
        import shutil

        subprocess.run(
            [
                *self.as_user,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.base, ignore_errors=True)


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
