"""A Moodle-like LMS for the tests: the LTI 1.3 *platform* side is ``lti1p3platform`` (PyPI, written by
another team), served by a small aiohttp app on 127.0.0.1 with the routes an LMS has: its JWKS, its OIDC
authentication endpoint (which answers with the auto-posting launch form, as Moodle does), the deep-linking
return, and a course page that frames our tool (for Chromium).

What a launch carries (who, which role, which course, resource link or deep linking) is queued by the test
under a ``lti_message_hint``, as Moodle keys it by the activity clicked.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration

INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
FORM_FIELD = re.compile(r'name="([^"]+)" value="([^"]*)"')
FORM_ACTION = re.compile(r'<form[^>]* action="([^"]+)"')


def rsa_pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


PLATFORM_KEYS = rsa_pem_pair()  # once per test process: RSA generation is the slow part of a platform


@dataclass
class Person:
    sub: str
    roles: list[str]
    name: str = ""
    email: str = ""


@dataclass
class Activity:
    """One click in the LMS: a resource link (with its custom parameters) or a deep-linking request."""

    person: Person
    course_id: str = "course-101"
    course_title: str = "Physics 101"
    resource_link_id: str = "rl-1"
    custom: dict[str, str] = field(default_factory=dict)
    deep_linking: bool = False


class _Conf(LTI1P3PlatformConfAbstract):
    def init_platform_config(self, **kwargs: Any) -> None:
        self._registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs: Any) -> Registration:
        assert self._registration is not None
        return self._registration


class _Login(OIDCLoginAbstract):
    def set_lti_message_hint(self, **kwargs: Any) -> None:
        self._lti_message_hint = kwargs["hint"]

    def get_redirect(self, url: str) -> str:
        return url


class _Launch(LTIAdvantageMessageLaunchAbstract):
    def __init__(self, query: dict[str, str], conf: _Conf) -> None:
        super().__init__(None, conf)  # type: ignore[arg-type]
        self._query = query

    def get_preflight_response(self) -> dict[str, Any]:
        return self._query

    def render_launch_form(self, launch_data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return launch_data


class Moodle:
    """The platform: call ``start`` with our tool's base URL, then ``login_url(activity)`` for each click."""

    def __init__(self, client_id: str = "moodle-client-1", deployment_id: str = "deployment-1") -> None:
        self.client_id, self.deployment_id = client_id, deployment_id
        self.private_pem, self.public_pem = PLATFORM_KEYS
        self.activities: dict[str, Activity] = {}
        self.returned: list[dict[str, Any]] = []  # content items our deep-linking responses carried, verified
        self.tool = ""
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def start(self, tool: str) -> None:
        self.tool = tool.rstrip("/")
        app = web.Application()
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/auth", self._auth)
        app.router.add_post("/deep-link-return", self._deep_link_return)
        app.router.add_get("/course/{hint}", self._course_page)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def issuer(self) -> str:
        return self.base

    def registration(self) -> Registration:
        reg = Registration()
        reg.set_iss(self.issuer).set_client_id(self.client_id).set_deployment_id(self.deployment_id)
        reg.set_oidc_login_url(f"{self.tool}/lti/login").set_launch_url(f"{self.tool}/lti/launch")
        reg.set_deeplink_launch_url(f"{self.tool}/lti/launch")
        reg.set_platform_public_key(self.public_pem).set_platform_private_key(self.private_pem)
        reg.set_tool_key_set_url(f"{self.tool}/lti/jwks")
        return reg

    def register_values(self) -> dict[str, Any]:
        """What Moodle shows its administrator to give the tool (our ``registry.register_platform`` arguments)."""
        return {"issuer": self.issuer, "client_id": self.client_id, "deployment_ids": [self.deployment_id],
                "auth_login_url": f"{self.base}/auth", "jwks_url": f"{self.base}/jwks", "name": "Test Moodle"}

    def login_url(self, activity: Activity) -> str:
        """The third-party login initiation the LMS sends the browser to (lti1p3platform builds it)."""
        hint = secrets.token_urlsafe(8)
        self.activities[hint] = activity
        login = _Login(None, _Conf(registration=self.registration()))
        login.set_lti_message_hint(hint=hint)
        return login.initiate_login(activity.person.sub)

    def course_url(self, activity: Activity) -> str:
        """The LMS's course page that shows ``activity`` in an iframe (a fresh login each time it is opened)."""
        hint = secrets.token_urlsafe(8)
        self.activities[hint] = activity
        return f"{self.base}/course/{hint}"

    # --- the platform's endpoints --------------------------------------------------------------

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response(_Conf(registration=self.registration()).get_jwks())

    async def _auth(self, request: web.Request) -> web.Response:
        """The OIDC authentication request from our tool: answer with the signed launch, auto-posted."""
        query = dict(request.query)
        activity = self.activities.get(query.get("lti_message_hint", ""))
        if activity is None or query.get("login_hint") != activity.person.sub:
            return web.Response(status=400, text="unknown launch")
        launch = _Launch(query, _Conf(registration=self.registration()))
        person = activity.person
        launch.set_user_data(person.sub, person.roles, person.name or None, person.email or None)
        launch.set_launch_context_claim(activity.course_id, context_title=activity.course_title)
        launch.set_resource_link_claim(activity.resource_link_id)
        if activity.custom:
            launch.set_custom_parameters_claim(activity.custom)
        if activity.deep_linking:
            launch.set_dl(f"{self.base}/deep-link-return", title="Add a lecture", extra_data={"opaque": "keep-me"})
        data = launch.lti_launch()
        fields = "".join(f'<input type="hidden" name="{k}" value="{html.escape(str(v))}">'
                         for k, v in data.items() if k != "launch_url")
        page = (f'<!doctype html><html lang="en"><head><title>Launching</title></head><body>'
                f'<form id="launch" method="post" action="{html.escape(data["launch_url"])}">{fields}'
                f'<button type="submit">Continue</button></form>'
                f'<script>document.getElementById("launch").submit()</script></body></html>')
        return web.Response(text=page, content_type="text/html")

    async def _deep_link_return(self, request: web.Request) -> web.Response:
        """Our LtiDeepLinkingResponse, checked by lti1p3platform against our JWKS (fetched like Moodle does)."""
        form = await request.post()
        conf = _Conf(registration=self.registration())
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.tool}/lti/jwks") as response:
                conf.get_registration().set_tool_key_set(await response.json())
        claims = jwt.decode(str(form["JWT"]), options={"verify_signature": False})
        assert claims["aud"] == self.issuer and claims["iss"] == self.client_id
        items = conf.validate_deeplinking_resp({"JWT": str(form["JWT"])})
        self.returned.append({"items": items, "claims": claims})
        return web.Response(text="<!doctype html><html lang='en'><head><title>Added</title></head>"
                                 "<body><main><h1>Added to the course</h1></main></body></html>", content_type="text/html")

    async def _course_page(self, request: web.Request) -> web.Response:
        """A course page of the LMS that frames the launch (Moodle's "embed" display)."""
        activity = self.activities[request.match_info["hint"]]
        src = html.escape(self.login_url(activity))
        return web.Response(text=f'<!doctype html><html lang="en"><head><title>{activity.course_title}</title></head>'
                                 f'<body><main><h1>{activity.course_title}</h1>'
                                 f'<iframe id="tool" src="{src}" title="Lecture" width="960" height="720" '
                                 f'allow="autoplay; fullscreen"></iframe></main></body></html>',
                            content_type="text/html")


def parse_form(page: str, marker: str = "<form") -> tuple[str, dict[str, str]]:
    """The action and fields of the first form whose opening tag contains ``marker`` (what a browser submits)."""
    start = page.index(marker)
    start = page.rindex("<form", 0, start + 5)
    page = page[start:page.index("</form>", start)]
    action = FORM_ACTION.search(page)
    assert action is not None, page[:500]
    return html.unescape(action.group(1)), {k: html.unescape(v) for k, v in FORM_FIELD.findall(page)}
