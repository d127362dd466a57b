"""HLS playlists (RFC 8216) as plain data: text in, plain objects out, and back.

The one m3u8 reader and writer of the code base. We own the public playlists (not ffmpeg) so that
discontinuities across reconnects, the sliding window, the DVR playlist and ENDLIST follow our
rules and we know the exact moment a segment becomes visible; the recorder's append-only journal,
the VOD playlists and master playlists, and the subtitle playlists of live captions are written
and read here too. Pure code: no I/O (files are written by their owners, atomically).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable, Sequence

__all__ = [
    "PlaylistParseError",
    "Segment",
    "MediaPlaylist",
    "ParsedMediaPlaylist",
    "VariantStream",
    "SubtitleRendition",
    "render_master",
    "parse_master",
    "parse_media_playlist",
    "render_vod",
    "journal_header",
    "journal_entry",
    "parse_journal",
    "format_program_date_time",
    "target_duration_for",
]

#: EXTINF with decimals needs version 3; nothing we emit needs more.
HLS_VERSION = 3


class PlaylistParseError(ValueError):
    """A media playlist we cannot trust for crash recovery."""


@dataclass(frozen=True)
class Segment:
    """One listed media segment.

    ``sequence`` is the Media Sequence Number (contiguous within a rendition);
    ``uri`` is relative to the playlist.  ``program_date_time`` is the wall
    clock of the segment's first sample when known; it is rendered only where
    a player needs it (first listed segment and after each discontinuity).
    """

    uri: str
    duration: float
    sequence: int
    discontinuity: bool = False
    program_date_time: datetime | None = None


def format_program_date_time(value: datetime) -> str:
    """ISO 8601 with milliseconds and an explicit UTC offset, as players expect."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _format_duration(duration: float) -> str:
    return f"{duration:.3f}"


def _rounded(duration: float) -> float:
    return float(_format_duration(duration))


def _nearest_integer(duration: float) -> int:
    """The EXTINF value as written, rounded to the nearest integer (halves up)."""
    return math.floor(_rounded(duration) + 0.5)


def target_duration_for(*durations: float) -> int:
    """EXT-X-TARGETDURATION covering these durations by RFC 8216 4.3.3.1's rule.

    Each EXTINF duration, rounded to the nearest integer, must be <= the target duration:
    2.04 s segments give 2 (``math.ceil`` would say 3, and players sit three target
    durations behind the live edge). Callers pass the configured segment length and the
    measured keyframe interval (or, for a finished playlist, every duration).
    """
    return max([1, *(_nearest_integer(d) for d in durations)])


