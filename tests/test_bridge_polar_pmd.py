"""Polar PMD accelerometer of the H10: decoder, control point, and the BLE path with a fake strap.

Where the vectors come from (github.com/polarofficial/polar-ble-sdk, Android sources under
``sources/Android/android-communications/library/src/``; "SDK" below):

* ``RAW_TYPE_1``: ``test/.../pmd/model/AccDataTest.kt``, "process acc raw data frame type 1"
  (x y z as int16 mG; the test expects (-9, -1, 999) and (-8, -2, 997) for the first two
  samples and the frame timestamp 2 000 000 000 ns on the last one).
* ``COMPRESSED_TYPE_0``: the same file, "process acc compressed data type 0" (also in
  ``test/.../client/BlePmdClientThreeAxisTest.java``): 16-bit reference (1905, 27376, -29282),
  56 deltas of 10 bits, the first (+190, -105, -85); FACTOR 2.44e-4, values in G, within 8 G.
* ``COMPRESSED_TYPE_1``: the same file, "process acc compressed data type 1": reference
  (-15, 20, 1008) mG, one 6-bit delta (-5, -3, 0).
* ``SHORT_TYPE_0``: ``measurementFrameAccType0Short`` at the end of the same file (its second
  delta block announces 20 samples of 12 bits, 90 bytes, and 22 follow: a truncated frame).
* Control point responses: ``test/.../pmd/BlePmdClientControlPointResponseTest.kt``
  (``F0 01 02 00 00 FF FF FF`` and ``F0 01 06 07 00``); the "measurement stopped" indication
  ``01 01 02`` and the unsupported compressed frame type 3 (``... 83``) from
  ``test/.../pmd/BlePmdClientTest.kt``; settings ``PmdSettingTest.kt``.
* The start request is checked against the SDK's command layout: op code 2 =
  REQUEST_MEASUREMENT_START (``main/.../pmd/PmdControlPointCommand.kt``), measurement type
  ACC = 2 with the online recording bit 0 (``PmdMeasurementType.kt``, ``PmdRecordingType.kt``),
  then settings as ``[type, count = 1, value little endian]`` with 2-byte sample rate (type 0),
  resolution (1) and range (2) (``PmdSetting.kt`` ``serializeSelected``).
* Real device bytes quoted in the SDK's issues: an H10's control point feature read
  ``0f 05 00 ...`` (ECG and ACC; issue #360, a bleak user), a Verity Sense start answer
  ``F0 02 02 00 00`` and a 227-byte compressed type 1 ACC frame (issue #443). No H10 ACC
  frame was found published, and no hardware was available.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import math
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest

from firmware_bridge import devices as devices_module
from firmware_bridge.ble import PmdAccStream, run_ble
from firmware_bridge.ble_hrs import BATTERY_LEVEL_UUID, HEART_RATE_MEASUREMENT_UUID, encode_heart_rate_measurement
from firmware_bridge.bridge import Bridge
from firmware_bridge.devices import load_device, parse_device
from firmware_bridge.outbox import Outbox
from firmware_bridge.polar_pmd import (
    H10_ACC_RATES_HZ,
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
    PMD_ERRORS,
    PmdError,
    acc_chunk,
    build_acc_start_request,
    build_stop_request,
    check_start_response,
    decode_acc_frame,
    decode_delta_samples,
    encode_acc_frame,
    parse_control_point_response,
    parse_features,
    parse_measurement_stopped,
    parse_settings,
    strap_time_to_unix_s,
)
from firmware_bridge.publisher import Publisher
from firmware_bridge.testing import FakeBleakClient, FakeServices, FakeStrap, MonitorSubscriber, SimClock
from monitor.errors import ConfigError

HEADER_TS_2E9 = bytes.fromhex("02" "0094357700000000")  # ACC, timestamp 2 000 000 000 ns
RAW_TYPE_1 = HEADER_TS_2E9 + b"\x01" + bytes.fromhex(
    "F7FF FFFF E703 F8FF FEFF E503 F9FF FFFF E503 FAFF FFFF E603 FAFF FEFF E603 F9FF FFFF E503"
    "F8FF FFFF E603 F8FF FEFF E603 FAFF FFFF E503 FAFF FFFF E703 FAFF FFFF E503 F8FF FFFF E603"
    "F7FF FFFF E603 F8FF FEFF E603 F9FF FEFF E703 F9FF 0000 E603 F9FF FFFF E603 F7FF FEFF E503"
    "F9FF FFFF E503 F9FF FFFF E503 FAFF 0000 E603 F9FF FEFF E603 F8FF FFFF E603 F8FF FFFF E503"
    "F9FF FFFF E603 F9FF FFFF E503 FAFF FFFF E603 F9FF FFFF E503 F9FF FFFF E503 F8FF FEFF E603"
    "F9FF FFFF E603 F9FF FFFF E603 F9FF 0000 E503 F9FF FEFF E603 F8FF FEFF E603 F7FF FEFF E603"
)
COMPRESSED_TYPE_0 = HEADER_TS_2E9 + b"\x80" + bytes.fromhex(
    "71 07 F0 6A 9E 8D 0A 38 BE 5C BE BA 2F 96 B3 EE 4B E5 AD FB 42 B9 EB BE 4C FE BA 2F 92 BF EE 4B"
    "E4 B1 FB 12 B9 EC BD 3C 3E BB 2F 8F D3 DE 4B E3 B5 F7 D2 B8 ED BD 30 7E 7B 2F 8B E3 CE 8B E2 BA"
    "F7 A2 B8 EE BC 20 BE 7B 2F 88 F3 CE CB E1 BD EF 52 F8 EF BC 18 FE 3B 2F 84 03 BF CB E0 C2 EF 32"
    "B8 F0 BB 04 4E BC 2E 81 13 AF 0B E0 C6 EF F2 F7 F1 B9 FC 7D BC 2E 7D 27 9F 4B DF CA EB C2 F7 F2"
    "B8 EC CD 7C 2E 7B 37 8F 4B DE CE E3 92 F7 F3 B8 E0 0D FD 2D 77 4B 7F CB DD D2 DF 62 37 F5 B7 D4"
    "4D BD 2D 74 5B 6F CB DC D7 D7 32 37 F6 B5 C8 8D 7D 2D 71 6B 4F 4B DC DC D3 F2 36 F7 B4 BC DD FD"
    "2C 6F 7B 3F 4B DB E0 CF D2 36 F8 B2 B0 2D BE 2C 6C 8F 1F CB DA E3 C7 A2 76 F9"
)
COMPRESSED_TYPE_1 = bytes.fromhex("02" "6500000000000000" "81" "F1FF 1400 F003 06 01 7B0F08")
SHORT_TYPE_0 = bytes.fromhex(
    "5D FF 98 00 FD 0F 06 2A F2 B0 13 EC A1 1B 3E C3 D0 40 7F CD 40 71 D8 F3 4D 00 46 3F 08 7B 9F D7"
    "3A AF 38 52 A6 13 ED 3E 13 09 91 DC FA EE EF 3E 54 10 E2 8F 77 85 EE F2 4C 7E 04 87 9C FC D2 2F"
    "10 FD 4F EF FE 21 FF C2 81 04 03 5F 13 45 D1 08 4A DF BF B5 51 44 7B 50 F7 39 A1 10 2E 6F 18 F7"
    "9F 1C 36 4D 1B 0D 03 0C 14 06 D0 FE F7 AF FF FC BF FF F4 3F 01 17 F0 00 01 10 00 F8 DF FF 00"
)
# polar-ble-sdk issue #443: a Polar Verity Sense ACC frame (52 Hz, 16 bit, compressed type 1)
VERITY_SENSE_FRAME = bytes.fromhex(
    "02 00 41 6F C4 12 45 93 0A 81 EE 02 1F FE 82 FF 08 0A 10 DA 20 D6 A3 0B D9 CB E7 D6 F6 C4 E6 F1"
    "E1 F3 E0 15 1A FE 28 1B F8 37 2C 25 20 13 19 11 0A 2F ED 4F C0 7E F4 E9 BB 6E 80 0D C8 2F B0 3E"
    "14 D1 AF B0 7F 16 C4 CC 20 87 34 03 54 12 8B FF 8D 00 C1 42 FB E6 D3 DF B5 E1 91 53 2F BE F9 ED"
    "43 B0 3E FD DB 9B 90 3D F5 03 60 5F 7B FA D9 DF AE 00 0B 24 64 70 40 12 CC CF BF 04 E4 C5 33 B0"
    "38 08 41 80 EF C2 12 EC 17 81 46 FD FE 5B B0 01 F3 D1 D7 6F 81 FF CD 7B 0F C2 01 36 60 7F 43 D3"
    "5F 3F 3F 78 CB 06 48 4E FF 00 0E FC 82 05 51 AB 55 E3 4A 2D 1D 0C 5F BD E8 58 73 4D BD EB A0 67"
    "51 02 0C C4 70 41 CA 26 7F A0 02 89 19 FE 3F 5F 74 E7 22 44 20 3F 15 66 B0 52 4D 05 5C A4 1F BE"
    "E9 68 00"
)
H10_FEATURE_READ = bytes.fromhex("0f05000000000000000000000000000000")  # issue #360, a real H10


# -- decoding: the SDK's own frames ------------------------------------------------------------
def test_raw_type_1_sdk_vector():
    f = decode_acc_frame(RAW_TYPE_1)
    assert (f.frame_type, f.compressed, f.timestamp_ns) == (1, False, 2_000_000_000)
    assert f.n_samples == (len(RAW_TYPE_1) - 10) // 2 // 3 == 36  # body / 2 bytes / 3 channels, as the SDK test counts
    assert f.acc_g[0].tolist() == [-0.009, -0.001, 0.999]
    assert f.acc_g[1].tolist() == [-0.008, -0.002, 0.997]
    # a strap lying still: about 1 g on z
    assert np.allclose(np.linalg.norm(f.acc_g, axis=1), 1.0, atol=0.01)


def test_compressed_type_0_sdk_vector():
    factor = 2.44e-4  # the SDK test's FACTOR; type 0 counts times FACTOR are G
    f = decode_acc_frame(COMPRESSED_TYPE_0, factor=factor)
    assert (f.frame_type, f.compressed) == (0, True)
    assert f.n_samples == 1 + 56  # reference sample + one block of 56 deltas
    s0 = np.array([1905, 27376, -29282])
    s1 = s0 + [190, -105, -85]
    assert f.acc_g[0] == pytest.approx(s0 * factor)
    assert f.acc_g[1] == pytest.approx(s1 * factor)
    # the SDK's expectations in mG: (factor * sample * 1000f).toInt(), float32 arithmetic
    f32 = np.float32
    expected_mg = [[int(f32(factor) * f32(v) * f32(1000)) for v in row] for row in (s0, s1)]
    assert np.all(np.abs(f.acc_g[:2] * 1000 - expected_mg) < 1.0)
    assert np.all(np.abs(f.acc_g) <= 8.0)  # within the 8 G range, as the SDK test checks


def test_compressed_type_0_needs_the_factor():
    with pytest.raises(ValueError, match="FACTOR"):
        decode_acc_frame(COMPRESSED_TYPE_0)


def test_compressed_type_1_sdk_vector():
    f = decode_acc_frame(COMPRESSED_TYPE_1)
    assert (f.frame_type, f.compressed, f.n_samples, f.timestamp_ns) == (1, True, 2, 0x65)
    assert (f.acc_g * 1000).round().tolist() == [[-15, 20, 1008], [-20, 17, 1008]]
    # with a FACTOR (not 1.0) the SDK multiplies the mG counts by it
    assert decode_acc_frame(COMPRESSED_TYPE_1, factor=2.0).acc_g[0].tolist() == [-0.03, 0.04, 2.016]


def test_delta_decoder_matches_the_three_axis_test_deltas():
    # BlePmdClientThreeAxisTest.java: the first 10-bit deltas are 190, -105, -85
    counts = decode_delta_samples(COMPRESSED_TYPE_0[10:])
    assert (counts[1] - counts[0]).tolist() == [190, -105, -85]
    assert counts.shape == (57, 3)


def test_truncated_delta_block_is_refused():
    with pytest.raises(ValueError, match=r"delta block at offset 103 truncated: 20 samples of 12 bits need 90 bytes, 22 left"):
        decode_delta_samples(SHORT_TYPE_0)


def test_real_verity_sense_frame_decodes_exactly():
    """A real compressed frame of another Polar sensor (issue #443): the blocks use up every byte
    and the samples are plausible accelerations of a hand-held sensor (about 1 g)."""
    f = decode_acc_frame(VERITY_SENSE_FRAME)
    assert (f.frame_type, f.compressed, f.n_samples) == (1, True, 1 + 10 + 47)
    assert (f.acc_g[0] * 1000).round().tolist() == [750, -481, -126]  # reference EE 02 1F FE 82 FF
    magnitude = np.linalg.norm(f.acc_g, axis=1)
    assert 0.5 < magnitude.min() and magnitude.max() < 1.5
    # the blocks (8-bit x 10 samples, then 10-bit x 47) end exactly at the frame's last byte
    body = VERITY_SENSE_FRAME[10:]
    assert (body[6], body[7], body[8 + 30], body[8 + 30 + 1], 8 + 30 + 2 + 177) == (8, 10, 10, 47, len(body))
    # the strap's clock: the issue was filed on 2024-02-23, the sensor's time says the same day
    stamp = datetime.datetime.fromtimestamp(strap_time_to_unix_s(f.timestamp_ns), datetime.timezone.utc)
    assert stamp.date() == datetime.date(2024, 2, 23)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "too short"),
        (HEADER_TS_2E9 + b"\x01", "no samples"),
        (HEADER_TS_2E9 + b"\x01" + b"\x00" * 5, "not a whole number of 6-byte samples"),
        (bytes.fromhex("02" "0100000000000000" "83" "00"), "compressed ACC frame type 3"),  # BlePmdClientTest
        (HEADER_TS_2E9 + b"\x03" + b"\x00" * 12, "raw ACC frame type 3"),
        (bytes.fromhex("00" "386C3172A4D3230D" "03" "00120311100400"), r"not an ACC frame: measurement type 0 \(ecg\)"),
        (HEADER_TS_2E9 + b"\x81" + b"\x00" * 5, "reference sample needs 6 bytes"),
        (HEADER_TS_2E9 + b"\x81" + b"\x00" * 6 + b"\x08", "header at offset 6 truncated"),
    ],
)
def test_malformed_frames_raise_with_reason(data, reason):
    with pytest.raises(ValueError, match=reason):
        decode_acc_frame(data, factor=1.0)


@pytest.mark.parametrize("frame_type", [0, 1, 2])
def test_raw_encoder_round_trip(frame_type):
    mg = [[-100, 5, 100], [127, -128, 0]] if frame_type == 0 else [[-8000, 7999, 1000], [32767, -32768, 0]]
    f = decode_acc_frame(encode_acc_frame(mg, timestamp_ns=599_616_023_171_427_290, frame_type=frame_type))
    assert (f.acc_g * 1000).round().tolist() == mg and f.frame_type == frame_type
    assert strap_time_to_unix_s(f.timestamp_ns) == pytest.approx(1546300823.171427, abs=1e-6)  # TimeSystemExplained.md example
    with pytest.raises(ValueError, match="does not fit"):
        encode_acc_frame([[0, 0, 1000]], frame_type=0)


def test_chunk_ends_at_the_given_time_and_is_spaced_by_the_rate():
    f = decode_acc_frame(RAW_TYPE_1)
    c = acc_chunk(f, last_s=1_700_000_000.0, rate_hz=25.0)
    assert c.signal == "acc" and c.values.shape == (36, 3)
    assert c.t0 - 1_700_000_000.0 == pytest.approx(-35 / 25)  # the last sample at last_s


# -- the start request and the control point ---------------------------------------------------
def test_start_request_follows_the_sdk_command_layout():
    REQUEST_MEASUREMENT_START, ACC, ONLINE_BIT = 2, 2, 0
    SAMPLE_RATE, RESOLUTION, RANGE = 0, 1, 2

    def setting(kind, value):
        return bytes([kind, 1]) + struct.pack("<H", value)

    for rate in H10_ACC_RATES_HZ:
        for range_g in (2, 4, 8):
            expected = (bytes([REQUEST_MEASUREMENT_START, ONLINE_BIT | ACC])
                        + setting(SAMPLE_RATE, rate) + setting(RESOLUTION, 16) + setting(RANGE, range_g))
            assert build_acc_start_request(rate, range_g=range_g) == expected
    # the default the bridge sends: 25 Hz, 16 bit, 8 G
    assert build_acc_start_request() == bytes.fromhex("02 02 00 01 19 00 01 01 10 00 02 01 08 00")
    # the same TLV layout as the requests quoted in issues #331 / #443 (which add CHANNELS = 3)
    assert parse_settings(bytes.fromhex("0001340001011000020108000401 03".replace(" ", ""))) == {0: [52], 1: [16], 2: [8], 4: [3]}
    assert parse_settings(build_acc_start_request()[2:]) == {0: [25], 1: [16], 2: [8]}
    assert build_stop_request() == bytes([3, 2])  # STOP_MEASUREMENT, ACC


@pytest.mark.parametrize("kwargs, reason", [
    ({"rate_hz": 52}, "the H10 offers 25, 50, 100, 200 Hz"),
    ({"range_g": 16}, "the H10 offers 2, 4, 8 G"),
    ({"resolution_bits": 8}, "16 bits"),
])
def test_start_request_refuses_settings_the_h10_does_not_offer(kwargs, reason):
    with pytest.raises(ValueError, match=reason):
        build_acc_start_request(**kwargs)


def test_control_point_responses_of_the_sdk_tests():
    ok = parse_control_point_response(bytes.fromhex("F0 01 02 00 00 FF FF FF"))
    assert (ok.op_code, ok.measurement_type, ok.status, ok.ok, ok.more, ok.parameters) == (1, 2, 0, True, False, b"\xff\xff\xff")
    bad = parse_control_point_response(bytes.fromhex("F0 01 06 07 00"))
    assert (bad.op_code, bad.measurement_type, bad.status, bad.ok, bad.parameters) == (1, 6, 7, False, b"")
    assert bad.status_name == "invalid resolution"
    assert check_start_response(bytes.fromhex("F0 02 02 00 00")) is None  # a real start answer (issue #443)


@pytest.mark.parametrize("status", sorted(PMD_ERRORS))
def test_start_refusals_name_the_code(status):
    with pytest.raises(PmdError) as info:
        check_start_response(bytes([0xF0, 0x02, 0x02, status, 0x00]))
    assert info.value.status == status
    assert f"error {status} ({PMD_ERRORS[status][0]}" in str(info.value)


def test_start_refusal_messages():
    def message(status):
        with pytest.raises(PmdError) as info:
            check_start_response(bytes([0xF0, 0x02, 0x02, status, 0x00]))
        return str(info.value)

    assert message(6).startswith("the strap refused to start acc: error 6 (already in state")
    assert "another app" in message(6)
    assert message(8).startswith("the strap refused to start acc: error 8 (invalid sample rate")
    assert "MTU" in message(10)
    assert "unknown error 99" in message(99)


def test_start_answer_with_a_factor():
    factor_bits = struct.unpack("<I", struct.pack("<f", 2.44e-4))[0]
    answer = bytes.fromhex("F0 02 02 00 00") + bytes([5, 1]) + factor_bits.to_bytes(4, "little")
    assert check_start_response(answer) == pytest.approx(2.44e-4)


@pytest.mark.parametrize("data, reason", [
    (b"\xf0\x02", "too short"),
    (H10_FEATURE_READ, "not a control point response"),
    (bytes.fromhex("F0 03 02 00 00"), "not the answer to a start"),
    (bytes.fromhex("F0 02 00 00 00"), "not the answer to a start"),  # ECG, not ACC
])
def test_not_a_start_answer(data, reason):
    with pytest.raises(ValueError, match=reason):
        check_start_response(data)


def test_features_and_stop_indications():
    assert parse_features(H10_FEATURE_READ) == {"ecg", "acc"}
    assert parse_features(bytes.fromhex("0f01")) == {"ecg"}
    assert "sdk_mode" in parse_features(bytes.fromhex("0f2402"))  # byte 2 bit 1 = type 9
    with pytest.raises(ValueError):
        parse_features(bytes.fromhex("f0020200"))
    assert parse_measurement_stopped(bytes.fromhex("010102")) == [1, 2]  # BlePmdClientTest
    assert parse_measurement_stopped(b"\x01") == []
    assert parse_measurement_stopped(bytes.fromhex("f002020000")) is None


# -- the device definition ---------------------------------------------------------------------
H10_LIKE = """\
model = "my-h10"
name = "x"
transport = "ble"
decoder = "ble_hrs"
pmd_acc_hz = 25
[signals.hr]
unit = "bpm"
[signals.acc]
unit = "g"
rate_hz = 25.0
"""


def test_shipped_h10_definition_asks_for_25_hz():
    d = load_device("polar-h10")
    assert d.pmd_acc_hz == 25 and d.signals["acc"].rate_hz == 25.0 and d.signals["acc"].unit == "g"
    assert d.signals["acc"].source == ("pmd_acc",)
    assert devices_module.PMD_ACC_RATES_HZ == H10_ACC_RATES_HZ
    assert load_device("generic-ble-hrs").pmd_acc_hz is None


@pytest.mark.parametrize("text, reason", [
    (H10_LIKE.replace("pmd_acc_hz = 25", "pmd_acc_hz = 52"), "'pmd_acc_hz' must be one of 25, 50, 100, 200"),
    (H10_LIKE.replace("pmd_acc_hz = 25", "pmd_acc_hz = 25.0"), "'pmd_acc_hz' must be one of"),
    (H10_LIKE.replace("rate_hz = 25.0", "rate_hz = 50.0"), "'signals.acc.rate_hz' must be 25"),
    (H10_LIKE.split("[signals.acc]")[0], "needs a [signals.acc] table"),
    (H10_LIKE.replace("pmd_acc_hz = 25\n", ""), "acc also needs pmd_acc_hz"),
    (H10_LIKE + 'source = "AX"\n', "'signals.acc.source' must be 'pmd_acc'"),
    (H10_LIKE.replace('decoder = "ble_hrs"', 'decoder = "lines"').replace('transport = "ble"', 'transport = "lines"'),
     "only with transport \"ble\" and decoder \"ble_hrs\""),
])
def test_definition_errors(text, reason):
    import tomllib

    with pytest.raises(ConfigError) as info:
        parse_device(tomllib.loads(text), "my-h10.toml")
    assert reason in str(info.value)


# -- the BLE path with a fake H10 ----------------------------------------------------------------
@dataclass
class FakePmd:
    """The strap's PMD side, shared by every connection (like ``FakeStrap``)."""

    offered: bool = True
    features: bytes = H10_FEATURE_READ
    start_status: int = 0  # 0 = success, else a PMD error code
    answer: bool = True  # False: never answers the control point
    stream_anyway: bool = False  # frames flow although the start was refused (another app's stream)
    samples_per_frame: int = 25  # one frame per heart rate notification (1 s at 25 Hz)
    bad_frame_at: int | None = None  # send garbage instead of this frame number
    stop_at: int | None = None  # the strap stops the stream itself before this frame number
    writes: list[bytes] = field(default_factory=list)
    sent_g: list[np.ndarray] = field(default_factory=list)  # what was sent, in g, frame by frame
    sent_frames: list[bytes] = field(default_factory=list)  # the frames' bytes
    streaming: bool = False
    k: int = 0  # samples sent so far (the strap's sample counter)


def walking_mg(k0: int, n: int) -> list[list[int]]:
    """A chest bouncing at 1.8 steps/s on top of gravity, in mG (what the H10 counts)."""
    t = (k0 + np.arange(n)) / 25.0
    x = 250 * np.sin(2 * math.pi * 1.8 * t)
    y = 60 * np.cos(2 * math.pi * 0.9 * t)
    z = -1000 + 300 * np.sin(2 * math.pi * 1.8 * t + 0.5)
    return np.round(np.column_stack([x, y, z])).astype(int).tolist()


class FakeH10Client(FakeBleakClient):
    """A bleak-like Polar H10: Heart Rate Service (replayed as ``FakeBleakClient`` does) + PMD."""

    def __init__(self, strap: FakeStrap, pmd: FakePmd, address: str, disconnected_callback=None, **kw):
        super().__init__(strap, address, disconnected_callback=disconnected_callback, **kw)
        self.pmd = pmd
        uuids = {HEART_RATE_MEASUREMENT_UUID, BATTERY_LEVEL_UUID}
        if pmd.offered:
            uuids |= {PMD_CONTROL_POINT_UUID, PMD_DATA_UUID}
        self.services = FakeServices(uuids)
        self._cp = self._data = None

    async def start_notify(self, uuid: str, callback) -> None:
        if not self.is_connected:
            raise OSError("not connected")
        if uuid == PMD_CONTROL_POINT_UUID:
            self._cp = callback
        elif uuid == PMD_DATA_UUID:
            self._data = callback
        else:
            self._task = asyncio.get_running_loop().create_task(self._replay_with_acc(callback))

    async def read_gatt_char(self, uuid: str) -> bytearray:
        if uuid == PMD_CONTROL_POINT_UUID:
            return bytearray(self.pmd.features)
        return await super().read_gatt_char(uuid)

    async def write_gatt_char(self, uuid: str, data, response: bool | None = None) -> None:
        assert uuid == PMD_CONTROL_POINT_UUID and self._cp is not None and self._data is not None
        data = bytes(data)
        self.pmd.writes.append(data)
        if data[0] == 0x02:
            self.pmd.streaming = self.pmd.start_status == 0 or self.pmd.stream_anyway
            if self.pmd.answer:
                self._cp(None, bytearray([0xF0, 0x02, data[1], self.pmd.start_status, 0x00]))
        elif data[0] == 0x03:
            self.pmd.streaming = False
            self._cp(None, bytearray([0xF0, 0x03, data[1], 0x00, 0x00]))

    def _send_acc_frame(self) -> None:
        pmd = self.pmd
        number = len(pmd.sent_g)
        if pmd.stop_at is not None and number == pmd.stop_at:
            pmd.streaming = False
            self._cp(None, bytearray([0x01, 0x02]))  # "online measurement stopped: ACC"
            return
        if pmd.bad_frame_at is not None and number == pmd.bad_frame_at:
            pmd.sent_g.append(np.empty((0, 3)))
            self._data(None, bytearray(HEADER_TS_2E9 + b"\x07\x00"))
            return
        mg = walking_mg(pmd.k, pmd.samples_per_frame)
        pmd.k += pmd.samples_per_frame
        timestamp_ns = 599_616_000_000_000_000 + round(pmd.k * 1e9 / 25)  # the H10's default clock
        pmd.sent_g.append(np.array(mg) / 1000.0)
        pmd.sent_frames.append(encode_acc_frame(mg, timestamp_ns))
        self._data(None, bytearray(pmd.sent_frames[-1]))

    async def _replay_with_acc(self, callback) -> None:
        strap = self.strap
        while self.is_connected and not strap.done:
            item = strap.script[strap.position]
            strap.position += 1
            if item is None:  # out of range: the link and the stream are gone
                self.is_connected = False
                self.pmd.streaming = False
                strap._fail_budget = strap.fail_connects_after_loss
                if self._on_lost is not None:
                    self._on_lost(self)
                return
            strap.clock.now += strap.interval_s
            callback(None, bytearray(item))
            if self.pmd.streaming and self._data is not None:
                self._send_acc_frame()
            await asyncio.sleep(strap.delay_s)


def hr_script(n: int) -> list[bytes]:
    rr = [800.0 + 40 * math.sin(i / 3) for i in range(n)]
    return [encode_heart_rate_measurement(round(60000 / r), [r], sensor_contact=True) for r in rr]


def run(bridge, strap, pmd, **kw):
    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run_ble(
            bridge, "AA:BB:CC:DD:EE:FF", stop=stop, tick_s=0.005, silence_s=10.0,
            client_factory=functools.partial(FakeH10Client, strap, pmd),
            reconnect_min_s=0.01, reconnect_max_s=0.05, **kw))
        for _ in range(2000):
            if strap.done:
                break
            await asyncio.sleep(0.01)
        strap.clock.now += 5.0  # let the last batches age
        await asyncio.sleep(0.1)
        stop.set()
        await task

    asyncio.run(scenario())


