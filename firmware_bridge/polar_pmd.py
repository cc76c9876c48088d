"""Polar Measurement Data (PMD): the accelerometer stream of a Polar H10, as pure functions.

Bytes in, values out, no I/O and no ``bleak`` (``firmware_bridge.ble`` does the radio). The
layout was learnt from Polar's own SDK (github.com/polarofficial/polar-ble-sdk, Android
``BlePMDClient.kt``, ``PmdControlPointCommand.kt``, ``PmdControlPointResponse.kt``,
``PmdSetting.kt``, ``PmdDataFrame.kt``, ``model/AccData.kt``, ``PmdTimeStampUtils.kt``, and
``technical_documentation/Polar_Measurement_Data_Specification.pdf``); this is our own code.

GATT: service ``fb005c80-...``, control point ``...c81...`` (read: feature bits; write:
commands; indicate: responses), data ``...c82...`` (notify: data frames). Both must have
notifications on before a command is written.

Control point request to start the accelerometer (all integers little endian)::

    02                 op code REQUEST_MEASUREMENT_START
    02                 measurement type ACC (bit 7 set would mean offline recording)
    00 01 19 00        setting SAMPLE_RATE, 1 value, 25 (Hz, uint16)
    01 01 10 00        setting RESOLUTION,  1 value, 16 (bits, uint16)
    02 01 08 00        setting RANGE,       1 value, 8 (G, uint16)

Control point response (an indication)::

    F0  op code  measurement type  status  more  parameters...

Status 0 is success; the others are the errors in ``PMD_ERRORS``. On success the parameters
may hold settings such as FACTOR (type 5, a little-endian IEEE 754 float32), the multiplier of
delta-compressed values. The strap may also indicate ``01 <types...>`` on its own: it stopped
those streams.

Data frame (a notification)::

    byte 0      measurement type (low 6 bits; 2 = ACC)
    bytes 1-8   uint64 timestamp of the LAST sample, ns since 2000-01-01 on the strap's clock
    byte 9      frame type: bit 7 = delta-compressed, bits 0-6 = type
    bytes 10-   samples

ACC frame types: raw 0, 1, 2 = x, y, z as signed 8, 16, 24-bit integers in mG; compressed
type 1 (0x81) = delta frames of 16-bit mG samples; compressed type 0 (0x80) = delta frames of
16-bit samples that times FACTOR are in G. A delta frame is a reference sample (3 x 16-bit)
followed by blocks ``[delta width in bits][sample count][bit-packed signed deltas, LSB first,
x y z per sample]``. The H10 offers only 16-bit resolution, so with the settings above it is
expected to send raw type 1 (0x01); the compressed types are decoded too (the Verity Sense
sends them) in case a firmware compresses. See docs/devices.md for what is verified.

Example
-------
>>> build_acc_start_request(25).hex(" ")
'02 02 00 01 19 00 01 01 10 00 02 01 08 00'
>>> parse_control_point_response(bytes.fromhex("f002020000")).ok
True
>>> f = decode_acc_frame(encode_acc_frame([[-9, -1, 999], [-8, -2, 997]], timestamp_ns=2_000_000_000))
>>> f.n_samples, f.acc_g[0].tolist(), f.frame_type
(2, [-0.009, -0.001, 0.999], 1)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.batcher import Chunk

PMD_SERVICE_UUID = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL_POINT_UUID = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA_UUID = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

# measurement types (PmdMeasurementType.kt); the feature read maps them to bits
MEASUREMENT_ECG = 0
MEASUREMENT_ACC = 2
MEASUREMENT_TYPE_MASK = 0x3F
MEASUREMENT_NAMES = {0: "ecg", 1: "ppg", 2: "acc", 3: "ppi", 5: "gyro", 6: "magnetometer", 7: "skin_temp",
                     9: "sdk_mode", 10: "location", 11: "pressure", 12: "temperature"}

# control point op codes, client to strap (PmdControlPointCommand.kt)
OP_GET_MEASUREMENT_SETTINGS = 0x01
OP_REQUEST_MEASUREMENT_START = 0x02
OP_STOP_MEASUREMENT = 0x03
# first byte of what the control point sends back
CP_RESPONSE = 0xF0  # answer to a command
CP_FEATURES = 0x0F  # first byte of the feature read
CP_MEASUREMENT_STOPPED = 0x01  # the strap stopped streams on its own

# setting types and their value widths in bytes (PmdSetting.kt)
SETTING_SAMPLE_RATE = 0
SETTING_RESOLUTION = 1
SETTING_RANGE = 2
SETTING_RANGE_MILLIUNIT = 3
SETTING_CHANNELS = 4
SETTING_FACTOR = 5
SETTING_BYTES = {0: 2, 1: 2, 2: 2, 3: 4, 4: 1, 5: 4}

# what the H10 offers for ACC (SDK README: 25, 50, 100, 200 Hz; 2, 4, 8 G; 16 bit; mG)
H10_ACC_RATES_HZ = (25, 50, 100, 200)
H10_ACC_RANGES_G = (2, 4, 8)
H10_ACC_RESOLUTION_BITS = 16

# control point status codes (PmdControlPointResponse.kt), with what they mean here
PMD_ERRORS = {
    1: ("invalid op code", "the strap does not know this command"),
    2: ("invalid measurement type", "the strap has no such stream"),
    3: ("not supported", "this strap or firmware does not stream it"),
    4: ("invalid length", "the request has a wrong length"),
    5: ("invalid parameter", "a setting is not accepted"),
    6: ("already in state", "the stream is already running: another app or connection may hold it"),
    7: ("invalid resolution", "the H10 streams 16-bit samples only"),
    8: ("invalid sample rate", "the H10 offers 25, 50, 100 or 200 Hz"),
    9: ("invalid range", "the H10 offers 2, 4 or 8 G"),
    10: ("invalid MTU", "the Bluetooth link's MTU is too small for PMD frames"),
    11: ("invalid number of channels", "the channel count is not accepted"),
    12: ("invalid state", "the strap cannot start it now"),
    13: ("device in charger", "the strap is charging"),
    14: ("disk full", "the strap's memory is full"),
}

STRAP_EPOCH_UNIX_S = 946_684_800  # 2000-01-01T00:00:00Z, the epoch of the strap's timestamps
FRAME_HEADER_BYTES = 10
FRAME_COMPRESSED_BIT = 0x80
ACC_CHANNELS = 3
DELTA_REFERENCE_BITS = 16  # both compressed ACC types carry 16-bit reference samples


class PmdError(Exception):
    """The strap refused a control point command; ``status`` is its error code (0-14)."""

    def __init__(self, message: str, status: int | None = None, op_code: int | None = None):
        super().__init__(message)
        self.status = status
        self.op_code = op_code


@dataclass(frozen=True)
class ControlPointResponse:
    """A decoded control point response (``F0 op type status more params...``)."""

    op_code: int
    measurement_type: int
    status: int
    more: bool = False
    parameters: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def status_name(self) -> str:
        """``"success"`` or the error's name, e.g. ``"already in state"``."""
        if self.status == 0:
            return "success"
        return PMD_ERRORS.get(self.status, (f"unknown error {self.status}", ""))[0]


