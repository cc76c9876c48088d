"""The live service (``anxmon run``): sample batches in over MQTT, indicators and check-ins out.

One process serves any number of wearers. It subscribes to the wire contract's input topics,
creates a ``WearerMonitor`` (pipeline -> score -> check-in policy) for a wearer on its first
data, publishes the wearer's indicators and check-ins, applies answers and pause / resume /
snooze requests, refuses bad input on ``anxmon/v1/{wearer}/rejected``, and checkpoints every
wearer's state to SQLite so a restart, or a crash, resumes the baselines and the policy.

Threads (see ``docs/service.md`` for the guarantees): one thread, the worker, owns the MQTT
connection and all wearer state. It runs paho's network loop itself (``Client.loop``), so a
received message is decoded, checked, run through the core, published and acknowledged by the
thread that read it: no hand-over between threads, no GIL ping-pong between a network thread
and a busy worker. Messages are acknowledged *manually*, after they were processed (and their
recorded rows committed), so a message that was received but not processed when the process
dies is not acknowledged and the broker delivers it again to the persistent session. The
worker also reconnects (with backoff) and writes checkpoints (spread over time, each wearer at
most ``checkpoint_s`` after it changed). ``call`` runs a function on the worker.

Staleness: a wearer's *time base* is the smallest ``arrival wall clock - batch end`` seen (the
network delay plus any device clock offset or replay shift). A tick more than ``stale_after_s``
behind the wall clock *relative to that time base* is stale: its indicators say
``gate="stale"`` and the policy never prompts from it (a backlog drained after an outage, or the
service catching up after a restart). A wearer sending long batches gets two batch spans more
(``WearerPipeline.longest_batch_s``): its on-time ticks come out that much later. Replays with original timestamps, at any speed, keep a
consistent time base and are not stale. A new time base, later by more than half of
``stale_after_s``, that persists for ``refloor_after_s`` (a corrected device clock, a new
replay) is adopted.

Example
-------
>>> svc = MonitorService("mqtt://monitor:secret@127.0.0.1:1883", "anxmon-data")   # doctest: +SKIP
>>> svc.start(); ...; svc.stop()                                                  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import math
import os
import queue
import random
import re
import secrets
import select
import socket
import threading
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from monitor import __version__
from monitor.config import Config
from monitor.core.policy import AnswerError, ControlError, Expired
from monitor.core.pipeline import tick_phase
from monitor.core.wearer import Tick, WearerMonitor
from monitor.errors import AnxmonError, PayloadError, TopicError, ValueRangeError, WireError
from monitor.mqtt_client import (
    ConnectionState,
    WarningLimit,
    connect_failure,
    make_client,
    parse_broker_url,
    shown_client_id,
)
from monitor.recorder import RECORDING_FILE, Recorder
from monitor.store import CheckpointStore
from monitor.wire import (
    AHEAD_SPAN_S,
    CONTROL_SUBSCRIPTION,
    DATA_SUBSCRIPTION,
    ID_PATTERN,
    MAX_CONTROL_DURATION_S,
    MAX_DEVICES_PER_WEARER,
    MAX_FUTURE_S,
    PREFIX,
    IdentityError,
    SampleBatch,
    StreamTracker,
    decode_answer,
    decode_availability,
    decode_batch,
    decode_control,
    decode_marker,
    decode_status,
    encode_checkin,
    encode_indicators,
    encode_monitor_state,
    encode_rejected,
    identity_mismatch,
    monitor_state_topic,
    parse_topic,
    wearer_topic,
)

log = logging.getLogger("anxmon.service")

CHECKPOINT_FILE = "checkpoints.sqlite"
CLIENT_SECRET_FILE = "client-id-secret"  # the unguessable part of the service's MQTT client id
CHECKPOINT_SCHEMA = 1
ACK_BATCH = 50  # messages processed before their rows are committed and they are acknowledged
LONG_DUPLICATE_RUN = 120  # duplicates in a row of one stream after which the service warns
PRUNE_EVERY_S = 3600.0  # how often the retention period is applied
READ_BURST = 100  # messages read before they are processed, acknowledged and answered in one go
IDLE_WAIT_S = 0.02  # the worker's longest wait for network traffic (calls wait at most this long)
_STOP = object()


class ServiceError(AnxmonError):
    """The service cannot run: the broker refused it, or the checkpoints cannot be restored."""


@dataclass(frozen=True)
class ServiceOptions:
    """How the service runs (the ``anxmon run`` options).

    Attributes
    ----------
    instance : str
        Id of this service (``[a-z0-9_-]{1,64}``): its state topic and its MQTT client id
        ``anxmon-monitor-{instance}-{secret}`` (the secret is kept in the data directory), which
        is stable so the broker keeps its session.
    checkpoint_s : float
        Each wearer's state is written at most this many seconds after it changed. Default 30.
    stale_after_s : float
        A tick further behind the wall clock than this (s, relative to the wearer's time base)
        is stale: no check-in from it. Default 120 (the core releases a tick ~20-45 s after it
        with 1 s batches; long batches add two batch spans).
    refloor_after_s : float
        A new time base (later by more than ``stale_after_s / 2``) that persists this long (s,
        wall clock) is adopted. Default 600.
    indicator_interval_s : float
        At most one indicators message per wearer per this many wall-clock seconds (the latest
        tick wins; one held back is sent when the interval ends). 0 = every tick. Default 1.
    mqtt_version : str
        ``"3.1.1"`` (clean session off) or ``"5"`` (clean start off plus ``session_expiry_s``).
    session_expiry_s : int
        MQTT 5 only: how long the broker keeps the session while the service is away. 7 days.
    keepalive_s, reconnect_min_s, reconnect_max_s : int
        MQTT keepalive, and the backoff of reconnection attempts (doubling from min to max).
    max_queued_out : int
        Messages paho holds for the broker while disconnected; beyond that indicators are
        dropped (counted) and a warning is logged.
    record : bool
        Record indicators (every tick), decisions, check-ins, answers and markers to
        ``DATA/recordings.sqlite`` (``monitor.recorder``). Default True.
    record_raw : bool
        Also record every accepted sample batch (opt-in per deployment). Default False.
    retention_days : float, optional
        Delete recorded rows older than this many days (checked hourly). None keeps everything.
    spread_ticks : bool
        Give each wearer its own tick phase (whole seconds, by wearer id; ``tick_phase``) so
        the wearers' per-tick work spreads over the tick interval instead of all landing in the
        same second. False: every wearer ticks at whole multiples of ``tick_s``, like
        ``anxmon analyze``. Default True.
    """

    instance: str = "main"
    checkpoint_s: float = 30.0
    stale_after_s: float = 120.0
    refloor_after_s: float = 600.0
    indicator_interval_s: float = 1.0
    mqtt_version: str = "3.1.1"
    session_expiry_s: int = 7 * 86400
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    max_queued_out: int = 100_000
    record: bool = True
    record_raw: bool = False
    retention_days: float | None = None
    spread_ticks: bool = True

    def __post_init__(self) -> None:
        if not ID_PATTERN.fullmatch(str(self.instance)):
            raise ServiceError(f"instance id {self.instance!r} is not valid: expected 1-64 characters of a-z, 0-9, _ or -")
        if self.mqtt_version not in ("3.1.1", "5"):
            raise ServiceError(f"mqtt_version must be '3.1.1' or '5', got {self.mqtt_version!r}")
        for key in ("checkpoint_s", "stale_after_s", "refloor_after_s"):
            if not getattr(self, key) > 0:
                raise ServiceError(f"{key} must be > 0 seconds, got {getattr(self, key)!r}")
        if not self.indicator_interval_s >= 0:
            raise ServiceError(f"indicator_interval_s must be >= 0 seconds, got {self.indicator_interval_s!r}")
        if self.retention_days is not None and not self.retention_days > 0:
            raise ServiceError(f"retention_days must be > 0 (or None: keep everything), got {self.retention_days!r}")
        if self.record_raw and not self.record:
            raise ServiceError("record_raw needs record (raw batches are part of the recording)")


@dataclass
class DeviceStatus:
    """What the service knows about one device of a wearer (availability is retained)."""

    availability: str | None = None  # "online" / "offline" as the device (or its last will) said
    last_seen_wall_s: float | None = None  # wall clock of the last message from the device
    last_event_s: float | None = None  # event time of its newest accepted sample
    battery_percent: float | None = None
    contact: bool | None = None


@dataclass
class LiveState:
    """The service's own bookkeeping of a wearer, checkpointed together with its monitor."""

    trackers: dict = field(default_factory=dict)  # (device, signal) -> StreamTracker
    sources: dict = field(default_factory=dict)  # signal -> device that feeds it
    source_seen_wall_s: dict = field(default_factory=dict)  # signal -> wall clock of its last batch
    lag_floor_s: float | None = None  # time base: smallest (arrival wall clock - batch end)
    lag_high_since_wall_s: float | None = None  # since when batches lag well above the floor
    newest_event_s: float | None = None  # newest sample time of the wearer


@dataclass
class ServiceStats:
    """Counters since the service started (not checkpointed)."""

    received: int = 0
    batches: int = 0  # data batches accepted and processed
    duplicates: int = 0  # data batches dropped as duplicates (by seq)
    missing: int = 0  # data batches never processed: skipped seq numbers (sequence gaps)
    rejected: collections.Counter = field(default_factory=collections.Counter)  # reason -> n
    ticks: int = 0
    indicators: int = 0  # indicators messages published
    indicators_dropped: int = 0  # could not be queued for the broker (long outage)
    checkins: int = 0  # check-ins sent
    suppressed: collections.Counter = field(default_factory=collections.Counter)  # reason -> n
    expired: int = 0
    answers: int = 0
    controls: int = 0
    markers: int = 0
    redelivered: int = 0  # messages the broker delivered again (DUP flag)
    checkpoints: int = 0  # wearer rows written
    connects: int = 0
    disconnects: int = 0


class _Wearer:
    """A wearer in the worker: monitor, bookkeeping, and publishing/checkpoint timers."""

    __slots__ = ("id", "monitor", "live", "dirty", "checkpoint_due", "saved", "pending", "last_indicator_wall")

    def __init__(self, wearer_id: str, monitor: WearerMonitor, live: LiveState, now: float, every_s: float):
        self.id = wearer_id
        self.monitor = monitor
        self.live = live
        self.dirty = False
        # the first regular checkpoint falls somewhere in the second half of the interval, by
        # wearer id: wearers that start together (a restart of their bridges, a new ward) do not
        # all come due in the same pass
        self.checkpoint_due = now + every_s * (0.5 + 0.5 * (zlib.crc32(wearer_id.encode()) / 2**32))
        # before it, one at once (on the first batch): the wearer's stream trackers are then on
        # disk, and a crash before its next checkpoint shows as a gap (``missing``)
        self.saved = False
        self.pending: bytes | None = None  # indicators held back by the rate limit
        self.last_indicator_wall = -math.inf


class _Reject(Exception):
    """Internal: refuse the message being processed with a reason code and an error text."""

    def __init__(self, reason: str, error: str):
        super().__init__(error)
        self.reason = reason


def _safe_error(exc: Exception) -> str:
    """The error text for a ``rejected`` message, without sample values.

    ``decode_batch`` quotes a malformed ``acc`` row ("found [..."): cut what follows.
    """
    text = str(exc)
    cut = text.find(", found [")
    return text if cut < 0 else text[:cut] + " (a malformed row)"


def _client_secret(data_dir: Path) -> str:
    """The service's secret client-id suffix (32 hex digits), made once and kept in the data
    directory (0600): stable across restarts, so the broker keeps the service's session."""
    path = data_dir / CLIENT_SECRET_FILE
    if path.is_file():
        secret = path.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{32}", secret):
            return secret
        log.warning("%s is damaged: a new client id, so the broker's session for the old one is not used", path)
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    secret = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


class MonitorService:
    """The live monitor on one MQTT broker (see the module docstring).

    Parameters
    ----------
    broker : str
        ``mqtt[s]://user:password@host:port`` (read by ``monitor.mqtt_client.parse_broker_url``).
    data_dir : str or Path
        Where checkpoints live (created with mode 0700).
    config : Config, optional
        The monitor configuration (``monitor.config.load_config``); defaults when omitted.
    options : ServiceOptions, optional
    clock : callable, optional
        Wall clock in unix seconds (``time.time``); injectable for tests.
    """

    def __init__(
        self,
        broker: str,
        data_dir: str | Path,
        config: Config | None = None,
        options: ServiceOptions | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.address = parse_broker_url(broker)
        self.data_dir = Path(data_dir)
        self.config = config or Config()
        self.options = options or ServiceOptions()
        self.clock = clock
        self.stats = ServiceStats()
        # unguessable and stable: a wearer who could connect with the service's client id could
        # take its session (and unsubscribe it, or wipe its backlog); the broker keeps the session
        self.client_id = f"anxmon-monitor-{self.options.instance}-{_client_secret(self.data_dir)}"
        self.state_topic = monitor_state_topic(self.options.instance)
        self.failed: BaseException | None = None  # set when the worker died of an unexpected error
        self.resumed_wearers = 0  # wearers restored from their checkpoints at start
        self._urgent_checkpoints = 0  # wearers whose policy changed in this pass (at most): checkpoint them now

        self._wearers: dict[str, _Wearer] = {}
        self._devices: dict[tuple[str, str], DeviceStatus] = {}
        self._devices_of: dict[str, set[str]] = {}  # wearer -> its devices in _devices
        self._recent_requests: collections.OrderedDict = collections.OrderedDict()  # answers/controls done
        self._handed_over: set = set()  # answers/controls the old session handed over (_move_from_legacy_session)
        self._warnings = WarningLimit(clock=clock)  # once a minute per wearer and kind
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # call() requests and _STOP, for the worker
        self._inbox: collections.deque = collections.deque()  # (generation, arrival, message) read by paho
        self._early_call = None  # a request taken off the queue while waiting, run first by _calls
        self._reconnect_at = 0.0  # monotonic time of the next connection attempt
        self._reconnect_delay_s: float | None = None
        self._fail_logged_at: float | None = None  # monotonic time of the last "cannot reach" warning
        self._subscribe_mid: int | None = None
        # the checkpoint store's note that the broker's session for us holds our subscriptions
        self._subscribed_key = f"subscribed {self.address.host}:{self.address.port} {self.client_id}"
        self._generation = 0  # connection count: a message is acked only on the connection it came by
        self._conn = ConnectionState()  # connected, or why the broker refused us
        self._closing = threading.Event()
        self._stopped = threading.Event()
        self._worker: threading.Thread | None = None
        self._store: CheckpointStore | None = None
        self._recorder: Recorder | None = None
        self._unacked: list[tuple[int, int, int]] = []  # (generation, mid, qos) awaiting the recorder's commit
        self._prune_at = 0.0
        self._client = self._make_client()

    # -- public ------------------------------------------------------------------------
    def start(self) -> "MonitorService":
        """Restore checkpoints, connect (in the background, retrying) and start the worker."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self._store = CheckpointStore(self.data_dir / CHECKPOINT_FILE)
        try:
            self._restore()
            if self.options.record:
                self._recorder = Recorder(self.data_dir / RECORDING_FILE, self.options.record_raw,
                                          self.options.retention_days)
        except BaseException:
            self._store.close()
            raise
        self._move_from_legacy_session()
        self._client.connect_async(self.address.host, self.address.port, keepalive=self.options.keepalive_s,
                                   **self._session(clean=False))
        self._worker = threading.Thread(target=self._work, name="anxmon-worker", daemon=True)
        self._worker.start()
        return self

    def wait_connected(self, timeout_s: float = 10.0, until: threading.Event | None = None) -> bool:
        """Wait for the first connection (or for ``until``); ``ServiceError`` if the broker refused it."""
        return self._conn.wait(timeout_s,
                               lambda why: ServiceError(f"broker {self.address} refused the connection: {why}"),
                               until)

    @property
    def connected(self) -> bool:
        return self._conn.up.is_set()

    def call(self, fn: Callable[["MonitorService"], Any], timeout_s: float = 10.0) -> Any:
        """Run ``fn(self)`` on the worker thread (after what is queued now) and return its result."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put(("call", fn, future))
        return future.result(timeout_s)

    def wearer_state(self, wearer: str) -> dict | None:
        """A copy of a wearer's monitor state (``WearerMonitor.get_state``), or None."""
        return self.call(lambda s: s._wearers[wearer].monitor.get_state() if wearer in s._wearers else None)

    def devices(self) -> dict[tuple[str, str], DeviceStatus]:
        """(wearer, device) -> a copy of what is known about the device."""
        return self.call(lambda s: {k: DeviceStatus(**vars(v)) for k, v in s._devices.items()})

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop cleanly: process and acknowledge what was received, write a final checkpoint,
        publish the retained ``offline`` state and disconnect. Messages that arrive meanwhile
        are left unacknowledged for the next run."""
        if self._worker is None or self._stopped.is_set():
            return
        self._closing.set()
        self._queue.put(_STOP)
        self._worker.join(timeout_s)
        if self._worker.is_alive():
            log.error("the worker did not finish within %.0f s; stopping without a final checkpoint", timeout_s)
        if self._store is not None:
            self._store.close()
        if self._recorder is not None and not self._worker.is_alive():
            self._recorder.close()
        self._stopped.set()
        s = self.stats
        log.info(
            "stopped: %d wearer(s), %d batches, %d duplicates, %d missing, %d rejected, %d check-ins, %d checkpoint rows",
            len(self._wearers), s.batches, s.duplicates, s.missing, sum(s.rejected.values()), s.checkins,
            s.checkpoints,
        )

    # -- MQTT (paho callbacks: they run on the worker, inside Client.loop) -----------------
    def _plain_client(self, client_id: str, clean: bool) -> mqtt.Client:
        """A client of this service's broker, user and MQTT version, with no callbacks (MQTT 5:
        ``clean`` is chosen when connecting, ``_session``)."""
        return make_client(self.address, client_id, clean=clean, v5=self.options.mqtt_version == "5",
                           manual_ack=True)

    def _session(self, clean: bool) -> dict:
        """``connect``'s arguments for the session under MQTT 5: a clean one lives only as long as
        the connection, ours ``session_expiry_s`` after it (3.1.1: none, ``_plain_client``)."""
        if self.options.mqtt_version != "5":
            return {}
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if clean else int(self.options.session_expiry_s)
        return {"clean_start": clean, "properties": props}

    def _connect_plain(self, client: mqtt.Client, clean: bool, timeout_s: float = 10.0) -> bool:
        """Connect ``client`` and run its loop in a thread; False when no CONNACK came."""
        connected = threading.Event()
        client.on_connect = lambda c, u, flags, rc, p: rc.is_failure or connected.set()
        try:
            client.connect(self.address.host, self.address.port, keepalive=self.options.keepalive_s,
                           **self._session(clean))
        except OSError:
            return False
        client.loop_start()
        if not connected.wait(timeout_s):
            client.loop_stop()
            return False
        return True

    def _move_from_legacy_session(self, drain_timeout_s: float = 600.0) -> None:
        """Earlier versions used the guessable client id ``anxmon-monitor-{instance}``. Its
        session on the broker holds what arrived while the service was stopped, and it stays
        subscribed to every wearer's data (the broker would keep storing it for no one). Once:
        the new session subscribes first (from now on the broker queues for it), the old one hands
        over what it held (up to a marker this service publishes after subscribing the new one;
        taken into the inbox, processed before anything of the new session, duplicates dropped
        by seq), and is then deleted. If the broker cannot be reached now, the next start tries
        again."""
        legacy_id = f"anxmon-monitor-{self.options.instance}"
        legacy_key = f"subscribed {self.address.host}:{self.address.port} {legacy_id}"
        if self._store.meta(legacy_key) is None:
            return
        log.info("moving from the old MQTT session %s to this service's private client id", legacy_id)
        fresh = self._plain_client(self.client_id, clean=False)
        subscribed = threading.Event()
        fresh.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        if not self._connect_plain(fresh, clean=False):
            log.warning("could not reach broker %s to move from the old session %s; the next start tries again",
                        self.address, legacy_id)
            return
        try:
            fresh.subscribe([(DATA_SUBSCRIPTION, 1), (CONTROL_SUBSCRIPTION, 1)])
            if not subscribed.wait(10.0):
                log.warning("broker %s did not acknowledge the new session's subscriptions; the next start tries "
                            "again to move from the old session %s", self.address, legacy_id)
                return
            self._store.set_meta(self._subscribed_key, "1")
        finally:
            fresh.disconnect()
            fresh.loop_stop()
        # what the old session holds up to the marker; the marker travels on our own state topic
        marker = encode_monitor_state("online", self.options.instance, __version__, self.clock())
        done = threading.Event()
        old = self._plain_client(legacy_id, clean=False)
        taken = [0]

        def take(client, userdata, msg) -> None:  # (never acknowledged: the session is deleted after)
            if msg.topic == self.state_topic and msg.payload == marker:
                done.set()
            elif not done.is_set():
                self._inbox.append((-1, self.clock(), msg))
                taken[0] += 1
                if msg.topic.endswith(("/control", "/checkin/response")):  # the new session may have it too
                    self._handed_over.add((msg.topic, bytes(msg.payload)))

        old.on_message = take
        if not self._connect_plain(old, clean=False):
            log.warning("could not reach broker %s again to move from the old session %s; the next start tries "
                        "again", self.address, legacy_id)
            return
        old.publish(self.state_topic, marker, qos=1)
        drained = done.wait(drain_timeout_s)
        old.disconnect()
        old.loop_stop()
        if not drained:
            log.warning("the old session %s did not hand over everything in %.0f s (%d messages taken); the next "
                        "start goes on", legacy_id, drain_timeout_s, taken[0])
            return
        delete = self._plain_client(legacy_id, clean=True)
        if self._connect_plain(delete, clean=True):  # a clean session replaces (deletes) the old one
            delete.disconnect()
            delete.loop_stop()
            self._store.set_meta(legacy_key, None)
            log.info("moved from the old session %s: %d message(s) it held are processed first", legacy_id, taken[0])

    def _make_client(self) -> mqtt.Client:
        o = self.options
        client = self._plain_client(self.client_id, clean=False)
        client.will_set(
            self.state_topic, encode_monitor_state("offline", o.instance, __version__), qos=1, retain=True
        )
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(o.max_queued_out)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        # the worker writes what is queued once per pass of its loop (one select), instead of
        # paho trying a write after every publish and acknowledgement
        client.on_socket_register_write = lambda client, userdata, sock: None
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._conn.accepted(reason_code):
            log.error("broker %s refused the connection: %s", self.address, reason_code)
            return
        self._reconnect_delay_s = None
        self._fail_logged_at = None
        self._generation += 1
        self.stats.connects += 1
        # Subscribing here restores the subscriptions whenever the broker has no session for us
        # (first start, expired or lost session). With a session present that we subscribed in
        # (the broker acknowledged it; remembered in the checkpoint store across restarts) the
        # broker kept them, and we do not subscribe again: a repeated SUBSCRIBE makes the broker
        # resend retained messages, and nats-server 2.x then loses a message of the queued
        # backlog (measured: 1 of 5,000 per retained message; redelivered only after its 30 s
        # ack wait, too late). A session can be present without our subscriptions: a CONNECT
        # the broker took while hung, whose CONNACK we gave up waiting for.
        # The data wildcard also covers availability, battery, contact and checkin/response.
        if not flags.session_present:
            self._store.set_meta(self._subscribed_key, None)
        if not flags.session_present or self._store.meta(self._subscribed_key) is None:
            _, self._subscribe_mid = client.subscribe([(DATA_SUBSCRIPTION, 1), (CONTROL_SUBSCRIPTION, 1)])
        policy = self.config.policy
        client.publish(
            self.state_topic, encode_monitor_state("online", self.options.instance, __version__, self.clock(),
                                                   policy.quiet_hours, policy.timezone, policy.snooze_default_s),
            qos=1, retain=True,
        )
        self._conn.up.set()
        log.info("connected to %s as %s (session present: %s)", self.address, shown_client_id(self.client_id),
                 flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker %s refused the subscriptions of %s: %s", self.address, shown_client_id(self.client_id),
                      ", ".join(failed))
        else:
            self._store.set_meta(self._subscribed_key, "1")

    def _connect_failed(self, why: str) -> None:
        now = time.monotonic()
        if self._fail_logged_at is None or now - self._fail_logged_at > 60.0:  # once a minute
            self._fail_logged_at = now
            log.warning("cannot reach broker %s (%s); retrying", self.address, why)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._conn.up.is_set()
        self._conn.up.clear()
        if was and not self._closing.is_set():
            self.stats.disconnects += 1
            log.warning("lost the broker %s (%s); reconnecting", self.address, reason_code)
        elif not was and not self._closing.is_set() and self._conn.refused is None:
            # the broker may still take this CONNECT late and make an empty session for us: the
            # next session present must not be trusted to hold our subscriptions
            self._store.set_meta(self._subscribed_key, None)
            self._connect_failed(f"no MQTT answer to the connection ({reason_code}): a hung broker, or a port "
                                 "that is not MQTT?")

    def _on_message(self, client, userdata, msg) -> None:
        if self._closing.is_set():
            return  # not acknowledged: the broker delivers it again to the next session
        self._inbox.append((self._generation, self.clock(), msg))

    # -- worker --------------------------------------------------------------------------
    def _work(self) -> None:
        housekeeping_at = 0.0
        try:
            while True:
                busy = bool(self._inbox) or self._early_call is not None or not self._queue.empty()
                self._network(0.0 if busy else IDLE_WAIT_S)
                while self._inbox:
                    generation, arrived, msg = self._inbox.popleft()
                    self._process(msg, arrived)
                    if msg.qos > 0 and generation == self._generation:
                        # a message of an earlier connection is redelivered on this one: its
                        # copy is acknowledged instead (duplicates are dropped by seq)
                        if self._recorder is None:
                            self._client.ack(msg.mid, msg.qos)
                        else:  # acknowledged once its rows are committed (_commit_records)
                            self._unacked.append((generation, msg.mid, msg.qos))
                    if len(self._unacked) >= ACK_BATCH:
                        self._commit_records()
                if self._unacked:
                    self._commit_records()
                if self._urgent_checkpoints:  # before the acknowledgements go out (_write)
                    self._checkpoint(budget=max(64, self._urgent_checkpoints))  # every urgent one (they sort first)
                    self._urgent_checkpoints = 0
                self._write()
                if self._calls():
                    break
                now = time.monotonic()
                if now >= housekeeping_at:
                    housekeeping_at = now + 0.1
                    self._housekeeping()
            self._flush_indicators(force=True)
            self._checkpoint(everything=True)
            self._say_goodbye()
        except BaseException as exc:
            self.failed = exc
            # the stack without the exception's text, which may quote a wearer's values (DEBUG only)
            log.critical("the worker stopped on an unexpected error (%s); state since the last checkpoint is lost\n%s",
                         type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)).rstrip())
            log.debug("the failure in full", exc_info=True)
            # not raised on: the thread's default hook would print it again, text included
            # (``failed`` tells the owner: ``run_service`` reports it and exits non-zero)

    def _calls(self) -> bool:
        """Run the functions ``call`` queued; True when ``stop`` asked the worker to finish."""
        while True:
            item, self._early_call = self._early_call, None
            if item is None:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return False
            if item is _STOP:
                return True
            _, fn, future = item
            try:
                future.set_result(fn(self))
            except Exception as exc:  # handed to the caller, who re-raises it
                future.set_exception(exc)

    def _network(self, wait_s: float) -> None:
        """One pass of paho's loop (read, write, keepalive), or a connection attempt when due."""
        client = self._client
        sock = client.socket()
        if sock is not None:
            rc = client.loop(wait_s)
            # read on while data is waiting (paho reads one packet per select): the pass then
            # processes a burst and sends its acknowledgements and indicators together
            # (paho may close the socket inside a pass with success: a keepalive timeout)
            while (rc == mqtt.MQTT_ERR_SUCCESS and len(self._inbox) < READ_BURST and client.socket() is sock
                   and select.select([sock], [], [], 0)[0]):
                rc = client.loop_read()
            if client.socket() is None:
                self._schedule_reconnect()  # paho called on_disconnect
            return
        now = time.monotonic()
        if now < self._reconnect_at:
            self._wait_for_calls(min(wait_s or IDLE_WAIT_S, self._reconnect_at - now))
            return
        try:
            client.reconnect()  # the first connection too (connect_async stored the address)
        except OSError as exc:
            self._connect_failed(connect_failure(exc))
            self._schedule_reconnect()

    def _write(self) -> None:
        """Send what the pass queued (acknowledgements, indicators, check-ins) in as few TCP
        segments as the kernel can make of them (TCP_CORK, on Linux)."""
        client = self._client
        sock = client.socket()
        if sock is None or not client.want_write():
            return
        cork = getattr(socket, "TCP_CORK", None)
        if cork is None or not isinstance(sock, socket.socket):
            client.loop_write()
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
            client.loop_write()
        finally:
            if client.socket() is sock:
                sock.setsockopt(socket.IPPROTO_TCP, cork, 0)  # sends what is held back now

    def _schedule_reconnect(self) -> None:
        o = self.options
        self._reconnect_delay_s = (o.reconnect_min_s if self._reconnect_delay_s is None
                                   else min(2 * self._reconnect_delay_s, o.reconnect_max_s))
        # jittered, so that many services do not come back to a restarted broker in step
        self._reconnect_at = time.monotonic() + self._reconnect_delay_s * random.uniform(0.8, 1.0)

    def _wait_for_calls(self, timeout_s: float) -> None:
        """Sleep up to ``timeout_s`` while disconnected, waking early when a call arrives."""
        if self._early_call is not None:
            return
        try:
            self._early_call = self._queue.get(timeout=max(0.0, timeout_s))  # run next by _calls
        except queue.Empty:
            return  # nobody called meanwhile: the connection attempt is due

    def _say_goodbye(self, timeout_s: float = 5.0) -> None:
        """Publish the retained ``offline`` state, wait for the broker's PUBACK (which also means
        the acknowledgements queued before it went out), and disconnect."""
        client = self._client
        if self._conn.up.is_set():
            info = client.publish(
                self.state_topic, encode_monitor_state("offline", self.options.instance, __version__, self.clock()),
                qos=1, retain=True,
            )
            deadline = time.monotonic() + timeout_s
            while not info.is_published() and client.socket() is not None and time.monotonic() < deadline:
                client.loop(0.01)
            if not info.is_published():
                log.warning("the broker did not confirm the offline state before the disconnect")
        client.disconnect()
        deadline = time.monotonic() + 1.0
        while client.socket() is not None and time.monotonic() < deadline:
            client.loop(0.01)  # writes the DISCONNECT, then paho closes the socket

    def _housekeeping(self) -> None:
        self._flush_indicators()
        self._checkpoint()
        if self._recorder is not None and self.options.retention_days is not None and time.monotonic() >= self._prune_at:
            self._prune_at = time.monotonic() + PRUNE_EVERY_S
            self._recorder.prune(self.clock())

    def _commit_records(self) -> None:
        """Commit the recorder's rows, then acknowledge the messages they came from: a message
        is acknowledged only once what it produced is on disk (a crash before that makes the
        broker deliver it again; the tables' unique keys keep a redelivery from adding rows)."""
        if self._recorder is not None:
            self._recorder.commit()
        unacked, self._unacked = self._unacked, []
        for generation, mid, qos in unacked:
            if generation == self._generation:
                self._client.ack(mid, qos)

    # -- processing one message ------------------------------------------------------------
    def _process(self, msg: mqtt.MQTTMessage, arrived: float) -> None:
        self.stats.received += 1
        if msg.dup:
            self.stats.redelivered += 1
        try:
            topic_text = msg.topic
        except UnicodeDecodeError:
            self._count_reject(None, "topic", "topic is not UTF-8")
            return
        try:
            topic = parse_topic(topic_text)
        except TopicError as exc:
            self._reject(_wearer_of(topic_text), topic_text, "topic", str(exc), arrived)
            return
        try:
            if msg.retain and topic.kind in ("checkin/response", "control"):
                # a stored copy, handed over on a new subscription (a live one comes without the
                # flag): applied again, it would renew an old pause or undo a later resume
                raise _Reject("answer" if topic.kind == "checkin/response" else "control",
                              f"a retained {topic.kind} message is not applied: the broker would hand it "
                              "over again at every new subscription (publish it with retain off)")
            if topic.kind == "data":
                self._on_data(topic, msg.payload, arrived)
            elif topic.kind == "availability":
                self._on_availability(topic, msg.payload, arrived)
            elif topic.kind in ("battery", "contact"):
                value = decode_status(msg.payload, topic.kind)
                status = self._device(topic.wearer, topic.device, arrived)
                if topic.kind == "battery":
                    status.battery_percent = value
                else:
                    status.contact = value
            elif topic.kind == "checkin/response":
                self._once(msg, topic_text, lambda: self._on_answer(topic.wearer, msg.payload))
            elif topic.kind == "control":
                self._once(msg, topic_text, lambda: self._on_control(topic.wearer, msg.payload, arrived))
            elif topic.kind == "marker":
                self._on_marker(topic.wearer, topic.device, msg.payload, arrived)
            # monitor_state (ours or another instance's) and outputs need nothing
        except _Reject as exc:
            self._reject(topic.wearer, topic_text, exc.reason, str(exc), arrived)
        except IdentityError as exc:
            self._reject(topic.wearer, topic_text, "identity", str(exc), arrived)
        except ValueRangeError as exc:
            self._reject(topic.wearer, topic_text, "range", _safe_error(exc), arrived)
        except WireError as exc:
            self._reject(topic.wearer, topic_text, "payload", _safe_error(exc), arrived)
        except AnswerError as exc:
            self._reject(topic.wearer, topic_text, "answer", str(exc), arrived)
        except ControlError as exc:
            self._reject(topic.wearer, topic_text, "control", str(exc), arrived)
        except Exception as exc:  # a bug must not stop every wearer's monitor (nor loop on redelivery)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("wearer %s: a message on %s could not be processed (%s at %s:%d, a bug: please report "
                      "it); the message is dropped", topic.wearer, topic.kind, type(exc).__name__,
                      Path(where.filename).name, where.lineno)
            log.debug("the failure in full", exc_info=True)  # its text may hold values: DEBUG only
            self._reject(topic.wearer, topic_text, "internal", "the monitor could not process this message", arrived)

    def _once(self, msg: mqtt.MQTTMessage, topic: str, apply: Callable[[], None]) -> None:
        """Apply an answer/control once: a broker redelivery (DUP flag) of one already applied
        is skipped, so it is not refused as "already answered"."""
        key = (topic, bytes(msg.payload))
        if (msg.dup or key in self._handed_over) and key in self._recent_requests:
            self._handed_over.discard(key)  # (the new session's copy of one the old session handed over)
            return
        apply()
        self._recent_requests[key] = True
        while len(self._recent_requests) > 1024:
            self._recent_requests.popitem(last=False)

    def _on_data(self, topic, payload: bytes, arrived: float) -> None:
        try:
            batch = decode_batch(payload, topic.signal)
        except PayloadError as exc:
            why = identity_mismatch(payload, topic.wearer, topic.device, topic.signal)
            if why is not None:
                raise _Reject("identity", why) from exc
            raise
        wearer = self._wearer(topic.wearer, arrived)
        live = wearer.live
        owner = live.sources.get(topic.signal)
        if owner is not None and owner != topic.device:
            silent_s = arrived - live.source_seen_wall_s.get(topic.signal, -math.inf)
            # (a device sending long batches is silent between them)
            if silent_s <= self.options.stale_after_s + wearer.monitor.pipeline.state.batch_span_s.get(topic.signal, 0.0):
                raise _Reject(
                    "conflict",
                    f"wearer {topic.wearer!r} already receives {topic.signal} from device {owner!r}; "
                    "one device per signal (the other may take over after it falls silent)",
                )
            log.info("wearer %s: %s now comes from device %s (device %s fell silent)",
                     topic.wearer, topic.signal, topic.device, owner)
        status = self._device(topic.wearer, topic.device, arrived)  # (counts the device: at most 16 kept)
        tracker = live.trackers.setdefault((topic.device, topic.signal), StreamTracker())
        try:
            # "now" for a stream: the wall clock, or the wearer's newest sample when that is later
            # (a replay faster than real time whose IBI starts 10 min into the session)
            verdict = tracker.check(batch, now_s=max(arrived, live.newest_event_s or arrived))
        except ValueRangeError as exc:
            raise _Reject("future", str(exc)) from exc
        if self._recorder is not None and (verdict.accept or verdict.duplicate):
            # a redelivered batch too: its row may have been lost in a crash (kept once if not)
            self._recorder.batch(topic.wearer, topic.device, batch, payload, arrived)
        if not verdict.accept:
            if verdict.duplicate:
                self.stats.duplicates += 1
                if tracker.stats.duplicate_run in (LONG_DUPLICATE_RUN, 20 * LONG_DUPLICATE_RUN):
                    # redeliveries come in tens; this many in a row is a device that counts again
                    # from an old seq with times behind what was received: its data is dropped
                    log.warning("wearer %s: %d %s batches in a row from device %s dropped as duplicates: an old "
                                "seq with times before what was received. Did the device restart its count "
                                "(a new outbox, a second simulation)? Its data is not used until its seq and "
                                "times move past the newest batch received (a second simulation: give it other "
                                "wearer ids, anxmon simulate --wearer-prefix)", topic.wearer, tracker.stats.duplicate_run,
                                topic.signal, topic.device)
            return
        if verdict.gap_batches:
            self.stats.missing += verdict.gap_batches
            if self._warnings.allows(topic.wearer, "gap"):
                log.warning("wearer %s: %d %s batch(es) of device %s missing before seq %d (refused, lost on the "
                            "way, or processed after the wearer's last checkpoint before a crash): a gap in its data",
                            topic.wearer, verdict.gap_batches, topic.signal, topic.device, batch.seq)
        if verdict.behind_s > 1.0 and self._warnings.allows(topic.wearer, "behind"):
            log.warning("wearer %s: %s of device %s went back %.0f s in time with a higher seq (a clock set back?); "
                        "the monitor skips its samples until they pass the newest it had", topic.wearer,
                        topic.signal, topic.device, verdict.behind_s)
        if verdict.jump_s:
            log.warning("wearer %s: %s of device %s taken up again %.0f s ahead of its last sample (and of the "
                        "clock): %d batches in a row confirmed %.0f s of its data there (%.0f s needed)",
                        topic.wearer, topic.signal, topic.device, verdict.jump_s, verdict.ahead_batches,
                        verdict.ahead_confirmed_s, AHEAD_SPAN_S)
        live.sources[topic.signal] = topic.device
        live.source_seen_wall_s[topic.signal] = arrived
        status.last_event_s = batch.end_s if status.last_event_s is None else max(status.last_event_s, batch.end_s)
        live.newest_event_s = batch.end_s if live.newest_event_s is None else max(live.newest_event_s, batch.end_s)
        self._update_time_base(wearer, batch, arrived)
        self.stats.batches += 1
        wearer.dirty = True
        monitor = wearer.monitor
        try:
            ticks = monitor.update(batch, lambda t: self._stale_gate(wearer, t, arrived))
        except ValueError as exc:  # the core refused this batch (its state is unchanged or advanced)
            # (logged as every refusal is: its text, which may quote what the core was given, at DEBUG)
            raise _Reject("unsupported", f"the monitor could not process this {topic.signal} batch: {exc}") from exc
        for tick in ticks:
            self._publish_tick(wearer, tick, self._stale_gate(wearer, tick.t, arrived), arrived)

    def _update_time_base(self, wearer: _Wearer, batch: SampleBatch, arrived: float) -> None:
        live = wearer.live
        lag = arrived - batch.end_s
        if live.lag_floor_s is None or lag < live.lag_floor_s:
            live.lag_floor_s = lag
            live.lag_high_since_wall_s = None
        elif lag - live.lag_floor_s > self.options.stale_after_s / 2:
            # (not stale_after_s: on top of the core's 20-45 s release delay, a base 75-120 s
            # too early, e.g. one batch from a clock then corrected back, made every tick stale
            # for good without ever being replaced)
            if live.lag_high_since_wall_s is None:
                live.lag_high_since_wall_s = arrived
            elif arrived - live.lag_high_since_wall_s >= self.options.refloor_after_s:
                log.info("wearer %s: adopting a new time base (%.0f s later than before)",
                         wearer.id, lag - live.lag_floor_s)
                live.lag_floor_s = lag
                live.lag_high_since_wall_s = None
        else:
            live.lag_high_since_wall_s = None

    def _stale_gate(self, wearer: _Wearer, t_s: float, now: float) -> str | None:
        """``"stale"`` for a tick further behind than an on-time one can be (see Staleness)."""
        floor = wearer.live.lag_floor_s
        if floor is None:
            return None
        # long batches delay on-time ticks by up to two batch spans (the pipeline's release wait)
        behind = (now - t_s) - floor - 2 * wearer.monitor.pipeline.longest_batch_s()
        return "stale" if behind > self.options.stale_after_s else None

    def _publish_tick(self, wearer: _Wearer, tick: Tick, service_gate: str | None, now: float) -> None:
        self.stats.ticks += 1
        score = tick.score
        gate = score.gate or service_gate
        wearer.pending = encode_indicators(
            tick.t,
            score.value,
            gate,
            tick.indicators.values,
            tick.indicators.quality,
            score.contributions,
            {name: dev[2] for name, dev in score.deviations.items()},
            wearer.monitor.policy.effective_threshold(),
        )
        if now - wearer.last_indicator_wall >= self.options.indicator_interval_s:
            self._send_indicators(wearer, now)
        if self._recorder is not None:  # every tick, whatever the rate limit
            self._recorder.tick(wearer.id, tick, gate, wearer.monitor.policy.effective_threshold(), now)
        for d in tick.decisions:
            if isinstance(d, Expired):
                self.stats.expired += 1
                # when a wearer's body was judged stressed is health data: DEBUG (counts: the stop line)
                log.debug("wearer %s: check-in %s expired unanswered", wearer.id, d.prompt_id)
            elif d.sent:
                self.stats.checkins += 1
                self._checkpoint_soon(wearer)
                self._publish(wearer_topic(wearer.id, "checkin"), encode_checkin(d.prompt.to_dict()))
                log.debug("wearer %s: check-in %s sent", wearer.id, d.prompt.id)
            else:
                self.stats.suppressed[d.reason] += 1
                log.debug("wearer %s: check-in not sent (%s)", wearer.id, d.reason)

    def _send_indicators(self, wearer: _Wearer, now: float) -> None:
        if self._publish(wearer_topic(wearer.id, "indicators"), wearer.pending):
            self.stats.indicators += 1
        else:
            self.stats.indicators_dropped += 1
        wearer.pending = None
        wearer.last_indicator_wall = now

    def _flush_indicators(self, force: bool = False) -> None:
        now = self.clock()
        for wearer in self._wearers.values():
            if wearer.pending is not None and (force or now - wearer.last_indicator_wall >= self.options.indicator_interval_s):
                self._send_indicators(wearer, now)

    def _on_availability(self, topic, payload: bytes, arrived: float) -> None:
        text = decode_availability(payload)
        status = self._device(topic.wearer, topic.device, arrived)
        if status.availability != text:
            log.info("device %s/%s is %s", topic.wearer, topic.device, text)
        status.availability = text

    def _event_now(self, wearer: _Wearer | None, arrived: float) -> float:
        """The wearer's current event time: its newest sample, plus the wall-clock seconds since
        its last batch arrived (a wearer whose band is off or out of reach lives on: a check-in
        answered an hour later is an hour old); the wall clock before any data."""
        if wearer is None or wearer.live.newest_event_s is None:
            return arrived
        last_batch_wall_s = max(wearer.live.source_seen_wall_s.values(), default=arrived)
        return wearer.live.newest_event_s + max(0.0, arrived - last_batch_wall_s)

    def _on_answer(self, wearer_id: str, payload: bytes) -> None:
        answer = decode_answer(payload, wearer_id)
        wearer = self._wearers.get(wearer_id)
        if wearer is None:
            raise AnswerError(f"unknown prompt id {answer.prompt_id!r}: no check-in was sent to {wearer_id!r}")
        t_s = answer.t_s if answer.t_s is not None else self._event_now(wearer, self.clock())
        result = wearer.monitor.answer(t_s, answer.prompt_id, answer.rating, list(answer.labels))
        self._checkpoint_soon(wearer)
        self.stats.answers += 1
        if self._recorder is not None:
            self._recorder.answer(wearer_id, result, self.clock())
        log.debug("wearer %s: answer to check-in %s stored", wearer_id, answer.prompt_id)  # a timeline: DEBUG
        log.debug("wearer %s: answer %s -> learned %s, threshold %.2f", wearer_id, answer, result.learned, result.threshold)

    def _on_marker(self, wearer_id: str, source: str, payload: bytes, arrived: float) -> None:
        from monitor.markers import make_marker

        message = decode_marker(payload, wearer_id)
        t_s = self._message_time(wearer_id, message.t_s, arrived, "marker")
        marker = make_marker(t_s, message.label, message.kind)
        self.stats.markers += 1
        if self._recorder is not None:
            self._recorder.marker(wearer_id, marker.t_s, marker.kind, marker.label, arrived, source)
        log.debug("wearer %s: marker at %.3f recorded", wearer_id, marker.t_s)  # a wearer's timeline: DEBUG
        log.debug("wearer %s: marker %r", wearer_id, marker)

    def _message_time(self, wearer_id: str, t_s: float | None, arrived: float, what: str) -> float:
        """The event time of a marker or control: its own ``t`` (s) when it has one, at most
        ``MAX_FUTURE_S`` beyond the wearer's data and the clock as for a batch (else rejected as
        ``future``); without one, the wearer's now (``_event_now``)."""
        now = self._event_now(self._wearers.get(wearer_id), arrived)
        if t_s is None:
            return now
        ahead_s = t_s - max(now, arrived)
        if ahead_s > MAX_FUTURE_S:
            raise _Reject("future", f"{what} time {t_s:.0f} is {ahead_s:.0f} s ahead of the wearer's data and "
                                    f"of the clock; at most {MAX_FUTURE_S:.0f} s is accepted (is the device clock right?)")
        return t_s

    def _on_control(self, wearer_id: str, payload: bytes, arrived: float) -> None:
        control = decode_control(payload, wearer_id)
        if control.duration_s is not None and control.duration_s > MAX_CONTROL_DURATION_S:
            raise ControlError(f"duration_s must be at most {MAX_CONTROL_DURATION_S:.0f} s (30 days); for longer, "
                               "pause without a duration and resume later")
        t_s = self._message_time(wearer_id, control.t_s, arrived, "control")
        wearer = self._wearer(wearer_id, arrived)  # a pause may come before any data
        settings = {k: v for k, v in (("quiet_hours", control.quiet_hours), ("timezone", control.timezone)) if v is not None}
        result = wearer.monitor.control(t_s, control.action, control.duration_s, **settings)
        self._checkpoint_soon(wearer)
        self.stats.controls += 1
        log.info("wearer %s: %s%s", wearer_id, result.action, "" if result.until_s is None else f" (until {result.until_s})")

    # -- wearers, devices, rejections ------------------------------------------------------
    def _wearer(self, wearer_id: str, now: float) -> _Wearer:
        wearer = self._wearers.get(wearer_id)
        if wearer is None:
            phase_s = tick_phase(wearer_id, self.config.core.tick_s) if self.options.spread_ticks else 0.0
            monitor = WearerMonitor(wearer_id, self.config, phase_s)
            wearer = _Wearer(wearer_id, monitor, LiveState(), now, self.options.checkpoint_s)
            self._wearers[wearer_id] = wearer
            log.info("new wearer %s", wearer_id)
        return wearer

    def _device(self, wearer_id: str, device: str, arrived: float) -> DeviceStatus:
        status = self._devices.get((wearer_id, device))
        if status is None:
            mine = self._devices_of.setdefault(wearer_id, set())
            if len(mine) >= MAX_DEVICES_PER_WEARER:  # forget the one heard from longest ago (bounded memory)
                oldest = min(mine, key=lambda d: self._devices[(wearer_id, d)].last_seen_wall_s or -math.inf)
                del self._devices[(wearer_id, oldest)]
                mine.discard(oldest)
                wearer = self._wearers.get(wearer_id)
                if wearer is not None and oldest not in wearer.live.sources.values():
                    for key in [k for k in wearer.live.trackers if k[0] == oldest]:
                        del wearer.live.trackers[key]
                if self._warnings.allows(wearer_id, "devices"):
                    log.warning("wearer %s: more than %d devices; the one heard from longest ago is forgotten",
                                wearer_id, MAX_DEVICES_PER_WEARER)
            status = self._devices[(wearer_id, device)] = DeviceStatus()
            mine.add(device)
        status.last_seen_wall_s = arrived
        return status

    def _count_reject(self, wearer: str | None, reason: str, error: str, topic: str | None = None) -> None:
        """Count and log a refused input: above DEBUG only its wearer, ``topic`` (a parsed one:
        nothing but valid ids) and reason, at most once a minute per wearer and reason. The
        error may quote the payload (a field's value, an answer's words): DEBUG only."""
        self.stats.rejected[reason] += 1
        log.debug("rejected input of wearer %s (%s): %s", wearer or "?", reason, error)
        if self._warnings.allows(wearer or "?", reason):
            told = f", and the sender on {wearer_topic(wearer, 'rejected')}" if wearer else ""
            log.warning("rejected input of wearer %s on %s (%s): -vv logs why%s", wearer or "?",
                        topic or "an invalid topic", reason, told)

    def _reject(self, wearer: str | None, topic: str, reason: str, error: str, now: float) -> None:
        """Count, log (``_count_reject``) and tell the sender."""
        self._count_reject(wearer, reason, error, topic if reason != "topic" else None)
        if wearer is not None:
            self._publish(wearer_topic(wearer, "rejected"), encode_rejected(topic, reason, error, now))

    def _publish(self, topic: str, payload: bytes) -> bool:
        info = self._client.publish(topic, payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            log.warning("outgoing queue full (broker unreachable for long?): a message to %s was dropped", topic)
            return False
        return True  # MQTT_ERR_NO_CONN still queues it in paho: sent after the reconnect

    # -- checkpoints -----------------------------------------------------------------------
    def _restore(self) -> None:
        rows = self._store.load_all()
        now = self.clock()
        rebuilt = 0
        for i, (wearer_id, blob) in enumerate(sorted(rows.items())):
            if not isinstance(blob, dict) or blob.get("schema") != CHECKPOINT_SCHEMA:
                raise ServiceError(
                    f"checkpoint of wearer {wearer_id!r} in {self._store.path} is not one this version "
                    "reads; move the file away to start every wearer afresh"
                )
            monitor = WearerMonitor(wearer_id, self.config)
            try:
                monitor.set_state(blob["monitor"])  # (with the tick phase the wearer started with)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ServiceError(
                    f"checkpoint of wearer {wearer_id!r} does not fit this configuration ({exc}); "
                    f"move {self._store.path} away to start every wearer afresh"
                ) from exc
            rebuilt += monitor.pipeline.rebuilt_chains
            zone = monitor.policy.missing_timezone()
            if zone is not None:
                log.warning("wearer %s: time zone %s is not in this machine's zone database (a tzdata update?): "
                            "quiet hours and the daily cap follow the configured zone %s until the wearer sets "
                            "theirs again", wearer_id, zone, self.config.policy.timezone)
            # spread the next checkpoints of restored wearers over one interval
            due = now + self.options.checkpoint_s * (1 + i / max(1, len(rows)))
            wearer = _Wearer(wearer_id, monitor, blob["live"], now, 0.0)
            wearer.checkpoint_due, wearer.saved = due, True
            self._wearers[wearer_id] = wearer
        self.resumed_wearers = len(rows)
        if rows:
            log.info("resumed %d wearer(s) from %s", len(rows), self._store.path)
        if rebuilt:
            log.warning("%d wearer(s) were checkpointed under another (or an unrecorded) [core] configuration: their "
                        "signal processors start afresh (a gap in their indicators; baselines are kept)",
                        rebuilt)

    def _checkpoint_soon(self, wearer: _Wearer) -> None:
        """The wearer's check-in policy changed (a check-in sent, an answer, a pause...): checkpoint
        the wearer in this pass, before its acknowledgements and check-in go out. A crash then
        cannot forget an answer or a pause, nor send a check-in twice (it could, up to
        ``checkpoint_s`` after the change). Rare, so each costs one wearer's checkpoint."""
        wearer.dirty = True
        wearer.checkpoint_due = -math.inf
        self._urgent_checkpoints += 1

    def _checkpoint(self, everything: bool = False, budget: int = 64) -> int:
        """Write dirty wearers whose checkpoint is due, or that have none yet (all dirty ones
        with ``everything``)."""
        # the recording first: what a checkpoint covers must be recorded (a message whose
        # effect is in a checkpoint is not processed again after a crash)
        self._commit_records()
        now = self.clock()
        due = [w for w in self._wearers.values() if w.dirty and (everything or w.checkpoint_due <= now or not w.saved)]
        if not everything:
            due.sort(key=lambda w: w.checkpoint_due)
            due = due[:budget]  # spread a burst over several passes (tens of ms each at most)
        if not due:
            return 0
        rows = [
            # the live state, not a copy: the store pickles it right here, on the thread that owns it
            (w.id, {"schema": CHECKPOINT_SCHEMA, "monitor": w.monitor.get_state(copy=False), "live": w.live},
             w.live.newest_event_s)
            for w in due
        ]
        written = self._store.save(rows, saved_at_s=now)
        for w in due:
            w.dirty = False
            if w.saved or w.checkpoint_due <= now:  # (a new wearer's first one keeps the spread one that follows)
                w.checkpoint_due = now + self.options.checkpoint_s
            w.saved = True
        self.stats.checkpoints += written
        return written


