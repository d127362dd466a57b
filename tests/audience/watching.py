"""What the audience tests share: a clock the test moves (the audience's minutes and slots follow it), an event with
live playlists on disk, players with their own cookies, a minute of watching, and axe-core on the Audience tab."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from live_server import events as ev
from live_server.db import Database
from live_server.layout import live_run_folder
from live_server.models import User, Visibility, utcnow
from tests.support import Account

PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg_000000.ts\n"
MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000000\nsource/live.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=500000\n720p/live.m3u8\n"
#: An hour ago, on a minute boundary: the audience's minutes never meet the chat's real ones.
BASE = (int(utcnow().timestamp()) // 60 - 60) * 60


class Clock:
    """The audience's clock: ``at(minute, second)`` from ``BASE``."""

    def __init__(self) -> None:
        self.now = float(BASE)

    def __call__(self) -> float:
        return self.now

    def at(self, minute: int, second: float = 0.0) -> None:
        self.now = BASE + minute * 60 + second


def live_event(db: Database, media_dir: Path, owner_id: int, title: str = "Lecture", **fields: Any) -> dict[str, Any]:
    """An event marked live with its master, two renditions and a subtitles playlist on disk (no encoder needed:
    what is measured is who polls them)."""
    def work(session: Any) -> tuple[int, str, Any]:
        owner = session.get(User, owner_id)
        event = ev.create_event(session, owner, ev.EventCreate(title=title, **fields))
        event.started_at = utcnow()
        return event.id, event.slug, event.started_at

    event_id, slug, started_at = db.transaction(work)
    run = live_run_folder(media_dir, event_id, started_at)
    for rendition in ("source", "720p", "subtitles"):
        (run / rendition).mkdir(parents=True)
        (run / rendition / "live.m3u8").write_text(PLAYLIST)
    (run / "master.m3u8").write_text(MASTER)
    return {"id": event_id, "slug": slug}


@dataclass
class Player:
    """One browser: its own cookie jar (the ``live_viewer`` cookie, and a login session if it logged in)."""

    http: aiohttp.ClientSession
    base: str
    slug: str

    async def start(self) -> None:
        async with self.http.get(f"{self.base}/live/{self.slug}/master.m3u8") as resp:
            assert resp.status == 200, await resp.text()

    async def poll(self, rendition: str = "source", captions: bool = False) -> None:
        """A playlist poll; ``captions``: as our player sends it while it shows captions (the socket overlay)."""
        headers = {"X-Live-Captions": "1"} if captions else {}
        async with self.http.get(f"{self.base}/live/{self.slug}/{rendition}/live.m3u8", headers=headers) as resp:
            assert resp.status == 200, await resp.text()

    async def login(self, account: Account) -> str:
        async with self.http.post(f"{self.base}/api/v1/auth/login",
                                  json={"username": account.username, "password": account.password}) as resp:
            assert resp.status == 200, await resp.text()
            return str((await resp.json())["csrf_token"])


def public() -> dict[str, Any]:
    return {"visibility": Visibility.PUBLIC}


SLOTS = (0, 10, 20, 30, 40, 50)  # a poll in each 10 s slot: a full minute watched


async def watch(players: list[tuple[Player, str]], clock: Clock, minute: int) -> None:
    for second in SLOTS:
        clock.at(minute, second)
        for player, rendition in players:
            if rendition == "720p+captions":  # captions shown by the player's overlay: it says so on its polls
                await player.poll("720p", captions=True)
            else:
                await player.poll(rendition)


AXE_WCAG = """async (selector) => {
  const result = await axe.run(selector, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
                                          resultTypes: ["violations"]});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
}"""


async def axe(page: Any, selector: str) -> list[dict[str, Any]]:
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.add_script_tag(url="/vendor/axe.min.js")
    return list(await page.evaluate(AXE_WCAG, selector))
