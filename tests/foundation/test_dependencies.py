"""Declared dependencies, the README's table of them and the code's imports say the same thing.

A dependency nobody imports is dead weight (and a README line the code contradicts); an import
nobody declared works only by accident of another package's requirements.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = ("live_server", "formats", "ingest", "chat", "captions", "recorder", "vod", "web", "audience", "lti", "bbb", "alembic")
OURS = {"live_server", "formats", "ingest", "chat", "captions", "recorder", "vod", "web", "audience", "lti", "bbb", "tests"}
# Declared and used, but loaded by a library from a name in our configuration, never imported by us.
LOADED_BY_NAME = {"psycopg": "postgresql+psycopg"}  # SQLAlchemy's dialect for postgresql+psycopg:// URLs


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = list(project["dependencies"])
    for extra, requirements in project.get("optional-dependencies", {}).items():
        if extra != "test":
            runtime += requirements
    return {canonical(re.match(r"[A-Za-z0-9._-]+", r.strip()).group()) for r in runtime}  # type: ignore[union-attr]


def readme_table() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Dependencies, and why each is there", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = re.sub(r"\([^)]*\)", "", line.split("|")[1])  # "(optional extra ...)" is not a name
            names |= {canonical(name.split("[")[0]) for name in re.findall(r"`([^`]+)`", first_cell)}
    return names


def imported_modules() -> dict[str, str]:
    """Top-level third-party modules imported by production code → a file that imports it."""
    found: dict[str, str] = {}
    for package in PRODUCTION:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OURS:
                        found.setdefault(top, str(path.relative_to(REPO)))
    return found


def imported_distributions() -> dict[str, str]:
    distributions = importlib.metadata.packages_distributions()
    result: dict[str, str] = {}
    for module, where in imported_modules().items():
        assert module in distributions, f"{where} imports {module!r}, which no installed distribution provides"
        for dist in distributions[module]:
            result[canonical(dist)] = where
    return result


def test_readme_table_names_exactly_the_declared_dependencies() -> None:
    table, deps = readme_table(), declared()
    assert table - deps == set(), "README's dependency table names packages pyproject.toml does not declare"
    assert deps - table == set(), "pyproject.toml declares packages the README's table does not explain"


def test_every_declared_dependency_is_imported_and_every_import_is_declared() -> None:
    used = imported_distributions()
    deps = declared()
    undeclared = {dist: where for dist, where in used.items() if dist not in deps}
    assert undeclared == {}, "imported but not declared in pyproject.toml"
    unused = deps - set(used) - set(LOADED_BY_NAME)
    assert unused == set(), "declared in pyproject.toml but imported nowhere"
    for dist, marker in LOADED_BY_NAME.items():
        assert dist in deps
        assert any(marker in path.read_text() for path in (REPO / "live_server").rglob("*.py")), (
            f"{dist} is declared for {marker} URLs, which the code no longer mentions")


def test_ffmpeg_python_is_gone() -> None:
    assert "ffmpeg-python" not in declared() and "ffmpeg" not in imported_modules()
