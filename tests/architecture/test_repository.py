"""The repository is self-contained: no document or file sends the reader outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)[^)]*\)|`(\.\./[^`]+)`")


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / name for name in out.splitlines()
            if name.endswith((".md", ".py", ".toml", ".cfg", ".yml", ".yaml", ".html", ".js", ".template"))
            or name in ("Makefile",)]


def test_documents_link_only_inside_the_repository() -> None:
    outside = []
    for path in tracked_text_files():
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "shared/STYLE" in text and path != Path(__file__):
            outside.append(f"{path.relative_to(REPO)}: shared/STYLE")
        if path.suffix != ".md":
            continue
        for match in LINK.finditer(text):
            target = match.group(1) or match.group(2)
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(REPO):
                outside.append(f"{path.relative_to(REPO)}: {target}")
            elif match.group(1) and not resolved.exists():
                outside.append(f"{path.relative_to(REPO)}: {target} (missing)")
    assert outside == []
