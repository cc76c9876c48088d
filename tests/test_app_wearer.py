"""The check-in app from the wearer's side (findings of the wearer audit, 2026-12): the quiet
hours shown are the ones applied (time zone), no false reassurance, crisis text offline,
flaky networks, closed check-ins, pause until morning, sign-out offline, wording, reflow,
forced colours, dark mode.

A real broker (mosquitto), the real app (no service: the tests publish check-ins, indicators
and the monitor's state the way the service does, as its MQTT user) and headless Chromium
(Debian's ``chromium`` driven by Playwright; never a downloaded browser).
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from monitor.app import start_app
from monitor.app.server import DEFAULT_CRISIS_TEXT, AppOptions, CheckinApp
from monitor.app import words
from monitor.app.words import answer_words, live_status
from monitor.broker import start_broker
from monitor.wire import (availability_topic, encode_answer, encode_checkin, encode_control, encode_indicators, encode_monitor_state, encode_rejected,
                          status_payload, status_topic, wearer_topic)
from tests.conftest import need_broker
from tests.test_app import CHROMIUM, CHROMIUM_ARGS, PHONE, Client, _need
from tests.test_service import Probe, wait_until

WEARERS = ["tokyo", "travel", "calm", "net", "lost", "gone", "night", "out", "words", "small", "dark", "retry", "zone", "asleep",
           "draft", "unset", "chart", "keys", "late", "open", "band", "breath", "rest", "watch", "twice", "mixed", "focus", "longer", "away"]
PASSWORD = "a-long-wearer-password"
CAPTIONS = {"1": "Not at all", "2": "A little", "3": "Somewhat", "4": "Quite", "5": "Very"}
OFFLINE = "You seem to be offline. Please try again when you have a connection."


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need_broker("mosquitto")
    root = tmp_path_factory.mktemp("wearer")
    broker = start_broker("mosquitto", root / "broker")
    app = probe = None
    try:
        app = start_app(broker.url, root / "data", accounts={w: PASSWORD for w in WEARERS}, recording=None)
        assert app.relay.wait_connected(10)
        probe = Probe(broker, ["anxmon/v1/+/control", "anxmon/v1/+/checkin/response"])
        # published until the relay has it: its SUBSCRIBE goes out right after the CONNACK, and a
        # message published before the broker took it reaches no one
        online = encode_monitor_state("online", "main", "test", time.time())
        assert wait_until(lambda: app.relay.monitor_online.get("main") is True
                          or probe.publish("anxmon/v1/monitor/main/state", online), 10)
        yield app, probe
    finally:
        if probe is not None:
            probe.close()
        if app is not None:
            app.stop()
        broker.stop()


@pytest.fixture(scope="module")
def chromium():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright", False, "pip install playwright; the browser is Debian's chromium")
    _need("chromium", Path(CHROMIUM).exists(), "apt-get install chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def open_page(env, chromium):
    """open_page(wearer, **context options) -> a signed-in page of the wearer."""
    app, _ = env
    contexts = []

    def opener(wearer: str, viewport=PHONE, sign_in: bool = True, **options):
        ctx = chromium.new_context(viewport=viewport, **options)
        contexts.append(ctx)
        page = ctx.new_page()
        page.goto(app.url)
        if sign_in:
            page.wait_for_selector("#login:not([hidden])", timeout=10_000)
            page.fill("#login-wearer", wearer)
            page.fill("#login-password", PASSWORD)
            page.click("#login-form button")
            page.wait_for_selector("#home:not([hidden])", timeout=10_000)
        return page

    yield opener
    for ctx in contexts:
        ctx.close()


def client(app, wearer: str) -> Client:
    c = Client(app.url)
    assert c.login(wearer, PASSWORD) == 200
    return c


def checkin(probe, app, wearer: str, n: int = 1, expires_in_s: float = 900.0) -> dict:
    """Publish fresh indicators and a check-in for ``wearer`` (as the service does)."""
    t = time.time()
    body = {"id": f"{wearer}-{int(t * 1000)}-{n}", "t": t, "message": "How are you feeling right now?",
            "why": {"indicators": {"HR_Mean": 2.5}},
            "options": {"rating": {"min": 1, "max": 5, "question": "How tense do you feel right now?",
                                   "labels": CAPTIONS},
                        "labels": ["anxious", "stressed", "fine"]},
            "expires_at": t + expires_in_s}
    probe.publish(wearer_topic(wearer, "indicators"), encode_indicators(t, 0.2, None, {}, {}, threshold=2.0))
    probe.publish(wearer_topic(wearer, "checkin"), encode_checkin(body))
    assert wait_until(lambda: (app.relay.view(wearer).checkin or {}).get("id") == body["id"], 10)
    return body


def zone_saved(page, tz: str) -> None:
    """Wait for the first visit's save of the browser's zone to be answered (that answer redraws
    the settings: a later change must not race it)."""
    page.wait_for_function(f"() => app.settings && app.settings.timezone === '{tz}' && !app.tzSaving", timeout=5_000)


def send_held(page):
    """Press Send with the answer's request held in the browser: its Playwright ``Route``."""
    held = []
    page.route("**/answer", lambda route: held.append(route))
    page.click("#send")
    assert wait_until(lambda: (page.evaluate("() => 0"), held)[1], 5)
    return held[0]


def controls(probe, wearer: str) -> list[dict]:
    return probe.json_on(wearer_topic(wearer, "control"))


# ------------------------------------------------------------------ 1, 2: time zones


def test_quiet_hours_shown_are_applied_in_the_browsers_zone_from_the_first_sign_in(env, open_page):
    """A wearer who never pressed Save: the shown 22:00-07:00 is sent once with the browser's
    zone, so the monitor applies what the page shows; the page says which zone. Switching quiet
    hours off keeps the zone (the daily cap still uses it)."""
    app, probe = env
    assert app.settings("tokyo")["timezone"] is None
    page = open_page("tokyo", timezone_id="Asia/Tokyo")
    assert wait_until(lambda: app.settings("tokyo")["timezone"] == "Asia/Tokyo", 10)
    assert wait_until(lambda: controls(probe, "tokyo"), 5)
    assert controls(probe, "tokyo")[-1] == {"v": 1, "action": "quiet_hours", "quiet_hours": ["22:00", "07:00"],
                                            "timezone": "Asia/Tokyo"}
    page.wait_for_selector("#quiet-tz:has-text('Times are in Tokyo time.')", timeout=5_000)
    assert page.input_value("#quiet-start") == "22:00" and page.input_value("#quiet-end") == "07:00"
    assert not page.is_visible("#tz-change")

    c = client(app, "tokyo")
    status, body = c.request("/api/w/tokyo/quiet-hours", {"off": True})
    assert status == 200 and body["settings"]["quiet_hours"] is None and body["settings"]["timezone"] == "Asia/Tokyo"
    off = {"v": 1, "action": "quiet_hours", "quiet_hours": [], "timezone": "Asia/Tokyo"}
    assert wait_until(lambda: controls(probe, "tokyo")[-1] == off, 5), controls(probe, "tokyo")


