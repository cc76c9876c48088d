"""Accelerometer: activity level and a motion flag per window.

Movement raises heart rate and sweating without anxiety, so the score is withheld or
discounted while the wearer moves. Activity is measured per one-second epoch as the standard
deviation of the acceleration magnitude (in g; independent of how the device is worn and of
gravity), then summarised over the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from monitor.core.base import (
    EPOCH_S,
    QUALITY_INSUFFICIENT,
    QUALITY_OK,
    Alignment,
    Features,
    Processor,
    SampleClock,
    TickGrid,
    WindowedSamples,
    WindowedSamplesState,
    mean_of,
    row_norms,
    std_of,
)


def epoch_runs(times: np.ndarray) -> list[tuple[int, int, int]]:
    """Split increasing sample times into runs of one epoch each: ``(epoch, i0, i1)`` with
    ``epoch = floor(t / EPOCH_S)`` of the samples ``i0:i1``.

    >>> epoch_runs(np.array([9.5, 9.75, 10.0, 10.25, 12.0]))
    [(9, 0, 2), (10, 2, 4), (12, 4, 5)]
    """
    u = times / EPOCH_S
    e0, e1 = math.floor(u[0]), math.floor(u[-1])
    if e0 == e1:  # a batch within one epoch
        return [(e0, 0, len(u))]
    # floor(u) >= e from the first u >= e on: one search per epoch boundary
    if e1 == e0 + 1:  # the usual case for one-second batches
        b = int(u.searchsorted(e1))
        return [(e0, 0, b), (e1, b, len(u))]
    starts = sorted(set(u.searchsorted(np.arange(e0 + 1, e1 + 1)).tolist()))
    bounds = [0] + starts + [len(u)]
    return [(math.floor(u[i0]), i0, i1) for i0, i1 in zip(bounds[:-1], bounds[1:])]


def aligned_epoch_runs(a: Alignment, sampling_rate: float) -> list[tuple[int, int, int]]:
    """``epoch_runs(a.times_s)`` from a few sample times computed alone, without the array.

    >>> from monitor.core.base import SampleClock
    >>> a = SampleClock(4.0).align(9.5, 5)
    >>> aligned_epoch_runs(a, 4.0) == epoch_runs(a.times_s)
    True
    """
    def epoch(i: int) -> int:
        return math.floor(a.time(i) / EPOCH_S)

    n = a.n
    e, e_last = epoch(0), epoch(n - 1)
    runs, i0, t0 = [], 0, a.time(0)
    while e != e_last:
        # the first sample of a later epoch: estimated from the rate, then found exactly
        i = min(n - 1, max(i0 + 1, math.ceil(((e + 1) * EPOCH_S - t0) * sampling_rate)))
        while i > i0 + 1 and epoch(i - 1) > e:
            i -= 1
        while epoch(i) == e:
            i += 1
        runs.append((e, i0, i))
        i0, e = i, epoch(i)
    runs.append((e, i0, n))
    return runs


@dataclass
class AccState:
    clock: object
    ticks: object
    open_epoch: int | None = None  # second (unix, floor) whose samples are being collected
    open_samples: list = field(default_factory=list)  # magnitudes (g) of the open epoch
    epochs_t: np.ndarray = None  # start of each closed epoch kept (ring, unix s)
    epochs_sd: np.ndarray = None  # SD of magnitude of each closed epoch (g)
    n_epochs: int = 0


class AccProcessor(Processor):
    """``ACC_Activity`` (g), ``ACC_Moving_Fraction`` (0-1) and ``ACC_Moving`` (0/1) per window.

    An epoch is "moving" when the SD of the magnitude within it exceeds ``moving_sd_g``
    (0.1 g), and the window counts as moving when at least ``moving_fraction`` (half) of its
    epochs move: sustained movement such as walking (0.15-0.4 g per second at the wrist) rather
    than the gestures of someone talking or typing (on the seated Stress-Predict sessions S02 and
    S05 the 90th percentile of epochs is 0.07 and 0.03 g).

    Example
    -------
    >>> p = AccProcessor(sampling_rate=32.0, window_s=10.0)
    >>> still = np.tile([0.0, 0.0, 1.0], (32 * 20, 1))
    >>> p.update(1_700_000_000.0, still)[-1].values["ACC_Moving"]
    0.0
    """

    # every key its Features' values can hold (a column each in analyze's indicators.csv)
    INDICATOR_KEYS = ("ACC_Activity", "ACC_Moving_Fraction", "ACC_Moving")

    def __init__(self, sampling_rate: float, tick_s: float = 5.0, window_s: float = 60.0,
                 moving_sd_g: float = 0.1, moving_fraction: float = 0.5, min_coverage: float = 0.8):
        self.sampling_rate = float(sampling_rate)
        self.tick_s = tick_s
        self.window_s = window_s
        self.moving_sd_g = moving_sd_g
        self.moving_fraction = moving_fraction
        self.min_coverage = min_coverage
        self.reset()

    def reset(self) -> None:
        n = int(math.ceil(self.window_s / EPOCH_S)) + 2
        self.state = AccState(clock=SampleClock(self.sampling_rate), ticks=TickGrid(self.tick_s),
                              epochs_t=np.full(n, np.nan), epochs_sd=np.zeros(n))

    def update(self, t0_s: float, acc_g: np.ndarray) -> list[Features]:
        """``acc_g`` has shape (n, 3): x, y, z in g."""
        s = self.state
        acc_g = np.asarray(acc_g, dtype=float).reshape(-1, 3)
        a = s.clock.align(t0_s, len(acc_g))
        if not a.n:
            return []
        if a.gap or s.ticks.state.next_k is None:  # ticks start at the first sample, whatever the batch
            s.ticks.skip_to(a.time(0))
        magnitude = row_norms(acc_g[a.skip:] if a.skip else acc_g).tolist()
        out = []
        # close every epoch before the last one in this batch
        for e, i0, i1 in aligned_epoch_runs(a, self.sampling_rate):
            if s.open_epoch is not None and e != s.open_epoch:
                self._close_epoch()
                # every epoch before e is closed: ticks up to its start are final
                out.extend(self._features(t) for t in s.ticks.due(e * EPOCH_S))
            s.open_epoch = e
            s.open_samples.extend(magnitude[i0:i1])
        return out

    def _close_epoch(self) -> None:
        s = self.state
        if len(s.open_samples) >= 0.5 * self.sampling_rate * EPOCH_S:
            with np.errstate(invalid="ignore", over="ignore"):  # (inf - inf: NaN, refused below)
                sd = std_of(np.array(s.open_samples))  # np.std's arithmetic
            if not math.isfinite(sd):  # magnitudes beyond float range (1e300 g): no reading
                s.open_samples = []
                return
            i = s.n_epochs % len(s.epochs_t)
            s.epochs_t[i] = s.open_epoch * EPOCH_S
            s.epochs_sd[i] = sd
            s.n_epochs += 1
        s.open_samples = []

    def _features(self, tick_s: float) -> Features:
        s = self.state
        keep = (s.epochs_t >= tick_s - self.window_s) & (s.epochs_t < tick_s)
        sd = s.epochs_sd[keep]
        if len(sd) < self.min_coverage * self.window_s / EPOCH_S:
            return Features(tick_s, {}, {"acc": QUALITY_INSUFFICIENT})
        fraction = mean_of(sd > self.moving_sd_g)  # the share of moving epochs
        return Features(
            tick_s,
            {"ACC_Activity": mean_of(sd), "ACC_Moving_Fraction": fraction,
             "ACC_Moving": float(fraction >= self.moving_fraction)},
            {"acc": QUALITY_OK},
        )


MOVING_CADENCE_STEPS_PER_MIN = 60.0  # slower than the slowest walking (~70-80 steps/min): a walk moves


CadenceState = WindowedSamplesState  # (the name checkpoints before the bins pickled)


class CadenceProcessor(WindowedSamples):
    """``CADENCE_Mean`` (steps/min), ``CADENCE_Moving_Fraction`` (0-1) and ``CADENCE_Moving``
    (0/1) per window, from a device's own step cadence (steps/min, a regular stream: a watch's
    step counter resampled, ``monitor/readers/garmin.py``, or a Running Speed and Cadence
    sensor).

    A sample moves at ``moving_steps_per_min`` (60) or more, and the window counts as moving when
    at least ``moving_fraction`` (half) of its samples move, as for the accelerometer: a walk
    (100-120 steps/min) moves, a few steps to the kitchen do not.

    Example
    -------
    >>> p = CadenceProcessor(sampling_rate=1.0, window_s=60.0)
    >>> walk = np.r_[np.zeros(60), np.full(60, 110.0)]  # a minute still, then a minute walking
    >>> moving = {f.t - 1_700_000_000.0: f.values.get("CADENCE_Moving") for f in p.update(1_700_000_000.0, walk)}
    >>> moving[45.0], moving[85.0], moving[90.0]  # under 80 % of a window; 25 s walking; 30 s
    (None, 0.0, 1.0)
    """

    # every key its Features' values can hold (a column each in analyze's indicators.csv)
    INDICATOR_KEYS = ("CADENCE_Mean", "CADENCE_Moving_Fraction", "CADENCE_Moving")

    summary_width = 2  # a bin's sum of cadences (steps/min) and its samples that move

    def __init__(self, sampling_rate: float, tick_s: float = 5.0, window_s: float = 60.0,
                 moving_steps_per_min: float = MOVING_CADENCE_STEPS_PER_MIN, moving_fraction: float = 0.5,
                 min_coverage: float = 0.8):
        self.moving_steps_per_min = moving_steps_per_min
        self.moving_fraction = moving_fraction
        self.min_coverage = min_coverage
        super().__init__(sampling_rate, tick_s, window_s)

    def _summary(self, t_rel_s: np.ndarray, cadence: np.ndarray) -> tuple[float, ...]:
        return float(np.add.reduce(cadence)), float(np.count_nonzero(cadence >= self.moving_steps_per_min))

    def _features(self, tick_s: float) -> Features:
        _, bins = self._window(tick_s)
        n = float(np.add.reduce(bins[:, 0]))
        if not n or n < self.min_coverage * self.window_s * self.sampling_rate:
            return Features(tick_s, {}, {"cadence": QUALITY_INSUFFICIENT})
        fraction = float(np.add.reduce(bins[:, 2])) / n
        return Features(tick_s, {"CADENCE_Mean": float(np.add.reduce(bins[:, 1])) / n,
                                 "CADENCE_Moving_Fraction": fraction,
                                 "CADENCE_Moving": float(fraction >= self.moving_fraction)},
                        {"cadence": QUALITY_OK})
