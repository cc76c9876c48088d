"""The bridge loop's core: decoded samples in, batches into the outbox, status to the publisher.

Transports (BLE, UDP, serial, stdin) call ``Bridge.feed`` with what their decoder produced
and ``Bridge.tick`` a few times a second. ``tick`` cuts due batches, stores them in the
outbox (one transaction, sequence numbers allocated there) and wakes the publisher.

"Availability you can trust": the device is ``online`` only while it delivers samples; after
``device_timeout_s`` without any, the bridge says ``offline`` (and the last will says it if
the bridge itself dies).

No sample values are logged above DEBUG.

Example
-------
>>> from firmware_bridge.devices import load_device
>>> from firmware_bridge.outbox import Outbox
>>> br = Bridge(load_device("diy-lines"), "alice", outbox=Outbox(":memory:"), clock=lambda: 1.7e9)
>>> br.feed([Chunk("eda", np.array([5.0, 5.1, 5.2, 5.3]), t0=1.7e9 - 0.75)])
>>> br.tick(), len(br.outbox)
(1, 1)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np

from monitor.wire import check_id, data_topic, encode_batch

from firmware_bridge.batcher import Batcher, Chunk, Status
from firmware_bridge.devices import DeviceDefinition
from firmware_bridge.outbox import Outbox, OutboxError
from firmware_bridge.publisher import Publisher
from monitor.wire import status_payload, status_topic

log = logging.getLogger(__name__)

BATTERY_LOW_PERCENT = 15.0
STATUS_REPUBLISH_S = 600.0  # battery and contact: re-sent unchanged this often, so their retained "t" stays fresh


def log_every(state: dict, key: str, every_s: float, level: int, msg: str, *args,
              logger: logging.Logger = log) -> bool:
    """Log at most once per ``every_s`` (s, monotonic clock) per ``key``; True when this call
    logged. ``state`` (a dict the caller keeps) remembers when each key was last logged.

    >>> held = {}
    >>> log_every(held, "bad", 60.0, logging.DEBUG, "x"), log_every(held, "bad", 60.0, logging.DEBUG, "x")
    (True, False)
    """
    now = time.monotonic()
    if key not in state or now - state[key] >= every_s:
        state[key] = now
        logger.log(level, msg, *args)
        return True
    return False


@dataclass
class BridgeStats:
    batches: int = 0  # stored in the outbox
    refused_batches: int = 0  # lost because the outbox was full
    skewed_chunks: int = 0  # dropped: the device clock was far from the gateway's
    last_seen_s: float | None = None  # gateway time of the last sample


class Bridge:
    """One device of one wearer: batching, outbox, availability and status.

    Parameters
    ----------
    definition : DeviceDefinition
        Signals, units and nominal rates.
    wearer : str
        Wearer id in the topics.
    device_id : str, optional
        Device id in the topics; defaults to the definition's model name.
    outbox : Outbox
        Durable store of batches until the broker acknowledges them.
    publisher : Publisher, optional
        None for offline use (batches simply accumulate in the outbox).
    clock : callable
        Returns unix seconds (injected so tests can run on simulated time).
    """

    def __init__(
        self,
        definition: DeviceDefinition,
        wearer: str,
        device_id: str | None = None,
        *,
        outbox: Outbox,
        publisher: Publisher | None = None,
        clock: Callable[[], float] = time.time,
        batch_s: float = 1.0,
        tolerance_s: float = 0.5,
        device_timeout_s: float = 15.0,
        max_clock_skew_s: float = 300.0,
    ):
        self.definition = definition
        self.wearer = check_id("wearer", wearer)
        self.device_id = check_id("device", device_id or definition.model)
        self.outbox = outbox
        self.publisher = publisher
        self.clock = clock
        self.device_timeout_s = device_timeout_s
        self.max_clock_skew_s = max_clock_skew_s
        self.batcher = Batcher(definition.signals, batch_s=batch_s, tolerance_s=tolerance_s)
        self.stats = BridgeStats()
        self._topics = {s: data_topic(self.wearer, self.device_id, s) for s in definition.signals}
        self._online = False
        self._status: dict[str, tuple[float | bool, float]] = {}  # kind -> (value, gateway time sent)
        self._last_log: dict[str, float] = {}

    # -- input -----------------------------------------------------------------------------
    def feed(self, items: Iterable[Chunk | Status]) -> None:
        """Take what a decoder produced (chunks in canonical units, status readings)."""
        now = self.clock()
        for item in items:
            if isinstance(item, Status):
                self._set_status(item, now)
                continue
            if len(item.values) == 0:
                continue
            t = item.t0 if item.t0 is not None else float(np.max(item.t))
            if abs(t - now) > self.max_clock_skew_s:
                self.stats.skewed_chunks += 1
                self._log_every(
                    "skew", 60.0, logging.WARNING,
                    "%s: samples stamped %.0f s away from the gateway clock; dropped (%d chunks so far): check the device's time",
                    item.signal, t - now, self.stats.skewed_chunks,
                )
                continue
            self.batcher.add(item, now)
            self.stats.last_seen_s = now

    def _set_status(self, status: Status, now: float) -> None:
        if status.kind == "battery" and not self.definition.battery:
            return
        if status.kind == "contact" and not self.definition.sensor_contact:
            return
        previous = self._status.get(status.kind)
        changed = previous is None or previous[0] != status.value
        stale = previous is not None and now - previous[1] >= STATUS_REPUBLISH_S
        if not (changed or stale):
            return
        self._status[status.kind] = (status.value, now)
        if status.kind == "battery" and changed and status.value <= BATTERY_LOW_PERCENT:
            log.warning("%s battery is low", self.device_id)
        if status.kind == "contact" and changed:
            log.info("%s skin contact %s", self.device_id, "detected" if status.value else "lost")
        log.debug("%s %s = %s", self.device_id, status.kind, status.value)
        if self.publisher is not None:
            self.publisher.publish_status(
                status_topic(self.wearer, self.device_id, status.kind), status_payload(status.kind, status.value, status.t_s)
            )

    # -- output ----------------------------------------------------------------------------
    def tick(self, force: bool = False) -> int:
        """Store due batches in the outbox (all pending ones when ``force``); returns how many."""
        now = self.clock()
        self._update_availability(now)
        batches = self.batcher.take(now, force=force)
        if not batches:
            return 0
        items = [
            (f"{self.device_id}/{b.signal}", self._topics[b.signal], (lambda seq, b=b: encode_batch(replace(b, seq=seq))))
            for b in batches
        ]
        try:
            self.outbox.enqueue_many(items)
        except OutboxError as exc:  # full, or its disk is
            self.stats.refused_batches += len(batches)
            self._log_every(
                "full", 60.0, logging.ERROR, "%s; refused %d batch(es) so far: NEW DATA IS BEING LOST",
                exc, self.stats.refused_batches,
            )
            return 0
        self.stats.batches += len(batches)
        if self.publisher is not None:
            self.publisher.wake()
        return len(batches)

    def _update_availability(self, now: float) -> None:
        seen = self.stats.last_seen_s
        online = seen is not None and now - seen <= self.device_timeout_s
        if online == self._online:
            return
        self._online = online
        if online:
            log.info("%s is delivering data: availability online", self.device_id)
        else:
            log.warning("%s sent nothing for %.0f s: availability offline", self.device_id, self.device_timeout_s)
        if self.publisher is not None:
            self.publisher.set_availability(online)

    def close(self, drain_s: float = 5.0) -> None:
        """Store everything still pending, give the broker up to ``drain_s`` to acknowledge the
        outbox, say ``offline`` and close the outbox (what is unacknowledged stays in it)."""
        self.tick(force=True)
        if self.publisher is not None:
            self.publisher.set_availability(False)
            self.publisher.stop(drain_s)
        self.outbox.close()

    def _log_every(self, key: str, every_s: float, level: int, msg: str, *args) -> None:
        log_every(self._last_log, key, every_s, level, msg, *args)
