"""Configuration: explicit arguments > environment variables > YAML file > defaults.

The result is one frozen :class:`Config`. It remembers where every value came from
(``Config.sources``) so that ``get_config()`` and ``tasker config`` can explain it, and it
never shows the database password: ``repr``, ``url`` and every error message mask it, through
:func:`mask_url`, which masks a URL of any shape (well-formed or not).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasker.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["CONFIG_FILENAME", "Config", "find_config_file", "load_config", "mask_url"]

CONFIG_FILENAME = ".tasker.yml"
DRIVERS = ("sqlite", "postgresql", "mysql")
_DRIVER_ALIASES = {
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


def _timeout(value: object, what: str) -> float:
    expected = f"expected a number of seconds above 0 and at most {MAX_TIMEOUT:.0f}"
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {expected}, got {value!r}") from None
    if not 0 < number <= MAX_TIMEOUT:  # also refuses nan
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


def _driver(value: object, what: str) -> str:
    name = _text(value, what).strip().lower()
    if name not in _DRIVER_ALIASES:
        raise ConfigError(f"{what}: unknown driver {value!r}: expected one of {', '.join(DRIVERS)}")
    return _DRIVER_ALIASES[name]


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
class _Key:
    section: str
    parse: Callable[[object, str], Any]
    env: str | None = None


# Every configuration key: its YAML section, how its value is checked, its variable.
_KEYS: dict[str, _Key] = {
    "url": _Key("database", _text, "TASKER_DB_URL"),
    "driver": _Key("database", _driver, "TASKER_DB_DRIVER"),
    "host": _Key("database", _text, "TASKER_DB_HOST"),
    "port": _Key("database", _port, "TASKER_DB_PORT"),
    "dbname": _Key("database", _text, "TASKER_DB_NAME"),
    "user": _Key("database", _text, "TASKER_DB_USER"),
    "password": _Key("database", _text, "TASKER_DB_PASSWORD"),
    "schema": _Key("database", _text, "TASKER_DB_SCHEMA"),
    "path": _Key("database", _text, "TASKER_DB_PATH"),
    "heartbeat_interval": _Key("tracking", _positive_float, "TASKER_HEARTBEAT_INTERVAL"),
    "stale_after": _Key("tracking", _positive_float, "TASKER_STALE_AFTER"),
    "flush_interval": _Key("tracking", _positive_float, "TASKER_FLUSH_INTERVAL"),
    "console": _Key("tracking", _console, "TASKER_CONSOLE"),
    "quiet": _Key("tracking", _bool, "TASKER_QUIET"),
    "strict": _Key("tracking", _bool, "TASKER_STRICT"),
    "enabled": _Key("tracking", _bool, "TASKER_ENABLED"),
    "environment": _Key("tracking", _text, "TASKER_ENVIRONMENT"),
    "version": _Key("tracking", _text, "TASKER_VERSION"),
    "default_stage": _Key("tracking", _text, "TASKER_DEFAULT_STAGE"),
    "journal_dir": _Key("tracking", _text, "TASKER_JOURNAL_DIR"),
    "max_queued": _Key("tracking", _positive_int, "TASKER_MAX_QUEUED"),
    "connect_timeout": _Key("tracking", _timeout, "TASKER_CONNECT_TIMEOUT"),
    "statement_timeout": _Key("tracking", _timeout, "TASKER_STATEMENT_TIMEOUT"),
    "lock_timeout": _Key("tracking", _timeout, "TASKER_LOCK_TIMEOUT"),
    "exit_timeout": _Key("tracking", _timeout, "TASKER_EXIT_TIMEOUT"),
    "log_roots": _Key("dashboard", _log_roots, "TASKER_DASHBOARD_LOG_ROOTS"),
    "allowed_hosts": _Key("dashboard", _allowed_hosts, "TASKER_DASHBOARD_ALLOWED_HOSTS"),
}
_SECTIONS = ("database", "tracking", "dashboard")
_DB_PARTS = ("driver", "host", "port", "dbname", "user", "password", "path")
# Precedence ranks of the sources, highest first.
_RANK = {"default": 0, "file": 1, "env": 2, "argument": 3}


def user_data_dir() -> Path:
    """Where the default SQLite database lives ($XDG_DATA_HOME/tasker)."""
    if sys.platform == "win32":  # pragma: no cover - exercised only on Windows
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "tasker"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tasker"


def user_state_dir() -> Path:
    """Where undelivered events are journaled by default ($XDG_STATE_HOME/tasker)."""
    if sys.platform == "win32":  # pragma: no cover - exercised only on Windows
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "tasker" / "state"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tasker"


def user_config_dir() -> Path:
    """Where a per-user configuration file is looked for ($XDG_CONFIG_HOME/tasker)."""
    if sys.platform == "win32":  # pragma: no cover - exercised only on Windows
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "tasker"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tasker"


_DEFAULTS: dict[str, Any] = {
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
}


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
        for key in _KEYS:
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


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_vars(value: str, environ: Mapping[str, str]) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (default used when VAR is unset or empty)."""

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        current = environ.get(name, "")
        if current == "" and default is not None:
            return default
        return current

    return _VAR.sub(repl, value)


