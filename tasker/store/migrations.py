"""In-place schema upgrades.

``UPGRADES[n]`` takes a schema from version ``n`` to ``n + 1``. ``SqlStore.create_schema()``
(``tasker init``) applies every step from the stored version to ``tasker.schema.SCHEMA_VERSION``
under the same database-wide lock as creation, and records the new version. Add a step here
whenever ``SCHEMA_VERSION`` is bumped.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from tasker.schema import Tables

__all__ = ["UPGRADES", "Upgrade"]

# (connection, dialect name, tables of the target version) → None
Upgrade = Callable[[Connection, str, Tables], None]

UPGRADES: dict[int, Upgrade] = {}
