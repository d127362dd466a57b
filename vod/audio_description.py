"""Audio description as pure code: descriptions in, speech placement and ffmpeg/espeak-ng command lines out.

A recording's audio-description track is an alternate HLS audio rendition: the programme sound with a
voice describing what is shown. It comes either from an uploaded audio file (already mixed, aligned
with the recording) or from a WebVTT ``descriptions`` text, spoken offline by espeak-ng and mixed over
the programme with ducking (the programme is lowered while the voice speaks: ``sidechaincompress``
keyed by the voice). Either way it is cut into one segment per video segment, at the video segments'
own boundaries, with the programme audio's timestamps, so a player switches between the original and
the described sound at any moment. The asyncio shell that runs these is ``vod/audio_descriptions.py``.

Times are on the recording's full timeline (before any trim), as its captions are.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from formats import webvtt
from formats.cmaf import AAC_FRAME_SAMPLES, audio_fragment, audio_init_segment, parse_adts

__all__ = [
    "DescriptionsError", "MAX_CUES", "MAX_CUE_CHARACTERS", "VOICE_SPEED", "Placement", "parse_descriptions",
    "duration_mismatch", "espeak_voices", "voice_for", "speech_args", "place", "boundaries", "mix_args",
    "package_args", "ACCEPTED_AUDIO_DEMUXERS", "AAC_PRIMING", "frame_counts", "adts_fragments",
]

MAX_CUES = 5000
MAX_CUE_CHARACTERS = 1000
VOICE_SPEED = 165  # words per minute: espeak-ng's 175 is quick for a description between two sentences
#: An uploaded track may differ from the recording by this much (seconds, or this share of the length, the larger).
TOLERANCE_SECONDS = 2.0
TOLERANCE_SHARE = 0.02
#: Demuxers an uploaded audio track may be read with: audio files and the containers lectures come in.
#: Never playlists or lists (HLS, DASH, ffconcat), which would make ffmpeg open other files.
ACCEPTED_AUDIO_DEMUXERS = ("wav", "mp3", "ogg", "flac", "mov", "matroska", "aac", "mpegts", "asf", "avi", "w64", "aiff")

#: Samples of silence ffmpeg's AAC encoder puts before the sound (its first frame's pts is -1024).
AAC_PRIMING = 1024

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


class DescriptionsError(ValueError):
    """A descriptions text that cannot be spoken; the message names the line, for the lecturer."""


def parse_descriptions(text: str, recording_seconds: float | None = None) -> list[webvtt.Cue]:
    """The cues of a WebVTT descriptions text, checked block by block with ``formats.webvtt`` so that an
    error names its line; cues sorted by start. Refuses an empty file, empty cues and cues starting after
    the recording's end."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").split("\n")
    if not lines or not lines[0].startswith("WEBVTT") or (len(lines[0]) > 6 and lines[0][6] not in " \t"):
        raise DescriptionsError("line 1: a WebVTT file starts with WEBVTT")
    cues: list[webvtt.Cue] = []
    for first, block in itertools.islice(webvtt.text_blocks(lines), 1, None):  # the first block is the header
        start_line = first + 1
        if block[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        timing = 0 if "-->" in block[0] else 1
        if timing >= len(block) or "-->" not in block[timing]:
            raise DescriptionsError(f"line {start_line + min(timing, len(block) - 1)}: a cue needs a timing line "
                                    "(00:00:01.000 --> 00:00:04.000)")
        try:
            _, parsed = webvtt.parse("WEBVTT\n\n" + "\n".join(block))
        except (webvtt.WebVttError, ValueError) as exc:
            raise DescriptionsError(f"line {start_line + timing}: {exc}") from None
        cue = parsed[0]
        text_line = start_line + timing + 1
        if not cue.text.strip():
            raise DescriptionsError(f"line {start_line + timing}: the cue has no text to speak")
        if len(cue.text) > MAX_CUE_CHARACTERS:
            raise DescriptionsError(f"line {text_line}: a description is limited to {MAX_CUE_CHARACTERS} characters")
        if recording_seconds is not None and cue.start >= recording_seconds:
            raise DescriptionsError(f"line {start_line + timing}: the cue starts at {cue.start:.3f} s, after the end of "
                                    f"the recording ({recording_seconds:.3f} s)")
        cues.append(cue)
        if len(cues) > MAX_CUES:
            raise DescriptionsError(f"line {start_line}: at most {MAX_CUES} descriptions")
    if not cues:
        raise DescriptionsError(f"line {len(lines)}: the file has no cue")
    return sorted(cues, key=lambda c: c.start)


def duration_mismatch(audio_seconds: float | None, recording_seconds: float) -> str | None:
    """Why an uploaded track does not fit the recording (None when it does)."""
    if audio_seconds is None:
        return "the audio file does not say how long it is"
    tolerance = max(TOLERANCE_SECONDS, TOLERANCE_SHARE * recording_seconds)
    if abs(audio_seconds - recording_seconds) > tolerance:
        return (f"the audio lasts {audio_seconds:.1f} s and the recording {recording_seconds:.1f} s: "
                f"they may differ by {tolerance:.1f} s at most")
    return None


def espeak_voices(listing: str) -> frozenset[str]:
    """Language codes of ``espeak-ng --voices`` (its second column: ``fr-fr``, ``en-gb``...), with their
    primary subtags (``fr``, ``en``)."""
    codes: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            code = fields[1].lower()
            codes.add(code)
            codes.add(code.split("-")[0])
    return frozenset(codes)


def voice_for(language: str, voices: frozenset[str]) -> str | None:
    """The espeak-ng voice for a language code (``fr``, ``en-GB``), or None when espeak-ng has none."""
    if not _LANGUAGE.match(language):
        return None
    code = language.lower()
    if code in voices:
        return code
    primary = code.split("-")[0]
    return primary if primary in voices else None


def speech_args(espeak: str, voice: str, output: Path) -> list[str]:
    """espeak-ng speaking the text it reads on stdin into a WAV file (22,050 Hz mono).

    The text comes on stdin, never as an argument: a description starting with ``-`` is not an option.
    """
    return [espeak, "-v", voice, "-s", str(VOICE_SPEED), "-w", str(output), "--stdin"]


@dataclass(frozen=True)
class Placement:
    """Where a description is spoken on the timeline (seconds) and for how long."""

    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


def place(starts: Sequence[float], durations: Sequence[float]) -> list[Placement]:
    """Each description at its cue's start, or, when the previous one is still being spoken, right after
    it: two voices never talk at once (the later ones shift, in order)."""
    placed: list[Placement] = []
    cursor = 0.0
    for start, duration in zip(starts, durations):
        at = max(start, cursor)
        placed.append(Placement(round(at, 6), duration))
        cursor = at + duration
    return placed


def boundaries(durations: Sequence[float], lead: float = 0.0) -> list[float]:
    """Where the rendition's segments are cut, from the start of the audio: the video segments' own
    boundaries (``lead``: how far the first video segment starts after the audio does)."""
    cuts, t = [], lead
    for duration in durations[:-1]:
        t += duration
        cuts.append(round(t, 6))
    return cuts


def _common_head(ffmpeg: str) -> list[str]:
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]


