"""An LL-HLS ladder fed what the transcoder really outputs (the bundled ffmpeg, the default ladder):
aligned segment numbers, the audio-only rendition cut on the video's keyframes, rendition reports.
Pure: the tags are read from files, nothing is written."""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from formats.flv import flv_header, flv_tag, read_tags
from formats.m3u8 import RenditionReport, render_ll
from ingest.packaging.ffmpeg_args import build_transcoder_args
from ingest.packaging.ll_ladder import ALIGN_HOLD_SEGMENTS, FOLLOW_HOLD_MS, LlLadder
from ingest.packaging.ll_stream import LlUpdate
from ingest.packaging.options import DEFAULT_LADDER, PackagerOptions

from .support import ffmpeg_exe, make_source

KINDS = {8: "audio", 9: "video"}
NAMES = [r.name for r in DEFAULT_LADDER]
WALL = 1_000_000.0


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, int, bytes]]]:
    """7 s of a 20 fps source (1 s GOP) through the transcoder: each rendition's (kind, ms, body)."""
    folder = tmp_path_factory.mktemp("ladder")
    options = PackagerOptions(ladder=DEFAULT_LADDER)
    source = flv_header(True, True) + b"".join(
        flv_tag(8 if t.kind == "audio" else 9, t.timestamp_ms, t.payload) for t in make_source(seconds=7, fps=20))
    pipes = [os.pipe() for _ in NAMES]
    files = [folder / f"{name}.flv" for name in NAMES]
    proc = subprocess.Popen(build_transcoder_args(ffmpeg_exe(), options, [w for _, w in pipes]),
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=[w for _, w in pipes])
    for _, w in pipes:
        os.close(w)
    readers = [subprocess.Popen(["cat"], stdin=r, stdout=path.open("wb")) for (r, _), path in zip(pipes, files)]
    for r, _ in pipes:
        os.close(r)
    _, err = proc.communicate(source, timeout=120)
    for reader in readers:
        reader.wait(30)
    assert proc.returncode == 0, err.decode()
    return {name: [(KINDS[k], ms, body) for k, ms, body in read_tags(path.read_bytes()) if k in KINDS]
            for name, path in zip(NAMES, files)}


def ladder() -> LlLadder:
    return LlLadder(NAMES, part_target=0.334, segment_seconds=2.0, window_segments=6, followers=["audio"],
                    transcoded=True)


def feed(ladder: LlLadder, outputs: dict[str, list[tuple[str, int, bytes]]], *, audio_lead_ms: int) -> dict[str, list[LlUpdate]]:
    """Interleave the renditions by time as pipes deliver them, the audio rendition ``audio_lead_ms`` early."""
    order = sorted(((ms - (audio_lead_ms if name == "audio" else 0), i, name, kind, ms, body)
                    for name, tags in outputs.items() for i, (kind, ms, body) in enumerate(tags)),
                   key=lambda item: (item[0], item[2], item[1]))
    updates: dict[str, list[LlUpdate]] = defaultdict(list)
    ladder.begin_session()
    for _, _, name, kind, ms, body in order:
        for rendition, update in ladder.feed(name, kind, ms, body, WALL + ms / 1000):
            updates[rendition].append(update)
    return updates


@pytest.mark.parametrize("audio_lead_ms", [0, 400, -300], ids=["together", "audio-ahead", "audio-behind"])
def test_every_rendition_has_the_same_segments_at_the_same_instants(outputs: dict[str, list[tuple[str, int, bytes]]],
                                                                      audio_lead_ms: int) -> None:
    lad = ladder()
    updates = feed(lad, outputs, audio_lead_ms=audio_lead_ms)
    for name, update in lad.end_session():
        updates[name].append(update)
    segments = {name: [s for u in updates[name] for s in u.segments] for name in NAMES}
    numbers = {name: [s.sequence for s in segments[name]] for name in NAMES}
    assert numbers["720p"] == list(range(len(numbers["720p"]))) and len(numbers["720p"]) >= 3, numbers
    assert all(numbers[name] == numbers["720p"] for name in NAMES), numbers
    # The video renditions cut on the same (forced) keyframes; the audio rendition within a frame of them.
    starts = {name: [s.program_date_time.timestamp() for s in segments[name]] for name in NAMES}  # type: ignore[union-attr]
    for name in ("480p", "240p"):
        assert starts[name] == pytest.approx(starts["720p"], abs=1e-6)
    assert starts["audio"][1:] == pytest.approx(starts["720p"][1:], abs=0.025)  # one AAC frame: 21-23 ms
    for name in NAMES:  # (the audio rendition's first segment also has the audio before the first picture)
        assert all(s.duration == pytest.approx(2.0, abs=0.05) for s in segments[name][1:-1]), (name, segments[name])
        assert 2.0 - 0.05 <= segments[name][0].duration <= 2.0 + 0.1, (name, segments[name][0])


