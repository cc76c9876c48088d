"""EmotiBit's text packets (network and SD card), parsed without I/O, and the host-side messages.

EmotiBit documents one packet format for both its WiFi stream and its SD-card recording
(EmotiBit_Docs, "Working with EmotiBit data", *Raw data format*)::

    EMOTIBIT_TIMESTAMP,PACKET#,NUM_DATAPOINTS,TYPETAG,VERSION,RELIABILITY,PAYLOAD...

* EMOTIBIT_TIMESTAMP: milliseconds since the EmotiBit booted
* PACKET#: sequentially increasing packet count
* NUM_DATAPOINTS: number of data points in the payload
* TYPETAG: type of data (EA = EDA, PI/PR/PG = PPG infrared/red/green, T0/T1/TH =
  temperature, AX/AY/AZ = accelerometer, HR = heart rate, BI = inter-beat interval,
  B% = battery percent, and control tags such as RB, EM, TX, HH ...)
* VERSION: packet protocol version; RELIABILITY: score out of 100

Packets are separated by newlines: a UDP datagram carries several, an SD-card file one per
line. Data packets carry exactly NUM_DATAPOINTS numbers; control packets may carry more
payload fields (``EM`` pairs labels and values), as in EmotiBit's own parser.

The host handshake (EmotiBit_XPlat_Utils ``EmotiBitPacket``, as BrainFlow's EmotiBit board
also implements it): the host sends ``HE`` (hello) to UDP port 3131, the EmotiBit answers
``HH`` with ``DP,<-1 when free>,DI,<device id>``; the host opens a TCP control port and a UDP data port and sends
``EC`` with ``CP,<control port>,DP,<data port>``; the EmotiBit connects to the control port
and streams data packets to the data port while the host pings (``PN`` with
``DP,<data port>``) about once a second.

Example
-------
>>> p = parse_packet("531459,17301,2,EA,1,100,0.030269,0.030269")
>>> p.typetag, p.timestamp_ms, p.values().tolist()
('EA', 531459.0, [0.030269, 0.030269])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from firmware_bridge.batcher import Chunk, Status
from firmware_bridge.clock import DeviceClock
from firmware_bridge.devices import DeviceDefinition

ADVERTISING_PORT = 3131
HEADER_FIELDS = 6

# Type tags this bridge reads (EmotiBit_XPlat_Utils/src/EmotiBitPacket.cpp)
EDA, EDL, EDR = "EA", "EL", "ER"
PPG_INFRARED, PPG_RED, PPG_GREEN = "PI", "PR", "PG"
TEMPERATURE_0, TEMPERATURE_1, THERMOPILE = "T0", "T1", "TH"
ACC_X, ACC_Y, ACC_Z = "AX", "AY", "AZ"
HEART_RATE, INTER_BEAT_INTERVAL = "HR", "BI"
BATTERY_PERCENT, BATTERY_VOLTAGE = "B%", "BV"
HELLO_EMOTIBIT, HELLO_HOST, EMOTIBIT_CONNECT, PING, PONG = "HE", "HH", "EC", "PN", "PO"
MODE_NORMAL_POWER, EMOTIBIT_DISCONNECT = "MN", "ED"
CONTROL_PORT, DATA_PORT, DEVICE_ID = "CP", "DP", "DI"
AVAILABLE = "-1"  # HH answers DP,-1 while no host is connected (ofxEmotiBit EMOTIBIT_AVAILABLE)

# Tags whose payload is numbers, one per data point (the rest are control or text packets)
NUMERIC_TAGS = frozenset(
    {
        EDA, EDL, EDR, PPG_INFRARED, PPG_RED, PPG_GREEN, "O2", TEMPERATURE_0, TEMPERATURE_1, THERMOPILE,
        "H0", ACC_X, ACC_Y, ACC_Z, "GX", "GY", "GZ", "MX", "MY", "MZ", HEART_RATE, INTER_BEAT_INTERVAL,
        "SA", "SR", "SF", BATTERY_PERCENT, BATTERY_VOLTAGE,
    }
)


@dataclass(frozen=True)
class EmotiBitPacket:
    """One packet: header fields and the payload as text fields."""

    timestamp_ms: float
    packet_number: int
    num_datapoints: int
    typetag: str
    version: int
    reliability: int
    payload: tuple[str, ...]

    def values(self) -> np.ndarray:
        """The first NUM_DATAPOINTS payload fields as floats (data packets)."""
        try:
            return np.array([float(x) for x in self.payload[: self.num_datapoints]])
        except ValueError:
            raise ValueError(f"{self.typetag} packet {self.packet_number} has a payload that is not numbers") from None

    def labelled(self) -> dict[str, str]:
        """Payload read as LABEL,VALUE pairs (``HH``, ``EC``, ``PN`` packets)."""
        return dict(zip(self.payload[::2], self.payload[1::2]))


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} {text[:20]!r} is not an integer") from None


def parse_packet(text: str) -> EmotiBitPacket:
    """Parse one packet (a line without its newline); ``ValueError`` says what is wrong."""
    fields = text.strip().split(",")
    if len(fields) < HEADER_FIELDS:
        raise ValueError(f"packet has {len(fields)} comma-separated field(s); the header alone has {HEADER_FIELDS}")
    try:
        timestamp = float(fields[0])
    except ValueError:
        raise ValueError(f"timestamp {fields[0][:20]!r} is not a number") from None
    if not math.isfinite(timestamp) or timestamp < 0:
        raise ValueError("timestamp must be a non-negative number of milliseconds")
    number = _int(fields[1], "packet number")
    n = _int(fields[2], "number of data points")
    tag = fields[3]
    if not tag:
        raise ValueError("type tag is empty")
    version = _int(fields[4], "protocol version")
    reliability = _int(fields[5], "reliability")
    payload = tuple(fields[HEADER_FIELDS:])
    if n < 0:
        raise ValueError(f"number of data points is negative ({n})")
    if tag in NUMERIC_TAGS:
        if len(payload) != n:
            raise ValueError(f"{tag} packet says {n} data point(s) but carries {len(payload)}")
    elif len(payload) < n:
        raise ValueError(f"{tag} packet says {n} data point(s) but carries only {len(payload)}")
    return EmotiBitPacket(timestamp, number, n, tag, version, reliability, payload)


@dataclass
class ParseResult:
    packets: list[EmotiBitPacket]
    errors: list[str]  # one reason per malformed packet (no payload values)


def parse_datagram(data: bytes | str) -> ParseResult:
    """Split a UDP datagram (or any text) into packets; malformed ones are reported, not raised."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("ascii", errors="replace")
    return parse_lines(data.split("\n"))


