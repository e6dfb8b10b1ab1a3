"""Work that leaves the process carries its run: ``attach()``, ``bind()`` and the pickling
of decorated functions.

The run context (run id, open subtask number) travels **with each call**, never with the
worker process: a pool made before a run, or reused by later runs, reports every call into
the run that sent it.

- ``attach(run_id, subtask=None)``: make a run owned by another process this context's run
  for a block (the receiving side of any hand-over: a message queue, a custom engine).
- ``bind(fn)``: a picklable callable that runs ``fn`` attached to the run (and subtask) current
  when ``bind`` was called.
- A ``@task`` function pickles by reference (module and qualified name) and carries the run
  current when it is pickled; the worker gets the same decorated function back, wrapped so
  the call runs attached (``restore``).

Engines that pickle in a helper thread (multiprocessing, concurrent.futures, loky) pickle
where no run is current: ``context.handoff()`` then falls back to the process's innermost
live run, which is the dispatching run in the usual one-pipeline program. ``bind()`` captures
at the call instead, for programs with several runs sending work at once.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import warnings
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, TypeVar

import wrapt

from tasker import validate
from tasker.errors import TaskerError, TaskerWarning, ValidationError
from tasker.runtime import context, runs
from tasker.runtime.context import RunState

__all__ = ["Carried", "attach", "bind", "handoff", "restore"]

F = TypeVar("F", bound=Callable[..., Any])
Handoff = tuple[str, "int | None"]

# ---------------------------------------------------------------------------- attach()


def _checked_subtask(subtask: Any) -> int | None:
    return validate.positive_int32(subtask, "subtask")


class attach:
    """Report into ``run_id`` (a run another process owns) for the duration of a block.

    Inside, ``@task`` calls nest under that run, and ``track()`` loops and
    ``subtask_increment()`` count into subtask ``subtask`` (or, without one, into the run's
    current subtask as the database knows it). ``with`` and ``async with`` both work; each
    entry is independent, so threads and tasks may attach to different runs at once.
    """

    def __init__(self, run_id: str, subtask: int | None = None) -> None:
        self.run_id = validate.run_id(run_id)
        self.subtask = _checked_subtask(subtask)
        self._tokens: list[Any] = []

    def _state(self) -> RunState:
        state = RunState(
            run_id=self.run_id, owned=False, current_subtask=self.subtask, handed_over=True
        )
        if self.subtask is not None:
            state.subtasks.append(runs.remote_subtask(state, self.subtask))
        return state

    def __enter__(self) -> RunState:
        state = self._state()
        self._tokens.append(context.enter(state))
        return state

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        context.leave(self._tokens.pop())
        # What the block counted is written before the worker moves on (or vanishes).
        runs.make_durable()

    async def __aenter__(self) -> RunState:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


# ---------------------------------------------------------------------------- sending


def _cloudpickle_frame(depth: int) -> bool:
    """Is the Python code ``depth`` frames up cloudpickle (or a vendored copy of it)?"""
    try:
        return "cloudpickle" in sys._getframe(depth + 1).f_code.co_filename
    except ValueError:
        return False


class Sendable:
    """Mixin for tasker's function proxies: pickle them through their own ``__reduce_ex__``.

    wrapt's proxies report the wrapped function's class, so cloudpickle (joblib/loky, Dask,
    Ray) takes them for plain functions and, for one defined in ``__main__``, pickles the
    bare function by value: the decorator is silently lost. To cloudpickle's type check only
    — recognised by the asking frame — a proxy shows its own class; everyone else (inspect,
    asyncio, frameworks) still sees a function.
    """

    __slots__ = ()

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        frame = sys._getframe(1)
        if frame.f_code.co_name == "reducer_override" and "cloudpickle" in (
            frame.f_code.co_filename
        ):
            return type(self)
        return self.__wrapped__.__class__  # type: ignore[attr-defined, no-any-return]


def _lookup(module_name: str, qualname: str) -> Any:
    """The object named ``qualname`` in ``module_name``, or None."""
    if "<locals>" in qualname:
        return None
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def by_reference(fn: Any) -> tuple[str, str] | None:
    """(module, qualified name) under which ``fn`` is found again, or None."""
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        return None
    if module_name == "__mp_main__":  # a spawned child's main module: "__main__" everywhere
        module_name = "__main__"
    return (module_name, qualname) if _lookup(module_name, qualname) is fn else None


# Decorated functions rebuilt from their bare function in this process (by value): one per
# name, so that each arrival does not decorate anew.
_rebuilt: dict[tuple[str, str], Any] = {}


def restore(
    module_name: str,
    qualname: str,
    handoff: Handoff | None = None,
    rebuild: tuple[Callable[..., Any], Callable[..., Any]] | None = None,
    detached: bool = False,
) -> Any:
    """Unpickle a decorated function: found again by name (or, where the name does not
    resolve here — a function of ``__main__`` in a Ray worker — decorated anew from the
    bare function sent by value), wrapped to run attached to ``handoff``."""
    fn = _lookup(module_name, qualname)
    if fn is None or not isinstance(fn, Sendable):
        if rebuild is None:
            raise TaskerError(
                f"cannot find the tracked function {qualname} in module {module_name} in "
                f"this process (pid {os.getpid()}): define it at module level in an "
                "importable module"
            )
        key = (module_name, qualname)
        fn = _rebuilt.get(key)
        if fn is None:
            decorate, bare = rebuild
            fn = _rebuilt.setdefault(key, decorate(bare))
    if handoff is None:
        return Carried(fn, None, implicit=True) if detached else fn
    return Carried(fn, handoff, implicit=True)


def _pickled_once_by_ray() -> bool:
    """Is this pickle Ray's copy of a remote function, made once and sent with every call?"""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(20):
        if frame is None:
            return False
        if frame.f_code.co_filename.endswith(("ray/remote_function.py", "ray\\remote_function.py")):
            return True
        frame = frame.f_back
    return False


