"""tasker.ages: the ages and points in time that the CLI and the dashboard both take."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from tasker.ages import parse_age, parse_since
from tasker.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("0s", timedelta(0)),
        (" 7D ", timedelta(days=7)),  # spaces around and the unit's case do not matter
        ("007d", timedelta(days=7)),
    ],
)
def test_ages(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize(
    "text",
    ["", "7", "d", "7 d", "-7d", "+7d", "1.5h", "7y", "7mo", "²d", "٣d", "7dd", "2024-05-01"],
)
def test_what_is_not_an_age(text: str) -> None:
    assert parse_age(text) is None


@pytest.mark.parametrize("text", ["9" * 16 + "s", "9" * 5000 + "d", "99999999999w"])
def test_an_age_too_long_is_refused_not_a_crash(text: str) -> None:
    with pytest.raises(ValidationError, match="too long") as info:
        parse_age(text)
    assert len(str(info.value)) < 200  # a huge text is not echoed whole


def test_since_an_age_is_that_long_ago_in_utc() -> None:
    before = datetime.now(timezone.utc)
    when = parse_since("7d")
    after = datetime.now(timezone.utc)
    assert when is not None and when.tzinfo is timezone.utc
    assert before - timedelta(days=7) <= when <= after - timedelta(days=7)


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is New York's (UTC-5 in January) for the test."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("new_york")
@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("2024-01-15", datetime(2024, 1, 15, 5, 0, tzinfo=timezone.utc)),  # local midnight
        ("2024-01-15T08:00", datetime(2024, 1, 15, 13, 0, tzinfo=timezone.utc)),
        ("2024-01-15 08:00:30", datetime(2024, 1, 15, 13, 0, 30, tzinfo=timezone.utc)),
        ("2024-01-15T08:00Z", datetime(2024, 1, 15, 8, 0, tzinfo=timezone.utc)),
        ("2024-01-15T08:00+02:00", datetime(2024, 1, 15, 6, 0, tzinfo=timezone.utc)),
        (" 2024-01-15T08:00+00:00 ", datetime(2024, 1, 15, 8, 0, tzinfo=timezone.utc)),
    ],
)
def test_since_an_iso_time_naive_is_local(text: str, when: datetime) -> None:
    result = parse_since(text)
    assert result == when and result is not None and result.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", [None, "", "   "])
def test_since_nothing_is_no_bound(text: str | None) -> None:
    assert parse_since(text) is None


@pytest.mark.parametrize("text", ["yesterday", "7 d", "-7d", "2024-13-01", "7y", "²d"])
def test_a_bad_since_names_what_and_the_forms(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_since(text, "--since")
    message = str(info.value)
    assert message.startswith("--since: expected an age like 30s, 90m, 12h, 7d or 2w")
    assert "ISO date/time" in message and message.endswith(f"got {text!r}")


def test_a_since_too_far_back_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^until: the age '9999999w' reaches back before"):
        parse_since("9999999w", "until")
    with pytest.raises(ValidationError, match=r"^since: the age .* is too long"):
        parse_since("9" * 30 + "d")


def test_since_naive_is_read_in_the_zone_given_and_an_offset_wins() -> None:
    from zoneinfo import ZoneInfo

    tokyo, new_york = ZoneInfo("Asia/Tokyo"), ZoneInfo("America/New_York")
    utc = timezone.utc
    assert parse_since("2024-05-01T08:00", zone=tokyo) == datetime(2024, 4, 30, 23, 0, tzinfo=utc)
    assert parse_since("2024-01-15", zone=new_york) == datetime(2024, 1, 15, 5, 0, tzinfo=utc)
    assert parse_since("2024-07-15", zone=new_york) == datetime(2024, 7, 15, 4, 0, tzinfo=utc)
    assert parse_since("2024-05-01T08:00+02:00", zone=tokyo) == datetime(
        2024, 5, 1, 6, 0, tzinfo=utc
    )
    assert parse_since("2024-05-01T08:00Z", zone=tokyo) == datetime(2024, 5, 1, 8, 0, tzinfo=utc)
