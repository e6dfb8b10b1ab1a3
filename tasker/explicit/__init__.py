"""The explicit tracking API: parity with the seed's R package, for code that cannot use
decorators. ``run_id`` arguments default to the current run.

Every call checks its arguments before touching the database, so a rejected call changes
nothing that was already recorded.
"""

from __future__ import annotations

from tasker.explicit.common import resolve_run_id
from tasker.explicit.configuration import (
    configure,
    create_schema,
    get_config,
    register_task,
    register_tasks,
)
from tasker.explicit.maintenance import purge_runs, reap_lost_runs, replay_journal
from tasker.explicit.subtasks import (
    subtask_complete,
    subtask_fail,
    subtask_increment,
    subtask_start,
    subtask_update,
)
from tasker.explicit.tasks import (
    end_run_by_id,
    task_complete,
    task_fail,
    task_start,
    task_update,
)

__all__ = [
    "configure",
    "create_schema",
    "end_run_by_id",
    "get_config",
    "purge_runs",
    "reap_lost_runs",
    "register_task",
    "register_tasks",
    "replay_journal",
    "resolve_run_id",
    "subtask_complete",
    "subtask_fail",
    "subtask_increment",
    "subtask_start",
    "subtask_update",
    "task_complete",
    "task_fail",
    "task_start",
    "task_update",
]
