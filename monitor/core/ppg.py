"""Pulse (PPG / BVP) beat detection, streaming, with a bounded delay.

A causal adaptation of Elgendi et al. (2013), the method behind ``nk.ppg_findpeaks``
(``method="elgendi"``):

0. a glitch, a sample or a run of them that jumps ``SPIKE_RATIO`` times further than the
   running mean step, is replaced by the last good sample, and a jump that lasts is taken out
   (``SpikeHold``): through the band-pass it would ring for seconds and swell the running mean
   energy of step 4 for minutes;
1. band-pass 0.5-8 Hz (Butterworth, order 3, causal second-order sections with carried state);
2. keep the positive part and square it;
3. two moving averages of that energy: a short one (``peak_window_s`` = 0.111 s, one systolic
   wave) and a long one (``beat_window_s`` = 0.667 s, one beat). NeuroKit centres both; here
   both are trailing (``lfilter`` with carried state) and the short one is delayed so the two are
   compared as if centred. The decision about sample ``n`` is therefore made ``beat_window_s/2``
   (0.33 s) after ``n``, never later;
4. a "block of interest" is a run of samples where the short average exceeds the long one plus
   ``beat_offset`` times the running mean energy (an exponential average over ~10 s instead of
   NeuroKit's whole-record mean); blocks shorter than ``peak_window_s`` are noise;
5. the beat is the largest band-passed sample in the block, refined by parabolic interpolation
   to sub-sample time; beats closer than ``min_delay_s`` (0.3 s) to the previous one are dropped.

A block still open ``max_delay_s`` after the sample being decided is closed by force, so every
beat is emitted at most ``max_delay_s`` after it happened. The detector is meant for PPG; its
parameters are exposed (band, windows) but it has not been validated on ECG.

Pulse shape. Each beat also gets ``template_r``: the Pearson correlation of its band-passed wave
(``SHAPE_BEFORE_S`` before to ``SHAPE_AFTER_S`` after the beat) with a running template, the
average wave of the last ~``TEMPLATE_BEATS`` beats (the template matching of Orphanidou et al.
2015, ``nk.ppg_quality(method="templatematch")``, with a trailing template). A real pulse repeats
its shape; noise the detector took for beats does not. ``PulseShapeCheck`` withholds the heart
rate and breathing of windows whose beats do not look like pulses.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from monitor.core.base import (
    QUALITY_OK,
    CausalSOS,
    CausalSOSState,
    FIR_A,
    Features,
    Processor,
    SampleClock,
    SampleClockState,
    hold_last_usable,
    lfilter_zi,
    steady_state_zi,
)
from monitor.core.beats import BeatBatch


@dataclass
class PpgState:
    clock: SampleClockState
    bandpass: CausalSOSState
    zi_peak: np.ndarray | None = None  # trailing short moving average memory
    zi_beat: np.ndarray | None = None  # trailing long moving average memory
    zi_mean: np.ndarray | None = None  # slow exponential average of the energy
    y_tail: np.ndarray | None = None  # last band-passed samples (index of y_tail[-1] = n_seen - 1)
    peak_tail: np.ndarray | None = None  # last short averages, for the delay alignment
    n_seen: int = 0  # samples of the current segment
    in_block: bool = False
    block_start: int = 0  # sample index (in the segment) of the open block's first sample
    block_used: bool = False  # the open block was closed by force; ignore it until it ends
    last_beat: float = -math.inf  # sample index (fractional) of the last beat emitted
    gap_pending: bool = True  # the next batch's beats follow a (re)start
    last_x: float = 0.0  # last input sample (stands in for non-finite samples)
    template: np.ndarray | None = None  # running average pulse wave (unit-norm, zero-mean), kept over gaps
    spikes: SpikeHoldState | None = None  # the glitch filter, kept over gaps (None: none yet, or an older checkpoint)


SPIKE_RATIO = 100.0  # a step this many times the running mean step is a glitch (real PPG/ECG: at most 34)
SPIKE_HOLD_S = 1.0  # longest glitch held (s); a jump that lasts longer is a new level
SPIKE_LEARN_S = 1.0  # the mean step is learnt over this long (s) before a glitch can be told


@dataclass
class SpikeHoldState:
    last: float  # the last good sample (input)
    step_avg: float = 0.0  # exponential average of the good steps |x[n] - x[n-1]|, not yet unbiased
    n_steps: int = 0  # good steps since the (re)start of the average
    held: int = 0  # glitch samples held in a row
    offset: float = 0.0  # sum of the lasting jumps, taken out of the output
    prior_step: float = math.inf  # while the average is learnt anew: the mean step before (inf: none)


class SpikeHold(Processor):
    """Replaces glitches (a bit error, an ADC saturation: a sample or a run that jumps at least
    ``ratio`` times further than the mean step of the last ~``tau_s``) by the last good sample,
    and takes lasting jumps out, so that a band-pass after it does not ring.

    The mean step is an exponential average of ``|x[n] - x[n-1]|`` over the good samples,
    unbiased by its weight (so it needs no seed), learnt over ``learn_s`` before it tells a
    glitch. A jump held for longer than ``hold_s`` is a new level: its samples pass, less the
    jump (the output goes on from the last good sample; a band-pass ignores the level), and the
    mean step is learnt anew, the one before judging meanwhile (a saturation that ends is a
    jump back); so is a new segment's (``restart``, after a gap). ``state`` is None until the
    first sample (``update`` creates it).

    Example
    -------
    >>> x = np.sin(np.arange(200) / 5.0)
    >>> x[150] = 1e6
    >>> float(SpikeHold(64.0).update(x)[150]) == float(x[149])
    True
    """

    def __init__(self, sampling_rate: float, ratio: float = SPIKE_RATIO, tau_s: float = 10.0,
                 hold_s: float = SPIKE_HOLD_S, learn_s: float = SPIKE_LEARN_S):
        fs = float(sampling_rate)
        self.ratio = float(ratio)
        self.decay = math.exp(-1.0 / (tau_s * fs))  # weight of the past per step
        self.b, self.a = np.array([1.0 - self.decay]), np.array([1.0, -self.decay])
        self.n_hold = max(1, int(round(hold_s * fs)))
        self.n_learn = max(1, int(round(learn_s * fs)))
        self.n_unbiased = int(math.ceil(-17.0 / math.log10(self.decay)))  # past it, 1 - decay ** n == 1.0
        self.reset()

    def reset(self) -> None:
        self.state = None

    def restart(self) -> None:
        """A new segment (after a gap): its level and steps are learnt anew, the mean step
        before judging meanwhile (as after a new level), so a glitch at its start is held."""
        if self.state is not None:
            self.state = SpikeHoldState(last=math.nan, prior_step=self._mean_step())

    def _mean_step(self) -> float:
        """The mean step once learnt, else the one before (inf: none)."""
        s = self.state
        return s.step_avg / (1.0 - self.decay ** s.n_steps) if s.n_steps >= self.n_learn else s.prior_step

    def update(self, x: np.ndarray) -> np.ndarray:
        """``x`` (finite samples) with its glitches and lasting jumps taken out; ``x`` itself
        when it has none."""
        if not len(x):
            return x
        if self.state is None:
            self.state = SpikeHoldState(last=float(x[0]))
        s, start = self.state, 0
        if s.last != s.last:  # (NaN: the first sample of a segment)
            s.last = float(x[0])
        out = x - s.offset if s.offset else x
        while start < len(x):  # once, unless a glitch is found
            seg = x[start:]
            step = np.empty(len(seg))  # |x[n] - x[n-1]| (np.diff(prepend=) costs 4x more)
            step[0] = seg[0] - s.last
            np.subtract(seg[1:], seg[:-1], out=step[1:])
            np.abs(step, out=step)
            avg, _ = lfilter_zi(self.b, self.a, step, np.array([self.decay * s.step_avg]))
            j = len(seg)
            floor = s.step_avg * self.decay ** (j - 1)  # the average cannot fall lower in seg
            if s.n_steps < self.n_learn or np.maximum.reduce(step) > self.ratio * floor:  # (else no glitch)
                before = np.concatenate(([s.step_avg], avg[:-1]))  # the average before each step
                n = s.n_steps + np.arange(len(seg))
                weighted = step * (1.0 - self.decay ** n.astype(float)) if s.n_steps < self.n_unbiased else step
                bad = weighted > self.ratio * before  # (the average of n steps weighs 1 - decay ** n)
                if s.n_steps < self.n_learn:  # still learning: the mean step before judges
                    learning = n < self.n_learn
                    bad[learning] = step[learning] > self.ratio * s.prior_step
                j = int(bad.argmax()) if bad.any() else len(seg)
            if j:  # good samples
                s.step_avg, s.n_steps, s.last, s.held = float(avg[j - 1]), s.n_steps + j, float(seg[j - 1]), 0
            if j == len(seg):
                break
            if out is x:
                out = x.copy()
            if s.held < self.n_hold:  # a glitch: hold the last good sample
                out[start + j] = s.last - s.offset
                s.held += 1
            else:  # the jump lasts: a new level, taken out; its steps are learnt anew
                s.prior_step = self._mean_step() if s.n_steps >= self.n_learn else math.inf
                s.offset += float(seg[j]) - s.last
                out[start + j:] = seg[j:] - s.offset
                s.last, s.step_avg, s.n_steps, s.held = float(seg[j]), 0.0, 0, 0
            start += j + 1
        return out


UPSLOPE_WINDOW_S = 0.3  # an upslope beat is the steepest rise at most this long before its pulse's peak (s)
SHAPE_BEFORE_S, SHAPE_AFTER_S = 0.25, 0.3  # a beat's wave for the shape check: foot to systolic peak (s)
TEMPLATE_BEATS = 10  # the template follows about this many recent beats (exponential average)


class PpgBeatDetector(Processor):
    """Systolic peaks of a BVP/PPG stream, emitted at most ``max_delay_s`` late.

    Parameters
    ----------
    sampling_rate : float
        Samples per second (Hz), e.g. 64 for the Empatica E4's BVP.
    max_delay_s : float
        Longest delay between a beat and its emission (s); at least about
        ``beat_window_s / 2 + peak_window_s`` (0.45 s with the defaults).
    band_hz : tuple of float
        Band-pass corners (Hz).
    peak_window_s, beat_window_s : float
        Short and long moving-average windows (s) of Elgendi's method.
    beat_offset : float
        Threshold offset, as a share of the running mean energy.
    min_delay_s : float
        Refractory time between beats (s).
    fiducial : str
        Where in each pulse the beat is timed: ``"upslope"`` (default), the steepest point of
        the rise within ``upslope_window_s`` before the systolic peak, or ``"peak"``, the peak
        itself. A wrist pulse is broad with a shoulder (the dicrotic wave), so its maximum
        wanders between the humps from beat to beat: on the E4's S05 session, peak timing
        read RMSSD 86.9 ms where the E4's own beat intervals give 34.6 ms; the upslope reads
        42.3 ms, and on a clean lab PPG it agrees with the ECG as well as the peak
        (docs/indicators.md).
    upslope_window_s : float
        How far before the peak the steepest rise is looked for (s).
    shape_check : bool
        Give each beat its ``template_r`` (the pulse shape check, module docstring); False
        leaves it NaN (``EcgBeatDetector``, whose input is an energy envelope, not a pulse).
    hold_spikes : bool
        Replace glitches by the last good sample (``SpikeHold``); False for an input already
        cleared of them (``EcgBeatDetector`` clears its raw ECG).

    Example
    -------
    >>> fs = 64.0
    >>> t = np.arange(int(30 * fs)) / fs
    >>> bvp = np.sin(np.pi * 1.2 * t) ** 20  # a pulse every 1/1.2 s
    >>> det = PpgBeatDetector(fs)
    >>> out = det.update(1_700_000_000.0, bvp)
    >>> round(float(np.median(np.diff(out.times_s))), 3)
    0.833
    """

    def __init__(self, sampling_rate: float, max_delay_s: float = 1.0,
                 band_hz: tuple[float, float] = (0.5, 8.0), peak_window_s: float = 0.111,
                 beat_window_s: float = 0.667, beat_offset: float = 0.02,
                 min_delay_s: float = 0.3, mean_tau_s: float = 10.0,
                 fiducial: str = "upslope", upslope_window_s: float = UPSLOPE_WINDOW_S,
                 shape_check: bool = True, hold_spikes: bool = True):
        fs = float(sampling_rate)
        self.shape_check = bool(shape_check)
        self._spikes = SpikeHold(fs) if hold_spikes else None
        self.sampling_rate = fs
        self.max_delay_s = float(max_delay_s)
        self.band_hz = band_hz
        self.beat_offset = float(beat_offset)
        self.n_peak = max(1, int(round(peak_window_s * fs)))
        self.n_beat = max(1, int(round(beat_window_s * fs)))
        self.half_peak = (self.n_peak - 1) // 2
        self.half_beat = (self.n_beat - 1) // 2
        self.min_len = self.n_peak  # Elgendi's threshold 2: shortest block that is a wave
        self.min_delay = min_delay_s * fs
        if fiducial not in ("peak", "upslope"):
            raise ValueError(f"fiducial must be 'peak' or 'upslope', got {fiducial!r}")
        self.fiducial = fiducial
        # upslope: the beat is the steepest point within n_up samples before the peak
        self.n_up = int(math.ceil(upslope_window_s * fs)) if fiducial == "upslope" else 0
        self.n_lead = self.n_up + 1 if self.n_up else 0  # samples a beat may lie before its block
        # A block is closed by force once its length reaches max_block samples (less the lead of
        # an upslope beat: the delay bound still holds).
        self.max_block = int(math.floor(max_delay_s * fs)) - self.half_beat - 1 - self.n_lead
        if self.max_block < self.min_len:
            raise ValueError(
                f"max_delay_s={max_delay_s} is too short for beat_window_s={beat_window_s}: "
                f"it must exceed about "
                f"{(self.half_beat + 1 + self.min_len + self.n_lead) / fs:.2f} s")
        self.warmup = self.n_beat  # no block may start before the long average is full
        # the shape check's wave: the n_shape samples from shape_first before the beat on
        self.shape_first = -math.ceil(SHAPE_BEFORE_S * fs)
        self.n_shape = math.floor(SHAPE_AFTER_S * fs) - self.shape_first + 1
        self.n_y = (self.max_block + self.half_beat + 4 + (self.n_lead + 1 if self.n_up else 0)
                    + (1 - self.shape_first if self.shape_check else 0))
        self.n_delay = self.half_beat - self.half_peak  # delay of the short average
        self.b_peak = np.full(self.n_peak, 1.0 / self.n_peak)
        self.b_beat = np.full(self.n_beat, 1.0 / self.n_beat)
        alpha = 1.0 - math.exp(-1.0 / (mean_tau_s * fs))
        self.b_mean, self.a_mean = np.array([alpha]), np.array([1.0, alpha - 1.0])
        self._bandpass = CausalSOS.butter(3, list(band_hz), "bandpass", fs)
        self._clock = SampleClock(fs)
        self.reset()

    def __setstate__(self, saved: dict) -> None:
        self.__dict__.update(saved)
        if "_spikes" not in saved:  # a checkpoint from before the glitch filter
            self._spikes = SpikeHold(self.sampling_rate)

    def reset(self) -> None:
        """Forget everything (a new wearer or a new recording)."""
        self.state = PpgState(clock=SampleClockState(), bandpass=CausalSOSState())

    def _restart_segment(self) -> None:
        s = self.state
        s.bandpass = CausalSOSState()
        s.zi_peak = s.zi_beat = s.zi_mean = None
        if self._spikes is not None:
            self._spikes.state = s.spikes
            self._spikes.restart()
            s.spikes = self._spikes.state
        s.y_tail = s.peak_tail = None
        s.n_seen = 0
        s.in_block, s.block_start, s.block_used = False, 0, False
        s.last_beat = -math.inf
        s.gap_pending = True

    def update(self, t0_s: float, bvp: np.ndarray) -> BeatBatch:
        """Take the next samples (first one at ``t0_s``, unix s); return the beats now known.

        Returns
        -------
        BeatBatch
            Beat times (unix s) decided by this call and the watermark before which every beat
            has been emitted.
        """
        s = self.state
        self._clock.state = s.clock
        self._bandpass.state = s.bandpass
        x = np.asarray(bvp, dtype=float)
        a = self._clock.align(t0_s, len(x))
        if a.skip:
            x = x[a.skip:]
        if a.gap:
            self._restart_segment()
            self._bandpass.state = s.bandpass
        if len(x) == 0:
            return BeatBatch(np.empty(0), self._watermark_s(), False, template_r=np.empty(0))
        x = hold_last_usable(x, s.last_x)
        s.last_x = float(x[-1])
        if self._spikes is not None:
            self._spikes.state = s.spikes
            x = self._spikes.update(x)
            s.spikes = self._spikes.state
        n0 = s.n_seen
        y = self._bandpass.update(x)
        s.bandpass = self._bandpass.state
        energy = np.maximum(y, 0.0)
        np.square(energy, out=energy)
        if s.zi_peak is None:
            s.zi_peak = np.zeros(self.n_peak - 1)
            s.zi_beat = np.zeros(self.n_beat - 1)
            s.zi_mean = steady_state_zi(self.b_mean, self.a_mean) * energy[0]
            s.y_tail = np.zeros(0)
            s.peak_tail = np.zeros(self.n_delay)
        ma_peak, s.zi_peak = lfilter_zi(self.b_peak, FIR_A, energy, s.zi_peak)
        ma_beat, s.zi_beat = lfilter_zi(self.b_beat, FIR_A, energy, s.zi_beat)
        mean, s.zi_mean = lfilter_zi(self.b_mean, self.a_mean, energy, s.zi_mean)
        s.n_seen += len(x)

        # Sample m (newest known) decides about sample n = m - half_beat: the short average
        # centred on n is ma_peak[n + half_peak] = ma_peak[m - n_delay]; peak_tail holds the
        # last n_delay short averages, so peak_ext[i] is the one of sample n0 + i - n_delay.
        peak_ext = np.concatenate((s.peak_tail, ma_peak))
        mean *= self.beat_offset
        mean += ma_beat  # ma_beat + beat_offset * mean, in place
        waves = peak_ext[:len(x)] > mean
        n_start = n0 - self.half_beat  # the sample that x[0] decides about
        if n_start < self.warmup:  # no block before the long average is meaningful
            waves[:self.warmup - n_start] = False
        y_ext = np.concatenate((s.y_tail, y))
        y_first = s.n_seen - len(y_ext)  # segment index of y_ext[0]
        beats = self._scan(waves, n_start, y_ext, y_first)
        s.peak_tail = peak_ext[len(x):]
        s.y_tail = y_ext[-self.n_y:]
        t_first = s.clock.t_first
        fs = self.sampling_rate
        times = np.array([t_first + b / fs for b, _ in beats])  # (a beat or two: scalar arithmetic)
        gap = s.gap_pending
        if len(times):
            s.gap_pending = False
        return BeatBatch(times, self._watermark_s(), gap and len(times) > 0,
                         template_r=np.array([r for _, r in beats], dtype=float))

    def flush(self) -> BeatBatch:
        """End of the stream: no sample will follow, so every time is final (watermark +inf).

        A beat in the last ~0.5 s, not yet decided, is dropped. Pass the result on as usual:
        ``hrv.update(corrector.update_times(detector.flush()))`` emits the last ticks.
        """
        return BeatBatch(np.empty(0), math.inf, False, template_r=np.empty(0))

    def _watermark_s(self) -> float:
        """Time before which every beat has been emitted (unix s)."""
        s = self.state
        if s.clock.t_first is None:
            return -math.inf
        decided = s.n_seen - 1 - self.half_beat  # last sample decided about
        if s.in_block and not s.block_used:
            decided = min(decided, s.block_start - 1)
        decided = max(decided, min(self.warmup, s.n_seen) - 1)  # no beat before warm-up
        decided -= self.n_lead  # an upslope beat precedes its block
        return s.clock.t_first + decided / self.sampling_rate

    def _scan(self, waves: np.ndarray, n_start: int, y_ext: np.ndarray, y_first: int) -> list:
        """Walk the block edges of ``waves`` (decisions about samples ``n_start...``)."""
        s = self.state
        beats = []
        # Edges: indices where waves differs from the previous value (carried in the state).
        edges = (np.not_equal(waves[1:], waves[:-1]).nonzero()[0] + 1).tolist()
        if waves[0] != s.in_block:
            edges.insert(0, 0)
        last_n = n_start + len(waves) - 1
        for e in edges + [None]:
            if s.in_block and not s.block_used:
                force_at = s.block_start + self.max_block  # first sample past the longest block
                if e is not None:  # the block ends: n[e] is its first sample outside
                    end = n_start + e
                    if end > force_at:
                        self._emit(s.block_start, force_at, y_ext, y_first, beats)
                    elif end - s.block_start >= self.min_len:
                        self._emit(s.block_start, end, y_ext, y_first, beats)
                elif last_n >= force_at:  # still open and already too long: decide now
                    self._emit(s.block_start, force_at, y_ext, y_first, beats)
                    s.block_used = True
            if e is None:
                break
            s.in_block, s.block_used = bool(waves[e]), False
            if s.in_block:
                s.block_start = n_start + e
        return beats

    def _emit(self, beg: int, end: int, y_ext: np.ndarray, y_first: int, beats: list) -> None:
        """The beat of block [beg, end): its highest sample, or the steepest rise before it (the
        fiducial), refined to a sub-sample position by a parabola."""
        s = self.state
        seg = y_ext[beg - y_first:end - y_first]
        k = int(seg.argmax())
        i = beg - y_first + k
        pos = float(beg + k)
        if self.n_up:
            # Steepest rise of the n_up samples before the peak: d[m] = y[j0+m] - y[j0+m-1]
            # is the slope at j0 + m - 0.5; refined by a parabola through its neighbours.
            j0 = max(1, i - self.n_up)
            d = np.diff(y_ext[j0 - 1:i + 1])
            m = int(d.argmax())
            pos += (j0 + m - 0.5) - i
            if 0 < m < len(d) - 1:
                d0, d1, d2 = d[m - 1:m + 2].tolist()
                denom = d0 - 2.0 * d1 + d2
                if denom < 0.0:
                    pos += 0.5 * (d0 - d2) / denom
        elif 0 < i < len(y_ext) - 1:
            y0, y1, y2 = y_ext[i - 1:i + 2].tolist()
            denom = y0 - 2.0 * y1 + y2
            if denom < 0.0 and y1 >= y0 and y1 >= y2:  # a maximum at the block's edge is not a vertex
                pos += 0.5 * (y0 - y2) / denom
        if pos - s.last_beat > self.min_delay:
            beats.append((pos, self._template_r(pos, y_ext, y_first) if self.shape_check else math.nan))
            s.last_beat = pos

    def _template_r(self, pos: float, y_ext: np.ndarray, y_first: int) -> float:
        """Correlation (Pearson r) of the wave around the beat at sample ``pos`` (fractional,
        in the segment; ``y_ext[0]`` is sample ``y_first``) with the running template, which
        then takes the wave in; NaN for the first beat (no template yet) or a flat wave."""
        s = self.state
        base = math.floor(pos)
        frac = pos - base  # (from pos alone: the same whatever the batches)
        lo = base - y_first + self.shape_first
        if lo < 0 or lo + self.n_shape + 1 > len(y_ext):  # (the sizes of y_tail and the delays rule it out)
            return math.nan
        seg = y_ext[lo:lo + self.n_shape + 1]
        wave = seg[1:] - seg[:-1]
        wave *= frac
        wave += seg[:-1]  # linear interpolation at the beat's sub-sample position
        wave -= wave.sum() / self.n_shape  # (np.mean costs more than the rest together)
        norm = math.sqrt(wave @ wave)
        if not norm > 0.0:
            return math.nan
        wave /= norm
        if s.template is None:
            s.template = wave
            return math.nan
        template = s.template
        r = float(wave @ template) / math.sqrt(template @ template)  # (both zero-mean)
        template *= 1.0 - 1.0 / TEMPLATE_BEATS
        wave /= TEMPLATE_BEATS
        template += wave
        return r


QUALITY_NOISY = "noisy"  # the window's pulse waves do not repeat a pulse's shape (poor contact, motion)
PULSE_MATCH_R = 0.8  # a beat whose wave correlates at least this well with the template looks like a pulse
MIN_PULSE_SHARE = 0.15  # a window with fewer such beats is noise, not a pulse
MIN_SHAPE_BEATS = 10  # beats with a known shape a window needs before it is judged


@dataclass
class PulseShapeState:
    # recent beats with a known shape: times (unix s) and whether each looked like a pulse
    # (template_r >= match_r); lists: a beat or two a second, appended and dropped one by one
    t: list = field(default_factory=list)
    match: list = field(default_factory=list)
    watermark_s: float = -math.inf  # every beat up to here has been added
    held: tuple = ()  # (modality, Features) whose window's beats are not all known yet


class PulseShapeCheck(Processor):
    """Withholds the heart rate, HRV and breathing rate of windows whose beats do not look like
    pulses: fewer than ``min_pulse_share`` of the window's beats match the running template
    (``template_r >= match_r``, see ``PpgBeatDetector``). Pure noise (a band that lost contact)
    still trips Elgendi's detector at about 100 beats/min; its waves are not pulses.

    Measured (``docs/indicators.md``, windows of 60 s): white noise at 25-100 Hz has at most
    10 % matching beats, the wrist BVP of three E4 sessions at least 24 % once on the skin.

    ``judge(rows)`` takes the heart and breathing rows of the chain and returns those whose
    window's beats are all known (the detector's watermark has passed the tick), judged: a row
    with values from a noisy window comes back with none and quality ``"noisy"``; the others
    are kept until their beats come.

    Example
    -------
    >>> check = PulseShapeCheck(window_s=60.0)
    >>> t = 1_700_000_000.0 + np.arange(70.0)
    >>> check.add(BeatBatch(t, watermark_s=t[-1], template_r=np.full(70, 0.3)))  # noise
    >>> row = Features(t[-1], {"HR_Mean": 60.0}, {"hrv": "ok"})
    >>> check.judge([("heart", row)], given_until_s=t[-1])[0][1].quality
    {'hrv': 'noisy'}
    """

    def __init__(self, window_s: float = 60.0, match_r: float = PULSE_MATCH_R,
                 min_pulse_share: float = MIN_PULSE_SHARE, min_beats: int = MIN_SHAPE_BEATS):
        self.window_s = float(window_s)
        self.match_r = float(match_r)
        self.min_pulse_share = float(min_pulse_share)
        self.min_beats = int(min_beats)
        self.reset()

    def reset(self) -> None:
        self.state = PulseShapeState()

    def add(self, beats: BeatBatch) -> None:
        """Take a detector's beats (with ``template_r``) and watermark."""
        s = self.state
        if beats.template_r is not None:
            for t, r in zip(beats.times_s.tolist(), beats.template_r.tolist()):
                if r == r:  # (not NaN: a shape is known)
                    s.t.append(t)
                    s.match.append(r >= self.match_r)
        s.watermark_s = max(s.watermark_s, beats.watermark_s)

    def judge(self, rows: list[tuple[str, Features]], given_until_s: float) -> list[tuple[str, Features]]:
        """The rows (held ones first) whose window's beats are all known, judged.
        ``given_until_s``: every row up to this tick has now been given (the beat corrector's
        watermark: HRV and breathing emit each tick once the corrected beats pass it), so older
        beats than its window can go."""
        s = self.state
        ready = []
        if rows or s.held:
            rows = list(s.held) + rows
            ready = [(m, self._judged(f)) for m, f in rows if f.t <= s.watermark_s]
            s.held = tuple((m, f) for m, f in rows if f.t > s.watermark_s)
        oldest_s = min([given_until_s, *(f.t for _, f in s.held)])
        if s.t and s.t[0] <= oldest_s - self.window_s:
            n = bisect.bisect_right(s.t, oldest_s - self.window_s)
            del s.t[:n], s.match[:n]
        return ready

    def _judged(self, row: Features) -> Features:
        if not row.values:
            return row  # nothing to withhold (its own reason stands)
        s = self.state
        lo = bisect.bisect_right(s.t, row.t - self.window_s)
        hi = bisect.bisect_right(s.t, row.t)
        if hi - lo < self.min_beats or sum(s.match[lo:hi]) >= self.min_pulse_share * (hi - lo):
            return row
        return Features(row.t, {}, {key: QUALITY_NOISY for key in row.quality})
