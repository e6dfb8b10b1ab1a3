"""tasker: database-backed run tracking for data pipelines.

Stages contain tasks; each execution of a task is a run with numbered subtasks and progress.
Runs live in SQLite by default, or in PostgreSQL or MySQL/MariaDB shared across hosts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasker.lazy_names import lazy_names
from tasker.runtime import signals as _signals  # noqa: F401  (start-up: see below)

# Start-up: importing tasker.runtime.signals hands the recorder its SIGTERM and exit handling
# for the runs this process starts (the recorder, below it, imports nothing above it).

if TYPE_CHECKING:
    from tasker.config import Config
    from tasker.errors import (
        ConfigError,
        DatabaseError,
        RegistrationError,
        RunEndedError,
        SchemaVersionError,
        TaskerError,
        TaskerWarning,
        UnknownRunError,
        UnknownSubtaskError,
        ValidationError,
    )
    from tasker.explicit import (
        configure,
        create_schema,
        get_config,
        purge_runs,
        reap_lost_runs,
        register_task,
        register_tasks,
        replay_journal,
        subtask_complete,
        subtask_fail,
        subtask_increment,
        subtask_start,
        subtask_update,
        task_complete,
        task_fail,
        task_start,
        task_update,
    )
    from tasker.instrument.blocks import Run, SubtaskHandle, current_run, skip
    from tasker.instrument.carry import attach, bind, handoff
    from tasker.instrument.decorators import subtask, task
    from tasker.instrument.outcome import Skipped
    from tasker.instrument.track import track
    from tasker.models import (
        ReplayResult,
        RunRecord,
        StageRecord,
        Status,
        SubtaskRecord,
        TaskRecord,
        TaskStatusRecord,
    )
    from tasker.queries import (
        get_active_tasks,
        get_run,
        get_stages,
        get_subtask_progress,
        get_task_history,
        get_task_status,
        get_tasks,
    )

__version__ = "0.1.0"

# Every public name loads with its module on first use (PEP 562): a command of the command
# line loads only what it runs (`tasker status` never loads the explicit API's writes, and
# none loads the automatic layer: wrapt and the decorators' machinery), so it starts faster.
# The names above under TYPE_CHECKING are the same ones, for type checkers.
_LAZY = {
    "Config": "tasker.config",
    **dict.fromkeys(
        (
            "ConfigError",
            "DatabaseError",
            "RegistrationError",
            "RunEndedError",
            "SchemaVersionError",
            "TaskerError",
            "TaskerWarning",
            "UnknownRunError",
            "UnknownSubtaskError",
            "ValidationError",
        ),
        "tasker.errors",
    ),
    **dict.fromkeys(("configure", "create_schema", "get_config"), "tasker.explicit.configuration"),
    **dict.fromkeys(("register_task", "register_tasks"), "tasker.explicit.configuration"),
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
        ("task_complete", "task_fail", "task_start", "task_update"), "tasker.explicit.tasks"
    ),
    **dict.fromkeys(("attach", "bind", "handoff"), "tasker.instrument.carry"),
    **dict.fromkeys(("Run", "SubtaskHandle", "current_run", "skip"), "tasker.instrument.blocks"),
    **dict.fromkeys(("subtask", "task"), "tasker.instrument.decorators"),
    "Skipped": "tasker.instrument.outcome",
    "track": "tasker.instrument.track",
    **dict.fromkeys(
        (
            "ReplayResult",
            "RunRecord",
            "StageRecord",
            "Status",
            "SubtaskRecord",
            "TaskRecord",
            "TaskStatusRecord",
        ),
        "tasker.models",
    ),
    **dict.fromkeys(
        (
            "get_active_tasks",
            "get_run",
            "get_stages",
            "get_subtask_progress",
            "get_task_history",
            "get_task_status",
            "get_tasks",
        ),
        "tasker.queries",
    ),
}


__getattr__, __dir__ = lazy_names("tasker", globals(), _LAZY)


def flush(timeout: float = 60.0) -> bool:
    """Write everything tracked so far to the database now; True when done within
    ``timeout`` seconds. (tasker also does this at exit and on SIGTERM.)"""
    from tasker.runtime.recorder import RECORDER

    return RECORDER.flush(timeout)


__all__ = [
    "Config",
    "ConfigError",
    "DatabaseError",
    "RegistrationError",
    "ReplayResult",
    "Run",
    "RunEndedError",
    "RunRecord",
    "SchemaVersionError",
    "Skipped",
    "StageRecord",
    "Status",
    "SubtaskHandle",
    "SubtaskRecord",
    "TaskRecord",
    "TaskStatusRecord",
    "TaskerError",
    "TaskerWarning",
    "UnknownRunError",
    "UnknownSubtaskError",
    "ValidationError",
    "__version__",
    "attach",
    "bind",
    "configure",
    "create_schema",
    "current_run",
    "flush",
    "get_active_tasks",
    "get_config",
    "get_run",
    "get_stages",
    "get_subtask_progress",
    "get_task_history",
    "get_task_status",
    "get_tasks",
    "handoff",
    "purge_runs",
    "reap_lost_runs",
    "register_task",
    "register_tasks",
    "replay_journal",
    "skip",
    "subtask",
    "subtask_complete",
    "subtask_fail",
    "subtask_increment",
    "subtask_start",
    "subtask_update",
    "task",
    "task_complete",
    "task_fail",
    "task_start",
    "task_update",
    "track",
]
