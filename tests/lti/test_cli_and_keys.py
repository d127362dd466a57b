"""The operator's side: the CLI registers, lists and removes platforms and rotates our key; the JWKS URL
publishes every key until it is removed, and what we sign verifies with the key it names; private keys are
sealed in the catalog; the admin page shows the values Moodle asks for and registers a platform."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jwt
from sqlalchemy import select

from live_server.db import Database
from live_server.models import LtiToolKey
from live_server.settings import Settings
from tests.foundation.commands import cli
from tests.support import Account, login


def test_cli_platforms_and_key_rotation(migrated_url: str, tmp_path: Path) -> None:
    env = {"LIVE_DATABASE_URL": migrated_url, "LIVE_DATA_DIR": str(tmp_path), "LIVE_PUBLIC_URL": "https://live.univ.example"}
    shown = cli("lti", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Initiate login URL: https://live.univ.example/lti/login" in shown.stdout
    assert "Public keyset URL (JWKS): https://live.univ.example/lti/jwks" in shown.stdout
    added = cli("lti", "add-platform", "--issuer", "https://moodle.univ.example", "--client-id", "abc123",
                "--deployment-id", "1", "--deployment-id", "7", "--name", "Moodle",
                "--auth-login-url", "https://moodle.univ.example/mod/lti/auth.php",
                "--jwks-url", "https://moodle.univ.example/mod/lti/certs.php", env=env)
    assert added.returncode == 0 and "registered platform 1" in added.stdout, added.stderr
    again = cli("lti", "add-platform", "--issuer", "https://moodle.univ.example", "--client-id", "abc123",
                "--deployment-id", "1", "--auth-login-url", "https://m.example/a", "--jwks-url", "https://m.example/j", env=env)
    assert again.returncode == 1 and "already registered" in again.stderr
    listed = cli("lti", "platforms", env=env)
    assert "deployments=1,7" in listed.stdout and "client=abc123" in listed.stdout

    first = cli("lti", "keys", env=env).stdout.split()  # the first key is made on first need
    rotated = cli("lti", "rotate-key", env=env)
    assert rotated.returncode == 0, rotated.stderr
    keys = [line.split("\t") for line in cli("lti", "keys", env=env).stdout.splitlines()]
    assert [k[2] for k in keys] == ["published", "active"] and keys[0][0] == first[0]
    # hex ids: one starting with "-" (1 in 64 of the URL-safe ones used before) was read as an option below
    assert all(re.fullmatch(r"[0-9a-f]{24}", k[0]) for k in keys), keys
    active_removed = cli("lti", "remove-key", keys[1][0], env=env)
    assert active_removed.returncode == 1 and "rotate first" in active_removed.stderr
    assert cli("lti", "remove-key", keys[0][0], env=env).returncode == 0
    removed = cli("lti", "remove-platform", "1", env=env)
    assert removed.returncode == 0 and "removed platform 1" in removed.stdout


async def test_jwks_publishes_every_key_and_signatures_name_theirs(client: Any, db: Database, settings: Settings) -> None:
    from lti import keys
    from tests.support import stream_key_cipher

    published = await (await client.get("/lti/jwks")).json()
    assert len(published["keys"]) == 1 and published["keys"][0]["alg"] == "RS256" and "d" not in published["keys"][0]
    sealer = stream_key_cipher(settings)
    db.transaction(lambda s: keys.rotate(s, sealer))
    signing = db.transaction(lambda s: keys.signing_key(s, sealer))
    published = await (await client.get("/lti/jwks")).json()
    assert [k["kid"] for k in published["keys"]][0] == signing.kid and len(published["keys"]) == 2
    signed = jwt.encode({"x": 1}, signing.private_pem, algorithm="RS256", headers={"kid": signing.kid})
    key = next(k for k in published["keys"] if k["kid"] == jwt.get_unverified_header(signed)["kid"])
    assert jwt.decode(signed, jwt.PyJWK(key).key, algorithms=["RS256"]) == {"x": 1}
    # at rest: sealed, not a PEM
    stored = db.transaction(lambda s: [r.private_key for r in s.scalars(select(LtiToolKey))])
    assert stored and all(value.startswith("v1.") and "PRIVATE KEY" not in value for value in stored)


async def test_the_admin_page_shows_what_moodle_asks_and_registers_a_platform(client: Any, make_user: Any) -> None:
    admin: Account = make_user("admin")
    csrf = await login(client, admin)
    page = await client.get("/admin/lti")
    assert page.status == 200
    text = await page.text()
    base = str(client.make_url("")).rstrip("/")
    for path in ("/lti/login", "/lti/launch", "/lti/jwks"):
        assert f"<code>{base}{path}</code>" in text
    created = await client.post("/admin/lti/platforms", allow_redirects=False, data={
        "csrf_token": csrf, "name": "Moodle", "issuer": "https://moodle.example", "client_id": "c1",
        "deployment_ids": "1, 2", "auth_login_url": "https://moodle.example/mod/lti/auth.php", "token_url": "",
        "jwks_url": "https://moodle.example/mod/lti/certs.php"})
    assert created.status == 303, await created.text()
    listed = await (await client.get("/admin/lti")).text()
    assert "<code>https://moodle.example</code>" in listed and "1, 2" in listed
    wrong = await client.post("/admin/lti/platforms", data={
        "csrf_token": csrf, "issuer": "https://moodle.example", "client_id": "c2", "deployment_ids": "1",
        "auth_login_url": "javascript:alert(1)", "jwks_url": "https://moodle.example/j"})
    assert wrong.status == 422
    platform_id = re.search(r'action="/admin/lti/platforms/(\d+)/remove"', listed).group(1)  # type: ignore[union-attr]
    removed = await client.post(f"/admin/lti/platforms/{platform_id}/remove", data={"csrf_token": csrf},
                                allow_redirects=False)
    assert removed.status == 303 and "<code>https://moodle.example</code>" not in await (await client.get("/admin/lti")).text()

    lecturer: Account = make_user("lecturer")
    client.session.cookie_jar.clear()
    await login(client, lecturer)
    assert (await client.get("/admin/lti", headers={"Accept": "text/html"})).status == 403
