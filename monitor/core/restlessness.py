"""Restlessness from the wrist accelerometer: small, irregular movement per window.

Anxiety shows in the body as restlessness: fidgeting, tapping, shifting in the chair. Walking,
running and other rhythmic activity also move the wrist, more strongly, but they are exercise,
not restlessness (``AccProcessor``'s ``ACC_Moving`` gates the score for them). So each
one-second epoch is classified from two numbers:

* **energy**: the SD of the acceleration magnitude in the epoch (g; independent of how the
  device is worn and of gravity, as ``ACC_Activity``);
* **periodicity**: the highest normalised autocorrelation of the magnitude over the last
  ``analysis_s`` (5 s) at lags of ``lag_range_s`` (0.25-1.25 s: a step at 0.8-4 steps/s or an arm
  swing). Walking scores 0.9 and more, fidgeting and gestures 0.1-0.3, and noise about 0.2.

An epoch is **restless** when ``min_sd_g <= energy < max_sd_g`` (0.02-0.2 g: above the
sensor's noise and quantisation at rest, below walking's 0.2-0.5 g) and its periodicity is below
``max_periodicity`` (0.5). ``ACC_Restlessness`` is the share (0-1) of the window's epochs that
are restless: 0 for someone sitting still or walking, about 0.3-0.6 for steady fidgeting.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from monitor.core.base import (
    QUALITY_INSUFFICIENT,
    QUALITY_OK,
    Features,
    Processor,
    SampleClock,
    SampleClockState,
    TickGrid,
    TickGridState,
    read_only,
    row_norms,
    std_of,
)
from monitor.core.motion import EPOCH_S, aligned_epoch_runs, epoch_runs


@functools.lru_cache(maxsize=256)
def _lag_indices(n: int, min_lag: int, max_lag: int) -> tuple[int, np.ndarray, np.ndarray]:
    """FFT size and the indices ``periodicity`` needs for ``n`` samples (cached, read-only)."""
    lags = np.arange(min_lag, max_lag + 1)
    return 1 << int(2 * n - 1).bit_length(), read_only(n - 1 - lags), read_only(lags - 1)


def periodicity(x: np.ndarray, min_lag: int, max_lag: int) -> float:
    """Highest normalised autocorrelation of ``x`` (mean removed) at lags ``min_lag..max_lag``.

    At lag ``k`` it is ``sum(a * b) / sqrt(sum(a * a) * sum(b * b))`` with ``a = x[:-k]`` and
    ``b = x[k:]`` (a Pearson-like correlation of the overlapping parts), so a signal that repeats
    every ``k`` samples scores 1 whatever its amplitude. NaN when ``x`` is too short or flat.

    Example
    -------
    >>> t = np.arange(160) / 32.0
    >>> round(periodicity(np.sin(2 * np.pi * 2.0 * t), 8, 40), 2)  # 2 steps/s
    1.0
    """
    n = len(x)
    if n < 2 * max_lag:
        return math.nan
    x = x - np.add.reduce(x) / n  # (x.sum(), without the method's overhead)
    size, i_head, i_tail = _lag_indices(n, min_lag, max_lag)
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, size)[min_lag:max_lag + 1]
    energy = (x * x).cumsum()
    head = energy[i_head]  # sum of x[:-k] ** 2 for each lag k
    tail = energy[-1] - energy[i_tail]  # sum of x[k:] ** 2
    denom = np.sqrt(head * tail)
    if not np.minimum.reduce(denom) > 0.0:
        return math.nan
    return float(np.maximum.reduce(acf / denom))  # np.max


@dataclass
class RestlessnessState:
    clock: SampleClockState = field(default_factory=SampleClockState)
    ticks: TickGridState = field(default_factory=TickGridState)
    open_epoch: int | None = None  # second (unix, floor) whose samples are being collected
    open_n: int = 0  # samples of the open epoch (they are the last open_n of ``tail``)
    tail: np.ndarray = field(default_factory=lambda: np.empty(0))  # last magnitudes (g)
    epochs_t: np.ndarray | None = None  # ring: start of each closed epoch (unix s)
    epochs_restless: np.ndarray | None = None  # ring: 1.0 restless, 0.0 not
    n_epochs: int = 0


class RestlessnessProcessor(Processor):
    """``ACC_Restlessness`` (0-1, share of restless epochs) over ``window_s`` at every tick.

    See the module docstring for the method. ``quality["restlessness"]`` is ``"ok"`` when at
    least ``min_coverage`` of the window's epochs were measured, else ``"insufficient"`` (and
    no value).

    Parameters
    ----------
    sampling_rate : float
        Accelerometer rate (Hz), e.g. 32 for the Empatica E4.
    tick_s, window_s : float
        Tick spacing and window length (s).
    min_sd_g, max_sd_g : float
        Epoch energy band of restless movement (SD of the magnitude, g).
    max_periodicity : float
        Epochs with a more periodic recent movement are rhythmic activity, not restlessness.
    analysis_s : float
        Length of the movement the periodicity is measured on (s).
    lag_range_s : tuple of float
        Lags searched for a rhythm (s).
    min_coverage : float
        Share of the window's epochs needed for a value.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> still = np.array([0.0, 0.0, 1.0]) + 0.004 * rng.standard_normal((32 * 90, 3))
    >>> f = RestlessnessProcessor(32.0).update(1_700_000_000.0, still)[-1]
    >>> f.values, f.quality
    ({'ACC_Restlessness': 0.0}, {'restlessness': 'ok'})
    """

    # every key its Features' values can hold (a column each in analyze's indicators.csv)
    INDICATOR_KEYS = ("ACC_Restlessness",)

    def __init__(self, sampling_rate: float, tick_s: float = 5.0, window_s: float = 60.0,
                 min_sd_g: float = 0.02, max_sd_g: float = 0.2, max_periodicity: float = 0.5,
                 analysis_s: float = 5.0, lag_range_s: tuple[float, float] = (0.25, 1.25),
                 min_coverage: float = 0.8):
        self.sampling_rate = float(sampling_rate)
        self.tick_s = float(tick_s)
        self.window_s = float(window_s)
        self.min_sd_g = float(min_sd_g)
        self.max_sd_g = float(max_sd_g)
        self.max_periodicity = float(max_periodicity)
        self.n_analysis = max(2, int(round(analysis_s * self.sampling_rate)))
        self.min_lag = max(1, int(round(lag_range_s[0] * self.sampling_rate)))
        self.max_lag = max(self.min_lag, int(round(lag_range_s[1] * self.sampling_rate)))
        self.min_coverage = float(min_coverage)
        self.n_ring = int(math.ceil(self.window_s / EPOCH_S)) + 2
        self._clock = SampleClock(self.sampling_rate)
        self._ticks = TickGrid(self.tick_s)
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self.state = RestlessnessState(epochs_t=np.full(self.n_ring, np.nan),
                                       epochs_restless=np.zeros(self.n_ring))

    def update(self, t0_s: float, acc_g: np.ndarray) -> list[Features]:
        """Take the next samples (first at ``t0_s``, unix s); ``acc_g`` has shape (n, 3), in g.

        Returns the ``Features`` of the ticks now final (a tick is final once the epoch after it
        has started).
        """
        s = self.state
        self._clock.state, self._ticks.state = s.clock, s.ticks
        acc_g = np.asarray(acc_g, dtype=float).reshape(-1, 3)
        a = self._clock.align(t0_s, len(acc_g))
        if not a.n:
            return []
        out = []
        if a.gap:  # finish what came before; its rhythm says nothing about what follows
            out += self.flush()
            s.open_epoch, s.open_n, s.tail = None, 0, np.empty(0)
        if a.gap or s.ticks.next_k is None:  # ticks start at the first sample (as AccProcessor)
            self._ticks.skip_to(a.time(0))
        magnitude = row_norms(acc_g[a.skip:] if a.skip else acc_g)
        if math.isfinite(np.add.reduce(magnitude)):
            runs = aligned_epoch_runs(a, self.sampling_rate)
        else:  # a dropped sample: not part of any epoch
            keep = np.isfinite(magnitude)
            magnitude, times = magnitude[keep], a.times_s[keep]
            if not len(times):
                return out
            runs = epoch_runs(times)
        keep_n = self.n_analysis + int(math.ceil(self.sampling_rate * EPOCH_S)) + 1
        # the tail and this batch, once: an epoch closing within the batch reads what came
        # before its first sample (the last keep_n magnitudes then, as a tail cut per epoch)
        ext = np.concatenate((s.tail, magnitude))
        n_old = len(s.tail)
        for e, i0, i1 in runs:
            if s.open_epoch != e:  # a new epoch: the previous one is complete
                end = n_old + i0
                s.tail = ext[max(0, end - keep_n):end]
                self._close_epoch()
                s.open_epoch, s.open_n = e, 0
                out += [self._features(t) for t in self._ticks.due(e * EPOCH_S)]
            s.open_n += i1 - i0
        s.tail = ext[-keep_n:]
        return out

    def flush(self) -> list[Features]:
        """End of the stream: close the last epoch and emit the ticks up to its end."""
        s = self.state
        if s.open_epoch is None:
            return []
        end_s = (s.open_epoch + 1) * EPOCH_S
        self._ticks.state = s.ticks
        self._close_epoch()
        return [self._features(t) for t in self._ticks.due(end_s)]

    def _close_epoch(self) -> None:
        """Classify the open epoch (its samples are the last ``open_n`` of the tail)."""
        s = self.state
        if s.open_epoch is None or s.open_n < 0.5 * self.sampling_rate * EPOCH_S:
            s.open_epoch, s.open_n = None, 0
            return
        samples = s.tail[-s.open_n:]
        sd = std_of(samples)  # np.std's arithmetic
        restless = 0.0
        if self.min_sd_g <= sd < self.max_sd_g:
            p = periodicity(s.tail[-self.n_analysis:], self.min_lag, self.max_lag)
            restless = float(p < self.max_periodicity)  # NaN (too little history): not counted
        i = s.n_epochs % self.n_ring
        s.epochs_t[i] = s.open_epoch * EPOCH_S
        s.epochs_restless[i] = restless
        s.n_epochs += 1
        s.open_epoch, s.open_n = None, 0

    def _features(self, tick_s: float) -> Features:
        s = self.state
        keep = (s.epochs_t >= tick_s - self.window_s) & (s.epochs_t < tick_s)
        n = int(np.count_nonzero(keep))
        if n < self.min_coverage * self.window_s / EPOCH_S:
            return Features(tick_s, {}, {"restlessness": QUALITY_INSUFFICIENT})
        share = float(np.add.reduce(s.epochs_restless[keep])) / n
        return Features(tick_s, {"ACC_Restlessness": share}, {"restlessness": QUALITY_OK})
