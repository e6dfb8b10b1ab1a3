"""Stages and tasks: registered up front, or on the fly by a run's first start; updated in
place when registered again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from tasker.models import NewRun, TaskSpec
from tasker.store.core import StoreCore

__all__ = ["TaskRegistration"]


class TaskRegistration(StoreCore):
    """Stage and task rows, and the task id of a run."""

    def _ensure_stage(
        self,
        conn: Connection,
        name: str,
        order: int | None,
        description: str | None,
        now: datetime,
    ) -> int:
        stages = self.t.stages
        row = conn.execute(
            select(stages.c.stage_id, stages.c.stage_order, stages.c.description).where(
                stages.c.stage_name == name
            )
        ).first()
        if row is None:
            if order is None:
                order = (
                    conn.execute(
                        select(func.coalesce(func.max(stages.c.stage_order), 0))
                    ).scalar_one()
                    + 1
                )
            self._insert_ignore(
                conn,
                stages,
                {
                    "stage_name": name,
                    "stage_order": order,
                    "description": description,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            return int(
                conn.execute(
                    select(stages.c.stage_id).where(stages.c.stage_name == name)
                ).scalar_one()
            )
        changes: dict[str, Any] = {}
        if order is not None and order != row.stage_order:
            changes["stage_order"] = order
        if description is not None and description != row.description:
            changes["description"] = description
        if changes:
            changes["updated_at"] = now
            conn.execute(update(stages).where(stages.c.stage_id == row.stage_id).values(changes))
        return int(row.stage_id)

    def _ensure_task(self, conn: Connection, spec: TaskSpec, now: datetime) -> int:
        tasks = self.t.tasks
        stage_id = self._ensure_stage(
            conn, spec.stage, spec.stage_order, spec.stage_description, now
        )
        given = {
            "task_type": spec.task_type,
            "task_order": spec.task_order,
            "description": spec.description,
            "script_path": spec.script_path,
            "script_filename": spec.script_filename,
            "log_path": spec.log_path,
            "log_filename": spec.log_filename,
        }
        given = {k: v for k, v in given.items() if v is not None}
        where = and_(tasks.c.stage_id == stage_id, tasks.c.task_name == spec.name)
        row = conn.execute(select(tasks).where(where)).first()
        if row is None:
            if "task_order" not in given:
                given["task_order"] = (
                    conn.execute(
                        select(func.coalesce(func.max(tasks.c.task_order), 0)).where(
                            tasks.c.stage_id == stage_id
                        )
                    ).scalar_one()
                    + 1
                )
            self._insert_ignore(
                conn,
                tasks,
                {
                    "stage_id": stage_id,
                    "task_name": spec.name,
                    "created_at": now,
                    "updated_at": now,
                    **given,
                },
            )
            return int(conn.execute(select(tasks.c.task_id).where(where)).scalar_one())
        changes: dict[str, Any] = {k: v for k, v in given.items() if getattr(row, k) != v}
        if changes:
            changes["updated_at"] = now
            conn.execute(update(tasks).where(tasks.c.task_id == row.task_id).values(changes))
        return int(row.task_id)

    def register_tasks(self, specs: Sequence[TaskSpec], now: datetime) -> list[int]:
        """Register (or update in place) every task in one transaction; return their ids."""

        def register(conn: Connection) -> list[int]:
            return [self._ensure_task(conn, spec, now) for spec in specs]

        ids = self._run("registering tasks", register)
        for spec, task_id in zip(specs, ids, strict=True):
            self._remember_task((spec.stage, spec.name), task_id)
        return ids

    def _task_id_for(self, conn: Connection, run: NewRun) -> int:
        key = (run.stage, run.task)
        task_id = self._cached_task(key)
        if task_id is None:
            spec = TaskSpec(stage=run.stage, name=run.task, task_type=run.task_type)
            task_id = self._ensure_task(conn, spec, run.start_time)
            self._remember_task(key, task_id)
        return task_id
