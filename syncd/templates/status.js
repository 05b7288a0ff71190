(function () {
  "use strict";
  var KEY = "syncd-filter";
  var box = document.getElementById("filter");
  var count = document.getElementById("shown");
  var stale = document.getElementById("stale");

  function apply() {
    var query = box.value.trim().toLowerCase();
    var rows = document.querySelectorAll("#devices tbody tr");
    var shown = 0;
    rows.forEach(function (row) {
      var hit = !query || (row.getAttribute("data-search") || "").indexOf(query) !== -1;
      row.hidden = !hit;
      if (hit) { shown += 1; }
    });
    count.textContent = query ? shown + " of " + rows.length + " shown" : "";
  }

  function refresh() {
    fetch(window.location.pathname, { cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
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
      .finally(function () { window.setTimeout(refresh, 5000); });
  }

  try { box.value = window.sessionStorage.getItem(KEY) || ""; } catch (e) { /* storage off */ }
  box.addEventListener("input", function () {
    try { window.sessionStorage.setItem(KEY, box.value); } catch (e) { /* storage off */ }
    apply();
  });
  apply();
  window.setTimeout(refresh, 5000);
}());
