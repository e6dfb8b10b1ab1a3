"""The dashboard's routes and ``serve()``."""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

import tasker
from tasker import queries
from tasker.ages import parse_since
from tasker.dashboard import data, pages
from tasker.dashboard.guards import (
    HostGuard,
    SecurityHeaders,
    TokenGuard,
)
from tasker.dashboard.guards import is_loopback as _is_loopback
from tasker.dashboard.guards import is_unspecified as _is_unspecified
from tasker.dashboard.guards import machine_name as _machine_name
from tasker.errors import (
    ConfigError,
    DatabaseError,
    TaskerError,
    UnknownRunError,
    ValidationError,
)
from tasker.formatting import json_default
from tasker.models import parse_status

__all__ = ["HostGuard", "TokenGuard", "create_app", "serve"]

T = TypeVar("T")

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 50


def _json(content: Any, status: int = 200) -> Response:
    body = json.dumps(content, default=json_default, ensure_ascii=False)
    return Response(body, status_code=status, media_type="application/json")


def _error(exc: Exception, request: Request) -> Response:
    status = 404 if isinstance(exc, UnknownRunError) else 400
    if isinstance(exc, DatabaseError):
        status = 503  # the database is away: not the request's fault
    if request.url.path.startswith("/api/"):
        body = {"error": str(exc)}
        if isinstance(exc, _BadFilter):
            body["field"] = exc.field
        return _json(body, status)
    if request.url.path.startswith("/fragments/"):
        return PlainTextResponse(str(exc), status)  # the open page says it in its banner
    if status == 503:
        page = pages.unreachable_page(str(exc))
        retry = {"Retry-After": str(pages.RETRY_SECONDS)}
        return HTMLResponse(page, status_code=status, headers=retry)
    return HTMLResponse(pages.error_page(str(exc)), status_code=status)


async def _on_error(request: Request, exc: Exception) -> Response:
    """A tracking error no route handled (the database away, a bad filter): a clear answer,
    never a stack trace."""
    return _error(exc, request)


# ---------------------------------------------------------------------------- pages


def _overview(request: Request) -> tuple[dict[str, Any], str, dict[str, str]]:
    """The overview's data, the address its page refreshes from (the same search and
    pipeline run, so that a refresh shows what the page showed), and the search as given.
    ``pipeline``: a run id, or a unique prefix of one, of the pipeline run to show."""
    q = request.query_params
    stage = _checked("stage", lambda: _search_text(q.get("stage"), "stage"))
    text = _checked("q", lambda: _search_text(q.get("q"), "search"))
    pipeline = q.get("pipeline") or None
    if pipeline is not None:
        pipeline = queries.find_run(pipeline).run_id  # an UnknownRunError is the request's 404
    given = {k: v for k, v in (("stage", stage), ("q", text), ("pipeline", pipeline)) if v}
    query = f"?{urlencode(given)}" if given else ""
    search = {"stage": stage or "", "q": text or ""}
    return data.overview(stage, text, pipeline), f"/fragments/overview{query}", search


def overview_page(request: Request) -> Response:
    try:
        return HTMLResponse(pages.overview_page(*_overview(request)))
    except _BadFilter as exc:
        search = {k: request.query_params.get(k, "") for k in ("stage", "q")}
        page = pages.overview_page(None, None, search, problem=(exc.field, str(exc)))
        return HTMLResponse(page, status_code=400)
    except TaskerError as exc:
        return _error(exc, request)


def overview_fragment(request: Request) -> Response:
    try:
        return HTMLResponse(pages.overview_fragment(*_overview(request)))
    except TaskerError as exc:
        return _error(exc, request)


def _run(request: Request) -> dict[str, Any]:
    return data.run_detail(queries.find_run(request.path_params["run_id"]))


def run_page(request: Request) -> Response:
    try:
        return HTMLResponse(pages.run_page(_run(request)))
    except TaskerError as exc:
        return _error(exc, request)


def run_fragment(request: Request) -> Response:
    try:
        return HTMLResponse(pages.run_fragment(_run(request)))
    except TaskerError as exc:
        return _error(exc, request)


def _int(text: str | None, default: int, what: str, low: int, high: int) -> int:
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"{what}: expected a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise ValidationError(f"{what}: expected {low} to {high}, got {value}")
    return value


_FILTERS = ("q", "stage", "task", "host", "since", "until", "tz")
# The longest search or name filter taken (longer is a 400 beside the field): no name is
# that long, and every one is matched against every stage and task name.
MAX_SEARCH = 200


