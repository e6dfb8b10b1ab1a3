"""The ``tasker`` command as a user runs it: a real subprocess per call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tasker
from tests.conftest import ROOT, Backend
from tests.helpers import cli_commands


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tasker", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_then_status_json(db: Backend, child_env: dict[str, str]) -> None:
    demo = run_cli("demo", "--delay", "0", env={**child_env, "TASKER_CONSOLE": "true"})
    assert demo.returncode == 0, demo.stderr
    assert "[TASK START] PREREQ / Install System Dependencies" in demo.stderr
    assert "Process FCC Data" in demo.stdout and "NOT_STARTED" in demo.stdout
    status = run_cli("status", "--json", env=child_env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    tasks = {t["task_name"]: t["status"] for t in data["tasks"]}
    assert tasks == {
        "Install System Dependencies": "COMPLETED",
        "Check Disk Space": "SKIPPED",
        "Process FCC Data": "COMPLETED",
        "Build Census Data": "FAILED",
        "Refresh Coverage": "COMPLETED",
        "Publish Report": "COMPLETED",
        "Archive Outputs": "NOT_STARTED",
    }
    none = {"running": 0, "failed": 0, "cancelled": 0, "not_started": 0}
    assert data["stages"] == [
        {"stage_name": "PREREQ", "status": "COMPLETED", "done": 2, "total": 2, **none},
        {"stage_name": "STATIC", "status": "FAILED", "done": 1, "total": 2, **none, "failed": 1},
        {
            "stage_name": "DAILY",
            "status": "STARTED",
            "done": 2,
            "total": 3,
            **none,
            "not_started": 1,
        },
    ]
    only_failed = json.loads(
        run_cli("status", "--json", "--status", "FAILED", env=child_env).stdout
    )
    assert [t["task_name"] for t in only_failed["tasks"]] == ["Build Census Data"]


def test_register_init_and_status_table(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(
        "stage,name,type\nPREREQ,Install R,sh\nSTATIC,Build,python\n", encoding="utf-8"
    )
    init = run_cli("init", env=child_env)
    assert init.returncode == 0, init.stderr
    reg = run_cli("register", str(tasks), env=child_env)
    assert reg.returncode == 0 and "registered 2 task(s)" in reg.stdout
    status = run_cli("status", env=child_env)
    lines = status.stdout.splitlines()
    assert lines[0].split() == [
        "STAGE",
        "TASK",
        "STATUS",
        "PROGRESS",
        "SUBTASK",
        "HOST",
        "STARTED",
        "DURATION",
        "ETA",
    ]
    assert lines[1].split() == ["PREREQ", "Install", "R", "NOT_STARTED"]
    assert "PREREQ: NOT_STARTED (0/1 tasks done, 1 not started)" in status.stdout


def test_config_masks_the_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env["PYTHONPATH"] = str(ROOT)
    env["TASKER_DB_URL"] = "postgresql://me:topsecret123@db.internal:5432/pipes"
    out = run_cli("config", "--json", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "topsecret123" not in out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["host"] == {"value": "db.internal", "source": "environment variable TASKER_DB_URL"}
    assert data["password"]["value"] == "***"


def test_errors_go_to_stderr_with_exit_status_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env["PYTHONPATH"] = str(ROOT)
    env["TASKER_DB_PORT"] = "eighty"
    out = run_cli("status", env=env, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("tasker: error: environment variable TASKER_DB_PORT")
    assert out.stdout == ""
    usage = run_cli(env=env, cwd=tmp_path)
    assert usage.returncode == 2
    bad = run_cli("status", "--bogus", env=env, cwd=tmp_path)
    assert bad.returncode == 2


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite", "mysql"])
def test_schema_command_prints_the_generated_sql(dialect: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = run_cli("schema", "--dialect", dialect, env=env)
    assert out.returncode == 0
    assert out.stdout == (ROOT / "schema" / f"{dialect}.sql").read_text(encoding="utf-8")


def test_import_tasker_loads_no_driver_pandas_or_cli() -> None:
    code = (
        "import sys, tasker\n"
        "heavy = ['psycopg', 'pymysql', 'sqlite3', 'pandas', 'sqlalchemy', 'tasker.cli',"
        " 'starlette', 'uvicorn', 'jinja2', 'tasker.dashboard', 'argparse', 'wrapt',"
        " 'tasker.instrument.decorators', 'tasker.runtime.writer', 'tasker.explicit.tasks',"
        " 'tasker.queries', 'tasker.store']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"


# What a command that reads or updates one run must not load: the background writer and its
# batches (a command writes at once, with one statement), and the automatic layer.
NOT_FOR_A_COMMAND = [
    "tasker.runtime.writer",
    "tasker.runtime.batches",
    "tasker.runtime.delivery",
    "tasker.store.batched",
    "tasker.store.folding",
    "tasker.store.levels",
    "tasker.store.multirow",
    "tasker.instrument.decorators",
    "tasker.instrument.track",
    "tasker.instrument.blocks",
    "tasker.instrument.carry",
    "wrapt",
]


@pytest.mark.parametrize("command", ["status", "update"])
def test_status_and_update_load_no_writer_batches_or_automatic_layer(
    db: Backend, child_env: dict[str, str], command: str
) -> None:
    # A run owned by this (live) process: status then has an active row, and reaps.
    run_id = tasker.task_start("LIGHT", "one run", on_behalf_of=os.getpid())
    tasker.flush()
    args = ["status"] if command == "status" else ["update", run_id, "--message", "light"]
    code = (
        "import json, sys\n"
        "from tasker.cli import main\n"
        "status = main(sys.argv[1:])\n"
        f"heavy = {NOT_FOR_A_COMMAND!r}\n"
        "print(json.dumps([status, [m for m in heavy if m in sys.modules]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [0, []]
    if command == "update":
        assert tasker.get_run(run_id).overall_progress_message == "light"


def test_the_cli_page_documents_every_command_and_option() -> None:

    from tasker.cli.parser import build

    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    commands = cli_commands(build())
    assert len(commands) >= 24
    for name, parser in commands.items():
        assert f"`tasker {name}" in page, f"tasker {name} is not documented"
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in page, f"tasker {name} {flag} is not documented"


def test_a_command_line_builds_only_its_commands_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tasker.cli.parser import COMMANDS, build, parse

    def top(parser: object) -> list[str]:
        return [name for name in cli_commands(parser) if " " not in name]

    assert top(build()) == list(COMMANDS)
    for argv in (["status"], ["--config", "x.yml", "status", "--json"], ["--config=x", "status"]):
        args, parser = parse(argv)
        assert args.command == "status" and top(parser) == ["status"]
    # An abbreviated option before the command: the whole parser, which takes it all the same.
    args, parser = parse(["--conf", "x.yml", "status"])
    assert args.command == "status" and args.config == "x.yml" and top(parser) == list(COMMANDS)
    # Help before the command lists every command.
    with pytest.raises(SystemExit):
        parse(["-h", "status"])
    out = capsys.readouterr().out
    assert all(f"    {name} " in out for name in COMMANDS)


def test_status_shows_an_eta_for_an_active_run(db: Backend, child_env: dict[str, str]) -> None:
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from tasker.runtime.recorder import RECORDER

    run_id = tasker.task_start("ETA", "counting")
    tasker.subtask_start("items", items_total=100)
    tasker.subtask_update(items_complete=25)
    # The run started 1,000 s ago and its subtask 100 s ago: the rate is the subtask's own
    # (25 items in 100 s), not the run's (25 in 1,000 s, which said an ETA of 50 minutes).
    now = datetime.now(timezone.utc)
    began, run_began = now - timedelta(seconds=100), now - timedelta(seconds=1000)
    RECORDER.store.update_run(run_id, {"start_time": run_began}, run_began)
    store = RECORDER.raw_store
    sp = store.t.subtask_progress
    with store.engine.begin() as conn:
        conn.execute(update(sp).where(sp.c.run_id == run_id).values(start_time=began))
    status = run_cli("status", "--stage", "ETA", env=child_env)
    took = (datetime.now(timezone.utc) - began).total_seconds()
    (row,) = [ln for ln in status.stdout.splitlines() if "counting" in ln]
    # 25 items in 100 s (and the moments the command took): 75 more take 3 times as long,
    # the current subtask's time left (the task has no past runs to tell the whole run's).
    minutes, seconds, what = row.split()[-3:]
    eta = int(minutes.rstrip("m")) * 60 + int(seconds.rstrip("s"))
    assert what == "subtask" and 300 <= eta <= round(3 * took) + 1, row
    shown = json.loads(run_cli("status", "--stage", "ETA", "--json", env=child_env).stdout)
    took = (datetime.now(timezone.utc) - began).total_seconds()
    (task,) = shown["tasks"]
    assert 25 / took <= task["rate"] <= 0.25 and 1000 <= task["duration"] <= 1000 + took
    assert task["eta_task"] is None and task["subtask_start_time"] is not None


def test_config_option_before_or_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "mine.yml"
    config.write_text(f"database:\n  path: {tmp_path / 'mine.db'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env["PYTHONPATH"] = str(ROOT)
    for args in (
        ("--config", str(config), "config", "--json"),
        ("config", "--json", "--config", str(config)),
    ):
        out = run_cli(*args, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["path"]["value"] == str(tmp_path / "mine.db")


def test_a_process_loads_only_its_own_databases_dialect(tmp_path: Path) -> None:
    code = (
        "import sys, tasker\n"
        "tasker.get_tasks()\n"
        "others = ['sqlalchemy.dialects.postgresql', 'sqlalchemy.dialects.mysql']\n"
        "loaded = [m for m in others if m in sys.modules]\n"
        "print('sqlalchemy.dialects.sqlite' in sys.modules, loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env.update(
        PYTHONPATH=str(ROOT), TASKER_DB_PATH=str(tmp_path / "one.db"), TASKER_CONSOLE="false"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "True []"


def test_a_closed_pipe_and_a_full_disk_end_the_command_quietly(
    db: Backend, child_env: dict[str, str]
) -> None:
    for i in range(2000):  # more output than a pipe holds
        tasker.task_start("PIPE", f"task {i}", quiet=True)
        tasker.task_complete(quiet=True)
    command = [sys.executable, "-m", "tasker", "export", "--format", "csv"]
    # `tasker export | head -c 100`: the reader goes away early.
    proc = subprocess.Popen(command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert len(proc.stdout.read(100)) == 100
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141 and err == "", err
    finally:
        proc.stdout.close()
        proc.stderr.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # `tasker export > /dev/full`: one line, exit 1.
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            command, env=child_env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "tasker: error: cannot write the output: No space left on device"
    ]
