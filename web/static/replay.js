// Minimal replay player: the VOD with hls.js (native HLS on Safari), chapters to jump to, and the
// chat replayed in sync with the video (messages appear when the video reaches their time).
(function () {
  "use strict";
  var video = document.getElementById("replay");
  if (!video) return;
  var chaptersList = document.getElementById("replay-chapters");
  var chatList = document.getElementById("replay-chat");
  var src = video.dataset.src;
  var chat = [];
  var shown = 0;

  if (window.Hls && window.Hls.isSupported()) {
    var hls = new window.Hls({ xhrSetup: function (xhr) { xhr.withCredentials = true; } });
    hls.loadSource(src);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src;
  }

  function clock(seconds) {
    var s = Math.floor(seconds), m = Math.floor(s / 60), h = Math.floor(m / 60);
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    return (h ? h + ":" + two(m % 60) : m) + ":" + two(s % 60);
  }

  function syncChat() {
    var now = video.currentTime;
    if (shown > 0 && chat[shown - 1].offset > now) { chatList.textContent = ""; shown = 0; }  // seeked back
    while (shown < chat.length && chat[shown].offset !== null && chat[shown].offset <= now) {
      var m = chat[shown++];
      var li = document.createElement("li");
      li.textContent = clock(m.offset) + " " + m.author + ": " + m.text;
      chatList.appendChild(li);
    }
  }

  fetch(video.dataset.api + "/replay", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
    (data.chapters || []).forEach(function (c) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = clock(c.start) + " " + c.title;
      button.addEventListener("click", function () { video.currentTime = c.start; video.play().catch(function () {}); });
      li.appendChild(button);
      chaptersList.appendChild(li);
    });
    chat = (data.chat || []).filter(function (m) { return m.offset !== null; });
    video.addEventListener("timeupdate", syncChat);
    syncChat();
  }).catch(function () { /* the video still plays */ });
})();
