"""The anxmon line protocol for DIY devices: one text line per reading, parsed without I/O.

A line is ``KIND TIME VALUE...`` separated by spaces, ending in a newline::

    eda - 5.01                     one EDA value (µS), stamped when the line arrives
    bvp +123456 512 515 519 530    four PPG values; the first sampled at millis() = 123456
    temp 1700000000.25 33.1        a value at a unix time (seconds, decimals allowed)
    acc - 0.01 -0.02 0.98          x y z in g (several triples allowed)
    hr - 72                        heart rate (bpm), one value per line
    ibi - 830                      beat-to-beat interval (ms) of the beat that just happened
    battery - 87                   battery level in %
    contact - 1                    skin contact: 1 yes, 0 no
    # anything after a '#' at the start of a line is a comment; blank lines are ignored

``TIME`` is one of ``-`` (the bridge stamps the *last* value with the time the line arrived),
``+MS`` (the device's ``millis()`` of the *first* value; the bridge maps it to unix time) or
unix seconds of the first value. Regular signals (eda, bvp, ecg, temp, acc) take several
values per line at the rate declared in the device definition; hr, ibi, battery and contact
take exactly one.

Example
-------
>>> parse_line("bvp +123456 512 515").values.tolist(), parse_line("bvp +123456 512 515").device_ms
([512.0, 515.0], 123456.0)
>>> parse_line("# a comment") is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitor.wire import EARLIEST_T_S, SIGNALS, unix_s_problem

from firmware_bridge.batcher import Chunk, Status, valid_mask
from firmware_bridge.clock import DeviceClock
from firmware_bridge.devices import DeviceDefinition

STATUS_KINDS = ("battery", "contact")
MAX_VALUES_PER_LINE = 1000
MAX_LINE_CHARS = 16_384


class LineError(ValueError):
    """A line that breaks the protocol; the message says why (never the values)."""


@dataclass(frozen=True)
class Line:
    """A parsed line: exactly one of ``t_s`` (unix s), ``device_ms`` or neither (``-``) is set."""

    kind: str
    values: np.ndarray
    t_s: float | None = None
    device_ms: float | None = None


def parse_line(text: str | bytes) -> Line | None:
    """Parse one line; None for blank and comment lines; ``LineError`` when malformed."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise LineError("line is not ASCII text (wrong baud rate?)") from None
    if len(text) > MAX_LINE_CHARS:
        raise LineError(f"line is longer than {MAX_LINE_CHARS} characters")
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    tokens = text.split()
    kind = tokens[0].lower()
    if kind not in SIGNALS and kind not in STATUS_KINDS:
        raise LineError(f"unknown kind {tokens[0][:20]!r}: expected one of {', '.join([*SIGNALS, *STATUS_KINDS])}")
    if len(tokens) < 3:
        raise LineError(f"{kind} line needs a time and at least one value ('{kind} - VALUE')")
    t_s = device_ms = None
    stamp = tokens[1]
    if stamp != "-":
        try:
            number = float(stamp)
        except ValueError:
            raise LineError(f"time {stamp[:20]!r} is not '-', '+MILLIS' or unix seconds") from None
        if not math.isfinite(number):
            raise LineError("time is not a finite number")
        if stamp.startswith("+"):
            device_ms = number
        elif problem := unix_s_problem(number):  # (before 2000: most likely an uptime)
            raise LineError(f"time {stamp[:20]} is not unix seconds ({problem.split(';')[0].removeprefix('is ')})"
                            + ("; use '+MILLIS' for device uptime" if number < EARLIEST_T_S else ""))
        else:
            t_s = number
    fields = tokens[2:]
    if len(fields) > MAX_VALUES_PER_LINE:
        raise LineError(f"{len(fields)} values on one line; at most {MAX_VALUES_PER_LINE}")
    try:
        values = np.array([float(x) for x in fields])
    except ValueError:
        raise LineError(f"{kind} values must be numbers") from None
    if not np.all(np.isfinite(values)):
        raise LineError(f"{kind} values must be finite numbers (no nan/inf)")
    spec = SIGNALS.get(kind)
    if spec is None or not spec.regular:
        if len(values) != 1:
            raise LineError(f"{kind} takes exactly one value per line, got {len(values)}")
    elif spec.axes == 3:
        if len(values) % 3:
            raise LineError(f"acc values come in x y z triples, got {len(values)} numbers")
        values = values.reshape(-1, 3)
    if kind == "battery" and not 0 <= values[0] <= 100:
        raise LineError("battery must be 0-100 (%)")
    if kind == "contact" and values[0] not in (0.0, 1.0):
        raise LineError("contact must be 1 (skin contact) or 0 (none)")
    return Line(kind, values, t_s=t_s, device_ms=device_ms)


class LinesConverter:
    """Turn parsed lines into chunks and status for the bridge, using the device definition.

    Example
    -------
    >>> from firmware_bridge.devices import load_device
    >>> conv = LinesConverter(load_device("diy-lines"))
    >>> c = conv.convert(parse_line("eda - 5.0 5.1"), arrival_s=1_700_000_010.0)[0]
    >>> c.signal, c.t0   # the last value arrived at 10.0 s, so the first was sampled 0.25 s before
    ('eda', 1700000009.75)
    """

    def __init__(self, definition: DeviceDefinition, clock: DeviceClock | None = None):
        self.definition = definition
        self.clock = clock or DeviceClock()

    def convert(self, line: Line, arrival_s: float) -> list[Chunk | Status]:
        """Chunks and status of one line; ``LineError`` for what the definition or the contract refuses."""
        if line.kind in STATUS_KINDS:
            if line.kind == "battery" and not self.definition.battery:
                raise LineError(f"battery is not declared in {self.definition.model} (battery = true)")
            if line.kind == "contact" and not self.definition.sensor_contact:
                raise LineError(f"contact is not declared in {self.definition.model} (sensor_contact = true)")
            value = float(line.values[0]) if line.kind == "battery" else bool(line.values[0])
            return [Status(line.kind, value, self._time(line, arrival_s, 1, None))]
        sig = self.definition.signals.get(line.kind)
        if sig is None:
            raise LineError(f"{line.kind} is not declared in the device definition {self.definition.model}")
        values = line.values * sig.scale if sig.scale != 1.0 else line.values
        if not valid_mask(sig.signal, values).all():
            spec = SIGNALS[sig.signal]
            raise LineError(f"{line.kind} value outside the range the monitor accepts ({spec.low:g} to {spec.high:g} {spec.unit})")
        n = len(values)
        if sig.regular:
            return [Chunk(sig.signal, values, t0=self._time(line, arrival_s, n, sig.rate_hz))]
        return [Chunk(sig.signal, values, t=np.array([self._time(line, arrival_s, 1, None)]))]

    def _time(self, line: Line, arrival_s: float, n: int, rate_hz: float | None) -> float:
        """Unix time of the first value of the line.

        The line arrives after its *last* value was sampled, so ``+MILLIS`` is mapped through
        the last value's device time (else every value of a long line came out late by the
        line's span: 1 s for a 64 Hz line of 64 values)."""
        span_s = (n - 1) / rate_hz if rate_hz else 0.0
        if line.t_s is not None:
            return line.t_s
        if line.device_ms is not None:
            return self.clock.to_unix(line.device_ms + 1000.0 * span_s, arrival_s) - span_s
        return arrival_s - span_s
