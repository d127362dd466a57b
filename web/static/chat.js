// Chat and Q&A panel of the event page (Socket.IO). Text from people is only ever set with
// textContent: a message like "<script>" is shown as those characters, never parsed as HTML.
(function () {
  "use strict";
  var panel = document.getElementById("chat");
  if (!panel || !window.io) return;

  var MAX_SHOWN = 300;
  var list = document.getElementById("chat-messages");
  var status = document.getElementById("chat-status");
  var viewers = document.getElementById("chat-viewers");
  var errorLine = document.getElementById("chat-error");
  var form = document.getElementById("chat-form");
  var text = document.getElementById("chat-text");
  var guestForm = document.getElementById("chat-guest");
  var nicknameInput = document.getElementById("chat-nickname");
  var moderation = document.getElementById("chat-moderation");
  var toggleOpen = document.getElementById("chat-toggle-open");
  var slow = document.getElementById("chat-slow");
  var premoderation = document.getElementById("chat-premoderation");
  var qaList = document.getElementById("qa-list");
  var qaForm = document.getElementById("qa-form");
  var qaText = document.getElementById("qa-text");

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

  function el(tag, className, content) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function button(label, onClick) {
    var b = el("button", "link", label);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function showError(message) { errorLine.textContent = message || ""; }

  function say() {
    var parts = [];
    if (!settings.open) parts.push("The chat is closed.");
    if (settings.slow_mode_seconds) parts.push("Slow mode: one message every " + settings.slow_mode_seconds + " s.");
    if (!me.can_post) parts.push(guestsAllowed && !loggedIn ? "Choose a nickname to take part." : "Log in to take part.");
    status.textContent = parts.join(" ") || "Connected.";
    form.hidden = !me.can_post || (!settings.open && !me.moderator);
    qaForm.hidden = !me.can_post;
    guestForm.hidden = me.can_post || loggedIn || !guestsAllowed;
    moderation.hidden = !me.moderator;
    toggleOpen.textContent = settings.open ? "Close the chat" : "Open the chat";
    slow.value = String(settings.slow_mode_seconds);
    premoderation.checked = settings.qa_premoderation;
  }

  function call(event, payload, done) {
    socket.emit(event, payload, function (reply) {
      if (reply && reply.error) { showError(reply.error.message); return; }
      showError("");
      if (done) done(reply);
    });
  }

  function renderMessage(m) {
    var item = el("li", "chat-message");
    item.dataset.id = String(m.id);
    item.appendChild(el("span", "chat-author", m.author.name + (m.author.kind === "guest" ? " (guest)" : "")));
    item.appendChild(document.createTextNode(" "));
    item.appendChild(el("span", "chat-text", m.text));
    if (me.moderator) {
      item.appendChild(button("Delete", function () { call("delete", { id: m.id }); }));
      if (!me.author || m.author.key !== me.author.key) {
        item.appendChild(button("Ban " + m.author.name, function () {
          if (window.confirm("Ban " + m.author.name + " from this chat?")) call("ban", { author: m.author.key, reason: "" });
        }));
      }
    }
    return item;
  }

  function addMessages(messages) {
    var stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
    messages.forEach(function (m) { list.appendChild(renderMessage(m)); });
    while (list.children.length > MAX_SHOWN) list.removeChild(list.firstChild);
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function renderQuestions() {
    var items = Object.keys(questions).map(function (k) { return questions[k]; });
    items.sort(function (a, b) {
      if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
      if ((a.state === "answered") !== (b.state === "answered")) return a.state === "answered" ? 1 : -1;
      return b.votes - a.votes || a.id - b.id;
    });
    qaList.textContent = "";
    items.forEach(function (q) {
      var item = el("li", "qa-question qa-" + q.state + (q.pinned ? " qa-pinned" : ""));
      item.appendChild(el("span", "qa-text", q.text));
      var meta = q.author.name + " · " + q.votes + (q.votes === 1 ? " vote" : " votes");
      if (q.pinned) meta += " · pinned";
      if (q.state !== "approved") meta += " · " + q.state;
      item.appendChild(el("span", "qa-meta", " — " + meta + " "));
      if (me.can_post && q.state === "approved" && !myVotes[q.id]) {
        item.appendChild(button("Upvote", function () {
          call("vote", { id: q.id }, function () { myVotes[q.id] = true; renderQuestions(); });
        }));
      }
      if (me.moderator) {
        if (q.state === "pending" || q.state === "rejected") item.appendChild(button("Approve", function () { call("question", { id: q.id, action: "approve" }); }));
        if (q.state !== "answered") item.appendChild(button("Answered", function () { call("question", { id: q.id, action: "answer" }); }));
        item.appendChild(button(q.pinned ? "Unpin" : "Pin", function () { call("question", { id: q.id, action: q.pinned ? "unpin" : "pin" }); }));
        if (q.state !== "rejected") item.appendChild(button("Hide", function () { call("question", { id: q.id, action: "reject" }); }));
      }
      qaList.appendChild(item);
    });
  }

  function connect() {
    if (socket) socket.disconnect();
    socket = window.io({
      transports: ["websocket"],
      auth: function (cb) {
        var auth = { event: slug };
        if (nickname) {
          auth.nickname = nickname;
          var token = window.localStorage.getItem(storageKey);
          if (token) auth.guest_token = token;
        }
        cb(auth);
      }
    });
    socket.on("welcome", function (w) {
      me = w.you;
      settings = w.settings;
      if (me.guest_token) window.localStorage.setItem(storageKey, me.guest_token);
      text.maxLength = w.limits.max_length;
      qaText.maxLength = w.limits.max_length;
      list.textContent = "";
      addMessages(w.history);
      questions = {};
      w.questions.forEach(function (q) { questions[q.id] = q; });
      myVotes = {};
      w.my_votes.forEach(function (id) { myVotes[id] = true; });
      renderQuestions();
      viewers.textContent = w.viewers + (w.viewers === 1 ? " viewer" : " viewers");
      showError("");
      say();
    });
    socket.on("messages", addMessages);
    socket.on("message_deleted", function (d) {
      var item = list.querySelector('li[data-id="' + String(Number(d.id)) + '"]');
      if (item) item.remove();
    });
    socket.on("settings", function (s) { settings = s; say(); });
    socket.on("presence", function (p) { viewers.textContent = p.viewers + (p.viewers === 1 ? " viewer" : " viewers"); });
    socket.on("question", function (q) { questions[q.id] = q; renderQuestions(); });
    socket.on("question_removed", function (d) { if (!me.moderator) { delete questions[d.id]; renderQuestions(); } });
    socket.on("error", function (e) { showError(e.message); });
    socket.on("banned", function (b) {
      showError("You were removed from this chat." + (b.reason ? " Reason: " + b.reason : ""));
      socket.disconnect();
    });
    socket.on("connect_error", function (err) {
      status.textContent = (err && err.message) || "The chat is unavailable.";
      if (err && err.data && ["banned", "guests_not_allowed", "login_required", "chat_disabled", "password_required", "unknown_event", "bad_nickname"].indexOf(err.data.code) >= 0) {
        socket.disconnect();  // no point retrying
      }
    });
    socket.on("disconnect", function () { status.textContent = "Disconnected from the chat; reconnecting…"; form.hidden = true; });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var value = text.value;
    if (!value.trim()) return;
    call("send", { text: value }, function () { text.value = ""; });
  });
  qaForm.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!qaText.value.trim()) return;
    call("ask", { text: qaText.value }, function (reply) {
      qaText.value = "";
      questions[reply.question.id] = reply.question;
      renderQuestions();
    });
  });
  guestForm.addEventListener("submit", function (e) {
    e.preventDefault();
    nickname = nicknameInput.value.trim();
    if (nickname) connect();
  });
  toggleOpen.addEventListener("click", function () { call("settings", { open: !settings.open }); });
  slow.addEventListener("change", function () { call("settings", { slow_mode_seconds: Number(slow.value) }); });
  premoderation.addEventListener("change", function () { call("settings", { qa_premoderation: premoderation.checked }); });

  connect();
})();
