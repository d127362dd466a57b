"""Recordings tests reuse the ingest fixture: a running app with RTMP on a free port and a lecturer."""

from tests.ingest.live import live  # noqa: F401  (fixture)
