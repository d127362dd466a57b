// The sound a viewer hears when a recording has several audio renditions in its master playlist (the
// programme, and an audio description per language): a labelled <select> shown only when hls.js lists
// more than one, operated with the keyboard like any select. The choice is remembered (localStorage), so
// someone who needs the description gets it on the next recording too. Safari's native HLS shows its own
// menu from the same master. Texts come from the field's data attributes (translated by the page).
window.AudioTracks = (function () {
  "use strict";
  var DESCRIBES = "public.accessibility.describes-video", PREFERENCE = "audio-description";

  function described(track) {
    var chars = (track.attrs && track.attrs.CHARACTERISTICS) || track.characteristics || "";
    return chars.indexOf(DESCRIBES) >= 0;
  }

  function languageName(code, pageLang) {
    try {
      if (code && window.Intl && window.Intl.DisplayNames) return new window.Intl.DisplayNames([pageLang], { type: "language" }).of(code) || code;
    } catch (e) { /* an unknown code: shown as it is */ }
    return code;
  }

  function attach(hls, field) {
    if (!hls || !field || !window.Hls) return;
    var select = field.querySelector("select");
    var pageLang = document.documentElement.lang || "en";
    function label(track) {
      if (!described(track)) return field.dataset.original;
      return field.dataset.described.split("%(language)s").join(languageName(track.lang || "", pageLang));
    }
    function wanted(tracks) {
      var pref = null;
      try { pref = window.localStorage.getItem(PREFERENCE); } catch (e) { /* private mode */ }
      if (!pref) return -1;
      var same = -1, any = -1;
      tracks.forEach(function (track, i) {
        if (!described(track)) return;
        if (any < 0) any = i;
        if (same < 0 && track.lang === pref) same = i;
      });
      return same >= 0 ? same : any;
    }
    hls.on(window.Hls.Events.AUDIO_TRACKS_UPDATED, function () {
      var tracks = hls.audioTracks || [];
      select.textContent = "";
      tracks.forEach(function (track, i) {
        var option = document.createElement("option");
        option.value = String(i);
        option.textContent = label(track);
        select.appendChild(option);
      });
      field.hidden = tracks.length < 2;
      var pick = wanted(tracks);
      if (pick >= 0 && pick !== hls.audioTrack) hls.audioTrack = pick;
      select.value = String(hls.audioTrack);
    });
    hls.on(window.Hls.Events.AUDIO_TRACK_SWITCHED, function (_e, data) { select.value = String(data.id); });
    select.addEventListener("change", function () {
      var index = Number(select.value), track = (hls.audioTracks || [])[index];
      hls.audioTrack = index;
      try {
        if (track && described(track)) window.localStorage.setItem(PREFERENCE, track.lang || "und");
        else window.localStorage.removeItem(PREFERENCE);
      } catch (e) { /* not remembered */ }
    });
  }

  return { attach: attach };
})();
