"""The configuration keys: each one's YAML section, environment variable, default and the
parser that checks its value (and names where a bad value came from)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from typing import Any

from tasker.errors import ConfigError

CONFIG_FILENAME = ".tasker.yml"
DRIVERS = ("sqlite", "postgresql", "mysql")
DRIVER_ALIASES = {
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "pg": "postgresql",
    "psycopg": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
# The SQLAlchemy dialect+driver tasker uses for each backend when a URL names none.
SQLALCHEMY_DRIVERS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
}
CONSOLE_MODES = ("auto", "true", "false")
# What stands between tasker and PostgreSQL: nothing (or a pooler that gives each client a
# server session of its own: PgBouncer's session mode), or a pooler that hands the server
# session to another client after every transaction (PgBouncer's transaction mode).
POOLERS = ("none", "session", "transaction")
DEFAULT_PG_SCHEMA = "tasker"


def _bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off", ""):
            return False
    raise ConfigError(f"{what}: expected true or false, got {value!r}")


def _positive_float(value: object, what: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected a positive number of seconds, got {value!r}") from None
    if not number > 0:
        raise ConfigError(f"{what}: expected a positive number of seconds, got {value!r}")
    return number


def _positive_int(value: object, what: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected a whole number above 0, got {value!r}") from None
    if number < 1:
        raise ConfigError(f"{what}: expected a whole number above 0, got {value!r}")
    return number


# Timeouts reach the drivers as whole milliseconds or seconds; beyond a day they only hide a
# hang, and PostgreSQL refuses values past 2**31 ms.
MAX_TIMEOUT = 86_400.0


def _seconds(value: object, what: str, *, zero: bool) -> float:
    """A number of seconds up to MAX_TIMEOUT: above 0, or from 0 when ``zero`` is allowed."""
    low = "from 0 to" if zero else "above 0 and at most"
    expected = f"expected a number of seconds {low} {MAX_TIMEOUT:.0f}"
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {expected}, got {value!r}") from None
    lowest_ok = number >= 0 if zero else number > 0
    if not (lowest_ok and number <= MAX_TIMEOUT):  # also refuses nan
        raise ConfigError(f"{what}: {expected}, got {value!r}")
    return abs(number)  # -0.0 is 0


def _timeout(value: object, what: str) -> float:
    return _seconds(value, what, zero=False)


def _linger(value: object, what: str) -> float:
    return _seconds(value, what, zero=True)


# A log tail is one value of a run's row, written with the run's end (and with other runs'
# rows in one statement): far below any server's packet limit (MariaDB's max_allowed_packet
# is 16 MiB by default, older MySQL's 4 MiB).
MAX_LOG_TAIL_BYTES = 1 << 20


def _pooler(value: object, what: str) -> str:
    text = _text(value, what).strip().lower()
    if text == "statement":
        raise ConfigError(
            f"{what}: statement pooling cannot carry tasker's transactions (each writes "
            "several statements): expected transaction or session pooling for tasker's "
            "connections"
        )
    if text not in POOLERS:
        raise ConfigError(f"{what}: expected one of {', '.join(POOLERS)}; got {value!r}")
    return text


def _byte_count(value: object, what: str) -> int:
    expected = f"expected a whole number of bytes from 0 to {MAX_LOG_TAIL_BYTES}"
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {expected}, got {value!r}") from None
    if not 0 <= number <= MAX_LOG_TAIL_BYTES:
        raise ConfigError(f"{what}: {expected}, got {value!r}")
    return number


def _items(value: object, what: str, separator: str) -> tuple[str, ...]:
    """A list from YAML, or one string holding ``separator``-separated items (variables)."""
    if isinstance(value, str):
        parts = value.split(separator)
    elif isinstance(value, (list, tuple)):
        parts = [_text(v, what) for v in value]
    else:
        raise ConfigError(f"{what}: expected a list of strings, got {value!r}")
    return tuple(p.strip() for p in parts if p.strip())


def _log_roots(value: object, what: str) -> tuple[str, ...]:
    roots = []
    for item in _items(value, what, os.pathsep):
        path = os.path.expanduser(item)
        if not os.path.isabs(path):
            raise ConfigError(
                f"{what}: expected absolute directory paths, got {item!r}: a relative one would "
                "depend on the directory the dashboard is started from"
            )
        roots.append(os.path.normpath(path))
    return tuple(roots)


def _allowed_hosts(value: object, what: str) -> tuple[str, ...]:
    hosts = []
    for item in _items(value, what, ","):
        host = item.lower()
        if host != "*" and not re.fullmatch(r"(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(:[0-9]{1,5})?", host):
            raise ConfigError(
                f"{what}: expected host names such as tasker.example.com or "
                f"tasker.example.com:8787 (or * for any), got {item!r}"
            )
        hosts.append(host)
    return tuple(hosts)


def _port(value: object, what: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        port = int(str(value).strip())
    except (TypeError, ValueError):
        raise ConfigError(
            f"{what}: expected a port number from 1 to 65535, got {value!r}"
        ) from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what}: expected a port number from 1 to 65535, got {value!r}")
    return port


def _text(value: object, what: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{what}: expected a string, got {value!r}")


def parse_driver(value: object, what: str) -> str:
    """The backend ``value`` names (an alias such as postgres or mariadb included)."""
    name = _text(value, what).strip().lower()
    if name not in DRIVER_ALIASES:
        raise ConfigError(f"{what}: unknown driver {value!r}: expected one of {', '.join(DRIVERS)}")
    return DRIVER_ALIASES[name]


def _console(value: object, what: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = _text(value, what).strip().lower()
    if text in ("yes", "on", "1"):
        text = "true"
    if text in ("no", "off", "0"):
        text = "false"
    if text not in CONSOLE_MODES:
        raise ConfigError(f"{what}: expected one of auto, true, false; got {value!r}")
    return text


@dataclasses.dataclass(frozen=True)
class Key:
    section: str
    parse: Callable[[object, str], Any]
    env: str | None = None


# Every configuration key: its YAML section, how its value is checked, its variable.
KEYS: dict[str, Key] = {
    "url": Key("database", _text, "TASKER_DB_URL"),
    "driver": Key("database", parse_driver, "TASKER_DB_DRIVER"),
    "host": Key("database", _text, "TASKER_DB_HOST"),
    "port": Key("database", _port, "TASKER_DB_PORT"),
    "dbname": Key("database", _text, "TASKER_DB_NAME"),
    "user": Key("database", _text, "TASKER_DB_USER"),
    "password": Key("database", _text, "TASKER_DB_PASSWORD"),
    "schema": Key("database", _text, "TASKER_DB_SCHEMA"),
    "path": Key("database", _text, "TASKER_DB_PATH"),
    "pooler": Key("database", _pooler, "TASKER_DB_POOLER"),
    "heartbeat_interval": Key("tracking", _positive_float, "TASKER_HEARTBEAT_INTERVAL"),
    "stale_after": Key("tracking", _positive_float, "TASKER_STALE_AFTER"),
    "flush_interval": Key("tracking", _positive_float, "TASKER_FLUSH_INTERVAL"),
    "console": Key("tracking", _console, "TASKER_CONSOLE"),
    "quiet": Key("tracking", _bool, "TASKER_QUIET"),
    "strict": Key("tracking", _bool, "TASKER_STRICT"),
    "enabled": Key("tracking", _bool, "TASKER_ENABLED"),
    "environment": Key("tracking", _text, "TASKER_ENVIRONMENT"),
    "version": Key("tracking", _text, "TASKER_VERSION"),
    "default_stage": Key("tracking", _text, "TASKER_DEFAULT_STAGE"),
    "journal_dir": Key("tracking", _text, "TASKER_JOURNAL_DIR"),
    "max_queued": Key("tracking", _positive_int, "TASKER_MAX_QUEUED"),
    "connect_timeout": Key("tracking", _timeout, "TASKER_CONNECT_TIMEOUT"),
    "statement_timeout": Key("tracking", _timeout, "TASKER_STATEMENT_TIMEOUT"),
    "lock_timeout": Key("tracking", _timeout, "TASKER_LOCK_TIMEOUT"),
    "exit_timeout": Key("tracking", _timeout, "TASKER_EXIT_TIMEOUT"),
    "connection_linger": Key("tracking", _linger, "TASKER_CONNECTION_LINGER"),
    "log_tail_bytes": Key("tracking", _byte_count, "TASKER_LOG_TAIL_BYTES"),
    "log_roots": Key("dashboard", _log_roots, "TASKER_DASHBOARD_LOG_ROOTS"),
    "allowed_hosts": Key("dashboard", _allowed_hosts, "TASKER_DASHBOARD_ALLOWED_HOSTS"),
}
SECTIONS = ("database", "tracking", "dashboard")
DB_PARTS = ("driver", "host", "port", "dbname", "user", "password", "path")
# Precedence ranks of the sources, highest first.
RANK = {"default": 0, "file": 1, "env": 2, "argument": 3}

DEFAULTS: dict[str, Any] = {
    "heartbeat_interval": 10.0,
    "stale_after": 60.0,
    "flush_interval": 1.0,
    "console": "auto",
    "quiet": False,
    "strict": False,
    "enabled": True,
    "default_stage": "DEFAULT",
    "max_queued": 100_000,
    "connect_timeout": 5.0,
    "statement_timeout": 30.0,
    "lock_timeout": 5.0,
    "exit_timeout": 10.0,
    "connection_linger": 0.25,
    "log_tail_bytes": 16 * 1024,
    "pooler": "none",
}
