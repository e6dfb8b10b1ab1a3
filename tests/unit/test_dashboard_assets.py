"""The dashboard's templates and static files: every one ships with the package, the
vendored front-end is versioned and licensed, and no template turns escaping off."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers import need

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest's own dependency there
    import tomli as tomllib

PACKAGE = ROOT / "tasker"
DASHBOARD = PACKAGE / "dashboard"
XSS = "<img src=x onerror=alert(1)>"


def _assets() -> list[Path]:
    return sorted(
        p
        for folder in ("templates", "static")
        for p in (DASHBOARD / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def test_every_template_and_static_file_is_package_data() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["tasker"]
    assets = _assets()
    assert any(p.suffix == ".html" for p in assets) and any("vendor" in p.parts for p in assets)
    # setuptools matches each pattern against the path inside the package, "*" within one
    # folder only.
    missing = [
        str(p.relative_to(PACKAGE))
        for p in assets
        if not any(
            fnmatch.fnmatch(p.relative_to(PACKAGE).as_posix(), pattern)
            and pattern.count("/") == p.relative_to(PACKAGE).as_posix().count("/")
            for pattern in patterns
        )
    ]
    assert missing == []


def test_the_vendored_front_end_is_versioned_and_licensed() -> None:
    need("jinja2")
    from tasker.dashboard.templating import VENDOR

    vendor = DASHBOARD / "static" / "vendor"
    for name, path in VENDOR.items():
        script = DASHBOARD / "static" / path
        assert script.is_file(), name
        found = re.fullmatch(r"([a-z-]+)-(\d+\.\d+\.\d+)\.min\.js", script.name)
        assert found is not None, script.name  # the version is in the file name
        # idiomorph-ext: idiomorph with its htmx extension, under idiomorph's licence.
        project = found.group(1).removesuffix("-ext")
        licence = vendor / f"{project}-{found.group(2)}.LICENSE"
        assert licence.is_file() and "Permission" in licence.read_text(encoding="utf-8"), name
        # Unchanged from the project's distribution: the digest its README records.
        readme = (vendor / "README.md").read_text(encoding="utf-8")
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{script.name}`"))
        assert f"{project} {found.group(2)}" in row
        assert hashlib.sha256(script.read_bytes()).hexdigest() in row, script.name
    # Nothing from elsewhere: no template names an address off the dashboard.
    for template in (DASHBOARD / "templates").glob("*.html"):
        assert not re.search(r"(src|href)=\"(https?:)?//", template.read_text(encoding="utf-8"))


def test_no_template_turns_escaping_off() -> None:
    need("jinja2")
    from tasker.dashboard import pages
    from tasker.dashboard.templating import ENV

    assert ENV.autoescape is True
    for template in (DASHBOARD / "templates").glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", "") and "autoescape" not in text, template.name
    page = pages.error_page(f"no run id starts with {XSS!r}")
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
