"""A small, realistic pipeline for ``tasker demo``: three stages, subtasks with progress, one
failure, one skipped task, a shell step and a task never run. It uses the public explicit API
and ``tasker run``'s machinery."""

from __future__ import annotations

import shutil
import sys
import time

import tasker

STATES = ["AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID"]


def run_demo(delay: float = 0.01) -> list[str]:
    """Run the demo pipeline against the configured database; returns the run ids."""
    tasker.register_tasks(
        [
            {
                "stage": "PREREQ",
                "name": "Install System Dependencies",
                "type": "sh",
                "stage_order": 1,
            },
            {"stage": "PREREQ", "name": "Check Disk Space", "type": "sh", "stage_order": 1},
            {"stage": "STATIC", "name": "Process FCC Data", "type": "python", "stage_order": 2},
            {"stage": "STATIC", "name": "Build Census Data", "type": "python", "stage_order": 2},
            {"stage": "DAILY", "name": "Refresh Coverage", "type": "python", "stage_order": 3},
            {"stage": "DAILY", "name": "Publish Report", "type": "sh", "stage_order": 3},
            {"stage": "DAILY", "name": "Archive Outputs", "type": "sh", "stage_order": 3},
        ]
    )
    runs = []

    runs.append(tasker.task_start("PREREQ", "Install System Dependencies", total_subtasks=1))
    tasker.subtask_start("apt-get install", items_total=3)
    for _ in range(3):
        time.sleep(delay)
        tasker.subtask_increment()
    tasker.subtask_complete()
    tasker.task_complete("dependencies present")

    runs.append(tasker.task_start("PREREQ", "Check Disk Space"))
    tasker.task_update("SKIPPED", message="checked less than a day ago")

    runs.append(tasker.task_start("STATIC", "Process FCC Data", total_subtasks=2))
    tasker.subtask_start("Loading FCC data")
    time.sleep(delay)
    tasker.subtask_complete("loaded")
    tasker.subtask_start("Processing states", items_total=len(STATES))
    for i, _state in enumerate(STATES, start=1):
        time.sleep(delay)
        tasker.subtask_update(
            "RUNNING", items_complete=i, message=f"Processing state {i}/{len(STATES)}"
        )
    tasker.subtask_complete("all states processed")
    tasker.task_complete()

    runs.append(tasker.task_start("STATIC", "Build Census Data", total_subtasks=2))
    tasker.subtask_start("Downloading tables", items_total=10)
    try:
        for i in range(10):
            time.sleep(delay)
            if i == 6:
                raise ConnectionError("census.example: connection reset by peer")
            tasker.subtask_increment()
    except ConnectionError as exc:
        tasker.task_fail(exc)

    runs.append(tasker.task_start("DAILY", "Refresh Coverage", total_subtasks=1))
    tasker.subtask_start("Fetching updates", items_total=5)
    for _ in range(5):
        time.sleep(delay)
        tasker.subtask_increment()
    tasker.subtask_complete()
    tasker.task_complete()

    # A shell step, tracked as `tasker run --stage DAILY --name "Publish Report" -- ...` does.
    from tasker.cli.run import run_command

    step = "for s in " + " ".join(STATES) + '; do test -n "$s"; done'
    command = ["sh", "-c", step] if shutil.which("sh") else [sys.executable, "-c", "pass"]
    run_command(command, "DAILY", "Publish Report", None, quiet=True)
    runs.append(tasker.get_task_history(task="Publish Report", limit=1)[0].run_id)
    # "Archive Outputs" stays NOT_STARTED: registered, never run.
    return runs
