"""The resolved configuration: one frozen :class:`Config`, which remembers where every value
came from (``Config.sources``) and never shows the database password."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tasker.config.keys import KEYS, SQLALCHEMY_DRIVERS
from tasker.config.urls import mask_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


@dataclasses.dataclass(frozen=True)
class Config:
    """The resolved configuration. ``sources`` says where each value came from."""

    driver: str
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    schema: str | None = None
    path: str | None = None
    # A connection pooler in front of PostgreSQL (tasker.config.keys.POOLERS): in transaction
    # mode tasker keeps no state in the server session (tasker.store.timeouts).
    pooler: str = "none"
    query: tuple[tuple[str, str], ...] = ()
    sqlalchemy_driver: str = ""
    heartbeat_interval: float = 10.0
    stale_after: float = 60.0
    flush_interval: float = 1.0
    console: str = "auto"
    quiet: bool = False
    strict: bool = False
    # False turns tracking off (tests of tracked code, a dry run): decorators, blocks and
    # track() pass straight through and nothing touches the database.
    enabled: bool = True
    environment: str | None = None
    version: str | None = None
    default_stage: str = "DEFAULT"
    # Undelivered events go here while the database is away (default: user_state_dir()).
    journal_dir: str | None = None
    # Events held in memory while the database is away; beyond this they go to the journal.
    max_queued: int = 100_000
    # Every wait on the database is bounded (see tasker.store.engine): establishing a
    # connection, one statement (or any driver call) with no answer, waiting for a lock.
    connect_timeout: float = 5.0
    statement_timeout: float = 30.0
    lock_timeout: float = 5.0
    # The most a database that does not answer may delay the program's exit: what is not
    # written by then goes to the journal.
    exit_timeout: float = 10.0
    # How long a process keeps its idle database connection after a write (0: closed after
    # every write), so that many mostly idle processes do not hold a connection each.
    connection_linger: float = 0.25
    # A run's end ships at most this much of the end of the process's log file (0: none),
    # so that the dashboard shows it without reading files named by the database.
    log_tail_bytes: int = 16 * 1024
    # The dashboard reads log files only inside these directories (none by default).
    log_roots: tuple[str, ...] = ()
    # Host header values the dashboard accepts besides the address it is bound to.
    allowed_hosts: tuple[str, ...] = ()
    config_file: str | None = None
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        fields = []
        for f in dataclasses.fields(self):
            if f.name in ("sources", "query"):
                continue
            value = getattr(self, f.name)
            if f.name == "password":
                value = "***" if value else None
            fields.append(f"{f.name}={value!r}")
        return f"Config({', '.join(fields)})"

    def sqlalchemy_url(self) -> URL:
        """The connection URL, password included: for the store's engine only."""
        from sqlalchemy.engine import URL

        if self.driver == "sqlite":
            return URL.create(self.sqlalchemy_driver or "sqlite", database=self.path)
        return URL.create(
            self.sqlalchemy_driver or SQLALCHEMY_DRIVERS[self.driver],
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.dbname,
            query=dict(self.query),
        )

    @property
    def url(self) -> str:
        """The connection URL with the password masked: safe to print."""
        return mask_url(self.sqlalchemy_url().render_as_string(hide_password=False))

    @property
    def db_schema(self) -> str | None:
        """The schema (PostgreSQL) or database (MySQL) qualifier for tasker's tables."""
        if self.driver == "sqlite":
            return None
        return self.schema

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) rows for display; the password is masked."""
        rows = [("url", self.url, self.sources.get("url", "derived"))]
        for key in KEYS:
            if key == "url":
                continue
            value = getattr(self, key)
            if key == "password" and value:
                value = "***"
            if isinstance(value, tuple):
                value = ", ".join(value)
            rows.append(
                (key, "" if value is None else str(value), self.sources.get(key, "default"))
            )
        return rows
