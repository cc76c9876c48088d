"""Push notifications through apprise, end to end against real HTTP endpoints on loopback.

apprise's ``json://HOST:PORT/PATH`` posts ``{"version", "title", "message", "type", ...}`` to
``http://HOST:PORT/PATH`` (apprise's custom JSON plugin); the endpoints are tiny
``http.server`` servers the tests start. The MQTT side (a check-in published by the service
reaches the notifier) is covered by ``tests/test_app.py``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monitor.errors import ConfigError
from monitor.push import ANSWERED, FAILED, SENT, PushConfig, PushNotifier, push_label
from tests.test_app import Hook, closed_port
from tests.test_service import wait_until

pytest.importorskip("apprise", reason="push notifications need apprise: pip install apprise")

CHECKIN = {
    "v": 1, "id": "alice-1700000000000", "t": 1_700_000_000.0, "expires_at": 1_700_000_900.0,
    "message": "Your body seems tense right now. How are you feeling?",
    "why": {"indicators": {"HR_Mean": 2.1}, "sentence": "Your heart is beating faster than usual."},
}


def link(wearer: str, prompt_id: str) -> str:
    return f"https://anxmon.example/#/checkin/{prompt_id}"


def checkin(wearer: str, n: int = 0, open_s: float = 900.0) -> dict:
    t = CHECKIN["t"] + 3600.0 * n
    return dict(CHECKIN, id=f"{wearer}-{int(t * 1000)}", t=t, expires_at=t + open_s)


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


@pytest.fixture
def notifiers():
    started: list[PushNotifier] = []
    yield started
    for n in started:
        n.stop()


def test_a_checkin_reaches_a_loopback_webhook_with_message_and_link(hook, tmp_path, notifiers, caplog):
    """One notification per check-in: title, the check-in's message and its link; recorded as
    sent after one attempt. The URL's password never appears in the record or the log."""
    caplog.set_level(logging.DEBUG)
    url = f"json://user:hunter2-secret@127.0.0.1:{hook.port}/notify"
    config = PushConfig(wearers={"alice": [url]})
    notifiers.append(n := PushNotifier(config, link, log_path=tmp_path / "push.sqlite").start())
    assert n.submit("alice", CHECKIN) == 1
    assert n.submit("bob", checkin("bob")) == 0  # bob has no URL: nothing to do
    assert wait_until(lambda: hook.received, 10), n.deliveries()
    got = hook.received[0]
    assert got["path"] == "/notify"
    assert got["json"]["title"] == "anxmon check-in"
    assert CHECKIN["message"] in got["json"]["message"]
    assert "https://anxmon.example/#/checkin/alice-1700000000000" in got["json"]["message"]
    assert wait_until(lambda: n.deliveries()[0]["status"] == SENT, 5)
    row = n.deliveries()[0]
    assert (row["wearer"], row["prompt_id"], row["attempts"], row["error"]) == ("alice", CHECKIN["id"], 1, None)
    assert "hunter2-secret" not in json.dumps(n.deliveries())
    assert not any("hunter2-secret" in r.getMessage() for r in caplog.records)
    # the record is on disk (another process can read it)
    n.stop()
    notifiers.clear()
    from monitor.push import DeliveryLog

    assert DeliveryLog(tmp_path / "push.sqlite").rows("alice")[0]["status"] == SENT


def secret_urls(port: int) -> list[str]:
    """An ntfy topic, a json:// token in the path (and a password), Signal numbers: all secrets."""
    return [f"ntfy://127.0.0.1:{port}/anxmon-alice-s3cr3t-topic",
            f"json://user:hunter2-secret@127.0.0.1:{port}/hook/SECRETPATHTOKEN",
            f"signal://127.0.0.1:{port}/+15551234567/+15559876543"]


SECRETS = ["anxmon-alice-s3cr3t-topic", "SECRETPATHTOKEN", "hunter2-secret", "15551234567", "15559876543"]