@dataclass(frozen=True)
class AccFrame:
    """One decoded ACC data frame: ``acc_g`` has shape (n, 3), x y z in g, oldest first.

    ``timestamp_ns`` is the strap's time of the last sample (ns since 2000-01-01 on a clock
    nobody set); ``frame_type`` is bits 0-6 of byte 9 and ``compressed`` its bit 7.
    """

    timestamp_ns: int
    frame_type: int
    compressed: bool
    acc_g: np.ndarray = field(repr=False)

    @property
    def n_samples(self) -> int:
        return len(self.acc_g)


def _setting(kind: int, value: int) -> bytes:
    return bytes([kind, 1]) + int(value).to_bytes(SETTING_BYTES[kind], "little")


def build_acc_start_request(rate_hz: int = 25, range_g: int = 8, resolution_bits: int = H10_ACC_RESOLUTION_BITS) -> bytes:
    """Control point request to start the online ACC stream (default 25 Hz, 16 bit, 8 G).

    Raises ``ValueError`` for a setting the H10 does not offer (it would refuse it anyway,
    with a less helpful error).

    Example
    -------
    >>> build_acc_start_request(200, range_g=2).hex(" ")
    '02 02 00 01 c8 00 01 01 10 00 02 01 02 00'
    """
    if rate_hz not in H10_ACC_RATES_HZ:
        raise ValueError(f"ACC rate {rate_hz!r} Hz: the H10 offers {', '.join(map(str, H10_ACC_RATES_HZ))} Hz")
    if range_g not in H10_ACC_RANGES_G:
        raise ValueError(f"ACC range {range_g!r} G: the H10 offers {', '.join(map(str, H10_ACC_RANGES_G))} G")
    if resolution_bits != H10_ACC_RESOLUTION_BITS:
        raise ValueError(f"ACC resolution {resolution_bits!r} bits: the H10 offers {H10_ACC_RESOLUTION_BITS} bits")
    return (bytes([OP_REQUEST_MEASUREMENT_START, MEASUREMENT_ACC])
            + _setting(SETTING_SAMPLE_RATE, rate_hz)
            + _setting(SETTING_RESOLUTION, resolution_bits)
            + _setting(SETTING_RANGE, range_g))


