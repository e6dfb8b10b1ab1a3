"""What tasker must never expose or create: passwords from URLs of any shape (in exception
text, `tasker config`, warnings, tracebacks, journal files); files the dashboard was not
told it may read (any path a run row names, links and ``..`` out of the log roots, FIFOs,
devices); the dashboard to pages of other sites (Host header) or to odd tokens (never a
500); and database files or folders that read commands were merely asked to read."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import tasker
from tasker.config import load_config, mask_url
from tasker.runtime.recorder import RECORDER
from tasker.store.engine import describe_target
from tests.conftest import ROOT, Backend
from tests.e2e.test_dashboard import Served
from tests.helpers import free_port, run_script, tasker_cli, write_script

# ---------------------------------------------------------------------------- passwords

# Two halves of one password, so that a URL that splits it at an unencoded "@" can be
# checked for either half; and a password of digits, which a URL without "@" shows as a port.
HALF_A, HALF_B = "Zq9xW", "SECRETpw7"
PASSWORD = HALF_A + HALF_B
DIGITS = "8675309123"


def _shapes(port: int) -> dict[str, str]:
    """URLs that hold PASSWORD (or its halves, or DIGITS), one per shape that used to leak it."""
    return {
        "one slash": f"postgresql:/tracker:{PASSWORD}@127.0.0.1:{port}/pipes",
        "no dialect": f"tracker:{PASSWORD}@127.0.0.1:{port}/pipes",
        "unencoded @": f"postgresql://tracker:{HALF_A}@{HALF_B}@127.0.0.1:{port}/pipes",
        "unencoded @ and /": f"mysql://tracker:{HALF_A}@/{HALF_B}@127.0.0.1:{port}/pipes",
        "query parameter": f"postgresql://tracker@127.0.0.1:{port}/pipes?password={PASSWORD}",
        "percent-encoded": f"postgresql://tracker:{HALF_A}%40{HALF_B}@127.0.0.1:{port}/pipes",
        "percent-encoded key": f"postgresql://tracker@127.0.0.1:{port}/pipes?pass%77ord={PASSWORD}",
        "no user": f"postgresql://:{PASSWORD}@127.0.0.1:{port}/pipes",
        "a blank in it": f"postgresql://tracker:{HALF_A} {HALF_B}@127.0.0.1:{port}/pipes",
        # No "@" at all: nothing says where the password ends, so all of it after the user's
        # ":" is masked.
        "no host": f"postgresql://tracker:{PASSWORD}",
        "no host, a database": f"postgresql://tracker:{PASSWORD}/pipes",
        "no host, MariaDB": f"mysql://root:{PASSWORD}",
        "no host, a port": f"postgresql://tracker:{PASSWORD}:{port}/pipes",
        "no host, no dialect": f"tracker:{PASSWORD}",
        "no host, one slash": f"postgresql:/tracker:{PASSWORD}",
        "no host, percent-encoded": f"postgresql://tracker:{HALF_A}%2F{HALF_B}",
        "no host, digits": f"postgresql://tracker:{DIGITS}/pipes",
        "one slash, a parameter": (
            f"postgresql:/tracker@127.0.0.1:{port}/pipes?sslpassword={PASSWORD}"
        ),
        "an open bracket": f"postgresql://tracker:{PASSWORD}@[::1:{port}/pipes",
        "blanks around": f" postgresql://tracker:{PASSWORD}@127.0.0.1:{port}/pipes ",
    }


# The shapes that are not URLs at all: they are refused, with the password masked.
MALFORMED = (
    "one slash",
    "no dialect",
    "no host",
    "no host, a database",
    "no host, MariaDB",
    "no host, a port",
    "no host, no dialect",
    "no host, one slash",
    "no host, percent-encoded",
    "no host, digits",
    "one slash, a parameter",
    "an open bracket",
    "blanks around",
)


def _assert_no_password(text: str, where: str) -> None:
    for part in (HALF_A, HALF_B, DIGITS):
        assert part not in text, f"{where} shows part of the password:\n{text}"


@pytest.fixture
def port() -> int:
    return free_port()  # nothing listens there: every connection is refused at once


@pytest.mark.parametrize("shape", list(_shapes(1)))
def test_mask_url_masks_every_shape(shape: str) -> None:
    url = _shapes(5432)[shape]
    masked = mask_url(url)
    _assert_no_password(masked, "mask_url")
    assert "***" in masked
    if "@127.0.0.1" in url:  # where the database is stays readable
        assert "127.0.0.1" in masked


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:PW", "postgresql://u:***"),
        ("postgresql://u:PW/db", "postgresql://u:***"),
        ("mysql://root:PW", "mysql://root:***"),
        ("postgresql://u:PW:5432/db", "postgresql://u:***"),
        ("postgresql://u:12%40W", "postgresql://u:***"),
        ("postgresql://:PW", "postgresql://:***"),
        ("postgresql:/u:PW", "postgresql:/u:***"),
        ("u:PW", "u:***"),
        ("postgresql:u:PW@h/db", "postgresql:***@h/db"),
        ("postgresql://u:99999/db", "postgresql://u:***"),
        ("postgresql://u:PW@h:notaport/db", "postgresql://u:***@h:notaport/db"),
        ("postgresql://u@h/db?password=PW&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("postgresql://u@h/db?pass%77ord=P%40W", "postgresql://u@h/db?password=***"),
        ("postgresql:/u@h/db?Pass%77ord=PW", "postgresql:/u@h/db?Pass%77ord=***"),
        (
            "postgresql://u:PW@h/db?sslpassword=a;b&x=1",
            "postgresql://u:***@h/db?sslpassword=***&x=1",
        ),
        ("host=h password='P W' dbname=d", "host=h password=*** dbname=d"),
        # Nothing to mask: a URL without a password is shown as it is.
        ("postgresql://db.example:5432/pipes", "postgresql://db.example:5432/pipes"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_mask_url_masks_after_the_user_when_in_doubt(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize("shape", list(_shapes(1)))
def test_exception_text_and_traceback_hide_the_password(shape: str, port: int) -> None:
    url = _shapes(port)[shape]
    exc: BaseException
    if shape in MALFORMED:
        with pytest.raises(tasker.ConfigError, match="is not a database URL") as info:
            load_config({"url": url})
        exc = info.value
    else:
        config = tasker.configure(url=url, console="false")
        assert config.host == "127.0.0.1" and config.port == port
        _assert_no_password(config.url + repr(config) + str(config.describe()), "the config")
        with pytest.raises(tasker.DatabaseError) as db_info:
            tasker.create_schema()
        exc = db_info.value
        assert f"127.0.0.1:{port}" in str(exc)
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    _assert_no_password(str(exc) + repr(exc) + text, f"the exception for {shape!r}")


def test_an_unencoded_at_in_the_password_is_taken_whole() -> None:
    config = load_config({"url": f"postgresql://tracker:{HALF_A}@{HALF_B}@db.example/pipes"})
    assert (config.user, config.password, config.host, config.dbname) == (
        "tracker",
        f"{HALF_A}@{HALF_B}",
        "db.example",
        "pipes",
    )
    config = load_config({"url": f"mysql://tracker:{HALF_A}@/{HALF_B}@db.example/pipes"})
    assert (config.password, config.host) == (f"{HALF_A}@/{HALF_B}", "db.example")


def test_credentials_given_as_the_host_are_refused_masked() -> None:
    with pytest.raises(tasker.ConfigError, match="is not a host name") as info:
        load_config({"host": f"tracker:{PASSWORD}@db.example", "dbname": "pipes"})
    _assert_no_password(str(info.value), "the error")


def _child_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env.update(
        TASKER_DB_URL=url,
        TASKER_JOURNAL_DIR=str(tmp_path / "journal"),
        TASKER_CONNECT_TIMEOUT="2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        **extra,
    )
    return env


@pytest.mark.parametrize("shape", list(_shapes(1)))
def test_tasker_config_and_status_hide_the_password(shape: str, port: int, tmp_path: Path) -> None:
    env = _child_env(tmp_path, _shapes(port)[shape])
    for args in (("config",), ("config", "--json"), ("config", "--check"), ("status",)):
        done = tasker_cli(env, *args)
        _assert_no_password(done.stdout + done.stderr, f"tasker {' '.join(args)} ({shape})")
        assert "Traceback" not in done.stderr
        if shape in MALFORMED:
            assert done.returncode == 1, done.stderr
            (line,) = done.stderr.splitlines()  # one line, the masked URL in it
            assert "is not a database URL" in line and "***" in line, line
        elif args[0] == "config" and args[-1] != "--check":
            assert done.returncode == 0 and "***" in done.stdout, done.stderr
        else:  # connects: refused, saying where (never with what password)
            assert done.returncode == 1 and f"127.0.0.1:{port}" in done.stderr, done.stderr


JOB = """
import tasker

