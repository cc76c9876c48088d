"""Publish the outbox to MQTT: QoS 1, a stable client id, retained availability with a last will.

The ``Publisher`` runs paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``) in its network thread,
which reconnects by itself with exponential backoff (``reconnect_min_s`` .. ``reconnect_max_s``).
Its own drain thread hands the oldest outbox rows to paho, at most ``window`` unacknowledged
at a time, and deletes a row only when its PUBACK arrives. Rows handed to paho before a
disconnect are re-sent by paho on reconnect (with the DUP flag), so nothing is handed twice
by this process; after a restart the new process starts from the oldest row in the outbox.
Callbacks from paho never block: they only post to a queue (paho calls ``on_publish`` while
holding its own lock).

Availability is ``online`` only while the broker connection is up **and** the bridge says
the device is delivering; the last will (retained ``offline``) covers a crash or a lost link.

``parse_broker_url`` is the one place that reads ``mqtt://user:pass@host:port`` (``mqtts://``
for TLS).

Example
-------
>>> parse_broker_url("mqtt://alice:s%40cret@127.0.0.1:1884")      # (the password is never shown)
BrokerAddress(host='127.0.0.1', port=1884, username='alice', tls=False)
>>> parse_broker_url("mqtt://alice:s%40cret@127.0.0.1:1884").password
's@cret'
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from monitor.errors import ConfigError
from monitor.wire import availability_topic, check_id

from firmware_bridge.outbox import Outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr or a log
    tls: bool = False

    def __str__(self) -> str:  # never shows the password
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def private_client_id(prefix: str, secret: str | None = None) -> str:
    """An MQTT client id no other broker user can guess: ``prefix`` plus a secret suffix (a new
    random one when ``secret`` is None). Any user of a broker may connect with any client id;
    one who knew ours could take our session over, kick us off, or wipe what is queued for us.

    >>> private_client_id("anxmon-app-main").startswith("anxmon-app-main-")
    True
    >>> private_client_id("anxmon-bridge-alice-h10", "6f3b")
    'anxmon-bridge-alice-h10-6f3b'
    """
    return f"{prefix}-{secret if secret is not None else secrets.token_hex(8)}"


def connect_failure(exc: BaseException | None) -> str:
    """Why a connection attempt failed, in a few words (for the log).

    >>> connect_failure(ConnectionRefusedError(111, "Connection refused"))
    'connection refused: nothing listens on that port'
    >>> connect_failure(None)
    'no reason given'
    """
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens on that port"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror or exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer (timed out)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if exc is None:
        return "no reason given"
    return f"{type(exc).__name__}: {exc}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Read ``mqtt[s]://[user[:password]@]host[:port]``; ``ConfigError`` when it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or "://" not in url:
        shown = re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)[:80]  # never a password
        raise ConfigError(f"broker URL must look like mqtt://[user:password@]host[:port] (or mqtts://), got {shown!r}")
    if not parts.hostname:
        raise ConfigError("broker URL has no host (expected mqtt://user:password@host:port)")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("broker URL port is not a number between 0 and 65535") from None
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
    )


@dataclass
class PublisherStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0  # outbox rows acknowledged by the broker


class Publisher:
    """Drains an ``Outbox`` to the broker and keeps availability and status topics current.

    Parameters
    ----------
    broker : str or BrokerAddress
        ``mqtt://user:password@host:port``.
    wearer, device : str
        Ids in the topics (``[a-z0-9_-]{1,64}``).
    outbox : Outbox
        Where batches wait for their PUBACK.
    client_id : str, optional
        MQTT client id; defaults to ``anxmon-bridge-{wearer}-{device}-{secret}``, the secret kept
        in the outbox (stable across restarts, unguessable: ``private_client_id``).
    window : int
        Batches handed to paho and not yet acknowledged, at most.
    """

    def __init__(
        self,
        broker: str | BrokerAddress,
        wearer: str,
        device: str,
        outbox: Outbox,
        client_id: str | None = None,
        window: int = 50,
        keepalive_s: int = 15,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 8,
    ):
        self.address = broker if isinstance(broker, BrokerAddress) else parse_broker_url(broker)
        self.wearer = check_id("wearer", wearer)
        self.device = check_id("device", device)
        self.outbox = outbox
        self.client_id = client_id or private_client_id(f"anxmon-bridge-{wearer}-{device}", outbox.client_secret())
        self.window = int(window)
        self.keepalive_s = int(keepalive_s)
        self.stats = PublisherStats()
        self.availability_topic = availability_topic(wearer, device)

        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True, protocol=mqtt.MQTTv311
        )
        if self.address.username is not None:
            self._client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            self._client.tls_set()
        self._client.will_set(self.availability_topic, b"offline", qos=1, retain=True)
        self._client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        self._client.max_inflight_messages_set(self.window)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

        self._events: queue.SimpleQueue = queue.SimpleQueue()  # ("ack", mid) | ("connected",)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()  # guards the wanted availability and status
        self._want_online = False
        self._sent_online: bool | None = None  # what the broker last got from this connection
        self._status: dict[str, tuple[str, bytes]] = {}  # kind -> (topic, payload) not yet sent
        self._inflight: dict[int, int] = {}  # paho mid -> outbox row id (drain thread only)
        self._last_handed = 0
        self._resend_status = False
        self._fail_logged_at: float | None = None
        self.refused: str | None = None  # why the broker refused the last connection (None: it did not)
        self._thread: threading.Thread | None = None

    # -- public ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> "Publisher":
        self._client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._drain_loop, name=f"outbox-{self.device}", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """New rows are in the outbox: send them now rather than at the next poll."""
        self._wake.set()

    def set_availability(self, online: bool) -> None:
        with self._lock:
            self._want_online = bool(online)
        self._wake.set()

    def publish_status(self, topic: str, payload: bytes) -> None:
        """Publish a retained status (battery, contact); only the latest per topic is kept."""
        with self._lock:
            self._status[topic] = (topic, payload)
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop cleanly: wait up to ``timeout_s`` for the broker to acknowledge the outbox (also
        while (re)connecting), publish ``offline`` if connected and disconnect. Unacknowledged
        rows stay in the outbox for the next start."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        while (len(self.outbox) or self._inflight) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._process_events()
        if self.connected:
            info = self._client.publish(self.availability_topic, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except RuntimeError as exc:
                log.warning("could not publish 'offline' before disconnecting: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks (network thread: never block here) ---------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            log.error("broker %s refused the connection: %s", self.address, reason_code)
            return
        self.refused = None
        self.stats.connects += 1
        self._fail_logged_at = None
        self._connected.set()
        self._events.put(("connected",))
        self._wake.set()
        log.info("connected to %s as %s; %d batch(es) in the outbox", self.address, self.client_id, len(self.outbox))

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its ``except OSError``: the exception says why
        self._connect_failed(connect_failure(sys.exc_info()[1]))

    def _connect_failed(self, why: str) -> None:
        now = time.monotonic()
        if self._fail_logged_at is None or now - self._fail_logged_at > 60.0:
            self._fail_logged_at = now
            log.warning("cannot reach broker %s (%s); retrying, batches wait in the outbox (%d)", self.address, why,
                        len(self.outbox))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stop.is_set():
            self.stats.disconnects += 1
            log.warning("lost the broker %s (%s); reconnecting, batches wait in the outbox", self.address, reason_code)
        elif not was and not self._stop.is_set() and self.refused is None:
            self._connect_failed(f"no MQTT answer to the connection ({reason_code}): a hung broker, or a port "
                                 "that is not MQTT?")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._events.put(("ack", mid))
        self._wake.set()

    # -- drain thread ----------------------------------------------------------------------
    def _process_events(self) -> None:
        acked = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event[0] == "ack":
                row_id = self._inflight.pop(event[1], None)
                if row_id is not None:
                    acked.append(row_id)
            elif event[0] == "connected":
                self._sent_online = None  # a new session: say who we are again
                with self._lock:
                    self._resend_status = True
        if acked:
            self.stats.published += self.outbox.ack(acked)

    def _drain_loop(self) -> None:
        last_status: dict[str, tuple[str, bytes]] = {}
        while not self._stop.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
            self._process_events()
            if not self.connected:
                continue
            with self._lock:
                want = self._want_online
                pending = dict(self._status)
                self._status.clear()
                if self._resend_status:
                    pending = {**last_status, **pending}
                    self._resend_status = False
            if want != self._sent_online:
                self._client.publish(self.availability_topic, b"online" if want else b"offline", qos=1, retain=True)
                self._sent_online = want
            for topic, payload in pending.values():
                self._client.publish(topic, payload, qos=1, retain=True)
                last_status[topic] = (topic, payload)
            free = self.window - len(self._inflight)
            if free <= 0:
                continue
            for row in self.outbox.peek(after_id=self._last_handed, limit=free):
                info = self._client.publish(row.topic, row.payload, qos=1)
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    break
                # MQTT_ERR_NO_CONN still queues the message in paho: it is sent on reconnect
                self._inflight[info.mid] = row.id
                self._last_handed = row.id
