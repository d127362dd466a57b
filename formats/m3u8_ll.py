"""Low-Latency HLS media playlists (RFC 8216bis, draft-pantos-hls-rfc8216bis): state in, text out.

Two pure pieces for a live rendition made of fMP4 parts (:mod:`formats.cmaf`): :func:`render` writes
the playlist (parts of the last segments, preload hint, server control, delta updates, rendition
reports), and :func:`decide_reload` answers a request's delivery directives (``_HLS_msn``,
``_HLS_part``, ``_HLS_skip``): ready now, wait for a later playlist, or 400. Waiting, timeouts and
sharing one rendered text between identical requests are the caller's; this module has no clock.
Plain playlists (no LL tags) stay in :mod:`formats.m3u8`; players that ignore LL tags play these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

__all__ = [
    "LlPart",
    "LlPlaylist",
    "LlSegment",
    "Reload",
    "ReloadDecision",
    "RenditionReport",
    "advance_part_limit",
    "blocking_timeout",
    "decide_reload",
    "render",
    "rendition_report",
]

# EXT-X-SKIP needs protocol version 9 (RFC 8216bis section 8); EXT-X-MAP in a media playlist
# without I-frames needs 6, which is also enough for every other tag written here.
VERSION = 6
VERSION_WITH_SKIP = 9
_DECIMAL_INTEGER = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class LlPart:
    """A Partial Segment (``EXT-X-PART``): ``independent`` when it starts with a keyframe."""

    uri: str
    duration: float
    independent: bool = False


@dataclass(frozen=True)
class LlSegment:
    """A complete Media Segment and the parts it was made of (listed near the live edge only)."""

    uri: str
    duration: float
    parts: tuple[LlPart, ...] = ()
    program_date_time: datetime | None = None
    discontinuity: bool = False


@dataclass(frozen=True)
class RenditionReport:
    """``EXT-X-RENDITION-REPORT``: where another rendition of the same event is (relative URI)."""

    uri: str
    last_msn: int
    last_part: int


@dataclass(frozen=True)
class LlPlaylist:
    """One rendition's live window: complete ``segments`` from ``media_sequence`` on, then the
    ``pending_parts`` of the segment in progress (Media Sequence Number ``pending_msn``).

    ``part_hold_back`` defaults to three part targets and ``can_skip_until`` to six target
    durations, the least RFC 8216bis 4.4.3.8 allows (SHOULD and MUST respectively).
    ``pending_program_date_time`` dates the segment in progress when no complete segment does.
    """

    target_duration: int
    part_target: float
    map_uri: str
    media_sequence: int = 0
    segments: tuple[LlSegment, ...] = ()
    pending_parts: tuple[LlPart, ...] = ()
    preload_hint: str | None = None
    pending_program_date_time: datetime | None = None
    ended: bool = False
    discontinuity_sequence: int = 0
    rendition_reports: tuple[RenditionReport, ...] = ()
    part_hold_back: float | None = None
    can_skip_until: float | None = None

    @property
    def last_msn(self) -> int:
        """Media Sequence Number of the last complete segment (one less than the first when none)."""
        return self.media_sequence + len(self.segments) - 1

    @property
    def pending_msn(self) -> int:
        return self.media_sequence + len(self.segments)

    @property
    def hold_back(self) -> float:
        return self.part_hold_back if self.part_hold_back is not None else 3 * self.part_target

    @property
    def skip_until(self) -> float:
        return self.can_skip_until if self.can_skip_until is not None else 6.0 * self.target_duration


def _seconds(value: float) -> str:
    return f"{value:.5f}"


def _quote(value: str) -> str:
    if '"' in value or "\n" in value or "\r" in value:
        raise ValueError(f"quoted-string cannot contain quotes or newlines: {value!r}")
    return f'"{value}"'


def _date(value: datetime) -> str:
    """ISO 8601 with milliseconds in UTC, as players expect."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _part_line(part: LlPart) -> str:
    line = f"#EXT-X-PART:DURATION={_seconds(part.duration)},URI={_quote(part.uri)}"
    return line + ",INDEPENDENT=YES" if part.independent else line


