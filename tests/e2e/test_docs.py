"""Docs that run: every fenced code block of README.md and docs/*.md, as pasted.

Each block is classified by its language tag:

- ``python``: a complete program, run in a fresh interpreter (cwd a temporary folder, the test
  database's environment) and exiting 0; it must define every name it uses (ruff's F821). A
  block that only includes a file (``--8<-- "examples/x.py"``, as the docs build does) runs
  as that file, under its own name, next to the other files the page includes; a ``test_*.py``
  file runs under pytest.
- ``bash``/``sh``/``shell``: run with ``bash -e`` in a temporary folder, with the interpreter's
  ``tasker`` command first on PATH and the test database's environment; it must exit 0, and no
  shell of it may report a command not found. Three rules, and only these, change what runs
  (see ``shell_script``):
  1. a ``pip install`` line is checked, not run: it must stand on a line of its own and install
     the clone (``.``, or ``".[extra,...]"`` with extras of pyproject.toml), ``-e`` allowed;
  2. ``tasker dashboard ...`` is served on a free port until it answers ``/healthz``, then
     stopped (bounded: 20 s); it fails if it exits first;
  3. ``tasker watch ...`` without ``--count`` runs with ``--count 1``.
- ``yaml``: a file with only ``stages:``/``tasks:`` at the top is a task registration file,
  registered with ``tasker.register_tasks`` into the test database; any other is a
  configuration file, loaded by tasker's configuration loader, every key it sets having to come
  from it (an unknown section or key fails).
- ``sql``: each ``;``-separated statement runs against a test database holding tasker's
  schema and one run (on PostgreSQL with the test schema as ``search_path``).
- ``text``/``console``: output samples, not run.

A block that cannot run here says so on the line just before its fence:
``<!-- not run: the reason -->``; the reason is required, and such blocks are few.

Test ids end in ``PAGE-INDEX``: the page's file name and the block's position among all the
fenced blocks of that page, counted from 0 (after the database backend, for the tests that run
on each: ``sqlite-README.md-3``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

import tasker
from tasker.config import load_config
from tasker.runtime.recorder import RECORDER
from tests.conftest import ROOT, Backend

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest's own dependency there
    import tomli as tomllib

# Blocks known to fail, on pages or in commands owned elsewhere: (page, index) -> why. Each is
# an xfail(strict=True): when a block is fixed, its entry here must go.
KNOWN_FAILING_BLOCKS: dict[tuple[str, int], str] = {}

MAX_NOT_RUN = 3
"""Blocks marked ``<!-- not run: ... -->`` stay rare: prefer making a block runnable."""

PYTHON_TAGS = frozenset({"python", "py"})
SHELL_TAGS = frozenset({"bash", "sh", "shell"})
YAML_TAGS = frozenset({"yaml", "yml"})
SQL_TAGS = frozenset({"sql"})
SHOWN_TAGS = frozenset({"text", "console"})
TIMEOUT = 240  # seconds for one block (the Ray and Dask examples start clusters)

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run\b:?(?P<reason>.*?)-->\s*$")
INCLUDE = re.compile(r'^--8<--\s+"(?P<path>[^"]+)"\s*$')


@dataclasses.dataclass(frozen=True)
class Block:
    page: str  # the page's file name: README.md, quickstart.md ...
    index: int  # among all the fenced blocks of the page, from 0
    line: int  # of the opening fence, from 1
    language: str
    code: str
    not_run: str | None  # the marker's reason ("" when the marker gives none)
    include: str | None  # the file a --8<-- block includes, relative to the root

    @property
    def id(self) -> str:
        return f"{self.page}-{self.index}"

    @property
    def where(self) -> str:
        return f"{self.page} block {self.index} (line {self.line})"


def parse_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of one page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    opening: tuple[int, str, str, str] | None = None  # line index, indent, fence, info
    body: list[str] = []
    for i, line in enumerate(lines):
        if opening is None:
            m = FENCE.match(line)
            if m:
                opening = (i, m["indent"], m["fence"], m["info"].strip())
                body = []
            continue
        start, indent, fence, info = opening
        stripped = line.strip()
        if stripped.startswith(fence) and set(stripped) == {fence[0]}:
            marker = NOT_RUN.match(lines[start - 1]) if start > 0 else None
            code = "\n".join(b[len(indent) :] if b.startswith(indent) else b for b in body)
            include = INCLUDE.match(code.strip())
            blocks.append(
                Block(
                    page=page.name,
                    index=len(blocks),
                    line=start + 1,
                    language=info.split()[0].lower() if info else "",
                    code=code + "\n",
                    not_run=marker["reason"].strip() if marker else None,
                    include=include["path"] if include else None,
                )
            )
            opening = None
            continue
        body.append(line)
    assert opening is None, f"{page.name}: the fence on line {opening[0] + 1} is never closed"
    return blocks


BLOCKS = [block for page in PAGES for block in parse_blocks(page)]


def of_language(tags: frozenset[str]) -> list[Block]:
    return [block for block in BLOCKS if block.language in tags]


def params(blocks: list[Block]) -> list[pytest.ParameterSet]:
    """Blocks as test parameters, with their not-run and xfail marks."""
    result = []
    for block in blocks:
        marks: list[pytest.MarkDecorator] = []
        if block.not_run is not None:
            marks.append(pytest.mark.skip(reason=f"{block.where}: not run: {block.not_run}"))
        elif (block.page, block.index) in KNOWN_FAILING_BLOCKS:
            reason = KNOWN_FAILING_BLOCKS[(block.page, block.index)]
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        result.append(pytest.param(block, id=block.id, marks=marks))
    return result


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process group; on a time-out the whole group is killed."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def with_tasker_on_path(env: dict[str, str]) -> dict[str, str]:
    """The environment with this interpreter's scripts folder (where the ``tasker`` console
    script is installed) first on PATH."""
    scripts = sysconfig.get_path("scripts")
    assert (Path(scripts) / "tasker").is_file(), f"no tasker command in {scripts}"
    return {**env, "PATH": os.pathsep.join(filter(None, [scripts, env.get("PATH")]))}


# ---------------------------------------------------------------------------- every page


def test_every_block_is_classified() -> None:
    known = PYTHON_TAGS | SHELL_TAGS | YAML_TAGS | SQL_TAGS | SHOWN_TAGS
    unknown = [f"{b.where}: {b.language or 'no tag'}" for b in BLOCKS if b.language not in known]
    assert not unknown, "blocks with a language this test does not know:\n" + "\n".join(unknown)
    includes = [b for b in BLOCKS if "--8<--" in b.code and b.include is None]
    assert not includes, f"an include must be the whole block: {[b.where for b in includes]}"
    assert not [b for b in BLOCKS if b.include and b.language not in PYTHON_TAGS]


def test_known_failing_blocks_exist() -> None:
    blocks = {(b.page, b.index): b for b in BLOCKS}
    stale = [key for key in KNOWN_FAILING_BLOCKS if key not in blocks]
    assert not stale, f"KNOWN_FAILING_BLOCKS names blocks that do not exist: {stale}"
    marked = [key for key in KNOWN_FAILING_BLOCKS if blocks[key].not_run is not None]
    assert not marked, f"KNOWN_FAILING_BLOCKS names blocks marked not run: {marked}"


def test_not_run_blocks_say_why_and_are_few() -> None:
    # A misspelt or misplaced marker would leave its block to run unannounced: every comment
    # that looks like one must be well formed and stand right before a fence.
    marked = [b for b in BLOCKS if b.not_run is not None]
    assert all(b.not_run for b in marked), [b.where for b in marked if not b.not_run]
    assert not [b for b in marked if b.language in SHOWN_TAGS], "text blocks are never run"
    assert len(marked) <= MAX_NOT_RUN, [f"{b.where}: {b.not_run}" for b in marked]
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, start=1):
            if "not run" in line and line.lstrip().startswith("<!--"):
                assert NOT_RUN.match(line), f"{page.name} line {n}: malformed marker {line!r}"
                following = lines[n] if n < len(lines) else ""
                assert FENCE.match(following), f"{page.name} line {n}: no fence right after"


def test_the_index_links_every_page_and_the_nav_lists_them() -> None:
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([\w.-]+\.md)(?:#[^)]*)?\)", index))
    unlinked = sorted(pages - {"index.md"} - linked)
    assert not unlinked, f"pages docs/index.md does not link: {unlinked}"
    missing = sorted(linked - pages)
    assert not missing, f"docs/index.md links pages that do not exist: {missing}"

    def nav_pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [page for item in node for page in nav_pages(item)]
        if isinstance(node, dict):
            return [page for value in node.values() for page in nav_pages(value)]
        return []

    mkdocs = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = nav_pages(mkdocs["nav"])
    assert len(nav) == len(set(nav)), "a page listed twice in the mkdocs.yml nav"
    assert set(nav) == pages, f"nav only: {set(nav) - pages}, docs/ only: {pages - set(nav)}"


# ---------------------------------------------------------------------------- python


def python_files(block: Block, workdir: Path) -> Path:
    """Write the block (and, for an include, the page's other included files) into workdir;
    returns the file to run."""
    if block.include is None:
        script = workdir / f"{Path(block.page).stem}_{block.index}.py"
        script.write_text(block.code, encoding="utf-8")
        return script
    for other in BLOCKS:
        if other.page == block.page and other.include is not None:
            source = ROOT / other.include
            assert source.is_file(), f"{other.where} includes {other.include}, which is missing"
            (workdir / source.name).write_text(source.read_text(encoding="utf-8"), "utf-8")
    return workdir / Path(block.include).name


RUFF_F821 = [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F821"]
RUFF_F821 += ["--output-format", "concise"]


@pytest.mark.parametrize("block", params(of_language(PYTHON_TAGS)))
def test_python_block(block: Block, tmp_path: Path, child_env: dict[str, str]) -> None:
    workdir = tmp_path / "block"
    workdir.mkdir()
    script = python_files(block, workdir)
    code = script.read_text(encoding="utf-8")
    lint = subprocess.run(
        [*RUFF_F821, "--stdin-filename", script.name, "-"],
        input=code,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if lint.returncode != 0:
        pytest.fail(f"{block.where} uses names it never defines:\n{lint.stdout}{lint.stderr}")
    if script.name.startswith("test_"):
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name]
    else:
        cmd = [sys.executable, script.name]
    result = run(cmd, workdir, with_tasker_on_path(child_env))
    if result.returncode != 0:
        pytest.fail(f"{block.where} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")


# ---------------------------------------------------------------------------- shell

SHELL_PRELUDE = r"""
_docs_serve_briefly() {  # rule 2: serve until /healthz answers, then stop; bounded
    "$@" &
    local pid=$! deadline=$((SECONDS + 20))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || return $?
            echo "$* exited before answering" >&2; return 1
        fi
        if python -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=1)' \
            "http://127.0.0.1:$_DOCS_PORT/healthz" 2>/dev/null; then
            kill -INT "$pid"; wait "$pid" || true; return 0
        fi
        sleep 0.2
    done
    kill -KILL "$pid"; echo "$* did not answer in 20 s" >&2; return 1
}
"""


def pyproject_extras() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return set(tomllib.load(f)["project"]["optional-dependencies"])


def check_install_line(words: list[str], where: str) -> None:
    """Rule 1: ``pip install [-e] TARGET``, TARGET the clone with extras that exist."""
    args = words[2:]
    if args[:1] == ["-e"]:
        args = args[1:]
    assert words[:2] == ["pip", "install"] and len(args) == 1, (
        f"{where}: a pip install line installs the clone, alone on its line: {' '.join(words)}"
    )
    m = re.fullmatch(r"\.(?:\[(?P<extras>[\w,-]+)\])?", args[0])
    assert m, f"{where}: {' '.join(words)} does not install from a clone (. or '.[extra]')"
    extras = set(filter(None, (m["extras"] or "").split(",")))
    unknown = sorted(extras - pyproject_extras())
    assert not unknown, f"{where}: extras not in pyproject.toml: {unknown}"


def shell_script(block: Block) -> str:
    """The block as the test runs it: the three rules of the module docstring applied."""
    out = []
    for line in block.code.splitlines():
        stripped = line.strip()
        if re.match(r"pip\s+install\b", stripped):
            check_install_line(shlex.split(stripped, comments=True), block.where)
            line = f": checked, not run: {shlex.quote(stripped)}"
        elif re.match(r"tasker\s+dashboard\b", stripped):
            rest = stripped.split("dashboard", 1)[1]
            line = f'_docs_serve_briefly tasker dashboard --port "$_DOCS_PORT"{rest}'
        elif re.match(r"tasker\s+watch\b", stripped) and "--count" not in stripped:
            line = "tasker watch --count 1" + stripped.split("watch", 1)[1]
        out.append(line)
    return SHELL_PRELUDE + "\n".join(out) + "\n"


COMMAND_NOT_FOUND = re.compile(r": (?:line )?\d+: ([^:\n]+): (?:command )?not found$", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("block", params(of_language(SHELL_TAGS)))
def test_shell_block(block: Block, tmp_path: Path, child_env: dict[str, str]) -> None:
    workdir = tmp_path / "block"
    workdir.mkdir()
    script = workdir / f"{Path(block.page).stem}_{block.index}.sh"
    script.write_text(shell_script(block), encoding="utf-8")
    env = {**with_tasker_on_path(child_env), "_DOCS_PORT": str(free_port())}
    result = run(["bash", "-e", script.name], workdir, env)
    if result.returncode != 0:
        pytest.fail(f"{block.where} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    # A command missing in a child shell (sh -c '...') need not change any exit status.
    missing = COMMAND_NOT_FOUND.findall(result.stderr)
    assert not missing, f"{block.where} calls commands that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_install_lines_in_the_text_install_the_clone(page: Path) -> None:
    """Rule 1 for the prose: an inline `pip install ...` installs the clone, too."""
    prose = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", page.read_text("utf-8"), flags=re.M | re.S)
    for line in re.findall(r"`(pip install [^`]+)`", prose):
        check_install_line(shlex.split(line), page.name)
    assert "pipeline-tasker[" not in page.read_text("utf-8"), (
        f"{page.name}: pipeline-tasker[...] installs from the package index, where it is not"
    )


# ---------------------------------------------------------------------------- yaml


def is_registration(block: Block) -> bool:
    data = yaml.safe_load(block.code)
    return isinstance(data, dict) and bool(data) and set(data) <= {"stages", "tasks"}


YAML_BLOCKS = of_language(YAML_TAGS)


@pytest.mark.parametrize("block", params([b for b in YAML_BLOCKS if is_registration(b)]))
def test_registration_yaml_block(block: Block, tmp_path: Path, db: Backend) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text(block.code, encoding="utf-8")
    ids = tasker.register_tasks(path)
    assert ids, f"{block.where} registers no task"
    assert len(tasker.get_tasks()) == len(ids)


@pytest.mark.parametrize("block", params([b for b in YAML_BLOCKS if not is_registration(b)]))
def test_configuration_yaml_block(block: Block, tmp_path: Path) -> None:
    path = tmp_path / ".tasker.yml"
    path.write_text(block.code, encoding="utf-8")
    environ = {"USER": "pipeline"}  # no TASKER_* variable: every value is the file's
    config = load_config(config_file=path, environ=environ, cwd=tmp_path)
    data = yaml.safe_load(block.code)
    for section, keys in data.items():
        for key in keys:
            assert config.sources.get(key, "").startswith(f"file {path}"), (
                f"{block.where}: {section}.{key} did not come from the file: "
                f"{config.sources.get(key)}"
            )


# ---------------------------------------------------------------------------- sql


@pytest.mark.parametrize("block", params(of_language(SQL_TAGS)))
def test_sql_block(block: Block, db: Backend) -> None:
    with tasker.task("STATIC", "Build Database"), tasker.subtask("Loading data", items_total=2):
        pass
    tasker.flush()
    statements = [s.strip() for s in block.code.split(";") if s.strip()]
    assert statements, f"{block.where} holds no statement"
    with RECORDER.raw_store.engine.connect() as conn:
        if db.name == "postgresql":
            conn.execute(text(f"SET search_path TO {db.settings['schema']}"))
        for statement in statements:
            conn.execute(text(statement)).fetchall()