def test_zone_names_read_the_right_way_round(open_page):
    """A zone is named by its city; an Etc/ zone by its offset from UTC. "Etc/GMT+5" is five
    hours *behind* UTC (POSIX signs, IANA's tz database), so it was named "GMT+5 time"."""
    page = open_page("zonename", sign_in=False)
    names = page.evaluate("() => ['Asia/Tokyo', 'America/Argentina/Buenos_Aires', 'UTC', 'Etc/GMT+5',"
                          " 'Etc/GMT-10', 'Etc/UTC'].map(zoneName)")
    assert names == ["Tokyo time", "Buenos Aires time", "UTC", "UTC-5", "UTC+10", "UTC"]


def test_a_zone_that_cannot_be_saved_yet_is_said_so_and_saved_later(env, open_page):
    """The first save of the zone fails (the monitor cannot be reached): the page does not claim
    the times are Tokyo's yet; the next update saves it. A zone the server refuses is said so
    once, not asked again on every update."""
    app, _ = env
    answers = []

    def refuse(route):
        answers.append(route.request.url)
        route.fulfill(status=503, content_type="application/json", body='{"error": "The monitor cannot be reached."}')

    chromium_page = open_page("zone", timezone_id="Asia/Tokyo", sign_in=False)
    chromium_page.route("**/quiet-hours", refuse)
    chromium_page.fill("#login-wearer", "zone")
    chromium_page.fill("#login-password", PASSWORD)
    chromium_page.click("#login-form button")
    chromium_page.wait_for_selector("#quiet-tz:has-text('once anxmon can reach the monitor')", timeout=5_000)
    assert chromium_page.text_content("#quiet-tz") == "These times will follow Tokyo time once anxmon can reach the monitor."
    assert app.settings("zone")["timezone"] is None
    chromium_page.unroute("**/quiet-hours")
    chromium_page.evaluate("() => renderSettings(app.settings)")  # the next state or settings event
    assert wait_until(lambda: app.settings("zone")["timezone"] == "Asia/Tokyo", 5)
    chromium_page.wait_for_selector("#quiet-tz:has-text('Times are in Tokyo time.')", timeout=5_000)

    answers.clear()
    chromium_page.route("**/quiet-hours", lambda route: (answers.append(1), route.fulfill(
        status=400, content_type="application/json", body='{"error": "Unknown time zone."}')))
    chromium_page.evaluate("() => renderSettings({...app.settings, timezone: null})")
    chromium_page.wait_for_selector("#quiet-tz:has-text(\"doesn't know your phone's time zone\")", timeout=5_000)
    chromium_page.evaluate("() => renderSettings({...app.settings, timezone: null})")
    time.sleep(0.5)
    assert len(answers) == 1


def test_a_travelling_wearer_sees_the_saved_zone_and_is_offered_the_new_one(env, open_page):
    """Quiet hours saved in Tokyo, the phone now in London: the page says the hours follow Tokyo
    time and offers London; the button re-sends the same hours with London's zone, and the
    wearer's other open page follows without a reload."""
    app, probe = env
    assert client(app, "travel").request("/api/w/travel/quiet-hours",
                                         {"start": "23:00", "end": "06:30", "timezone": "Asia/Tokyo"})[0] == 200
    page = open_page("travel", timezone_id="Europe/London")
    other = open_page("travel", timezone_id="Europe/London")
    page.wait_for_selector("#tz-change:not([hidden])", timeout=5_000)
    assert page.text_content("#tz-change-text") == \
        "Your phone is on London time now, but quiet hours still follow Tokyo time."
    assert page.text_content("#quiet-tz") == "Times are in Tokyo time."
    assert page.text_content("#tz-use") == "Use London time"
    time.sleep(0.5)
    assert app.settings("travel")["timezone"] == "Asia/Tokyo"  # nothing changes by itself
    page.click("#tz-use")
    assert wait_until(lambda: app.settings("travel")["timezone"] == "Europe/London", 5)
    assert list(app.settings("travel")["quiet_hours"]) == ["23:00", "06:30"]
    assert wait_until(lambda: [c["timezone"] for c in controls(probe, "travel")[-1:]] == ["Europe/London"], 5)
    page.wait_for_selector("#tz-change", state="hidden", timeout=5_000)
    assert page.text_content("#quiet-tz") == "Times are in London time."
    other.wait_for_selector("#tz-change", state="hidden", timeout=5_000)  # the settings event reached it
    assert other.text_content("#quiet-tz") == "Times are in London time."


def test_the_quiet_hours_card_says_so_when_there_are_none(env, open_page):
    """With no quiet hours the card said "No check-ins between these times" over two empty
    pickers; it says there are none, and the set state keeps its words."""
    app, _ = env
    page = open_page("unset", timezone_id="Europe/Berlin")
    zone_saved(page, "Europe/Berlin")
    set_words = "No check-ins between these times."
    page.wait_for_selector(f"#pause-card:has-text('{set_words}')", timeout=5_000)
    page.click("#quiet-off")
    none = "No quiet hours set. Check-ins can come at any time of day."
    page.wait_for_selector(f"#pause-card:has-text('{none}')", timeout=5_000)
    assert app.settings("unset")["quiet_hours"] is None
    assert set_words not in page.text_content("#pause-card")
    page.fill("#quiet-start", "22:30")
    page.fill("#quiet-end", "06:00")
    page.click("#quiet-save")
    page.wait_for_selector(f"#pause-card:has-text('{set_words}')", timeout=5_000)
    assert none not in page.text_content("#pause-card")


# ------------------------------------------------------------------ 3: no false reassurance


def test_live_status_never_reassures_from_old_news():
    calm = {"score": 0.1, "threshold": 2.0}
    assert live_status(calm, age_s=10)["level"] == "calm"
    assert live_status(calm, age_s=words.STALE_AFTER_S + 1)["text"] == words.SILENT_TEXT
    assert live_status(calm, age_s=1, reachable=False)["text"] == words.UNREACHABLE_TEXT
    assert live_status(None, age_s=None)["level"] == "waiting"
    for text in (words.SILENT_TEXT, words.UNREACHABLE_TEXT):
        assert "calm" not in text
    # an app that is not connected to the broker says so
    app = CheckinApp("mqtt://monitor:pw@127.0.0.1:1", {"zed": "pw"}, options=AppOptions(port=0))
    assert app.status("zed")["level"] == "offline"


