(function () {
  "use strict";
  var KEY = "syncd-filter";
  var box = document.getElementById("filter");
  var count = document.getElementById("shown");
  var stale = document.getElementById("stale");

  function apply() {
    var query = box.value.trim().toLowerCase();
    var rows = document.querySelectorAll("#devices tbody tr");
    var table = document.getElementById("devices");
    var total = (table && table.getAttribute("data-total")) || rows.length;
    var shown = 0;
    rows.forEach(function (row) {
      var hit = !query || (row.getAttribute("data-search") || "").indexOf(query) !== -1;
      row.hidden = !hit;
      if (hit) { shown += 1; }
    });
    count.textContent = query ? shown + " of " + total + " shown" : "";
  }

  var timer = null;

  function later(seconds) {
    if (timer !== null) { window.clearTimeout(timer); }
    timer = window.setTimeout(refresh, seconds * 1000);
  }

  function refresh() {
    timer = null;
    var query = box.value.trim();
    var url = window.location.pathname + (query ? "?q=" + encodeURIComponent(query) : "");
    fetch(url, { cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (box.value.trim() !== query) { return; }  // typed on meanwhile: a newer fetch follows
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["overview", "device-list"].forEach(function (id) {
          var fresh = doc.getElementById(id);
          var current = document.getElementById(id);
          if (fresh && current) { current.replaceWith(document.adoptNode(fresh)); }
        });
        stale.hidden = true;
        apply();
      })
      .catch(function () { stale.hidden = false; })
      .finally(function () { if (timer === null) { later(5); } });
  }

  try { box.value = window.sessionStorage.getItem(KEY) || ""; } catch (e) { /* storage off */ }
  box.addEventListener("input", function () {
    try { window.sessionStorage.setItem(KEY, box.value); } catch (e) { /* storage off */ }
    apply();
    later(0.3);  // the server's rows for the filter: the page lists only the worst
  });
  apply();
  later(box.value.trim() ? 0 : 5);
}());
