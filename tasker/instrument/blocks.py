"""The ``with`` side of the automatic layer: the handles (:class:`Run`,
:class:`SubtaskHandle`), ``current_run()``, ``skip()``, and the scopes ``task()`` and
``subtask()`` open and close.

A scope ends its run or subtask COMPLETED, FAILED, CANCELLED or SKIPPED by the rules in
:mod:`tasker.instrument.outcome`; only a skip is swallowed, every other exception goes on
unchanged. The decorators (:mod:`tasker.instrument.decorators`) run each call inside the
same scopes.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Generic, TypeVar

from tasker import validate
from tasker.instrument.outcome import Outcome, Skipped, guarded, outcome
from tasker.models import Status
from tasker.runtime import context, runs
from tasker.runtime.context import RunState
from tasker.runtime.recorder import RECORDER

__all__ = [
    "Run",
    "SubtaskBlock",
    "SubtaskHandle",
    "TaskBlock",
    "correct_early_closed",
    "current_run",
    "skip",
]


# ---------------------------------------------------------------------------- handles


class Run:
    """The handle of a run: ``with task(...) as run`` or ``current_run()``."""

    __slots__ = ("_state",)

    def __init__(self, state: RunState) -> None:
        self._state = state

    def __repr__(self) -> str:
        return f"Run(run_id={self.run_id!r}, stage={self.stage!r}, task={self.task!r})"

    @property
    def run_id(self) -> str:
        return self._state.run_id

    @property
    def stage(self) -> str | None:
        return self._state.stage

    @property
    def task(self) -> str | None:
        return self._state.task

    def update(self, percent: float | None = None, message: str | None = None) -> None:
        """Report the run's overall percent (0 to 100) and/or a progress message."""
        pct = validate.percent(percent, "percent")
        msg = validate.optional_text(message, "message")
        values: dict[str, Any] = {}
        if pct is not None:
            values["overall_percent_complete"] = pct
        if msg is not None:
            values["overall_progress_message"] = msg
        if not values or self._state.ended:  # an ended run (run.fail()) stays as it ended
            return
        values["status"] = Status.RUNNING.value
        guarded("a run update", runs.update_run, self.run_id, values)

    def fail(self, error: str | BaseException | None = None) -> None:
        """End the run FAILED now (with a message or an exception's details); the code goes
        on, and the run stays FAILED when its block or function ends."""
        if isinstance(error, BaseException):
            result = outcome(error)
            values, line = result.values, result.line
        else:
            message = validate.optional_text(error, "error")
            values = {"error_message": message} if message else {}
            line = message
        guarded(
            "the failure of a run",
            runs.end_run,
            self._state,
            Status.FAILED,
            values,
            sync=False,
            line=line,
        )

    def skip(self, reason: str | None = None) -> None:
        """End the run SKIPPED: raises :class:`Skipped`, which the run's scope catches."""
        raise Skipped(reason)


class SubtaskHandle:
    """The handle of a subtask: ``with subtask(...) as st``."""

    __slots__ = ("_sub",)

    def __init__(self, sub: runs.Subtask | None) -> None:
        self._sub = sub

    @property
    def number(self) -> int | None:
        return None if self._sub is None else self._sub.number

    @property
    def count(self) -> int:
        """Items counted by this handle so far."""
        return 0 if self._sub is None else self._sub.counter.count

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done (thread-safe; written by the background writer)."""
        sub = self._sub
        if sub is not None:
            if type(n) is not int or not 0 <= n <= validate.COUNT_MAX:
                n = validate.clamped_count(n, "advance()") or 0
            counter = sub.counter
            with counter.lock:
                counter.count += n

    def update(
        self,
        percent: float | None = None,
        message: str | None = None,
        items_total: int | None = None,
    ) -> None:
        """Report the subtask's percent, a message, or its (new) number of items."""
        sub = self._sub
        if sub is None:
            return
        values: dict[str, Any] = {}
        pct = validate.percent(percent, "percent")
        if pct is not None:
            values["percent_complete"] = pct
        msg = validate.optional_text(message, "message")
        if msg is not None:
            values["progress_message"] = msg
        total = validate.clamped_count(items_total, "items_total")
        if total is not None:
            values["items_total"] = total
            sub.counter.items_total = total
        if values:
            guarded("a subtask update", runs.update_subtask, sub.run_id, sub.number, values)


def current_run() -> Run | None:
    """The current run's handle: this thread's or task's run, else the innermost run live in
    this process (a worker thread inside a run), else the run a parent process handed down;
    None outside any run."""
    state = context.current_state() or context.reporting_state()
    return None if state is None else Run(state)


def skip(reason: str | None = None) -> None:
    """End the current task run or subtask as SKIPPED.

    Inside ``@task``, ``task()`` or ``subtask()`` this raises :class:`Skipped`, which the
    innermost of them catches (a skipped decorated function returns None). A run started with
    ``task_start()`` is ended SKIPPED at once. Outside any run it does nothing.
    """
    state = context.current_state()
    if state is None or state.ended:
        return
    if state.scopes > 0:
        raise Skipped(reason)
    values = {"overall_progress_message": reason} if reason else {}
    guarded("a skipped run", runs.end_run, state, Status.SKIPPED, values, sync=False, line=reason)