def test_the_page_says_plainly_when_the_monitor_or_the_wearable_is_gone(env, open_page, monkeypatch):
    """Calm indicators, then the monitor goes offline: the open page says check-ins are paused
    until it is back, without a reload, and "Nothing to answer" is gone. Back online, calm again.
    Then the wearable goes quiet (indicators too old): the page says so."""
    app, probe = env
    t = time.time()
    probe.publish(wearer_topic("calm", "indicators"), encode_indicators(t, 0.2, None, {}, {}, threshold=2.0))
    assert wait_until(lambda: app.relay.view("calm").indicators is not None, 5)
    page = open_page("calm")
    page.wait_for_selector("#status[data-level='calm']", timeout=5_000)
    assert page.is_visible("#nothing")
    try:
        probe.publish("anxmon/v1/monitor/main/state", encode_monitor_state("offline", "main", "test"))
        page.wait_for_selector("#status[data-level='offline']", timeout=5_000)
        assert page.text_content("#status") == words.UNREACHABLE_TEXT
        assert not page.is_visible("#nothing")
        assert client(app, "calm").request("/api/w/calm/state")[1]["status"]["level"] == "offline"
    finally:
        probe.publish("anxmon/v1/monitor/main/state", encode_monitor_state("online", "main", "test", time.time()))
    page.wait_for_selector("#status[data-level='calm']", timeout=5_000)
    monkeypatch.setattr(words, "STALE_AFTER_S", 2.0)
    page.wait_for_selector("#status[data-level='silent']", timeout=6_000)
    assert page.text_content("#status") == words.SILENT_TEXT
    assert not page.is_visible("#nothing")
    # a page that loses the app itself says it is offline (not the last status it had)
    page.route("**/api/**", lambda route: route.abort())
    page.evaluate("() => app.events.onerror()")
    page.wait_for_selector("#status[data-level='offline']", timeout=5_000)
    assert "offline" in page.text_content("#status")


def test_live_status_gives_the_devices_own_reason():
    calm = {"score": 0.1, "threshold": 2.0}
    unclear = {"score": None, "gate": "poor_quality", "threshold": 2.0}
    off_skin = {"strap": {"online": True, "contact": False}}
    assert live_status(calm, age_s=5, devices=off_skin)["level"] == "calm"  # usable data: read from elsewhere
    assert live_status(unclear, age_s=5, devices=off_skin)["text"] == words.NO_CONTACT_TEXT
    assert live_status(calm, age_s=words.STALE_AFTER_S + 1, devices=off_skin)["text"] == words.NO_CONTACT_TEXT
    # a band that reports no contact itself: the monitor's EDA saw its electrodes off the skin
    band_off = {**unclear, "quality": {"eda": "off_skin", "temp": "off_skin", "hrv": "off_skin"}}
    assert live_status(band_off, age_s=5) == {"level": "unclear", "text": words.OFF_SKIN_TEXT}
    assert live_status(band_off, age_s=5, devices=off_skin)["text"] == words.NO_CONTACT_TEXT  # the device's word first
    assert live_status({**calm, "quality": {"temp": "off_skin"}}, age_s=5)["level"] == "calm"  # a score: read from elsewhere
    assert live_status({**unclear, "quality": {"eda": "out_of_range"}}, age_s=5)["text"] != words.OFF_SKIN_TEXT
    gone = {"e4": {"online": False, "battery": 4.0}, "old": {"battery": 3.0, "contact": False}}
    assert live_status(calm, age_s=5, devices=gone) == {
        "level": "silent", "battery_percent": 4.0,
        "text": words.DISCONNECTED_TEXT + " Your wearable's battery is low (4%), so it may need charging soon."}
    in_use = {"e4": {"online": False, "battery": 4.0}, "h10": {"online": True, "battery": 80.0}}
    assert live_status(calm, age_s=5, devices=in_use) == live_status(calm, age_s=5)
    assert live_status(calm, age_s=5, devices={"e4": {"battery": 15.0}})["battery_percent"] == 15.0
    assert "battery_percent" not in live_status(calm, age_s=5, devices={"e4": {"battery": 16.0}})
    assert live_status(calm, age_s=5, reachable=False, devices=gone)["text"] == words.UNREACHABLE_TEXT


def test_the_page_says_when_the_wearable_disconnects_or_its_battery_runs_low(env, open_page):
    """The devices' retained availability, battery and skin contact never reached the wearer: a
    band running out of battery said nothing, and one that disconnected still read "close to your
    calm level" for two minutes. The status line now says so as soon as the device does."""
    app, probe = env
    probe.publish(wearer_topic("band", "indicators"), encode_indicators(time.time(), 0.2, None, {}, {}, threshold=2.0))
    assert wait_until(lambda: app.relay.view("band").indicators is not None, 5)
    page = open_page("band")
    page.wait_for_selector("#status[data-level='calm']", timeout=5_000)
    probe.publish(availability_topic("band", "e4"), b"online", retain=True)
    probe.publish(status_topic("band", "e4", "battery"), status_payload("battery", 9, time.time()), retain=True)
    page.wait_for_selector("#status:has-text('battery is low (9%)')", timeout=5_000)
    assert page.get_attribute("#status", "data-level") == "calm" and page.is_visible("#nothing")
    probe.publish(availability_topic("band", "e4"), b"offline", retain=True)  # (the bridge's last will)
    page.wait_for_selector("#status[data-level='silent']", timeout=5_000)
    assert page.text_content("#status") == (words.DISCONNECTED_TEXT
                                            + " Your wearable's battery is low (9%), so it may need charging soon.")
    assert not page.is_visible("#nothing")
    probe.publish(availability_topic("band", "h10"), b"online", retain=True)  # another device takes over
    page.wait_for_selector("#status[data-level='calm']", timeout=5_000)
    assert "battery" not in page.text_content("#status")
    for topic in (availability_topic("band", "e4"), availability_topic("band", "h10"),
                  status_topic("band", "e4", "battery")):
        probe.publish(topic, b"", retain=True)  # cleared: nothing known of the devices any more
    assert wait_until(lambda: all(v is None for d in app.relay.view("band").devices.values() for v in d.values()), 5)


# ------------------------------------------------------------------ 4: crisis text offline


def test_crisis_text_is_in_the_page_itself_and_shows_when_the_api_is_down(env, open_page):
    app, _ = env
    with urllib.request.urlopen(app.url + "/", timeout=5) as res:
        assert DEFAULT_CRISIS_TEXT in res.read().decode()
    page = open_page("net", sign_in=False)
    page.route("**/api/**", lambda route: route.abort())
    page.reload()
    page.wait_for_selector("#login:not([hidden])", timeout=5_000)
    assert page.text_content("#crisis") == DEFAULT_CRISIS_TEXT
    # signing in without a connection says so in plain words
    page.fill("#login-wearer", "net")
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button")
    page.wait_for_selector(f"#login-error:has-text('{OFFLINE}')", timeout=5_000)


# ------------------------------------------------------------------ 5: flaky network


def test_a_repeated_answer_succeeds_and_a_closed_checkin_is_worded_kindly(env):
    app, probe = env
    c = checkin(probe, app, "retry")
    wearer = client(app, "retry")
    answer = {"prompt_id": c["id"], "rating": 4, "labels": ["anxious"]}
    status, first = wearer.request("/api/w/retry/answer", answer)
    assert status == 200 and first["breathing"] is True
    status, again = wearer.request("/api/w/retry/answer", {**answer, "labels": ["anxious"]})
    assert status == 200 and again == {"ok": True, "breathing": True, "already": True}
    responses = wearer_topic("retry", "checkin/response")
    assert wait_until(lambda: len(probe.on(responses)) >= 1, 10)  # the broker delivers it a moment later
    assert wearer.request("/api/w/retry/answer", {**answer, "rating": 2})[0] == 409  # another answer
    status, body = wearer.request("/api/w/retry/answer", {"prompt_id": "retry-1", "rating": 2})
    assert status == 409 and body["error"] == "This check-in has closed, so there's nothing to answer. Thank you anyway."
    assert not wait_until(lambda: len(probe.on(responses)) > 1, 1.0)  # not sent twice