def test_each_rendition_reports_the_others(outputs: dict[str, list[tuple[str, int, bytes]]]) -> None:
    lad = ladder()
    feed(lad, outputs, audio_lead_ms=0)
    own = {name: lad.renditions[name].playlist(6) for name in NAMES}
    for name in NAMES:
        playlist = lad.playlist(name, 6, "live.m3u8")
        assert playlist is not None
        expected = []
        for other in NAMES:
            if other == name:
                continue
            theirs = own[other]
            assert theirs is not None
            msn, part = ((theirs.pending_msn, len(theirs.pending_parts) - 1) if theirs.pending_parts
                         else (theirs.last_msn, len(theirs.segments[-1].parts) - 1))
            expected.append(RenditionReport(f"../{other}/live.m3u8", msn, part))
        assert playlist.rendition_reports == tuple(expected)
        text = render_ll(playlist)
        for report in expected:
            assert (f'#EXT-X-RENDITION-REPORT:URI="{report.uri}",LAST-MSN={report.last_msn},'
                    f"LAST-PART={report.last_part}") in text
        assert "#EXT-X-PART:" in text and "#EXT-X-PRELOAD-HINT:TYPE=PART" in text
    dvr = lad.playlist("240p", None, "dvr.m3u8")
    assert dvr is not None and {r.uri for r in dvr.rendition_reports} == {
        "../720p/dvr.m3u8", "../480p/dvr.m3u8", "../audio/dvr.m3u8"}


def test_a_single_rendition_reports_nothing(outputs: dict[str, list[tuple[str, int, bytes]]]) -> None:
    lad = LlLadder(["720p"], part_target=0.334, segment_seconds=2.0, window_segments=6)
    lad.begin_session()
    for kind, ms, body in outputs["720p"]:
        lad.feed("720p", kind, ms, body, WALL)
    playlist = lad.playlist("720p", 6, "live.m3u8")
    assert playlist is not None and playlist.rendition_reports == ()


def test_audio_waits_for_the_video_at_most_the_hold(outputs: dict[str, list[tuple[str, int, bytes]]]) -> None:
    """With the video stalled, the audio rendition is not held back for more than FOLLOW_HOLD_MS."""
    lad = ladder()
    lad.begin_session()
    fed = 0
    for kind, ms, body in outputs["audio"]:
        for _, update in lad.feed("audio", kind, ms, body, WALL):
            fed += sum(1 for f in update.files if f.name.startswith("part_"))
        if ms > 3 * FOLLOW_HOLD_MS:
            break
    assert fed >= 1  # parts came out without any video
    held = lad._held["audio"]
    assert held and held[-1][1] - held[0][1] <= FOLLOW_HOLD_MS


def test_followers_are_checked() -> None:
    with pytest.raises(ValueError, match="some, not all"):
        LlLadder(["audio"], part_target=0.334, segment_seconds=2.0, window_segments=6, followers=["audio"])
    with pytest.raises(ValueError, match="distinct rendition names"):
        LlLadder(["a", "a"], part_target=0.334, segment_seconds=2.0, window_segments=6)


