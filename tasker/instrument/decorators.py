"""The automatic layer: ``@task``, ``task()`` blocks, ``subtask()``, ``skip()`` and
``current_run()``.

One run per decorated call or ``with`` block; it ends COMPLETED, FAILED, CANCELLED or SKIPPED
by the rules in :mod:`tasker.instrument.outcome`. User exceptions always propagate unchanged;
tracking failures never reach the tracked code (unless ``strict``). Progress and ends are queued for
the background writer, so the tracked code never waits on the database.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

import wrapt

from tasker import validate
from tasker.instrument.carry import Carried, Sendable, reduce_function, sent_handoff
from tasker.instrument.outcome import Outcome, Skipped, guarded, outcome
from tasker.models import Status
from tasker.runtime import context, runs
from tasker.runtime.context import RunState
from tasker.runtime.recorder import RECORDER

__all__ = ["Run", "SubtaskHandle", "current_run", "skip", "subtask", "task"]

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("tasker")


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
        if not values:
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


# ---------------------------------------------------------------------------- functions


class BoundTrackedFunction(Sendable, wrapt.BoundFunctionWrapper):  # type: ignore[type-arg]
    """A tracked method bound to its instance; pickles as that instance's method."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        instance = self._self_instance
        if instance is None:
            return self._self_parent.__reduce_ex__(protocol)  # type: ignore[no-any-return]
        return _bound_method, (instance, self.__wrapped__.__name__, sent_handoff())

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)


def _bound_method(instance: Any, name: str, handoff: Any) -> Any:
    method = getattr(instance, name)
    return method if handoff is None else Carried(method, handoff, implicit=True)


class TrackedFunction(Sendable, wrapt.FunctionWrapper):  # type: ignore[type-arg]
    """A function decorated with ``@task`` or ``@subtask``: it keeps the wrapped function's
    name, docstring, signature and binding (wrapt), and pickles by reference, carrying the
    run current when it is pickled (see :mod:`tasker.instrument.carry`)."""

    __slots__ = ("_self_decorate",)
    __bound_function_wrapper__ = BoundTrackedFunction

    def __init__(self, wrapped: Any, wrapper: Any, decorate: Callable[[Any], Any]) -> None:
        super().__init__(wrapped, wrapper)
        self._self_decorate = decorate

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return reduce_function(self, self._self_decorate)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)


# ---------------------------------------------------------------------------- task()


def _wrap_call(
    func: F,
    begin: Callable[[], Any],
    finish: Callable[[Any, BaseException | None], bool],
    decorate: Callable[[Any], Any],
) -> F:
    """Wrap a function or coroutine function so each call runs between ``begin()`` and
    ``finish(token, exception)``; ``finish`` returning True swallows the exception (a skip)
    and the call returns None. wrapt keeps the name, docstring, signature and binding."""
    if inspect.iscoroutinefunction(func):

        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if RECORDER.disabled:
                return await wrapped(*args, **kwargs)
            token = begin()
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                if finish(token, exc):
                    return None
                raise
            finish(token, None)
            return result

        return TrackedFunction(func, async_wrapper, decorate)  # type: ignore[return-value]

    def sync_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if RECORDER.disabled:  # tracking turned off: the bare call
            return wrapped(*args, **kwargs)
        token = begin()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            if finish(token, exc):
                return None
            raise
        finish(token, None)
        return result

    return TrackedFunction(func, sync_wrapper, decorate)  # type: ignore[return-value]


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


class TaskScope(_Scope[Run]):
    """What ``task(...)`` returns: a decorator and a (sync or async) context manager."""

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

    # -- decorator

    def __call__(self, func: F) -> F:
        name = self.name or getattr(func, "__qualname__", None) or repr(func)
        script = _source_file(func)
        scope = self

        if inspect.isasyncgenfunction(func):

            def agen_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                if RECORDER.disabled:
                    return wrapped(*args, **kwargs)
                return _drive_async_generator(scope, name, script, wrapped(*args, **kwargs))

            return TrackedFunction(func, agen_wrapper, self)  # type: ignore[return-value]

        if inspect.isgeneratorfunction(func):

            def gen_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                if RECORDER.disabled:
                    return wrapped(*args, **kwargs)
                return _drive_generator(scope, name, script, wrapped(*args, **kwargs))

            return TrackedFunction(func, gen_wrapper, self)  # type: ignore[return-value]

        return _wrap_call(func, lambda: scope._begin(name, script), scope._finish, self)  # type: ignore[no-any-return]