def _segment_tail(offset: float, cuts: Sequence[float], output_pattern: Path) -> list[str]:
    """AAC cut at ``cuts`` into MPEG-TS segments whose timestamps are the programme's (``offset``: the
    first sample's time on the video's clock); ``-muxdelay 0``: the MPEG-TS muxer adds no delay of its own."""
    return ["-c:a", "aac", "-b:a", "128k", "-output_ts_offset", f"{offset:.6f}", "-muxdelay", "0", "-muxpreload", "0",
            "-f", "segment", "-segment_format", "mpegts",
            *(["-segment_times", ",".join(f"{c:.6f}" for c in cuts)] if cuts else []),
            "-segment_start_number", "0", str(output_pattern)]


def _adts_tail(output: Path) -> list[str]:
    """The whole run as one AAC (ADTS) stream, cut and put in fMP4 fragments by us (:func:`frame_counts`):
    ffmpeg's segment muxer cannot write fragments of one track with one shared init segment."""
    return ["-c:a", "aac", "-b:a", "128k", "-f", "adts", str(output)]


def frame_counts(frames: int, frame_seconds: float, first: float, cuts: Sequence[float]) -> list[int]:
    """How many of ``frames`` AAC frames (``frame_seconds`` each, the first starting at ``first`` s from the
    audio's start: minus the encoder priming) go in each segment cut at ``cuts``: a frame goes in the segment
    where it starts, as ffmpeg's segment muxer puts MPEG-TS packets. Raises ValueError when a segment would
    get none."""
    counts = [0] * (len(cuts) + 1)
    for index in range(frames):
        counts[bisect.bisect_right(cuts, first + index * frame_seconds + 1e-9)] += 1
    if not all(counts):
        raise ValueError(f"an audio segment would be empty (AAC frames per segment: {counts})")
    return counts


