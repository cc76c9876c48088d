// anxmon check-in app: plain JavaScript, no build step. Talks only to its own server:
// JSON endpoints under /api and one Server-Sent Events stream per page.
"use strict";

const $ = (id) => document.getElementById(id);
const app = { wearer: null, csrf: null, checkin: null, rating: null, labels: new Set(), events: null,
              days: 3, answered: new Set(), breathTimer: null, status: null, settings: null,
              sending: null, pauseTimer: null, goneTimer: null, tzSaving: false, tzRefused: null,
              justSignedIn: false, history: null, askedAt: { control: 0, answer: 0 } };
// a refusal names no request: one within this long of this page's own is taken as its answer
const OWN_REQUEST_MS = 5 * 60 * 1000;

const OFFLINE = "You seem to be offline. Please try again when you have a connection.";
const PAGE_OFFLINE = { level: "offline",
  text: "You seem to be offline, so this page can't show check-ins right now. It will catch up once you're connected." };

// ------------------------------------------------------------------ helpers
async function api(path, body) {
  const init = body === undefined ? { credentials: "same-origin" } : {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": app.csrf || "" },
    body: JSON.stringify(body),
  };
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {  // the request never got an answer: no raw "Failed to fetch"
    const err = new Error(OFFLINE);
    err.status = 0;
    throw err;
  }
  let data = {};
  try { data = await res.json(); } catch (e) { data = {}; }
  if (!res.ok) {
    const err = new Error(data.error || "Something went wrong. Please try again.");
    err.status = res.status;
    if (res.status === 401 && path.startsWith("/api/w/") && app.wearer) signedOut();  // the sign-in ran out
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
const fmtTime = (t) => new Date(t * 1000).toLocaleString([], { weekday: "short", hour: "numeric", minute: "2-digit" });
const fmtClock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
// "HH:MM" of a time picker in the wearer's own clock style (11:30 PM or 23:30)
const fmtHM = (hm) => { const [h, m] = hm.split(":").map(Number); const d = new Date(); d.setHours(h, m, 0, 0);
                        return fmtClock(d.getTime() / 1000); };
function browserZone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || null; } catch (e) { return null; }
}
// "Asia/Tokyo" -> "Tokyo time"; "UTC" -> "UTC"; "Etc/GMT+5" -> "UTC-5" (POSIX signs: it is 5 h
// behind UTC, so its own name would say the opposite)
function zoneName(tz) {
  if (/^Etc\//.test(tz)) {
    try {
      const part = new Intl.DateTimeFormat("en", { timeZone: tz, timeZoneName: "shortOffset" })
        .formatToParts(new Date()).find((p) => p.type === "timeZoneName");
      if (part) return part.value.replace("GMT", "UTC").replace(/^UTC\+0$/, "UTC");
    } catch (e) { /* an engine without shortOffset: the plain name below */ }
  }
  return tz.includes("/") ? `${tz.split("/").pop().replace(/_/g, " ")} time` : tz;
}
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;  // 1 second, 2 seconds
const fmtDay = (t) => new Date(t * 1000).toLocaleDateString([], { weekday: "short", day: "numeric" });

// The rating and words chosen but not sent yet, kept in this tab (sessionStorage, never sent
// anywhere) under the check-in's id, so a reload before Send does not lose them. Removed when
// the answer is sent, when the check-in closes or another one comes, and on sign-out.
const DRAFT = "anxmon-draft:";
function saveDraft(c) {
  try {
    if (app.rating === null && app.labels.size === 0) sessionStorage.removeItem(DRAFT + c.id);
    else sessionStorage.setItem(DRAFT + c.id, JSON.stringify({ wearer: app.wearer, rating: app.rating,
                                                               labels: [...app.labels] }));
  } catch (e) { /* storage off (private mode): the choice lives until a reload, as before */ }
}
function loadDraft(c) {
  try {
    const d = JSON.parse(sessionStorage.getItem(DRAFT + c.id) || "null");
    return d && d.wearer === app.wearer ? d : null;
  } catch (e) { return null; }
}
function forgetDrafts(keep) {  // every draft but the one of check-in ``keep``
  try {
    for (const k of Object.keys(sessionStorage)) {
      if (k.startsWith(DRAFT) && k !== DRAFT + keep) sessionStorage.removeItem(k);
    }
  } catch (e) { /* nothing kept */ }
}

