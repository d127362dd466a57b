// The owners' Audience tab on the replay page: clicking the heatmap, or a "Play from" button of its data
// table, seeks the replay video there (web/templates/_audience.html; charts are drawn on the server).
(function () {
  "use strict";
  var video = document.getElementById("replay");
  var chart = document.querySelector("#audience .chart-drawing.seekable svg");
  if (!video) return;

  function seek(seconds) {
    if (!isFinite(seconds)) return;
    video.currentTime = seconds;
    video.dataset.seekedFromAudience = String(seconds);
  }

  if (chart) {
    var bars = Array.prototype.slice.call(chart.querySelectorAll("rect[data-seek]"));
    chart.addEventListener("click", function (event) {
      // the bar under the pointer, else the nearest one along the timeline (empty parts have no height)
      var best = null, distance = Infinity;
      bars.forEach(function (bar) {
        var box = bar.getBoundingClientRect();
        var d = event.clientX < box.left ? box.left - event.clientX : event.clientX > box.right ? event.clientX - box.right : 0;
        if (d < distance) { distance = d; best = bar; }
      });
      if (best) seek(Number(best.getAttribute("data-seek")));
    });
  }
  document.querySelectorAll("#audience button[data-seek]").forEach(function (button) {
    button.addEventListener("click", function () {
      seek(Number(button.getAttribute("data-seek")));
      video.focus();
    });
  });
})();
