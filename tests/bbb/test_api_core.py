"""formats/bbb.py: checksums as BBB's API reference computes them, its example answers read, the callback JWT checked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest

from bbb import callback
from formats import bbb

# The worked example of the API reference ("API Security Model", "Usage").
DOC_QUERY = "name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444"
DOC_SECRET = "639259d4-9dd8-4b25-bf01-95f9567eaf4b"
DOC_CHECKSUM = "1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"

RECORDINGS = b"""<response>
   <returncode>SUCCESS</returncode>
   <recordings>
      <recording>
         <recordID>ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124</recordID>
         <meetingID>c637ba21adcd0191f48f5c4bf23fab0f96ed5c18</meetingID>
         <internalMeetingID>ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124</internalMeetingID>
         <name>Fred's Room</name>
         <isBreakout>false</isBreakout>
         <published>true</published>
         <state>published</state>
         <startTime>1530718721124</startTime>
         <endTime>1530718810456</endTime>
         <participants>3</participants>
         <metadata>
            <isBreakout>false</isBreakout>
            <meetingName>Fred's Room</meetingName>
            <live-server-owner>fred</live-server-owner>
         </metadata>
         <playback>
            <format>
               <type>presentation</type>
               <url>https://demo.bigbluebutton.org/playback/presentation/2.3/ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124</url>
               <processingTime>7177</processingTime>
               <length>0</length>
            </format>
            <format>
               <type>video</type>
               <url>https://demo.bigbluebutton.org/playback/video/ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124/</url>
               <length>2</length>
            </format>
         </playback>
      </recording>
      <recording>
         <recordID>other-1</recordID>
         <meetingID>m2</meetingID>
         <name></name>
         <published>false</published>
         <startTime>0</startTime>
         <endTime>0</endTime>
         <metadata><meetingName>Only a name in the metadata</meetingName></metadata>
         <playback/>
      </recording>
   </recordings>
