"""The web check-in app end to end: real broker (nats-server), the real service with its
recording, the app, simulated wearers, and headless Chromium (Debian's ``chromium``, driven by
Playwright with ``executable_path``; never a downloaded browser).

Two simulated wearers of the demo scenario's "anxious" kind, ``alice`` and ``bob``
(``firmware_bridge.simulator``, seed 7: calm for 10 min, then an anxiety episode from minute 10),
are published as fast as the broker takes them, 14 simulated minutes ending about now. Which
check-ins the service sends comes from the service itself; the tests only follow them.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import math
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from monitor.app import start_app
from monitor.app.accounts import Accounts, hash_password
from monitor.app.server import AppOptions
from monitor.app.words import LABELS, body_status, checkin_view, why_now
from monitor.broker import start_broker
from monitor.config import Config
from monitor.core.policy import CONTROL_ACTIONS, PolicyConfig
from monitor.recorder import RECORDING_FILE
from monitor.service import MonitorService, ServiceOptions
from monitor.wire import decode_checkin, encode_checkin, encode_control, wearer_topic
from tests.conftest import need_broker
from tests.test_service import Probe, subscribed, wait_until

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
PASSWORDS = {"alice": "alice-long-password", "bob": "bob-long-password"}
SIM_SECONDS = 840  # 14 min: the first anxiety episode starts at minute 10
JARGON = re.compile(r"\b[A-Za-z]+_[A-Za-z0-9_]+\b")  # HRV_RMSSD, EDA_Tonic_Mean ...


def _need(what: str, ok: bool, hint: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing in CI ({hint})")
        pytest.skip(f"{what} is not installed ({hint})")


# ------------------------------------------------------------------------------ a loopback webhook


class Hook:
    """A tiny HTTP server on loopback that records what apprise's ``json://`` posts to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "json": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (a push endpoint that is down)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ HTTP client


class Client:
    """A browser-like HTTP client of the app (cookies kept, CSRF header sent on POSTs)."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = ""
        self.set_cookie = ""

    def request(self, path: str, body: dict | None = None, headers: dict | None = None,
                content_type: str = "application/json") -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        h = {"X-CSRF-Token": self.csrf, **(headers or {})}
        if data is not None:
            h["Content-Type"] = content_type
        req = urllib.request.Request(self.base + path, data=data, headers=h, method="POST" if data is not None else "GET")
        try:
            with self.opener.open(req, timeout=10) as res:
                self.set_cookie = res.headers.get("Set-Cookie") or self.set_cookie
                return res.status, json.loads(res.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def login(self, wearer: str, password: str) -> int:
        status, body = self.request("/api/login", {"wearer": wearer, "password": password})
        self.csrf = body.get("csrf", "")
        return status


def open_events(app, client: Client, wearer: str):
    """(connection, response) of ``wearer``'s event stream, opened with ``client``'s session."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(app.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", f"/api/w/{wearer}/events", headers={"Cookie": "; ".join(f"{c.name}={c.value}" for c in client.jar)})
    res = conn.getresponse()
    assert res.status == 200
    return conn, res


# ------------------------------------------------------------------------------ the stack


@dataclass
class Stack:
    broker: object
    service: MonitorService
    app: object
    probe: Probe
    hook: Hook
    data_dir: Path
    pages: dict = field(default_factory=dict)
    simulated: bool = False
    sim_thread: threading.Thread | None = None
    sim_stats: object = None

    def simulate(self) -> None:
        """Publish the two anxious wearers (14 min ending about now), in the background."""
        if self.simulated:
            return
        self.simulated = True
        from firmware_bridge.sim_physiology import SimulatedWearer
        from firmware_bridge.sim_scenario import load_scenario
        from firmware_bridge.simulator import Simulation

        scenario = load_scenario("demo")
        anxious = scenario.wearers.index("anxious")
        seeds = np.random.SeedSequence(7).spawn(2)
        t0 = math.floor(time.time()) - SIM_SECONDS - 60
        wearers = [SimulatedWearer(w, scenario.kind_of(anxious), np.random.default_rng(s), t0)
                   for w, s in zip(PASSWORDS, seeds)]

        def run() -> None:
            self.sim_stats = Simulation(wearers, self.broker.url, speed=math.inf).run(SIM_SECONDS)

        self.sim_thread = threading.Thread(target=run, daemon=True)
        self.sim_thread.start()

    def wait_processed(self, timeout_s: float = 60.0) -> None:
        """Wait until the simulation ended and the service processed every batch of it."""
        self.simulate()
        assert wait_until(lambda: self.sim_stats is not None, timeout_s), "the simulation did not finish"
        assert wait_until(lambda: self.service.stats.batches >= self.sim_stats.acked, 30), self.service.stats

    def checkins(self, wearer: str) -> list[dict]:
        return [decode_checkin(p) for p in self.probe.on(wearer_topic(wearer, "checkin"))]

    def wait_checkin(self, wearer: str, timeout_s: float = 60.0) -> dict:
        self.simulate()
        assert wait_until(lambda: self.checkins(wearer), timeout_s), f"no check-in for {wearer}: {self.service.stats}"
        return self.checkins(wearer)[0]

    def recorded(self, table: str, wearer: str) -> list[dict]:
        path = self.data_dir / RECORDING_FILE
        if not path.exists():
            return []
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(f"SELECT * FROM {table} WHERE wearer = ?", (wearer,))]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    need_broker("nats")
    data_dir = tmp_path_factory.mktemp("app") / "data"
    broker = start_broker("nats", data_dir / "broker", users=dict(PASSWORDS))
    hook = Hook()
    # the run must not depend on the hour of the day; a snooze without a duration lasts 20 min
    config = Config(policy=PolicyConfig(quiet_hours=None, snooze_default_s=1200.0))
    service = MonitorService(broker.url, data_dir, config, ServiceOptions(instance="main")).start()
    from monitor.push import PushConfig

    push = PushConfig(wearers={"alice": [f"json://127.0.0.1:{hook.port}/anxmon"],
                               "bob": [f"json://127.0.0.1:{closed_port()}/down"]},
                      attempts=3, backoff_s=0.2, max_backoff_s=0.5)
    app = None
    probe = None
    try:
        assert service.wait_connected(10)
        assert wait_until(lambda: subscribed(service), 10)  # (else the wearers' first data may reach no one)
        # no quiet hours in the app either: it sends its shown quiet hours with the browser's zone
        app = start_app(broker.url, data_dir, accounts=dict(PASSWORDS), push=push,
                        options=AppOptions(port=0, quiet_hours=None))
        probe = Probe(broker, ["anxmon/v1/+/checkin", "anxmon/v1/+/checkin/response", "anxmon/v1/+/control"])
        yield Stack(broker, service, app, probe, hook, data_dir)
    finally:
        if probe is not None:
            probe.close()
        if app is not None:
            app.stop()
        service.stop()
        hook.close()
        broker.stop()