def pmd_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name == "firmware_bridge.ble" and "heart rate only" in r.getMessage()]


def test_h10_with_pmd_publishes_acc_alongside_hr_and_ibi(broker, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="firmware_bridge")
    notifications = hr_script(40)
    clock = SimClock()
    strap = FakeStrap(notifications[:20] + [None] + notifications[20:], clock=clock)
    pmd = FakePmd()
    monitor = MonitorSubscriber(broker.host, broker.port, broker.username, broker.password)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    publisher = Publisher(broker.url, "alice", "polar-h10", outbox, reconnect_max_s=2).start()
    bridge = Bridge(load_device("polar-h10"), "alice", outbox=outbox, publisher=publisher, clock=clock)

    run(bridge, strap, pmd)
    bridge.tick(force=True)
    sent = np.concatenate(pmd.sent_g)
    got_all = monitor.wait_for(
        lambda m: sum(len(b) for b in m.accepted[("polar-h10", "acc")]) >= len(sent)
        and sum(len(b) for b in m.accepted[("polar-h10", "ibi")]) >= len(notifications), 15)
    bridge.close()
    monitor.close()

    assert strap.connects == 2 and got_all
    # the start request on both connections (restarted after the reconnect), the stop at the end
    start = bytes.fromhex("02 02 00 01 19 00 01 01 10 00 02 01 08 00")
    assert pmd.writes == [start, start, bytes([0x03, 0x02])]
    assert len(pmd.sent_g) == len(notifications)  # one frame per second, while the link was up

    acc = monitor.accepted[("polar-h10", "acc")]
    assert all(b.fs == 25.0 and b.values.shape[1] == 3 for b in acc)
    values = np.concatenate([b.values for b in acc])
    assert len(values) == len(notifications) * 25  # every sample once
    assert np.allclose(values, sent)  # in g, in order
    assert max(len(b) for b in acc) == 25  # 1 s batches at 25 Hz
    # one time axis: each batch starts where the previous one ended (the reconnect lost no time here)
    t0 = np.array([b.t0 for b in acc])
    n = np.array([len(b) for b in acc])
    assert np.allclose(t0[1:], t0[:-1] + n[:-1] / 25.0)
    # the last sample of the first frame was stamped with its arrival time
    assert t0[0] == pytest.approx(1_700_000_001.0 - 24 / 25, abs=1e-6)

    assert sum(len(b) for b in monitor.accepted[("polar-h10", "hr")]) == len(notifications)
    assert sum(len(b) for b in monitor.accepted[("polar-h10", "ibi")]) == len(notifications)
    assert pmd_warnings(caplog) == []
    assert "accelerometer on (Polar PMD, 25 Hz)" in caplog.text
    assert "accelerometer stream stopped" in caplog.text
    # sample values (the frames' bytes) are logged at DEBUG only
    debug = " ".join(r.getMessage() for r in caplog.records if r.levelno <= logging.DEBUG)
    above = " ".join(r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)
    assert all(frame.hex() in debug for frame in pmd.sent_frames)
    assert not any(frame[10:16].hex() in above for frame in pmd.sent_frames)