// ------------------------------------------------------------------ start
async function start() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch(() => {});
  }
  try {
    const cfg = await api("/api/config");
    if (cfg.crisis_text) $("crisis").textContent = cfg.crisis_text;
    if (cfg.history_days) offerDays(cfg.history_days);
  } catch (e) { /* index.html's own crisis text stays */ }
  try {
    const s = await api("/api/session");
    signedIn(s);
  } catch (e) {
    if (e.status === 401) forgetDrafts(null);  // signed out (not just offline): nothing is kept
    showLogin();
  }
}

function showLogin() {
  show("login", true); show("home", false); show("signout", false); show("who", false);
  $("login-wearer").focus();
}

function signedOut() {
  if (app.events) app.events.close();
  app.events = null;
  app.wearer = app.csrf = app.checkin = app.history = null;
  forgetDrafts(null);
  $("page-msg").textContent = "";
  showLogin();
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
  $("page-msg").textContent = "";
  try {
    await api("/api/logout", {});
  } catch (e) {
    if (e.status !== 401) {  // not signed out (offline): a shared phone must not stay signed in unnoticed
      $("page-msg").textContent = e.status === 0
        ? "We couldn't sign you out because you seem to be offline. Please try again when you have a connection."
        : "We couldn't sign you out just now. Please try again.";
      return;
    }
  }
  signedOut();
});

function signedIn(s) {
  app.wearer = s.wearer;
  app.csrf = s.csrf;
  show("login", false); show("home", true); show("signout", true);
  $("who").textContent = s.wearer; show("who", true);
  app.justSignedIn = true;
  window.scrollTo(0, 0);
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
  es.addEventListener("settings", (ev) => {
    // changed elsewhere (a watch, another page): this page's last "Paused for an hour." is old news
    const before = settingsShown();
    renderSettings(JSON.parse(ev.data));
    if (settingsShown() !== before) $("settings-msg").textContent = "";
  });
  es.addEventListener("closed", (ev) => {
    const d = JSON.parse(ev.data);
    const s = app.sending;
    if (s && d.reason === "answered" && d.prompt_id === s.id) {  // our answer arrived (its response may be lost)
      showThanks(s.breathing);
      return;
    }
    if (app.checkin && (!d.prompt_id || d.prompt_id === app.checkin.id) && !app.answered.has(app.checkin.id)) {
      const shown = !$("checkin").hidden;
      const focused = $("checkin").contains(document.activeElement);  // a rating chosen by keyboard
      renderCheckin(null);
      if (shown && CLOSED[d.reason]) showGone(CLOSED[d.reason]);
      if (focused && !$("gone").hidden) $("gone-ok").focus();  // not the page's top: the note is where it was
      loadHistory();
    }
  });
  es.addEventListener("notice", (ev) => {
    const d = JSON.parse(ev.data);
    // a refusal of what a watch or Home Assistant sent is not this page's news: the wearer did nothing here
    if (Date.now() - app.askedAt[d.reason === "answer" ? "answer" : "control"] > OWN_REQUEST_MS) return;
    if (d.reason !== "answer") {
      $("settings-msg").textContent = "The monitor could not apply that change. Please try again.";
      return;
    }
    const refused = "Sorry, this check-in had already closed, so your answer wasn't saved. There's nothing you need to do.";
    if (!$("thanks").hidden) {  // the answer just sent was refused: do not say it was noted
      $("thanks-text").textContent = refused;
      show("offer-breathing", false);
      show("thanks-ok", true);
    } else {
      $("checkin-error").textContent = refused;
    }
  });
  es.onerror = async () => {
    // the browser retries by itself; meanwhile say plainly that this page is not up to date
    renderStatus(PAGE_OFFLINE);
    try { await api("/api/session"); } catch (e) { if (e.status === 401) signedOut(); }
  };
}

