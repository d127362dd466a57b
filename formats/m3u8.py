"""HLS playlists (RFC 8216, and RFC 8216bis for Low-Latency HLS) as plain data: text in, plain objects out, and back.

The one m3u8 reader and writer of the code base. We own the public playlists (not ffmpeg) so that
discontinuities across reconnects, the sliding window, the DVR playlist and ENDLIST follow our
rules and we know the exact moment a segment becomes visible; the recorder's append-only journal,
the VOD playlists and master playlists, and the subtitle playlists of live captions are written
and read here too. Pure code: no I/O (files are written by their owners, atomically).

Low-Latency HLS (a live rendition of fMP4 parts from :mod:`formats.cmaf`): :func:`render_ll` writes
the playlist (parts of the last segments, preload hint, server control, delta updates, rendition
reports), and :func:`decide_reload` answers a request's delivery directives (``_HLS_msn``,
``_HLS_part``, ``_HLS_skip``): ready now, wait for a later playlist, or 400. Waiting, timeouts and
sharing one rendered text between identical requests are the caller's; this module has no clock.
Players that ignore LL tags play these playlists as plain live ones.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Iterable, Sequence

__all__ = [
    "PlaylistParseError",
    "Segment",
    "MediaPlaylist",
    "ParsedMediaPlaylist",
    "VariantStream",
    "SubtitleRendition",
    "AudioRendition",
    "carry_audio_group",
    "AUDIO_GROUP",
    "DESCRIBES_VIDEO",
    "with_audio_renditions",
    "render_master",
    "parse_master",
    "parse_media_tags",
    "parse_media_playlist",
    "render_vod",
    "journal_header",
    "journal_entry",
    "parse_journal",
    "format_program_date_time",
    "target_duration_for",
    "LlPart",
    "LlPlaylist",
    "LlSegment",
    "Reload",
    "ReloadDecision",
    "RenditionReport",
    "advance_part_limit",
    "blocking_timeout",
    "decide_reload",
    "parse_ll",
    "read_ll",
    "LlText",
    "render_ll",
    "rendition_report",
]

#: EXTINF with decimals needs version 3; nothing we emit in a plain (MPEG-TS) playlist needs more.
HLS_VERSION = 3
#: EXT-X-MAP in a media playlist without I-frames needs 6 (RFC 8216 section 7): fMP4 playlists
#: (recordings of LL-HLS runs) and LL-HLS, for which it is also enough for every other tag but
#: EXT-X-SKIP, which needs 9 (RFC 8216bis section 8).
MAP_VERSION = 6
LL_VERSION = MAP_VERSION
LL_VERSION_WITH_SKIP = 9
#: Decimal places of durations: three in plain playlists; five in LL-HLS ones, whose parts are
#: fractions of a second (as written since LL-HLS came; the LL texts are pinned by tests).
_PLACES = 3
_LL_PLACES = 5


class PlaylistParseError(ValueError):
    """A media playlist we cannot trust for crash recovery."""


@dataclass(frozen=True)
class Segment:
    """One listed media segment.

    ``sequence`` is the Media Sequence Number (contiguous within a rendition);
    ``uri`` is relative to the playlist.  ``program_date_time`` is the wall
    clock of the segment's first sample when known; it is rendered only where
    a player needs it (first listed segment and after each discontinuity).
    ``map_uri`` is the init section (``EXT-X-MAP``) an fMP4 segment is read
    with, None for MPEG-TS; it is rendered where it changes.
    """

    uri: str
    duration: float
    sequence: int
    discontinuity: bool = False
    program_date_time: datetime | None = None
    map_uri: str | None = None


def format_program_date_time(value: datetime) -> str:
    """ISO 8601 with milliseconds and an explicit UTC offset, as players expect."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _format_duration(duration: float, places: int = _PLACES) -> str:
    return f"{duration:.{places}f}"


