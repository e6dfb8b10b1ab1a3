"""Database servers of one's own, on free loopback ports, for the benchmarks and the tests
that stop, start or crowd a server: a PostgreSQL cluster (initdb, pg_ctl) and a PgBouncer in
front of it. Each is stopped by its owner, by PID (PgBouncer) or by pg_ctl on its own data
directory (PostgreSQL), and removed with its files.

Run as root (a container, CI), the servers run as the ``postgres`` user: neither runs as
root.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PgBouncer", "PrivatePostgres", "ServerError", "free_port"]


class ServerError(RuntimeError):
    """A server program is missing, or failed to start or stop (with its output)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=len)
    return Path(candidates[-1]).parent if candidates else None


def _own_folder(prefix: str) -> tuple[Path, str | None]:
    """A new folder the server can write to; the user it runs as (None: this one). Not under
    a test's temporary folder, which the server's user may not reach."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() != 0:
        return base, None
    os.chmod(base, 0o755)
    shutil.chown(base, "postgres")
    return base, "postgres"


class PrivatePostgres:
    """A PostgreSQL cluster of its own on a free loopback port, trust authentication for
    user ``postgres``; ``settings`` go to its postgresql.conf (``max_connections = 50``)."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        bindir = _pg_bindir()
        if bindir is None or not (bindir / "initdb").exists():
            raise ServerError("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.port = free_port()
        self.base, user = _own_folder("tasker-pg-")
        self.as_user = ["runuser", "-u", user, "--"] if user else []
        self.data = self.base / "data"
        self.log = self.base / "server.log"
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
        if settings:
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        cmd = [*self.as_user, str(self.bindir / program), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise ServerError(f"{program} failed: {done.stderr}\n{log}")

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
        """Stop the server at once, if it runs, and remove its files."""
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


class PgBouncer:
    """PgBouncer (``pgbouncer`` on the PATH or in /usr/sbin) in front of ``server`` on a
    free loopback port: trust authentication for ``postgres`` and ``users``, ``pool_mode``
    transaction by default, ``pool_size`` server connections per database and user."""

    def __init__(
        self,
        server: PrivatePostgres,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 20,
        users: tuple[str, ...] = (),
    ) -> None:
        extra_users = users
        program = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.path.exists(program):
            raise ServerError("PgBouncer is not installed (Debian: apt-get install pgbouncer)")
        self.port = free_port()
        self.base, self.user = _own_folder("tasker-pgbouncer-")
        self.log = self.base / "pgbouncer.log"
        users = self.base / "users.txt"
        users.write_text(
            "".join(f'"{name}" ""\n' for name in ("postgres", *extra_users)), encoding="utf-8"
        )
        ini = self.base / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"pool_mode = {pool_mode}\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 2000\n"
            f"logfile = {self.log}\n",
            encoding="utf-8",
        )
        self._program = program
        self._ini = ini
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        # In the foreground, so that the PID is PgBouncer's own (stopped by it).
        self._proc = subprocess.Popen(
            [self._program, str(self._ini)],
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise ServerError(f"pgbouncer exited with {self._proc.returncode}: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise ServerError(f"pgbouncer did not listen on port {self.port} within 30 s")

    def close(self) -> None:
        """Stop PgBouncer (by its PID) and remove its files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # a safe shutdown: PgBouncer's SIGINT
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(self.base, ignore_errors=True)
