"""Which pipeline run an overview shows, and what of it each task's row says.

A pipeline run is a run without a parent and every run under it (nested calls, pool
workers, child processes, the scripts ``tasker run -- make all`` starts). An overview shows
the current one — the pipeline run of the latest run any task made — or one the user chose:

- **the current one**: each task keeps its latest run; a row whose run belongs to an earlier
  pipeline run is marked ``earlier``, and counts as not started for its stage's status, so
  that last night's FAILED does not stand for a stage of tonight's run that has not got to
  it yet. When the latest run is a pipeline run of one (a run with no parent and no
  children: tasks run on their own, by cron say) there is nothing to group and no row is
  marked;
- **a chosen one**: each task shows its latest run within that pipeline run; a task that
  made none there shows as not started, marked ``absent``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from tasker.models import RunRecord, Status, TaskStatusRecord
from tasker.queries import get_pipeline_run, pipeline_root, pipeline_roots

__all__ = ["PipelineView", "pipeline_view"]

# The fields of a task status row that describe its run (set from another run, or cleared).
_RUN_FIELDS = (
    "run_id",
    "hostname",
    "process_id",
    "user_name",
    "start_time",
    "end_time",
    "last_update",
    "total_subtasks",
    "current_subtask",
    "overall_percent_complete",
    "overall_progress_message",
    "error_message",
)
_SUBTASK_FIELDS = (
    "subtask_name",
    "subtask_status",
    "subtask_percent_complete",
    "items_total",
    "items_complete",
    "subtask_start_time",
)


@dataclass(frozen=True)
class PipelineView:
    """The rows an overview shows, and of which pipeline run."""

    rows: list[TaskStatusRecord]
    # The pipeline run shown (its top run's id), None when there is nothing to group.
    run_id: str | None
    # By run id, the pipeline run each row's run belongs to.
    roots: dict[str, str]
    # Task ids whose row is from an earlier pipeline run, or not in the chosen one.
    earlier: frozenset[int]
    absent: frozenset[int]

    def for_stages(self) -> list[TaskStatusRecord]:
        """The rows as their stages' statuses count them: a row left from an earlier
        pipeline run as not started."""
        return [_cleared(row) if row.task_id in self.earlier else row for row in self.rows]


def _cleared(row: TaskStatusRecord) -> TaskStatusRecord:
    values = dict.fromkeys(_RUN_FIELDS + _SUBTASK_FIELDS)
    return dataclasses.replace(row, status=Status.NOT_STARTED, **values)  # type: ignore[arg-type]


def _from_run(row: TaskStatusRecord, run: RunRecord) -> TaskStatusRecord:
    values = {name: getattr(run, name) for name in _RUN_FIELDS}
    values.update(dict.fromkeys(_SUBTASK_FIELDS))
    return dataclasses.replace(row, status=run.status, **values)


def pipeline_view(rows: Sequence[TaskStatusRecord], chosen: str | None = None) -> PipelineView:
    """The overview's rows for the current pipeline run, or for ``chosen`` (the id of any
    run of it); see the module."""
    if chosen is not None:
        top = pipeline_root(chosen)
        latest: dict[int, RunRecord] = {}
        for run, _depth in get_pipeline_run(top):
            kept = latest.get(run.task_id)
            if kept is None or (run.start_time, run.run_id) > (kept.start_time, kept.run_id):
                latest[run.task_id] = run
        shown = [
            _from_run(row, latest[row.task_id]) if row.task_id in latest else _cleared(row)
            for row in rows
        ]
        absent = frozenset(row.task_id for row in rows if row.task_id not in latest)
        roots = {run.run_id: top for run in latest.values()}
        return PipelineView(shown, top, roots, absent, absent)
    ran = [row for row in rows if row.run_id is not None and row.start_time is not None]
    if not ran:
        return PipelineView(list(rows), None, {}, frozenset(), frozenset())
    roots = pipeline_roots([str(row.run_id) for row in ran])
    newest = max(ran, key=lambda row: (row.start_time, str(row.run_id)))
    current = roots.get(str(newest.run_id), str(newest.run_id))
    members = [row for row in ran if roots.get(str(row.run_id)) == current]
    if current == newest.run_id and len(members) == 1:
        return PipelineView(list(rows), None, roots, frozenset(), frozenset())  # one run alone
    earlier = frozenset(
        row.task_id for row in ran if roots.get(str(row.run_id), row.run_id) != current
    )
    return PipelineView(list(rows), current, roots, earlier, frozenset())
