"""Turn decoded samples into canonical sample batches (default 1 s each) and measure real rates.

Decoders hand over ``Chunk`` objects: a regular chunk has the unix time of its first value
(``t0``), an irregular one a time per value (``t``). For each signal the ``Batcher``:

* drops values the contract would refuse (not finite, outside the physiological range of
  ``monitor.wire.SIGNALS``) and counts them, so one bad sample never costs a whole batch;
* stamps regular streams by **sample counting** at the declared rate: a chunk that starts
  within ``tolerance_s`` of where the count expects continues the segment, so network jitter
  never bends the time axis; a later or earlier start opens a new segment (a gap);
* follows a device clock that drifts from the declared rate (the Polar H10 declares 130 Hz
  and samples ~130.16): once the chunks' own times stray more than half of ``tolerance_s``
  from the count, each batch moves the counted time by at most half a sample towards them,
  which the monitor takes as drift, not as a gap or an overlap (up to half a sample of drift
  per batch: 0.8 % at 64 Hz, 12 % at 4 Hz; a faster drift is re-anchored as before);
* keeps irregular streams (``hr``, ``ibi``) in time order: a value up to ``CLOCK_BACK_S`` older
  than the last is a late one and dropped; a time further back, or more than ``MAX_FUTURE_S``
  ahead, is a clock step or a glitch and starts a new batch (the monitor judges it);
* measures the real rate from the chunks' own times and warns when it differs from the
  declared one by more than 10 %;
* cuts batches of ``round(batch_s * rate)`` values, and hands out what is pending once it
  is ``batch_s`` old (so a slow or stalled device still reaches the monitor).

Batches come out with ``seq = -1``: the outbox gives the real number when it stores them.

Example
-------
>>> from firmware_bridge.devices import load_device
>>> b = Batcher(load_device("diy-lines").signals, batch_s=1.0)
>>> b.add(Chunk("eda", np.array([5.0, 5.1, 5.2, 5.3, 5.4]), t0=1.7e9), now_s=1.7e9)
>>> [(x.signal, len(x), x.t0, x.fs) for x in b.take(now_s=1.7e9)]
[('eda', 4, 1700000000.0, 4.0)]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from monitor.wire import MAX_FUTURE_S, MAX_SAMPLES_PER_BATCH, SIGNALS, SampleBatch

from firmware_bridge.devices import SignalDef

log = logging.getLogger(__name__)

RATE_WINDOW_S = 30.0  # measure the real rate over this much of the device's own time
RATE_TOLERANCE = 0.10  # warn when measured and declared rates differ by more than 10 %
RATE_GAP_S = 2.0  # a pause this long restarts the measurement (it is a gap, not a slow rate)
CLOCK_BACK_S = 5.0  # an irregular time this far before the last one: the device clock was set back, not a late beat


@dataclass(frozen=True)
class Chunk:
    """Samples of one signal in canonical units: regular (``t0``) or irregular (``t``)."""

    signal: str
    values: np.ndarray
    t0: float | None = None
    t: np.ndarray | None = None


@dataclass(frozen=True)
class Status:
    """Device status that is not a sample: ``battery`` (percent) or ``contact`` (bool)."""

    kind: str
    value: float | bool
    t_s: float


@dataclass
class StreamStats:
    received: int = 0
    dropped_invalid: int = 0  # not finite or outside the contract's range
    dropped_unordered: int = 0  # irregular values up to CLOCK_BACK_S older than one already batched
    segments: int = 0  # how often the time was re-anchored (irregular: a clock step back or far ahead)
    measured_hz: float | None = None


def valid_mask(signal: str, values: np.ndarray) -> np.ndarray:
    """True for each value (row of ``acc``) the contract accepts: finite, in ``SIGNALS``' range."""
    spec = SIGNALS[signal]
    if values.ndim == 2:
        return np.isfinite(values).all(axis=1)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values >= spec.low) & (values <= spec.high)