// why a check-in on the screen went away (its "closed" event's reason)
const CLOSED = { expired: "This check-in has closed. No need to answer it. Thank you.",
                 answered: "This check-in was answered on another device. Thank you." };

function renderState(st) {
  // a check-in on the screen that closed while this page was cut off (its "closed" never came):
  // the state names the last one that closed and why
  const open = app.checkin && !$("checkin").hidden && !app.answered.has(app.checkin.id) ? app.checkin.id : null;
  renderStatus(st.status);
  renderSettings(st.settings);
  renderCheckin(st.checkin);
  if (open && !st.checkin && !app.sending) {
    showGone(CLOSED[st.closed && st.closed.prompt_id === open ? st.closed.reason : "expired"]);
    loadHistory();
  }
  app.justSignedIn = false;  // a later check-in is announced, not focused
  const m = location.hash.match(/^#\/checkin\/(.+)$/);
  if (m && !(st.checkin && st.checkin.id === decodeURIComponent(m[1]))) {  // a link to a closed check-in
    if (!app.answered.has(decodeURIComponent(m[1]))) showGone("That check-in has already closed. There's nothing to answer.");
    history.replaceState(null, "", "/");
  }
}

// offline: the monitor can't be reached; silent: no news from the wearable. Never "all is calm" then.
const cutOff = () => app.status && (app.status.level === "offline" || app.status.level === "silent");

function renderStatus(status) {
  app.status = status;
  $("status").textContent = status.text;
  $("status").dataset.level = status.level;
  show("status", !app.checkin || cutOff());
  refreshNothing();
}

// "Nothing to answer right now" only when it is true and nothing else is on the screen
function refreshNothing() {
  show("nothing", !app.checkin && $("thanks").hidden && $("breathing").hidden && $("gone").hidden && !cutOff());
}

function showGone(text) {
  clearTimeout(app.goneTimer);
  $("gone-text").textContent = text;
  show("gone", true);
  refreshNothing();
  app.goneTimer = setTimeout(hideGone, 12000);
}
function hideGone() { clearTimeout(app.goneTimer); show("gone", false); refreshNothing(); }
$("gone-ok").addEventListener("click", hideGone);

function showThanks(breathing) {
  const c = app.sending || app.checkin;
  // thanked already: the answer's "closed" came before its response (a slow network), and the
  // wearer may be breathing by now; a second thank-you would cover it and take the focus
  if (c && app.answered.has(c.id)) return;
  if (c) app.answered.add(c.id);
  forgetDrafts(null);
  app.checkin = null;
  show("checkin", false); show("gone", false);
  $("thanks-text").textContent = "Thank you. Your answer is noted.";
  document.title = "anxmon check-in";
  show("thanks-ok", false);
  show("thanks", true);
  show("offer-breathing", breathing);
  show("status", true);
  refreshNothing();
  $("thanks-text").focus();
}
$("thanks-ok").addEventListener("click", () => { show("thanks", false); refreshNothing(); });

// ------------------------------------------------------------------ the check-in
function renderCheckin(c) {
  if (c && app.answered.has(c.id)) c = null;
  const fresh = c && (!app.checkin || app.checkin.id !== c.id);
  const changed = (app.checkin && app.checkin.id) !== (c && c.id);
  app.checkin = c;
  if (changed && app.history) listCheckins(app.history);  // "Open now." follows the open check-in
  forgetDrafts(c ? c.id : null);  // the check-in closed, or another one came
  show("status", !c || cutOff());  // while a check-in is open, it speaks for itself
  if (!c) {
    show("checkin", false);
    document.title = "anxmon check-in";
    refreshNothing();
    return;
  }
  if (app.breathTimer) stopBreathing();
  show("nothing", false); show("thanks", false); show("breathing", false); show("gone", false);
  if (!fresh && !$("checkin").hidden) return;
  app.rating = null;
  app.labels = new Set();
  $("checkin-message").textContent = c.message;
  $("checkin-sent").textContent = c.t ? `Sent at ${fmtClock(c.t)}` : "";
  $("checkin-why").textContent = c.why;
  $("checkin-question").textContent = c.question;
  $("checkin-error").textContent = "";
  const ratings = $("ratings");
  ratings.replaceChildren();
  for (const r of c.ratings) {
    const b = el("button", { type: "button", "aria-pressed": "false", "data-rating": String(r.value),
                             "aria-label": r.caption ? `${r.value}, ${r.caption}` : String(r.value) }, String(r.value));
    b.addEventListener("click", () => {
      app.rating = app.rating === r.value ? null : r.value;
      chosen(c);
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
      chosen(c);
    });
    labels.append(b);
  }
  const draft = loadDraft(c);  // chosen before a reload
  if (draft) {
    if (c.ratings.some((r) => r.value === draft.rating)) app.rating = draft.rating;
    app.labels = new Set((draft.labels || []).filter((v) => c.labels.some((l) => l.value === v)));
  }
  chosen(c);
  show("checkin", true);
  document.title = "• Check-in: anxmon";
  $("announce").textContent = `A new check-in: ${c.message}`;
  if (location.hash.startsWith("#/checkin/")) {
    $("checkin").scrollIntoView({ block: "start" });
    $("checkin-message").focus();
  } else if (app.justSignedIn) {
    $("checkin-message").focus({ preventScroll: true });  // the status line above it stays in view
  }
  app.justSignedIn = false;
}

// the buttons show the choice (app.rating, app.labels), which is kept until Send
function chosen(c) {
  for (const x of $("ratings").children) x.setAttribute("aria-pressed", String(Number(x.dataset.rating) === app.rating));
  for (const x of $("labels").children) x.setAttribute("aria-pressed", String(app.labels.has(x.dataset.label)));
  saveDraft(c);
  updateSend();
}

function updateSend() {
  $("send").disabled = app.sending !== null || (app.rating === null && app.labels.size === 0);
}

$("send").addEventListener("click", async () => {
  const c = app.checkin;
  if (!c || app.sending) return;
  const labels = [...app.labels];
  app.sending = { id: c.id, breathing: labels.includes("anxious") || labels.includes("stressed") };
  updateSend();
  $("send").textContent = "Sending…";
  $("checkin-error").textContent = "";
  app.askedAt.answer = Date.now();
  try {
    const res = await api(wpath("answer"), { prompt_id: c.id, rating: app.rating, labels });
    showThanks(res.breathing);
    if (location.hash) history.replaceState(null, "", "/");
    setTimeout(loadHistory, 1500);
  } catch (e) {
    if (!app.answered.has(c.id)) {  // (when the answer's own "closed" came, it counted: thanks is shown)
      $("checkin-error").textContent = e.message;
      if (e.status === 409) setTimeout(() => renderCheckin(null), 4000);
    }
  } finally {
    app.sending = null;
    $("send").textContent = "Send";
    updateSend();
  }
});

// ------------------------------------------------------------------ breathing (1 minute)
function stopBreathing() {
  clearInterval(app.breathTimer);
  app.breathTimer = null;
  show("breathing", false);
  refreshNothing();
}

$("breathe-skip").addEventListener("click", () => { show("thanks", false); refreshNothing(); });
$("breathe-stop").addEventListener("click", stopBreathing);
$("breathe-start").addEventListener("click", () => {
  show("thanks", false); show("breathing", true);
  $("breathe-stop").focus();  // the button just pressed is gone: the keyboard stays in the card
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
    $("breath-left").textContent = plural(total - elapsed, "second");
    elapsed += 1;
  };
  step();
  app.breathTimer = setInterval(step, 1000);
});

