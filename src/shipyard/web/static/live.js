// The dashboard's live parts: a region with data-live follows the server's event stream (server-sent
// events, cookie-authenticated) and, when something happens, swaps in its server-rendered fragment
// (data-fragment). No framework, no build step. Without JavaScript the pages still work (reload to update).
"use strict";
(function () {
  function follow(region) {
    var url = region.getAttribute("data-live");
    var fragment = region.getAttribute("data-fragment");
    if (!url || !fragment || !window.EventSource) return;
    var pending = null, busy = false, again = false, closed = false;
    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(fragment, {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (res) {
          if (res.status === 401) { window.location.assign("/login"); return null; }
          return res.ok ? res.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined) {
            // Keep focus where it was when the focused control is redrawn (keyboard users).
            var focused = document.activeElement && document.activeElement.closest && region.contains(document.activeElement)
              ? document.activeElement.getAttribute("aria-label") : null;
            region.innerHTML = html;
            region.setAttribute("data-refreshed", String(Date.now()));
            if (focused) {
              var again_ = region.querySelector('[aria-label="' + focused.replace(/"/g, '\\"') + '"]');
              if (again_) again_.focus();
            }
          }
        })
        .catch(function () { /* the next event retries */ })
        .then(function () {
          busy = false;
          if (again) { again = false; schedule(); }
        });
    }
    function schedule() {
      if (pending) return;
      pending = setTimeout(function () { pending = null; refresh(); }, 150);
    }
    var source = new EventSource(url, {withCredentials: true});
    source.onmessage = schedule;
    source.onopen = function () { region.setAttribute("data-live-state", "open"); };
    source.onerror = function () {
      region.setAttribute("data-live-state", closed ? "ended" : "reconnecting");
    };
    source.addEventListener("end", function () { closed = true; source.close(); refresh(); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var regions = document.querySelectorAll("[data-live]");
    for (var i = 0; i < regions.length; i++) follow(regions[i]);
  });
})();
