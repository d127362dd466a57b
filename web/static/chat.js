// Chat and Q&A panel of the event page (Socket.IO). Text from people is only ever set with
// textContent: a message like "<script>" is shown as those characters, never parsed as HTML.
// The same socket brings the live captions: they are handed to the player as "live:caption" events.
// Texts come translated from the page (#chat-i18n); English stands in when a text is missing.
(function () {
  "use strict";
  var panel = document.getElementById("chat");
  if (!panel || !window.io) return;

  var T = {};
  try { T = JSON.parse(document.getElementById("chat-i18n").textContent); } catch (e) { T = {}; }
  var lang = document.documentElement.lang || "en";
  var plural = window.Intl && Intl.PluralRules ? new Intl.PluralRules(lang) : null;
  var clockFormat = window.Intl ? new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" }) : null;

  function t(name, fallback, vars) {
    var text = T[name] || fallback;
    if (vars) Object.keys(vars).forEach(function (k) { text = text.split("%(" + k + ")s").join(String(vars[k])); });
    return text;
  }
  function counted(base, n, fallbackOne, fallbackOther) {
    var one = plural ? plural.select(n) === "one" : n === 1;
    return one ? t(base + "_one", fallbackOne, { num: n }) : t(base + "_other", fallbackOther, { num: n });
  }
  function errorText(err) {
    if (!err) return "";
    var known = (T.errors || {})[err.code];
    if (known) return known.split("%(seconds)s").join(String(Math.max(1, Math.ceil(err.retry_after || 0))));
    return err.message || "";
  }

  var MAX_SHOWN = 300;
  var $ = function (id) { return document.getElementById(id); };
  var list = $("chat-messages"), status = $("chat-status"), errorLine = $("chat-error");
  var form = $("chat-form"), text = $("chat-text"), guestForm = $("chat-guest"), nicknameInput = $("chat-nickname");
  var moderation = $("chat-moderation"), toggleOpen = $("chat-toggle-open"), slow = $("chat-slow");
  var premoderation = $("chat-premoderation"), announceBox = $("chat-announce");
  var qaList = $("qa-list"), qaForm = $("qa-form"), qaText = $("qa-text"), qaEmpty = $("qa-empty"), qaStatus = $("qa-status");

  var slug = panel.dataset.event;
  var guestsAllowed = panel.dataset.guests === "true";
  var loggedIn = panel.dataset.user === "true";
  var storageKey = "live-guest:" + slug;
  var nickname = null;
  var me = { author: null, moderator: false, can_post: false };
  var settings = { open: true, slow_mode_seconds: 0, qa_premoderation: false };
  var questions = {};
  var myVotes = {};
  var socket = null;
  var focusAfterJoin = false;

  function el(tag, className, content) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function button(label, action, onClick, accessibleName) {
    var b = el("button", "link-button", label);
    b.type = "button";
    b.dataset.action = action;
    if (accessibleName) b.setAttribute("aria-label", accessibleName);
    b.addEventListener("click", onClick);
    return b;
  }

  function showError(message) { errorLine.textContent = message || ""; }

  // New messages are read out (the list is a polite live region) unless this viewer silenced them; the
  // captions have their own region and their own switch (the player's "Captions").
  var ANNOUNCE = "live-chat-announce", announcing = true, welcomed = false;
  try { announcing = window.localStorage.getItem(ANNOUNCE) !== "off"; } catch (e) { /* private mode */ }
  function liveMode() { return announcing ? "polite" : "off"; }
  if (announceBox) {
    announceBox.checked = announcing;
    $("chat-announce-field").hidden = false;
    list.setAttribute("aria-live", liveMode());
    announceBox.addEventListener("change", function () {
      announcing = announceBox.checked;
      try { window.localStorage.setItem(ANNOUNCE, announcing ? "on" : "off"); } catch (e) { /* not remembered */ }
      if (welcomed) list.setAttribute("aria-live", liveMode());
    });
  }

  // What a moderator's button is about, in its accessible name: the same "Delete" on every message reads
  // as one control repeated (the start of the text tells them apart).
  function excerpt(text) { return text.length > 60 ? text.slice(0, 59) + "…" : text; }

  function storage(action, value) {
    try {
      if (action === "get") return window.localStorage.getItem(storageKey);
      window.localStorage.setItem(storageKey, value);
    } catch (e) { /* private mode: the guest gets a new identity next time */ }
    return null;
  }

  function say() {
    var parts = [];
    if (!settings.open) parts.push(t("closed", "The chat is closed."));
    if (settings.slow_mode_seconds) parts.push(t("slow", "Slow mode: one message every %(seconds)s s.", { seconds: settings.slow_mode_seconds }));
    if (!me.can_post) parts.push(guestsAllowed && !loggedIn ? t("choose_nickname", "Choose a nickname to take part.") : t("log_in", "Log in to take part."));
    status.textContent = parts.join(" ") || t("connected", "Connected.");
    form.hidden = !me.can_post || (!settings.open && !me.moderator);
    qaForm.hidden = !me.can_post;
    guestForm.hidden = me.can_post || loggedIn || !guestsAllowed;
    if ($("chat-login")) $("chat-login").hidden = me.can_post || loggedIn;
    moderation.hidden = !me.moderator;
    toggleOpen.textContent = settings.open ? t("close_chat", "Close the chat") : t("open_chat", "Open the chat");
    slow.value = String(settings.slow_mode_seconds);
    premoderation.checked = settings.qa_premoderation;
  }

  function call(event, payload, done) {
    socket.emit(event, payload, function (reply) {
      if (reply && reply.error) { showError(errorText(reply.error)); return; }
      showError("");
      if (done) done(reply);
    });
  }

  function authorName(author) {
    return author.kind === "guest" ? t("guest", "%(name)s (guest)", { name: author.name }) : author.name;
  }

  function renderMessage(m) {
    var item = el("li", "chat-message");
    item.dataset.id = String(m.id);
    if (m.at && clockFormat) {
      var when = new Date(m.at);
      if (!isNaN(when.getTime())) {
        var time = el("time", "chat-time", clockFormat.format(when));
        time.dateTime = m.at;
        item.appendChild(time);
        item.appendChild(document.createTextNode(" "));
      }
    }
    item.appendChild(el("span", "chat-author", authorName(m.author)));
    item.appendChild(document.createTextNode(" "));
    item.appendChild(el("span", "chat-text", m.text));
    if (me.moderator) {
      var tools = el("span", "chat-tools");
      tools.appendChild(button(t("delete", "Delete"), "delete", function () { call("delete", { id: m.id }); },
        t("delete_label", "Delete the message from %(name)s: %(text)s", { name: m.author.name, text: excerpt(m.text) })));
      if (!me.author || m.author.key !== me.author.key) {
        var ban = t("ban", "Ban %(name)s", { name: m.author.name });
        tools.appendChild(button(ban, "ban", function () {
          if (window.confirm(t("ban_confirm", "Ban %(name)s from this chat?", { name: m.author.name }))) call("ban", { author: m.author.key, reason: "" });
        }));
      }
      item.appendChild(tools);
    }
    return item;
  }

  function shownMessage(id) {
    return list.querySelector('li[data-id="' + String(Number(id)) + '"]');
  }

  function addMessages(messages) {
    var stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
    messages.forEach(function (m) {
      // A message can come both in the welcome's history and live (sent while we joined): show it once.
      if (!shownMessage(m.id)) list.appendChild(renderMessage(m));
    });
    while (list.children.length > MAX_SHOWN) list.removeChild(list.firstChild);
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function questionMeta(q) {
    var meta = [authorName(q.author), counted("vote", q.votes, "%(num)s vote", "%(num)s votes")];
    if (q.pinned) meta.push(t("pinned", "pinned"));
    if (q.state !== "approved") meta.push(t(q.state, q.state));
    return meta.join(" · ");
  }

  function renderQuestions() {
    // Re-rendering replaces the buttons: put the keyboard focus back where it was.
    var active = document.activeElement, refocus = null;
    if (active && qaList.contains(active)) {
      var holder = active.closest("li");
      refocus = { id: holder && holder.dataset.id, action: active.dataset.action };
    }
    var items = Object.keys(questions).map(function (k) { return questions[k]; });
    items.sort(function (a, b) {
      if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
      if ((a.state === "answered") !== (b.state === "answered")) return a.state === "answered" ? 1 : -1;
      return b.votes - a.votes || a.id - b.id;
    });
    qaList.textContent = "";
    qaEmpty.hidden = items.length > 0;
    qaList.hidden = items.length === 0;  // an empty list is no Tab stop
    items.forEach(function (q) {
      var item = el("li", "qa-question qa-" + q.state + (q.pinned ? " qa-pinned" : ""));
      item.dataset.id = String(q.id);
      item.tabIndex = -1;
      item.appendChild(el("p", "qa-text", q.text));
      item.appendChild(el("p", "qa-meta", questionMeta(q)));
      var tools = el("p", "qa-tools");
      if (me.can_post && q.state === "approved" && !myVotes[q.id]) {
        tools.appendChild(button(t("upvote", "Upvote"), "vote", function () {
          call("vote", { id: q.id }, function () { myVotes[q.id] = true; renderQuestions(); });
        }, t("upvote_label", "Upvote the question: %(text)s", { text: q.text.slice(0, 80) })));
      }
      if (me.moderator) {
        var act = function (action) { return function () { call("question", { id: q.id, action: action }); }; };
        var about = { text: excerpt(q.text) };
        var tool = function (name, fallback, action, command) {
          tools.appendChild(button(t(name, fallback), action, act(command), t(name + "_label", fallback + ": %(text)s", about)));
        };
        if (q.state === "pending" || q.state === "rejected") tool("approve", "Approve", "approve", "approve");
        if (q.state !== "answered") tool("mark_answered", "Mark as answered", "answer", "answer");
        if (q.pinned) tool("unpin", "Unpin", "pin", "unpin"); else tool("pin", "Pin", "pin", "pin");
        if (q.state !== "rejected") tool("hide", "Hide", "reject", "reject");
      }
      if (tools.children.length) item.appendChild(tools);
      qaList.appendChild(item);
    });
    if (refocus && refocus.id) {
      var again = qaList.querySelector('li[data-id="' + refocus.id + '"]');
      if (again) {
        var same = again.querySelector('button[data-action="' + refocus.action + '"]') || again.querySelector("button");
        (same || again).focus();
      }
    }
  }

  function connect() {
    if (socket) socket.disconnect();
    // Live messages can arrive before the welcome (the room is joined first, so nothing falls between
    // the history and the live feed): they wait here and follow the history.
    var early = [];
    // WebSocket first (the server's fast fan-out); where a campus or corporate network blocks the
    // upgrade, socket.io-client falls back to HTTP long-polling and the chat still works.
    socket = window.io({
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      auth: function (cb) {
        var auth = { event: slug };
        if (nickname) {
          auth.nickname = nickname;
          var token = storage("get");
          if (token) auth.guest_token = token;
        }
        cb(auth);
      }
    });
    socket.on("welcome", function (w) {
      me = w.you;
      settings = w.settings;
      if (me.guest_token) storage("set", me.guest_token);
      text.maxLength = w.limits.max_length;
      qaText.maxLength = w.limits.max_length;
      if (!list.children.length) {
        // The history is not read out: only messages that arrive from now on are announced.
        list.setAttribute("aria-live", "off");
        addMessages(w.history);
        setTimeout(function () { welcomed = true; list.setAttribute("aria-live", liveMode()); }, 100);
      } else {
        // A reconnection: add what was said meanwhile (re-rendering would read everything out again).
        var last = Number(list.lastElementChild.dataset.id);
        addMessages(w.history.filter(function (m) { return m.id > last; }));
      }
      var waiting = early;
      early = null;
      addMessages(waiting);
      questions = {};
      w.questions.forEach(function (q) { questions[q.id] = q; });
      myVotes = {};
      w.my_votes.forEach(function (id) { myVotes[id] = true; });
      renderQuestions();
      showError("");
      say();
      if (focusAfterJoin && me.can_post) text.focus();  // the guest form is gone: keep the keyboard here
      focusAfterJoin = false;
      panel.dataset.connected = "true";  // for a player that starts after this
      document.dispatchEvent(new CustomEvent("live:chat", { detail: { connected: true } }));
    });
    socket.on("messages", function (messages) {
      if (early) early.push.apply(early, messages);
      else addMessages(messages);
    });
    socket.on("message_deleted", function (d) {
      var item = shownMessage(d.id);
      if (item) item.remove();
    });
    socket.on("settings", function (s) { settings = s; say(); });
    socket.on("question", function (q) { questions[q.id] = q; renderQuestions(); });
    socket.on("question_removed", function (d) { if (!me.moderator) { delete questions[d.id]; renderQuestions(); } });
    socket.on("caption", function (c) { document.dispatchEvent(new CustomEvent("live:caption", { detail: c })); });
    socket.on("error", function (e) { showError(errorText(e)); });
    socket.on("banned", function (b) {
      showError(t("removed", "You were removed from this chat.") + (b.reason ? " " + t("reason", "Reason: %(reason)s", { reason: b.reason }) : ""));
      socket.disconnect();
    });
    socket.on("connect_error", function (err) {
      status.textContent = (err && err.data && errorText(err.data)) || t("unavailable", "The chat is unavailable.");
      if (err && err.data && ["banned", "guests_not_allowed", "login_required", "chat_disabled", "password_required", "unknown_event", "bad_nickname"].indexOf(err.data.code) >= 0) {
        socket.disconnect();  // no point retrying
      }
    });
    socket.on("disconnect", function () {
      early = [];  // until the next welcome
      status.textContent = t("disconnected", "Disconnected from the chat; reconnecting…");
      form.hidden = true;
      panel.dataset.connected = "false";
      document.dispatchEvent(new CustomEvent("live:chat", { detail: { connected: false } }));
    });
  }

  function send() {
    var value = text.value;
    if (!value.trim()) return;
    call("send", { text: value }, function () { text.value = ""; });
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); send(); });
  text.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  qaForm.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!qaText.value.trim()) return;
    call("ask", { text: qaText.value }, function (reply) {
      qaText.value = "";
      questions[reply.question.id] = reply.question;
      qaStatus.textContent = reply.question.state === "pending"
        ? t("question_pending", "Your question was sent; it will be shown once a moderator approves it.")
        : t("question_sent", "Your question was sent.");
      renderQuestions();
    });
  });
  guestForm.addEventListener("submit", function (e) {
    e.preventDefault();
    nickname = nicknameInput.value.trim();
    if (nickname) { focusAfterJoin = true; connect(); }
  });
  toggleOpen.addEventListener("click", function () { call("settings", { open: !settings.open }); });
  slow.addEventListener("change", function () { call("settings", { slow_mode_seconds: Number(slow.value) }); });
  premoderation.addEventListener("change", function () { call("settings", { qa_premoderation: premoderation.checked }); });

  connect();
})();
