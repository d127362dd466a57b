// The deep-linking response goes back to the course platform by itself (the button stays for no-script browsers).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("lti-return");
  if (form) { form.submit(); }
});
