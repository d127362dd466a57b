"""The one access rule (live_server/access.py) and its passes, for every visibility x identity x pass.

Pure: no database, no server; each case is a dataclass in, a decision out.
"""

from __future__ import annotations

import itertools

import pytest

from live_server.access import Decision, Person, Target, can_view
from live_server.models import Visibility
from live_server.passes import MediaPasses, PresentedPasses

OWNER, STRANGER, ADMIN = Person(1, session_id=10), Person(2, session_id=20), Person(3, admin=True)
DEACTIVATED_OWNER = Person(1, active=False)
PASSES = MediaPasses("k" * 32, lifetime_seconds=600)
NOW = 1_000_000.0


def event(visibility: Visibility, password_hash: str | None = "pw-v1", secret: str = "s1", event_id: int = 84) -> Target:
    return Target("event", event_id, OWNER.user_id, visibility, secret, password_hash)


class Jar:
    """Cookies a browser presents: passes issued for some targets."""

    def __init__(self, *targets: Target, now: float = NOW) -> None:
        self.cookies = {PASSES.cookie_name(t): PASSES.issue(t, now) for t in targets}

    def passes(self, now: float = NOW) -> PresentedPasses:
        return PASSES.presented(self.cookies, now)


EXPECTED = {
    # visibility:       (anonymous, another account, anonymous with a pass)
    Visibility.PUBLIC: (Decision.ALLOWED, Decision.ALLOWED, Decision.ALLOWED),
    Visibility.UNLISTED: (Decision.ALLOWED, Decision.ALLOWED, Decision.ALLOWED),
    Visibility.AUTHENTICATED: (Decision.LOGIN_REQUIRED, Decision.ALLOWED, Decision.LOGIN_REQUIRED),
    Visibility.PASSWORD: (Decision.PASSWORD_REQUIRED, Decision.PASSWORD_REQUIRED, Decision.ALLOWED),
    # course: bound to no course here, so nobody but its managers; members below
    Visibility.COURSE: (Decision.LOGIN_REQUIRED, Decision.NOT_FOUND, Decision.LOGIN_REQUIRED),
}


@pytest.mark.parametrize("visibility", list(Visibility))
def test_every_visibility_for_every_identity(visibility: Visibility) -> None:
    target = event(visibility)
    anonymous, stranger, anonymous_with_pass = EXPECTED[visibility]
    assert can_view(None, target) is anonymous
    assert can_view(STRANGER, target) is stranger
    assert can_view(None, target, Jar(target).passes()) is anonymous_with_pass
    assert can_view(OWNER, target) is Decision.ALLOWED and can_view(ADMIN, target) is Decision.ALLOWED
    # a deactivated account is nobody, even its own events' owner
    assert can_view(DEACTIVATED_OWNER, target) is anonymous


@pytest.mark.parametrize("visibility, ready, who", list(itertools.product(list(Visibility), (True, False), ("anon", "stranger", "owner"))))
def test_recordings_follow_the_same_rule_and_hide_until_ready(visibility: Visibility, ready: bool, who: str) -> None:
    person = {"anon": None, "stranger": STRANGER, "owner": OWNER}[who]
    recording = Target("recording", 7, OWNER.user_id, visibility, "r1", "pw-v1", ready, event(Visibility.PASSWORD))
    decision = can_view(person, recording)
    if who == "owner":
        assert decision is Decision.ALLOWED
    elif not ready:
        assert decision is Decision.NOT_FOUND
    else:
        assert decision is EXPECTED[visibility][0 if person is None else 1]


def test_a_pass_for_the_event_opens_its_password_recording_and_nothing_else() -> None:
    live = event(Visibility.PASSWORD)
    recording = Target("recording", 7, OWNER.user_id, Visibility.PASSWORD, "r1", "pw-v1", True, live)
    assert can_view(None, recording, Jar(live).passes()) is Decision.ALLOWED
    other = Target("recording", 8, OWNER.user_id, Visibility.PASSWORD, "r2", "pw-v1", True, event(Visibility.PASSWORD, event_id=85))
    assert can_view(None, other, Jar(live).passes()) is Decision.PASSWORD_REQUIRED
    # a recording's own pass does not open its event
    assert can_view(None, live, Jar(recording).passes()) is Decision.PASSWORD_REQUIRED


