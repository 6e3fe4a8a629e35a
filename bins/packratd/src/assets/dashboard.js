// packrat dashboard: refreshes the page's live part without a reload and sends the actions
// (run now, cancel) to the JSON API with the operator's token. No build step, no libraries.
(function () {
  "use strict";
  var KEY = "packrat-api-token";
  var POLL_MS = 2000;
  var body = document.body;
  var live = document.getElementById("live");
  var flash = document.getElementById("flash");
  var offline = document.getElementById("offline");
  var tokenInput = document.getElementById("token");
  var tokenState = document.getElementById("token-state");

  function msg(name, vars) {
    var t = body.getAttribute("data-msg-" + name) || name;
    Object.keys(vars || {}).forEach(function (k) {
      t = t.split("{" + k + "}").join(String(vars[k]));
    });
    return t;
  }
  function token() {
    try { return window.localStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }
  function showFlash(text, kind) {
    flash.textContent = text;
    flash.className = kind;
  }
  function showTokenState() {
    tokenState.textContent = token() ? msg("token-saved") : msg("token-none");
  }

  document.getElementById("token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var v = tokenInput.value.trim();
    try {
      if (v) { window.localStorage.setItem(KEY, v); } else { window.localStorage.removeItem(KEY); }
    } catch (e) { /* storage disabled: nothing kept */ }
    tokenInput.value = "";
    showTokenState();
  });
  document.getElementById("token-forget").addEventListener("click", function () {
    try { window.localStorage.removeItem(KEY); } catch (e) { /* nothing kept */ }
    showTokenState();
    showFlash(msg("token-forgotten"), "ok");
  });

  function post(url, ok) {
    var t = token();
    if (!t) {
      showFlash(msg("need-token"), "error");
      tokenInput.focus();
      return;
    }
    // No body and no content type: the API refuses form and text/plain requests.
    fetch(url, { method: "POST", headers: { "Authorization": "Bearer " + t }, credentials: "omit" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) { return { r: r, j: j }; });
      })
      .then(function (x) {
        if (x.r.status === 202) {
          showFlash(ok(x.j), "ok");
        } else if (x.r.status === 401) {
          showFlash(msg("wrong-token"), "error");
        } else {
          showFlash(msg("refused", { error: x.j.error || x.r.status }), "error");
        }
        refresh();
      })
      .catch(function () { showFlash(msg("offline"), "error"); });
  }

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button") : null;
    if (!b) { return; }
    if (b.classList.contains("run")) {
      var plan = b.getAttribute("data-plan");
      var kind = b.getAttribute("data-kind");
      post("/api/plans/" + encodeURIComponent(plan) + "/run?kind=" + encodeURIComponent(kind), function (j) {
        return msg("run-started", { job: j.job });
      });
    } else if (b.classList.contains("cancel")) {
      var job = b.getAttribute("data-job");
      post("/api/jobs/" + encodeURIComponent(job) + "/cancel", function () {
        return msg("cancelling", { job: job });
      });
    }
  });

  var inflight = false;
  function refresh() {
    if (inflight) { return; }
    inflight = true;
    var q = window.location.search;
    var url = window.location.pathname + (q ? q + "&" : "?") + "fragment=1";
    fetch(url, { cache: "no-store", credentials: "omit" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        live.innerHTML = html;
        offline.hidden = true;
        body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {
        offline.textContent = msg("offline");
        offline.hidden = false;
      })
      .then(function () { inflight = false; });
  }

  showTokenState();
  window.setInterval(refresh, POLL_MS);
})();
