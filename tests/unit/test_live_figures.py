"""The live figures (tasker.live_figures): duration, a rate over a sliding window, and the
times left of a subtask and of a whole run, on a clock the tests hold."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tasker.live_figures import MIN_SPAN, WINDOW, Figures, RateWindow, eta_text, figures

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_a_window_shows_a_loop_that_speeds_up_or_stalls_within_its_span() -> None:
    window = RateWindow()
    # 60 s at 1 item/s, seen every second, then 10 items/s.
    t, items = 0.0, 0
    for _ in range(60):
        t, items = t + 1, items + 1
        window.observe("r", 1, items, at=t)
    assert window.rate("r", 1, items, at=t) == (pytest.approx(1.0), WINDOW)
    for _ in range(int(WINDOW)):
        t, items = t + 1, items + 10
        window.observe("r", 1, items, at=t)
    # The window holds the fast part alone: the average since the start would say 4.
    assert window.rate("r", 1, items, at=t) == (pytest.approx(10.0), WINDOW)
    for _ in range(10):  # a stall: the count stays, the rate falls
        t += 1
        window.observe("r", 1, items, at=t)
    assert window.rate("r", 1, items, at=t)[0] == pytest.approx(200 / WINDOW)
    for _ in range(int(WINDOW)):
        t += 1
        window.observe("r", 1, items, at=t)
    assert window.rate("r", 1, items, at=t)[0] == 0.0


def test_a_window_gives_no_rate_before_its_least_span_and_restarts_a_recount() -> None:
    window = RateWindow()
    window.observe("r", 2, 100, at=1000.0)
    window.observe("r", 2, 130, at=1000.0 + MIN_SPAN - 1)
    assert window.rate("r", 2, 130, at=1000.0 + MIN_SPAN - 1) is None
    window.observe("r", 2, 150, at=1000.0 + MIN_SPAN)
    assert window.rate("r", 2, 150, at=1000.0 + MIN_SPAN) == (10.0, MIN_SPAN)
    window.observe("r", 2, 3, at=1010.0)  # counted anew (a retried loop): a new window
    assert window.rate("r", 2, 3, at=1010.0) is None
    assert window.rate("other", 1, 5, at=1010.0) is None


def test_without_a_window_the_rate_is_the_subtasks_own_not_the_runs() -> None:
    # The run started 10 minutes ago; its second subtask 20 s ago and counted 250 of 1,500.
    f = figures(
        status="RUNNING",
        start_time=ago(600),
        end_time=None,
        last_update=ago(1),
        now=NOW,
        run_id="r",
        subtask_number=2,
        subtask_start=ago(20),
        total_subtasks=3,
        items_complete=250,
        items_total=1500,
    )
    assert (f.duration, f.rate, f.rate_seconds) == (600.0, 12.5, 20.0)
    assert f.eta_subtask == 100.0
    assert f.eta_task is None and not f.overdue  # no past runs to go by
    assert eta_text(f) == "1m 40s subtask"


def test_the_whole_runs_eta_and_interval_come_from_the_tasks_past_runs() -> None:
    past = [100.0, 120.0, 140.0, 160.0, 180.0, 200.0, 220.0, 240.0, 260.0, 280.0, 300.0]
    common = {
        "status": "RUNNING",
        "end_time": None,
        "last_update": NOW,
        "now": NOW,
        "run_id": "r",
        "subtask_number": 1,
        "subtask_start": ago(50),
        "total_subtasks": 4,
        "items_complete": 10,
        "items_total": 30,
        "past_durations": past,
    }
    f = figures(start_time=ago(50), **common)
    # Median 200 s, 10th and 90th percentiles 120 s and 280 s; 50 s gone.
    assert (f.rate, f.eta_subtask) == (0.2, 100.0)
    assert (f.eta_task, f.eta_task_low, f.eta_task_high) == (150.0, 100.0, 230.0)
    assert eta_text(f) == "2m 30s (1m 40s-3m 50s)"  # the low end held to the subtask's need
    late = figures(start_time=ago(250), **common)
    assert (late.eta_task, late.overdue) == (100.0, True)  # only the subtask's need is left
    assert eta_text(late) == "1m 40s overdue"
    last = figures(start_time=ago(50), **{**common, "subtask_number": 4})
    assert (last.eta_task, last.eta_task_low, last.eta_task_high) == (100.0, None, None)
    few = figures(start_time=ago(50), **{**common, "past_durations": [100.0, 300.0]})
    assert (few.eta_task, few.eta_task_low, few.eta_task_high) == (150.0, None, None)


def test_duration_runs_to_now_while_active_and_to_the_end_after() -> None:
    running = figures(
        status="RUNNING", start_time=ago(90), end_time=None, last_update=ago(60), now=NOW
    )
    assert running == Figures(duration=90.0)
    ended = figures(
        status="COMPLETED", start_time=ago(90), end_time=ago(30), last_update=ago(30), now=NOW
    )
    assert ended == Figures(duration=60.0)
    by_hand = figures(
        status="FAILED", start_time=ago(90), end_time=None, last_update=ago(80), now=NOW
    )
    assert by_hand.duration == 10.0
