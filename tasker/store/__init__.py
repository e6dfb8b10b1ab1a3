"""Storage: the only layer that builds SQL.

:class:`SqlStore` serves SQLite, PostgreSQL (psycopg 3) and MySQL/MariaDB (PyMySQL) through
SQLAlchemy Core; ``open_store(config)`` makes one from a :class:`~tasker.config.Config`.
"""

from tasker.store.sql import SqlStore, open_store

__all__ = ["SqlStore", "open_store"]
