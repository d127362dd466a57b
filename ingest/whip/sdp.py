"""WHIP's wire formats, as pure code: SDP offer checks, ICE-server ``Link`` headers, trickle fragments.

aiortc accepts nearly any text as an offer and fails late (or answers with no usable media), so an
offer is inspected here first: a publisher gets a precise 400/422 instead of a session that never
produces a frame. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from aiortc.sdp import H264Profile, parse_h264_profile_level_id

__all__ = [
    "MAX_SDP_BYTES",
    "IceServer",
    "MediaSection",
    "OfferError",
    "OfferSummary",
    "TrickleFragment",
    "ice_server_link",
    "inspect_offer",
    "parse_ice_server",
    "parse_trickle_fragment",
    "reject_sections",
]

#: Larger offers are refused: browsers send 3-8 KiB, ffmpeg and OBS less.
MAX_SDP_BYTES: Final = 64 * 1024

#: The H.264 profiles aiortc negotiates: constrained baseline and baseline (what WebRTC senders use).
_H264_PROFILES: Final = (H264Profile.PROFILE_CONSTRAINED_BASELINE, H264Profile.PROFILE_BASELINE)
_NO_MEDIA_DIRECTIONS: Final = ("recvonly", "inactive")
#: Numbers in SDP are ASCII digits (RFC 8866); ``str.isdigit`` also takes '²' or '٣', which int() refuses.
_PORT: Final = re.compile(r"[0-9]{1,5}")
_PAYLOAD_TYPE: Final = re.compile(r"[0-9]{1,3}")
#: RFC 8839 candidate-attribute, as far as aiortc's ``candidate_from_sdp`` reads it (it asserts and calls int()).
_CANDIDATE: Final = re.compile(
    r"candidate:\S{1,32} [0-9]{1,3} \S{1,16} [0-9]{1,10} \S{1,255} [0-9]{1,5} typ \S{1,16}"
    r"(?: (?:rport [0-9]{1,5}|(?!rport )\S{1,255} \S{1,255}))*", re.ASCII)


class OfferError(Exception):
    """An offer we cannot serve; ``status`` (400 malformed, 422 unusable) and ``code`` go to the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class MediaSection:
    """One ``m=`` section of an offer, with what matters to an ingest server."""

    kind: str
    port: int
    mid: str | None = None
    direction: str = "sendrecv"
    codecs: dict[int, str] = field(default_factory=dict)  # payload type -> "h264/90000"
    fmtp: dict[int, dict[str, str]] = field(default_factory=dict)
    rtcp_mux: bool = False
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    fingerprint: bool = False
    bundle_only: bool = False  # a=bundle-only: port 0, yet media flows on the BUNDLE transport
    bundled: bool = False  # its mid is in the offer's a=group:BUNDLE
    setup: str | None = None  # a=setup (RFC 8842): actpass, active or passive

    @property
    def sends_media(self) -> bool:
        """Port 0 disables a section (RFC 3264) unless it is bundle-only within a BUNDLE group (RFC 8843, JSEP)."""
        enabled = self.port != 0 or (self.bundle_only and self.bundled)
        return enabled and self.direction not in _NO_MEDIA_DIRECTIONS

    def codec_names(self) -> list[str]:
        return [name.split("/", 1)[0] for name in self.codecs.values()]


@dataclass(frozen=True)
class OfferSummary:
    """What a valid offer will send: the codec family chosen per kind (None when the kind is absent)."""

    video: str | None  # "h264" (kept as is) or "vp8" (transcoded)
    audio: str | None  # "opus" (transcoded to AAC)
    #: mids of audio/video sections that send nothing we take: the answer refuses them (port 0).
    ignored_mids: tuple[str, ...] = ()
    #: True when every media section lets the answerer choose the DTLS role (a=setup:actpass).
    dtls_role_ours: bool = False

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, codec in (("video", self.video), ("audio", self.audio)) if codec)


def _h264_usable(params: dict[str, str]) -> bool:
    """aiortc negotiates H.264 with packetization-mode 1 in the (constrained) baseline profile only."""
    if params.get("packetization-mode", "0") != "1":
        return False
    try:
        profile, _level = parse_h264_profile_level_id(params.get("profile-level-id", "42e01f"))
    except ValueError:
        return False
    return profile in _H264_PROFILES


