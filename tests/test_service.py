"""The live service (``anxmon run``) against real brokers: nats-server and mosquitto.

Every test runs once per broker kind (the ``broker`` fixture of ``conftest.py``; a missing
broker is skipped locally and fails in CI). Data is the real Empatica E4 recording
Stress-Predict S02 (``../shared/data/stress-predict/S02``), cut into 1 s wire batches by
``Recording.batches`` and published as fast as the broker takes them, with the recording's own
(2022) timestamps. Expected numbers come from the offline reference: a ``WearerMonitor`` fed the
same batches in process (``reference``), which the service must reproduce exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from monitor.config import Config
from monitor.core.pipeline import tick_phase
from monitor.core.wearer import WearerMonitor
from monitor.service import MonitorService, ServiceOptions
from monitor.store import CheckpointStore
from monitor.wire import (
    SampleBatch,
    availability_topic,
    data_topic,
    decode_checkin,
    decode_monitor_state,
    decode_rejected,
    encode_answer,
    encode_batch,
    encode_control,
    monitor_state_topic,
    status_topic,
    wearer_topic,
)
from tests.conftest import data_path, need_broker
from tests.test_demo import processes_mentioning

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEVICE = "e4"


# ------------------------------------------------------------------------------ helpers


@lru_cache(maxsize=1)
def _s02_batches() -> tuple[SampleBatch, ...]:
    from monitor.recordings import read_recording

    return tuple(read_recording(DATA / "stress-predict" / "S02").batches())


def s02_batches() -> tuple[SampleBatch, ...]:
    """Every stream of S02 in 1 s batches, in the order a live device sends them."""
    data_path("stress-predict", "S02")  # skips when ../shared/data is absent
    return _s02_batches()


def messages(wearer: str, batches) -> list[tuple[str, bytes]]:
    return [(data_topic(wearer, DEVICE, b.signal), encode_batch(b)) for b in batches]


def live_monitor(wearer: str, config=None) -> WearerMonitor:
    """A WearerMonitor as the service creates it: with the wearer's own tick phase."""
    return WearerMonitor(wearer, config, tick_phase(wearer, (config or Config()).core.tick_s))


def reference(wearer: str, batches, config=None) -> WearerMonitor:
    """The offline reference: one WearerMonitor fed the same batches in process (``.ticks``)."""
    m = live_monitor(wearer, config)
    m.ticks = [t for b in batches for t in m.update(b)]
    return m


CHECKIN_FROM = 3000  # S02 from minute 10: still 5 min of rest before the Stroop test, and shorter


@lru_cache(maxsize=1)
def first_checkin_index() -> int:
    """Index, in ``s02_batches()[CHECKIN_FROM:]``, of the batch whose tick sends the first
    check-in (default config): found by running the reference, so the tests follow the core."""
    m = live_monitor("s02")
    for i, b in enumerate(_s02_batches()[CHECKIN_FROM:]):
        if any(getattr(d, "sent", False) for t in m.update(b) for d in t.decisions):
            return i
    pytest.fail("the reference sends no check-in on S02 with the default config")


def baseline(state: dict) -> dict[str, tuple[float, float, float]]:
    """Indicator -> (mean, variance, learned seconds) of the Baseline in ``WearerMonitor.get_state()``."""
    _, base = state["scorer"]
    return {name: (st.mean, st.var, st.n_s) for name, st in base.stats.items()}


def assert_same_baseline(got: dict, want: dict) -> None:
    assert set(got) == set(want) and want, (got, want)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), name


class Probe:
    """An MQTT client for tests: subscribes at QoS 1, records every message, publishes.

    ``user`` is a broker user (``monitor`` may use every topic, a wearer only its own).
    """

    def __init__(self, broker, topics=(), user: str = "monitor"):
        self.received: list[tuple[str, bytes, bool]] = []  # (topic, payload, retained)
        self.granted: list = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topics = list(topics)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{user}-{id(self):x}")
        self.client.username_pw_set(user, broker.users[user])
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = lambda c, u, f, rc, p: self.topics and c.subscribe([(t, 1) for t in self.topics])
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if self.topics:
            assert self._subscribed.wait(10), "probe: no SUBACK"
        else:
            assert wait_until(self.client.is_connected, 10), "probe: not connected"

    def _on_subscribe(self, client, userdata, mid, reason_codes, props):
        self.granted = list(reason_codes)
        self._subscribed.set()

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.received if t == topic]

    def json_on(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.on(topic)]

    def topics_seen(self) -> set[str]:
        with self._lock:
            return {t for t, _, _ in self.received}

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def publish_many(self, items, timeout_s: float = 60.0) -> None:
        """Publish (topic, payload) pairs at QoS 1, in order, as fast as the broker takes them."""
        infos = [self.client.publish(t, p, qos=1) for t, p in items]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def start_service(broker, data_dir, config=None, clock=time.time, **options) -> MonitorService:
    options.setdefault("instance", "test")
    options.setdefault("indicator_interval_s", 0.0)
    service = MonitorService(broker.url, data_dir, config, ServiceOptions(**options), clock=clock).start()
    assert service.wait_connected(10), "the service did not connect"
    # its SUBSCRIBE is on the wire right after the CONNACK: wait for the broker's SUBACK (the
    # service notes it in its checkpoint store), else a message published now may reach no one
    assert wait_until(lambda: subscribed(service), 10), "the service's subscriptions were not acknowledged"
    return service


def subscribed(service: MonitorService) -> bool:
    """Whether the broker acknowledged the service's subscriptions (or kept them in its session)."""
    return service.call(lambda s: s._store.meta(s._subscribed_key)) == "1"


def indicators_delivered(svc: MonitorService, probe: "Probe", topic: str, timeout_s: float = 10.0) -> bool:
    """Wait until ``probe`` has every indicators message the service published so far (read on
    the service's worker, once what it received is processed): one wearer's topic."""
    sent = svc.call(lambda s: s.stats.indicators)
    return wait_until(lambda: len(probe.on(topic)) >= sent, timeout_s)


@pytest.fixture
def services():
    """Services started by a test; stopped at its end whatever happens."""
    started: list[MonitorService] = []
    yield started
    for s in started:
        s.stop()


# ------------------------------------------------------------------------------ tests


def test_indicators_rejections_duplicates(broker, tmp_path, services, caplog):
    """Valid data gives the reference's indicators; bad input is refused with a reason on the
    wearer's ``rejected`` topic and the next valid batch is processed; a duplicated batch counts
    once; device availability and last-seen are tracked."""
    caplog.set_level(logging.INFO, logger="anxmon")
    batches = s02_batches()[:600]  # the first ~2 min: every signal, ~20 ticks
    ref = reference("s02", batches)
    assert len(ref.ticks) >= 10
    probe = Probe(broker, [wearer_topic("s02", "indicators"), wearer_topic("s02", "rejected")])
    services.append(svc := start_service(broker, tmp_path / "svc"))

    items = messages("s02", batches)
    eda_topic = data_topic("s02", DEVICE, "eda")
    bad = [
        (eda_topic, b'{"v":1,"seq":"x","t0":1644227574.0,"fs":4.0,"values":[1.5]}', "payload"),
        (eda_topic, b'{"v":1,"seq":7,"t0":1644227574.0,"fs":4.0,"values":[1.25,999.5]}', "range"),
        (eda_topic, b'{"v":1,"wearer":"bob","seq":9,"t0":1644227574.0,"fs":4.0,"values":[1.625]}', "identity"),
        # a day ahead of the wall clock (and of the stream): a device clock gone wrong
        (eda_topic, b'{"v":1,"seq":100000,"t0":%.1f,"fs":4.0,"values":[1.75]}' % (time.time() + 86400), "future"),
        ("anxmon/v1/s02/e4/nonsense", b'{"v":1}', "topic"),
        # nested 5000 deep: orjson refuses it, json ran out of stack and stopped the service
        (eda_topic, b"[" * 5000 + b"]" * 5000, "payload"),
        (wearer_topic("s02", "control"), b"[" * 5000 + b"]" * 5000, "payload"),
    ]
    # bad input in the middle of the stream, each followed by valid batches; one batch twice
    stream = items[:300] + [(t, p) for t, p, _ in bad] + items[300:450] + [items[449]] + items[450:]
    probe.publish(availability_topic("s02", DEVICE), b"online", retain=True)
    probe.publish_many(stream)

    topic = wearer_topic("s02", "indicators")
    assert wait_until(lambda: len(probe.on(topic)) >= len(ref.ticks), 20)
    time.sleep(0.3)
    got = probe.json_on(topic)
    # every reference tick exactly once, in order, with the same score
    assert [g["t"] for g in got] == [t.t for t in ref.ticks]
    for g, t in zip(got, ref.ticks):
        assert g["gate"] == t.score.gate
        if t.score.value is None:
            assert g["score"] is None
        else:
            assert g["score"] == pytest.approx(t.score.value, rel=1e-12)
        assert g["values"] == pytest.approx(t.indicators.values, rel=1e-12)
        assert g["quality"] == t.indicators.quality

    assert wait_until(lambda: len(probe.on(wearer_topic("s02", "rejected"))) >= len(bad), 10)
    rejected = [decode_rejected(p) for p in probe.on(wearer_topic("s02", "rejected"))]
    # (sorted: a broker keeps the order within a topic, not across topics)
    assert sorted((r["topic"], r["reason"]) for r in rejected) == sorted((t, reason) for t, _, reason in bad)
    for r in rejected:
        assert r["error"]  # names what was wrong
        for value in ("1.5", "1.25", "999.5", "1.625", "1.75"):  # never echoes sample values
            assert value not in r["error"], r
            assert not any(value in rec.getMessage() for rec in caplog.records), value
    # logged, too: at most once a minute per wearer and reason
    assert sum("rejected input" in rec.getMessage() for rec in caplog.records) == len({r for _, _, r in bad})
    # (the batches after the last tick may still be on their way when its indicators arrived)
    assert wait_until(lambda: svc.stats.batches >= len(batches), 10), svc.stats
    stats = svc.stats
    assert stats.duplicates == 1
    assert stats.batches == len(batches)  # every valid batch, including those right after bad ones
    assert dict(stats.rejected) == {"payload": 3, "range": 1, "identity": 1, "future": 1, "topic": 1}
    # the service's monitor holds exactly the reference's state (the duplicate was not fed twice)
    assert baseline(svc.wearer_state("s02")) == baseline(ref.get_state())
    device = svc.devices()[("s02", DEVICE)]
    assert device.availability == "online"
    assert device.last_event_s == max(b.end_s for b in batches)
    assert abs(device.last_seen_wall_s - time.time()) < 60
    probe.close()


