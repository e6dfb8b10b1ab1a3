"""Which run is current, in this thread or task, in this process, and in work sent elsewhere.

Three sources, tried in this order by everything that reports (``reporting_state``):

1. **This context's own run** — a ContextVar, so each thread and asyncio task has its own: the
   run of the ``@task`` call or ``with task()`` block it is inside, or a run handed over with
   ``attach()`` (a worker executing work sent from another process).
2. **The run it works for** (``ambient``) — for threads and tasks with no run of their own:
   a ``ThreadPoolExecutor`` call reports into the run current where it was submitted, a
   plain ``threading.Thread`` into the run current where it was started (or, once that run
   has ended, its nearest live parent), anything else into the main thread's innermost live
   run. So two pipelines running in two threads at once never report into each other.
3. **The run a parent process handed down** through ``TASKER_RUN_ID`` (read once, at import or
   after a fork) — for children started with exec (shell steps, ``subprocess``).

Work that leaves the process carries a ``handoff()`` — the run id and the subtask open when
it was sent — and the receiving side runs it under ``attach()``. That travels with each call,
not with the worker process, so a pool made before a run, or reused by a later run, reports
each call into the run that sent it.

Only the main thread writes ``os.environ`` (threads writing it at once corrupt it, and a
thread's run ending would restore another thread's value): the variable names the main
thread's innermost live run, so that ``subprocess`` children of the main program inherit it.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import sys
import threading
from typing import Any

from tasker.runtime.capture.process import cpu_seconds
from tasker.runtime.environ import Variable
from tasker.runtime.pid import current_pid

__all__ = [
    "RUN_ID_ENV",
    "RunState",
    "ambient",
    "current_run_id",
    "current_state",
    "find",
    "handoff",
    "pop",
    "push",
    "reporting_state",
]

RUN_ID_ENV = "TASKER_RUN_ID"
# The subtask open in that run when the child was started: its loops and increments count
# into it, as a forked child's do, instead of opening subtasks of their own.
SUBTASK_ENV = "TASKER_SUBTASK"


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and 0 < int(text) < 2**31 else None


@dataclasses.dataclass(eq=False, slots=True)
class RunState:
    """What this process knows about a run it tracks (``owned``) or reports into."""

    run_id: str
    stage: str | None = None
    task: str | None = None
    parent: RunState | None = None
    total_subtasks: int | None = None
    current_subtask: int | None = None
    pid: int = dataclasses.field(default_factory=current_pid)
    owned: bool = True
    ended: bool = False
    # Subtasks this process has open in the run, innermost last.
    subtasks: list[Any] = dataclasses.field(default_factory=list)
    # track() loops left early: (subtask, frame, instruction offset) — see tasker.instrument.track.
    early_closed: list[tuple[Any, Any, int]] = dataclasses.field(default_factory=list)
    cpu_start: float = dataclasses.field(default_factory=cpu_seconds)
    # Open task()/subtask() scopes of the automatic layer: skip() raises only inside one.
    scopes: int = 0
    # A run handed over to this process (attach(), or a call carrying a handoff): runs that
    # end under it are made durable before the call returns, since such workers may vanish
    # without running atexit (see tasker.runtime.runs.end_run).
    handed_over: bool = False
    # Offered to threads with no run of their own (``ambient``). Not a run that itself nests
    # under the ambient run (a worker thread's call): sibling workers would nest under each
    # other.
    shared: bool = True
    # Work was sent from this run to other processes (see tasker.runtime.runs.start_subtask).
    handed_off: bool = False
    # Where the process's log file stood when this outermost run started (device, inode,
    # size): its end ships what was logged from there on (tasker.runtime.capture.logs).
    log_from: tuple[int, int, int] | None = None
    _next_number: int = 0

    @property
    def is_local(self) -> bool:
        """True when this process started the run (not a forked copy of the state)."""
        return self.owned and self.pid == current_pid()

    def next_subtask_number(self) -> int:
        with _numbering:
            self._next_number += 1
            return self._next_number

    def note_subtask_number(self, number: int) -> None:
        """An explicitly numbered subtask: automatic numbering continues after it."""
        with _numbering:
            self._next_number = max(self._next_number, number)

    def innermost_open_number(self) -> int | None:
        """The number of the innermost subtask open in this run here, if any."""
        for sub in reversed(self.subtasks):
            if not sub.ended:
                return int(sub.number)
        return None

    def open_subtask_number(self) -> int | None:
        """The innermost subtask open in this run here, else the run's current subtask."""
        number = self.innermost_open_number()
        return self.current_subtask if number is None else number