def _media_header(version: int, target_duration: int, media_sequence: int, discontinuity_sequence: int,
                  server_tags: Iterable[str] = ()) -> list[str]:
    """The first tags of every media playlist we write; LL-HLS puts its server tags before the sequence."""
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{version}",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        *server_tags,
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    return lines


def _date_line(value: datetime) -> str:
    return "#EXT-X-PROGRAM-DATE-TIME:" + format_program_date_time(value)


def _map_line(uri: str) -> str:
    return f"#EXT-X-MAP:URI={_quote(uri)}"


def _media_segment_lines(uri: str, duration: float, discontinuity: bool, date: datetime | None,
                         parts: Iterable[str] = (), places: int = _PLACES, map_uri: str | None = None) -> list[str]:
    """One listed segment: its discontinuity, its init section when given (it applies to the segments
    after it too), its wall clock when given, its parts' lines (LL-HLS), EXTINF, URI."""
    lines = []
    if discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    if map_uri is not None:
        lines.append(_map_line(map_uri))
    if date is not None:
        lines.append(_date_line(date))
    lines.extend(parts)
    lines.append(f"#EXTINF:{_format_duration(duration, places)},")
    lines.append(uri)
    return lines


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
        version = MAP_VERSION if any(s.map_uri is not None for s in segments) else HLS_VERSION
        lines = _media_header(version, self.target_duration, media_sequence, discontinuity_sequence)
        if playlist_type:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist_type}")
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        for index, segment in enumerate(segments):
            # EXT-X-DISCONTINUITY is kept even on the first listed segment: a segment's own
            # tag counts towards its discontinuity sequence number, and the window's
            # EXT-X-DISCONTINUITY-SEQUENCE counts only tags before it.
            new_map = index == 0 or segment.map_uri != segments[index - 1].map_uri
            lines.extend(_segment_lines(segment, with_date=index == 0 or segment.discontinuity, with_map=new_map))
        if self.ended if ended is None else ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def _segment_lines(segment: Segment, with_date: bool, with_map: bool) -> list[str]:
    """The tags and URI of one listed segment; its wall clock and init section only where asked for."""
    date = segment.program_date_time if with_date else None
    return _media_segment_lines(segment.uri, segment.duration, segment.discontinuity, date,
                                map_uri=segment.map_uri if with_map else None)


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


def journal_header(target_duration: int, with_map: bool = False) -> str:
    """The head of an append-only EVENT playlist, written with its first entry (``with_map``: of fMP4 segments)."""
    lines = _media_header(MAP_VERSION if with_map else HLS_VERSION, max(1, target_duration), 0, 0)
    return "\n".join([*lines, "#EXT-X-PLAYLIST-TYPE:EVENT"]) + "\n"


def journal_entry(segment: Segment) -> str:
    """One segment's lines for a journal; every entry carries its wall clock and init section when it
    has them, so that each entry reads alone (an append knows nothing of the ones before it)."""
    return "\n".join(_segment_lines(segment, with_date=True, with_map=True)) + "\n"


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
    map_uri: str | None = None  # EXT-X-MAP applies to every segment after it, until the next one
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
            elif tag == "#EXT-X-MAP":
                map_uri = _map_uri(value, line_no)
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
                map_uri=map_uri,
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


def _map_uri(value: str, line_no: int) -> str:
    """The URI of an ``EXT-X-MAP``; a byte range of it is not something we write or read."""
    attributes = _attributes(value, line_no)
    if "BYTERANGE" in attributes:
        raise PlaylistParseError(f"line {line_no}: #EXT-X-MAP with BYTERANGE is not supported")
    uri = attributes.get("URI")
    if not uri:
        raise PlaylistParseError(f"line {line_no}: #EXT-X-MAP without URI")
    return uri


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
    forced: bool = False  # FORCED=YES: only what must be read (foreign speech, signs), shown with no choice made


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
            + ("FORCED=YES," if sub.forced else "")
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