def find_config_file(start: Path | None = None) -> Path | None:
    """The nearest ``.tasker.yml`` walking up from ``start``, then the user config directory."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    for name in ("tasker.yml", CONFIG_FILENAME):
        candidate = user_config_dir() / name
        if candidate.is_file():
            return candidate
    return None


def _read_yaml(path: Path, environ: Mapping[str, str]) -> Iterator[tuple[str, object, str]]:
    """Yield (key, raw value, source) from a config file, rejecting unknown keys."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(
            f"configuration file {path} is not valid YAML ({where}): {exc.problem}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from None
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(
            f"configuration file {path}: expected a mapping with the sections "
            f"{', '.join(_SECTIONS[:-1])} and {_SECTIONS[-1]}, got {type(data).__name__}"
        )
    for section, body in data.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"configuration file {path}: unknown section {section!r}: expected "
                f"{', '.join(_SECTIONS[:-1])} or {_SECTIONS[-1]}"
            )
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(
                f"configuration file {path}: section {section!r} must be a mapping of keys"
            )
        allowed = [k for k, spec in _KEYS.items() if spec.section == section]
        for key, raw in body.items():
            if key not in allowed:
                raise ConfigError(
                    f"configuration file {path}: unknown key {section}.{key}: expected one of "
                    f"{', '.join(allowed)}"
                )
            value = expand_vars(raw, environ) if isinstance(raw, str) else raw
            yield key, value, f"file {path} ({section}.{key})"


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve the configuration from ``overrides`` (``configure()`` arguments), the
    environment, a YAML file and the defaults, in that order of precedence."""
    env = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown configuration key {unknown[0]!r}: expected one of {', '.join(_KEYS)}"
        )

    # Which file: an explicit argument, then TASKER_CONFIG, then discovery.
    path: Path | None
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
    elif env.get("TASKER_CONFIG"):
        path = Path(env["TASKER_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"TASKER_CONFIG names {path}, which does not exist")
    else:
        path = find_config_file(cwd)

    # (value, source, rank) for each key, the highest rank winning.
    chosen: dict[str, tuple[Any, str, int]] = {}

    def offer(key: str, raw: object, source: str, rank: int) -> None:
        if raw is None:
            return
        value = _KEYS[key].parse(raw, f"{source}" if rank != _RANK["argument"] else key)
        current = chosen.get(key)
        if current is None or rank >= current[2]:
            chosen[key] = (value, source, rank)

    for key, value in _DEFAULTS.items():
        offer(key, value, "default", _RANK["default"])
    if path is not None:
        for key, raw, source in _read_yaml(path, env):
            offer(key, raw, source, _RANK["file"])
    for key, spec in _KEYS.items():
        if spec.env and env.get(spec.env, "") != "":
            offer(key, env[spec.env], f"environment variable {spec.env}", _RANK["env"])
    for key, raw in overrides.items():
        offer(key, raw, "configure()", _RANK["argument"])

    values: dict[str, Any] = {k: v for k, (v, _, _) in chosen.items()}
    sources: dict[str, str] = {k: s for k, (_, s, _) in chosen.items()}
    sqlalchemy_driver = ""
    query: tuple[tuple[str, str], ...] = ()

    # A URL sets every connection part; parts given with at least its precedence win over it.
    if "url" in chosen:
        url_value, url_source, url_rank = chosen["url"]
        parts, sqlalchemy_driver, query = _parse_url(url_value, url_source)
        for key, part in parts.items():
            if key in chosen and chosen[key][2] >= url_rank:
                continue
            values[key] = part
            sources[key] = url_source
        for key in _DB_PARTS:
            if key not in parts and key in chosen and chosen[key][2] < url_rank:
                values.pop(key, None)
                sources.pop(key, None)

    driver = values.get("driver")
    if driver is None:
        driver = "postgresql" if values.get("host") else "sqlite"
        sources["driver"] = "derived (host given)" if values.get("host") else "default"
    if sqlalchemy_driver and not sqlalchemy_driver.startswith(
        "postgresql" if driver == "postgresql" else driver
    ):
        sqlalchemy_driver = ""  # the split driver setting outranks the URL's dialect
    values["driver"] = driver

    if driver == "sqlite":
        db_path = values.get("path") or values.get("dbname")
        if not db_path:
            db_path = str(user_data_dir() / "tasker.db")
            sources["path"] = "default"
        elif "path" not in values:
            sources["path"] = sources.get("dbname", "default")
        values["path"] = db_path
        for key in ("host", "port", "user", "password"):
            values.pop(key, None)
    else:
        if not values.get("dbname"):
            raise ConfigError(
                f"the {driver} database name is not set: give database.dbname in "
                f"{CONFIG_FILENAME}, TASKER_DB_NAME, or a URL in TASKER_DB_URL"
            )
        values.setdefault("host", "localhost")
        if "@" in str(values["host"]):
            # user:password@host given as the host: it would be shown wherever the host is.
            raise ConfigError(
                f"{sources.get('host', 'host')}: {mask_url(str(values['host']))!r} is not a host "
                "name: give the user and password as database.user and database.password"
            )
        values.setdefault("port", 5432 if driver == "postgresql" else 3306)
        if driver == "postgresql" and "schema" not in values:
            values["schema"] = DEFAULT_PG_SCHEMA
        if "user" not in values:
            user = env.get("USER") or env.get("USERNAME")
            if user:
                values["user"] = user
                sources["user"] = "environment variable USER"
    schema = values.get("schema")
    if schema is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", schema):
        raise ConfigError(
            f"{sources.get('schema', 'schema')}: invalid schema name {schema!r}: expected letters,"
            " digits and underscores, starting with a letter or underscore"
        )

    if not values.get("journal_dir"):
        values["journal_dir"] = str(user_state_dir() / "journal")
        sources["journal_dir"] = "default"
    fields = {f.name for f in dataclasses.fields(Config)}
    return Config(
        **{k: v for k, v in values.items() if k in fields and k != "url"},
        query=query,
        sqlalchemy_driver=sqlalchemy_driver or SQLALCHEMY_DRIVERS[driver],
        config_file=str(path) if path is not None else None,
        sources=sources,
    )


# The dialect part of a URL with the slashes after it: one slash or two (or none: then the
# text before the first ":" may as well be a user name, and is masked as such).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/+")
# Passwords given as URL query or connection-string parameters: ?password=..., sslpassword=...
_SECRET_PARAM = re.compile(r"(?i)\b(\w*(?:password|passwd|pwd)\w*)(\s*=\s*)('[^']*'|[^&\s]*)")


def _well_formed(text: str) -> Any:
    """``text`` parsed by SQLAlchemy, or None when it is not a URL or was split wrongly: a
    host or database holding "@" means an unencoded "@" in the password ended the
    credentials too early, and the rest of the password sits in the host."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(text)
    except Exception:  # ArgumentError, or ValueError for a port that is not a number
        return None
    if url.host is not None and "@" in url.host:
        return None
    if url.password is not None and url.database is not None and "@" in url.database:
        return None
    return url


