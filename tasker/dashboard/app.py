"""The dashboard's routes, its token guard, and ``serve()``."""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

import tasker
from tasker.dashboard import data, pages
from tasker.errors import DatabaseError, TaskerError, UnknownRunError, ValidationError
from tasker.formatting import json_default

__all__ = ["create_app", "serve"]

STATIC = Path(__file__).parent / "static"
COOKIE = "tasker_token"
PAGE_SIZE = 50


def _json(content: Any, status: int = 200) -> Response:
    body = json.dumps(content, default=json_default, ensure_ascii=False)
    return Response(body, status_code=status, media_type="application/json")


def _error(exc: Exception, request: Request) -> Response:
    status = 404 if isinstance(exc, UnknownRunError) else 400
    if isinstance(exc, DatabaseError):
        status = 503  # the database is away: not the request's fault
    if request.url.path.startswith("/api/"):
        return _json({"error": str(exc)}, status)
    return HTMLResponse(pages.layout("Error", f"<h1>{pages.esc(exc)}</h1>"), status_code=status)


async def _on_error(request: Request, exc: Exception) -> Response:
    """A tracking error no route handled (the database away, a bad filter): a clear answer,
    never a stack trace."""
    return _error(exc, request)


# ---------------------------------------------------------------------------- pages


def overview_page(request: Request) -> Response:
    body = pages.overview_fragment(data.overview(request.query_params.get("stage")))
    return HTMLResponse(pages.layout("Overview", body, refresh="/fragments/overview"))


def overview_fragment(request: Request) -> Response:
    return HTMLResponse(pages.overview_fragment(data.overview(request.query_params.get("stage"))))


def _run(request: Request) -> dict[str, Any]:
    from tasker.queries import find_run

    return data.run_detail(find_run(request.path_params["run_id"]))


def run_page(request: Request) -> Response:
    try:
        run = _run(request)
    except TaskerError as exc:
        return _error(exc, request)
    body = pages.run_fragment(run)
    return HTMLResponse(
        pages.layout(f"Run {run['run_id'][:8]}", body, refresh=f"/fragments/runs/{run['run_id']}")
    )


def run_fragment(request: Request) -> Response:
    try:
        return HTMLResponse(pages.run_fragment(_run(request)))
    except TaskerError as exc:
        return _error(exc, request)


def _when(text: str | None, what: str) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{what}: expected a date and time, got {text!r}") from None
    return when if when.tzinfo else when.astimezone(timezone.utc)


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


def _history(request: Request) -> tuple[list[dict[str, Any]], dict[str, str], int, int, bool]:
    q = request.query_params
    filters = {k: q.get(k, "") for k in ("stage", "task", "status", "host", "since", "until")}
    offset = _int(q.get("offset"), 0, "offset", 0, 10**9)
    limit = _int(q.get("limit"), PAGE_SIZE, "limit", 1, 1000)
    runs = tasker.get_task_history(
        stage=filters["stage"] or None,
        task=filters["task"] or None,
        status=filters["status"] or None,
        hostname=filters["host"] or None,
        since=_when(filters["since"], "since"),
        until=_when(filters["until"], "until"),
        limit=limit + 1,  # one more tells whether there is a next page
        offset=offset,
    )
    rows = [data.run_row(r) for r in runs[:limit]]
    return rows, filters, offset, limit, len(runs) > limit


def history_page(request: Request) -> Response:
    try:
        rows, filters, offset, limit, more = _history(request)
    except TaskerError as exc:
        return _error(exc, request)
    return HTMLResponse(
        pages.layout("History", pages.history_page(rows, filters, offset, limit, more))
    )


def _task_runs(request: Request) -> tuple[str, str, list[dict[str, Any]]]:
    stage, task = request.path_params["stage"], request.path_params["task"]
    runs = tasker.get_task_history(stage=stage, task=task, limit=100)
    return stage, task, [data.run_row(r) for r in runs]


def task_page(request: Request) -> Response:
    stage, task, runs = _task_runs(request)
    return HTMLResponse(pages.layout(f"{stage} / {task}", pages.task_fragment(stage, task, runs)))


# ---------------------------------------------------------------------------- JSON API


def api_overview(request: Request) -> Response:
    return _json(data.overview(request.query_params.get("stage")))


def api_runs(request: Request) -> Response:
    try:
        rows, _, offset, limit, more = _history(request)
    except TaskerError as exc:
        return _error(exc, request)
    return _json({"runs": rows, "offset": offset, "limit": limit, "more": more})


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
    return _json({"runs": [data.run_row(r) for r in tasker.get_active_tasks()]})


def metrics(request: Request) -> Response:
    return PlainTextResponse(data.metrics_text(), media_type="text/plain; version=0.0.4")


def health(request: Request) -> Response:
    return PlainTextResponse("ok")


# ---------------------------------------------------------------------------- token guard


class TokenGuard:
    """Every request must carry the token: ``?token=`` (then kept in a cookie),
    ``Authorization: Bearer``, or the cookie."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, from_query = self._given(scope)
        if given is None or not hmac.compare_digest(given, self.token):
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


def create_app(token: str | None = None) -> ASGIApp:
    """The dashboard as an ASGI application; with ``token``, every request must carry it."""
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
        Route("/api/tasks/{stage}/{task}", api_task),
        Route("/metrics", metrics),
        Route("/healthz", health),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app: ASGIApp = Starlette(routes=routes, exception_handlers={TaskerError: _on_error})
    if token:
        app = TokenGuard(app, token)
    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(host: str = "127.0.0.1", port: int = 8787, token: str | None = None) -> None:
    """Serve the dashboard until interrupted. Off the loopback address a token is required
    (one is made up and printed when none is given)."""
    import uvicorn

    if not _is_loopback(host):
        if not token:
            token = secrets.token_urlsafe(24)
        print(
            f"tasker dashboard: WARNING: listening on {host}, reachable from other machines; "
            f"open http://{host}:{port}/?token={token}",
            file=sys.stderr,
        )
    else:
        print(f"tasker dashboard: http://{host}:{port}/", file=sys.stderr)
    uvicorn.run(create_app(token), host=host, port=port, log_level="warning")