# --- alternate audio renditions (audio description) ----------------------------------------

AUDIO_GROUP = "aud"
#: CHARACTERISTICS of an audio rendition that describes the picture (Apple's HLS authoring spec, UTI).
DESCRIBES_VIDEO = "public.accessibility.describes-video"


@dataclass(frozen=True)
class AudioRendition:
    """One ``EXT-X-MEDIA:TYPE=AUDIO`` entry of the variants' audio group.

    ``uri`` None: the audio muxed in the variant's own segments (the programme sound), which players
    play from the variant; with a URI, an audio-only playlist whose segments cover the variant's.
    """

    name: str
    language: str | None = None
    uri: str | None = None
    default: bool = False
    autoselect: bool = True
    characteristics: str | None = None


def _audio_line(rendition: AudioRendition, group: str) -> str:
    attrs = ["TYPE=AUDIO", f"GROUP-ID={_quote(group)}", f"NAME={_quote(rendition.name)}"]
    if rendition.language:
        attrs.append(f"LANGUAGE={_quote(rendition.language)}")
    attrs.append(f"DEFAULT={'YES' if rendition.default else 'NO'}")
    attrs.append(f"AUTOSELECT={'YES' if rendition.autoselect or rendition.default else 'NO'}")
    if rendition.characteristics:
        attrs.append(f"CHARACTERISTICS={_quote(rendition.characteristics)}")
    if rendition.uri is not None:
        attrs.append(f"URI={_quote(rendition.uri)}")
    return "#EXT-X-MEDIA:" + ",".join(attrs)


def with_audio_renditions(master: str, renditions: Sequence[AudioRendition], group: str = AUDIO_GROUP) -> str:
    """``master`` with its audio group replaced by ``renditions`` (none: the group removed).

    A rewrite of the text rather than a re-render, so whatever else the master carries (subtitle
    renditions, variants' attributes) is kept as it is; applying it twice gives the same text.
    Every ``EXT-X-STREAM-INF`` names the group (``AUDIO=``); the renditions go before the first variant.
    """
    lines = master.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise PlaylistParseError("line 1: missing #EXTM3U")
    if renditions and sum(1 for r in renditions if r.default) != 1:
        raise ValueError("an audio group needs exactly one DEFAULT rendition")
    kept: list[str] = []
    for line_no, line in enumerate(lines, start=1):
        if line.startswith("#EXT-X-MEDIA:") and _attributes(line[len("#EXT-X-MEDIA:"):], line_no).get("TYPE") == "AUDIO":
            continue
        if line.startswith("#EXT-X-STREAM-INF:"):
            attributes = line[len("#EXT-X-STREAM-INF:"):]
            _attributes(attributes, line_no)  # a list we cannot read is refused, not rewritten
            parts = [m.group(0).rstrip(",") for m in _ATTRIBUTE.finditer(attributes) if m.group(0)]
            parts = [p for p in parts if not p.startswith("AUDIO=")]
            if renditions:
                parts.append(f"AUDIO={_quote(group)}")
            line = "#EXT-X-STREAM-INF:" + ",".join(parts)
        kept.append(line)
    first_variant = next((i for i, line in enumerate(kept) if line.startswith("#EXT-X-STREAM-INF:")), len(kept))
    media = [_audio_line(r, group) for r in renditions]
    return "\n".join(kept[:first_variant] + media + kept[first_variant:]) + "\n"



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


