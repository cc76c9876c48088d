"""The app's one MQTT connection: it relays each wearer's check-ins and indicators to that
wearer's open pages, and publishes their answers and requests.

Browsers never talk to the broker: the relay connects with the service's credentials (it must
read every wearer), and the web server hands each signed-in wearer only their own events. It
subscribes to the check-ins, indicators, answers, controls and rejections of every wearer and
to the monitor's state, and keeps per wearer the latest indicators and the open check-in (until
it is answered, here or on another device, or until the wearer's event time passes its expiry).
Listeners are called for every check-in (the push notifier, Home Assistant discovery) and every
control (the app's settings: a pause from a watch or Home Assistant shows on the page), and
``on_retained`` once per connection, when the retained messages of its subscriptions are all in
(Home Assistant discovery's sync): a marker the relay publishes to its own topic right after
subscribing comes back after them. paho's network thread calls them, so they must not block
(``PushNotifier.submit`` only queues).

Example
-------
>>> relay = Relay("mqtt://monitor:secret@127.0.0.1:1883")          # doctest: +SKIP
>>> relay.start(); relay.wait_connected(); sub = relay.listen("alice")   # doctest: +SKIP
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from monitor.errors import AnxmonError, TopicError, WireError
from monitor.mqtt_client import ConnectionState, WarningLimit, make_client, parse_broker_url
from monitor.wire import (
    MAX_DEVICES_PER_WEARER,
    PREFIX,
    STATUS_KINDS,
    Answer,
    Control,
    decode_answer,
    decode_availability,
    decode_checkin,
    decode_control,
    decode_indicators,
    decode_monitor_state,
    decode_rejected,
    decode_status,
    encode_answer,
    encode_control,
    parse_topic,
    wearer_topic,
)

log = logging.getLogger("anxmon.app")

RETAINED_WAIT_S = 30.0  # s, the longest wait for the marker that follows a connection's retained messages


def _offered(checkin: dict, answer: Answer) -> bool:
    """Whether the check-in offers the answer's rating and labels (what the monitor accepts).

    >>> c = {"options": {"rating": {"min": 1, "max": 5}, "labels": ["anxious", "fine"]}}
    >>> _offered(c, Answer("w-1", 3, ("fine",))), _offered(c, Answer("w-1", 9)), _offered(c, Answer("w-1", None, ("x",)))
    (True, False, False)
    """
    options = checkin.get("options") or {}
    rating = options.get("rating") or {}
    if answer.rating is not None and not rating.get("min", 1) <= answer.rating <= rating.get("max", 5):
        return False
    return "labels" not in options or set(answer.labels) <= set(options["labels"])


class RelayError(AnxmonError):
    """The broker did not take a message from the app (not connected, or no acknowledgement)."""


@dataclass
class WearerView:
    """What the relay knows of one wearer (the page's live state)."""

    indicators: dict | None = None  # the latest indicators payload
    checkin: dict | None = None  # the open check-in (Prompt.to_dict()), or None
    answered: dict = field(default_factory=dict)  # prompt id -> the answer seen (recent ones)
    event_t: float | None = None  # the wearer's newest event time seen (indicators' t)
    event_wall_s: float | None = None  # wall clock when event_t last advanced
    score_minutes: dict = field(default_factory=dict)  # minute start (s) -> [sum, n] (history without a recorder)
    checkins: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))
    devices: dict = field(default_factory=dict)  # device -> {"online": bool, "battery": %, "contact": bool} (retained)
    closed: dict | None = None  # the last check-in that closed: {"prompt_id", "reason": "answered" / "expired"}


class Subscription:
    """A page's feed of one wearer's events: ``get(timeout)`` -> (event, data) or None."""

    def __init__(self, wearer: str, maxsize: int = 256):
        self.wearer = wearer
        self._queue: queue.Queue = queue.Queue(maxsize)
        self.closed = False

    def put(self, event: str, data: Any) -> None:
        try:
            self._queue.put_nowait((event, data))
        except queue.Full:  # a page that does not read: it reloads its state when it reconnects
            self.closed = True

    def get(self, timeout_s: float) -> tuple[str, Any] | None:
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None