@pytest.fixture(scope="module")
def browser(stack):
    """Headless Chromium with one phone-sized context per wearer, signed in."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright", False, "pip install playwright; the browser is Debian's chromium")
    _need("chromium", Path(CHROMIUM).exists(), "apt-get install chromium")
    profiles = tempfile.mkdtemp(prefix="anxmon-chromium-")
    with sync_playwright() as pw:
        contexts = {}
        try:
            for wearer in PASSWORDS:
                ctx = pw.chromium.launch_persistent_context(
                    str(Path(profiles) / wearer), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                    viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
                contexts[wearer] = ctx
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                # test-only: remember every Server-Sent Event the page receives
                page.add_init_script("""(() => {
                    const Real = window.EventSource; window.__events = [];
                    window.EventSource = function (url) {
                      const es = new Real(url);
                      for (const name of ["state", "checkin", "status", "closed", "notice"])
                        es.addEventListener(name, (ev) => window.__events.push([name, ev.data]));
                      return es;
                    };
                  })();""")
                page.goto(stack.app.url)
                page.fill("#login-wearer", wearer)
                page.fill("#login-password", PASSWORDS[wearer])
                page.click("#login-form button")
                page.wait_for_selector("#home:not([hidden])", timeout=10_000)
                stack.pages[wearer] = page
            yield stack.pages
        finally:
            for ctx in contexts.values():
                ctx.close()
            shutil.rmtree(profiles, ignore_errors=True)


# ------------------------------------------------------------------------------ acceptance


def test_checkin_appears_live_is_answered_in_taps_and_recorded(stack, browser, tmp_path):
    """The anxious wearer's check-in appears on their open page within a few seconds of the
    service sending it; tapping a rating, a label and Send publishes the answer on
    ``anxmon/v1/alice/checkin/response``, the service records it, and the page offers the
    breathing guide. The screen is saved at phone size, with readable text and buttons of at
    least 44 x 44 CSS px."""
    alice = browser["alice"]
    alice.wait_for_selector("#nothing:not([hidden])", timeout=5_000)  # nothing to answer yet
    assert not alice.is_visible("#checkin")
    checkin = stack.wait_checkin("alice")
    alice.wait_for_selector("#checkin:not([hidden])", timeout=5_000)  # live: within 5 s of the MQTT message
    assert alice.text_content("#checkin-message") == checkin["message"]
    why = alice.text_content("#checkin-why")
    assert why and not JARGON.search(why) and "SD" not in why
    assert why == why_now(checkin["why"])
    assert alice.evaluate("() => app.checkin.id") == checkin["id"]

    # the screenshot of the check-in screen at phone size
    shot = tmp_path / "checkin.png"
    alice.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000  # a rendered screen, not a blank page
    if os.environ.get("ANXMON_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "img" / "checkin.png")
    # every button of the check-in can be tapped (>= 44 x 44 CSS px) and lies on the screen
    buttons = alice.locator("#checkin button").all()
    assert len(buttons) == 5 + len(checkin["options"]["labels"]) + 1
    for b in buttons:
        box = b.bounding_box()
        assert box["width"] >= 44 and box["height"] >= 44, (b.text_content(), box)
        assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], (b.text_content(), box)
    # readable: text of at least 16 px, contrast of at least 4.5:1 (WCAG AA), nothing wider than the phone
    readable = alice.evaluate("""() => {
        const lum = (c) => { const v = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map((x) => x / 255)
            .map((x) => x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4);
            return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
        const bg = (e) => { while (e) { const c = getComputedStyle(e).backgroundColor;
            if (c !== "rgba(0, 0, 0, 0)" && c !== "transparent") return c; e = e.parentElement; } return "rgb(255,255,255)"; };
        const out = [];
        for (const e of document.querySelectorAll("#checkin-message, #checkin-why, #checkin-question, #ratings button, #labels button")) {
          const s = getComputedStyle(e), a = lum(s.color), b = lum(bg(e));
          out.push({text: e.textContent, px: parseFloat(s.fontSize),
                    contrast: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)});
        }
        return {items: out, scrollWidth: document.scrollingElement.scrollWidth};
    }""")
    assert readable["scrollWidth"] <= PHONE["width"]
    for item in readable["items"]:
        assert item["px"] >= 16 and item["contrast"] >= 4.5, item

    # one tap for the rating, one for a label, one to send
    alice.tap("#ratings button[data-rating='4']")
    alice.tap("#labels button[data-label='anxious']")
    assert alice.get_attribute("#ratings button[data-rating='4']", "aria-pressed") == "true"
    alice.tap("#send")
    alice.wait_for_selector("#thanks:not([hidden])", timeout=5_000)
    assert alice.is_visible("#breathe-start")  # the optional breathing guide after "anxious"
    response = wearer_topic("alice", "checkin/response")
    assert wait_until(lambda: stack.probe.on(response), 5)
    answer = json.loads(stack.probe.on(response)[0])
    assert (answer["prompt_id"], answer["rating"], answer["labels"]) == (checkin["id"], 4, ["anxious"])
    # the service applied it and it is in the recording
    assert wait_until(lambda: stack.recorded("answers", "alice"), 10), "the answer is not in the recording"
    row = stack.recorded("answers", "alice")[0]
    assert (row["prompt_id"], row["rating"], json.loads(row["labels"])) == (checkin["id"], 4, ["anxious"])
    assert wait_until(lambda: any(r["closed"] == "answered" for r in stack.recorded("checkins", "alice")), 5)
    # the history view shows it, in plain words
    alice.wait_for_selector("#history-list li:has-text('You said: 4 of 5')", timeout=5_000)
    assert "Anxious." in alice.text_content("#history-list")
    assert not JARGON.search(alice.text_content("#home"))

    # the breathing guide runs and can be stopped
    alice.tap("#breathe-start")
    alice.wait_for_selector("#breathing:not([hidden])")
    assert alice.text_content("#breath-text") == "Breathe in…"
    alice.tap("#breathe-stop")
    assert not alice.is_visible("#breathing")


def test_a_repeated_answer_is_recognised_from_the_recording_too(stack):
    """The same answer sent again (its response was lost) is 200 "already", also when the app
    no longer remembers it (after a restart) and only the recording knows it; no second answer
    is published. Another answer to the same check-in is 409."""
    checkin = stack.wait_checkin("alice")
    assert wait_until(lambda: stack.recorded("answers", "alice"), 30), "alice's answer is not recorded"
    row = stack.recorded("answers", "alice")[0]
    client = Client(stack.app.url)
    assert client.login("alice", PASSWORDS["alice"]) == 200
    with stack.app.relay._lock:  # as after a restart of the app: only the recording knows the answer
        stack.app.relay._views["alice"].answered.clear()
    responses = wearer_topic("alice", "checkin/response")
    assert wait_until(lambda: stack.probe.on(responses), 10)  # the first answer's response has arrived
    sent = len(stack.probe.on(responses))
    same = {"prompt_id": row["prompt_id"], "rating": row["rating"], "labels": json.loads(row["labels"])}
    status, body = client.request("/api/w/alice/answer", same)
    assert status == 200 and body["already"] is True, body
    assert client.request("/api/w/alice/answer", {**same, "rating": 1 if row["rating"] != 1 else 2})[0] == 409
    assert not wait_until(lambda: len(stack.probe.on(responses)) > sent, 1.0)  # nothing published again
    assert row["prompt_id"] == checkin["id"]


def test_a_wearer_never_sees_another_wearers_checkins(stack, browser):
    """bob's check-ins reach bob's page and never alice's: not the one the service sent, and
    not a later one; alice's page received no event about bob at all."""
    bob_first = stack.wait_checkin("bob")
    bob = browser["bob"]
    bob.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    assert bob.evaluate("() => app.checkin.id") == bob_first["id"]
    # a further check-in for bob (the service sends one at most every 30 min: this one is
    # published directly, the way the service does)
    later = dict(bob_first, id=f"bob-{int(bob_first['t'] * 1000) + 60_000}", t=bob_first["t"] + 60.0,
                 expires_at=bob_first["expires_at"] + 60.0)
    later.pop("v")
    stack.probe.publish(wearer_topic("bob", "checkin"), encode_checkin(later))
    assert wait_until(lambda: bob.evaluate("() => app.checkin && app.checkin.id") == later["id"], 5)
    alice = browser["alice"]
    time.sleep(0.5)
    events = alice.evaluate("() => window.__events")
    assert events and all("bob" not in data for _, data in events), [e for e in events if "bob" in e[1]]
    assert "bob" not in alice.text_content("body")
    assert alice.evaluate("() => app.checkin && app.checkin.id") in (None, stack.wait_checkin("alice")["id"])