def _drive_generator(
    scope: TaskScope, name: str, script: str | None, gen: Generator[Any, Any, Any]
) -> Generator[Any, Any, Any]:
    """Run ``gen`` as one run spanning its whole iteration. The run is current only while
    the generator's own code runs, not in the consumer's code between items."""
    state = scope._begin(name, script)
    if state is not None:
        context.pop(state.run_id)
    send: Any = None
    throw: BaseException | None = None
    while True:
        token = context._current.set(state) if state is not None else None
        try:
            item = gen.throw(throw) if throw is not None else gen.send(send)
        except StopIteration as stop:
            scope._finish(state, None)
            return stop.value
        except BaseException as exc:
            if scope._finish(state, exc):
                return None
            raise
        finally:
            if token is not None:
                context._current.reset(token)
        try:
            send = yield item
            throw = None
        except GeneratorExit as exc:
            gen.close()
            scope._finish(state, exc)
            raise
        except BaseException as exc:  # thrown in by the consumer: pass it on
            throw = exc


async def _drive_async_generator(
    scope: TaskScope, name: str, script: str | None, agen: Any
) -> AsyncIterator[Any]:
    state = scope._begin(name, script)
    if state is not None:
        context.pop(state.run_id)
    send: Any = None
    throw: BaseException | None = None
    while True:
        token = context._current.set(state) if state is not None else None
        try:
            item = await (agen.athrow(throw) if throw is not None else agen.asend(send))
        except StopAsyncIteration:
            scope._finish(state, None)
            return
        except BaseException as exc:
            if scope._finish(state, exc):
                return
            raise
        finally:
            if token is not None:
                context._current.reset(token)
        try:
            send = yield item
            throw = None
        except GeneratorExit as exc:
            await agen.aclose()
            scope._finish(state, exc)
            raise
        except BaseException as exc:
            throw = exc


@functools.lru_cache(maxsize=1024)
def _source_file_cached(func: Any) -> str | None:
    try:
        return inspect.getsourcefile(func)
    except TypeError:
        return None


def _source_file(func: Any) -> str | None:
    try:
        path = _source_file_cached(inspect.unwrap(func))
    except TypeError:  # unhashable callables
        return None
    # "<stdin>", "<string>": no file to speak of; the script's own path is recorded instead.
    return None if path is None or path.startswith("<") else path


def _script_task_name() -> str:
    from tasker.runtime.capture.process import process_info

    script = process_info().script_filename
    return script.rsplit(".", 1)[0] if script else "main"


def _null_run() -> Run:
    """A handle for a run that could not be recorded: its methods do nothing harmful."""
    return Run(RunState(run_id="00000000-0000-0000-0000-000000000000", owned=False, ended=True))


@overload
def task(func: F, /) -> F: ...


@overload
def task(
    stage: str | None = None,
    name: str | None = None,
    *,
    total_subtasks: int | None = None,
    version: str | None = None,
    task_type: str | None = None,
    message: str | None = None,
    parent_run_id: str | None = None,
) -> TaskScope: ...


def task(
    stage: Any = None,
    name: str | None = None,
    *,
    total_subtasks: int | None = None,
    version: str | None = None,
    task_type: str | None = None,
    message: str | None = None,
    parent_run_id: str | None = None,
) -> Any:
    """Track a function call or a block as one run of a task.

    ``@task`` (name from the function's qualified name, stage from the configuration's
    ``default_stage``), ``@task(stage=..., name=...)``, or ``with task("STAGE", "name") as run``
    (also ``async with``). Works on functions, methods, coroutines, generators and async
    generators; a generator's run spans its whole iteration. ``parent_run_id`` nests the
    runs under a run whose id the caller has (else under the current run, if any).
    """
    if callable(stage) and not isinstance(stage, str):
        return TaskScope(
            None,
            None,
            total_subtasks=None,
            version=None,
            task_type=None,
            message=None,
        )(stage)
    return TaskScope(
        stage,
        name,
        total_subtasks=total_subtasks,
        version=version,
        task_type=task_type,
        message=message,
        parent_run_id=parent_run_id,
    )


# ---------------------------------------------------------------------------- subtask()


class SubtaskScope(_Scope[SubtaskHandle]):
    """What ``subtask(...)`` returns: a decorator and a (sync or async) context manager."""

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

    def __call__(self, func: F) -> F:
        return _wrap_call(func, self._begin, self._finish, self)  # type: ignore[no-any-return]


def subtask(name: str, items_total: int | None = None) -> SubtaskScope:
    """A numbered subtask (1, 2, 3 …) of the current run: ``with subtask("Loading") as st:``,
    ``async with``, or ``@subtask("Loading")``. Its handle counts items with ``st.advance()``.
    Outside any run it does nothing."""
    return SubtaskScope(name, items_total)