class _BadFilter(ValidationError):
    """A filter of the history that cannot be used: ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _checked(field: str, check: Callable[[], T]) -> T:
    try:
        return check()
    except ValidationError as exc:
        raise _BadFilter(field, str(exc)) from None


def _search_text(text: str | None, what: str) -> str | None:
    """A search or name filter as given, without surrounding spaces; None when empty."""
    value = (text or "").strip()
    if len(value) > MAX_SEARCH:
        raise ValidationError(f"{what}: at most {MAX_SEARCH} characters, got {len(value)}")
    return value or None


def _status_list(request: Request) -> list[str]:
    """The statuses asked for: ``status`` given once or more, each one status or several
    separated by commas (any case); none for any status."""
    given = [v.strip() for item in request.query_params.getlist("status") for v in item.split(",")]
    found: list[str] = []
    for value in filter(None, given):
        if len(value) > 20:
            raise ValidationError(f"unknown status {value[:20] + '...'!r}")
        status = parse_status(value).value
        if status not in found:
            found.append(status)
    return found


def _zone(name: str) -> tzinfo | None:
    """The time zone (an IANA name such as Europe/Paris, which the page sends as the
    browser's) that since and until are read in when they carry no offset; None: UTC."""
    if not name:
        return None
    try:
        if len(name) <= 64:
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise ValidationError(f"tz: expected a time zone name such as Europe/Paris, got {name!r}")


def _filters(request: Request) -> dict[str, Any]:
    """The history's filters as the request gives them ("" where not given; ``status`` the
    list of statuses given)."""
    found: dict[str, Any] = {k: request.query_params.get(k, "") for k in _FILTERS}
    found["status"] = request.query_params.getlist("status")
    return found


def _history(request: Request) -> tuple[list[dict[str, Any]], dict[str, Any], int, int, bool]:
    q = request.query_params
    filters = _filters(request)
    offset = _checked("offset", lambda: _int(q.get("offset"), 0, "offset", 0, 10**9))
    limit = _checked("limit", lambda: _int(q.get("limit"), PAGE_SIZE, "limit", 1, 1000))
    text = _checked("q", lambda: _search_text(filters["q"], "search"))
    stage = _checked("stage", lambda: _search_text(filters["stage"], "stage"))
    task = _checked("task", lambda: _search_text(filters["task"], "task"))
    statuses = _checked("status", lambda: _status_list(request))
    filters["status"] = statuses
    # The forms the CLI's --since takes (7d, an ISO date, ...): one parser for both; a time
    # without an offset is read in the page's time zone (tz), else in UTC.
    zone = _checked("since", lambda: _zone(filters["tz"]) or ZoneInfo("UTC"))
    since = _checked("since", lambda: parse_since(filters["since"], "since", zone))
    until = _checked("until", lambda: parse_since(filters["until"], "until", zone))
    runs = queries.search_history(
        stage=stage,
        task=task,
        text=text,
        status=statuses or None,
        hostname=filters["host"] or None,
        since=since,
        until=until,
        limit=limit + 1,  # one more tells whether there is a next page
        offset=offset,
    )
    rows = data.run_rows(runs[:limit])
    return rows, filters, offset, limit, len(runs) > limit


def _run_ids(filters: dict[str, Any]) -> list[str]:
    """The runs whose id starts with the search (4 characters or more of a run id)."""
    return queries.run_ids_starting_with(filters["q"]) if filters["q"] else []


def history_page(request: Request) -> Response:
    try:
        rows, filters, offset, limit, more = _history(request)
        run_ids = _run_ids(filters)
    except _BadFilter as exc:
        # The form stays as it was filled in, with what is wrong beside the field.
        problem = (exc.field, str(exc))
        page = pages.history_page([], _filters(request), 0, PAGE_SIZE, False, problem=problem)
        return HTMLResponse(page, status_code=400)
    except TaskerError as exc:
        return _error(exc, request)
    page = pages.history_page(rows, filters, offset, limit, more, run_ids=run_ids)
    return HTMLResponse(page)


def _task_runs(request: Request) -> tuple[str, str, list[dict[str, Any]]]:
    stage, task = request.path_params["stage"], request.path_params["task"]
    runs = tasker.get_task_history(stage=stage, task=task, limit=100)
    return stage, task, data.run_rows(runs)


def task_page(request: Request) -> Response:
    stage, task, runs = _task_runs(request)
    return HTMLResponse(pages.task_page(stage, task, runs))


# ---------------------------------------------------------------------------- JSON API


def api_overview(request: Request) -> Response:
    try:
        return _json(_overview(request)[0])
    except TaskerError as exc:
        return _error(exc, request)


def api_pipelines(request: Request) -> Response:
    """The latest pipeline runs (``limit``, 20 by default), newest first."""
    try:
        limit = _int(request.query_params.get("limit"), 20, "limit", 1, 1000)
    except TaskerError as exc:
        return _error(exc, request)
    return _json({"pipelines": data.run_rows(queries.get_pipeline_runs(limit))})


def api_pipeline(request: Request) -> Response:
    """The pipeline run a run belongs to: its top run and every run under it, each with its
    ``depth`` below the top."""
    try:
        tree = queries.get_pipeline_run(queries.find_run(request.path_params["run_id"]).run_id)
    except TaskerError as exc:
        return _error(exc, request)
    runs = data.run_rows([run for run, _ in tree])
    for row, (_, depth) in zip(runs, tree, strict=True):
        row["depth"] = depth
    return _json({"pipeline_run_id": runs[0]["run_id"] if runs else None, "runs": runs})


def api_runs(request: Request) -> Response:
    try:
        rows, filters, offset, limit, more = _history(request)
        run_ids = _run_ids(filters)
    except TaskerError as exc:
        return _error(exc, request)
    body = {"runs": rows, "offset": offset, "limit": limit, "more": more, "run_ids": run_ids}
    return _json(body)


def api_run(request: Request) -> Response:
    try:
        return _json(_run(request))
    except TaskerError as exc:
        return _error(exc, request)


def api_task(request: Request) -> Response:
    stage, task, runs = _task_runs(request)
    return _json({"stage": stage, "task": task, "runs": runs})


def api_active(request: Request) -> Response:
    data.reap_now_and_then()
    return _json({"runs": data.run_rows(tasker.get_active_tasks())})


_EXPOSITION = "text/plain; version=0.0.4"


def metrics(request: Request) -> Response:
    try:
        return PlainTextResponse(data.metrics_text(), media_type=_EXPOSITION)
    except TaskerError as exc:
        # Still the exposition format (a scraper parses it, a person reads the comment):
        # the database's state as a metric, the reason as a comment, never an HTML page.
        status = 503 if isinstance(exc, DatabaseError) else 500
        return PlainTextResponse(data.metrics_failure(exc), status, media_type=_EXPOSITION)


class _Health:
    """The database check of ``/healthz``: one at a time, in a thread of its own (not the
    pool that page requests may fill), bounded in time, its answer kept for a second so
    that a burst of checks asks the database once."""

    KEEP = 1.0

    def __init__(self) -> None:
        self.limiter: anyio.CapacityLimiter | None = None
        self.answer: tuple[float, str | None] = (-self.KEEP, None)

    async def problem(self) -> str | None:
        """None when the database answers and holds tasker's tables, else why not."""
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(1)
        async with self.limiter:
            at, problem = self.answer
            if time.monotonic() - at < self.KEEP:
                return problem
            config = tasker.get_config()
            bound = config.connect_timeout + config.statement_timeout + 1.0
            try:
                with anyio.fail_after(bound):
                    await anyio.to_thread.run_sync(_check, abandon_on_cancel=True)
                problem = None
            except TimeoutError:
                problem = f"no answer from the database within {bound:g} s"
            except TaskerError as exc:
                problem = str(exc)
            self.answer = (time.monotonic(), problem)
            return problem


def _check() -> None:
    from tasker.queries import check_database

    check_database()


async def health(request: Request) -> Response:
    """200 "ok" when the dashboard answers and so does its database (with tasker's tables);
    503 with the reason when the database does not. Answers while page requests wait."""
    problem = await request.app.state.health.problem()
    if problem is None:
        return PlainTextResponse("ok")
    return PlainTextResponse(f"database unreachable: {problem}", 503)


def create_app(
    token: str | None = None,
    *,
    allowed_hosts: Sequence[str] | None = None,
    host: str | None = None,
) -> ASGIApp:
    """The dashboard as an ASGI application; with ``token``, every request must carry it.

    ``allowed_hosts`` (default: the ``dashboard.allowed_hosts`` setting) are Host header
    values accepted besides the address the server is bound to; ``host`` is the address it
    is told to bind to (see HostGuard)."""
    routes = [
        Route("/", overview_page),
        Route("/fragments/overview", overview_fragment),
        Route("/runs/{run_id}", run_page),
        Route("/fragments/runs/{run_id}", run_fragment),
        Route("/history", history_page),
        Route("/tasks/{stage}/{task}", task_page),
        Route("/api/overview", api_overview),
        Route("/api/active", api_active),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/pipelines", api_pipelines),
        Route("/api/pipelines/{run_id}", api_pipeline),
        Route("/api/tasks/{stage}/{task}", api_task),
        Route("/metrics", metrics),
        Route("/healthz", health),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if allowed_hosts is None:
        allowed_hosts = tasker.get_config().allowed_hosts
    starlette = Starlette(routes=routes, exception_handlers={TaskerError: _on_error})
    starlette.state.health = _Health()
    app: ASGIApp = starlette
    app = SecurityHeaders(app)
    if token:
        app = TokenGuard(app, token)
    # Outermost: a request for another site's name is refused before anything else.
    return HostGuard(app, allowed_hosts, host)


def serve(host: str = "127.0.0.1", port: int = 8787, token: str | None = None) -> None:
    """Serve the dashboard until interrupted. Off the loopback address a token is required
    (one is made up and printed when none is given).

    The dashboard never creates a database, schema or table: an SQLite file that is not
    there, or a database without tasker's tables, is an error now, not an empty database
    made up for it. An address that cannot be listened on (the port in use, say) is a
    ConfigError before anything is printed; the URL is printed once the socket listens."""
    import uvicorn

    from tasker.runtime.recorder import RECORDER
    from tasker.store.engine import existing_databases_only, missing_database

    with existing_databases_only():
        # One error now rather than a dashboard whose every page says so (a database that
        # cannot be reached yet is no reason not to start: the pages say so until it is back).
        missing = missing_database(tasker.get_config()) or RECORDER.raw_store.missing_tables()
        if missing is not None:
            raise missing
        _serve(uvicorn, host, port, token)


def _url_host(host: str) -> str:
    """``host`` as the host part of a URL: an IPv6 address in brackets."""
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``, or a ConfigError that says why not (and
    what to do) in one line."""
    where = f"{_url_host(host)}:{port}"
    address = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        # A restarted dashboard may take its port back from connections still closing;
        # Windows would let it take a port another server listens on, so not there.
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(2048)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OverflowError):
            raise ConfigError(f"cannot listen on port {port}: expected 0 to 65535") from None
        if isinstance(exc, socket.gaierror):
            raise ConfigError(
                f"cannot listen on {host!r}: not a host name or address this machine knows "
                f"({exc.strerror}); give another with --host"
            ) from None
        if isinstance(exc, OSError):
            raise ConfigError(_listen_problem(exc, where)) from None
        raise
    return sock


def _listen_problem(exc: OSError, where: str) -> str:
    if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)):
        return f"cannot listen on {where}: the port is in use; choose another with --port"
    if exc.errno in (errno.EACCES, getattr(errno, "WSAEACCES", errno.EACCES)):
        return (
            f"cannot listen on {where}: permission denied (ports below 1024 need privileges); "
            "choose another with --port"
        )
    if exc.errno in (errno.EADDRNOTAVAIL, getattr(errno, "WSAEADDRNOTAVAIL", errno.EADDRNOTAVAIL)):
        return (
            f"cannot listen on {where}: that is not an address of this machine; "
            "give another with --host"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _announce(host: str, port: int, token: str | None) -> str:
    """The line telling the user where to open the dashboard."""
    query = f"?token={quote(token, safe='')}" if token else ""
    if _is_loopback(host):
        return f"tasker dashboard: http://{_url_host(host)}:{port}/{query}"
    if _is_unspecified(host):
        # 0.0.0.0 and :: are not addresses a browser can open: name this machine instead,
        # and its loopback address for a browser on this machine.
        local = "[::1]" if ":" in host else "127.0.0.1"
        name = _machine_name()
        where = f"http://{_url_host(name)}:{port}/{query}; on this machine " if name else ""
        return (
            f"tasker dashboard: WARNING: listening on all interfaces ({_url_host(host)}), "
            f"reachable from other machines; open {where}http://{local}:{port}/{query}"
        )
    return (
        f"tasker dashboard: WARNING: listening on {_url_host(host)}, reachable from other "
        f"machines; open http://{_url_host(host)}:{port}/{query}"
    )


def _serve(uvicorn: Any, host: str, port: int, token: str | None) -> None:
    if not _is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    app = create_app(token, host=host)  # a bad token is refused before anything listens
    sock = _listen(host, port)
    try:
        port = int(sock.getsockname()[1])  # the port chosen, for --port 0
        print(_announce(host, port, token), file=sys.stderr, flush=True)
        _run_server(uvicorn, app, sock)
    finally:
        sock.close()


def _run_server(uvicorn: Any, app: ASGIApp, sock: socket.socket) -> None:
    """Serve ``app`` on the listening ``sock`` until interrupted."""
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
