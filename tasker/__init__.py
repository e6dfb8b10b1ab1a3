"""tasker: database-backed run tracking for data pipelines.

Stages contain tasks; each execution of a task is a run with numbered subtasks and progress.
Runs live in SQLite by default, or in PostgreSQL or MySQL/MariaDB shared across hosts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from tasker.instrument.outcome import Skipped
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
from tasker.runtime import signals as _signals  # noqa: F401  (start-up: see below)

# Start-up: importing tasker.runtime.signals hands the recorder its SIGTERM and exit handling
# for the runs this process starts (the recorder, below it, imports nothing above it).

if TYPE_CHECKING:
    from tasker.instrument.blocks import Run, SubtaskHandle, current_run, skip
    from tasker.instrument.carry import attach, bind, handoff
    from tasker.instrument.decorators import subtask, task
    from tasker.instrument.track import track

__version__ = "0.1.0"

# The automatic layer loads on first use: the command line, which never needs it, starts
# faster (wrapt and the decorators' machinery stay unloaded).
_LAZY = {
    "attach": "tasker.instrument.carry",
    "bind": "tasker.instrument.carry",
    "handoff": "tasker.instrument.carry",
    "track": "tasker.instrument.track",
    "Run": "tasker.instrument.blocks",
    "SubtaskHandle": "tasker.instrument.blocks",
    "current_run": "tasker.instrument.blocks",
    "skip": "tasker.instrument.blocks",
    "subtask": "tasker.instrument.decorators",
    "task": "tasker.instrument.decorators",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tasker' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
