// Posthouse dashboard, management pages: what htmx does not do on its own. Every page works without it.
// The template editor: after each live preview (htmx posts the form to …/templates/preview), the rendered HTML
// is posted into the sandboxed frame where the form's "Show the HTML" button (formaction, formtarget) points, so
// the frame's document comes from its own response with its own policy (routes/templates.py).
(function () {
  // A form of its own (not the editor's: a form has one planned navigation, and a preview posted into the
  // frame would cancel a "Save" clicked at the same moment), holding a copy of the editor's fields.
  var shadow = null;
  function showHtml() {
    var button = document.querySelector("button[data-preview-html]");
    if (!button || !button.form) {
      return;
    }
    if (shadow === null) {
      shadow = document.createElement("form");
      shadow.method = "post";
      shadow.hidden = true;
      document.body.appendChild(shadow);
    }
    shadow.action = button.getAttribute("formaction");
    shadow.target = button.getAttribute("formtarget");
    shadow.replaceChildren();
    new FormData(button.form).forEach(function (value, name) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      shadow.appendChild(input);
    });
    shadow.submit();
  }
  document.addEventListener("htmx:afterRequest", function (event) {
    var config = event.detail && event.detail.requestConfig;
    if (event.detail.successful && config && /\/templates\/preview$/.test(config.path)) {
      showHtml();
    }
  });
  // Nothing to post on a new template's first load (no frame source); an edited one loads its stored HTML.
  document.addEventListener("DOMContentLoaded", function () {
    var frame = document.querySelector("iframe.preview-frame");
    if (frame && frame.getAttribute("src") === "about:blank" && document.querySelector("#t-html") &&
        document.querySelector("#t-html").value) {
      showHtml();
    }
  });
  // Forms that destroy something ask first (data-confirm holds the question).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form instanceof HTMLFormElement && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
})();