def test_the_api_serves_only_the_signed_in_wearer(stack):
    """alice's session reads and writes alice's data only: bob's state, events, history,
    answers and controls are refused (403); no session, a wrong password, a missing CSRF token
    or another site's Origin are refused too. The session cookie is HttpOnly and SameSite."""
    stack.wait_checkin("bob")
    stack.wait_checkin("alice")
    if "bob" in stack.pages:  # bob's own page saved his zone when he signed in
        assert wait_until(lambda: stack.app.settings("bob")["timezone"] is not None, 10)
    bob_controls = len(stack.probe.on(wearer_topic("bob", "control")))
    client = Client(stack.app.url)
    assert Client(stack.app.url).login("alice", "wrong password") == 401
    assert client.request("/api/w/alice/history")[0] == 401  # not signed in
    assert client.login("alice", PASSWORDS["alice"]) == 200
    cookie = client.set_cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert PASSWORDS["alice"] not in cookie

    status, mine = client.request("/api/w/alice/history?days=1")
    assert status == 200 and mine["source"] == "recording"
    assert mine["checkins"] and all(c["id"].startswith("alice-") for c in mine["checkins"])
    assert mine["scores"] and all(not JARGON.search(c["why"]) for c in mine["checkins"])
    status, body = client.request("/api/w/alice/history?days=3.5")
    assert status == 400 and "whole number" in json.dumps(body), body
    assert client.request("/api/w/alice/state")[0] == 200
    bob_prompt = stack.checkins("bob")[0]["id"]
    for path in ("/api/w/bob/history?days=1", "/api/w/bob/state", "/api/w/bob/events"):
        status, body = client.request(path)
        assert status == 403 and "bob" not in json.dumps(body), (path, body)
    for path, body in (("/api/w/bob/answer", {"prompt_id": bob_prompt, "rating": 1, "labels": []}),
                       ("/api/w/bob/control", {"action": "pause", "duration_s": 3600}),
                       ("/api/w/bob/quiet-hours", {"off": True})):
        assert client.request(path, body)[0] == 403, path
    # CSRF: the token is required, and another site's Origin is refused even with it
    client_csrf, client.csrf = client.csrf, ""
    assert client.request("/api/w/alice/control", {"action": "resume"})[0] == 403
    client.csrf = client_csrf
    assert client.request("/api/w/alice/control", {"action": "resume"}, {"Origin": "https://evil.example"})[0] == 403
    assert client.request("/api/w/alice/control", {"action": "resume"}, content_type="text/plain")[0] == 415
    time.sleep(0.5)
    # none of it reached bob: no answer, no control on bob's topics
    assert not stack.probe.on(wearer_topic("bob", "checkin/response"))
    assert len(stack.probe.on(wearer_topic("bob", "control"))) == bob_controls
    assert stack.service.wearer_state("bob")["policy"].paused_until_s is None
    # sign out ends the session
    assert client.request("/api/logout", {})[0] == 200
    assert client.request("/api/w/alice/state")[0] == 401


def test_pause_and_quiet_hours_reach_the_service(stack):
    """Pause 1 h from the app is applied by the service in the wearer's event time; resume ends
    it. Quiet hours set in the app (with the browser's time zone) reach the service's policy."""
    stack.wait_processed()
    client = Client(stack.app.url)
    assert client.login("alice", PASSWORDS["alice"]) == 200
    # the wearer's newest sample, and when its last batch arrived (a status message of the device,
    # battery or contact, carries no sample time: it does not count)
    newest_s, last_batch_wall_s = stack.service.call(lambda s: (
        s._wearers["alice"].live.newest_event_s, max(s._wearers["alice"].live.source_seen_wall_s.values())))
    before = time.time()
    status, body = client.request("/api/w/alice/control", {"action": "pause", "duration_s": 3600})
    assert status == 200 and body["settings"]["paused_until"] > time.time() + 3500
    assert wait_until(lambda: stack.service.wearer_state("alice")["policy"].paused_until_s is not None, 5)
    # the wearer's event time: its newest sample plus the wall seconds since its last batch
    silent = before - last_batch_wall_s, time.time() - last_batch_wall_s
    paused_until = stack.service.wearer_state("alice")["policy"].paused_until_s
    assert newest_s + 3600 + silent[0] <= paused_until <= newest_s + 3600 + silent[1]
    assert client.request("/api/w/alice/control", {"action": "resume"})[0] == 200
    assert wait_until(lambda: stack.service.wearer_state("alice")["policy"].paused_until_s is None, 5)
    assert client.request("/api/w/alice/control", {"action": "pause", "duration_s": 5})[0] == 400  # < 1 min

    status, body = client.request("/api/w/alice/quiet-hours", {"start": "23:00", "end": "06:30",
                                                               "timezone": "Europe/Berlin"})
    assert status == 200 and body["settings"]["quiet_hours"] == ["23:00", "06:30"]
    expected = {"v": 1, "action": "quiet_hours", "quiet_hours": ["23:00", "06:30"], "timezone": "Europe/Berlin"}
    assert wait_until(lambda: [json.loads(p) for p in stack.probe.on(wearer_topic("alice", "control"))[-1:]]
                      == [expected], 5)
    assert client.request("/api/w/alice/quiet-hours", {"start": "25:00", "end": "06:30"})[0] == 400
    for zone in ("Europe", "Mars/Olympus", "A" * 65):  # "Europe" is a folder of the zone database
        assert client.request("/api/w/alice/quiet-hours", {"start": "23:00", "end": "06:30", "timezone": zone})[0] == 400
    if "quiet_hours" not in CONTROL_ACTIONS:
        pytest.skip("the policy has no per-wearer quiet hours yet (control action 'quiet_hours')")
    assert wait_until(lambda: stack.service.wearer_state("alice")["policy"].quiet_hours == ("23:00", "06:30"), 5)
    assert stack.service.wearer_state("alice")["policy"].timezone == "Europe/Berlin"


