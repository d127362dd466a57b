"""Fixtures for ingest tests: a running app with RTMP on a free port, and a logged-in lecturer (tests/ingest/live.py)."""

from tests.ingest.live import live  # noqa: F401  (fixture)
