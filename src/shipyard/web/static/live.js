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
              var again_ = region.querySelector('[aria-label="' + CSS.escape(focused) + '"]');
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
    region.addEventListener("shipyard:refresh", refresh);
    var source = new EventSource(url, {withCredentials: true});
    source.onmessage = schedule;
    source.onopen = function () { region.setAttribute("data-live-state", "open"); };
    source.onerror = function () {
      region.setAttribute("data-live-state", closed ? "ended" : "reconnecting");
    };
    source.addEventListener("end", function () { closed = true; source.close(); refresh(); });
  }
  // A form marked data-inline (approve, reject) posts in place: the page stays (its live parts keep
  // following) and the region is redrawn; a refusal's one line is shown in the region's alert. Without
  // JavaScript the same form posts normally.
  function inline(event) {
    var form = event.target;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-inline") || !window.fetch) return;
    event.preventDefault();
    var region = form.closest("[data-live]");
    var alert_ = region ? region.querySelector("[data-approval-error]") : null;
    fetch(form.action, {method: "POST", credentials: "same-origin", body: new URLSearchParams(new FormData(form)),
                        headers: {"Accept": "text/html"}})
      .then(function (res) {
        return res.text().then(function (text) {
          if (res.ok) { if (region) region.dispatchEvent(new Event("shipyard:refresh")); return; }
          var doc = new DOMParser().parseFromString(text, "text/html");
          var line = doc.querySelector("[role=alert]");
          if (alert_) { alert_.textContent = line ? line.textContent : "refused (" + res.status + ")"; alert_.hidden = false; }
        });
      })
      .catch(function () { if (alert_) { alert_.textContent = "the server did not answer"; alert_.hidden = false; } });
  }
  document.addEventListener("submit", inline);
  document.addEventListener("DOMContentLoaded", function () {
    var regions = document.querySelectorAll("[data-live]");
    for (var i = 0; i < regions.length; i++) follow(regions[i]);
  });
})();
