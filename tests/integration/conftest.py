"""Integration tests: tasker against real databases, real processes and real engines, and
the faults they meet — every test taking the ``db`` fixture runs on SQLite, PostgreSQL and
MySQL/MariaDB; fork, spawn and worker pools, Dask, Ray and Celery with its brokers; signals and
kill -9; a network that stalls (tests/proxy.py), a database that goes away, a full disk.

They may use everything of tests/conftest.py (``db``, ``child_env``, ``Backend``, ``ROOT``),
tests/helpers.py and tests/proxy.py, and this tier's own helper: ``PrivateServer``, a
PostgreSQL server of the test's own that it may stop and start.
"""

from __future__ import annotations

import pytest

from benchmarks.servers import PrivatePostgres, ServerError


class PrivateServer(PrivatePostgres):
    """A PostgreSQL server of the test's own, on a free loopback port, that the test may stop
    and start at will (benchmarks/servers.py); a server program that is missing or fails
    fails the test, with its output."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        try:
            super().__init__(settings)
        except ServerError as exc:
            pytest.fail(str(exc))

    def _run(self, program: str, *args: str) -> None:
        try:
            super()._run(program, *args)
        except ServerError as exc:
            pytest.fail(str(exc))