class _Regular:
    def __init__(self, sig: SignalDef, batch_s: float, tolerance_s: float):
        self.signal = sig.signal
        self.fs = float(sig.rate_hz)
        self.batch_n = max(1, min(MAX_SAMPLES_PER_BATCH, round(batch_s * self.fs)))
        self.batch_s = batch_s
        self.tolerance_s = tolerance_s
        self.axes = SIGNALS[sig.signal].axes
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self.seg_t0: float | None = None  # counted time of pending[0][0]
        self.drift_s = 0.0  # the last chunk's own time minus its counted time
        self.first_arrival: float | None = None
        self.stats = StreamStats()
        # rate measurement from the chunks' own (device) times
        self._m_t0: float | None = None
        self._m_n = 0
        self._m_next: float | None = None
        self._rate_off = False

    @property
    def next_t(self) -> float | None:
        return None if self.seg_t0 is None else self.seg_t0 + self.n_pending / self.fs

    def add(self, t0: float, values: np.ndarray, now_s: float, out: list[SampleBatch]) -> None:
        n = len(values)
        self.stats.received += n
        self._measure(t0, n)
        ok = valid_mask(self.signal, values)
        if not ok.all():
            self.stats.dropped_invalid += int((~ok).sum())
        # split into runs of valid samples, each with its own start time
        edges = np.flatnonzero(np.diff(np.concatenate([[False], ok, [False]]).astype(np.int8)))
        for k, (start, stop) in enumerate(zip(edges[::2], edges[1::2])):
            # a run after dropped values starts a new segment: its time is known exactly
            self._append(t0 + start / self.fs, values[start:stop], now_s, out, new_segment=k > 0 or start > 0)

    def _append(self, t_run: float, values: np.ndarray, now_s: float, out: list[SampleBatch], new_segment: bool) -> None:
        expected = self.next_t
        if expected is None or new_segment or abs(t_run - expected) > self.tolerance_s:
            if self.n_pending:
                self._emit(self.n_pending, out)
            if expected is not None:
                self.stats.segments += 1
            self.seg_t0 = float(t_run)
            self.drift_s = 0.0
        else:
            self.drift_s = t_run - expected
        if self.n_pending == 0:
            self.first_arrival = now_s
        self.pending.append(values)
        self.n_pending += len(values)

    def _emit(self, n: int, out: list[SampleBatch]) -> None:
        values = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        batch, rest = values[:n], values[n:]
        out.append(SampleBatch(self.signal, -1, batch.copy(), t0=self.seg_t0, fs=self.fs))
        self.seg_t0 += n / self.fs
        if abs(self.drift_s) > self.tolerance_s / 2:  # follow a drifting device clock, gently
            step_s = float(np.clip(self.drift_s, -0.5 / self.fs, 0.5 / self.fs))
            self.seg_t0 += step_s
            self.drift_s -= step_s
        self.pending = [rest] if len(rest) else []
        self.n_pending = len(rest)

    def take(self, now_s: float, force: bool, out: list[SampleBatch]) -> None:
        if self.n_pending >= self.batch_n:
            while self.n_pending >= self.batch_n:
                self._emit(self.batch_n, out)
            self.first_arrival = now_s  # the rest waits a full batch_s for its companions
        if self.n_pending and (force or now_s - self.first_arrival >= self.batch_s):
            self._emit(self.n_pending, out)

    def _measure(self, t0: float, n: int) -> None:
        if self._m_t0 is None or self._m_next is None or abs(t0 - self._m_next) > RATE_GAP_S:
            self._m_t0, self._m_n = t0, 0
        elapsed = t0 - self._m_t0
        if elapsed >= RATE_WINDOW_S:
            measured = self._m_n / elapsed
            self.stats.measured_hz = measured
            off = abs(measured / self.fs - 1.0) > RATE_TOLERANCE
            if off and not self._rate_off:
                log.warning(
                    "%s: the device sends %.3g Hz but its definition declares %.3g Hz; timestamps are"
                    " counted at the declared rate, so fix rate_hz in the definition (or the device)",
                    self.signal, measured, self.fs,
                )
            elif self._rate_off and not off:
                log.info("%s: measured rate %.3g Hz matches the declared %.3g Hz again", self.signal, measured, self.fs)
            self._rate_off = off
            self._m_t0, self._m_n = t0, 0
        self._m_n += n
        self._m_next = t0 + n / self.fs


