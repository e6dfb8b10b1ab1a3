"""What a pipeline sets up before its runs: the configuration, the schema, the registered
tasks."""

from __future__ import annotations

import os
from typing import Any

from tasker.config import Config
from tasker.explicit.common import now
from tasker.registration import specs_from
from tasker.runtime.recorder import RECORDER


def configure(config_file: str | os.PathLike[str] | None = None, **settings: Any) -> Config:
    """Set tasker's configuration explicitly; returns the resolved configuration.

    Keyword arguments take precedence over environment variables and the YAML file. Each call
    replaces the settings of the previous one. Keys: ``url``, ``driver``, ``host``, ``port``,
    ``dbname``, ``user``, ``password``, ``schema``, ``path`` (SQLite), ``heartbeat_interval``,
    ``stale_after``, ``flush_interval``, ``console`` (auto/true/false), ``quiet``, ``strict``,
    ``enabled``, ``environment``, ``version``, ``default_stage``, ``journal_dir``,
    ``max_queued``, ``connect_timeout``, ``statement_timeout``, ``lock_timeout``,
    ``exit_timeout``, ``log_tail_bytes``, ``log_roots``, ``allowed_hosts``.
    """
    return RECORDER.configure(settings, None if config_file is None else os.fspath(config_file))


def get_config() -> Config:
    """The resolved configuration; ``.sources`` says where each value came from."""
    return RECORDER.config


def create_schema() -> bool:
    """Create tasker's tables, views and indexes if missing; True if they were created.

    Idempotent and safe to call from many processes at once.
    """
    return RECORDER.raw_store.create_schema()


def register_task(
    stage: str,
    name: str,
    task_type: str | None = None,
    *,
    stage_order: int | None = None,
    task_order: int | None = None,
    description: str | None = None,
    stage_description: str | None = None,
    script_path: str | None = None,
    script_filename: str | None = None,
    log_path: str | None = None,
    log_filename: str | None = None,
) -> int:
    """Register a task (and its stage) so the monitor lists it before it runs; returns task_id.

    Registering again updates the task in place: given fields replace the stored ones,
    omitted ones are kept. New stages and tasks without an order go after the existing ones.
    """
    row: dict[str, Any] = {
        "stage": stage,
        "name": name,
        "type": task_type,
        "stage_order": stage_order,
        "task_order": task_order,
        "description": description,
        "stage_description": stage_description,
        "script_path": script_path,
        "script_filename": script_filename,
        "log_path": log_path,
        "log_filename": log_filename,
    }
    return register_tasks([row])[0]


def register_tasks(tasks: Any) -> list[int]:
    """Register many tasks in one transaction; returns their task_ids in order.

    ``tasks`` is a list of dicts (keys as :func:`register_task`'s arguments; ``type`` for the
    task type), a pandas DataFrame with those columns, or the path of a YAML or CSV file.
    """
    specs = specs_from(tasks)
    if not specs:
        return []
    return RECORDER.synced_store().register_tasks(specs, now())