def test_a_flaky_network_gets_plain_words_and_a_lost_response_still_says_thank_you(env, open_page):
    app, probe = env
    c = checkin(probe, app, "net")
    page = open_page("net")
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    assert page.text_content("#checkin-sent").startswith("Sent at ")
    assert page.get_attribute("#ratings button[data-rating='4']", "aria-label") == "4, Quite"
    page.click("#ratings button[data-rating='4']")
    page.click("#labels button[data-label='anxious']")
    # the request never leaves the phone
    page.route("**/answer", lambda route: route.abort())
    page.click("#send")
    page.wait_for_selector(f"#checkin-error:has-text('{OFFLINE}')", timeout=5_000)
    assert "fetch" not in page.text_content("#home").lower()
    assert page.is_visible("#checkin") and page.is_enabled("#send")
    page.unroute("**/answer")
    # the answer reaches the server, the response is lost: thanks all the same
    route = send_held(page)
    assert page.text_content("#send") == "Sending…" and not page.is_enabled("#send")
    route.fetch()  # the server takes it ...
    route.abort()  # ... and the response never arrives
    page.wait_for_selector("#thanks:not([hidden])", timeout=5_000)
    assert page.is_visible("#breathe-start")
    assert page.evaluate("() => document.title") == "anxmon check-in"
    assert page.evaluate("() => document.activeElement.id") == "thanks-text"
    assert wait_until(lambda: probe.on(wearer_topic("net", "checkin/response")), 5)
    assert json.loads(probe.on(wearer_topic("net", "checkin/response"))[0])["prompt_id"] == c["id"]


def test_an_answers_late_response_does_not_bring_the_thank_you_back_over_the_breathing(env, open_page):
    """The answer's ``closed`` event thanks the wearer before the slow response arrives; when it
    did arrive, the thank-you was shown a second time, over the minute of breathing the wearer
    had started meanwhile, and took the focus from its Stop button."""
    app, probe = env
    checkin(probe, app, "late")
    page = open_page("late")
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    page.click("#labels button[data-label='stressed']")
    route = send_held(page)
    response = route.fetch()  # the server takes the answer; its response is slow
    page.wait_for_selector("#thanks:not([hidden])", timeout=5_000)  # thanks to the "closed" event
    page.click("#breathe-start")
    route.fulfill(response=response)
    page.wait_for_function("() => app.sending === null", timeout=5_000)
    assert page.is_visible("#breathing") and not page.is_visible("#thanks")
    assert page.evaluate("() => document.activeElement.id") != "thanks-text"


def test_the_minute_of_breathing_counts_down_in_words_and_ends(env, open_page):
    """The count-down said "1 seconds" in its last second. (The page's own timers, on a
    Playwright clock run forward: no waiting.)"""
    app, probe = env
    checkin(probe, app, "breath")
    page = open_page("breath")
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    page.click("#labels button[data-label='anxious']")
    page.click("#send")
    page.wait_for_selector("#breathe-start:visible", timeout=5_000)
    page.clock.install()
    page.click("#breathe-start")
    assert page.text_content("#breath-left") == "60 seconds"
    page.clock.run_for(58_000)
    assert page.text_content("#breath-left") == "2 seconds"
    page.clock.run_for(1_000)
    assert page.text_content("#breath-left") == "1 second"
    page.clock.run_for(1_000)
    assert not page.is_visible("#breathing") and page.is_visible("#thanks") and not page.is_visible("#offer-breathing")


def test_a_refused_answer_is_worded_as_such_and_a_refused_control_is_not(env, open_page):
    """The service refuses this page's own pause and then its answer (expired): each is worded
    as what it was. Refusals of what another device sent (a bad Home Assistant payload, a late
    answer from the watch) say nothing here: the wearer did nothing on this page."""
    app, probe = env
    page = open_page("lost")
    page.wait_for_selector("#pause-state:has-text('Check-ins are on.')", timeout=5_000)
    probe.publish(wearer_topic("lost", "rejected"), encode_rejected(wearer_topic("lost", "control"), "control",
                                                                    "bad", time.time()))
    probe.publish(wearer_topic("lost", "rejected"), encode_rejected(wearer_topic("lost", "checkin/response"),
                                                                    "answer", "expired", time.time()))
    checkin(probe, app, "lost")  # after both refusals, in order on the page's one event stream
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    assert page.text_content("#settings-msg") == "" and page.text_content("#checkin-error") == ""

    page.click("#pause-hour")
    page.wait_for_selector("#settings-msg:has-text('Paused for an hour')", timeout=5_000)
    probe.publish(wearer_topic("lost", "rejected"), encode_rejected(wearer_topic("lost", "control"), "control",
                                                                    "bad", time.time()))
    page.wait_for_selector("#settings-msg:has-text('could not apply that change')", timeout=5_000)
    assert page.text_content("#checkin-error") == ""
    page.click("#labels button[data-label='stressed']")
    page.click("#send")
    page.wait_for_selector("#thanks:not([hidden])", timeout=5_000)
    probe.publish(wearer_topic("lost", "rejected"), encode_rejected(wearer_topic("lost", "checkin/response"),
                                                                    "answer", "expired", time.time()))
    page.wait_for_selector("#thanks-text:has-text(\"your answer wasn't saved\")", timeout=5_000)


DRAFTS = "() => Object.keys(sessionStorage).filter((k) => k.startsWith('anxmon-draft:'))"
PRESSED = "() => [...document.querySelectorAll('#checkin [aria-pressed=\"true\"]')].map((b) => b.textContent)"


