"""The SQLAlchemy store: every statement tasker runs against its database is built in
``tasker.store``, and :class:`SqlStore` is the one face of it for the runtime and the queries.

SqlStore is made of one part per concern, each a :class:`~tasker.store.core.StoreCore` (the
engine, tables and transactions they share):

- :mod:`tasker.store.ddl`: creating, upgrading, checking and dropping the schema;
- :mod:`tasker.store.tasks` and :mod:`tasker.store.runs`: stage, task and run writes;
- :mod:`tasker.store.subtasks`: subtask writes;
- :mod:`tasker.store.batched`: the background writer's batches, many runs' writes in a few
  multi-row statements (:mod:`tasker.store.folding`, :mod:`tasker.store.levels`,
  :mod:`tasker.store.multirow`), loaded on the first batch (see :meth:`SqlStore.write_calls`);
- :mod:`tasker.store.reads`: the queries, whose statements :mod:`tasker.store.selects`
  builds;
- :mod:`tasker.store.pipelines`: pipeline runs (a run and every run under it);
- :mod:`tasker.store.replay`: journal replay.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasker.config import Config
from tasker.models import NewRun, Status
from tasker.store.calls import StoreCall, StoreCalls
from tasker.store.ddl import SchemaDdl
from tasker.store.expressions import LOST_TYPE
from tasker.store.pipelines import PipelineReads
from tasker.store.reads import Reads
from tasker.store.replay import JournalReplay
from tasker.store.runs import RunWrites
from tasker.store.subtasks import SubtaskWrites

if TYPE_CHECKING:
    from tasker.store.batched import BatchedWrites

__all__ = ["SqlStore", "open_store"]

# The error_type the store writes on a run the reaper ended (tasker.runtime.reaper.LOST must
# be the same).
_LOST_TYPE = LOST_TYPE


class SqlStore(
    SchemaDdl, StoreCalls, RunWrites, SubtaskWrites, Reads, PipelineReads, JournalReplay
):
    """Reads and writes tasker's tables. Thread-safe; one per process and configuration."""

    # The batch writes (tasker.store.batched and the folding, levels and multi-row modules
    # under it) are only the background writer's: a process that never batches, such as a
    # command of the command line, never imports them. They run on a view of this store that
    # shares its state (``_batched``).

    def write_calls(self, calls: Sequence[StoreCall], apart: Collection[str] = ()) -> None:
        """Make ``calls`` in one transaction, with the outcome of making them one after the
        other (:meth:`tasker.store.batched.BatchedWrites.write_calls`)."""
        self._batched.write_calls(calls, apart)

    def insert_whole_runs(
        self, rows: Sequence[tuple[NewRun, Status, dict[str, Any], datetime]]
    ) -> None:
        """Insert runs that started and ended between two writes, each as its finished row,
        in one statement (:meth:`tasker.store.batched.BatchedWrites.insert_whole_runs`)."""
        self._batched.insert_whole_runs(rows)

    @functools.cached_property
    def _batched(self) -> BatchedWrites:
        """This store as the batch writes see it: the same engine, tables, transactions and
        prepared statements (one ``__dict__``), with the batch methods' class."""
        view = object.__new__(_batched_class())
        view.__dict__ = self.__dict__
        return view


@functools.cache
def _batched_class() -> type[BatchedWrites]:
    """SqlStore with the batch writes before its own methods (built once, on first use)."""
    from tasker.store.batched import BatchedWrites

    return type("BatchedSqlStore", (BatchedWrites, SqlStore), {})


def open_store(config: Config) -> SqlStore:
    """A store for ``config`` (nothing is connected until the first operation)."""
    return SqlStore(config)
