"""Decoder of the Bluetooth Heart Rate Measurement characteristic (0x2A37) and Battery Level (0x2A19).

Pure functions: bytes in, values out, no I/O. The layout follows the Bluetooth GATT
Specification Supplement, "Heart Rate Measurement"::

    byte 0       flags
                   bit 0  heart rate format: 0 = uint8, 1 = uint16 (little endian)
                   bit 1  sensor contact detected  (meaningful only when bit 2 is set)
                   bit 2  sensor contact supported
                   bit 3  energy expended present (uint16, kJ)
                   bit 4  RR intervals present (uint16 each, units of 1/1024 s)
                   bits 5-7 reserved for future use (ignored)
    then         heart rate (1 or 2 bytes), energy expended (2 bytes, optional),
                 RR intervals (2 bytes each, all remaining bytes)

Polar, Garmin, Wahoo and most chest straps and watches send this characteristic.

Example
-------
>>> m = decode_heart_rate_measurement(bytes([0x10, 59, 0x53, 0x04]))   # a Polar H10 notification
>>> m.hr_bpm, [round(x, 2) for x in m.rr_ms], m.sensor_contact, m.energy_kj
(59, [1081.05], None, None)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.batcher import Chunk, Status
from firmware_bridge.bridge import log_every
from firmware_bridge.devices import DeviceDefinition

log = logging.getLogger(__name__)

WARN_OVERLAP_EVERY_S = 60.0  # beats a backwards re-anchor would overlap: a WARNING at most this often

HEART_RATE_SERVICE_UUID = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT_UUID = "00002a37-0000-1000-8000-00805f9b34fb"
BATTERY_SERVICE_UUID = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"

FLAG_HR_UINT16 = 0x01
FLAG_CONTACT_DETECTED = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY_PRESENT = 0x08
FLAG_RR_PRESENT = 0x10

RR_UNITS_PER_S = 1024.0


@dataclass(frozen=True)
class HeartRateMeasurement:
    """One decoded notification.

    ``sensor_contact`` is None when the device does not support contact detection, else
    whether the skin contact is detected. ``rr_ms`` are the beat-to-beat intervals in ms
    (oldest first) that ended since the previous notification; often empty or one value.
    ``problem`` names what was wrong after the heart rate and left out (a truncated field, an RR
    list with an odd byte: none of its intervals can be trusted), or is None.
    """

    hr_bpm: int
    rr_ms: list[float] = field(default_factory=list)
    sensor_contact: bool | None = None
    energy_kj: int | None = None
    problem: str | None = None


def decode_heart_rate_measurement(data: bytes | bytearray | memoryview) -> HeartRateMeasurement:
    """Decode the value of a Heart Rate Measurement notification.

    Raises ``ValueError`` naming the problem when ``data`` is empty or its heart rate field is
    truncated. A problem after the heart rate (a truncated energy field, an RR list that is
    missing or ends in an odd byte, bytes after the last field) keeps the heart rate and leaves
    the rest out, named in ``problem``: a strap with a quirk still gives its heart rate.

    Example
    -------
    >>> decode_heart_rate_measurement(bytes([0x06, 0x3C])).sensor_contact   # Polar H7, contact detected
    True
    >>> m = decode_heart_rate_measurement(bytes([0x16, 0x3C, 0x11]))   # an odd byte for RR
    >>> m.hr_bpm, m.rr_ms, m.problem
    (60, [], 'RR interval list has an odd trailing byte (1 bytes after offset 2)')
    """
    data = bytes(data)
    if not data:
        raise ValueError("heart rate measurement is empty: expected at least flags and a heart rate byte")
    flags = data[0]
    pos = 1
    width = 2 if flags & FLAG_HR_UINT16 else 1
    if len(data) < pos + width:
        fmt = "uint16" if width == 2 else "uint8"
        raise ValueError(f"heart rate field truncated: flags say {fmt} but only {len(data) - pos} byte(s) follow")
    hr_bpm = int.from_bytes(data[pos : pos + width], "little")
    pos += width

    contact: bool | None = None
    if flags & FLAG_CONTACT_SUPPORTED:
        contact = bool(flags & FLAG_CONTACT_DETECTED)

    def partial(problem: str, energy: int | None = None) -> HeartRateMeasurement:
        return HeartRateMeasurement(hr_bpm=hr_bpm, sensor_contact=contact, energy_kj=energy, problem=problem)

    energy_kj: int | None = None
    if flags & FLAG_ENERGY_PRESENT:
        if len(data) < pos + 2:
            return partial(f"energy expended field truncated: expected 2 bytes at offset {pos}, got {len(data) - pos}")
        energy_kj = int.from_bytes(data[pos : pos + 2], "little")
        pos += 2

    rr_ms: list[float] = []
    rest = len(data) - pos
    if flags & FLAG_RR_PRESENT:
        if rest == 0:
            return partial("RR interval field truncated: flags say RR intervals follow but no bytes are left", energy_kj)
        if rest % 2:
            return partial(f"RR interval list has an odd trailing byte ({rest} bytes after offset {pos})", energy_kj)
        rr_ms = [
            int.from_bytes(data[i : i + 2], "little") * 1000.0 / RR_UNITS_PER_S for i in range(pos, len(data), 2)
        ]
    elif rest:
        return partial(f"{rest} unexpected byte(s) after the last field (RR flag not set)", energy_kj)
    return HeartRateMeasurement(hr_bpm=hr_bpm, rr_ms=rr_ms, sensor_contact=contact, energy_kj=energy_kj)


def encode_heart_rate_measurement(
    hr_bpm: int,
    rr_ms: list[float] = (),
    sensor_contact: bool | None = None,
    energy_kj: int | None = None,
    uint16: bool | None = None,
) -> bytes:
    """Build notification bytes (the inverse of the decoder), for tests and simulated straps.

    RR intervals are rounded to the nearest 1/1024 s, as a strap does.

    Example
    -------
    >>> encode_heart_rate_measurement(59, [1081.05]).hex()
    '103b5304'
    """
    if uint16 is None:
        uint16 = hr_bpm > 255
    flags = FLAG_HR_UINT16 if uint16 else 0
    if sensor_contact is not None:
        flags |= FLAG_CONTACT_SUPPORTED | (FLAG_CONTACT_DETECTED if sensor_contact else 0)
    body = int(hr_bpm).to_bytes(2 if uint16 else 1, "little")
    if energy_kj is not None:
        flags |= FLAG_ENERGY_PRESENT
        body += int(energy_kj).to_bytes(2, "little")
    if len(rr_ms):
        flags |= FLAG_RR_PRESENT
        for rr in rr_ms:
            body += int(round(rr * RR_UNITS_PER_S / 1000.0)).to_bytes(2, "little")
    return bytes([flags]) + body


def decode_battery_level(data: bytes | bytearray | memoryview) -> int:
    """Decode the Battery Level characteristic (0x2A19): one byte, 0-100 %.

    Example
    -------
    >>> decode_battery_level(b"\\x57")
    87
    """
    data = bytes(data)
    if len(data) != 1:
        raise ValueError(f"battery level must be exactly 1 byte, got {len(data)}")
    if data[0] > 100:
        raise ValueError(f"battery level {data[0]} % is above 100 %")
    return data[0]


def chain_rr(rr_ms, arrival_s: float, last_beat_s: float | None, max_drift_s: float) -> tuple[np.ndarray, bool]:
    """Beat times (unix s) of the RR intervals (ms, oldest first) that arrived together at
    ``arrival_s``, and whether the chain was (re-)anchored there.

    Each interval ends ``rr`` after the previous beat (``last_beat_s``), so beat times keep the
    device's own interval precision instead of the radio's jitter. The last beat is put at the
    arrival time instead when there is no chain yet (None) or the chain strays more than
    ``max_drift_s`` from it (a missed beat, a gap, a held burst). The one chaining of the live
    bridge (``HrsConverter``) and of the readers (``monitor.readers.common.chain_beats``).

    >>> chain_rr([400.0, 600.0], 10.0, None, 2.0)
    (array([ 9.4, 10. ]), True)
    >>> chain_rr([1000.0], 11.5, 10.0, 2.0)
    (array([11.]), False)
    """
    ends = np.cumsum(np.asarray(rr_ms, dtype=float) / 1000.0)
    if last_beat_s is not None:
        chained = last_beat_s + ends
        if abs(chained[-1] - arrival_s) <= max_drift_s:
            return chained, False
    return arrival_s - (ends[-1] - ends), True


class HrsConverter:
    """Turn decoded measurements into ``hr``/``ibi`` chunks and ``contact`` status.

    Notifications carry no timestamps. Heart rate is stamped with the arrival time. Beats are
    chained (``chain_rr``): each RR interval ends ``rr`` after the previous beat, so beat times
    keep the strap's own 1/1024 s precision instead of the radio's jitter; the chain is
    re-anchored (last beat = arrival time) at the start, after ``reset()`` (a reconnect), and
    whenever it strays more than ``max_drift_s`` from the arrival time. A chain ahead of the
    arrival time (anchored on a late notification, then a held burst arrived) is re-anchored
    backwards; beats that would then fall at or before a beat already sent are left out (the
    stream cannot go back in time), counted in ``overlapped_beats`` and warned about at most
    once a minute.

    Example
    -------
    >>> from firmware_bridge.devices import load_device
    >>> conv = HrsConverter(load_device("polar-h10"))
    >>> out = conv.convert(decode_heart_rate_measurement(bytes([0x16, 0x3C, 0x00, 0x04])), 1_700_000_000.0)
    >>> [(type(x).__name__, getattr(x, "signal", getattr(x, "kind", None))) for x in out]
    [('Chunk', 'hr'), ('Chunk', 'ibi'), ('Status', 'contact')]
    """

    def __init__(self, definition: DeviceDefinition, max_drift_s: float = 2.0):
        self.definition = definition
        self.max_drift_s = max_drift_s
        self.last_beat_s: float | None = None
        self.overlapped_beats = 0
        self._logged: dict = {}

    def reset(self) -> None:
        self.last_beat_s = None

    def convert(self, m: HeartRateMeasurement, arrival_s: float) -> list[Chunk | Status]:
        out: list[Chunk | Status] = []
        signals = self.definition.signals
        if "hr" in signals:
            out.append(Chunk("hr", np.array([float(m.hr_bpm)]) * signals["hr"].scale, t=np.array([arrival_s])))
        if m.rr_ms and "ibi" in signals:
            chained, anchored = chain_rr(m.rr_ms, arrival_s, self.last_beat_s, self.max_drift_s)
            rr_ms = np.asarray(m.rr_ms)
            if anchored and self.last_beat_s is not None:  # re-anchored backwards: overlapping beats go
                after = chained > self.last_beat_s
                self._overlap(int((~after).sum()))
                chained, rr_ms = chained[after], rr_ms[after]
            if len(chained):
                self.last_beat_s = float(chained[-1])
                out.append(Chunk("ibi", rr_ms * signals["ibi"].scale, t=chained))
        if self.definition.sensor_contact and m.sensor_contact is not None:
            out.append(Status("contact", m.sensor_contact, arrival_s))
        return out

    def _overlap(self, n: int) -> None:
        if n:
            self.overlapped_beats += n
            log_every(self._logged, "overlap", WARN_OVERLAP_EVERY_S, logging.WARNING,
                      "RR chain re-anchored backwards: %d beat(s) overlapping those already sent left out "
                      "(%d so far)", n, self.overlapped_beats, logger=log)
