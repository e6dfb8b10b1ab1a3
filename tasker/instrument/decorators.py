"""The automatic layer: ``@task``, ``task()`` blocks, ``subtask()``, ``skip()`` and
``current_run()``.

One run per decorated call or ``with`` block; it ends COMPLETED, FAILED, CANCELLED or SKIPPED
by the rules in :mod:`tasker.instrument.outcome`. User exceptions always propagate unchanged;
tracking failures never reach the tracked code (unless ``strict``). Progress and ends are queued for
the background writer, so the tracked code never waits on the database.

This module wraps functions, coroutines and generators; the scopes they run in, and the
handles, are in :mod:`tasker.instrument.blocks`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, TypeVar, overload

import wrapt

from tasker.instrument.blocks import (
    Run,
    SubtaskBlock,
    SubtaskHandle,
    TaskBlock,
    correct_early_closed,
    current_run,
    skip,
)
from tasker.instrument.carry import Carried, Sendable, reduce_function, sent_handoff
from tasker.runtime import context
from tasker.runtime.recorder import RECORDER
from tasker.runtime.storable import fitted
from tasker.validate import WIDTHS

__all__ = [
    "Run",
    "SubtaskHandle",
    "correct_early_closed",
    "current_run",
    "skip",
    "subtask",
    "task",
]

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("tasker")


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


# ---------------------------------------------------------------------------- task()


class TaskScope(TaskBlock):
    """What ``task(...)`` returns: a decorator and a (sync or async) context manager."""

    def __call__(self, func: F) -> F:
        name = self.name or getattr(func, "__qualname__", None) or repr(func)
        name = fitted(name, "task", WIDTHS["task"])  # once, not at every call
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


class SubtaskScope(SubtaskBlock):
    """What ``subtask(...)`` returns: a decorator and a (sync or async) context manager."""

    def __call__(self, func: F) -> F:
        return _wrap_call(func, self._begin, self._finish, self)  # type: ignore[no-any-return]


def subtask(name: str, items_total: int | None = None) -> SubtaskScope:
    """A numbered subtask (1, 2, 3 …) of the current run: ``with subtask("Loading") as st:``,
    ``async with``, or ``@subtask("Loading")``. Its handle counts items with ``st.advance()``.
    Outside any run it does nothing."""
    return SubtaskScope(name, items_total)