def test_a_snooze_without_a_duration_is_shown_as_long_as_the_service_holds_it(stack):
    """A watch's snooze without a duration was shown as paused for an hour (the policy's
    default) while the service, with ``snooze_default_s`` = 20 min, sent check-ins again after
    20 min. The service announces its ``snooze_default_s`` on its state topic; the app uses it."""
    assert wait_until(lambda: stack.app.relay.monitor_policy.get("main", {}).get("snooze_default_s") == 1200.0, 10)
    control = wearer_topic("bob", "control")
    before = time.time()
    stack.probe.publish(control, encode_control("snooze"))
    assert wait_until(lambda: stack.service.wearer_state("bob")["policy"].snoozed_until_s is not None, 5)
    assert wait_until(lambda: stack.app.settings("bob")["paused"], 5)
    assert before + 1200 <= stack.app.settings("bob")["paused_until"] <= time.time() + 1200
    stack.probe.publish(control, encode_control("resume"))
    assert wait_until(lambda: stack.service.wearer_state("bob")["policy"].snoozed_until_s is None, 5)
    assert wait_until(lambda: not stack.app.settings("bob")["paused"], 5)


def test_a_wearer_who_has_not_chosen_sees_the_quiet_hours_the_service_applies(stack, tmp_path):
    """The service announces its [policy] quiet hours on its retained state topic; an app whose
    own [app] default differs (here 21:00-06:00 against the service's none) shows the service's,
    so what a new wearer sees (and saves at first sign-in) is what applies. Before, it showed
    [app]'s and the two had to be kept equal by hand."""
    assert stack.service.config.policy.quiet_hours is None
    app = start_app(stack.broker.url, tmp_path, accounts={"carol": "carol-long-password"}, recording=None,
                    options=AppOptions(port=0, quiet_hours=("21:00", "06:00"), instance="main"))
    try:
        assert app.relay.wait_connected(10)
        assert wait_until(lambda: "quiet_hours" in app.relay.monitor_policy.get("main", {}), 10)
        client = Client(app.url)
        assert client.login("carol", "carol-long-password") == 200
        status, body = client.request("/api/w/carol/state")
        assert status == 200 and body["settings"]["quiet_hours"] is None
        # a wearer's own choice still wins
        status, body = client.request("/api/w/carol/quiet-hours", {"start": "23:00", "end": "06:30", "timezone": "UTC"})
        assert status == 200 and body["settings"]["quiet_hours"] == ["23:00", "06:30"]
    finally:
        app.stop()


def test_push_carries_message_and_link_and_a_down_endpoint_is_recorded_failed(stack):
    """alice's check-in reached the loopback webhook through apprise with its message and the
    link to it in the app; bob's endpoint is down: retried, then recorded as failed, while
    bob's check-ins kept flowing (on MQTT and to his page)."""
    alice = stack.wait_checkin("alice")
    bob = stack.wait_checkin("bob")
    assert wait_until(lambda: stack.hook.received, 10), stack.app.push.deliveries()
    got = stack.hook.received[0]
    assert got["path"] == "/anxmon"
    assert alice["message"] in got["json"]["message"]
    assert f"{stack.app.url}/#/checkin/{alice['id']}" in got["json"]["message"]
    assert got["json"]["title"] == "anxmon check-in"
    push = stack.app.push
    assert wait_until(lambda: any(d["status"] == "failed" for d in push.deliveries("bob")), 15), push.deliveries("bob")
    failed = push.deliveries("bob")[0]
    assert failed["prompt_id"] == bob["id"] and failed["attempts"] == 3 and failed["error"]
    assert "127.0.0.1" in failed["target"]
    # (the hook has the request before apprise has its answer and the record says "sent")
    assert wait_until(lambda: [d["status"] for d in push.deliveries("alice")][:1] == ["sent"], 10), push.deliveries("alice")
    assert stack.service.stats.checkins >= 2 and stack.app.relay.view("bob").checkins  # kept flowing


def test_installable_web_app(stack, browser):
    """The manifest names the app, its start URL, standalone display and PNG icons of 192 and
    512 px (served as real PNGs of that size); the service worker takes control of the page."""
    client = Client(stack.app.url)
    with urllib.request.urlopen(stack.app.url + "/manifest.webmanifest", timeout=5) as res:
        manifest = json.loads(res.read())
    assert manifest["start_url"] == "/" and manifest["display"] == "standalone" and manifest["name"]
    sizes = {}
    for icon in manifest["icons"]:
        with urllib.request.urlopen(stack.app.url + icon["src"], timeout=5) as res:
            data = res.read()
            assert res.headers["Content-Type"] == icon["type"]
        if icon["type"] == "image/png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            sizes[icon["sizes"]] = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    assert sizes == {"192x192": (192, 192), "512x512": (512, 512)}
    page = browser["alice"]
    assert page.evaluate("async () => { const r = await navigator.serviceWorker.ready; return r.active !== null; }")
    assert client.request("/api/config")[1]["crisis_text"] in page.text_content("#crisis")


# ------------------------------------------------------------------------------ units


def test_why_now_is_plain_words():
    """Every indicator key the core explains with has plain words (no key, no number); moves in
    the calm direction are not reasons; unknown keys are never shown."""
    from monitor.core.policy import INDICATOR_WORDS

    for key, (_, direction, higher, lower) in INDICATOR_WORDS.items():
        text = why_now({"indicators": {key: 2.0 * direction}})
        phrase = higher if direction > 0 else lower  # the words of the stress direction
        assert phrase[0].upper() + phrase[1:] in text and not JARGON.search(text) and not re.search(r"\d", text), key
        assert why_now({"indicators": {key: -2.0 * direction}}) == why_now(None)  # calm direction
    assert not JARGON.search(why_now({"indicators": {"XYZ_Strange": 3.0}}))
    view = checkin_view({"id": "a-1", "t": 1.7e9, "message": "See HRV_RMSSD", "why": {"indicators": {}},
                         "options": {"rating": {"question": "Q?", "min": 1, "max": 5, "labels": {"1": "Not at all"}},
                                     "labels": ["fine", "anxious"]}})
    shown = [view["message"], view["why"], view["question"], *(r["caption"] for r in view["ratings"]),
             *(x["text"] for x in view["labels"])]
    assert view["message"] == "How are you feeling right now?" and not any(JARGON.search(x) for x in shown)
    assert [x["text"] for x in view["labels"]] == [LABELS["fine"], LABELS["anxious"]]
    assert body_status(None)["level"] == "waiting"
    assert body_status({"score": None, "gate": "motion"})["level"] == "moving"
    assert body_status({"score": 2.5, "gate": None, "threshold": 2.0})["level"] == "high"


def test_api_replies_are_not_held_back_by_nagle():
    """The app's handler sends with TCP_NODELAY: its headers and body are two writes, and on a
    kept-alive connection Nagle's algorithm held the body for the browser's delayed ACK (~44 ms
    per API reply against 0.3 ms, median of 40 local requests; measured, not asserted here)."""
    import http.client
    import socket
    import threading
    from http.server import ThreadingHTTPServer

    from monitor.app.server import _Handler

    seen = []

    class Probe(_Handler):  # the app's handler as it sets up a connection, answering one path
        def do_GET(self):
            seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            self._send(200, b"{}", "application/json")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Probe)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=5)
        for _ in range(2):  # the same kept-alive connection twice
            conn.request("GET", "/probe")
            assert conn.getresponse().read() == b"{}"
        conn.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen and all(seen), seen


def test_accounts():
    """Plain and scrypt passwords; the service's own user never signs in; bad ids are refused."""
    accounts = Accounts({"monitor": "m", "alice": "pw", "bob": hash_password("hunter2", n=2**10)})
    assert accounts.wearers == ["alice", "bob"]
    assert accounts.verify("alice", "pw") and not accounts.verify("alice", "PW")
    assert accounts.verify("bob", "hunter2") and not accounts.verify("bob", "hunter3")
    assert not accounts.verify("monitor", "m") and not accounts.verify("eve", "pw")
    from monitor.errors import ConfigError

    with pytest.raises(ConfigError, match="not a wearer id"):
        Accounts({"Alice!": "pw"})


