"""Skin conductance (EDA): tonic level and skin conductance responses (SCRs), streaming.

Pipeline for a regular EDA stream in µS (see ``docs/indicators.md``, "Skin conductance"):

1. **Clean**: a causal 4th-order Butterworth low-pass at ``lowpass_hz`` (2 Hz), applied when
   the rate allows it (``lowpass_hz <= 0.4 * sampling_rate``, e.g. 15-100 Hz lab devices). At
   the Empatica E4's 4 Hz the device's own anti-alias filter already bounds the band and a
   digital low-pass would only flatten real SCR shapes, so, like ``neurokit2.eda_clean`` (which
   skips filtering at <= 6 Hz), none is applied.
2. **Decimate** to at most ``max_internal_rate_hz`` (8 Hz) by keeping the last sample of every
   block, so the state stays small at 100 Hz.
3. **Tonic/phasic split**: phasic = the zero-phase 0.05 Hz high-pass that
   ``neurokit2.eda_phasic(method="highpass")`` uses (Butterworth order 2, run forward and
   backward), realised as its impulse response truncated to +-``phasic_delay_s``: a
   linear-phase FIR, causal once delayed by ``phasic_delay_s``. tonic = cleaned - phasic.
   A causal IIR high-pass distorts SCR shapes enough to move several SCRs per minute across the
   amplitude threshold on real E4 data; the delayed FIR agrees with the offline analysis.
4. **SCRs**: every local maximum of the phasic signal whose rise from the preceding local
   minimum (onset-to-peak amplitude, as in ``neurokit2.eda_peaks``) is at least
   ``scr_min_amplitude_us``. A peak is confirmed one sample after it, when the signal falls.

Features per window ending at each tick are returned once the window is final: with the batch
that reaches ``tick + latency_s`` (``phasic_delay_s`` plus the two internal samples that
confirm a peak; 20.5 s at 4 Hz with the defaults). ``flush()`` finishes a stream's last ticks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import signal as sps

from monitor.core.base import (
    QUALITY_INSUFFICIENT,
    QUALITY_OFF_SKIN,
    QUALITY_OK,
    FIR_A,
    CausalSOS,
    Features,
    Processor,
    SampleClock,
    TickGrid,
    TimeRing,
    hold_last_usable,
    lfilter_zi,
    mean_of,
    read_only,
    slope_of,
    steady_state_zi,
)
from monitor.wire import SIGNALS

QUALITY_OUT_OF_RANGE = "out_of_range"  # outside 0-100 µS, or below the contact floor (a sample or two)
QUALITY_JUMP = "jump"  # changed faster than physiology allows (electrode movement, glitch)
QUALITY_FLAT = "flat"  # flat line: lost contact or saturated sensor
LOWPASS_ORDER = 4  # as neurokit2.eda_clean
# The "jump" rate is measured over at least this span (s): one sample up to 100 Hz. Sample to
# sample at 1000 Hz, 10 µS/s is 0.01 µS, less than one step of a 10-bit 0-25 µS sensor
# (BITalino: 0.024 µS), so every step of a 1000 Hz band was a "jump" and it never gave a value.
JUMP_SPAN_S = 0.01
INBOX_SAMPLES = 512  # raw samples wait in the inbox up to a tick's worth, at most this many
HIGHPASS_ORDER = 2  # as neurokit2.eda_phasic(method="highpass"), run forward and backward
BIN_S = 1.0  # raw-data quality is kept per bin of this many seconds (ids: ceil(t)), or of
# the whole seconds that hold a sample below 1 Hz (``EdaProcessor.bin_s``)


def zero_phase_highpass_fir(highpass_hz: float, sampling_rate: float, half_width: int) -> np.ndarray:
    """Impulse response of a forward-backward Butterworth high-pass, truncated to +-``half_width``.

    It is the autocorrelation of the causal filter's impulse response, so convolving with it
    equals ``scipy.signal.sosfiltfilt`` away from the edges. The centre tap is adjusted so the
    gain at 0 Hz is exactly 0.

    Example
    -------
    >>> h = zero_phase_highpass_fir(0.05, 4.0, 80)
    >>> len(h), bool(abs(h.sum()) < 1e-12), bool(np.allclose(h, h[::-1]))
    (161, True, True)
    """
    sos = sps.butter(HIGHPASS_ORDER, highpass_hz, btype="highpass", fs=sampling_rate, output="sos")
    n = 20 * half_width + 200  # long enough for the causal response to have died out
    impulse = np.zeros(n)
    impulse[0] = 1.0
    h = sps.sosfilt(sos, impulse)
    lags = np.array([h[: n - k] @ h[k:] for k in range(half_width + 1)])
    fir = np.concatenate([lags[:0:-1], lags])
    fir[half_width] -= fir.sum()
    return fir


@functools.lru_cache(maxsize=32)
def _phasic_fir(highpass_hz: float, sampling_rate: float, half_width: int) -> np.ndarray:
    """``zero_phase_highpass_fir``, cached and read-only: every wearer uses the same one."""
    return read_only(zero_phase_highpass_fir(highpass_hz, sampling_rate, half_width))


@dataclass
class EdaState:
    clock: SampleClock
    ticks: TickGrid
    lowpass: CausalSOS | None
    values: TimeRing  # tonic (µS) at the times of internal samples whose phasic is known
    # raw-data quality per bin of ``bin_s`` (circular, slot = bin id % n): id, samples, flags
    # (1 = out of range, 2 = jump), min and max (µS)
    bin_id: np.ndarray
    bin_n: np.ndarray
    bin_flags: np.ndarray
    bin_min: np.ndarray
    bin_max: np.ndarray
    active: bool = False  # a segment (run of samples without a gap) is open
    n_raw: int = 0  # raw samples in the open segment
    last_raw: float | None = None  # last finite raw sample (µS)
    recent_raw: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the segment's last jump_lag samples
    last_t: float | None = None  # time of the last raw sample (s)
    fir_zi: np.ndarray | None = None  # memory of the phasic FIR
    n_fed: int = 0  # samples fed to the phasic FIR in the open segment (real and padding)
    n_real: int = 0  # internal samples of the open segment
    pending_t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # waiting for phasic
    pending_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    phasic_last: float | None = None  # last phasic sample (µS) and its time
    phasic_last_t: float | None = None
    slope_sign: int = 0  # sign of the last non-zero phasic change
    trough: float | None = None  # value of the last local minimum of the phasic signal (µS)
    watermark: float | None = None  # output for ticks up to here is final
    peaks_t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # SCR peaks kept (s)
    peaks_amp: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their amplitude (µS)
    inbox_t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # raw samples not processed
    inbox_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    due_at: float = -np.inf  # process the inbox once it reaches this time (s)

    def __setstate__(self, saved: dict) -> None:
        self.__dict__.update(saved)
        if "recent_raw" not in saved:  # (checkpoints before it kept the last sample only)
            last = saved.get("last_raw")
            self.recent_raw = np.zeros(0) if last is None else np.array([last])


class EdaProcessor(Processor):
    """Streaming skin conductance: SCR count and rate, tonic level and slope per window.

    Parameters
    ----------
    sampling_rate : float
        Rate of the EDA stream (Hz), e.g. 4 for the Empatica E4, 15-100 for lab devices.
    tick_s, window_s : float
        Features are computed every ``tick_s`` seconds over the ``window_s`` seconds ending at
        the tick (ticks at whole multiples of ``tick_s``, unix time).
    scr_min_amplitude_us : float
        Fixed onset-to-peak amplitude (µS) an SCR must reach. The published criteria range from
        0.01 µS (lab amplifiers, Benedek & Kaernbach 2010) to 0.05 µS (the classic criterion,
        Boucsein 2012; Dawson et al. 2007). We take 0.05 µS, the upper end: wrist devices are
        noisier (the E4 resolves ~0.001 µS and wiggles of 0.01-0.03 µS are common at rest), and
        below 0.05 µS most "responses" on real E4 data are noise. An absolute threshold, not one
        relative to the largest peak, so counts are comparable over time and between windows.
    lowpass_hz : float
        Cleaning low-pass cut-off (Hz); applied only when ``lowpass_hz <= 0.4 * sampling_rate``.
    highpass_hz : float
        Tonic/phasic split frequency (Hz): 0.05 Hz as Biopac AcqKnowledge and neurokit2.
    phasic_delay_s : float
        Half-width of the zero-phase high-pass (s) and so the delay of the output. 20 s keeps
        the truncation error below what changes SCR counts on the real recordings in the tests.
    max_internal_rate_hz : float
        Internal rate after decimation (Hz).
    min_coverage : float
        Fraction of the window's samples that must be present for values to be emitted.
    contact_floor_us, max_eda_us : float
        Valid range (µS). Below 0.05 µS the electrodes have lost contact with the skin; above
        100 µS no skin reads.
    max_rate_us_per_s : float
        A change faster than this (µS/s) between consecutive samples, or over ``JUMP_SPAN_S``
        (0.01 s) at rates above 100 Hz, is a "jump" artifact.
    flat_s, flat_range_us : float
        A run of ``flat_s`` seconds whose peak-to-peak range is below ``flat_range_us`` (µS,
        about one E4 quantisation step) is a flat line.

    Each ``Features`` carries ``quality["eda"]``: "ok", "off_skin" (a whole second, or bin, below
    ``contact_floor_us``: the electrodes were off the skin), "out_of_range", "jump", "flat" (the
    first fault found in the window, in that order) or "insufficient" (too little data). Values
    are emitted only when the quality is "ok"; a window with an artifact emits none, because a
    jump or a contact loss produces fake SCRs and a wrong level.

    Values: ``SCR_Peaks_N`` (count), ``SCR_Rate`` (per minute of data present),
    ``SCR_Peaks_Amplitude_Mean`` (µS, only when N > 0), ``EDA_Tonic_Mean`` (µS, the skin
    conductance level) and ``EDA_Tonic_Slope`` (µS/min, least squares).

    Example
    -------
    >>> p = EdaProcessor(sampling_rate=4.0)
    >>> t = np.arange(4 * 180) / 4.0  # 3 min at 4 Hz
    >>> u = np.clip(t - 60.0, 0.0, None)  # one SCR at 60 s on a rising 2 µS level
    >>> eda = 2.0 + 0.005 * t + 0.5 * (np.exp(-u / 4.0) - np.exp(-u / 0.75))
    >>> out = p.update(1_700_000_000.0, eda)
    >>> f = out[13]  # the window ending 65 s after the start
    >>> f.t - 1_700_000_000.0, f.quality["eda"], f.values["SCR_Peaks_N"]
    (65.0, 'ok', 1.0)
    >>> round(f.values["SCR_Peaks_Amplitude_Mean"], 2), round(f.values["EDA_Tonic_Mean"], 1)
    (0.25, 2.2)
    >>> out[-1].t - 1_700_000_000.0  # the last ~20 s wait for the phasic filter (or flush())
    155.0
    """

    # every key its Features' values can hold (a column each in analyze's indicators.csv)
    INDICATOR_KEYS = ("SCR_Peaks_N", "SCR_Rate", "SCR_Peaks_Amplitude_Mean", "EDA_Tonic_Mean", "EDA_Tonic_Slope")

    def __init__(
        self,
        sampling_rate: float,
        tick_s: float = 5.0,
        window_s: float = 60.0,
        scr_min_amplitude_us: float = 0.05,
        lowpass_hz: float = 2.0,
        highpass_hz: float = 0.05,
        phasic_delay_s: float = 20.0,
        max_internal_rate_hz: float = 8.0,
        min_coverage: float = 0.8,
        contact_floor_us: float = 0.05,
        max_eda_us: float = SIGNALS["eda"].high,
        max_rate_us_per_s: float = 10.0,
        flat_s: float = 10.0,
        flat_range_us: float = 0.001,
    ):
        if not (math.isfinite(sampling_rate) and sampling_rate > 0):
            raise ValueError(f"sampling_rate must be a positive number of Hz, got {sampling_rate!r}")
        if not (tick_s > 0 and window_s >= tick_s):
            raise ValueError(f"need 0 < tick_s <= window_s, got tick_s={tick_s}, window_s={window_s}")
        self.sampling_rate = float(sampling_rate)
        self.tick_s = float(tick_s)
        self.window_s = float(window_s)
        self.scr_min_amplitude_us = float(scr_min_amplitude_us)
        self.lowpass_hz = float(lowpass_hz)
        self.highpass_hz = float(highpass_hz)
        self.phasic_delay_s = float(phasic_delay_s)
        self.max_internal_rate_hz = float(max_internal_rate_hz)
        self.min_coverage = float(min_coverage)
        self.contact_floor_us = float(contact_floor_us)
        self.max_eda_us = float(max_eda_us)
        self.max_rate_us_per_s = float(max_rate_us_per_s)
        self.jump_lag = max(1, round(JUMP_SPAN_S * self.sampling_rate))  # samples
        self.flat_s = float(flat_s)
        self.flat_range_us = float(flat_range_us)
        # constants derived from the parameters (not state)
        self.decimation = max(1, math.ceil(self.sampling_rate / self.max_internal_rate_hz))
        self.internal_rate = self.sampling_rate / self.decimation
        self.use_lowpass = self.lowpass_hz <= 0.4 * self.sampling_rate
        self.delay_n = max(1, round(self.phasic_delay_s * self.internal_rate))
        self.fir = _phasic_fir(self.highpass_hz, self.internal_rate, self.delay_n)
        self.fir_zi_unit = steady_state_zi(self.fir, FIR_A)  # steady state for input 1
        # every bin holds a sample, so a flat run is a run of bins (below 1 Hz, bins of 1 s
        # would alternate with empty ones and no run of them would ever be flat)
        self.bin_s = BIN_S * math.ceil(1.0 / (self.sampling_rate * BIN_S) - 1e-9)
        self.off_skin_n = max(1, math.floor(0.75 * self.bin_s * self.sampling_rate))  # samples (see _quality)
        self.flat_bins = max(1, math.ceil(self.flat_s / self.bin_s))
        # raw samples per step: a tick's worth, at most INBOX_SAMPLES (at 1000 Hz a tick's 5,000
        # samples waiting in the inbox were 80 KB of the wearer's state)
        self._piece = max(1, min(int(self.tick_s * self.sampling_rate), INBOX_SAMPLES))
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new recording)."""
        n_values = math.ceil((self.window_s + self.tick_s) * self.internal_rate) + 4
        n_bins = math.ceil((self.window_s + self.tick_s + self.phasic_delay_s) / self.bin_s) + 8
        lowpass = None
        if self.use_lowpass:
            lowpass = CausalSOS.butter(LOWPASS_ORDER, self.lowpass_hz, "lowpass", self.sampling_rate)
        self.state = EdaState(
            clock=SampleClock(self.sampling_rate),
            ticks=TickGrid(self.tick_s),
            lowpass=lowpass,
            values=TimeRing(n_values),
            bin_id=np.full(n_bins, -1, dtype=np.int64),
            bin_n=np.zeros(n_bins, dtype=np.int64),
            bin_flags=np.zeros(n_bins, dtype=np.int8),
            bin_min=np.full(n_bins, np.inf),
            bin_max=np.full(n_bins, -np.inf),
        )

    # ------------------------------------------------------------------ public API

    def update(self, t0_s: float, eda_us: np.ndarray) -> list[Features]:
        """Feed the next batch (first sample at ``t0_s``, unix s; values in µS).

        Returns ``Features`` for every tick whose window is now final, oldest first: the tick
        ``T`` comes with the batch that reaches ``T + latency_s``.
        """
        s = self.state
        x = np.asarray(eda_us, dtype=float).reshape(-1)
        a = s.clock.align(t0_s, len(x))
        x = x[a.skip:]
        t = a.times_s
        if not len(x):
            return []
        out: list[Features] = []
        if a.gap:
            out += self._drain()
            if s.active:
                out += self._end_segment(next_t=float(t[0]))
        # samples wait in the inbox until a tick can be finished: the same work in fewer,
        # larger numpy calls (results do not depend on how samples are grouped)
        s.inbox_t = np.concatenate((s.inbox_t, t))
        s.inbox_x = np.concatenate((s.inbox_x, x))
        if s.inbox_t[-1] >= s.due_at or len(s.inbox_t) >= self._piece:
            out += self._drain()
        return out

    def flush(self) -> list[Features]:
        """End of the stream: finish the open segment and return the ticks up to its last sample.

        The phasic filter's last ``phasic_delay_s`` are computed by holding the last value. A
        later ``update`` starts a new segment.
        """
        out = self._drain()
        return out + self._end_segment(next_t=None) if self.state.active else out

    @property
    def latency_s(self) -> float:
        """How long after a tick its ``Features`` are returned (s): the phasic delay and
        the two internal samples that confirm a peak."""
        return (self.delay_n + 2) / self.internal_rate + (self.decimation - 1) / self.sampling_rate

    def _drain(self) -> list[Features]:
        """Process the inbox a tick's worth at a time; return the ticks finished."""
        s = self.state
        out: list[Features] = []
        t, x = s.inbox_t, s.inbox_x
        s.inbox_t, s.inbox_x = np.zeros(0), np.zeros(0)
        for i in range(0, len(t), self._piece):
            self._process(t[i:i + self._piece], x[i:i + self._piece])
            if s.watermark is not None:
                out += [self._features(tick) for tick in s.ticks.due(s.watermark)]
        next_k = s.ticks.state.next_k
        s.due_at = -np.inf if next_k is None else next_k * self.tick_s + self.latency_s
        return out

    # ------------------------------------------------------------------ processing

    def _process(self, t: np.ndarray, x: np.ndarray) -> None:
        s = self.state
        if not s.active:
            s.active = True
            s.ticks.skip_to(float(t[0]))
        # raw quality flags: 1 = out of range (or not a number), 2 = jump
        bad = (x < self.contact_floor_us) | (x > self.max_eda_us) | ~np.isfinite(x)
        # not a number: the last finite value stands in (flagged out of range)
        x = hold_last_usable(x, s.last_raw if s.last_raw is not None else 0.0)
        lag = self.jump_lag
        if lag == 1:  # np.diff(x, prepend=previous sample), without its overhead
            step = np.empty(len(x))
            step[0] = x[0] - (x[0] if s.last_raw is None else s.last_raw)
            np.subtract(x[1:], x[:-1], out=step[1:])
        else:  # the change over jump_lag samples (fewer at the start of a segment)
            full = np.concatenate((s.recent_raw, x))
            n_old = len(s.recent_raw)
            step = x - full[np.maximum(np.arange(n_old - lag, n_old - lag + len(x)), 0)]
            s.recent_raw = full[-lag:]
        jump = np.abs(step) > self.max_rate_us_per_s * lag / self.sampling_rate
        flags = None
        if np.logical_or.reduce(bad) or np.logical_or.reduce(jump):
            flags = bad.astype(np.int8) | (jump.astype(np.int8) << 1)
        self._add_bins(t, x, flags)
        s.last_raw = float(x[-1])
        s.last_t = float(t[-1])

        clean = np.clip(x, 0.0, self.max_eda_us) if flags is not None else x
        if s.lowpass is not None:
            clean = s.lowpass.update(clean)
        f = self.decimation
        if f > 1:  # keep the last sample of every block of f
            first = (f - 1 - s.n_raw % f) % f
            t, clean = t[first::f], clean[first::f]
        s.n_raw += len(x)
        if len(clean):
            self._phasic_step(t, clean)

    def _add_bins(self, t: np.ndarray, x: np.ndarray, flags: np.ndarray | None) -> None:
        """Merge raw samples into the quality bins (exact: counts, OR, min and max)."""
        s = self.state
        ids = np.ceil(t / self.bin_s).astype(np.int64)
        if ids[0] == ids[-1]:
            starts = [0]
            lo, hi = [x.min()], [x.max()]
            fl = [0 if flags is None else int(np.bitwise_or.reduce(flags))]
        else:
            starts = np.concatenate(([0], np.flatnonzero(ids[1:] != ids[:-1]) + 1))
            lo = np.minimum.reduceat(x, starts)
            hi = np.maximum.reduceat(x, starts)
            fl = np.zeros(len(starts), np.int8) if flags is None else np.bitwise_or.reduceat(flags, starts)
            if len(starts) <= len(s.bin_id):
                # all bins at once: each in its own slot (fewer bins than slots), so this is
                # the loop below without its per-bin scalar reads and writes
                bins = ids[starts]
                slots = bins % len(s.bin_id)
                older = s.bin_id[slots] != bins  # the slot still holds an older bin: reset it
                if older.any():
                    reset = slots[older]
                    s.bin_id[reset], s.bin_n[reset], s.bin_flags[reset] = bins[older], 0, 0
                    s.bin_min[reset], s.bin_max[reset] = np.inf, -np.inf
                s.bin_n[slots] += np.diff(starts, append=len(ids))
                s.bin_flags[slots] |= fl
                s.bin_min[slots] = np.minimum(s.bin_min[slots], lo)
                s.bin_max[slots] = np.maximum(s.bin_max[slots], hi)
                return
        ends = list(starts[1:]) + [len(ids)]
        size = len(s.bin_id)
        for k, i in enumerate(starts):
            b = int(ids[i])
            slot = b % size
            if s.bin_id[slot] != b:
                s.bin_id[slot], s.bin_n[slot], s.bin_flags[slot] = b, 0, 0
                s.bin_min[slot], s.bin_max[slot] = np.inf, -np.inf
            s.bin_n[slot] += ends[k] - i
            s.bin_flags[slot] |= fl[k]
            s.bin_min[slot] = min(s.bin_min[slot], lo[k])
            s.bin_max[slot] = max(s.bin_max[slot], hi[k])

    def _phasic_step(self, t: np.ndarray | None, x: np.ndarray) -> None:
        """Run internal samples through the delayed zero-phase FIR (``t=None``: end padding).

        FIR output ``j`` of this call is the phasic value of internal sample
        ``n_fed + j - delay_n``; the real samples still waiting for theirs are ``pending``.
        """
        s = self.state
        if s.fir_zi is None:
            s.fir_zi = self.fir_zi_unit * x[0]
        y, s.fir_zi = lfilter_zi(self.fir, FIR_A, x, s.fir_zi)  # (lfilter without its checks)
        n_before = s.n_fed
        s.n_fed += len(x)
        if t is not None:
            s.n_real += len(x)
            s.pending_t = np.concatenate([s.pending_t, t])
            s.pending_x = np.concatenate([s.pending_x, x])
        first_pending = s.n_real - len(s.pending_t)
        lo = max(first_pending, n_before - self.delay_n)
        hi = min(s.n_real, s.n_fed - self.delay_n)
        if hi <= lo:
            return
        phasic = y[lo - n_before + self.delay_n: hi - n_before + self.delay_n]
        k = hi - lo  # lo == first_pending: outputs come in order
        te, xe = s.pending_t[:k], s.pending_x[:k]
        s.pending_t, s.pending_x = s.pending_t[k:], s.pending_x[k:]
        s.values.extend(te, xe - phasic)
        self._detect(te, phasic)

    def _detect(self, t: np.ndarray, p: np.ndarray) -> None:
        """SCR peaks: local maxima, amplitude above the preceding local minimum."""
        s = self.state
        if s.phasic_last is None:
            full, full_t = p, t
        else:
            full = np.concatenate(([s.phasic_last], p))
            full_t = np.concatenate(([s.phasic_last_t], t))
        s.phasic_last, s.phasic_last_t = float(full[-1]), float(full_t[-1])
        if len(full) < 2:
            return
        # a peak at sample k is confirmed by sample k + 1, so output up to k is final
        s.watermark = float(full_t[-2])
        sign = np.sign(full[1:] - full[:-1])  # (np.diff without its overhead)
        nz = np.flatnonzero(sign)
        if not len(nz):
            return
        sig = sign[nz]
        prev = np.concatenate(([s.slope_sign], sig[:-1]))
        s.slope_sign = int(sig[-1])
        turn = nz[(sig != prev) & (prev != 0)]  # full[k] is a local extremum (plateau: right end)
        if not len(turn):
            return
        new_t, new_amp = [], []
        trough = s.trough
        for k in turn.tolist():
            v = float(full[k])
            if sign[k] > 0:
                trough = v
            elif trough is not None and v - trough >= self.scr_min_amplitude_us:
                new_t.append(float(full_t[k]))
                new_amp.append(v - trough)
        s.trough = trough
        if new_t:
            s.peaks_t = np.concatenate((s.peaks_t, new_t))
            s.peaks_amp = np.concatenate((s.peaks_amp, new_amp))

    def _end_segment(self, next_t: float | None) -> list[Features]:
        """Close the open segment: finish its phasic, emit its ticks, reset the filters."""
        s = self.state
        out: list[Features] = []
        # hold the last value to compute the phasic of the last samples, a tick at a time
        step = max(1, int(self.tick_s * self.internal_rate))
        while len(s.pending_t):
            self._phasic_step(None, np.full(step, s.pending_x[-1]))
            if s.watermark is not None:
                out += [self._features(tick) for tick in s.ticks.due(s.watermark)]
        last_t = s.last_t
        s.watermark = last_t  # nothing more will come for this segment
        out += [self._features(tick) for tick in s.ticks.due(last_t)]
        if next_t is not None:
            # ticks before the next sample whose window still holds some of this segment
            until = min(np.nextafter(next_t, -np.inf), last_t + self.window_s - 1e-9)
            out += [self._features(tick) for tick in s.ticks.due(until)]
            s.ticks.skip_to(next_t)
        if s.lowpass is not None:
            s.lowpass.reset()
        s.active, s.n_raw, s.last_raw, s.fir_zi, s.n_fed, s.n_real = False, 0, None, None, 0, 0
        s.recent_raw = np.zeros(0)
        s.pending_t, s.pending_x = np.zeros(0), np.zeros(0)
        s.phasic_last = s.phasic_last_t = s.trough = None
        s.slope_sign = 0
        return out

    # ------------------------------------------------------------------ features

    def _quality(self, tick: float) -> str:
        s = self.state
        ids = np.arange(math.floor((tick - self.window_s) / self.bin_s) + 1, math.ceil(tick / self.bin_s) + 1)
        slots = ids % len(s.bin_id)
        present = (s.bin_id[slots] == ids) & (s.bin_n[slots] > 0)
        flags = np.bitwise_or.reduce(s.bin_flags[slots][present]) if present.any() else 0
        if flags & 1:
            # a whole bin (3/4 of its samples at least) below the contact floor: the electrodes
            # were off the skin, not a glitch of a sample or two (S02 has one at 455.5 s)
            off = present & (s.bin_max[slots] < self.contact_floor_us) & (s.bin_n[slots] >= self.off_skin_n)
            return QUALITY_OFF_SKIN if off.any() else QUALITY_OUT_OF_RANGE
        if flags & 2:
            return QUALITY_JUMP
        m = self.flat_bins
        hi, lo = s.bin_max[slots], s.bin_min[slots]
        small = np.concatenate(([0], (present & (hi - lo < self.flat_range_us)).cumsum()))
        for i in np.flatnonzero(small[m:] - small[:-m] == m).tolist():  # m quiet bins in a row
            if hi[i:i + m].max() - lo[i:i + m].min() < self.flat_range_us:
                return QUALITY_FLAT
        return QUALITY_OK

    def _features(self, tick: float) -> Features:
        s = self.state
        quality = self._quality(tick)
        t, tonic = s.values.window(tick - self.window_s, tick)
        if quality == QUALITY_OK and len(t) < self.min_coverage * self.window_s * self.internal_rate:
            quality = QUALITY_INSUFFICIENT
        # forget peaks no later window can hold
        keep = s.peaks_t > tick + self.tick_s - self.window_s
        in_window = s.peaks_t > tick - self.window_s
        in_window &= s.peaks_t <= tick
        amps = s.peaks_amp[in_window]
        s.peaks_t, s.peaks_amp = s.peaks_t[keep], s.peaks_amp[keep]
        if quality != QUALITY_OK:
            return Features(tick, {}, {"eda": quality})
        minutes = len(t) / self.internal_rate / 60.0
        values = {
            "SCR_Peaks_N": float(len(amps)),
            "SCR_Rate": float(len(amps) / minutes),
            "EDA_Tonic_Mean": mean_of(tonic),
            "EDA_Tonic_Slope": slope_of(t - tick, tonic) * 60.0,
        }
        if len(amps):
            values["SCR_Peaks_Amplitude_Mean"] = float(np.add.reduce(amps)) / len(amps)
        return Features(tick, values, {"eda": QUALITY_OK})
