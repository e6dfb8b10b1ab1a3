"""The import graph of ``tasker/`` has layers and no circles.

foundation ← store ← runtime ← public API (instrument, explicit, queries) ← faces (the package
itself, the command line, the dashboard, integrations, tasker.testing). A module may import
its own layer and the layers below it, never one above, and no chain of imports — at module
level or inside a function — leads back to where it started.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tasker"

# Layers from the bottom; a module belongs to the first entry its name starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "tasker.config",
            "tasker.models",
            "tasker.errors",
            "tasker.validate",
            "tasker.formatting",
            "tasker.ages",
            "tasker.tracebacks",
            "tasker.lazy_names",
        ),
    ),
    ("store", ("tasker.store",)),
    ("runtime", ("tasker.runtime",)),
    (
        "public API",
        (
            "tasker.instrument",
            "tasker.explicit",
            "tasker.queries",
            "tasker.registration",
            "tasker.run_progress",
            "tasker.live_figures",
            "tasker.pipelines",
        ),
    ),
    (
        "faces",
        ("tasker.cli", "tasker.dashboard", "tasker.integrations", "tasker.testing", "tasker"),
    ),
]


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The tasker modules ``path`` imports anywhere in it (functions included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "tasker")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "tasker":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {name for name in out if name in known}


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    known = modules(package)
    return {name: imports(path, known) - {name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_goes_up_a_layer() -> None:
    edges = graph()
    upward = [
        f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"
        for src, targets in sorted(edges.items())
        for dst in sorted(targets)
        if layer_of(dst) > layer_of(src)
    ]
    assert upward == []


def test_there_are_no_import_circles() -> None:
    assert cycles(graph()) == []


def test_the_checks_see_a_circle_and_an_upward_import(tmp_path: Path) -> None:
    # The checks themselves: a package with a circle and an upward import is caught.
    package = tmp_path / "tasker"
    (package / "runtime").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "runtime" / "__init__.py").write_text("")
    (package / "config.py").write_text("def f():\n    from tasker.runtime import a\n")
    (package / "runtime" / "a.py").write_text("from tasker.runtime import b\n")
    (package / "runtime" / "b.py").write_text("import tasker.runtime.a\n")
    edges = graph(package)
    assert cycles(edges) == [["tasker.runtime.a", "tasker.runtime.b"]]
    assert edges["tasker.config"] == {"tasker.runtime.a"}
    assert layer_of("tasker.runtime.a") > layer_of("tasker.config")  # an upward import


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_is_at_most_about_500_lines(name: str) -> None:
    lines = modules()[name].read_text(encoding="utf-8").count("\n")
    assert lines <= 550, f"{name} has {lines} lines: split it by what it does"


def test_the_pre_commit_hooks_run_the_checks_of_ci() -> None:
    import yaml

    root = PACKAGE.parent
    config = yaml.safe_load((root / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    entries = [hook["entry"] for repo in config["repos"] for hook in repo["hooks"]]
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    for command in ("ruff check", "ruff format --check", "mypy"):
        assert command in entries and command in ci, command
    (layers,) = [e for e in entries if "test_layers.py" in e]
    assert (root / layers.split()[-1]).resolve() == Path(__file__).resolve()


def _type_checking_names(package: str) -> dict[str, str]:
    """The names a package's ``if TYPE_CHECKING:`` block imports, with their modules: what a
    type checker sees as the package's public names (loaded lazily at run time)."""
    init = PACKAGE.parent.joinpath(*package.split("."), "__init__.py")
    names: dict[str, str] = {}
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for item in node.body:
                assert isinstance(item, ast.ImportFrom) and item.module, ast.unparse(item)
                names.update((alias.name, item.module) for alias in item.names)
    return names


@pytest.mark.parametrize("package", ["tasker", "tasker.explicit"])
def test_every_public_name_is_its_defining_modules_object(package: str) -> None:
    # The names load on first use (PEP 562): each one, in a fresh interpreter, is the very
    # object its module defines, dir() lists every name of __all__, an unknown name is an
    # AttributeError, and `import *` gives them all.
    names = _type_checking_names(package)
    code = f"""
import importlib, json, sys
package = importlib.import_module({package!r})
names = {names!r}
wrong = [n for n, m in names.items() if getattr(package, n) is not getattr(
    importlib.import_module(m), n)]
try:
    package.no_such_name
    unknown = "found"
except AttributeError as exc:
    unknown = str(exc)
star = {{}}
exec("from {package} import *", star)
print(json.dumps({{
    "wrong": wrong,
    "all": sorted(package.__all__),
    "undir": sorted(set(package.__all__) - set(dir(package))),
    "unknown": unknown,
    "star": sorted(set(package.__all__) - set(star)),
}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(out.stdout)
    assert found["wrong"] == []
    assert found["undir"] == [] and found["star"] == []
    assert found["unknown"] == f"module {package!r} has no attribute 'no_such_name'"
    # Every public name is one a type checker sees too (flush and the version are defined
    # in the package itself).
    assert set(found["all"]) - set(names) <= {"flush", "__version__"}