def build_stop_request(measurement_type: int = MEASUREMENT_ACC) -> bytes:
    """Control point request to stop a stream.

    Example
    -------
    >>> build_stop_request().hex()
    '0302'
    """
    return bytes([OP_STOP_MEASUREMENT, measurement_type])


def parse_control_point_response(data: bytes | bytearray | memoryview) -> ControlPointResponse:
    """Decode a control point response; ``ValueError`` when it is not one (or is truncated).

    Example
    -------
    >>> r = parse_control_point_response(bytes.fromhex("f001060700"))   # the SDK's test vector
    >>> r.op_code, r.measurement_type, r.status, r.status_name
    (1, 6, 7, 'invalid resolution')
    """
    data = bytes(data)
    if len(data) < 4:
        raise ValueError(f"control point response too short: {len(data)} byte(s), expected at least 4")
    if data[0] != CP_RESPONSE:
        raise ValueError(f"not a control point response: first byte 0x{data[0]:02x}, expected 0x{CP_RESPONSE:02x}")
    status = data[3]
    more = status == 0 and len(data) > 4 and data[4] != 0
    params = data[5:] if status == 0 else b""
    return ControlPointResponse(op_code=data[1], measurement_type=data[2], status=status, more=more, parameters=params)


def describe_error(response: ControlPointResponse) -> str:
    """A sentence naming the error code and what it likely means.

    Example
    -------
    >>> describe_error(parse_control_point_response(bytes.fromhex("f0020206")))
    'error 6 (already in state: the stream is already running: another app or connection may hold it)'
    """
    name, meaning = PMD_ERRORS.get(response.status, (f"unknown error {response.status}", ""))
    return f"error {response.status} ({name}{': ' + meaning if meaning else ''})"


