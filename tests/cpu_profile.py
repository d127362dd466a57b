"""Where the suite's CPU goes: per test, the CPU seconds of the test process and of everything it
started (servers, ffmpeg, Chromium and its renderers), written as tab-separated lines when
``SUITE_CPU_PROFILE`` names a file (each xdist worker appends its own lines).

The suite's wall time on a 2-core machine is bounded below by its total CPU divided by two, so
this, not ``--durations``, says which tests to make cheaper. Descendants are read from /proc:
a live process counts its own time plus its reaped children's (``cutime``/``cstime``); processes
that ended during the test are in the test process's ``RUSAGE_CHILDREN``.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Iterator

import pytest

_TARGET = os.environ.get("SUITE_CPU_PROFILE", "")
_TICK = os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _tree_cpu() -> float:
    """CPU seconds used so far by this process, its live descendants and the children they reaped."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    dead = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + dead.ru_utime + dead.ru_stime
    for pid in _descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / _TICK  # utime stime cutime cstime
    return total


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    if not _TARGET:
        yield
        return
    cpu, wall = _tree_cpu(), time.monotonic()
    yield
    used, took = _tree_cpu() - cpu, time.monotonic() - wall
    with open(_TARGET, "a") as out:
        out.write(f"{used:.2f}\t{took:.2f}\t{item.nodeid}\n")
