"""tasker: database-backed run tracking for data pipelines.

Stages contain tasks; each execution of a task is a run with numbered subtasks and progress.
Runs live in SQLite by default, or in PostgreSQL or MySQL/MariaDB shared across hosts.
"""

from __future__ import annotations

from tasker.api import (
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
from tasker.config import Config
from tasker.errors import (
    ConfigError,
    DatabaseError,
    RegistrationError,
    SchemaVersionError,
    TaskerError,
    TaskerWarning,
    UnknownRunError,
    UnknownSubtaskError,
    ValidationError,
)
from tasker.journal import ReplayResult
from tasker.models import (
    RunRecord,
    StageRecord,
    Status,
    SubtaskRecord,
    TaskRecord,
    TaskStatusRecord,
)
from tasker.outcome import Skipped
from tasker.progress import track
from tasker.queries import (
    get_active_tasks,
    get_run,
    get_stages,
    get_subtask_progress,
    get_task_history,
    get_task_status,
    get_tasks,
)
from tasker.tracking import Run, SubtaskHandle, current_run, skip, subtask, task

__version__ = "0.1.0"


def flush(timeout: float = 60.0) -> bool:
    """Write everything tracked so far to the database now; True when done within
    ``timeout`` seconds. (tasker also does this at exit and on SIGTERM.)"""
    from tasker.recorder import RECORDER

    return RECORDER.flush(timeout)


__all__ = [
    "Config",
    "ConfigError",
    "DatabaseError",
    "RegistrationError",
    "ReplayResult",
    "Run",
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
