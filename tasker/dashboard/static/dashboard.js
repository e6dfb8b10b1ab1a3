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

  document.addEventListener("htmx:afterSwap", function (event) {
    if (isLive(event)) { showTimes(live()); }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (isLive(event)) { showTimes(live()); }
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

  // Times: the server writes each as <time datetime="…Z"> with its UTC text; here it is shown
  // in the browser's time zone, with the zone's name, and how long ago it was ("3 min ago",
  // kept up to date). A refresh morphs in only the times that changed: the others are left
  // as they are shown (see beforeNodeMorphed), the new ones are shown here after the swap.
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
  var local = null;
  var relative = null;
  try {
    local = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      second: "2-digit", hourCycle: "h23", timeZoneName: "short",
    });
    relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  } catch (e) { local = null; }

  function localText(date) {
    var part = {};
    local.formatToParts(date).forEach(function (p) { part[p.type] = p.value; });
    return part.year + "-" + part.month + "-" + part.day + " " + part.hour + ":" +
      part.minute + ":" + part.second + " " + (part.timeZoneName || "");
  }

  var STEPS = [[60, "second"], [3600, "minute"], [86400, "hour"], [604800, "day"],
    [2629800, "week"], [31557600, "month"], [Infinity, "year"]];
  var SIZES = { second: 1, minute: 60, hour: 3600, day: 86400, week: 604800,
    month: 2629800, year: 31557600 };

  function agoText(date) {
    var seconds = (date.getTime() - Date.now()) / 1000;
    var size = Math.abs(seconds);
    for (var i = 0; i < STEPS.length; i += 1) {
      if (size < STEPS[i][0]) {
        var unit = STEPS[i][1];
        return relative.format(Math.round(seconds / SIZES[unit]), unit);
      }
    }
    return "";
  }

  function showTime(node) {
    var iso = node.getAttribute("datetime");
    var date = new Date(iso);
    if (isNaN(date.getTime())) { return; }
    var text = localText(date);
    if (node.getAttribute("data-shown") !== iso) {
      if (!node.hasAttribute("title")) { node.setAttribute("title", node.textContent); }
      node.textContent = text;
      node.setAttribute("data-shown", iso);
    }
    if (node.getAttribute("data-ago") === "no") { return; }
    var ago = node.querySelector(".ago");
    if (ago === null) {
      ago = document.createElement("span");
      ago.className = "ago";
      node.appendChild(ago);
    }
    var words = " (" + agoText(date) + ")";
    if (ago.textContent !== words) { ago.textContent = words; }
  }

  function showTimes(root) {
    if (local === null || !root) { return; }
    root.querySelectorAll("time[datetime]").forEach(showTime);
  }

  // A time that is shown already and has not changed is not morphed back to its UTC text.
  function keepShownTimes() {
    if (typeof Idiomorph === "undefined" || !Idiomorph.defaults) { return; }
    var callbacks = Idiomorph.defaults.callbacks;
    var next = callbacks.beforeNodeMorphed;
    callbacks.beforeNodeMorphed = function (oldNode, newNode) {
      if (oldNode.nodeName === "TIME" && newNode.nodeName === "TIME" &&
          oldNode.getAttribute("data-shown") === newNode.getAttribute("datetime")) {
        return false;
      }
      return next ? next(oldNode, newNode) : undefined;
    };
  }

  // Since and until are read in the browser's time zone: the form sends it (tz) and says it.
  function zoneOfForm() {
    var input = document.querySelector("input[data-zone-input]");
    if (!input || input.value || !zone) { return; }
    input.value = zone;
    document.querySelectorAll("[data-zone-label]").forEach(function (label) {
      label.textContent = "(" + zone + ")";
    });
  }

  // "/" puts the keyboard in the search box, unless it is typing into a field already.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    var typing = target && (target.isContentEditable ||
      /^(INPUT|TEXTAREA|SELECT)$/.test(target.nodeName));
    var search = document.getElementById("search");
    if (typing || !search) { return; }
    event.preventDefault();
    search.focus();
    search.select();
  });

  keepShownTimes();
  zoneOfForm();
  showTimes(document);
  window.setInterval(function () { showTimes(document); }, 5000);
})();