</response>"""


def test_the_checksum_of_the_api_reference_example() -> None:
    assert bbb.checksum("create", DOC_QUERY, DOC_SECRET) == DOC_CHECKSUM
    params = {"name": "Test Meeting", "meetingID": "abc123", "attendeePW": "111222", "moderatorPW": "333444"}
    assert bbb.query_string(params) == DOC_QUERY
    url = bbb.api_url("http://yourserver.com/bigbluebutton/api/", "create", params, DOC_SECRET)
    assert url == f"http://yourserver.com/bigbluebutton/api/create?{DOC_QUERY}&checksum={DOC_CHECKSUM}"


@pytest.mark.parametrize("algorithm", bbb.ALGORITHMS)
def test_every_algorithm_signs_call_name_query_and_secret(algorithm: str) -> None:
    url = bbb.api_url("https://bbb.test/bigbluebutton/api", "getRecordings", {"meta_live-server-owner": "anne dupré"},
                      "s3cret", algorithm)
    parts = urlsplit(url)
    query, _, sent = parts.query.rpartition("&checksum=")
    assert parts.path == "/bigbluebutton/api/getRecordings"
    assert dict(parse_qsl(query)) == {"meta_live-server-owner": "anne dupré"}
    assert sent == hashlib.new(algorithm, f"getRecordings{query}s3cret".encode()).hexdigest()
    assert len(sent) == {"sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}[algorithm]


def test_a_call_without_parameters_and_bad_names() -> None:
    url = bbb.api_url("https://bbb.test/bigbluebutton/api", "getMeetings", {}, "s3cret")
    assert url.endswith("/getMeetings?checksum=" + hashlib.sha1(b"getMeetingss3cret").hexdigest())
    with pytest.raises(ValueError, match="unknown checksum algorithm 'md5'"):
        bbb.checksum("create", "", "s", "md5")
    with pytest.raises(ValueError, match="not an API call name"):
        bbb.api_url("https://bbb.test/api", "../create", {}, "s")


def test_the_get_recordings_example_is_read() -> None:
    first, second = bbb.parse_recordings(RECORDINGS)
    assert first.record_id == "ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124"
    assert first.meeting_id == "c637ba21adcd0191f48f5c4bf23fab0f96ed5c18" and first.name == "Fred's Room"
    assert first.state == "published" and first.metadata["live-server-owner"] == "fred"
    assert first.start == datetime(2018, 7, 4, 15, 38, 41, 124000, tzinfo=timezone.utc)
    assert first.duration_seconds == pytest.approx(89.332)
    assert [f.type for f in first.formats] == ["presentation", "video"]
    assert first.video is not None and first.video.url.endswith("/playback/video/ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124/")
    assert first.video.length_minutes == 2
    assert second.name == "Only a name in the metadata" and second.state == "" and second.video is None
    assert second.start is None and second.duration_seconds is None
    assert bbb.parse_recordings(b"<response><returncode>SUCCESS</returncode><recordings/>"
                                b"<messageKey>noRecordings</messageKey><message>There are no recordings</message></response>") == []


@pytest.mark.parametrize(("body", "error", "text"), [
    (b"<response><returncode>FAILED</returncode><messageKey>checksumError</messageKey>"
     b"<message>Checksums do not match</message></response>", bbb.BbbFailed, "checksumError: Checksums do not match"),
    (b"<html><body>502 Bad Gateway</body></html>", bbb.BbbMalformed, "the answer is <html>, not a BigBlueButton <response>"),
    (b"<response><returncode>SUCC", bbb.BbbMalformed, "the answer is not XML"),
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><response>&a;</response>', bbb.BbbMalformed, "document type"),
    (b"<response><returncode>MAYBE</returncode></response>", bbb.BbbMalformed, "unexpected returncode 'MAYBE'"),
])
def test_failures_and_non_answers_are_errors_with_their_words(body: bytes, error: type, text: str) -> None:
    with pytest.raises(error) as caught:
        bbb.parse_response(body)
    assert text in str(caught.value)


def test_error_kinds() -> None:
    assert bbb.error_kind(bbb.BbbFailed("checksumError", "Checksums do not match")) == "checksum"
    assert bbb.error_kind(bbb.BbbFailed("notFound", "We could not find a meeting with that meeting ID")) == "unknown-meeting"
    assert bbb.error_kind(bbb.BbbFailed("maxParticipantsReached", "full")) == "refused"
    assert bbb.error_kind(bbb.BbbUnavailable("down")) == "unreachable"
    assert bbb.error_kind(bbb.BbbMalformed("html")) == "malformed"
    assert bbb.error_kind(bbb.NoVideoFormat("none")) == "no-video"


def test_create_answer_of_the_reference() -> None:
    meeting = bbb.parse_meeting(b"""<response><returncode>SUCCESS</returncode><meetingID>Test</meetingID>
      <internalMeetingID>640ab2bae07bedc4c163f679a746f7ab7fb5d1fa-1531155809613</internalMeetingID>
      <attendeePW>ap</attendeePW><moderatorPW>mp</moderatorPW><createTime>1531155809613</createTime>
      <messageKey>duplicateWarning</messageKey><message>This conference was already in existence.</message></response>""")
    assert (meeting.meeting_id, meeting.attendee_pw, meeting.moderator_pw, meeting.message_key) == \
        ("Test", "ap", "mp", "duplicateWarning")


@pytest.mark.parametrize(("url", "expected"), [
    ("https://bbb.test/playback/video/rec-1/", ["https://bbb.test/playback/video/rec-1/video-0.m4v",
                                                "https://bbb.test/playback/video/rec-1/video.mp4",
                                                "https://bbb.test/playback/video/rec-1/video-0.webm",
                                                "https://bbb.test/playback/video/rec-1/video.webm"]),
    ("https://bbb.test/playback/video/rec-1", ["https://bbb.test/playback/video/rec-1/video-0.m4v",
                                               "https://bbb.test/playback/video/rec-1/video.mp4",
                                               "https://bbb.test/playback/video/rec-1/video-0.webm",
                                               "https://bbb.test/playback/video/rec-1/video.webm"]),
    ("https://bbb.test/playback/video/rec-1/index.html", ["https://bbb.test/playback/video/rec-1/video-0.m4v",
                                                          "https://bbb.test/playback/video/rec-1/video.mp4",
                                                          "https://bbb.test/playback/video/rec-1/video-0.webm",
                                                          "https://bbb.test/playback/video/rec-1/video.webm"]),
    ("https://bbb.test/presentation/rec-1/video.webm", ["https://bbb.test/presentation/rec-1/video.webm"]),
])
def test_where_the_video_file_is(url: str, expected: list[str]) -> None:
    assert bbb.video_file_candidates(url) == expected


def test_a_video_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(bbb.BbbMalformed, match="not an http"):
        bbb.video_file_candidates("file:///etc/passwd")


def _jwt(header: dict[str, object], claims: dict[str, object], secret: str) -> str:
    def enc(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    head, body = enc(json.dumps(header).encode()), enc(json.dumps(claims).encode())
    return f"{head}.{body}.{enc(hmac.new(secret.encode(), f'{head}.{body}'.encode(), hashlib.sha256).digest())}"


def test_the_recording_ready_jwt() -> None:
    token = _jwt({"typ": "JWT", "alg": "HS256"}, {"meeting_id": "m-1", "record_id": "r-1"}, "s3cret")
    assert callback.recording_ready_claims(token, "s3cret") == ("m-1", "r-1")
    assert callback.recording_ready_claims(callback.sign_recording_ready("m-2", "r-2", "s3cret"), "s3cret") == ("m-2", "r-2")


@pytest.mark.parametrize(("token", "text"), [
    (_jwt({"alg": "HS256"}, {"meeting_id": "m", "record_id": "r"}, "another secret"), "signature does not match"),
    (_jwt({"alg": "none"}, {"meeting_id": "m", "record_id": "r"}, "s3cret"), "not signed with HS256"),
    (_jwt({"alg": "HS512"}, {"meeting_id": "m", "record_id": "r"}, "s3cret"), "not signed with HS256"),
    (_jwt({"alg": "HS256"}, {"meeting_id": "m"}, "s3cret"), "lacks meeting_id or record_id"),
    (_jwt({"alg": "HS256"}, {"meeting_id": 1, "record_id": "r"}, "s3cret"), "lacks meeting_id or record_id"),
    ("a.b", "not a JWT"),
    ("!!.e30.xx", "unreadable JWT header"),
    ("", "not a JWT"),
])
def test_forged_or_incomplete_callbacks_are_refused(token: str, text: str) -> None:
    with pytest.raises(callback.CallbackRejected, match=text):
        callback.recording_ready_claims(token, "s3cret")


def test_polling_backs_off_while_a_server_fails_and_returns_after() -> None:
    from bbb.deposit import next_poll_delay

    delays, delay = [], 300.0
    for failed in (True, True, True, True, False, True):
        delay = next_poll_delay(delay, 300, 3600, failed=failed)
        delays.append(delay)
    assert delays == [600, 1200, 2400, 3600, 300, 600]
    assert next_poll_delay(300, 300, 60, failed=True) == 300  # a ceiling below the period never polls faster