@pytest.mark.parametrize("lag_ms", [700, 2500, 3900], ids=["part", "over-a-segment", "almost-two"])
def test_a_transcoder_killed_while_renditions_lag_leaves_them_aligned(
        outputs: dict[str, list[tuple[str, int, bytes]]], lag_ms: int) -> None:
    """The 720p pipe delivers ``lag_ms`` later than the others (a loaded machine) and the transcoder dies
    mid-stream: every rendition ends that session at the same segment, and the next session's segments
    carry the same numbers in every rendition (hls.js switches renditions by Media Sequence Number)."""
    lad = ladder()
    delivered = sorted(((ms + (lag_ms if name == "720p" else 0), i, name, kind, ms, body)
                        for name, tags in outputs.items() for i, (kind, ms, body) in enumerate(tags)),
                       key=lambda item: (item[0], item[2], item[1]))
    killed_at = 5000
    updates: dict[str, list[LlUpdate]] = defaultdict(list)
    lad.begin_session()
    for at, _, name, kind, ms, body in delivered:
        if at >= killed_at:
            break
        for rendition, update in lad.feed(name, kind, ms, body, WALL + ms / 1000):
            updates[rendition].append(update)
    for name, update in lad.end_session(aligned=True):
        updates[name].append(update)
    first = {name: [s.sequence for u in updates[name] for s in u.segments] for name in NAMES}
    assert first["720p"] and all(first[name] == first["720p"] for name in NAMES), first
    assert lag_ms < 2000 or lad.gate_dropped > 0  # a faster rendition had reached the next segment

    again = feed(lad, outputs, audio_lead_ms=0)  # the restarted transcoder's outputs: a new session
    for name, update in lad.end_session():
        again[name].append(update)
    second = {name: [(s.sequence, s.discontinuity) for u in again[name] for s in u.segments] for name in NAMES}
    assert second["720p"][0] == (first["720p"][-1] + 1, True), second
    assert all(second[name] == second["720p"] for name in NAMES), second


def test_a_stalled_rendition_holds_the_others_back_at_most_the_gate(
        outputs: dict[str, list[tuple[str, int, bytes]]]) -> None:
    """720p stops after 1.5 s: the others still get their segments once their keyframe has waited
    ALIGN_HOLD_SEGMENTS segments of media, and at a normal end nothing that waits is lost."""
    lad = ladder()
    stalled = {name: [t for t in tags if name != "720p" or t[1] < 1500] for name, tags in outputs.items()}
    updates = feed(lad, stalled, audio_lead_ms=0)
    live = [s for u in updates["240p"] for s in u.segments]
    last = stalled["240p"][-1][1]
    assert live and len(live) == (last - 2000 * ALIGN_HOLD_SEGMENTS) // 2000, live  # let through, not at once
    for name, update in lad.end_session():
        updates[name].append(update)
    ended = [s for u in updates["240p"] for s in u.segments]
    assert len(ended) > len(live) and lad.gate_dropped == 0
    assert sum(s.duration for s in ended) == pytest.approx(last / 1000, abs=0.2)


def test_the_rungs_chosen_for_the_source_are_the_only_ones(outputs: dict[str, list[tuple[str, int, bytes]]]) -> None:
    """The transcoder's first start kept 240p and audio (a source shorter than 480p): the rungs it never
    encodes hold nothing back (no gate waits for 720p/480p), 240p becomes the reference the audio is
    cut on, and the playlists report only the renditions kept."""
    lad = ladder()
    lad.begin_session()
    lad.select(["240p", "audio"])
    assert lad.names == ("240p", "audio") and lad.reference == "240p" and set(lad.renditions) == {"240p", "audio"}
    kept = {name: outputs[name] for name in ("240p", "audio")}
    updates = feed(lad, kept, audio_lead_ms=0)
    segments = {name: [s.sequence for u in updates[name] for s in u.segments] for name in kept}
    assert len(segments["240p"]) >= 2 and segments["audio"] == segments["240p"][:len(segments["audio"])], segments
    assert len(segments["audio"]) >= len(segments["240p"]) - 1, segments
    playlist = lad.playlist("240p", 6, "live.m3u8")
    assert playlist is not None and [r.uri for r in playlist.rendition_reports] == ["../audio/live.m3u8"]
    for bad in (["audio"], ["1080p", "240p"], []):
        with pytest.raises(ValueError, match="cannot keep"):
            ladder().select(bad)
