"""Each ingest adapter words the hub's protocol-neutral refusals its own way (table tests).

The hub (``ingest.live_core``) says why in a ``RefusalReason``; RTMP encoders get a NetStream
status code, WHIP clients an HTTP status. End-to-end refusals: ``rtmp/test_rtmp_refusals.py``,
``test_live.py`` and ``whip/test_whip_publish.py``.
"""

from __future__ import annotations

import pytest

from ingest.publishing import RefusalReason
from ingest.rtmp.server import refusal_code
from ingest.whip.handlers import refusal_status


@pytest.mark.parametrize(("reason", "code", "status"), [
    (RefusalReason.BAD_KEY, "NetStream.Publish.BadName", 401),
    (RefusalReason.BAD_APP, "NetStream.Publish.BadName", 409),
    (RefusalReason.ALREADY_LIVE, "NetStream.Publish.BadName", 409),
    (RefusalReason.SHUTTING_DOWN, "NetStream.Publish.Rejected", 503),
    (RefusalReason.TOO_MANY_SESSIONS, "NetStream.Publish.Rejected", 503),
])
def test_each_reason_has_its_rtmp_code_and_whip_status(reason: RefusalReason, code: str, status: int) -> None:
    assert refusal_code(reason) == code
    assert refusal_status(reason) == status


def test_every_reason_is_in_the_table() -> None:
    """A new reason must be given its words in both adapters (and a row above)."""
    assert {r.value for r in RefusalReason} == {"bad_key", "bad_app", "already_live", "shutting_down", "too_many_sessions"}
