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

  // Every answer, or its absence: an error or no answer at all keeps the data shown and
  // says so; the next refresh tries again.
  document.addEventListener("htmx:afterRequest", function (event) {
    if (!isLive(event)) { return; }
    if (event.detail.successful) {
      if (polling()) { state("ok", "live"); }
    } else {
      state("lost", "connection lost \u2014 retrying");
    }
  });
})();
