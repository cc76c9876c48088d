"""Building blocks shared by every streaming processor of the core.

The processor contract (see ``docs/architecture.md``):

* ``__init__`` stores parameters only; all mutable state lives in ``self.state`` (a dataclass),
  so ``get_state()`` / ``set_state()`` checkpoint and resume a processor exactly.
* ``update(...)`` takes what arrived and returns what is now known; it never blocks, reads no
  clock and touches no file or socket. Time is the samples' own timestamps (event time).
* Chunk size never matters: feeding 1, 7, 64 samples at a time or the whole record gives the
  same output, bit for bit. Regular streams therefore count samples (``SampleClock``) instead
  of trusting each batch's ``t0``, and filters carry their state (``CausalSOS``).
* Windowed features are emitted on an event-time grid of ticks (``TickGrid``), each tick once,
  as ``Features`` that say which values were valid and with what quality.
"""

from __future__ import annotations

import copy
import functools
import math
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import signal as sps

_deepcopy = copy.deepcopy  # (get_state's argument ``copy`` hides the module)

try:  # the compiled loop behind scipy.signal.sosfilt (checked against it in tests/test_base.py)
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # a scipy without it: the public function, slower but identical
    _sosfilt_kernel = None

try:  # lfilter's own C kernel: the public wrapper costs ~4 us per call in argument checks
    from scipy.signal._sigtools import _linear_filter as _lfilter_kernel
except ImportError:  # pragma: no cover - another scipy layout: use the public function
    _lfilter_kernel = None


# Denominator for moving averages through lfilter_zi: [1, 0] keeps lfilter on its direct
# recursive kernel, 3x faster than its FIR path for short batches, and the result is identical.
FIR_A = np.array([1.0, 0.0])


def lfilter_zi(b: np.ndarray, a: np.ndarray, x: np.ndarray, zi: np.ndarray):
    """``scipy.signal.lfilter(b, a, x, zi=zi)`` for 1-D float arrays with ``a[0] == 1``."""
    if _lfilter_kernel is not None:
        return _lfilter_kernel(b, a, x, -1, zi)
    return sps.lfilter(b, a, x, zi=zi)


# Filter designs are cached: every wearer's processors use the same few filters, and designing
# one (``butter``, ``lfilter_zi`` solving an n x n system) costs far more than running it for
# a second. Cached arrays are read-only; callers that need a writable array get a copy.


def read_only(a: np.ndarray) -> np.ndarray:
    """``a``, made read-only (a cached array every wearer shares)."""
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=128)
def butter_sos(order: int, cutoff_hz: tuple, btype: str, sampling_rate: float) -> np.ndarray:
    """``scipy.signal.butter(..., output="sos")`` for ``cutoff_hz`` (a tuple of 1 or 2 Hz),
    cached; read-only."""
    wn = cutoff_hz[0] if len(cutoff_hz) == 1 else np.array(cutoff_hz, dtype=float)
    return read_only(sps.butter(order, wn, btype=btype, fs=sampling_rate, output="sos"))


@functools.lru_cache(maxsize=128)
def butter_ba(order: int, cutoff_hz: tuple, btype: str, sampling_rate: float):
    """``scipy.signal.butter(...)`` as ``(b, a)`` for ``cutoff_hz`` (a tuple of 1 or 2 Hz),
    cached; read-only."""
    wn = cutoff_hz[0] if len(cutoff_hz) == 1 else np.array(cutoff_hz, dtype=float)
    b, a = sps.butter(order, wn, btype=btype, fs=sampling_rate)
    return read_only(b), read_only(a)


@functools.lru_cache(maxsize=128)
def _lfilter_zi_cached(b: bytes, a: bytes) -> np.ndarray:
    return read_only(sps.lfilter_zi(np.frombuffer(b), np.frombuffer(a)))


