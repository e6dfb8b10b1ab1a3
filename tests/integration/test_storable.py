"""Every value is made storable before it is sent: text cut to what the server takes in one
statement (MariaDB's max_allowed_packet; PostgreSQL's and SQLite's own bounds), and escaped
text cut back to its column's width — with one TaskerWarning naming the field, and never a
tracking error reaching the program."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import tasker
from tasker.runtime.recorder import RECORDER
from tasker.validate import sent_size
from tests.conftest import Backend

BIG = 20 * 2**20  # beyond the test MariaDB's max_allowed_packet (16 MiB)


def _told(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, tasker.TaskerWarning)]


def test_an_oversized_value_is_cut_to_what_the_server_takes(db: Backend, tmp_path: Path) -> None:
    """A 20 MiB message, by the explicit API and the automatic layer, and a failure with a
    20 MiB exception message: with strict off nothing reaches the code; on MariaDB each text
    is cut to max_allowed_packet (less 64 KiB for the rest of the statement), with a warning
    naming the field; the runs before and after are written live, nothing is journaled."""
    journal_dir = tmp_path / "journal"
    db.configure(journal_dir=str(journal_dir))
    outages = RECORDER.writer.stats.outages  # the process's count: earlier tests' too

    @tasker.task(stage="BIG", name="live")
    def live() -> int:
        return 1

    live()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explicit = tasker.task_start("BIG", "explicit")
        tasker.task_update(message="x" * BIG)
        tasker.task_complete()
        with tasker.task("BIG", "automatic") as run:
            run.update(message="y" * BIG)
        with pytest.raises(RuntimeError), tasker.task("BIG", "automatic failure") as failing:
            raise RuntimeError("z" * BIG)
        live()
        assert tasker.flush()
    runs = {r.run_id: r for r in tasker.get_task_history(stage="BIG", limit=None)}
    assert sorted((r.task_name, r.status) for r in runs.values()) == [
        ("automatic", "COMPLETED"),
        ("automatic failure", "FAILED"),
        ("explicit", "COMPLETED"),
        ("live", "COMPLETED"),
        ("live", "COMPLETED"),
    ]
    failure = runs[failing.run_id]
    detail = failure.error_detail or ""
    assert failure.error_type == "RuntimeError"
    assert detail.startswith("Traceback (most recent call last):")
    if db.name == "mysql":
        budget = int(db.scalar("SELECT @@max_allowed_packet")) - 64 * 1024
        assert runs[explicit].overall_progress_message == "x" * budget
        assert runs[run.run_id].overall_progress_message == "y" * budget
        # Two long texts in one statement share it: the smaller gets half, the other the rest.
        assert failure.error_message == "z" * (budget // 2)
        assert budget - 2 <= sent_size(failure.error_message) + sent_size(detail) <= budget
        assert sorted(w.split(" takes ")[0] for w in _told(caught)) == sorted(
            [
                f"overall_progress_message of run {explicit}",
                f"overall_progress_message of run {run.run_id}",
                f"error_message of run {failing.run_id}",
                f"error_detail of run {failing.run_id}",
            ]
        )
        assert all("max_allowed_packet of" in w for w in _told(caught))
    else:
        assert runs[explicit].overall_progress_message == "x" * BIG
        assert runs[run.run_id].overall_progress_message == "y" * BIG
        assert failure.error_message == "z" * BIG and "z" * BIG in detail
        assert _told(caught) == []
    # Written live: no outage taken, nothing journaled or set aside.
    assert RECORDER.writer.stats.outages == outages
    assert not journal_dir.exists() or list(journal_dir.rglob("*.jsonl")) == []


def test_under_strict_an_oversized_value_is_cut_never_a_database_error(db: Backend) -> None:
    db.configure(strict=True)
    run_id = tasker.task_start("BIG", "strict")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasker.task_update(message="x" * BIG)
        tasker.subtask_start("step", message="'" * BIG)
    tasker.task_complete()
    run = tasker.get_run(run_id)
    (sub,) = tasker.get_subtask_progress(run_id)
    assert run.status == "COMPLETED"
    if db.name == "mysql":
        budget = int(db.scalar("SELECT @@max_allowed_packet")) - 64 * 1024
        assert run.overall_progress_message == "x" * budget
        assert sub.progress_message == "'" * (budget // 2)  # each quote is sent escaped
        assert [w.split(" takes ")[0] for w in _told(caught)] == [
            f"overall_progress_message of run {run_id}",
            f"progress_message of subtask 1 of run {run_id}",
        ]
    else:
        assert run.overall_progress_message == "x" * BIG
        assert sub.progress_message == "'" * BIG
        assert _told(caught) == []


WIDE = """
import tasker

@tasker.task(stage="WIDE", name="decorated")
def work():
    return 1

work()
tasker.task_start("WIDE", "explicit")
tasker.task_complete()
tasker.task_start("WIDE", "given path", script_path="/" + "y" * 300)
tasker.task_complete()
print("done")
"""


def test_escaped_text_is_cut_to_its_columns_width(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    """A script named with 150 Latin-1 bytes (each escapes to four characters: 603 in all)
    and given a non-UTF-8 argument, and a script path given with a 300-character file name:
    both runs and the decorated one are recorded, each script_filename cut to its 255
    characters, each cut told once naming the field."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    script = os.path.join(os.fsencode(folder), b"\xe9" * 150 + b".py")
    with open(script, "wb") as fh:
        fh.write(textwrap.dedent(WIDE).encode())
    result = subprocess.run(
        [sys.executable, script, b"caf\xe9.csv"],
        env=child_env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    assert (result.returncode, result.stdout) == (0, b"done\n"), stderr
    escaped = ("\\xe9" * 150 + ".py")[:255]
    assert {
        r.task_name: (r.status, r.script_filename, r.script_path)
        for r in tasker.get_task_history(stage="WIDE", limit=None)
    } == {
        "decorated": ("COMPLETED", escaped, str(folder)),
        "explicit": ("COMPLETED", escaped, str(folder)),
        "given path": ("COMPLETED", "y" * 255, "/"),
    }
    unicode = (
        "contains text that is not valid Unicode (lone surrogates); they are stored as \\x escapes"
    )
    told = [
        line.split("TaskerWarning: ", 1)[1]
        for line in stderr.splitlines()
        if "TaskerWarning: " in line
    ]
    assert sorted(told) == sorted(
        [
            f"command_line (of this process) {unicode}",
            f"script_filename (of this process) {unicode}",
            "script_filename (of this process) is 603 characters long; only the first 255 are"
            " stored",
            f"script_filename {unicode}",
            "script_filename is 603 characters long; only the first 255 are stored",
            "script_filename is 300 characters long; only the first 255 are stored",
        ]
    ), stderr


def test_a_registered_tasks_text_is_escaped_and_cut_to_its_columns(db: Backend) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasker.register_task(
            "REG",
            "wide",
            "t" * 30,
            script_path="/scripts/" + "\udce9" * 100 + ".py",  # 403 characters escaped
            log_filename="l" * 300,
            description="caf\udce9",
        )
    (task,) = tasker.get_tasks(stage="REG")
    assert (task.task_type, task.script_path, task.script_filename, task.log_filename) == (
        "t" * 20,
        "/scripts",
        ("\\xe9" * 100 + ".py")[:255],
        "l" * 255,
    )
    assert task.description == "caf\\xe9"
    assert sorted(w.split(": ", 1)[1].split(" ")[0] for w in _told(caught)) == [
        "description",
        "log_filename",
        "script_filename",
        "script_filename",
        "task_type",
    ]