def parse_lines(lines: Iterable[str]) -> ParseResult:
    """Parse SD-card file lines (or datagram lines); blank lines are skipped."""
    out = ParseResult([], [])
    for line in lines:
        if not line.strip():
            continue
        try:
            out.packets.append(parse_packet(line))
        except ValueError as exc:
            out.errors.append(str(exc))
    return out


def iter_sd_file(path) -> Iterator[EmotiBitPacket]:
    """Packets of an EmotiBit SD-card recording (``YYYY-MM-DD_hh-mm-ss-ffffff.csv``); bad lines skipped."""
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    yield parse_packet(line)
                except ValueError:
                    continue


# --------------------------------------------------------------------------------------------
# Host-side messages


def make_packet(typetag: str, packet_number: int = 0, payload: Iterable[object] = (), timestamp_ms: int = 0) -> str:
    """A packet line ending in a newline, as EmotiBit's ``createPacket`` builds it.

    Example
    -------
    >>> make_packet(EMOTIBIT_CONNECT, 0, [CONTROL_PORT, 3132, DATA_PORT, 3133])
    '0,0,4,EC,1,100,CP,3132,DP,3133\\n'
    """
    items = [str(x) for x in payload]
    header = f"{timestamp_ms},{packet_number},{len(items)},{typetag},1,100"
    return ",".join([header, *items]) + "\n"


def hello_packet() -> bytes:
    return make_packet(HELLO_EMOTIBIT).encode()


def connect_packet(control_port: int, data_port: int) -> bytes:
    return make_packet(EMOTIBIT_CONNECT, 0, [CONTROL_PORT, control_port, DATA_PORT, data_port]).encode()


def ping_packet(number: int, data_port: int) -> bytes:
    return make_packet(PING, number, [DATA_PORT, data_port]).encode()


# --------------------------------------------------------------------------------------------
# Packets to canonical samples


class EmotiBitConverter:
    """Turn data packets into chunks and battery status using the device definition.

    The packet timestamp (ms since boot) is taken as the time of the packet's last data
    point and mapped to unix time with a ``DeviceClock``; the accelerometer's three axes
    arrive as separate packets with one timestamp and are joined into ``acc`` triples. Several
    beat intervals (``BI``) in one packet end one interval apart, the last at the packet's time.
    """

    def __init__(self, definition: DeviceDefinition, clock: DeviceClock | None = None):
        self.definition = definition
        self.clock = clock or DeviceClock()
        self.sources = definition.source_map()
        acc = definition.signals.get("acc")
        self.acc_tags = acc.source if acc else ()
        self._acc_pending: dict[float, dict[str, np.ndarray]] = {}
        self.unmatched_acc = 0

    def convert(self, packet: EmotiBitPacket, arrival_s: float) -> list[Chunk | Status]:
        tag = packet.typetag
        if tag == BATTERY_PERCENT and self.definition.battery:
            values = packet.values()
            if len(values):
                t = self.clock.to_unix(packet.timestamp_ms, arrival_s)
                return [Status("battery", float(values[-1]), t)]
            return []
        hit = self.sources.get(tag)
        if hit is None:
            return []
        signal, sig = hit
        values = packet.values()
        if not len(values):
            return []
        t_last = self.clock.to_unix(packet.timestamp_ms, arrival_s)
        if signal == "acc":
            return self._acc(packet, values, t_last, sig)
        values = values * sig.scale if sig.scale != 1.0 else values
        if sig.regular:
            return [Chunk(signal, values, t0=t_last - (len(values) - 1) / sig.rate_hz)]
        if signal == "ibi":  # each interval ends a beat: the last at the packet's time, each before it an interval earlier
            later_ms = np.cumsum(values[::-1])[::-1] - values  # the intervals after each one
            return [Chunk(signal, values, t=t_last - later_ms / 1000.0)]
        return [Chunk(signal, values, t=np.full(len(values), t_last))]

    def _acc(self, packet: EmotiBitPacket, values: np.ndarray, t_last: float, sig) -> list[Chunk]:
        key = packet.timestamp_ms
        group = self._acc_pending.setdefault(key, {})
        group[packet.typetag] = values
        for old in [k for k in self._acc_pending if k < key - 2000.0]:
            self.unmatched_acc += 1
            del self._acc_pending[old]
        if len(group) < 3:
            return []
        del self._acc_pending[key]
        axes = [group[t] for t in self.acc_tags]
        n = min(len(a) for a in axes)
        if any(len(a) != n for a in axes):
            self.unmatched_acc += 1
        xyz = np.column_stack([a[:n] for a in axes]) * sig.scale
        return [Chunk("acc", xyz, t0=t_last - (n - 1) / sig.rate_hz)]
