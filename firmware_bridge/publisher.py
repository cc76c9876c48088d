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

The broker URL, the paho client and its id come from ``monitor.mqtt_client`` (shared with
the monitor's clients).

Example
-------
>>> from firmware_bridge.outbox import Outbox
>>> publisher = Publisher("mqtt://alice:pw@127.0.0.1:1883", "alice", "h10", Outbox("outbox.sqlite"))  # doctest: +SKIP
>>> publisher.start().set_availability(True)                                                        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from monitor.mqtt_client import (BrokerAddress, ConnectionState, connect_failure, make_client, parse_broker_url,
                                 private_client_id, shown_client_id)
from monitor.wire import availability_topic, check_id

from firmware_bridge.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)


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
    unreachable_hint : str
        Added to the "cannot reach broker" warning (``monitor.broker.embedded_broker_hint``).
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
        unreachable_hint: str = "",
    ):
        self.address = broker if isinstance(broker, BrokerAddress) else parse_broker_url(broker)
        self.wearer = check_id("wearer", wearer)
        self.device = check_id("device", device)
        self.outbox = outbox
        self.client_id = client_id or private_client_id(f"anxmon-bridge-{wearer}-{device}", outbox.client_secret())
        self.window = int(window)
        self.keepalive_s = int(keepalive_s)
        self.stats = PublisherStats()
        self.unreachable_hint = unreachable_hint
        self.availability_topic = availability_topic(wearer, device)

        self._client = make_client(self.address, self.client_id)
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
        self._conn = ConnectionState()  # connected, or why the broker refused us
        self._lock = threading.Lock()  # guards the wanted availability and status
        self._want_online = False
        self._sent_online: bool | None = None  # what the broker last got from this connection
        self._status: dict[str, tuple[str, bytes]] = {}  # kind -> (topic, payload) not yet sent
        self._inflight: dict[int, int] = {}  # paho mid -> outbox row id (drain thread only)
        self._last_handed = 0
        self._acked_rows: list[int] = []  # rows the broker acknowledged, not yet removed from the outbox
        self._resend_status = False
        self._fail_logged_at: float | None = None
        self._thread: threading.Thread | None = None

    # -- public ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._conn.up.is_set()

    @property
    def refused(self) -> str | None:
        """Why the broker refused the last connection (None: it did not)."""
        return self._conn.refused

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
        if not self._conn.accepted(reason_code):
            log.error("broker %s refused the connection: %s", self.address, reason_code)
            return
        self.stats.connects += 1
        self._fail_logged_at = None
        self._conn.up.set()
        self._events.put(("connected",))
        self._wake.set()
        log.info("connected to %s as %s; %d batch(es) in the outbox", self.address, shown_client_id(self.client_id),
                 len(self.outbox))

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its ``except OSError``: the exception says why
        self._connect_failed(connect_failure(sys.exc_info()[1]))

    def _connect_failed(self, why: str) -> None:
        now = time.monotonic()
        if self._fail_logged_at is None or now - self._fail_logged_at > 60.0:
            self._fail_logged_at = now
            log.warning("cannot reach broker %s (%s)%s; retrying, batches wait in the outbox (%d)", self.address, why,
                        self.unreachable_hint, len(self.outbox))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._conn.up.is_set()
        self._conn.up.clear()
        if was and not self._stop.is_set():
            self.stats.disconnects += 1
            log.warning("lost the broker %s (%s); reconnecting, batches wait in the outbox", self.address, reason_code)
        elif not was and not self._stop.is_set() and self._conn.refused is None:
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
        if not acked and not self._acked_rows:
            return
        failing = bool(self._acked_rows)
        self._acked_rows += acked
        try:
            self.stats.published += self.outbox.ack(self._acked_rows)
        except OutboxError as exc:  # (a full disk): tried again next pass; sending goes on
            if not failing:
                log.error("%s; the acknowledged batches stay in it until it can be written", exc)
            return
        if failing:
            log.info("outbox %s can be written again", self.outbox.path)
        self._acked_rows = []

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