def _wearer_of(topic: str) -> str | None:
    """The wearer id in a topic that failed to parse, when it is a valid one (to tell it why)."""
    parts = topic.split("/")
    if len(parts) >= 3 and "/".join(parts[:2]) == PREFIX and ID_PATTERN.fullmatch(parts[2]) and parts[2] != "monitor":
        return parts[2]
    return None


# --------------------------------------------------------------------------------------------
# `anxmon run`


LOCK_FILE = "anxmon-run.lock"


def lock_data_dir(data_dir: Path):
    """Hold an exclusive lock on ``data_dir`` for this process (released when it ends, even
    by SIGKILL), or raise ``ServiceError`` naming the process that holds it: two services on
    one directory would overwrite each other's checkpoints and broker files. Returns the open
    lock file, to keep."""
    import fcntl

    path = data_dir / LOCK_FILE
    try:
        f = open(path, "a+")
    except OSError as exc:
        raise ServiceError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ServiceError(f"{data_dir} is in use by another anxmon run (pid {holder}); stop it, or give "
                           "this one another --data-dir") from None
    try:
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
    except OSError as exc:  # a full disk: say which file
        try:
            f.close()  # (flushes again, and fails again: the file is closed all the same)
        except OSError:
            pass
        raise ServiceError(f"cannot write {path}: {exc.strerror or exc} (is the disk full?)") from None
    return f


