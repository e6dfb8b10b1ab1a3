"""Which run is current: a ContextVar, so each thread and asyncio task has its own.

A process started inside a run (a worker, a shell step) finds the run through the
``TASKER_RUN_ID`` environment variable, which tasker sets while a run is current so that
children inherit it. Only the value inherited from the parent is read back (once, at import or
after a fork), so that a thread with no run of its own never reports into another thread's
run.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import threading
import time
from typing import Any

__all__ = ["RUN_ID_ENV", "RunState", "current_run_id", "current_state", "pop", "push"]

RUN_ID_ENV = "TASKER_RUN_ID"


@dataclasses.dataclass(eq=False, slots=True)
class RunState:
    """What this process knows about a run it tracks (``owned``) or reports into."""

    run_id: str
    stage: str | None = None
    task: str | None = None
    parent: RunState | None = None
    total_subtasks: int | None = None
    current_subtask: int | None = None
    pid: int = dataclasses.field(default_factory=os.getpid)
    owned: bool = True
    ended: bool = False
    # Subtasks this process has open in the run, innermost last.
    subtasks: list[Any] = dataclasses.field(default_factory=list)
    # track() loops left early: (subtask, frame, instruction offset) — see tasker.progress.
    early_closed: list[tuple[Any, Any, int]] = dataclasses.field(default_factory=list)
    cpu_start: float = dataclasses.field(default_factory=time.process_time)
    env_before: str | None = None
    # Open task()/subtask() scopes of the automatic layer: skip() raises only inside one.
    scopes: int = 0
    _next_number: int = 0

    @property
    def is_local(self) -> bool:
        """True when this process started the run (not a forked copy of the state)."""
        return self.owned and self.pid == os.getpid()

    def next_subtask_number(self) -> int:
        with _numbering:
            self._next_number += 1
            return self._next_number

    def note_subtask_number(self, number: int) -> None:
        """An explicitly numbered subtask: automatic numbering continues after it."""
        with _numbering:
            self._next_number = max(self._next_number, number)


# Numbering is rare next to everything else: one lock serves every run.
_numbering = threading.Lock()


_current: contextvars.ContextVar[RunState | None] = contextvars.ContextVar(
    "tasker_current_run", default=None
)
_attached: dict[str, RunState] = {}
# What the parent process handed down (read once; a fork re-reads it), and what the
# variable holds now as far as tasker set it: reading os.environ on every run start costs
# more than the rest of starting a run.
_inherited: str | None = os.environ.get(RUN_ID_ENV) or None
_env_now: str | None = _inherited


def current_state() -> RunState | None:
    """The run this context is tracking, if any."""
    return _current.get()


def inherited_run_id() -> str | None:
    """The run id a parent process handed down through the environment, if any."""
    return _inherited


def current_run_id() -> str | None:
    """The current run's id: this context's run, else the one inherited from a parent."""
    state = _current.get()
    if state is not None:
        return state.run_id
    return inherited_run_id()


def attached_state(run_id: str) -> RunState:
    """A state for reporting into a run another process owns (one per run id)."""
    state = _attached.get(run_id)
    if state is None:
        state = _attached.setdefault(run_id, RunState(run_id=run_id, owned=False))
    return state


def push(state: RunState) -> None:
    """Make ``state`` current, and hand its id to child processes started meanwhile."""
    global _env_now
    state.parent = _current.get()
    _current.set(state)
    state.env_before = _env_now
    os.environ[RUN_ID_ENV] = _env_now = state.run_id


def pop(run_id: str) -> None:
    """Make the parent of ``run_id`` current again, if ``run_id`` is the current run."""
    global _env_now
    state = _current.get()
    if state is None or state.run_id != run_id:
        return
    _current.set(state.parent)
    if _env_now == run_id:
        _env_now = state.env_before
        # Empty rather than removed: one assignment, and read as "no run" all the same.
        os.environ[RUN_ID_ENV] = _env_now or ""


def find(run_id: str) -> RunState | None:
    """This context's state for ``run_id`` (the current run or one of its parents)."""
    state = _current.get()
    while state is not None:
        if state.run_id == run_id:
            return state
        state = state.parent
    return _attached.get(run_id)


def _after_fork_in_child() -> None:
    # The parent's export is this child's inheritance.
    global _inherited, _env_now
    _inherited = _env_now = os.environ.get(RUN_ID_ENV) or None
    _attached.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
