"""Argument checks shared by the API: each failure says what was wrong and what is expected."""

from __future__ import annotations

import math
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

from tasker.errors import TaskerWarning, ValidationError

__all__ = [
    "COUNT_MAX",
    "NUMBER_MAX",
    "WIDTHS",
    "TextBudget",
    "clamped_count",
    "count",
    "cut_to_size",
    "fit_text",
    "name",
    "optional_text",
    "percent",
    "positive_int",
    "positive_int32",
    "run_id",
    "sent_size",
    "split_path",
    "storable_text",
    "unicode_text",
]

# The widths (in characters) of the schema's short text columns, by the field that fills
# them; longer values are cut with a warning rather than failing. tasker.store.schema
# declares the same widths (tests/unit/test_fitting.py holds the two equal). Every other
# text column is long text, bounded only by what the database takes in one statement.
WIDTHS: dict[str, int] = {
    "stage": 100,
    "task": 255,
    "task_type": 20,
    "subtask_name": 500,
    "status": 20,
    "hostname": 255,
    "user_name": 100,
    "python_version": 50,
    "script_filename": 255,
    "log_filename": 255,
    "version": 100,
    "git_commit": 64,
    "git_branch": 255,
    "environment": 100,
    "error_type": 255,
    "boot_id": 64,
    "pid_namespace": 64,
}
STAGE_NAME_MAX = WIDTHS["stage"]
TASK_NAME_MAX = WIDTHS["task"]
SUBTASK_NAME_MAX = WIDTHS["subtask_name"]
SHORT_TEXT_MAX = 255


# The largest count, total or increment taken: far beyond any real item count, and far
# from where a 64-bit column (or SQLite's integer addition, which turns to floating point
# past 2**63 - 1) overflows after many increments.
COUNT_MAX = 10**15
# Subtask numbers and subtask totals are stored in 32-bit integer columns.
NUMBER_MAX = 2**31 - 1


def unicode_text(value: str) -> str:
    """``value`` with lone surrogates (text that is not valid Unicode: a file name or argv
    element that was not UTF-8, decoded by Python with "surrogateescape") written as
    ``\\xNN`` / ``\\udNNN`` escapes; no database driver can encode them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Bytes Python smuggled in as U+DC80..U+DCFF go back to bytes, shown as \xNN.
        raw = value.encode(
            "utf-8", "surrogateescape" if _only_escapes(value) else "backslashreplace"
        )
        return raw.decode("utf-8", "backslashreplace")
    return value


def _only_escapes(value: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in value)


def storable_text(value: str) -> tuple[str, str | None]:
    """``value`` as every database stores it, and what was changed (None: nothing)."""
    if value.isascii():
        return (value.replace("\x00", "\ufffd"), "NUL") if "\x00" in value else (value, None)
    fixed = unicode_text(value)
    problem = None if fixed is value else "text that is not valid Unicode"
    if "\x00" in fixed:
        fixed, problem = fixed.replace("\x00", "\ufffd"), problem or "NUL"
    return fixed, problem


def fit_text(value: str, what: str, width: int | None = None) -> tuple[str, list[str]]:
    """``value`` made storable (see ``storable_text``) and cut to ``width`` characters, with
    a sentence naming ``what`` for each change (none: nothing changed). Cut after escaping:
    an escape takes four characters of the column."""
    fixed, problem = storable_text(value)
    said = []
    if problem == "NUL":
        said.append(f"{what} contains NUL characters; they are stored as U+FFFD")
    elif problem is not None:
        said.append(f"{what} contains {problem} (lone surrogates); they are stored as \\x escapes")
    if width is not None and len(fixed) > width:
        said.append(f"{what} is {len(fixed)} characters long; only the first {width} are stored")
        fixed = fixed[:width]
    return fixed, said


# What a MySQL/MariaDB string literal escapes, each with one more byte (a backslash): the
# most any driver adds to a text it sends.
_ESCAPED = ("\\", "'", '"', "\n", "\r", "\x1a", "\x00")
_ESCAPED_BYTES = tuple(c.encode("ascii") for c in _ESCAPED)


class TextBudget(NamedTuple):
    """What a database takes of text in one statement: ``size`` bytes (as ``sent_size``
    counts them), and where that bound comes from, for warnings."""

    size: int
    source: str


def sent_size(value: str) -> int:
    """The bytes ``value`` takes in a statement: its UTF-8 encoding, plus one for each
    character a MySQL string literal escapes. (PostgreSQL and SQLite take the text as it
    is: for them this is a little more than it takes.)"""
    size = len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    return size + sum(map(value.count, _ESCAPED))


def cut_to_size(value: str, limit: int) -> str:
    """The longest start of ``value`` whose ``sent_size`` is at most ``limit`` (whole
    characters only)."""
    if sent_size(value) <= limit:
        return value
    data = value.encode("utf-8", "surrogatepass")
    keep = min(limit, len(data))
    while True:
        head = data[:keep]
        excess = keep + sum(map(head.count, _ESCAPED_BYTES)) - limit
        if excess <= 0:
            # A character cut in the middle is left out (it only makes the text smaller).
            return head.decode("utf-8", "ignore")
        # Each byte left out saves one or two: leaving out half the excess never leaves out
        # more than needed, and the loop ends within a few rounds.
        keep -= (excess + 1) // 2


def _clean(value: str, what: str) -> str:
    fixed, problem = storable_text(value)
    if problem == "NUL":
        # PostgreSQL text cannot hold NUL; keep the rest of the value and say so.
        warnings.warn(
            f"{what} contains NUL characters; they are stored as U+FFFD",
            TaskerWarning,
            stacklevel=4,
        )
    elif problem is not None:
        warnings.warn(
            f"{what} contains {problem} (lone surrogates); they are stored as \\x escapes",
            TaskerWarning,
            stacklevel=4,
        )
    return fixed


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


def run_id(value: object, what: str = "run_id") -> str:
    """A run id: a UUID given as text, normalised (lower case, hyphens)."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string UUID, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValidationError(
            f"{what} {value!r} is not a UUID: expected a run's id (task_start() returns one), "
            "e.g. '123e4567-e89b-12d3-a456-426614174000'"
        ) from None


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


