"""Every module of formats/ is pure: no I/O, no asyncio, nothing else of ours (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORMATS = Path(__file__).resolve().parents[2] / "formats"
# The standard library a format may use: text, numbers, bytes and plain data; no files, sockets or loops.
# hashlib, hmac, base64, json, urllib (.parse) and xml (.etree) compute on bytes and text only: the BigBlueButton
# API's checksums, query strings, XML answers and callback JWT (formats/bbb.py); html (.unescape) turns an uploaded
# cue's character references into text (formats/webvtt.py).
ALLOWED = {"__future__", "bisect", "dataclasses", "datetime", "enum", "math", "re", "struct", "typing", "formats",
           "base64", "hashlib", "hmac", "html", "json", "urllib", "xml"}


@pytest.mark.parametrize("path", sorted(FORMATS.glob("*.py")), ids=lambda p: p.name)
def test_a_format_imports_only_pure_modules(path: Path) -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("formats" if node.level else (node.module or "").split(".")[0])
    assert imported - ALLOWED == set(), f"{path.name} imports {sorted(imported - ALLOWED)}"


def test_every_format_is_checked() -> None:
    assert {p.stem for p in FORMATS.glob("*.py")} >= {"amf0", "flv", "m3u8", "webvtt"}
