// Progressive enhancements shared by every page; each page works without them.
// Texts shown by this script come translated from the page (data-* attributes), never from here.
(function () {
  "use strict";

  // The visitor's time zone, so the server writes dates in it from the next page on.
  try {
    var tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (tz && document.cookie.indexOf("live_tz=" + encodeURIComponent(tz)) === -1) {
      document.cookie = "live_tz=" + encodeURIComponent(tz) + "; path=/; max-age=31536000; SameSite=Lax";
    }
    document.querySelectorAll("input[data-browser-timezone]").forEach(function (input) {
      if (tz && (!input.value || (input.value === "UTC" && input.dataset.browserTimezone === "default"))) input.value = tz;
    });
  } catch (e) { /* old browser: dates stay in UTC */ }

  // After a form the server refused (its error summary), a one-time secret or a wrong password, the keyboard
  // and the screen reader start at that message instead of the top of the page (WCAG 2.4.3, 3.3.1).
  var first = document.querySelector("[data-focus-on-load]");
  if (first) first.focus();

  function announce(text) {
    var region = document.getElementById("live-status");
    if (!region) return;
    region.textContent = "";
    setTimeout(function () { region.textContent = text; }, 50);
  }

  // Copy buttons: <button data-copy="input-id" data-copied="Copied" hidden>
  if (navigator.clipboard && window.isSecureContext !== false) {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.dataset.copy);
        if (!source) return;
        navigator.clipboard.writeText(source.value).then(function () {
          announce(button.dataset.copied || "");
        }, function () { source.select(); });
      });
    });
  }

  // Show/hide a secret: a toggle button (its name stays, aria-pressed tells the state):
  // <button data-reveal="input-id" aria-pressed="false" hidden>
  document.querySelectorAll("button[data-reveal]").forEach(function (button) {
    var input = document.getElementById(button.dataset.reveal);
    if (!input) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var show = input.type === "password";
      input.type = show ? "text" : "password";
      button.setAttribute("aria-pressed", show ? "true" : "false");
    });
  });

  // Destructive forms ask first: <form data-confirm="Really?">
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // The password field of the event form matters only for password-protected events.
  var visibility = document.querySelectorAll("input[name='visibility']");
  var passwordField = document.getElementById("field-password");
  function syncPassword() {
    var checked = document.querySelector("input[name='visibility']:checked");
    if (passwordField && checked) passwordField.hidden = checked.value !== "password";
  }
  visibility.forEach(function (radio) { radio.addEventListener("change", syncPassword); });
  if (passwordField && !passwordField.querySelector("[aria-invalid='true']")) syncPassword();
})();
