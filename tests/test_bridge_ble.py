"""The BLE path against a fake bleak client: a disconnect in the middle, and every beat arrives once.

The fake strap replays real notification bytes:

* four real captures quoted in public sources (a Polar H10 ``[16, 59, 83, 4]`` from
  StackOverflow question 67024800; Polar H7 ``16 3c 11 04`` and ``16 3c f5 03`` from
  blog.akhq.net 2014; see tests/test_bridge_ble_hrs.py), then
* 90 notifications carrying the real RR intervals of the Polar H10 recording in
  ../shared/data/polar-h10 (kbroman/detectPVC, MIT), one per notification, encoded the way the
  H10 sends them (flags 0x10, uint8 heart rate, RR in 1/1024 s, as in the H10 capture above).

Halfway the strap walks out of range (the link drops, the next connection attempt fails), then
comes back. The bridge reconnects and the monitor (a persistent QoS 1 subscriber on a real
broker) receives every beat exactly once, in order.

This fake strap has no Polar PMD service, so the accelerometer the polar-h10 definition asks
for is missing: one WARNING, heart rate goes on (the PMD path: tests/test_bridge_polar_pmd.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.ble import run_ble
from firmware_bridge.ble_hrs import decode_heart_rate_measurement, encode_heart_rate_measurement
from firmware_bridge.bridge import Bridge
from firmware_bridge.devices import load_device
from firmware_bridge.outbox import Outbox
from firmware_bridge.publisher import Publisher
from firmware_bridge.testing import FakeBleakClient, FakeStrap, MonitorSubscriber, SimClock

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CAPTURES = [bytes([16, 59, 83, 4]), bytes.fromhex("063c"), bytes.fromhex("163c1104"), bytes.fromhex("163cf503")]


def h10_script(n: int) -> list[bytes]:
    path = DATA / "polar-h10" / "polar_h10.csv"
    if not path.exists():
        pytest.skip(f"recording {path} is absent (../shared/data is needed for this test)")
    rows = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(2, 3))
    rows = rows[~np.isnan(rows).any(axis=1)][:n]  # rows that carry a heart rate and an RR interval
    return [encode_heart_rate_measurement(int(hr), [rr], uint16=False) for hr, rr in rows]


def test_reconnect_after_walking_out_of_range_every_beat_once(broker, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    notifications = CAPTURES + h10_script(90)
    script = notifications[:47] + [None] + notifications[47:]
    expected_rr = [rr for data in notifications for rr in decode_heart_rate_measurement(data).rr_ms]

    clock = SimClock()
    strap = FakeStrap(script, clock=clock)
    monitor = MonitorSubscriber(broker.host, broker.port, broker.username, broker.password)
    definition = load_device("polar-h10")
    outbox = Outbox(tmp_path / "outbox.sqlite")
    publisher = Publisher(broker.url, "alice", "polar-h10", outbox, reconnect_max_s=2).start()
    bridge = Bridge(definition, "alice", outbox=outbox, publisher=publisher, clock=clock)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_ble(bridge, "AA:BB:CC:DD:EE:FF", stop=stop, tick_s=0.005, silence_s=10.0,
                    client_factory=functools.partial(FakeBleakClient, strap), reconnect_min_s=0.01, reconnect_max_s=0.05)
        )
        for _ in range(2000):
            if strap.done:
                break
            await asyncio.sleep(0.01)
        clock.now += 5.0  # let the last batches age
        await asyncio.sleep(0.1)
        clock.now += 12.0  # the strap stays connected but goes quiet
        await asyncio.sleep(0.1)
        stop.set()
        await task

    asyncio.run(scenario())
    bridge.tick(force=True)
    got_all = monitor.wait_for(lambda m: sum(len(b) for b in m.accepted[("polar-h10", "ibi")]) >= len(expected_rr), 15)
    bridge.close()
    monitor.close()

    assert strap.done and strap.connects == 2 and strap.failed_connects == 1
    assert got_all, "the monitor did not receive every beat"
    ibi = monitor.accepted[("polar-h10", "ibi")]
    received = [v for b in ibi for v in b.values.tolist()]
    assert received == pytest.approx(expected_rr)  # every beat once, in order
    assert [b.seq for b in ibi] == list(range(len(ibi)))
    beat_times = np.concatenate([b.t for b in ibi])
    assert np.all(np.diff(beat_times) > 0)
    hr = monitor.accepted[("polar-h10", "hr")]
    assert sum(len(b) for b in hr) == len(notifications)
    status = dict(monitor.other)
    assert status["anxmon/v1/alice/polar-h10/battery"].endswith(b'"percent":87.0}')
    assert b'"contact":true' in status["anxmon/v1/alice/polar-h10/contact"]
    assert "disconnected (out of range or switched off); reconnecting" in caplog.text
    assert re.search(r"no notifications for \d+ s although the link is up", caplog.text)
    pmd_warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "PMD service" in r.getMessage()]
    assert len(pmd_warnings) == 1  # once, although the strap connected twice
    assert "acc" not in {signal for _device, signal in monitor.accepted}


def test_a_strap_with_a_quirk_warns_once_not_every_second(tmp_path, caplog):
    """A strap whose every other notification ends in a stray byte: each is counted and logged at
    DEBUG, with one WARNING (not one a second, all day); the good ones go on, and so does the
    heart rate of the odd ones (only their misaligned RR list is left out)."""
    caplog.set_level(logging.DEBUG, logger="firmware_bridge")
    good, quirk = bytes.fromhex("163c1104"), bytes.fromhex("163c110400")
    clock = SimClock()
    strap = FakeStrap([good, quirk] * 20, clock=clock)
    bridge = Bridge(load_device("polar-h10"), "alice", outbox=Outbox(tmp_path / "outbox.sqlite"), clock=clock)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run_ble(bridge, "AA:BB:CC:DD:EE:FF", stop=stop, tick_s=0.005,
                                           client_factory=functools.partial(FakeBleakClient, strap)))
        for _ in range(2000):
            if strap.done:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(scenario())
    bridge.tick(force=True)
    ignored = [r for r in caplog.records if "heart rate notification partly ignored: RR interval list" in r.getMessage()]
    assert len(ignored) == 20
    assert [r.levelno for r in ignored].count(logging.WARNING) == 1
    assert bridge.batcher.stats()["hr"].received == 40  # (20 before: the odd ones' heart rate was lost)
    assert bridge.batcher.stats()["ibi"].received == 20
