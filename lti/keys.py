"""Our signing keys (RSA, rotatable) and the JWKS platforms read them from.

The private half is sealed at rest with the server secret (``security.StreamKeyCipher``, bound to the
key's kid), like stream keys: a copy of the database alone cannot sign in our name. Rotation adds a key
and makes it the one we sign with; the older ones stay published until an administrator removes them,
so a platform that cached our JWKS still verifies what they signed.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from live_server.errors import Conflict, NotFound
from live_server.models import LtiToolKey

KEY_BITS = 2048
SEAL_PREFIX = "lti-tool-key:"  # the sealing binds the private key to its kid


class Sealer(Protocol):
    def seal(self, key_id: str, secret: str) -> str: ...
    def open(self, key_id: str, sealed: str) -> str: ...


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: str


def new_key(session: Session, sealer: Sealer, active: bool = True) -> LtiToolKey:
    """A fresh RSA key; when ``active``, the one we sign with from now on (the others stay published)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    kid = secrets.token_hex(12)  # hex: a key id never starts with '-' (`live-server lti remove-key <kid>` took it for an option)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    if active:
        session.execute(update(LtiToolKey).values(active=False))
    row = LtiToolKey(kid=kid, private_key=sealer.seal(SEAL_PREFIX + kid, pem), public_jwk=json.dumps(jwk), active=active)
    session.add(row)
    session.flush()
    return row


def ensure_key(session: Session, sealer: Sealer) -> None:
    """The first key, made on first need (the JWKS URL, a signature) when nobody rotated one in yet."""
    if session.scalar(select(LtiToolKey.id).where(LtiToolKey.active.is_(True)).limit(1)) is None:
        new_key(session, sealer)


def rotate(session: Session, sealer: Sealer) -> LtiToolKey:
    return new_key(session, sealer, active=True)


def remove(session: Session, kid: str) -> None:
    """Stop publishing an old key; the active one cannot be removed (rotate first)."""
    row = session.scalar(select(LtiToolKey).where(LtiToolKey.kid == kid))
    if row is None:
        raise NotFound(f"no tool key {kid!r}")
    if row.active:
        raise Conflict("this is the key we sign with: rotate first, then remove it")
    session.delete(row)


def listing(session: Session) -> list[LtiToolKey]:
    return list(session.scalars(select(LtiToolKey).order_by(LtiToolKey.created_at, LtiToolKey.id)))


def jwks(session: Session, sealer: Sealer) -> dict[str, Any]:
    """Every published public key, the active one first."""
    ensure_key(session, sealer)
    rows = sorted(listing(session), key=lambda r: not r.active)
    return {"keys": [json.loads(r.public_jwk) for r in rows]}


def signing_key(session: Session, sealer: Sealer) -> SigningKey:
    ensure_key(session, sealer)
    row = session.scalar(select(LtiToolKey).where(LtiToolKey.active.is_(True)).limit(1))
    assert row is not None
    return SigningKey(row.kid, sealer.open(SEAL_PREFIX + row.kid, row.private_key))
