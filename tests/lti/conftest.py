"""The tool running in-process (the real app), and a Moodle-like platform (lti1p3platform) registered with it."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from live_server.db import Database
from live_server.settings import Settings
from lti import registry
from tests.lti.lms import Lms
from tests.lti.platform import Moodle


@pytest.fixture
async def lms(client: Any, db: Database, settings: Settings) -> AsyncIterator[Lms]:
    moodle = Moodle()
    tool = str(client.make_url("")).rstrip("/")
    await moodle.start(tool)
    platform = db.transaction(lambda s: registry.register_platform(s, **moodle.register_values()))
    try:
        yield Lms(client, db, settings, moodle, platform.id)
    finally:
        await moodle.close()