def check_start_response(data: bytes | bytearray | memoryview, measurement_type: int = MEASUREMENT_ACC) -> float | None:
    """Check the answer to a start request; returns the stream's FACTOR (None when none is sent).

    Raises ``PmdError`` naming the code when the strap refused, ``ValueError`` when the bytes
    are not the answer to a start of ``measurement_type``.

    Example
    -------
    >>> check_start_response(bytes.fromhex("f002020000")) is None
    True
    >>> check_start_response(bytes.fromhex("f002020800"))
    Traceback (most recent call last):
    ...
    firmware_bridge.polar_pmd.PmdError: the strap refused to start acc: error 8 (invalid sample rate: the H10 offers 25, 50, 100 or 200 Hz)
    """
    r = parse_control_point_response(data)
    if r.op_code != OP_REQUEST_MEASUREMENT_START or (r.measurement_type & MEASUREMENT_TYPE_MASK) != measurement_type:
        raise ValueError(f"not the answer to a start of measurement {measurement_type}: op code {r.op_code}, type {r.measurement_type}")
    if not r.ok:
        name = MEASUREMENT_NAMES.get(measurement_type, str(measurement_type))
        raise PmdError(f"the strap refused to start {name}: {describe_error(r)}", status=r.status, op_code=r.op_code)
    factor = parse_settings(r.parameters).get(SETTING_FACTOR)
    return float_from_bits(factor[0]) if factor else None


def parse_settings(data: bytes | bytearray | memoryview) -> dict[int, list[int]]:
    """Settings of a response as ``{setting type: [values]}`` (``[type, count, values...]`` each).

    Values are unsigned little-endian integers of the type's width (FACTOR: the float's bits).

    Example
    -------
    >>> parse_settings(bytes.fromhex("0001340001011000" "0204f500f401e803d007" "040103"))   # SDK PmdSettingTest
    {0: [52], 1: [16], 2: [245, 500, 1000, 2000], 4: [3]}
    """
    data = bytes(data)
    out: dict[int, list[int]] = {}
    pos = 0
    while pos < len(data):
        if len(data) < pos + 2:
            raise ValueError(f"setting at offset {pos} truncated: type and count need 2 bytes")
        kind, count = data[pos], data[pos + 1]
        if kind not in SETTING_BYTES:
            raise ValueError(f"unknown setting type {kind} at offset {pos}")
        width = SETTING_BYTES[kind]
        pos += 2
        if len(data) < pos + count * width:
            raise ValueError(f"setting type {kind} truncated: {count} value(s) of {width} byte(s) at offset {pos}")
        out[kind] = [int.from_bytes(data[pos + i * width : pos + (i + 1) * width], "little") for i in range(count)]
        pos += count * width
    return out


def float_from_bits(bits: int) -> float:
    """IEEE 754 float32 from its 32 bits (how FACTOR travels).

    Example
    -------
    >>> round(float_from_bits(0x3F800000), 3)
    1.0
    """
    return struct.unpack("<f", int(bits).to_bytes(4, "little"))[0]


def parse_features(data: bytes | bytearray | memoryview) -> set[str]:
    """Streams the strap offers, from the control point's feature read (``0F bits bits ...``).

    Example
    -------
    >>> sorted(parse_features(bytes.fromhex("0f05000000")))   # an H10: ECG and ACC
    ['acc', 'ecg']
    """
    data = bytes(data)
    if len(data) < 2 or data[0] != CP_FEATURES:
        raise ValueError("not a PMD feature read: expected 0x0f and at least one feature byte")
    bits = int.from_bytes(data[1:3], "little")
    # bit k of the two feature bytes (little endian) is measurement type k (PmdMeasurementType.kt)
    return {name for kind, name in MEASUREMENT_NAMES.items() if bits >> kind & 1}


