// What the players of the event, embed and replay pages share: the page's translated texts (a JSON
// <script> element; English stands in when one is missing) and media times written as clock times.
// Loaded before player.js or replay.js (deferred scripts run in page order).
window.PlayerText = (function () {
  "use strict";
  // The texts in the JSON element of this id; none when the page has no such element.
  function load(id) {
    try { return JSON.parse(document.getElementById(id).textContent); } catch (e) { return {}; }
  }
  // The text with each %(name)s replaced by vars[name].
  function fill(text, vars) {
    if (vars) Object.keys(vars).forEach(function (k) { text = text.split("%(" + k + ")s").join(String(vars[k])); });
    return text;
  }
  // 75.4 → "1:15", 3725 → "1:02:05".
  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds)), m = Math.floor(s / 60), h = Math.floor(m / 60);
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    return (h ? h + ":" + two(m % 60) : m) + ":" + two(s % 60);
  }
  return { load: load, fill: fill, clock: clock };
})();
