// anxmon check-in app: plain JavaScript, no build step. Talks only to its own server:
// JSON endpoints under /api and one Server-Sent Events stream per page.
"use strict";

const $ = (id) => document.getElementById(id);
const app = { wearer: null, csrf: null, checkin: null, rating: null, labels: new Set(), events: null,
              days: 3, answered: new Set(), breathTimer: null };

// ------------------------------------------------------------------ helpers
async function api(path, body) {
  const init = body === undefined ? { credentials: "same-origin" } : {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": app.csrf || "" },
    body: JSON.stringify(body),
  };
  const res = await fetch(path, init);
  let data = {};
  try { data = await res.json(); } catch (e) { data = {}; }
  if (!res.ok) {
    const err = new Error(data.error || "Something went wrong. Please try again.");
    err.status = res.status;
    throw err;
  }
  return data;
}
const wpath = (what) => `/api/w/${encodeURIComponent(app.wearer)}/${what}`;
const show = (id, on) => { $(id).hidden = !on; };
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
const fmtTime = (t) => new Date(t * 1000).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" });
const fmtDay = (t) => new Date(t * 1000).toLocaleDateString([], { weekday: "short", day: "numeric" });

// ------------------------------------------------------------------ start
async function start() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch(() => {});
  }
  try {
    const cfg = await api("/api/config");
    $("crisis").textContent = cfg.crisis_text;
  } catch (e) { /* the text stays empty: the server is not reachable */ }
  try {
    const s = await api("/api/session");
    signedIn(s);
  } catch (e) {
    showLogin();
  }
}

function showLogin() {
  show("login", true); show("home", false); show("signout", false); show("who", false);
  $("login-wearer").focus();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    const s = await api("/api/login", { wearer: $("login-wearer").value, password: $("login-password").value });
    $("login-password").value = "";
    signedIn(s);
  } catch (e) {
    $("login-error").textContent = e.message;
  }
});

$("signout").addEventListener("click", async () => {
  try { await api("/api/logout", {}); } catch (e) { /* signed out anyway */ }
  if (app.events) app.events.close();
  app.wearer = app.csrf = null;
  showLogin();
});

function signedIn(s) {
  app.wearer = s.wearer;
  app.csrf = s.csrf;
  show("login", false); show("home", true); show("signout", true);
  $("who").textContent = s.wearer; show("who", true);
  listen();
  loadHistory();
}

// ------------------------------------------------------------------ live events
function listen() {
  if (app.events) app.events.close();
  const es = new EventSource(wpath("events"));
  app.events = es;
  es.addEventListener("state", (ev) => renderState(JSON.parse(ev.data)));
  es.addEventListener("checkin", (ev) => { renderCheckin(JSON.parse(ev.data)); loadHistory(); });
  es.addEventListener("status", (ev) => renderStatus(JSON.parse(ev.data)));
  es.addEventListener("closed", (ev) => {
    const d = JSON.parse(ev.data);
    if (app.checkin && (!d.prompt_id || d.prompt_id === app.checkin.id) && !app.answered.has(app.checkin.id)) {
      renderCheckin(null);
      loadHistory();
    }
  });
  es.addEventListener("notice", () => {
    const refused = "The monitor could not take that answer; the check-in may have closed.";
    if (!$("thanks").hidden) {  // the answer just sent was refused: do not say it was noted
      $("thanks-text").textContent = refused;
      show("offer-breathing", false);
    } else {
      $("checkin-error").textContent = refused;
    }
  });
  es.onerror = async () => {
    // the browser retries by itself; a lost session needs a new sign-in
    try { await api("/api/session"); } catch (e) { if (e.status === 401) { es.close(); showLogin(); } }
  };
}

function renderState(st) {
  renderStatus(st.status);
  renderSettings(st.settings);
  renderCheckin(st.checkin);
}

function renderStatus(status) {
  $("status").textContent = status.text;
  $("status").dataset.level = status.level;
}

