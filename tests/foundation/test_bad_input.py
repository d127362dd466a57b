"""Hostile HTTP input gets a clear 4xx, logged at most once and never with a traceback (issue 17, item 13)."""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest

from tests.support import Account, login

HUGE = "9" * 22  # beyond any integer column


def _no_traceback(caplog: Any) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("path", [
    f"/api/v1/events/{HUGE}", f"/api/v1/events/{HUGE}/captions.vtt", f"/api/v1/events/{HUGE}/chat/messages",
    f"/api/v1/recordings/{HUGE}", f"/api/v1/recordings/{HUGE}/chapters", f"/vod/{HUGE}/index.m3u8",
    f"/recordings/{HUGE}", f"/embed/recordings/{HUGE}", "/api/v1/events/%C2%B2", "/vod/%C2%B2/index.m3u8",
    f"/api/v1/events/{2**31}", f"/vod/{2**31}/master.m3u8",
])
async def test_ids_beyond_the_id_columns_are_not_found(client: Any, caplog: Any, path: str) -> None:
    caplog.set_level(logging.INFO)
    resp = await client.get(path)
    assert resp.status == 404, (path, resp.status, await resp.text())
    _no_traceback(caplog)


async def test_the_largest_id_is_still_looked_up(client: Any) -> None:
    resp = await client.get(f"/api/v1/events/{2**31 - 1}")
    assert resp.status == 404 and (await resp.json())["error"]["message"] == "no such event"


async def test_deeply_nested_json_is_a_400(client: Any, caplog: Any, make_user: Callable[..., Account]) -> None:
    csrf = await login(client, make_user("lecturer"))
    caplog.set_level(logging.INFO)
    for depth in (5000, 100):
        body = "[" * depth + "]" * depth
        resp = await client.post("/api/v1/events", data=body, headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"]["code"] == "malformed_json"
    resp = await client.post("/api/v1/auth/login", data='{"username": ' + "[" * 5000, headers={"Content-Type": "application/json",
                                                                                                 "X-CSRF-Token": csrf})
    assert resp.status == 400
    resp = await client.post("/api/v1/events", json={"title": "A\u0000B"}, headers={"X-CSRF-Token": csrf})
    assert resp.status == 400 and "NUL" in (await resp.json())["error"]["message"]
    _no_traceback(caplog)


@pytest.mark.parametrize("disposition", [
    'filename="lecture\x00.mp4"', 'filename="lec\nture.mp4"', 'filename="lec\rture.mp4"',
    "filename*=utf-8''lecture%00.mp4", "filename*=utf-8''lec%0Ature.mp4",
])
async def test_control_characters_in_an_upload_filename_are_a_400(client: Any, caplog: Any, make_user: Callable[..., Account],
                                                                  disposition: str) -> None:
    csrf = await login(client, make_user("lecturer"))
    caplog.set_level(logging.INFO)
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nA lecture\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; {disposition}\r\n'
            f'Content-Type: application/octet-stream\r\n\r\n').encode() + b"\x00" * 64 + f"\r\n--{boundary}--\r\n".encode()
    resp = await client.post("/api/v1/recordings/import", data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "X-CSRF-Token": csrf})
    assert 400 <= resp.status < 500, (resp.status, await resp.text())
    _no_traceback(caplog)
