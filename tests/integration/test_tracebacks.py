"""The traceback a run records starts at the user's own code: tasker's wrapper frames are left
out of the recorded text (never out of the exception the user's code gets), on every backend,
in this process and in worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from pathlib import Path

import pytest

import tasker
from tasker.tracebacks import format_exception, is_tasker_file
from tests.conftest import Backend
from tests.helpers import run_script, write_script

HERE = __file__
PACKAGE = os.path.dirname(tasker.__file__)


def _detail(task_name: str) -> str:
    (run,) = [r for r in tasker.get_task_history(limit=100) if r.task_name == task_name]
    assert run.status == "FAILED"
    assert run.error_detail is not None
    return run.error_detail


def _frames(detail: str) -> list[str]:
    return [line for line in detail.splitlines() if line.lstrip(" |").startswith('File "')]


def _no_tasker_frames(detail: str) -> None:
    assert (
        "tasker/instrument/decorators.py" not in detail
        and "tasker/instrument/carry.py" not in detail
    )
    assert f'File "{PACKAGE}{os.sep}' not in detail


def _raise_line(exc: BaseException) -> int:
    tb = exc.__traceback__
    assert tb is not None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_lineno


# ---------------------------------------------------------------------------- in-process


@tasker.task(stage="TB", name="sync")
def fail_sync(error: ValueError) -> None:
    raise error


def test_a_decorated_function_records_its_own_frames_first(db: Backend) -> None:
    error = ValueError("sync broke")
    with pytest.raises(ValueError, match="sync broke") as info:
        fail_sync(error)
    # What reaches the caller is the very exception, its traceback untouched (tasker's
    # wrapper frame still in it).
    assert info.value is error
    assert any(is_tasker_file(f.filename) for f in traceback.extract_tb(error.__traceback__))
    detail = _detail("sync")
    assert detail == (
        "Traceback (most recent call last):\n"
        f'  File "{HERE}", line {_raise_line(error)}, in fail_sync\n'
        "    raise error\n"
        "ValueError: sync broke\n"
    )


@tasker.task(stage="TB", name="async")
async def fail_async() -> None:
    await asyncio.sleep(0)
    raise RuntimeError("async broke")


def test_an_async_function_records_its_own_frames_first(db: Backend) -> None:
    with pytest.raises(RuntimeError, match="async broke") as info:
        asyncio.run(fail_async())
    detail = _detail("async")
    assert detail == (
        "Traceback (most recent call last):\n"
        f'  File "{HERE}", line {_raise_line(info.value)}, in fail_async\n'
        '    raise RuntimeError("async broke")\n'
        "RuntimeError: async broke\n"
    )


def _rows() -> object:
    yield 1
    raise OSError("disk gone")


def _read_in_a_block() -> None:
    with tasker.task("TB", "block"):
        for _ in tasker.track(_rows(), name="Reading"):  # type: ignore[call-overload]
            pass


def test_a_with_block_and_a_track_loop_leave_out_the_frame_between(db: Backend) -> None:
    with pytest.raises(OSError, match="disk gone") as info:
        _read_in_a_block()
    # track()'s own frame lies between the loop and the failing generator in the real
    # traceback; the recorded one goes straight from the one to the other.
    assert any(is_tasker_file(f.filename) for f in traceback.extract_tb(info.value.__traceback__))
    detail = _detail("block")
    lines = detail.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    frames = _frames(detail)
    assert [f.rsplit(", in ", 1)[1] for f in frames] == ["_read_in_a_block", "_rows"]
    assert all(f.startswith(f'  File "{HERE}", line ') for f in frames)
    assert lines[-1] == "OSError: disk gone"
    _no_tasker_frames(detail)


def _parse(text: str) -> dict[str, str]:
    return dict([text.split("=")])  # type: ignore[list-item]


@tasker.task(stage="TB", name="chained")
def fail_chained() -> None:
    try:
        _parse("no equals sign")
    except ValueError as exc:
        raise LookupError("no setting found") from exc


@tasker.task(stage="TB", name="during handling")
def fail_while_handling() -> None:
    try:
        {}["id"]
    except KeyError:
        _parse("a=b=c")


def test_chained_exceptions_keep_every_part_without_tasker_frames(db: Backend) -> None:
    with pytest.raises(LookupError, match="no setting found"):
        fail_chained()
    with pytest.raises(ValueError, match="has length 3"):
        fail_while_handling()
    cause, effect = _detail("chained").split(
        "\nThe above exception was the direct cause of the following exception:\n\n"
    )
    assert cause.startswith("Traceback (most recent call last):\n")
    assert [f.rsplit(", in ", 1)[1] for f in _frames(cause)] == ["fail_chained", "_parse"]
    assert cause.rstrip("\n").endswith(
        "ValueError: dictionary update sequence element #0 has length 1; 2 is required"
    )
    assert effect.startswith("Traceback (most recent call last):\n")
    assert [f.rsplit(", in ", 1)[1] for f in _frames(effect)] == ["fail_chained"]
    assert effect.endswith("\nLookupError: no setting found\n")
    _no_tasker_frames(_detail("chained"))

    context, error = _detail("during handling").split(
        "\nDuring handling of the above exception, another exception occurred:\n\n"
    )
    assert [f.rsplit(", in ", 1)[1] for f in _frames(context)] == ["fail_while_handling"]
    assert context.endswith("\nKeyError: 'id'\n")
    assert error.startswith("Traceback (most recent call last):\n")
    assert [f.rsplit(", in ", 1)[1] for f in _frames(error)] == ["fail_while_handling", "_parse"]
    assert error.endswith(
        "\nValueError: dictionary update sequence element #0 has length 3; 2 is required\n"
    )
    _no_tasker_frames(_detail("during handling"))


def _group_member(n: int) -> None:
    raise ValueError(f"part {n} broke")


@tasker.task(stage="TB", name="group")
def fail_group() -> None:
    errors: list[Exception] = []
    for n in (1, 2):
        try:
            _group_member(n)
        except ValueError as exc:
            errors.append(exc)
    raise ExceptionGroup("parts broke", errors)  # noqa: F821 (3.11+)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are Python 3.11+")
def test_an_exception_group_keeps_its_members(db: Backend) -> None:
    with pytest.raises(ExceptionGroup):  # noqa: F821
        fail_group()
    detail = _detail("group")
    lines = detail.splitlines()
    assert lines[0] == "  + Exception Group Traceback (most recent call last):"
    assert lines[1].startswith(f'  |   File "{HERE}", line ') and lines[1].endswith("fail_group")
    assert "  | ExceptionGroup: parts broke (2 sub-exceptions)" in lines
    for n in (1, 2):
        assert f"    | ValueError: part {n} broke" in lines
    assert [f.rsplit(", in ", 1)[1] for f in _frames(detail)] == [
        "fail_group",
        "fail_group",
        "_group_member",
        "fail_group",
        "_group_member",
    ]
    _no_tasker_frames(detail)


def test_task_fail_with_an_exception_leaves_out_the_frames_between(db: Backend) -> None:
    """The explicit API: an exception caught around a decorated call (tasker's wrapper
    frame in the middle of its traceback) is recorded without that frame."""
    outer = tasker.task_start("TB", "explicit")
    error = ValueError("inner broke")
    try:
        fail_sync(error)
    except ValueError as exc:
        tasker.task_fail(exc, run_id=outer)
    detail = _detail("explicit")
    frames = _frames(detail)
    assert [f.rsplit(", in ", 1)[1] for f in frames] == [
        "test_task_fail_with_an_exception_leaves_out_the_frames_between",
        "fail_sync",
    ]
    assert detail.endswith("\nValueError: inner broke\n")
    _no_tasker_frames(detail)


# ---------------------------------------------------------------------------- the helper


def test_a_traceback_without_tasker_frames_is_formatted_as_python_does() -> None:
    with pytest.raises(LookupError) as info:
        fail_chained.__wrapped__()
    assert format_exception(info.value) == "".join(traceback.format_exception(info.value))


def test_an_error_raised_inside_tasker_alone_keeps_its_whole_traceback() -> None:
    with pytest.raises(tasker.ValidationError) as info:
        tasker.subtask("")
    tb = info.value.__traceback__
    assert tb is not None and not is_tasker_file(tb.tb_frame.f_code.co_filename)
    inside = info.value.with_traceback(tb.tb_next)  # only tasker's frames from here on
    assert inside.__traceback__ is not None
    assert all(is_tasker_file(f.filename) for f in traceback.extract_tb(inside.__traceback__))
    detail = format_exception(inside)
    assert detail == "".join(traceback.format_exception(inside))
    assert f'File "{PACKAGE}{os.sep}instrument{os.sep}decorators.py"' in detail


def test_what_counts_as_a_tasker_file() -> None:
    assert is_tasker_file(tasker.__file__)
    assert is_tasker_file(os.path.join(PACKAGE, "dashboard", "app.py"))
    assert not is_tasker_file(HERE)
    assert not is_tasker_file(PACKAGE + "_elsewhere" + os.sep + "job.py")  # a sibling folder
    assert not is_tasker_file("<string>") and not is_tasker_file("")


# ---------------------------------------------------------------------------- workers

WORKER = """
import json, multiprocessing as mp, sys
from concurrent.futures import ProcessPoolExecutor

