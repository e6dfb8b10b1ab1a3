"""The SQLAlchemy store: every statement tasker runs against its database is built in
``tasker.store``, and :class:`SqlStore` is the one face of it for the runtime and the queries.

SqlStore is made of one part per concern, each a :class:`~tasker.store.core.StoreCore` (the
engine, tables and transactions they share):

- :mod:`tasker.store.ddl`: creating, upgrading, checking and dropping the schema;
- :mod:`tasker.store.tasks` and :mod:`tasker.store.runs`: stage, task and run writes;
- :mod:`tasker.store.subtasks`: subtask writes;
- :mod:`tasker.store.batched`: the background writer's batches, many runs' writes in a few
  multi-row statements (:mod:`tasker.store.folding`, :mod:`tasker.store.levels`,
  :mod:`tasker.store.multirow`);
- :mod:`tasker.store.reads`: the queries, whose statements :mod:`tasker.store.selects`
  builds;
- :mod:`tasker.store.pipelines`: pipeline runs (a run and every run under it);
- :mod:`tasker.store.replay`: journal replay.
"""

from __future__ import annotations

from tasker.config import Config
from tasker.store.batched import BatchedWrites
from tasker.store.ddl import SchemaDdl
from tasker.store.expressions import LOST_TYPE
from tasker.store.pipelines import PipelineReads
from tasker.store.reads import Reads
from tasker.store.replay import JournalReplay
from tasker.store.runs import RunWrites
from tasker.store.subtasks import SubtaskWrites

__all__ = ["SqlStore", "open_store"]

# The error_type the store writes on a run the reaper ended (tasker.runtime.reaper.LOST must
# be the same).
_LOST_TYPE = LOST_TYPE


class SqlStore(
    SchemaDdl, BatchedWrites, RunWrites, SubtaskWrites, Reads, PipelineReads, JournalReplay
):
    """Reads and writes tasker's tables. Thread-safe; one per process and configuration."""


def open_store(config: Config) -> SqlStore:
    """A store for ``config`` (nothing is connected until the first operation)."""
    return SqlStore(config)
