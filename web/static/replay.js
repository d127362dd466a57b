// The replay page: the recording with hls.js (native HLS on Safari) and its captions track; the
// transcript beside it (choose a line to play from there; the line being spoken is highlighted and
// kept in view, without moving the keyboard focus); chapters; the chat replayed in sync; and
// "#t=SECONDS" in the address (search results link there) to start at a moment.
// Texts come translated from the page (#replay-text).
(function () {
  "use strict";
  var video = document.getElementById("replay");
  if (!video) return;
  var $ = function (id) { return document.getElementById(id); };
  var T = window.PlayerText.load("replay-text"), clock = window.PlayerText.clock;
  function t(name, fallback, vars) { return window.PlayerText.fill(T[name] || fallback, vars); }

  var transcript = $("transcript"), transcriptEmpty = $("transcript-empty"), follow = $("transcript-follow");
  var chaptersList = $("replay-chapters"), chatList = $("replay-chat");
  var lines = [], chapters = [], chat = [], shown = 0, current = -1, currentChapter = -1;
  var userScrolledAt = 0, scrollingByUs = false;

  // --- where to start: #t=SECONDS (or #t=1:02:03) ----------------------------------------------------
  function hashTime() {
    var found = /^#t=([0-9:.]+)$/.exec(window.location.hash);
    if (!found) return null;
    var seconds = found[1].split(":").reduce(function (total, part) { return total * 60 + Number(part); }, 0);
    return isFinite(seconds) && seconds >= 0 ? seconds : null;
  }

  function seek(seconds, andPlay) {
    if (video.readyState >= 1) video.currentTime = seconds;
    else video.addEventListener("loadedmetadata", function () { video.currentTime = seconds; }, { once: true });
    sync(seconds);
    if (andPlay) video.play().catch(function () { /* the controls remain */ });
  }

  var start = hashTime();
  if (window.Hls && window.Hls.isSupported()) {
    // The text tracks are the page's <track> elements (one per track, the same cues as the master playlist's
    // SUBTITLES renditions): hls.js leaves those renditions alone, so the menu lists each track once.
    var hls = new window.Hls({ startPosition: start === null ? -1 : start, enableWebVTT: false,
                               xhrSetup: function (xhr) { xhr.withCredentials = true; } });
    hls.on(window.Hls.Events.ERROR, function (_e, data) {
      if (data.fatal && data.type === window.Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else if (data.fatal && data.type === window.Hls.ErrorTypes.NETWORK_ERROR) setTimeout(function () { hls.startLoad(); }, 3000);
    });
    if (window.AudioTracks) window.AudioTracks.attach(hls, $("audio-tracks"));  // the audio-description choice
    hls.loadSource(video.dataset.src);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    // Native HLS lists the master playlist's subtitle renditions itself: the same tracks, once.
    Array.prototype.forEach.call(video.querySelectorAll("track[data-track]"), function (el) { el.remove(); });
    video.src = video.dataset.src;
    if (start !== null) seek(start, false);
  }
  window.addEventListener("hashchange", function () {
    var at = hashTime();
    if (at !== null) seek(at, true);
  });

  // --- captions: on unless the viewer turned them off (the same choice as on the live page) ----------
  var PREFERENCE = "live-captions";
  // The track marked default (the captions; at most one), as the master playlist's DEFAULT rendition.
  var defaultElement = video.querySelector("track[data-track][default]");
  var captionTrack = defaultElement ? defaultElement.track : null;
  function textShown() {
    return Array.prototype.some.call(video.textTracks, function (tr) {
      return tr.kind !== "chapters" && tr.kind !== "metadata" && tr.mode === "showing";
    });
  }
  if (captionTrack) {
    var wanted = "on";
    try { wanted = window.localStorage.getItem(PREFERENCE) || "on"; } catch (e) { /* private mode */ }
    captionTrack.mode = wanted === "off" ? "hidden" : "showing";
    video.textTracks.addEventListener("change", function () {
      try { window.localStorage.setItem(PREFERENCE, textShown() ? "on" : "off"); } catch (e) { /* not remembered */ }
    });
  }

  // Text always goes in with textContent: captions and chat are what people said or typed, never HTML.
  function span(className, text) {
    var el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }
  // The parts one after the other, a space between two (as the line reads and is copied).
  function spaced(parent, parts) {
    parts.forEach(function (part, i) {
      if (i > 0) parent.appendChild(document.createTextNode(" "));
      parent.appendChild(part);
    });
  }

  // --- the transcript -----------------------------------------------------------------------------------
  function lineButton(index) { return transcript.children[index] && transcript.children[index].firstChild; }

  function moveFocus(index) {
    var target = lineButton(Math.max(0, Math.min(lines.length - 1, index)));
    if (!target) return;
    Array.prototype.forEach.call(transcript.querySelectorAll("button[tabindex='0']"), function (b) { b.tabIndex = -1; });
    target.tabIndex = 0;
    target.focus();
  }

  function buildTranscript(captions) {
    lines = captions.slice().sort(function (a, b) { return a.start - b.start; });
    transcriptEmpty.hidden = lines.length > 0;
    $("transcript-hint").hidden = lines.length === 0;
    $("transcript-follow-field").hidden = lines.length === 0;
    $("transcript-downloads").hidden = lines.length === 0;
    lines.forEach(function (line, i) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "transcript-line";
      button.tabIndex = i === 0 ? 0 : -1;  // one stop for Tab; the arrow keys move inside
      button.dataset.index = String(i);
      spaced(button, [span("time", clock(line.start)), span("words", line.text)]);
      button.addEventListener("click", function () { seek(line.start + 0.01, true); });
      item.appendChild(button);
      transcript.appendChild(item);
    });
  }

  transcript.addEventListener("keydown", function (e) {
    var at = e.target && e.target.dataset ? Number(e.target.dataset.index) : NaN;
    if (isNaN(at)) return;
    var moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: lines.length - 1, PageDown: at + 8, PageUp: at - 8 };
    if (!(e.key in moves)) return;
    e.preventDefault();
    userScrolledAt = Date.now();
    moveFocus(moves[e.key]);
  });
  ["wheel", "touchmove"].forEach(function (name) {
    transcript.addEventListener(name, function () { userScrolledAt = Date.now(); }, { passive: true });
  });
  transcript.addEventListener("scroll", function () {
    if (!scrollingByUs) userScrolledAt = Date.now();
    scrollingByUs = false;
  });

  // Scroll only the transcript box (never the page), and not while the viewer reads elsewhere in it.
  function keepInView(index) {
    if (follow && !follow.checked) return;
    if (Date.now() - userScrolledAt < 5000) return;
    var item = transcript.children[index];
    if (!item) return;
    var top = item.offsetTop, bottom = top + item.offsetHeight;
    if (top >= transcript.scrollTop && bottom <= transcript.scrollTop + transcript.clientHeight) return;
    scrollingByUs = true;
    transcript.scrollTop = Math.max(0, top - transcript.clientHeight / 3);
  }

  // The last item whose start has come (items sorted by start).
  function indexAt(items, time, key) {
    var lo = 0, hi = items.length - 1, found = -1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (items[mid][key] <= time + 0.05) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    return found;
  }

  function highlight(list, previous, next) {
    if (previous === next) return;
    var old = list.children[previous], now = list.children[next];
    if (old) { old.classList.remove("current"); old.firstChild.removeAttribute("aria-current"); }
    if (now) { now.classList.add("current"); now.firstChild.setAttribute("aria-current", "time"); }
  }

  // --- the chat, replayed --------------------------------------------------------------------------------
  function chatItem(m) {
    var li = document.createElement("li");
    li.className = m.question ? "chat-message replay-question" : "chat-message";
    var name = m.author === "guest" ? t("guest", "guest") : m.author;
    var author = m.question ? t("question", "Question from %(name)s", { name: name }) : name;
    spaced(li, [span("chat-time", clock(m.offset)), span("chat-author", author), span("chat-text", m.text)]);
    return li;
  }

  function syncChat(now) {
    if (shown > 0 && chat[shown - 1].offset > now + 0.05) { chatList.textContent = ""; shown = 0; }  // went back
    var stick = chatList.scrollTop + chatList.clientHeight >= chatList.scrollHeight - 20;
    while (shown < chat.length && chat[shown].offset <= now + 0.05) chatList.appendChild(chatItem(chat[shown++]));
    if (stick) chatList.scrollTop = chatList.scrollHeight;
  }

  function sync(at) {
    var now = typeof at === "number" ? at : video.currentTime;
    var index = indexAt(lines, now, "start");
    if (index !== current) {
      highlight(transcript, current, index);
      current = index;
      if (index >= 0) keepInView(index);
    }
    var chapterIndex = indexAt(chapters, now, "start");
    if (chapterIndex !== currentChapter) { highlight(chaptersList, currentChapter, chapterIndex); currentChapter = chapterIndex; }
    syncChat(now);
  }

  // --- chapters -----------------------------------------------------------------------------------------
  function buildChapters(items) {
    chapters = items.slice().sort(function (a, b) { return a.start - b.start; });
    $("chapters-section").hidden = chapters.length === 0;
    chapters.forEach(function (c) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "link-button chapter";
      button.appendChild(span("time", clock(c.start)));
      button.appendChild(document.createTextNode(" " + c.title));
      button.addEventListener("click", function () { seek(c.start, true); });
      li.appendChild(button);
      chaptersList.appendChild(li);
    });
  }

  fetch(video.dataset.api + "/replay", { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
    .then(function (data) {
      buildTranscript(data.captions || []);
      buildChapters(data.chapters || []);
      var said = (data.chat || []).filter(function (m) { return m.offset !== null; });
      var asked = (data.questions || []).filter(function (q) { return q.offset !== null; })
        .map(function (q) { return { offset: q.offset, author: q.author, text: q.text, question: true }; });
      chat = said.concat(asked).sort(function (a, b) { return a.offset - b.offset; });
      video.addEventListener("timeupdate", function () { sync(); });
      video.addEventListener("seeked", function () { sync(); });
      sync(start === null ? video.currentTime : start);
    })
    .catch(function () { transcriptEmpty.hidden = false; /* the video still plays */ });

  // --- the audio-description form (its owners): sent with the CSRF header, so a long sound file streams to
  // disk (a plain form post is read whole by the request pipeline, within max_request_bytes) --------------
  var describeForm = $("audio-description-form"), describeError = $("audio-description-error");
  if (describeForm && window.fetch && window.FormData) {
    describeForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var data = new FormData(describeForm), button = describeForm.querySelector("button[type=submit]");
      ["file", "descriptions"].forEach(function (name) {
        var value = data.get(name);
        if (value && typeof value === "object" && !value.name) data.delete(name);  // an input left empty
      });
      function refused(text) {
        describeError.textContent = text;
        describeError.hidden = false;
        describeError.focus();
        button.disabled = false;
      }
      button.disabled = true;
      fetch(describeForm.dataset.api, { method: "POST", body: data, credentials: "same-origin",
                                        headers: { "X-CSRF-Token": String(data.get("csrf_token")) } })
        .then(function (response) {
          if (response.ok) { window.location.hash = "audio-description"; window.location.reload(); return null; }
          return response.json().then(function (body) {
            refused(t("adRefused", "The audio description was not accepted: %(reason)s",
                      { reason: (body && body.error && body.error.message) || response.statusText }));
          });
        })
        .catch(function () { refused(t("adNetwork", "The file could not be sent; check the connection and try again.")); });
    });
  }
})();