def parse_measurement_stopped(data: bytes | bytearray | memoryview) -> list[int] | None:
    """Measurement types the strap says it stopped (``01 <types...>``), or None for other bytes.

    Example
    -------
    >>> parse_measurement_stopped(b"\\x01\\x02"), parse_measurement_stopped(bytes.fromhex("f002020000"))
    ([2], None)
    """
    data = bytes(data)
    if not data or data[0] != CP_MEASUREMENT_STOPPED:
        return None
    return [b & MEASUREMENT_TYPE_MASK for b in data[1:]]


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def decode_delta_samples(content: bytes, channels: int = ACC_CHANNELS, reference_bits: int = DELTA_REFERENCE_BITS) -> np.ndarray:
    """Integer samples, shape (n, channels), of a delta-compressed frame body.

    A reference sample (``channels`` signed little-endian integers of ``reference_bits``),
    then blocks of ``[width bits][count][ceil(width * channels * count / 8) bytes]``: signed
    deltas packed least significant bit first, channel by channel, sample by sample, each
    added to the previous sample. A block of 0-bit deltas repeats the previous sample ``count``
    times (the SDK would add no samples; no device is known to send one). Raises ``ValueError``
    naming a truncated block.

    Example
    -------
    >>> decode_delta_samples(bytes.fromhex("f1ff1400f00306017b0f08")).tolist()   # SDK AccDataTest
    [[-15, 20, 1008], [-20, 17, 1008]]
    """
    content = bytes(content)
    ref_bytes = math.ceil(reference_bits / 8)
    if len(content) < channels * ref_bytes:
        raise ValueError(f"delta frame truncated: reference sample needs {channels * ref_bytes} bytes, got {len(content)}")
    last = [_signed(int.from_bytes(content[i * ref_bytes : (i + 1) * ref_bytes], "little"), reference_bits)
            for i in range(channels)]
    samples = [list(last)]
    pos = channels * ref_bytes
    while pos < len(content):
        if len(content) < pos + 2:
            raise ValueError(f"delta block header at offset {pos} truncated: expected width and count bytes")
        width, count = content[pos], content[pos + 1]
        pos += 2
        if width > 32:
            raise ValueError(f"delta block at offset {pos - 2} has {width}-bit deltas (at most 32 are possible)")
        n_bytes = math.ceil(width * channels * count / 8)
        if len(content) < pos + n_bytes:
            raise ValueError(f"delta block at offset {pos - 2} truncated: {count} samples of {width} bits need"
                             f" {n_bytes} bytes, {len(content) - pos} left")
        bits = int.from_bytes(content[pos : pos + n_bytes], "little")
        mask = (1 << width) - 1
        shift = 0
        for _ in range(count):
            for ch in range(channels):
                delta = _signed(bits >> shift & mask, width) if width else 0
                last[ch] += delta
                shift += width
            samples.append(list(last))
        pos += n_bytes
    return np.array(samples, dtype=np.int64).reshape(-1, channels)


def _raw_samples(content: bytes, width_bytes: int) -> np.ndarray:
    step = width_bytes * ACC_CHANNELS
    if len(content) % step:
        raise ValueError(f"raw ACC frame body of {len(content)} bytes is not a whole number of {step}-byte samples")
    values = [_signed(int.from_bytes(content[i : i + width_bytes], "little"), 8 * width_bytes)
              for i in range(0, len(content), width_bytes)]
    return np.array(values, dtype=np.int64).reshape(-1, ACC_CHANNELS)


