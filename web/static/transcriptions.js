// The dashboard's transcriptions: each queued or running one asks for its job every 5 s
// (GET /api/v1/recordings/{id}/transcription). The bar and the time left follow it without a word
// (a screen reader reads them when it reaches them); when a job ends, one polite announcement says so
// and the item shows its outcome. Texts come translated from the page (#transcription-text).
(function () {
  "use strict";
  var items = Array.prototype.slice.call(document.querySelectorAll("[data-transcription]"));
  if (!items.length) return;
  var T = window.PlayerText.load("transcription-text"), fill = window.PlayerText.fill, clock = window.PlayerText.clock;
  var status = document.getElementById("transcriptions-status");
  var PERIOD = 5000;

  function show(item, job) {
    var bar = item.querySelector("progress"), box = item.querySelector(".transcription-progress");
    var waiting = item.querySelector(".transcription-waiting"), left = item.querySelector(".transcription-left");
    var percent = Math.round(100 * job.fraction);
    if (job.state === "running") {
      if (box) box.hidden = false;
      if (waiting) waiting.hidden = true;
      if (bar) bar.value = percent;
      if (left) left.textContent = job.seconds_left === null ? fill(T.percent, { percent: percent })
        : fill(T.percent_left, { percent: percent, left: clock(job.seconds_left) });
      return true;
    }
    if (job.state === "queued") return true;
    var text = fill(T[job.state] || "", { title: item.getAttribute("data-title"), reason: job.error || "" });
    if (box) box.remove();
    if (waiting) waiting.remove();
    var form = item.querySelector("form");
    if (form) form.remove();
    var outcome = document.createElement("span");
    outcome.textContent = text;
    item.appendChild(outcome);
    if (status) status.textContent = text;
    return false;
  }

  function poll(item) {
    fetch(item.getAttribute("data-transcription"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (job === null || show(item, job)) setTimeout(function () { poll(item); }, PERIOD);
      })
      .catch(function () { setTimeout(function () { poll(item); }, PERIOD); });
  }

  items.forEach(function (item) { setTimeout(function () { poll(item); }, PERIOD); });
})();