def test_a_reload_before_send_keeps_the_choice_in_the_tab_only_until_the_checkin_is_done(env, open_page):
    """The phone drops the tab (or the wearer pulls to refresh) after choosing, before Send: the
    choice was gone. It is kept in the tab's sessionStorage under the check-in's id, sent
    nowhere, and removed once sent, when the check-in closes, and on sign-out."""
    app, probe = env
    c = checkin(probe, app, "draft")
    page = open_page("draft")
    posts = []
    page.on("request", lambda r: r.method == "POST" and posts.append((r.url, r.post_data or "")))
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    page.click("#ratings button[data-rating='4']")
    page.click("#labels button[data-label='stressed']")
    page.reload()
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    assert page.evaluate(PRESSED) == ["4", "Stressed"]
    assert page.evaluate(DRAFTS) == [f"anxmon-draft:{c['id']}"]
    assert page.is_enabled("#send")
    assert [u for u, body in posts if u.endswith("/answer") or "rating" in body] == []  # nothing left the phone
    page.click("#labels button[data-label='stressed']")  # a change of mind is kept too
    page.reload()
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    assert page.evaluate(PRESSED) == ["4"]
    page.click("#send")
    page.wait_for_selector("#thanks:not([hidden])", timeout=5_000)
    assert page.evaluate(DRAFTS) == []
    responses = wearer_topic("draft", "checkin/response")
    assert wait_until(lambda: probe.json_on(responses), 5)
    assert probe.json_on(responses)[-1]["rating"] == 4 and probe.json_on(responses)[-1]["labels"] == []

    # a check-in that closes unanswered takes its choice with it
    checkin(probe, app, "draft", n=2, expires_in_s=3.0)
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    page.click("#ratings button[data-rating='2']")
    assert len(page.evaluate(DRAFTS)) == 1
    page.wait_for_selector("#gone:not([hidden])", timeout=10_000)
    assert page.evaluate(DRAFTS) == []

    # and signing out (a shared phone) leaves nothing behind
    checkin(probe, app, "draft", n=3)
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    page.click("#ratings button[data-rating='1']")
    assert len(page.evaluate(DRAFTS)) == 1
    page.click("#signout")
    page.wait_for_selector("#login:not([hidden])", timeout=5_000)
    assert page.evaluate(DRAFTS) == []


# ------------------------------------------------------------------ 9: closed check-ins


def test_a_checkin_that_closes_or_a_link_to_a_closed_one_says_so(env, open_page):
    app, probe = env
    checkin(probe, app, "gone", expires_in_s=3.0)
    page = open_page("gone")
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    assert page.evaluate("() => document.title").startswith("•")
    page.click("#ratings button[data-rating='2']")
    page.wait_for_selector("#gone:not([hidden])", timeout=10_000)
    assert page.text_content("#gone-text") == "This check-in has closed. No need to answer it. Thank you."
    assert not page.is_visible("#checkin") and not page.is_visible("#nothing")
    page.click("#gone-ok")
    assert page.is_visible("#nothing")
    link = open_page("gone", sign_in=False)
    link.goto(app.url + "/#/checkin/gone-123")
    link.wait_for_selector("#login:not([hidden])", timeout=5_000)
    link.fill("#login-wearer", "gone")
    link.fill("#login-password", PASSWORD)
    link.click("#login-form button")
    link.wait_for_selector("#gone:not([hidden])", timeout=5_000)
    assert link.text_content("#gone-text") == "That check-in has already closed. There's nothing to answer."


@pytest.mark.parametrize("wearer, closed, note", [
    ("asleep", "expired", "This check-in has closed. No need to answer it. Thank you."),
    ("away", "answered", "This check-in was answered on another device. Thank you.")])
def test_a_checkin_that_closed_while_the_phone_was_offline_says_so_when_it_is_back(env, open_page, wearer, closed, note):
    """The page was offline (a phone asleep, a tunnel) when its check-in expired, so the
    ``closed`` event never reached it: back online, the check-in the wearer was answering must
    not vanish without a word (audit D). Answered on the watch meanwhile, it said "has closed"
    as if it had expired: the state the page gets back names the last check-in that closed and
    why."""
    app, probe = env
    c = checkin(probe, app, wearer, expires_in_s=4.0 if closed == "expired" else 900.0)
    page = open_page(wearer)
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    page.click("#ratings button[data-rating='3']")
    page.route("**/events", lambda route: route.abort())  # the page's feed drops and cannot come back
    app.relay.notify(wearer, "bye", None)
    page.wait_for_selector("#status[data-level='offline']", timeout=10_000)
    if closed == "answered":
        probe.publish(wearer_topic(wearer, "checkin/response"), encode_answer(c["id"], 2, []))  # the watch
    assert wait_until(lambda: app.relay.view(wearer).checkin is None, 10)  # it closed meanwhile
    state = client(app, wearer).request(f"/api/w/{wearer}/state")[1]
    assert state["closed"] == {"prompt_id": c["id"], "reason": closed}
    page.unroute("**/events")  # back: the feed's state has no check-in
    page.wait_for_selector("#gone:not([hidden])", timeout=10_000)
    assert page.text_content("#gone-text") == note
    assert not page.is_visible("#checkin") and not page.is_visible("#nothing")


def test_a_checkin_answered_on_another_device_closes_with_a_word(env, open_page):
    """The wearer answered on their watch while the check-in was open on the phone: the card
    vanished without a word (a half-chosen answer with it). It now says so."""
    app, probe = env
    c = checkin(probe, app, "twice")
    page = open_page("twice")
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    page.click("#ratings button[data-rating='2']")
    probe.publish(wearer_topic("twice", "checkin/response"), encode_answer(c["id"], 3, ["fine"]))  # the watch
    page.wait_for_selector("#gone:not([hidden])", timeout=5_000)
    assert page.text_content("#gone-text") == "This check-in was answered on another device. Thank you."
    assert not page.is_visible("#checkin") and not page.is_visible("#nothing")
    assert page.evaluate(DRAFTS) == []


# ------------------------------------------------------------------ 10: pause until morning


def test_nothing_to_answer_promises_no_question_while_paused(env, open_page):
    """Paused until the morning, the page still said "You'll get a gentle question if your body
    seems tense." under "Nothing to answer right now"."""
    page = open_page("rest", timezone_id="Europe/Berlin")
    zone_saved(page, "Europe/Berlin")
    promise = "Nothing to answer right now. You'll get a gentle question if your body seems tense."
    assert page.inner_text("#nothing") == promise
    page.click("#pause-tomorrow")
    page.wait_for_selector("#resume:visible", timeout=5_000)
    assert page.inner_text("#nothing") == "Nothing to answer right now."
    page.click("#resume")
    page.wait_for_selector("#resume", state="hidden", timeout=5_000)
    assert page.inner_text("#nothing") == promise


def test_pause_until_morning_after_midnight_means_this_morning_and_a_pause_ends_on_screen(env, open_page):
    app, _ = env
    page = open_page("night", timezone_id="Pacific/Auckland")
    assert wait_until(lambda: app.settings("night")["timezone"] == "Pacific/Auckland", 5)
    time.sleep(0.3)
    assert page.text_content("#pause-tomorrow") == "Pause until morning"
    hours = page.evaluate("""() => {
        const at = (d, h, m) => new Date(2026, 11, d, h, m).getTime();
        const f = (t) => { const r = nextMorning(t); return [r.getDate(), r.getHours(), r.getMinutes()]; };
        return [f(at(3, 2, 45)), f(at(3, 8, 0)), f(at(3, 23, 10))];
    }""")
    assert hours == [[3, 8, 0], [4, 8, 0], [4, 8, 0]]
    # "Paused until 8:00 AM." then "Check-ins are paused until Sat 7:59 AM.": the pause's end is
    # the server's clock plus whole seconds, a moment before 08:00
    shown = page.evaluate("""() => { const eight = nextMorning(Date.now()).getTime() / 1000;
        renderSettings({...app.settings, paused_until: eight - 0.4});
        return [document.querySelector("#pause-state").textContent, fmtTime(eight)]; }""")
    assert shown[0] == f"Check-ins are paused until {shown[1]}.", shown
    page.evaluate("() => renderSettings({...app.settings, paused_until: Date.now() / 1000 + 2})")
    assert page.text_content("#pause-state").startswith("Check-ins are paused until")
    page.wait_for_selector("#pause-state:has-text('Check-ins are on.')", timeout=5_000)
    assert not page.is_visible("#resume")