def carry_audio_group(source: str, target: str) -> str:
    """``target``, a master rendered again from ``source`` (with subtitle renditions, say), given back
    ``source``'s audio group as ``with_audio_renditions`` wrote it: the AUDIO renditions before the first
    variant and every variant naming the group. Unchanged when ``source`` has no audio rendition."""
    media = [line for number, line in enumerate(source.splitlines(), start=1) if line.startswith("#EXT-X-MEDIA:")
             and _attributes(line[len("#EXT-X-MEDIA:"):], number).get("TYPE") == "AUDIO"]
    if not media:
        return target
    group = _attributes(media[0][len("#EXT-X-MEDIA:"):], 1).get("GROUP-ID", AUDIO_GROUP)
    kept: list[str] = []
    for number, line in enumerate(target.splitlines(), start=1):
        if line.startswith("#EXT-X-MEDIA:") and _attributes(line[len("#EXT-X-MEDIA:"):], number).get("TYPE") == "AUDIO":
            continue
        if line.startswith("#EXT-X-STREAM-INF:") and "AUDIO" not in _attributes(line[len("#EXT-X-STREAM-INF:"):], number):
            line += f",AUDIO={_quote(group)}"
        kept.append(line)
    first_variant = next((i for i, line in enumerate(kept) if line.startswith("#EXT-X-STREAM-INF:")), len(kept))
    return "\n".join(kept[:first_variant] + media + kept[first_variant:]) + "\n"


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


