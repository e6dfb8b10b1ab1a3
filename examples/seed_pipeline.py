"""The seed's integration example (its steps 3-5), with tasker's explicit API.

Registers the FCC pipeline's PREREQ and STATIC tasks in bulk, then tracks "Process FCC Data"
through five subtasks, the second looping over 56 states with an update per state.

Run it with the default SQLite database, or point TASKER_DB_URL at PostgreSQL or MariaDB:

    python examples/seed_pipeline.py
    tasker status
"""

from __future__ import annotations

import time

import tasker

STATES = 56


def main(delay: float = 0.0) -> str:
    # Step 3: the schema (created on first use anyway; explicit here as in the seed).
    tasker.create_schema()

    # Step 4: register the pipeline's tasks in bulk, so the monitor lists them before they run.
    tasker.register_tasks(
        [
            {
                "stage": "PREREQ",
                "name": "Install System Dependencies",
                "type": "sh",
                "stage_order": 1,
            },
            {"stage": "PREREQ", "name": "Install R Packages", "type": "R", "stage_order": 1},
            {"stage": "STATIC", "name": "Process FCC Data", "type": "R", "stage_order": 2},
            {"stage": "STATIC", "name": "Build Census Data", "type": "R", "stage_order": 2},
        ]
    )

    # Step 5: track the script.
    run_id = tasker.task_start("STATIC", "Process FCC Data", total_subtasks=5)

    tasker.subtask_start("Loading FCC data")
    time.sleep(delay)
    tasker.subtask_complete()

    tasker.subtask_start("Processing broadband data", items_total=STATES)
    for i in range(1, STATES + 1):
        time.sleep(delay)  # ... process state i ...
        tasker.subtask_update(
            "RUNNING",
            percent=i / STATES * 100,
            items_complete=i,
            message=f"Processing state {i}/{STATES}",
        )
    tasker.subtask_complete("All states loaded")

    for name in ("Joining census blocks", "Computing coverage", "Writing outputs"):
        tasker.subtask_start(name)
        time.sleep(delay)
        tasker.subtask_complete()

    tasker.task_complete("FCC data processing complete")
    return run_id


if __name__ == "__main__":
    print(main())