// ------------------------------------------------------------------ pause and quiet hours
// paused until a time (it ends on screen), or until resumed (paused_until null): from this
// page, another one, or another device (a watch, Home Assistant)
const isPaused = (s) => s.paused_until ? s.paused_until * 1000 > Date.now() : Boolean(s.paused);
// to the nearest minute: a pause until 08:00 ends a moment before or after it (whole seconds
// from the server's clock), and is not "until 7:59"
const pauseEnd = (s) => Math.round(s.paused_until / 60) * 60;
const MAX_PAUSE_S = 7 * 86400;  // the longest pause the app sends (server.py: a minute to a week)

function renderSettings(s) {
  app.settings = s;
  const focused = document.activeElement;
  const paused = isPaused(s);
  const end = paused && s.paused_until ? pauseEnd(s) : null;  // null: on, or paused until resumed
  const morning = nextMorning(Date.now()).getTime() / 1000;
  $("pause-state").textContent = !paused ? "Check-ins are on."
    : end ? `Check-ins are paused until ${fmtTime(end)}.`
    : "Check-ins are paused until you resume them.";
  // a pause replaces a pause: while paused, only what makes it longer (one more hour after its
  // end, within the week a pause may last; the next morning when that is later) and Resume
  $("pause-hour").textContent = paused ? "Pause 1 more hour" : "Pause 1 hour";
  show("pause-hour", !paused || (end !== null && end + 3600 <= Date.now() / 1000 + MAX_PAUSE_S));
  show("pause-tomorrow", !paused || (end !== null && end < morning));
  show("resume", paused);
  show("nothing-more", !paused);  // no "You'll get a gentle question" while paused
  clearTimeout(app.pauseTimer);  // redrawn when the pause ends, or when "until morning" means the next one
  if (end) app.pauseTimer = setTimeout(() => renderSettings(app.settings),
                                       (Math.min(s.paused_until, morning) - Date.now() / 1000) * 1000 + 500);
  const editing = [$("quiet-start"), $("quiet-end")].includes(document.activeElement);
  if (editing) {
    // the wearer is choosing a time: leave it (they save it themselves)
  } else if (s.quiet_hours) {
    $("quiet-start").value = s.quiet_hours[0];
    $("quiet-end").value = s.quiet_hours[1];
  } else {
    $("quiet-start").value = ""; $("quiet-end").value = "";
  }
  $("quiet-off").hidden = !s.quiet_hours;
  // a button that hides itself (Resume, No quiet hours) hands the keyboard focus to its neighbour
  if (focused === $("resume") && !paused) $("pause-hour").focus();
  if ([$("pause-hour"), $("pause-tomorrow")].includes(focused) && focused.hidden) $("resume").focus();
  if (focused === $("quiet-off") && !s.quiet_hours) $("quiet-save").focus();
  $("quiet-what").textContent = s.quiet_hours ? "No check-ins between these times."
                                              : "No quiet hours set. Check-ins can come at any time of day.";
  // the time zone the monitor applies: shown, and the phone's own from the first sign-in
  const here = browserZone();
  const zone = s.timezone || here;
  $("quiet-tz").textContent = zone ? `Times are in ${zoneName(zone)}.` : "";
  const moved = Boolean(s.timezone && here && s.timezone !== here);
  show("tz-change", moved);
  if (moved) {
    $("tz-change-text").textContent =
      `Your phone is on ${zoneName(here)} now, but quiet hours still follow ${zoneName(s.timezone)}.`;
    $("tz-use").textContent = `Use ${zoneName(here)}`;
  }
  if (!s.timezone && here && !app.tzSaving && app.tzRefused !== here) saveZone(s, here);
}

