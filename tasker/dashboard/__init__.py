"""The live web dashboard (``tasker dashboard``; needs the ``dashboard`` extra).

An ASGI application (Starlette) served by uvicorn: server-rendered pages with a little
JavaScript that refreshes them in place, a JSON API under ``/api``, and Prometheus metrics at
``/metrics``. It only reads (and ends runs whose process is lost, as the reaper does), binds
the loopback address by default, and asks for a token when bound to any other.
"""

from __future__ import annotations

from tasker.dashboard.app import create_app, serve

__all__ = ["create_app", "serve"]