def _skipped_segments(playlist: LlPlaylist, end: float) -> int:
    """Segments a delta update replaces (RFC 8216bis 6.2.5.1): those whose end is further than the
    Skip Boundary from the end of the playlist. Skipping stops at a segment with a discontinuity so
    that ``EXT-X-DISCONTINUITY-SEQUENCE`` keeps numbering the listed segments the same way."""
    skipped = 0
    position = 0.0
    for segment in playlist.segments:
        position += segment.duration
        if segment.discontinuity or end - position <= playlist.skip_until:
            break
        skipped += 1
    return skipped


def render(playlist: LlPlaylist, *, skip: bool = False) -> str:
    """The media playlist; ``skip`` renders the Playlist Delta Update asked for by ``_HLS_skip``.

    Checks the rules RFC 8216bis puts on the values it writes: ``PART-HOLD-BACK`` at least three
    part targets (4.4.3.8, SHOULD; 2 is the MUST), ``CAN-SKIP-UNTIL`` at least six target durations
    (4.4.3.8, MUST). ``EXT-X-PART`` tags are listed for segments starting no more than three target
    durations from the end (6.2.2: SHOULD be removed after that) and for the segment in progress.
    """
    if playlist.hold_back < 3 * playlist.part_target:
        raise ValueError("PART-HOLD-BACK must be at least three Part Target Durations")
    if playlist.skip_until < 6 * playlist.target_duration:
        raise ValueError("CAN-SKIP-UNTIL must be at least six Target Durations")
    segment_total = sum(s.duration for s in playlist.segments)
    end = segment_total + sum(p.duration for p in playlist.pending_parts)
    skipped = _skipped_segments(playlist, end) if skip and not playlist.ended else 0
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION_WITH_SKIP if skipped else VERSION}",
        f"#EXT-X-TARGETDURATION:{playlist.target_duration}",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"PART-HOLD-BACK={_seconds(playlist.hold_back)},CAN-SKIP-UNTIL={_seconds(playlist.skip_until)}",
        f"#EXT-X-PART-INF:PART-TARGET={_seconds(playlist.part_target)}",
        f"#EXT-X-MEDIA-SEQUENCE:{playlist.media_sequence}",
    ]
    if playlist.discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{playlist.discontinuity_sequence}")
    lines.append(f"#EXT-X-MAP:URI={_quote(playlist.map_uri)}")
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    parts_from = end - 3 * playlist.target_duration
    start = 0.0
    for number, segment in enumerate(playlist.segments):
        if number >= skipped:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.program_date_time is not None:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(segment.program_date_time)}")
            if start >= parts_from:
                lines.extend(_part_line(part) for part in segment.parts)
            lines.append(f"#EXTINF:{_seconds(segment.duration)},")
            lines.append(segment.uri)
        start += segment.duration
    if not playlist.ended:
        if playlist.pending_parts and playlist.pending_program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(playlist.pending_program_date_time)}")
        lines.extend(_part_line(part) for part in playlist.pending_parts)
        if playlist.preload_hint is not None:
            lines.append(f"#EXT-X-PRELOAD-HINT:TYPE=PART,URI={_quote(playlist.preload_hint)}")
        lines.extend(
            f"#EXT-X-RENDITION-REPORT:URI={_quote(r.uri)},LAST-MSN={r.last_msn},LAST-PART={r.last_part}"
            for r in playlist.rendition_reports
        )
    else:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def rendition_report(playlist: LlPlaylist, uri: str) -> RenditionReport:
    """What other renditions' playlists say about this one: its last part (RFC 8216bis 4.4.5.4)."""
    if playlist.pending_parts:
        return RenditionReport(uri, playlist.pending_msn, len(playlist.pending_parts) - 1)
    last_parts = playlist.segments[-1].parts if playlist.segments else ()
    return RenditionReport(uri, playlist.last_msn, len(last_parts) - 1)


# --------------------------------------------------------------------------- blocking reload


class Reload(Enum):
    READY = "ready"  # render and answer now
    WAIT = "wait"  # answer when a later playlist satisfies the request (503 after blocking_timeout)
    BAD_REQUEST = "bad_request"  # answer 400 at once


@dataclass(frozen=True)
class ReloadDecision:
    """The answer to one playlist request: what to do, whether to render a delta, and why."""

    outcome: Reload
    skip: bool = False
    reason: str = ""


