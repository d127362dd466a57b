// The caption editor of the replay page (owners, moderators, admins): correct a track's cues — their text,
// split one, merge one with the next, move one by a tenth of a second — then save them as a new version,
// published at once; publish an earlier version again, or reset to version 1 (the automatic captions).
// Everything is a native control (textareas and buttons, in the Tab order); what happened is said in the
// #editor-status live region; moving to a cue pauses the video at that cue. Texts come from #editor-text.
(function () {
  "use strict";
  var root = document.getElementById("caption-editor");
  if (!root) return;
  var $ = function (id) { return document.getElementById(id); };
  var T = window.PlayerText.load("editor-text"), fill = window.PlayerText.fill;
  var api = root.dataset.api, csrf = root.dataset.csrf, video = $("replay");
  var status = $("editor-status"), list = $("editor-cues"), body = $("editor-body"), select = $("editor-track");
  var cues = [], offset = 0, trackId = null, language = "";

  function say(text) { status.textContent = ""; window.setTimeout(function () { status.textContent = text; }, 50); }

  function stamp(seconds) {  // 1:02.3
    var tenths = Math.round(seconds * 10), m = Math.floor(tenths / 600), s = (tenths % 600) / 10;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
  }

  function request(method, path, payload) {
    var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      init.headers["X-CSRF-Token"] = csrf;
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload || {});
    }
    return fetch(api + "/tracks/" + trackId + path, init).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error((data.error && data.error.message) || String(r.status));
        return data;
      });
    });
  }

  function button(label, cueNumber, action) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "secondary";
    b.textContent = label;
    var hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = " (" + fill(T.of_cue, { n: cueNumber }) + ")";  // "Split (cue 3)": each name says which
    b.appendChild(hidden);
    b.addEventListener("click", action);
    return b;
  }

  // The video follows the cue being edited: paused at its start, on the player's (trimmed) timeline.
  function follow(index) {
    if (!video) return;
    var at = Math.max(0, cues[index][0] - offset + 0.01);
    video.pause();
    if (video.readyState >= 1) video.currentTime = at;
  }

  function render(focusIndex) {
    list.textContent = "";
    cues.forEach(function (cue, i) {
      var n = i + 1, item = document.createElement("li"), group = document.createElement("fieldset");
      var legend = document.createElement("legend");
      legend.textContent = fill(T.cue, { n: n, start: stamp(cue[0]), end: stamp(cue[1]) });
      group.appendChild(legend);
      var label = document.createElement("label");
      label.className = "visually-hidden";
      label.htmlFor = "cue-text-" + n;
      label.textContent = fill(T.text, { n: n });
      var area = document.createElement("textarea");
      area.id = "cue-text-" + n;
      area.rows = 2;
      area.value = cue[2];
      if (language) area.lang = language;  // the cue's words are in the track's language (WCAG 3.1.2)
      area.addEventListener("input", function () { cues[i][2] = area.value; });
      area.addEventListener("focus", function () { follow(i); });
      group.appendChild(label);
      group.appendChild(area);
      var actions = document.createElement("p");
      actions.className = "player-bar";
      actions.appendChild(button(T.split, n, function () { split(i, area.selectionStart); }));
      if (i + 1 < cues.length) actions.appendChild(button(T.merge, n, function () { merge(i); }));
      actions.appendChild(button(T.earlier, n, function () { shift(i, -0.1); }));
      actions.appendChild(button(T.later, n, function () { shift(i, 0.1); }));
      group.appendChild(actions);
      item.appendChild(group);
      list.appendChild(item);
    });
    if (typeof focusIndex === "number" && cues[focusIndex]) $("cue-text-" + (focusIndex + 1)).focus();
  }

  // Split at the caret (or between the words in the middle); the time is shared out by the length of the text.
  function split(i, caret) {
    var cue = cues[i], text = cue[2];
    var at = caret > 0 && caret < text.length ? caret : text.lastIndexOf(" ", Math.floor(text.length / 2));
    if (at <= 0) at = Math.floor(text.length / 2);
    var first = text.slice(0, at).trim(), second = text.slice(at).trim();
    if (!first || !second) return;
    var middle = Math.round((cue[0] + (cue[1] - cue[0]) * first.length / (first.length + second.length)) * 1000) / 1000;
    cues.splice(i, 1, [cue[0], middle, first], [middle, cue[1], second]);
    render(i + 1);
    say(fill(T.split_done, { n: i + 1 }));
  }

  function merge(i) {
    var next = cues[i + 1];
    if (!next) return;
    cues.splice(i, 2, [cues[i][0], Math.max(cues[i][1], next[1]), (cues[i][2] + " " + next[2]).trim()]);
    render(i);
    say(fill(T.merged, { n: i + 1 }));
  }

  function shift(i, by) {
    var cue = cues[i];
    if (cue[0] + by < 0) by = -cue[0];
    cue[0] = Math.round((cue[0] + by) * 1000) / 1000;
    cue[1] = Math.round((cue[1] + by) * 1000) / 1000;
    var focused = document.activeElement;
    render();
    // keep the keyboard where it was: the same button of the same cue
    var same = focused && focused.textContent ? Array.prototype.filter.call(
      list.children[i].querySelectorAll("button"), function (b) { return b.textContent === focused.textContent; })[0] : null;
    if (same) same.focus();
    follow(i);
    say(fill(T.shifted, { n: i + 1, start: stamp(cue[0]), end: stamp(cue[1]) }));
  }

  function versions(data) {
    var rows = $("editor-versions").tBodies[0];
    rows.textContent = "";
    var headers = Array.prototype.map.call($("editor-versions").tHead.rows[0].cells, function (c) { return c.textContent; });
    data.versions.forEach(function (v) {
      var tr = document.createElement("tr");
      var author = v.author || (v.source === "automatic" ? T.automatic : T.nobody);
      var when = new Date(v.created_at).toLocaleString(document.documentElement.lang || undefined);
      [String(v.number), author, when, String(v.cues)].forEach(function (text, c) {
        var td = document.createElement("td");
        td.dataset.label = headers[c];
        td.textContent = text;
        tr.appendChild(td);
      });
      var cell = document.createElement("td");
      cell.dataset.label = headers[4];
      if (v.published) {
        cell.textContent = T.is_published;
      } else {
        var b = document.createElement("button");
        b.type = "button";
        b.className = "secondary";
        b.textContent = T.publish;
        var hidden = document.createElement("span");
        hidden.className = "visually-hidden";
        hidden.textContent = " (" + fill(T.version, { n: v.number }) + ")";
        b.appendChild(hidden);
        b.addEventListener("click", function () { publish(v.number, b); });
        cell.appendChild(b);
      }
      tr.appendChild(cell);
      rows.appendChild(tr);
    });
  }

  // The player's <track> loads the published cues again (the same URL with the version in it).
  function refreshTrack(version) {
    var element = video && video.querySelector("track[data-track='" + trackId + "']");
    if (element) element.src = element.getAttribute("src").split("?")[0] + "?v=" + version + "-" + Date.now();
  }

  function load() {
    trackId = select.value;
    return Promise.all([request("GET", "/cues"), request("GET", "/versions")]).then(function (both) {
      cues = both[0].cues;
      offset = both[0].offset || 0;
      language = both[0].language || "";
      body.hidden = false;
      render(0);
      versions(both[1]);
      say(fill(T.loaded, { count: cues.length }));
    }).catch(function (e) { say(fill(T.failed, { reason: e.message })); });
  }

  function save() {
    request("POST", "/versions", { cues: cues }).then(function (data) {
      versions(data);
      refreshTrack(data.published);
      say(fill(T.saved, { n: data.published }));
    }).catch(function (e) { say(fill(T.failed, { reason: e.message })); });
  }

  function publish(number, from) {
    request("POST", "/versions/" + number + "/publish").then(function (data) {
      return request("GET", "/cues").then(function (fresh) {
        cues = fresh.cues;
        render();
        versions(data);
        refreshTrack(data.published);
        if (from && !document.body.contains(from)) $("editor-save").focus();  // its row changed: focus stays near
        say(fill(T.published, { n: number }));
      });
    }).catch(function (e) { say(fill(T.failed, { reason: e.message })); });
  }

  $("editor-open").addEventListener("click", load);
  $("editor-save").addEventListener("click", save);
  $("editor-reset").addEventListener("click", function () { publish(1, null); });
  select.addEventListener("change", function () { body.hidden = true; });
})();
