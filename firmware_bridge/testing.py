"""Stand-ins for tests and demos: a scripted BLE strap behind a bleak-like client, a simulated
clock, and a subscriber that plays the monitor (persistent session, QoS 1).

Example
-------
>>> strap = FakeStrap([bytes.fromhex("163c1104"), None, bytes.fromhex("163cf503")])
>>> strap.script[1] is None   # None marks "the strap walks out of range here"
True
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from monitor.mqtt_client import BrokerAddress, make_client
from monitor.wire import DATA_SUBSCRIPTION, SampleBatch, StreamTracker, decode_batch, parse_topic


class SimClock:
    """A settable unix clock: ``clock()`` returns ``clock.now``."""

    def __init__(self, start_s: float = 1_700_000_000.0):
        self.now = float(start_s)

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeStrap:
    """The strap's side: notifications to replay (``None`` = link lost there), battery, failures.

    Each notification advances ``clock`` by ``interval_s`` (simulated time), like a strap that
    notifies once a second; ``delay_s`` is the real pause between notifications.
    """

    script: list[bytes | None]
    clock: SimClock = field(default_factory=SimClock)
    interval_s: float = 1.0
    delay_s: float = 0.002
    battery_percent: int = 87
    fail_connects_after_loss: int = 1  # connection attempts that fail after each loss (out of range)
    position: int = 0
    connects: int = 0
    failed_connects: int = 0
    _fail_budget: int = 0

    @property
    def done(self) -> bool:
        return self.position >= len(self.script)


class FakeBleakClient:
    """Just enough of ``bleak.BleakClient`` for ``firmware_bridge.ble.run_ble``.

    Use ``functools.partial(FakeBleakClient, strap)`` as the ``client_factory``.
    """

    def __init__(self, strap: FakeStrap, address: str, disconnected_callback=None, **_):
        self.strap = strap
        self.address = address
        self._on_lost = disconnected_callback
        self.is_connected = False
        self._task: asyncio.Task | None = None

    async def connect(self, **_) -> bool:
        if self.strap._fail_budget > 0:
            self.strap._fail_budget -= 1
            self.strap.failed_connects += 1
            raise OSError(f"device {self.address} not found")
        self.is_connected = True
        self.strap.connects += 1
        return True

    async def start_notify(self, uuid: str, callback) -> None:
        if not self.is_connected:
            raise OSError("not connected")
        self._task = asyncio.get_running_loop().create_task(self._replay(callback))

    async def _replay(self, callback) -> None:
        strap = self.strap
        while self.is_connected and not strap.done:
            item = strap.script[strap.position]
            strap.position += 1
            if item is None:  # the strap walks out of range
                self.is_connected = False
                strap._fail_budget = strap.fail_connects_after_loss
                if self._on_lost is not None:
                    self._on_lost(self)
                return
            strap.clock.now += strap.interval_s
            callback(None, bytearray(item))
            await asyncio.sleep(strap.delay_s)

    async def read_gatt_char(self, uuid: str) -> bytearray:
        if not self.is_connected:
            raise OSError("not connected")
        return bytearray([self.strap.battery_percent])

    async def disconnect(self) -> bool:
        self.is_connected = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
        return True


class FakeServices:
    """Just enough of bleak's resolved services: which characteristics a fake device offers."""

    def __init__(self, uuids):
        self.uuids = set(uuids)

    def get_characteristic(self, uuid):
        return uuid if uuid in self.uuids else None


class MonitorSubscriber:
    """Plays the monitor: a persistent session (clean_session=False) subscribed at QoS 1.

    Records every data batch as it arrives (``raw``) and what a ``StreamTracker`` accepts
    (``accepted``, duplicates dropped), per (device, signal); retained/status topics go to
    ``other``.
    """

    def __init__(self, host: str, port: int, username: str, password: str, client_id: str = "test-monitor"):
        self.raw: dict[tuple[str, str], list[SampleBatch]] = defaultdict(list)
        self.accepted: dict[tuple[str, str], list[SampleBatch]] = defaultdict(list)
        self.trackers: dict[tuple[str, str], StreamTracker] = defaultdict(StreamTracker)
        self.other: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = make_client(BrokerAddress(host, port, username, password), client_id, clean=False)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(DATA_SUBSCRIPTION, 1)])
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _on_message(self, client, userdata, msg) -> None:
        topic = parse_topic(msg.topic) if msg.topic.count("/") == 4 and not msg.topic.endswith(("/battery", "/contact")) else None
        with self._lock:
            if topic is None or topic.kind != "data":
                self.other.append((msg.topic, msg.payload))
                return
            key = (topic.device, topic.signal)
            batch = decode_batch(msg.payload, topic.signal)
            self.raw[key].append(batch)
            if self.trackers[key].check(batch).accept:
                self.accepted[key].append(batch)

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        with self._lock:
            return predicate(self)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