def _credentials_end(text: str, start: int) -> int:
    """Where the credentials of ``text`` end: its last "@" (a host name holds none, and a
    password may hold "@", "/", ":" or "?" unencoded); -1 when there is none."""
    return text.rfind("@", start)


def mask_url(text: str) -> str:
    """``text``, a database URL of any shape, with its password replaced by ``***``.

    It parses first: a well-formed URL is rendered by SQLAlchemy with the password hidden.
    Anything else (one slash after the dialect, no dialect at all, an unencoded "@" in the
    password) is split at its last "@": what comes before it, after the dialect and its
    slashes, is ``user:password``, and everything after the first ":" there is masked. A
    password given as a parameter (``?password=...``) is masked too. When in doubt it masks
    more, never less.
    """
    url = _well_formed(text)
    masked: str | None = None
    if url is not None:
        try:
            masked = url.render_as_string(hide_password=True)
        except Exception:
            masked = None
    if masked is None:
        masked = text
        scheme = _SCHEME.match(text)
        start = scheme.end() if scheme else 0
        end = _credentials_end(text, start)
        if end >= 0:
            user, colon, password = text[start:end].partition(":")
            if colon and password:
                masked = f"{text[:start]}{user}:***{text[end:]}"
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}***", masked)


def _encode_credentials(text: str) -> str:
    """``text`` with the "@" inside its credentials percent-encoded (see _well_formed)."""
    scheme = _SCHEME.match(text)
    start = scheme.end() if scheme else 0
    end = _credentials_end(text, start)
    if end < 0:
        return text
    return text[:start] + text[start:end].replace("@", "%40") + text[end:]


