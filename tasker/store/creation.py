"""Whether this process may create what it does not find: a database file and its folder
(SQLite), a schema (PostgreSQL), tasker's tables (every backend).

Tracking and ``tasker init`` create them on first use. Read commands and the dashboard must
not: a command asked to read a database that is not there would otherwise answer from an
empty one made up for it (and leave it behind), hiding a wrong configuration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["creating_allowed", "existing_databases_only", "never_create_databases"]

_create_missing = True


def never_create_databases(enabled: bool = True) -> bool:
    """From now on (in this process) create no database file or folder, schema or table:
    for read commands and the dashboard. ``enabled=False`` restores the default, in which
    the first use creates them. Returns the previous state (True when nothing was created)."""
    global _create_missing
    before = not _create_missing
    _create_missing = not enabled
    return before


@contextlib.contextmanager
def existing_databases_only() -> Iterator[None]:
    """never_create_databases() for the duration of a block."""
    before = never_create_databases()
    try:
        yield
    finally:
        never_create_databases(before)


def creating_allowed() -> bool:
    """True unless never_create_databases() is in force."""
    return _create_missing