// what the card says of the settings (a change of it is a change the wearer can see)
const settingsShown = () => ["pause-state", "quiet-what", "quiet-tz", "quiet-start", "quiet-end"]
  .map((id) => $(id).textContent || $(id).value).join("|");

// the same quiet hours (or none) in the zone ``tz``
const zoneBody = (s, tz) => s.quiet_hours ? { start: s.quiet_hours[0], end: s.quiet_hours[1], timezone: tz }
                                          : { off: true, timezone: tz };

async function saveZone(s, tz) {
  app.tzSaving = true;
  try {
    renderSettings((await api(wpath("quiet-hours"), zoneBody(s, tz))).settings);
  } catch (e) {
    if (e.status === 400) {  // a zone this server does not know: do not ask again on every update
      app.tzRefused = tz;
      $("quiet-tz").textContent = "anxmon doesn't know your phone's time zone, so these times may not be your local time.";
    } else {
      $("quiet-tz").textContent = `These times will follow ${zoneName(tz)} once anxmon can reach the monitor.`;
    }
  } finally {
    app.tzSaving = false;
  }
}

$("tz-use").addEventListener("click", () => {
  const tz = browserZone();
  if (tz && app.settings) setting("quiet-hours", zoneBody(app.settings, tz), `Quiet hours now follow ${zoneName(tz)}.`);
});