def test_batches_missing_from_a_stream_are_reported(broker, tmp_path, services, caplog):
    """Batches never processed (a gap in a stream's ``seq``: refused, lost on the way, or
    processed after the last checkpoint before a crash) were counted nowhere the operator could
    see: they are counted, warned about with the wearer, stream and how many, and in the stop
    line."""
    caplog.set_level(logging.INFO, logger="anxmon")
    batches = s02_batches()[:200]
    eda = [b for b in batches if b.signal == "eda"]
    lost = {id(b) for b in eda[10:13]}  # three batches in a row of one stream
    probe = Probe(broker, [])
    services.append(svc := start_service(broker, tmp_path / "svc"))
    probe.publish_many(messages("s02", [b for b in batches if id(b) not in lost]))
    assert wait_until(lambda: svc.stats.batches == len(batches) - len(lost), 20), svc.stats
    svc.stop()
    assert svc.stats.missing == len(lost) and svc.stats.duplicates == 0
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [f"wearer s02: 3 eda batch(es) of device {DEVICE} missing before seq {eda[13].seq} (refused, "
                    "lost on the way, or processed after the wearer's last checkpoint before a crash): a gap in its data"], loud
    assert any("3 missing" in r.getMessage() for r in caplog.records if r.getMessage().startswith("stopped:"))
    probe.close()


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # (mosquitto refuses an ESC in a topic)
def test_a_rejection_logs_nothing_of_the_payload_above_debug(broker, tmp_path, services, caplog):
    """A refused input's WARNING quoted its error, and errors quote the payload: a ``wearer``
    field's text, a ``seq`` or ``v`` of any JSON (a list of samples), another wearer's prompt id
    (the time of that wearer's check-in) in an answer, refused as ``identity``/``payload``, not as
    ``answer``. Above DEBUG the log now names only the wearer, the (valid) topic and the reason;
    the sender still gets the error on its rejected topic, and -vv logs it. A line separator or a
    terminal escape in a topic (both brokers refuse a newline) never reaches a log line."""
    secrets_ = ["i-feel-panic-rising", "heart-racing-now", "71.5", "1644228000000", "forged"]
    bad = [  # (wearer, topic kind, payload, reason): one wearer each (one WARNING a minute per wearer and reason)
        ("w1", "data", b'{"v":1,"wearer":"i-feel-panic-rising","seq":1,"t0":1644227574.0,"fs":4.0,"values":[1.0]}',
         "identity"),
        ("w2", "data", b'{"v":1,"seq":"heart-racing-now","t0":1644227574.0,"fs":4.0,"values":[1.0]}', "payload"),
        ("w3", "data", b'{"v":[71.5,72.25],"seq":1,"t0":1644227574.0,"fs":4.0,"values":[1.0]}', "payload"),
        ("w4", "checkin/response", b'{"v":1,"prompt_id":"s02-1644228000000","rating":4}', "identity"),
        ("w5", "control", b'{"v":[71.5],"action":"pause"}', "payload"),
    ]
    topics = {w: data_topic(w, DEVICE, "eda") if kind == "data" else wearer_topic(w, kind) for w, kind, _, _ in bad}
    caplog.set_level(logging.DEBUG, logger="anxmon")
    probe = Probe(broker, [wearer_topic(w, "rejected") for w, _, _, _ in bad])
    services.append(svc := start_service(broker, tmp_path / "svc"))
    for wearer, _, payload, _ in bad:
        probe.publish(topics[wearer], payload)
    probe.publish("anxmon/v1/w6\u2028WARNING:forged\x1b[2K/e4/eda", b'{"v":1}')
    assert wait_until(lambda: sum(svc.stats.rejected.values()) == len(bad) + 1, 20), svc.stats
    for wearer, _, _, reason in bad:
        assert wait_until(lambda: probe.on(wearer_topic(wearer, "rejected")), 10)
        assert decode_rejected(probe.on(wearer_topic(wearer, "rejected"))[0])["reason"] == reason
    assert "i-feel-panic-rising" in decode_rejected(probe.on(wearer_topic("w1", "rejected"))[0])["error"]

    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    warned = [m for m in above_debug if m.startswith("rejected input")]
    assert len(warned) == len(bad) + 1, warned
    for wearer, _, _, reason in bad:
        assert any(m.startswith(f"rejected input of wearer {wearer} on {topics[wearer]} ({reason})") for m in warned)
    for message in above_debug:
        assert message.isprintable() and not any(s in message for s in secrets_), message
    debug = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "i-feel-panic-rising" in debug and "heart-racing-now" in debug  # -vv logs why
    probe.close()


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # broker-independent logic: one kind
def test_batches_the_core_refuses_are_warned_about_once_a_minute_without_their_error(broker, tmp_path, services, caplog):
    """A device sending EDA at a rate the core's filters cannot take (0.1 Hz) had every batch
    logged at WARNING with the core's error text (any library's: it may quote what it was
    given), on top of the rate-limited line every refusal gets: a flood. Now such a batch is
    logged like every other refusal: one WARNING a minute per wearer and reason, the text at
    DEBUG, and on the wearer's rejected topic."""
    caplog.set_level(logging.DEBUG, logger="anxmon")
    probe = Probe(broker, [wearer_topic("w1", "rejected")])
    services.append(svc := start_service(broker, tmp_path / "svc"))
    t0 = time.time() - 100.0
    batches = [SampleBatch("eda", seq, np.array([1.375, 1.625]), t0=t0 + 20.0 * seq, fs=0.1) for seq in range(3)]
    probe.publish_many(messages("w1", batches))
    assert wait_until(lambda: len(probe.on(wearer_topic("w1", "rejected"))) == len(batches), 20), svc.stats
    rejected = [decode_rejected(p) for p in probe.on(wearer_topic("w1", "rejected"))]
    assert {r["reason"] for r in rejected} == {"unsupported"}
    errors = {r["error"] for r in rejected}
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == [f"rejected input of wearer w1 on {data_topic('w1', DEVICE, 'eda')} (unsupported): -vv logs "
                           f"why, and the sender on {wearer_topic('w1', 'rejected')}"], warned
    debug = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert all(e in debug for e in errors)
    probe.close()


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # broker-independent logic: one kind
def test_indicator_rate_limit_keeps_the_latest(broker, tmp_path, services):
    """With ``indicator_interval_s`` = 2 s and the data published within a second or two, fewer
    indicators than ticks go out, and the last one is the latest tick (held back, then sent)."""
    batches = s02_batches()[:900]
    ref = reference("s02", batches)
    probe = Probe(broker, [wearer_topic("s02", "indicators")])
    services.append(start_service(broker, tmp_path / "svc", indicator_interval_s=2.0))
    probe.publish_many(messages("s02", batches))
    topic = wearer_topic("s02", "indicators")
    assert wait_until(lambda: probe.on(topic) and json.loads(probe.on(topic)[-1])["t"] == ref.ticks[-1].t, 15)
    got = [g["t"] for g in probe.json_on(topic)]
    assert len(got) < len(ref.ticks)
    assert got == sorted(got) and set(got) <= {t.t for t in ref.ticks}


