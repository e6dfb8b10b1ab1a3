"""Resolving the configuration: explicit arguments > environment variables > YAML file >
defaults. The configuration file is found by walking up from the working directory, then in
the user's configuration directory."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tasker.config.dirs import user_config_dir, user_data_dir, user_state_dir
from tasker.config.keys import (
    CONFIG_FILENAME,
    DB_PARTS,
    DEFAULT_PG_SCHEMA,
    DEFAULTS,
    KEYS,
    RANK,
    SECTIONS,
    SQLALCHEMY_DRIVERS,
)
from tasker.config.settings import Config
from tasker.config.urls import mask_url, parse_url
from tasker.errors import ConfigError

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
            f"{', '.join(SECTIONS[:-1])} and {SECTIONS[-1]}, got {type(data).__name__}"
        )
    for section, body in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"configuration file {path}: unknown section {section!r}: expected "
                f"{', '.join(SECTIONS[:-1])} or {SECTIONS[-1]}"
            )
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(
                f"configuration file {path}: section {section!r} must be a mapping of keys"
            )
        allowed = [k for k, spec in KEYS.items() if spec.section == section]
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
    unknown = sorted(set(overrides) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"unknown configuration key {unknown[0]!r}: expected one of {', '.join(KEYS)}"
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
        value = KEYS[key].parse(raw, f"{source}" if rank != RANK["argument"] else key)
        current = chosen.get(key)
        if current is None or rank >= current[2]:
            chosen[key] = (value, source, rank)

    for key, value in DEFAULTS.items():
        offer(key, value, "default", RANK["default"])
    if path is not None:
        for key, raw, source in _read_yaml(path, env):
            offer(key, raw, source, RANK["file"])
    for key, spec in KEYS.items():
        if spec.env and env.get(spec.env, "") != "":
            offer(key, env[spec.env], f"environment variable {spec.env}", RANK["env"])
    for key, raw in overrides.items():
        offer(key, raw, "configure()", RANK["argument"])

    values: dict[str, Any] = {k: v for k, (v, _, _) in chosen.items()}
    sources: dict[str, str] = {k: s for k, (_, s, _) in chosen.items()}
    sqlalchemy_driver = ""
    query: tuple[tuple[str, str], ...] = ()

    # A URL sets every connection part; parts given with at least its precedence win over it.
    if "url" in chosen:
        url_value, url_source, url_rank = chosen["url"]
        parts, sqlalchemy_driver, query = parse_url(url_value, url_source)
        for key, part in parts.items():
            if key in chosen and chosen[key][2] >= url_rank:
                continue
            values[key] = part
            sources[key] = url_source
        for key in DB_PARTS:
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
    if values.get("pooler") == "transaction" and driver != "postgresql":
        raise ConfigError(
            f"pooler (from {sources.get('pooler', 'the settings')}): transaction pooling is for "
            f"PostgreSQL behind a pooler such as PgBouncer, and the database is {driver}: "
            "expected none"
        )

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
