// Posthouse dashboard: the little the pages need beyond htmx. Every page works without it.
// Pickers (server, stream) go where they point as soon as one is changed; their "Go" button is for
// browsers without JavaScript, so it is hidden here.
document.documentElement.classList.add("js");
document.addEventListener("change", function (event) {
  var target = event.target;
  if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
    target.form.requestSubmit();
  }
});