@dataclass
class MediaPlaylist:
    """The segments of one rendition plus what is needed to render any view of them.

    ``discontinuity_sequence`` counts the EXT-X-DISCONTINUITY tags of segments
    already forgotten (trimmed) before ``segments[0]``, so the sliding window
    stays correct after old discontinuities slide out.

    ``target_duration`` is decided once (RFC 8216 forbids changing it): None
    until then, and such a playlist cannot be rendered.  Its owner decides it
    with :meth:`decide_target` (from the configured segment length and the
    measured keyframe interval); otherwise the first segment decides it.  A
    later segment longer than the target leaves it unchanged and is counted in
    ``overlong_segments`` (the encoder's keyframe interval grew mid-stream).
    """

    segments: list[Segment] = field(default_factory=list)
    target_duration: int | None = None
    discontinuity_sequence: int = 0
    ended: bool = False
    overlong_segments: int = field(default=0, compare=False)

    def decide_target(self, *durations: float) -> int:
        """Fix the target duration from these durations unless it is already decided; returns it."""
        if self.target_duration is None:
            self.target_duration = target_duration_for(*durations)
        return self.target_duration

    def append(self, segment: Segment) -> None:
        """Add the next segment; sequence numbers must stay contiguous."""
        if self.ended:
            raise ValueError("playlist has ended")
        if self.segments and segment.sequence != self.segments[-1].sequence + 1:
            raise ValueError(
                f"segment sequence {segment.sequence} does not follow "
                f"{self.segments[-1].sequence}"
            )
        target = self.decide_target(segment.duration)
        if _nearest_integer(segment.duration) > target:
            self.overlong_segments += 1
        self.segments.append(segment)

    @property
    def next_sequence(self) -> int:
        return self.segments[-1].sequence + 1 if self.segments else 0

    def trim(self, keep: int) -> list[Segment]:
        """Forget all but the last ``keep`` segments; returns the forgotten ones."""
        if keep < 0:
            raise ValueError("keep must be >= 0")
        cut = max(0, len(self.segments) - keep)
        removed = self.segments[:cut]
        self.discontinuity_sequence += sum(1 for s in removed if s.discontinuity)
        del self.segments[:cut]
        return removed

    def render_live(self, window: int) -> str:
        """Sliding-window playlist with the last ``window`` segments."""
        if window < 1:
            raise ValueError("window must be >= 1")
        start = max(0, len(self.segments) - window)
        disc_seq = self.discontinuity_sequence + sum(
            1 for s in self.segments[:start] if s.discontinuity
        )
        return self._render(self.segments[start:], disc_seq, playlist_type=None)

    def render_event(self) -> str:
        """Full DVR playlist: every remembered segment, EXT-X-PLAYLIST-TYPE:EVENT."""
        return self._render(self.segments, self.discontinuity_sequence, playlist_type="EVENT")

    def render_vod(self) -> str:
        """Recording playlist: like EVENT but immutable, so it always ends."""
        return self._render(
            self.segments, self.discontinuity_sequence, playlist_type="VOD", ended=True
        )

    def _render(
        self,
        segments: Sequence[Segment],
        discontinuity_sequence: int,
        playlist_type: str | None,
        ended: bool | None = None,
    ) -> str:
        if self.target_duration is None:
            raise ValueError("the target duration is not decided yet")
        media_sequence = segments[0].sequence if segments else self.next_sequence
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{HLS_VERSION}",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
        ]
        if discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
        if playlist_type:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist_type}")
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        for index, segment in enumerate(segments):
            # EXT-X-DISCONTINUITY is kept even on the first listed segment: a segment's own
            # tag counts towards its discontinuity sequence number, and the window's
            # EXT-X-DISCONTINUITY-SEQUENCE counts only tags before it.
            lines.extend(_segment_lines(segment, with_date=index == 0 or segment.discontinuity))
        if self.ended if ended is None else ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def _segment_lines(segment: Segment, with_date: bool) -> list[str]:
    """The tags and URI of one listed segment; its wall clock only where ``with_date`` asks for it."""
    lines = []
    if segment.discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    if with_date and segment.program_date_time is not None:
        lines.append("#EXT-X-PROGRAM-DATE-TIME:" + format_program_date_time(segment.program_date_time))
    lines.append(f"#EXTINF:{_format_duration(segment.duration)},")
    lines.append(segment.uri)
    return lines


def render_vod(segments: Sequence[Segment]) -> str:
    """A finished playlist of these segments (EXT-X-PLAYLIST-TYPE:VOD, ENDLIST), numbered from the first.

    Written once, complete: the target duration covers every duration (RFC 8216 4.3.3.1's
    rounding), and a discontinuity on the first segment is dropped (nothing precedes it).
    """
    if not segments:
        raise ValueError("a VOD playlist needs at least one segment")
    playlist = MediaPlaylist(target_duration=target_duration_for(*(s.duration for s in segments)))
    first = segments[0].sequence
    for i, segment in enumerate(segments):
        playlist.append(replace(segment, sequence=first + i, discontinuity=segment.discontinuity and i > 0))
    return playlist.render_vod()


# --- journals: EVENT playlists grown by appends ---------------------------------------------


def journal_header(target_duration: int) -> str:
    """The head of an append-only EVENT playlist, written with its first entry."""
    return (
        f"#EXTM3U\n#EXT-X-VERSION:{HLS_VERSION}\n"
        f"#EXT-X-TARGETDURATION:{max(1, target_duration)}\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:EVENT\n"
    )


def journal_entry(segment: Segment) -> str:
    """One segment's lines for a journal; every entry carries its wall clock when it has one."""
    return "\n".join(_segment_lines(segment, with_date=True)) + "\n"


def parse_journal(text: str) -> list[Segment]:
    """The complete entries of a journal, numbered from 0: a torn last entry (a crash mid-append) is dropped.

    Anything else that is wrong raises :class:`PlaylistParseError`, as :func:`parse_media_playlist` does.
    """
    lines = text.splitlines()
    while lines and (not lines[-1].strip() or lines[-1].startswith("#")):
        lines.pop()  # a crash between the tags and the URI of the last entry
    if not lines:
        return []
    try:
        parsed = parse_media_playlist("\n".join(lines) + "\n")
    except PlaylistParseError:
        # The last URI itself may be torn ("seg_0000"): drop it and its tags.
        while lines and not lines[-1].startswith("#EXTINF"):
            lines.pop()
        if lines:
            lines.pop()
        while lines and lines[-1].startswith("#EXT-X-") and not lines[-1].startswith("#EXT-X-PLAYLIST-TYPE"):
            lines.pop()
        parsed = parse_media_playlist("\n".join(lines) + "\n")
    return [replace(s, sequence=i) for i, s in enumerate(parsed.playlist.segments)]


