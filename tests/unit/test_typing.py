"""The decorators keep static types: mypy sees a decorated function's own signature."""

from __future__ import annotations

from pathlib import Path

from mypy import api

SNIPPET = """
import tasker

@tasker.task
def bare(x: int, *, y: str = "a") -> float:
    return 1.0

@tasker.task(stage="S", name="n")
def configured(x: int) -> list[str]:
    return []

@tasker.subtask("step")
async def step(path: str) -> bytes:
    return b""

reveal_type(bare)
reveal_type(configured)
reveal_type(step)
reveal_type(tasker.track([1, 2, 3]))
bare("not an int")
"""


def test_mypy_sees_the_original_signatures(tmp_path: Path) -> None:
    source = tmp_path / "snippet.py"
    source.write_text(SNIPPET, encoding="utf-8")
    out, _err, status = api.run(
        [str(source), "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache")]
    )
    lines = [line for line in out.splitlines() if "snippet.py" in line]
    revealed = [line.split("Revealed type is ", 1)[1] for line in lines if "Revealed type" in line]
    assert revealed == [
        '"def (x: int, *, y: str =) -> float"',
        '"def (x: int) -> list[str]"',
        '"def (path: str) -> typing.Coroutine[Any, Any, bytes]"',
        '"typing.Iterator[int]"',
    ]
    errors = [line for line in lines if ": error:" in line]
    assert len(errors) == 1 and 'incompatible type "str"; expected "int"' in errors[0]
    assert status == 1