# Numbering is rare next to everything else: one lock serves every run.
_numbering = threading.Lock()


_current: contextvars.ContextVar[RunState | None] = contextvars.ContextVar(
    "tasker_current_run", default=None
)
_attached: dict[str, RunState] = {}
# Every state made current and not yet left, in any thread, oldest first (list operations
# are atomic under the GIL; the list stays as short as the nesting is deep).
_live: list[RunState] = []
# The same for the main thread alone: what TASKER_RUN_ID names.
_main_live: list[RunState] = []
# What the parent process handed down (read once; a fork re-reads it), and what the
# variable holds now as far as tasker set it: reading os.environ on every run start costs
# more than the rest of starting a run.
_inherited: str | None = os.environ.get(RUN_ID_ENV) or None
_env_now: str | None = _inherited
_inherited_subtask = _number(os.environ.get(SUBTASK_ENV)) if _inherited else None
_subtask_env_now: int | None = _inherited_subtask
_main_ident = threading.main_thread().ident
# The run a thread pool's call was submitted from, for that call (see _hook_threads), and the
# attribute of a Thread object naming the run current where it was started.
_submitted: contextvars.ContextVar[RunState | None] = contextvars.ContextVar(
    "tasker_submitted_from", default=None
)
_STARTED_IN = "_tasker_started_in"
# The thread no Thread.start and no pool call ever ran in: the process's first thread (and,
# in a forked child, still that one if it is the thread that forked). There ambient() needs
# neither of the two lookups above — it is asked twice at every top-level run's start.
_plain_ident: int | None = _main_ident
# The state a fork child took over from the thread that forked (see after_fork_in_child).
_forked_with: RunState | None = None


def current_state() -> RunState | None:
    """The run this context itself is in (its own ``@task``/``task()``/``attach()``)."""
    return _current.get()


def entered_state() -> RunState | None:
    """This context's own run if this process entered it, not merely inherited it by fork.

    A fork pool's worker inherits the run that was current when it was forked, and keeps it
    for life, through later runs: work carried to it reports where it was sent from, not
    there."""
    state = _current.get()
    return None if state is _forked_with else state


def ambient() -> RunState | None:
    """The run a context with no run of its own works for.

    A thread-pool call: the run current where it was submitted. A thread started inside a
    run: the innermost run still live in the process that is that run or nested in it (a
    pool's helper thread started by a pipeline serves the pipeline's current step), or, once
    it has ended, the same for its nearest live parent. Any other thread (started with no run
    current): the main thread's innermost live run, never a run of another thread — two
    pipelines in two threads do not report into each other.
    """
    if threading.get_ident() == _plain_ident:
        scope = None
    else:
        scope = _submitted.get()
        if scope is not None and not scope.ended:
            return scope
        if scope is None:
            scope = getattr(threading.current_thread(), _STARTED_IN, None)
    while scope is not None and scope.ended:
        scope = scope.parent
    for state in reversed(_live if scope is not None else _main_live):
        if state.shared and not state.ended and (scope is None or _within(state, scope)):
            return state
    return scope


def _within(state: RunState | None, scope: RunState) -> bool:
    while state is not None:
        if state is scope:
            return True
        state = state.parent
    return False


def inherited_run_id() -> str | None:
    """The run id a parent process handed down through the environment, if any."""
    return _inherited


def reporting_state() -> RunState | None:
    """The run that progress, subtasks and nested runs of this context go to, if any."""
    state = _current.get()
    if state is not None:
        return None if state.ended else state
    state = ambient()
    if state is not None:
        return state
    return attached_state(_inherited) if _inherited is not None else None


def current_run_id() -> str | None:
    """The current run's id: this context's run, else the process's innermost live run,
    else the one inherited from a parent process."""
    state = _current.get()
    if state is not None:
        return state.run_id
    state = ambient()
    if state is not None:
        return state.run_id
    return _inherited


def handoff() -> tuple[str, int | None] | None:
    """What work sent from here now must carry: the run and the subtask open in it."""
    state = reporting_state()
    if state is None:
        return None
    state.handed_off = True
    return state.run_id, state.open_subtask_number()