@tasker.task(stage="S", name="job")
def job():
    for _ in tasker.track(range(3), name="items"):
        pass
    return "done"

print(job())
"""


@pytest.mark.parametrize("shape", list(_shapes(1)))
def test_warnings_journals_and_tracebacks_hide_the_password(
    shape: str, port: int, tmp_path: Path
) -> None:
    script = write_script(tmp_path, JOB)
    done = run_script(script, _child_env(tmp_path, _shapes(port)[shape], TASKER_CONSOLE="true"))
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    # It did warn: about the configuration, or about the database it cannot reach.
    assert "tasker could not" in done.stderr or "tasker cannot" in done.stderr, done.stderr
    _assert_no_password(done.stderr, f"the warnings ({shape})")
    files = sorted((tmp_path / "journal").rglob("*.jsonl"))
    if shape in MALFORMED:
        assert not files  # no configuration: no journal to write either
    else:
        assert files, done.stderr
        header = json.loads(files[0].read_text(encoding="utf-8").splitlines()[0])
        dialect = _shapes(port)[shape].partition(":")[0]
        assert header["database"].startswith(
            f"{dialect} database 'pipes' at 127.0.0.1:{port} as user "
        ), header
        for file in files:
            _assert_no_password(file.read_text(encoding="utf-8"), f"journal {file.name}")
    strict = run_script(script, _child_env(tmp_path, _shapes(port)[shape], TASKER_STRICT="true"))
    _assert_no_password(strict.stdout + strict.stderr, f"strict mode's output ({shape})")


# ---------------------------------------------------------------------------- dashboard


class Dashboard(Served):
    """The real app (see tests/e2e/test_dashboard.py), with requests as raw bytes, so that any
    Host header, path or token can be sent."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__(token, log_level="critical")

    def request(
        self,
        path: bytes | str,
        host: bytes | str | None = "",
        headers: dict[str, bytes] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, bytes, float]:
        """(status, body, seconds taken). ``host``: "" for the dashboard's own address,
        None for no Host header at all."""
        if isinstance(path, str):
            path = path.encode()
        if host == "":
            host = f"127.0.0.1:{self.port}"
        lines = [b"GET " + path + b" HTTP/1.1"]
        if host is not None:
            lines.append(b"Host: " + (host.encode() if isinstance(host, str) else host))
        for name, value in (headers or {}).items():
            lines.append(name.encode() + b": " + value)
        lines.append(b"Connection: close")
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        raw = b"".join(chunks)
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body, time.monotonic() - started

    def json(self, path: str) -> Any:
        status, body, _ = self.request(path)
        assert status == 200, body
        return json.loads(body)


