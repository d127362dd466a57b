"""ffmpeg command lines for the live packager, and the segment-list lines it writes back.

Pure functions so the exact argument lists are golden-tested.  ffmpeg reads
FLV on stdin and writes MPEG-TS segments with the ``segment`` muxer (one
MPEG-TS muxer per rendition for the whole process, so continuity counters
are continuous across segments, as ffmpeg's ``hls`` muxer keeps them); every
rendition reports each *completed* segment as one CSV line
(``<rendition>/<file>,<start>,<end>``) on a single pipe we pass as an extra
fd.  ffmpeg flushes the line as soon as it closes the segment (measured
~20 ms after the closing keyframe enters ffmpeg), and we write the public
playlists ourselves.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Sequence

from .options import PackagerOptions, Rendition, PASSTHROUGH_RENDITION

__all__ = [
    "SEGMENT_PATTERN",
    "SegmentListEntry",
    "build_ffmpeg_args",
    "build_transcoder_args",
    "encoded_renditions",
    "segment_filename",
    "segment_number",
    "parse_segment_list_line",
    "h264_codecs",
]

#: printf pattern given to ffmpeg; numbers only grow within an event.
SEGMENT_PATTERN = "seg_%06d.ts"
_SEGMENT_RE = re.compile(r"^seg_(\d{6,})\.ts$")

AAC_LC = "mp4a.40.2"


def segment_filename(number: int) -> str:
    """The file name ffmpeg gives segment ``number``."""
    return SEGMENT_PATTERN % number


def segment_number(filename: str) -> int | None:
    """Inverse of :func:`segment_filename`; None for anything else."""
    match = _SEGMENT_RE.match(filename)
    return int(match.group(1)) if match else None


def _seconds(value: float) -> str:
    return f"{value:g}"


def h264_codecs(level: str, profile_idc: int = 0x64, constraints: int = 0) -> str:
    """RFC 6381 ``avc1.PPCCLL`` for an x264 profile/level (default High)."""
    level_idc = int(round(float(level) * 10))
    return f"avc1.{profile_idc:02x}{constraints:02x}{level_idc:02x}"


def _input_args(options: PackagerOptions) -> list[str]:
    # When we decode (ladder), frame threading would hold back thread_count-1
    # frames (measured +200 ms at 10 fps on 2 cores); slice threading has no delay.
    decoder = [] if options.passthrough else ["-thread_type", "slice"]
    return [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "warning",
        "-f",
        "flv",
        "-probesize",
        str(options.probesize),
        "-analyzeduration",
        str(options.analyzeduration_us),
        "-fpsprobesize",
        "0",
        *decoder,
        "-i",
        "pipe:0",
    ]


def _segment_output_args(
    options: PackagerOptions, output_dir: PurePath, rendition: str, start_number: int, list_fd: int
) -> list[str]:
    return [
        "-max_interleave_delta",
        str(options.max_interleave_delta_us),
        "-f",
        "segment",
        "-segment_format",
        "mpegts",
        "-segment_time",
        _seconds(options.segment_seconds),
        "-segment_time_delta",
        "0.01",
        "-segment_start_number",
        str(start_number),
        "-segment_list",
        f"pipe:{list_fd}",
        "-segment_list_type",
        "csv",
        "-segment_list_entry_prefix",
        f"{rendition}/",
        # One MPEG-TS muxer for the whole process (headers re-sent at each cut): continuity
        # counters run on across segment boundaries, so demuxers that read a playlist as one
        # stream (ffmpeg, GStreamer) see no corrupt packet there. The default (1) restarts them.
        "-individual_header_trailer",
        "0",
        str(output_dir / rendition / SEGMENT_PATTERN),
    ]


def encoded_renditions(options: PackagerOptions, has_audio: bool = True) -> tuple[Rendition, ...]:
    """The ladder renditions ffmpeg makes, in ladder order: without audio, no audio-only one
    (``-map 0:a`` would match nothing and ffmpeg would exit at every start). The rungs for the
    source's height are chosen before, in the options (``PackagerOptions.for_source_height``)."""
    return tuple(r for r in options.ladder if has_audio or not r.is_audio_only)


def _video_rendition_args(options: PackagerOptions, rendition: Rendition, label: str, has_audio: bool) -> list[str]:
    assert rendition.height is not None
    kbps = rendition.video_kbps
    audio = ["-map", "0:a?"] if has_audio else []
    audio_codec = ["-c:a", "aac", "-b:a", f"{rendition.audio_kbps}k"] if has_audio else ["-an"]
    return [
        "-map",
        f"[{label}]",
        *audio,
        "-c:v",
        "libx264",
        "-preset",
        options.x264_preset,
        "-tune",
        "zerolatency",
        "-profile:v",
        "high",
        "-level:v",
        rendition.h264_level,
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        f"{kbps}k",
        "-maxrate",
        f"{kbps}k",
        "-bufsize",
        f"{2 * kbps}k",
        "-force_key_frames",
        f"expr:gte(t,n_forced*{_seconds(options.segment_seconds)})",
        "-sc_threshold",
        "0",
        "-fps_mode",
        "passthrough",
        *audio_codec,
    ]