def usable_as_data_dir(folder: Path) -> bool:
    """Whether ``anxmon run`` may take the existing ``folder`` for its data (and make it mode
    0700): it is empty (as systemd's ``StateDirectory=`` makes it), or anxmon's data directory
    already (a file of the service's is there, even only the broker's credentials written
    beforehand), not a folder of other files.

    >>> usable_as_data_dir(Path(__file__).parent)
    False
    """
    from monitor.broker import CREDENTIALS_FILE

    own = (LOCK_FILE, CHECKPOINT_FILE, CLIENT_SECRET_FILE, CREDENTIALS_FILE, RECORDING_FILE)
    return not any(folder.iterdir()) or any((folder / name).exists() for name in own)


def start_embedded_broker(data_dir: Path, kind: str = "nats"):
    """Start the embedded broker in ``data_dir/broker``, reusing the port and users of the last
    run when possible; write its credentials to ``data_dir/broker-credentials.json`` (0600)."""
    import json

    from monitor.broker import (CREDENTIALS_FILE, BrokerError, check_account, free_port, start_broker,
                                stop_orphaned_broker)

    creds = data_dir / CREDENTIALS_FILE
    users, port = None, None
    if creds.exists():
        try:
            saved = json.loads(creds.read_text(), object_pairs_hook=_unique_keys)
            users, port = dict(saved["users"]), int(saved["port"])
        except _DuplicateKey as exc:
            raise ServiceError(f"{creds}: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceError(f"{creds} is not a credentials file anxmon wrote ({exc}); move it away") from exc
        for user, password in users.items():
            try:
                check_account(user, password)
            except BrokerError as exc:
                raise ServiceError(f"{creds}: {exc}") from None
        # a run killed with SIGKILL leaves its broker running on that port: stop it first, so that
        # the port is kept (bridges, simulators and phones reconnect to it)
        if stop_orphaned_broker(kind, data_dir / "broker"):
            log.info("stopped the embedded broker a killed run left behind")
        if not _port_free(port):
            log.warning("port %d of the last run is taken; the embedded broker gets a new one", port)
            port = free_port()
    broker = start_broker(kind, data_dir=data_dir / "broker", port=port, users=users)
    body = {
        "kind": kind,
        "host": broker.host,
        "port": broker.port,
        "url": broker.url,
        "users": broker.users,
        "note": "the monitor user is the service; add a wearer as \"name\": \"password\" under users "
                "and restart: that user may only read and write anxmon/v1/name/#",
    }
    try:
        fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, indent=2)
        os.chmod(creds, 0o600)
    except OSError as exc:  # a full disk at the first start: say which file
        broker.stop()
        raise ServiceError(f"cannot write {creds}: {exc.strerror or exc}") from None
    return broker, creds


