"""What reaches the dashboard's pages, and what a browser lets them do: the Host header
guard (against DNS rebinding), the token guard, and the security headers of every answer."""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tasker.errors import ConfigError

__all__ = [
    "COOKIE",
    "HostGuard",
    "SecurityHeaders",
    "TokenGuard",
    "is_loopback",
    "is_unspecified",
    "machine_name",
]

COOKIE = "tasker_token"

# ---------------------------------------------------------------------------- host guard

# Names of the loopback address a browser may use for a dashboard bound to it.
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header (or an allowed_hosts entry) as (name, port); None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value.partition("]")
        if not bracket:
            return None
        name += "]"
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            return None
    else:
        name, colon, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if colon else None
    if not name or any(c.isspace() or c in "/@?#\\" for c in name):
        return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or len(port_text) > 5:
        return None
    return name, int(port_text)


def _address_name(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address.lower()
    return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed


class HostGuard:
    """Answers 400 to a request whose Host header names neither the address the dashboard
    is bound to nor one of ``allowed_hosts``: a page of another site whose name was pointed
    at this address (DNS rebinding) would otherwise read the dashboard from the browser of
    anyone who can reach it.

    Accepted: bound to a loopback address, 127.0.0.1, localhost and [::1] with the bound
    port; otherwise the address the request came in on (and the ``host`` it was told to
    bind to, or this machine's name when told to bind to all interfaces), with the port;
    and every ``allowed_hosts`` entry (``name`` for any port, ``name:port``, or ``*`` for
    anything). A Host without a port means port 80.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str] = (), host: str | None = None):
        self.app = app
        self.any = "*" in allowed_hosts
        self.allowed: set[tuple[str, int | None]] = set()
        for entry in allowed_hosts:
            parsed = _split_host(entry)
            if parsed is not None:
                self.allowed.add(parsed)
        # The name it was told to bind to, unless a wildcard (0.0.0.0, ::), which no browser
        # should be sent to: then the address each request came in on is the one accepted.
        self.bound = _address_name(host) if host and not is_unspecified(host) else None
        # Bound to all interfaces, the URL printed names this machine: that name must open.
        # (A rebinding attack needs a name of the attacker's; this machine's is not one.)
        name = machine_name() if host and is_unspecified(host) else None
        self.machine = _address_name(name) if name else None

    def permits(self, host_header: str, server: tuple[str, int] | None) -> bool:
        if self.any:
            return True
        parsed = _split_host(host_header)
        if parsed is None:
            return False
        name, port = parsed
        port = 80 if port is None else port
        if (name, None) in self.allowed or (name, port) in self.allowed:
            return True
        if server is None:
            return False
        address, bound_port = _address_name(str(server[0])), int(server[1])
        if port != bound_port:
            return False
        names = {address}
        if self.bound is not None and not is_loopback(self.bound.strip("[]")):
            names.add(self.bound)
        if is_loopback(address.strip("[]")):
            names.update(_LOOPBACK_NAMES)
        if self.machine is not None:
            names.add(self.machine)
        return name in names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((v for k, v in scope.get("headers", []) if k.lower() == b"host"), b"")
        server = scope.get("server")
        if self.permits(host.decode("latin-1"), tuple(server) if server else None):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            "400 Bad Request: this Host header is not the dashboard's address (list the names "
            "it is reached by in dashboard.allowed_hosts)",
            400,
        )
        await response(scope, receive, send)


# ---------------------------------------------------------------------------- token guard

# Characters a token may hold: those a cookie value may carry unquoted (RFC 6265).
_TOKEN_CHARS = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+")


class TokenGuard:
    """Every request must carry the token: ``?token=`` (then kept in a cookie),
    ``Authorization: Bearer``, or the cookie. Whatever is given (empty, non-ASCII, huge) is
    compared in constant time as bytes: a wrong token is a 401, never an error."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not _TOKEN_CHARS.fullmatch(token):
            raise ConfigError(
                "the dashboard token must be printable ASCII without spaces, quotes, commas, "
                "semicolons or backslashes (it is kept in a cookie)"
            )
        self.app = app
        self.token = token
        self._expected = token.encode("ascii")

    def _given(self, scope: Scope) -> tuple[str | None, bool]:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0], True
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value, False
        return None, False

    def accepts(self, given: str | None) -> bool:
        if not given:
            return False
        # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, from_query = self._given(scope)
        if not self.accepts(given):
            response = PlainTextResponse("a token is required: open the URL tasker printed", 401)
            await response(scope, receive, send)
            return
        if not from_query:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Any) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def machine_name() -> str | None:
    """This machine's name as other machines may know it; None when it has none to speak of."""
    try:
        name = socket.gethostname().strip().lower()
    except OSError:
        return None
    return name if name and not is_loopback(name) else None


# What a page may load and run: the package's own scripts and styles only, nothing inline
# but style attributes (progress bars set their width), no eval, no plugins, no framing,
# forms only back to the dashboard. A task name that somehow got past the escaping still
# could not run a script.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the Content-Security-Policy and its companions to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
