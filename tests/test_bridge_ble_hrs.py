"""Heart Rate Measurement (0x2A37) decoder: byte vectors from the spec layout and from real devices.

Where the vectors come from:

* Field layout: Bluetooth GATT Specification Supplement, "Heart Rate Measurement" (flags bit 0
  uint8/uint16 heart rate, bit 1 contact detected, bit 2 contact supported, bit 3 energy
  expended uint16 kJ, bit 4 RR intervals uint16 in 1/1024 s). The ``SPEC_VECTORS`` and the
  all-flags test are written byte by byte from that layout (``struct``), not with our encoder.
* Real captures, quoted in public sources:
  - Polar H10, Android ``onCharacteristicChanged`` value ``[16, 59, 83, 4]``: StackOverflow
    question 67024800 ("BLE Heart Rate Senser Value interpretation", 2021).
  - Polar H7, gatttool notifications ``06 3c``, ``16 3c 11 04``, ``16 3c f5 03``: blog.akhq.net
    (2014) "Polar H7 Bluetooth LE Heart Rate Sensor on Ubuntu 14.04", quoted in the README of
    github.com/cal-id/Polar-H7-Pi.
  - An unbranded Bluetooth/ANT+ chest strap, gatttool notifications ``16 34 e4 04``,
    ``16 34 a5 04``, ``16 33 ea 04``, ``16 33 de 04``: StackOverflow question 60599696.
  The expected numbers are the spec arithmetic on those bytes, e.g. 0x0453 = 1107 -> 1107 *
  1000 / 1024 = 1081.0546875 ms; each is also checked against the reported heart rate.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from firmware_bridge.batcher import Chunk, Status
from firmware_bridge.ble_hrs import (
    HrsConverter,
    decode_battery_level,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
)
from firmware_bridge.devices import load_device

# (hex, hr_bpm, rr_ms, sensor_contact, energy_kj), written from the spec's field layout
SPEC_VECTORS = [
    ("0048", 72, [], None, None),  # uint8 HR, nothing else
    ("014800", 72, [], None, None),  # uint16 HR, same value
    ("012c01", 300, [], None, None),  # uint16 HR above 255
    ("0248", 72, [], None, None),  # "detected" bit without "supported": not supported -> None
    ("0448", 72, [], False, None),  # supported, not detected
    ("0648", 72, [], True, None),  # supported and detected
    ("0848e803", 72, [], None, 1000),  # energy expended 0x03e8 = 1000 kJ
    ("08480000", 72, [], None, 0),
    ("0848ffff", 72, [], None, 0xFFFF),  # saturated energy stays 65535 kJ
    ("10480004", 72, [1000.0], None, None),  # RR 0x0400 = 1024/1024 s
    ("104800040002", 72, [1000.0, 500.0], None, None),  # two RR intervals
    ("1e48e8030004", 72, [1000.0], True, 1000),  # contact, energy and RR
    ("1f2c01e8030004", 300, [1000.0], True, 1000),  # every defined flag
    ("e048", 72, [], None, None),  # reserved bits 5-7 are ignored
]

# real notifications (see the module docstring for each source)
REAL_CAPTURES = [
    ("Polar H10", bytes([16, 59, 83, 4]), 59, [1107 * 1000 / 1024], None),
    ("Polar H7", bytes.fromhex("063c"), 60, [], True),
    ("Polar H7", bytes.fromhex("163c1104"), 60, [1041 * 1000 / 1024], True),
    ("Polar H7", bytes.fromhex("163cf503"), 60, [1013 * 1000 / 1024], True),
    ("unbranded strap", bytes.fromhex("1634e404"), 52, [1252 * 1000 / 1024], True),
    ("unbranded strap", bytes.fromhex("1634a504"), 52, [1189 * 1000 / 1024], True),
    ("unbranded strap", bytes.fromhex("1633ea04"), 51, [1258 * 1000 / 1024], True),
    ("unbranded strap", bytes.fromhex("1633de04"), 51, [1246 * 1000 / 1024], True),
]


@pytest.mark.parametrize("hexdata, hr, rr, contact, energy", SPEC_VECTORS)
def test_spec_vectors(hexdata, hr, rr, contact, energy):
    m = decode_heart_rate_measurement(bytes.fromhex(hexdata))
    assert (m.hr_bpm, m.rr_ms, m.sensor_contact, m.energy_kj) == (hr, rr, contact, energy)


@pytest.mark.parametrize("flags", range(32))
def test_every_flag_combination(flags):
    """All 32 combinations of the five defined flag bits, built with struct from the layout."""
    hr = 187
    body = struct.pack("<H", hr) if flags & 0x01 else struct.pack("<B", hr)
    if flags & 0x08:
        body += struct.pack("<H", 4321)
    rr_units = [700, 1023, 65535]  # 683.59375 ms, 999.0234375 ms, the largest encodable
    if flags & 0x10:
        body += struct.pack("<3H", *rr_units)
    m = decode_heart_rate_measurement(bytes([flags]) + body)
    assert m.hr_bpm == hr
    assert m.energy_kj == (4321 if flags & 0x08 else None)
    assert m.rr_ms == ([u * 1000 / 1024 for u in rr_units] if flags & 0x10 else [])
    expected_contact = None if not flags & 0x04 else bool(flags & 0x02)
    assert m.sensor_contact is expected_contact


@pytest.mark.parametrize("device, data, hr, rr, contact", REAL_CAPTURES)
def test_real_captures(device, data, hr, rr, contact):
    m = decode_heart_rate_measurement(data)
    assert m.hr_bpm == hr
    assert m.rr_ms == pytest.approx(rr)
    assert m.sensor_contact is contact
    assert m.energy_kj is None
    if rr:  # the strap's own heart rate agrees with its RR interval within a few bpm
        assert abs(60000 / rr[0] - hr) < 4


def test_polar_h10_capture_value():
    # [16, 59, 83, 4]: flags 0x10 (RR present), HR 59, RR 0x0453 = 1107/1024 s
    assert decode_heart_rate_measurement(bytes([16, 59, 83, 4])).rr_ms == [1081.0546875]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"\x00", "heart rate field truncated"),
        (b"\x01\x48", "heart rate field truncated"),
    ],
)
def test_malformed_inputs_raise_with_reason(data, reason):
    with pytest.raises(ValueError, match=reason):
        decode_heart_rate_measurement(data)


@pytest.mark.parametrize(
    "data, hr_bpm, energy_kj, reason",
    [
        (b"\x08\x48\xe8", 72, None, "energy expended field truncated"),
        (b"\x18\x48\xe8\x03", 72, 1000, "RR interval field truncated"),
        (b"\x10\x48", 72, None, "RR interval field truncated"),
        (b"\x10\x48\x00\x04\x00", 72, None, "odd trailing byte"),
        (b"\x16\x3c\x11", 60, None, "odd trailing byte"),
        (b"\x00\x48\x00", 72, None, "unexpected byte"),
    ],
)
def test_a_problem_after_the_heart_rate_keeps_the_heart_rate(data, hr_bpm, energy_kj, reason):
    """These raised, and the whole notification was dropped: a strap with a quirk in its RR
    list lost its (valid) heart rate too. The heart rate stays; what follows it is left out
    (an RR list with an odd byte is misaligned: none of its intervals is trusted)."""
    m = decode_heart_rate_measurement(data)
    assert (m.hr_bpm, m.energy_kj, m.rr_ms) == (hr_bpm, energy_kj, [])
    assert reason in m.problem
    assert decode_heart_rate_measurement(bytes.fromhex("163c1104")).problem is None


def test_accepts_bytearray_and_memoryview():
    raw = bytearray.fromhex("163c1104")
    assert decode_heart_rate_measurement(raw) == decode_heart_rate_measurement(memoryview(bytes(raw)))


@pytest.mark.parametrize("flags", range(32))
def test_encoder_round_trip(flags):
    """Our encoder (used by the fake strap in the BLE test) is the decoder's inverse."""
    m = decode_heart_rate_measurement(
        bytes([flags]) + (b"\x2c\x01" if flags & 1 else b"\x48") + (b"\x10\x00" if flags & 8 else b"") + (b"\x53\x04" if flags & 16 else b"")
    )
    again = encode_heart_rate_measurement(m.hr_bpm, m.rr_ms, m.sensor_contact, m.energy_kj, uint16=bool(flags & 1))
    assert decode_heart_rate_measurement(again) == m