def attached_state(run_id: str) -> RunState:
    """A state for reporting into a run another process owns (one per run id)."""
    state = _attached.get(run_id)
    if state is None:
        subtask = _inherited_subtask if run_id == _inherited else None
        state = _attached.setdefault(
            run_id, RunState(run_id=run_id, owned=False, current_subtask=subtask)
        )
    return state


def inherited_subtask(state: RunState) -> int | None:
    """The subtask a parent process had open in ``state``'s run when it started this one."""
    return _inherited_subtask if state.run_id == _inherited and not state.owned else None


# Written in place after its first few values: a fresh run id at every top-level run would
# otherwise keep a string in the C library for good (see tasker.runtime.environ).
_run_id_variable = Variable(RUN_ID_ENV)


def _export(value: str | None) -> None:
    global _env_now
    if value != _env_now:
        _env_now = value
        # Empty rather than removed: one assignment, and read as "no run" all the same.
        _run_id_variable.set(value or "")


def _export_subtask(number: int | None) -> None:
    global _subtask_env_now
    if number != _subtask_env_now:
        _subtask_env_now = number
        os.environ[SUBTASK_ENV] = "" if number is None else str(number)


def _export_open_subtask(state: RunState) -> None:
    """Export the innermost subtask open in ``state`` — at every top-level run's start and
    end, where a fresh run has none open and none is exported: then nothing to look up."""
    if state.subtasks or _subtask_env_now is not None:
        _export_subtask(state.innermost_open_number())


def subtasks_changed(state: RunState) -> None:
    """A subtask of ``state`` opened or closed here: children started from now on inherit
    the innermost one open, when ``state`` is the run the environment names."""
    if _main_live and _main_live[-1] is state and threading.get_ident() == _main_ident:
        _export_subtask(state.innermost_open_number())


def push(state: RunState) -> None:
    """Make ``state`` current in this context (and, from the main thread, for children)."""
    parent = state.parent = _current.get()
    state.shared = parent.shared if parent is not None else ambient() is None
    _current.set(state)
    _live.append(state)
    if threading.get_ident() == _main_ident:
        _main_live.append(state)
        _export(state.run_id)
        _export_open_subtask(state)
    elif not _subprocess_hooked:
        _hook_subprocess()
    if not _executors_hooked and (not _threads_hooked or _FUTURES_THREAD in sys.modules):
        _hook_threads()


_subprocess_hooked = False
_threads_hooked = False
_executors_hooked = False
_FUTURES_THREAD = "concurrent.futures.thread"


def _hook_threads() -> None:
    """Let threads started, and thread-pool calls submitted, inside a run work for that run.

    Threads do not inherit context variables, so without this a worker thread would see no
    run, or whichever run another thread made current. Installed when the first run becomes
    current (threads started before that know no run anyway): ``Thread.start`` notes the
    starting context's run on the Thread object, and ``ThreadPoolExecutor.submit`` — which
    ``map`` and asyncio's ``run_in_executor`` use — wraps the call so that it runs for the
    submitting context's run, since one pool thread serves many runs in turn. The executor
    is wrapped once its module has been imported (checked at each run start until then).
    """
    global _threads_hooked, _executors_hooked
    if not _threads_hooked:
        _threads_hooked = True
        original_start = threading.Thread.start

        def start(self: threading.Thread) -> None:
            state = reporting_state()
            if state is not None:
                setattr(self, _STARTED_IN, state)
            original_start(self)

        start.__wrapped__ = original_start  # type: ignore[attr-defined]
        threading.Thread.start = start  # type: ignore[method-assign]
    futures_thread = sys.modules.get(_FUTURES_THREAD)
    if futures_thread is None:
        return
    _executors_hooked = True
    executor = futures_thread.ThreadPoolExecutor
    original_submit = executor.submit

    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        state = reporting_state()
        if state is None:
            return original_submit(self, fn, *args, **kwargs)
        return original_submit(self, _working_for, state, fn, *args, **kwargs)

    submit.__wrapped__ = original_submit  # type: ignore[attr-defined]
    executor.submit = submit


