"""Ray: remote functions whose runs nest under the run that called them.

Ray pickles a remote function once, when it is first called, and reuses that copy: a run
captured in it would go with every later call. ``tasker.integrations.ray.remote(fn)``
instead sends ``fn`` as an argument of one generic remote function, so each call carries the
run (and open subtask) current when it is made::

    from tasker.integrations import ray as tasker_ray

    score_remote = tasker_ray.remote(score, num_cpus=1)
    with tasker.task("SCORING", "Nightly batch"):
        ray.get([score_remote.remote(i) for i in range(10)])

Runs that end in a Ray worker are written before the call returns, so ``ray.shutdown()``
loses none of them. Needs the ``ray`` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasker.instrument.carry import bind

__all__ = ["TrackedRemote", "remote"]

_runner: Any = None


def _call(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _remote_runner() -> Any:
    global _runner
    if _runner is None:
        import ray

        _runner = ray.remote(_call)
    return _runner


class TrackedRemote:
    """What ``remote(fn)`` returns: ``.remote(*args, **kwargs)`` and ``.options(...)`` as on
    a Ray remote function."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self._fn = fn
        self._options = options

    def options(self, **options: Any) -> TrackedRemote:
        return TrackedRemote(self._fn, {**self._options, **options})

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        runner = _remote_runner()
        if self._options:
            runner = runner.options(**self._options)
        return runner.remote(bind(self._fn), args, kwargs)


def remote(fn: Callable[..., Any], **options: Any) -> TrackedRemote:
    """A Ray remote version of ``fn`` (a ``@task`` function, or any function that reports
    with ``track()``/``subtask_increment()``) whose calls report into the caller's run.
    ``options`` are Ray's (``num_cpus=``, ``num_gpus=`` …)."""
    return TrackedRemote(fn, options)
