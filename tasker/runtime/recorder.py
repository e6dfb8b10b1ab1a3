"""The recorder: holds the configuration and the store, and isolates the API from both.

One recorder per process. It is created empty, loads the configuration on first use and opens
the store (creating the schema when it is missing) on the first call that needs the database.
After a fork the child drops the parent's store and opens its own: connections are never
shared between processes.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tasker.config import Config, load_config
from tasker.runtime import context, ids
from tasker.runtime.capture.process import note_fork
from tasker.runtime.console import setup_console
from tasker.runtime.context import RunState
from tasker.runtime.events import Event

if TYPE_CHECKING:  # the store (and SQLAlchemy) load on first use, keeping `import tasker` light
    from tasker.runtime.writer import Writer
    from tasker.store.sql import SqlStore

__all__ = ["RECORDER", "ProcessHooks", "Recorder"]

# The exit budget when the configuration cannot be loaded (else Config.exit_timeout).
DEFAULT_EXIT_TIMEOUT = 10.0
# The longest a fork waits for what is queued to be written (a stalled database is not
# waited for: the child then reports into rows that the writer parks until they appear).
DEFAULT_LOCK_TIMEOUT = 5.0


class ProcessHooks:
    """What the recorder calls at a process's turning points, handed to it by the module that
    implements them (``tasker.runtime.signals``, which sits above the recorder: it ends runs).
    The recorder itself imports nothing above it; until the hooks are given, there is no
    signal handling and nothing to end at exit."""

    def install_signals(self) -> bool:
        return False

    def uninstall_signals(self) -> bool:
        return False

    def end_live_runs_at_exit(self, deadline: float | None) -> None:
        return None


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._overrides: dict[str, Any] = {}
        self._config_file: str | None = None
        self._config: Config | None = None
        self._store: SqlStore | None = None
        # The background writer is built on the first event (see ``writer``): a process that
        # only reads, such as most commands of the command line, never loads its machinery.
        self._writer: Writer | None = None
        # Runs this process has started and not ended (for signals and exit).
        self.live_runs: set[RunState] = set()
        self._signals_installed = False
        self.hooks = ProcessHooks()
        # True once a configuration with `enabled: false` is loaded: the automatic layer then
        # passes calls straight through (one attribute read per call).
        self.disabled = False
        atexit.register(self._at_exit)

    @property
    def writer(self) -> Writer:
        """The background writer, built on first use."""
        writer = self._writer
        if writer is None:
            with self._lock:
                if self._writer is None:
                    from tasker.runtime.writer import Writer

                    self._writer = Writer(
                        lambda: self.store,
                        lambda: self.config,
                        self._live_run_ids,
                        self._reopen_store,
                        lambda: self._store,
                    )
                writer = self._writer
        return writer

    @property
    def built_writer(self) -> Writer | None:
        """The background writer if it was built already (asking does not build it)."""
        return self._writer

    def _reopen_store(self) -> None:
        """Drop the store (its file was replaced): the next use opens the path again."""
        with self._lock:
            if self._store is not None:
                self._store.dispose()
                self._store = None

    def _live_run_ids(self) -> list[str]:
        return [s.run_id for s in list(self.live_runs) if s.is_local and not s.ended]

    def settings(self) -> tuple[dict[str, Any], str | None]:
        """The explicit settings and configuration file in force (to restore them later)."""
        return dict(self._overrides), self._config_file

    def configure(self, overrides: Mapping[str, Any], config_file: str | None = None) -> Config:
        """Replace the explicit settings; the previous store is closed."""
        config = load_config(overrides, config_file=config_file)
        # What was tracked so far belongs to the database it was tracked for.
        self.writer.flush(timeout=30.0)
        self.writer.pause(timeout=30.0)
        try:
            with self._lock:
                self._overrides = dict(overrides)
                self._config_file = config_file
                self._set_config(config)
        finally:
            self.writer.resume()
        return config

    def _set_config(self, config: Config) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None
        self._config = config
        self.disabled = not config.enabled
        if self._writer is not None:  # a writer built later starts out looking for journals
            self._writer.new_database()
        setup_console(config.console)

    @property
    def config(self) -> Config:
        config = self._config
        if config is None:
            with self._lock:
                if self._config is None:
                    self._set_config(load_config(self._overrides, config_file=self._config_file))
                config = self._config
        assert config is not None
        return config

    @property
    def raw_store(self) -> SqlStore:
        """The store, opened on first use, its schema not yet checked."""
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    from tasker.store.sql import open_store

                    self._store = open_store(self.config)
                store = self._store
        return store

    @property
    def store(self) -> SqlStore:
        """The store, opened (and the schema created or checked) on first use."""
        store = self.raw_store
        store.ensure_schema()
        return store

    def submit(self, event: Event) -> None:
        """Queue a write for the background writer."""
        if not self._signals_installed:
            # Whatever is queued must be written if SIGTERM comes (a pool worker, too).
            self.install_signal_handlers()
            _flush_at_multiprocessing_exit_once()
        self.writer.submit(event)

    def submit_long(self, event: Event) -> None:
        """Queue a write whose texts the writer checks against the server's limit first
        (see tasker.runtime.storable)."""
        if not self._signals_installed:
            self.install_signal_handlers()
            _flush_at_multiprocessing_exit_once()
        self.writer.submit_long(event)

    def synced_store(self) -> SqlStore:
        """The store, after the writer has written everything queued before this call: for
        synchronous calls that must see (and follow) the automatic layer's events."""
        writer = self._writer  # none built yet: nothing queued
        if writer is not None and writer.pending:
            writer.flush()
        return self.store

    def flush(self, timeout: float = 60.0) -> bool:
        """Write everything tracked so far; True when done within ``timeout`` seconds."""
        if self._writer is None:  # nothing was ever tracked
            return True
        return self._writer.flush(timeout)

    def install_signal_handlers(self) -> None:
        if not self._signals_installed:
            self._signals_installed = self.hooks.install_signals()

    def release_signal_handlers(self) -> None:
        """SIGTERM back to its default action (an idle worker process: see
        tasker.runtime.signals.uninstall); the next tracked event installs the handler again."""
        # Not only when this process installed it: a fork child inherits the parent's handler
        # with its own flag starting False (so that its first event installs the handler and
        # the multiprocessing exit flush for the child itself).
        if self.hooks.uninstall_signals():
            self._signals_installed = False

    def exit_timeout(self) -> float:
        """The most the end of the process may wait for the database (``exit_timeout``)."""
        try:
            return float(self.config.exit_timeout)
        except Exception:  # no usable configuration: nothing to wait for either
            return DEFAULT_EXIT_TIMEOUT

    def lock_timeout(self) -> float:
        """The most tasker waits for a lock, its own writer's included (``lock_timeout``):
        a fork, or work handed to another process, waits that long for a write in progress."""
        try:
            return float(self.config.lock_timeout)
        except Exception:  # no usable configuration: the writer reports that
            return DEFAULT_LOCK_TIMEOUT

    def _at_exit(self) -> None:
        import time

        # One budget for the whole exit: what the database has not taken when it runs out
        # goes to the journal (the write in progress included), and the program ends on time.
        deadline = time.monotonic() + self.exit_timeout()
        self.hooks.end_live_runs_at_exit(deadline)
        if self._writer is not None:  # none built: nothing was tracked, nothing to write
            self._writer.flush(timeout=max(0.0, deadline - time.monotonic()), closing=True)

    def reset(self) -> None:
        """Forget the configuration and close the store (tests; ``configure()`` from scratch).
        Whatever could not be written by then is dropped, not carried to the next database."""
        self.writer.flush(timeout=30.0)
        self.writer.pause(timeout=30.0)  # no write may use the store while it is closed
        try:
            self.writer.discard_pending()
            with self._lock:
                if self._store is not None:
                    self._store.dispose()
                self._store = None
                self._config = None
                self.disabled = False
                self._overrides = {}
                self._config_file = None
        finally:
            self.writer.resume()

    def _after_fork_in_child(self) -> None:
        # The parent's pooled connections belong to the parent. The child never touches them:
        # not even to dispose of them (a lock inside the pool may have been held by another
        # thread at the fork), and keeps a reference so that garbage collection never closes
        # a socket the parent still uses.
        self._lock = threading.RLock()
        self.live_runs = set()
        self._signals_installed = False
        if self._writer is not None:
            self._writer._reset_state()
        if self._store is not None:
            _inherited_stores.append(self._store)
            self._store = None


