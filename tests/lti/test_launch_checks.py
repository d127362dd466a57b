"""``lti/launch.py`` alone: pure checks fed a token, keys, expectations and the time, in milliseconds.

The edges the HTTP tests do not reach: the clock leeway to the second, key choice by ``kid`` (a rotated
platform key), algorithm confusion (``none``, HS256 keyed with the public key), and role vocabulary.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm
from cryptography.hazmat.primitives import serialization

from lti import launch
from lti.launch import CLAIM, Expected, Launch, PlatformFacts, Refusal, context_role, verify_launch
from tests.lti.platform import INSTRUCTOR, LEARNER, PLATFORM_KEYS, rsa_pem_pair

NOW = 1_800_000_000.0
PLATFORM = PlatformFacts("https://moodle.example", "client-1", ("dep-1", "dep-2"))
EXPECTED = Expected("nonce-1", "https://live.example/lti/launch")
PRIVATE, PUBLIC = PLATFORM_KEYS
ROTATED_PRIVATE, ROTATED_PUBLIC = rsa_pem_pair()


def jwk(public_pem: str, kid: str) -> dict[str, Any]:
    key = serialization.load_pem_public_key(public_pem.encode())
    return {**json.loads(RSAAlgorithm.to_jwk(key)), "kid": kid, "alg": "RS256", "use": "sig"}


JWKS = {"keys": [jwk(PUBLIC, "k1"), jwk(ROTATED_PUBLIC, "k2")]}


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": PLATFORM.issuer, "aud": "client-1", "sub": "u-1", "iat": int(NOW), "exp": int(NOW) + 60,
        "nonce": "nonce-1", "given_name": "Ada", "family_name": "Lovelace", "email": "ada@example.org",
        CLAIM + "deployment_id": "dep-2", CLAIM + "message_type": "LtiResourceLinkRequest", CLAIM + "version": "1.3.0",
        CLAIM + "target_link_uri": EXPECTED.target_link_uri, CLAIM + "roles": [LEARNER],
        CLAIM + "context": {"id": "c-1", "title": "Physics", "label": "PHY101"}, CLAIM + "resource_link": {"id": "rl-1"},
        CLAIM + "custom": {"event": "lecture-1"},
    }
    base.update(changes)
    return base


def token(body: dict[str, Any], key: str = PRIVATE, kid: str | None = "k1", alg: str = "RS256") -> str:
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def check(raw: str, now: float = NOW, jwks: dict[str, Any] = JWKS) -> Launch | Refusal:
    return verify_launch(raw, jwks, PLATFORM, EXPECTED, now, leeway=60)


def test_a_good_launch_reads_who_where_and_what() -> None:
    result = check(token(claims()))
    assert isinstance(result, Launch), result
    assert (result.sub, result.name, result.email, result.teaching) == ("u-1", "Ada Lovelace", "ada@example.org", False)
    assert (result.course.key, result.course.title, result.course.label) == ("c-1", "Physics", "PHY101")
    assert result.deployment_id == "dep-2" and result.resource_link_id == "rl-1" and result.custom == {"event": "lecture-1"}


def test_the_clock_leeway_to_the_second() -> None:
    raw = token(claims(exp=int(NOW)))
    assert isinstance(check(raw, now=NOW + 59), Launch)
    assert check(raw, now=NOW + 60) == Refusal("expired", "expired 60 s ago")
    future = token(claims(iat=int(NOW) + 61))
    assert isinstance(check(future, now=NOW), Refusal) and isinstance(check(future, now=NOW + 1), Launch)


def test_the_key_is_chosen_by_kid() -> None:
    assert isinstance(check(token(claims(), ROTATED_PRIVATE, kid="k2")), Launch)  # the platform rotated its key
    assert check(token(claims(), ROTATED_PRIVATE, kid="k1")).code == "bad_signature"  # type: ignore[union-attr]
    assert check(token(claims(), kid="k9")).code == "unknown_key"  # type: ignore[union-attr]
    assert check(token(claims(), kid=None)).code == "unknown_key"  # type: ignore[union-attr]  # two keys: which?
    assert isinstance(check(token(claims(), kid=None), jwks={"keys": [jwk(PUBLIC, "k1")]}), Launch)
    assert check(token(claims()), jwks={"keys": []}).code == "unknown_key"  # type: ignore[union-attr]


def test_no_algorithm_but_rs256() -> None:
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"})  # type: ignore[arg-type]
    assert check(unsigned).code == "bad_signature"  # type: ignore[union-attr]
    # HS256 "signed" with the platform's public key as the shared secret (the classic confusion attack)
    # (made by hand: PyJWT itself refuses to use an RSA key as an HMAC secret)
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing_input = b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode()) + "." + b64(json.dumps(claims()).encode())
    mac = hmac.new(PUBLIC.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert check(signing_input + "." + b64(mac)).code == "bad_signature"  # type: ignore[union-attr]
    assert check("not.a.token").code == "malformed_token"  # type: ignore[union-attr]
    assert check("x" * 70000).code == "malformed_token"  # type: ignore[union-attr]


def test_audience_lists_need_our_azp() -> None:
    assert isinstance(check(token(claims(aud=["client-1", "other"], azp="client-1"))), Launch)
    assert check(token(claims(aud=["client-1", "other"]))).code == "wrong_audience"  # type: ignore[union-attr]
    assert check(token(claims(azp="other"))).code == "wrong_audience"  # type: ignore[union-attr]


def test_deep_linking_requests_need_a_return_url() -> None:
    request = {CLAIM + "message_type": "LtiDeepLinkingRequest", CLAIM + "roles": [INSTRUCTOR]}
    refused = check(token(claims(**request)))
    assert isinstance(refused, Refusal) and refused.code == "malformed_token"
    settings = {"https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings": {
        "deep_link_return_url": "https://moodle.example/return", "data": "opaque", "accept_multiple": True}}
    ok = check(token(claims(**request, **settings)))
    assert isinstance(ok, Launch) and ok.teaching and ok.deep_link is not None
    assert (ok.deep_link.return_url, ok.deep_link.data, ok.deep_link.accept_multiple) == (
        "https://moodle.example/return", "opaque", True)


@pytest.mark.parametrize("roles, expected", [
    ([INSTRUCTOR], "instructor"),
    (["http://purl.imsglobal.org/vocab/lis/v2/membership#ContentDeveloper"], "instructor"),
    (["http://purl.imsglobal.org/vocab/lis/v2/membership#Administrator", LEARNER], "instructor"),
    (["http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"], "instructor"),
    (["Instructor"], "instructor"),  # the deprecated short form
    ([LEARNER], "learner"),
    (["http://purl.imsglobal.org/vocab/lis/v2/membership#Mentor"], "learner"),
    (["http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"], None),  # not a course role
    (["http://purl.imsglobal.org/vocab/lis/v2/system/person#SysAdmin"], None),
    ([], None),
    ([42, None], None),
])
def test_context_roles(roles: list[Any], expected: str | None) -> None:
    assert context_role(roles) == expected


def test_the_checks_are_pure() -> None:
    tree = ast.parse(Path(launch.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "json", "dataclasses", "typing", "jwt"}, imported
