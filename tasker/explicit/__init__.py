"""The explicit tracking API: parity with the seed's R package, for code that cannot use
decorators. ``run_id`` arguments default to the current run.

Every call checks its arguments before touching the database, so a rejected call changes
nothing that was already recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasker.lazy_names import lazy_names

if TYPE_CHECKING:
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

# Each name loads with its module on first use (PEP 562): a command that only reads (`tasker
# status`) never loads the writes' modules. The imports above are the same names, for type
# checkers.
_LAZY = {
    "resolve_run_id": "tasker.explicit.common",
    **dict.fromkeys(
        ("configure", "create_schema", "get_config", "register_task", "register_tasks"),
        "tasker.explicit.configuration",
    ),
    **dict.fromkeys(
        ("purge_runs", "reap_lost_runs", "replay_journal"), "tasker.explicit.maintenance"
    ),
    **dict.fromkeys(
        (
            "subtask_complete",
            "subtask_fail",
            "subtask_increment",
            "subtask_start",
            "subtask_update",
        ),
        "tasker.explicit.subtasks",
    ),
    **dict.fromkeys(
        ("end_run_by_id", "task_complete", "task_fail", "task_start", "task_update"),
        "tasker.explicit.tasks",
    ),
}


__getattr__, __dir__ = lazy_names("tasker.explicit", globals(), _LAZY)


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
