"""Statuses and the immutable records that queries return.

Nothing here knows about SQL: the store turns rows into these records, and everything above
the store (the Python API, the CLI, the dashboard) speaks only in them.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "RunRecord",
    "StageRecord",
    "Status",
    "SubtaskRecord",
    "TaskRecord",
    "TaskStatusRecord",
    "parse_status",
]


class Status(str, enum.Enum):
    """The seed's seven statuses. A member compares equal to its string value."""

    NOT_STARTED = "NOT_STARTED"
    STARTED = "STARTED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


ACTIVE_STATUSES: frozenset[Status] = frozenset({Status.STARTED, Status.RUNNING})
TERMINAL_STATUSES: frozenset[Status] = frozenset(
    {Status.COMPLETED, Status.FAILED, Status.SKIPPED, Status.CANCELLED}
)
STATUS_VALUES: tuple[str, ...] = tuple(s.value for s in Status)


def parse_status(value: object, *, allowed: Sequence[Status] | None = None) -> Status:
    """Turn ``value`` (a Status or its name, any case) into a Status, or raise a clear error."""
    from tasker.errors import ValidationError

    choices = tuple(allowed) if allowed is not None else tuple(Status)
    if isinstance(value, Status):
        status = value
    elif isinstance(value, str) and value.strip().upper() in STATUS_VALUES:
        status = Status(value.strip().upper())
    else:
        raise ValidationError(
            f"unknown status {value!r}: expected one of {', '.join(s.value for s in choices)}"
        )
    if status not in choices:
        raise ValidationError(
            f"status {status.value} is not allowed here: expected one of "
            f"{', '.join(s.value for s in choices)}"
        )
    return status


class _Record:
    """Shared behaviour of the query records."""

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict (statuses as strings), e.g. for JSON."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, Status) else value
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class StageRecord(_Record):
    """A registered stage."""

    stage_id: int
    stage_name: str
    stage_order: int | None
    description: str | None
    created_at: datetime | None
    updated_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRecord(_Record):
    """A registered task with its stage."""

    task_id: int
    stage_id: int
    stage_name: str
    stage_order: int | None
    task_name: str
    task_type: str | None
    task_order: int | None
    description: str | None
    script_path: str | None
    script_filename: str | None
    log_path: str | None
    log_filename: str | None
    created_at: datetime | None
    updated_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskStatusRecord(_Record):
    """A registered task with its latest run (NOT_STARTED and no run fields if it never ran).

    ``items_total``, ``items_complete``, ``subtask_name``, ``subtask_percent_complete`` and
    ``subtask_start_time`` describe the run's current subtask.
    """

    stage_name: str
    stage_order: int | None
    task_id: int
    task_name: str
    task_type: str | None
    task_order: int | None
    script_path: str | None
    script_filename: str | None
    log_path: str | None
    log_filename: str | None
    status: Status
    run_id: str | None
    hostname: str | None
    process_id: int | None
    user_name: str | None
    start_time: datetime | None
    end_time: datetime | None
    last_update: datetime | None
    total_subtasks: int | None
    current_subtask: int | None
    overall_percent_complete: float | None
    overall_progress_message: str | None
    subtask_name: str | None
    subtask_status: Status | None
    subtask_percent_complete: float | None
    items_total: int | None
    items_complete: int | None
    error_message: str | None
    # When the current subtask started: its rate is its own items over its own time.
    subtask_start_time: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RunRecord(_Record):
    """One run of a task, with everything captured about it."""

    run_id: str
    task_id: int
    stage_name: str
    stage_order: int | None
    task_name: str
    task_type: str | None
    task_order: int | None
    status: Status
    hostname: str
    process_id: int
    parent_pid: int | None
    parent_run_id: str | None
    user_name: str | None
    python_version: str | None
    command_line: str | None
    script_path: str | None
    script_filename: str | None
    log_path: str | None
    log_filename: str | None
    version: str | None
    git_commit: str | None
    git_branch: str | None
    git_dirty: bool | None
    environment: str | None
    start_time: datetime | None
    end_time: datetime | None
    last_update: datetime | None
    heartbeat: datetime | None
    total_subtasks: int | None
    current_subtask: int | None
    overall_percent_complete: float | None
    overall_progress_message: str | None
    exit_code: int | None
    cpu_seconds: float | None
    peak_memory_mb: float | None
    error_type: str | None
    error_message: str | None
    error_detail: str | None
    # When the run's process started (seconds since the epoch): with the PID, it tells the
    # process apart from a later one given the same PID.
    process_start_time: float | None = None
    # Which boot of the host's kernel, and which PID namespace, the PID belongs to (Linux;
    # None for runs recorded elsewhere or before schema version 3): the reaper checks the PID
    # only when both are its own.
    boot_id: str | None = None
    pid_namespace: str | None = None
    # The end of the run's log file, shipped by its process with the run's end (at most
    # tracking.log_tail_bytes; schema version 5). Read with one run (get_run, tasker show,
    # the dashboard's run page): lists of runs (history, active runs) leave it None, so that
    # a page of a hundred runs does not carry a hundred logs.
    log_tail: str | None = None
    # When the run's process started, in seconds after its kernel booted (boot_id; Linux,
    # schema version 6): with boot_id and the PID it identifies the process exactly, however
    # the clock is set since, where process_start_time moves with the clock.
    process_start_uptime: float | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end; to now while the run is active (an ended run without
        an end time, written so by hand, to its last update)."""
        end = self.end_time
        if end is None:
            end = datetime.now(timezone.utc) if Status(self.status).is_active else self.last_update
        if self.start_time is None or end is None:
            return None
        return (end - self.start_time).total_seconds()


@dataclasses.dataclass(frozen=True, slots=True)
class SubtaskRecord(_Record):
    """One numbered subtask of a run."""

    progress_id: int
    run_id: str
    subtask_number: int
    subtask_name: str | None
    status: Status
    start_time: datetime | None
    end_time: datetime | None
    last_update: datetime | None
    percent_complete: float | None
    progress_message: str | None
    items_total: int | None
    items_complete: int | None
    error_message: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a registration says about a task (None: keep what is stored, or the default)."""

    stage: str
    name: str
    task_type: str | None = None
    stage_order: int | None = None
    task_order: int | None = None
    description: str | None = None
    stage_description: str | None = None
    script_path: str | None = None
    script_filename: str | None = None
    log_path: str | None = None
    log_filename: str | None = None