def advance_part_limit(part_target: float) -> float:
    """RFC 8216bis 6.2.5.2: three divided by the Part Target Duration if it is less than one
    second, three otherwise (how many parts a request may run ahead of the last one)."""
    return 3 / part_target if part_target < 1 else 3.0


def blocking_timeout(playlist: LlPlaylist) -> float:
    """RFC 8216bis 6.2.5.2: a server that cannot answer after blocking for more than three Target
    Durations SHOULD return 503 (Service Unavailable)."""
    return 3.0 * playlist.target_duration


def _directive(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not _DECIMAL_INTEGER.fullmatch(value):
        raise ValueError(f"{name} must be a decimal-integer, got {value[:40]!r}")
    return int(value)


def decide_reload(playlist: LlPlaylist, msn: str | None = None, part: str | None = None,
                  skip: str | None = None) -> ReloadDecision:
    """Whether a playlist request with these delivery directives can be answered from ``playlist``.

    RFC 8216bis 6.2.5.2 (Blocking Playlist Reload), as applied here:

    - ``_HLS_msn=M`` alone: answer once the playlist contains Media Segment M or later (M1);
      with ``_HLS_part=N``: once it contains part N of segment M or later (M2). A part index past
      the final part of a complete segment means part 0 of the next segment (M3). A segment no
      longer in the playlist is answered at once with the whole playlist (M4).
    - ``_HLS_part`` without ``_HLS_msn``: 400 (M6). A value that is not a decimal-integer: 400.
    - "If the _HLS_msn is greater than the Media Sequence Number of the last Media Segment in the
      current Playlist plus two, or if the _HLS_part exceeds the last Partial Segment in the
      current Playlist by the Advance Part Limit, then the server SHOULD immediately return Bad
      Request, such as HTTP 400" (S1). The last Media Segment is the last complete one; the part
      rule is applied to requests for the segment in progress (for a segment after it, how many
      parts the one in progress will have is not known yet, so only the msn rule applies).
    - With ``EXT-X-ENDLIST``, ``_HLS_msn`` and ``_HLS_part`` are ignored (M5), and so is
      ``_HLS_skip`` (6.2.5.1 M5).
    - ``_HLS_skip=YES`` or ``v2`` asks for a delta update (6.2.5.1); we skip no date ranges, so
      both mean the same. Another value: 400.
    - Blocking longer than :func:`blocking_timeout` SHOULD end in 503 (S2), the caller's part.
    """
    if skip is not None and skip not in ("YES", "v2"):
        return ReloadDecision(Reload.BAD_REQUEST, reason="_HLS_skip must be YES or v2")
    try:
        msn_value = _directive("_HLS_msn", msn)
        part_value = _directive("_HLS_part", part)
    except ValueError as error:
        return ReloadDecision(Reload.BAD_REQUEST, reason=str(error))
    if part_value is not None and msn_value is None:
        return ReloadDecision(Reload.BAD_REQUEST, reason="_HLS_part without _HLS_msn")
    if playlist.ended:
        return ReloadDecision(Reload.READY)
    delta = skip is not None
    if msn_value is None:
        return ReloadDecision(Reload.READY, delta)
    if msn_value > playlist.last_msn + 2:
        return ReloadDecision(Reload.BAD_REQUEST, delta, "_HLS_msn more than two segments ahead")
    if part_value is None:
        return ReloadDecision(Reload.READY if msn_value <= playlist.last_msn else Reload.WAIT, delta)
    if msn_value < playlist.last_msn:
        return ReloadDecision(Reload.READY, delta)
    if msn_value == playlist.last_msn:
        last_parts = playlist.segments[-1].parts if playlist.segments else ()
        if part_value < len(last_parts):
            return ReloadDecision(Reload.READY, delta)
        msn_value, part_value = msn_value + 1, 0  # M3: part 0 of the next segment
    if msn_value == playlist.pending_msn:
        have = len(playlist.pending_parts)
        if part_value < have:
            return ReloadDecision(Reload.READY, delta)
        if part_value - (have - 1) > advance_part_limit(playlist.part_target):
            return ReloadDecision(Reload.BAD_REQUEST, delta, "_HLS_part beyond the Advance Part Limit")
    return ReloadDecision(Reload.WAIT, delta)
