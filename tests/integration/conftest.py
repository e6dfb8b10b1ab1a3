"""Integration tests: tasker against real databases, real processes and real engines, and
the faults they meet — every test taking the ``db`` fixture runs on SQLite, PostgreSQL and
MySQL/MariaDB; fork, spawn and worker pools, Dask, Ray and Celery with its brokers; signals and
kill -9; a network that stalls (tests/proxy.py), a database that goes away, a full disk.

They may use everything of tests/conftest.py (``db``, ``child_env``, ``Backend``, ``ROOT``),
tests/helpers.py and tests/proxy.py, and this tier's own helper: ``PrivateServer``, a
PostgreSQL server of the test's own that it may stop and start.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import free_port


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
