"""Ages and points in time as people type them: ``90m``, ``12h``, ``7d``, ``2w``, ``30s``, or
an ISO date/time.

One parser for every place that takes them (the CLI's ``--since``/``--older-than``, the
dashboard's ``since``/``until``), so that what one accepts the others accept too.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

from tasker.errors import ValidationError

__all__ = ["FORMS", "parse_age", "parse_since"]

# Seconds per unit. Months and years are left out on purpose: their length varies.
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# ASCII digits only: str.isdigit() also takes "²" or "٣", which int() then refuses.
_AGE = re.compile(r"([0-9]+)([smhdw])", re.IGNORECASE)
# The longest age a timedelta holds.
_MAX_SECONDS = int(timedelta.max.total_seconds())
# What an error message lists as accepted.
FORMS = "an age like 30s, 90m, 12h, 7d or 2w, or an ISO date/time like 2024-05-01T08:00"


def _shown(text: str) -> str:
    """``text`` as an error message quotes it: a query string can be any length."""
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


def parse_age(text: str) -> timedelta | None:
    """``30s``, ``90m``, ``12h``, ``7d``, ``2w`` (a whole number and a unit: seconds, minutes,
    hours, days, weeks; surrounding spaces and the unit's case ignored) as a timedelta;
    None when ``text`` is not an age. An age longer than a timedelta holds (about 2.7
    million years) is a ValidationError."""
    match = _AGE.fullmatch(text.strip())
    if match is None:
        return None
    number, unit = match.groups()
    # Checked on the digits first: int() refuses (ValueError) texts of thousands of digits.
    if len(number.lstrip("0")) <= 15:
        seconds = int(number) * _UNITS[unit.lower()]
        if seconds <= _MAX_SECONDS:
            return timedelta(seconds=seconds)
    raise ValidationError(f"the age {_shown(text.strip())} is too long")


def parse_since(
    text: str | None, what: str = "since", zone: tzinfo | None = None
) -> datetime | None:
    """The point in time ``text`` names, timezone-aware in UTC: an age ago (see
    :func:`parse_age`), or an ISO 8601 date or date and time (with ``Z`` or an offset, else
    in ``zone``, by default local time). None, or a text of only spaces, is None: no bound.
    Anything else is a ValidationError naming ``what`` and the accepted forms."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    try:
        age = parse_age(value)
    except ValidationError as exc:
        raise ValidationError(f"{what}: {exc}; expected {FORMS}") from None
    if age is not None:
        try:
            return datetime.now(timezone.utc) - age
        except OverflowError:
            raise ValidationError(
                f"{what}: the age {_shown(value)} reaches back before the year 1"
            ) from None
    # Python 3.10's fromisoformat() does not take the "Z" that 3.11's does.
    iso = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") and "T" in value.upper() else value
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise ValidationError(f"{what}: expected {FORMS}, got {_shown(text)}") from None
    if when.tzinfo is None and zone is not None:
        when = when.replace(tzinfo=zone)
    try:
        # Naive: local time (what the user's clock shows), as astimezone() takes it.
        return when.astimezone(timezone.utc)
    except (OverflowError, ValueError, OSError):  # near year 1 or 9999: no UTC equivalent
        raise ValidationError(f"{what}: {_shown(value)} is out of range for a UTC time") from None
