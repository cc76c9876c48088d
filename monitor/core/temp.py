"""Skin temperature: level and slope per window.

Anxiety narrows peripheral blood vessels, so wrist skin temperature tends to drop slightly
during acute stress (Vinkers et al. 2013); the slope over a minute shows that drop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.core.base import (
    QUALITY_INSUFFICIENT,
    QUALITY_OK,
    Features,
    Processor,
    SampleClock,
    TickGrid,
    TimeRing,
    mean_of,
    slope_of,
)

SKIN_RANGE_C = (25.0, 42.0)  # outside this the sensor is off the skin or the reading is wrong


@dataclass
class TempState:
    clock: object
    ticks: object
    ring: object


class TempProcessor(Processor):
    """``TEMP_Mean`` (°C) and ``TEMP_Slope`` (°C/min, least squares) over ``window_s`` at each tick.

    Quality ``"off_skin"`` when the window's mean is outside 25-42 °C; values are then withheld.

    Example
    -------
    >>> p = TempProcessor(sampling_rate=4.0, window_s=60.0)
    >>> out = p.update(1_700_000_000.0, np.linspace(33.0, 32.5, 4 * 120))
    >>> round(out[-1].values["TEMP_Slope"], 2)
    -0.25
    """

    def __init__(self, sampling_rate: float, tick_s: float = 5.0, window_s: float = 60.0,
                 min_coverage: float = 0.8):
        self.sampling_rate = float(sampling_rate)
        self.tick_s = tick_s
        self.window_s = window_s
        self.min_coverage = min_coverage
        self.reset()

    def reset(self) -> None:
        self.state = TempState(
            clock=SampleClock(self.sampling_rate),
            ticks=TickGrid(self.tick_s),
            ring=TimeRing(int(np.ceil(self.window_s * self.sampling_rate)) + 1),
        )

    def update(self, t0_s: float, temp_c: np.ndarray) -> list[Features]:
        """Samples of skin temperature (°C) from ``t0_s`` (unix s) at the sampling rate; returns
        the ticks now complete (``TEMP_Mean`` °C, ``TEMP_Slope`` °C/min)."""
        s = self.state
        a = s.clock.align(t0_s, len(temp_c))
        x = np.asarray(temp_c, dtype=float)
        if a.skip:
            x = x[a.skip:]
        if a.gap or s.ticks.state.next_k is None:  # ticks start at the first sample, whatever the batch
            s.ticks.skip_to(a.times_s[0])
        if not len(x):
            return []
        times, out = a.times_s, []
        for tick in s.ticks.due(times[-1]):  # the ring holds a window: fill it tick by tick
            k = int(times.searchsorted(tick, side="right"))
            s.ring.extend(times[:k], x[:k])
            times, x = times[k:], x[k:]
            out.append(self._features(tick))
        s.ring.extend(times, x)
        return out

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
