"""The explicit API fuzzed with hostile arguments (strict off): a call either works or raises
one of tasker's own documented errors, saying what was wrong — never an OverflowError,
UnicodeEncodeError, AssertionError or driver error — and nothing recorded earlier changes."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import tasker
from tests.conftest import Backend

# What a caller may legitimately get back for bad input: the error names the problem.
EXPECTED = (tasker.ValidationError, tasker.UnknownRunError, tasker.UnknownSubtaskError)

texts = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.sampled_from(["caf\udce9", "x\ud800y", "a\x00b", "'; DROP TABLE task_runs; --", "%s%n{0}"]),
    st.text(min_size=300, max_size=600),
)
numbers = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**31, 2**63 - 1, 2**63, 10**30, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=5),
)
statuses = st.one_of(
    st.sampled_from(["RUNNING", "COMPLETED", "FAILED", "SKIPPED", "CANCELLED", "running"]),
    st.text(max_size=10),
    st.none(),
)

calls = st.lists(
    st.one_of(
        st.tuples(st.just("subtask_start"), texts, numbers),
        st.tuples(st.just("subtask_increment"), numbers, numbers),
        st.tuples(st.just("subtask_update"), statuses, numbers, numbers, texts),
        st.tuples(st.just("task_update"), statuses, numbers, texts, numbers),
        st.tuples(st.just("subtask_number"), statuses, numbers),
        st.tuples(st.just("subtask_complete"), texts),
        st.tuples(st.just("subtask_fail"), texts),
        st.tuples(st.just("task_fail"), texts, numbers),
        st.tuples(st.just("task_complete"), texts),
    ),
    min_size=1,
    max_size=12,
)


def _call(run_id: str, call: tuple[Any, ...]) -> None:
    name, *args = call
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


def _snapshot(run_id: str) -> tuple[Any, ...]:
    run = tasker.get_run(run_id)
    subs = tasker.get_subtask_progress(run_id)
    return (
        run.status,
        run.error_message,
        run.end_time,
        [(s.subtask_number, s.status, s.items_complete, s.items_total) for s in subs],
    )


@pytest.mark.slow
def test_hostile_explicit_calls_never_raise_anything_else_and_keep_earlier_runs(
    db: Backend,
) -> None:
    earlier = tasker.task_start("FUZZ", "earlier")
    tasker.subtask_start("kept", items_total=5)
    tasker.subtask_increment(5)
    tasker.subtask_complete()
    tasker.task_complete("kept intact")
    before = _snapshot(earlier)

    @settings(
        max_examples=80 if db.name == "sqlite" else 30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(calls)
    def run(sequence: list[tuple[Any, ...]]) -> None:
        run_id = tasker.task_start("FUZZ", "target")
        for call in sequence:
            with contextlib.suppress(EXPECTED):
                _call(run_id, call)
        # The run is readable whatever it was sent, with integer counts.
        for sub in tasker.get_subtask_progress(run_id):
            assert isinstance(sub.items_complete, int)
        with contextlib.suppress(EXPECTED):
            tasker.task_complete(run_id=run_id)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tasker.TaskerWarning)
        run()
    assert _snapshot(earlier) == before