@pytest.fixture
def logs(tmp_path: Path) -> dict[str, Path]:
    """A log root with a log in it, and a secret beside the root."""
    root = tmp_path / "logs"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "job.log").write_text("first\nthe last line of the job\n", encoding="utf-8")
    secret = outside / "secret.txt"
    secret.write_text("TOPSECRET-never-shown\n", encoding="utf-8")
    return {"root": root, "outside": outside, "secret": secret}


def _run_with_log(log_path: str | None, log_filename: str | None) -> str:
    run_id = tasker.task_start("S", "logged", log_path=log_path, log_filename=log_filename)
    tasker.task_complete(run_id=run_id)
    return run_id


def _set_log_filename(run_id: str, value: str) -> None:
    """Write a run's log_filename as any program that writes the database could."""
    from sqlalchemy import update

    store = RECORDER.store
    runs = store.t.task_runs
    with store.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(log_filename=value))


def test_the_dashboard_reads_log_files_only_inside_the_log_roots(
    db: Backend, logs: dict[str, Path], tmp_path: Path
) -> None:
    root, outside, secret = logs["root"], logs["outside"], logs["secret"]
    db.configure(log_roots=[str(root)])
    (root / "escape.log").symlink_to(secret)
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    shown = _run_with_log(str(root), "job.log")
    refused = {
        "/etc/shadow": _run_with_log("/etc", "shadow"),
        "an absolute log_filename": _run_with_log(str(root), "placeholder"),
        "..": _run_with_log(str(root), "../outside/secret.txt"),
        "a link to a file outside": _run_with_log(str(root), "escape.log"),
        "a link to a folder outside": _run_with_log(str(root / "linked-dir"), "secret.txt"),
        "a relative path": _run_with_log(None, "outside/secret.txt"),
    }
    _set_log_filename(refused["an absolute log_filename"], str(secret))
    tasker.flush()
    server = Dashboard()
    try:
        assert server.json(f"/api/runs/{shown}")["log_tail"].endswith("the last line of the job\n")
        for what, run_id in refused.items():
            data = server.json(f"/api/runs/{run_id}")
            assert data["log_tail"] is None and "log_roots" in data["log_note"], what
            for path in (f"/api/runs/{run_id}", f"/runs/{run_id}"):
                status, body, _ = server.request(path)
                assert status == 200, what
                assert b"TOPSECRET" not in body and b"root:" not in body, (what, path)
        # No log roots (the default): no log file is read at all.
        db.configure()
        assert server.json(f"/api/runs/{shown}")["log_tail"] is None
    finally:
        server.stop()


