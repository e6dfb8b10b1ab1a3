"""The command line follows shell conventions: the run as an optional RUN_ID (a unique prefix
will do) else $TASKER_RUN_ID, a parser per subcommand, help on every argument, statuses
listed, usage errors (exit 2) with the subcommand's usage line, output fitted to the terminal,
and the same progress in every view."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import tasker
from tests.conftest import Backend
from tests.helpers import cli_commands, tasker_cli

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# ---------------------------------------------------------------------------- help


def test_every_argument_of_every_command_has_help_and_shows_its_default() -> None:
    from tasker.cli.parser import RUN_STATUSES, TASK_STATUSES, build

    commands = cli_commands(build())
    assert {"subtask start", "subtask increment", "update", "export"} <= set(commands)
    for name, parser in commands.items():
        text = parser.format_help()
        assert "Example:" in text, name
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), f"tasker {name} {action.dest}: no help"
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                # The formatted help says what happens without the option.
                assert "default" in parser._get_formatter()._get_help_string(action), (
                    f"tasker {name} {action.option_strings[0]}: default not shown"
                )
            if action.dest == "status":
                allowed = TASK_STATUSES if name == "status" else RUN_STATUSES
                assert action.help is not None and all(s in action.help for s in allowed), (
                    f"tasker {name} --status does not list the statuses"
                )
    assert "(default: 1.0)" in commands["watch"].format_help()
    assert "(default: 0.02)" in commands["demo"].format_help()


def test_usage_errors_name_the_subcommand_and_exit_2(child_env: dict[str, str]) -> None:
    env = {k: v for k, v in child_env.items() if k != "TASKER_RUN_ID"}
    extra = tasker_cli(env, "subtask", "start", "a", "--by", "3")
    assert extra.returncode == 2
    assert extra.stderr.startswith("usage: tasker subtask start")
    assert "tasker subtask start: error: unrecognized arguments: --by 3" in extra.stderr
    missing = tasker_cli(env, "subtask", "start")
    assert missing.returncode == 2 and "required: NAME" in missing.stderr
    no_run = tasker_cli(env, "update", "--message", "x")
    assert no_run.returncode == 2
    assert "no run named: give RUN_ID" in no_run.stderr and "TASKER_RUN_ID" in no_run.stderr
    assert "task_start()" not in no_run.stderr and "run_id=" not in no_run.stderr
    status = tasker_cli(env, "update", "--status", "BOGUS", "--run-id", "abcd")
    assert status.returncode == 2 and "invalid choice: 'BOGUS'" in status.stderr
    config = tasker_cli(env, "--config", "/nonexistent/tasker.yml", "status")
    assert config.returncode == 2
    assert "--config /nonexistent/tasker.yml: no such file" in config.stderr
    assert "TASKER_CONFIG" not in config.stderr
    for out in (extra, missing, no_run, status, config):
        assert "Traceback" not in out.stderr and out.stdout == ""


# ---------------------------------------------------------------------------- which run


def test_the_run_is_a_positional_prefix_or_the_environment(
    db: Backend, child_env: dict[str, str]
) -> None:
    env = {k: v for k, v in child_env.items() if k != "TASKER_RUN_ID"}
    started = tasker_cli(env, "start", "SHELL", "by prefix")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    assert UUID.match(run_id)
    prefix = run_id[:8]
    assert tasker_cli(env, "update", prefix, "--message", "half way").returncode == 0
    first = tasker_cli(env, "subtask", "start", prefix, "Loading", "--items", "10")
    assert (first.returncode, first.stdout.strip()) == (0, "1")
    assert tasker_cli(env, "subtask", "increment", prefix, "--by", "4").returncode == 0
    # The environment names the run when RUN_ID is left out; --run-id is the same as RUN_ID.
    with_env = {**env, "TASKER_RUN_ID": run_id}
    assert tasker_cli(with_env, "subtask", "increment", "--by", "2").returncode == 0
    assert tasker_cli(env, "subtask", "complete", "--run-id", prefix).returncode == 0
    second = tasker_cli(with_env, "subtask", "start", "Writing")
    assert (second.returncode, second.stdout.strip()) == (0, "2")
    both = tasker_cli(env, "complete", prefix, "--run-id", "ffffffff")
    assert both.returncode == 2 and "two runs named" in both.stderr
    unknown = tasker_cli(env, "complete", "ffffffff")
    assert unknown.returncode == 1 and "no run id starts with 'ffffffff'" in unknown.stderr
    assert tasker_cli(env, "complete", prefix, "--message", "done").returncode == 0
    again = tasker_cli(env, "fail", prefix, "--message", "too late")
    assert again.returncode == 1 and "Traceback" not in again.stderr

    run = tasker.get_run(run_id)
    assert (run.status, run.overall_progress_message) == ("COMPLETED", "done")
    subs = tasker.get_subtask_progress(run_id)
    assert [(s.subtask_number, s.subtask_name, s.items_complete, s.status) for s in subs] == [
        (1, "Loading", 6, "COMPLETED"),
        (2, "Writing", 0, "COMPLETED"),
    ]


def test_an_ambiguous_prefix_is_refused_as_usage(db: Backend, child_env: dict[str, str]) -> None:
    from tasker.runtime import runs

    # Two runs whose ids share their first 8 characters.
    shared = ["abcd0000-0000-4000-8000-000000000001", "abcd0000-0000-4000-8000-000000000002"]
    for run_id in shared:
        runs.start_run("AMBIGUOUS", run_id[-1], sync=True, run_id=run_id, root=True)
        tasker.task_complete(run_id=run_id)
    tasker.flush()
    out = tasker_cli(child_env, "show", "abcd0000")
    assert out.returncode == 2 and "'abcd0000' is the start of several run ids" in out.stderr
    one = json.loads(tasker_cli(child_env, "show", shared[1][:-1] + "2", "--json").stdout)
    assert one["run_id"] == shared[1]


def test_a_script_that_starts_a_run_is_recorded_as_its_owner(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "nightly load.sh"
    script.write_text(
        'set -e\nrun=$(tasker start SHELL "nightly load")\ntasker complete "$run"\necho "$run"\n',
        encoding="utf-8",
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {**child_env, "PATH": bin_dir + os.pathsep + child_env.get("PATH", "")}
    out = subprocess.run(
        ["bash", script.name, "--full"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    run = tasker.get_run(out.stdout.strip())
    assert (run.task_type, run.script_filename) == ("sh", "nightly load.sh")
    assert run.script_path == str(tmp_path.resolve())
    assert run.command_line == "bash 'nightly load.sh' --full"
    assert run.python_version is None  # the run is the shell script's, not tasker's
    assert run.status == "COMPLETED"


# ---------------------------------------------------------------------------- progress


def _progress_views(run_id: str, child_env: dict[str, str]) -> dict[str, str]:
    """What each view shows as the progress of ``run_id`` (a task named ``views``)."""
    env = {**child_env, "COLUMNS": "400"}
    status = tasker_cli(env, "status", "--stage", "VIEWS").stdout
    (status_row,) = [ln for ln in status.splitlines() if " views " in ln]
    history = tasker_cli(env, "history", "--stage", "VIEWS").stdout
    (history_row,) = [ln for ln in history.splitlines() if ln.startswith(run_id[:8])]
    show = tasker_cli(env, "show", run_id[:8]).stdout
    (show_row,) = [ln for ln in show.splitlines() if ln.startswith("progress ")]
    return {"status": status_row, "history": history_row, "show": show_row}


def test_every_view_shows_the_same_progress(db: Backend, child_env: dict[str, str]) -> None:
    from tasker.cli.watch import render
    from tasker.dashboard import data

    run_id = tasker.task_start("VIEWS", "views", total_subtasks=3)
    tasker.subtask_start("first", items_total=5)
    tasker.subtask_complete()
    tasker.subtask_start("Loading", items_total=40)
    tasker.subtask_increment(13)
    tasker.task_update(overall_percent=50.0)  # the run's own figure: not mixed with items
    tasker.flush()
    shown = "13/40 32%"
    for view, line in _progress_views(run_id, child_env).items():
        assert shown in line and "2/3 Loading" in line, f"{view}: {line}"
    active = tasker_cli({**child_env, "COLUMNS": "400"}, "active").stdout
    assert shown in active and "2/3 Loading" in active
    screen = render(tasker.get_task_status(stage="VIEWS"), datetime.now(timezone.utc), False)
    (watch_row,) = [ln for ln in screen if ln.startswith("  views")]
    assert " 32.5%" in watch_row and "13/40" in watch_row
    overview = data.overview(stage="VIEWS")
    (task,) = overview["tasks"]
    assert task["progress"] == {
        "items": "13/40",
        "percent": 32.5,
        "text": shown,
        "subtask": "2/3 Loading",
    }
    (row,) = data.run_rows([tasker.get_run(run_id)])
    assert row["progress"] == task["progress"]
    # A subtask ended early (a break out of its loop) shows the share it reached, not 100%.
    tasker.subtask_complete()
    tasker.flush()
    (sub,) = [s for s in tasker.get_subtask_progress(run_id) if s.subtask_name == "Loading"]
    assert (sub.status, sub.items_complete, sub.percent_complete) == ("COMPLETED", 13, 100.0)
    for view, line in _progress_views(run_id, child_env).items():
        assert shown in line, f"{view}: {line}"
    tasker.task_complete()


def test_progress_definition() -> None:
    from tasker.run_progress import progress

    assert progress(status="NOT_STARTED", overall_percent=None).text == ""
    # No subtask: the run's own percent.
    assert progress(status="COMPLETED", overall_percent=100.0).text == "100%"
    # Items and percent from the same subtask.
    p = progress(
        status="FAILED",
        overall_percent=50.0,
        total_subtasks=2,
        current_subtask=1,
        subtask_name="Downloading",
        subtask_percent=100.0,
        items_total=10,
        items_complete=6,
    )
    assert (p.text, p.subtask) == ("6/10 60%", "1/2 Downloading")
    # A subtask counting without a total: its own percent, else the run's.
    p = progress(
        status="RUNNING",
        overall_percent=20.0,
        current_subtask=3,
        subtask_name="Scanning",
        items_complete=7,
    )
    assert (p.text, p.subtask) == ("7 20%", "3. Scanning")
    p = progress(
        status="RUNNING",
        overall_percent=20.0,
        current_subtask=3,
        subtask_name="Scanning",
        subtask_percent=75.0,
    )
    assert p.text == "75%"
    assert (
        progress(
            status="RUNNING",
            overall_percent=None,
            current_subtask=1,
            subtask_name="over",
            items_total=4,
            items_complete=9,
        ).percent
        == 100.0
    )


def test_show_formats_for_people_and_json_keeps_raw_values(
    db: Backend, child_env: dict[str, str]
) -> None:
    run_id = tasker.task_start("SHOW", "formatted")
    tasker.task_complete()
    tasker.flush()
    env = {**child_env, "TZ": "UTC"}
    text = tasker_cli(env, "show", run_id).stdout
    fields = dict(
        (ln[:26].strip(), ln[26:]) for ln in text.splitlines() if ln and not ln.startswith(" ")
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", fields["start_time"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", fields["process_start_time"])
    assert re.fullmatch(r"\d+\.\d{3} s", fields["cpu_seconds"]), fields["cpu_seconds"]
    assert fields["overall_percent_complete"] == "100.0%"
    assert re.fullmatch(r"\d+s", fields["duration"])
    raw = json.loads(tasker_cli(env, "show", run_id, "--json").stdout)
    assert isinstance(raw["process_start_time"], float)
    assert isinstance(raw["cpu_seconds"], float)
    assert datetime.fromisoformat(raw["start_time"]).tzinfo is not None


# ---------------------------------------------------------------------------- terminal fit


def test_status_fits_80_columns_and_shows_the_error_of_failed_rows(
    db: Backend, child_env: dict[str, str]
) -> None:
    long_name = "x" * 10_000
    with pytest.warns(tasker.TaskerWarning, match="only the first 255"):
        tasker.task_start("FIT", long_name)
    tasker.subtask_start("counting " * 30, items_total=100)
    tasker.subtask_increment(5)
    failed = tasker.task_start("FIT", "broken")
    tasker.task_fail("ValueError: no input file " + "very long reason " * 20, run_id=failed)
    tasker.flush()
    out = tasker_cli({**child_env, "COLUMNS": "80"}, "status", "--stage", "FIT")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(len(ln) <= 80 for ln in lines), max(lines, key=len)
    (long_row,) = [ln for ln in lines if ln.startswith("FIT") and "xxx" in ln]
    assert "…" in long_row and "5/100 5%" in long_row and "RUNNING" in long_row
    at = next(i for i, ln in enumerate(lines) if " broken " in ln)
    assert lines[at + 1].startswith("    ! ValueError: no input file")
    assert lines[at + 1].endswith("…")
    # Not a terminal and no COLUMNS: every character is kept, for scripts.
    wide = tasker_cli({k: v for k, v in child_env.items() if k != "COLUMNS"}, "status")
    assert long_name[:255] in wide.stdout


def test_watch_fits_an_80_by_24_terminal(db: Backend) -> None:
    from tasker.cli.watch import render

    for i in range(30):
        run_id = tasker.task_start("FIT", f"task number {i} " + "with a long name " * 5)
        tasker.subtask_start("items", items_total=10)
        tasker.subtask_increment(i % 10)
        if i == 0:
            tasker.task_fail("RuntimeError: the disk is full", run_id=run_id)
    tasker.flush()
    rows = tasker.get_task_status(stage="FIT")
    screen = render(rows, datetime.now(timezone.utc) + timedelta(seconds=5), False, 80, 24)
    assert len(screen) <= 23  # the cursor's line stays free: nothing scrolls away
    assert all(len(ln) <= 80 for ln in screen), max(screen, key=len)
    assert screen[0].startswith("tasker watch — ")
    assert screen[2].startswith("FIT  FAILED  0/30 tasks done, 29 running, 1 failed")
    assert screen[4] == "    ! RuntimeError: the disk is full"
    assert re.fullmatch(r"… \d+ more lines: a taller terminal or --stage", screen[-1])
    narrow = render(rows, datetime.now(timezone.utc), False, 50, None)
    assert all(len(ln) <= 50 for ln in narrow)
    assert any("RUNNING" in ln and "…" in ln for ln in narrow)


# ---------------------------------------------------------------------------- export


def test_export_takes_the_filters_of_history(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    kept = tasker.task_start("EXPORT", "kept")
    tasker.task_fail("bad", run_id=kept)
    other = tasker.task_start("EXPORT", "other")
    tasker.task_complete(run_id=other)
    tasker.task_complete(run_id=tasker.task_start("ELSEWHERE", "kept"))
    tasker.flush()
    out = tasker_cli(
        child_env,
        "export",
        "--format",
        "json",
        "--stage",
        "EXPORT",
        "--status",
        "failed",
        "--since",
        "1h",
        "--limit",
        "5",
    )
    assert out.returncode == 0, out.stderr
    assert [r["run_id"] for r in json.loads(out.stdout)] == [kept]
    by_task = tasker_cli(child_env, "export", "--format", "json", "--task", "kept", "--limit", "1")
    assert len(json.loads(by_task.stdout)) == 1
    none = tasker_cli(child_env, "export", "--format", "json", "--until", "2000-01-01")
    assert json.loads(none.stdout) == []
