"""Pipeline runs: a run with no parent and every run nested under it (decorated calls inside
it, pool workers, child processes, ``tasker run -- make all`` and the scripts it starts),
read through ``parent_run_id``.

Each read is index-driven: a run's children are a range of (parent_run_id, start_time,
run_id), the latest pipeline runs the NULL range of the same index read backwards, a whole
tree a walk down that index from its root a level a statement, and the roots of a set of
runs a walk up their parents by primary key, a level a statement. (A recursive query would
do either in one statement, but the planners guess the size of its work table and may then
join it by reading the whole table.) The walks stop :data:`MAX_DEPTH` levels down (or up),
and never visit a run twice, so that a cycle written by hand cannot make them endless.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select

from tasker.models import RunRecord
from tasker.store.core import StoreCore
from tasker.store.reads import _run_record
from tasker.store.schema import Tables, record_columns, run_columns

__all__ = ["CHILDREN_READ", "MAX_DEPTH", "PipelineReads"]

MAX_DEPTH = 64
# A run's children read at once (a pool's run may have thousands).
CHILDREN_READ = 1000
# Run ids a statement names at most.
_CHUNK = 500


def _joined(t: Tables, picked: Any, *extra: Any) -> Select[Any]:
    """The runs whose ids ``picked`` holds, as RunRecords (and ``extra`` columns after their
    fields), joined with their task and stage."""
    runs = t.task_runs
    columns = record_columns(RunRecord, run_columns(t, log_tail=False))
    return select(*columns, *extra).select_from(
        picked.join(runs, runs.c.run_id == picked.c.run_id)
        .join(t.tasks, t.tasks.c.task_id == runs.c.task_id)
        .join(t.stages, t.stages.c.stage_id == t.tasks.c.stage_id)
    )


def _run_id(t: Tables, name: str) -> Any:
    return bindparam(name, type_=t.task_runs.c.run_id.type)


@functools.cache
def children_select(t: Tables) -> Select[Any]:
    """The first ``:x_limit`` runs directly under ``:x_run_id``, oldest first: picked in
    the index's order and limited, then joined and sorted again (a bounded set)."""
    runs = t.task_runs
    picked = (
        select(runs.c.run_id)
        .where(runs.c.parent_run_id == _run_id(t, "x_run_id"))
        .order_by(runs.c.start_time, runs.c.run_id)
        .limit(bindparam("x_limit"))
        .subquery("children")
    )
    return _joined(t, picked).order_by(runs.c.start_time, runs.c.run_id)


@functools.cache
def roots_select(t: Tables) -> Select[Any]:
    """The latest ``:x_limit`` runs without a parent, newest first: the ids picked from the
    index first (a derived table: MariaDB takes no LIMIT inside IN), then joined."""
    runs = t.task_runs
    picked = (
        select(runs.c.run_id)
        .where(runs.c.parent_run_id.is_(None))
        .order_by(runs.c.start_time.desc(), runs.c.run_id.desc())
        .limit(bindparam("x_limit"))
        .subquery("roots")
    )
    return _joined(t, picked).order_by(runs.c.start_time.desc(), runs.c.run_id.desc())


@functools.cache
def runs_by_id_select(t: Tables) -> Select[Any]:
    """The runs ``:x_run_ids`` (expanding), by primary key, in no order."""
    runs = t.task_runs
    picked = select(runs.c.run_id).where(runs.c.run_id.in_(bindparam("x_run_ids", expanding=True)))
    return _joined(t, picked.subquery("picked"))


@functools.cache
def parents_select(t: Tables) -> Select[Any]:
    """Each run of ``:x_run_ids`` (expanding) with its parent's id, by primary key."""
    runs = t.task_runs
    return select(runs.c.run_id, runs.c.parent_run_id).where(
        runs.c.run_id.in_(bindparam("x_run_ids", expanding=True))
    )


@functools.cache
def children_ids_select(t: Tables) -> Select[Any]:
    """The runs directly under any of ``:x_run_ids`` (expanding): a range of the parent
    index each."""
    runs = t.task_runs
    return select(runs.c.run_id).where(
        runs.c.parent_run_id.in_(bindparam("x_run_ids", expanding=True))
    )


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


class PipelineReads(StoreCore):
    """Reads of pipeline runs (see the module)."""

    def children(self, run_id: str, limit: int = CHILDREN_READ) -> list[RunRecord]:
        """The first ``limit`` runs directly under ``run_id``, oldest first."""
        stmt = children_select(self.t)
        params = {"x_run_id": run_id, "x_limit": limit}
        rows = self._run(
            "reading a run's children", lambda c: c.execute(stmt, params).all(), write=False
        )
        return [_run_record(r) for r in rows]

    def pipeline_roots(self, limit: int) -> list[RunRecord]:
        """The latest ``limit`` runs without a parent, newest first."""
        stmt = roots_select(self.t)
        rows = self._run(
            "reading the pipeline runs",
            lambda c: c.execute(stmt, {"x_limit": limit}).all(),
            write=False,
        )
        return [_run_record(r) for r in rows]

    def pipeline(self, run_id: str) -> list[tuple[RunRecord, int]]:
        """``run_id`` and every run under it, oldest first, each with its depth: walked
        down a level a statement (a range of the parent index for each run of the level),
        then read by primary key."""

        def read(conn: Connection) -> list[tuple[RunRecord, int]]:
            depth_of = {run_id: 0}
            level = [run_id]
            for depth in range(1, MAX_DEPTH + 1):
                found = [
                    str(r)
                    for chunk in _chunks(level)
                    for r in conn.execute(children_ids_select(self.t), {"x_run_ids": chunk})
                    .scalars()
                    .all()
                ]
                level = [r for r in found if r not in depth_of]  # a cycle is walked once
                if not level:
                    break
                depth_of.update(dict.fromkeys(level, depth))
            records = [
                _run_record(row)
                for chunk in _chunks(list(depth_of))
                for row in conn.execute(runs_by_id_select(self.t), {"x_run_ids": chunk}).all()
            ]
            return [(r, depth_of[r.run_id]) for r in records]

        tree = self._run("reading a pipeline run", read, write=False)
        tree.sort(key=lambda pair: (pair[0].start_time is None, pair[0].start_time, pair[0].run_id))
        return tree

    def roots_of(self, run_ids: list[str]) -> dict[str, str]:
        """For each of ``run_ids`` that is recorded, the topmost run above it (itself when it
        has no parent; the last one found when a parent is not recorded here): walked up a
        level a statement, by primary key."""

        def read(conn: Connection) -> dict[str, str]:
            parent_of: dict[str, str | None] = {}
            wanted = list(dict.fromkeys(run_ids))
            for _ in range(MAX_DEPTH + 1):
                for chunk in _chunks(wanted):
                    for run, parent in conn.execute(
                        parents_select(self.t), {"x_run_ids": chunk}
                    ).all():
                        parent_of[str(run)] = None if parent is None else str(parent)
                wanted = [p for p in set(parent_of.values()) if p and p not in parent_of]
                if not wanted:
                    break
            roots = {}
            for origin in run_ids:
                if origin not in parent_of:
                    continue
                top, seen = origin, {origin}
                while (up := parent_of.get(top)) is not None and up in parent_of and up not in seen:
                    top = up
                    seen.add(top)
                roots[origin] = top
            return roots

        if not run_ids:
            return {}
        return self._run("reading runs' pipeline runs", read, write=False)
