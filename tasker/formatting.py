"""Durations and times as people read them (the command line and the dashboard)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["duration", "json_default", "timestamp"]


def duration(seconds: float | None) -> str:
    """``42s``, ``3m 05s``, ``2h 10m``, ``3d 4h``; empty for None."""
    if seconds is None:
        return ""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def timestamp(value: datetime | None) -> str:
    """Local time, to the second; empty for None."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def json_default(value: Any) -> Any:
    """For ``json.dumps``: times in ISO 8601, anything else (statuses) as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
