"""A WHIP publisher built on GStreamer's ``webrtcbin``, run by Debian's python3 (python3-gi), not the venv.

An independent WebRTC stack (libnice, GStreamer's DTLS with an RSA certificate) next to ffmpeg and
Chromium (with ``--host-address 127.0.0.1`` it gathers on loopback, as Chromium does in our tests
with --allow-loopback-in-peer-connection): test pattern + tone, x264enc and opusenc with their default settings (H.264 capped to
constrained baseline, as every WebRTC receiver requires). It POSTs the complete offer (all
candidates, no trickle), applies the answer, sends for ``--seconds`` and DELETEs the session.
``--offer-setup passive`` rewrites the POSTed offer's ``a=setup`` so that the server must answer
as DTLS client, which makes GStreamer the DTLS server with its RSA certificate.

Exit status 0 when the peer connection reached "connected" and media flowed; the last line on
stdout is a JSON summary either way.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

PIPELINE = """
webrtcbin name=webrtc bundle-policy={bundle}
videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! videoconvert
  ! x264enc ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=102
  ! application/x-rtp,media=video,encoding-name=H264,payload=102 ! webrtc.
audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! webrtc.
"""


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(PIPELINE.format(bundle=args.bundle_policy))
        self.webrtc = self.pipe.get_by_name("webrtc")
        if args.host_address:
            # libnice leaves loopback out; with local addresses set it gathers on those only.
            address = Nice.Address.new()
            address.set_from_string(args.host_address)
            # Keep the wrapper: PyGObject sinks webrtcbin's floating ICE object and would free it with it.
            self.ice = self.webrtc.get_property("ice-agent")
            self.ice.get_property("agent").add_local_address(address)
        self.summary: dict[str, object] = {"bundle_policy": args.bundle_policy, "states": []}
        self.connected = False
        self.location: str | None = None
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        self.offered = False

    def run(self) -> int:
        for transceiver in self.transceivers():  # before PLAYING, so that the first offer is sendonly
            transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add_seconds(int(self.args.timeout), self.on_timeout)
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        if self.location:
            self.delete()
        print(json.dumps(self.summary), flush=True)
        return 0 if self.summary.get("result") == "ok" else 1

    def transceivers(self) -> list:
        found = []
        index = 0
        while True:
            transceiver = self.webrtc.emit("get-transceiver", index)
            if transceiver is None:
                return found
            found.append(transceiver)
            index += 1

    def on_negotiation_needed(self, element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        element.emit("create-offer", None, promise)

    def on_offer_created(self, promise: Gst.Promise, _data: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
        if offer is None:
            self.summary["offer_error"] = reply.to_string() if reply is not None else "no reply"
            GLib.idle_add(self.finish, "no_offer")
            return
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, element: Gst.Element, _pspec: object) -> None:
        if element.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE or self.offered:
            return
        self.offered = True
        sdp = element.get_property("local-description").sdp.as_text()
        if self.args.offer_setup:
            sdp = sdp.replace("a=setup:actpass", f"a=setup:{self.args.offer_setup}")
        threading.Thread(target=self.post, args=(sdp,), daemon=True).start()

    def post(self, sdp: str) -> None:
        self.summary["offer"] = sdp
        request = urllib.request.Request(self.args.url, data=sdp.encode(), method="POST", headers={
            "Content-Type": "application/sdp", "Authorization": f"Bearer {self.args.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer_text = response.read().decode()
                self.location = urllib.parse.urljoin(self.args.url, response.headers["Location"])
                self.summary["status"] = response.status
        except urllib.error.HTTPError as exc:
            self.summary.update(status=exc.code, error=exc.read().decode(errors="replace"))
            GLib.idle_add(self.finish, "refused")
            return
        except OSError as exc:
            self.summary["error"] = str(exc)
            GLib.idle_add(self.finish, "unreachable")
            return
        self.summary["answer"] = answer_text
        GLib.idle_add(self.apply_answer, answer_text)

    def apply_answer(self, text: str) -> bool:
        _res, message = GstSdp.SDPMessage.new_from_text(text)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        return False

    def on_connection_state(self, element: Gst.Element, _pspec: object) -> None:
        state = element.get_property("connection-state").value_nick
        self.summary["states"].append(state)  # type: ignore[union-attr]
        if state == "connected" and not self.connected:
            self.connected = True
            GLib.timeout_add(int(self.args.seconds * 1000), self.finish, "ok")
        elif state == "failed":
            GLib.idle_add(self.finish, "failed")

    def on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        self.summary["gst_error"] = f"{error.message} ({debug})"
        self.finish("gst_error")

    def on_timeout(self) -> bool:
        self.finish("timeout")
        return False

    def finish(self, result: str) -> bool:
        self.summary.setdefault("result", result)
        self.loop.quit()
        return False

    def delete(self) -> None:
        request = urllib.request.Request(self.location, method="DELETE",
                                         headers={"Authorization": f"Bearer {self.args.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                self.summary["delete_status"] = response.status
        except urllib.error.HTTPError as exc:
            self.summary["delete_status"] = exc.code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--bundle-policy", default="max-compat", choices=["none", "max-compat", "max-bundle"])
    parser.add_argument("--host-address", help="gather ICE candidates on this address only (e.g. 127.0.0.1)")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long to send once connected")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up when not done by then")
    parser.add_argument("--offer-setup", choices=["passive", "active"], help="rewrite a=setup:actpass in the POSTed offer")
    Gst.init(None)
    started = time.monotonic()
    code = Client(parser.parse_args()).run()
    print(f"# finished in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
