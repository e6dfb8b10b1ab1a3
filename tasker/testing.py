"""Testing code that tasker tracks: capture what it recorded, or turn tracking off.

::

    import tasker
    from tasker.testing import capture

    def test_build_records_a_failed_run():
        with capture() as tracked:
            with pytest.raises(ValueError):
                build_database([])
        run = tracked.run("Build Database")
        assert run.status == "FAILED" and run.error_type == "ValueError"
        assert [s.subtask_name for s in tracked.subtasks(run)] == ["Loading data"]

``capture()`` tracks into a fresh SQLite database in a temporary folder for the block (strict,
console off, quick flushes), then puts the previous configuration back and deletes the
folder. ``disabled()`` turns tracking off for a block; ``TASKER_ENABLED=0`` (or
``tracking: {enabled: false}``, ``tasker.configure(enabled=False)``) does it for a whole test
session: decorators, ``with`` blocks and ``track()`` then pass straight through.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasker import queries
from tasker.explicit import configure
from tasker.models import RunRecord, SubtaskRecord
from tasker.runtime.recorder import RECORDER

__all__ = ["Captured", "capture", "disabled"]


class Captured:
    """What the code under test recorded (read from the capture's own database)."""

    def runs(self, task: str | None = None, *, stage: str | None = None) -> list[RunRecord]:
        """Every run recorded so far (of ``task``, of ``stage``), oldest first."""
        RECORDER.flush(30.0)
        found = queries.get_task_history(stage=stage, task=task, limit=None)
        return sorted(found, key=lambda r: (r.start_time is None, r.start_time))

    def run(self, task: str, *, stage: str | None = None) -> RunRecord:
        """The one run of ``task``; AssertionError (saying what there is) otherwise."""
        found = self.runs(task, stage=stage)
        if len(found) != 1:
            everything = [(r.stage_name, r.task_name, str(r.status)) for r in self.runs()]
            raise AssertionError(
                f"expected exactly one run of {task!r}, found {len(found)}; recorded: {everything}"
            )
        return found[0]

    def subtasks(self, run: RunRecord | str) -> list[SubtaskRecord]:
        """The subtasks of ``run`` (a record or a run id), in number order."""
        RECORDER.flush(30.0)
        found: list[SubtaskRecord] = queries.get_subtask_progress(
            run if isinstance(run, str) else run.run_id
        )
        return found


@contextlib.contextmanager
def _configured(**settings: Any) -> Iterator[None]:
    overrides, config_file = RECORDER.settings()
    configure(config_file, **settings)
    try:
        yield
    finally:
        RECORDER.flush(30.0)
        configure(config_file, **overrides)


@contextlib.contextmanager
def capture(**settings: Any) -> Iterator[Captured]:
    """Track into a temporary SQLite database for the block; ``settings`` add to (or
    replace) the capture's own: ``url`` (the temporary file), ``strict`` (True),
    ``console`` ("false"), ``flush_interval`` (0.05) …"""
    folder = Path(tempfile.mkdtemp(prefix="tasker-capture-"))
    own: dict[str, Any] = {
        # A URL, not a path: it wins over any database the environment or a file names.
        "url": f"sqlite:///{folder / 'tasker.db'}",
        "journal_dir": str(folder / "journal"),
        "strict": True,
        "console": "false",
        "flush_interval": 0.05,
        **settings,
    }
    try:
        with _configured(**own):
            yield Captured()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Tracking off for the block: tracked code runs as if undecorated."""
    overrides, _ = RECORDER.settings()
    with _configured(**{**overrides, "enabled": False}):
        yield
