"""Database URLs: split into tasker's connection parts, and masked for display.

:func:`mask_url` masks a URL of any shape, well-formed or not, so that no message shows a
password.
"""

from __future__ import annotations

import re
from typing import Any

from tasker.config.keys import DRIVER_ALIASES, SQLALCHEMY_DRIVERS, parse_driver
from tasker.errors import ConfigError

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
    if head is None or head.group(1).partition("+")[0].lower() not in DRIVER_ALIASES:
        return " (it does not start with a dialect such as postgresql://)"
    if len(head.group(2)) < 2:
        return f" (expected two slashes after {head.group(1)}:)"
    return ""


def parse_url(value: str, source: str) -> tuple[dict[str, Any], str, tuple[tuple[str, str], ...]]:
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
    driver = parse_driver(backend, f"{source}: the URL's dialect")
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