def _split_lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def _parse_sections(text: str) -> tuple[list[MediaSection], dict[str, str | bool]]:
    """Sections and the session-level ICE/DTLS attributes; ``OfferError`` (400) is the only error raised."""
    lines = _split_lines(text)
    if not lines or lines[0].strip() != "v=0":
        raise OfferError(400, "malformed_sdp", "malformed SDP: an offer starts with the line v=0")
    session: dict[str, str | bool] = {}
    sections: list[MediaSection] = []
    current: MediaSection | None = None
    bundle: set[str] = set()
    for number, line in enumerate(lines, 1):
        if len(line) < 2 or line[1] != "=" or not (line[0].isascii() and line[0].isalpha()):
            raise OfferError(400, "malformed_sdp", f"malformed SDP: line {number} is not <type>=<value>: {line[:60]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            port = parts[1].split("/", 1)[0] if len(parts) >= 4 else ""
            if not _PORT.fullmatch(port) or int(port) > 65535:
                raise OfferError(400, "malformed_sdp", f"malformed SDP: bad media line {line[:80]!r}")
            current = MediaSection(kind=parts[0], port=int(port))
            sections.append(current)
            continue
        if kind != "a":
            continue
        name, _, arg = value.partition(":")
        if current is None:
            if name == "group" and arg.split(" ", 1)[0] == "BUNDLE":
                bundle.update(arg.split()[1:])
            elif name in ("ice-ufrag", "ice-pwd"):
                session[name] = arg.strip()
            elif name == "fingerprint":
                session["fingerprint"] = True
            elif name == "setup":
                session["setup"] = arg.strip()
            continue
        if name == "mid":
            current.mid = arg.strip()
        elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
            current.direction = name
        elif name == "rtcp-mux":
            current.rtcp_mux = True
        elif name == "bundle-only":
            current.bundle_only = True
        elif name == "setup":
            current.setup = arg.strip()
        elif name == "ice-ufrag":
            current.ice_ufrag = arg.strip()
        elif name == "ice-pwd":
            current.ice_pwd = arg.strip()
        elif name == "fingerprint":
            current.fingerprint = True
        elif name in ("rtpmap", "fmtp"):
            pt_text, _, rest = arg.partition(" ")
            if not _PAYLOAD_TYPE.fullmatch(pt_text) or int(pt_text) > 127:
                raise OfferError(400, "malformed_sdp", f"malformed SDP: bad a={name} line {line[:80]!r}")
            pt = int(pt_text)
            if name == "rtpmap":
                current.codecs[pt] = rest.strip().lower()
            else:
                params = {}
                for item in rest.split(";"):
                    key, _, val = item.strip().partition("=")
                    if key:
                        params[key.lower()] = val.strip()
                current.fmtp[pt] = params
    mids = [section.mid for section in sections if section.mid is not None]
    if len(set(mids)) != len(mids):
        raise OfferError(400, "malformed_sdp", "malformed SDP: two m= sections have the same a=mid")
    # aiortc moves every bundled section onto the first named one's transport; a name no section has leaves none.
    if bundle - set(mids):
        raise OfferError(400, "malformed_sdp", f"malformed SDP: a=group:BUNDLE names {sorted(bundle - set(mids))[0][:40]!r}, "
                                               "which is the a=mid of no m= section")
    for section in sections:
        section.bundled = section.mid is not None and section.mid in bundle
    return sections, session


def inspect_offer(text: str, *, allow_vp8: bool = True) -> OfferSummary:
    """Check a WHIP offer and say what it will send; raises ``OfferError`` with a message for the publisher.

    Malformed text is a 400; a well-formed offer we cannot use (no media, more than one section of a
    kind, missing ICE/DTLS attributes, only unsupported codecs) is a 422 naming what to change.
    """
    if len(text.encode("utf-8", "replace")) > MAX_SDP_BYTES:
        raise OfferError(400, "malformed_sdp", f"the SDP offer exceeds {MAX_SDP_BYTES} bytes")
    sections, session = _parse_sections(text)
    media = [s for s in sections if s.kind in ("audio", "video") and s.sends_media]
    if not media:
        raise OfferError(422, "no_media", "the offer sends no audio or video (no sendonly/sendrecv audio or video section)")
    chosen: dict[str, str] = {}
    for section in media:
        if section.kind in chosen:
            raise OfferError(422, "too_many_sections", f"the offer has more than one {section.kind} section; send one audio and one video track")
        if not (section.ice_ufrag or session.get("ice-ufrag")) or not (section.ice_pwd or session.get("ice-pwd")):
            raise OfferError(400, "malformed_sdp", f"malformed SDP: the {section.kind} section has no a=ice-ufrag/a=ice-pwd")
        if not (section.fingerprint or session.get("fingerprint")):
            raise OfferError(400, "malformed_sdp", f"malformed SDP: the {section.kind} section has no a=fingerprint (DTLS)")
        if not section.rtcp_mux:
            raise OfferError(422, "rtcp_mux_required", f"the {section.kind} section must use a=rtcp-mux")
        codec = _pick_codec(section, allow_vp8)
        if codec is None:
            offered = ", ".join(sorted(set(section.codec_names()) - {"rtx", "red", "ulpfec", "flexfec-03", "telephone-event", "cn"}))
            wanted = "H.264 (packetization-mode=1, baseline profile)" + (" or VP8" if allow_vp8 else "")
            if section.kind == "audio":
                wanted = "Opus"
            raise OfferError(422, "unsupported_codecs",
                             f"unsupported {section.kind} codecs ({offered or 'none listed'}); offer {wanted}")
        chosen[section.kind] = codec
    ignored = [s for s in sections if s.kind in ("audio", "video") and not s.sends_media]
    for section in ignored:
        # aiortc gives a section outside the BUNDLE group its own transport, which an answer refusing
        # the section never connects: the whole peer connection would wait on it until the ICE timeout.
        if not section.bundled:
            raise OfferError(422, "unbundled_unused_section",
                             f"the offer's {section.kind} section (a=mid:{(section.mid or 'none')[:40]}) sends nothing and is "
                             "outside the BUNDLE group; leave it out of the offer or bundle it")
    role_ours = all((s.setup or session.get("setup")) == "actpass" for s in media)
    return OfferSummary(video=chosen.get("video"), audio=chosen.get("audio"),
                        ignored_mids=tuple(s.mid for s in ignored if s.mid is not None),
                        dtls_role_ours=role_ours)


def reject_sections(answer: str, mids: tuple[str, ...] | set[str]) -> str:
    """Mark the answer's sections for ``mids`` as refused: port 0, ``a=inactive``, out of the BUNDLE group."""
    if not mids:
        return answer
    out: list[str] = []
    blocks: list[list[str]] = [[]]
    for line in answer.split("\r\n"):
        if line.startswith("m="):
            blocks.append([])
        blocks[-1].append(line)
    for index, block in enumerate(blocks):
        mid = next((line[6:].strip() for line in block if line.startswith("a=mid:")), None)
        if index and mid in mids:
            kind, _port, rest = block[0].split(" ", 2)
            block = [f"{kind} 0 {rest}"] + [
                "a=inactive" if line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") else line for line in block[1:]
            ]
        elif index == 0:
            block = [_without_mids(line, mids) if line.startswith("a=group:BUNDLE") else line for line in block]
        out.extend(block)
    return "\r\n".join(out)


def _without_mids(group: str, mids: tuple[str, ...] | set[str]) -> str:
    semantic, *items = group.split(" ")
    return " ".join([semantic] + [item for item in items if item not in mids])


def _pick_codec(section: MediaSection, allow_vp8: bool) -> str | None:
    names = {pt: name.split("/", 1)[0] for pt, name in section.codecs.items()}
    if section.kind == "video":
        if any(n == "h264" and _h264_usable(section.fmtp.get(pt, {})) for pt, n in names.items()):
            return "h264"
        if allow_vp8 and "vp8" in names.values():
            return "vp8"
        return None
    if any(name == "opus/48000/2" or name.startswith("opus/48000") for name in section.codecs.values()):
        return "opus"
    return None


# --------------------------------------------------------------------------- ICE servers


@dataclass(frozen=True)
class IceServer:
    """A STUN/TURN server as configured (``stun:host:port``, ``turn:host:port?transport=udp``)."""

    url: str
    username: str | None = None
    credential: str | None = None

    @property
    def is_turn(self) -> bool:
        return self.url.startswith(("turn:", "turns:"))


_ICE_URL = re.compile(r"^(stun|stuns|turn|turns):[^\s<>\"]+$")


def parse_ice_server(url: str, username: str = "", credential: str = "") -> IceServer:
    """Validate one configured server URL; TURN servers get the configured credentials."""
    url = url.strip()
    if not _ICE_URL.match(url):
        raise ValueError(f"{url!r} is not a stun:, stuns:, turn: or turns: URL")
    if url.startswith(("turn:", "turns:")):
        return IceServer(url, username or None, credential or None)
    return IceServer(url)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ice_server_link(server: IceServer) -> str:
    """The ``Link`` header value advertising one ICE server (RFC 9725 section 4.6)."""
    link = f'<{server.url}>; rel="ice-server"'
    if server.is_turn and server.username is not None:
        link += f"; username={_quoted(server.username)}; credential={_quoted(server.credential or '')}"
        link += '; credential-type="password"'
    return link


# --------------------------------------------------------------------------- trickle ICE


@dataclass
class TrickleFragment:
    """An ``application/trickle-ice-sdpfrag`` body (RFC 8840): credentials, candidates per mid, end flag."""

    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    candidates: list[tuple[str | None, str]] = field(default_factory=list)  # (mid, "candidate:...")
    end_of_candidates: bool = False


def parse_trickle_fragment(text: str) -> TrickleFragment:
    """Parse a trickle fragment; raises ``OfferError`` (400) for lines that are not SDP."""
    fragment = TrickleFragment()
    mid: str | None = None
    for line in _split_lines(text):
        if len(line) < 2 or line[1] != "=":
            raise OfferError(400, "malformed_sdpfrag", f"malformed SDP fragment line {line[:60]!r}")
        if line.startswith("m="):
            mid = None
            continue
        if not line.startswith("a="):
            continue
        name, _, arg = line[2:].partition(":")
        if name == "ice-ufrag":
            fragment.ice_ufrag = arg.strip()
        elif name == "ice-pwd":
            fragment.ice_pwd = arg.strip()
        elif name == "mid":
            mid = arg.strip()
        elif name == "candidate":
            candidate = "candidate:" + arg.strip()
            if not _CANDIDATE.fullmatch(candidate):
                raise OfferError(400, "malformed_sdpfrag", f"malformed SDP fragment: bad candidate line {line[:80]!r}")
            fragment.candidates.append((mid, candidate))
        elif name == "end-of-candidates":
            fragment.end_of_candidates = True
    return fragment
