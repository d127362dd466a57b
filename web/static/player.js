// Minimal live player: waits for the stream, plays it with hls.js (native HLS on Safari).
(function () {
  "use strict";
  var video = document.getElementById("player");
  if (!video) return;
  var stateLine = document.getElementById("event-state");
  var src = video.dataset.src;
  var hls = null;

  function say(text) { if (stateLine) stateLine.textContent = text; }
  // Texts come translated from the page (data-msg-*); English when a page gives none.
  function msg(name, fallback) { return video.dataset["msg" + name] || fallback; }

  function attach() {
    if (hls || video.src) return;
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ liveSyncDurationCount: 3, lowLatencyMode: false, xhrSetup: function (xhr) { xhr.withCredentials = true; } });
      hls.on(window.Hls.Events.ERROR, function (_e, data) {
        if (data.fatal && data.type === window.Hls.ErrorTypes.NETWORK_ERROR) { setTimeout(function () { hls.startLoad(); }, 2000); }
        else if (data.fatal) { hls.recoverMediaError(); }
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;
    } else {
      say(msg("Unsupported", "This browser cannot play HLS video."));
      return;
    }
    if (video.dataset.state === "vod") return;  // a recording starts when the viewer presses play
    video.muted = true;
    video.play().catch(function () { /* autoplay refused: the controls remain */ });
  }

  function poll() {
    fetch(video.dataset.api, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (ev) {
      if (ev.state === "live") { say(msg("Live", "Live now.")); attach(); }
      else if (ev.state === "ended") { say(msg("Ended", "This event has ended.")); if (!hls) attach(); return; }
      else { say(msg("Waiting", "Waiting for the stream to start.")); }
      setTimeout(poll, 5000);
    }).catch(function () { setTimeout(poll, 5000); });
  }

  if (video.dataset.state === "vod") { attach(); return; }  // a recording: no live state to follow
  if (video.dataset.state === "live") attach();
  poll();
})();