def test_a_pass_dies_with_what_granted_it() -> None:
    granted = event(Visibility.PASSWORD)
    jar = Jar(granted)
    assert can_view(None, granted, jar.passes()) is Decision.ALLOWED
    new_password = event(Visibility.PASSWORD, password_hash="pw-v2")
    assert can_view(None, new_password, jar.passes()) is Decision.PASSWORD_REQUIRED
    now_authenticated = event(Visibility.AUTHENTICATED)
    assert can_view(None, now_authenticated, jar.passes()) is Decision.LOGIN_REQUIRED
    # a new event that reuses the id (another secret) does not honour it
    reused_id = event(Visibility.PASSWORD, secret="s2")
    assert can_view(None, reused_id, jar.passes()) is Decision.PASSWORD_REQUIRED
    # nor after its lifetime
    assert can_view(None, granted, jar.passes(now=NOW + 601)) is Decision.PASSWORD_REQUIRED


def test_an_authenticated_pass_never_opens_a_password_event() -> None:
    """Passes are signed over the visibility: one issued while the event was 'authenticated' is void once it is 'password'."""
    was_authenticated = event(Visibility.AUTHENTICATED)
    jar = Jar(was_authenticated)
    assert can_view(None, event(Visibility.PASSWORD), jar.passes()) is Decision.PASSWORD_REQUIRED


def test_forged_and_malformed_passes_are_refused() -> None:
    target = event(Visibility.PASSWORD)
    name = PASSES.cookie_name(target)
    for token in ("", ".", "9999999999.deadbeef", "abc.def", "²²²²²²²²²².x", "9" * 400 + ".x",
                  MediaPasses("other" * 8).issue(target, NOW)):
        assert can_view(None, target, PASSES.presented({name: token}, NOW)) is Decision.PASSWORD_REQUIRED, token


def test_renewal_is_due_past_half_the_lifetime() -> None:
    token = PASSES.issue(event(Visibility.PASSWORD), NOW)
    assert not PASSES.due_for_renewal(token, NOW + 100)
    assert PASSES.due_for_renewal(token, NOW + 400)
    assert not PASSES.due_for_renewal(token, NOW + 700)  # expired: nothing to renew


def test_the_rule_and_the_passes_are_ground_floor() -> None:
    """access.py and passes.py import no component (ingest, chat, captions, recorder, vod, web)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "live_server"
    for name in ("access.py", "passes.py"):
        tree = ast.parse((root / name).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        components = {m for m in imported if m.split(".")[0] in ("ingest", "chat", "captions", "recorder", "vod", "web")}
        assert components == set(), (name, components)


def test_a_course_target_is_seen_by_the_members_of_its_course_only() -> None:
    course = Target("event", 84, OWNER.user_id, Visibility.COURSE, "s1", None, course_id=5)
    learner = Person(2, courses=frozenset({5}))
    other_course = Person(4, courses=frozenset({6}), teaching=frozenset({6}))
    instructor = Person(5, courses=frozenset({5}), teaching=frozenset({5}))
    assert can_view(learner, course) is Decision.ALLOWED
    assert can_view(other_course, course) is Decision.NOT_FOUND  # its existence is not told
    assert can_view(None, course) is Decision.LOGIN_REQUIRED
    assert can_view(None, course, Jar(course).passes()) is Decision.LOGIN_REQUIRED  # no pass opens a course
    assert can_view(Person(2, active=False, courses=frozenset({5})), course) is Decision.LOGIN_REQUIRED
    assert can_view(OWNER, course) is Decision.ALLOWED and can_view(ADMIN, course) is Decision.ALLOWED
    from live_server.access import can_manage
    assert can_manage(instructor, course) and not can_manage(learner, course) and not can_manage(other_course, course)
    # an unavailable course recording is for its managers only, the course's instructors included
    recording = Target("recording", 7, OWNER.user_id, Visibility.COURSE, "r1", None, False, course, 5)
    assert can_view(learner, recording) is Decision.NOT_FOUND and can_view(instructor, recording) is Decision.ALLOWED
    # teaching a course does not open the same course id on a target of another visibility
    assert not can_manage(instructor, Target("event", 85, OWNER.user_id, Visibility.PASSWORD, "s", "pw", course_id=5))