class _Irregular:
    def __init__(self, sig: SignalDef, batch_s: float):
        self.signal = sig.signal
        self.batch_s = batch_s
        self.t: list[float] = []
        self.v: list[float] = []
        self.last_t: float | None = None
        self.first_arrival: float | None = None
        self.stats = StreamStats()

    def add(self, t: np.ndarray, values: np.ndarray, now_s: float, out: list[SampleBatch]) -> None:
        """A time slightly before the last one is a late value (dropped); one more than
        ``CLOCK_BACK_S`` before it, or more than ``MAX_FUTURE_S`` after it, is a clock step (or a
        glitch): what is pending goes out as a batch of its own and the stream goes on from
        there (else one time stamp a day ahead dropped every later value for a day)."""
        self.stats.received += len(values)
        ok = valid_mask(self.signal, values) & np.isfinite(t)
        self.stats.dropped_invalid += int((~ok).sum())
        for ti, vi in zip(t[ok].tolist(), values[ok].tolist()):
            if self.last_t is not None and not -CLOCK_BACK_S <= ti - self.last_t <= MAX_FUTURE_S:
                self.take(now_s, True, out)
                self.stats.segments += 1
            elif self.last_t is not None and ti < self.last_t:
                self.stats.dropped_unordered += 1
                continue
            if not self.t:
                self.first_arrival = now_s
            self.t.append(ti)
            self.v.append(vi)
            self.last_t = ti

    def take(self, now_s: float, force: bool, out: list[SampleBatch]) -> None:
        while self.t and (force or now_s - self.first_arrival >= self.batch_s or len(self.t) >= MAX_SAMPLES_PER_BATCH):
            n = min(len(self.t), MAX_SAMPLES_PER_BATCH)
            out.append(SampleBatch(self.signal, -1, np.array(self.v[:n]), t=np.array(self.t[:n])))
            del self.t[:n], self.v[:n]
            self.first_arrival = now_s


@dataclass
class Batcher:
    """Per-signal batching of one device (see the module docstring).

    Parameters
    ----------
    signals : dict of SignalDef
        The device definition's signals (nominal rates of regular streams).
    batch_s : float
        Batch length in seconds of samples (regular) or of waiting (irregular).
    tolerance_s : float
        How far a regular chunk's own time may stray from the counted time before the
        stream is re-anchored (a new segment).
    """

    signals: dict[str, SignalDef]
    batch_s: float = 1.0
    tolerance_s: float = 0.5
    _streams: dict = field(default_factory=dict, init=False, repr=False)
    _out: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self):
        if not self.batch_s > 0:
            raise ValueError(f"batch_s must be > 0, got {self.batch_s}")
        for name, sig in self.signals.items():
            self._streams[name] = _Regular(sig, self.batch_s, self.tolerance_s) if sig.regular else _Irregular(sig, self.batch_s)

    def stats(self) -> dict[str, StreamStats]:
        return {name: s.stats for name, s in self._streams.items()}

    def add(self, chunk: Chunk, now_s: float) -> None:
        """Take a chunk in canonical units; signals the definition does not declare raise KeyError."""
        stream = self._streams.get(chunk.signal)
        if stream is None:
            raise KeyError(f"signal {chunk.signal!r} is not in this device's definition ({', '.join(self._streams)})")
        values = np.asarray(chunk.values, dtype=float)
        if values.size == 0:
            return
        if isinstance(stream, _Regular):
            if chunk.t0 is None:
                raise ValueError(f"{chunk.signal} is a regular signal: the chunk needs t0")
            stream.add(float(chunk.t0), values.reshape(len(values), -1) if stream.axes > 1 else values, now_s, self._out)
        else:
            if chunk.t is None or len(chunk.t) != len(values):
                raise ValueError(f"{chunk.signal} is irregular: the chunk needs one time per value")
            stream.add(np.asarray(chunk.t, dtype=float), values, now_s, self._out)

    def take(self, now_s: float, force: bool = False) -> list[SampleBatch]:
        """Batches that are complete (or ``batch_s`` old, or everything when ``force``)."""
        for stream in self._streams.values():
            stream.take(now_s, force, self._out)
        out, self._out = self._out, []
        return out
