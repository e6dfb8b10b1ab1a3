"""This process's PID, read from the kernel once per process instead of once per use.

``os.getpid()`` is a system call (glibc stopped caching it), about 0.2 us, and a decorated
call asked for it seven times: whether the writer thread is this process's, whether a run is
this process's own, which process facts apply. The value changes only in a forked child, and
every fork that runs Python code afterwards — ``os.fork``, ``os.forkpty``, multiprocessing's
fork and forkserver, billiard — runs the at-fork hooks, where it is read again.

The hook is registered when this module is first imported, which happens (through
tasker.runtime.context) before tasker.runtime.recorder registers its own: hooks run in the
order they were registered, so every other at-fork hook of the runtime already sees the
child's PID.
"""

from __future__ import annotations

import os

__all__ = ["current_pid"]

_pid = os.getpid()


def current_pid() -> int:
    """This process's PID."""
    return _pid


def _read_again() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_read_again)
