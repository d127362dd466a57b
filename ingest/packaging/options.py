"""Settings of one live packager: segment length, renditions, window, limits.

One frozen dataclass whose field defaults are the documented defaults; the
app's settings object builds it once per event.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

__all__ = ["Rendition", "PackagerOptions", "DEFAULT_LADDER", "PASSTHROUGH_RENDITION", "ladder_for_source",
           "chosen_for_source", "ladder_wait_seconds"]

log = logging.getLogger(__name__)

#: Name (and subfolder) of the single rendition when we do not re-encode.
PASSTHROUGH_RENDITION = "source"


@dataclass(frozen=True)
class Rendition:
    """One rung of the ABR ladder; ``height`` None makes an audio-only rendition.

    ``width`` is only the nominal 16:9 width used for RESOLUTION when the
    source aspect ratio is unknown (ffmpeg scales with ``-2:height``).
    ``h264_level`` is passed to x264 *and* written in CODECS, so the master
    playlist tells the truth.
    """

    name: str
    height: int | None
    video_kbps: int = 0
    audio_kbps: int = 128
    width: int | None = None
    h264_level: str = "3.1"

    @property
    def is_audio_only(self) -> bool:
        return self.height is None

    @property
    def nominal_width(self) -> int | None:
        if self.height is None:
            return None
        if self.width is not None:
            return self.width
        return int(round(self.height * 16 / 9 / 2)) * 2


#: A sensible ladder for lecture halls: 720p/480p/240p plus audio-only for bad links.
DEFAULT_LADDER: tuple[Rendition, ...] = (
    Rendition("720p", 720, video_kbps=2800, audio_kbps=128, h264_level="3.1"),
    Rendition("480p", 480, video_kbps=1400, audio_kbps=128, h264_level="3.0"),
    Rendition("240p", 240, video_kbps=400, audio_kbps=64, h264_level="2.1"),
    Rendition("audio", None, audio_kbps=96),
)


def ladder_for_source(ladder: tuple[Rendition, ...], source_height: int | None) -> tuple[Rendition, ...]:
    """The rungs worth encoding for a source ``source_height`` pixels tall, in ladder order.

    Upscaling a rung taller than the source costs CPU (the largest encode) and gives viewers no more
    detail, so (as PeerTube and OvenMediaEngine do) only the video rungs no taller than the source
    are kept; when none is, the lowest video rung alone, so there is always one video rendition.
    Audio-only rungs are kept. An unknown height (None, or not positive) keeps the whole ladder."""
    if source_height is None or source_height <= 0:
        return ladder
    video = [r for r in ladder if r.height is not None]
    if not video:
        return ladder
    kept = {r.name for r in video if r.height is not None and r.height <= source_height}
    if not kept:
        kept = {min(video, key=lambda r: r.height or 0).name}
    return tuple(r for r in ladder if r.is_audio_only or r.name in kept)


@dataclass(frozen=True)
class PackagerOptions:
    """Everything that shapes one event's packaging; defaults are production values.

    - ``segment_seconds``: target segment length. In passthrough the source
      GOP decides the real cut (ffmpeg cuts only on keyframes), so publishers
      should use a keyframe interval equal to it. A longer keyframe interval
      gives segments as long as it (and the playlists' TARGETDURATION follows
      the first segment; see ``playlist.target_duration_for``).
    - ``ladder``: empty = passthrough (``-c copy``, one rendition named
      ``source``); otherwise x264 renditions with keyframes forced every
      ``segment_seconds`` so all renditions cut at the same instants.
    - ``live_window_seconds``: length of ``live.m3u8``; at least 3 segments
      (RFC 8216 6.2.2 wants 3 target durations); 12 s = 6 x 2 s.
    - ``dvr``: also write ``dvr.m3u8`` (EVENT playlist with every segment).
    - ``keep_segments``: never delete segment files (the recorder reuses
      them). When False and ``dvr`` is off, files older than twice the
      window are deleted.
    - ``probesize`` / ``analyzeduration_us`` / ``fpsprobesize 0``: enough
      to see the first keyframe, bounded so a missing audio track delays
      the first segment by at most ``analyzeduration_us``.
      ``-fflags nobuffer`` is deliberately NOT used: it discards the packets
      read while probing (measured: the first seconds were lost).
    - ``queue_max_bytes``: bound of the FLV tag queue in front of ffmpeg;
      past it video is dropped until the next keyframe.
    - ``max_restarts_per_minute``: crash restarts allowed before giving up.
    - ``endlist_grace_seconds``: after ``end_session``, finish the event
      (ENDLIST) if no new session starts within this time; None = only on
      ``finish()``.
    - ``passthrough_bandwidth``: BANDWIDTH advertised for the passthrough
      variant until segments have been measured.
    - ``ladder_settle_seconds``: a ladder's rungs are chosen from the tallest
      picture the publisher sends within this long of its first frame
      (:func:`ladder_wait_seconds`); 0 (RTMP): from the first picture, at once.
    """

    segment_seconds: float = 2.0
    ladder: tuple[Rendition, ...] = ()
    live_window_seconds: float = 12.0
    dvr: bool = True
    keep_segments: bool = True
    x264_preset: str = "veryfast"
    probesize: int = 1_000_000
    analyzeduration_us: int = 1_000_000
    max_interleave_delta_us: int = 1_000_000
    queue_max_bytes: int = 8 * 1024 * 1024
    max_restarts_per_minute: int = 3
    restart_backoff_seconds: float = 0.2
    stop_timeout_seconds: float = 5.0
    #: a keyframe that must close a segment was fed this long ago and ffmpeg has listed nothing
    #: since: it is hung, kill it (None: 3 segments, at least 6 s). Judged from the media, so a
    #: long encoder GOP (10 s, 20 s) is waited for, not mistaken for a hang.
    hung_after_seconds: float | None = None
    endlist_grace_seconds: float | None = None
    passthrough_bandwidth: int = 3_000_000
    stderr_lines_kept: int = 30
    ladder_settle_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.segment_seconds <= 0:
            raise ValueError("segment_seconds must be > 0")
        names = [r.name for r in self.ladder]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate rendition names: {names}")
        for name in names:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"bad rendition name {name!r}")
        if self.ladder and all(r.is_audio_only for r in self.ladder):
            raise ValueError("a ladder needs at least one video rendition")
        if self.queue_max_bytes < 64 * 1024:
            raise ValueError("queue_max_bytes must be >= 64 KiB")
        if self.ladder_settle_seconds < 0:
            raise ValueError("ladder_settle_seconds must be >= 0")

    @property
    def hung_after(self) -> float:
        return self.hung_after_seconds if self.hung_after_seconds is not None else max(6.0, 3 * self.segment_seconds)

    @property
    def passthrough(self) -> bool:
        return not self.ladder

    @property
    def rendition_names(self) -> tuple[str, ...]:
        if self.passthrough:
            return (PASSTHROUGH_RENDITION,)
        return tuple(r.name for r in self.ladder)

    def for_source_height(self, source_height: int | None) -> "PackagerOptions":
        """These options with the ladder :func:`ladder_for_source` keeps for that source (passthrough
        and an unknown height: unchanged). Applying it twice with the same height changes nothing."""
        if self.passthrough:
            return self
        ladder = ladder_for_source(self.ladder, source_height)
        return self if ladder == self.ladder else replace(self, ladder=ladder)

    @property
    def window_segments(self) -> int:
        """Segments in ``live.m3u8``: 6 for 2 s segments, never fewer than 3."""
        return max(3, math.ceil(self.live_window_seconds / self.segment_seconds - 1e-9))


def chosen_for_source(options: PackagerOptions, source_height: int | None, label: str) -> PackagerOptions:
    """The options a ladder's ffmpeg starts with for a source ``source_height`` tall
    (:meth:`PackagerOptions.for_source_height`), saying once which rungs it skips and why."""
    chosen = options.for_source_height(source_height)
    if chosen is not options:
        skipped = [r.name for r in options.ladder if r not in chosen.ladder]
        log.info("%s: source is %sp tall: not encoding %s (no rung taller than the source, the lowest one at least)",
                 label, source_height, "/".join(skipped))
    return chosen


def ladder_wait_seconds(options: PackagerOptions, tallest_height: int | None, waited: float) -> float:
    """How much longer a ladder's first ffmpeg start waits for a taller picture (0: choose the rungs now),
    ``waited`` seconds after the session's first media frame, the tallest picture so far ``tallest_height``.

    The rungs are chosen once for the event (:func:`chosen_for_source`): viewers' players hold the master
    playlist, so a rung must neither appear nor disappear once media flows. An RTMP encoder's first
    picture is its real size, so its ladder is chosen at once (``ladder_settle_seconds`` 0). A browser
    publishing over WebRTC (WHIP) starts its encoder below its camera's size while it probes the bandwidth
    (240 or 360 lines for a 480-line camera) and scales up within seconds: chosen from that first picture,
    the event would never get its taller rungs. So where the source can change its size, the first start
    waits up to ``ladder_settle_seconds`` (from the first frame) for the tallest picture, and no longer
    than needed: as soon as a picture is tall enough to keep every rung, there is nothing more to wait for.

    Waiting rather than starting at once and restarting ffmpeg with more rungs at the first increase:
    a restart after segments (or LL-HLS parts) are listed would add renditions with no media beside
    those that have some, the ones viewers' masters lack. The wait costs the WHIP publisher's first
    segment up to that long (nothing for RTMP), and no latency: the supervisor then starts ffmpeg at
    the latest keyframe queued (a resolution change is one), not at the first frame of the wait.
    """
    if options.passthrough or options.ladder_settle_seconds <= 0:
        return 0.0
    if options.for_source_height(tallest_height) is options:  # every rung kept (or the height unknown)
        return 0.0
    return max(0.0, options.ladder_settle_seconds - waited)