@dataclass(frozen=True)
class ParsedMediaPlaylist:
    """What :func:`parse_media_playlist` recovered from a file."""

    playlist: MediaPlaylist
    playlist_type: str | None


def _parse_program_date_time(text: str, line_no: int) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PlaylistParseError(f"line {line_no}: bad EXT-X-PROGRAM-DATE-TIME {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def _parse_int(tag: str, text: str, line_no: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise PlaylistParseError(f"line {line_no}: bad {tag} {text!r}") from None


def parse_media_playlist(text: str) -> ParsedMediaPlaylist:
    """Parse a media playlist we (or a similar writer) produced.

    Used for crash recovery and tests; unknown tags are ignored, structural
    errors raise :class:`PlaylistParseError` naming the line.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise PlaylistParseError("line 1: missing #EXTM3U")
    target: int | None = None
    media_sequence = 0
    disc_sequence = 0
    playlist_type: str | None = None
    ended = False
    segments: list[Segment] = []
    pending_duration: float | None = None
    pending_disc = False
    pending_pdt: datetime | None = None
    for line_no, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            tag, _, value = line.partition(":")
            if tag == "#EXT-X-TARGETDURATION":
                target = _parse_int(tag, value, line_no)
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                if segments or pending_duration is not None:
                    raise PlaylistParseError(f"line {line_no}: {tag} after the first segment")
                media_sequence = _parse_int(tag, value, line_no)
            elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
                disc_sequence = _parse_int(tag, value, line_no)
            elif tag == "#EXT-X-PLAYLIST-TYPE":
                playlist_type = value
            elif tag == "#EXT-X-ENDLIST":
                ended = True
            elif tag == "#EXT-X-DISCONTINUITY":
                pending_disc = True
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                pending_pdt = _parse_program_date_time(value, line_no)
            elif tag == "#EXTINF":
                duration_text = value.split(",", 1)[0]
                try:
                    pending_duration = float(duration_text)
                except ValueError:
                    raise PlaylistParseError(
                        f"line {line_no}: bad EXTINF duration {duration_text!r}"
                    ) from None
            continue
        if pending_duration is None:
            raise PlaylistParseError(f"line {line_no}: URI {line!r} without #EXTINF")
        segments.append(
            Segment(
                uri=line,
                duration=pending_duration,
                sequence=media_sequence + len(segments),
                discontinuity=pending_disc,
                program_date_time=pending_pdt,
            )
        )
        pending_duration, pending_disc, pending_pdt = None, False, None
    if pending_duration is not None:
        raise PlaylistParseError(f"line {len(lines)}: #EXTINF without URI")
    if target is None:
        raise PlaylistParseError("missing #EXT-X-TARGETDURATION")
    playlist = MediaPlaylist(
        segments=segments,
        target_duration=target,
        discontinuity_sequence=disc_sequence,
        ended=ended,
    )
    return ParsedMediaPlaylist(playlist=playlist, playlist_type=playlist_type)


@dataclass(frozen=True)
class VariantStream:
    """One EXT-X-STREAM-INF entry; ``resolution`` None means audio-only."""

    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    resolution: tuple[int, int] | None = None
    codecs: str | None = None
    frame_rate: float | None = None


@dataclass(frozen=True)
class SubtitleRendition:
    """A WebVTT subtitle playlist (live captions plug in here)."""

    name: str
    language: str
    uri: str
    default: bool = False
    autoselect: bool = True
    characteristics: str | None = None  # CHARACTERISTICS (RFC 8216 4.3.4.1): players type a track by it


SUBTITLE_GROUP = "subs"


def _quote(value: str) -> str:
    if '"' in value or "\n" in value or "\r" in value:
        raise ValueError(f"quoted-string cannot contain quotes or newlines: {value!r}")
    return f'"{value}"'


def render_master(
    variants: Iterable[VariantStream], subtitles: Iterable[SubtitleRendition] = ()
) -> str:
    """Master playlist: variants (highest bandwidth first as given) and subtitles."""
    variant_list = list(variants)
    if not variant_list:
        raise ValueError("a master playlist needs at least one variant")
    subtitle_list = list(subtitles)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for sub in subtitle_list:
        lines.append(
            "#EXT-X-MEDIA:TYPE=SUBTITLES,"
            f"GROUP-ID={_quote(SUBTITLE_GROUP)},"
            f"NAME={_quote(sub.name)},"
            f"LANGUAGE={_quote(sub.language)},"
            f"DEFAULT={'YES' if sub.default else 'NO'},"
            f"AUTOSELECT={'YES' if sub.autoselect or sub.default else 'NO'},"
            + (f"CHARACTERISTICS={_quote(sub.characteristics)}," if sub.characteristics else "")
            + f"URI={_quote(sub.uri)}"
        )
    for variant in variant_list:
        attrs = [f"BANDWIDTH={variant.bandwidth}"]
        if variant.average_bandwidth is not None:
            attrs.append(f"AVERAGE-BANDWIDTH={variant.average_bandwidth}")
        if variant.codecs:
            attrs.append(f"CODECS={_quote(variant.codecs)}")
        if variant.resolution is not None:
            attrs.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
        if variant.frame_rate is not None and variant.resolution is not None:
            attrs.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        if subtitle_list:
            attrs.append(f"SUBTITLES={_quote(SUBTITLE_GROUP)}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(variant.uri)
    return "\n".join(lines) + "\n"


_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^",\s]*)(,|$)')


def _attributes(text: str, line_no: int) -> dict[str, str]:
    """An attribute list (RFC 8216 4.2): ``NAME=value`` pairs, commas allowed inside quoted strings."""
    found: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _ATTRIBUTE.match(text, pos)
        if match is None:
            raise PlaylistParseError(f"line {line_no}: bad attribute list at {text[pos:pos + 20]!r}")
        found[match.group(1)] = match.group(2).strip('"')
        pos = match.end()
    return found


def _variant(attributes: dict[str, str], uri: str, line_no: int) -> VariantStream:
    def number(name: str) -> int | None:
        value = attributes.get(name)
        if value is None:
            return None
        if not value.isdigit():
            raise PlaylistParseError(f"line {line_no}: bad {name} {value!r}")
        return int(value)

    bandwidth = number("BANDWIDTH")
    if bandwidth is None:
        raise PlaylistParseError(f"line {line_no}: #EXT-X-STREAM-INF without BANDWIDTH")
    resolution = None
    if "RESOLUTION" in attributes:
        match = re.fullmatch(r"(\d+)x(\d+)", attributes["RESOLUTION"])
        if match is None:
            raise PlaylistParseError(f"line {line_no}: bad RESOLUTION {attributes['RESOLUTION']!r}")
        resolution = (int(match.group(1)), int(match.group(2)))
    frame_rate = None
    if "FRAME-RATE" in attributes:
        if not re.fullmatch(r"\d+(\.\d+)?", attributes["FRAME-RATE"]):
            raise PlaylistParseError(f"line {line_no}: bad FRAME-RATE {attributes['FRAME-RATE']!r}")
        frame_rate = float(attributes["FRAME-RATE"])
    return VariantStream(uri=uri, bandwidth=bandwidth, average_bandwidth=number("AVERAGE-BANDWIDTH"),
                         resolution=resolution, codecs=attributes.get("CODECS"), frame_rate=frame_rate)


def parse_master(text: str) -> list[VariantStream]:
    """The variants of a master playlist, in the order listed; other tags (subtitles...) are ignored."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise PlaylistParseError("line 1: missing #EXTM3U")
    variants: list[VariantStream] = []
    pending: tuple[dict[str, str], int] | None = None
    for line_no, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#EXT-X-STREAM-INF:"):
            if pending is not None:
                raise PlaylistParseError(f"line {line_no}: #EXT-X-STREAM-INF without URI")
            pending = (_attributes(line[len("#EXT-X-STREAM-INF:"):], line_no), line_no)
        elif line.startswith("#"):
            continue
        elif pending is None:
            raise PlaylistParseError(f"line {line_no}: URI {line!r} without #EXT-X-STREAM-INF")
        else:
            variants.append(_variant(pending[0], line, pending[1]))
            pending = None
    if pending is not None:
        raise PlaylistParseError(f"line {len(lines)}: #EXT-X-STREAM-INF without URI")
    return variants
