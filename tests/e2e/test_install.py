"""The README's first command, as a new user runs it: ``pip install .`` from the checkout into a
fresh virtual environment, then ``tasker demo`` in an empty folder — every subpackage, the
console script and the package data must come with the install, not from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_pip_install_then_tasker_demo_from_a_fresh_environment(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # The environment sees the interpreter's packages (SQLAlchemy, PyYAML, wrapt are not
    # downloaded again); tasker itself is built and installed from the checkout's files.
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        check=True,
        timeout=120,
    )
    bin_dir = venv / "bin"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TASKER_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        {
            "HOME": str(tmp_path / "home"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
    )
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    work = tmp_path / "work"
    work.mkdir()
    demo = subprocess.run(
        [str(bin_dir / "tasker"), "demo", "--delay", "0"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    # The installed copy ran, not the checkout.
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import tasker, sys; print(tasker.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert str(venv) in where.stdout and str(ROOT) not in where.stdout
    # The dashboard's templates and vendored front-end came with it: every file of the
    # checkout's templates/ and static/ folders.
    installed = Path(where.stdout.strip()).parent / "dashboard"
    dashboard = ROOT / "tasker" / "dashboard"
    assets = [
        p.relative_to(dashboard)
        for folder in ("templates", "static")
        for p in (dashboard / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert any(p.parts[:2] == ("static", "vendor") for p in assets)
    assert [str(p) for p in assets if not (installed / p).is_file()] == []
    lines = demo.stdout.splitlines()
    assert lines[0].split()[:4] == ["STAGE", "TASK", "STATUS", "PROGRESS"]
    assert any(
        ln.startswith("STATIC") and "Build Census Data" in ln and "FAILED" in ln for ln in lines
    )
    assert "DAILY: STARTED (2/3 tasks done, 1 not started)" in demo.stdout
    assert (tmp_path / "data" / "tasker" / "tasker.db").is_file()  # the default database
