"""Media passes: signed, short-lived cookies that let a browser fetch a password target's media.

A pass is ``<expires>.<HMAC(kind|id|grant_version|expires)>``; ``grant_version`` covers the row's
visibility, its password hash and its random access secret (``live_server/access.py``), so the
pass dies when what granted it changes: a new password, a visibility change, or a deleted row
whose id is taken again. It is checked with one HMAC, no database query per media request, and
lives ``media_pass_lifetime_seconds``: the page and the player's playlist requests renew it while
someone watches. Authenticated targets take no pass: the login session itself is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from aiohttp import web

from live_server.access import Target

COOKIE_PREFIXES = {"event": "live_media_", "recording": "live_vod_"}


class MediaPasses:
    """Issues and verifies passes; one key for the process, derived from the secret key."""

    def __init__(self, secret: str, lifetime_seconds: int = 600) -> None:
        self._key = hashlib.sha256(b"media-pass|" + secret.encode()).digest()
        self.lifetime = lifetime_seconds

    def issue(self, target: Target, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.lifetime)
        return f"{expires}.{self._sign(target, expires)}"

    def check(self, target: Target, token: str | None, now: float | None = None) -> bool:
        expires = self._expires(token, now)
        if expires is None or token is None:
            return False
        return hmac.compare_digest(token.partition(".")[2], self._sign(target, expires))

    def due_for_renewal(self, token: str | None, now: float | None = None) -> bool:
        """A valid pass past half its life is renewed by the next page or playlist request."""
        expires = self._expires(token, now)
        return expires is not None and expires - (time.time() if now is None else now) < self.lifetime / 2

    def presented(self, cookies: Mapping[str, str], now: float | None = None) -> "PresentedPasses":
        return PresentedPasses(self, cookies, now)

    def grant(self, request: web.Request, response: web.StreamResponse, target: Target, secure_mode: str) -> None:
        """Hand the browser a fresh pass for ``target`` (after its password was entered, or to renew one)."""
        secure = secure_mode == "always" or (secure_mode == "auto" and request.secure)
        response.set_cookie(self.cookie_name(target), self.issue(target), max_age=self.lifetime,
                            httponly=True, samesite="Lax", secure=secure, path="/")

    def renew(self, request: web.Request, response: web.StreamResponse, target: Target, secure_mode: str) -> None:
        """While someone watches, each playlist request keeps a valid pass alive; an invalid one is left to die."""
        token = request.cookies.get(self.cookie_name(target))
        if self.due_for_renewal(token) and self.check(target, token):
            self.grant(request, response, target, secure_mode)

    @staticmethod
    def cookie_name(target: Target) -> str:
        return f"{COOKIE_PREFIXES[target.kind]}{target.id}"

    @staticmethod
    def _expires(token: str | None, now: float | None) -> int | None:
        if not token or "." not in token:
            return None
        expires_text = token.partition(".")[0]
        if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12:
            return None
        expires = int(expires_text)
        return expires if expires >= (time.time() if now is None else now) else None

    def _sign(self, target: Target, expires: int) -> str:
        message = f"{target.kind}|{target.id}|{target.grant_version}|{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:40]


class PresentedPasses:
    """The passes among a request's cookies (``access.Passes``)."""

    def __init__(self, signer: MediaPasses, cookies: Mapping[str, str], now: float | None = None) -> None:
        self.signer = signer
        self.cookies = cookies
        self.now = now

    def token_for(self, target: Target) -> str | None:
        return self.cookies.get(MediaPasses.cookie_name(target))

    def opens(self, target: Target) -> bool:
        return self.signer.check(target, self.token_for(target), self.now)


MEDIA_PASS = web.AppKey("media_passes", MediaPasses)  # the app's passes (tests present and revoke them)