def parse_media_tags(text: str) -> list[dict[str, str]]:
    """The attribute lists of a master playlist's ``EXT-X-MEDIA`` tags (quoted values unquoted), in order."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise PlaylistParseError("line 1: missing #EXTM3U")
    found = []
    for line_no, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if line.startswith("#EXT-X-MEDIA:"):
            found.append({k: v[1:-1] if v.startswith('"') else v
                          for k, v in _attributes(line[len("#EXT-X-MEDIA:"):], line_no).items()})
    return found


# --- Low-Latency HLS (RFC 8216bis): a live rendition of fMP4 parts ---------------------------

_DECIMAL_INTEGER = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class LlPart:
    """A Partial Segment (``EXT-X-PART``): ``independent`` when it starts with a keyframe."""

    uri: str
    duration: float
    independent: bool = False


@dataclass(frozen=True)
class LlSegment:
    """A complete Media Segment and the parts it was made of (listed near the live edge only).

    ``map_uri``: its init section when it is not the playlist's (a DVR window reaching back into an
    earlier publish session); None means the playlist's ``map_uri``.
    """

    uri: str
    duration: float
    parts: tuple[LlPart, ...] = ()
    program_date_time: datetime | None = None
    discontinuity: bool = False
    map_uri: str | None = None

    def lines_without_parts(self) -> str:
        """Its lines once its parts are no longer listed, as every later render lists it: made once and
        kept on the (immutable) segment, so that rendering a DVR view once per part does not format the
        whole history again each time (80 ms per render after an hour of 2 s segments)."""
        text = self.__dict__.get("_lines_without_parts")
        if text is None:
            text = "\n".join(_media_segment_lines(self.uri, self.duration, self.discontinuity,
                                                  self.program_date_time, (), _LL_PLACES))
            object.__setattr__(self, "_lines_without_parts", text)  # not a field: equality and hash ignore it
        return text


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
    ``playlist_type`` is ``EVENT`` for a DVR view that only ever grows (as the plain-HLS DVR).
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
    playlist_type: str | None = None

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


def _ll_seconds(value: float) -> str:
    return _format_duration(value, _LL_PLACES)


def _as_written(duration: float) -> float:
    """A duration as the LL playlist writes it: where parts are listed and what a delta skips are
    decided on these, so a playlist read back (:func:`parse_ll`) renders to the same text."""
    return float(_ll_seconds(duration))


def _part_line(part: LlPart) -> str:
    line = f"#EXT-X-PART:DURATION={_ll_seconds(part.duration)},URI={_quote(part.uri)}"
    return line + ",INDEPENDENT=YES" if part.independent else line


def _skipped_segments(playlist: LlPlaylist, durations: Sequence[float], end: float) -> int:
    """Segments a delta update replaces (RFC 8216bis 6.2.5.1): those whose end is further than the
    Skip Boundary from the end of the playlist. Skipping stops at a segment with a discontinuity so
    that ``EXT-X-DISCONTINUITY-SEQUENCE`` keeps numbering the listed segments the same way."""
    skipped = 0
    position = 0.0
    for segment, duration in zip(playlist.segments, durations):
        position += duration
        if segment.discontinuity or end - position <= playlist.skip_until:
            break
        skipped += 1
    return skipped


def render_ll(playlist: LlPlaylist, *, skip: bool = False) -> str:
    """The LL-HLS media playlist; ``skip`` renders the Playlist Delta Update asked for by ``_HLS_skip``.

    Checks the rules RFC 8216bis puts on the values it writes: ``PART-HOLD-BACK`` at least three
    part targets (4.4.3.8, SHOULD; 2 is the MUST), ``CAN-SKIP-UNTIL`` at least six target durations
    (4.4.3.8, MUST). ``EXT-X-PART`` tags are listed for segments starting no more than three target
    durations from the end (6.2.2: SHOULD be removed after that) and for the segment in progress.
    Every listed segment carries its wall clock, so the first one after a skip can be placed.
    """
    if playlist.hold_back < 3 * playlist.part_target:
        raise ValueError("PART-HOLD-BACK must be at least three Part Target Durations")
    if playlist.skip_until < 6 * playlist.target_duration:
        raise ValueError("CAN-SKIP-UNTIL must be at least six Target Durations")
    durations = [_as_written(s.duration) for s in playlist.segments]
    end = sum(durations) + sum(_as_written(p.duration) for p in playlist.pending_parts)
    skipped = _skipped_segments(playlist, durations, end) if skip and not playlist.ended else 0
    server_tags = (
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"PART-HOLD-BACK={_ll_seconds(playlist.hold_back)},CAN-SKIP-UNTIL={_ll_seconds(playlist.skip_until)}",
        f"#EXT-X-PART-INF:PART-TARGET={_ll_seconds(playlist.part_target)}",
    )
    lines = _media_header(LL_VERSION_WITH_SKIP if skipped else LL_VERSION, playlist.target_duration,
                          playlist.media_sequence, playlist.discontinuity_sequence, server_tags)
    if playlist.playlist_type:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist.playlist_type}")
    # EXT-X-MAP before the first segment, and again wherever the init section changes.
    mapped = (playlist.segments[0].map_uri if playlist.segments else None) or playlist.map_uri
    lines.append(_map_line(mapped))
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    parts_from = end - 3 * playlist.target_duration
    start = 0.0
    for number, (segment, duration) in enumerate(zip(playlist.segments, durations)):
        if number >= skipped:
            map_uri = segment.map_uri or playlist.map_uri
            if start < parts_from and map_uri == mapped:
                lines.append(segment.lines_without_parts())
            else:
                parts = [_part_line(part) for part in segment.parts] if start >= parts_from else []
                lines.extend(_media_segment_lines(segment.uri, segment.duration, segment.discontinuity,
                                                  segment.program_date_time, parts, _LL_PLACES,
                                                  map_uri if map_uri != mapped else None))
            mapped = map_uri
        start += duration
    if not playlist.ended:
        if playlist.pending_parts and playlist.map_uri != mapped:
            lines.append(_map_line(playlist.map_uri))
        if playlist.pending_parts and playlist.pending_program_date_time is not None:
            lines.append(_date_line(playlist.pending_program_date_time))
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


def _ll_float(tag: str, text: str | None, line_no: int) -> float:
    if text is None:
        raise PlaylistParseError(f"line {line_no}: {tag} without its value")
    try:
        value = float(text)
    except ValueError:
        raise PlaylistParseError(f"line {line_no}: bad {tag} {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise PlaylistParseError(f"line {line_no}: bad {tag} {text!r}")
    return value


def _ll_part(value: str, line_no: int) -> LlPart:
    attributes = _attributes(value, line_no)
    uri = attributes.get("URI")
    if not uri:
        raise PlaylistParseError(f"line {line_no}: #EXT-X-PART without URI")
    return LlPart(uri, _ll_float("DURATION", attributes.get("DURATION"), line_no),
                  attributes.get("INDEPENDENT") == "YES")


def parse_ll(text: str) -> LlPlaylist:
    """Read back an LL-HLS media playlist :func:`render_ll` wrote (whole, not a delta update).

    For nodes that serve a live run they do not package (role ``web``): the playlist file the
    packager replaces on every part is read into the structure the packager keeps in memory, so the
    blocking reload is decided and the delta update rendered as on the ingest node
    (``render_ll(parse_ll(render_ll(p))) == render_ll(p)``, delta included). Parts of segments the
    text lists without them are not known (``parts=()``), as a player does not know them either.
    """
    return read_ll(text).playlist


@dataclass(frozen=True)
class LlText:
    """A playlist text :func:`read_ll` read, with where each segment's lines end: the next version of
    the same file is read from the first segment that differs (a DVR playlist only changes at its end)."""

    text: str
    playlist: LlPlaylist
    segments: tuple[LlSegment, ...]  # as read, each with its init section
    ends: tuple[int, ...]  # offset after each segment's URI line
    lines: tuple[int, ...]  # line number of each segment's URI line
    header: tuple[tuple[str, object], ...]  # what the tags before the first segment said
    segments_read: int = 0  # segments this read parsed (the others were the previous version's)


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix, by halving (each comparison in C)."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while high - low > 1:
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low


def read_ll(text: str, previous: LlText | None = None) -> LlText:
    """:func:`parse_ll`, resuming from ``previous`` (the same file's last version) where the texts agree.

    A segment's lines before the first difference are the previous version's segment; the rest is
    parsed. Errors raise :class:`PlaylistParseError` naming the line."""
    if not text.startswith("#EXTM3U"):
        raise PlaylistParseError("line 1: missing #EXTM3U")
    fields: dict[str, object] = {}
    segments: list[LlSegment] = []
    ends: list[int] = []
    numbers: list[int] = []
    current_map: str | None = None
    first_line, offset = 1, 0
    if previous is not None and previous.segments:
        agreed = _common_prefix(previous.text, text)
        kept = bisect.bisect_right(previous.ends, agreed)
        if kept:
            fields = dict(previous.header)
            segments = list(previous.segments[:kept])
            ends, numbers = list(previous.ends[:kept]), list(previous.lines[:kept])
            current_map = segments[-1].map_uri
            first_line, offset = numbers[-1] + 1, ends[-1]
    lines = text[offset:].splitlines(keepends=True)  # from where the previous version's segments end
    if offset == 0:
        if lines[0].strip() != "#EXTM3U":
            raise PlaylistParseError("line 1: missing #EXTM3U")
        offset, lines, first_line = len(lines[0]), lines[1:], 2
    header: tuple[tuple[str, object], ...] | None = tuple(fields.items()) if segments else None
    parts: list[LlPart] = []
    date: datetime | None = None
    discontinuity = False
    duration: float | None = None
    reports: list[RenditionReport] = []
    hint: str | None = None
    ended = False
    read = 0
    for line_no, raw in enumerate(lines, start=first_line):
        offset += len(raw)
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            if duration is None:
                raise PlaylistParseError(f"line {line_no}: URI {line!r} without #EXTINF")
            if header is None:
                header = tuple(fields.items())
            segments.append(LlSegment(line, duration, tuple(parts), date, discontinuity, current_map))
            ends.append(offset)
            numbers.append(line_no)
            read += 1
            parts, date, discontinuity, duration = [], None, False, None
            continue
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-PART":
            parts.append(_ll_part(value, line_no))
        elif tag == "#EXTINF":
            duration = _ll_float("EXTINF duration", value.split(",", 1)[0], line_no)
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            date = _parse_program_date_time(value, line_no)
        elif tag == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif tag == "#EXT-X-MAP":
            current_map = _map_uri(value, line_no)
        elif tag == "#EXT-X-TARGETDURATION":
            fields["target_duration"] = _parse_int(tag, value, line_no)
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            fields["media_sequence"] = _parse_int(tag, value, line_no)
        elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
            fields["discontinuity_sequence"] = _parse_int(tag, value, line_no)
        elif tag == "#EXT-X-PLAYLIST-TYPE":
            fields["playlist_type"] = value
        elif tag == "#EXT-X-SERVER-CONTROL":
            control = _attributes(value, line_no)
            fields["part_hold_back"] = _ll_float("PART-HOLD-BACK", control.get("PART-HOLD-BACK"), line_no)
            fields["can_skip_until"] = _ll_float("CAN-SKIP-UNTIL", control.get("CAN-SKIP-UNTIL"), line_no)
        elif tag == "#EXT-X-PART-INF":
            fields["part_target"] = _ll_float("PART-TARGET", _attributes(value, line_no).get("PART-TARGET"), line_no)
        elif tag == "#EXT-X-SKIP":
            raise PlaylistParseError(f"line {line_no}: a delta update (#EXT-X-SKIP) cannot be read back whole")
        elif tag == "#EXT-X-PRELOAD-HINT":
            hint = _attributes(value, line_no).get("URI")
        elif tag == "#EXT-X-RENDITION-REPORT":
            report = _attributes(value, line_no)
            reports.append(RenditionReport(report.get("URI", ""),
                                           _parse_int("LAST-MSN", report.get("LAST-MSN", ""), line_no),
                                           _parse_int("LAST-PART", report.get("LAST-PART", ""), line_no)))
        elif tag == "#EXT-X-ENDLIST":
            ended = True
    if duration is not None:
        raise PlaylistParseError(f"line {first_line + len(lines) - 1}: #EXTINF without URI")
    target, part_target = fields.get("target_duration"), fields.get("part_target")
    if not isinstance(target, int):
        raise PlaylistParseError("missing #EXT-X-TARGETDURATION")
    if not isinstance(part_target, float):
        raise PlaylistParseError("missing #EXT-X-PART-INF: not a Low-Latency HLS playlist")
    if current_map is None:
        raise PlaylistParseError("missing #EXT-X-MAP")
    media_sequence, discontinuity_sequence = fields.get("media_sequence", 0), fields.get("discontinuity_sequence", 0)
    playlist_type = fields.get("playlist_type")
    hold_back, skip_until = fields.get("part_hold_back"), fields.get("can_skip_until")
    assert isinstance(media_sequence, int) and isinstance(discontinuity_sequence, int)
    assert playlist_type is None or isinstance(playlist_type, str)
    assert (hold_back is None or isinstance(hold_back, float)) and (skip_until is None or isinstance(skip_until, float))
    # The defaults are kept as defaults (None), as the packager leaves them. Segments keep their init
    # section as read (rendered the same as None, "the playlist's"): nothing to copy per segment.
    if hold_back is not None and _ll_seconds(hold_back) == _ll_seconds(3 * part_target):
        hold_back = None
    if skip_until is not None and _ll_seconds(skip_until) == _ll_seconds(6.0 * target):
        skip_until = None
    playlist = LlPlaylist(
        target_duration=target, part_target=part_target, map_uri=current_map, media_sequence=media_sequence,
        segments=tuple(segments),
        pending_parts=tuple(parts), preload_hint=hint, pending_program_date_time=date if parts else None,
        ended=ended, discontinuity_sequence=discontinuity_sequence, rendition_reports=tuple(reports),
        part_hold_back=hold_back, can_skip_until=skip_until, playlist_type=playlist_type,
    )
    return LlText(text, playlist, tuple(segments), tuple(ends), tuple(numbers), header or tuple(fields.items()), read)


# --- LL-HLS blocking playlist reload ----------------------------------------------------------


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
