"""The explicit tracking API and the queries, on every backend."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import tasker
from tasker import Status
from tests.conftest import Backend
from tests.helpers import need


def test_task_start_records_who_where_when(db: Backend) -> None:
    before = datetime.now(timezone.utc)
    run_id = tasker.task_start("STATIC", "Build Database", total_subtasks=3, message="go")
    run = tasker.get_run(run_id)
    assert uuid.UUID(run_id)
    assert run.run_id == run_id
    assert run.status == "STARTED" and run.status is Status.STARTED
    assert run.stage_name == "STATIC" and run.task_name == "Build Database"
    assert run.hostname == socket.gethostname()
    assert run.process_id == os.getpid()
    assert run.parent_pid == os.getppid()
    assert run.user_name
    assert run.python_version and run.command_line
    assert run.total_subtasks == 3
    assert run.overall_progress_message == "go"
    assert run.start_time is not None and run.start_time.tzinfo is not None
    assert before - timedelta(seconds=1) <= run.start_time <= datetime.now(timezone.utc)
    assert run.end_time is None


def test_unregistered_task_is_registered_on_the_fly_in_order(db: Backend) -> None:
    tasker.task_start("B", "second-stage task")
    tasker.task_complete()
    tasker.task_start("A", "third-stage task")
    tasker.task_complete()
    tasker.task_start("B", "another")
    tasker.task_complete()
    tasks = tasker.get_tasks()
    assert [(t.stage_name, t.stage_order, t.task_name, t.task_order) for t in tasks] == [
        ("B", 1, "second-stage task", 1),
        ("B", 1, "another", 2),
        ("A", 2, "third-stage task", 1),
    ]


def test_task_start_sets_the_current_run_and_complete_restores_the_parent(db: Backend) -> None:
    outer = tasker.task_start("S", "outer")
    inner = tasker.task_start("S", "inner")
    assert tasker.get_run().run_id == inner
    assert tasker.get_run(inner).parent_run_id == outer
    tasker.task_complete()
    assert tasker.get_run().run_id == outer
    tasker.task_complete()
    with pytest.raises(tasker.UnknownRunError, match="no current run"):
        tasker.task_update(message="nobody listening")


def test_task_update_status_percent_message(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.task_update("RUNNING", overall_percent=42.5, message="half way", current_subtask=2)
    run = tasker.get_run(run_id)
    assert run.status == "RUNNING"
    assert run.overall_percent_complete == pytest.approx(42.5)
    assert run.overall_progress_message == "half way"
    assert run.current_subtask == 2
    assert run.last_update is not None and run.last_update >= run.start_time  # type: ignore[operator]


def test_task_complete_sets_end_time_and_closes_open_subtasks(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("left open", items_total=10)
    tasker.subtask_increment(4)
    tasker.task_complete("all done")
    run = tasker.get_run(run_id)
    assert run.status == "COMPLETED"
    assert run.end_time is not None and run.end_time >= run.start_time  # type: ignore[operator]
    assert run.overall_percent_complete == 100.0
    assert run.overall_progress_message == "all done"
    assert run.duration is not None and run.duration >= 0
    (sub,) = tasker.get_subtask_progress(run_id)
    assert sub.status == "COMPLETED" and sub.end_time is not None
    assert sub.items_complete == 4  # the count stays true


def test_task_fail_fails_unfinished_subtasks_only(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("done step")
    tasker.subtask_complete()
    tasker.subtask_start("running step", items_total=5)
    tasker.subtask_increment(2)
    tasker.task_fail("disk full", "Traceback: ...", error_type="OSError", exit_code=3)
    run = tasker.get_run(run_id)
    assert run.status == "FAILED"
    assert run.error_message == "disk full"
    assert run.error_detail == "Traceback: ..."
    assert run.error_type == "OSError"
    assert run.exit_code == 3
    assert run.end_time is not None
    subs = tasker.get_subtask_progress(run_id)
    assert [s.status for s in subs] == ["COMPLETED", "FAILED"]
    assert subs[1].end_time is not None
    assert subs[1].error_message == "ended FAILED with its run"


def test_task_fail_with_an_exception_records_type_and_traceback(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    try:
        {}["missing"]
    except KeyError as exc:
        tasker.task_fail(exc)
    run = tasker.get_run(run_id)
    assert run.error_type == "KeyError"
    assert run.error_message == "'missing'"
    assert run.error_detail is not None
    assert "Traceback (most recent call last)" in run.error_detail
    assert "test_task_fail_with_an_exception" in run.error_detail


@pytest.mark.parametrize("status", ["SKIPPED", "CANCELLED"])
def test_terminal_statuses_through_task_update_end_the_run(db: Backend, status: str) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("step")
    tasker.task_update(status, message="stopped")
    run = tasker.get_run(run_id)
    assert run.status == status
    assert run.end_time is not None
    (sub,) = tasker.get_subtask_progress(run_id)
    assert sub.status == status
    assert tasker.get_active_tasks() == []


def test_subtasks_are_numbered_and_make_the_run_running(db: Backend) -> None:
    run_id = tasker.task_start("S", "T", total_subtasks=2)
    assert tasker.get_run(run_id).status == "STARTED"
    assert tasker.subtask_start("Loading data") == 1
    run = tasker.get_run(run_id)
    assert run.status == "RUNNING" and run.current_subtask == 1
    tasker.subtask_complete("loaded")
    assert tasker.get_run(run_id).overall_percent_complete == pytest.approx(50.0)
    assert tasker.subtask_start("Processing", items_total=56) == 2
    assert tasker.get_run(run_id).current_subtask == 2
    subs = tasker.get_subtask_progress(run_id)
    assert [(s.subtask_number, s.subtask_name, s.status) for s in subs] == [
        (1, "Loading data", "COMPLETED"),
        (2, "Processing", "STARTED"),
    ]
    assert subs[0].percent_complete == 100.0 and subs[0].progress_message == "loaded"


def test_subtask_update_items_drive_percent(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("states", items_total=56)
    tasker.subtask_update("RUNNING", items_complete=28, message="Processing state 28/56")
    (sub,) = tasker.get_subtask_progress(run_id)
    assert sub.status == "RUNNING"
    assert sub.items_complete == 28
    assert sub.percent_complete == pytest.approx(50.0)
    assert sub.progress_message == "Processing state 28/56"
    tasker.subtask_update(percent=75)
    assert tasker.get_subtask_progress(run_id)[0].percent_complete == pytest.approx(75.0)


def test_subtask_increment_counts_and_caps_percent(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("items", items_total=4)
    tasker.subtask_increment()
    tasker.subtask_increment(2)
    (sub,) = tasker.get_subtask_progress(run_id)
    assert sub.items_complete == 3
    assert sub.percent_complete == pytest.approx(75.0)
    assert sub.status == "RUNNING"
    tasker.subtask_increment(5)
    (sub,) = tasker.get_subtask_progress(run_id)
    assert sub.items_complete == 8
    assert sub.percent_complete == 100.0


def test_subtask_increment_from_elsewhere_by_run_id(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("shared", items_total=10)
    token = tasker.runtime.context._current.set(None)  # as a worker that only knows the run id
    try:
        tasker.subtask_increment(3, run_id=run_id)
        tasker.subtask_increment(1, run_id=run_id, subtask_number=1)
    finally:
        tasker.runtime.context._current.reset(token)
    assert tasker.get_subtask_progress(run_id)[0].items_complete == 4


def test_run_id_from_the_environment(db: Backend, child_env: dict[str, str]) -> None:
    import subprocess
    import sys

    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("work")
    code = "import tasker; tasker.subtask_increment(7); tasker.subtask_increment(2)"
    env = {**child_env, "TASKER_RUN_ID": run_id}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    tasker.task_complete()
    assert tasker.get_subtask_progress(run_id)[0].items_complete == 9
    assert tasker.get_run(run_id).status == "COMPLETED"


def test_a_thread_without_a_run_of_its_own_reports_into_the_run_it_works_for(db: Backend) -> None:
    import threading

    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("shared", items_total=4)
    seen: list[object] = []

    def work() -> None:
        seen.append(tasker.runtime.context.current_run_id())
        tasker.subtask_increment(2)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [run_id, run_id]
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.subtask_number, sub.items_complete) == (1, 4)


def test_restarting_a_subtask_number_resets_it(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("first try", items_total=3)
    tasker.subtask_increment(3)
    tasker.subtask_fail("flaky")
    assert tasker.subtask_start("second try", items_total=3, subtask_number=1) == 1
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.subtask_name, sub.status, sub.items_complete, sub.error_message) == (
        "second try",
        "STARTED",
        0,
        None,
    )
    assert sub.end_time is None


def test_subtask_fail_keeps_the_run_going(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("bad step")
    tasker.subtask_fail("bad input file")
    (sub,) = tasker.get_subtask_progress(run_id)
    assert sub.status == "FAILED" and sub.error_message == "bad input file"
    assert sub.end_time is not None
    assert tasker.get_run(run_id).status == "RUNNING"


def test_unknown_run_id_is_a_clear_error_and_changes_nothing(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    ghost = str(uuid.uuid4())
    with pytest.raises(tasker.UnknownRunError, match=ghost):
        tasker.task_update(message="x", run_id=ghost)
    with pytest.raises(tasker.UnknownRunError, match=ghost):
        tasker.task_complete(run_id=ghost)
    with pytest.raises(tasker.UnknownRunError, match=ghost):
        tasker.subtask_start("x", run_id=ghost)
    with pytest.raises(tasker.UnknownRunError, match=ghost):
        tasker.get_subtask_progress(ghost)
    with pytest.raises(tasker.ValidationError, match="not a UUID"):
        tasker.task_complete(run_id="not-a-uuid")
    assert tasker.get_run(run_id).status == "STARTED"


def test_unknown_subtask_number_lists_the_existing_ones(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    with pytest.raises(tasker.UnknownSubtaskError, match="no subtask yet"):
        tasker.subtask_increment()
    tasker.subtask_start("one")
    tasker.subtask_start("two")
    with pytest.raises(tasker.UnknownSubtaskError, match=r"no subtask 7: its subtasks are 1, 2"):
        tasker.subtask_update(subtask_number=7, percent=10)
    with pytest.raises(tasker.UnknownSubtaskError, match="no subtask 9"):
        tasker.subtask_increment(subtask_number=9)
    assert [s.status for s in tasker.get_subtask_progress(run_id)] == ["STARTED", "STARTED"]


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda: tasker.task_update("DONE"), tasker.ValidationError, "expected one of STARTED"),
        (lambda: tasker.task_update(overall_percent=101), tasker.ValidationError, "0 to 100"),
        (lambda: tasker.task_update(overall_percent=-1), tasker.ValidationError, "0 to 100"),
        (lambda: tasker.task_update(overall_percent=float("nan")), tasker.ValidationError, "0 to"),
        (lambda: tasker.subtask_update(percent="50"), tasker.ValidationError, "0 to 100"),
        (lambda: tasker.subtask_increment(-1), tasker.ValidationError, "from 0 to"),
        (lambda: tasker.subtask_update(items_complete=-3), tasker.ValidationError, "from 0 to"),
        (lambda: tasker.subtask_start("x", items_total=-1), tasker.ValidationError, "from 0 to"),
        (lambda: tasker.subtask_start(""), tasker.ValidationError, "must not be empty"),
        (lambda: tasker.subtask_start("x", subtask_number=0), tasker.ValidationError, "from 1 to"),
        (lambda: tasker.task_update(current_subtask=0), tasker.ValidationError, "from 1 to"),
        (lambda: tasker.task_fail("x", exit_code="3"), tasker.ValidationError, "exit_code"),
        (lambda: tasker.subtask_update("NOT_STARTED"), tasker.ValidationError, "not allowed"),
        (lambda: tasker.reap_lost_runs(stale_after=0), tasker.ValidationError, "stale_after"),
        (lambda: tasker.replay_journal("nowhere.jsonl"), tasker.ValidationError, "does not exist"),
        (lambda: tasker.task(total_subtasks=-2), tasker.ValidationError, "from 0 to"),
        (lambda: tasker.task("S", 42), tasker.ValidationError, "must be a string"),  # type: ignore[call-overload]
    ],
)
def test_bad_arguments_are_rejected_and_nothing_recorded_is_lost(
    db: Backend, call: object, error: type[Exception], pattern: str
) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("step", items_total=10)
    tasker.subtask_increment(4)
    with pytest.raises(error, match=pattern):
        call()  # type: ignore[operator]
    run = tasker.get_run(run_id)
    assert run.status == "RUNNING" and run.end_time is None
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.status, sub.items_complete, sub.items_total) == ("RUNNING", 4, 10)


def test_task_start_rejects_bad_names_before_writing(db: Backend) -> None:
    with pytest.raises(tasker.ValidationError, match="stage must not be empty"):
        tasker.task_start("  ", "T")
    with pytest.raises(tasker.ValidationError, match="task must be a string"):
        tasker.task_start("S", 42)  # type: ignore[arg-type]
    with pytest.raises(tasker.ValidationError, match="total_subtasks"):
        tasker.task_start("S", "T", total_subtasks=-2)
    assert tasker.get_tasks() == []
    assert tasker.get_task_history() == []


def test_status_compares_equal_to_its_string(db: Backend) -> None:
    tasker.register_task("S", "T")
    (row,) = tasker.get_task_status()
    assert row.status == "NOT_STARTED"
    assert str(row.status) == "NOT_STARTED"
    assert row.as_dict()["status"] == "NOT_STARTED"


def test_get_task_status_lists_every_registered_task_with_its_latest_run(db: Backend) -> None:
    tasker.register_tasks(
        [
            {"stage": "PREREQ", "name": "Install deps", "type": "sh", "stage_order": 1},
            {"stage": "STATIC", "name": "Build", "type": "python", "stage_order": 2},
            {"stage": "STATIC", "name": "Index", "type": "sql", "stage_order": 2},
        ]
    )
    first = tasker.task_start("STATIC", "Build")
    tasker.task_fail("boom")
    second = tasker.task_start("STATIC", "Build")
    tasker.subtask_start("load", items_total=8)
    tasker.subtask_increment(2)
    rows = tasker.get_task_status()
    assert [(r.stage_name, r.task_name, r.status) for r in rows] == [
        ("PREREQ", "Install deps", "NOT_STARTED"),
        ("STATIC", "Build", "RUNNING"),
        ("STATIC", "Index", "NOT_STARTED"),
    ]
    build = rows[1]
    assert build.run_id == second != first
    assert (build.subtask_name, build.items_total, build.items_complete) == ("load", 8, 2)
    assert build.subtask_percent_complete == pytest.approx(25.0)
    assert build.hostname == socket.gethostname()
    assert rows[0].run_id is None and rows[0].start_time is None
    assert [r.task_name for r in tasker.get_task_status(stage="STATIC")] == ["Build", "Index"]
    assert [r.task_name for r in tasker.get_task_status(task="Index")] == ["Index"]
    assert [r.task_name for r in tasker.get_task_status(status="NOT_STARTED")] == [
        "Install deps",
        "Index",
    ]
    assert [r.task_name for r in tasker.get_task_status(status=["RUNNING", "FAILED"])] == ["Build"]
    with pytest.raises(tasker.ValidationError, match="unknown status 'BOGUS'"):
        tasker.get_task_status(status="BOGUS")


def test_get_active_tasks(db: Backend) -> None:
    a = tasker.task_start("S", "A")
    b = tasker.task_start("S", "B")
    tasker.subtask_start("x")
    tasker.task_complete()  # B
    assert [r.run_id for r in tasker.get_active_tasks()] == [a]
    tasker.task_complete()  # A
    assert tasker.get_active_tasks() == []
    assert tasker.get_run(b).status == "COMPLETED"


def test_get_task_history_filters_and_orders_newest_first(db: Backend) -> None:
    ids = []
    for i in range(5):
        ids.append(tasker.task_start("S", "A" if i % 2 == 0 else "B"))
        if i == 3:
            tasker.task_fail("x")
        else:
            tasker.task_complete()
    history = tasker.get_task_history()
    assert [r.run_id for r in history] == ids[::-1]
    assert [r.run_id for r in tasker.get_task_history(task="A")] == [ids[4], ids[2], ids[0]]
    assert [r.run_id for r in tasker.get_task_history(limit=2)] == [ids[4], ids[3]]
    assert [r.run_id for r in tasker.get_task_history(limit=2, offset=2)] == [ids[2], ids[1]]
    assert [r.run_id for r in tasker.get_task_history(status="FAILED")] == [ids[3]]
    assert [r.run_id for r in tasker.get_task_history(stage="nope")] == []
    mid = tasker.get_run(ids[2]).start_time
    assert [r.run_id for r in tasker.get_task_history(since=mid)] == [ids[4], ids[3], ids[2]]
    assert [r.run_id for r in tasker.get_task_history(until=mid)] == [ids[1], ids[0]]
    assert [r.run_id for r in tasker.get_task_history(hostname=socket.gethostname())] == ids[::-1]
    with pytest.raises(tasker.ValidationError, match="limit"):
        tasker.get_task_history(limit=0)


def test_queries_as_frames(db: Backend) -> None:
    pd = need("pandas")
    tasker.register_task("S", "never")
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("step", items_total=3)
    status = tasker.get_task_status(as_frame=True)
    assert isinstance(status, pd.DataFrame)
    assert list(status["task_name"]) == ["never", "T"]
    assert list(status["status"]) == ["NOT_STARTED", "RUNNING"]
    assert "items_complete" in status.columns
    subs = tasker.get_subtask_progress(run_id, as_frame=True)
    assert subs.loc[0, "items_total"] == 3
    assert len(tasker.get_active_tasks(as_frame=True)) == 1
    assert len(tasker.get_task_history(as_frame=True)) == 1
    assert list(tasker.get_tasks(as_frame=True)["task_name"]) == ["never", "T"]


def test_register_task_and_reregistration_updates_in_place(db: Backend) -> None:
    task_id = tasker.register_task(
        "STATIC",
        "Build Database",
        "R",
        stage_order=2,
        script_path="/pipelines/scripts/build_db.R",
        log_path="/pipelines/logs",
        log_filename="build_db.log",
        description="builds it",
    )
    again = tasker.register_task("STATIC", "Build Database", "python", task_order=5)
    assert again == task_id
    (task,) = tasker.get_tasks()
    assert task.task_type == "python"
    assert task.task_order == 5
    assert task.description == "builds it"  # omitted: kept
    assert (task.script_path, task.script_filename) == ("/pipelines/scripts", "build_db.R")
    assert (task.log_path, task.log_filename) == ("/pipelines/logs", "build_db.log")
    assert task.stage_order == 2
    (stage,) = tasker.get_stages()
    assert stage.stage_name == "STATIC" and stage.stage_order == 2


def test_register_tasks_from_a_dataframe(db: Backend) -> None:
    pd = need("pandas")
    frame = pd.DataFrame(
        {
            "stage": ["PREREQ", "PREREQ", "STATIC"],
            "name": ["Install System Dependencies", "Install R", "Build Database"],
            "type": ["sh", "sh", "R"],
            "stage_order": [1, 1, 2],
            "task_order": [1, 2, None],
        }
    )
    ids = tasker.register_tasks(frame)
    assert len(set(ids)) == 3
    tasks = tasker.get_tasks()
    assert [(t.stage_name, t.task_name, t.task_type, t.task_order) for t in tasks] == [
        ("PREREQ", "Install System Dependencies", "sh", 1),
        ("PREREQ", "Install R", "sh", 2),
        ("STATIC", "Build Database", "R", 1),
    ]


def test_register_tasks_from_yaml_and_csv(db: Backend, tmp_path: Path) -> None:
    yml = tmp_path / "tasks.yml"
    yml.write_text(
        "stages:\n"
        "  - name: PREREQ\n"
        "    order: 1\n"
        "    description: set-up\n"
        "    tasks:\n"
        "      - {name: Install System Dependencies, type: sh}\n"
        "      - {name: Install R Packages, type: R}\n"
        "tasks:\n"
        "  - {stage: STATIC, name: Process FCC Data, type: R, stage_order: 2}\n",
        encoding="utf-8",
    )
    csv_file = tmp_path / "tasks.csv"
    csv_file.write_text(
        "stage,name,type,stage_order,task_order,script_path\n"
        "DAILY,Refresh,sh,3,1,/opt/refresh.sh\n"
        "DAILY,Report,python,3,2,\n",
        encoding="utf-8",
    )
    assert len(tasker.register_tasks(yml)) == 3
    assert len(tasker.register_tasks(str(csv_file))) == 2
    tasks = tasker.get_tasks()
    assert [(t.stage_name, t.task_name) for t in tasks] == [
        ("PREREQ", "Install System Dependencies"),
        ("PREREQ", "Install R Packages"),
        ("STATIC", "Process FCC Data"),
        ("DAILY", "Refresh"),
        ("DAILY", "Report"),
    ]
    assert (tasks[3].script_path, tasks[3].script_filename) == ("/opt", "refresh.sh")
    assert tasker.get_stages()[0].description == "set-up"


def test_register_tasks_is_one_transaction(db: Backend) -> None:
    tasker.register_task("S", "existing", "sh")
    rows = [
        {"stage": "S", "name": "new one"},
        {"stage": "S", "name": "another", "task_order": "not a number"},
    ]
    with pytest.raises(tasker.RegistrationError, match=r"task 1: task_order must be a whole"):
        tasker.register_tasks(rows)
    assert [t.task_name for t in tasker.get_tasks()] == ["existing"]


def test_console_lines_in_the_seed_format(db: Backend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tasker")
    run_id = tasker.task_start("STATIC", "Build Database", quiet=False)
    tasker.subtask_start("Loading data", items_total=56, quiet=False)
    tasker.subtask_update(
        "RUNNING", items_complete=28, message="Processing state 28/56", quiet=False
    )
    tasker.subtask_complete("All states loaded", quiet=False)
    tasker.task_complete(quiet=False)
    assert [r.getMessage() for r in caplog.records if r.name == "tasker"] == [
        f"[TASK START] STATIC / Build Database (run_id: {run_id})",
        "[SUBTASK START] Subtask 1: Loading data",
        "[SUBTASK UPDATE] Subtask 1 - RUNNING: Processing state 28/56",
        "[SUBTASK UPDATE] Subtask 1 - COMPLETED: All states loaded",
        f"[TASK UPDATE] {run_id} - COMPLETED",
    ]


def test_quiet_silences_console_lines(db: Backend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tasker")
    db.configure(quiet=True)
    tasker.task_start("S", "T")
    tasker.subtask_start("x")
    tasker.task_fail("boom")
    assert [r for r in caplog.records if r.name == "tasker"] == []
    tasker.task_start("S", "T", quiet=False)
    assert len([r for r in caplog.records if r.name == "tasker"]) == 1


def test_failed_lines_are_errors(db: Backend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tasker")
    run_id = tasker.task_start("S", "T", quiet=False)
    tasker.task_fail("it broke", quiet=False)
    (line,) = [r for r in caplog.records if "FAILED" in r.getMessage()]
    assert line.levelno == logging.ERROR
    assert line.getMessage() == f"[TASK UPDATE] {run_id} - FAILED: it broke"


def test_version_and_environment_from_config(db: Backend) -> None:
    db.configure(version="2.4.1", environment="production")
    run_id = tasker.task_start("S", "T", git_commit="abc123")
    run = tasker.get_run(run_id)
    assert (run.version, run.environment, run.git_commit) == ("2.4.1", "production", "abc123")
    other = tasker.task_start("S", "T", version="9.9")
    assert tasker.get_run(other).version == "9.9"


def test_task_start_without_a_task_uses_the_script_registration(
    db: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasker.runtime.capture import process as pi

    info = pi.process_info()
    fake = pi.ProcessInfo(**{**info.__dict__, "script_filename": "build_db.py"})
    monkeypatch.setattr(pi, "_cached", fake)
    tasker.register_task("STATIC", "Build Database", "python", script_filename="build_db.py")
    run_id = tasker.task_start()
    run = tasker.get_run(run_id)
    assert (run.stage_name, run.task_name) == ("STATIC", "Build Database")
    tasker.task_complete()
    tasker.register_task("DAILY", "Build again", "python", script_filename="build_db.py")
    with pytest.raises(tasker.ValidationError, match="registered for several tasks"):
        tasker.task_start()
    assert tasker.get_run(tasker.task_start("DAILY")).task_name == "Build again"


def test_text_is_stored_faithfully(db: Backend) -> None:
    message = "quote ' \" ; DROP TABLE task_runs; -- ünïcödé 🚀 \t\n\r\x07 end"
    run_id = tasker.task_start("S'; DROP TABLE stages; --", "T 🚀", message=message)
    tasker.task_fail(message, "x" * 1_000_000)
    run = tasker.get_run(run_id)
    assert run.stage_name == "S'; DROP TABLE stages; --"
    assert run.task_name == "T 🚀"
    assert run.overall_progress_message == message
    assert run.error_message == message
    assert run.error_detail == "x" * 1_000_000


def test_nul_bytes_and_overlong_names_are_stored_with_a_warning(db: Backend) -> None:
    with pytest.warns(tasker.TaskerWarning, match="NUL"):
        run_id = tasker.task_start("S", "T", message="a\x00b")
    assert tasker.get_run(run_id).overall_progress_message == "a\ufffdb"
    with pytest.warns(tasker.TaskerWarning, match="only the first 500"):
        tasker.subtask_start("n" * 600)
    assert tasker.get_subtask_progress(run_id)[0].subtask_name == "n" * 500


def test_items_tracked_inside_an_explicit_subtask_are_counted(db: Backend) -> None:
    run_id = tasker.task_start("S", "T")
    tasker.subtask_start("rows", items_total=5)
    for _ in tasker.track(range(5)):
        pass
    tasker.subtask_complete("done")
    (sub,) = tasker.get_subtask_progress(run_id)
    assert (sub.items_complete, sub.items_total, sub.status) == (5, 5, "COMPLETED")
    assert sub.progress_message == "done"
