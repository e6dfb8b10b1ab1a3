"""tasker.testing, as a user's test suite uses it: the example suite in examples/testing runs
in a pytest of its own; and tracking turned off records nothing and creates no database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tasker
from tests.conftest import ROOT
from tests.helpers import run_script, write_script


def test_the_example_test_suite_passes(child_env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/testing"],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    # The captures used their own databases: nothing reached the configured one.
    assert tasker.get_task_history() == []


def test_tasker_enabled_0_turns_everything_off(tmp_path: Path, child_env: dict[str, str]) -> None:
    db = tmp_path / "never.db"
    script = write_script(
        tmp_path,
        """
        import asyncio
        import tasker

        @tasker.task(stage="S", name="off")
        def step(i):
            with tasker.subtask("part") as st:
                st.advance(2)
            return sum(tasker.track(range(i)))

        @tasker.task
        async def later():
            return 7

        @tasker.task
        def numbers():
            yield from (1, 2)

        with tasker.task("S", "block") as run:
            total = sum(step(i) for i in range(5))
        print(total, asyncio.run(later()), list(numbers()), run.run_id is not None)
        """,
    )
    env = {**child_env, "TASKER_ENABLED": "0", "TASKER_DB_PATH": str(db)}
    env.pop("TASKER_DB_URL", None)
    result = run_script(script, env)
    assert (result.returncode, result.stdout.split()) == (0, ["10", "7", "[1,", "2]", "True"])
    assert result.stderr == ""
    assert not db.exists()  # nothing touched the database
