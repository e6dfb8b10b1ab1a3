"""The seed's FCC pipeline, written the decorator way.

Every stage function is a tracked task; loops report their progress with ``track()``; a
failing step is recorded FAILED with its traceback and the exception still reaches the
caller. Run it against the default SQLite database (or set TASKER_DB_URL):

    python examples/fcc_pipeline.py
    tasker status
"""

from __future__ import annotations

import time

import tasker

STATES = [f"state-{i:02d}" for i in range(1, 57)]


@tasker.task(stage="PREREQ", name="Install System Dependencies", task_type="sh")
def install_dependencies() -> None:
    with tasker.subtask("apt-get install", items_total=3) as st:
        for _package in ("gdal", "proj", "postgis"):
            time.sleep(0.001)
            st.advance()


@tasker.task(stage="STATIC", name="Process FCC Data", total_subtasks=3)
def process_fcc_data(states: list[str]) -> int:
    with tasker.subtask("Loading FCC data"):
        time.sleep(0.001)
    rows = 0
    for _state in tasker.track(states, name="Processing broadband data"):
        time.sleep(0.001)
        rows += 1000
    with tasker.subtask("Writing outputs"):
        time.sleep(0.001)
    return rows


@tasker.task(stage="STATIC", name="Build Census Data")
def build_census_data() -> None:
    for block in tasker.track(range(10), name="Downloading tables"):
        if block == 7:
            tasker.skip("census tables unchanged since the last run")


@tasker.task(stage="DAILY", name="Refresh Coverage")
def refresh_coverage(fail: bool) -> None:
    for i in tasker.track(range(5), name="Fetching updates"):
        if fail and i == 3:
            raise ConnectionError("coverage.example: connection reset by peer")


def main(fail: bool = True) -> int:
    install_dependencies()
    rows = process_fcc_data(STATES)
    build_census_data()
    try:
        refresh_coverage(fail)
    except ConnectionError as exc:
        print(f"refresh failed: {exc}")
    tasker.flush()
    return rows


if __name__ == "__main__":
    print(main())
