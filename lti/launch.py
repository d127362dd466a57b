"""Is this id_token a launch we accept? Pure: fed the token, the platform's keys (a JWKS), what the
login initiation expects (nonce, target link) and the time; returns a ``Launch`` or a ``Refusal``.

No claim is read before the signature is verified: only the JOSE header (``kid``, ``alg``) is looked at
to pick the key. Then, in this order, as LTI 1.3 and the IMS Security Framework (section 5.1.3) say:
issuer, audience and authorised party, expiry and issue time, nonce, deployment, message type,
version, target link, roles, context. No I/O here: ``tool.py`` fetches keys and state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import jwt

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
DL_CLAIM = "https://purl.imsglobal.org/spec/lti-dl/claim/"
RESOURCE_LINK_REQUEST = "LtiResourceLinkRequest"
DEEP_LINKING_REQUEST = "LtiDeepLinkingRequest"
MESSAGE_TYPES = (RESOURCE_LINK_REQUEST, DEEP_LINKING_REQUEST)
ALGORITHM = "RS256"  # the only one LTI 1.3 allows for id_tokens
MAX_TOKEN_CHARS = 64 * 1024

# Context roles (LIS v2 membership vocabulary) that give lecturer rights on the course's events.
TEACHING = frozenset({"Instructor", "ContentDeveloper", "Administrator"})
LEARNING = frozenset({"Learner", "Member", "Mentor"})
MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"


@dataclass(frozen=True)
class PlatformFacts:
    """What the registration says about the platform that must have signed the token."""

    issuer: str
    client_id: str
    deployments: tuple[str, ...]


@dataclass(frozen=True)
class Expected:
    """What the login initiation we answered expects of the launch that follows it."""

    nonce: str
    target_link_uri: str


@dataclass(frozen=True)
class Course:
    key: str  # the platform's context id
    title: str = ""
    label: str = ""


@dataclass(frozen=True)
class DeepLinkSettings:
    return_url: str
    data: Any = None  # opaque to us, handed back as it came (a string by the spec; some platforms send an object)
    accept_multiple: bool = False
    title: str = ""


@dataclass(frozen=True)
class Launch:
    """A verified launch: who (``sub`` at the platform), from which course, with which role."""

    message_type: str
    sub: str
    deployment_id: str
    course: Course
    teaching: bool  # Instructor/ContentDeveloper/Administrator of the context; else a learner
    target_link_uri: str
    name: str = ""
    email: str = ""
    resource_link_id: str = ""
    custom: Mapping[str, str] = field(default_factory=dict)
    deep_link: DeepLinkSettings | None = None


@dataclass(frozen=True)
class Refusal:
    """Why a launch is refused: a stable ``code`` (log, page, tests) and a detail for the log only."""

    code: str
    detail: str = ""


def context_role(roles: list[Any]) -> str | None:
    """"instructor", "learner", or None when no role in the context is named.

    LTI 1.3 context roles are ``…/membership#Instructor`` (or a sub-role ``…/membership/Instructor#…``),
    the short form ``Instructor`` being deprecated but still sent by some platforms. Institution roles
    (``…/institution/person#Administrator``) say nothing about this course."""
    principals: set[str] = set()
    for role in roles:
        if not isinstance(role, str):
            continue
        if role.startswith(MEMBERSHIP + "#"):
            principals.add(role[len(MEMBERSHIP) + 1:])
        elif role.startswith(MEMBERSHIP + "/"):
            principals.add(role[len(MEMBERSHIP) + 1:].split("#", 1)[0])
        elif "/" not in role and "#" not in role:
            principals.add(role)
    if principals & TEACHING:
        return "instructor"
    if principals & LEARNING:
        return "learner"
    return None


def _text(value: Any, limit: int = 255) -> str:
    return value[:limit] if isinstance(value, str) else ""


def verify_launch(id_token: str, jwks: Mapping[str, Any], platform: PlatformFacts, expected: Expected, now: float,
                  leeway: float = 60.0) -> Launch | Refusal:
    """The launch ``id_token`` carries, if every check passes; else the first refusal."""
    if not isinstance(id_token, str) or not id_token or len(id_token) > MAX_TOKEN_CHARS:
        return Refusal("malformed_token", "missing or oversized id_token")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        return Refusal("malformed_token", f"unreadable JOSE header: {exc}")
    if header.get("alg") != ALGORITHM:
        return Refusal("bad_signature", f"algorithm {header.get('alg')!r} is not {ALGORITHM}")
    key = _key(jwks, header.get("kid"))
    if isinstance(key, Refusal):
        return key
    try:
        claims = jwt.decode(id_token, key, algorithms=[ALGORITHM], options={
            "verify_signature": True, "verify_exp": False, "verify_iat": False, "verify_nbf": False,
            "verify_aud": False, "verify_iss": False, "require": []})  # checked below, against ``now``
    except jwt.InvalidSignatureError:
        return Refusal("bad_signature", "the signature does not verify with the platform's key")
    except jwt.PyJWTError as exc:
        return Refusal("malformed_token", f"undecodable token: {exc}")
    return _check_claims(claims, platform, expected, now, leeway)


def _key(jwks: Mapping[str, Any], kid: Any) -> Any:
    """The platform's public key named by the token's ``kid`` (or its only key when the token names none)."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        return Refusal("unknown_key", "the platform's JWKS has no keys")
    candidates = [k for k in keys if isinstance(k, dict) and k.get("kty") == "RSA"
                  and k.get("use", "sig") == "sig" and k.get("alg", ALGORITHM) == ALGORITHM]
    if kid is not None:
        candidates = [k for k in candidates if k.get("kid") == kid]
    if len(candidates) != 1:
        return Refusal("unknown_key", f"no single signing key with kid {kid!r} in the platform's JWKS")
    try:
        return jwt.PyJWK.from_json(json.dumps(candidates[0]), algorithm=ALGORITHM).key
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        return Refusal("unknown_key", f"unusable key in the platform's JWKS: {exc}")


def _check_claims(claims: dict[str, Any], platform: PlatformFacts, expected: Expected, now: float,
                  leeway: float) -> Launch | Refusal:
    if claims.get("iss") != platform.issuer:
        return Refusal("wrong_issuer", f"iss {claims.get('iss')!r}")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if platform.client_id not in audiences:
        return Refusal("wrong_audience", f"aud {aud!r} does not include our client id")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != platform.client_id:
        return Refusal("wrong_audience", f"azp {azp!r} is not our client id")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
        return Refusal("expired", "exp or iat missing")
    if exp + leeway <= now:
        return Refusal("expired", f"expired {now - exp:.0f} s ago")
    if iat - leeway > now:
        return Refusal("expired", "issued in the future")
    if not isinstance(claims.get("nonce"), str) or claims["nonce"] != expected.nonce:
        return Refusal("wrong_nonce", "the nonce is not the one of this login")
    deployment = claims.get(CLAIM + "deployment_id")
    if not isinstance(deployment, str) or deployment not in platform.deployments:
        return Refusal("unknown_deployment", f"deployment {deployment!r} is not registered")
    message_type = claims.get(CLAIM + "message_type")
    if message_type not in MESSAGE_TYPES:
        return Refusal("wrong_message_type", f"message type {message_type!r}")
    if claims.get(CLAIM + "version") != "1.3.0":
        return Refusal("wrong_version", f"version {claims.get(CLAIM + 'version')!r}")
    target = claims.get(CLAIM + "target_link_uri")
    if not isinstance(target, str) or target != expected.target_link_uri:
        return Refusal("wrong_target", f"target_link_uri {target!r} differs from the login's")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        return Refusal("anonymous", "no sub: anonymous launches are not supported")
    roles = claims.get(CLAIM + "roles")
    if not isinstance(roles, list):
        return Refusal("missing_roles", "no roles claim")
    role = context_role(roles)
    if role is None:
        return Refusal("missing_roles", "no role in the course")
    context = claims.get(CLAIM + "context")
    if not isinstance(context, dict) or not isinstance(context.get("id"), str) or not context["id"]:
        return Refusal("no_course", "the launch comes from no course (context claim)")
    course = Course(_text(context["id"]), _text(context.get("title")), _text(context.get("label")))
    link = claims.get(CLAIM + "resource_link")
    link_id = _text(link.get("id")) if isinstance(link, dict) else ""
    deep_link = None
    if message_type == RESOURCE_LINK_REQUEST and not link_id:
        return Refusal("malformed_token", "a resource link launch without a resource link id")
    if message_type == DEEP_LINKING_REQUEST:
        settings = claims.get(DL_CLAIM + "deep_linking_settings")
        if not isinstance(settings, dict) or not isinstance(settings.get("deep_link_return_url"), str):
            return Refusal("malformed_token", "a deep linking request without a return URL")
        data = settings.get("data")
        deep_link = DeepLinkSettings(settings["deep_link_return_url"], data,
                                     settings.get("accept_multiple") is True, _text(settings.get("title")))
    custom = claims.get(CLAIM + "custom")
    name = claims.get("name") or " ".join(p for p in (claims.get("given_name"), claims.get("family_name"))
                                         if isinstance(p, str) and p)
    return Launch(
        message_type=message_type, sub=sub, deployment_id=deployment, course=course, teaching=role == "instructor",
        target_link_uri=target, name=_text(name, 200), email=_text(claims.get("email"), 254), resource_link_id=link_id,
        custom={str(k): str(v) for k, v in custom.items() if isinstance(v, (str, int))} if isinstance(custom, dict) else {},
        deep_link=deep_link,
    )
