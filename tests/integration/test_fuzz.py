"""The explicit API fuzzed with hostile arguments (strict off): ``task_start``'s every keyword,
texts up to MiB sizes (on MariaDB beyond ``max_allowed_packet``), calls aimed at the runs of
earlier examples. A call either works or raises a ValidationError saying what was wrong
(an UnknownSubtaskError only for a subtask the run does not have) — never a DatabaseError,
OverflowError, UnicodeEncodeError, AssertionError or driver error — and every run recorded
earlier is exactly as it ended."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import tasker
from tasker.models import Status
from tests.conftest import Backend

MIB = 2**20


@dataclasses.dataclass(frozen=True)
class Big:
    """A text of MiB size, made only for the call: a failing example prints in a line."""

    char: str
    size: int

    def text(self) -> str:
        return self.char * self.size


# Texts of MiB sizes: around 1 MiB of any kind, and beyond MariaDB's max_allowed_packet of
# the test server (16 MiB) of plain and escaped characters.
big_texts = st.one_of(
    st.builds(
        Big,
        st.sampled_from(["x", "é", "'", "\\", "\udce9", "\x00", "😀", "a\nb"]),
        st.sampled_from([70_000, MIB]),
    ),
    st.builds(Big, st.sampled_from(["x", "'"]), st.just(17 * MIB)),
)
small_texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["caf\udce9", "x\ud800y", "a\x00b", "'; DROP TABLE task_runs; --", "%s%n{0}"]),
    st.text(min_size=256, max_size=600),
)
texts = st.one_of(st.none(), small_texts, small_texts, big_texts)
numbers = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 2**31, 2**63 - 1, 2**63, 10**30, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=5),
)
statuses = st.one_of(
    st.sampled_from(["RUNNING", "COMPLETED", "FAILED", "SKIPPED", "CANCELLED", "running"]),
    st.text(max_size=10),
    st.none(),
)
# A run to aim at: an index into this example's runs and every earlier one.
targets = st.integers(min_value=0, max_value=30)
# parent_run_id: one of the runs, a UUID of no run, or any text.
parents = st.one_of(st.none(), targets, st.uuids().map(str), small_texts)
start_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "stage": texts,
        "task": texts,
        "total_subtasks": numbers,
        "message": texts,
        "version": texts,
        "git_commit": texts,
        "task_type": texts,
        "parent_run_id": parents,
        "log_path": texts,
        "log_filename": texts,
        "script_path": texts,
        "quiet": st.sampled_from([None, True, False]),
        "on_behalf_of": st.sampled_from([None, 1, os.getpid(), 2**31, -5, "x", 1.5]),
    },
)

calls = st.lists(
    st.one_of(
        st.tuples(st.just("task_start"), start_kwargs),
        st.tuples(st.just("subtask_start"), targets, texts, numbers),
        st.tuples(st.just("subtask_increment"), targets, numbers, numbers),
        st.tuples(st.just("subtask_update"), targets, statuses, numbers, numbers, texts),
        st.tuples(st.just("task_update"), targets, statuses, numbers, texts, numbers),
        st.tuples(st.just("subtask_number"), targets, statuses, numbers),
        st.tuples(st.just("subtask_complete"), targets, texts),
        st.tuples(st.just("subtask_fail"), targets, texts),
        st.tuples(st.just("task_fail"), targets, texts, numbers),
        st.tuples(st.just("task_complete"), targets, texts),
    ),
    min_size=1,
    max_size=10,
)


# Tried first on every backend: MiB texts in every keyword of task_start and in an update
# (beyond MariaDB's max_allowed_packet), text that escapes wider than its column, and calls
# aimed at the earlier run.
ALWAYS_TRIED = [
    (
        "task_start",
        {
            "stage": "é" * 150,
            "task": "\udce9" * 100,
            "message": Big("x", 17 * MIB),
            "version": "\udce9" * 60,
            "git_commit": "g" * 100,
            "task_type": "t" * 30,
            "log_path": Big("\\", MIB),
            "log_filename": "\udce9" * 100,
            "script_path": "/" + "y" * 300,
            "parent_run_id": 1,
        },
    ),
    ("task_update", 0, "RUNNING", None, Big("'", 17 * MIB), None),
    ("subtask_start", 0, "\udce9" * 200, 3),
    ("subtask_fail", 0, Big("\x00", MIB)),
    ("task_update", 1, "RUNNING", 50, "again", 1),
    ("subtask_start", 1, "late", None),
    ("subtask_number", 1, "RUNNING", 1),
    ("subtask_complete", 1, "late"),
    ("task_fail", 1, "late", 3),
    ("subtask_increment", 1, 2, 1),
]


def _real(value: Any) -> Any:
    return value.text() if isinstance(value, Big) else value


def _call(ids: list[str], call: tuple[Any, ...]) -> None:
    name, *args = call
    args = [_real(a) for a in args]
    if name == "task_start":
        kwargs = {k: _real(v) for k, v in args[0].items()}
        if isinstance(kwargs.get("parent_run_id"), int):
            kwargs["parent_run_id"] = ids[kwargs["parent_run_id"] % len(ids)]
        # Started runs are the example's: ended when it ends, aimed at by later calls.
        ids.insert(0, tasker.task_start(**kwargs))
        return
    run_id = ids[args[0] % len(ids)]
    args = args[1:]
    if name == "subtask_start":
        tasker.subtask_start(args[0], items_total=args[1], run_id=run_id)
    elif name == "subtask_increment":
        tasker.subtask_increment(args[0], subtask_number=args[1], run_id=run_id)
    elif name == "subtask_update":
        tasker.subtask_update(
            args[0], items_complete=args[1], percent=args[2], message=args[3], run_id=run_id
        )
    elif name == "task_update":
        tasker.task_update(
            args[0],
            overall_percent=args[1],
            message=args[2],
            current_subtask=args[3],
            run_id=run_id,
        )
    elif name == "subtask_number":
        tasker.subtask_update(args[0], subtask_number=args[1], run_id=run_id)
    elif name == "subtask_complete":
        tasker.subtask_complete(args[0], run_id=run_id)
    elif name == "subtask_fail":
        tasker.subtask_fail(args[0], run_id=run_id)
    elif name == "task_fail":
        tasker.task_fail(args[0], exit_code=args[1], run_id=run_id)
    else:
        tasker.task_complete(args[0], run_id=run_id)


def _aimed_at(ids: list[str], call: tuple[Any, ...]) -> tuple[str, Any]:
    """The run a call is aimed at, and the subtask number it names (None: the current)."""
    name, *args = call
    number = args[2] if name in ("subtask_increment", "subtask_number") else None
    return ids[args[0] % len(ids)], number


def _no_such_subtask(run_id: str, number: Any) -> bool:
    """The one lookup error a hostile call may get is for a subtask the run does not have
    (none named: the run has none yet)."""
    have = {s.subtask_number for s in tasker.get_subtask_progress(run_id)}
    return number not in have if number is not None else not have


def _digest(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 1000:  # MiB texts: compared by content hash
        return (len(value), hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest())
    return value


# What may change on an ended run: the touch of a late call, and the counts of late
# increments ("late counts still count").
_RUN_VOLATILE = {"last_update", "heartbeat"}
_SUB_VOLATILE = {"last_update", "items_complete", "percent_complete"}


def _fields(record: Any, volatile: set[str]) -> dict[str, Any]:
    return {
        f.name: _digest(getattr(record, f.name))
        for f in dataclasses.fields(record)
        if f.name not in volatile
    }


def _snapshot(run_id: str) -> tuple[Any, ...]:
    """Everything recorded about an ended run and its subtasks."""
    run = tasker.get_run(run_id)
    assert not Status(run.status).is_active, run.status
    subs = tasker.get_subtask_progress(run_id)
    return _fields(run, _RUN_VOLATILE), [_fields(s, _SUB_VOLATILE) for s in subs]


@pytest.mark.slow
def test_hostile_explicit_calls_never_raise_anything_else_and_keep_earlier_runs(
    db: Backend,
) -> None:
    first = tasker.task_start("FUZZ", "earlier")
    tasker.subtask_start("kept", items_total=5)
    tasker.subtask_increment(5)
    tasker.subtask_complete()
    tasker.task_complete("kept intact")
    earlier: dict[str, tuple[Any, ...]] = {first: _snapshot(first)}

    @settings(
        max_examples=40 if db.name == "sqlite" else 25,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(calls)
    @example(ALWAYS_TRIED)
    def run(sequence: list[tuple[Any, ...]]) -> None:
        ids = [tasker.task_start("FUZZ", "target"), *earlier]
        mine = {ids[0]}
        aimed: set[str] = set()
        for call in sequence:
            if call[0] != "task_start":
                aimed.add(_aimed_at(ids, call)[0])
            try:
                _call(ids, call)
            except tasker.ValidationError:
                pass  # the argument was wrong, and the error says which
            except tasker.UnknownSubtaskError:
                assert _no_such_subtask(*_aimed_at(ids, call)), call
            mine.update(ids[: len(ids) - len(earlier)])
        for run_id in mine:
            for sub in tasker.get_subtask_progress(run_id):  # readable, with integer counts
                assert isinstance(sub.items_complete, int)
            tasker.task_complete(run_id=run_id)  # ended (a second ending: only a warning)
        for run_id in aimed & set(earlier):  # the earlier runs it aimed at, as they ended
            assert _snapshot(run_id) == earlier[run_id], run_id
        earlier.update({run_id: _snapshot(run_id) for run_id in mine})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tasker.TaskerWarning)
        run()
    assert len(earlier) > 20
    for run_id, snapshot in earlier.items():  # and every earlier run, aimed at or not
        assert _snapshot(run_id) == snapshot, run_id
