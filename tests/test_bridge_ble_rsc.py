"""Step cadence from the Bluetooth Running Speed and Cadence service: the decoder, the resampling
into a regular ``cadence`` stream, and the BLE path against a fake strap and a real broker.

Expected bytes come from the layout of the RSC Measurement in the Bluetooth GATT Specification
Supplement (flags; speed uint16 in 1/256 m/s; cadence uint8 in 1/min; stride length uint16 in
1/100 m and total distance uint32 in 1/10 m when their flags are set; little endian), worked
out by hand in each case below.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tomllib
from dataclasses import dataclass, field

import numpy as np
import pytest

from firmware_bridge.ble import RscCadenceStream, run_ble
from firmware_bridge.ble_hrs import BATTERY_LEVEL_UUID, HEART_RATE_MEASUREMENT_UUID, encode_heart_rate_measurement
from firmware_bridge.ble_rsc import RSC_MEASUREMENT_UUID, decode_rsc_measurement, encode_rsc_measurement
from firmware_bridge.bridge import Bridge
from firmware_bridge.devices import load_device, parse_device
from firmware_bridge.outbox import Outbox
from firmware_bridge.publisher import Publisher
from firmware_bridge.testing import FakeBleakClient, FakeServices, FakeStrap, MonitorSubscriber, SimClock
from monitor.core.motion import CadenceProcessor
from monitor.errors import ConfigError

T0 = 1_700_000_000.0


# -- decoder ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hex_bytes, speed, cadence, running, stride, distance",
    [
        ("04" "8003" "a8", 3.5, 168, True, None, None),  # 0x0380 = 896 / 256 m/s
        ("00" "0000" "00", 0.0, 0, False, None, None),  # standing: all zero
        ("01" "6601" "72" "5000", 358 / 256, 114, False, 0.8, None),  # walking, stride 80 cm
        ("02" "0002" "b4" "10270000", 2.0, 180, False, None, 1000.0),  # distance 10000 * 0.1 m
        ("07" "0004" "b4" "7800" "a0860100", 4.0, 180, True, 1.2, 10000.0),  # every field
        ("f8" "0001" "6e", 1.0, 110, False, None, None),  # reserved bits 3-7 set: ignored
    ],
)
def test_decoder_reads_every_field(hex_bytes, speed, cadence, running, stride, distance):
    m = decode_rsc_measurement(bytes.fromhex(hex_bytes))
    assert (m.speed_m_per_s, m.cadence_per_min, m.running) == (pytest.approx(speed), cadence, running)
    assert m.stride_length_m == (None if stride is None else pytest.approx(stride))
    assert m.total_distance_m == (None if distance is None else pytest.approx(distance))


@pytest.mark.parametrize(
    "hex_bytes, reason",
    [
        ("", "RSC measurement is empty"),
        ("00" "80", "speed field truncated: expected 2 byte(s) at offset 1, got 1"),
        ("00" "8003", "cadence field truncated"),
        ("01" "8003" "a8" "50", "stride length field truncated: expected 2 byte(s) at offset 4, got 1"),
        ("03" "8003" "a8" "5000" "102700", "total distance field truncated: expected 4 byte(s) at offset 6, got 3"),
        ("00" "8003" "a8" "5000", "2 unexpected byte(s) after the last field (flags 0x00)"),
    ],
)
def test_malformed_measurements_name_the_problem(hex_bytes, reason):
    with pytest.raises(ValueError) as info:
        decode_rsc_measurement(bytes.fromhex(hex_bytes))
    assert reason in str(info.value)


@pytest.mark.parametrize("kwargs", [dict(speed_m_per_s=3.5, cadence_per_min=168, running=True),
                                    dict(speed_m_per_s=1.25, cadence_per_min=104, stride_length_m=0.72),
                                    dict(speed_m_per_s=0.0, cadence_per_min=0, total_distance_m=12345.6),
                                    dict(speed_m_per_s=5.5, cadence_per_min=255, running=True, stride_length_m=1.5,
                                         total_distance_m=0.0)])
def test_encoder_round_trip(kwargs):
    m = decode_rsc_measurement(encode_rsc_measurement(**kwargs))
    assert m.speed_m_per_s == pytest.approx(kwargs["speed_m_per_s"], abs=1 / 512)
    assert m.cadence_per_min == kwargs["cadence_per_min"]
    assert m.running == kwargs.get("running", False)
    assert m.stride_length_m == pytest.approx(kwargs.get("stride_length_m"), abs=0.005)
    assert m.total_distance_m == pytest.approx(kwargs.get("total_distance_m"), abs=0.05)


# -- definitions --------------------------------------------------------------------------------------
def test_generic_definition_declares_a_1_hz_cadence_from_rsc():
    d = load_device("generic-ble-hrs")
    assert d.signals["cadence"].source == ("rsc_cadence",)
    assert (d.signals["cadence"].unit, d.signals["cadence"].rate_hz) == ("steps/min", 1.0)


def test_a_cadence_needs_the_rsc_source():
    text = ('model = "my-strap"\nname = "x"\ntransport = "ble"\ndecoder = "ble_hrs"\n'
            '[signals.cadence]\nunit = "steps/min"\nrate_hz = 1.0\nsource = "hr"\n')
    with pytest.raises(ConfigError) as info:
        parse_device(tomllib.loads(text), "my-strap.toml")
    assert "cadence <- 'rsc_cadence'" in str(info.value)


# -- resampling -------------------------------------------------------------------------------------
@dataclass
class FeedRecorder:
    """Just what ``RscCadenceStream`` uses of a ``Bridge``: its definition, clock and feed."""

    definition: object
    now: float = T0
    chunks: list = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def feed(self, items) -> None:
        self.chunks.extend(items)


def started_stream(scale: float | None = None) -> tuple[RscCadenceStream, FeedRecorder]:
    d = load_device("generic-ble-hrs")
    if scale is not None:
        text = d.path.read_text() + f"scale = {scale}\n"  # [signals.cadence] is the last table
        d = parse_device(tomllib.loads(text), d.path)
    bridge = FeedRecorder(d)
    stream = RscCadenceStream(bridge, "AA:BB", set())
    stream.active, stream.next_s, stream.latest = True, bridge.now, (bridge.now, None)  # as ``start`` leaves it
    return stream, bridge


def samples(bridge: FeedRecorder) -> tuple[np.ndarray, np.ndarray]:
    t = np.concatenate([c.t0 + np.arange(len(c.values)) for c in bridge.chunks])
    return t - T0, np.concatenate([c.values for c in bridge.chunks])


def test_resampled_at_1_hz_held_while_fresh_then_zero_when_the_sensor_falls_silent():
    stream, bridge = started_stream()
    for second in range(21):  # a notification every second for 10 s, none afterwards; ticks at 4 Hz
        bridge.now = T0 + second
        if second < 10:
            stream.on_rsc(None, bytearray(encode_rsc_measurement(1.4, 112)))
        for quarter in range(4):
            bridge.now = T0 + second + quarter / 4
            stream.tick(bridge.now, heart_rate_flowing=True)
    t, v = samples(bridge)
    assert t.tolist() == list(range(21))  # one sample a second, gapless, each exactly once
    # the last notification arrived at 9 s: held up to 3 s after it, then 0
    assert v.tolist() == [112.0] * 13 + [0.0] * 8


def test_the_definition_scale_turns_strides_into_steps():
    stream, bridge = started_stream(scale=2.0)
    stream.on_rsc(None, bytearray(encode_rsc_measurement(3.0, 85, running=True)))  # strides/min
    stream.tick(bridge.now, heart_rate_flowing=True)
    assert samples(bridge)[1].tolist() == [170.0]


def test_nothing_heard_yet_is_no_sample_at_first_then_standing_still():
    stream, bridge = started_stream()
    for second in range(7):
        bridge.now = T0 + second
        stream.tick(bridge.now, heart_rate_flowing=True)
    t, v = samples(bridge)
    assert t.tolist() == [4, 5, 6] and v.tolist() == [0.0] * 3  # 3 s after the connection began


def test_no_samples_while_the_heart_rate_is_silent_too():
    stream, bridge = started_stream()
    stream.on_rsc(None, bytearray(encode_rsc_measurement(0.0, 0)))
    for second in range(10):
        bridge.now = T0 + second
        stream.tick(bridge.now, heart_rate_flowing=second < 4 or second >= 8)
    assert samples(bridge)[0].tolist() == [0, 1, 2, 3, 8, 9]  # a gap, not stillness


def test_a_malformed_notification_is_counted_and_keeps_the_last_good_value(caplog):
    stream, bridge = started_stream()
    stream.on_rsc(None, bytearray(encode_rsc_measurement(1.4, 108)))
    stream.on_rsc(None, bytearray(b"\x00\x01"))
    stream.tick(bridge.now, heart_rate_flowing=True)
    assert stream.bad == 1 and samples(bridge)[1].tolist() == [108.0]
    assert "running speed and cadence notification ignored: speed field truncated" in caplog.text


# -- the BLE path: a strap with HRS and RSC, a real broker -------------------------------------------
class FakeRscStrapClient(FakeBleakClient):
    """A bleak-like strap with the Heart Rate Service and, when ``rsc`` is given, Running Speed and
    Cadence: ``rsc[i]`` is sent right after the i-th heart rate notification (None: nothing then)."""

    def __init__(self, strap: FakeStrap, rsc: list[bytes | None] | None, address: str, disconnected_callback=None, **kw):
        super().__init__(strap, address, disconnected_callback=disconnected_callback, **kw)
        self.rsc = rsc
        uuids = {HEART_RATE_MEASUREMENT_UUID, BATTERY_LEVEL_UUID} | ({RSC_MEASUREMENT_UUID} if rsc is not None else set())
        self.services = FakeServices(uuids)
        self._on_rsc = None

    async def start_notify(self, uuid: str, callback) -> None:
        if uuid == RSC_MEASUREMENT_UUID:
            assert self.rsc is not None, "the bridge subscribed to a characteristic the strap does not offer"
            self._on_rsc = callback
            return
        await super().start_notify(uuid, self._with_rsc(callback))

    def _with_rsc(self, on_hrm):
        def both(char, data):
            position = self.strap.position - 1  # the notification just replayed
            on_hrm(char, data)
            if self._on_rsc is not None and self.rsc[position] is not None:
                self._on_rsc(None, bytearray(self.rsc[position]))
        return both


def run(bridge, strap, rsc, end_s: float = 5.0):
    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run_ble(
            bridge, "AA:BB:CC:DD:EE:FF", stop=stop, tick_s=0.002, silence_s=10.0,
            client_factory=functools.partial(FakeRscStrapClient, strap, rsc),
            reconnect_min_s=0.01, reconnect_max_s=0.05))
        for _ in range(4000):
            if strap.done:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        strap.clock.now += end_s  # the strap goes quiet; let the last batches age
        await asyncio.sleep(0.1)
        stop.set()
        await task

    asyncio.run(scenario())


def cadence_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "Running Speed and Cadence service" in r.getMessage()]


def test_walk_then_standing_still_reaches_the_monitor_as_a_cadence_that_gates(broker, tmp_path, caplog):
    """90 s walking at 112 steps/min with an RSC notification every second (the link drops once,
    at 40 s), then 90 s standing still during which the sensor sends nothing at all while the
    heart rate goes on. The monitor receives a regular 1 Hz cadence: 112 while walking, 0 once
    the sensor has been silent for 3 s; and the monitor's own CadenceProcessor calls the walk
    moving and the standing still."""
    caplog.set_level(logging.INFO)
    n_walk, n_still = 90, 90
    hr = [encode_heart_rate_measurement(100 if i < n_walk else 72, [600.0 if i < n_walk else 830.0])
          for i in range(n_walk + n_still)]
    rsc = [encode_rsc_measurement(1.4, 112) if i < n_walk else None for i in range(n_walk + n_still)]
    cut = 40
    clock = SimClock(T0)
    strap = FakeStrap(hr[:cut] + [None] + hr[cut:], clock=clock, delay_s=0.01)
    monitor = MonitorSubscriber(broker.host, broker.port, broker.username, broker.password)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    publisher = Publisher(broker.url, "alice", "strap", outbox, reconnect_max_s=2).start()
    bridge = Bridge(load_device("generic-ble-hrs"), "alice", outbox=outbox, publisher=publisher, clock=clock,
                    device_id="strap")

    run(bridge, strap, rsc[:cut] + [None] + rsc[cut:])
    bridge.tick(force=True)
    got_all = monitor.wait_for(lambda m: sum(len(b) for b in m.accepted[("strap", "hr")]) >= len(hr), 15)
    monitor.wait_for(lambda m: False, 0.5)  # the last cadence batch follows the last heart rate
    bridge.close()
    monitor.close()

    assert strap.connects == 2 and got_all
    assert cadence_warnings(caplog) == []
    assert caplog.text.count("step cadence on (Running Speed and Cadence)") == 2  # on after the reconnect too
    batches = monitor.accepted[("strap", "cadence")]
    assert batches and all(b.fs == 1.0 for b in batches)
    t = np.concatenate([b.t0 + np.arange(len(b)) for b in batches]) - T0
    v = np.concatenate([b.values for b in batches])
    assert np.all(np.diff(t) > 0.5)  # every sample once, in order
    # the heart rate arrived from 1 s to 180 s: a sample a second over that time (give or take the
    # reconnect and the first and last second), no more
    assert len(hr) - 3 <= len(v) <= len(hr) + 1
    last_step_s = n_walk  # arrival of the last RSC notification (gateway clock)
    assert set(v[t <= last_step_s].tolist()) == {112.0}
    assert set(v[t > last_step_s + RscCadenceStream.STALE_S].tolist()) == {0.0}
    assert (t > last_step_s + RscCadenceStream.STALE_S).sum() >= n_still - 6

    # what the monitor makes of it: CADENCE_Moving per 5 s tick over 60 s windows (a regular stream
    # per segment: the reconnect started a new one)
    proc = CadenceProcessor(sampling_rate=1.0)
    moving = {}
    for b in batches:
        for f in proc.update(b.t0, b.values):
            if "CADENCE_Moving" in f.values:
                moving[f.t - T0] = f.values["CADENCE_Moving"]
    assert moving[85.0] == 1.0  # the last minute of the walk
    assert max(moving) >= 175.0 and moving[max(moving)] == 0.0  # a minute of standing still
    assert max(t_s for t_s, m in moving.items() if m == 1.0) <= last_step_s + 30 + RscCadenceStream.STALE_S + 5


def test_a_strap_without_rsc_warns_once_and_sends_heart_rate_only(broker, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    hr = [encode_heart_rate_measurement(70, [857.0]) for _ in range(20)]
    clock = SimClock(T0)
    strap = FakeStrap(hr[:10] + [None] + hr[10:], clock=clock)
    monitor = MonitorSubscriber(broker.host, broker.port, broker.username, broker.password)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    publisher = Publisher(broker.url, "alice", "strap", outbox, reconnect_max_s=2).start()
    bridge = Bridge(load_device("generic-ble-hrs"), "alice", outbox=outbox, publisher=publisher, clock=clock,
                    device_id="strap")

    run(bridge, strap, None)
    bridge.tick(force=True)
    got_all = monitor.wait_for(lambda m: sum(len(b) for b in m.accepted[("strap", "ibi")]) >= len(hr), 15)
    bridge.close()
    monitor.close()

    assert strap.connects == 2 and got_all
    assert monitor.accepted[("strap", "cadence")] == []
    warnings = cadence_warnings(caplog)
    assert len(warnings) == 1, warnings  # once, although the strap connected twice
    assert warnings[0] == ("AA:BB:CC:DD:EE:FF does not offer the Running Speed and Cadence service:"
                           " no step cadence for the motion gate")