@dataclasses.dataclass(slots=True)
class NewRun:
    """Everything recorded when a run starts."""

    run_id: str
    stage: str
    task: str
    task_type: str | None
    status: Status
    start_time: datetime
    hostname: str
    process_id: int
    parent_pid: int | None = None
    process_start_time: float | None = None
    parent_run_id: str | None = None
    user_name: str | None = None
    python_version: str | None = None
    command_line: str | None = None
    script_path: str | None = None
    script_filename: str | None = None
    log_path: str | None = None
    log_filename: str | None = None
    version: str | None = None
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool | None = None
    environment: str | None = None
    total_subtasks: int | None = None
    overall_progress_message: str | None = None
    boot_id: str | None = None
    pid_namespace: str | None = None
    process_start_uptime: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class JournalFileReplay:
    """What a journal replay did with one file (``ReplayResult.details``).

    ``outcome`` is "replayed", "already replayed" (removed, nothing written), "busy" (still
    being written by a live process: left for later), "quarantined" (damaged, empty or not
    a tasker journal: moved to ``moved_to`` unreplayed, ``reason`` says why) or "not
    replayed" (left in place for later: ``reason`` says why, e.g. a full disk). Events the
    database refused are counted in ``refused`` and set aside, with their reasons, in the
    file ``moved_to``. Events the database held already (a write whose outcome their
    process never saw had committed them) are counted in ``recorded``: neither written
    again nor refused.
    """

    path: str
    outcome: str
    events: int = 0  # events written
    refused: int = 0  # events the database refused (set aside)
    reason: str | None = None
    moved_to: str | None = None
    recorded: int = 0  # events the database held already


@dataclasses.dataclass
class ReplayResult:
    """What a journal replay did (``tasker.replay_journal()``)."""

    files: int = 0  # journal files replayed now
    events: int = 0  # their events written
    failed: int = 0  # events the database refused (set aside in a rejected/ file)
    already: int = 0  # files found already replayed (removed, nothing written)
    busy: int = 0  # files still being written by a live process (left for later)
    quarantined: int = 0  # damaged, empty or foreign files moved to quarantine/
    recorded: int = 0  # events the database held already (their write committed unseen)
    details: list[JournalFileReplay] = dataclasses.field(default_factory=list)  # per file