class _DuplicateKey(ValueError):
    """A JSON object names a key twice (``json`` would silently keep the last)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """``object_pairs_hook`` refusing a key given twice: a second ``"monitor"`` under ``users``
    would silently make a wearer's password the service's, and that wearer the broker's admin.

    >>> _unique_keys([("alice", "pw1"), ("bob", "pw2")])
    {'alice': 'pw1', 'bob': 'pw2'}
    """
    from monitor.broker import MONITOR_USER

    body: dict = {}
    for key, value in pairs:
        if key in body:
            if key == MONITOR_USER:
                raise _DuplicateKey(f"{key!r} is given twice: {key!r} is the service's own broker user (it reads "
                                    "and writes every wearer's topics), never a wearer; give the wearer another name")
            raise _DuplicateKey(f"{key!r} is given twice (the second would silently replace the first)")
        body[key] = value
    return body


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker binds (TIME_WAIT is fine)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _watch(service: "MonitorService", broker, stop: threading.Event, max_restarts: int = 5,
           window_s: float = 600.0) -> str | None:
    """Wait for ``stop`` or the worker's failure, watching the embedded ``broker`` (None: an
    external one): when its process dies, restart it on the same port and store (a WARNING), at
    most ``max_restarts`` times in ``window_s``. Returns why it could not be kept running (the
    caller exits non-zero, so that systemd or Docker restarts everything), else None."""
    from monitor.broker import BrokerError

    restarts: list[float] = []
    while not stop.wait(0.5):
        if service.failed is not None:
            return None
        how = broker.exited() if broker is not None else None
        if how is None:
            continue
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < window_s]
        if len(restarts) >= max_restarts:
            return (f"the embedded broker exited ({how}), the {len(restarts) + 1}th time in {window_s / 60:.0f} min; "
                    f"giving up (see {broker.data_dir / (broker.kind + '.log')})")
        log.warning("the embedded broker (pid %d) exited (%s); restarting it on port %d (see %s)",
                    broker.process.pid, how, broker.port, broker.data_dir / f"{broker.kind}.log")
        try:
            broker.start()
        except BrokerError as exc:
            return f"the embedded broker exited ({how}) and could not be restarted: {exc}"
        restarts.append(now)
        log.warning("the embedded broker runs again on port %d; the service reconnects", broker.port)

        def reconnect_now(s: "MonitorService") -> None:  # not after the backoff of the outage (up to 30 s)
            s._reconnect_delay_s = None
            s._reconnect_at = 0.0

        try:
            service.call(reconnect_now, timeout_s=5.0)
        except concurrent.futures.TimeoutError:
            pass  # the worker is busy: it reconnects after its backoff
    return None


def run_service(args) -> int:
    """``anxmon run``: the service until SIGTERM/SIGINT (or until its embedded broker cannot be
    kept running). Returns the exit status (a signal's: ``monitor.stopping``)."""
    from monitor.stopping import StopSignals

    with StopSignals() as signals:  # from here on a signal stops the run cleanly, even during start-up
        return _run_service(args, signals)


def _run_service(args, signals) -> int:
    import sys

    from monitor.config import load_config

    config = load_config(args.config, args.set or [])
    options = ServiceOptions(
        instance=args.instance,
        checkpoint_s=args.checkpoint_s,
        stale_after_s=args.stale_after_s,
        indicator_interval_s=args.indicator_interval_s,
        mqtt_version=args.mqtt_version,
        record=not getattr(args, "no_record", False),
        record_raw=getattr(args, "record_raw", False),
        retention_days=getattr(args, "retention_days", None),
        spread_ticks=not getattr(args, "aligned_ticks", False),
    )
    if not str(args.data_dir).strip():  # (an unset variable): not the current directory, made 0700
        raise ServiceError("--data-dir is empty: give the folder for the service's data (default ./anxmon-data)")
    data_dir = Path(args.data_dir).resolve()  # one name for the directory, however it was typed
    if data_dir.exists() and not data_dir.is_dir():
        raise ServiceError(f"--data-dir {args.data_dir} is a file, not a directory")
    own = f"give the service a folder of its own (it is made private, mode 0700), e.g. {data_dir / 'anxmon-data'}"
    if data_dir.is_dir() and data_dir.stat().st_mode & 0o002:  # /tmp: made 0700 below, every other user locked out
        raise ServiceError(f"--data-dir {args.data_dir} is a folder every user may write to: {own}")
    if data_dir.is_dir() and not usable_as_data_dir(data_dir):  # `.` of a project, `~`: locked by the 0700 below
        raise ServiceError(f"--data-dir {args.data_dir} already holds files that are not anxmon's: {own}")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    lock = lock_data_dir(data_dir)  # noqa: F841 (held until the process ends)
    stop = signals.event
    broker_failed = None
    broker = None
    url = args.broker
    service = None
    try:
        if url is None:
            broker, creds = start_embedded_broker(data_dir)
            url = broker.url
            print(f"anxmon: embedded nats-server broker on mqtt://{broker.host}:{broker.port} "
                  f"(credentials in {creds})", flush=True)
        service = MonitorService(url, data_dir, config, options).start()
        connected = service.wait_connected(10.0, until=stop)  # (a signal meanwhile: straight to the stop)
        if not stop.is_set():
            if not connected:
                print(f"anxmon: broker {service.address} not reachable yet; retrying in the background", flush=True)
            resumed = service.resumed_wearers
            print(f"anxmon: monitor '{options.instance}' running ({resumed} wearer(s) resumed from "
                  f"{data_dir / CHECKPOINT_FILE}); SIGTERM or Ctrl-C stops it", flush=True)
            if options.record:
                keep = ("kept forever: see --retention-days" if options.retention_days is None
                        else f"kept {options.retention_days:g} days")
                size = "about 21.5 MB per wearer per day" + (", plus about 9 MB per hour of raw E4 data"
                                                             if options.record_raw else "")
                print(f"anxmon: recording to {data_dir / RECORDING_FILE} (raw batches {'on' if options.record_raw else 'off'}; "
                      f"{size}; {keep})", flush=True)
        broker_failed = _watch(service, broker, stop)
    finally:
        if service is not None:
            service.stop()
        if broker is not None:
            broker.stop()
    if broker_failed is not None:
        print(f"anxmon: error: {broker_failed}", file=sys.stderr, flush=True)
        return 1
    if service.failed is not None:
        if isinstance(service.failed, AnxmonError):  # e.g. a checkpoint that cannot be written: it says why
            print(f"anxmon: error: {service.failed}", file=sys.stderr, flush=True)
            return 2
        print(f"anxmon: the service failed: {service.failed!r}", flush=True)
        return 1
    s = service.stats
    print(f"anxmon: stopped after {s.batches} batches, {s.checkins} check-ins, "
          f"{sum(s.rejected.values())} rejected, {s.duplicates} duplicates, {s.missing} missing, "
          f"{s.redelivered} redelivered; "
          "final checkpoint written", flush=True)
    return signals.status()