def _ladder_graph(renditions: Sequence[Rendition]) -> tuple[str, dict[str, str]]:
    """One decode split into a scaler per encoded video rendition: the filter graph and each one's label."""
    video = [r for r in renditions if not r.is_audio_only]
    labels = [f"v{i}" for i in range(len(video))]
    graph = f"[0:v]split={len(video)}" + "".join(f"[{label}in]" for label in labels)
    for label, rendition in zip(labels, video):
        graph += f";[{label}in]scale=-2:{rendition.height}[{label}]"
    return graph, dict(zip((r.name for r in video), labels))


def build_ffmpeg_args(
    ffmpeg: str,
    options: PackagerOptions,
    output_dir: PurePath,
    start_number: int,
    list_fd: int,
    has_audio: bool = True,
) -> list[str]:
    """Full argv for one packager process.

    ``start_number`` is the first segment file number of this process (same
    for every rendition, so renditions stay aligned by number); ``list_fd``
    is the write end of the segment-list pipe inherited by ffmpeg.
    ``has_audio`` False (a publisher without audio): only the video renditions, without audio.
    """
    if start_number < 0:
        raise ValueError("start_number must be >= 0")
    args = [ffmpeg, *_input_args(options)]
    if options.passthrough:
        args += ["-map", "0:v?", "-map", "0:a?", "-c", "copy"]
        args += _segment_output_args(options, output_dir, PASSTHROUGH_RENDITION, start_number, list_fd)
        return args
    renditions = encoded_renditions(options, has_audio)
    graph, video_labels = _ladder_graph(renditions)
    args += ["-filter_complex", graph]
    for rendition in renditions:
        if rendition.is_audio_only:
            args += ["-map", "0:a", "-vn", "-c:a", "aac", "-b:a", f"{rendition.audio_kbps}k"]
        else:
            args += _video_rendition_args(options, rendition, video_labels[rendition.name], has_audio)
        args += _segment_output_args(options, output_dir, rendition.name, start_number, list_fd)
    return args


def _flv_pipe_output_args(options: PackagerOptions, fd: int) -> list[str]:
    return [
        "-max_interleave_delta",
        str(options.max_interleave_delta_us),
        "-f",
        "flv",
        # A pipe cannot be rewound to patch the header's duration and size at the end.
        "-flvflags",
        "no_duration_filesize",
        # Each packet goes down the pipe as soon as it is muxed, not when 32 KiB have piled up.
        "-flush_packets",
        "1",
        f"pipe:{fd}",
    ]


def build_transcoder_args(ffmpeg: str, options: PackagerOptions, fds: Sequence[int],
                          has_audio: bool = True) -> list[str]:
    """Full argv of the LL-HLS transcoder: the event's FLV on stdin, each rendition of
    :func:`encoded_renditions` as FLV (H.264 + AAC) on its own inherited pipe ``fds[i]``, in ladder
    order, for our CMAF muxer (``has_audio`` False: video renditions only, without audio).

    The same encodes as the plain-HLS ladder (:func:`build_ffmpeg_args`): keyframes forced every
    ``segment_seconds`` of media time, so every rendition has them on the same frames and the
    muxer starts segments (same numbers) at the same instants in each.
    """
    if options.passthrough:
        raise ValueError("the transcoder is for ABR ladders; passthrough is muxed without ffmpeg")
    renditions = encoded_renditions(options, has_audio)
    if len(fds) != len(renditions):
        raise ValueError(f"{len(renditions)} renditions need as many pipes, got {len(fds)}")
    args = [ffmpeg, *_input_args(options)]
    graph, video_labels = _ladder_graph(renditions)
    args += ["-filter_complex", graph]
    for rendition, fd in zip(renditions, fds):
        if rendition.is_audio_only:
            args += ["-map", "0:a", "-vn", "-c:a", "aac", "-b:a", f"{rendition.audio_kbps}k"]
        else:
            args += _video_rendition_args(options, rendition, video_labels[rendition.name], has_audio)
        args += _flv_pipe_output_args(options, fd)
    return args


@dataclass(frozen=True)
class SegmentListEntry:
    """One completed segment as reported by ffmpeg (times in the process's timeline)."""

    rendition: str
    filename: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def number(self) -> int | None:
        return segment_number(self.filename)


def parse_segment_list_line(line: str) -> SegmentListEntry:
    """Parse ``<rendition>/<file>,<start>,<end>`` (CSV, RFC 4180 quoting)."""
    try:
        fields = next(csv.reader([line.strip()]))
    except (csv.Error, StopIteration):
        raise ValueError(f"bad segment list line {line!r}") from None
    if len(fields) != 3:
        raise ValueError(f"bad segment list line {line!r}")
    path, start, end = fields
    rendition, sep, filename = path.partition("/")
    if not sep or not rendition or not filename or "/" in filename:
        raise ValueError(f"segment list entry without rendition prefix: {path!r}")
    try:
        return SegmentListEntry(rendition, filename, float(start), float(end))
    except ValueError:
        raise ValueError(f"bad segment times in {line!r}") from None
