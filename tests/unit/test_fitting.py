"""Making values storable, as pure functions: the column widths the cuts use are the schema's,
sizes are counted as a MySQL string literal sends them, cuts keep whole characters, and an
event's long texts share what one statement takes."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone

import pytest
from sqlalchemy import String, Text

from tasker.errors import TaskerWarning
from tasker.models import Status
from tasker.runtime import events as ev
from tasker.runtime.storable import fit_batch, fit_event
from tasker.store.schema import build_tables
from tasker.validate import WIDTHS, TextBudget, cut_to_size, sent_size
from tests.helpers import new_run

RID = "00000000-0000-4000-8000-000000000001"
NOW = datetime.now(timezone.utc)

# The columns a field fills, where the column's name is not the field's own.
_COLUMN_OF = {"stage": "stage_name", "task": "task_name"}
# Short text columns no value given to tasker fills (keys, and what the store writes).
_NOT_FILLED = {"key", "value", "journal_id", "hostname@journal_replays"}


def test_every_width_is_the_schemas() -> None:
    """Each short text column of the schema has its width in validate.WIDTHS (and each
    field there a column of that width): the cuts match what the database takes."""
    t = build_tables()
    seen: dict[str, int] = {}
    for table in t.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, Text) or not isinstance(column.type, String):
                continue
            if column.name in _NOT_FILLED or f"{column.name}@{table.name}" in _NOT_FILLED:
                continue
            length = column.type.length
            assert length is not None, column
            field = {v: k for k, v in _COLUMN_OF.items()}.get(column.name, column.name)
            assert WIDTHS.get(field) == length, f"{table.name}.{column.name}"
            seen[field] = length
    assert seen == WIDTHS


def test_sizes_count_what_a_string_literal_sends() -> None:
    assert sent_size("plain") == 5
    assert sent_size("a'b\\c\nd\"e\rf\x1a") == 12 + 6  # six escaped, one byte more each
    assert sent_size("é😀") == 2 + 4


@pytest.mark.parametrize(
    ("text", "limit", "cut"),
    [
        ("abcdef", 4, "abcd"),
        ("'" * 10, 7, "'" * 3),  # escaped: two bytes a quote
        ("a'" * 5, 8, "a'a'a"),
        ("é" * 10, 5, "éé"),  # never half a character
        ("😀x", 3, ""),
        ("short", 100, "short"),
    ],
)
def test_a_cut_keeps_whole_characters_within_the_limit(text: str, limit: int, cut: str) -> None:
    assert cut_to_size(text, limit) == cut
    assert sent_size(cut) <= limit


def test_an_event_is_escaped_cut_to_its_widths_and_its_long_texts_share_the_budget() -> None:
    run = new_run(
        RID,
        "é" * 150,
        "t",
        script_filename="\udce9" * 100,  # escapes to 400 characters
        git_branch="b" * 300,
        command_line="c\x00" * 5,
        overall_progress_message="m" * 1000,
    )
    start = (ev.START_RUN, RID, (run,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (kind, rid, (fixed,)), size = fit_event(start, TextBudget(600, "a test's"))
    told = [str(w.message) for w in caught if w.category is TaskerWarning]
    assert (kind, rid) == (ev.START_RUN, RID)
    assert fixed.stage == "é" * 100
    assert fixed.script_filename == ("\\xe9" * 100)[:255]
    assert fixed.git_branch == "b" * 255
    assert fixed.command_line == "c\ufffd" * 5
    # The long texts share the 600 bytes: the command line (20 bytes) whole, the rest
    # (580) to the message.
    assert fixed.overall_progress_message == "m" * 580 and size == 600
    assert [w.split(" of run ")[0] for w in told] == [
        "stage",
        "command_line",
        "script_filename",
        "script_filename",
        "git_branch",
        "overall_progress_message",
    ]
    assert told[-1].endswith("(600 bytes: a test's); only its first 580 bytes are stored")


def test_an_event_with_nothing_to_change_is_the_same_object() -> None:
    end = (ev.END_RUN, RID, (Status.COMPLETED, {"cpu_seconds": 1.0}, NOW, None))
    update = (ev.UPDATE_RUN, RID, ({"overall_progress_message": "fine"}, NOW))
    increment = (ev.INCREMENT_SUBTASK, RID, (1, 5, NOW))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning
        for event in (end, update, increment):
            assert fit_event(event, TextBudget(100, "a test's"))[0] is event


def test_a_run_whose_start_and_end_exceed_the_budget_is_written_apart() -> None:
    start = (ev.START_RUN, RID, (new_run(RID, "s", "t", overall_progress_message="m" * 100),))
    end = (ev.END_RUN, RID, (Status.FAILED, {"error_message": "e" * 100}, NOW, None))
    other = "00000000-0000-4000-8000-000000000002"
    short = [
        (ev.START_RUN, other, (new_run(other, "s", "t"),)),
        (ev.END_RUN, other, (Status.COMPLETED, {}, NOW, None)),
    ]
    # Each within the 700 bytes alone (at most four bytes a character), not both in one row.
    events, apart = fit_batch([start, end, *short], TextBudget(700, "a test's"))
    assert events == [start, end, *short] and apart == {RID}