def test_push_targets_show_no_topic_token_or_number_in_logs_or_record(hook, tmp_path, notifiers, caplog):
    """The ntfy topic, a token in a json:// path, Signal numbers and a password appear in no log
    line (at DEBUG, apprise's own lines included) and nowhere in ``push.sqlite``: neither when
    delivered nor when retried and given up. Logs and record show ``push_label`` only: scheme,
    server and the URL's number (nothing derived from the secret parts)."""
    caplog.set_level(logging.DEBUG)
    down = closed_port()
    config = PushConfig(wearers={"alice": secret_urls(hook.port), "bob": secret_urls(down)}, attempts=2, backoff_s=0.05)
    notifiers.append(n := PushNotifier(config, link, log_path=tmp_path / "push.sqlite").start())
    assert n.submit("alice", CHECKIN) == 3 and n.submit("bob", checkin("bob")) == 3
    assert wait_until(lambda: [d["status"] for d in n.deliveries()] == [SENT] * 3 + [FAILED] * 3, 20), n.deliveries()
    assert len(hook.received) == 3  # ntfy, json and signal all delivered through apprise
    labels = [d["target"] for d in n.deliveries()]
    assert labels == [push_label(url, i) for urls in (secret_urls(hook.port), secret_urls(down))
                      for i, url in enumerate(urls, start=1)]
    assert all(re.fullmatch(r"(ntfy|json|signal)://127\.0\.0\.1/… \(URL [123]\)", x) for x in labels), labels
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "pushed to alice" in logged and "retrying" in logged and "could not be pushed" in logged
    above_debug = "\n".join(r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)
    assert "could not be pushed" in above_debug
    assert CHECKIN["id"] not in above_debug and checkin("bob")["id"] not in above_debug  # its time: health data
    n.stop()
    notifiers.clear()
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("push.sqlite*"))
    assert "(URL 1)".encode() in stored  # the labels are there
    for secret in SECRETS:
        assert secret not in logged and secret.encode() not in stored, secret


def test_include_message_false_sends_a_neutral_text(hook, notifiers):
    """For services one does not trust with how one feels: no message, still the link."""
    config = PushConfig(wearers={"alice": [f"json://127.0.0.1:{hook.port}/n"]}, include_message=False)
    notifiers.append(n := PushNotifier(config, link).start())
    n.submit("alice", CHECKIN)
    assert wait_until(lambda: hook.received, 10)
    text = hook.received[0]["json"]["message"]
    assert CHECKIN["message"] not in text and "#/checkin/alice-1700000000000" in text


def test_a_down_endpoint_is_retried_with_backoff_then_recorded_failed(notifiers):
    """Connection refused: tried ``attempts`` times, each retry at least the (doubling) backoff
    after the one before, then recorded as failed with the error; the same endpoint back up
    gets the next check-in."""
    port = closed_port()
    tries: list[float] = []
    from monitor.push import _apprise

    apprise = _apprise()

    def send(url, title, body):  # apprise itself, with the time of each attempt noted
        tries.append(time.monotonic())
        a = apprise.Apprise()
        a.add(url)
        return (True, None) if a.notify(body=body, title=title) else (False, "not delivered")

    config = PushConfig(wearers={"bob": [f"json://127.0.0.1:{port}/down"]}, attempts=4, backoff_s=0.1, max_backoff_s=0.3)
    notifiers.append(n := PushNotifier(config, link, send=send).start())
    n.submit("bob", checkin("bob"))
    assert wait_until(lambda: n.deliveries()[0]["status"] == FAILED, 15), n.deliveries()
    row = n.deliveries()[0]
    assert row["attempts"] == 4 and row["error"] and len(tries) == 4
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    for gap, wait in zip(gaps, [0.1, 0.2, 0.3]):  # 0.1, doubling, capped at 0.3
        assert gap >= wait * 0.95, gaps
    assert n.stats.retries == 3 and n.stats.failed == 1 and n.stats.sent == 0

    # the endpoint comes back: the next check-in is delivered
    hook = Hook()
    try:
        n.config = PushConfig(wearers={"bob": [f"json://127.0.0.1:{hook.port}/up"]}, attempts=4, backoff_s=0.1)
        n.submit("bob", checkin("bob", 1))
        assert wait_until(lambda: hook.received, 10)
        assert wait_until(lambda: n.deliveries()[-1]["status"] == SENT, 5)
    finally:
        hook.close()


def test_retries_stop_when_the_checkin_expires(notifiers):
    """A notification is not retried past the check-in's own expiry (the question is stale)."""
    calls = []
    config = PushConfig(wearers={"bob": ["json://127.0.0.1:9/x"]}, attempts=10, backoff_s=1.0)
    notifiers.append(n := PushNotifier(config, link, send=lambda *a: calls.append(a) or (False, "refused")).start())
    # open for 1.5 s: a try at 0, one at 1.0, then 3.0 > 1.5 (the first try may start up to 0.5 s late)
    n.submit("bob", checkin("bob", open_s=1.5))
    assert wait_until(lambda: n.deliveries()[0]["status"] == FAILED, 10)
    assert n.deliveries()[0]["attempts"] == len(calls) == 2


