"""The tests' own imports: helpers live in support modules, never in a conftest or a test module.

A conftest.py holds fixtures and hooks, and pytest loads it by itself; a module that imports one (or a
``test_*`` module) loads it a second time under another role, drags in its fixtures, and ties one test file
to another's internals. What tests share goes to a plain module named for what it holds (tests/support.py,
tests/media.py, tests/ingest/live.py, tests/captions/speech.py...), which conftests and tests both import.
Read with ``ast`` as tests/architecture/test_imports.py reads the production code: every ``import``
statement of every module under tests/, function bodies included.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_conftest_or_test(module: str) -> bool:
    """A conftest or a ``test_*`` module of ours (``aiohttp.test_utils`` is a library's module, not a test)."""
    last = module.rpartition(".")[2]
    return module.startswith("tests.") and (last == "conftest" or last.startswith("test_"))


def forbidden_imports(path: Path, source: str | None = None) -> list[str]:
    """``file:line: module`` for each import, anywhere in the module, of a conftest or a ``test_*`` module
    (``from tests.x.conftest import y``, ``import tests.x.test_y``, ``from tests.x import conftest``,
    ``from .test_y import z``)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # the module itself, and each imported name that may be a module of its package
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for target in targets:
            if is_conftest_or_test(target):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {target}")
                break
    return found


def test_the_reader_finds_each_spelling() -> None:
    here = TESTS / "web" / "example.py"
    source = "\n".join([
        "from tests.ingest.conftest import Live",  # 1
        "import tests.vod.test_recordings as recordings",  # 2
        "from tests.chat import conftest",  # 3
        "from .test_event_page import page",  # 4
        "def f():",  # 5
        "    from ..lti.conftest import Lms",  # 6: inside a function
        "from tests.support import Account",  # 7: a support module
        "from tests.vod.recordings import folder_of",  # 8
        "from aiohttp.test_utils import TestServer",  # 9: a library's module
    ])
    assert forbidden_imports(here, source) == [
        "tests/web/example.py:1: tests.ingest.conftest", "tests/web/example.py:2: tests.vod.test_recordings",
        "tests/web/example.py:3: tests.chat.conftest", "tests/web/example.py:4: tests.web.test_event_page",
        "tests/web/example.py:6: tests.lti.conftest"]


def test_no_test_module_or_conftest_is_imported() -> None:
    """Every module under tests/ imports its helpers from support modules: a conftest keeps fixtures and hooks,
    a test module its tests; what another module needs moves to a support module named for what it holds."""
    offending = [line for path in sorted(TESTS.rglob("*.py")) for line in forbidden_imports(path)]
    assert offending == [], "import from a conftest or a test_* module (move the helper to a support module):\n" + "\n".join(offending)