// ------------------------------------------------------------------ the check-in
function renderCheckin(c) {
  if (c && app.answered.has(c.id)) c = null;
  const fresh = c && (!app.checkin || app.checkin.id !== c.id);
  app.checkin = c;
  show("status", !c);  // while a check-in is open, it speaks for itself
  if (!c) {
    show("checkin", false);
    show("nothing", $("thanks").hidden && $("breathing").hidden);
    return;
  }
  show("nothing", false); show("thanks", false); show("breathing", false);
  if (!fresh && !$("checkin").hidden) return;
  app.rating = null;
  app.labels = new Set();
  $("checkin-message").textContent = c.message;
  $("checkin-why").textContent = c.why;
  $("checkin-question").textContent = c.question;
  $("checkin-error").textContent = "";
  const ratings = $("ratings");
  ratings.replaceChildren();
  for (const r of c.ratings) {
    const b = el("button", { type: "button", "aria-pressed": "false", "data-rating": String(r.value),
                             "aria-label": `${r.value}: ${r.caption}` }, String(r.value));
    b.addEventListener("click", () => {
      app.rating = app.rating === r.value ? null : r.value;
      for (const x of ratings.children) x.setAttribute("aria-pressed", String(Number(x.dataset.rating) === app.rating));
      updateSend();
    });
    ratings.append(b);
  }
  $("rating-low").textContent = c.ratings.length ? c.ratings[0].caption : "";
  $("rating-high").textContent = c.ratings.length ? c.ratings[c.ratings.length - 1].caption : "";
  const labels = $("labels");
  labels.replaceChildren();
  for (const l of c.labels) {
    const b = el("button", { type: "button", "aria-pressed": "false", "data-label": l.value }, l.text);
    b.addEventListener("click", () => {
      if (app.labels.has(l.value)) app.labels.delete(l.value); else app.labels.add(l.value);
      b.setAttribute("aria-pressed", String(app.labels.has(l.value)));
      updateSend();
    });
    labels.append(b);
  }
  updateSend();
  show("checkin", true);
  if (location.hash.startsWith("#/checkin/")) $("checkin").scrollIntoView({ block: "start" });
}

function updateSend() {
  $("send").disabled = app.rating === null && app.labels.size === 0;
}

$("send").addEventListener("click", async () => {
  const c = app.checkin;
  if (!c) return;
  $("send").disabled = true;
  $("checkin-error").textContent = "";
  try {
    const res = await api(wpath("answer"), { prompt_id: c.id, rating: app.rating, labels: [...app.labels] });
    app.answered.add(c.id);
    app.checkin = null;
    show("checkin", false); show("nothing", false);
    $("thanks-text").textContent = "Thank you. Your answer is noted.";
    show("thanks", true);
    show("offer-breathing", res.breathing);
    if (location.hash) history.replaceState(null, "", "/");
    setTimeout(loadHistory, 1500);
  } catch (e) {
    $("checkin-error").textContent = e.message;
    if (e.status === 409) setTimeout(() => renderCheckin(null), 3000);
    updateSend();
  }
});

// ------------------------------------------------------------------ breathing (1 minute)
function stopBreathing() {
  clearInterval(app.breathTimer);
  app.breathTimer = null;
  show("breathing", false);
  show("nothing", !app.checkin);
}

$("breathe-skip").addEventListener("click", () => { show("thanks", false); show("nothing", !app.checkin); });
$("breathe-stop").addEventListener("click", stopBreathing);
$("breathe-start").addEventListener("click", () => {
  show("thanks", false); show("breathing", true);
  const circle = $("breath-circle");
  const total = 60, inhale = 4, cycle = 10;  // 6 slow breaths: in for 4 s, out for 6 s
  let elapsed = 0;
  const step = () => {
    if (elapsed >= total) {
      stopBreathing();
      show("thanks", true); show("offer-breathing", false);
      return;
    }
    const phase = elapsed % cycle;
    if (phase === 0) { circle.className = "breath-circle in"; $("breath-text").textContent = "Breathe in…"; }
    if (phase === inhale) { circle.className = "breath-circle out"; $("breath-text").textContent = "…and slowly out"; }
    $("breath-left").textContent = `${total - elapsed} seconds`;
    elapsed += 1;
  };
  step();
  app.breathTimer = setInterval(step, 1000);
});

// ------------------------------------------------------------------ pause and quiet hours
function renderSettings(s) {
  const paused = s.paused_until && s.paused_until * 1000 > Date.now();
  $("pause-state").textContent = paused
    ? `Check-ins are paused until ${fmtTime(s.paused_until)}.`
    : "Check-ins are on.";
  show("resume", paused);
  if (s.quiet_hours) {
    $("quiet-start").value = s.quiet_hours[0];
    $("quiet-end").value = s.quiet_hours[1];
  } else {
    $("quiet-start").value = ""; $("quiet-end").value = "";
  }
  $("quiet-off").hidden = !s.quiet_hours;
}

async function setting(path, body, done) {
  $("settings-msg").textContent = "";
  try {
    const res = await api(wpath(path), body);
    renderSettings(res.settings);
    $("settings-msg").textContent = done;
  } catch (e) {
    $("settings-msg").textContent = e.message;
  }
}

$("pause-hour").addEventListener("click", () => setting("control", { action: "pause", duration_s: 3600 },
  "Paused for an hour. Take care."));
