"""How far along a run is: the one definition every view shows.

``tasker status``, ``active``, ``history``, ``show``, ``watch`` and the dashboard all show a
run's progress through :func:`progress`, so that no two of them can disagree:

- **Items** are the run's current subtask's (the one it started last): ``13/40``, or ``13``
  when the subtask counts items without a total.
- **Percent** comes from the same place as the items: the share of that subtask's items done
  when it has a total, else the percent the subtask reported, else the run's own overall
  percent (what it reported, or the share of its declared ``total_subtasks`` that ended; 100
  once it COMPLETED). A run that has not started shows nothing.
- **Subtask** is ``2/5 Loading`` (its number of the run's declared total) or ``2. Loading``.

The run's own overall percent stays in the records (``overall_percent_complete``) and is shown
as such by ``tasker show`` and the dashboard's run page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasker.models import RunRecord, Status, SubtaskRecord, TaskStatusRecord

__all__ = ["Progress", "of_run", "of_status_row", "of_subtask", "progress"]


@dataclass(frozen=True)
class Progress:
    """What a view shows of a run's progress (all None for a run that never started)."""

    items_done: int | None = None
    items_total: int | None = None
    percent: float | None = None
    subtask_number: int | None = None
    subtasks_total: int | None = None
    subtask_name: str | None = None

    @property
    def items(self) -> str:
        """``13/40``, ``13`` or empty."""
        if self.items_total:
            return f"{self.items_done or 0}/{self.items_total}"
        return str(self.items_done) if self.items_done else ""

    @property
    def percent_text(self) -> str:
        """``32%`` or empty."""
        return "" if self.percent is None else f"{self.percent:.0f}%"

    @property
    def text(self) -> str:
        """``13/40 32%``: items and percent, whichever are known."""
        return " ".join(p for p in (self.items, self.percent_text) if p)

    @property
    def subtask(self) -> str:
        """``2/5 Loading``, ``2. Loading`` or empty."""
        if self.subtask_number is None or not self.subtask_name:
            return ""
        if self.subtasks_total:
            return f"{self.subtask_number}/{self.subtasks_total} {self.subtask_name}"
        return f"{self.subtask_number}. {self.subtask_name}"


def progress(
    *,
    status: str | Status | None,
    overall_percent: float | None,
    total_subtasks: int | None = None,
    current_subtask: int | None = None,
    subtask_name: str | None = None,
    subtask_percent: float | None = None,
    items_total: int | None = None,
    items_complete: int | None = None,
) -> Progress:
    """A run's progress from its own fields and its current subtask's (see the module)."""
    if status is None or str(status) == Status.NOT_STARTED.value:
        return Progress()
    has_subtask = current_subtask is not None and subtask_name is not None
    percent: float | None
    if has_subtask and items_total:
        percent = min(100.0, max(0.0, (items_complete or 0) * 100.0 / items_total))
    elif has_subtask and subtask_percent is not None:
        percent = float(subtask_percent)
    else:
        percent = None if overall_percent is None else float(overall_percent)
    if not has_subtask:
        return Progress(percent=percent)
    return Progress(
        items_done=items_complete,
        items_total=items_total,
        percent=percent,
        subtask_number=current_subtask,
        subtasks_total=total_subtasks,
        subtask_name=subtask_name,
    )


def of_status_row(row: TaskStatusRecord | dict[str, Any]) -> Progress:
    """The progress of a task's latest run (a ``get_task_status()`` row, or its dict)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return progress(
        status=get("status"),
        overall_percent=get("overall_percent_complete"),
        total_subtasks=get("total_subtasks"),
        current_subtask=get("current_subtask"),
        subtask_name=get("subtask_name"),
        subtask_percent=get("subtask_percent_complete"),
        items_total=get("items_total"),
        items_complete=get("items_complete"),
    )


def of_run(run: RunRecord, current: SubtaskRecord | None) -> Progress:
    """The progress of ``run`` given its current subtask (None when it has none)."""
    return progress(
        status=run.status,
        overall_percent=run.overall_percent_complete,
        total_subtasks=run.total_subtasks,
        current_subtask=None if current is None else current.subtask_number,
        subtask_name=None if current is None else (current.subtask_name or ""),
        subtask_percent=None if current is None else current.percent_complete,
        items_total=None if current is None else current.items_total,
        items_complete=None if current is None else current.items_complete,
    )


def of_subtask(sub: SubtaskRecord | dict[str, Any]) -> Progress:
    """One subtask's own progress (a ``get_subtask_progress()`` record, or its dict): its
    items, and its percent by the same rule as a run's."""
    get = sub.get if isinstance(sub, dict) else lambda name: getattr(sub, name)
    return progress(
        status=get("status"),
        overall_percent=None,
        current_subtask=get("subtask_number"),
        subtask_name=get("subtask_name") or "",
        subtask_percent=get("percent_complete"),
        items_total=get("items_total"),
        items_complete=get("items_complete"),
    )