def test_a_checkin_that_expired_while_waiting_for_a_worker_is_not_pushed(notifiers):
    """Every worker was held by a slow service until bob's next check-in had expired; its
    first attempt then went out anyway (only retries looked at the expiry): a buzz for a
    question the app shows as closed. It is recorded as failed, unsent."""
    now = [1_000.0]
    entered, release = threading.Event(), threading.Event()
    calls = []

    def send(url, title, body):
        calls.append(body)
        entered.set()
        release.wait(10)
        return True, None

    config = PushConfig(wearers={"bob": ["json://127.0.0.1:9/x"]}, workers=1)
    notifiers.append(n := PushNotifier(config, link, send=send, clock=lambda: now[0]).start())
    n.submit("bob", checkin("bob", 0))
    assert entered.wait(10)
    n.submit("bob", checkin("bob", 1, open_s=60.0))
    now[0] += 120.0  # the slow send outlasts the second check-in
    release.set()
    assert wait_until(lambda: [d["status"] for d in n.deliveries()] == [SENT, FAILED], 10), n.deliveries()
    late = n.deliveries()[1]
    assert len(calls) == 1 and late["attempts"] == 0 and "expired" in late["error"]
    assert n.stats.failed == 1 and n.stats.sent == 1


def test_a_checkin_answered_meanwhile_is_not_pushed_after_all(notifiers):
    """The notification service was down when the check-in came; the wearer answered it on
    their watch; the retry then buzzed the phone with the question already answered. A
    delivery not through yet is dropped once the check-in has an answer, and recorded so."""
    calls, answered = [], set()

    def send(url, title, body):  # down; meanwhile the wearer answers elsewhere
        calls.append(body)
        answered.add(("bob", checkin("bob")["id"]))
        return False, "refused"

    config = PushConfig(wearers={"bob": ["json://127.0.0.1:9/x"]}, attempts=5, backoff_s=0.1)
    notifiers.append(n := PushNotifier(config, link, send=send,
                                       answered=lambda w, p: (w, p) in answered).start())
    n.submit("bob", checkin("bob"))
    assert wait_until(lambda: n.deliveries()[0]["status"] == ANSWERED, 10), n.deliveries()
    row = n.deliveries()[0]
    assert len(calls) == row["attempts"] == 1 and row["error"] == "refused"
    assert n.stats.answered == 1 and n.stats.retries == 1 and n.stats.failed == 0


def test_a_slow_endpoint_never_holds_up_other_notifications(hook, notifiers):
    """``submit`` returns at once; while bob's endpoint holds its request open, alice's
    notification is delivered by the other worker."""
    release = threading.Event()
    held = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            held.set()
            release.wait(10)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    slow = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        config = PushConfig(wearers={"bob": [f"json://127.0.0.1:{slow.server_address[1]}/slow"],
                                     "alice": [f"json://127.0.0.1:{hook.port}/fast"]}, workers=2)
        notifiers.append(n := PushNotifier(config, link).start())
        n.submit("bob", checkin("bob"))
        assert held.wait(10)
        n.submit("alice", checkin("alice"))  # returns while bob's request is still held open
        assert not release.is_set()
        assert wait_until(lambda: hook.received, 10), "alice waited behind bob's slow endpoint"
        assert n.deliveries("bob")[0]["status"] == "pending"
    finally:
        release.set()
        slow.shutdown()
        slow.server_close()
    assert wait_until(lambda: n.deliveries("bob")[0]["status"] == SENT, 10)


def test_a_url_apprise_cannot_read_is_refused_at_start_without_its_secret(hook):
    """A misspelt scheme (``nfty://``) or a malformed Telegram token: the app started, said push
    was on, and every check-in then failed ``attempts`` times with "apprise does not read this
    URL". Refused when the notifier is made, naming the URL by its label only."""
    for bad, label in (("nfty://ntfy.example.org/anxmon-alice-s3cr3t-topic", "nfty://… (URL 2)"),
                       ("tgram://SECRETPATHTOKEN", "tgram://… (URL 2)")):
        config = PushConfig(wearers={"bob": [f"json://127.0.0.1:{hook.port}/ok"],
                                     "alice": [f"json://127.0.0.1:{hook.port}/ok", bad]})
        with pytest.raises(ConfigError, match="apprise cannot read") as error:
            PushNotifier(config, link)
        assert f"push: wearers.alice: apprise cannot read {label}" in str(error.value)
        assert not any(secret in str(error.value) for secret in SECRETS)
    PushNotifier(PushConfig(wearers={"alice": secret_urls(hook.port)}), link).stop()  # readable URLs pass


def test_a_send_still_running_at_stop_records_its_outcome(monkeypatch, tmp_path):
    """``stop`` waits ``timeout_s`` for the workers; a send to a slow service outlasting it
    then hit the closed record: "Exception in thread anxmon-push-0: sqlite3.ProgrammingError:
    Cannot operate on a closed database", and its outcome was lost."""
    crashed: list = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    entered, release = threading.Event(), threading.Event()

    def slow(url, title, body):
        entered.set()
        release.wait(10)
        return True, None

    config = PushConfig(wearers={"bob": ["json://127.0.0.1:9/x"]}, workers=1)
    n = PushNotifier(config, link, log_path=tmp_path / "push.sqlite", send=slow).start()
    n.submit("bob", checkin("bob"))
    assert entered.wait(10)
    worker = n._threads[0]
    n.stop(timeout_s=0.05)
    release.set()
    worker.join(10)
    assert not worker.is_alive() and not crashed, [c.exc_value for c in crashed]
    assert n.deliveries()[0]["status"] == SENT