def test_battery_level():
    assert decode_battery_level(b"\x57") == 87
    assert decode_battery_level(bytearray(b"\x00")) == 0
    with pytest.raises(ValueError, match="exactly 1 byte"):
        decode_battery_level(b"")
    with pytest.raises(ValueError, match="above 100"):
        decode_battery_level(b"\x65")


def test_converter_chains_beats_and_reports_contact():
    conv = HrsConverter(load_device("polar-h10"))
    t = 1_700_000_000.0
    first = conv.convert(decode_heart_rate_measurement(bytes.fromhex("163c1104")), t)
    hr, ibi, contact = first
    assert isinstance(hr, Chunk) and hr.signal == "hr" and hr.t.tolist() == [t] and hr.values.tolist() == [60.0]
    assert ibi.signal == "ibi" and ibi.t.tolist() == [t]  # first beat anchored at arrival
    assert isinstance(contact, Status) and contact.value is True
    # the next notification arrives 0.3 s "late": the beat time follows the RR chain, not the radio
    second = conv.convert(decode_heart_rate_measurement(bytes.fromhex("163cf503")), t + 1.3)
    assert second[1].t[0] == pytest.approx(t + 1013 / 1024, abs=1e-6)
    # far off the chain (a missed notification): re-anchored at arrival
    third = conv.convert(decode_heart_rate_measurement(bytes.fromhex("163cf503")), t + 10.0)
    assert third[1].t[0] == pytest.approx(t + 10.0, abs=1e-6)
    # two RR in one notification: the last beat at arrival, the first one RR earlier
    conv.reset()
    fourth = conv.convert(decode_heart_rate_measurement(bytes.fromhex("104800040002")), t)
    assert np.allclose(fourth[1].t, [t - 0.5, t])


def test_a_held_burst_after_a_late_anchor_counts_and_warns_the_beats_it_leaves_out(caplog):
    """Anchored on a late notification, a burst of held beats runs the chain ahead of the radio;
    re-anchoring backwards would overlap beats already sent: those are left out, counted, warned."""
    conv = HrsConverter(load_device("polar-h10"))
    t = 1_700_000_000.0
    one_s = encode_heart_rate_measurement(60, [1000.0])
    sent = [conv.convert(decode_heart_rate_measurement(one_s), t + 0.1 * i) for i in range(5)]
    times = np.concatenate([c.t for out in sent for c in out if isinstance(c, Chunk) and c.signal == "ibi"])
    assert np.all(np.diff(times) > 0)  # what is sent never goes back in time
    assert len(times) + conv.overlapped_beats == 5  # no beat vanishes without being counted
    assert conv.overlapped_beats > 0
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "overlapping" in r.getMessage()]
    assert len(warned) == 1  # rate-limited
