"""How long one ``tasker`` command takes, as a shell loop would call it.

Fills a database with 10,000 runs, then times (median of ``--repeat`` calls, each a fresh
process) ``tasker update`` and ``tasker status`` next to ``python -c pass`` and
``python -c "import sqlalchemy"``, and prints each against the SQLAlchemy import. The calls
take turns (one of each, then again), so that other work on the machine weighs on all of
them alike. tasker's bytecode is compiled first, as an installed package's is: otherwise,
with PYTHONDONTWRITEBYTECODE set and an editable install, every call would compile tasker's
modules from source again. The database (and a temporary SQLite file's folder) is removed
at the end.

    python benchmarks/bench_cli.py
    python benchmarks/bench_cli.py --url postgresql://user@host/db
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_database_options, database_env, drop, fill, fresh_store

import tasker


def live_run() -> str:
    """A run to update, owned by this process (alive while the benchmark runs)."""
    run_id = tasker.task_start("STAGE_00", "task 0000", on_behalf_of=os.getpid())
    tasker.flush()
    return run_id


def timed(cases: dict[str, list[str]], env: dict[str, str], repeat: int) -> dict[str, float]:
    """The median seconds of each case, the cases called in turn ``repeat`` times."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, argv in cases.items():
            began = time.perf_counter()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_database_options(parser)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    compileall.compile_dir(Path(tasker.__file__).parent, quiet=1)
    store = fresh_store(args)
    try:
        fill(100, args.runs, 0)
        run_id = live_run()
        env = database_env(args)
        py = sys.executable
        cases = {
            "python -c pass": [py, "-c", "pass"],
            "python -c 'import sqlalchemy'": [py, "-c", "import sqlalchemy"],
            "tasker update": [py, "-m", "tasker", "update", run_id, "--message", "x"],
            "tasker status": [py, "-m", "tasker", "status"],
        }
        results = timed(cases, env, args.repeat)
        base = results["python -c 'import sqlalchemy'"]
        print(
            f"backend: {store.dialect}; {args.runs:,} runs; median of {args.repeat} calls each,"
            " taking turns"
        )
        for name, seconds in results.items():
            print(f"    {name:<32} {seconds * 1000:7.1f} ms   {seconds / base:5.2f}x import")
    finally:
        drop(store)


if __name__ == "__main__":
    main()
