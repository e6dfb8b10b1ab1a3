"""TASKER_RUN_ID changes at every top-level run: written in place, it must reach children
started every way there is, stay right when other code assigns it, and not grow the process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tasker.runtime import environ
from tasker.runtime.environ import Variable

NAME = "TASKER_TEST_IN_PLACE"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="in place on Linux")


@pytest.fixture
def variable() -> Iterator[Variable]:
    os.environ.pop(NAME, None)
    var = Variable(NAME)
    for i in range(environ.ORDINARY_WRITES + 1):  # past the ordinary writes: in place
        var.set(f"warm-up-{i}")
    assert var._fast is not None
    yield var
    os.environ.pop(NAME, None)


def _seen_by_shell() -> str:
    out = subprocess.run(
        ["sh", "-c", f'printf "[%s]" "${NAME}"'], capture_output=True, check=True, timeout=30
    )
    return out.stdout.decode()


def _seen_by_system(tmp_path: os.PathLike[str]) -> str:
    target = os.path.join(tmp_path, "system.txt")
    assert os.system(f'printf "[%s]" "${NAME}" > {target}') == 0
    with open(target) as fh:
        return fh.read()


def _seen_by_posix_spawn(tmp_path: os.PathLike[str]) -> str:
    target = os.path.join(tmp_path, "spawn.txt")
    pid = os.posix_spawnp(
        "sh", ["sh", "-c", f'printf "[%s]" "${NAME}" > {target}'], os.environ.copy()
    )
    os.waitpid(pid, 0)
    # Passing os.environ's mapping, as above, and the C environment (below) must agree.
    pid = os.posix_spawn(
        "/bin/sh", ["sh", "-c", f'printf "[%s]" "${NAME}" >> {target}'], dict(os.environ)
    )
    os.waitpid(pid, 0)
    with open(target) as fh:
        return fh.read()


def _seen_by_fork_exec(tmp_path: os.PathLike[str]) -> str:
    target = os.path.join(tmp_path, "fork.txt")
    pid = os.fork()
    if pid == 0:  # the child execs at once: the C environment it inherited is what it has
        try:
            os.execvp("sh", ["sh", "-c", f'printf "[%s]" "${NAME}" > {target}'])
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with open(target) as fh:
        return fh.read()


def test_every_way_of_starting_a_child_sees_the_value_written_in_place(
    variable: Variable, tmp_path: os.PathLike[str]
) -> None:
    run_id = str(uuid.uuid4())
    variable.set(run_id)
    assert os.environ[NAME] == run_id
    assert _seen_by_shell() == f"[{run_id}]"
    assert _seen_by_system(tmp_path) == f"[{run_id}]"
    assert _seen_by_posix_spawn(tmp_path) == f"[{run_id}][{run_id}]"
    assert _seen_by_fork_exec(tmp_path) == f"[{run_id}]"
    variable.set("")
    assert os.environ[NAME] == ""
    assert _seen_by_shell() == "[]"
    assert _seen_by_fork_exec(tmp_path) == "[]"


def test_a_value_assigned_another_way_meanwhile_is_replaced_by_the_next_write(
    variable: Variable,
) -> None:
    os.environ[NAME] = "set by the program"
    assert _seen_by_shell() == "[set by the program]"
    variable.set("ours again")
    assert (os.environ[NAME], _seen_by_shell()) == ("ours again", "[ours again]")
    os.environ[NAME] = ""  # the empty value, assigned another way, is told apart too
    variable.set("after an empty one")
    assert _seen_by_shell() == "[after an empty one]"
    del os.environ[NAME]
    assert _seen_by_shell() == "[]"
    variable.set("after a removal")
    assert (os.environ[NAME], _seen_by_shell()) == ("after a removal", "[after a removal]")


def test_values_that_do_not_fit_the_buffer_are_assigned_the_ordinary_way(
    variable: Variable,
) -> None:
    long = "x" * (environ.CAPACITY + 20)
    variable.set(long)
    assert (os.environ[NAME], _seen_by_shell()) == (long, f"[{long}]")
    variable.set("short again")
    assert _seen_by_shell() == "[short again]"
    variable.set("caf\udce9")  # a surrogate-escaped byte, as os.environ itself holds one
    assert os.environ[NAME] == "caf\udce9"
    out = subprocess.run(["sh", "-c", f'printf %s "${NAME}"'], capture_output=True, timeout=30)
    assert out.stdout == b"caf\xe9"
    variable.set("été")
    assert _seen_by_shell() == "[été]"
    with pytest.raises(ValueError, match="null byte"):
        variable.set("a\0b")  # os.environ's own error, as before


def _resident_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_a_fresh_value_per_run_does_not_grow_the_process(variable: Variable) -> None:
    # setenv() keeps every distinct string it was given: 100,000 fresh run ids kept ~9 MB.
    ids = [str(uuid.uuid4()) for _ in range(100_000)]
    before = _resident_kb()
    for run_id in ids:
        variable.set(run_id)
        variable.set("")
    grown = _resident_kb() - before
    assert grown < 1024, f"resident memory grew {grown} kB over 100,000 values"
    variable.set(ids[-1])
    assert _seen_by_shell() == f"[{ids[-1]}]"