def adts_fragments(adts: bytes, start: int, cuts: Sequence[float], sample_rate: int) -> tuple[bytes, list[bytes]]:
    """A run's described sound (what :func:`mix_args` / :func:`package_args` wrote with ``fmp4``: one ADTS
    stream from the programme audio's first sample, after the encoder's priming frame) as an audio-only init
    section and one fMP4 fragment per video segment, cut at ``cuts`` (seconds from the audio's start).

    ``start`` is where the programme's audio starts on its own clock (its ``tfdt``, in samples at
    ``sample_rate``): the fragments' decode times are the programme's, so a player switching renditions
    lands on the same instant. The priming frame goes a frame before ``start``, where the encoder meant it;
    when ``start`` is too early for that (a decode time cannot be negative), it is dropped.
    Raises ValueError when the stream is not AAC at ``sample_rate`` or a segment would get no frame."""
    config, frames = parse_adts(adts)
    if config.sample_rate != sample_rate:
        raise ValueError(f"the described sound is at {config.sample_rate} Hz, the programme at {sample_rate} Hz")
    first = start - AAC_PRIMING
    while first < 0 and frames:
        frames, first = frames[1:], first + AAC_FRAME_SAMPLES
    counts = frame_counts(len(frames), AAC_FRAME_SAMPLES / sample_rate, (first - start) / sample_rate, cuts)
    fragments, used = [], 0
    for sequence, count in enumerate(counts, start=1):
        fragments.append(audio_fragment(sequence, config, first + used * AAC_FRAME_SAMPLES, frames[used:used + count]))
        used += count
    return audio_init_segment(config), fragments


def _programme_format(sample_rate: int, channels: int) -> str:
    layout = "mono" if channels == 1 else "stereo"
    return f"aformat=sample_fmts=fltp:sample_rates={sample_rate}:channel_layouts={layout}"


def mix_args(ffmpeg: str, segments: Sequence[Path], speech: Path, speech_from: float, seconds: float, offset: float,
             cuts: Sequence[float], sample_rate: int, channels: int, output_pattern: Path, fmp4: bool = False) -> list[str]:
    """The programme sound of ``segments`` (MPEG-TS, joined byte for byte: timestamps run on; ``fmp4``: an init
    section then its fMP4 fragments, and the output one ADTS file at ``output_pattern``) with the
    speech track (``speech``, from ``speech_from`` s: where these segments start on the recording's
    timeline) mixed over it, the programme ducked while the voice speaks, cut at ``cuts``.

    Ducking: ``sidechaincompress`` keyed by the voice (threshold -40 dBFS, ratio 10): the programme drops
    by up to ~20 dB while a description is spoken and comes back over 400 ms. The programme's sample
    rate and channels are kept, so switching renditions does not change the audio format.
    """
    programme = _programme_format(sample_rate, channels)
    graph = (f"[0:a:0]{programme},apad=whole_dur={seconds:.6f}[programme];"
             f"[1:a:0]{programme},asplit=2[key][voice];"
             "[programme][key]sidechaincompress=threshold=0.01:ratio=10:attack=10:release=400[ducked];"
             "[ducked][voice]amix=inputs=2:duration=first:normalize=0,"
             f"atrim=duration={seconds:.6f}[out]")
    tail = _adts_tail(output_pattern) if fmp4 else _segment_tail(offset, cuts, output_pattern)
    return [*_common_head(ffmpeg), "-protocol_whitelist", "file,concat", "-f", "mp4" if fmp4 else "mpegts",
            "-i", "concat:" + "|".join(str(s) for s in segments),
            "-ss", f"{speech_from:.6f}", "-t", f"{seconds:.6f}", "-f", "wav", "-i", str(speech),
            "-filter_complex", graph, "-map", "[out]", *tail]


def package_args(ffmpeg: str, audio: Path, demuxer: str, audio_from: float, seconds: float, offset: float,
                 cuts: Sequence[float], sample_rate: int, channels: int, output_pattern: Path, fmp4: bool = False) -> list[str]:
    """An uploaded, already mixed track (read with the demuxer its probe accepted, from the one local file)
    from ``audio_from`` s for ``seconds``, padded with silence if it is short, cut like :func:`mix_args`
    (``fmp4``: written as one ADTS file, likewise)."""
    graph = (f"[0:a:0]{_programme_format(sample_rate, channels)},apad=whole_dur={seconds:.6f},"
             f"atrim=duration={seconds:.6f}[out]")
    return [*_common_head(ffmpeg), "-protocol_whitelist", "file", "-format_whitelist", ",".join(ACCEPTED_AUDIO_DEMUXERS),
            "-f", demuxer, "-ss", f"{audio_from:.6f}", "-i", str(audio),
            "-filter_complex", graph, "-map", "[out]",
            *(_adts_tail(output_pattern) if fmp4 else _segment_tail(offset, cuts, output_pattern))]