def test_a_fifo_or_a_device_as_log_file_neither_hangs_nor_crashes(
    db: Backend, logs: dict[str, Path]
) -> None:
    root = logs["root"]
    fifo = root / "pipe.log"
    os.mkfifo(fifo)
    big = root / "big.log"
    big.write_bytes(b"x" * (8 << 20) + b"\nthe end\n")
    # /dev listed as a root: even there only regular files are read.
    db.configure(log_roots=[str(root), "/dev"])
    runs = [
        _run_with_log(str(root), "pipe.log"),
        _run_with_log("/dev", "zero"),
        _run_with_log(str(root), "big.log"),
    ]
    tasker.flush()
    server = Dashboard()
    try:
        # Several at once, as auto-refreshing pages would send them.
        results: list[tuple[int, bytes, float]] = []
        threads = [
            threading.Thread(target=lambda r=r: results.append(server.request(f"/api/runs/{r}")))
            for r in runs * 4
        ]
        for thread in threads:
            thread.start()
        status, body, seconds = server.request("/healthz", timeout=5)
        assert (status, body) == (200, b"ok") and seconds < 2
        for thread in threads:
            thread.join(timeout=30)
        assert len(results) == len(threads)
        assert all(status == 200 and seconds < 10 for status, _, seconds in results)
        fifo_run, zero_run, big_run = (server.json(f"/api/runs/{r}") for r in runs)
        assert fifo_run["log_tail"] is None and zero_run["log_tail"] is None
        tail = big_run["log_tail"]
        assert tail.endswith("the end\n") and len(tail.encode()) <= 64 * 1024
        status, _, seconds = server.request("/healthz", timeout=5)
        assert status == 200 and seconds < 2
    finally:
        server.stop()


def test_a_host_header_of_another_site_is_refused() -> None:
    server = Dashboard()
    try:
        port = server.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
            assert server.request("/healthz", host)[0] == 200, host
        for host in (
            "attacker.example",
            f"attacker.example:{port}",
            f"127.0.0.1.attacker.example:{port}",
            "127.0.0.1:1",  # another port of this machine: another site
            "127.0.0.1",  # port 80
            f"127.0.0.1:{port}@attacker.example",
            "",
        ):
            status, _, _ = server.request("/healthz", host.encode())
            assert status == 400, host
        assert server.request("/healthz", None)[0] == 400  # no Host header at all
    finally:
        server.stop()
    tasker.configure(allowed_hosts=["tasker.example.com"], console="false")
    server = Dashboard()
    try:
        assert server.request("/healthz", f"tasker.example.com:{server.port}")[0] == 200
        assert server.request("/healthz", "tasker.example.com")[0] == 200
        assert server.request("/healthz", "attacker.example")[0] == 400
    finally:
        server.stop()


