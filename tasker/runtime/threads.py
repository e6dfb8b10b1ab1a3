"""tasker's own threads (the writer, relays, watchdogs) never receive the program's signals.

The kernel may deliver a process's signal to any thread that does not block it; Python runs
handlers only in the main thread, and a main thread blocked in a system call (sleep, waitpid)
is woken only if the signal lands on it. A SIGTERM that landed on the writer thread would wait
unhandled while the main thread slept on. So every thread tasker starts blocks these signals,
and they always reach the main thread. (A thread inherits the signal mask of the thread that
starts it, so the mask is set around ``start()`` and restored at once.)
"""

from __future__ import annotations

import signal
import threading

__all__ = ["PROCESS_SIGNALS", "started_without_signals"]

# The signals a program handles.
PROCESS_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")
    if hasattr(signal, name)
)


def started_without_signals(thread: threading.Thread) -> None:
    """Start ``thread`` with the process's signals blocked in it (it inherits the mask it is
    started with); a signal arriving meanwhile waits, and then goes to this thread."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        thread.start()
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, PROCESS_SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