async function setting(path, body, done) {
  $("settings-msg").textContent = "";
  app.askedAt.control = Date.now();
  try {
    const res = await api(wpath(path), body);
    renderSettings(res.settings);
    $("settings-msg").textContent = done;
  } catch (e) {
    $("settings-msg").textContent = e.message;
  }
}

$("pause-hour").addEventListener("click", () => {
  const s = app.settings;
  if (!s || !isPaused(s) || !s.paused_until) {
    setting("control", { action: "pause", duration_s: 3600 }, "Paused for an hour. Take care.");
    return;
  }
  const until = pauseEnd(s) + 3600;  // one more hour after the shown end (e.g. 9:30 -> 10:30)
  setting("control", { action: "pause", duration_s: Math.round(until - Date.now() / 1000) },
    `Paused until ${fmtTime(until)}. Take care.`);
});
// the next 08:00: this morning's when it is not yet 8 (a pause at 02:45 means "until this morning")
function nextMorning(now) {
  const t = new Date(now);
  if (t.getHours() >= 8) t.setDate(t.getDate() + 1);
  t.setHours(8, 0, 0, 0);
  return t;
}
$("pause-tomorrow").addEventListener("click", () => {
  const t = nextMorning(Date.now());
  setting("control", { action: "pause", duration_s: Math.max(60, Math.round((t - Date.now()) / 1000)) },
    `Paused until ${fmtClock(t.getTime() / 1000)}. Rest well.`);
});
$("resume").addEventListener("click", () => setting("control", { action: "resume" }, "Check-ins are on again."));
$("quiet-save").addEventListener("click", () => {
  const start = $("quiet-start").value, end = $("quiet-end").value;
  if (!start || !end || start === end) { $("settings-msg").textContent = "Please pick two different times."; return; }
  const tz = browserZone() || (app.settings && app.settings.timezone) || undefined;
  setting("quiet-hours", { start, end, timezone: tz }, `Quiet from ${fmtHM(start)} to ${fmtHM(end)}.`);
});
$("quiet-off").addEventListener("click", () => setting("quiet-hours", { off: true }, "No quiet hours."));

