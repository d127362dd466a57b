"""Audience insight (issue 21): who watched an event live or its recording, for how long, and what was rewatched.

Collected in memory from what the server already sees (playlist polls, replay beacons), merged across
processes through Redis, written in batches, served to the event's owner; per-viewer rows are reduced
to counts after ``audience_retention_days``. Imports the ground floor only.
"""
