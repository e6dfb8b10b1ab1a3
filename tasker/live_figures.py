"""The figures of work in progress: the one definition every view shows.

``tasker status``, ``tasker watch``, the dashboard and its JSON API show an active run's
duration, rate and times left through :func:`figures`, so that no two of them disagree:

- **Duration** is now - start while the run is active, end - start once it ended (never
  start to the last update: a run that reports nothing for a minute is a minute older).
- **Rate** is the current subtask's items per second. A reader that keeps looking (the
  dashboard, ``tasker watch``) passes a :class:`RateWindow`, and the rate is then the items
  counted over the last :data:`WINDOW` seconds of what it saw, so that a loop that speeds up
  or stalls shows it within the window. A reader that looks once (``tasker status``), or has
  not yet seen the subtask for :data:`MIN_SPAN` seconds, takes the average since the
  *subtask* started: the time of the run's earlier subtasks is not this one's.
- **Subtask ETA** is the subtask's items left at that rate.
- **Task ETA** is the time left of the whole run. In its last declared subtask it is the
  subtask's ETA. Before that it comes from the task's past COMPLETED runs: their median
  duration less the time so far, with an interval from their 10th to their 90th percentile
  (given five runs or more); never less than what the current subtask alone still needs. A
  run older than its task's median has no estimate but that floor, and is ``overdue``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from tasker.formatting import duration as duration_text
from tasker.models import Status

__all__ = [
    "MIN_SPAN",
    "PAST_RUNS",
    "WINDOW",
    "Figures",
    "RateWindow",
    "eta_text",
    "figures",
    "run_duration",
]

# The rate's sliding window, and the least of it a rate is taken from: flushes come about
# once a second, so a shorter span would show their rhythm rather than the loop's.
WINDOW = 30.0
MIN_SPAN = 5.0
# A task's latest COMPLETED runs its ETA is taken from, and how many of them an interval
# needs: fewer have no spread worth showing.
PAST_RUNS = 20
_SPREAD_RUNS = 5
# Subtasks a window remembers before it forgets those not looked at within the window.
_MAX_KEYS = 10_000


@dataclass(frozen=True)
class Figures:
    """What a view shows of an active run's pace (None where unknown)."""

    duration: float | None = None
    rate: float | None = None
    # The seconds the rate was measured over: the window's, or since the subtask started.
    rate_seconds: float | None = None
    eta_subtask: float | None = None
    eta_task: float | None = None
    eta_task_low: float | None = None
    eta_task_high: float | None = None
    # Older than the task's median run, with no estimate left but the current subtask's.
    overdue: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The figures by name, as the JSON outputs give them (seconds, items per second)."""
        return asdict(self)


def eta_text(f: Figures) -> str:
    """The time left as a table cell: the whole run's (``4m 10s``, with its interval
    ``4m 10s (3m 00s-6m 20s)``), else the current subtask's (``50s subtask``), ``overdue``
    for a run past its task's median with nothing else known; empty when nothing is."""
    if f.eta_task is not None:
        text = duration_text(f.eta_task)
        if f.eta_task_low is not None and f.eta_task_high is not None:
            text += f" ({duration_text(f.eta_task_low)}-{duration_text(f.eta_task_high)})"
        return text + (" overdue" if f.overdue else "")
    if f.overdue:
        return "overdue"
    if f.eta_subtask is not None:
        return f"{duration_text(f.eta_subtask)} subtask"
    return ""


def run_duration(
    status: Status | str,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    last_update: datetime | None = None,
) -> float | None:
    """Seconds from ``start`` to ``end``; to ``now`` while the run is active. An ended run
    without an end time (written so by hand) lasts to its last update."""
    if start is None:
        return None
    if end is None:
        end = now if Status(status).is_active else last_update
    return (end - start).total_seconds() if end is not None else None


