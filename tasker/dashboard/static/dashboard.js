// tasker dashboard. htmx asks for the live part of the page every second and idiomorph
// morphs the page into the answer, changing only what changed (so a selection, the focus
// and the scroll of the log survive). This script says in the header whether that works,
// and tells screen readers which statuses changed, not the whole table.
(function () {
  "use strict";
  var badge = document.getElementById("connection");
  var announcer = document.getElementById("announcer");
  var before = null;

  function live() { return document.getElementById("live"); }

  function polling() {
    var element = live();
    return element !== null && element.hasAttribute("hx-trigger");
  }

  function state(kind, text) {
    if (!badge) { return; }
    if (badge.textContent !== text) { badge.textContent = text; }
    badge.className = "connection " + kind;
  }

  // Each status shown, by the id of the element that shows it.
  function statuses() {
    var seen = {};
    var element = live();
    if (element === null) { return seen; }
    element.querySelectorAll("[data-announce][id]").forEach(function (node) {
      seen[node.id] = {
        label: node.getAttribute("data-announce"),
        status: node.getAttribute("data-status"),
      };
    });
    return seen;
  }

  function announce(previous, current) {
    var changes = [];
    Object.keys(current).forEach(function (id) {
      var was = previous[id];
      var now = current[id];
      if (!was || was.status !== now.status || was.label !== now.label) {
        changes.push(now.label + ": " + now.status);
      }
    });
    if (changes.length && announcer) { announcer.textContent = changes.join(". "); }
  }

  function isLive(event) {
    var element = event.detail && event.detail.elt;
    return element !== undefined && element !== null && element.id === "live";
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    if (isLive(event) && event.detail.shouldSwap) { before = statuses(); }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (!isLive(event) || before === null) { return; }
    announce(before, statuses());
    before = null;
    if (!polling()) { state("idle", live().getAttribute("data-note") || ""); }
  });

  // When the live part last came: what a banner says the data shown is from.
  var fresh = new Date();
  var banner = document.getElementById("banner");

  function clock(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // The refresh failed: the data stays, dimmed, and the banner says which of the two is
  // away — the dashboard (no answer at all) or its database (the dashboard answers 503) —
  // and since when. The next refresh, a second later, tries again.
  function stale(what, detail) {
    var element = live();
    if (element !== null) { element.classList.add("stale"); }
    state("lost", what + " unreachable \u2014 retrying");
    if (!banner) { return; }
    var ago = Math.round((new Date() - fresh) / 1000);
    var text = what === "database"
      ? "The database is unreachable: the dashboard answers, but cannot read it"
      : "The dashboard is unreachable: the tasker dashboard server does not answer";
    text += (detail ? " (" + detail + ")" : "") + ". The data below is from " + clock(fresh) +
      " (" + ago + " s ago); trying again every second.";
    if (banner.textContent !== text) { banner.textContent = text; }
    banner.className = "banner " + what;
    banner.hidden = false;
  }

  function recovered() {
    var element = live();
    if (element !== null) { element.classList.remove("stale"); }
    fresh = new Date();
    if (banner && !banner.hidden) { banner.hidden = true; banner.textContent = ""; }
  }

  // Every answer, or its absence: an error or no answer at all keeps the data shown and
  // says so; the next refresh tries again.
  document.addEventListener("htmx:afterRequest", function (event) {
    if (!isLive(event)) { return; }
    var xhr = event.detail.xhr;
    if (event.detail.successful) {
      recovered();
      if (polling()) { state("ok", "live"); }
    } else if (xhr && xhr.status === 503) {
      stale("database", (xhr.responseText || "").trim().slice(0, 300));
    } else if (xhr && xhr.status > 0) {
      stale("dashboard", "HTTP " + xhr.status);
    } else {
      stale("dashboard", "");
    }
  });

  // A page that found the database away counts down to its next try (the page reloads
  // itself by its refresh header, also without this script).
  var countdown = document.getElementById("countdown");
  if (countdown) {
    var left = parseInt(countdown.getAttribute("data-seconds"), 10);
    var tick = function () {
      countdown.textContent = left > 0 ? " (next try in " + left + " s)" : " (trying now)";
      left -= 1;
      if (left >= 0) { window.setTimeout(tick, 1000); }
    };
    tick();
  }
})();