def test_a_pause_or_resume_from_another_device_shows_on_the_page(env, open_page):
    """The wearer paused on their watch (or Home Assistant did): the page still said "Check-ins
    are on." (the app only knew the pauses it sent itself). The app now follows every control on
    the wearer's control topic, by the policy's rules: a pause, a snooze, one until resumed, a
    resume, quiet hours; one the service refuses changes nothing."""
    app, probe = env
    page = open_page("watch", timezone_id="Europe/Berlin")
    zone_saved(page, "Europe/Berlin")
    topic = wearer_topic("watch", "control")
    state = lambda: page.text_content("#pause-state")  # noqa: E731
    assert state() == "Check-ins are on."
    probe.publish(topic, encode_control("pause", 1800))  # from the watch
    page.wait_for_selector("#resume:visible", timeout=5_000)
    shown = page.evaluate("() => fmtTime(Math.round(app.settings.paused_until / 60) * 60)")
    assert state() == f"Check-ins are paused until {shown}."
    assert 1790 < app.settings("watch")["paused_until"] - time.time() <= 1800
    probe.publish(topic, encode_control("snooze", 3 * 3600))  # a snooze ending later holds longer
    assert wait_until(lambda: app.settings("watch")["paused_until"] > time.time() + 3 * 3600 - 10, 5)
    probe.publish(topic, encode_control("resume"))  # resume ends both
    page.wait_for_selector("#resume", state="hidden", timeout=5_000)
    assert state() == "Check-ins are on."
    probe.publish(topic, encode_control("pause"))  # until resumed
    page.wait_for_selector("#resume:visible", timeout=5_000)
    assert state() == "Check-ins are paused until you resume them."
    page.click("#resume")  # the page's own resume: its echo on the topic keeps it resumed
    page.wait_for_selector("#resume", state="hidden", timeout=5_000)
    assert wait_until(lambda: len(controls(probe, "watch")) >= 5, 5)
    time.sleep(0.5)
    assert state() == "Check-ins are on." and app.settings("watch")["paused"] is False
    probe.publish(topic, encode_control("pause", 31 * 86400.0))  # refused by the service: nothing changes
    probe.publish(topic, encode_control("quiet_hours", quiet_hours=["21:30", "06:45"], timezone="Europe/Berlin"))
    page.wait_for_function("() => document.querySelector('#quiet-start').value === '21:30'", timeout=5_000)
    assert page.input_value("#quiet-end") == "06:45"
    assert state() == "Check-ins are on." and app.settings("watch")["paused"] is False


BUTTONS = "#pause-hour, #pause-tomorrow, #resume"


def zone_at(hour: int) -> str:
    """An ``Etc/`` time zone in which it is ``hour`` o'clock now (a test about the next morning
    then does not depend on the time of day it runs). ``Etc/GMT-3`` is UTC+3 (POSIX signs)."""
    k = (hour - time.gmtime().tm_hour + 11) % 24 - 11  # the offset from UTC, in -11..12 h
    return "Etc/GMT" if k == 0 else f"Etc/GMT{-k:+d}"


def test_while_paused_the_card_offers_only_what_makes_the_pause_longer(env, open_page):
    """Paused until morning, the card still offered "Pause 1 hour", and pressing it shortened the
    pause to an hour from now (a pause replaces a pause). While paused it offers "Pause 1 more
    hour" (after the pause's end), "Pause until morning" only when that is later, and Resume;
    paused until resumed, only Resume."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    app, probe = env
    zone = zone_at(13)
    page = open_page("longer", timezone_id=zone)
    zone_saved(page, zone)
    offered = lambda: [b.text_content() for b in page.locator(f"{BUTTONS} >> visible=true").all()]  # noqa: E731
    assert offered() == ["Pause 1 hour", "Pause until morning"]
    page.focus("#pause-tomorrow")
    page.keyboard.press("Enter")
    page.wait_for_selector("#settings-msg:has-text('Rest well.')", timeout=5_000)
    assert offered() == ["Pause 1 more hour", "Resume now"]
    assert page.evaluate("() => document.activeElement.id") == "resume"  # the pressed button is gone
    here = datetime.now(ZoneInfo(zone))
    morning = (here + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0).timestamp()
    assert abs(app.settings("longer")["paused_until"] - morning) < 5

    page.click("#pause-hour")
    page.wait_for_selector("#settings-msg:has-text('Take care.')", timeout=5_000)
    assert abs(app.settings("longer")["paused_until"] - (morning + 3600)) < 5  # not an hour from now
    shown = page.evaluate(f"() => fmtTime({morning + 3600})")
    assert page.text_content("#settings-msg") == f"Paused until {shown}. Take care."
    assert page.text_content("#pause-state") == f"Check-ins are paused until {shown}."
    assert offered() == ["Pause 1 more hour", "Resume now"]

    topic = wearer_topic("longer", "control")
    for control, expected in (
            (encode_control("resume"), ["Pause 1 hour", "Pause until morning"]),
            (encode_control("snooze", 600), ["Pause 1 more hour", "Pause until morning", "Resume now"]),
            (encode_control("pause"), ["Resume now"]),  # until resumed: nothing is longer
            (encode_control("resume"), ["Pause 1 hour", "Pause until morning"]),
            (encode_control("pause", 7 * 86400 - 600), ["Resume now"])):  # one more hour: over a week
        probe.publish(topic, control)  # from the watch
        page.wait_for_function(f"(want) => JSON.stringify([...document.querySelectorAll({BUTTONS!r})]"
                               ".filter((b) => !b.hidden).map((b) => b.textContent)) === JSON.stringify(want)",
                               arg=expected, timeout=5_000)


def test_a_checkin_closing_under_the_keyboard_focus_hands_it_to_the_note(env, open_page):
    """Keyboard only, on a rating button, when the check-in expired or was answered on the
    watch: the card went away and the focus with it (the next Tab started at the page's top, a
    screen reader lost its place). The focus goes to the note's OK."""
    app, probe = env
    page = open_page("focus")
    for n, close in ((1, "expire"), (2, "answer")):
        c = checkin(probe, app, "focus", n=n, expires_in_s=3.0 if close == "expire" else 900.0)
        page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
        page.focus("#ratings button[data-rating='3']")
        page.keyboard.press("Enter")
        if close == "answer":
            probe.publish(wearer_topic("focus", "checkin/response"), encode_answer(c["id"], 3, []))
        page.wait_for_selector("#gone:not([hidden])", timeout=10_000)
        assert page.evaluate("() => document.activeElement.id") == "gone-ok", close
        page.keyboard.press("Enter")
        assert not page.is_visible("#gone")


