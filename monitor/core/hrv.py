"""Heart rate and time-domain heart rate variability over sliding windows, at ticks.

``HrvProcessor`` takes the corrected intervals of ``BeatCorrector`` (``IntervalBatch``) and at
every tick ``T`` (multiples of ``tick_s``, up to the watermark) summarises the intervals ending in
``(T - window_s, T]``, with NeuroKit's names and formulas (``nk.hrv_time``):

* ``HR_Mean`` (bpm) = 60000 / ``HRV_MeanNN``;
* ``HRV_MeanNN``, ``HRV_SDNN`` (ms, ``ddof=1``) over the valid intervals;
* ``HRV_RMSSD`` (ms) and ``HRV_pNN50`` (%, NN50 / (pairs + 1) as NeuroKit) over successive
  differences of valid intervals that directly follow each other (``consecutive``);
* ``HRV_Artifacts_Pct`` (%): share of the window's intervals the corrector flagged.

Emission rule (a value is absent, never NaN, when its rule fails):

* ``HR_Mean``, ``HRV_MeanNN``: at least ``min_beats`` valid intervals covering at least
  ``min_coverage`` of the window;
* ``HRV_SDNN``, ``HRV_RMSSD``, ``HRV_pNN50``: the same, plus ``min_pairs`` successive
  differences, at most ``max_artifact_share`` corrected intervals and at most
  ``max_irregular_share`` successive differences above 20 % of the interval (Malik's
  criterion): variability of a rhythm full of (even corrected) ectopic beats is not HRV.

``quality["hrv"]`` is ``"ok"`` when everything was emitted, else the first failed reason:
``"missing"`` (no interval in the window), ``"insufficient"``, ``"artifacts"``, ``"irregular"``.
A tick is emitted only when an interval ends within ``window_s + tick_s`` before it (so one
``"missing"`` tick follows the end of the data, then nothing until beats come back), or, for
beats detected in a waveform, while its samples come (``live_s``).

``HrProcessor`` does the same for devices that only send heart rate (wire signal ``hr``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from monitor.core.base import (
    QUALITY_INSUFFICIENT,
    QUALITY_MISSING,
    QUALITY_OK,
    Features,
    Processor,
    mean_of,
    std_of,
)
from monitor.core.beats import FLAG_OK, IntervalBatch
from monitor.wire import SIGNALS

QUALITY_ARTIFACTS = "artifacts"  # too many corrected beats for variability measures
QUALITY_IRREGULAR = "irregular"  # too many large beat-to-beat jumps (e.g. frequent ectopy)
HR_RANGE_BPM = (SIGNALS["hr"].low, SIGNALS["hr"].high)  # the wire contract's: outside, not a heart rate


def _due_ticks(next_k: int | None, watermark_s: float, step_s: float, t_data: np.ndarray,
               reach_s: float, live_s: tuple[float, float] | None = None) -> tuple[np.ndarray, int | None]:
    """Ticks up to ``watermark_s`` that have data ending within ``reach_s`` before them, or that
    lie within ``live_s`` (first and last time the source sent, when it sends more than the
    data: a waveform's samples for its beats).

    Returns the tick times to emit and the index of the next tick to consider. Ticks later than
    ``reach_s`` after the newest data (and after ``live_s``) are skipped without being
    enumerated (a long gap, or a final watermark of +inf at the end of a stream).
    """
    if next_k is None:
        if not len(t_data) and live_s is None:
            return np.empty(0), None
        next_k = math.ceil(min(t_data[0] if len(t_data) else math.inf,
                               math.inf if live_s is None else live_s[0]) / step_s)
    if not watermark_s >= next_k * step_s:  # also False for -inf and NaN
        return np.empty(0), next_k
    last_k = math.floor(watermark_s / step_s) if math.isfinite(watermark_s) else None
    reach_k = math.floor((t_data[-1] + reach_s) / step_s) if len(t_data) else next_k - 1
    if live_s is not None:
        reach_k = max(reach_k, math.floor(live_s[1] / step_s))
    upto = reach_k if last_k is None else min(last_k, reach_k)
    new_next = max(next_k, reach_k + 1) if last_k is None else last_k + 1
    if upto < next_k:
        return np.empty(0), new_next
    ticks = np.arange(next_k, upto + 1) * step_s
    if len(t_data):
        idx = t_data.searchsorted(ticks, side="right")
        newest = np.where(idx > 0, t_data[np.maximum(idx - 1, 0)], -np.inf)
        due = newest > ticks - reach_s
    else:
        due = np.zeros(len(ticks), bool)
    if live_s is not None:
        due |= (ticks >= live_s[0]) & (ticks <= live_s[1])
    return ticks[due], new_next


@dataclass
class HrvState:
    t: np.ndarray = field(default_factory=lambda: np.empty(0))
    ibi: np.ndarray = field(default_factory=lambda: np.empty(0))
    valid: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    cons: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    flags: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    next_k: int | None = None  # index of the next tick (tick time = k * tick_s)
    # IntervalBatches not yet appended to the arrays above: they are joined once per tick, in
    # one concatenation per array instead of one per update (a tuple: immutable default)
    inbox: tuple = ()


class HrvProcessor(Processor):
    """``HR_Mean`` and time-domain HRV over ``window_s`` at every tick (see module docstring).

    Parameters
    ----------
    tick_s, window_s : float
        Tick spacing and window length (s).
    min_beats : int, optional
        Valid intervals needed; default ``window_s / 3`` (20 per minute).
    min_coverage : float
        Share of the window the valid intervals must cover.
    min_pairs : int, optional
        Successive differences needed for RMSSD and pNN50; default ``min_beats // 2``.
    max_artifact_share, max_irregular_share : float
        Above these shares the variability features are withheld.

    Example
    -------
    >>> ibi = np.tile([800.0, 850.0], 60)  # ms
    >>> t = 1_700_000_000.0 + np.cumsum(ibi) / 1000.0
    >>> ok, n = np.ones(len(ibi), bool), len(ibi)
    >>> batch = IntervalBatch(t, ibi, ok, ok, np.zeros(n, np.int8), watermark_s=t[-1])
    >>> f = HrvProcessor().update(batch)[-1]
    >>> f.quality, round(f.values["HRV_RMSSD"], 1), round(f.values["HR_Mean"], 1)
    ({'hrv': 'ok'}, 50.0, 72.8)
    """

    # every key its Features' values can hold (a column each in analyze's indicators.csv)
    INDICATOR_KEYS = ("HR_Mean", "HRV_MeanNN", "HRV_SDNN", "HRV_RMSSD", "HRV_pNN50", "HRV_Artifacts_Pct")

    def __init__(self, tick_s: float = 5.0, window_s: float = 60.0, min_beats: int | None = None,
                 min_coverage: float = 0.5, min_pairs: int | None = None,
                 max_artifact_share: float = 0.2, max_irregular_share: float = 0.2):
        self.tick_s = float(tick_s)
        self.window_s = float(window_s)
        self.min_beats = int(round(window_s / 3.0)) if min_beats is None else int(min_beats)
        self.min_coverage = float(min_coverage)
        self.min_pairs = self.min_beats // 2 if min_pairs is None else int(min_pairs)
        self.max_artifact_share = float(max_artifact_share)
        self.max_irregular_share = float(max_irregular_share)
        self.reset()

    def reset(self) -> None:
        self.state = HrvState()

    def update(self, batch: IntervalBatch, live_s: tuple[float, float] | None = None) -> list[Features]:
        """Add the corrector's intervals; return ``Features`` for every tick now final.

        ``live_s``: the first and last sample time (unix s) of the waveform the beats come
        from, in its current run without a gap (``SampleClockState.span_s``): its ticks are
        emitted even without a beat (``"missing"``: a band on the desk or a dead sensor sends
        samples, and its wearer is told the signal is unclear, not that nothing came).
        """
        s = self.state
        if len(batch):
            s.inbox += (batch,)
        if s.next_k is not None and batch.watermark_s < s.next_k * self.tick_s:
            return []  # no tick due: nothing to compute
        if s.inbox:
            batches, s.inbox = s.inbox, ()
            s.t = np.concatenate([s.t] + [b.t_s for b in batches])
            s.ibi = np.concatenate([s.ibi] + [b.ibi_ms for b in batches])
            s.valid = np.concatenate([s.valid] + [b.valid for b in batches])
            s.cons = np.concatenate([s.cons] + [b.consecutive for b in batches])
            s.flags = np.concatenate([s.flags] + [b.flags for b in batches])
        ticks, s.next_k = _due_ticks(s.next_k, batch.watermark_s, self.tick_s, s.t,
                                     self.window_s + self.tick_s, live_s)
        out = [self._features(float(tick)) for tick in ticks]
        if s.next_k is not None:  # forget what no future window can hold
            keep = int(s.t.searchsorted(s.next_k * self.tick_s - self.window_s - self.tick_s))
            if keep:
                s.t, s.ibi, s.valid = s.t[keep:], s.ibi[keep:], s.valid[keep:]
                s.cons, s.flags = s.cons[keep:], s.flags[keep:]
        return out

    def _features(self, tick_s: float) -> Features:
        s = self.state
        # (mean_of/std_of: numpy's arithmetic without np.mean/np.std's overhead)
        lo = int(s.t.searchsorted(tick_s - self.window_s, side="right"))
        hi = int(s.t.searchsorted(tick_s, side="right"))
        if hi == lo:
            return Features(tick_s, {}, {"hrv": QUALITY_MISSING})
        ibi, valid = s.ibi[lo:hi], s.valid[lo:hi]
        values = {"HRV_Artifacts_Pct": 100.0 * mean_of(s.flags[lo:hi] != FLAG_OK)}
        nn = ibi[valid]
        if len(nn) < self.min_beats or np.add.reduce(nn) < self.min_coverage * self.window_s * 1000.0:
            return Features(tick_s, values, {"hrv": QUALITY_INSUFFICIENT})
        mean_nn = mean_of(nn)
        values["HRV_MeanNN"] = mean_nn
        values["HR_Mean"] = 60000.0 / mean_nn
        pair = valid[1:] & valid[:-1] & s.cons[lo + 1:hi]
        diff = (ibi[1:] - ibi[:-1])[pair]
        if len(diff) < self.min_pairs:
            return Features(tick_s, values, {"hrv": QUALITY_INSUFFICIENT})
        if values["HRV_Artifacts_Pct"] > 100.0 * self.max_artifact_share:
            return Features(tick_s, values, {"hrv": QUALITY_ARTIFACTS})
        jumps = np.abs(diff) > 0.2 * ibi[:-1][pair]
        if mean_of(jumps) > self.max_irregular_share:
            return Features(tick_s, values, {"hrv": QUALITY_IRREGULAR})
        values["HRV_SDNN"] = std_of(nn, ddof=1)
        values["HRV_RMSSD"] = math.sqrt(mean_of(diff * diff))
        values["HRV_pNN50"] = 100.0 * float(np.count_nonzero(np.abs(diff) > 50.0)) / (len(diff) + 1)
        return Features(tick_s, values, {"hrv": QUALITY_OK})


@dataclass
class HrState:
    t: np.ndarray = field(default_factory=lambda: np.empty(0))
    hr: np.ndarray = field(default_factory=lambda: np.empty(0))
    last_t: float = -math.inf
    watermark_s: float = -math.inf
    next_k: int | None = None


class HrProcessor(Processor):
    """``HR_Mean`` (bpm) per window from a heart-rate-only device (wire signal ``hr``).

    At each tick: the mean of the readings in ``(T - window_s, T]`` within 25-250 bpm (``HR_RANGE_BPM``), emitted
    when there are at least ``min_samples`` of them spanning at least ``min_coverage`` of the
    window; ``quality["hr"]`` is ``"ok"``, ``"insufficient"`` or ``"missing"``.

    Example
    -------
    >>> p = HrProcessor()
    >>> out = p.update(1_700_000_000.0 + np.arange(120.0), np.full(120, 72.0))
    >>> out[-1].values, out[-1].quality
    ({'HR_Mean': 72.0}, {'hr': 'ok'})
    """

    # every key its Features' values can hold (a column each in analyze's indicators.csv)
    INDICATOR_KEYS = ("HR_Mean",)

    def __init__(self, tick_s: float = 5.0, window_s: float = 60.0, min_samples: int = 10,
                 min_coverage: float = 0.5):
        self.tick_s = float(tick_s)
        self.window_s = float(window_s)
        self.min_samples = int(min_samples)
        self.min_coverage = float(min_coverage)
        self.reset()

    def reset(self) -> None:
        self.state = HrState()

    def update(self, t_s, hr_bpm, watermark_s: float | None = None) -> list[Features]:
        """Add readings (times unix s, increasing; bpm); return ``Features`` for due ticks.

        ``watermark_s``: no reading up to this time will arrive later (default: the last one).
        """
        s = self.state
        t = np.asarray(t_s, dtype=float)
        hr = np.asarray(hr_bpm, dtype=float)
        if t.shape != hr.shape:
            raise ValueError(f"t_s has {t.size} values but hr_bpm has {hr.size}")
        keep = (t > s.last_t) & np.isfinite(hr) & (hr >= HR_RANGE_BPM[0]) & (hr <= HR_RANGE_BPM[1])
        keep &= np.concatenate([[True], np.diff(t) > 0])  # increasing only
        t, hr = t[keep], hr[keep]
        if len(t):
            s.t, s.hr, s.last_t = np.concatenate([s.t, t]), np.concatenate([s.hr, hr]), t[-1]
        wm = watermark_s if watermark_s is not None else (float(t_s[-1]) if len(t_s) else -math.inf)
        s.watermark_s = max(s.watermark_s, wm)
        if s.next_k is not None and s.watermark_s < s.next_k * self.tick_s:
            return []
        ticks, s.next_k = _due_ticks(s.next_k, s.watermark_s, self.tick_s, s.t,
                                     self.window_s + self.tick_s)
        out = [self._features(float(tick)) for tick in ticks]
        if s.next_k is not None:
            cut = np.searchsorted(s.t, s.next_k * self.tick_s - self.window_s - self.tick_s)
            s.t, s.hr = s.t[cut:], s.hr[cut:]
        return out

    def _features(self, tick_s: float) -> Features:
        s = self.state
        lo, hi = np.searchsorted(s.t, [tick_s - self.window_s, tick_s], side="right")
        if hi == lo:
            return Features(tick_s, {}, {"hr": QUALITY_MISSING})
        t = s.t[lo:hi]
        if hi - lo < self.min_samples or t[-1] - t[0] < self.min_coverage * self.window_s:
            return Features(tick_s, {}, {"hr": QUALITY_INSUFFICIENT})
        return Features(tick_s, {"HR_Mean": float(np.mean(s.hr[lo:hi]))}, {"hr": QUALITY_OK})