RECORDER = Recorder()
_inherited_stores: list[SqlStore] = []


_mp_hooked = False
_mp_finalizer_pid = 0


def _flush_at_multiprocessing_exit(recorder: Recorder) -> None:
    global _mp_finalizer_pid
    from multiprocessing import util

    if _mp_finalizer_pid != os.getpid():
        _mp_finalizer_pid = os.getpid()
        util.Finalize(None, recorder._at_exit, exitpriority=100)


def _flush_at_multiprocessing_exit_once() -> None:
    """In a multiprocessing child (spawn, forkserver, a pool worker), flush at its exit:
    multiprocessing ends its children with os._exit(), which skips atexit, after running
    its own finalizers."""
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.parent_process() is not None:
        _flush_at_multiprocessing_exit(RECORDER)


def _before_fork() -> None:
    # A forked child may report into the parent's run at once: the run (and its subtasks)
    # must be in the database first. Not from the writer thread itself, which cannot wait
    # for itself. No writer built yet: nothing tracked, nothing to write or hold.
    writer = RECORDER._writer
    if writer is not None:
        bound = RECORDER.lock_timeout()  # a write in progress is waited for like a lock
        # A write already stuck for a while (the database stalls or holds a lock) is not
        # waited for again at each fork: a pool of N workers would cost N times the bound.
        # Nor is a database known to be away tried again (each try costs up to
        # connect_timeout).
        stuck = writer.failing or writer.stalled(bound / 2)
        if threading.current_thread().name != "tasker-writer" and writer.pending and not stuck:
            writer.flush(timeout=bound)
        writer.pause(timeout=0.0 if writer.stalled(bound / 2) else bound)
    for state in list(RECORDER.live_runs):
        state.handed_off = True  # the child may open subtasks of these runs (runs.start_subtask)
    _hook_multiprocessing()


