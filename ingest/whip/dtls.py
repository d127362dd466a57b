"""DTLS choices aiortc does not expose: which side is DTLS server, and cipher suites for RSA peers.

aiortc answers every ``a=setup:actpass`` offer as DTLS client (``a=setup:active``) and offers only
ECDHE-ECDSA suites. A peer that then acts as DTLS server with an RSA certificate (GStreamer 1.22's
webrtcbin, several hardware encoders) finds ``no shared cipher``. Two changes, each enough on its
own for such a peer, so both are made:

- answer ``actpass`` offers with ``a=setup:passive`` (RFC 8842 lets the answerer choose): the
  server is DTLS server with its ECDSA certificate, which every WebRTC stack accepts as client;
- as DTLS client (offers with ``a=setup:passive``, e.g. ffmpeg's), also offer ECDHE-RSA suites.

Both reach into aiortc internals, so they are applied only to the aiortc minor version they were
tested with (``TESTED_AIORTC``, pinned in pyproject.toml); on any other version the server logs
once and keeps aiortc's own behaviour (ECDSA peers still connect).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import aiortc
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport

log = logging.getLogger(__name__)

__all__ = ["TESTED_AIORTC", "DtlsPolicy", "RsaCapableCertificate"]

#: The aiortc minor version whose internals these hooks were written and tested against.
TESTED_AIORTC: Final = "1.16"
#: aiortc's own list followed by the ECDHE-RSA equivalents; OpenSSL skips what the certificate can't sign.
CIPHERS: Final = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA:"
                  b"ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
                  b"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA")
_CERTIFICATES: Final = "_RTCPeerConnection__certificates"


class RsaCapableCertificate(RTCCertificate):
    """aiortc's ECDSA certificate whose DTLS context also accepts a server that signs with RSA."""

    def _create_ssl_context(self, srtp_profiles: Any) -> Any:
        context = super()._create_ssl_context(srtp_profiles)
        context.set_cipher_list(CIPHERS)
        return context


def _unsupported_reason(version: str) -> str | None:
    if ".".join(version.split(".")[:2]) != TESTED_AIORTC:
        return f"aiortc {version} is not the tested {TESTED_AIORTC}.x"
    if not callable(getattr(RTCDtlsTransport, "_set_role", None)) or not hasattr(RTCCertificate, "_create_ssl_context"):
        return "aiortc's DTLS transport has no _set_role/_create_ssl_context"
    return None


class DtlsPolicy:
    """Applies the two DTLS choices to each new peer connection, or does nothing (said once) if it can't."""

    def __init__(self, version: str = aiortc.__version__) -> None:
        self.unsupported = _unsupported_reason(version)
        if self.unsupported:
            log.warning("WHIP: %s; keeping aiortc's DTLS defaults (DTLS client, ECDSA suites only): "
                        "peers with RSA certificates (e.g. GStreamer webrtcbin) may fail with 'no shared cipher'",
                        self.unsupported)

    def prepare(self, pc: RTCPeerConnection) -> None:
        """Before any transceiver exists: give the connection a certificate whose context takes RSA suites."""
        if self.unsupported:
            return
        certificates = getattr(pc, _CERTIFICATES, None)
        if isinstance(certificates, list) and len(certificates) == 1 and isinstance(certificates[0], RTCCertificate):
            certificates[0] = RsaCapableCertificate.generateCertificate()
        else:
            self.unsupported = "aiortc's peer connection keeps its certificate elsewhere"
            log.warning("WHIP: %s; keeping aiortc's DTLS defaults", self.unsupported)

    def choose_server_role(self, pc: RTCPeerConnection, offer_lets_us_choose: bool) -> list[str]:
        """After an ``actpass`` offer is applied, its transports become DTLS server (``a=setup:passive``).

        aiortc leaves both actpass and passive offers at "auto" (and answers "active"), so the
        caller says which it was. Returns the roles, one per transport (for the session's log line).
        """
        roles = []
        for transport in {t.receiver.transport for t in pc.getTransceivers()}:
            role = getattr(transport, "_role", None)
            if role == "auto" and offer_lets_us_choose and not self.unsupported:
                transport._set_role("server")
                role = "server"
            roles.append({"auto": "client"}.get(str(role), str(role)))  # aiortc answers "auto" as client
        return sorted(roles)