def _working_for(state: RunState, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    token = _submitted.set(state)
    try:
        return fn(*args, **kwargs)
    finally:
        _submitted.reset(token)


def _hook_subprocess() -> None:
    """Give children that other threads start the run of their own thread.

    The environment is the process's: only the main thread's run can be in it. Once a thread
    other than the main one has a run, ``subprocess.Popen`` — which ``subprocess.run``,
    ``asyncio``'s subprocesses and ``os.popen`` all use — gets a thin wrapper: a child started
    from such a thread with the inherited environment (no ``env=``) gets that environment with
    TASKER_RUN_ID set to the thread's run. Everything else passes through unchanged.
    """
    global _subprocess_hooked
    import subprocess

    _subprocess_hooked = True
    original = subprocess.Popen.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if (
            len(args) <= 10  # env is Popen's 11th parameter: not given positionally
            and kwargs.get("env") is None
            and threading.get_ident() != _main_ident
        ):
            state = reporting_state()
            if state is not None and state.run_id != _env_now:
                kwargs["env"] = {**os.environ, RUN_ID_ENV: state.run_id}
        original(self, *args, **kwargs)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]


def _remove(states: list[RunState], state: RunState) -> None:
    # Identity, not equality; from the end, where it almost always is.
    for i in range(len(states) - 1, -1, -1):
        if states[i] is state:
            del states[i]
            return


def pop(run_id: str) -> None:
    """Make the parent of ``run_id`` current again, if ``run_id`` is the current run."""
    state = _current.get()
    if state is None or state.run_id != run_id:
        return
    _current.set(state.parent)
    # Nearly always the last one: no call for that.
    if _live and _live[-1] is state:
        _live.pop()
    else:
        _remove(_live, state)
    if threading.get_ident() == _main_ident:
        if _main_live and _main_live[-1] is state:
            _main_live.pop()
        else:
            _remove(_main_live, state)
        # Runs of overlapping asyncio tasks may end in any order: the variable names the
        # innermost run still live, never one restored out of turn.
        top = _main_live[-1] if _main_live else None
        _export(top.run_id if top is not None else _inherited)
        if top is None:
            _export_subtask(_inherited_subtask)
        else:
            _export_open_subtask(top)


# attach() blocks open in this process, in any thread.
_entered = 0


def enter(state: RunState) -> contextvars.Token[RunState | None]:
    """Make ``state`` (a run owned elsewhere) this context's run until ``leave``."""
    global _entered
    state.parent = _current.get()
    _entered += 1
    return _current.set(state)


def leave(token: contextvars.Token[RunState | None]) -> None:
    global _entered
    _entered = max(0, _entered - 1)
    _current.reset(token)


def handed_over_work() -> bool:
    """True while work handed over to this process (an ``attach()`` block) is running."""
    return _entered > 0


def find(run_id: str) -> RunState | None:
    """This context's state for ``run_id``: the current run or one of its parents, else the
    process's live runs, else a run this process reports into."""
    state = _current.get()
    while state is not None:
        if state.run_id == run_id:
            return state
        state = state.parent
    for state in reversed(_live):
        if state.run_id == run_id:
            return state
    return _attached.get(run_id)


def forget_all() -> None:
    """Forget every live state (tests: runs a test left open)."""
    _live.clear()
    _main_live.clear()
    _attached.clear()


def after_fork_in_child() -> None:
    """In a forked child (called by tasker.runtime.recorder's at-fork hook)."""
    # The child's only thread is the one that forked: its own run (or the process's
    # innermost live run) is what the child inherits — more exact than the variable, which
    # names the main thread's run. Exported again so the child's exec children inherit it.
    global _inherited, _env_now, _main_ident, _entered, _forked_with
    global _inherited_subtask, _subtask_env_now, _plain_ident
    _entered = 0
    if threading.get_ident() != _plain_ident:  # forked from a thread it started, or a pool's
        _plain_ident = None
    state = reporting_state()
    if state is not None and _current.get() is None:
        # A thread with no run of its own forked inside a run: the child reports into that
        # run, and into the subtasks open in it at the fork.
        _current.set(state)
    # Inherited, not entered: a call that carries its own run (a pool reused by a later run)
    # takes precedence over it (entered_state).
    _forked_with = _current.get()
    _inherited = state.run_id if state is not None else (os.environ.get(RUN_ID_ENV) or None)
    _inherited_subtask = (
        state.innermost_open_number() if state is not None else _number(os.environ.get(SUBTASK_ENV))
    )
    _live.clear()
    _main_live.clear()
    _attached.clear()
    _main_ident = threading.get_ident()
    _env_now = None
    _subtask_env_now = None
    _export(_inherited)
    _export_subtask(_inherited_subtask if _inherited else None)