def _hook_multiprocessing() -> None:
    global _mp_hooked
    if not _mp_hooked and "multiprocessing" in sys.modules:
        # multiprocessing ends forked workers with os._exit(), skipping atexit, and clears
        # finalizers registered before its own start-up; a registered after-fork hook adds
        # the flush once the worker is set up.
        from multiprocessing import util

        util.register_after_fork(RECORDER, _flush_at_multiprocessing_exit)
        _mp_hooked = True


def _after_fork_in_parent() -> None:
    if RECORDER._writer is not None:
        RECORDER._writer.resume()


def _after_fork_in_child() -> None:
    # Every piece of the runtime's per-process state is reset here, in this order: fresh run
    # ids (siblings must not draw the parent's sequence), the run context the child inherits
    # (the forking thread's run), the process facts (PID), then the writer and the store (the
    # parent's connections are the parent's). The PID itself is read again before all of
    # these, by tasker.runtime.pid's own hook (registered first). Two more modules keep hooks
    # of their own: the store's statement watchdog (store/watchdog.py), which the command line
    # uses without the runtime, and the Celery integration's execution table
    # (integrations/celery/state.py), a layer above this one that the runtime must not import.
    # Neither depends on the order.
    ids.reseed()
    context.after_fork_in_child()
    note_fork()
    RECORDER._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
