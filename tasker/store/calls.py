"""One store call by its name: how the runtime's events reach the store (``tasker.runtime.
events.apply``) and how a batch makes the calls it cannot fold (``tasker.store.batched``).

Apart from the batch machinery so that a process that writes one event at a time, such as
``tasker update``, never imports it.
"""

from __future__ import annotations

from typing import Any

from tasker.store.runs import RunWrites
from tasker.store.subtasks import SubtaskWrites

__all__ = ["StoreCall", "StoreCalls"]

# A store write by name, with its arguments: ("end_run", (run_id, status, values, when)).
StoreCall = tuple[str, tuple[Any, ...]]

_WRITES = frozenset(
    ("start_run", "end_run", "update_run", "start_subtask", "update_subtask", "increment_subtask")
)


class StoreCalls(RunWrites, SubtaskWrites):
    """Store writes made by name."""

    def write_call(self, call: StoreCall) -> Any:
        """Make one store call; returns what the method returned."""
        name, args = call
        if name == "update_subtask":
            run_id, number, values, when, items, reend = args
            return self.update_subtask(
                run_id, number, values, when, items_complete=items, reend=reend
            )
        if name not in _WRITES:
            raise ValueError(f"not a store write: {name!r}")
        return getattr(self, name)(*args)