def test_push_config_is_checked():
    """Every mistake in [push] is a ConfigError naming the file, the table and the key."""
    from monitor.toml_tables import read_table

    config = read_table(PushConfig, {"wearers": {"alice": "ntfy://host/topic"}, "backoff_s": 2}, "app.toml", "push")
    assert config.urls_for("alice") == ("ntfy://host/topic",) and config.backoff_s == 2.0
    for bad, expected in [({"wearers": {"Alice!": ["ntfy://h/t"]}}, "'wearers': 'Alice!' is not a wearer id"),
                          ({"wearers": {"alice": ["not a url"]}}, "'wearers.alice' must be apprise URLs"),
                          ({"wearers": {"alice": 5}}, "'wearers.alice' must be apprise URLs"),
                          ({"wearers": ["ntfy://h/t"]}, "'wearers' must be a table"),
                          ({"attempts": 0}, "'attempts' must be an integer >= 1, got 0"),
                          ({"attempts": "5"}, "'attempts' must be an integer, got '5'"),
                          ({"workers": True}, "'workers' must be an integer, got True"),
                          ({"backoff_s": -1}, "'backoff_s' must be a number of seconds > 0, got -1.0"),
                          ({"title": 3}, "'title' must be a string, got 3"),
                          ({"include_message": "no"}, "'include_message' must be true or false, got 'no'"),
                          ({"colour": "red"}, "unknown key(s) colour; known keys: attempts, backoff_s,")]:
        with pytest.raises(ConfigError) as info:
            read_table(PushConfig, bad, "app.toml", "push")
        assert str(info.value).startswith("app.toml: [push]: ") and expected in str(info.value), str(info.value)


def test_targets_an_earlier_version_stored_are_overwritten(tmp_path):
    """push.sqlite of an earlier version holds apprise's privacy form of each URL, which keeps
    the ntfy topic: opening it overwrites them, leaving no trace in the file."""
    import sqlite3

    from monitor.push import DeliveryLog

    path = tmp_path / "push.sqlite"
    DeliveryLog(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO deliveries (wearer, prompt_id, target, status, attempts, created_s, updated_s) "
                   "VALUES ('alice', 'p1', 'ntfys://ntfy.example.org/anxmon-alice-6f3b9c', 'sent', 1, 0, 0)")
    log = DeliveryLog(path)
    log.close()
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("push.sqlite*"))
    assert b"anxmon-alice-6f3b9c" not in stored and b"(a URL, not kept)" in stored


def test_the_delivery_record_is_private_to_its_owner(tmp_path):
    """push.sqlite says which wearer was sent a check-in when, and how it went: mode 0600 like
    the service's recording (docs/app.md), with its WAL files, not the umask's 0644."""
    from monitor.push import DeliveryLog

    log = DeliveryLog(tmp_path / "push.sqlite")  # (creating its table writes the WAL)
    files = sorted(tmp_path.glob("push.sqlite*"))
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in files}
    log.close()
    assert len(files) >= 2 and set(modes.values()) == {"0o600"}, modes


def test_finished_deliveries_past_the_retention_are_deleted_at_open(tmp_path):
    """push.sqlite grew by a row per check-in and URL for ever: opening it deletes the deliveries
    that finished more than DELIVERY_RETENTION_S ago, keeping newer ones and any still pending."""
    import sqlite3

    from monitor.push import DELIVERY_RETENTION_S, PENDING, DeliveryLog

    path = tmp_path / "push.sqlite"
    DeliveryLog(path).close()
    now_s = 1.8e9
    old_s, recent_s = now_s - DELIVERY_RETENTION_S - 60, now_s - DELIVERY_RETENTION_S + 60
    with sqlite3.connect(path) as db:
        for prompt_id, status, t_s in [("old-sent", SENT, old_s), ("old-failed", FAILED, old_s),
                                       ("old-pending", PENDING, old_s), ("recent", SENT, recent_s)]:
            db.execute("INSERT INTO deliveries (wearer, prompt_id, target, status, attempts, created_s, updated_s) "
                       "VALUES ('alice', ?, '(a URL, not kept)', ?, 1, ?, ?)", (prompt_id, status, t_s, t_s))
    log = DeliveryLog(path, now_s=now_s)
    kept = sorted(r["prompt_id"] for r in log.rows("alice"))
    log.close()
    assert kept == ["old-pending", "recent"]