def test_a_known_and_an_unknown_name_cost_the_same(monkeypatch):
    """Sign-in time must not tell which names exist. Once an unknown name ran a dummy scrypt and a
    known plain password a fast comparison: the slow answer meant "no such wearer". Now an unknown
    name is checked like the accounts' own: hashed accounts -> one scrypt with their parameters,
    known or not; plain ones (the broker's credentials file) -> no scrypt for either, and reading
    them costs nothing (hashing 1,000 of them at start would take ~40 s)."""
    import hashlib

    from monitor.app.accounts import hash_password

    real_scrypt = hashlib.scrypt
    calls: list[dict] = []
    monkeypatch.setattr(hashlib, "scrypt", lambda password, **kw: calls.append(kw) or real_scrypt(password, **kw))
    hashed = Accounts({"alice": hash_password("alice-long-password", n=2**11)})
    plain = Accounts({"alice": "alice-long-password"})
    cases = [("alice", "wrong", False), ("alice", "alice-long-password", True),
             ("eve", "wrong", False), ("eve", "alice-long-password", False)]
    costs = []
    for wearer, password, expected in cases:
        calls.clear()
        assert hashed.verify(wearer, password) is expected
        assert len(calls) == 1, (wearer, password)
        costs.append({k: v for k, v in calls[0].items() if k != "salt"})
    assert all(c == costs[0] for c in costs) and costs[0]["n"] == 2**11, costs
    calls.clear()
    assert [plain.verify(w, p) for w, p, _ in cases] == [e for _, _, e in cases] and not calls


def test_failed_sign_ins_lock_out_one_name_per_address_not_every_wearer():
    """Behind a reverse proxy every wearer has the proxy's address: bob's 10 wrong passwords
    lock out bob (his right password too) from that address, not alice. Trying many names from
    one address locks out that address after 100 failures. Both end after ten minutes."""
    from monitor.app.server import (FAILURE_WINDOW_S, MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_NAME, AppOptions,
                                    CheckinApp, _HttpError)

    now = [1_700_000_000.0]
    app = CheckinApp("mqtt://127.0.0.1:1", Accounts(dict(PASSWORDS), scrypt_n=2**10), options=AppOptions(port=0),
                     clock=lambda: now[0])

    def sign_in(wearer: str, password: str, address: str = "10.0.0.1"):
        try:
            return "ok" if app.sign_in(wearer, password, address) else "wrong"
        except _HttpError as exc:
            return int(exc.status)

    for _ in range(MAX_FAILURES_PER_NAME):
        assert sign_in("bob", "a guess") == "wrong"
    assert sign_in("bob", PASSWORDS["bob"]) == 429  # locked out: the right password too
    assert sign_in("alice", PASSWORDS["alice"]) == "ok"  # another wearer behind the same address
    assert sign_in("alice", "a typo") == "wrong"
    assert sign_in("bob", PASSWORDS["bob"], "10.0.0.2") == "ok"  # bob from another address
    # one try for each of many names from one address: the per-address cap
    assert all(sign_in(f"name-{i}", "a guess", "10.0.0.3") == "wrong" for i in range(MAX_FAILURES_PER_ADDRESS))
    assert sign_in("alice", PASSWORDS["alice"], "10.0.0.3") == 429
    assert sign_in("alice", PASSWORDS["alice"], "10.0.0.4") == "ok"
    now[0] += FAILURE_WINDOW_S
    assert sign_in("bob", PASSWORDS["bob"]) == "ok" and sign_in("alice", PASSWORDS["alice"], "10.0.0.3") == "ok"
    assert not app._failures  # old failures are forgotten, not kept forever


def raw_status(url: str, request: bytes) -> bytes:
    """Send ``request`` byte for byte (http.client refuses non-ASCII) and return the status line."""
    import socket
    import urllib.parse

    address = urllib.parse.urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_a_non_ascii_wearer_or_csrf_token_is_refused_not_a_crash():
    """A path wearer that is not a wearer id (non-ASCII bytes, percent-encoded, upper case) is
    404 and a non-ASCII X-CSRF-Token is 403; before, comparing them raised in the handler and
    the client got no answer at all."""
    from monitor.app.server import AppOptions, CheckinApp

    app = CheckinApp("mqtt://127.0.0.1:1", Accounts({"carol": "carol-long-password"}, scrypt_n=2**10),
                     options=AppOptions(port=0)).start(connect_timeout_s=0.1)
    try:
        client = Client(app.url)
        assert client.login("carol", "carol-long-password") == 200
        cookie = "; ".join(f"{c.name}={c.value}" for c in client.jar)
        headers = f"Host: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n".encode()
        for path in (b"/api/w/s\xc3\xa9/state", b"/api/w/s%C3%A9/state", b"/api/w/CAROL/state"):
            request = b"GET " + path + b" HTTP/1.1\r\n" + headers + b"\r\n"
            assert raw_status(app.url, request) == b"HTTP/1.1 404 Not Found", path
        body = b'{"action": "resume"}'
        post = (b"POST /api/w/carol/control HTTP/1.1\r\n" + headers + b"Content-Type: application/json\r\n"
                b"X-CSRF-Token: \xc3\xa9\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert raw_status(app.url, post) == b"HTTP/1.1 403 Forbidden"
        assert client.request("/api/w/carol/state")[0] == 200  # still serving
    finally:
        app.stop()


def test_app_config_file_loads():
    """``configs/app.toml`` (the documented example) is valid."""
    from monitor.app import load_app_config
    from monitor.app.server import AppOptions

    options, push, ha = load_app_config(ROOT / "configs" / "app.toml")
    assert options.port == 8080 and "not a medical device" in options.crisis_text
    assert options.session_days == 30.0 and isinstance(options.session_days, float)  # 30 in the file
    assert push is not None and push.attempts == 5 and not ha.enabled
    assert options == AppOptions() and load_app_config(None)[0] == AppOptions() and load_app_config(None)[1] is None
    cli = load_app_config(ROOT / "configs" / "app.toml", {"port": 9000, "host": "0.0.0.0"})[0]
    assert (cli.port, cli.host, cli.instance) == (9000, "0.0.0.0", "main")  # the command line wins


APP_CONFIG_MISTAKES = [  # (configs/app.toml, what the error says after "FILE: ")
    ("[ap]\nport = 1", "unknown section(s) ap; known sections: app, homeassistant, push"),
    ("[app]\nprot = 1", "[app]: unknown key(s) prot; known keys: certfile, crisis_text,"),
    ("[app]\nport = true", "[app]: 'port' must be an integer, got True"),
    ("[app]\nport = 70000", "[app]: 'port' must be an integer in 0..65535, got 70000"),
    ("[app]\nhost = 8080", "[app]: 'host' must be a string, got 8080"),
    ("[app]\npublic_url = 'anxmon.example.org'", "[app]: 'public_url' must be an address starting with http://"),
    ("[app]\ncertfile = false", "[app]: 'certfile' must be a string, got False"),
    ("[app]\nsession_days = '30'", "[app]: 'session_days' must be a number, got '30'"),
    ("[app]\nsession_days = 0", "[app]: 'session_days' must be a number of days > 0, got 0.0"),
    ("[app]\nhistory_days = 7.5", "[app]: 'history_days' must be an integer, got 7.5"),
    ("[app]\ninstance = 'Main!'", "[app]: 'instance' must be an id"),
    ("[app]\nquiet_hours = ['22:00']", "[app]: 'quiet_hours' must be two different \"HH:MM\" times"),
    ("app = 3", "[app] must be a table of key = value, got 3"),
    ("[push]\nattempts = '5'", "[push]: 'attempts' must be an integer, got '5'"),
    ("[push.wearers]\nalice = 5", "[push]: 'wearers.alice' must be apprise URLs"),
    ("[homeassistant]\nenabled = 1", "[homeassistant]: 'enabled' must be true or false, got 1"),
]


def test_app_config_errors_name_the_file_the_table_and_the_key(tmp_path):
    from monitor.app import load_app_config
    from monitor.errors import ConfigError

    path = tmp_path / "app.toml"
    for text, expected in APP_CONFIG_MISTAKES:
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_app_config(path)
        assert str(info.value).startswith(f"{path}: ") and expected in str(info.value), str(info.value)


def test_anxmon_app_command(tmp_path):
    """``anxmon app --data-dir D`` finds the broker and the accounts in D's credentials file (as
    ``anxmon run`` writes it), says where it listens, serves, and stops on SIGTERM; no password
    is printed."""
    import signal
    import subprocess
    import sys

    need_broker("nats")
    data_dir = tmp_path / "data"
    broker = start_broker("nats", data_dir / "broker", users=dict(PASSWORDS))
    log = tmp_path / "app.log"
    proc = None
    try:
        (data_dir / "broker-credentials.json").write_text(json.dumps({"url": broker.url, "users": broker.users}))
        proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "app", "--data-dir", str(data_dir), "--port", "0"],
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert wait_until(lambda: "check-in app on" in log.read_text(), 20), log.read_text()
        url = re.search(r"on (http://\S+) for 2 wearer", log.read_text()).group(1)
        client = Client(url)
        assert client.login("bob", PASSWORDS["bob"]) == 200
        assert client.request("/api/w/bob/state")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 128 + signal.SIGTERM, log.read_text()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        broker.stop()
    text = log.read_text()
    assert "stopped" in text and not any(p in text for p in broker.users.values())
    assert (data_dir / "app" / "app-sessions.json").stat().st_mode & 0o777 == 0o600
    assert PASSWORDS["bob"] not in (data_dir / "app" / "app-sessions.json").read_text()