import tasker


@tasker.task(stage="TB", name="in a worker")
def score(item):
    if item == 7:
        raise ValueError(f"bad item {item}")
    return item


if __name__ == "__main__":
    with ProcessPoolExecutor(2, mp_context=mp.get_context(sys.argv[1])) as executor:
        with tasker.task("TB", "dispatch") as run:
            future = executor.submit(score, 7)
            try:
                future.result(timeout=60)
            except ValueError as exc:
                print(f"worker failed: {exc}", file=sys.stderr)
            else:
                raise AssertionError("the worker did not fail")
    print(json.dumps(run.run_id))
"""


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_function_run_in_a_worker_process_records_its_own_frames_first(
    db: Backend, child_env: dict[str, str], tmp_path: Path, method: str
) -> None:
    script = write_script(tmp_path, WORKER)
    result = run_script(script, child_env, method)
    assert result.returncode == 0, result.stderr
    assert "worker failed: bad item 7" in result.stderr
    dispatch = json.loads(result.stdout)
    (run,) = [r for r in tasker.get_task_history() if r.task_name == "in a worker"]
    assert run.parent_run_id == dispatch and run.process_id != tasker.get_run(dispatch).process_id
    line = WORKER.splitlines().index('        raise ValueError(f"bad item {item}")') + 1
    assert _detail("in a worker") == (
        "Traceback (most recent call last):\n"
        f'  File "{script}", line {line}, in score\n'
        '    raise ValueError(f"bad item {item}")\n'
        "ValueError: bad item 7\n"
    )


UNCAUGHT = """
import tasker


def fail():
    raise RuntimeError("left the script")


tasker.task_start("TB", "uncaught")
tasker.bind(fail)()
"""


def test_an_exception_that_ends_the_script_leaves_out_tasker_frames(
    db: Backend, child_env: dict[str, str], tmp_path: Path
) -> None:
    """The run a script started and never ended is ended at exit with the exception that
    ended the script: through a bound call, tasker/instrument/carry.py lies between the two
    frames."""
    script = write_script(tmp_path, UNCAUGHT)
    result = run_script(script, child_env)
    assert result.returncode == 1
    assert "tasker/instrument/carry.py" in result.stderr  # Python's own report keeps every frame
    detail = _detail("uncaught")
    frames = _frames(detail)
    assert [f.rsplit(", in ", 1)[1] for f in frames] == ["<module>", "fail"]
    assert all(f.startswith(f'  File "{script}", line ') for f in frames)
    assert detail.endswith("\nRuntimeError: left the script\n")
    _no_tasker_frames(detail)
