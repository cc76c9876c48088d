"""ECG R-peak detection, streaming, with a bounded delay.

``PpgBeatDetector`` (Elgendi's two moving averages) finds one smooth positive wave per beat; an
ECG's QRS complex is short, has either polarity depending on the lead, and is followed by a T
wave that can be as tall. ``EcgBeatDetector`` therefore puts a QRS front end before it:

0. a glitch in the raw ECG is replaced by the last good sample (``SpikeHold``, as for PPG):
   squared twice on its way, it would swell the inner detector's mean energy for minutes;
1. band-pass 8-20 Hz (Butterworth order 2, causal, carried state): the QRS band, where P and T
   waves and baseline wander are weak (Elgendi 2010 uses 8-20 Hz for the same reason);
2. square (both polarities count) and average over ``energy_window_s`` (0.05 s, a trailing
   moving average): one smooth bump of QRS energy per beat, whatever the lead's polarity;
3. the bumps go to a ``PpgBeatDetector`` (its 0.5-8 Hz band-pass and moving averages), with a
   higher block threshold (``beat_offset`` 0.1 instead of 0.02) so that T-wave energy is not
   taken for a beat;
4. the beat times it returns are moved back by ``delay_s``, the delay of this chain (0.11 s:
   0.107-0.116 s against neurokit2's R-peaks at 100-1000 Hz, see ``docs/indicators.md``), so
   they sit on the R peak within a few milliseconds.

Every stage runs with carried state, so the output does not depend on how the samples are
chunked, and every beat is emitted at most ``max_delay_s`` (+ the front end's delay) late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitor.core.base import (
    CausalSOS,
    CausalSOSState,
    FIR_A,
    Processor,
    SampleClock,
    SampleClockState,
    hold_last_usable,
    lfilter_zi,
)
from monitor.core.beats import BeatBatch
from monitor.core.ppg import PpgBeatDetector, PpgState, SpikeHold, SpikeHoldState


@dataclass
class EcgState:
    clock: SampleClockState
    bandpass: CausalSOSState
    detector: PpgState
    zi_energy: np.ndarray | None = None  # trailing moving average memory
    last_x: float = 0.0  # last finite input sample (stands in for non-finite ones)
    spikes: SpikeHoldState | None = None  # the glitch filter, kept over gaps (None: none yet, or an older checkpoint)


class EcgBeatDetector(Processor):
    """R peaks of an ECG stream (any lead polarity), emitted at most ~``max_delay_s`` late.

    Parameters
    ----------
    sampling_rate : float
        Samples per second (Hz), e.g. 130 for a Polar H10, 100-1000 in the lab.
    max_delay_s : float
        Longest delay of the inner detector's decision (s), see ``PpgBeatDetector``.
    band_hz : tuple of float
        QRS band-pass corners (Hz).
    energy_window_s : float
        Moving average of the squared QRS band (s).
    beat_offset : float
        Block threshold of the inner detector, as a share of its running mean energy.
    delay_s : float
        Delay of the chain (s), subtracted from the beat times.
    min_delay_s : float
        Refractory period (s): a beat closer than this to the previous one is dropped. 0.2 s,
        the QRS refractory period of Pan & Tompkins (1985), reads heart rates up to 300 bpm;
        the PPG detector's 0.3 s (neurokit2's Elgendi default) read 200 bpm as ~148.

    Example
    -------
    >>> import neurokit2 as nk
    >>> ecg = nk.ecg_simulate(duration=30, sampling_rate=250, heart_rate=70, random_state=0)
    >>> out = EcgBeatDetector(250.0).update(1_700_000_000.0, -ecg)  # polarity does not matter
    >>> round(60.0 / float(np.median(np.diff(out.times_s))))
    70
    """

    def __init__(self, sampling_rate: float, max_delay_s: float = 1.0,
                 band_hz: tuple[float, float] = (8.0, 20.0), energy_window_s: float = 0.05,
                 beat_offset: float = 0.1, delay_s: float = 0.11, min_delay_s: float = 0.2):
        fs = float(sampling_rate)
        self.sampling_rate = fs
        self.delay_s = float(delay_s)
        n = max(1, int(round(energy_window_s * fs)))
        self.b_energy = np.full(n, 1.0 / n)
        self._bandpass = CausalSOS.butter(2, list(band_hz), "bandpass", fs)
        self._clock = SampleClock(fs)
        self._spikes = SpikeHold(fs)
        self.min_delay_s = float(min_delay_s)
        self._detector = PpgBeatDetector(fs, max_delay_s=max_delay_s, beat_offset=beat_offset, fiducial="peak",
                                         min_delay_s=min_delay_s, shape_check=False, hold_spikes=False)
        self.reset()

    def __setstate__(self, saved: dict) -> None:
        self.__dict__.update(saved)
        if "min_delay_s" not in saved:  # a checkpoint from before the ECG's own refractory period
            self.min_delay_s = 0.2
            self._detector.min_delay = self.min_delay_s * self.sampling_rate
        if "_spikes" not in saved:  # a checkpoint from before the glitch filter: it clears the raw ECG
            self._spikes = SpikeHold(self.sampling_rate)
            self._detector._spikes = None

    def reset(self) -> None:
        """Forget everything (a new wearer or a new recording)."""
        self._detector.reset()
        self.state = EcgState(clock=SampleClockState(), bandpass=CausalSOSState(),
                              detector=self._detector.state)

    def update(self, t0_s: float, ecg_mv: np.ndarray) -> BeatBatch:
        """Take the next samples (first one at ``t0_s``, unix s; mV); return the beats now known.

        Returns
        -------
        BeatBatch
            R-peak times (unix s) decided by this call and the watermark before which every
            beat has been emitted.
        """
        s = self.state
        self._clock.state = s.clock
        self._detector.state = s.detector
        x = np.asarray(ecg_mv, dtype=float)
        a = self._clock.align(t0_s, len(x))
        x = x[a.skip:]
        if a.gap:  # restart the front end; the inner detector sees the same gap and restarts
            s.bandpass, s.zi_energy = CausalSOSState(), None
            self._spikes.state = s.spikes
            self._spikes.restart()
            s.spikes = self._spikes.state
        if len(x) == 0:
            return self._shift(self._detector.update(t0_s, x))
        x = hold_last_usable(x, s.last_x)
        s.last_x = float(x[-1])
        self._spikes.state = s.spikes
        x = self._spikes.update(x)
        s.spikes = self._spikes.state
        self._bandpass.state = s.bandpass
        y = self._bandpass.update(x)
        s.bandpass = self._bandpass.state
        if s.zi_energy is None:
            s.zi_energy = np.zeros(max(len(self.b_energy), 2) - 1)
        energy, s.zi_energy = lfilter_zi(self.b_energy, FIR_A, y * y, s.zi_energy)
        return self._shift(self._detector.update(float(a.times_s[0]), energy))

    def flush(self) -> BeatBatch:
        """End of the stream: every time is final (watermark +inf), as ``PpgBeatDetector``."""
        return BeatBatch(np.empty(0), math.inf, False)

    def _shift(self, beats: BeatBatch) -> BeatBatch:
        return BeatBatch(beats.times_s - self.delay_s, beats.watermark_s - self.delay_s,
                         beats.gap)
