"""What this process knows: the installed applications, the executions it runs, and (in the
worker's main process) the requests Celery holds and the threads recording killed children.

Celery's signals are process-wide; an application's settings are looked up from the task a
signal names, so that the handlers act on tasks of installed applications only.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref
from typing import Any

from tasker.instrument.carry import attach
from tasker.integrations.celery.outcomes import Verdict
from tasker.runtime.context import RunState

__all__ = [
    "Execution",
    "Settings",
    "concluding",
    "executions",
    "flush_timeout",
    "installed",
    "requests",
    "settings_of",
]


@dataclasses.dataclass(frozen=True)
class Settings:
    stage: str
    flush_timeout: float


@dataclasses.dataclass(eq=False)
class Execution:
    """A task executing in this process: its run, and how it ended if Celery said so."""

    state: RunState
    attached: attach | None
    settings: Settings
    # Made durable at its start and end (not for an eager call: its process goes on).
    durable: bool
    verdict: Verdict | None = None
    raised: BaseException | None = None  # what the task raised (FAILURE, RETRY)


installed: weakref.WeakKeyDictionary[Any, Settings] = weakref.WeakKeyDictionary()
# Executions in this process, by Celery task id.
executions: dict[str, Execution] = {}
# The worker's main process: requests by task id, while Celery holds them (the pool process
# and the run id of an execution whose pool process is killed).
requests: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
# Threads of the main process recording the end of runs of killed children.
concluding: set[threading.Thread] = set()


def settings_of(task: Any) -> Settings | None:
    try:
        app = task.app
    except Exception:
        return None
    try:
        return installed.get(app)
    except TypeError:  # not weak-referenceable: not an application installed here
        return None


def flush_timeout() -> float:
    return max((s.flush_timeout for s in list(installed.values())), default=10.0)


def _after_fork_in_child() -> None:
    # A pool child starts with no executions, requests or threads of its parent's.
    executions.clear()
    requests.clear()
    concluding.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
