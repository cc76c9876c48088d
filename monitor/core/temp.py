"""Skin temperature: level and slope per window.

Anxiety narrows peripheral blood vessels, so wrist skin temperature tends to drop slightly
during acute stress (Vinkers et al. 2013); the slope over a minute shows that drop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.core.base import QUALITY_INSUFFICIENT, QUALITY_OK, Features, WindowedSamples, mean_of, slope_of

SKIN_RANGE_C = (25.0, 42.0)  # outside this the sensor is off the skin or the reading is wrong


@dataclass
class TempState:
    clock: object
    ticks: object
    ring: object


class TempProcessor(WindowedSamples):
    """``TEMP_Mean`` (°C) and ``TEMP_Slope`` (°C/min, least squares) over ``window_s`` at each tick.

    Quality ``"off_skin"`` when the window's mean is outside 25-42 °C; values are then withheld.

    Example
    -------
    >>> p = TempProcessor(sampling_rate=4.0, window_s=60.0)
    >>> out = p.update(1_700_000_000.0, np.linspace(33.0, 32.5, 4 * 120))
    >>> round(out[-1].values["TEMP_Slope"], 2)
    -0.25
    """

    # every key its Features' values can hold (a column each in analyze's indicators.csv)
    INDICATOR_KEYS = ("TEMP_Mean", "TEMP_Slope")

    state_class = TempState

    def __init__(self, sampling_rate: float, tick_s: float = 5.0, window_s: float = 60.0,
                 min_coverage: float = 0.8):
        self.min_coverage = min_coverage
        super().__init__(sampling_rate, tick_s, window_s)

    def update(self, t0_s: float, temp_c: np.ndarray) -> list[Features]:
        """Samples of skin temperature (°C) from ``t0_s`` (unix s) at the sampling rate; returns
        the ticks now complete (``TEMP_Mean`` °C, ``TEMP_Slope`` °C/min)."""
        return super().update(t0_s, temp_c)

    def _features(self, tick_s: float) -> Features:
        t, x = self.state.ring.window(tick_s - self.window_s, tick_s)
        if len(x) < self.min_coverage * self.window_s * self.sampling_rate:
            return Features(tick_s, {}, {"temp": QUALITY_INSUFFICIENT})
        mean = mean_of(x)
        if not SKIN_RANGE_C[0] <= mean <= SKIN_RANGE_C[1]:
            return Features(tick_s, {}, {"temp": "off_skin"})
        slope_per_s = slope_of(t - tick_s, x)
        return Features(tick_s, {"TEMP_Mean": mean, "TEMP_Slope": slope_per_s * 60.0},
                        {"temp": QUALITY_OK})