// ------------------------------------------------------------------ history
// only the day buttons within the app's history_days (the server shows no more than that)
function offerDays(max) {
  const buttons = [...document.querySelectorAll("[data-days]")];
  for (const b of buttons) b.hidden = Number(b.dataset.days) > max;
  if (app.days > max) app.days = Math.max(...buttons.map((b) => Number(b.dataset.days)).filter((d) => d <= max));
  for (const b of buttons) b.setAttribute("aria-pressed", String(Number(b.dataset.days) === app.days));
}

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
    app.history = h;
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
  const css = getComputedStyle(document.documentElement);
  const v = (name, fallback) => (css.getPropertyValue(name) || "").trim() || fallback;
  const col = { card: v("--card", "#fffdf9"), soft: v("--soft", "#5b6770"), grid: v("--divider", "#e6dfd2"),
                accent: v("--accent", "#2f6f73"), warm: v("--warm", "#c0793b") };
  const W = 340, H = 150, L = 6, R = 6, T = 10, B = 26;
  const chart = $("chart");
  chart.replaceChildren();
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, "aria-hidden": "true" });
  const from = Math.min(h.start || h.from, ...h.checkins.map((c) => c.t));  // a new wearer: just their data
  const span = Math.max(600, h.to - from);
  const x = (t) => L + ((t - from) / span) * (W - L - R);
  const top = Math.max(3, (h.threshold || 2) * 1.5, ...h.scores.map((p) => p[1]));
  const y = (v) => T + (1 - Math.max(0, Math.min(v, top)) / top) * (H - T - B);
  s.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: col.card }));
  // day boundaries
  const first = new Date(from * 1000); first.setHours(24, 0, 0, 0);
  for (let d = first.getTime() / 1000; span >= 86400 && d < h.to; d += 86400) {
    s.append(svg("line", { x1: x(d), x2: x(d), y1: T, y2: H - B, stroke: col.grid, "stroke-width": 1 }));
    const label = svg("text", { x: x(d) + 3, y: H - 8, "font-size": 13, fill: col.soft });
    label.textContent = fmtDay(d);
    s.append(label);
  }
  if (span < 86400) {  // less than a day: the clock times at both ends
    const fmt = fmtClock;
    for (const [t, anchor] of [[from, "start"], [from + span, "end"]]) {
      const label = svg("text", { x: x(t), y: H - 8, "font-size": 13, fill: col.soft, "text-anchor": anchor });
      label.textContent = fmt(t);
      s.append(label);
    }
  }
  s.append(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: col.grid, "stroke-width": 1 }));
  if (h.threshold) {
    s.append(svg("line", { x1: L, x2: W - R, y1: y(h.threshold), y2: y(h.threshold), stroke: col.warm,
                           "stroke-width": 1.5, "stroke-dasharray": "5 4" }));
  }
  // one line per stretch of readings: a gap of more than 3 bins (the band off at night) is left
  // open, not bridged by a made-up straight stretch; a lone reading is a dot
  const step = Math.min(...h.scores.slice(1).map((p, i) => p[0] - h.scores[i][0]));
  const runs = [];
  h.scores.forEach((p, i) => {
    if (i === 0 || p[0] - h.scores[i - 1][0] > 3 * step) runs.push([]);
    runs[runs.length - 1].push(`${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
  });
  for (const run of runs) {
    s.append(svg("polyline", { points: (run.length === 1 ? [run[0], run[0]] : run).join(" "), fill: "none",
                               stroke: col.accent, "stroke-width": 2, "stroke-linejoin": "round",
                               "stroke-linecap": "round" }));
  }
  for (const c of h.checkins) {
    s.append(svg("circle", { cx: x(c.t), cy: T + 4, r: 5, fill: c.answer ? col.warm : col.card,
                             stroke: col.warm, "stroke-width": 2 }));
  }
  if (!h.scores.length) {
    const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "font-size": 13, fill: col.soft });
    t.textContent = "No readings in these days yet.";
    s.append(t);
  }
  chart.append(s);
  const answered = h.checkins.filter((c) => c.answer).length;
  const calm = h.threshold && h.scores.length
    ? h.scores.filter((p) => p[1] < 0.5 * h.threshold).length / h.scores.length : null;
  const body = !h.scores.length ? "no readings yet" : calm === null ? null
    : calm >= 0.5 ? "your body was mostly near your calm level" : "your body was often above your calm level";
  const n = h.checkins.length;
  const checkins = n === 0 ? "no check-ins" : `${plural(n, "check-in")}, ${answered} answered`;
  // sentences and commas, so a screen reader pauses between the parts (never "3 days 2 check-ins")
  $("chart").setAttribute("aria-label", `Over the last ${h.days === 1 ? "day" : `${h.days} days`}: `
    + [body, checkins].filter(Boolean).join("; ") + ".");
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
    let said = c.said || (c.answer ? "You answered." : "No answer, and that's fine.");
    if (!c.answer && app.checkin && app.checkin.id === c.id) said = "Open now.";
    li.append(el("div", {}, said));
    list.append(li);
  }
}

start();