def correct_early_closed(state: RunState, exc: BaseException | None, result: Outcome) -> None:
    """A track() loop closed by the exception now failing its scope ends with that scope's
    status, not COMPLETED (see tasker.instrument.track)."""
    if not state.early_closed:
        return
    entries, state.early_closed = state.early_closed, []
    if exc is None or result.status is Status.COMPLETED or result.suppress:
        return
    where = set()
    tb = exc.__traceback__
    while tb is not None:
        where.add((id(tb.tb_frame), tb.tb_lasti))
        tb = tb.tb_next
    for sub, frame, lasti in entries:
        if (id(frame), lasti) in where:
            runs.correct_subtask(sub, result.status, error=result.line)


# ---------------------------------------------------------------------------- scopes

H = TypeVar("H")


class _Scope(Generic[H]):
    """The ``with`` / ``async with`` protocol shared by task() and subtask(): entering
    pushes what ``_open_scope`` returns, leaving hands it to ``_finish``."""

    def __init__(self) -> None:
        self._stack: list[Any] = []

    def _open_scope(self) -> tuple[Any, H]:
        raise NotImplementedError

    def _finish(self, token: Any, exc: BaseException | None) -> bool:
        raise NotImplementedError

    def __enter__(self) -> H:
        token, handle = self._open_scope()
        self._stack.append(token)
        return handle

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._finish(self._stack.pop(), exc)

    async def __aenter__(self) -> H:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self.__exit__(exc_type, exc, tb)


class TaskBlock(_Scope[Run]):
    """A run as a ``with`` or ``async with`` block (``TaskScope``, in
    :mod:`tasker.instrument.decorators`, adds the decorator)."""

    def __init__(
        self,
        stage: str | None,
        name: str | None,
        *,
        total_subtasks: int | None,
        version: str | None,
        task_type: str | None,
        message: str | None,
        parent_run_id: str | None = None,
    ) -> None:
        self.stage = None if stage is None else validate.name(stage, "stage", 100)
        self.parent_run_id = (
            None if parent_run_id is None else validate.run_id(parent_run_id, "parent_run_id")
        )
        self.name = None if name is None else validate.name(name, "name", 255)
        self.total_subtasks = validate.count(total_subtasks, "total_subtasks")
        self.version = validate.optional_text(version, "version", 100)
        self.task_type = validate.optional_text(task_type, "task_type", 20)
        self.message = validate.optional_text(message, "message")
        super().__init__()

    # -- the run itself

    def _begin(self, name: str | None, script_path: str | None = None) -> RunState | None:
        def start() -> RunState | None:
            config = RECORDER.config
            if not config.enabled:
                return None
            task_name = name or self.name or _script_task_name()
            state = runs.start_run(
                self.stage or config.default_stage,
                task_name,
                sync=False,
                total_subtasks=self.total_subtasks,
                message=self.message,
                version=self.version,
                task_type=self.task_type,
                script_path=script_path,
                parent_run_id=self.parent_run_id,
            )
            state.scopes += 1
            return state

        result: RunState | None = guarded("the start of a run", start)
        return result

    def _finish(self, state: RunState | None, exc: BaseException | None) -> bool:
        """End the run; True when the scope should swallow ``exc`` (a skip)."""
        if state is None:
            return isinstance(exc, Skipped)
        state.scopes -= 1
        result = outcome(exc)
        correct_early_closed(state, exc, result)
        if not state.ended:
            guarded(
                "the end of a run",
                runs.end_run,
                state,
                result.status,
                result.values,
                sync=False,
                line=result.line,
            )
        else:
            context.pop(state.run_id)  # ended early by run.fail(): only leave its scope
        return result.suppress

    # -- with / async with

    def _open_scope(self) -> tuple[RunState | None, Run]:
        state = self._begin(None)
        return state, (Run(state) if state is not None else _null_run())


def _script_task_name() -> str:
    from tasker.runtime.capture.process import process_info

    script = process_info().script_filename
    return script.rsplit(".", 1)[0] if script else "main"


def _null_run() -> Run:
    """A handle for a run that could not be recorded: its methods do nothing harmful."""
    return Run(RunState(run_id="00000000-0000-0000-0000-000000000000", owned=False, ended=True))


class SubtaskBlock(_Scope[SubtaskHandle]):
    """A subtask as a ``with`` or ``async with`` block (``SubtaskScope``, in
    :mod:`tasker.instrument.decorators`, adds the decorator)."""

    def __init__(self, name: str, items_total: int | None) -> None:
        self.name = validate.name(name, "subtask name", 500)
        self.items_total = validate.count(items_total, "items_total")
        super().__init__()

    def _begin(self) -> runs.Subtask | None:
        state = context.reporting_state()
        if state is None or RECORDER.disabled:
            return None
        sub: runs.Subtask | None = guarded(
            "the start of a subtask",
            runs.start_subtask,
            state,
            self.name,
            sync=False,
            items_total=self.items_total,
        )
        if sub is not None:
            state.scopes += 1
        return sub

    def _finish(self, sub: runs.Subtask | None, exc: BaseException | None) -> bool:
        if sub is None:
            return False
        sub.state.scopes -= 1
        result = outcome(exc)
        correct_early_closed(sub.state, exc, result)
        if not sub.ended:
            error = result.line if result.status is not Status.COMPLETED else None
            message = result.line if result.status is Status.SKIPPED else None
            guarded(
                "the end of a subtask",
                runs.end_subtask,
                sub,
                result.status,
                sync=False,
                message=message,
                error=None if message else error,
            )
        return result.suppress

    def _open_scope(self) -> tuple[runs.Subtask | None, SubtaskHandle]:
        sub = self._begin()
        return sub, SubtaskHandle(sub)
