"""hls.js's own playlist parser (a parser we did not write, run by node) reading a media playlist."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HLS_JS = REPO / "node_modules" / "hls.js" / "dist" / "hls.mjs"
_READER = """
import { M3U8Parser } from %s;
let text = '';
process.stdin.on('data', (c) => { text += c; });
process.stdin.on('end', () => {
  const d = M3U8Parser.parseLevelPlaylist(text, 'http://h/a/index.m3u8', 0, 'main', 0, null);
  console.log(JSON.stringify({
    version: d.version, startSN: d.startSN, endSN: d.endSN, skipped: d.skippedSegments,
    partTarget: d.partTarget, partHoldBack: d.partHoldBack, canSkipUntil: d.canSkipUntil,
    canBlockReload: d.canBlockReload, live: d.live, hint: d.preloadHint,
    lastPartSn: d.lastPartSn, lastPartIndex: d.lastPartIndex,
    parts: (d.partList || []).map((p) => [p.fragment.sn, p.index, p.duration, p.independent, p.relurl]),
    frags: d.fragments.filter(Boolean).map((f) => [f.sn, f.duration, f.relurl, f.programDateTime,
                                                   f.initSegment && f.initSegment.relurl]),
    reports: d.renditionReports,
  }));
});
"""


def hls_js_parse(text: str, tmp_path: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not HLS_JS.exists():
        pytest.fail("node and node_modules/hls.js are test peers (make install-test)")
    script = tmp_path / "read.mjs"
    script.write_text(_READER % json.dumps(str(HLS_JS)))
    done = subprocess.run([node, str(script)], input=text, capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result
