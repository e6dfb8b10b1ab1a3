"""Which run is current: a ContextVar, so each thread and asyncio task has its own.

A process started inside a run (a worker, a shell step) finds the run through the
``TASKER_RUN_ID`` environment variable when it has no run of its own.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os

__all__ = ["RUN_ID_ENV", "RunState", "current_run_id", "current_state", "pop", "push"]

RUN_ID_ENV = "TASKER_RUN_ID"


@dataclasses.dataclass(eq=False)
class RunState:
    """What this process knows about a run it is tracking."""

    run_id: str
    stage: str
    task: str
    parent: RunState | None = None
    total_subtasks: int | None = None
    current_subtask: int | None = None


_current: contextvars.ContextVar[RunState | None] = contextvars.ContextVar(
    "tasker_current_run", default=None
)


def current_state() -> RunState | None:
    """The run this context is tracking, if any."""
    return _current.get()


def current_run_id() -> str | None:
    """The current run's id: this context's run, else the one inherited through the environment."""
    state = _current.get()
    if state is not None:
        return state.run_id
    return os.environ.get(RUN_ID_ENV) or None


def push(state: RunState) -> None:
    state.parent = _current.get()
    _current.set(state)


def pop(run_id: str) -> None:
    """Make the parent of ``run_id`` current again, if ``run_id`` is the current run."""
    state = _current.get()
    if state is not None and state.run_id == run_id:
        _current.set(state.parent)


def find(run_id: str) -> RunState | None:
    """This context's state for ``run_id`` (the current run or one of its parents)."""
    state = _current.get()
    while state is not None:
        if state.run_id == run_id:
            return state
        state = state.parent
    return None
