// The force-https dashboard's script (served at /app.js): reads /api/v1/info, /api/v1/stats
// every second (rates, fast-path share, a 5-minute chart), /api/v1/sites and /api/v1/hosts
// every 5 s, and toggles Force HTTPS with PUT /api/v1/hosts/{host} or /api/v1/sites/{name}.
// The bearer token, when changes need one, is kept in sessionStorage (this tab only).
// With [fleet], changes go to etcd (every node): the header shows etcd's state, hosts the
// fleet decides are marked, and switches are disabled while etcd is unreachable.
"use strict";

(() => {
  const $ = (sel) => document.querySelector(sel);
  const TOKEN_KEY = "force-https-admin-token";
  const HISTORY = 300; // samples kept for the chart: 5 minutes at 1 s
  const HOST_LIMIT = 500; // rows rendered at most; the filter narrows the rest
  const state = {
    mutations: "disabled",
    fleet: null, // {prefix, endpoints} with [fleet]
    fleetConnected: true,
    paused: false,
    last: null, // {t, counters}
    history: [], // [{redirects, proxied}]
    hostRows: new Map(), // host -> <tr>
    busy: false,
  };

  const sum = (c, names) => names.reduce((acc, n) => acc + (c[n] || 0), 0);
  const REDIRECTS_SOCKET = ["redirects_301", "redirects_308"];
  const REDIRECTS_FAST = ["afxdp_redirects_301", "afxdp_redirects_308"];
  const PROXIED = ["proxied_http", "proxied_https"];
  const ERRORS = [
    "responses_400", "responses_404", "responses_408", "responses_414", "responses_421",
    "responses_431", "responses_502", "responses_504", "responses_508", "connections_rejected",
    "tls_handshake_failures",
  ];

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (_) { return ""; }
  }

  function say(text, isError) {
    const s = $("#status");
    s.textContent = text;
    s.classList.toggle("error", !!isError);
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Accept: "application/json" }, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
      const t = token();
      if (t) opts.headers.Authorization = "Bearer " + t;
    }
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (!r.ok) {
      const msg = (data && data.error) || r.status + " " + r.statusText;
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return { data, headers: r.headers };
  }

  const fmtRate = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const fmtInt = (v) => Number(v).toLocaleString("en-US");

  // ---- live counters ----------------------------------------------------------------------
  async function pollStats() {
    let c;
    try {
      c = (await api("GET", "/api/v1/stats")).data;
      setConn(true);
    } catch (e) {
      setConn(false);
      return;
    }
    if (state.fleet) setFleet(c.fleet_connected === 1);
    const now = performance.now();
    const prev = state.last;
    state.last = { t: now, c };
    if (!prev) return;
    const dt = (now - prev.t) / 1000;
    if (dt <= 0) return;
    const d = (names) => Math.max(0, sum(c, names) - sum(prev.c, names)) / dt;
    const fast = d(REDIRECTS_FAST);
    const redirects = d(REDIRECTS_SOCKET) + fast;
    const proxied = d(PROXIED);
    state.history.push({ redirects, proxied });
    if (state.history.length > HISTORY) state.history.shift();
    if (state.paused) return;
    $("#c-redirects").textContent = fmtRate(redirects);
    $("#c-proxied").textContent = fmtRate(proxied);
    // Share of the redirects answered by the XDP fast path, over the whole run.
    const allFast = sum(c, REDIRECTS_FAST);
    const all = allFast + sum(c, REDIRECTS_SOCKET);
    $("#c-fast").textContent = !("xdp_packets" in c) ? "no XDP"
      : all > 0 ? ((100 * allFast) / all).toFixed(1) + " %" : "–";
    $("#c-hsts").textContent = fmtRate(d(["hsts_injected"]));
    $("#c-errors").textContent = fmtRate(d(ERRORS));
    drawChart();
  }

  function drawChart() {
    const h = state.history;
    const max = Math.max(1, ...h.map((s) => Math.max(s.redirects, s.proxied)));
    const top = niceCeil(max);
    const pts = (key) =>
      h.map((s, i) => {
        const x = HISTORY - h.length + i;
        const y = 100 - (100 * s[key]) / top;
        return x + "," + y.toFixed(2);
      }).join(" ");
    $("#line-redirects").setAttribute("points", pts("redirects"));
    $("#line-proxied").setAttribute("points", pts("proxied"));
    $("#chart-max").textContent = fmtInt(top);
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // The fleet's state: the header pill, the notes, and the switches (refused while etcd is
  // unreachable, as the API would).
  function setFleet(connected) {
    const changed = state.fleetConnected !== connected;
    state.fleetConnected = connected;
    const f = $("#fleet");
    f.hidden = false;
    f.textContent = connected ? "fleet: etcd connected" : "fleet: etcd unreachable";
    f.classList.toggle("ok", connected);
    f.classList.toggle("bad", !connected);
    f.title = "etcd " + state.fleet.endpoints.join(", ") + ", prefix " + state.fleet.prefix;
    const note = $("#fleet-note");
    note.hidden = false;
    note.classList.toggle("error", !connected);
    note.textContent = connected
      ? "Fleet mode: changes are written to etcd (" + state.fleet.prefix +
        ") and apply to every node. Hosts marked \u201call nodes\u201d are decided by etcd; " +
        "\u201cthis node only\u201d is a local override (force-https enable --local)."
      : "etcd is unreachable: this node serves its last known table, and changes are refused " +
        "until etcd is back (nothing is queued).";
    if (changed) {
      for (const b of document.querySelectorAll("button.switch")) {
        setSwitch(b, b.getAttribute("aria-checked") === "true", b.classList.contains("mixed"));
      }
    }
  }

  function canChange() {
    return state.mutations === "token" && (!state.fleet || state.fleetConnected);
  }

  function setConn(ok) {
    const c = $("#conn");
    c.textContent = ok ? "live" : "disconnected";
    c.classList.toggle("ok", ok);
    c.classList.toggle("bad", !ok);
  }

  // ---- toggles --------------------------------------------------------------------------------
  function makeSwitch(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "switch";
    b.setAttribute("role", "switch");
    b.setAttribute("aria-label", label);
    const track = document.createElement("span");
    track.className = "track";
    track.setAttribute("aria-hidden", "true");
    const text = document.createElement("span");
    text.className = "label";
    text.setAttribute("aria-hidden", "true");
    b.append(track, text);
    b.addEventListener("click", onClick);
    return b;
  }

  function setSwitch(b, on, mixed) {
    b.setAttribute("aria-checked", on ? "true" : "false");
    b.classList.toggle("mixed", !!mixed);
    b.querySelector(".label").textContent = mixed ? "Mixed" : on ? "On" : "Off";
    b.disabled = !canChange();
    b.title = state.mutations !== "token" ? "Read-only: no [admin] token_file"
      : !canChange() ? "etcd is unreachable: changes are refused" : "";
  }

  async function change(kind, name, enforce, button) {
    if (!canChange()) return;
    if (!token()) {
      say("Enter the admin token first.", true);
      $("#token").focus();
      return;
    }
    button.disabled = true;
    const path = "/api/v1/" + kind + "/" + encodeURIComponent(name);
    try {
      const { data } = await api("PUT", path, { force_https: enforce });
      const n = (data.changed || []).length;
      say((kind === "sites" ? "Site " : "") + name + ": Force HTTPS " + (enforce ? "on" : "off") +
        (n ? " (" + n + " host" + (n > 1 ? "s" : "") + " changed)" : " (no change)"));
      await refreshTables();
    } catch (e) {
      say(name + ": " + e.message, true);
      if (e.status === 401) $("#token").focus();
    } finally {
      button.disabled = !canChange();
    }
  }

  // ---- tables ---------------------------------------------------------------------------------
  // One cell; its content sits in a span (the value side of a card row on narrow screens).
  // Returns that span.
  function cell(tr, label, content, cls) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (cls) td.className = cls;
    const v = document.createElement("span");
    v.className = "v";
    if (content instanceof Node) v.append(content); else v.textContent = content;
    td.append(v);
    tr.append(td);
    return v;
  }

  async function refreshSites() {
    const sites = (await api("GET", "/api/v1/sites")).data;
    const body = $("#sites tbody");
    const rows = [];
    for (const s of sites) {
      const tr = document.createElement("tr");
      const total = s.enforced.length + s.not_enforced.length;
      cell(tr, "Site", s.name);
      const st = document.createElement("span");
      st.className = "state-" + s.state;
      st.textContent = s.state === "not_enforced" ? "not enforced" : s.state;
      const stateCell = cell(tr, "State", st);
      if (s.state === "mixed") {
        const few = s.enforced.length <= s.not_enforced.length ? s.enforced : s.not_enforced;
        const ex = document.createElement("span");
        ex.className = "override";
        ex.textContent = (few === s.enforced ? "on: " : "off: ") + few.join(", ");
        stateCell.append(ex);
      }
      cell(tr, "Hosts enforced", s.enforced.length + " / " + total, "num");
      const on = s.state === "enforced";
      const sw = makeSwitch("Force HTTPS for every host of site " + s.name, () =>
        change("sites", s.name, !on, sw));
      sw.dataset.site = s.name;
      setSwitch(sw, on, s.state === "mixed");
      cell(tr, "Force HTTPS", sw);
      rows.push(tr);
    }
    // Keep the focused switch focused across the refresh.
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.site : undefined;
    body.replaceChildren(...rows);
    if (focused) {
      const again = body.querySelector('button[data-site="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
  }

  async function refreshHosts() {
    const q = $("#filter").value.trim();
    const { data: hosts, headers } = await api("GET",
      "/api/v1/hosts?limit=" + HOST_LIMIT + (q ? "&q=" + encodeURIComponent(q) : ""));
    const total = Number(headers.get("X-Total-Count") || hosts.length);
    $("#hosts-count").textContent = total > hosts.length
      ? "Showing " + hosts.length + " of " + fmtInt(total) + " hosts; filter to narrow."
      : fmtInt(total) + " host" + (total === 1 ? "" : "s");
    const body = $("#hosts tbody");
    const seen = new Set();
    let prev = null;
    for (const h of hosts) {
      seen.add(h.host);
      let tr = state.hostRows.get(h.host);
      if (!tr) {
        tr = document.createElement("tr");
        cell(tr, "Host", h.host, "host");
        cell(tr, "Site", "");
        cell(tr, "Source", "");
        const sw = makeSwitch("Force HTTPS for " + h.host, () =>
          change("hosts", h.host, sw.getAttribute("aria-checked") !== "true", sw));
        sw.dataset.host = h.host;
        cell(tr, "Force HTTPS", sw);
        cell(tr, "Redirects", "", "num");
        cell(tr, "Proxied", "", "num");
        state.hostRows.set(h.host, tr);
      }
      const v = Array.from(tr.children, (td) => td.firstChild);
      v[1].textContent = h.site || "–";
      v[2].textContent = h.source;
      tr.dataset.source = h.source;
      const mark = (cls, text) => {
        const o = document.createElement("span");
        o.className = cls;
        o.textContent = text;
        v[2].append(o);
      };
      if (h.source === "fleet") {
        mark("src-fleet", "all nodes");
      } else if (h.source === "local") {
        mark("override", "this node only" +
          (h.fleet === undefined ? "" : "; fleet: " + (h.fleet ? "on" : "off")));
      } else if (h.overridden && h.source === "config") {
        mark("override", "changed at run time");
      } else if (h.source === "config" && h.fleet !== undefined) {
        mark("src-fleet", "fleet: " + (h.fleet ? "on" : "off"));
      }
      setSwitch(v[3].querySelector("button"), h.enforced, false);
      v[4].textContent = fmtInt(h.redirects);
      v[5].textContent = fmtInt(h.proxied);
      // Keep the order of the answer without re-creating rows (focus stays put).
      const want = prev ? prev.nextSibling : body.firstChild;
      if (want !== tr) body.insertBefore(tr, want);
      prev = tr;
    }
    for (const [host, tr] of state.hostRows) {
      if (!seen.has(host)) {
        tr.remove();
        state.hostRows.delete(host);
      }
    }
  }

  async function refreshTables() {
    try {
      await Promise.all([refreshSites(), refreshHosts()]);
    } catch (e) {
      say("Cannot read the host table: " + e.message, true);
    }
  }

  // ---- start ----------------------------------------------------------------------------------
  async function start() {
    try {
      const info = (await api("GET", "/api/v1/info")).data;
      state.mutations = info.mutations;
      state.fleet = info.fleet || null;
      $("#version").textContent = "v" + info.version;
    } catch (e) {
      say("Cannot reach the admin API: " + e.message, true);
    }
    $("#auth").hidden = state.mutations !== "token";
    $("#readonly").hidden = state.mutations === "token";
    $("#token").value = token();
    $("#auth").addEventListener("submit", (ev) => {
      ev.preventDefault();
      try { sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim()); } catch (_) { /* private mode */ }
      say("Token set for this tab.");
    });
    $("#pause").addEventListener("click", () => {
      state.paused = !state.paused;
      $("#pause").setAttribute("aria-pressed", state.paused ? "true" : "false");
      $("#pause").textContent = state.paused ? "Resume updates" : "Pause updates";
    });
    let filterTimer = 0;
    $("#filter").addEventListener("input", () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(refreshTables, 200);
    });
    await Promise.all([pollStats(), refreshTables()]);
    document.body.dataset.ready = "true";
    setInterval(pollStats, 1000);
    setInterval(() => { if (!state.paused) refreshTables(); }, 5000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