class RateWindow:
    """What a long-lived reader saw of each subtask's count: ``(when, items)`` samples, on
    the reader's own monotonic clock (the writers' clocks may be set differently), kept for
    :data:`WINDOW` seconds. Safe to share between threads."""

    def __init__(self, seconds: float = WINDOW) -> None:
        self.seconds = seconds
        # Each subtask's counts as they changed, the first at or before the window's start.
        self._samples: dict[tuple[str, int], deque[tuple[float, int]]] = {}
        self._looked: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def observe(self, run_id: str, subtask: int, items: int, at: float | None = None) -> None:
        """Note that subtask ``subtask`` of ``run_id`` had counted ``items`` at ``at``."""
        when = time.monotonic() if at is None else at
        key = (run_id, subtask)
        with self._lock:
            seen = self._samples.get(key)
            if seen is None or items < seen[-1][1]:  # new, or counting anew
                seen = self._samples[key] = deque([(when, items)])
            elif items != seen[-1][1]:
                seen.append((when, items))
            while len(seen) > 1 and seen[1][0] <= when - self.seconds:
                seen.popleft()
            self._looked[key] = when
            if len(self._looked) > _MAX_KEYS:  # runs long gone from view
                for old in [k for k, t in self._looked.items() if t < when - self.seconds]:
                    del self._looked[old], self._samples[old]

    def rate(
        self, run_id: str, subtask: int, items: int, at: float | None = None
    ) -> tuple[float, float] | None:
        """Items per second over the window, and the seconds it spans; None when this
        subtask was seen for less than :data:`MIN_SPAN`."""
        now = time.monotonic() if at is None else at
        with self._lock:
            seen = self._samples.get((run_id, subtask))
            if not seen:
                return None
            start = max(now - self.seconds, seen[0][0])
            # The count at the window's start: the last sample at or before it.
            base = seen[0][1]
            for when, count in seen:
                if when > start:
                    break
                base = count
        span = now - start
        if span < MIN_SPAN:
            return None
        return max(0, items - base) / span, span


def _quantile(values: Sequence[float], q: float) -> float:
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return cuts[round(q * 10) - 1]


def figures(
    *,
    status: Status | str,
    start_time: datetime | None,
    end_time: datetime | None,
    last_update: datetime | None,
    now: datetime,
    run_id: str | None = None,
    subtask_number: int | None = None,
    subtask_start: datetime | None = None,
    total_subtasks: int | None = None,
    items_complete: int | None = None,
    items_total: int | None = None,
    past_durations: Sequence[float] = (),
    window: RateWindow | None = None,
) -> Figures:
    """The figures of one run (see the module). ``past_durations``: the task's recent
    COMPLETED runs' durations in seconds; ``window``: the reader's, which this call also
    feeds with the run's current count."""
    duration = run_duration(status, start_time, end_time, now, last_update)
    if not Status(status).is_active:
        return Figures(duration=duration)
    rate = rate_seconds = eta_subtask = None
    done = items_complete or 0
    if subtask_number is not None:
        windowed = None
        if window is not None and run_id is not None:
            window.observe(run_id, subtask_number, done)
            windowed = window.rate(run_id, subtask_number, done)
        if windowed is not None:
            rate, rate_seconds = windowed
        elif subtask_start is not None and done > 0:
            since = (now - subtask_start).total_seconds()
            if since > 0:
                rate, rate_seconds = done / since, since
        if rate and items_total and items_total > done:
            eta_subtask = (items_total - done) / rate
        elif items_total and done >= items_total:
            eta_subtask = 0.0
    if subtask_number is not None and total_subtasks and subtask_number >= total_subtasks:
        return Figures(duration, rate, rate_seconds, eta_subtask, eta_subtask)  # the last
    floor = eta_subtask or 0.0
    if not past_durations or duration is None:
        return Figures(duration, rate, rate_seconds, eta_subtask)
    median = statistics.median(past_durations)
    if duration >= median:
        return Figures(duration, rate, rate_seconds, eta_subtask, eta_subtask, overdue=True)
    low = high = None
    if len(past_durations) >= _SPREAD_RUNS:
        low = max(floor, _quantile(past_durations, 0.1) - duration)
        high = max(floor, _quantile(past_durations, 0.9) - duration)
    task = max(floor, median - duration)
    return Figures(duration, rate, rate_seconds, eta_subtask, task, low, high)
