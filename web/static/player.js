// The live player of the event page (and of the embed page): hls.js, or native HLS on Safari.
// It follows the event without a reload (the event API, polled): waiting → live → ended, then the
// link to the replay once the recording is ready. While a live event gets no media (the publisher
// left and may come back within the grace period), it says the stream is interrupted instead of
// showing a frozen frame as live. On the event page it also offers the quality
// levels, captions (the live overlay fed by the chat socket, else the WebVTT rendition of the
// master playlist), the distance to the live edge with "Back to live", the viewer count and the
// lecturer's chapter marker. Every part is optional: it runs only if its element is on the page.
// Texts come translated from the page (#player-text, or data-msg-* on the video).
(function () {
  "use strict";
  var video = document.getElementById("player");
  if (!video) return;
  var $ = function (id) { return document.getElementById(id); };

  // --- texts -----------------------------------------------------------------------------------
  var T = window.PlayerText.load("player-text"), clock = window.PlayerText.clock;
  var DATA_MSG = { scheduled: "msgWaiting", live: "msgLive", ended: "msgEnded", unsupported: "msgUnsupported",
                   interrupted: "msgInterrupted" };
  var lang = document.documentElement.lang || "en";
  var plural = window.Intl && Intl.PluralRules ? new Intl.PluralRules(lang) : null;
  function t(name, fallback, vars) {
    return window.PlayerText.fill(T[name] || video.dataset[DATA_MSG[name] || ""] || fallback, vars);
  }
  var FALLBACK = { scheduled: "Waiting for the stream to start.", live: "Live now.", ended: "This event has ended.",
                   interrupted: "The stream is interrupted; it will resume by itself." };

  // --- elements (all optional but the video) ------------------------------------------------------
  var box = $("player-box"), stateLine = $("event-state"), slate = $("player-slate"), badge = $("event-badge");
  var bar = $("player-bar"), latency = $("latency"), goLive = $("go-live"), unmute = $("unmute");
  var qualityField = $("quality-field"), quality = $("quality"), captionsToggle = $("captions-toggle");
  var overlay = $("caption-overlay"), captionLive = $("caption-live"), viewerCount = $("viewer-count");
  var after = $("event-after"), chat = $("chat"), notice = $("player-notice");
  var src = video.dataset.src, api = video.dataset.api, eventId = video.dataset.eventId;
  var state = video.dataset.state;  // scheduled | live | ended | vod
  var hls = null, attached = false, retryDelay = 2000, replayFound = !!$("replay-link");
  var interrupted = false;  // live, but no media arriving (the event API's "interrupted")

  // --- state -----------------------------------------------------------------------------------------
  function setState(next) {
    var changed = next !== state;
    if (next !== "live") setInterrupted(false, true);
    state = next;
    video.dataset.state = next;
    if (box) box.dataset.state = next;
    if (stateLine && (changed || !stateLine.textContent)) stateLine.textContent = t(next, FALLBACK[next]);
    if (slate) {
      slate.querySelector("p").textContent = t(next, FALLBACK[next]);
      showSlate(!(next === "live" || (next === "ended" && attached && !video.ended)));
    }
    if (badge && changed) {
      var b = badge.querySelector(".badge");
      if (b) {
        b.textContent = t("badge_" + next, next);
        b.classList.toggle("live", next === "live");
      }
    }
    if (viewerCount) viewerCount.hidden = next !== "live";
    var chapterForm = $("chapter-form");
    if (chapterForm) chapterForm.hidden = next !== "live";
    if (next === "live") attach();
    if (next === "ended") {
      if (latency) { latency.textContent = ""; latency.classList.remove("at-live"); }
      hideKeepingFocus(goLive);
      findReplay(0);
    }
    updateBar();
  }

  function updateBar() { if (bar) bar.hidden = !attached; }

  // "Back to live" and "Turn the sound on" hide themselves once done: the keyboard focus they had goes to
  // the video, not to the top of the page (WCAG 2.4.3).
  function hideKeepingFocus(button) {
    if (!button || button.hidden) return;
    var focused = document.activeElement === button;
    button.hidden = true;
    if (focused) video.focus();
  }

  // A gap in the publisher's media: the frame on screen is frozen, so say so (and that it comes back).
  // quiet: the state is changing anyway (ended), so its texts are left to setState.
  function setInterrupted(on, quiet) {
    if (on === interrupted) return;
    interrupted = on;
    if (box) box.dataset.interrupted = on ? "true" : "false";
    if (notice) notice.hidden = !on;
    if (quiet) return;
    var text = t(on ? "interrupted" : "live", FALLBACK[on ? "interrupted" : "live"]);
    if (stateLine) stateLine.textContent = text;
    if (notice) notice.querySelector("p").textContent = t("interrupted", FALLBACK.interrupted);
    if (latency) { latency.textContent = on ? text : ""; latency.classList.remove("at-live"); }
    if (on) hideKeepingFocus(goLive);
    if (!on) showLatency();
  }

  // The slate over the video says the state; the state line (the live region) is then only heard.
  // The video under it is no Tab stop: there is nothing to do with it.
  function showSlate(show) {
    slate.hidden = !show;
    if (show) video.setAttribute("tabindex", "-1"); else video.removeAttribute("tabindex");
    if (stateLine) stateLine.classList.toggle("visually-hidden", show);
  }

  // --- playback --------------------------------------------------------------------------------------
  function play() {
    var started = video.play();
    if (!started || !started.catch) return;
    started.catch(function () {
      // Sound without a click is refused: play muted and offer the sound.
      video.muted = true;
      video.play().catch(function () { /* the controls remain */ });
      if (unmute) unmute.hidden = false;
    });
  }

  function attach() {
    if (attached) return;
    if (window.Hls && window.Hls.isSupported()) {
      attached = true;
      // lowLatencyMode: an LL-HLS playlist (EXT-X-PART) is played PART-HOLD-BACK behind its edge with blocking
      // reloads; a plain one is unaffected and stays liveSyncDurationCount (hls.js default: 3) target durations
      // behind. That count is deliberately not set here: any user value would override PART-HOLD-BACK.
      // A recording's text tracks are the page's <track> elements: hls.js leaves the master's SUBTITLES renditions
      // alone there, so the menu lists each track once.
      hls = new window.Hls({ lowLatencyMode: true, enableWebVTT: state !== "vod", xhrSetup: function (xhr, url) {
        xhr.withCredentials = true;
        // the owner's audience figures count who watches with captions (the socket overlay polls no subtitles playlist);
        // on parts and segments too: behind nginx's playlist cache those are the requests that reach the app
        if (/\.(m3u8|m4s|ts)(\?|$)/.test(url)) xhr.setRequestHeader("X-Live-Captions", captionsShown() ? "1" : "0");
      } });
      hls.on(window.Hls.Events.ERROR, onError);
      hls.on(window.Hls.Events.MANIFEST_PARSED, function () { retryDelay = 2000; fillLevels(); play(); });
      hls.on(window.Hls.Events.LEVEL_SWITCHED, showLevel);
      hls.on(window.Hls.Events.SUBTITLE_TRACKS_UPDATED, applyCaptions);
      if (window.AudioTracks) window.AudioTracks.attach(hls, document.getElementById("audio-tracks"));  // recordings' audio description
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      attached = true;
      video.src = src;
      video.textTracks.addEventListener("addtrack", applyCaptions);
      play();
    } else {
      var unsupported = t("unsupported", "This browser cannot play this video.");
      if (stateLine) stateLine.textContent = unsupported;
      if (slate) { slate.querySelector("p").textContent = unsupported; showSlate(true); }
      return;
    }
    if (state === "vod") return;
    updateBar();
    applyCaptions();
  }

  function onError(_event, data) {
    if (!data.fatal) return;
    if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) {
      // The stream is not there yet or dropped: try again while the event is live (backing off).
      if (latency) latency.textContent = t("stream_trouble", "The stream is interrupted; trying again…");
      setTimeout(function () {
        if (state === "ended" && !hls.levels.length) return;
        if (!hls.levels.length) hls.loadSource(src); else hls.startLoad();
      }, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    } else if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
      hls.recoverMediaError();
    }
  }

  if (unmute) {
    unmute.addEventListener("click", function () { video.muted = false; hideKeepingFocus(unmute); });
    video.addEventListener("volumechange", function () { if (!video.muted) hideKeepingFocus(unmute); });
  }
  video.addEventListener("ended", function () { if (state === "ended" && slate) showSlate(true); });

  // --- quality levels --------------------------------------------------------------------------------
  function levelName(level) {
    if (level.height) return level.height + "p";
    if (!level.videoCodec && level.audioCodec) return t("audio_only", "Sound only");
    return t("kbps", "%(kbps)s kb/s", { kbps: Math.round(level.bitrate / 1000) });
  }

  function fillLevels() {
    if (!quality || !hls) return;
    var levels = hls.levels || [];
    while (quality.options.length > 1) quality.remove(1);
    var order = levels.map(function (l, i) { return i; });
    order.sort(function (a, b) { return (levels[b].height || 0) - (levels[a].height || 0) || levels[b].bitrate - levels[a].bitrate; });
    order.forEach(function (i) {
      var option = document.createElement("option");
      option.value = String(i);
      option.textContent = levelName(levels[i]);
      quality.appendChild(option);
    });
    qualityField.hidden = levels.length < 2;
    quality.value = hls.autoLevelEnabled ? "-1" : String(hls.currentLevel);
  }

  function showLevel() {
    if (!quality || !hls || !hls.levels[hls.currentLevel]) return;
    var auto = quality.options[0];
    auto.textContent = t("auto_level", "Automatic (%(quality)s)", { quality: levelName(hls.levels[hls.currentLevel]) });
  }

  if (quality) {
    quality.addEventListener("change", function () {
      if (!hls) return;
      hls.currentLevel = Number(quality.value);  // -1: automatic (by bandwidth)
    });
  }

  // --- distance to the live edge ---------------------------------------------------------------------
  function edgeDistance() {
    if (hls) {
      if (typeof hls.latency === "number" && isFinite(hls.latency) && hls.latency > 0) return hls.latency;
      return null;
    }
    var r = video.seekable;
    return r && r.length ? Math.max(0, r.end(r.length - 1) - video.currentTime) : null;
  }

  function targetDistance() {
    if (hls && typeof hls.targetLatency === "number" && hls.targetLatency > 0) return hls.targetLatency;
    return 10;
  }

  // Seconds behind what the player normally keeps from the edge; about 0 when watching live.
  function behindLive() {
    var distance = edgeDistance();
    return distance === null ? null : Math.max(0, distance - targetDistance());
  }

  function showLatency() {
    if (!latency || state !== "live" || interrupted || !attached || video.readyState < 2) return;
    var distance = edgeDistance();
    if (distance === null) return;
    var behind = distance - targetDistance();
    var atLive = behind < Math.max(4, targetDistance() / 2) && !video.paused;
    latency.textContent = atLive ? t("at_live", "Live, %(seconds)s s delay", { seconds: Math.round(distance) })
      : t("behind_live", "%(seconds)s s behind live", { seconds: Math.round(distance) });
    latency.classList.toggle("at-live", atLive);
    if (atLive) hideKeepingFocus(goLive); else if (goLive) goLive.hidden = false;
  }

  if (goLive) {
    goLive.addEventListener("click", function () {
      var target = null;
      if (hls && hls.liveSyncPosition) target = hls.liveSyncPosition;
      else if (video.seekable.length) target = video.seekable.end(video.seekable.length - 1) - 6;
      if (target !== null && isFinite(target)) video.currentTime = target;
      play();
    });
  }

  // --- captions ---------------------------------------------------------------------------------------
  var PREFERENCE = "live-captions";
  var captionLanguage = video.dataset.captions || "";
  var captionsOn = true;  // on unless this viewer turned them off before
  try { captionsOn = window.localStorage.getItem(PREFERENCE) !== "off"; } catch (e) { /* private mode */ }
  var socketCaptions = !!(chat && chat.dataset.connected === "true");
  var pending = [], shown = null, shownUntil = 0, shownSince = 0, overlayActive = false, renditionShown = null;

  function renditionTracks() {
    if (hls) return hls.subtitleTracks || [];
    return Array.prototype.filter.call(video.textTracks, function (tr) { return tr.kind === "subtitles" || tr.kind === "captions"; });
  }

  function captionsShown() {  // on, and this event has captions (live overlay or the WebVTT rendition)
    return !!(captionsOn && (captionLanguage || renditionTracks().length > 0));
  }

  // A recording (embed page) has the replay's <track> elements, one per text track: the toggle shows the
  // default one (the captions) or hides every track, once it has cues; the choice is the same one as on the
  // live pages. The other tracks (subtitles in other languages) are in the video's own menu.
  var trackShown = null;
  function applyTrackCaptions() {
    var elements = Array.prototype.filter.call(video.querySelectorAll("track"), function (el) { return el.kind !== "chapters"; });
    var main = elements.filter(function (el) { return el.default; })[0] || elements[0];
    var track = main ? main.track : null;
    captionsToggle.hidden = !(track && track.cues && track.cues.length > 0);
    captionsToggle.setAttribute("aria-pressed", captionsOn ? "true" : "false");
    if (!track || trackShown === captionsOn) return;  // in between, the viewer may use the video's own menu
    trackShown = captionsOn;
    elements.forEach(function (el) { if (el !== main || !captionsOn) el.track.mode = "hidden"; });
    if (captionsOn) track.mode = "showing";
  }
  Array.prototype.forEach.call(video.querySelectorAll("track"), function (el) { el.addEventListener("load", applyCaptions); });

  function applyCaptions() {
    if (!captionsToggle) return;
    if (state === "vod") { applyTrackCaptions(); return; }
    var rendition = renditionTracks().length > 0;
    captionsToggle.hidden = !(captionLanguage || rendition);
    captionsToggle.setAttribute("aria-pressed", captionsOn ? "true" : "false");
    // At the live edge the overlay is sooner (it shows words as they are recognised); behind it,
    // or without the chat socket, the WebVTT rendition follows the video wherever it is.
    var behind = behindLive();
    overlayActive = captionsOn && socketCaptions && state === "live" && (behind === null || behind < 30);
    var useRendition = captionsOn && rendition && !overlayActive;
    if (overlay) overlay.hidden = !overlayActive || !overlay.textContent;
    // Only on a change: in between, the viewer may pick a track in the video's own menu.
    if (!rendition || useRendition === renditionShown) return;
    renditionShown = useRendition;
    if (hls) {
      if (useRendition && hls.subtitleTrack < 0) {
        var tracks = hls.subtitleTracks, chosen = 0;
        for (var i = 0; i < tracks.length; i++) if (tracks[i].lang === captionLanguage) chosen = i;
        hls.subtitleTrack = chosen;
      }
      hls.subtitleDisplay = useRendition;
    } else {
      renditionTracks().forEach(function (tr, i) { tr.mode = useRendition && i === 0 ? "showing" : "hidden"; });
    }
  }

  if (captionsToggle) {
    captionsToggle.addEventListener("click", function () {
      captionsOn = !captionsOn;
      try { window.localStorage.setItem(PREFERENCE, captionsOn ? "on" : "off"); } catch (e) { /* not remembered */ }
      applyCaptions();
    });
  }

  // The time on the video's wall clock (EXT-X-PROGRAM-DATE-TIME), to show a caption when its words are heard.
  function playingWallMs() {
    if (hls && hls.playingDate) return hls.playingDate.getTime();
    if (!hls && video.getStartDate) {
      var start = video.getStartDate();
      if (start && !isNaN(start.getTime())) return start.getTime() + video.currentTime * 1000;
    }
    return null;
  }

  function showCaption(c) {
    shown = c;
    var span = overlay.querySelector("span");
    span.textContent = c.text;
    overlay.hidden = !overlayActive || !c.text;
    var length = Math.max(0, (c.end - c.start) * 1000);
    shownUntil = (c.program_date_time != null && playingWallMs() !== null ? c.program_date_time : Date.now()) + length + 4000;
    shownSince = Date.now();
    if (c.final && c.text && overlayActive && captionLive) captionLive.textContent = c.text;
  }

  function renderCaptions() {
    if (!overlay) return;
    var now = playingWallMs();
    var due = null;
    while (pending.length) {
      var c = pending[0];
      if (now !== null && c.program_date_time != null && c.program_date_time > now + 250) break;
      due = pending.shift();
    }
    if (due) showCaption(due);
    // A caption recognised late (a busy recognizer) may already be past its time on the video: it is
    // still read for as long as it takes to read it (its own length, 2 to 6 s), never skipped.
    var readable = Math.min(Math.max(shown ? (shown.end - shown.start) * 1000 : 0, 2000), 6000);
    if (shown && Date.now() - shownSince >= readable &&
        (now !== null && shown.program_date_time != null ? now : Date.now()) > shownUntil) {
      shown = null;
      overlay.querySelector("span").textContent = "";
      overlay.hidden = true;
    }
  }

  document.addEventListener("live:caption", function (e) {
    var c = e.detail;
    if (!c || typeof c.text !== "string") return;
    pending.push(c);
    if (pending.length > 60) pending.shift();  // far behind live: the rendition takes over anyway
    renderCaptions();
  });
  document.addEventListener("live:chat", function (e) {
    socketCaptions = !!(e.detail && e.detail.connected);
    applyCaptions();
  });

  // --- the event API: state, viewers, replay ----------------------------------------------------------
  function viewers(n) {
    if (!viewerCount) return;
    var one = plural ? plural.select(n) === "one" : n === 1;
    viewerCount.textContent = t(one ? "viewer_one" : "viewer_other", one ? "%(num)s viewer" : "%(num)s viewers", { num: n });
  }

  // One poll at a time; pollSoon() brings the next one forward (the video stalled or resumed).
  var pollTimer = null, polling = false, soon = false, lastPoll = 0;

  function schedule(ms) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, ms);
  }

  function pollSoon() {
    if (!api || state === "ended") return;
    if (polling) { soon = true; return; }
    schedule(Math.max(0, lastPoll + 2000 - Date.now()));
  }

  function poll() {
    polling = true;
    soon = false;
    lastPoll = Date.now();
    fetch(api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (ev) {
        polling = false;
        if (typeof ev.viewers === "number") viewers(ev.viewers);
        var changed = ev.state !== state;
        if (changed) setState(ev.state);
        setInterrupted(ev.state === "live" && ev.interrupted === true);
        // Just gone live (the count is 0 until players fetch the stream) or interrupted: ask again soon.
        if (ev.state !== "ended") schedule(changed || interrupted || soon ? 2000 : document.hidden ? 15000 : 5000);
      })
      .catch(function () { polling = false; schedule(10000); });
  }

  // The buffer ran dry while live (a gap in the media?) or playback resumed: ask the event now.
  video.addEventListener("waiting", function () { if (state === "live" && !interrupted) pollSoon(); });
  video.addEventListener("playing", function () { if (interrupted) pollSoon(); });

  function showReplay(url) {
    if (!after || replayFound) return;
    replayFound = true;
    after.textContent = "";
    var link = document.createElement("a");
    link.className = "button";
    link.id = "replay-link";
    link.href = url;
    link.textContent = t("replay", "Watch the replay");
    after.appendChild(link);
    after.hidden = false;
  }

  function showPending() {
    if (!after || replayFound || $("replay-pending")) return;
    var span = document.createElement("span");
    span.id = "replay-pending";
    span.textContent = t("replay_pending", "The recording is being prepared; a link to the replay will appear here.");
    after.textContent = "";
    after.appendChild(span);
    after.hidden = false;
  }

  function findReplay(attempt) {
    if (!after || replayFound || !eventId) return;
    fetch("/api/v1/recordings?event=" + encodeURIComponent(eventId), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (body) {
        var recording = (body.recordings || [])[0];
        if (recording && recording.state === "ready") { showReplay(new URL(recording.page_url, location.href).pathname); return; }
        if ((recording && recording.state !== "failed") || video.dataset.record === "true") showPending();
        if (attempt < 360) setTimeout(function () { findReplay(attempt + 1); }, attempt < 30 ? 3000 : 10000);
      })
      .catch(function () { if (attempt < 360) setTimeout(function () { findReplay(attempt + 1); }, 10000); });
  }

  // --- the lecturer's chapter marker ------------------------------------------------------------------
  var tools = $("lecturer-tools"), chapterForm = $("chapter-form");
  if (tools && chapterForm) {
    var chapterTitle = $("chapter-title"), chapterStatus = $("chapter-status");
    chapterForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var title = chapterTitle.value.trim();
      if (!title) return;
      fetch(tools.dataset.api, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": tools.dataset.csrf },
        body: JSON.stringify({ title: title })
      }).then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error((body && body.error && body.error.message) || String(r.status));
          chapterStatus.textContent = t("chapter_added", "Chapter “%(title)s” added at %(time)s.", { title: body.title, time: clock(body.offset) });
          chapterTitle.value = "";
        });
      }).catch(function (err) {
        chapterStatus.textContent = t("chapter_failed", "The chapter could not be added: %(reason)s", { reason: err.message });
      });
    });
  }

  // --- start --------------------------------------------------------------------------------------------
  setInterval(function () { showLatency(); renderCaptions(); }, 500);
  setInterval(applyCaptions, 2000);
  applyCaptions();
  if (state === "vod") { attach(); return; }  // a recording (embed page): no live state to follow
  setState(state);
  if (api) poll();
})();
