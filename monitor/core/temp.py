"""Skin temperature: level and slope per window.

Anxiety narrows peripheral blood vessels, so wrist skin temperature tends to drop slightly
during acute stress (Vinkers et al. 2013); the slope over a minute shows that drop.
"""

from __future__ import annotations

import numpy as np

from monitor.core.base import (
    QUALITY_INSUFFICIENT,
    QUALITY_OFF_SKIN,
    QUALITY_OK,
    Features,
    WindowedSamples,
    WindowedSamplesState,
    mean_of,
)

SKIN_RANGE_C = (25.0, 42.0)  # outside this the sensor is off the skin or the reading is wrong


TempState = WindowedSamplesState  # (the name checkpoints before the bins pickled)


class TempProcessor(WindowedSamples):
    """``TEMP_Mean`` (°C) and ``TEMP_Slope`` (°C/min, least squares) over ``window_s`` at each tick.

    Quality ``"off_skin"`` when the window's mean is outside 25-42 °C; values are then withheld.
    ``TEMP_Slope`` is absent from a window of one sample (a device logging once a minute).
    Each 1 s bin keeps its samples' mean time and temperature and their sums of squared and
    crossed deviations, which pool into the window's mean and least-squares slope (those of
    the samples, up to rounding) in a state that does not grow with the sampling rate.

    Example
    -------
    >>> p = TempProcessor(sampling_rate=4.0, window_s=60.0)
    >>> out = p.update(1_700_000_000.0, np.linspace(33.0, 32.5, 4 * 120))
    >>> round(out[-1].values["TEMP_Slope"], 2)
    -0.25
    """

    # every key its Features' values can hold (a column each in analyze's indicators.csv)
    INDICATOR_KEYS = ("TEMP_Mean", "TEMP_Slope")

    # a bin's mean time (s, from its end) and temperature (°C), and its sums of squared time
    # deviations (s²) and of time x temperature deviations (s °C)
    summary_width = 4

    def __init__(self, sampling_rate: float, tick_s: float = 5.0, window_s: float = 60.0,
                 min_coverage: float = 0.8):
        self.min_coverage = min_coverage
        super().__init__(sampling_rate, tick_s, window_s)

    def update(self, t0_s: float, temp_c: np.ndarray) -> list[Features]:
        """Samples of skin temperature (°C) from ``t0_s`` (unix s) at the sampling rate; returns
        the ticks now complete (``TEMP_Mean`` °C, ``TEMP_Slope`` °C/min)."""
        return super().update(t0_s, temp_c)

    def _summary(self, t_rel_s: np.ndarray, temp_c: np.ndarray) -> tuple[float, ...]:
        t_mean, temp_mean = mean_of(t_rel_s), mean_of(temp_c)
        dt = t_rel_s - t_mean
        return t_mean, temp_mean, float(np.add.reduce(dt * dt)), float(np.add.reduce(dt * (temp_c - temp_mean)))

    def _features(self, tick_s: float) -> Features:
        ends_s, bins = self._window(tick_s)
        n = bins[:, 0]
        n_total = float(np.add.reduce(n))
        if not n_total or n_total < self.min_coverage * self.window_s * self.sampling_rate:
            return Features(tick_s, {}, {"temp": QUALITY_INSUFFICIENT})
        temp_c = bins[:, 2]
        mean = float(np.add.reduce(n * temp_c)) / n_total
        if not SKIN_RANGE_C[0] <= mean <= SKIN_RANGE_C[1]:
            return Features(tick_s, {}, {"temp": QUALITY_OFF_SKIN})
        t_s = ends_s - tick_s + bins[:, 1]  # each bin's mean time, from the tick
        dt = t_s - float(np.add.reduce(n * t_s)) / n_total  # from the window's mean time
        # the window's sums of squared and crossed deviations: the bins' own plus their means'
        stt = float(np.add.reduce(bins[:, 3]) + np.add.reduce(n * dt * dt))
        stx = float(np.add.reduce(bins[:, 4]) + np.add.reduce(n * dt * (temp_c - mean)))
        values = {"TEMP_Mean": mean}
        if stt > 0.0:  # a slope needs two sample times (a watch logging once a minute has one)
            values["TEMP_Slope"] = stx / stt * 60.0
        return Features(tick_s, values, {"temp": QUALITY_OK})