def test_h10_without_pmd_goes_on_with_heart_rate_and_one_warning(broker, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    notifications = hr_script(20)
    clock = SimClock()
    strap = FakeStrap(notifications[:10] + [None] + notifications[10:], clock=clock)
    pmd = FakePmd(offered=False)
    monitor = MonitorSubscriber(broker.host, broker.port, broker.username, broker.password)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    publisher = Publisher(broker.url, "alice", "polar-h10", outbox, reconnect_max_s=2).start()
    bridge = Bridge(load_device("polar-h10"), "alice", outbox=outbox, publisher=publisher, clock=clock)

    run(bridge, strap, pmd)
    bridge.tick(force=True)
    got_all = monitor.wait_for(lambda m: sum(len(b) for b in m.accepted[("polar-h10", "ibi")]) >= len(notifications), 15)
    bridge.close()
    monitor.close()

    assert strap.connects == 2 and got_all
    assert sum(len(b) for b in monitor.accepted[("polar-h10", "hr")]) == len(notifications)
    assert monitor.accepted[("polar-h10", "acc")] == []
    assert pmd.writes == []
    warnings = pmd_warnings(caplog)
    assert len(warnings) == 1, warnings  # once, although the strap connected twice
    assert "does not offer Polar's PMD service" in warnings[0]


# -- refusals and faults, offline (no broker needed: the batcher's counts tell) ------------------
def offline(pmd: FakePmd, n: int = 6, **kw):
    clock = SimClock()
    strap = FakeStrap(hr_script(n), clock=clock)
    bridge = Bridge(load_device("polar-h10"), "alice", outbox=Outbox(":memory:"), clock=clock)
    run(bridge, strap, pmd, **kw)
    bridge.tick(force=True)
    stats = bridge.batcher.stats()
    return stats["acc"].received, stats["hr"].received


@pytest.mark.parametrize("status, text", [
    (6, "error 6 (already in state: the stream is already running: another app or connection may hold it)"),
    (8, "error 8 (invalid sample rate"),
    (3, "error 3 (not supported"),
])
def test_refused_start_is_one_warning_and_heart_rate_only(status, text, caplog):
    caplog.set_level(logging.INFO)
    pmd = FakePmd(start_status=status, stream_anyway=True)  # someone else's stream flows: not ours to use
    acc, hr = offline(pmd)
    assert acc == 0 and hr == 6
    warnings = pmd_warnings(caplog)
    assert len(warnings) == 1 and text in warnings[0]
    assert bytes([0x03, 0x02]) not in pmd.writes  # we do not stop a stream we did not start


def test_strap_without_acc_feature(caplog):
    caplog.set_level(logging.INFO)
    acc, hr = offline(FakePmd(features=bytes.fromhex("0f01000000")))
    assert acc == 0 and hr == 6
    assert ["offers ecg but no accelerometer" in w for w in pmd_warnings(caplog)] == [True]


def test_no_answer_from_the_control_point(caplog):
    caplog.set_level(logging.INFO)
    acc, hr = offline(FakePmd(answer=False), pmd_timeout_s=0.05)
    assert hr == 6
    assert ["no answer to the accelerometer start request" in w for w in pmd_warnings(caplog)] == [True]


def test_a_bad_frame_is_skipped_and_the_stream_goes_on(caplog):
    caplog.set_level(logging.INFO)
    pmd = FakePmd(bad_frame_at=2)
    acc, hr = offline(pmd)
    assert hr == 6 and acc == 5 * 25
    assert "accelerometer frame ignored: raw ACC frame type 7" in caplog.text


def test_strap_stopping_the_stream_is_one_warning(caplog):
    caplog.set_level(logging.INFO)
    acc, hr = offline(FakePmd(stop_at=3))
    assert hr == 6 and acc == 3 * 25
    assert ["stopped the accelerometer stream" in w for w in pmd_warnings(caplog)] == [True]


def test_frames_are_stamped_by_the_strap_clock_not_by_the_radio_delay():
    """Frames stamped by arrival moved with the radio: one held 0.8 s (beyond the batcher's
    0.5 s tolerance) opened a gap before it and an overlap after. The strap's own timestamps,
    mapped to unix time by the least-delayed frame, keep them exactly one frame apart."""
    now = [1_700_000_000.0]
    bridge = Bridge(load_device("polar-h10"), "alice", outbox=Outbox(":memory:"), clock=lambda: now[0])
    fed = []
    bridge.feed = fed.extend
    stream = PmdAccStream(bridge, "AA:BB", set())
    stream.active = True
    delays_s = [0.05, 0.12, 0.8, 0.07, 0.3]  # radio delay of each frame
    strap_ns = 599_616_000_000_000_000  # an H10 whose clock fell back to 2019-01-01
    for i, delay in enumerate(delays_s):
        now[0] = 1_700_000_000.0 + i + delay  # 25 samples (1 s) a frame
        stream.on_data(None, bytearray(encode_acc_frame([[0, 0, 1000]] * 25, timestamp_ns=strap_ns + i * 10**9)))
    starts = np.array([c.t0 for c in fed])
    assert np.diff(starts).tolist() == pytest.approx([1.0] * 4, abs=1e-6)
    # the last sample of a frame is never later than its arrival (the least-delayed frame sets the offset)
    assert np.all(starts + 24 / 25 <= 1_700_000_000.0 + np.arange(5) + np.array(delays_s) + 1e-9)
