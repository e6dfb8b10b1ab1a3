"""Argument checks shared by the API: each failure says what was wrong and what is expected."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from tasker.errors import TaskerWarning, ValidationError

__all__ = ["count", "name", "optional_text", "percent", "positive_int", "split_path"]

# Column widths of the schema; longer values are cut with a warning rather than failing.
STAGE_NAME_MAX = 100
TASK_NAME_MAX = 255
SUBTASK_NAME_MAX = 500
SHORT_TEXT_MAX = 255


def _clean(value: str, what: str) -> str:
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; keep the rest of the value and say so.
        warnings.warn(
            f"{what} contains NUL characters; they are stored as U+FFFD",
            TaskerWarning,
            stacklevel=4,
        )
        value = value.replace("\x00", "\ufffd")
    return value


def name(value: object, what: str, max_len: int) -> str:
    """A required, non-blank name of at most ``max_len`` characters (longer: cut, warned)."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise ValidationError(f"{what} must not be empty")
    value = _clean(value, what)
    if len(value) > max_len:
        warnings.warn(
            f"{what} is {len(value)} characters long; only the first {max_len} are stored",
            TaskerWarning,
            stacklevel=3,
        )
        value = value[:max_len]
    return value


def optional_text(value: object, what: str, max_len: int | None = None) -> str | None:
    """Free text (messages, paths): None stays None, anything else must be a string."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    value = _clean(value, what)
    if max_len is not None and len(value) > max_len:
        warnings.warn(
            f"{what} is {len(value)} characters long; only the first {max_len} are stored",
            TaskerWarning,
            stacklevel=3,
        )
        value = value[:max_len]
    return value


def percent(value: object, what: str) -> float | None:
    """A percentage from 0 to 100, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{what} must be a number from 0 to 100, got {value!r}")
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= 100.0:
        raise ValidationError(f"{what} must be a number from 0 to 100, got {value!r}")
    return number


def count(value: object, what: str) -> int | None:
    """A whole number ≥ 0, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and value >= 0:
            return int(value)
        raise ValidationError(f"{what} must be a whole number of 0 or more, got {value!r}")
    if value < 0:
        raise ValidationError(f"{what} must be a whole number of 0 or more, got {value!r}")
    return value


def positive_int(value: object, what: str) -> int | None:
    """A whole number ≥ 1, or None."""
    checked = count(value, what)
    if checked == 0:
        raise ValidationError(f"{what} must be a whole number of 1 or more, got {value!r}")
    return checked


def split_path(path: str | None, filename: str | None) -> tuple[str | None, str | None]:
    """A path given with its file name and no separate filename → (folder, filename)."""
    if path and not filename:
        p = Path(path)
        if p.suffix:
            return str(p.parent), p.name
    return path, filename