def count(value: object, what: str, maximum: int = COUNT_MAX) -> int | None:
    """A whole number from 0 to ``maximum`` (COUNT_MAX unless told), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and 0 <= value <= maximum:
            return int(value)
        raise ValidationError(f"{what} must be a whole number from 0 to {maximum:,}, got {value!r}")
    if not 0 <= value <= maximum:
        raise ValidationError(f"{what} must be a whole number from 0 to {maximum:,}, got {value!r}")
    return value


def clamped_count(value: object, what: str) -> int | None:
    """For the automatic layer, which never raises into the tracked code: a count as
    ``count`` takes it, else the nearest one it takes (None for what is no number at all),
    with a TaskerWarning."""
    try:
        return count(value, what)
    except ValidationError as exc:
        fixed: int | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            fixed = 0 if value < 0 else COUNT_MAX if value > COUNT_MAX else int(value)
        warnings.warn(
            f"{exc}; {'using ' + str(fixed) if fixed is not None else 'ignored'}",
            TaskerWarning,
            stacklevel=3,
        )
        return fixed


def positive_int(value: object, what: str, maximum: int = COUNT_MAX) -> int | None:
    """A whole number from 1 to ``maximum`` (COUNT_MAX unless told), or None."""
    try:
        checked = count(value, what, maximum)
    except ValidationError:
        checked = 0
    if checked == 0:
        raise ValidationError(f"{what} must be a whole number from 1 to {maximum:,}, got {value!r}")
    return checked


def positive_int32(value: object, what: str = "subtask_number") -> int | None:
    """A subtask number, a subtask total or a PID: 1 to NUMBER_MAX (a 32-bit column), or None."""
    return positive_int(value, what, NUMBER_MAX)


def split_path(path: str | None, filename: str | None) -> tuple[str | None, str | None]:
    """A path given with its file name and no separate filename → (folder, filename)."""
    if path and not filename:
        p = Path(path)
        if p.suffix:
            return str(p.parent), p.name
    return path, filename
