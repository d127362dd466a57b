// "Go live from this browser": camera/microphone → WebRTC → the server's WHIP endpoint (RFC 9725).
// The event's owner sees this on the event page; the stream key comes from the event API.
(function () {
  "use strict";
  var textBlock = document.getElementById("golive-text");
  var TEXTS = textBlock ? JSON.parse(textBlock.textContent) : {};
  function t(key, values) {
    return (TEXTS[key] || key).replace(/%\((\w+)\)s/g, function (_, name) { return values && name in values ? values[name] : ""; });
  }
  var root = document.getElementById("golive");
  if (!root) return;
  var el = function (id) { return document.getElementById(id); };
  var cameraSelect = el("golive-camera"), micSelect = el("golive-microphone");
  var preview = el("golive-preview"), stateLine = el("golive-state"), message = el("golive-message");
  var previewButton = el("golive-preview-button"), startButton = el("golive-start"), stopButton = el("golive-stop");
  var CONNECT_TIMEOUT_MS = 20000;
  var stream = null, pc = null, session = null, connectTimer = null;

  function setState(state, text) {
    stateLine.dataset.state = state;
    stateLine.textContent = text;
    startButton.disabled = state === "connecting" || state === "live";
    stopButton.disabled = !(state === "connecting" || state === "live");
  }
  function showError(text) { message.textContent = text; message.hidden = !text; }

  function mediaErrorText(err) {
    var name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError")
      return t("denied");
    if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError")
      return t("no_device");
    if (name === "NotReadableError" || name === "TrackStartError")
      return "The camera or microphone is in use by another application. Close it and try again.";
    return t("open_failed", { reason: err && err.message ? err.message : err });
  }

  function webrtcMissing() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia)
      return t("https");
    if (typeof window.RTCPeerConnection !== "function")
      return t("webrtc_off");
    return "";
  }

  function fillDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return Promise.resolve();
    return navigator.mediaDevices.enumerateDevices().then(function (devices) {
      [[cameraSelect, "videoinput", t("camera")], [micSelect, "audioinput", t("microphone")]].forEach(function (spec) {
        var select = spec[0], chosen = select.value;
        var found = devices.filter(function (d) { return d.kind === spec[1] && d.deviceId; });
        if (!found.length) return;
        select.textContent = "";
        found.forEach(function (d, i) {
          var option = document.createElement("option");
          option.value = d.deviceId;
          option.textContent = d.label || (spec[2] + " " + (i + 1));
          select.appendChild(option);
        });
        if (chosen) select.value = chosen;
      });
    }).catch(function () { /* the lists keep their defaults */ });
  }

  function openDevices() {
    var missing = webrtcMissing();
    if (missing) return Promise.reject({ shown: missing });
    var video = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
    if (cameraSelect.value) video.deviceId = { exact: cameraSelect.value };
    var audio = micSelect.value ? { deviceId: { exact: micSelect.value } } : true;
    if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
    return navigator.mediaDevices.getUserMedia({ video: video, audio: audio }).then(function (s) {
      stream = s;
      preview.srcObject = s;
      fillDevices();
      return s;
    }, function (err) { throw { shown: mediaErrorText(err) }; });
  }

  function loadEvent() {
    return fetch(root.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw { shown: t("settings_failed", { status: r.status }) }; return r.json(); })
      .then(function (ev) {
        if (!ev.stream || !ev.stream.whip_url || !ev.stream.whip_bearer_token) throw { shown: t("owner_only") };
        // whip_url is built from the site's public URL, which is this page's origin: keep the path,
        // so a page reached through another name for the same server still works.
        return { whip_url: new URL(new URL(ev.stream.whip_url).pathname, location.href).href, whip_bearer_token: ev.stream.whip_bearer_token };
      });
  }

  // ICE servers advertised by the endpoint (Link: <stun:...>; rel="ice-server"; username=...; credential=...).
  function iceServers(endpoint) {
    return fetch(endpoint, { method: "OPTIONS", credentials: "omit" }).then(function (r) {
      var header = r.headers.get("Link") || "", servers = [];
      header.split(/,(?=\s*<)/).forEach(function (part) {
        var url = /<([^>]+)>/.exec(part);
        if (!url || !/rel="?ice-server"?/.test(part)) return;
        var server = { urls: url[1] };
        var user = /username="([^"]*)"/.exec(part), cred = /credential="([^"]*)"/.exec(part);
        if (user) server.username = user[1];
        if (cred) server.credential = cred[1];
        servers.push(server);
      });
      return servers;
    }).catch(function () { return []; });
  }

  // H.264 first: the server keeps it as is (VP8 costs a transcode there).
  function preferH264(transceiver) {
    if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
    var codecs = RTCRtpReceiver.getCapabilities("video").codecs;
    var h264 = codecs.filter(function (c) {
      return /h264/i.test(c.mimeType) && /packetization-mode=1/.test(c.sdpFmtpLine || "") && /profile-level-id=42/.test(c.sdpFmtpLine || "");
    });
    if (!h264.length) return;
    try { transceiver.setCodecPreferences(h264.concat(codecs.filter(function (c) { return h264.indexOf(c) < 0; }))); }
    catch (e) { /* keep the browser's order */ }
  }

  function gatheringDone(peer) {
    return new Promise(function (resolve) {
      if (peer.iceGatheringState === "complete") return resolve();
      peer.addEventListener("icegatheringstatechange", function () { if (peer.iceGatheringState === "complete") resolve(); });
      setTimeout(resolve, 3000);
    });
  }

  function start() {
    showError("");
    setState("connecting", t("connecting"));
    var target;
    Promise.all([loadEvent(), stream ? Promise.resolve(stream) : openDevices()]).then(function (r) {
      target = r[0];
      return iceServers(target.whip_url);
    }).then(function (servers) {
      pc = new RTCPeerConnection({ iceServers: servers, bundlePolicy: "max-bundle" });
      pc.addEventListener("connectionstatechange", onConnectionState);
      stream.getTracks().forEach(function (track) {
        var t = pc.addTransceiver(track, { direction: "sendonly", streams: [stream],
          sendEncodings: track.kind === "video" ? [{ maxBitrate: 2500000 }] : undefined });
        if (track.kind === "video") preferH264(t);
      });
      return pc.createOffer();
    }).then(function (offer) {
      return pc.setLocalDescription(offer);
    }).then(function () {
      return gatheringDone(pc);
    }).then(function () {
      return fetch(target.whip_url, {
        method: "POST", credentials: "omit", body: pc.localDescription.sdp,
        headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + target.whip_bearer_token },
      });
    }).then(function (r) {
      return r.text().then(function (body) {
        if (r.status !== 201) throw { shown: serverErrorText(r.status, body) };
        session = { url: new URL(r.headers.get("Location"), target.whip_url).href, token: target.whip_bearer_token };
        return pc.setRemoteDescription({ type: "answer", sdp: body });
      });
    }).then(function () {
      connectTimer = setTimeout(function () {
        if (pc && pc.connectionState !== "connected") fail(t("udp_blocked"));
      }, CONNECT_TIMEOUT_MS);
    }).catch(function (err) {
      fail(err && err.shown ? err.shown : t("going_live_failed", { reason: err && err.message ? err.message : err }));
    });
  }

  function serverErrorText(status, body) {
    var text = (body || "").trim();
    if (status === 409) return t("conflict") + " " + text;
    if (status === 401) return t("refused_key") + " " + text;
    if (status === 503) return t("busy") + " " + text;
    return t("refused", { status: status }) + " " + text;
  }

  function onConnectionState() {
    if (!pc) return;
    var s = pc.connectionState;
    if (s === "connected") { clearTimeout(connectTimer); setState("live", t("live")); }
    else if (s === "disconnected") setState("live", t("unstable"));
    else if (s === "failed") fail(t("failed_connection"));
  }

  function endSession(keepalive) {
    if (session) {
      fetch(session.url, { method: "DELETE", credentials: "omit", keepalive: !!keepalive,
        headers: { Authorization: "Bearer " + session.token } }).catch(function () {});
      session = null;
    }
    clearTimeout(connectTimer);
    if (pc) { pc.close(); pc = null; }
  }

  function fail(text) { endSession(false); setState("failed", t("not_broadcasting")); showError(text); }

  function stop() { endSession(false); showError(""); setState("stopped", t("stopped")); }

  previewButton.addEventListener("click", function () {
    showError("");
    openDevices().then(function () { if (!pc) setState("previewing", t("previewing")); })
      .catch(function (err) { showError(err && err.shown ? err.shown : String(err)); });
  });
  [cameraSelect, micSelect].forEach(function (s) {
    s.addEventListener("change", function () {
      if (stream && !pc) openDevices().catch(function (err) { showError(err.shown || String(err)); });
    });
  });
  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
  window.addEventListener("pagehide", function () { endSession(true); });

  var missing = webrtcMissing();
  if (missing) { showError(missing); startButton.disabled = previewButton.disabled = true; }
  else fillDevices();
})();