@pytest.mark.parametrize("cert", ["missing.pem", "not-pem.pem"])
def test_a_certificate_that_cannot_be_loaded_is_an_error_naming_it(tmp_path, cert):
    """--certfile that is missing or not PEM: an AppError naming the file, and the port is freed."""
    from monitor.app.server import AppError, AppOptions, CheckinApp

    (tmp_path / "not-pem.pem").write_text("not a certificate\n")
    app = CheckinApp("mqtt://127.0.0.1:1", {"alice": "pw"},
                     options=AppOptions(port=0, certfile=str(tmp_path / cert)))
    with pytest.raises(AppError, match=f"cannot load the TLS certificate {tmp_path / cert}"):
        app.start(connect_timeout_s=0.1)
    assert app._httpd.socket.fileno() == -1  # closed, not left listening


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # relay logic: one kind
def test_the_relay_survives_bad_messages_and_keeps_a_refused_answers_checkin_open(broker, caplog):
    """One wearer's bad messages must not stop the relay (paho's thread) for everyone: a payload
    nested 5000 deep, a check-in whose expires_at is not a time. An answer the monitor will
    refuse (rating 9) leaves the check-in open; a valid one closes it. What a refused message
    held (here another wearer's prompt id: the time of their check-in) is logged at DEBUG only,
    and one wearer's bad messages give one WARNING a minute, not one each."""
    caplog.set_level(logging.DEBUG)
    from monitor.app.relay import Relay
    from monitor.wire import encode_answer, encode_indicators

    relay = Relay(broker.url, client_id="relay-test").start()
    probe = Probe(broker, [])
    try:
        assert relay.wait_connected(10)
        # its SUBSCRIBE goes out right after the CONNACK: publish until it takes a message
        sync = encode_indicators(time.time(), 1.0, None, {}, {})
        assert wait_until(lambda: relay.view("sync").indicators is not None
                          or probe.publish(wearer_topic("sync", "indicators"), sync), 10)
        t = time.time()
        checkin = {"id": "bob-1", "t": t, "message": "How are you feeling?", "why": {},
                   "options": {"rating": {"min": 1, "max": 5}, "labels": ["anxious", "fine"]}, "expires_at": t + 900}
        probe.publish(wearer_topic("alice", "checkin"), b"[" * 5000 + b"]" * 5000)
        probe.publish(wearer_topic("alice", "checkin"), encode_checkin({**checkin, "id": "alice-1", "expires_at": [1]}))
        probe.publish(wearer_topic("alice", "checkin/response"), encode_answer("carol-1700000012345", 3, []))
        probe.publish(wearer_topic("alice", "indicators"), encode_indicators(t, 1.0, None, {}, {}))
        probe.publish(wearer_topic("bob", "checkin"), encode_checkin(checkin))
        assert wait_until(lambda: (relay.view("bob").checkin or {}).get("id") == "bob-1", 10), "the relay stopped"
        assert relay.view("alice").checkin is None  # the bad check-in was refused
        probe.publish(wearer_topic("bob", "checkin/response"), encode_answer("bob-1", 9, []))
        time.sleep(0.5)
        assert relay.view("bob").checkin["id"] == "bob-1"  # still open: the monitor refuses rating 9
        probe.publish(wearer_topic("bob", "checkin/response"), encode_answer("bob-1", 4, ["anxious"]))
        assert wait_until(lambda: relay.view("bob").checkin is None, 10)
        assert relay.view("bob").answered["bob-1"]["rating"] == 4
        def malformed(level: int) -> list[str]:
            return [r.getMessage() for r in caplog.records if "malformed" in r.getMessage() and r.levelno == level]

        # alice's three bad messages: each at DEBUG, one WARNING (a flood of them would flood the log)
        assert wait_until(lambda: len(malformed(logging.DEBUG)) == 3, 10), malformed(logging.DEBUG)
        assert len(malformed(logging.WARNING)) == 1, malformed(logging.WARNING)  # the operator still hears of it
        logged = [r for r in caplog.records if "malformed" in r.getMessage()]
        assert any("carol-1700000012345" in r.getMessage() for r in logged if r.levelno == logging.DEBUG)
        assert not any("carol-1700000012345" in r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)
    finally:
        probe.close()
        relay.stop()


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # relay logic: one kind
def test_an_open_page_is_told_when_a_checkin_expires_while_the_band_is_silent(broker, tmp_path):
    """The wearer's band goes quiet (off the wrist, out of reach) with a check-in open: its
    expiry still passes on the wall clock, and the open page gets ``closed`` on time, without
    waiting for indicators or a reload."""
    from monitor.wire import encode_indicators

    app = start_app(broker.url, tmp_path, accounts={"carol": "carol-long-password"}, recording=None)
    probe = Probe(broker, [])
    try:
        assert app.relay.wait_connected(10)
        client = Client(app.url)
        assert client.login("carol", "carol-long-password") == 200
        t = time.time()
        # (published until the relay has it: its SUBSCRIBE goes out right after the CONNACK)
        assert wait_until(lambda: app.relay.view("carol").indicators is not None or probe.publish(
            wearer_topic("carol", "indicators"), encode_indicators(t, 1.0, None, {}, {})), 10)
        probe.publish(wearer_topic("carol", "checkin"), encode_checkin(
            {"id": "carol-1", "t": t, "message": "How are you feeling?", "why": {},
             "options": {"rating": {"min": 1, "max": 5}, "labels": ["anxious", "fine"]}, "expires_at": t + 3.0}))
        assert wait_until(lambda: (app.relay.view("carol").checkin or {}).get("id") == "carol-1", 10)
        conn, res = open_events(app, client, "carol")
        events = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(e == "closed" for e, _ in events):
            line = res.fp.readline().decode().strip()
            if line.startswith("event: "):
                events.append((line[7:], json.loads(res.fp.readline().decode()[6:])))
        conn.close()
        assert events[0][0] == "state" and events[0][1]["checkin"]["id"] == "carol-1"
        assert ("closed", {"reason": "expired"}) in events  # no indicators came after the first
        assert time.time() >= t + 3.0
        assert app.relay.view("carol").checkin is None
    finally:
        probe.close()
        app.stop()


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # the app's sessions: one kind
def test_a_changed_password_ends_the_sessions_signed_in_with_the_old_one(broker, tmp_path):
    """A wearer whose phone was lost changes their password (and the app is restarted to read
    it): the phone's session, kept in the sessions file, went on for up to 30 days, check-ins and
    answers included. It now ends; an unchanged password keeps sessions across restarts, and a
    session of an earlier version (no mark of its password) is kept until the password changes."""
    def signed_in(app, cookie: str) -> int:
        req = urllib.request.Request(app.url + "/api/session", headers={"Cookie": cookie})
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def start(password: str):
        return start_app(broker.url, tmp_path, accounts={"carol": password, "dan": "dan-long-password"},
                         recording=None)

    app = start(password="carol-old-password")
    client, other = Client(app.url), Client(app.url)
    assert client.login("carol", "carol-old-password") == 200 and other.login("dan", "dan-long-password") == 200
    cookie, dans = (c.set_cookie.split(";")[0] for c in (client, other))
    app.stop()
    sessions = tmp_path / "app" / "app-sessions.json"
    saved = json.loads(sessions.read_text())
    assert all(len(s["account"]) == 64 for s in saved.values())
    for s in saved.values():
        if s["wearer"] == "dan":
            del s["account"]  # as an earlier version wrote it
    sessions.write_text(json.dumps(saved))
    app = start(password="carol-old-password")  # a restart: still signed in
    try:
        assert signed_in(app, cookie) == 200 and signed_in(app, dans) == 200
    finally:
        app.stop()
    app = start(password="carol-new-password")
    try:
        assert signed_in(app, cookie) == 401
        assert signed_in(app, dans) == 200  # another wearer's password did not change
        fresh = Client(app.url)
        assert fresh.login("carol", "carol-new-password") == 200
        assert signed_in(app, fresh.set_cookie.split(";")[0]) == 200
    finally:
        app.stop()


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # the app's own start: one kind
def test_serving_plain_http_beyond_this_machine_is_warned_about(broker, tmp_path, caplog):
    """``--host 0.0.0.0`` without a certificate served passwords, check-ins and answers over
    plain http to the network without a word; now a WARNING says so. On loopback, with a
    certificate, or behind a TLS proxy (an https public URL), it stays quiet."""
    warned = []
    for options in (AppOptions(host="0.0.0.0", port=0), AppOptions(host="127.0.0.1", port=0),
                    AppOptions(host="0.0.0.0", port=0, public_url="https://anxmon.example.org")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="anxmon.app"):
            app = start_app(broker.url, tmp_path, accounts={"carol": "carol-long-password"}, options=options,
                            recording=None)
            app.stop()
        warned.append([r.getMessage() for r in caplog.records if "plain http" in r.getMessage()])
    assert len(warned[0]) == 1 and "0.0.0.0" in warned[0][0] and "--certfile" in warned[0][0], warned
    assert warned[1:] == [[], []]


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # the app's own stream: one kind
def test_signing_out_ends_the_live_stream_of_every_open_page(broker, tmp_path):
    """A wearer signs out in one tab of a shared phone: a second tab's open event stream went on
    showing each new check-in (its message and why) to whoever held the phone. The stream now
    ends with the session (the page then finds itself signed out and shows the sign-in)."""
    app = start_app(broker.url, tmp_path, accounts={"carol": "carol-long-password"}, recording=None)
    probe = Probe(broker, [])
    try:
        assert app.relay.wait_connected(10)
        client = Client(app.url)
        assert client.login("carol", "carol-long-password") == 200
        conn, res = open_events(app, client, "carol")
        assert res.fp.readline().startswith(b"retry:")
        assert res.fp.readline() == b"event: state\n"
        assert client.request("/api/logout", {})[0] == 200  # (the other tab)
        t = time.time()
        probe.publish(wearer_topic("carol", "checkin"), encode_checkin(
            {"id": "carol-1", "t": t, "message": "How are you feeling?", "why": {"eda": "higher"},
             "options": {"rating": {"min": 1, "max": 5}, "labels": ["anxious", "fine"]}, "expires_at": t + 600}))
        assert wait_until(lambda: (app.relay.view("carol").checkin or {}).get("id") == "carol-1", 10)
        rest = res.read()  # to the end of the stream: it ends (a timeout here if it did not)
        conn.close()
        assert b"carol-1" not in rest and b"event: checkin" not in rest, rest
    finally:
        probe.close()
        app.stop()


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # relay logic: one kind
def test_a_push_still_retrying_is_dropped_once_the_checkin_is_answered_elsewhere(broker, tmp_path):
    """The push service is down (a closed port) when a check-in comes; the wearer answers it on
    their watch (on the response topic): the app's pending notification is not sent later."""
    pytest.importorskip("apprise", reason="push notifications need apprise: pip install apprise")
    from monitor.push import ANSWERED, PENDING, PushConfig
    from monitor.wire import encode_answer, encode_indicators

    push = PushConfig(wearers={"dave": [f"json://127.0.0.1:{closed_port()}/down"]}, attempts=5, backoff_s=1.0)
    app = start_app(broker.url, tmp_path, accounts={"dave": "dave-long-password"}, recording=None, push=push)
    probe = Probe(broker, [])
    try:
        assert app.relay.wait_connected(10)
        t = time.time()
        body = {"id": "dave-1", "t": t, "message": "How are you feeling?", "why": {},
                "options": {"rating": {"min": 1, "max": 5}, "labels": ["anxious", "fine"]}, "expires_at": t + 900.0}
        # (indicators published until the relay has them: its SUBSCRIBE goes out after the CONNACK)
        assert wait_until(lambda: app.relay.view("dave").indicators is not None or probe.publish(
            wearer_topic("dave", "indicators"), encode_indicators(t, 1.0, None, {}, {})), 10)
        probe.publish(wearer_topic("dave", "checkin"), encode_checkin(body))
        assert wait_until(lambda: [(d["status"], d["attempts"]) for d in app.push.deliveries("dave")] == [(PENDING, 1)], 10)
        probe.publish(wearer_topic("dave", "checkin/response"), encode_answer("dave-1", 2, ["fine"]))  # the watch
        assert wait_until(lambda: app.push.deliveries("dave")[0]["status"] == ANSWERED, 10), app.push.deliveries("dave")
        assert app.push.deliveries("dave")[0]["attempts"] == 1
    finally:
        probe.close()
        app.stop()


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # relay logic: one kind
@pytest.mark.parametrize("host, public_url, warned", [
    ("127.0.0.1", None, True), ("0.0.0.0", None, True), ("0.0.0.0", "https://anxmon.example.org", False)])
