"""Deep Linking 2.0: the ticket that carries a deep-linking request to our picker, and the signed
``LtiDeepLinkingResponse`` that puts the picked event or recording in the course. Pure: keys and time in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

import jwt

from lti.launch import CLAIM, DL_CLAIM

RESPONSE_LIFETIME = 600  # seconds the platform has to receive our response


@dataclass(frozen=True)
class Ticket:
    """A deep-linking request between its launch and the instructor's choice (signed into the picker form)."""

    user_id: int
    context_id: int
    platform_id: int
    issuer: str
    client_id: str
    deployment_id: str
    return_url: str
    data: Any  # the request's opaque ``data``, echoed
    expires: float


class Tickets:
    """HMAC-signed tickets: the picker's form cannot be altered to answer another platform or course."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"live-server lti deep linking v1", hashlib.sha256).digest()

    def sign(self, ticket: Ticket) -> str:
        body = base64.urlsafe_b64encode(json.dumps(asdict(ticket), separators=(",", ":")).encode()).decode()
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def open(self, signed: str, now: float) -> Ticket | None:
        body, _, mac = signed.rpartition(".")
        if not body or len(signed) > 8192:
            return None
        if not hmac.compare_digest(mac, hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()):
            return None
        try:
            ticket = Ticket(**json.loads(base64.urlsafe_b64decode(body)))
        except (ValueError, TypeError):
            return None
        return ticket if ticket.expires > now else None


def resource_link(url: str, title: str, custom: dict[str, str]) -> dict[str, Any]:
    """An ``ltiResourceLink`` content item: launching it brings ``custom`` back to us."""
    return {"type": "ltiResourceLink", "title": title, "url": url, "custom": custom}


def response_jwt(ticket: Ticket, items: list[dict[str, Any]], kid: str, private_pem: str, now: float) -> str:
    """The ``LtiDeepLinkingResponse`` (LTI Deep Linking 2.0, section 4.2), signed with our active key."""
    claims: dict[str, Any] = {
        "iss": ticket.client_id, "aud": ticket.issuer, "iat": int(now), "exp": int(now) + RESPONSE_LIFETIME,
        "nonce": secrets.token_urlsafe(16),
        CLAIM + "deployment_id": ticket.deployment_id,
        CLAIM + "message_type": "LtiDeepLinkingResponse",
        CLAIM + "version": "1.3.0",
        DL_CLAIM + "content_items": items,
    }
    if ticket.data is not None:
        claims[DL_CLAIM + "data"] = ticket.data
    return jwt.encode(claims, private_pem, algorithm="RS256", headers={"kid": kid})