class Relay:
    """The app's MQTT client (see the module docstring).

    Parameters
    ----------
    broker : str
        ``mqtt[s]://monitor:password@host:port``: a user that may read every wearer.
    client_id : str
        Stable MQTT client id (clean session: what was sent while the app was away is not
        replayed; the open check-in then comes from the recording, when there is one).
    history_s : float
        How much score history the relay keeps per wearer in memory (for the page's chart
        when no recording is available). Default 7 days.
    """

    def __init__(self, broker: str, client_id: str = "anxmon-app-main", history_s: float = 7 * 86400.0):
        self.address = parse_broker_url(broker)
        self.history_s = history_s
        self.monitor_online: dict[str, bool] = {}  # instance -> online
        # instance -> the [policy] defaults it announces: quiet_hours, timezone, snooze_default_s (any may be absent)
        self.monitor_policy: dict[str, dict] = {}
        self.on_checkin: list[Callable[[str, dict], None]] = []
        self.on_control: list[Callable[[str, Control], None]] = []  # every wearer's, also the app's own
        self.on_retained: list[Callable[[], None]] = []  # each connection's retained messages are in
        self.extra_subscriptions: list[str] = []
        self.on_other: Callable[[str, bytes, bool], None] | None = None  # messages on extra subscriptions
        # the relay's own topic (6 levels: under none of the service's subscriptions) for the
        # marker that follows the retained messages; the marker of the connection waiting for it
        self._marker_topic = f"{PREFIX}/monitor/app/{secrets.token_hex(8)}/retained"
        self._marker: bytes | None = None
        self._marker_timer: threading.Timer | None = None
        self._views: dict[str, WearerView] = {}
        self._subs: dict[str, list[Subscription]] = collections.defaultdict(list)
        self._lock = threading.RLock()
        self._conn = ConnectionState()  # connected, or why the broker refused us
        self._stopping = False
        self._warnings = WarningLimit()  # malformed messages: a warning a minute per wearer
        client = make_client(self.address, client_id)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Relay":
        self._client.connect_async(self.address.host, self.address.port, keepalive=30)
        self._client.loop_start()
        return self

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Wait for the first connection; ``RelayError`` if the broker refused it."""
        return self._conn.wait(timeout_s,
                               lambda why: RelayError(f"broker {self.address} refused the app's connection: {why}"))

    @property
    def connected(self) -> bool:
        return self._conn.up.is_set()

    def stop(self) -> None:
        self._stopping = True
        self._no_marker()
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            for subs in self._subs.values():
                for sub in subs:
                    sub.put("bye", None)

    # -- pages ---------------------------------------------------------------------------------
    def listen(self, wearer: str) -> Subscription:
        sub = Subscription(wearer)
        with self._lock:
            self._subs[wearer].append(sub)
        return sub

    def unlisten(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs.get(sub.wearer, []):
                self._subs[sub.wearer].remove(sub)

    def notify(self, wearer: str, event: str, data: Any) -> None:
        """Send an event of the app's own (``settings``) to every open page of ``wearer``."""
        with self._lock:
            self._send(wearer, event, data)

    def view(self, wearer: str) -> WearerView:
        """A snapshot of what is known of ``wearer`` (an expired check-in is dropped here)."""
        with self._lock:
            v = self._views.get(wearer) or WearerView()
            if self._expire(v):
                self._send(wearer, "closed", {"reason": "expired"})
            return WearerView(v.indicators, v.checkin, dict(v.answered), v.event_t, v.event_wall_s,
                              checkins=collections.deque(v.checkins),
                              devices={d: dict(status) for d, status in v.devices.items()}, closed=v.closed)

    def expire_due(self, wearer: str) -> bool:
        """Close ``wearer``'s open check-in if its expiry has passed (event time going on with the
        wall clock) and tell their pages (``closed``). The page feed calls this while it idles, so
        a check-in closes on time even when no indicators arrive. Returns whether it closed one."""
        with self._lock:
            v = self._views.get(wearer)
            if v is None or not self._expire(v):
                return False
            self._send(wearer, "closed", {"reason": "expired"})
            return True

    def score_history(self, wearer: str, since_s: float) -> list[tuple[float, float]]:
        """Per-minute mean scores of ``wearer`` since ``since_s`` (event time) from memory."""
        with self._lock:
            v = self._views.get(wearer)
            if v is None:
                return []
            return [(t + 30.0, s / n) for t, (s, n) in sorted(v.score_minutes.items()) if t >= since_s - 60 and n]

    def seen(self, wearer: str, t_s: float, wall_s: float) -> None:
        """The wearer's event time was ``t_s`` at wall clock ``wall_s`` (their newest recorded tick,
        after a restart of the app): their open check-in then closes at its expiry even if they
        stay silent."""
        with self._lock:
            self._advance(self._view(wearer), t_s, wall_s)

    def past(self, wearer: str, t_s: float) -> bool:
        """Whether the wearer's event time, going on with the wall clock, has reached ``t_s``."""
        with self._lock:
            v = self._views.get(wearer)
            return v is not None and self._past(v, t_s)

    def is_answered(self, wearer: str, prompt_id: str) -> bool:
        """Whether an answer to the check-in was seen (from this app or another device)."""
        with self._lock:
            v = self._views.get(wearer)
            return v is not None and prompt_id in v.answered

    def remember_checkin(self, wearer: str, checkin: dict, answered: dict | None = None) -> None:
        """Seed the relay with a check-in from the recording (after a restart of the app)."""
        with self._lock:
            v = self._views.setdefault(wearer, WearerView())
            if answered is not None:
                v.answered[checkin["id"]] = answered
            elif v.checkin is None or checkin.get("t", 0) > v.checkin.get("t", 0):
                v.checkin = checkin

    # -- publishing ----------------------------------------------------------------------------
    def answer(self, wearer: str, prompt_id: str, rating: int | None, labels: list[str]) -> None:
        """Publish the wearer's answer on ``anxmon/v1/{wearer}/checkin/response`` (QoS 1, waits for
        the broker's acknowledgement) and close the check-in on the wearer's pages."""
        self._publish(wearer_topic(wearer, "checkin/response"), encode_answer(prompt_id, rating, labels))
        # the broker has it: count it now, so a retry after a lost response is recognised even
        # before the answer comes back on the subscription
        self._answered(wearer, Answer(prompt_id, rating, tuple(labels)))

    def control(self, wearer: str, action: str, duration_s: float | None = None, **extra: Any) -> None:
        """Publish a pause / resume / snooze (or another control the service reads) for ``wearer``."""
        payload = encode_control(action, duration_s)
        if extra:
            body = json.loads(payload)
            body.update({k: v for k, v in extra.items() if v is not None or k == "quiet_hours"})
            payload = json.dumps(body, separators=(",", ":")).encode()
        self._publish(wearer_topic(wearer, "control"), payload)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish anything (Home Assistant discovery); does not wait."""
        self._client.publish(topic, payload, qos=1, retain=retain)

    def _publish(self, topic: str, payload: bytes, timeout_s: float = 5.0) -> None:
        if not self._conn.up.is_set():
            raise RelayError("the app is not connected to the broker right now; try again in a moment")
        info = self._client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise RelayError(f"the broker did not take the message: {exc}") from None
        if not info.is_published():
            raise RelayError("the broker did not confirm the message in time")

    # -- MQTT (paho's network thread) ------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._conn.accepted(reason_code):
            log.error("broker %s refused the app's connection: %s", self.address, reason_code)
            return
        topics = [f"{PREFIX}/+/checkin", f"{PREFIX}/+/checkin/response", f"{PREFIX}/+/indicators",
                  f"{PREFIX}/+/control", f"{PREFIX}/+/rejected", f"{PREFIX}/monitor/+/state",
                  *(f"{PREFIX}/+/+/{kind}" for kind in ("availability", *STATUS_KINDS)), *self.extra_subscriptions]
        if self.on_retained:
            topics.append(self._marker_topic)
        client.subscribe([(t, 1) for t in topics])
        if self.on_retained:
            self._send_marker(client)
        self._conn.up.set()
        log.info("app connected to %s", self.address)

    def _send_marker(self, client) -> None:
        """Publish this connection's marker to the relay's own topic. A broker sends a
        subscription's retained messages when it takes the SUBSCRIBE, so they are queued to us
        before the marker, which we publish after it (all QoS 1: one queue); once the marker is
        back, ``on_retained`` runs. A broker that drops it (its access rules) gets a WARNING and
        ``on_retained`` after ``RETAINED_WAIT_S``."""
        marker = secrets.token_hex(8).encode()
        timer = threading.Timer(RETAINED_WAIT_S, self._marker_back, (marker, True))
        timer.daemon = True
        with self._lock:
            self._no_marker()
            self._marker, self._marker_timer = marker, timer
        timer.start()
        client.publish(self._marker_topic, marker, qos=1)

    def _marker_back(self, marker: bytes, late: bool = False) -> None:
        with self._lock:
            if marker != self._marker:  # an earlier connection's (or a late timer's)
                return
            self._no_marker()
        if late:
            log.warning("the broker did not send the app's marker on %s back within %.0f s (may the app's user "
                        "publish and subscribe there?); going on with the retained messages received so far",
                        self._marker_topic, RETAINED_WAIT_S)
        for fn in self.on_retained:
            fn()

    def _no_marker(self) -> None:
        with self._lock:
            if self._marker_timer is not None:
                self._marker_timer.cancel()
            self._marker = self._marker_timer = None

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._no_marker()  # (the next connection sends its own)
        if self._conn.up.is_set() and not self._stopping:
            log.warning("app lost the broker %s (%s); reconnecting", self.address, reason_code)
        self._conn.up.clear()

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == self._marker_topic:
            self._marker_back(bytes(msg.payload))
            return
        try:
            topic = parse_topic(msg.topic)
        except (TopicError, UnicodeDecodeError):
            if self.on_other is not None:
                self.on_other(msg.topic, bytes(msg.payload), bool(msg.retain))
            return
        try:
            if topic.kind == "checkin":
                self._checkin(topic.wearer, decode_checkin(msg.payload))
            elif topic.kind == "indicators":
                self._indicators(topic.wearer, decode_indicators(msg.payload))
            elif topic.kind == "checkin/response":
                self._answered(topic.wearer, decode_answer(msg.payload, topic.wearer))
            elif topic.kind == "control":
                if not msg.retain:  # (the service refuses a retained control: it is old news)
                    control = decode_control(msg.payload, topic.wearer)
                    for fn in self.on_control:
                        fn(topic.wearer, control)
            elif topic.kind == "rejected":
                self._rejected(topic.wearer, decode_rejected(msg.payload))
            elif topic.kind == "availability":
                self._device(topic.wearer, topic.device, "online",
                             decode_availability(msg.payload) == "online" if msg.payload else None)
            elif topic.kind in STATUS_KINDS:
                self._device(topic.wearer, topic.device, topic.kind,
                             decode_status(msg.payload, topic.kind) if msg.payload else None)
            elif topic.kind == "monitor_state":
                state = decode_monitor_state(msg.payload)
                self.monitor_online[topic.instance] = state["state"] == "online"
                announced = {k: state[k] for k in ("quiet_hours", "timezone", "snooze_default_s") if k in state}
                if announced:  # (not in the last will; an older service does not say)
                    self.monitor_policy[topic.instance] = announced
        except (WireError, ValueError) as exc:  # its text may quote the payload: DEBUG only
            if self._warnings.allows(topic.wearer or "?", "malformed"):  # (a flood: once a minute)
                log.warning("app: ignored a malformed %s message of %s (%s; -vv logs why)",
                            topic.kind, topic.wearer, type(exc).__name__)
            log.debug("app: the malformed %s message of %s: %s", topic.kind, topic.wearer, exc)
        except Exception as exc:  # a bug must not stop the relay (paho's thread) for every wearer
            log.error("app: a %s message of %s could not be handled (%s, a bug: please report it)",
                      topic.kind, topic.wearer, type(exc).__name__)
            log.debug("the failure in full", exc_info=True)

    def _send(self, wearer: str, event: str, data: Any) -> None:
        for sub in list(self._subs.get(wearer, [])):
            sub.put(event, data)

    def _view(self, wearer: str) -> WearerView:
        return self._views.setdefault(wearer, WearerView())

    @staticmethod
    def _advance(v: WearerView, t_s: float, wall_s: float) -> None:
        if v.event_t is None or t_s > v.event_t:
            v.event_t, v.event_wall_s = t_s, wall_s

    @staticmethod
    def _past(v: WearerView, t_s: float) -> bool:
        """Whether ``v``'s event time has reached ``t_s``; event time goes on with the wall clock
        while the wearer's indicators are silent (band off, out of reach)."""
        if v.event_t is None:
            return False
        wall_s = time.time()
        return v.event_t + max(0.0, wall_s - (v.event_wall_s or wall_s)) >= t_s

    def _expire(self, v: WearerView) -> bool:
        """Close the open check-in once the wearer's event time passes its expiry."""
        c = v.checkin
        if c is None or not self._past(v, float(c.get("expires_at") or float("inf"))):
            return False
        v.checkin = None
        v.closed = {"prompt_id": c.get("id"), "reason": "expired"}
        return True

    def _checkin(self, wearer: str, checkin: dict) -> None:
        """A check-in for ``wearer``; the same one again (QoS 1 delivers at least once: a copy after
        the service reconnects) is ignored: no second buzz, no answered check-in opened again."""
        with self._lock:
            v = self._view(wearer)
            if checkin["id"] in v.answered or any(c["id"] == checkin["id"] for c in v.checkins):
                return
            v.checkin = checkin
            v.checkins.append(checkin)
            self._send(wearer, "checkin", checkin)
        log.debug("app: check-in %s for %s", checkin["id"], wearer)  # a health timeline: DEBUG
        for fn in self.on_checkin:
            fn(wearer, checkin)

    def _indicators(self, wearer: str, body: dict) -> None:
        with self._lock:
            v = self._view(wearer)
            t = float(body["t"])
            v.indicators = body
            self._advance(v, t, time.time())
            score = body.get("score")
            if isinstance(score, (int, float)) and body.get("gate") in (None, "stale"):
                cell = v.score_minutes.setdefault(t - t % 60.0, [0.0, 0])
                cell[0] += float(score)
                cell[1] += 1
                oldest = v.event_t - self.history_s
                while v.score_minutes and next(iter(v.score_minutes)) < oldest:
                    del v.score_minutes[next(iter(v.score_minutes))]
            expired = self._expire(v)
            self._send(wearer, "indicators", body)
            if expired:
                self._send(wearer, "closed", {"reason": "expired"})

    def _device(self, wearer: str, device: str, key: str, value: Any) -> None:
        """A device's retained status (``online``, ``battery``, ``contact``; None: cleared). The
        status line reads them (``words.live_status``); the device heard from last goes last,
        and at most ``MAX_DEVICES_PER_WEARER`` are kept."""
        with self._lock:
            devices = self._view(wearer).devices
            status = devices.pop(device, {})
            status[key] = value
            devices[device] = status
            while len(devices) > MAX_DEVICES_PER_WEARER:
                del devices[next(iter(devices))]

    def _answered(self, wearer: str, answer: Answer) -> None:
        """An answer seen on the wearer's topic (from this app or another device) closes the
        open check-in, unless the monitor will refuse it (a rating or label the check-in does not
        offer): then the check-in stays open and the ``rejected`` notice says why."""
        body = {"prompt_id": answer.prompt_id, "rating": answer.rating, "labels": list(answer.labels)}
        with self._lock:
            v = self._view(wearer)
            c = v.checkin
            if c is not None and c.get("id") == answer.prompt_id and not _offered(c, answer):
                return
            v.answered[answer.prompt_id] = body
            while len(v.answered) > 200:
                del v.answered[next(iter(v.answered))]
            if c is not None and c.get("id") == answer.prompt_id:
                v.checkin = None
                v.closed = {"prompt_id": answer.prompt_id, "reason": "answered"}
                self._send(wearer, "closed", {"reason": "answered", "prompt_id": answer.prompt_id})

    def _rejected(self, wearer: str, body: dict) -> None:
        kind = str(body.get("topic", "")).rsplit("/", 2)
        if kind[-2:] == ["checkin", "response"]:
            self._send(wearer, "notice", {"reason": "answer"})
        elif body.get("reason") in ("answer", "control"):
            self._send(wearer, "notice", {"reason": body.get("reason")})
