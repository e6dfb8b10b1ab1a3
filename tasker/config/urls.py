"""Database URLs: split into tasker's connection parts, and masked for display.

:func:`mask_url` masks a URL of any shape, well-formed or not, so that no message shows a
password.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from tasker.config.keys import DRIVER_ALIASES, SQLALCHEMY_DRIVERS, parse_driver
from tasker.errors import ConfigError

# The dialect part of a URL with the slashes after it: one slash or two (or none: then the
# text before the first ":" may as well be a user name, and is masked as such).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/+")
# A parameter of a URL's query or of a libpq-style connection string: key=value. The value
# runs to the next "&" or blank (a ";" may be part of a password: masked with it).
_PARAM = re.compile(r"(?P<key>[\w%.+\-]+)(?P<eq>\s*=\s*)(?P<value>'[^']*'|[^&\s]*)")
# A parameter whose key (percent-decoded, any case) holds one of these is a secret:
# password, sslpassword, passwd, pwd, pass, secret, token...
_SECRET_WORDS = ("pass", "pwd", "secret", "token")


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


def _mask_parsed(text: str) -> str | None:
    """``text`` rendered by SQLAlchemy with its password hidden; None when it is not a
    well-formed URL, or when its port is no port at all: ``postgresql://u:86753091/db``
    parses as host ``u`` and port 86753091, a password of digits with no "@" after it. Then
    it is in doubt."""
    url = _well_formed(text)
    if url is None:
        return None
    try:
        port = url.port
        if port is not None and not 1 <= port <= 65535:
            return None
        rendered: str = url.render_as_string(hide_password=True)
    except Exception:  # a part SQLAlchemy cannot render back: in doubt
        return None
    return rendered


def _mask_unparsed(text: str) -> str:
    """``text``, which is not a well-formed URL, with everything that may be a password
    masked: after the dialect and its slashes, what comes before the last "@" is
    ``user:password`` and everything after its first ":" is masked. With no "@" at all the
    URL cannot say where a password would end (``postgresql://u:PW``, ``mysql://root:PW/db``,
    ``postgresql://u:PW:5432/db``), so everything after the user's ":" is masked."""
    scheme = _SCHEME.match(text)
    start = scheme.end() if scheme else 0
    end = _credentials_end(text, start)
    credentials = text[start:end] if end >= 0 else text[start:]
    user, colon, _ = credentials.partition(":")
    if not colon:
        return text  # a user alone (or no credentials): nothing there is a password
    return f"{text[:start]}{user}:***{text[end:] if end >= 0 else ''}"


def _mask_params(text: str) -> str:
    """``text`` with the value of every secret parameter (``?password=``, ``sslpassword=``,
    ``pass%77ord=``, libpq's ``password=...``) replaced by ``***``."""

    def mask(match: re.Match[str]) -> str:
        key = unquote_plus(match.group("key")).lower()
        if any(word in key for word in _SECRET_WORDS):
            return f"{match.group('key')}{match.group('eq')}***"
        return match.group(0)

    return _PARAM.sub(mask, text)


def mask_url(text: str) -> str:
    """``text``, a database URL of any shape, with its password replaced by ``***``.

    It parses first: a well-formed URL is rendered by SQLAlchemy with the password hidden.
    Anything else (one slash after the dialect, no dialect at all, no host, an unencoded "@"
    in the password, a port that is not one) is masked from the user's ":" on: to the last
    "@" when there is one, to the end when there is none. A password given as a parameter
    (``?password=...``) is masked too. When in doubt it masks more, never less; it never
    raises (a message about a bad URL must not fail for it).
    """
    try:
        masked = _mask_parsed(text)
        if masked is None:
            masked = _mask_unparsed(text)
        return _mask_params(masked)
    except Exception:  # pragma: no cover - defensive: nothing of it is shown then
        scheme = _SCHEME.match(text) if isinstance(text, str) else None
        return f"{scheme.group(0) if scheme else ''}***"


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
    port = url.port
    if port is not None and not 1 <= port <= 65535:
        # Not a port: most likely a password of digits with no "@" after it, which the
        # message must not show either (mask_url masks it as in doubt).
        raise ConfigError(
            f"{source}: {mask_url(value)!r} is not a database URL: its port is not a port "
            "number from 1 to 65535 (credentials go before an '@': user:password@host)"
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
