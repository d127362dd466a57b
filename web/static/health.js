/* The lecturer's live stream health: bitrate, frame rate, keyframe interval (with the advice to
   shorten it when it is longer than a segment), viewers, captions.
   Polls the event API (owner view) every 3 s while the page is visible; texts come translated
   from the page (#health-text). */
(function () {
  "use strict";
  var list = document.getElementById("stream-health");
  var textBlock = document.getElementById("health-text");
  if (!list || !textBlock) { return; }
  var texts = JSON.parse(textBlock.textContent);

  function t(key, values) {
    return (texts[key] || key).replace(/%\((\w+)\)s/g, function (_, name) { return values && name in values ? values[name] : ""; });
  }
  function set(field, value) {
    var cell = list.querySelector('[data-field="' + field + '"]');
    if (cell && cell.textContent !== value) { cell.textContent = value; }
  }
  function show(body) {
    var health = body.stream && body.stream.health;
    set("viewers", String(body.viewers || 0));
    if (!health || !health.publishing) {
      set("status", t("offline"));
      ["protocol", "bitrate", "fps", "gop"].forEach(function (f) { set(f, "—"); });
    } else {
      set("status", health.healthy ? t("healthy") : t("stalled"));
      list.classList.toggle("unhealthy", !health.healthy);
      set("protocol", String(health.protocol || "—").toUpperCase());
      set("bitrate", t("kbps", { kbps: Math.round((health.bitrate_bps || 0) / 1000) }));
      set("fps", t("fps", { fps: health.fps || 0 }));
      set("gop", health.keyframe_interval_seconds == null ? "—" : t("seconds", { seconds: health.keyframe_interval_seconds }));
    }
    var advice = list.querySelector('[data-field="gop_advice"]');
    var recommended = health && health.publishing ? health.recommended_keyframe_interval_seconds : null;
    if (advice) {
      advice.hidden = recommended == null;
      set("gop_advice", recommended == null ? "" : t("gop_advice", { seconds: recommended }));
    }
    var captions = health && health.captions;
    if (!captions || captions.state === "off") { set("captions", t("captions_off")); }
    else if (captions.state === "on") { set("captions", t("captions_on") + (captions.language ? " (" + captions.language + ")" : "")); }
    else { set("captions", t("captions_unavailable", { reason: captions.message || captions.state })); }
  }
  function poll() {
    if (document.hidden) { return; }
    fetch(list.dataset.api, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (body) { if (body) { show(body); } })
      .catch(function () { /* the next poll tries again */ });
  }
  poll();
  setInterval(poll, 3000);
})();
