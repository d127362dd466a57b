"""The LMS as the LTI tests drive it: our app with a Moodle-like platform registered (``Lms``, made by the ``lms``
fixture of tests/lti/conftest.py), a launch as the browser makes it, the chat joined with the launch's session, and
the LMS page's frame in Chromium."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from live_server.db import Database
from live_server.settings import Settings
from tests.chat.clients import ChatClient
from tests.lti.platform import Activity, Moodle, parse_form


@dataclass
class Lms:
    client: Any  # aiohttp TestClient of our app; its session (and cookie jar) is the browser
    db: Database
    settings: Settings
    moodle: Moodle
    platform_id: int

    @property
    def tool(self) -> str:
        return str(self.client.make_url("")).rstrip("/")


async def launch(lms: Lms, activity: Activity) -> Any:
    """The browser's part: the LMS sends it to our login initiation, we send it to the platform's
    authentication endpoint, whose page auto-posts the signed launch back to us (from the LMS's origin)."""
    http = lms.client.session
    initiation = await http.get(lms.moodle.login_url(activity), allow_redirects=False)
    assert initiation.status == 302, await initiation.text()
    assert initiation.headers["Location"].startswith(lms.moodle.base + "/auth?")
    auth = await http.get(initiation.headers["Location"])
    assert auth.status == 200, await auth.text()
    action, fields = parse_form(await auth.text())
    assert action == f"{lms.tool}/lti/launch"
    return await http.post(action, data=fields, headers={"Origin": lms.moodle.base}, allow_redirects=False)


async def connect_chat(lms: Lms, slug: str, session_cookie: str | None, refused: bool = False) -> ChatClient:
    chat = ChatClient()
    headers = {"Cookie": f"live_session={session_cookie}"} if session_cookie else {}
    try:
        await chat.sio.connect(lms.tool, headers=headers, auth={"event": slug}, transports=["websocket"], wait_timeout=10)
    except Exception:
        assert refused, f"chat refused: {chat.connect_error}"
        return chat
    assert not refused, "chat accepted a stranger"
    return chat


DESKTOP = {"width": 1280, "height": 900}


async def frame_at(page: Any, path: str) -> Any:
    """The LMS's iframe once it shows our ``path``."""
    for _ in range(200):
        frame = next((f for f in page.frames if path in f.url), None)
        if frame is not None:
            await frame.wait_for_load_state()
            return frame
        await page.wait_for_timeout(50)
    raise AssertionError(f"no frame at {path}: {[f.url for f in page.frames]}")
