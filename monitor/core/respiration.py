"""Breathing rate (``RSP_Rate``, breaths/min) per window, streaming, from what a wearer sends.

Breathing shows in four kinds of streams, each a ``source`` of ``RespirationProcessor``:

* ``"rsp"``: a respiration belt or a device's breathing channel (wire signal ``rsp``), used
  directly;
* ``"ppg"``: the pulse (wire signal ``bvp``). Breathing modulates it in three ways (Karlen et
  al. 2013): the pulse amplitude (RIAV), the baseline (RIIV) and the beat intervals (RIFV, the
  respiratory sinus arrhythmia);
* ``"ecg"``: a chest strap. Breathing changes the R-wave amplitude (the heart's electrical axis
  turns with the chest) and the beat intervals (RSA);
* ``"ibi"``: beat intervals alone (a device that sends only ``ibi``): RSA only.

Method, the same for every source:

1. **One value per beat** (``ppg``, ``ecg``, ``ibi``) from the corrected intervals of
   ``BeatCorrector`` (only valid, uncorrected beats: an inserted or moved beat has no amplitude
   of its own) and, for ``ppg``/``ecg``, from the samples around each beat: pulse amplitude
   (highest band-passed sample from 0.1 s before the beat to 0.4 s after it, since the beat
   is timed on the pulse's upslope, minus the lowest over the beat), baseline (mean raw sample
   over the beat; a beat's samples run from the previous pulse's peak to this one's), R
   amplitude (peak-to-peak of the 0.5-40 Hz ECG within 0.08 s of the R peak), interval. The samples are kept as 0.05 s blocks (maximum,
   minimum, mean) until no beat still to come can need them (the beats lag the samples by the
   corrector's look-ahead, a few seconds), so the result does not depend on how the two
   streams interleave. ``rsp``: the belt low-passed at 1 Hz, a value per sample (per
   ``fs // 8`` samples above 16 Hz).
2. **A 4 Hz series per modulation**: values interpolated linearly between beats on an absolute
   grid (``k / 4`` s); a pause longer than ``max_gap_s`` (3 s) breaks the series.
3. **Causal band-pass** (Butterworth order 2, carried state) of each series: 0.15-0.7 Hz
   (9-42 breaths/min) for the modulations, 0.07-1 Hz for a belt. The low corner of the
   modulations sits above the 0.1 Hz Mayer waves of blood pressure, which dominate the pulse's
   slow variations at rest; slower breathing is still counted when it dominates the series
   (tested at 6 breaths/min), but loses against a stronger 0.1 Hz wave.
4. **At each tick** (every ``tick_s``) over the last ``window_s``: breaths are counted on each
   band-passed series as upward crossings of ``+h`` after a dip below ``-h`` (``h`` = 0.1 x the
   window's SD; crossing times interpolated), and the rate is 60 x cycles / time from the first
   to the last crossing (pauses excluded). A series that hardly varies is not counted (its
   crossings would be noise): the intervals' SD must exceed ``MIN_RSA_SD_MS`` (1 ms) and every
   series' SD ``ROUNDING_SHARE`` of its level. This is how neurokit2 measures a belt (breath by
   breath, then averaged) and it follows the breathing rhythm even where slower waves carry
   more power, which a spectral peak does not.
5. **Fusion** (after the "smart fusion" of Karlen et al. 2013, see ``fuse_rates``): with
   several modulations, the rate is the mean of those within ``max_spread_bpm / 2`` (2)
   breaths/min of their median, emitted only when at least two agree; otherwise the window is
   marked ``"disagree"`` and no rate is given.

Each tick's ``quality["rsp"]``: ``"ok"`` (``RSP_Rate`` present), ``"insufficient"`` (less than
``min_coverage`` of the window covered, fewer than ``min_breaths`` cycles, or only one of
several modulations usable, or beats that are all flagged: a run of artifacts) or
``"disagree"``. Ticks whose window holds no data (and no beat) are not emitted. A rate needs
the heart to sample the breathing: it must stay below half the heart rate.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from monitor.core.base import (
    QUALITY_INSUFFICIENT,
    QUALITY_OK,
    CausalSOS,
    CausalSOSState,
    Features,
    Processor,
    SampleClock,
    SampleClockState,
    butter_ba,
    einsum_c,
    hold_last_usable,
    lfilter_zi,
    steady_state_zi,
)
from monitor.core.beats import FLAG_OK, IntervalBatch
from monitor.core.ppg import UPSLOPE_WINDOW_S

QUALITY_DISAGREE = "disagree"  # the modulations give different rates: none is trusted
FR_HZ = 4.0  # rate of the resampled respiratory series (Hz)
SOURCES = ("ppg", "ecg", "ibi", "rsp")
MODULATIONS = {  # the series each source yields, in column order
    "ppg": ("amplitude", "baseline", "interval"),
    "ecg": ("amplitude", "interval"),
    "ibi": ("interval",),
    "rsp": ("belt",),
}
RATE_RANGE_BPM = (4.0, 60.0)
# The band-passed beat-interval series must vary by more than this (SD, ms) to be breathing:
# 1 ms is a fifth of the least measured on real recordings (60 s windows: E4 IBI 4.6 ms,
# E4 pulse 8.3 ms, Polar H10 ECG 76 ms), about the 1/1024 s resolution of BLE heart-rate
# intervals. A watch that derives its intervals from the heart rate sends them constant.
MIN_RSA_SD_MS = 1.0
# Every series must also vary by more than this share of its level: below, its variation is
# float rounding (a flat belt or a constant pulse amplitude), not breathing.
ROUNDING_SHARE = 1e-9


def _grid_index(t_s: float) -> int:
    """Index of the last grid point at or before ``t_s`` (a tick falls on the grid)."""
    return math.floor(t_s * FR_HZ + 1e-6)


def count_rates_bpm(z: np.ndarray, valid: np.ndarray, hysteresis: float = 0.1,
                    min_breaths: int = 3, min_sd: np.ndarray | float = 0.0) -> np.ndarray:
    """Breathing rate (breaths/min) of each column of band-passed 4 Hz series, by counting.

    A breath is an upward crossing of ``+h`` after the series was below ``-h``, with
    ``h = hysteresis * SD`` of the column; the rate is 60 x cycles / seconds from the first to
    the last crossing, counted within each run of ``valid`` samples (crossing times interpolated
    linearly). NaN for a column with fewer than ``min_breaths`` cycles, or whose SD is not
    above ``min_sd`` (per column, in the series' unit): too small to be breathing.

    Parameters
    ----------
    z : ndarray, shape (n, m)
        ``m`` series on the same 4 Hz grid.
    valid : ndarray of bool, shape (n,)
        Grid points that hold data.

    Example
    -------
    >>> t = np.arange(240) / FR_HZ
    >>> z = np.column_stack([np.sin(2 * np.pi * 0.25 * t), np.sin(2 * np.pi * 0.5 * t)])
    >>> np.round(count_rates_bpm(z, np.ones(240, bool)), 2).tolist()  # 15 and 30 breaths/min
    [15.0, 30.0]
    """
    n, m = z.shape
    rates = np.full(m, np.nan)
    n_valid = np.count_nonzero(valid)
    if n_valid < 2:
        return rates
    zz = np.zeros((m, n + 1))  # one series per row, then a pause (the last column)
    zz[:, :n] = z.T
    zv = zz[:, :n] if n_valid == n else zz[:, :n][:, valid]
    dev = zv - np.add.reduce(zv, axis=1, keepdims=True) / n_valid
    sd = np.sqrt(einsum_c("ij,ij->i", dev, dev) / n_valid)  # the SD of each row
    h = hysteresis * sd
    hh = h[:, None]
    state = (zz > hh).astype(np.int8) - (zz < -hh)
    state[:, n] = 2
    if n_valid < n:
        state[:, np.flatnonzero(~valid)] = 2
    flat = state.ravel()
    idx = np.flatnonzero(flat)
    st = flat[idx]
    up = idx[1:][(st[1:] == 1) & (st[:-1] == -1)]
    if len(up) < 2:
        return rates
    zf = zz.ravel()
    col = up // (n + 1)
    z0, z1 = zf[up - 1], zf[up]
    t_up = (up % (n + 1) - 1 + (h[col] - z0) / (z1 - z0)) / FR_HZ
    # which run of valid samples each crossing is in: the pauses (2) before it, i.e.
    # cumsum(flat == 2)[up], counted among the non-zero states already at hand
    run = idx[st == 2].searchsorted(up)
    same = run[1:] == run[:-1]  # (np.diff without its overhead)
    col = col[1:][same]
    cycles = np.bincount(col, minlength=m)
    span = np.bincount(col, weights=(t_up[1:] - t_up[:-1])[same], minlength=m)
    enough = (cycles >= min_breaths) & (sd > min_sd) & (h > 0.0)
    rates[enough] = 60.0 * cycles[enough] / span[enough]
    return rates


def fuse_rates(rates: np.ndarray, max_spread_bpm: float = 4.0) -> tuple[float | None, str]:
    """One breathing rate from the rates of several modulations (NaN: not countable).

    A single modulation is taken as it is. With several, the rate is the mean of those within
    ``max_spread_bpm / 2`` of their median, when at least two are (two modulations agree when
    they differ by at most ``max_spread_bpm``). Returns ``(rate or None, quality)``.

    Example
    -------
    >>> fuse_rates(np.array([15.0, 16.0, 25.0]))
    (15.5, 'ok')
    >>> fuse_rates(np.array([12.0, 18.0]))
    (None, 'disagree')
    >>> fuse_rates(np.array([12.0, np.nan, np.nan]))
    (None, 'insufficient')
    """
    est = sorted(float(r) for r in rates if math.isfinite(r))
    if len(rates) == 1:
        return (est[0], QUALITY_OK) if est else (None, QUALITY_INSUFFICIENT)
    if len(est) < 2:
        return None, QUALITY_INSUFFICIENT
    n = len(est)
    median = est[n // 2] if n % 2 else (est[n // 2 - 1] + est[n // 2]) / 2.0
    agree = [r for r in est if abs(r - median) <= max_spread_bpm / 2.0]
    if len(agree) < 2:
        return None, QUALITY_DISAGREE
    return sum(agree) / len(agree), QUALITY_OK


@dataclass
class RespirationState:
    clock: SampleClockState = field(default_factory=SampleClockState)
    filt: CausalSOSState = field(default_factory=CausalSOSState)  # sample filter memory
    last_x: float = 0.0  # last finite sample (stands in for non-finite ones)
    part: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))  # open block: t, x, y
    blocks: np.ndarray = field(default_factory=lambda: np.empty((0, 4)))  # t0, max, min, mean
    samples_end: bool = False  # flush(): no sample will come
    pend_t: list = field(default_factory=list)  # beats waiting for their samples: time (s)
    pend_ibi: list = field(default_factory=list)  # and interval (ms)
    beats_wm: float = -math.inf  # every beat up to here has been received
    buf_t: list = field(default_factory=list)  # series points not yet on the grid: time (s)
    buf_v: list = field(default_factory=list)  # and values (one list per point)
    zi: np.ndarray | None = None  # band-pass memory of the 4 Hz series, (modulations, 4)
    last_t: float | None = None  # last point of the series (s) and its values
    last_v: np.ndarray | None = None
    k_end: int | None = None  # last grid index written (time k / FR_HZ)
    ring: np.ndarray | None = None  # (capacity, modulations) band-passed series
    ring_k: np.ndarray | None = None  # grid index held in each ring row (-1: none)
    next_tick: int | None = None  # index of the next tick (time k * tick_s)
    beat_t: list = field(default_factory=list)  # times (s) of the beats still in a window, flagged or not

    def __setstate__(self, saved: dict) -> None:
        self.__dict__.update(saved)
        self.__dict__.setdefault("beat_t", [])  # (checkpoints before it kept no beat times)


class RespirationProcessor(Processor):
    """``RSP_Rate`` (breaths/min) over ``window_s`` at every tick (see module docstring).

    Feed the samples of a waveform source (``update_samples``) and, for ``ppg``/``ecg``/``ibi``,
    the corrected intervals of the same stream (``update_intervals``, the output of
    ``BeatCorrector`` fed by ``PpgBeatDetector`` / ``EcgBeatDetector`` or by device intervals).
    Both return the ``Features`` of the ticks now final.

    Parameters
    ----------
    source : {"ppg", "ecg", "ibi", "rsp"}
        What the processor is fed.
    sampling_rate : float, optional
        Samples per second (Hz) of the waveform; required for ``ppg``, ``ecg`` and ``rsp``.
    tick_s, window_s : float
        Tick spacing and window length (s).
    band_hz : tuple of float, optional
        Band-pass of the 4 Hz series; default (0.15, 0.7) Hz, (0.07, 1.0) Hz for ``rsp``.
    max_spread_bpm : float
        Modulations agree when within half of this of their median (breaths/min).
    min_breaths : int
        Breath cycles a modulation needs in the window.
    min_coverage : float
        Share of the window the series must cover.
    max_gap_s : float
        A longer pause between beats (or samples) breaks the series (s).
    max_tail_s : float
        Most seconds of sample blocks kept for beats still to come (``ppg``, ``ecg``); normally
        only the few seconds the beat stream lags the samples are kept. Beats that come more
        than this after their samples find them gone (no waveform rates for them): hand beats
        over within 600 s of their samples.
    hysteresis : float
        Breath-counting threshold ``h`` as a share of the window's SD.

    Example
    -------
    >>> fs = 25.0
    >>> t = np.arange(int(120 * fs)) / fs
    >>> belt = np.sin(2 * np.pi * 0.3 * t)  # 18 breaths/min
    >>> f = RespirationProcessor("rsp", fs).update_samples(1_700_000_000.0, belt)[-1]
    >>> round(f.values["RSP_Rate"], 1), f.quality
    (18.0, {'rsp': 'ok'})
    """

    # every key its Features' values can hold (a column each in analyze's indicators.csv)
    INDICATOR_KEYS = ("RSP_Rate",)

    block_s = 0.05  # sample block length (s)
    peak_s = 0.1  # PPG: the pulse peak is searched within this of the beat (s) ...
    rise_s = UPSLOPE_WINDOW_S  # ... and this much longer after it (the beat is on the upslope)
    qrs_s = 0.08  # ECG: the QRS is searched within this of the R peak (s)
    lookback_s = 2.5  # a beat's samples start at most this before it (longest valid interval)

    def __init__(self, source: str, sampling_rate: float | None = None, tick_s: float = 5.0,
                 window_s: float = 60.0, band_hz: tuple[float, float] | None = None,
                 max_spread_bpm: float = 4.0, min_breaths: int = 3, min_coverage: float = 0.5,
                 max_gap_s: float = 3.0, max_tail_s: float = 600.0, hysteresis: float = 0.1):
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if source != "ibi" and not (sampling_rate and sampling_rate > 0):
            raise ValueError(f"source {source!r} needs the sampling_rate of its samples (Hz)")
        self.source = source
        self.sampling_rate = None if source == "ibi" else float(sampling_rate)
        self.tick_s = float(tick_s)
        self.window_s = float(window_s)
        if band_hz is None:
            band_hz = (0.07, 1.0) if source == "rsp" else (0.15, 0.7)
        self.band_hz = tuple(band_hz)
        self.max_spread_bpm = float(max_spread_bpm)
        self.min_breaths = int(min_breaths)
        self.min_coverage = float(min_coverage)
        self.max_gap_s = float(max_gap_s)
        self.max_tail_s = float(max_tail_s)
        self.hysteresis = float(hysteresis)
        self.n_mod = len(MODULATIONS[source])
        self.min_sd = np.array([MIN_RSA_SD_MS if m == "interval" else 0.0 for m in MODULATIONS[source]])
        self.n_win = int(round(self.window_s * FR_HZ))
        self.capacity = self.n_win + 4
        self.b, self.a = butter_ba(2, tuple(float(f) for f in self.band_hz), "bandpass", FR_HZ)
        self.zi_unit = steady_state_zi(self.b, self.a)[None, :]  # (cached designs, read-only)
        fs = self.sampling_rate
        if source == "ppg":  # the pulse band of PpgBeatDetector: its beat is this filter's peak
            self._filt = CausalSOS.butter(3, [0.5, 8.0], "bandpass", fs)
        elif source == "ecg":
            self._filt = CausalSOS.butter(2, [0.5, 40.0], "bandpass", fs)
        elif source == "rsp":
            self._filt = CausalSOS.butter(2, 1.0, "lowpass", fs)
        if fs is not None:
            self.n_block = max(1, int(round(self.block_s * fs)))
            self.n_tail_max = int(math.ceil(self.max_tail_s * fs / self.n_block))
            self._clock = SampleClock(fs)
            self.belt_step = max(1, int(fs // 8.0))
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self.state = RespirationState(
            ring=np.zeros((self.capacity, self.n_mod)),
            ring_k=np.full(self.capacity, -1, dtype=np.int64))

    # ------------------------------------------------------------------ inputs
    def update_samples(self, t0_s: float, x: np.ndarray) -> list[Features]:
        """Take the next samples of the waveform (first at ``t0_s``, unix s).

        ``ppg``: the BVP/PPG as sent (arbitrary units); ``ecg``: mV; ``rsp``: the belt signal
        (any unit). Returns the ``Features`` of the ticks now final.
        """
        if self.source == "ibi":
            raise ValueError("an 'ibi' RespirationProcessor takes intervals only")
        s = self.state
        self._clock.state = s.clock
        x = np.asarray(x, dtype=float).ravel()
        a = self._clock.align(t0_s, len(x))
        times = a.times_s
        if a.skip:
            x = x[a.skip:]
        if a.gap:
            s.filt, s.part = CausalSOSState(), np.empty((0, 3))
        if len(x) == 0:
            return []
        x = hold_last_usable(x, s.last_x)
        s.last_x = float(x[-1])
        self._filt.state = s.filt
        y = self._filt.update(x)
        s.filt = self._filt.state
        if self.source == "rsp":  # the low-passed belt, kept at >= 8 Hz (every k-th sample)
            first = s.clock.n_seen - len(x)  # index of x[0] in the segment
            keep = slice((-first) % self.belt_step, None, self.belt_step)
            return self._add_points(times[keep].tolist(), y[keep, None].tolist(),
                                    float(times[-1]))
        self._add_blocks(times, x, y)
        return self._take_beats() if s.pend_t else []

    def update_intervals(self, batch: IntervalBatch) -> list[Features]:
        """Take corrected intervals (``BeatCorrector``'s output); return the ticks now final."""
        if self.source == "rsp":
            raise ValueError("an 'rsp' RespirationProcessor takes samples only")
        s = self.state
        if len(batch):
            # (a loop over the few intervals of an update is cheaper than masks)
            for t, ibi, valid, flag in zip(batch.t_s.tolist(), batch.ibi_ms.tolist(),
                                           batch.valid.tolist(), batch.flags.tolist()):
                if valid and flag == FLAG_OK:
                    s.pend_t.append(t)
                    s.pend_ibi.append(ibi)
                s.beat_t.append(t)
        s.beats_wm = max(s.beats_wm, float(batch.watermark_s))
        return self._take_beats()

    def flush(self) -> list[Features]:
        """End of every input: decide what waited for more data and emit the last ticks."""
        s = self.state
        s.samples_end = True
        s.beats_wm = math.inf
        if self.source == "rsp":
            return self._add_points([], [], math.inf)
        return self._take_beats()

    # ------------------------------------------------------------------ samples and beats
    def _add_blocks(self, times: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        """Cut the samples into blocks of ``n_block``; keep each block's time, max, min, mean."""
        s, nb = self.state, self.n_block
        n_part = len(s.part)
        ext = np.empty((n_part + len(times), 3))  # the open block's samples, then these
        if n_part:
            ext[:n_part] = s.part
        ext[n_part:, 0], ext[n_part:, 1], ext[n_part:, 2] = times, x, y
        n_full = len(ext) // nb
        cut = n_full * nb
        s.part = ext[cut:]
        if not n_full:
            return
        full = ext[:cut].reshape(n_full, nb, 3)
        blocks = np.empty((n_full, 4))
        blocks[:, 0] = full[:, 0, 0]
        # (the ufuncs' reduce directly: the same reductions as .max/.min/.sum, less overhead)
        blocks[:, 1] = np.maximum.reduce(full[:, :, 2], axis=1)
        blocks[:, 2] = np.minimum.reduce(full[:, :, 2], axis=1)
        blocks[:, 3] = np.add.reduce(full[:, :, 1], axis=1) / nb
        s.blocks = np.concatenate((s.blocks, blocks))[-self.n_tail_max:]

    def _beat_values(self, t: list, ibi_ms: list) -> tuple[list, list]:
        """Times (s) and modulation values (one list per beat) of the beats at ``t`` whose
        values are all finite; a beat whose samples are gone (before the stream started, or
        dropped from the tail) has none and is left out.

        A beat or two per call: a loop of scalar searches costs less than vectorised ones.
        """
        isfinite = math.isfinite
        if self.source == "ibi":
            keep = [i for i, ibi in enumerate(ibi_ms) if isfinite(ibi)]
            return [t[i] for i in keep], [[ibi_ms[i]] for i in keep]
        blk = self.state.blocks
        t_out, v_out = [], []
        if not len(blk):
            return t_out, v_out
        bt, d = blk[:, 0], self.n_block / self.sampling_rate
        bt0 = float(bt[0])
        search = bt.searchsorted
        vmax, vmin, vsum = np.maximum.reduce, np.minimum.reduce, np.add.reduce
        if self.source == "ecg":
            for ti, ibi in zip(t, ibi_ms):
                lo, hi = ti - self.qrs_s, ti + self.qrs_s
                q0, q1 = search(lo - d, side="right"), search(hi, side="right")
                if bt0 <= lo and q1 > q0:
                    row = [float(vmax(blk[q0:q1, 1]) - vmin(blk[q0:q1, 2])), ibi]
                    if isfinite(row[0]) and isfinite(ibi):
                        t_out.append(ti)
                        v_out.append(row)
            return t_out, v_out
        for ti, ibi in zip(t, ibi_ms):
            start = ti - ibi / 1000.0
            if not bt0 <= start:
                continue
            p0 = search(ti - self.peak_s - d, side="right")
            p1 = search(ti + self.rise_s + self.peak_s, side="right")
            if p1 <= p0:
                continue
            # the beat's window runs from peak to peak, as when beats were timed at the peak
            shift = float(bt[p0 + int(blk[p0:p1, 1].argmax())]) + d / 2 - ti
            b0 = search(start + shift - d, side="right")
            b1 = search(ti + shift, side="right")
            if b1 > b0:
                # the pulse's peak minus the lowest sample since the previous beat; the mean
                # sample over the beat (numpy's sum, as block sums elsewhere)
                amplitude = float(vmax(blk[p0:p1, 1]) - vmin(blk[b0:b1, 2]))
                row = [amplitude, float(vsum(blk[b0:b1, 3])) / (b1 - b0), ibi]
                if isfinite(row[0]) and isfinite(row[1]) and isfinite(ibi):
                    t_out.append(ti)
                    v_out.append(row)
        return t_out, v_out

    def _take_beats(self) -> list[Features]:
        """Turn the beats whose samples are all here into series points, in order."""
        s = self.state
        if self.source == "ibi" or s.samples_end:
            n = len(s.pend_t)
        elif len(s.blocks):
            after = self.rise_s + self.peak_s if self.source == "ppg" else self.qrs_s
            ready_until = float(s.blocks[-1, 0]) + self.n_block / self.sampling_rate - after
            n = bisect.bisect_right(s.pend_t, ready_until)
        else:
            n = 0
        t = v = None
        if n:
            t, v = self._beat_values(s.pend_t[:n], s.pend_ibi[:n])
            del s.pend_t[:n], s.pend_ibi[:n]
        wm = s.beats_wm if not s.pend_t else math.nextafter(s.pend_t[0], -math.inf)
        if len(s.blocks) and s.blocks[0, 0] < wm - self.lookback_s:
            # forget the blocks no beat to come can need
            s.blocks = s.blocks[int(s.blocks[:, 0].searchsorted(wm - self.lookback_s)):]
        return self._add_points(t, v, wm)

    # ------------------------------------------------------------------ the 4 Hz series
    def _add_points(self, t: list | None, v: list | None, point_wm: float) -> list[Features]:
        """Add series points (times increasing, as floats; values, a list per point with one
        per modulation); every point up to ``point_wm`` (s) has now been given. Returns the
        ticks now final.

        Points wait in a small buffer until the next tick can be computed (a point at or after
        it, or a pause no point can bridge any more): the grid work runs about once per tick.
        """
        s = self.state
        if t:
            s.buf_t.extend(t)
            s.buf_v.extend(v)
        last = s.buf_t[-1] if s.buf_t else s.last_t
        if last is None:
            return []
        if not (s.next_tick is None or last >= s.next_tick * self.tick_s
                or point_wm >= last + self.max_gap_s):
            return []
        out: list[Features] = []
        if s.buf_t:
            t, v = np.array(s.buf_t), np.array(s.buf_v).reshape(-1, self.n_mod)
            s.buf_t, s.buf_v = [], []
            prev = np.concatenate([[-math.inf if s.last_t is None else s.last_t], t])
            step = prev[1:] - prev[:-1]  # (np.diff without its overhead)
            if not (step > 0.0).all():  # drop repeated or out-of-order points
                keep = t > np.maximum.accumulate(prev)[:-1]
                t, v = t[keep], v[keep]
                step = t - np.concatenate((prev[:1], t[:-1]))
            lo = 0
            for hi in np.flatnonzero(step > self.max_gap_s).tolist() + [len(t)]:
                if hi > lo:
                    out += self._fill(t[lo:hi], v[lo:hi])
                if hi < len(t):  # a break before point hi: restart the series there
                    if s.last_t is not None:
                        out += self._emit_until(math.nextafter(float(t[hi]), -math.inf))
                    s.last_t, s.last_v, s.zi = float(t[hi]), v[hi].copy(), None
                    s.k_end = math.ceil(t[hi] * FR_HZ) - 1
                    lo = hi + 1
        if point_wm >= s.last_t + self.max_gap_s:
            out += self._emit_until(point_wm)  # no point can continue the series up to point_wm
        return out

    def _fill(self, t: np.ndarray, v: np.ndarray) -> list[Features]:
        """Interpolate the grid up to the last of these points (which continue the series),
        band-pass it into the ring, and emit each tick as soon as its window is complete."""
        s = self.state
        out: list[Features] = []
        pts_t = np.concatenate(([s.last_t], t))
        pts_v = np.concatenate((s.last_v[None, :], v))
        k_hi = math.floor(t[-1] * FR_HZ)
        k_lo = k_first = s.k_end + 1
        if k_lo <= k_hi:
            # the whole stretch of grid at once (the filter carries its state, so one call
            # gives what one call per tick would); it enters the ring tick by tick below
            ks_all = np.arange(k_lo, k_hi + 1)
            g = ks_all / FR_HZ
            # linear interpolation between the two points around each grid time (exact at a point)
            j = pts_t.searchsorted(g)
            np.maximum(j, 1, out=j)  # np.clip(j, 1, len(pts_t) - 1) without its overhead
            np.minimum(j, len(pts_t) - 1, out=j)
            i = j - 1
            t_i = pts_t[i]
            w = ((g - t_i) / (pts_t[j] - t_i))[:, None]
            vals = (pts_v[i] * (1.0 - w) + pts_v[j] * w).T  # (modulations, n)
            if s.zi is None:
                s.zi = self.zi_unit * vals[:, :1]
            z_all, s.zi = lfilter_zi(self.b, self.a, vals, s.zi)
        while k_lo <= k_hi:
            if s.next_tick is None:  # the first data: the first tick whose window holds it
                s.next_tick = math.ceil(k_lo / FR_HZ / self.tick_s)
            # never overwrite the window of a tick not yet emitted
            k_stop = max(k_lo, min(k_hi, _grid_index(s.next_tick * self.tick_s)))
            part = slice(k_lo - k_first, k_stop + 1 - k_first)
            rows = self._ring_rows(k_lo, k_stop + 1 - k_lo)
            s.ring[rows] = z_all[:, part].T
            s.ring_k[rows] = ks_all[part]
            s.k_end = k_stop
            out += self._emit_until(k_stop / FR_HZ)
            k_lo = k_stop + 1
        s.last_t, s.last_v = float(t[-1]), v[-1].copy()
        return out

    def _ring_rows(self, k0: int, n: int):
        """Ring rows of the grid indices ``k0 .. k0 + n - 1`` (``k % capacity``): a slice when
        they do not wrap around, which reads and writes faster than the indices."""
        r0 = k0 % self.capacity
        if r0 + n <= self.capacity:
            return slice(r0, r0 + n)
        return np.arange(k0, k0 + n) % self.capacity

    # ------------------------------------------------------------------ ticks
    def _emit_until(self, ready_s: float) -> list[Features]:
        """Features of every tick up to ``ready_s`` (s), whose windows are now final."""
        s = self.state
        out = []
        if s.next_tick is None:
            return out
        newest = s.k_end / FR_HZ  # newest grid point; none after it up to ready_s
        while s.next_tick * self.tick_s <= ready_s:
            tick = s.next_tick * self.tick_s
            if tick - self.window_s >= newest and not (s.beat_t and s.beat_t[-1] > tick - self.window_s):
                # this window and all up to ready_s are empty (no beat either)
                if math.isfinite(ready_s):
                    s.next_tick = math.floor(ready_s / self.tick_s) + 1
                break
            f = self._features(tick)
            if f is not None:
                out.append(f)
            s.next_tick += 1
        # forget the beats no window to come can hold
        del s.beat_t[:bisect.bisect_right(s.beat_t, s.next_tick * self.tick_s - self.window_s)]
        return out

    def window_rates(self, tick_s: float) -> tuple[np.ndarray, float]:
        """Per-modulation rates (breaths/min, NaN when not countable) in the window ending at
        ``tick_s`` and the share of the window covered; for diagnostics and tests."""
        s = self.state
        k1 = _grid_index(tick_s)
        ks = np.arange(k1 - self.n_win + 1, k1 + 1)
        rows = self._ring_rows(k1 - self.n_win + 1, self.n_win)
        valid = s.ring_k[rows] == ks
        z = s.ring[rows]
        min_sd = self.min_sd if s.last_v is None else np.maximum(self.min_sd, ROUNDING_SHARE * np.abs(s.last_v))
        rates = count_rates_bpm(z, valid, self.hysteresis, self.min_breaths, min_sd)
        rates[(rates < RATE_RANGE_BPM[0]) | (rates > RATE_RANGE_BPM[1])] = np.nan
        return rates, int(np.count_nonzero(valid)) / len(valid)  # np.mean(valid)

    def _features(self, tick_s: float) -> Features | None:
        rates, coverage = self.window_rates(tick_s)
        if coverage == 0.0:  # no series: beats all flagged (a run of artifacts), or none
            beats = self.state.beat_t
            i = bisect.bisect_right(beats, tick_s - self.window_s)
            if i == len(beats) or beats[i] > tick_s:
                return None  # no beat either: nothing to say
        if coverage == 0.0 or coverage < self.min_coverage:
            return Features(tick_s, {}, {"rsp": QUALITY_INSUFFICIENT})
        rate, quality = fuse_rates(rates, self.max_spread_bpm)
        return Features(tick_s, {} if rate is None else {"RSP_Rate": rate}, {"rsp": quality})
