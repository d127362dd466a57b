"""The import graph of the production packages: no new cycle, no arrow from the ground floor up.

The graph is read from the source with ``ast`` (nothing is imported): one node per module, one
arrow per ``import`` statement anywhere in the module, function bodies included (a deferred
import hides a dependency from the interpreter, not from the design). See docs/architecture.md.
"""

from __future__ import annotations

import ast
import json
import functools
import subprocess
import sys
from pathlib import Path

from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("live_server", "formats", "ingest", "chat", "captions", "recorder", "vod", "web", "audience", "lti", "bbb")

# The ground floor: what every component may import, and which imports no component.
GROUND = ("formats", "live_server.settings", "live_server.db", "live_server.models", "live_server.errors",
          "live_server.security", "live_server.metrics", "live_server.accounts", "live_server.events",
          "live_server.layout", "live_server.files", "live_server.migrations", "live_server.ffmpeg", "live_server.access",
          "live_server.passes", "live_server.session_people", "live_server.http_request", "live_server.logins",
          "live_server.languages")
COMPONENTS = ("ingest", "chat", "captions", "recorder", "vod", "web", "audience", "lti", "bbb")
# The roof: every module of live_server/ that is not the ground floor (the app factory, the CLI, the
# request pipeline, the /api/v1 handler groups of the server itself, ops, the cluster, the listener).
# Only the composition root knows every component; no component imports any of it.

# Arrows from one component to another that exist today, module to module, each said in
# docs/architecture.md. Same rule as KNOWN_CYCLES: the list may only shrink; a new arrow fails the
# test (ask for a Protocol declared by the importer and wire the real object in the app factory).
KNOWN_SIDEWAYS: set[tuple[str, str]] = {
    ("captions.captioner", "ingest.live_run"),  # the frozen LiveRun the hub hands its taps, and RunMedia
    ("recorder.recorder", "ingest.live_run"),  # the same
    ("recorder.recorder", "ingest.disk"),  # the media disk guard the packager and the recorder share
    ("chat.namespace", "web.media"),  # the viewer cookie's name: chat counts the same viewers as the player
    ("vod.api", "web.media"),  # the media cache and PersonSource, shared by live and replay media
    ("vod.media", "web.media"),  # the same, and content types and safe file names
    ("vod.catalog", "recorder.recording_events"),  # the recorder says what happened; the catalog persists it
    ("vod.catalog", "recorder.storage"),  # a recording's files have one owner: recorder/storage.py
    ("vod.importer", "recorder.storage"),  # the same
    ("vod.media", "recorder.storage"),  # the same
    ("vod.objects", "recorder.storage"),  # the same
    ("vod.audio_descriptions", "recorder.storage"),  # the same: audio-description renditions are files of the recording
    ("web.embed", "vod.access"),  # web pages show recordings: who may see one
    ("web.home", "vod.access"),  # the same
    ("web.home", "vod.search"),  # the home page's recordings search
    ("web.pages", "vod.page"),  # the replay page
}

# Cycles that exist today, each as the sorted modules of one strongly connected component. Empty:
# the app factory is the one composition root and each component declares its own AppKeys; a cycle
# not listed here, or a listed one that grew, fails the test.
KNOWN_CYCLES: list[list[str]] = []

# Arrows from the ground floor to a component that exist today (same rule: only shrink).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the production modules it imports (``from a import b`` is a.b when b is a module)."""
    files = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in files else module for alias in node.names]
            for target in targets:
                while target and target not in files:  # a.b.Class -> a.b; unknown -> third party
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # iterative: no recursion limit on a long chain
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def in_layer(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in layer)


def test_the_graph_is_read_correctly() -> None:
    graph = import_graph()
    assert "formats.webvtt" in graph["captions.track"] and "formats.webvtt" in graph["vod.replay"]
    assert "ingest.rtmp.chunk" in graph["ingest.rtmp.protocol"]  # relative import
    assert "ingest.packaging.packager" in graph["ingest.packaging"]  # a package's __init__
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_beyond_the_known_ones() -> None:
    found = cycles(import_graph())
    new = [c for c in found if c not in KNOWN_CYCLES]
    assert new == [], "new import cycle(s); break them (a Protocol, or wiring in the app factory) rather than list them"
    gone = [c for c in KNOWN_CYCLES if c not in found]
    assert gone == [], "a known cycle is gone or changed: remove or update it in KNOWN_CYCLES"


def test_the_ground_floor_imports_no_component() -> None:
    graph = import_graph()
    upward = {(m, t) for m, targets in graph.items() if in_layer(m, GROUND) for t in targets if in_layer(t, COMPONENTS)}
    assert upward - KNOWN_UPWARD == set(), "a foundation module imports a component"
    assert KNOWN_UPWARD - upward == set(), "a known upward arrow is gone: remove it from KNOWN_UPWARD"
    formats_out = {(m, t) for m, targets in graph.items() if in_layer(m, ("formats",)) for t in targets
                   if not in_layer(t, ("formats",))}
    assert formats_out == set(), "formats/ is pure: it imports nothing of ours"