def test_odd_tokens_are_refused_never_an_error() -> None:
    server = Dashboard(token="s3cr3t-token")
    try:
        odd: list[tuple[bytes, dict[str, bytes]]] = [
            (b"/healthz?token=%C3%BC%E2%82%AC", {}),  # non-ASCII, percent-encoded
            (b"/healthz?token=%FF%FE", {}),  # not even UTF-8
            (b"/healthz?token=", {}),  # empty
            (b"/healthz?token=" + b"x" * 4000, {}),
            (b"/healthz", {"Authorization": "Bearer ü€".encode()}),
            (b"/healthz", {"Authorization": b"Bearer \xff\xfe"}),
            (b"/healthz", {"Authorization": b"Bearer "}),
            (b"/healthz", {"Cookie": "tasker_token=ü".encode()}),
            (b"/healthz", {"Cookie": b"tasker_token="}),
        ]
        for path, headers in odd:
            status, _, _ = server.request(path, headers=headers)
            assert status in (401, 403), (path, headers, status)
        # Raw non-ASCII bytes in the request line: uvicorn itself refuses the request.
        assert server.request("/healthz?token=ü€".encode())[0] in (400, 401, 403)
        assert server.request("/healthz?token=s3cr3t-token")[0] == 200
        assert (
            server.request("/healthz", headers={"Authorization": b"Bearer s3cr3t-token"})[0] == 200
        )
    finally:
        server.stop()
    from tasker.dashboard import create_app

    with pytest.raises(tasker.ConfigError, match="printable ASCII"):
        create_app("bad token; with spaces")


# ---------------------------------------------------------------------------- no creation

READ_COMMANDS = (
    ("status",),
    ("status", "--json"),
    ("history",),
    ("show", "3f0c1a2b"),
    ("watch", "--count", "1", "--interval", "0.1"),
    ("export",),
    ("export", "--format", "json"),
    ("active",),
    ("config", "--check"),
)