def test_answer_and_controls_are_applied(broker, tmp_path, services, caplog):
    """The check-in of S02 (the reference's first) reaches the wearer's topic; an answer to it is
    applied (the policy learns: confirmed anxiety lowers the threshold offset by step_down), a
    second answer and malformed ones are refused; pause and snooze are applied, a bad control
    is refused."""
    caplog.set_level(logging.DEBUG, logger="anxmon")
    i_sent = first_checkin_index()
    batches = s02_batches()[CHECKIN_FROM: CHECKIN_FROM + i_sent + 1]
    ref = reference("s02", batches)
    sent = [d for t in ref.ticks for d in t.decisions if getattr(d, "sent", False)]
    assert len(sent) == 1
    checkin, rejected = wearer_topic("s02", "checkin"), wearer_topic("s02", "rejected")
    probe = Probe(broker, [checkin, rejected])
    services.append(svc := start_service(broker, tmp_path / "svc"))
    probe.publish_many(messages("s02", batches))
    assert wait_until(lambda: probe.on(checkin), 30), "no check-in arrived"
    prompt = decode_checkin(probe.on(checkin)[0])
    assert prompt["id"] == sent[0].prompt.id and prompt["t"] == sent[0].t_s
    assert prompt["message"] and prompt["why"]["sentence"] and prompt["expires_at"] > prompt["t"]

    response = wearer_topic("s02", "checkin/response")
    probe.publish(response, encode_answer(prompt["id"], rating=4, labels=["anxious"]))  # t: the wearer's now
    probe.publish(response, encode_answer(prompt["id"], rating=2, labels=["fine"]))  # already answered
    probe.publish(response, b'{"v":1,"prompt_id":"s02-1","rating":"four"}')  # rating not an integer
    probe.publish(response, encode_answer("bob-1644229150000", rating=1))  # another wearer's prompt
    # answers and controls come by different subscriptions, which a broker need not keep in
    # order (nats-server: one consumer each): the answers are done before the controls go out
    assert wait_until(lambda: len(probe.on(rejected)) >= 3, 10)
    control = wearer_topic("s02", "control")
    probe.publish(control, encode_control("pause"))
    probe.publish(control, encode_control("explode"))
    probe.publish(control, b'{"v":1,"action":"pause","wearer":"bob"}')
    assert wait_until(lambda: len(probe.on(rejected)) >= 5, 10)  # in order: all before are done
    reasons = [(r["topic"], r["reason"]) for r in map(decode_rejected, probe.on(rejected))]
    assert reasons == [(response, "answer"), (response, "payload"), (response, "identity"),
                       (control, "control"), (control, "identity")]
    policy = svc.wearer_state("s02")["policy"]
    step_down = ref.policy.config.step_down
    assert policy.offset == pytest.approx(-step_down)  # confirmed anxiety: threshold lowered
    assert [(a.prompt_id, a.rating, a.labels, a.learned) for a in policy.answers] == [
        (prompt["id"], 4, ("anxious",), "lower")
    ]
    assert policy.paused_until_s == math.inf and not policy.open_prompts
    newest = max(b.end_s for b in batches)
    probe.publish(control, encode_control("resume"))
    probe.publish(control, encode_control("snooze", duration_s=600))
    assert wait_until(lambda: svc.stats.controls == 3, 10)
    policy = svc.wearer_state("s02")["policy"]
    assert policy.paused_until_s is None
    # the wearer's event time + 600 s: the newest sample plus the wall-clock seconds since the
    # last batch arrived (a fraction of a second to a few here)
    assert newest + 600 <= policy.snoozed_until_s <= newest + 600 + 10
    assert svc.stats.answers == 1 and svc.stats.controls == 3 and svc.stats.checkins == 1
    # answers are logged at DEBUG only (the check that the capture works: they are there)
    assert any("anxious" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    loud = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert loud and not any(word in m for m in loud for word in ("anxious", "fine", "rating=", "explode"))


def test_a_retained_control_is_applied_live_once_and_never_again_from_the_store(broker, tmp_path, services):
    """A control published with retain on (a home-automation rule, a script) is applied when it
    arrives; the broker's stored copy, handed over again when the service subscribes afresh
    (first start, a lost session), is refused, not applied: before, it renewed an old pause (or
    undid a later resume) at every such start. The broker clears the retain flag of live copies
    (MQTT 3.1.1 3.3.1.3); mosquitto and nats-server both do."""
    control, rejected = wearer_topic("s02", "control"), wearer_topic("s02", "rejected")
    probe = Probe(broker, [rejected])
    services.append(svc := start_service(broker, tmp_path / "svc"))
    probe.publish(control, encode_control("pause"), retain=True)
    assert wait_until(lambda: svc.stats.controls == 1, 10)
    assert svc.wearer_state("s02")["policy"].paused_until_s == math.inf
    probe.publish(control, encode_control("resume"))
    assert wait_until(lambda: svc.stats.controls == 2, 10)

    # another instance with its own session subscribes afresh: the stored "pause" comes again
    services.append(fresh := start_service(broker, tmp_path / "fresh", instance="fresh"))
    assert wait_until(lambda: len(probe.on(rejected)) >= 1, 10), "the retained copy never came"
    (refusal,) = map(decode_rejected, probe.on(rejected))
    assert (refusal["topic"], refusal["reason"]) == (control, "control") and "retain" in refusal["error"]
    assert fresh.stats.controls == 0
    assert svc.wearer_state("s02")["policy"].paused_until_s is None
    probe.publish(control, b"", retain=True)  # (clears the broker's copy)


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the service's own handling: one kind
def test_a_wearers_time_zone_missing_from_the_zone_database_is_warned_about_once(broker, tmp_path, services, caplog):
    """A checkpoint keeps the time zone a wearer chose; after a zone database update without it
    the config's zone stands in for quiet hours and the daily cap. That happened silently: an
    operator could not tell why a wearer's quiet hours were off by hours. The restart now logs
    one WARNING per such wearer, naming the wearer and the zones only."""
    data_dir = tmp_path / "svc"
    services.append(first := start_service(broker, data_dir))
    probe = Probe(broker)
    for wearer in ("s02", "s05"):
        probe.publish(wearer_topic(wearer, "control"),
                      encode_control("quiet_hours", quiet_hours=["22:00", "07:00"], timezone="America/New_York"))
    assert wait_until(lambda: first.stats.controls == 2, 10)
    first.stop()
    with CheckpointStore(data_dir / "checkpoints.sqlite") as store:
        blob = store.load_all()["s02"]
        blob["monitor"]["policy"].timezone = "Gone/Nowhere"  # (what a tzdata update leaves of a removed name)
        store.save([("s02", blob, None)], time.time())
    caplog.set_level(logging.INFO, logger="anxmon")
    services.append(second := start_service(broker, data_dir))
    probe.publish_many(messages("s02", s02_batches()[:20]))
    assert wait_until(lambda: second.stats.batches == 20, 10), second.stats
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "zone" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "s02" in warned[0] and "Gone/Nowhere" in warned[0] and "UTC" in warned[0]
    assert second.wearer_state("s05")["policy"].timezone == "America/New_York"  # (a zone it has: no warning)
    probe.close()


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the service's own handling: one kind
def test_one_wearers_bad_message_never_stops_the_service(broker, tmp_path, services, caplog):
    """A time zone that is a folder of the zone database ("Europe": IsADirectoryError) or 300
    characters long (OSError) is refused as ``control``; before, it escaped as an unexpected
    error, and the catch-all's own ``internal`` rejection was not a reason the wire knew: the
    worker died for every wearer, and again after each restart (the message is redelivered).
    Any other failure in processing one message is refused as ``internal``, with neither the
    message's nor the exception's text in the log above DEBUG."""
    from monitor.wire import encode_marker, marker_topic

    caplog.set_level(logging.DEBUG, logger="anxmon")
    rejected = wearer_topic("s02", "rejected")
    probe = Probe(broker, [rejected])
    services.append(svc := start_service(broker, tmp_path / "svc"))
    control = wearer_topic("s02", "control")
    probe.publish(control, encode_control("quiet_hours", quiet_hours=["22:00", "07:00"], timezone="Europe"))
    probe.publish(control, encode_control("quiet_hours", quiet_hours=["22:00", "07:00"], timezone="A" * 300))

    def broken(*args, **kwargs):
        raise RuntimeError("secret value 42.5")

    svc._on_marker = broken  # a bug in one handler
    probe.publish(marker_topic("s02", "phone"), encode_marker(None, "session 3", "therapy session"))
    assert wait_until(lambda: len(probe.on(rejected)) >= 3, 10)
    reasons = [r["reason"] for r in map(decode_rejected, probe.on(rejected))]
    assert reasons == ["control", "control", "internal"]
    probe.publish_many(messages("s02", s02_batches()[:20]))
    assert wait_until(lambda: svc.stats.batches == 20, 10), svc.stats  # still working
    assert svc.failed is None and svc.wearer_state("s02")["policy"].timezone is None
    loud = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert any("RuntimeError" in m for m in loud)
    assert not any("42.5" in m or "AAAA" in m for m in loud)


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the service's own handling: one kind
def test_a_service_that_joins_an_accelerated_simulation_late_takes_it_up(broker, tmp_path, services, caplog):
    """``anxmon simulate --speed 60`` started before the service (or running on through a
    service crash): its data is more than 5 min ahead of the wall clock, and the service has no
    last sample of the stream. Every batch was refused as ``future``, for good; now a stream is
    taken up once 5 min of its data lie there (the first are refused), with a warning, and the
    wearer's other streams follow its time from then on."""
    from dataclasses import replace as _replace

    caplog.set_level(logging.INFO, logger="anxmon")
    batches = [b for b in s02_batches()[:4000] if b.signal in ("eda", "temp")]  # 2 streams, ~10 min
    shift = time.time() + 3600.0 - batches[0].start_s  # an hour ahead of the clock
    ahead = [_replace(b, t0=b.t0 + shift) for b in batches]
    services.append(svc := start_service(broker, tmp_path / "svc"))
    probe = Probe(broker)
    probe.publish_many(messages("s02", ahead))
    probe.close()
    n = len(ahead)
    assert wait_until(lambda: svc.stats.batches + sum(svc.stats.rejected.values()) == n, 30), svc.stats
    refused = svc.stats.rejected["future"]
    assert set(svc.stats.rejected) == {"future"} and 2 * 290 <= refused <= 2 * 300  # ~5 min of each stream
    assert svc.stats.batches == n - refused > 0
    newest = svc.call(lambda s: s._wearers["s02"].live.newest_event_s)
    assert newest == max(b.end_s for b in ahead)  # taken up to the end
    assert sum("taken up again" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the service's own handling: one kind
def test_a_flood_of_device_ids_keeps_memory_bounded(broker, tmp_path, services):
    """A wearer's own account publishing battery levels for ever new device ids grew the service's
    device table without end (200,000 ids: +86 MB). It keeps the 16 heard from most recently."""
    from monitor.service import MAX_DEVICES_PER_WEARER
    from monitor.wire import status_payload, status_topic

    services.append(svc := start_service(broker, tmp_path / "svc"))
    probe = Probe(broker)
    n = 3 * MAX_DEVICES_PER_WEARER
    probe.publish_many([(status_topic("s02", f"d{i}", "battery"), status_payload("battery", 50, time.time()))
                        for i in range(n)])
    probe.publish(status_topic("s02", "bad", "battery"), b'{"v":1,"percent":500}')  # refused: never a device
    probe.close()
    assert wait_until(lambda: sum(svc.stats.rejected.values()) == 1, 10)
    kept = sorted(int(d[1:]) for w, d in svc.devices() if w == "s02")
    assert kept == list(range(n - MAX_DEVICES_PER_WEARER, n))
    # data from ever new device ids, refused as too far ahead: their stream trackers (kept in the
    # wearer's checkpoint) are bounded too (a review: 20,000 ids made a 1.7 MB checkpoint)
    probe = Probe(broker)
    ahead = time.time() + 3600.0
    probe.publish_many([(data_topic("s02", f"f{i}", "hr"), encode_batch(SampleBatch("hr", 0, np.array([70.0]),
                                                                                  t=np.array([ahead]))))
                        for i in range(n)])
    probe.close()
    assert wait_until(lambda: svc.stats.rejected["future"] == n, 10), svc.stats
    trackers = svc.call(lambda s: len(s._wearers["s02"].live.trackers))
    assert trackers <= MAX_DEVICES_PER_WEARER


def test_a_wearer_only_reaches_its_own_topics(broker, tmp_path, services):
    """With our broker configuration, a wearer's credentials read and write only
    ``anxmon/v1/{wearer}/...``: alice cannot feed, pause or read bob, while both are served.

    (The wearers subscribe to ``+`` filters; ``#`` is tested in ``test_wearer_hash_filter``.)
    """
    broker.add_user("alice")
    broker.add_user("bob")
    broker.stop()
    broker.start()
    services.append(svc := start_service(broker, tmp_path / "svc"))
    batches = s02_batches()[:300]
    own = lambda w: [f"anxmon/v1/{w}/+", f"anxmon/v1/{w}/+/+"]  # noqa: E731
    alice = Probe(broker, own("alice") + own("bob") + ["anxmon/v1/+/indicators", monitor_state_topic("test")],
                  user="alice")
    bob = Probe(broker, own("bob"), user="bob")
    bob.publish_many(messages("bob", batches))
    alice.publish_many(messages("alice", batches))
    ind = lambda w: wearer_topic(w, "indicators")  # noqa: E731
    assert wait_until(lambda: alice.on(ind("alice")) and bob.on(ind("bob")), 30)
    # alice tries to write bob's topics: data that would be rejected, and a pause. (nats-server
    # drops such a message; mosquitto also drops alice's connection, and paho reconnects her.)
    for topic, payload in [(data_topic("bob", DEVICE, "eda"), b"not json"),
                           (wearer_topic("bob", "control"), encode_control("pause"))]:
        alice.client.publish(topic, payload, qos=1)
        time.sleep(0.5)
    time.sleep(1.0)  # give anything alice should not get the time to arrive
    alice_topics = alice.topics_seen()
    assert alice_topics <= {t for t, _ in messages("alice", batches)} | {ind("alice")}, alice_topics
    assert not bob.on(wearer_topic("bob", "rejected"))  # alice's garbage never reached the service
    assert svc.stats.rejected == {} and svc.stats.controls == 0
    assert svc.wearer_state("bob")["policy"].paused_until_s is None
    assert wait_until(lambda: svc.stats.batches == 2 * len(batches), 20), svc.stats
    alice.close()
    bob.close()


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # broker-independent: one kind
def test_a_late_answer_after_the_data_stopped_is_refused_as_expired(broker, tmp_path, services):
    """The band goes quiet right after the check-in (S02's first); the wearer answers after the
    check-in's expiry by the wall clock (60 s here: more than the ~20-45 s the tick of the
    check-in is released after its time, so the last sample is still before the expiry). The wearer's event time goes on with the wall
    clock while no data comes, so the answer is late and refused; it used to be dated at the
    last sample, accepted, and learned from."""
    from monitor.core.policy import PolicyConfig

    i_sent = first_checkin_index()
    batches = s02_batches()[CHECKIN_FROM: CHECKIN_FROM + i_sent + 1]
    checkin, rejected = wearer_topic("s02", "checkin"), wearer_topic("s02", "rejected")
    probe = Probe(broker, [checkin, rejected])
    config = Config(policy=PolicyConfig(expiry_s=60.0))
    services.append(svc := start_service(broker, tmp_path / "svc", config=config))
    probe.publish_many(messages("s02", batches))
    assert wait_until(lambda: probe.on(checkin), 30), "no check-in arrived"
    prompt = decode_checkin(probe.on(checkin)[0])
    newest = max(b.end_s for b in batches)
    assert newest < prompt["expires_at"] - 5  # answered right away, it would be accepted
    time.sleep(prompt["expires_at"] + 0.5 - newest)
    probe.publish(wearer_topic("s02", "checkin/response"), encode_answer(prompt["id"], rating=4, labels=["anxious"]))
    assert wait_until(lambda: probe.on(rejected), 10)
    refusal = decode_rejected(probe.on(rejected)[0])
    assert refusal["reason"] == "answer" and "expired" in refusal["error"], refusal
    assert svc.stats.answers == 0 and svc.wearer_state("s02")["policy"].offset == 0.0


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # our log lines: one kind
def test_no_secret_of_a_client_id_is_logged(broker, tmp_path, services, caplog):
    """The service's and a bridge's client ids end in a secret (kept 0600), so that no other
    broker user can take their sessions over; both were logged whole at INFO ("connected to ...
    as anxmon-monitor-main-<secret>"), in every journal and pasted bug report. Now masked."""
    from firmware_bridge.outbox import Outbox
    from firmware_bridge.publisher import Publisher

    caplog.set_level(logging.INFO, logger="anxmon")
    caplog.set_level(logging.INFO, logger="firmware_bridge")
    services.append(svc := start_service(broker, tmp_path / "svc"))
    outbox = Outbox(tmp_path / "bridge" / "outbox.sqlite")
    bridge = Publisher(broker.url, "alice", "h10", outbox).start()
    try:
        assert wait_until(lambda: sum("connected to" in r.getMessage() for r in caplog.records) == 2, 10), caplog.text
        secrets = [(tmp_path / "svc" / "client-id-secret").read_text().strip(), outbox.client_secret()]
    finally:
        bridge.stop()
        outbox.close()
    assert all(len(secret) >= 16 and secret in cid for secret, cid in zip(secrets, [svc.client_id, bridge.client_id]))
    connected = [r.getMessage() for r in caplog.records if "connected to" in r.getMessage()]
    assert any("as anxmon-monitor-test-***" in m for m in connected), connected
    assert any("as anxmon-bridge-alice-h10-***" in m for m in connected), connected
    assert not any(secret in r.getMessage() for secret in secrets for r in caplog.records), caplog.text


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # broker-independent: one kind
def test_a_device_that_counts_again_from_an_old_seq_is_warned_about(broker, tmp_path, services, caplog):
    """A second simulation (or a device with a new outbox) starts its seq at 0 with times before
    the stream's newest: every batch is a duplicate by seq and is dropped. Redeliveries come in
    tens; after LONG_DUPLICATE_RUN in a row the service says so, once, without values."""
    from monitor.service import LONG_DUPLICATE_RUN

    caplog.set_level(logging.INFO, logger="anxmon")
    eda = data_topic("s02", DEVICE, "eda")
    items = [(t, p) for t, p in messages("s02", s02_batches()[:2400]) if t == eda]
    assert len(items) > LONG_DUPLICATE_RUN + 20
    probe = Probe(broker, [])
    services.append(svc := start_service(broker, tmp_path / "svc"))
    probe.publish_many(items)
    probe.publish_many(items[:LONG_DUPLICATE_RUN + 10])  # the same device counting from 0 again
    assert wait_until(lambda: svc.stats.duplicates == LONG_DUPLICATE_RUN + 10, 20), svc.stats
    warned = [r.getMessage() for r in caplog.records if "dropped as duplicates" in r.getMessage()]
    assert len(warned) == 1 and f"{LONG_DUPLICATE_RUN} eda batches in a row from device {DEVICE}" in warned[0]
    probe.close()


@pytest.mark.parametrize("user, password", [("*", "long-enough-password"), ("alice.phone", "long-enough-password"),
                                            ("#", "long-enough-password"), ("bob", 'a"quote"in-it'),
                                            ("bob", "short")])
def test_a_broker_user_that_could_reach_other_wearers_is_refused(tmp_path, user, password):
    """A user name is the wearer id its topics are: ``*`` (nats) or ``#`` would read every
    wearer, ``alice.phone`` would map into alice's subjects on nats; a ``"`` broke nats.conf.
    Refused before any broker starts, with the user named."""
    from monitor.broker import BrokerError, start_broker

    with pytest.raises(BrokerError, match="broker user|password of broker user"):
        start_broker("nats", tmp_path / "b", users={"alice": "alice-long-password", user: password})
    assert not (tmp_path / "b" / "nats.conf").exists()


def test_wearer_hash_filter(broker):
    """A wearer may subscribe to ``anxmon/v1/{wearer}/#`` (its whole tree), and not to another's."""
    broker.add_user("alice")
    broker.stop()
    broker.start()
    alice = Probe(broker, ["anxmon/v1/alice/#"], user="alice")
    try:
        assert [rc.value for rc in alice.granted] == [1]
        alice.publish(data_topic("alice", DEVICE, "eda"), b"x")
        assert wait_until(lambda: alice.on(data_topic("alice", DEVICE, "eda")), 5)
    finally:
        alice.close()


def test_no_wildcard_retained_message_or_will_reaches_another_wearer(broker):
    """A wearer's wildcard filters (``#``, ``anxmon/#``, ``+`` levels, another's ``.../#``) bring
    nothing of another wearer or of the monitor, live or retained (nats-server refuses the
    filters, mosquitto grants them and filters what it delivers); a retained message or a last
    will aimed at another wearer's topic is never stored or sent."""
    broker.add_user("alice")
    broker.add_user("bob")
    broker.stop()
    broker.start()
    battery, control = status_topic("bob", DEVICE, "battery"), wearer_topic("bob", "control")
    own = data_topic("alice", DEVICE, "eda")
    monitor = Probe(broker, ["anxmon/#"])
    monitor.publish(battery, b"bob's", retain=True)
    monitor.publish(monitor_state_topic("test"), b"online", retain=True)
    monitor.publish(status_topic("alice", DEVICE, "battery"), b"alice's", retain=True)
    filters = ["#", "anxmon/#", "anxmon/v1/+/+/battery", "+/+/+/+/+", "anxmon/v1/bob/#", "anxmon/v1/+/control",
               "anxmon/v1/monitor/+/state", "anxmon/v1/alice/#"]
    alice = Probe(broker, filters, user="alice")
    bob = Probe(broker, user="bob")
    try:
        assert alice.granted[-1].value == 1  # her own tree
        bob.publish(data_topic("bob", DEVICE, "eda"), b"bob's data")
        alice.client.publish(battery, b"alice's retained", qos=0, retain=True)
        will = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="alice-will")
        will.username_pw_set("alice", broker.users["alice"])
        will.will_set(control, encode_control("pause"), qos=1, retain=True)
        will.connect(broker.host, broker.port, keepalive=10)
        will.loop_start()
        assert wait_until(will.is_connected, 10)
        will.loop_stop()
        will.socket().close()  # gone without a DISCONNECT: the broker sends the will, if it may
        bob.publish(data_topic("bob", DEVICE, "temp"), b"after")
        assert wait_until(lambda: monitor.on(data_topic("bob", DEVICE, "temp")), 10)
        # (alice may be reconnecting: mosquitto may drop a client that writes another's topic,
        # and a publish while paho reconnects fails: try again until her own message is back)
        for _ in range(10):
            if alice.client.is_connected():
                alice.client.publish(own, b"alice's data", qos=1)
            if wait_until(lambda: alice.on(own), 2):
                break
        assert alice.on(own)
        assert alice.topics_seen() <= {own, status_topic("alice", DEVICE, "battery")}, alice.topics_seen()
        late = Probe(broker, [battery, control])
        assert wait_until(lambda: late.on(battery), 10)
        assert late.on(battery) == [b"bob's"] and not late.on(control)
        assert not monitor.on(control)
        late.close()
    finally:
        for probe in (alice, bob, monitor):
            probe.close()


@pytest.mark.parametrize("mqtt_version", ["3.1.1", "5"])
def test_session_keeps_messages_while_stopped(broker, tmp_path, services, mqtt_version):
    """A clean stop leaves a retained ``offline`` state and a final checkpoint; batches published
    while the service is away wait in its persistent session and are processed after the
    restart, which resumes from the checkpoint: the end state equals the uninterrupted reference."""
    if mqtt_version == "5" and broker.kind == "nats":
        pytest.skip("nats-server speaks MQTT 3.1.1 only (it refuses a v5 CONNECT)")
    batches = s02_batches()[:1500]  # ~5 min
    ref = reference("s02", batches)
    first = start_service(broker, tmp_path / "svc", mqtt_version=mqtt_version, checkpoint_s=3600.0)
    services.append(first)
    probe = Probe(broker, [monitor_state_topic("test")])
    assert wait_until(lambda: probe.on(monitor_state_topic("test")), 5)
    assert decode_monitor_state(probe.on(monitor_state_topic("test"))[-1])["state"] == "online"
    probe.publish_many(messages("s02", batches[:900]))
    assert wait_until(lambda: first.stats.batches == 900, 20)
    first.stop()
    assert wait_until(lambda: decode_monitor_state(probe.on(monitor_state_topic("test"))[-1])["state"] == "offline", 5)
    with CheckpointStore(tmp_path / "svc" / "checkpoints.sqlite") as store:
        saved = store.load_all()["s02"]  # only the final checkpoint can exist (checkpoint_s = 1 h)
    assert baseline(saved["monitor"]) == baseline(reference("s02", batches[:900]).get_state())

    probe.publish_many(messages("s02", batches[900:]))  # nobody is subscribed but the session
    second = start_service(broker, tmp_path / "svc", mqtt_version=mqtt_version, checkpoint_s=3600.0)
    services.append(second)
    assert wait_until(lambda: second.stats.batches == 600, 20), second.stats
    assert baseline(second.wearer_state("s02")) == baseline(ref.get_state())
    assert second.stats.duplicates == 0
    # the retained state says online again (a late subscriber sees it)
    late = Probe(broker, [monitor_state_topic("test")])
    assert wait_until(lambda: late.on(monitor_state_topic("test")), 5)
    assert decode_monitor_state(late.on(monitor_state_topic("test"))[0])["state"] == "online"
    probe.close()
    late.close()


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_service_reconnects_after_a_broker_outage(broker, tmp_path, services):
    """The broker stops for a few seconds and comes back on the same port with its persisted
    data. The service, still running, reconnects by itself (its own backoff: the worker runs
    paho's loop, so reconnecting is the service's job) and processes what the device sends
    afterwards: its baseline ends equal to the offline reference's on the same batches."""
    batches = s02_batches()[:400]
    first, second = batches[:200], batches[200:]
    svc = start_service(broker, tmp_path / "svc", reconnect_min_s=1, reconnect_max_s=2)
    services.append(svc)
    probe = Probe(broker)
    probe.publish_many(messages("s02", first))
    probe.close()
    assert wait_until(lambda: svc.stats.batches == len(first), 30), svc.stats
    broker.stop()
    assert wait_until(lambda: not svc.connected, 10), "the service did not notice the broker going away"
    time.sleep(2.5)  # connection attempts fail meanwhile, with backoff
    broker.start()
    assert svc.wait_connected(15), "the service did not reconnect"
    assert (svc.stats.connects, svc.stats.disconnects) == (2, 1)
    probe = Probe(broker)
    probe.publish_many(messages("s02", second))
    probe.close()
    assert wait_until(lambda: svc.stats.batches == len(batches), 30), svc.stats
    want = reference("s02", batches)
    assert_same_baseline(baseline(svc.wearer_state("s02")), baseline(want.get_state()))


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the service's own loop: one kind
def test_the_service_survives_a_broker_that_accepts_but_never_answers(broker, tmp_path, services):
    """A hung broker (SIGSTOP: a frozen host; the kernel still accepts the TCP connection) or a
    port that is not MQTT never answers the CONNECT. paho gives up after the keepalive and closes
    the socket inside a pass that reports success; the worker went on reading the closed socket
    and died ("file descriptor cannot be a negative integer"). Now it says why it cannot connect,
    retries, and works once the broker answers."""
    import signal as _signal

    batches = s02_batches()[:50]
    broker.process.send_signal(_signal.SIGSTOP)
    try:
        svc = MonitorService(broker.url, tmp_path / "svc", None,
                             ServiceOptions(instance="test", indicator_interval_s=0.0, keepalive_s=1,
                                            reconnect_min_s=1, reconnect_max_s=1)).start()
        services.append(svc)
        time.sleep(4.0)  # two keepalives and more: paho has closed the first attempt
        assert svc.failed is None, svc.failed
        assert not svc.connected
    finally:
        broker.process.send_signal(_signal.SIGCONT)
    assert svc.wait_connected(15), "the service did not connect once the broker answered"
    assert wait_until(lambda: subscribed(svc), 10), "the service's subscriptions were not acknowledged"
    probe = Probe(broker)
    probe.publish_many(messages("s02", batches))
    probe.close()
    assert wait_until(lambda: svc.stats.batches == len(batches), 30), svc.stats
    assert svc.failed is None


def test_a_broker_restarted_without_its_sessions_and_hung_gets_our_subscriptions_again(tmp_path):
    """mosquitto restarted without persistence, and hung when the service comes back: paho gives
    up on the CONNECT, the broker takes it late and makes an empty session. The next connect
    reports a session present; the service trusted its note that the session held its
    subscriptions and stayed connected but deaf (a review found it). The note is dropped when a
    CONNECT goes unanswered."""
    import signal as _signal
    import socket

    from monitor.broker import find_executable

    need_broker("mosquitto")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")

    def mosquitto() -> subprocess.Popen:
        proc = subprocess.Popen([find_executable("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        assert wait_until(lambda: _listening(port), 10)
        return proc

    first = mosquitto()
    second = None
    svc = MonitorService(f"mqtt://127.0.0.1:{port}", tmp_path / "svc", None,
                         ServiceOptions(instance="t", keepalive_s=1, reconnect_min_s=1, reconnect_max_s=1)).start()
    try:
        assert svc.wait_connected(10)
        assert wait_until(lambda: subscribed(svc), 5)
        first.terminate()
        first.wait(10)
        second = mosquitto()
        second.send_signal(_signal.SIGSTOP)
        time.sleep(4.0)  # paho gives up on the CONNACK (keepalive 1 s), more than once
        second.send_signal(_signal.SIGCONT)
        assert wait_until(lambda: svc.stats.connects == 2, 15), "no reconnect"
        time.sleep(1.0)
        # the resubscription's SUBACK (a session-less reconnect clears the note; a service that
        # kept it without subscribing again would lose the data below)
        assert wait_until(lambda: subscribed(svc), 10)
        fake = type("B", (), {"host": "127.0.0.1", "port": port, "users": {"monitor": "any"}})()
        probe = Probe(fake)
        batches = s02_batches()[:30]
        probe.publish_many(messages("s02", batches))
        probe.close()
        assert wait_until(lambda: svc.stats.batches == len(batches), 10), svc.stats
    finally:
        svc.stop()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(_signal.SIGCONT)
                proc.terminate()
                proc.wait(10)


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # broker-independent logic: one kind
def test_no_checkin_from_stale_data(broker, tmp_path, services):
    """Live data, then an hour-long outage after which the device's backlog arrives: the service
    sends no check-in from that backlog (its ticks are ``stale``), where the uninterrupted
    reference sends one. The wall clock is injected (FakeClock) so no test waits an hour."""
    i_sent = first_checkin_index()
    batches = s02_batches()[CHECKIN_FROM: CHECKIN_FROM + i_sent + 200]
    live, backlog = batches[: i_sent - 1500], batches[i_sent - 1500:]
    clock = FakeClock(live[0].end_s + 1.0)
    probe = Probe(broker, [wearer_topic("s02", "indicators"), wearer_topic("s02", "checkin")])
    services.append(svc := start_service(broker, tmp_path / "svc", clock=clock))
    # live: the clock follows the data (1 s behind the newest sample), a few batches at a time
    for i in range(0, len(live), 200):  # 200 batches: ~40 s of data
        chunk = live[i:i + 200]
        clock.now = chunk[-1].end_s + 1.0
        probe.publish_many(messages("s02", chunk))
        assert wait_until(lambda: svc.stats.batches == i + len(chunk), 10)
    assert wait_until(lambda: probe.on(wearer_topic("s02", "indicators")), 5)
    # an hour later the backlog arrives in a burst
    clock.now = backlog[-1].end_s + 3600.0
    probe.publish_many(messages("s02", backlog))
    assert wait_until(lambda: svc.stats.batches == len(batches), 20)
    assert indicators_delivered(svc, probe, wearer_topic("s02", "indicators"))
    time.sleep(0.3)
    assert not probe.on(wearer_topic("s02", "checkin"))
    indicators = probe.json_on(wearer_topic("s02", "indicators"))
    assert all(g["gate"] != "stale" for g in indicators if g["t"] < live[-1].end_s - 60)  # live: never stale
    late = [g for g in indicators if g["t"] > live[-1].end_s]  # ticks only the backlog can release
    assert late and all(g["gate"] in ("stale", "warmup", "motion", "poor_quality") for g in late)
    assert sum(g["gate"] == "stale" for g in late) > len(late) // 2
    assert svc.stats.checkins == 0 and not svc.stats.suppressed


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # broker-independent logic: one kind
def test_long_batches_on_time_are_not_stale(broker, tmp_path, services):
    """A device that sends 120 s batches (7,680 BVP samples: within the wire's 10,000), each
    arriving a second after its last sample: its ticks come out up to two batches after their
    time, which is on time for it. Before, the fixed 120 s gate marked ~20 % of them stale, so
    no check-in could come from them."""
    data_path("stress-predict", "S02")
    from monitor.recordings import read_recording

    rec = read_recording(DATA / "stress-predict" / "S02")
    batches = [b for b in rec.batches(120.0) if b.start_s < rec.start_s + 1800]
    clock = FakeClock(batches[0].end_s + 1.0)
    probe = Probe(broker, [wearer_topic("s02", "indicators")])
    services.append(svc := start_service(broker, tmp_path / "svc", clock=clock))
    for i, b in enumerate(batches):  # in time order, each when its last sample is a second old
        clock.now = max(clock.now, b.end_s + 1.0)
        probe.publish_many(messages("s02", [b]))
        assert wait_until(lambda: svc.stats.batches == i + 1, 10), svc.stats
    assert indicators_delivered(svc, probe, wearer_topic("s02", "indicators"))
    gates = [g["gate"] for g in probe.json_on(wearer_topic("s02", "indicators"))]
    assert len(gates) > 200  # 30 min of 5 s ticks, less the last held back
    assert "stale" not in gates, gates.count("stale")


def test_a_wearer_cannot_take_over_the_services_session(broker, tmp_path, services):
    """Any broker user may connect with any client id. A wearer who connected as the service
    (once ``anxmon-monitor-{instance}``, documented and guessable), clean session off, took its
    session, unsubscribed it and left: the service reconnected to a session without
    subscriptions, trusted its note that it had subscribed, and received nothing from anyone,
    silently, even after a restart. Now its client id ends in a secret kept in the data
    directory (0600, stable across restarts): the wearer's connection is another client."""
    broker.add_user("mallory")
    broker.stop()
    broker.start()
    services.append(svc := start_service(broker, tmp_path / "svc"))
    secret = (tmp_path / "svc" / "client-id-secret")
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    assert svc.client_id == f"anxmon-monitor-test-{secret.read_text().strip()}" and len(secret.read_text().strip()) == 32
    attacker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anxmon-monitor-test", clean_session=False)
    attacker.username_pw_set("mallory", broker.users["mallory"])
    attacker.connect(broker.host, broker.port, keepalive=10)
    attacker.loop_start()
    assert wait_until(attacker.is_connected, 10)
    attacker.unsubscribe(["anxmon/v1/+/+/+", "anxmon/v1/+/control"])
    time.sleep(0.5)
    attacker.disconnect()
    attacker.loop_stop()
    batches = s02_batches()[:20]
    probe = Probe(broker)
    probe.publish_many(messages("s02", batches))
    assert wait_until(lambda: svc.stats.batches == len(batches), 10), svc.stats
    assert svc.stats.connects == 1  # never kicked off
    svc.stop()
    again = MonitorService(broker.url, tmp_path / "svc", None, ServiceOptions(instance="test"))
    assert again.client_id == svc.client_id  # the broker keeps its session across restarts


def test_an_upgrade_moves_from_the_old_guessable_session_and_loses_nothing(broker, tmp_path, services):
    """Earlier versions' session (client id ``anxmon-monitor-{instance}``, subscribed to every
    wearer) holds what the devices sent while the service was stopped for the upgrade. The new
    version takes it over first, then deletes that session, which would otherwise be stored for
    no one (and stay open to a wearer who guesses its id)."""
    legacy_id = "anxmon-monitor-test"
    old = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=legacy_id, clean_session=False)
    old.username_pw_set("monitor", broker.users["monitor"])
    subscribed = threading.Event()
    old.on_subscribe = lambda *a: subscribed.set()
    old.connect(broker.host, broker.port, keepalive=10)
    old.loop_start()
    old.subscribe([("anxmon/v1/+/+/+", 1), ("anxmon/v1/+/control", 1)])
    assert subscribed.wait(10)
    old.disconnect()
    old.loop_stop()
    data_dir = tmp_path / "svc"
    data_dir.mkdir()
    with CheckpointStore(data_dir / "checkpoints.sqlite") as store:  # the old version's note
        store.set_meta(f"subscribed {broker.host}:{broker.port} {legacy_id}", "1")
    batches = s02_batches()[:40]
    probe = Probe(broker)
    probe.publish_many(messages("s02", batches[:30]))  # while the service is stopped: queued for the old session
    services.append(svc := start_service(broker, data_dir))
    assert wait_until(lambda: svc.stats.batches == 30, 15), svc.stats
    probe.publish_many(messages("s02", batches[30:]))  # and afterwards, on the new session
    assert wait_until(lambda: svc.stats.batches == 40, 10), svc.stats
    time.sleep(0.5)
    assert svc.stats.batches == 40 and svc.stats.duplicates == 0  # each once
    with CheckpointStore(data_dir / "checkpoints.sqlite") as store:
        assert store.meta(f"subscribed {broker.host}:{broker.port} {legacy_id}") is None
    present = []
    check = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=legacy_id, clean_session=False)
    check.username_pw_set("monitor", broker.users["monitor"])
    check.on_connect = lambda c, u, flags, rc, p: present.append(flags.session_present)
    check.connect(broker.host, broker.port, keepalive=10)
    check.loop_start()
    assert wait_until(lambda: present, 10)
    check.disconnect()
    check.loop_stop()
    assert present == [False]  # the old session is gone


def _launch(broker, data_dir: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "-v", "run", "--broker", broker.url, "--data-dir", str(data_dir),
         "--instance", "crash", "--indicator-interval-s", "0", *extra],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _state_after(probe: Probe, topic: str, t_s: float) -> list[dict]:
    """Monitor states published after ``t_s`` (the last will has no ``t``: it counts as after)."""
    return [s for s in map(decode_monitor_state, probe.on(topic)) if s.get("t", math.inf) >= t_s]


def _checkpoint(data_dir: Path) -> dict | None:
    path = data_dir / "checkpoints.sqlite"
    if not path.exists():
        return None
    with CheckpointStore(path) as store:
        return store.load_all().get("s02")


def _covers(saved: dict | None, batches) -> bool:
    """Whether a checkpoint holds every stream up to the last batch of ``batches``."""
    if saved is None:
        return False
    last = {}
    for b in batches:
        last[b.signal] = b.seq
    trackers = saved["live"].trackers
    return all(trackers.get((DEVICE, sig)) is not None and trackers[(DEVICE, sig)].stats.last_seq == seq
               for sig, seq in last.items())


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the service's checkpointing: one kind
def test_a_pause_survives_a_crash_right_after_it(broker, tmp_path, services):
    """A pause (like an answer or a sent check-in) is checkpointed before its acknowledgement
    goes out. Before, it waited for the wearer's next checkpoint (``--checkpoint-s``, here an
    hour): SIGKILL a moment after the pause, and the restarted service had forgotten it (and
    would send check-ins during it) though the broker had been told the message was done."""
    batches = s02_batches()[:50]
    data_dir, log = tmp_path / "svc", tmp_path / "service.log"
    state = monitor_state_topic("crash")
    probe = Probe(broker, [state])
    first = _launch(broker, data_dir, log, "--checkpoint-s", "3600")
    try:
        assert wait_until(lambda: "running" in log.read_text(), 30), log.read_text()
        # "running" comes after the CONNACK; the retained online state is published after the
        # SUBSCRIBE on the same connection: once it is here, the service's subscriptions are
        assert wait_until(lambda: any(s["state"] == "online" for s in map(decode_monitor_state, probe.on(state))),
                          30), log.read_text()
        time.sleep(0.3)
        probe.publish_many(messages("s02", batches))
        probe.publish(wearer_topic("s02", "control"), encode_control("pause"))
        probe.close()
        assert wait_until(lambda: "s02: pause" in log.read_text(), 20), log.read_text()
        # (logged before its checkpoint is written: with --checkpoint-s 3600 only the pause's own
        # checkpoint can hold it; kill once it is on disk, however slow the disk)
        def paused_on_disk() -> bool:
            saved = _checkpoint(data_dir)
            return saved is not None and saved["monitor"]["policy"].paused_until_s == math.inf

        assert wait_until(paused_on_disk, 10), log.read_text()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    services.append(svc := start_service(broker, data_dir, instance="crash"))
    assert svc.wearer_state("s02")["policy"].paused_until_s == math.inf


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the service's checkpointing: one kind
def test_a_new_wearers_batches_lost_in_a_crash_before_its_second_checkpoint_are_reported(broker, tmp_path, services):
    """A new wearer's first checkpoint came up to ``--checkpoint-s`` after its first batch (here
    an hour): SIGKILL before it, and the batches processed (and acknowledged) so far were lost
    without a word: the restarted service started the wearer afresh and saw no gap in its
    streams. A new wearer is now checkpointed on its first batch, so the restart counts what was
    lost after that as ``missing``, as for any wearer."""
    import sqlite3

    batches = s02_batches()[:150]
    first, lost, after = batches[:10], batches[10:100], batches[100:]
    data_dir, log = tmp_path / "svc", tmp_path / "service.log"
    state = monitor_state_topic("crash")
    probe = Probe(broker, [state])

    def recorded() -> int:
        with sqlite3.connect(f"file:{data_dir / 'recordings.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM raw").fetchone()[0]

    proc = _launch(broker, data_dir, log, "--checkpoint-s", "3600", "--record-raw")
    try:
        assert wait_until(lambda: any(s["state"] == "online" for s in map(decode_monitor_state, probe.on(state))),
                          30), log.read_text()
        time.sleep(0.3)
        probe.publish_many(messages("s02", first))
        assert wait_until(lambda: _checkpoint(data_dir) is not None, 10), log.read_text()
        saved = _checkpoint(data_dir)["live"].trackers
        probe.publish_many(messages("s02", lost))
        # processed, then acknowledged right after its rows were committed
        assert wait_until(lambda: recorded() == len(first) + len(lost), 20), log.read_text()
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    probe.close()
    services.append(svc := start_service(broker, data_dir, instance="crash"))
    assert svc.resumed_wearers == 1
    sender = Probe(broker, [])
    sender.publish_many(messages("s02", after))
    sender.close()
    assert wait_until(lambda: svc.stats.batches == len(after), 20), svc.stats
    # per stream the checkpoint holds: the batches processed after it, up to the first one after the restart
    lost_after_checkpoint = sum(
        1 for b in first + lost
        if (DEVICE, b.signal) in saved and b.seq > saved[(DEVICE, b.signal)].stats.last_seq
        and any(a.signal == b.signal for a in after))
    # (the streams whose first batch the worker had processed when it wrote that checkpoint: a
    # stream that starts after it is first written with the next one, an hour later here)
    assert lost_after_checkpoint > 0
    assert svc.stats.missing == lost_after_checkpoint, (svc.stats.missing, len(lost))


def test_sigkill_resumes_from_checkpoint_and_sigterm_stops_cleanly(broker, tmp_path):
    """``anxmon run`` as its own process: SIGKILL mid-stream, restart, and the wearer resumes from
    the checkpoint with the same baseline (the end state equals the uninterrupted reference);
    the last will says ``offline`` after the kill. SIGTERM then stops it cleanly: exit 143, a final
    checkpoint (the only one of the second run) and a retained ``offline`` state."""
    batches = s02_batches()[:3600]  # 12 min; the first 8 before the crash (baseline warm-up: 5 min)
    part_a, part_b = batches[:2400], batches[2400:]
    ref_a, ref = reference("s02", part_a), reference("s02", batches)
    data_dir, log = tmp_path / "svc", tmp_path / "service.log"
    state_topic = monitor_state_topic("crash")
    probe = Probe(broker, [state_topic, wearer_topic("s02", "indicators")])
    try:
        t_launch = time.time()
        first = _launch(broker, data_dir, log, "--checkpoint-s", "0.5")
        assert wait_until(lambda: any(s["state"] == "online" for s in _state_after(probe, state_topic, t_launch)), 30), log.read_text()
        probe.publish_many(messages("s02", part_a))
        assert wait_until(lambda: _covers(_checkpoint(data_dir), part_a), 30), log.read_text()
        before = _checkpoint(data_dir)
        assert_same_baseline(baseline(before["monitor"]), baseline(ref_a.get_state()))
        assert any(n_s >= 300 for _, _, n_s in baseline(before["monitor"]).values())  # past warm-up
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # the broker publishes the last will: retained offline, without a time
        assert wait_until(lambda: any(s["state"] == "offline" and "t" not in s for s in _state_after(probe, state_topic, t_launch)), 10)

        t_launch = time.time()
        second = _launch(broker, data_dir, log, "--checkpoint-s", "3600")
        assert wait_until(lambda: any(s["state"] == "online" for s in _state_after(probe, state_topic, t_launch)), 30), log.read_text()
        probe.publish_many(messages("s02", part_b))
        indicators = wearer_topic("s02", "indicators")
        assert wait_until(lambda: probe.on(indicators) and json.loads(probe.on(indicators)[-1])["t"] == ref.ticks[-1].t, 30), log.read_text()
        # the ticks after the restart score exactly as without the crash (a fresh start would
        # be warming up its baseline again)
        after = {g["t"]: g for g in probe.json_on(indicators) if g["t"] > ref_a.ticks[-1].t}
        expected = [t for t in ref.ticks if t.t > ref_a.ticks[-1].t]
        assert sorted(after) == [t.t for t in expected]
        assert any(t.score.value is not None for t in expected)
        for t in expected:
            assert after[t.t]["gate"] == t.score.gate and after[t.t]["score"] == pytest.approx(t.score.value, rel=1e-12)
        assert _covers(_checkpoint(data_dir), part_a) and not _covers(_checkpoint(data_dir), part_b)

        t_term = time.time()
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 128 + signal.SIGTERM, log.read_text()
        assert wait_until(lambda: any(s["state"] == "offline" and "t" in s for s in _state_after(probe, state_topic, t_term)), 10)
        final = _checkpoint(data_dir)
        assert _covers(final, part_b)  # the final checkpoint on SIGTERM
        assert_same_baseline(baseline(final["monitor"]), baseline(ref.get_state()))
        assert final["monitor"]["policy"] == ref.get_state()["policy"]
    finally:
        for p in ("first", "second"):
            proc = locals().get(p)
            if proc is not None and proc.poll() is None:
                proc.kill()
        probe.close()
    text = log.read_text()
    assert "resumed 1 wearer(s)" in text
    assert "stopped after" in text


def test_simulated_wearers_anxious_gets_a_checkin_calm_and_exercise_none(broker, tmp_path, services):
    """The demo scenario's three simulated wearers (``firmware_bridge.simulator``, seed 7), 30
    simulated minutes published as fast as the broker takes them: the anxious wearer gets a
    check-in on its own topic during its first anxiety episode (10-15 min, plus 3 min for
    arousal to settle: the simulator's ``DEFAULT_GRACE_S``); the calm wearer and the one who
    walks and runs (10-27 min) get none. The ground truth comes from ``ground_truth``."""
    from firmware_bridge.sim_scenario import load_scenario
    from firmware_bridge.simulator import DEFAULT_GRACE_S, Simulation, ground_truth, make_wearers

    seconds, t0 = 1800, 1_700_038_800.0  # 2023-11-15 09:00 UTC: outside the default quiet hours
    scenario = load_scenario("demo")
    wearers = make_wearers(scenario, 3, seed=7, start_unix=t0)
    kinds = {w.wearer_id: w.kind.name for w in wearers}
    assert sorted(kinds.values()) == ["anxious", "calm", "exercise"]
    truth = ground_truth(scenario, wearers, seconds, seed=7)
    probe = Probe(broker, ["anxmon/v1/+/checkin"])
    services.append(svc := start_service(broker, tmp_path / "svc", indicator_interval_s=1.0))
    stats = Simulation(wearers, broker.url, speed=math.inf).run(seconds)
    assert stats.acked == stats.batches > 0
    assert wait_until(lambda: svc.stats.batches + svc.stats.duplicates >= stats.acked, 30), (svc.stats, stats)
    sent = svc.call(lambda s: s.stats.checkins)  # on the worker: once what it received is processed
    assert wait_until(lambda: len(probe.received) >= sent, 10), (sent, probe.topics_seen())
    time.sleep(0.3)
    prompts = {w: [decode_checkin(p) for p in probe.on(wearer_topic(w, "checkin"))] for w in kinds}
    by_kind = {kinds[w]: p for w, p in prompts.items()}
    assert by_kind["calm"] == [] and by_kind["exercise"] == []
    anxious = next(w for w, k in kinds.items() if k == "anxious")
    episodes = [e for e in truth["episodes"] if e["wearer"] == anxious and e["kind"] == "anxiety"]
    assert episodes and by_kind["anxious"], f"no check-in for the anxious wearer: {svc.stats}"
    for p in by_kind["anxious"]:
        assert p["id"].startswith(f"{anxious}-")
        assert any(e["start_s"] <= p["t"] <= e["end_s"] + DEFAULT_GRACE_S for e in episodes), (p["t"] - t0)
    assert set(probe.topics_seen()) == {wearer_topic(anxious, "checkin")}
    assert sum(svc.stats.rejected.values()) == 0


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` handles ``sig`` itself (Linux: SigCgt of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def test_sigterm_during_start_up_takes_the_clean_path(tmp_path):
    """SIGTERM as soon as ``anxmon run`` handles it (imports, no file yet): exit 143 and one line,
    nothing written (it was killed: -15). SIGTERM while the broker is not reachable yet: the
    clean stop at once, final checkpoint and 143 (it waited out 10 s, then exited 0)."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"mqtt://monitor:password1@127.0.0.1:{s.getsockname()[1]}"
    data_dir, log = tmp_path / "data", tmp_path / "run.log"
    command = [sys.executable, "-m", "monitor.cli", "run", "--broker", url, "--data-dir", str(data_dir)]
    early = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             cwd=ROOT, text=True)
    assert wait_until(lambda: early.poll() is not None or _catches(early.pid, signal.SIGTERM), 30)
    os.kill(early.pid, signal.SIGTERM)
    out, err = early.communicate(timeout=30)
    assert (early.returncode, out, err) == (128 + signal.SIGTERM, "", "anxmon: terminated\n")
    assert not data_dir.exists()

    unconnected = subprocess.Popen(command, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=ROOT)
    try:
        assert wait_until(lambda: "cannot reach broker" in log.read_text(), 30), log.read_text()
        os.kill(unconnected.pid, signal.SIGTERM)
        assert unconnected.wait(5) == 128 + signal.SIGTERM, log.read_text()
    finally:
        if unconnected.poll() is None:
            unconnected.kill()
    text = log.read_text()
    assert "final checkpoint written" in text and "running" not in text and "Traceback" not in text
    with CheckpointStore(data_dir / "checkpoints.sqlite") as store:  # written and closed whole
        assert store.load_all() == {}


def test_embedded_broker_by_default(tmp_path):
    """``anxmon run`` without ``--broker`` starts nats-server itself, says where it listens and
    where the credentials are (a 0600 file, the password never printed), serves on it, and on
    SIGTERM stops cleanly and stops the broker."""
    from types import SimpleNamespace

    from monitor.mqtt_client import parse_broker_url

    need_broker("nats")
    batches = s02_batches()[:300]
    data_dir, log = tmp_path / "data", tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "--data-dir", str(data_dir), "--instance", "emb",
         "--indicator-interval-s", "0"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )
    creds = data_dir / "broker-credentials.json"
    probe = None
    try:
        assert wait_until(lambda: "running" in log.read_text(), 30), log.read_text()
        assert (creds.stat().st_mode & 0o777) == 0o600 and (data_dir.stat().st_mode & 0o777) == 0o700
        saved = json.loads(creds.read_text())
        address = parse_broker_url(saved["url"])
        assert f"mqtt://127.0.0.1:{address.port}" in log.read_text() and str(creds) in log.read_text()
        fake = SimpleNamespace(host=address.host, port=address.port, users=saved["users"])
        probe = Probe(fake, [monitor_state_topic("emb"), wearer_topic("s02", "indicators")])
        assert wait_until(lambda: probe.on(monitor_state_topic("emb")), 10)
        probe.publish_many(messages("s02", batches))
        assert wait_until(lambda: probe.on(wearer_topic("s02", "indicators")), 20), log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 128 + signal.SIGTERM, log.read_text()
    finally:
        if probe is not None:
            probe.close()
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert saved["users"]["monitor"] not in text  # the password is only in the 0600 file
    # the start line says what the recording costs and how long it is kept
    assert "about 21.5 MB per wearer per day; kept forever: see --retention-days" in text, text
    assert wait_until(lambda: not _listening(address.port), 10)  # the broker stopped with it


def test_a_run_killed_with_sigkill_keeps_its_port_on_restart(tmp_path):
    """SIGKILL leaves the embedded broker running (it has its own session). The next run stops
    it and keeps the port, so bridges, simulators and phones reconnect; before, it found the
    port taken by that broker and moved to a new one."""
    from monitor.mqtt_client import parse_broker_url

    need_broker("nats")
    data_dir = tmp_path / "data"
    creds = data_dir / "broker-credentials.json"

    def launch(log: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--data-dir", str(data_dir), "--instance", "emb"],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
        assert wait_until(lambda: "running" in log.read_text() or proc.poll() is not None, 30), log.read_text()
        return proc

    first = launch(tmp_path / "run1.log")
    second = None
    try:
        port = parse_broker_url(json.loads(creds.read_text())["url"]).port
        first.kill()
        first.wait(10)
        assert _listening(port)  # the killed run's broker lives on
        second = launch(tmp_path / "run2.log")
        text = (tmp_path / "run2.log").read_text()
        assert second.poll() is None, text
        assert parse_broker_url(json.loads(creds.read_text())["url"]).port == port, text
        assert f"127.0.0.1:{port}" in text and "is taken" not in text
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 128 + signal.SIGTERM
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        left = processes_mentioning(str(data_dir))  # a broker left behind by a failed run: not ours to keep
        for line in left:
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
    assert not left, left
    assert wait_until(lambda: not _listening(port), 10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_an_unreadable_checkpoint_stops_the_start(tmp_path):
    """A damaged checkpoint is an error that names the file, never a silent fresh start."""
    from monitor.errors import AnxmonError

    data_dir = tmp_path / "svc"
    with CheckpointStore(data_dir / "checkpoints.sqlite") as store:
        store.save([("alice", {"schema": 999}, None)], saved_at_s=time.time())
    service = MonitorService("mqtt://monitor:x@127.0.0.1:1", data_dir, options=ServiceOptions(instance="t"))
    with pytest.raises(AnxmonError, match="checkpoints.sqlite"):
        service.start()
    with pytest.raises(AnxmonError, match="instance id"):
        ServiceOptions(instance="Not Valid")


def test_a_dead_embedded_broker_is_restarted_and_one_that_cannot_be_ends_the_run(tmp_path):
    """``anxmon run`` owns its broker: when nats-server dies (OOM killer, a crash) it is started
    again on the same port and store, with a WARNING, and the service takes the data up again;
    when it cannot be started again, the run exits 1 with a one-line error, so that systemd or
    Docker restarts everything (before: no wearer was served until someone noticed)."""
    from types import SimpleNamespace

    from monitor.mqtt_client import parse_broker_url

    need_broker("nats")
    batches = s02_batches()[:300]
    data_dir, log = tmp_path / "data", tmp_path / "run.log"
    err = tmp_path / "run.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "--data-dir", str(data_dir), "--instance", "emb",
         "--indicator-interval-s", "0", "--no-record"],
        stdout=open(log, "wb"), stderr=open(err, "wb"), stdin=subprocess.DEVNULL, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )
    pid_file = data_dir / "broker" / "nats.pid"
    probe = None
    try:
        assert wait_until(lambda: "running" in log.read_text(), 30), log.read_text() + err.read_text()
        saved = json.loads((data_dir / "broker-credentials.json").read_text())
        port = parse_broker_url(saved["url"]).port
        first = int(pid_file.read_text().split()[0])
        killed_at = time.time()
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: "restarting it on port" in err.read_text(), 10), err.read_text()
        assert wait_until(lambda: pid_file.exists() and int(pid_file.read_text().split()[0]) != first, 10)
        assert wait_until(lambda: _listening(port), 10)
        text = err.read_text()
        assert "WARNING" in text and "killed by SIGKILL" in text and f"port {port}" in text, text
        # the service is back on it: a wearer's data gives indicators again
        state = monitor_state_topic("emb")
        probe = Probe(SimpleNamespace(host="127.0.0.1", port=port, users=saved["users"]),
                      [wearer_topic("s02", "indicators"), state])
        # (the killed broker may have lost the service's session: data sent before the service
        # has reconnected and subscribed again would reach no one)
        assert wait_until(lambda: any(m["state"] == "online" and m.get("t", 0) > killed_at
                                      for m in probe.json_on(state)), 30), err.read_text()
        probe.publish_many(messages("s02", batches))
        assert wait_until(lambda: probe.on(wearer_topic("s02", "indicators")), 30), err.read_text()
        probe.close()
        probe = None
        assert proc.poll() is None

        # now its store is unusable (a file where its directory was): it cannot come back
        second = int(pid_file.read_text().split()[0])
        store = data_dir / "broker" / "jetstream"
        store.rename(tmp_path / "jetstream-moved")
        store.write_text("not a directory")
        os.kill(second, signal.SIGKILL)
        assert proc.wait(60) == 1, err.read_text()
    finally:
        if probe is not None:
            probe.close()
        if proc.poll() is None:
            proc.kill()
    last = err.read_text().strip().splitlines()[-1]
    assert last.startswith("anxmon: error: the embedded broker exited (killed by SIGKILL) and could not be "
                           "restarted"), err.read_text()
    assert "Traceback" not in err.read_text()
    assert not processes_mentioning(str(data_dir))  # no broker left behind


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # the service's own handling: one kind
def test_a_recording_that_cannot_be_written_pauses_and_check_ins_go_on(broker, tmp_path, services, caplog):
    """A full disk under the recording (SQLite's own SQLITE_FULL: the file may not grow) is no
    crash: one ERROR naming the file and what to do, the recording pauses, the data is still
    processed and acknowledged and the wearer's check-in is sent; the check-in timeline is logged
    at DEBUG only."""
    caplog.set_level(logging.INFO, logger="anxmon")
    i_sent = first_checkin_index()
    batches = s02_batches()[CHECKIN_FROM: CHECKIN_FROM + i_sent + 1]
    checkin = wearer_topic("s02", "checkin")
    probe = Probe(broker, [checkin])
    services.append(svc := start_service(broker, tmp_path / "svc", record_raw=True))

    def full(s: MonitorService) -> None:
        pages = s._recorder._db.execute("PRAGMA page_count").fetchone()[0]
        s._recorder._db.execute(f"PRAGMA max_page_count = {pages + 4}")

    svc.call(full)
    probe.publish_many(messages("s02", batches))
    assert wait_until(lambda: probe.on(checkin), 60), "no check-in arrived"
    assert wait_until(lambda: svc.stats.batches == len(batches), 30)
    assert svc.failed is None and svc.call(lambda s: s._recorder.paused)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert str(tmp_path / "svc" / "recordings.sqlite") in errors[0] and "--retention-days" in errors[0]
    assert not any("wearer s02: check-in" in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert svc.stats.checkins == 1
    assert (tmp_path / "svc" / "recordings.sqlite").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "svc" / "checkpoints.sqlite").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
def test_a_snooze_and_a_marker_far_ahead_are_refused(broker, tmp_path, services):
    """A snooze of 1e308 s is no "snooze" (at most 30 days; a pause has no end anyway), and a
    marker (or control) dated far beyond the wearer's data and the clock is refused like a batch."""
    from monitor.wire import encode_marker, marker_topic

    rejected = wearer_topic("alice", "rejected")
    probe = Probe(broker, [rejected])
    services.append(svc := start_service(broker, tmp_path / "svc"))
    control, marker = wearer_topic("alice", "control"), marker_topic("alice", "phone")
    now = time.time()
    probe.publish(control, encode_control("snooze", duration_s=1e308))
    probe.publish(control, encode_control("snooze", duration_s=31 * 86400))
    probe.publish(control, encode_control("snooze", duration_s=600, t_s=now + 86400))
    probe.publish(marker, encode_marker(now + 86400, "x", "tag"))
    probe.publish(control, encode_control("snooze", duration_s=30 * 86400))  # the longest: accepted
    probe.publish(marker, encode_marker(now + 60, "x", "tag"))  # a phone's clock a minute ahead: fine
    assert wait_until(lambda: svc.stats.controls == 1 and svc.stats.markers == 1, 10)
    assert wait_until(lambda: len(probe.on(rejected)) == 4, 10)
    reasons = [(r["reason"], r["error"]) for r in map(decode_rejected, probe.on(rejected))]
    assert [r for r, _ in reasons] == ["control", "control", "future", "future"], reasons
    assert "at most 2592000 s" in reasons[0][1] and "ahead" in reasons[2][1] and "ahead" in reasons[3][1]
    assert svc.wearer_state("alice")["policy"].snoozed_until_s == pytest.approx(now + 30 * 86400, abs=30)


def _fill(directory: Path) -> None:
    """Write a file in ``directory`` until its file system is full."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
def test_a_full_disk_is_a_one_line_error_naming_the_file(broker, tmp_path):
    """On a really full file system (a small tmpfs): a first start names the file it could not
    write; a checkpoint that cannot be written ends the run with exit 2 and one line saying which
    file and what to do, the worker's stack logged once (not a second time by threading)."""
    from tests.test_recorder import small_file_system

    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANXMON_MONITOR_BROKER_URL": broker.url}
    with small_file_system(tmp_path, "1m") as mnt:
        _fill(mnt)
        first = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--data-dir", str(mnt / "new"),
                                "--no-record"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 2 and first.stderr.strip() == (
            f"anxmon: error: cannot write {mnt / 'new' / 'anxmon-run.lock'}: No space left on device "
            "(is the disk full?)"), first.stderr
        (mnt / "filler").unlink()

        err = tmp_path / "run.err"
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--data-dir", str(mnt / "d"), "--no-record",
             "--checkpoint-s", "1", "--instance", "full"],
            stdout=subprocess.DEVNULL, stderr=open(err, "wb"), stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
        probe = None
        try:
            assert wait_until(lambda: (mnt / "d" / "checkpoints.sqlite").exists() and proc.poll() is None, 30)
            probe = Probe(broker, [monitor_state_topic("full")])  # online: published after its SUBSCRIBE
            assert wait_until(lambda: probe.on(monitor_state_topic("full")), 30), err.read_text()
            time.sleep(1.0)
            _fill(mnt)
            probe.publish_many(messages("s02", s02_batches()[:300]))
            assert proc.wait(60) == 2, err.read_text()
        finally:
            if probe is not None:
                probe.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = err.read_text()
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"anxmon: error: cannot write checkpoints to {mnt / 'd' / 'checkpoints.sqlite'} "
                           "(database or disk is full;"), text
    assert "free space on that disk" in last and "Exception in thread" not in text, text


@pytest.mark.parametrize("broker", ["nats"], indirect=True)  # broker-independent logic: one kind
def test_a_device_clock_set_back_100_s_does_not_make_the_wearer_stale_for_good(broker, tmp_path, services):
    """The device's clock ran 100 s fast for its first minute, then was corrected. The time base
    (the smallest arrival - batch end) took the fast minute's -100 s, and every later on-time
    tick was 101 s + the core's release delay behind it: stale (no check-in) for good, because
    a new base was adopted only when more than stale_after_s (120 s) later. Now one later by
    more than half of it is adopted after refloor_after_s."""
    every = s02_batches()
    batches = [b for b in every if b.end_s < every[0].start_s + 1800]  # 30 min of 1 s batches
    clock = FakeClock(batches[0].end_s - 100.0)
    probe = Probe(broker, [wearer_topic("s02", "indicators")])
    services.append(svc := start_service(broker, tmp_path / "svc", clock=clock))
    for i in range(0, len(batches), 300):  # about a minute at a time
        chunk = batches[i:i + 300]
        clock.now = chunk[-1].end_s + (-100.0 if i == 0 else 1.0)  # the first minute: 100 s fast
        probe.publish_many(messages("s02", chunk))
        assert wait_until(lambda: svc.stats.batches == i + len(chunk), 10), svc.stats
    assert indicators_delivered(svc, probe, wearer_topic("s02", "indicators"))
    ticks = probe.json_on(wearer_topic("s02", "indicators"))
    late = [g["gate"] for g in ticks if g["t"] > batches[0].end_s + 15 * 60]  # after the 10 min
    assert len(late) > 100
    assert "stale" not in late, late.count("stale")
