"""Prometheus metrics of one process, in a registry of its own (no module-level global registry)."""

from __future__ import annotations

from typing import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Every bounded queue between a producer and a slower consumer, as the ``consumer`` label of
# ``live_dropped_frames_total``: what its unit is ("frames") depends on the queue (FLV tags, PCM
# chunks, RTP frames, Socket.IO packets); that it is not zero is what to watch.
DROP_CONSUMERS = ("packager", "caption_decoder", "recognizer", "whip_converter", "chat_fanout")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric the app exports; components get this object and update their own series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "live_http_requests", "HTTP requests handled", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "live_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.login_failures = Counter("live_login_failures", "Failed login attempts", registry=r)
        self.live_streams = Gauge("live_streams", "Events currently live in this process", registry=r)
        self.viewers = Gauge("live_viewers", "Distinct viewers per live event", ["event"], registry=r)
        self.ingest_bitrate = Gauge("live_ingest_bitrate_bps", "Ingest bitrate per stream", ["event"], registry=r)
        self.ingest_fps = Gauge("live_ingest_fps", "Ingest frame rate per stream", ["event"], registry=r)
        self.ingest_keyframe_interval = Gauge(
            "live_ingest_keyframe_interval_seconds", "Seconds between keyframes per stream", ["event"], registry=r
        )
        self.dropped_frames = Counter(
            "live_dropped_frames", "Items dropped by a bounded queue whose consumer fell behind (packager feed: FLV tags; "
            "caption decoder: audio tags; recognizer: audio chunks; WHIP converters: frames; chat fan-out: packets)",
            ["consumer"], registry=r,
        )
        for consumer in DROP_CONSUMERS:  # exported at 0 from the start, so rate() and alerts see every queue
            self.dropped_frames.labels(consumer=consumer)
        self.rejected_publishes = Counter("live_rejected_publishes", "Publish attempts refused", ["protocol", "reason"], registry=r)
        self.caption_rtf = Gauge(
            "live_caption_real_time_factor", "Recognizer CPU seconds per audio second, per captioned stream", ["event"], registry=r
        )
        self.caption_dropped_chunks = Counter(
            "live_caption_dropped_chunks", "Audio chunks dropped because a recognizer fell behind", registry=r
        )
        self.caption_delay = Histogram(
            "live_caption_delay_seconds", "From the end of speech (wall clock of its media) to its final cue",
            buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0), registry=r,
        )
        self.transcriptions_running = Gauge(
            "live_transcriptions_running", "Recording transcriptions running in this process", registry=r
        )
        self.transcription_jobs = Counter(
            "live_transcription_jobs", "Transcription attempts that ended here, by outcome (done, failed: the reason is "
            "on the job; stopped: cancelled, or put back in the queue when the server stops)", ["outcome"], registry=r,
        )
        for outcome in ("done", "failed", "stopped"):
            self.transcription_jobs.labels(outcome=outcome)
        self.transcribed_audio = Counter(
            "live_transcribed_audio_seconds", "Seconds of recordings' audio transcribed here", registry=r
        )
        self.recordings_active = Gauge("live_recordings_active", "Recordings in progress in this process", registry=r)
        self.recorded_segments = Counter("live_recorded_segments", "Segments stored into recordings", registry=r)
        self.recordings_refused = Counter(
            "live_recordings_refused", "Live runs not recorded although they should have been", ["reason"], registry=r
        )
        self.recording_disk_free = Gauge("live_recording_disk_free_bytes", "Free space on the media disk", registry=r)
        self.recording_disk_low = Gauge(
            "live_recording_disk_low", "1 while the media disk is below its free-space floor (recording_min_free_mb): "
            "no new recordings, recordings and DVR paused, /readyz 503 (alert on it)", registry=r,
        )
        self.media_write_errors = Counter(
            "live_media_write_errors", "Live playlist writes that failed (full disk, I/O error); retried at the next segment",
            registry=r,
        )
        self.recording_uploads_pending = Gauge(
            "live_recording_uploads_pending", "Ready recordings still on local disk, waiting for their upload to object storage",
            registry=r,
        )
        self.recording_upload_failures = Counter(
            "live_recording_upload_failures", "Recording uploads to object storage that failed (retried later)", registry=r
        )
        self.recording_uploaded_bytes = Counter(
            "live_recording_uploaded_bytes", "Bytes of recordings uploaded to object storage", registry=r
        )

    def drop_counter(self, consumer: str) -> Callable[[], None]:
        """The increment of one queue's drop series: bind it once at wiring, call it at each drop."""
        if consumer not in DROP_CONSUMERS:
            raise ValueError(f"unknown consumer {consumer!r}; add it to DROP_CONSUMERS")
        return self.dropped_frames.labels(consumer=consumer).inc

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)  # the app's registry (tests read its series)