def decode_acc_frame(data: bytes | bytearray | memoryview, factor: float | None = None) -> AccFrame:
    """Decode an ACC data frame into samples in g (x, y, z).

    ``factor`` is the FACTOR the start response gave (``check_start_response``); only the
    compressed types use it, and compressed type 0 cannot be read without it. Raises
    ``ValueError`` naming the problem: not ACC, truncated, an unknown frame type, a body that
    does not split into samples.

    Example
    -------
    >>> frame = bytes.fromhex("02" "0094357700000000" "01" "f7ffffffe703")   # SDK AccDataTest, first sample
    >>> f = decode_acc_frame(frame)
    >>> f.acc_g.tolist(), f.timestamp_ns
    ([[-0.009, -0.001, 0.999]], 2000000000)
    """
    data = bytes(data)
    if len(data) < FRAME_HEADER_BYTES:
        raise ValueError(f"PMD data frame too short: {len(data)} byte(s), the header alone is {FRAME_HEADER_BYTES}")
    kind = data[0] & MEASUREMENT_TYPE_MASK
    if kind != MEASUREMENT_ACC:
        raise ValueError(f"not an ACC frame: measurement type {kind} ({MEASUREMENT_NAMES.get(kind, 'unknown')})")
    timestamp_ns = int.from_bytes(data[1:9], "little")
    compressed = bool(data[9] & FRAME_COMPRESSED_BIT)
    frame_type = data[9] & ~FRAME_COMPRESSED_BIT & 0xFF
    content = data[FRAME_HEADER_BYTES:]
    if not content:
        raise ValueError("ACC frame carries no samples")
    if compressed:
        if frame_type not in (0, 1):
            raise ValueError(f"compressed ACC frame type {frame_type} (0x{data[9]:02x}) is unknown: types 0 and 1 exist")
        if frame_type == 0 and factor is None:
            raise ValueError("compressed ACC frame type 0 is in units of the stream's FACTOR, which the start response did not give")
        counts = decode_delta_samples(content).astype(float)
        # type 0: counts * factor are G; type 1: counts (times factor when one is sent) are mG
        acc_g = counts * factor if frame_type == 0 else counts * (factor or 1.0) / 1000.0
    else:
        if frame_type not in (0, 1, 2):
            raise ValueError(f"raw ACC frame type {frame_type} (0x{data[9]:02x}) is unknown: types 0, 1 and 2 exist")
        acc_g = _raw_samples(content, frame_type + 1).astype(float) / 1000.0
    return AccFrame(timestamp_ns=timestamp_ns, frame_type=frame_type, compressed=compressed, acc_g=acc_g)


def encode_acc_frame(acc_mg, timestamp_ns: int = 0, frame_type: int = 1) -> bytes:
    """Build a raw ACC data frame (the inverse of the decoder), for tests and simulated straps.

    Example
    -------
    >>> encode_acc_frame([[-9, -1, 999]], timestamp_ns=2_000_000_000).hex()
    '02009435770000000001f7ffffffe703'
    """
    if frame_type not in (0, 1, 2):
        raise ValueError(f"raw ACC frame types are 0, 1 and 2, not {frame_type}")
    width = frame_type + 1
    try:
        body = b"".join(int(v).to_bytes(width, "little", signed=True) for row in acc_mg for v in row)
    except OverflowError:
        raise ValueError(f"a value does not fit frame type {frame_type} ({8 * width}-bit mG)") from None
    return bytes([MEASUREMENT_ACC]) + int(timestamp_ns).to_bytes(8, "little") + bytes([frame_type]) + body


def strap_time_to_unix_s(timestamp_ns: int) -> float:
    """The strap's timestamp as unix seconds (meaningful only if someone set its clock).

    Example
    -------
    >>> strap_time_to_unix_s(599_616_000_000_000_000)   # an H10's default time, 2019-01-01
    1546300800.0
    """
    return STRAP_EPOCH_UNIX_S + timestamp_ns / 1e9


def acc_chunk(frame: AccFrame, last_s: float, rate_hz: float, scale: float = 1.0) -> Chunk:
    """The frame as an ``acc`` chunk whose last sample is at ``last_s`` (unix s), the others
    spaced by the nominal rate before it.

    The strap's clock is never set (an H10 falls back to 2019-01-01 whenever it sleeps), so
    its timestamps are not unix times; the caller maps them with a ``DeviceClock`` (the
    windowed-minimum offset to the arrival times, as for the EmotiBit), so the radio's delays
    do not move the frames. The ``Batcher`` then counts samples at the rate.

    Example
    -------
    >>> f = decode_acc_frame(encode_acc_frame([[0, 0, 1000]] * 25))
    >>> c = acc_chunk(f, last_s=1_700_000_001.0, rate_hz=25.0)
    >>> c.signal, c.values.shape, round(c.t0, 2)
    ('acc', (25, 3), 1700000000.04)
    """
    n = frame.n_samples
    return Chunk("acc", frame.acc_g * scale, t0=last_s - (n - 1) / rate_hz)