$("pause-tomorrow").addEventListener("click", () => {
  const t = new Date();
  t.setDate(t.getDate() + 1);
  t.setHours(8, 0, 0, 0);
  setting("control", { action: "pause", duration_s: Math.round((t - Date.now()) / 1000) },
    "Paused until tomorrow morning.");
});
$("resume").addEventListener("click", () => setting("control", { action: "resume" }, "Check-ins are on again."));
$("quiet-save").addEventListener("click", () => {
  const start = $("quiet-start").value, end = $("quiet-end").value;
  if (!start || !end || start === end) { $("settings-msg").textContent = "Please pick two different times."; return; }
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  setting("quiet-hours", { start, end, timezone: tz }, `Quiet from ${start} to ${end}.`);
});
$("quiet-off").addEventListener("click", () => setting("quiet-hours", { off: true }, "No quiet hours."));

// ------------------------------------------------------------------ history
for (const b of document.querySelectorAll("[data-days]")) {
  b.addEventListener("click", () => {
    app.days = Number(b.dataset.days);
    for (const x of document.querySelectorAll("[data-days]")) x.setAttribute("aria-pressed", String(x === b));
    loadHistory();
  });
}

async function loadHistory() {
  if (!app.wearer) return;
  try {
    const h = await api(`${wpath("history")}?days=${app.days}`);
    drawChart(h);
    listCheckins(h);
  } catch (e) {
    $("history-list").replaceChildren(el("li", { class: "soft" }, "Your history could not be loaded right now."));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function drawChart(h) {
  const W = 340, H = 150, L = 6, R = 6, T = 10, B = 24;
  const chart = $("chart");
  chart.replaceChildren();
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, "aria-hidden": "true" });
  const from = Math.min(h.start || h.from, ...h.checkins.map((c) => c.t));  // a new wearer: just their data
  const span = Math.max(600, h.to - from);
  const x = (t) => L + ((t - from) / span) * (W - L - R);
  const top = Math.max(3, (h.threshold || 2) * 1.5, ...h.scores.map((p) => p[1]));
  const y = (v) => T + (1 - Math.max(0, Math.min(v, top)) / top) * (H - T - B);
  s.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#fffdf9" }));
  // day boundaries
  const first = new Date(from * 1000); first.setHours(24, 0, 0, 0);
  for (let d = first.getTime() / 1000; span >= 86400 && d < h.to; d += 86400) {
    s.append(svg("line", { x1: x(d), x2: x(d), y1: T, y2: H - B, stroke: "#e6dfd2", "stroke-width": 1 }));
    const label = svg("text", { x: x(d) + 3, y: H - 8, "font-size": 11, fill: "#5b6770" });
    label.textContent = fmtDay(d);
    s.append(label);
  }
  if (span < 86400) {  // less than a day: the clock times at both ends
    const fmt = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    for (const [t, anchor] of [[from, "start"], [from + span, "end"]]) {
      const label = svg("text", { x: x(t), y: H - 8, "font-size": 11, fill: "#5b6770", "text-anchor": anchor });
      label.textContent = fmt(t);
      s.append(label);
    }
  }
  s.append(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: "#d9d2c5", "stroke-width": 1 }));
  if (h.threshold) {
    s.append(svg("line", { x1: L, x2: W - R, y1: y(h.threshold), y2: y(h.threshold), stroke: "#c0793b",
                           "stroke-width": 1.5, "stroke-dasharray": "5 4" }));
  }
  if (h.scores.length) {
    const pts = h.scores.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    s.append(svg("polyline", { points: pts, fill: "none", stroke: "#2f6f73", "stroke-width": 2,
                               "stroke-linejoin": "round", "stroke-linecap": "round" }));
  }
  for (const c of h.checkins) {
    s.append(svg("circle", { cx: x(c.t), cy: T + 4, r: 5, fill: c.answer ? "#c0793b" : "#fffdf9",
                             stroke: "#c0793b", "stroke-width": 2 }));
  }
  if (!h.scores.length) {
    const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "font-size": 13, fill: "#5b6770" });
    t.textContent = "No readings in these days yet.";
    s.append(t);
  }
  chart.append(s);
}

function listCheckins(h) {
  const list = $("history-list");
  list.replaceChildren();
  if (!h.checkins.length) {
    list.append(el("li", { class: "soft" }, "No check-ins in these days."));
    return;
  }
  for (const c of [...h.checkins].reverse()) {
    const li = el("li");
    li.append(el("div", { class: "when" }, fmtTime(c.t)));
    li.append(el("div", { class: "soft" }, c.why));
    let said = "Not answered.";
    if (c.answer) {
      const parts = [];
      if (c.answer.rating !== null && c.answer.rating !== undefined) parts.push(`tension ${c.answer.rating} of 5`);
      if (c.answer.labels.length) parts.push(c.answer.labels.join(", "));
      said = `You answered: ${parts.join("; ")}.`;
    } else if (app.checkin && app.checkin.id === c.id) {
      said = "Open now.";
    }
    li.append(el("div", {}, said));
    list.append(li);
  }
}

start();