@pytest.fixture
def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_read_commands_never_create_a_database(
    args: tuple[str, ...], cli_env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    done = tasker_cli({**cli_env, "TASKER_DB_URL": f"sqlite:///{missing}"}, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"no tasker database at {missing}" in done.stderr and "tasker init" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "nonexistent").exists()


def test_an_unset_variable_in_the_path_creates_nothing(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path / "project"
    work.mkdir()
    (work / ".tasker.yml").write_text("database:\n  path: ${NOPE}/x.db\n", encoding="utf-8")
    existed = Path("/x.db").exists()
    done = tasker_cli({**cli_env, "TASKER_CONFIG": str(work / ".tasker.yml")}, "status")
    assert done.returncode == 1 and "no tasker database at /x.db" in done.stderr
    assert "database.path" in done.stderr  # where the path came from
    assert Path("/x.db").exists() == existed


def test_the_dashboard_never_creates_a_database(cli_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "x.db"
    env = {**cli_env, "TASKER_DB_PATH": str(missing)}
    done = tasker_cli(env, "dashboard", "--port", str(free_port()))
    assert done.returncode == 1 and f"no tasker database at {missing}" in done.stderr
    assert "Traceback" not in done.stderr and not missing.parent.exists()


def test_writes_still_create_the_database(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "x.db"
    env = {**cli_env, "TASKER_DB_PATH": str(path)}
    done = tasker_cli(env, "init")
    assert done.returncode == 0 and path.is_file(), done.stderr
    status = tasker_cli(env, "status")
    assert status.returncode == 0 and "no tasks registered yet" in status.stdout
    other = tmp_path / "tracked" / "y.db"
    script = write_script(tmp_path, JOB)
    ran = run_script(script, {**cli_env, "TASKER_DB_PATH": str(other), "TASKER_CONSOLE": "false"})
    assert ran.returncode == 0 and other.is_file(), ran.stderr
    history = tasker_cli({**cli_env, "TASKER_DB_PATH": str(other)}, "history", "--json")
    assert history.returncode == 0 and json.loads(history.stdout)[0]["status"] == "COMPLETED"


def _tasker_objects(db: Backend, sqlite_path: Path) -> int:
    """What exists where tasker would put its tables: on PostgreSQL the test's schema and
    anything in it, on MariaDB the tables of the test's database, on SQLite the file's."""
    if db.name == "postgresql":
        tag = db.settings["schema"]
        return int(
            db.scalar(
                f"SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{tag}'"
            )
        ) + int(
            db.scalar(
                f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{tag}'"
            )
        )
    if db.name == "mysql":
        return int(
            db.scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE()"
            )
        )
    import sqlite3

    with contextlib.closing(sqlite3.connect(sqlite_path)) as conn:
        return int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])


def test_read_commands_never_create_a_schema_or_tables(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    """A PostgreSQL schema that is not there (the test's own, never created), a MariaDB
    database and an SQLite file that are there but empty: no read command creates the
    schema or a table; each says so in one line, exit status 1."""
    sqlite_path = tmp_path / "empty.db"
    env = dict(child_env)
    if db.name == "sqlite":
        sqlite_path.touch()  # there, but empty (a file made by hand, or by another program)
        env["TASKER_DB_PATH"] = str(sqlite_path)
        config = db.configure(path=str(sqlite_path))
        place = f"the SQLite database {sqlite_path}"
        other = "TASKER_DB_URL or database.path at the file"
    else:
        config = db.configure()
        where = describe_target(config)
        if db.name == "postgresql":
            place = (
                f"schema {db.settings['schema']!r} (from environment variable TASKER_DB_SCHEMA)"
                f" of the {where}"
            )
            other = "TASKER_DB_SCHEMA or database.schema at the schema"
        else:
            place = f"the {where}"
            other = "TASKER_DB_URL or database.dbname at the database"
    expected = (
        f"tasker: error: there are no tasker tables in {place} yet: create them with `tasker "
        f"init` (or by running a tracked task) with this configuration, or point {other} that "
        "has them"
    )
    before = _tasker_objects(db, sqlite_path)
    assert before == 0
    for args in (*READ_COMMANDS, ("reap",), ("dashboard", "--port", str(free_port()))):
        done = tasker_cli(env, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stderr.splitlines() == [expected], args
        assert _tasker_objects(db, sqlite_path) == 0, args
    # Writes still create them (and the fixture drops what they created).
    assert tasker_cli(env, "init").returncode == 0
    status = tasker_cli(env, "status")
    assert status.returncode == 0 and "no tasks registered yet" in status.stdout, status.stderr
    assert _tasker_objects(db, sqlite_path) > 0


def test_a_database_that_is_not_there_is_named_and_never_created(
    db: Backend, child_env: dict[str, str]
) -> None:
    """A server database that is not there: one line naming it and how to create it; tasker
    never creates a database on a server."""
    if db.name == "sqlite":
        pytest.skip("SQLite: test_read_commands_never_create_a_database")
    name = "nodb" + uuid.uuid4().hex[:10]
    url = make_url(db.settings["url"]).set(database=name).render_as_string(hide_password=False)
    env = {**child_env, "TASKER_DB_URL": url}
    config = tasker.configure(url=url, console="false")
    where = describe_target(config)
    for args in (("status",), ("history",), ("config", "--check")):
        done = tasker_cli(env, *args)
        assert done.returncode == 1, (args, done.stderr)
        (line,) = done.stderr.splitlines()
        # The driver's own reason in the middle, in parentheses.
        assert line.startswith(
            f"tasker: error: looking for the schema failed on {where}: there is no database "
            f"{name!r} on that server ("
        ), line
        assert line.endswith(
            f"): create it (CREATE DATABASE {name}), then its tables with `tasker init`"
        ), line
    db.configure()
    if db.name == "postgresql":
        query = f"SELECT count(*) FROM pg_database WHERE datname = '{name}'"
    else:
        query = f"SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{name}'"
    assert db.scalar(query) == 0
