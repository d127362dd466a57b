"""BigBlueButton's recording-ready callback: the JWT (HS256, signed with the server's shared secret) that BBB
POSTs as ``signed_parameters`` to ``meta_bbb-recording-ready-url`` when a recording is published.

Checked with PyJWT (a dependency since the LTI tool) rather than by hand; here and not in ``formats/bbb.py``
because formats/ is standard library only. The algorithm is fixed to HS256 before anything is read, so neither
``none`` nor another key type is accepted; no claim is trusted before the signature is checked.
"""

from __future__ import annotations

import warnings

import jwt
from jwt.warnings import InsecureKeyLengthWarning

__all__ = ["CallbackRejected", "recording_ready_claims", "sign_recording_ready"]


class CallbackRejected(ValueError):
    """A recording-ready callback whose JWT is not one the shared secret signed, or lacks its claims."""


def recording_ready_claims(token: str, secret: str) -> tuple[str, str]:
    """``(meeting_id, record_id)`` from the callback's token; :class:`CallbackRejected` unless the token is an
    HS256 JWT signed with ``secret`` carrying both claims (as strings)."""
    token = token.strip()
    if token.count(".") != 2:
        raise CallbackRejected("not a JWT")
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")  # the JOSE header only, to say why it is refused
    except jwt.PyJWTError:
        raise CallbackRejected("unreadable JWT header") from None
    if algorithm != "HS256":
        raise CallbackRejected("the JWT is not signed with HS256")
    try:
        with warnings.catch_warnings():  # BBB chose the secret's length, not us: no warning per callback
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.InvalidSignatureError:
        raise CallbackRejected("the JWT signature does not match the shared secret") from None
    except jwt.PyJWTError as exc:
        raise CallbackRejected(f"unreadable JWT ({exc})") from None
    meeting_id, record_id = claims.get("meeting_id"), claims.get("record_id")
    if not isinstance(meeting_id, str) or not isinstance(record_id, str) or not meeting_id or not record_id:
        raise CallbackRejected("the JWT lacks meeting_id or record_id")
    return meeting_id, record_id


def sign_recording_ready(meeting_id: str, record_id: str, secret: str) -> str:
    """The token BBB would send (for tests and for checking a set-up by hand)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode({"meeting_id": meeting_id, "record_id": record_id}, secret, algorithm="HS256")
