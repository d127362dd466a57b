"""Prometheus metrics of one process, in a registry of its own (no module-level global registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        self.dropped_frames = Counter("live_dropped_frames", "Media frames dropped by slow consumers", ["event", "consumer"], registry=r)
        self.rejected_publishes = Counter("live_rejected_publishes", "Publish attempts refused", ["protocol", "reason"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
