"""What the README says about running the project, held against the code: the Python versions pyproject accepts,
the Node.js that `make` needs for npm, and a server that makes no HTTP requests of its own (aiohttp's client is
for tests and benchmarks) except to the BigBlueButton servers an admin configured (bbb/client.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = ["live_server", "formats", "ingest", "chat", "captions", "recorder", "vod", "web", "audience", "bbb"]
# The one module that calls out: the BigBlueButton API and recording downloads, only to configured servers.
CALLS_OUT = {"bbb/client.py"}
HTTP_CLIENT = re.compile(r"\b(ClientSession|TCPConnector|ClientTimeout)\b|\baiohttp\.request\(|\baiohttp\.client\b")


def test_the_python_versions_the_readme_names_are_pyprojects() -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    low, high = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", requires).groups()  # type: ignore[union-attr]
    assert f"**Python 3.{low}–3.{int(high) - 1}**" in (REPO / "README.md").read_text()


def test_the_readme_says_make_needs_node_for_npm() -> None:
    assert "npm ci" in (REPO / "Makefile").read_text()
    readme = (REPO / "README.md").read_text()
    assert "**Node.js with\nnpm**" in readme or "**Node.js with npm**" in readme
    assert "Nothing else needs installing" not in readme


def test_no_production_module_uses_an_http_client() -> None:
    found = [f"{path.relative_to(REPO)}:{number}" for package in PRODUCTION for path in sorted((REPO / package).rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if HTTP_CLIENT.search(line) and str(path.relative_to(REPO)) not in CALLS_OUT]
    assert found == [], f"the README says only tests, benchmarks and bbb/client.py use aiohttp's client: {found}"
    readme = (REPO / "README.md").read_text()
    assert "the server itself makes no HTTP requests except to the BigBlueButton servers an admin configured" in readme