# Functions already warned about (by qualified name): one warning each.
_warned_ray: set[str] = set()


def _ray_handoff(fn: Any) -> None:
    """``ray.remote(fn)`` on a tracked function: its one pickled copy serves every later
    call, from whatever run, so it carries no run at all — better top-level runs than runs
    filed under the first caller's run long after it ended — and the user is told once."""
    name = str(getattr(fn, "__qualname__", fn))
    if name not in _warned_ray:
        _warned_ray.add(name)
        warnings.warn(
            f"ray.remote() pickles the tracked function {name} once and sends that copy with "
            "every later call, so its runs cannot nest under the run that calls them: use "
            f"tasker.integrations.ray.remote({name}) instead",
            TaskerWarning,
            stacklevel=4,
        )


def reduce_function(fn: Any, decorate: Callable[..., Any]) -> tuple[Any, ...]:
    """What a decorated function pickles as: its name, the run it carries, and (for
    cloudpickle, which can send functions by value) how to rebuild it where its name does
    not resolve. ``decorate`` applied to the bare function gives the decorated one."""
    ref = by_reference(fn)
    bare = fn.__wrapped__
    rebuild = None
    if _cloudpickle_frame(2):
        module_name = getattr(bare, "__module__", None)
        if ref is None or module_name in ("__main__", "__mp_main__"):
            rebuild = (decorate, bare)
    if ref is None:
        if rebuild is None:
            raise TaskerError(
                f"cannot pickle the tracked function {getattr(fn, '__qualname__', fn)!r}: "
                "it is not reachable by name at module level (define it at module level, "
                "or send it with cloudpickle)"
            )
        ref = (str(getattr(bare, "__module__", "__main__")), str(bare.__qualname__))
    if _cloudpickle_frame(2) and _pickled_once_by_ray():
        _ray_handoff(fn)
        return restore, (ref[0], ref[1], None, rebuild, True)
    return restore, (ref[0], ref[1], sent_handoff(), rebuild)


# ---------------------------------------------------------------------------- bind()


class Carried(Sendable, wrapt.ObjectProxy):  # type: ignore[type-arg]
    """A callable that runs its wrapped callable attached to a run (and subtask): what
    ``bind()`` returns and what a decorated function sent from a run arrives as."""

    __slots__ = ("_self_handoff", "_self_implicit")

    def __init__(self, wrapped: Any, handoff: Handoff | None, implicit: bool = False) -> None:
        super().__init__(wrapped)
        self._self_handoff = handoff
        # Captured by pickling a decorated function, not asked for with bind(): it gives way
        # to a run the receiving context entered itself (an attach() around the call, say),
        # since an engine may pickle a function once and send that copy with later work —
        # but not to a run a forked worker merely inherited from its parent at the fork.
        self._self_implicit = implicit

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        handoff = self._self_handoff
        wrapped = self.__wrapped__
        if handoff is None and self._self_implicit and not inspect.iscoroutinefunction(wrapped):
            # Sent with no run (Ray's one copy of a remote function): its runs are top-level,
            # and written before the call returns, since such workers may vanish.
            try:
                return wrapped(*args, **kwargs)
            finally:
                runs.make_durable()
        if handoff is None or (self._self_implicit and context.entered_state() is not None):
            return wrapped(*args, **kwargs)
        if inspect.iscoroutinefunction(wrapped):
            return _attached_coroutine(handoff, wrapped, args, kwargs)
        with attach(*handoff):
            return wrapped(*args, **kwargs)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _carried, (self.__wrapped__, self._self_handoff, self._self_implicit)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)

    def __repr__(self) -> str:
        return f"<tasker bound {self.__wrapped__!r} to {self._self_handoff}>"


def _carried(wrapped: Any, handoff: Handoff | None, implicit: bool = False) -> Carried:
    return Carried(wrapped, handoff, implicit)


async def _attached_coroutine(
    handoff: Handoff, fn: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    async with attach(*handoff):
        return await fn(*args, **kwargs)


def sent_handoff() -> Handoff | None:
    """The handoff for work sent now, with the run's start (and its subtasks') already in
    the database when anything is still queued: a worker must find the rows it reports into.
    Bounded; the receiving writer also waits a while for rows that are late."""
    handoff = context.handoff()
    if handoff is not None:
        runs.write_queued_starts()
    return handoff


def handoff() -> Handoff | None:
    """The run and open subtask that work sent from here now belongs to, as
    ``(run_id, subtask_number)`` (None outside any run): send it along with work to an
    engine tasker does not know, and run the work under ``attach(*handoff)`` there."""
    return sent_handoff()


def bind(fn: F) -> F:
    """A picklable callable that runs ``fn`` attached to the run and the subtask current
    now: send it to a process pool, joblib, Dask, Ray or a thread, and ``track()``,
    ``subtask_increment()``, ``task_update()`` and decorated calls inside ``fn`` report into
    that run and subtask. Outside any run, ``fn`` runs as it is."""
    if not callable(fn):
        raise ValidationError(f"bind() takes a callable, got {type(fn).__name__}")
    return Carried(fn, sent_handoff())  # type: ignore[return-value]