def test_no_component_imports_the_roof() -> None:
    """Components import the ground floor and formats/ only: login/logout is ``live_server.logins``, what a
    handler reads from a request ``live_server.http_request``, a live run's file names ``live_server.layout``."""
    graph = import_graph()
    roof = {m for m in graph if in_layer(m, ("live_server",)) and not in_layer(m, GROUND)}
    assert {"live_server.app", "live_server.cli", "live_server.middleware", "live_server.api.auth"} <= roof
    upward = {(m, t) for m, targets in graph.items() if in_layer(m, COMPONENTS) for t in targets if t in roof}
    assert upward == set(), "a component imports the roof; move what it needs to the ground floor or wire it in"
    ground_up = {(m, t) for m, targets in graph.items() if in_layer(m, GROUND) for t in targets if t in roof}
    assert ground_up == set(), "a ground-floor module imports the roof"


def test_sideways_arrows_between_components_are_the_known_ones() -> None:
    graph = import_graph()
    sideways = {(m, t) for m, targets in graph.items() if in_layer(m, COMPONENTS) for t in targets
                if in_layer(t, COMPONENTS) and t.split(".")[0] != m.split(".")[0]}
    assert sideways - KNOWN_SIDEWAYS == set(), "a new arrow between components: a Protocol wired in the app factory instead"
    assert KNOWN_SIDEWAYS - sideways == set(), "a known sideways arrow is gone: remove it from KNOWN_SIDEWAYS and the docs"


def test_the_audience_component_imports_only_the_ground_floor() -> None:
    """audience/ is a component built to the target design (issue 21): the ground floor and itself, nothing sideways."""
    graph = import_graph()
    outside = {(m, t) for m, targets in graph.items() if in_layer(m, ("audience",)) for t in targets
               if not in_layer(t, ("audience",)) and not in_layer(t, GROUND)}
    assert outside == set()
    assert "live_server.access" in graph["audience.api"]  # read correctly: it does import the access rule


def test_the_replay_side_imports_nothing_of_ingest() -> None:
    """vod/ got m3u8 from the packager once; file formats are formats/ now, a recording's files recorder/'s."""
    graph = import_graph()
    arrows = {(m, t) for m, targets in graph.items() if in_layer(m, ("vod",)) for t in targets if in_layer(t, ("ingest",))}
    assert arrows == set()


MEDIA_LIBRARIES = ("aiortc", "av", "vosk")
FOUNDATION_MODULES = [
    "live_server.settings", "live_server.db", "live_server.models", "live_server.security", "live_server.metrics",
    "live_server.events", "live_server.accounts", "formats.webvtt", "formats.m3u8", "formats.flv", "formats.amf0",
    "live_server.middleware",  # the request pipeline: wired with the catalog and metrics, it imports no component
    "live_server.http_request", "live_server.logins",
    "audience.api",
]
#: One interpreter imports the modules one after the other and, after each, says which media libraries it
#: holds: as long as none has appeared, whatever the next import brings is what that module loads on its own
#: (everything already loaded is media-free). The first module that brings one is named; the interpreter stops
#: there and a fresh one carries on with the modules after it, so each module is still judged alone. A clean
#: run costs one interpreter, not one import of SQLAlchemy, pydantic and aiohttp per module.
_IMPORT_IN_TURN = """
import json, sys
def media():
    return sorted({m.split('.')[0] for m in sys.modules} & set(MEDIA))
assert media() == [], f"a bare interpreter holds media libraries: {media()}"
for module in MODULES:
    try:
        __import__(module)
    except BaseException as error:
        print(json.dumps([module, f"import failed: {error!r}"]), flush=True)
        break
    print(json.dumps([module, media()]), flush=True)
    if media():
        break
"""


@pytest.fixture
def media_loaded_by() -> dict[str, Any]:
    return _media_loaded_by()


@functools.cache  # not a module-scoped fixture: xdist tears those down whenever a worker's queue runs dry
def _media_loaded_by() -> dict[str, Any]:
    found: dict[str, Any] = {}
    while todo := [m for m in FOUNDATION_MODULES if m not in found]:
        code = f"MEDIA = {MEDIA_LIBRARIES!r}\nMODULES = {todo!r}\n{_IMPORT_IN_TURN}"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert out.returncode == 0, out.stderr
        answers = dict(json.loads(line) for line in out.stdout.splitlines())
        assert answers and set(answers) <= set(todo), out.stdout  # each interpreter judges one module at least
        found.update(answers)
    return found


@pytest.mark.xdist_group("foundation-imports")  # one worker runs the interpreter once for all of them
@pytest.mark.parametrize("module", FOUNDATION_MODULES)
def test_a_foundation_module_loads_no_media_library(module: str, media_loaded_by: dict[str, Any]) -> None:
    assert media_loaded_by[module] == [], f"importing {module} loads media libraries: {media_loaded_by[module]}"


def test_taps_see_a_frozen_run_not_the_hub() -> None:
    """Captions and the recorder get a ``LiveRun`` (``ingest.live_run``) and reach the run's media
    through its small ``RunMedia`` interface; the hub (``ingest.live``) and its core are not theirs."""
    graph = import_graph()
    sideways = {(m, t) for m, targets in graph.items() if in_layer(m, ("captions", "recorder"))
                for t in targets if in_layer(t, ("ingest",))}
    assert {t for _, t in sideways} & {"ingest.live", "ingest.live_core"} == set()
    assert ("captions.captioner", "ingest.live_run") in sideways and ("recorder.recorder", "ingest.live_run") in sideways
