"""Integration tests: tasker against real databases, real processes and real engines, and
the faults they meet — every test taking the ``db`` fixture runs on SQLite, PostgreSQL and
MySQL/MariaDB; fork, spawn and worker pools, Dask, Ray and Celery with its brokers; signals and
kill -9; a network that stalls (tests/proxy.py), a database that goes away, a full disk.

They may use everything of tests/conftest.py (``db``, ``child_env``, ``Backend``, ``ROOT``),
tests/helpers.py (among others ``PrivateServer``, a PostgreSQL server of the test's own
that it may stop and start) and tests/proxy.py.
"""

from __future__ import annotations