def _url_hint(value: str) -> str:
    """Why ``value`` is not a URL, when the reason is a common slip."""
    head = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):(/*)", value)
    if head is None or head.group(1).partition("+")[0].lower() not in _DRIVER_ALIASES:
        return " (it does not start with a dialect such as postgresql://)"
    if len(head.group(2)) < 2:
        return f" (expected two slashes after {head.group(1)}:)"
    return ""


def _parse_url(value: str, source: str) -> tuple[dict[str, Any], str, tuple[tuple[str, str], ...]]:
    """Split a SQLAlchemy URL into tasker's connection parts (never echoing a password).

    A password holding an unencoded "@" is taken whole: the credentials end at the last "@".
    """
    url = _well_formed(value)
    if url is None:
        url = _well_formed(_encode_credentials(value))
    if url is None:
        raise ConfigError(
            f"{source}: {mask_url(value)!r} is not a database URL{_url_hint(value)}: expected "
            "e.g. postgresql://user@host:5432/dbname, mysql://user@host/dbname or "
            "sqlite:///path/file.db"
        )
    backend, _, dbapi = url.drivername.partition("+")
    driver = _driver(backend, f"{source}: the URL's dialect")
    sa_driver = url.drivername if dbapi else SQLALCHEMY_DRIVERS[driver]
    if driver == "mysql" and backend == "mariadb" and not dbapi:
        sa_driver = "mysql+pymysql"
    parts: dict[str, Any] = {"driver": driver}
    if driver == "sqlite":
        parts["path"] = url.database or ":memory:"
    else:
        for key, part in (
            ("host", url.host),
            ("port", url.port),
            ("dbname", url.database),
            ("user", url.username),
            ("password", url.password),
        ):
            if part is not None:
                parts[key] = part
    query = tuple((k, str(v)) for k, v in url.query.items() if isinstance(v, str))
    return parts, sa_driver, query