def test_a_change_from_another_device_clears_the_pages_last_confirmation(env, open_page):
    """Paused here ("Paused for an hour. Take care."), then resumed on the watch: the card said
    "Check-ins are on." right above "Paused for an hour. Take care."."""
    app, probe = env
    page = open_page("mixed", timezone_id="Europe/Berlin")
    zone_saved(page, "Europe/Berlin")
    page.click("#pause-hour")
    page.wait_for_selector("#settings-msg:has-text('Paused for an hour. Take care.')", timeout=5_000)
    assert wait_until(lambda: controls(probe, "mixed")[-1:] and controls(probe, "mixed")[-1]["action"] == "pause", 5)
    time.sleep(0.5)  # the page's own pause comes back on the control topic: it stays confirmed
    assert page.text_content("#settings-msg") == "Paused for an hour. Take care."
    probe.publish(wearer_topic("mixed", "control"), encode_control("resume"))  # the watch
    page.wait_for_selector("#pause-state:has-text('Check-ins are on.')", timeout=5_000)
    assert page.text_content("#settings-msg") == ""


# ------------------------------------------------------------------ 14: sign-out


def test_sign_out_offline_keeps_the_wearer_informed_and_an_expired_sign_in_asks_again(env, open_page):
    app, _ = env
    page = open_page("out")
    page.route("**/api/logout", lambda route: route.abort())  # the request never gets through
    page.click("#signout")
    page.wait_for_selector("#page-msg:has-text(\"couldn't sign you out\")", timeout=5_000)
    assert page.is_visible("#home") and not page.is_visible("#login")
    page.unroute("**/api/logout")
    page.click("#signout")
    page.wait_for_selector("#login:not([hidden])", timeout=5_000)
    page.reload()
    page.wait_for_selector("#login:not([hidden])", timeout=5_000)  # really signed out
    # a sign-in that runs out mid-session brings the sign-in form back
    page.fill("#login-wearer", "out")
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button")
    page.wait_for_selector("#home:not([hidden])", timeout=5_000)
    with app._sessions.lock:
        app._sessions.data.clear()
    # the open page's event stream ends with its session (within a second): the page finds
    # itself signed out without a tap (a tap meanwhile gets 401, which signs it out too)
    page.wait_for_selector("#login:not([hidden])", timeout=5_000)