def steady_state_zi(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``scipy.signal.lfilter_zi(b, a)`` (the filter memory of a unit step's steady state),
    cached by the coefficients; read-only.

    >>> steady_state_zi(np.array([0.5, 0.5]), np.array([1.0, 0.0])).tolist()
    [0.5]
    """
    return _lfilter_zi_cached(np.asarray(b, dtype=float).tobytes(),
                              np.asarray(a, dtype=float).tobytes())


@functools.lru_cache(maxsize=128)
def _sosfilt_zi_cached(sos: bytes) -> np.ndarray:
    return read_only(sps.sosfilt_zi(np.frombuffer(sos).reshape(-1, 6)))


try:  # einsum's compiled core (``np.einsum`` without the Python layer of its `optimize` option)
    from numpy._core.multiarray import c_einsum as einsum_c
except ImportError:  # pragma: no cover - another numpy layout: the public function
    einsum_c = np.einsum


def row_norms(x: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of a float array of shape (n, k): ``sqrt(einsum("ij,ij->i"))``.

    >>> row_norms(np.array([[3.0, 4.0, 0.0]])).tolist()
    [5.0]
    """
    return np.sqrt(einsum_c("ij,ij->i", x, x))


# np.mean and np.std of small arrays spend most of their time in argument handling; these do
# numpy's own arithmetic (the same pairwise sums, in the same order) without it, so the
# results are identical to the last bit (checked in tests/test_core_fast.py).


def mean_of(x: np.ndarray) -> float:
    """``float(np.mean(x))`` of a 1-D float or boolean array (NaN when empty).

    >>> mean_of(np.array([1.0, 2.0, 4.0])), mean_of(np.array([True, False, False, False]))
    (2.3333333333333335, 0.25)
    """
    n = len(x)
    if not n:
        return math.nan
    if x.dtype == bool:  # the share of True (np.mean sums them as exact float64 integers)
        return int(np.count_nonzero(x)) / n
    return float(np.add.reduce(x)) / n


def std_of(x: np.ndarray, ddof: int = 0) -> float:
    """``float(np.std(x, ddof=ddof))`` of a 1-D float array (NaN without enough values).

    >>> x = np.array([1.0, 2.0, 4.0])
    >>> std_of(x, ddof=1) == float(np.std(x, ddof=1)), round(std_of(x), 4)
    (True, 1.2472)
    """
    n = len(x)
    if n <= ddof:
        return math.nan
    d = x - float(np.add.reduce(x)) / n
    return math.sqrt(float(np.add.reduce(d * d)) / (n - ddof))


def slope_of(t: np.ndarray, x: np.ndarray) -> float:
    """Least-squares slope of ``x`` against ``t`` (units of x per unit of t), in closed form:
    ``np.polyfit(t, x, 1)[0]`` up to rounding, for a fraction of its cost. Centre ``t`` near
    zero first (e.g. ``t - tick_s``) to keep it well conditioned.

    >>> slope_of(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]))
    2.0
    """
    tc = t - float(np.add.reduce(t)) / len(t)
    xc = x - float(np.add.reduce(x)) / len(x)
    return float(np.add.reduce(tc * xc) / np.add.reduce(tc * tc))


MAX_ABS_SAMPLE = 1e30  # a waveform sample beyond +-this is no signal (the ECG chain squares twice:
# its 4th power must stay finite, or inf - inf leaves NaN in the filters' memory for good)


def hold_last_usable(x: np.ndarray, last: float) -> np.ndarray:
    """Replace samples that are not finite or beyond +-``MAX_ABS_SAMPLE`` by the last usable
    one (``last`` before the batch), so one bad sample cannot poison the filters' memory for
    the rest of the segment; ``x`` itself when every sample is usable (two reductions).

    >>> hold_last_usable(np.array([1.0, np.nan, 3.0, 1e300]), 0.0).tolist()
    [1.0, 1.0, 3.0, 3.0]
    """
    if -MAX_ABS_SAMPLE <= np.minimum.reduce(x) and np.maximum.reduce(x) <= MAX_ABS_SAMPLE:
        return x  # (NaN fails both comparisons)
    ok = np.abs(x) <= MAX_ABS_SAMPLE
    idx = np.maximum.accumulate(np.where(ok, np.arange(len(x)), -1))
    return np.where(ok, x, np.where(idx >= 0, x[np.maximum(idx, 0)], last))


# Quality codes shared by all modalities. "ok" is the only code that means "use it".
QUALITY_OK = "ok"
QUALITY_INSUFFICIENT = "insufficient"  # not enough valid data in the window
QUALITY_MISSING = "missing"  # the stream sent nothing for this window
QUALITY_OFF_SKIN = "off_skin"  # the sensor is not on the skin: its values are withheld


@dataclass(frozen=True)
class Features:
    """What one processor knows about one window ending at tick ``t``.

    ``values`` holds only valid numbers (a feature without enough data is absent, never NaN);
    ``quality`` maps a modality (``"eda"``, ``"hrv"``, ``"acc"`` ...) to ``"ok"`` or a reason.

    Example
    -------
    >>> Features(t=1700000060.0, values={"HRV_RMSSD": 42.0}, quality={"hrv": "ok"}).values
    {'HRV_RMSSD': 42.0}
    """

    t: float
    values: dict[str, float] = field(default_factory=dict)
    quality: dict[str, str] = field(default_factory=dict)


class Processor:
    """Base of the core's processors: state in ``self.state``, saved and restored by value.

    Subclasses set ``self.state`` in ``__init__`` (via ``reset()``) and never keep mutable
    data elsewhere.
    """

    state: Any

    def get_state(self, copy: bool = True) -> Any:
        """The processor's state (picklable), for checkpoints: a deep copy, or with
        ``copy=False`` the live objects themselves, for an owner that pickles them at once."""
        return _deepcopy(self.state) if copy else self.state

    def set_state(self, state: Any) -> None:
        """Resume from a state returned by ``get_state`` of a processor with equal parameters."""
        self.state = copy.deepcopy(state)

    def state_nbytes(self) -> int:
        """Size of the pickled state in bytes (what a checkpoint of this processor costs)."""
        return len(pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL))


@dataclass
class CausalSOSState:
    zi: np.ndarray | None = None  # (n_sections, 2) filter memory, None before the first sample


class CausalSOS(Processor):
    """A causal IIR filter (second-order sections) with carried state.

    The memory is seeded from ``sosfilt_zi`` times the first sample so a signal that starts
    far from zero (skin conductance at 5 µS, a PPG offset) does not ring at the start.

    Example
    -------
    >>> f = CausalSOS.butter(2, 1.0, "lowpass", sampling_rate=4.0)
    >>> y = np.concatenate([f.update(np.full(3, 5.0)), f.update(np.full(5, 5.0))])
    >>> bool(np.allclose(y, 5.0))
    True
    """

    def __init__(self, sos: np.ndarray):
        # a private writable copy: scipy's kernel takes no read-only array
        self.sos = np.array(sos, dtype=float)
        self.reset()

    @classmethod
    def butter(cls, order: int, cutoff_hz, btype: str, sampling_rate: float) -> "CausalSOS":
        """A Butterworth filter; ``cutoff_hz`` is clipped below Nyquist so it works at 4 Hz."""
        nyquist = sampling_rate / 2.0
        cut = np.atleast_1d(np.asarray(cutoff_hz, dtype=float))
        cut = np.minimum(cut, 0.9 * nyquist)
        return cls(butter_sos(order, tuple(cut.tolist()), btype, float(sampling_rate)))

    def reset(self) -> None:
        self.state = CausalSOSState()

    def update(self, x: np.ndarray) -> np.ndarray:
        """Filter the next samples; returns as many samples as it was given."""
        x = np.asarray(x, dtype=float)
        if x.size == 0:
            return x.copy()
        st = self.state
        if st.zi is None:
            st.zi = _sosfilt_zi_cached(self.sos.tobytes()) * x[0]  # sosfilt_zi(sos) * x[0]
        if _sosfilt_kernel is None:
            y, st.zi = sps.sosfilt(self.sos, x, zi=st.zi)
            return y
        # scipy's own kernel without sosfilt's argument checks: same arithmetic, 10x less overhead
        y = np.array(x, dtype=float, order="C")
        zi = st.zi
        if not (zi.dtype == np.float64 and zi.flags.c_contiguous and zi.flags.writeable):
            zi = st.zi = np.array(zi, dtype=float, order="C")
        _sosfilt_kernel(self.sos, y[None, :], zi[None, :, :])
        return y


@dataclass
class SampleClockState:
    t_first: float | None = None  # time of sample 0 of the current segment, unix s
    n_seen: int = 0  # samples accepted in the current segment
    segment: int = 0  # increments at every gap (processors reset their filters then)
    lag: float = 0.0  # the last batch's t0 minus its counted time, after re-anchoring (samples)
    n_last: int = 0  # samples of the last batch (the span over which the device may drift)

    def span_s(self, fs: float) -> tuple[float, float] | None:
        """Times (unix s) of the first and the last sample of the current segment, at ``fs`` Hz.

        >>> SampleClockState(t_first=100.0, n_seen=9).span_s(4.0)
        (100.0, 102.0)
        """
        return None if self.t_first is None or not self.n_seen else (self.t_first, self.t_first + (self.n_seen - 1) / fs)


class Alignment:
    """Where a batch of a regular stream lands on the stream's own sample grid.

    ``times_s``: event time of each accepted sample; ``n``: how many were accepted; ``skip``:
    leading samples of the batch dropped (they overlap what was already seen); ``gap``: the
    batch starts a new segment after a gap. ``time(i)`` is ``times_s[i]`` without the array.

    (A plain class with slots rather than a frozen dataclass, and ``times_s`` computed only
    when asked for: one is made per batch and processor, and several processors need no
    more than a time or two.)
    """

    __slots__ = ("n", "skip", "gap", "_t_first", "_n0", "_fs", "_times")

    def __init__(self, t_first: float, n0: int, n: int, fs: float, skip: int, gap: bool):
        self.n, self.skip, self.gap = n, skip, gap
        self._t_first, self._n0, self._fs = t_first, n0, fs  # times: t_first + (n0 + i) / fs
        self._times = None

    @property
    def times_s(self) -> np.ndarray:
        if self._times is None:
            # t_first + (n0 + arange(n)) / fs, in place (integers are exact in float64)
            times = np.arange(self._n0, self._n0 + self.n, dtype=float)
            times /= self._fs
            times += self._t_first
            self._times = times
        return self._times

    def time(self, i: int) -> float:
        """``times_s[i]`` (0 <= i < n), computed alone with the same arithmetic."""
        return self._t_first + (self._n0 + i) / self._fs

    def __repr__(self) -> str:
        return f"Alignment(times_s={self.times_s!r}, skip={self.skip!r}, gap={self.gap!r})"


class SampleClock(Processor):
    """Event time of a regular stream from sample counting, robust to batch timing jitter and to
    a device clock that drifts from its declared rate.

    Sample ``n`` of a segment is at ``t_first + n / fs``. Each batch's ``t0`` is compared with
    its counted time; the difference (the *lag*) is judged against the previous batch's, so
    that what a drifting clock adds slowly is not taken for missing or repeated samples:

    * a lag that grew by more than ``tolerance_samples`` plus the drift allowance starts a new
      segment (a gap: processors restart their filters);
    * one that shrank by as much drops the batch's leading samples (they overlap what was
      already seen);
    * otherwise the batch continues the segment (so chunking never changes timestamps). When
      the lag itself leaves +-``tolerance_samples`` (the clock drifted), the counted times are
      moved to the batch's ``t0``: forward in one step, backward by at most half a sample per
      batch so times keep increasing (a clock that gains more than half a sample per batch
      still loses the samples its time stamps say overlap).

    The drift allowance is ``max_drift_ppm`` of the previous batch's samples. 2000 ppm (0.2 %)
    covers quartz (tens of ppm), calibrated RC oscillators (hundreds) and declared rates that
    are rounded: the Polar H10 declares 130 Hz and samples ~130.16 Hz (1240 ppm, in
    ``../shared/data/polar-h10``). Its price: a hole shorter than 1.5 samples plus 0.2 % of
    the batch before it (2 ms after a 1 s batch) is bridged, not reported (the samples after
    it still get their own times). The tolerance is also what lets device clocks that correct
    themselves by a sample or so continue a stream, and a batch that re-sends only the last
    sample already seen (a new ``seq``: a repeated one is dropped before this) is taken as the
    next sample.

    Example
    -------
    >>> c = SampleClock(4.0)
    >>> c.align(100.0, 2).times_s.tolist(), c.align(100.5, 2).times_s.tolist()
    ([100.0, 100.25], [100.5, 100.75])
    """

    def __init__(self, sampling_rate: float, tolerance_samples: float = 1.5,
                 max_drift_ppm: float = 2000.0):
        self.sampling_rate = float(sampling_rate)
        self.tolerance_samples = tolerance_samples
        self.max_drift_ppm = float(max_drift_ppm)
        self.state = SampleClockState()

    def align(self, t0: float, n: int) -> Alignment:
        s = self.state
        fs = self.sampling_rate
        tol = self.tolerance_samples
        gap = False
        skip = 0
        if s.t_first is None:
            s.t_first, s.n_seen, s.lag = float(t0), 0, 0.0
        else:
            lag = (t0 - (s.t_first + s.n_seen / fs)) * fs  # (t0 - next_t) in samples
            change = lag - s.lag  # what the clock's drift since the last batch does not explain
            allowed = tol + self.max_drift_ppm * 1e-6 * s.n_last
            if change > allowed:
                s.t_first, s.n_seen, s.segment, gap = float(t0), 0, s.segment + 1, True
                lag = 0.0
            elif change < -allowed:  # samples sent again: the device's offset is as before
                overlap = int(round(-change))
                skip = min(n, overlap)
                lag += overlap
            else:  # drift: more than half a sample back would make times go backwards
                skip = min(n, max(0, math.ceil(-lag - 0.5 - tol)))
                lag += skip  # (of the first sample kept)
            if abs(lag) > tol:  # re-anchor the counted times on the device's clock
                shift = max(lag, -0.5)
                s.t_first += shift / fs
                lag -= shift
            s.lag = lag
        kept = n - skip
        s.n_last = kept
        n_seen = s.n_seen
        s.n_seen = n_seen + kept
        return Alignment(s.t_first, n_seen, kept, fs, skip, gap)


@dataclass
class TickGridState:
    next_k: int | None = None  # index of the next tick (tick time = k * step_s)


class TickGrid(Processor):
    """Event-time ticks at whole multiples of ``step_s``; each tick is handed out once.

    ``due(watermark)`` returns the ticks up to the time before which the caller's output is
    final. Ticks are absolute (``k * step_s``), so every processor and every chunking agrees.

    Example
    -------
    >>> g = TickGrid(5.0)
    >>> g.due(12.0), g.due(14.9), g.due(20.0)
    ([10.0], [], [15.0, 20.0])
    """

    def __init__(self, step_s: float):
        self.step_s = float(step_s)
        self.state = TickGridState()

    def due(self, watermark_s: float) -> list[float]:
        s = self.state
        if s.next_k is None:
            s.next_k = math.floor(watermark_s / self.step_s)
        ticks = []
        while s.next_k * self.step_s <= watermark_s:
            ticks.append(s.next_k * self.step_s)
            s.next_k += 1
        return ticks

    def skip_to(self, t_s: float) -> None:
        """Jump over ticks before ``t_s`` (after a long gap nothing is emitted for empty time)."""
        s = self.state
        first_k = math.ceil(t_s / self.step_s)
        if s.next_k is None or first_k > s.next_k:
            s.next_k = first_k


@dataclass
class RingState:
    t: np.ndarray
    x: np.ndarray
    n: int = 0  # samples ever written (the write position is n % capacity)


class TimeRing(Processor):
    """The last ``capacity`` samples of a stream with their times, for windowed features.

    Example
    -------
    >>> r = TimeRing(4)
    >>> r.extend(np.arange(6.0), np.arange(6.0) * 10)
    >>> r.window(2.5, 5.0)[1].tolist()
    [30.0, 40.0, 50.0]
    """

    def __init__(self, capacity: int, axes: int = 1):
        self.capacity = int(capacity)
        shape = (self.capacity,) if axes == 1 else (self.capacity, axes)
        self.state = RingState(t=np.full(self.capacity, np.nan), x=np.zeros(shape))

    def extend(self, t: np.ndarray, x: np.ndarray) -> None:
        s, cap = self.state, self.capacity
        if len(t) > cap:
            t, x = t[-cap:], x[-cap:]
        k = len(t)
        i = s.n % cap
        # slices instead of the indices (s.n + arange(k)) % cap: the same writes
        if i + k <= cap:
            s.t[i:i + k] = t
            s.x[i:i + k] = x
        else:
            j = cap - i
            s.t[i:], s.t[:k - j] = t[:j], t[j:]
            s.x[i:], s.x[:k - j] = x[:j], x[j:]
        s.n += k

    def append(self, t: float, x) -> None:
        """``extend`` by one sample, without the arrays."""
        s = self.state
        i = s.n % self.capacity
        s.t[i], s.x[i] = t, x
        s.n += 1

    def window(self, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Samples with ``start_s < t <= end_s``, oldest first."""
        s, cap = self.state, self.capacity
        if s.n >= cap:  # oldest first: the samples from the write position on, then the rest
            i = s.n % cap
            t = np.concatenate((s.t[i:], s.t[:i])) if i else s.t
            x = np.concatenate((s.x[i:], s.x[:i])) if i else s.x
        else:
            t, x = s.t[:s.n], s.x[:s.n]
        keep = (t > start_s) & (t <= end_s)
        return t[keep], x[keep]


EPOCH_S = 1.0  # the core's epochs (motion) and bins (windowed samples) end at whole multiples of this


def bin_end_s(t_s: float) -> float:
    """The end of the bin of a sample at ``t_s`` (unix s): the whole multiple of ``EPOCH_S`` at
    or after it.

    >>> bin_end_s(9.25), bin_end_s(10.0)
    (10.0, 10.0)
    """
    return math.ceil(t_s / EPOCH_S) * EPOCH_S


@dataclass
class WindowedSamplesState:
    clock: SampleClock
    ticks: TickGrid
    bins: TimeRing  # closed bins: end (unix s) and row ``[samples, *summary]`` of each
    open_t: np.ndarray  # times (unix s) of the samples of the bin still open
    open_x: np.ndarray  # and their values


class WindowedSamples(Processor):
    """A regular stream kept as bins of at most ``EPOCH_S`` (1 s), and a features row per tick
    from the bins of its window.

    A bin holds the samples after one edge up to and including the next; the edges are the
    whole multiples of ``EPOCH_S`` and the ticks (absolute times: every chunking and restart
    cuts the same bins). The state is a window of bins and the open bin's samples, whatever the
    sampling rate. Subclasses set ``summary_width``, ``_summary(t_rel_s, x)`` (a bin's numbers
    from its samples: times in s from the bin's end, and values) and ``_features(tick_s)``,
    which reads ``self._window(tick_s)``: the bins ending in ``(tick_s - window_s, tick_s]``.
    They hold exactly the window's samples when ``tick_s - window_s`` is an edge (``window_s``
    a whole number of ticks, or both whole seconds, as the default 60 s and 5 s); otherwise
    the window starts at the edge before it, less than ``EPOCH_S`` early.
    ``update(t0_s, values)`` takes samples from ``t0_s`` (unix s) at ``sampling_rate`` and
    returns the ticks now complete, whatever the batching.
    """

    summary_width: int  # numbers ``_summary`` returns

    def __init__(self, sampling_rate: float, tick_s: float = 5.0, window_s: float = 60.0):
        self.sampling_rate = float(sampling_rate)
        self.tick_s = tick_s
        self.window_s = window_s
        self.reset()

    def reset(self) -> None:
        n_bins = math.ceil(self.window_s / EPOCH_S) + 2
        if self.tick_s % EPOCH_S:  # ticks between whole seconds cut more bins
            n_bins += math.ceil(self.window_s / self.tick_s)
        self.state = WindowedSamplesState(clock=SampleClock(self.sampling_rate), ticks=TickGrid(self.tick_s),
                                          bins=TimeRing(n_bins, axes=1 + self.summary_width),
                                          open_t=np.empty(0), open_x=np.empty(0))

    def __setstate__(self, saved: dict) -> None:
        self.__dict__.update(saved)
        old = vars(self.state)
        if "ring" in old:  # a checkpoint from before the bins kept the window's samples: bin them
            self.reset()
            self.state.clock, self.state.ticks = old["clock"], old["ticks"]
            self._collect(*old["ring"].window(-math.inf, math.inf))

    def update(self, t0_s: float, values: np.ndarray) -> list[Features]:
        s = self.state
        a = s.clock.align(t0_s, len(values))
        x = np.asarray(values, dtype=float)
        if a.skip:
            x = x[a.skip:]
        if not len(x):  # (an empty batch, or one the clock skipped whole)
            return []
        if a.gap or s.ticks.state.next_k is None:  # ticks start at the first sample, whatever the batch
            s.ticks.skip_to(a.times_s[0])
        times, out = a.times_s, []
        for tick in s.ticks.due(times[-1]):  # every sample up to the tick is here: its bin closes
            k = int(times.searchsorted(tick, side="right"))
            self._collect(times[:k], x[:k])
            if len(s.open_t):
                self._close(min(bin_end_s(s.open_t[0]), tick), s.open_t, s.open_x)
                s.open_t, s.open_x = np.empty(0), np.empty(0)
            times, x = times[k:], x[k:]
            out.append(self._features(tick))
        self._collect(times, x)
        return out

    def _collect(self, times: np.ndarray, x: np.ndarray) -> None:
        """Add samples to the open bin, closing each bin a later sample has passed the end of."""
        s = self.state
        if not len(times):
            return
        if len(s.open_t):
            times, x = np.concatenate((s.open_t, times)), np.concatenate((s.open_x, x))
        end_s = bin_end_s(times[0])
        while times[-1] > end_s:
            k = int(times.searchsorted(end_s, side="right"))
            self._close(end_s, times[:k], x[:k])
            times, x = times[k:], x[k:]
            end_s = bin_end_s(times[0])
        s.open_t, s.open_x = times.copy(), x.copy()  # (not views of a batch the caller owns)

    def _close(self, end_s: float, times: np.ndarray, x: np.ndarray) -> None:
        """Summarise a bin's samples as a bin ending at ``end_s`` (unix s)."""
        self.state.bins.append(end_s, (len(x), *self._summary(times - end_s, x)))

    def _window(self, tick_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The bins ending in ``(tick_s - window_s, tick_s]``: their ends (unix s) and rows
        ``[samples, *summary]``, oldest first."""
        return self.state.bins.window(tick_s - self.window_s, tick_s)

    def _summary(self, t_rel_s: np.ndarray, x: np.ndarray) -> tuple[float, ...]:
        raise NotImplementedError

    def _features(self, tick_s: float) -> Features:
        raise NotImplementedError
