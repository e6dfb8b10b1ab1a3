// tasker dashboard: reload the page's live part in place, and say so when the server is away.
(function () {
  "use strict";
  var content = document.getElementById("content");
  var badge = document.getElementById("connection");
  var url = content && content.getAttribute("data-refresh");
  var INTERVAL = 1000;

  function state(ok) {
    badge.textContent = ok ? "live" : "connection lost \u2014 retrying";
    badge.className = "connection " + (ok ? "ok" : "lost");
  }

  function refresh() {
    fetch(url, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        content.innerHTML = html;  // server-rendered, every value escaped there
        state(true);
      })
      .catch(function () { state(false); })
      .then(function () { setTimeout(refresh, INTERVAL); });
  }

  if (url) {
    setTimeout(refresh, INTERVAL);
  } else if (badge) {
    badge.textContent = "";
  }
})();
