// Replay watch beacons (issue 21): which parts of the recording this player played, sent in batches
// to <video data-watch="/api/v1/recordings/ID/watch"> every data-beacon-seconds (audience_beacon_seconds),
// on pause/end and when the page is hidden, so the owner's heatmap shows what was watched and rewatched.
// Ranges are media seconds, half-open [start, end); a jump (seek) closes the current range. Nothing is
// sent for a paused video. Batches stay within what the server accepts (data-beacon-max-ranges and
// data-beacon-max-seconds, from the same settings); without those attributes (collection off), nothing runs.
(function () {
  "use strict";
  var video = document.querySelector("video[data-watch]");
  if (!video || !window.fetch) return;
  var url = video.dataset.watch, csrf = video.dataset.csrf || "";
  var every = Number(video.dataset.beaconSeconds) * 1000;
  var MAX_RANGES = Number(video.dataset.beaconMaxRanges), MAX_SECONDS = Number(video.dataset.beaconMaxSeconds);
  if (!(every > 0 && MAX_RANGES >= 1 && MAX_SECONDS > 10)) return;
  var done = [], start = null, last = null;

  function pendingSeconds() {
    var total = done.reduce(function (sum, r) { return sum + r[1] - r[0]; }, 0);
    return total + (start !== null && last !== null ? last - start : 0);
  }
  function close() {
    if (start !== null && last !== null && last > start) done.push([start, last]);
    start = null; last = null;
  }
  function round(n) { return Math.round(n * 100) / 100; }
  function send(leaving) {
    var open = start !== null && !video.paused;
    close();
    if (open) { start = video.currentTime; last = start; }  // playing on: the next range starts here
    var ranges = done.splice(0, done.length).filter(function (r) { return r[1] - r[0] >= 0.05; });
    while (ranges.length) {
      var batch = [], total = 0;
      while (ranges.length && batch.length < MAX_RANGES && total + (ranges[0][1] - ranges[0][0]) <= MAX_SECONDS) {
        var r = ranges.shift();
        total += r[1] - r[0];
        batch.push([round(r[0]), round(r[1])]);
      }
      if (!batch.length) {  // one range longer than a beacon may carry: split it
        var first = ranges[0];
        batch.push([round(first[0]), round(first[0] + MAX_SECONDS)]);
        first[0] += MAX_SECONDS;
      }
      fetch(url, {
        method: "POST", credentials: "same-origin", keepalive: !!leaving,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ ranges: batch })
      }).catch(function () { /* a lost beacon only makes the heatmap a little fainter */ });
    }
  }

  video.addEventListener("playing", function () { start = video.currentTime; last = start; });
  video.addEventListener("timeupdate", function () {
    if (video.paused || video.seeking) return;
    var now = video.currentTime;
    if (start === null) { start = now; last = now; return; }
    if (now < last || now - last > 2.5) {  // a seek the player did not announce with "seeking"
      close();
      start = now;
    }
    last = now;
    if (pendingSeconds() >= MAX_SECONDS - 10) send(false);
  });
  function stopped() {  // pause or end: the range runs to where playback stopped
    var now = video.currentTime;
    if (start !== null && now >= last && now - last <= 2.5) last = now;
    close();
    send(false);
  }
  video.addEventListener("seeking", close);
  video.addEventListener("pause", stopped);
  video.addEventListener("ended", stopped);
  setInterval(function () { if (done.length || start !== null) send(false); }, every);
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") send(true); });
  window.addEventListener("pagehide", function () { send(true); });
})();
