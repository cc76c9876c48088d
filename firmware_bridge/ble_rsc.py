"""Decoder of the Bluetooth RSC Measurement characteristic (0x2A53, Running Speed and Cadence service 0x1814).

Pure functions: bytes in, values out, no I/O. The layout follows the Bluetooth GATT
Specification Supplement, "RSC Measurement"::

    byte 0       flags
                   bit 0  instantaneous stride length present (uint16, 1/100 m)
                   bit 1  total distance present (uint32, 1/10 m)
                   bit 2  walking (0) or running (1)
                   bits 3-7 reserved for future use (ignored)
    then         instantaneous speed (uint16, 1/256 m/s), instantaneous cadence (uint8, 1/min),
                 stride length (2 bytes, optional), total distance (4 bytes, optional)

All fields are little endian. Heart-rate straps with a running sensor (Garmin HRM-Pro, Wahoo
TICKR X) and foot pods send it, about once a second. The cadence is footfalls per minute, so
steps/min; a device that counts one foot only (strides/min) needs ``scale = 2`` in its
definition's ``[signals.cadence]``. anxmon uses only the cadence: it feeds the monitor's motion
gate (``monitor.core.motion.CadenceProcessor``).

Example
-------
>>> m = decode_rsc_measurement(bytes([0x04, 0x80, 0x03, 0xA8]))   # running, 3.5 m/s, 168 steps/min
>>> m.speed_m_per_s, m.cadence_per_min, m.running, m.stride_length_m, m.total_distance_m
(3.5, 168, True, None, None)
"""

from __future__ import annotations

from dataclasses import dataclass

RSC_SERVICE_UUID = "00001814-0000-1000-8000-00805f9b34fb"
RSC_MEASUREMENT_UUID = "00002a53-0000-1000-8000-00805f9b34fb"

FLAG_STRIDE_PRESENT = 0x01
FLAG_DISTANCE_PRESENT = 0x02
FLAG_RUNNING = 0x04

SPEED_UNITS_PER_M_PER_S = 256.0
STRIDE_UNITS_PER_M = 100.0
DISTANCE_UNITS_PER_M = 10.0


@dataclass(frozen=True)
class RscMeasurement:
    """One decoded notification: speed (m/s), cadence (footfalls/min), whether the sensor says
    running (else walking), and the optional stride length (m) and total distance (m)."""

    speed_m_per_s: float
    cadence_per_min: int
    running: bool
    stride_length_m: float | None = None
    total_distance_m: float | None = None


def decode_rsc_measurement(data: bytes | bytearray | memoryview) -> RscMeasurement:
    """Decode the value of an RSC Measurement notification.

    Raises ``ValueError`` naming the problem when ``data`` is empty, a field is truncated, or
    bytes follow the last field.

    Example
    -------
    >>> decode_rsc_measurement(bytes.fromhex("03" "0001" "70" "4b00" "e8030000")).total_distance_m   # walking
    100.0
    """
    data = bytes(data)
    if not data:
        raise ValueError("RSC measurement is empty: expected flags, speed (2 bytes) and cadence (1 byte)")
    flags = data[0]
    fields = [("speed", 2, SPEED_UNITS_PER_M_PER_S), ("cadence", 1, 1.0)]
    if flags & FLAG_STRIDE_PRESENT:
        fields.append(("stride length", 2, STRIDE_UNITS_PER_M))
    if flags & FLAG_DISTANCE_PRESENT:
        fields.append(("total distance", 4, DISTANCE_UNITS_PER_M))
    values: dict[str, float] = {}
    pos = 1
    for name, width, units in fields:
        if len(data) < pos + width:
            raise ValueError(f"{name} field truncated: expected {width} byte(s) at offset {pos}, got {len(data) - pos}")
        values[name] = int.from_bytes(data[pos : pos + width], "little") / units
        pos += width
    if len(data) > pos:
        raise ValueError(f"{len(data) - pos} unexpected byte(s) after the last field (flags 0x{flags:02x})")
    return RscMeasurement(
        speed_m_per_s=values["speed"],
        cadence_per_min=int(values["cadence"]),
        running=bool(flags & FLAG_RUNNING),
        stride_length_m=values.get("stride length"),
        total_distance_m=values.get("total distance"),
    )


def encode_rsc_measurement(speed_m_per_s: float, cadence_per_min: int, running: bool = False,
                           stride_length_m: float | None = None, total_distance_m: float | None = None) -> bytes:
    """Build notification bytes (the inverse of the decoder), for tests and simulated sensors.

    Example
    -------
    >>> encode_rsc_measurement(3.5, 168, running=True).hex()
    '048003a8'
    """
    flags = FLAG_RUNNING if running else 0
    body = round(speed_m_per_s * SPEED_UNITS_PER_M_PER_S).to_bytes(2, "little") + int(cadence_per_min).to_bytes(1, "little")
    if stride_length_m is not None:
        flags |= FLAG_STRIDE_PRESENT
        body += round(stride_length_m * STRIDE_UNITS_PER_M).to_bytes(2, "little")
    if total_distance_m is not None:
        flags |= FLAG_DISTANCE_PRESENT
        body += round(total_distance_m * DISTANCE_UNITS_PER_M).to_bytes(4, "little")
    return bytes([flags]) + body