def test_a_post_whose_body_is_not_needed_does_not_spoil_the_next_request(env):
    """Sign-out sent a body ("{}") the server never read; on a kept-alive connection the next
    request then began with it ("{}GET / ...", 501): a reload after signing out showed an error
    page. Every POST body is read now, also when the request is refused before looking at it."""
    import http.client
    import urllib.parse

    app, _ = env
    url = urllib.parse.urlsplit(app.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        for path in ("/api/logout", "/api/w/out/control"):  # refused (401) before the body is read
            conn.request("POST", path, body=b'{"action": "resume"}', headers={"Content-Type": "application/json"})
            res = conn.getresponse()
            res.read()
            assert res.status == 401
            conn.request("GET", "/")
            res = conn.getresponse()
            assert res.status == 200 and DEFAULT_CRISIS_TEXT in res.read().decode()
    finally:
        conn.close()


# ------------------------------------------------------------------ 15: wording


def test_history_and_messages_use_the_words_of_the_buttons(env, open_page):
    app, probe = env
    assert answer_words(None) == "No answer, and that's fine."
    c = checkin(probe, app, "words")
    wearer = client(app, "words")
    assert wearer.request("/api/w/words/answer", {"prompt_id": c["id"], "rating": 2, "labels": ["fine"]})[0] == 200
    h = wearer.request("/api/w/words/history?days=1")[1]
    assert [x["said"] for x in h["checkins"]] == ["You said: 2 of 5 (A little) · I'm fine."]
    page = open_page("words", locale="en-US", timezone_id="America/New_York")
    page.wait_for_selector("#history-list li:has-text(\"You said: 2 of 5 (A little) · I'm fine.\")", timeout=5_000)
    assert wait_until(lambda: app.settings("words")["timezone"] == "America/New_York", 5)
    page.wait_for_selector("#quiet-tz:has-text('New York time')", timeout=5_000)
    page.fill("#quiet-start", "23:30")
    page.fill("#quiet-end", "06:15")
    page.click("#quiet-save")
    assert wait_until(lambda: page.text_content("#settings-msg").replace("\u202f", " ")
                      == "Quiet from 11:30 PM to 6:15 AM.", 5), page.text_content("#settings-msg")
    assert "the level where anxmon checks in" in page.text_content(".legend")
    assert "check-in" in page.get_attribute("#chart", "aria-label")


def test_the_open_checkin_is_open_now_in_the_history_whichever_answer_comes_first(env, open_page):
    """The history's list loaded before the page's live state (a reload, a sign-in) said "No
    answer, and that's fine." of the check-in open on the same screen, until the next one."""
    app, probe = env
    c = checkin(probe, app, "open")
    page = open_page("open", sign_in=False)
    held = []
    page.route("**/events", lambda route: held.append(route))  # the live state comes second
    page.wait_for_selector("#login:not([hidden])", timeout=10_000)
    page.fill("#login-wearer", "open")
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button")
    page.wait_for_selector("#history-list li:has-text(\"No answer, and that's fine.\")", timeout=5_000)
    assert wait_until(lambda: (page.evaluate("() => 0"), held)[1], 5)
    held[0].continue_()
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    assert page.text_content("#history-list li").endswith("Open now.")
    assert client(app, "open").request("/api/w/open/answer", {"prompt_id": c["id"], "rating": 1})[0] == 200
    page.wait_for_selector("#checkin", state="hidden", timeout=5_000)
    page.wait_for_selector("#history-list li:has-text('You said: 1 of 5 (Not at all).')", timeout=5_000)


def test_the_charts_label_reads_as_sentences_to_a_screen_reader(env, open_page):
    """The label ran its parts together ("Over the last 3 days 2 check-ins, 1 answered.")."""
    page = open_page("chart")
    page.wait_for_selector("#chart rect", timeout=5_000)
    assert page.get_attribute("#chart", "aria-label") == "Over the last 3 days: no readings yet; no check-ins."
    label = """(h) => { drawChart({from: 0, to: 86400 * h.days, start: 0, threshold: 2, ...h});
                        return document.querySelector("#chart").getAttribute("aria-label"); }"""
    calm = [[600, 0.2], [1200, 0.4], [1800, 3.0]]
    two = [{"t": 700, "answer": {"rating": 2}}, {"t": 1900, "answer": None}]
    assert page.evaluate(label, {"days": 3, "scores": calm, "checkins": two}) == \
        "Over the last 3 days: your body was mostly near your calm level; 2 check-ins, 1 answered."
    assert page.evaluate(label, {"days": 1, "scores": [[600, 3.0]], "checkins": two[:1]}) == \
        "Over the last day: your body was often above your calm level; 1 check-in, 1 answered."
    assert page.evaluate(label, {"days": 7, "scores": calm, "checkins": [], "threshold": None}) == \
        "Over the last 7 days: no check-ins."


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
def test_the_day_buttons_offer_only_the_days_the_app_keeps(broker, chromium, tmp_path):
    """With ``[app] history_days = 2`` the page still offered "3 days" (pressed: the default)
    and "7 days", and drew 2 days under them."""
    app = start_app(broker.url, tmp_path, accounts={"few": PASSWORD}, recording=None,
                    options=AppOptions(port=0, history_days=2))
    ctx = chromium.new_context(viewport=PHONE)
    try:
        page = ctx.new_page()
        page.goto(app.url)
        page.wait_for_selector("#login:not([hidden])", timeout=10_000)
        page.fill("#login-wearer", "few")
        page.fill("#login-password", PASSWORD)
        page.click("#login-form button")
        page.wait_for_selector("#chart rect", timeout=10_000)
        assert [b.text_content() for b in page.locator("[data-days]:visible").all()] == ["1 day"]
        assert page.get_attribute("[data-days='1']", "aria-pressed") == "true"
        assert page.get_attribute("#chart", "aria-label").startswith("Over the last day:")
    finally:
        ctx.close()
        app.stop()


def test_the_charts_line_breaks_where_there_are_no_readings(env, open_page):
    """Evening readings, the band off all night, morning readings: one line joined them with a
    made-up straight stretch over the night. The line now breaks at a gap of more than 3 bins."""
    page = open_page("chart")
    page.wait_for_selector("#chart rect", timeout=5_000)
    lines = """(scores) => { drawChart({from: 0, to: 86400, start: 0, threshold: 2, days: 1, scores, checkins: []});
        return [...document.querySelectorAll("#chart polyline")]
            .map((e) => e.getAttribute("points").split(" ").length); }"""
    evening = [[t, 0.5] for t in range(3600, 7201, 600)]
    morning = [[t, 0.4] for t in range(50400, 54001, 600)]
    assert page.evaluate(lines, evening + morning) == [7, 7]
    assert page.evaluate(lines, evening[:3] + evening[4:]) == [6]  # a short gap (moving for a while) is joined
    assert page.evaluate(lines, evening + [[43200, 1.0]]) == [7, 2]  # a lone reading: a dot
    assert page.evaluate(lines, []) == []


# ------------------------------------------------------------------ 6, 7, 8, 11, 12, 13: look and feel


def test_a_watch_or_200_percent_zoom_needs_no_sideways_scrolling(env, open_page):
    app, probe = env
    checkin(probe, app, "small")
    page = open_page("small", viewport={"width": 200, "height": 320})
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 200
    for b in page.locator("#ratings button, #signout").all():
        box = b.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 200, (b.text_content(), box)
    assert page.evaluate("() => window.scrollY") < 400  # not left mid-page after signing in
    assert page.evaluate("() => document.activeElement.id") == "checkin-message"
    assert "How are you feeling" in page.text_content("#announce")


def test_the_keyboard_focus_stays_on_the_page_when_the_pressed_button_goes_away(env, open_page):
    """Keyboard only at phone width: Resume, "No quiet hours" and "Breathe for 1 minute" hide
    themselves when pressed, which dropped the focus to the page's top (the next Tab started
    over, a screen reader lost its place); the focus goes to the control beside them. The
    day buttons are toggles from the start (only "3 days" said so before one was pressed)."""
    app, probe = env
    focused = "() => document.activeElement.id"
    zone = zone_at(13)  # paused for an hour, "Pause until morning" (later) stays between it and Resume
    page = open_page("keys", viewport={"width": 360, "height": 740}, timezone_id=zone)
    assert [page.get_attribute(f"[data-days='{d}']", "aria-pressed") for d in (1, 3, 7)] == ["false", "true", "false"]
    zone_saved(page, zone)
    page.focus("#pause-hour")
    page.keyboard.press("Enter")
    page.wait_for_selector("#settings-msg:has-text('Paused for an hour.')", timeout=5_000)  # its answer is in
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "resume"
    page.keyboard.press("Enter")
    page.wait_for_selector("#resume", state="hidden", timeout=5_000)
    assert page.evaluate(focused) == "pause-hour"

    page.wait_for_selector("#quiet-off:not([hidden])", timeout=5_000)  # the first visit saved 22:00-07:00
    page.focus("#quiet-off")
    page.keyboard.press("Enter")
    page.wait_for_selector("#quiet-off", state="hidden", timeout=5_000)
    assert page.evaluate(focused) == "quiet-save"

    checkin(probe, app, "keys")
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    page.focus("#labels button[data-label='anxious']")
    page.keyboard.press("Space")
    page.focus("#send")
    page.keyboard.press("Enter")
    page.wait_for_selector("#breathe-start:visible", timeout=5_000)
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "breathe-start"
    page.keyboard.press("Enter")
    assert page.evaluate(focused) == "breathe-stop"
    page.keyboard.press("Enter")
    assert not page.is_visible("#breathing")


CONTRAST = """(sel) => {
    const lum = (c) => { const v = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map((x) => x / 255)
        .map((x) => x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4);
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
    const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
    const card = getComputedStyle(document.querySelector("#pause-card")).backgroundColor;
    const e = document.querySelector(sel), s = getComputedStyle(e);
    return {border: ratio(s.borderTopColor, card), text: ratio(s.color, s.backgroundColor === "rgba(0, 0, 0, 0)" ? card : s.backgroundColor),
            body: getComputedStyle(document.body).backgroundColor};
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_borders_and_text_are_visible_in_light_and_dark(env, open_page, scheme):
    page = open_page("dark", color_scheme=scheme)
    for sel in ("#pause-hour", "#quiet-start", "#quiet-save"):
        got = page.evaluate(CONTRAST, sel)
        assert got["border"] >= 3.0 and got["text"] >= 4.5, (sel, got)
    page.wait_for_selector("#chart rect", timeout=5_000)
    for sel in ("#pause-state", "#quiet-tz", "#pause-card h2"):  # text on the card
        assert page.evaluate(CONTRAST, sel)["text"] >= 4.5, sel
    assert page.evaluate("""() => { const e = document.querySelector("#chart rect");
        return e && e.getAttribute("fill") === getComputedStyle(document.documentElement).getPropertyValue("--card").trim(); }""")
    body = page.evaluate(CONTRAST, "#pause-hour")["body"]
    assert (body == "rgb(27, 34, 38)") == (scheme == "dark"), body
    # the wearer's own text size is followed
    page.evaluate("() => { document.documentElement.style.fontSize = '32px'; }")
    assert page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)") == 36


def test_the_chosen_rating_shows_in_forced_colours(env, open_page):
    app, probe = env
    checkin(probe, app, "dark", n=2)
    page = open_page("dark", forced_colors="active")
    page.wait_for_selector("#checkin:not([hidden])", timeout=5_000)
    page.click("#ratings button[data-rating='4']")
    style = "(e) => { const s = getComputedStyle(e); return [s.backgroundColor, s.color]; }"
    picked = page.eval_on_selector("#ratings button[data-rating='4']", style)
    other = page.eval_on_selector("#ratings button[data-rating='3']", style)
    assert picked != other, (picked, other)
