"""The dashboard's Jinja2 environment: the templates shipped in ``templates/``, every value
escaped (autoescape is on for every template, whatever its name), and the filters the
templates format values with."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from tasker.formatting import duration
from tasker.models import Status

__all__ = ["VENDOR", "render"]

TEMPLATES = Path(__file__).parent / "templates"

# The vendored front-end (static/vendor/, each beside its licence), by what it is. The
# version is in the file name, so that a new version is a new address no browser cache
# holds an old copy of.
VENDOR = {
    "htmx": "vendor/htmx-2.0.11.min.js",
    "idiomorph": "vendor/idiomorph-ext-0.8.0.min.js",
}

# htmx as the pages use it, read from a <meta> tag (JSON, no eval): no styles of its own
# (the Content-Security-Policy allows none inline), no eval and no scripts from responses,
# no copies of pages in the browser's storage, and a request that takes longer than 10 s
# counts as failed so that the page says the server is away instead of waiting forever.
HTMX_CONFIG = json.dumps(
    {
        "includeIndicatorStyles": False,
        "allowEval": False,
        "allowScriptTags": False,
        "historyEnabled": False,
        "refreshOnHistoryMiss": False,
        "selfRequestsOnly": True,
        "timeout": 10000,
        "defaultSettleDelay": 0,
    },
    separators=(",", ":"),
)


def _utc(value: object) -> datetime | None:
    """A time (or its ISO text, as the overview carries it) in UTC; None for None."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return (
        value.replace(tzinfo=timezone.utc)
        if value.tzinfo is None
        else value.astimezone(timezone.utc)
    )


def _utc_text(value: object) -> str:
    """A time as text in UTC, saying so (``2024-05-01 08:00:00 UTC``); empty for None."""
    when = _utc(value)
    return "" if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _timestamp(value: object, ago: bool = True) -> Markup:
    """A time as ``<time datetime="…Z">`` with its UTC text, which the page's script shows in
    the browser's time zone, with how long ago it was (unless ``ago`` is false); empty for
    None."""
    when = _utc(value)
    if when is None:
        return Markup("")
    iso = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    plain = "" if ago else ' data-ago="no"'
    return Markup(f'<time datetime="{iso}"{plain}>{_utc_text(when)}</time>')


def _duration(value: float | None) -> str:
    return duration(value)


def _rate(value: float | None) -> str:
    """Items per second: ``1,234/s``, ``12.5/s``, ``0.25/s``; empty for None."""
    if value is None:
        return ""
    if value >= 100:
        return f"{value:,.0f}/s"
    return f"{value:.1f}/s" if value >= 1 else f"{value:.2f}/s"


def _task_url(stage: str, task: str) -> str:
    return f"/tasks/{quote(stage, safe='')}/{quote(task, safe='')}"


def _anchor(value: object) -> str:
    """Text as an HTML id: the same for the same text (the page morphed in place matches
    elements by id), never with spaces."""
    return quote(str(value), safe="")


def _clamp(percent: float | None) -> float | None:
    return None if percent is None else max(0.0, min(100.0, float(percent)))


def _is_active(status: object) -> bool:
    return Status(str(status)).is_active


ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,  # a misspelt name is an error in the tests, not an empty cell
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
    finalize=lambda value: "" if value is None else value,  # a missing value is an empty cell
)
ENV.filters.update(
    timestamp=_timestamp,
    utc=_utc_text,
    duration=_duration,
    rate=_rate,
    anchor=_anchor,
    clamp=_clamp,
)
ENV.globals.update(
    task_url=_task_url,
    is_active=_is_active,
    vendor=VENDOR,
    htmx_config=HTMX_CONFIG,
    statuses=tuple(s.value for s in Status),
)


def render(name: str, **context: Any) -> str:
    """The template ``name`` rendered with ``context``."""
    return ENV.get_template(name).render(**context)
