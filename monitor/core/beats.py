"""Beat streams and their artifact correction (ectopic, missed and extra beats), streaming.

Shared types:

* ``BeatBatch``: beat times from a detector (``monitor.core.ppg``) and its watermark.
* ``IntervalBatch``: corrected inter-beat intervals with a validity mask, a "consecutive" mask
  and a per-interval artifact flag; what ``monitor.core.hrv`` consumes.

``BeatCorrector`` is a causal adaptation of Lipponen & Tarvainen (2019), the ``"Kubios"`` method
of ``nk.signal_fixpeaks``. NeuroKit computes the thresholds over a window of 91 beats centred on
each beat and a median over 11 beats centred on it; here the windows trail: beat ``i`` is
classified once beats ``i+1 .. i+3`` are known (look-ahead of three beats), with thresholds from
the 91 most recent successive differences (``dRR``) and deviations from the median (``mRR``) and
the median of the 11 intervals ``i-7 .. i+3``. The classification rules are the paper's
(Figure 1, constants ``c1 = 0.13``, ``c2 = 0.17``, ``alpha = 5.2``), corrections are
NeuroKit's: an extra beat is deleted, a missed beat is inserted halfway, an ectopic or
long/short beat is moved halfway between its neighbours. The classification uses the raw
intervals (as NeuroKit's single pass does); corrections use the already corrected previous beat.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from monitor.core.base import Processor
from monitor.wire import SIGNALS

FLAG_OK, FLAG_ECTOPIC, FLAG_MISSED, FLAG_EXTRA, FLAG_LONGSHORT = 0, 1, 2, 3, 4
FLAG_NAMES = ("ok", "ectopic", "missed", "extra", "longshort")


@dataclass(frozen=True)
class BeatBatch:
    """Beat times a detector decided in one update.

    Attributes
    ----------
    times_s : ndarray
        Beat times (unix s), sorted.
    watermark_s : float
        Every beat up to this time (unix s) has been emitted; later beats may still come.
    gap : bool
        The stream restarted (a gap in the samples) before these beats: the first of them does
        not follow the previous beat directly.
    template_r : ndarray or None
        Per beat, how much its wave looks like the recent beats' (Pearson r with a running
        template; NaN when unknown); None from a detector without a shape check (ECG).

    Example
    -------
    >>> BeatBatch(np.array([10.0, 10.8]), watermark_s=11.0).times_s.tolist()
    [10.0, 10.8]
    """

    times_s: np.ndarray
    watermark_s: float
    gap: bool = False
    template_r: np.ndarray | None = None


@dataclass(frozen=True)
class IntervalBatch:
    """Corrected inter-beat intervals decided in one update.

    Attributes
    ----------
    t_s : ndarray
        Time of the beat ending each interval (unix s), sorted.
    ibi_ms : ndarray
        Interval lengths (ms).
    valid : ndarray of bool
        The interval is usable for HR/HRV (plausible and, if corrected, correctable).
    consecutive : ndarray of bool
        The interval starts at the beat that ended the previous interval of the output, so a
        successive difference with it is meaningful.
    flags : ndarray of int8
        Artifact class of the beat ending the interval: ``FLAG_OK``, ``FLAG_ECTOPIC`` /
        ``FLAG_LONGSHORT`` (beat moved halfway between its neighbours), ``FLAG_MISSED`` (beat
        inserted by the corrector), ``FLAG_EXTRA`` (the beat before it was deleted). Names in
        ``FLAG_NAMES``. One flagged interval per artifact.
    watermark_s : float
        Every interval ending up to this time (unix s) has been emitted.
    """

    t_s: np.ndarray
    ibi_ms: np.ndarray
    valid: np.ndarray
    consecutive: np.ndarray
    flags: np.ndarray
    watermark_s: float

    @classmethod
    def empty(cls, watermark_s: float) -> "IntervalBatch":
        z = np.empty(0)
        return cls(z, z.copy(), np.empty(0, bool), np.empty(0, bool), np.empty(0, np.int8),
                   watermark_s)

    def __len__(self) -> int:
        return len(self.t_s)


def _median(values: list) -> float:
    """Median of a short list (as ``np.median``, without its overhead)."""
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


class _SortedWindow:
    """The last ``size`` values in arrival order and sorted, for fast quantiles (state only)."""

    __slots__ = ("fifo", "sorted")

    def __init__(self):
        self.fifo: list[float] = []
        self.sorted: list[float] = []

    def __getstate__(self):
        return (self.fifo,)

    def __setstate__(self, st):
        self.fifo = list(st[0])
        self.sorted = sorted(self.fifo)

    def push(self, value: float, size: int) -> None:
        self.fifo.append(value)
        bisect.insort(self.sorted, value)
        if len(self.fifo) > size:
            old = self.fifo.pop(0)
            del self.sorted[bisect.bisect_left(self.sorted, old)]

    def quartile_deviation(self) -> float:
        """(Q3 - Q1) / 2 with linear interpolation (as numpy and pandas), NaN below 4 values."""
        v, n = self.sorted, len(self.sorted)
        if n < 4:
            return math.nan
        quartiles = []
        for p in (0.75, 0.25):  # (inline: a closure per call costs more than the arithmetic)
            pos = p * (n - 1)
            lo = int(pos)
            hi = min(lo + 1, n - 1)
            quartiles.append(v[lo] + (v[hi] - v[lo]) * (pos - lo))
        return (quartiles[0] - quartiles[1]) / 2.0


@dataclass
class _Raw:
    t: float  # time of the beat ending the interval, unix s
    rr: float  # ms
    cons: bool  # starts at the previous raw beat
    drr: float  # rr - previous rr (ms), NaN when not consecutive


@dataclass
class CorrectorState:
    mode: str | None = None  # "times" or "intervals", fixed by the first update
    last_t: float | None = None  # last raw beat time seen, unix s
    last_rr: float = math.nan  # last raw interval (ms), NaN after a break
    next_break: bool = True  # the next raw interval does not follow the previous one
    pending: list = field(default_factory=list)  # undecided raw intervals (_Raw)
    rr_tail: list = field(default_factory=list)  # last raw intervals already decided (ms)
    prev_drr_norm: float = 0.0  # normalised dRR of the last decided beat
    pre_flag: int = FLAG_OK  # class given to the next beat by the previous beat's check
    drr_win: _SortedWindow = field(default_factory=_SortedWindow)
    mrr_win: _SortedWindow = field(default_factory=_SortedWindow)
    out_prev_t: float | None = None  # last output beat (corrected), None when chain broken
    out_last_t: float = -math.inf  # time of the last output beat
    extra_next: bool = False  # the next output interval follows a deleted beat
    watermark_s: float = -math.inf  # input watermark


class BeatCorrector(Processor):
    """Causal artifact correction of beat times or device intervals (Lipponen & Tarvainen 2019).

    Feed either beat times (``update_times``, from a detector) or device intervals
    (``update_intervals``, wire signal ``ibi``), not both. Each returns the intervals decided
    so far as an ``IntervalBatch``.

    Parameters
    ----------
    lookahead : int
        Beats after beat ``i`` waited for before classifying it (1-3; the method needs 3).
    window_beats : int
        Trailing window of the thresholds (beats), NeuroKit's 91.
    median_beats : int
        Window of the median interval (beats), NeuroKit's 11.
    min_history : int
        Successive differences needed before the first decision; until then beats are held
        (at most ``2 * min_history``, never across a break), so the first thresholds are not
        noise.
    max_interval_ms : float
        A longer raw interval is a break in the beat chain (a gap or a lost signal), not a beat.
    ibi_range_ms : tuple of float
        Corrected intervals outside this range are marked invalid.
    consecutive_tol_s : float
        Device intervals: interval ``i`` follows interval ``i-1`` when
        ``|t_i - ibi_i - t_(i-1)| <= consecutive_tol_s``.
    min_threshold_ms : float
        Floor of both thresholds (ms), so perfectly regular or quantised intervals are not
        all flagged.

    Example
    -------
    >>> rr = np.full(60, 800.0); rr[30] = 400.0; rr[31] = 1200.0  # one premature beat
    >>> t = 1000.0 + np.cumsum(rr) / 1000.0
    >>> out = BeatCorrector().update_intervals(t, rr, watermark_s=t[-1] + 5.0)
    >>> [FLAG_NAMES[f] for f in out.flags[out.flags > 0]]  # as nk.signal_fixpeaks
    ['longshort', 'ectopic']
    >>> np.round(out.ibi_ms[28:33], 1).tolist()
    [800.0, 800.0, 800.0, 800.0, 800.0]
    """

    c1, c2, alpha = 0.13, 0.17, 5.2

    def __init__(self, lookahead: int = 3, window_beats: int = 91, median_beats: int = 11,
                 min_history: int = 16, max_interval_ms: float = 3000.0,
                 ibi_range_ms: tuple[float, float] = (SIGNALS["ibi"].low, SIGNALS["ibi"].high),
                 consecutive_tol_s: float = 0.05, min_threshold_ms: float = 20.0):
        if not 1 <= lookahead <= 3:
            raise ValueError(f"lookahead must be 1, 2 or 3 beats, got {lookahead}")
        self.lookahead = int(lookahead)
        self.window_beats = int(window_beats)
        self.median_beats = int(median_beats)
        self.median_before = self.median_beats - 1 - self.lookahead  # beats before i
        self.min_history = int(min_history)
        self.max_hold = 2 * self.min_history
        self.max_interval_ms = float(max_interval_ms)
        self.ibi_range_ms = ibi_range_ms
        self.consecutive_tol_s = float(consecutive_tol_s)
        self.min_threshold_ms = float(min_threshold_ms)
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self.state = CorrectorState()

    # ------------------------------------------------------------------ inputs
    def update_times(self, beats: BeatBatch) -> IntervalBatch:
        """Take beat times from a detector; return the corrected intervals now final.

        Example
        -------
        >>> c = BeatCorrector()
        >>> out = c.update_times(BeatBatch(1000.0 + 0.8 * np.arange(40), 1031.5))
        >>> round(float(out.ibi_ms[-1]), 1), bool(out.valid.all())
        (800.0, True)
        """
        s = self._mode("times")
        out = _Out()
        if beats.gap:
            s.next_break = True
        for t in np.asarray(beats.times_s, dtype=float).tolist():
            if s.last_t is not None and t <= s.last_t:
                continue  # duplicate or out of order: a beat is never revised
            rr = math.inf if s.last_t is None else (t - s.last_t) * 1000.0
            if s.next_break or rr > self.max_interval_ms:
                # First beat, or first after a gap: it starts a new chain and ends no interval.
                self._decide_all(out)
                s.last_t, s.last_rr, s.next_break = t, math.nan, False
                s.out_prev_t, s.out_last_t = t, t
                continue
            self._push(t, rr, True, out)
        s.watermark_s = max(s.watermark_s, float(beats.watermark_s))
        return self._finish(out)

    def update_intervals(self, t_s, ibi_ms, watermark_s: float | None = None) -> IntervalBatch:
        """Take device intervals (wire signal ``ibi``); return the corrected intervals now final.

        Parameters
        ----------
        t_s : array_like
            Time of the beat ending each interval (unix s), increasing.
        ibi_ms : array_like
            Interval lengths (ms). Intervals need not be consecutive (the E4 drops beats).
        watermark_s : float, optional
            No interval ending up to this time will arrive later; defaults to the last ``t_s``.
        """
        s = self._mode("intervals")
        out = _Out()
        t_arr = np.asarray(t_s, dtype=float).tolist()
        rr_arr = np.asarray(ibi_ms, dtype=float).tolist()
        if len(t_arr) != len(rr_arr):
            raise ValueError(f"t_s has {len(t_arr)} values but ibi_ms has {len(rr_arr)}")
        for t, rr in zip(t_arr, rr_arr):
            if not (rr > 0.0 and math.isfinite(rr) and math.isfinite(t)):
                continue
            if s.last_t is not None and t <= s.last_t:
                continue
            cons = (s.last_t is not None and not s.next_break
                    and abs(t - rr / 1000.0 - s.last_t) <= self.consecutive_tol_s
                    and rr <= self.max_interval_ms)
            self._push(t, rr, cons, out)
        wm = watermark_s if watermark_s is not None else (t_arr[-1] if t_arr else -math.inf)
        s.watermark_s = max(s.watermark_s, float(wm))
        return self._finish(out)

    def flush(self) -> IntervalBatch:
        """End of the stream: decide the beats still waiting for look-ahead (watermark +inf)."""
        s = self.state
        s.watermark_s = math.inf
        return self._finish(_Out())

    def _mode(self, mode: str) -> CorrectorState:
        s = self.state
        if s.mode is None:
            s.mode = mode
        elif s.mode != mode:
            raise ValueError(f"this BeatCorrector was fed {s.mode}; use one instance per input")
        return s

    # ------------------------------------------------------------------ core
    def _push(self, t: float, rr: float, cons: bool, out: "_Out") -> None:
        s = self.state
        if not cons and s.pending:
            self._decide_all(out)  # the chain ends: decide what waited for look-ahead
        drr = rr - s.last_rr if cons and math.isfinite(s.last_rr) else math.nan
        if rr > self.max_interval_ms:
            # A break, not a beat: emit it as it is, invalid, and restart the chain.
            self._emit(out, t, rr, False, False, FLAG_OK)
            s.out_prev_t, s.last_rr = t, math.nan
        else:
            if math.isfinite(drr):
                s.drr_win.push(abs(drr), self.window_beats)
            s.pending.append(_Raw(t, rr, cons, drr))
            s.last_rr = rr
        s.last_t, s.next_break = t, False
        self._decide_ready(out)

    def _decide_ready(self, out: "_Out") -> None:
        s = self.state
        while s.pending:
            warm = (len(s.drr_win.fifo) >= self.min_history
                    or len(s.pending) > self.max_hold)
            if not warm or len(s.pending) <= self.lookahead:
                return
            self._decide(out)

    def _decide_all(self, out: "_Out") -> None:
        while self.state.pending:
            self._decide(out)

    def _finish(self, out: "_Out") -> IntervalBatch:
        s = self.state
        last = s.last_t if s.last_t is not None else -math.inf
        chain_over = s.watermark_s >= last + self.max_interval_ms / 1000.0 + self.consecutive_tol_s
        if chain_over:
            # No beat can follow the last one directly any more: decide without waiting.
            self._decide_all(out)
            s.next_break = True
            wm = s.watermark_s
        else:
            wm = min(s.watermark_s, s.out_last_t)
        return out.batch(wm)

    def _decide(self, out: "_Out") -> None:
        """Classify and correct the oldest pending beat (index 0)."""
        s = self.state
        p = s.pending
        cur = p[0]
        # Look-ahead beats in the same unbroken chain.
        ahead = [cur]
        for r in p[1:self.lookahead + 1]:
            if not r.cons:
                break
            ahead.append(r)
        th1 = self._threshold(s.drr_win)
        rr_window = s.rr_tail[-self.median_before:] + [r.rr for r in p[:self.lookahead + 1]]
        medrr = _median(rr_window)
        mrr = cur.rr - medrr
        s.mrr_win.push(abs(2.0 * mrr if mrr < 0 else mrr), self.window_beats)
        th2 = self._threshold(s.mrr_win)

        def dnorm(k):  # normalised dRR of ahead[k], 0 when unknown
            if k >= len(ahead) or not math.isfinite(ahead[k].drr) or not math.isfinite(th1):
                return 0.0
            return ahead[k].drr / th1

        def mnorm(k):
            if k >= len(ahead) or not math.isfinite(th2):
                return 0.0
            m = ahead[k].rr - medrr
            return (2.0 * m if m < 0 else m) / th2

        d = [s.prev_drr_norm] + [dnorm(k) for k in range(4)]  # d[1] is beat i
        flag = self._classify(d, mnorm, ahead, medrr, th2)
        if flag == FLAG_OK and s.pre_flag != FLAG_OK and cur.cons:
            flag = s.pre_flag
        s.pre_flag = FLAG_OK
        if flag != FLAG_ECTOPIC:
            s.pre_flag = self._check_next(d, mnorm, ahead, medrr, th2)
        s.prev_drr_norm = d[1]
        s.rr_tail.append(cur.rr)
        del s.rr_tail[:-self.median_before or None]
        p.pop(0)
        self._correct(cur, flag, ahead, out)

    def _threshold(self, window: _SortedWindow) -> float:
        """alpha times the quartile deviation (ms), floored; NaN below 4 values."""
        qd = window.quartile_deviation()
        return math.nan if math.isnan(qd) else max(self.alpha * qd, self.min_threshold_ms)

    def _classify(self, d, mnorm, ahead, medrr, th2) -> int:
        """Lipponen & Tarvainen (2019), Figure 1, for beat i (``d[1]``)."""
        di = d[1]
        if abs(di) <= 1.0:
            return FLAG_OK
        s12 = max(d[0], d[2]) if di > 0 else min(d[0], d[2])
        ectopic_up = di > 1 and s12 < -self.c1 * di - self.c2  # long then short (eq. 1)
        ectopic_down = di < -1 and s12 > -self.c1 * di + self.c2  # short then long (eq. 2)
        if ectopic_up or ectopic_down:
            return FLAG_ECTOPIC
        return self._long_short(0, d, mnorm, ahead, medrr, th2)

    def _check_next(self, d, mnorm, ahead, medrr, th2) -> int:
        """The paper also examines beat i+1 when |dRR(i+1)| < |dRR(i+2)| (given |dRR(i)| > 1)."""
        if abs(d[1]) <= 1.0 or len(ahead) < 2 or not abs(d[2]) < abs(d[3]):
            return FLAG_OK
        return self._long_short(1, d, mnorm, ahead, medrr, th2)

    def _long_short(self, j, d, mnorm, ahead, medrr, th2) -> int:
        dj = d[j + 1]
        s22 = min(d[j + 2], d[j + 3]) if dj >= 0 else max(d[j + 2], d[j + 3])
        long_beat = dj > 1 and s22 < -1
        short_beat = dj < -1 and s22 > 1
        if not (long_beat or short_beat or abs(mnorm(j)) > 3):
            return FLAG_OK
        rr = ahead[j].rr
        if short_beat and j + 1 < len(ahead) and abs(rr + ahead[j + 1].rr - medrr) < th2:
            return FLAG_EXTRA
        if long_beat and abs(rr / 2.0 - medrr) < th2:
            return FLAG_MISSED
        return FLAG_LONGSHORT

    def _correct(self, cur: _Raw, flag: int, ahead: list, out: "_Out") -> None:
        s = self.state
        linked = cur.cons and s.out_prev_t is not None
        start = s.out_prev_t if linked else cur.t - cur.rr / 1000.0
        extra_before = s.extra_next
        s.extra_next = False
        if flag == FLAG_EXTRA and linked and len(ahead) > 1:
            s.extra_next = True  # delete this beat; the next interval spans both
            return
        own = FLAG_EXTRA if extra_before else FLAG_OK
        if flag == FLAG_MISSED and linked:
            mid = start + (cur.t - start) / 2.0
            self._emit(out, mid, (mid - start) * 1000.0, True, True, FLAG_MISSED)
            self._emit(out, cur.t, (cur.t - mid) * 1000.0, True, True, own)
        elif flag in (FLAG_ECTOPIC, FLAG_LONGSHORT) and linked and len(ahead) > 1:
            t_new = start + (ahead[1].t - start) / 2.0
            self._emit(out, t_new, (t_new - start) * 1000.0, True, True, flag)
        elif flag != FLAG_OK:
            # Cannot correct without both neighbours: keep the beat, mark the interval invalid.
            self._emit(out, cur.t, (cur.t - start) * 1000.0, linked, False, flag)
        else:
            self._emit(out, cur.t, (cur.t - start) * 1000.0, linked, True, own)

    def _emit(self, out: "_Out", t, ibi, cons, valid, flag) -> None:
        lo, hi = self.ibi_range_ms
        out.add(t, ibi, bool(valid and lo <= ibi <= hi), bool(cons), flag)
        self.state.out_prev_t = t
        self.state.out_last_t = t


class _Out:
    """Collects the intervals of one update."""

    __slots__ = ("t", "ibi", "valid", "cons", "flags")

    def __init__(self):
        self.t, self.ibi, self.valid, self.cons, self.flags = [], [], [], [], []

    def add(self, t, ibi, valid, cons, flag):
        self.t.append(t)
        self.ibi.append(ibi)
        self.valid.append(valid)
        self.cons.append(cons)
        self.flags.append(flag)

    def batch(self, watermark_s: float) -> IntervalBatch:
        if not self.t:
            return IntervalBatch.empty(watermark_s)
        return IntervalBatch(np.array(self.t), np.array(self.ibi), np.array(self.valid, bool),
                             np.array(self.cons, bool), np.array(self.flags, np.int8),
                             watermark_s)