def test_push_links_a_phone_cannot_open_are_warned_about(broker, tmp_path, caplog, host, public_url, warned):
    """Push on, no --public-url: every notification's "Answer here" link was
    http://127.0.0.1:PORT/... (also when listening on 0.0.0.0), which opens nothing on the
    wearer's phone, and nothing said so. A WARNING at start names the option."""
    pytest.importorskip("apprise", reason="push notifications need apprise: pip install apprise")
    from monitor.push import PushConfig

    caplog.set_level(logging.WARNING, logger="anxmon.app")
    push = PushConfig(wearers={"erin": [f"json://127.0.0.1:{closed_port()}/down"]})
    app = start_app(broker.url, tmp_path, accounts={"erin": "erin-long-password"}, recording=None, push=push,
                    options=AppOptions(host=host, port=0, public_url=public_url))
    try:
        links = app.link_for("erin", "erin-1")
    finally:
        app.stop()
    said = [r.getMessage() for r in caplog.records if "push notifications link to" in r.getMessage()]
    assert bool(said) == warned and (links.startswith("http://127.0.0.1:") == warned), (said, links)
    assert not said or "--public-url" in said[0]


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # relay logic: one kind
def test_push_for_a_wearer_without_an_account_is_warned_about(broker, tmp_path, caplog):
    """Push set for "frank", who has no app account: his notifications link to a sign-in he
    cannot pass, and nothing said so (a typo in the wearer id, or an account not yet added)."""
    pytest.importorskip("apprise", reason="push notifications need apprise: pip install apprise")
    from monitor.push import PushConfig

    caplog.set_level(logging.WARNING, logger="anxmon.app")
    secret_url = f"json://127.0.0.1:{closed_port()}/frank-secret-topic"
    push = PushConfig(wearers={"erin": [f"json://127.0.0.1:{closed_port()}/down"], "frank": [secret_url]})
    app = start_app(broker.url, tmp_path, accounts={"erin": "erin-long-password"}, recording=None, push=push,
                    options=AppOptions(port=0, public_url="https://anxmon.example.org"))
    app.stop()
    said = [r.getMessage() for r in caplog.records if "without an app account" in r.getMessage()]
    assert len(said) == 1 and "frank" in said[0] and "erin" not in said[0]
    assert "frank-secret-topic" not in caplog.text


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # relay logic: one kind
def test_a_checkin_delivered_twice_buzzes_once_and_stays_answered(broker, tmp_path):
    """MQTT's QoS 1 delivers at least once: a copy of a check-in (the service resends what the
    broker had not acknowledged when it reconnects) was pushed a second time and, once answered,
    opened again on the wearer's pages."""
    pytest.importorskip("apprise", reason="push notifications need apprise: pip install apprise")
    from monitor.push import PushConfig
    from monitor.wire import encode_answer, encode_indicators

    push = PushConfig(wearers={"erin": [f"json://127.0.0.1:{closed_port()}/down"]}, attempts=1)
    app = start_app(broker.url, tmp_path, accounts={"erin": "erin-long-password"}, recording=None, push=push)
    probe = Probe(broker, [])
    try:
        assert app.relay.wait_connected(10)
        t = time.time()
        assert wait_until(lambda: app.relay.view("erin").indicators is not None or probe.publish(
            wearer_topic("erin", "indicators"), encode_indicators(t, 1.0, None, {}, {})), 10)
        body = {"id": "erin-1", "t": t, "message": "How are you feeling?", "why": {},
                "options": {"rating": {"min": 1, "max": 5}, "labels": ["anxious", "fine"]}, "expires_at": t + 900.0}
        for _ in range(2):
            probe.publish(wearer_topic("erin", "checkin"), encode_checkin(body))
        probe.publish(wearer_topic("erin", "checkin/response"), encode_answer("erin-1", 2, ["fine"]))
        probe.publish(wearer_topic("erin", "checkin"), encode_checkin(body))  # a late copy
        probe.publish(wearer_topic("erin", "indicators"), encode_indicators(t + 1, 1.0, None, {}, {}))  # (after it)
        assert wait_until(lambda: app.relay.view("erin").event_t == t + 1, 10)
        assert [d["prompt_id"] for d in app.push.deliveries("erin")] == ["erin-1"]
        assert app.relay.view("erin").checkin is None and len(app.relay.view("erin").checkins) == 1
    finally:
        probe.close()
        app.stop()


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # relay logic: one kind
def test_after_a_restart_of_the_app_a_silent_wearers_checkin_closes_at_its_expiry(broker, tmp_path):
    """The band went quiet with a check-in open, and the app restarted: the recording's check-in
    (never closed there: the service closes one on the wearer's next tick) was shown open for
    ever, since the relay had no event time of the wearer; an answer was then refused. The
    wearer's event time now comes from their newest recorded tick, going on with the wall clock."""
    from monitor.recorder import Recorder

    now = time.time()
    silent_s = 1200.0  # the newest tick was recorded 20 min ago
    Recorder(tmp_path / RECORDING_FILE).close()
    with sqlite3.connect(tmp_path / RECORDING_FILE) as db:
        for wearer, open_s in (("dave", 900.0), ("erin", 1500.0)):  # expired 5 min ago / open 5 min more
            t = now - silent_s - 100.0
            prompt = {"id": f"{wearer}-1", "t": t, "message": "How are you feeling?", "why": {},
                      "options": {"rating": {"min": 1, "max": 5}, "labels": ["fine"]}, "expires_at": t + open_s}
            db.execute("INSERT INTO checkins (wearer, prompt_id, t, expires_at, prompt, recorded_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (wearer, prompt["id"], t, t + open_s, json.dumps(prompt), t))
            db.execute("INSERT INTO indicators (wearer, t, score, indicator_values, quality, recorded_at) "
                       "VALUES (?, ?, 0.5, '{}', '{}', ?)", (wearer, now - silent_s, now - silent_s))
    app = start_app(broker.url, tmp_path, accounts={w: f"{w}-long-password" for w in ("dave", "erin")})
    try:
        assert app.relay.wait_connected(10)
        dave, erin = Client(app.url), Client(app.url)
        assert dave.login("dave", "dave-long-password") == 200 and erin.login("erin", "erin-long-password") == 200
        assert dave.request("/api/w/dave/state")[1]["checkin"] is None
        status, body = dave.request("/api/w/dave/answer", {"prompt_id": "dave-1", "rating": 2})
        assert status == 409 and "closed" in body["error"], body
        assert erin.request("/api/w/erin/state")[1]["checkin"]["id"] == "erin-1"
        assert app.relay.view("erin").checkin["id"] == "erin-1"
    finally:
        app.stop()
