"""The motion gate from a device's own step cadence, and when the motion signal goes missing.

Garmin exports have no accelerometer but a step counter (``STEPS``): it becomes the ``cadence``
signal (steps/min), and walking withholds the score as accelerometer movement does. Before,
the counter was ignored and all three trigger decisions of the FLIRT Garmin session (audit 16)
fell during walks of about 110 steps/min.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.analyze import analyze_recording
from monitor.core.base import Features
from monitor.core.motion import MOVING_CADENCE_STEPS_PER_MIN, CadenceProcessor
from monitor.core.policy import Decision
from monitor.core.score import MOTION_MEMORY_S, ScoreConfig, StressScorer
from monitor.recordings import read_recording
from tests.conftest import data_path

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def garmin_csv():
    return data_path("flirt-e4-garmin", "garmin", "data.csv")


@pytest.fixture(scope="module")
def garmin(garmin_csv):
    return read_recording(garmin_csv)


@pytest.fixture(scope="module")
def counter(garmin_csv):
    """The watch's own STEPS lines: (unix s, steps so far), the reference for the cadence."""
    raw = pd.read_csv(garmin_csv, sep=";", header=None, names=["time", "type", "value"])
    steps = raw[raw["type"] == "STEPS"]
    t = pd.to_datetime(steps["time"], format="ISO8601", utc=True).map(pd.Timestamp.timestamp).to_numpy()
    return t, steps["value"].to_numpy(dtype=float)


def walks(counter, min_steps_per_min=MOVING_CADENCE_STEPS_PER_MIN, min_s=120.0):
    """Spans (unix s) between two counter lines at least ``min_s`` apart in total whose steps
    per minute, straight from the counter, are at least ``min_steps_per_min``."""
    t, steps = counter
    out = []
    for k in range(1, len(t)):
        dt = t[k] - t[k - 1]
        if dt > 0 and 60.0 * (steps[k] - steps[k - 1]) / dt >= min_steps_per_min:
            if out and out[-1][1] == t[k - 1]:
                out[-1][1] = t[k]
            else:
                out.append([t[k - 1], t[k]])
    return [(a, b) for a, b in out if b - a >= min_s]


def test_the_cadence_follows_the_watch_s_own_step_counter(garmin, counter):
    cadence = garmin.streams["cadence"]
    times = cadence.times_s()
    spans = walks(counter)
    # the session's walks, from the counter itself: 10:32-10:41 and 14:00-14:08 UTC (12:32 and
    # 16:00 local), ~110 steps/min; 644 steps between 10:35:01 and 10:41:01 UTC
    assert len(spans) >= 2
    t, steps = counter
    i, j = np.searchsorted(t, [pd.Timestamp("2019-10-16T10:35:01Z").timestamp(),
                               pd.Timestamp("2019-10-16T10:41:01Z").timestamp()], side="left")
    expected = 60.0 * (steps[j] - steps[i]) / (t[j] - t[i])  # 107.3 steps/min
    inside = (times > t[i] + 15) & (times <= t[j] - 15)  # away from the 30 s averaging's edges
    assert np.mean(cadence.values[inside]) == pytest.approx(expected, rel=0.03)
    # between the walks (14:14-15:59 UTC, 17 steps in 1 h 45 min) the wearer sat
    quiet = (times > pd.Timestamp("2019-10-16T12:20Z").timestamp()) & (times < pd.Timestamp("2019-10-16T13:50Z").timestamp())
    assert quiet.sum() > 3000 and np.max(cadence.values[quiet]) < 5.0
    assert np.all((cadence.values >= 0) & (cadence.values <= 300))


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_the_cadence_processor_is_chunk_invariant(garmin, chunk):
    cadence = garmin.streams["cadence"]

    def feed(step):
        p, out = CadenceProcessor(cadence.fs), []
        for i0, i1, t0 in cadence.runs():
            step_n = step or (i1 - i0)
            for i in range(i0, i1, step_n):
                out.extend(p.update(t0 + (i - i0) / cadence.fs, cadence.values[i:min(i + step_n, i1)]))
        return [(f.t, f.values, f.quality) for f in out]

    whole = feed(None)
    assert sum(f[1].get("CADENCE_Moving") == 1.0 for f in whole) > 50
    assert feed(chunk) == whole


def test_walking_withholds_the_score_and_gives_no_check_in(garmin, counter):
    result = analyze_recording(garmin, progress=False)
    spans = walks(counter)
    decisions = [d for tk in result.ticks for d in tk.decisions if isinstance(d, Decision)]
    # no trigger decision during a walk or the hold-off after it (before: three, all in walks)
    assert not [d.t for d in decisions for a, b in spans if a <= d.t <= b + 120.0]
    in_walks = [tk for tk in result.ticks for a, b in spans if a + 60.0 <= tk.t <= b]
    assert len(in_walks) > 50
    assert sum(tk.score.gate == "motion" for tk in in_walks) >= 0.9 * len(in_walks)


def calm(t_s, moving=None, hr=65.0):
    values = {"HR_Mean": hr}
    if moving is not None:
        values["ACC_Moving"] = moving
    return Features(t_s, values, {"heart": "ok"})


def test_a_missing_accelerometer_withholds_the_score_until_an_hour_has_passed():
    """A wristband whose accelerometer stops while its heart rate goes on: moving or not, nobody
    knows, so the score waits (gate motion_unknown) and nothing is learned; after
    MOTION_MEMORY_S the wearer is scored like one whose device has no accelerometer. Before,
    the missing value counted as "still" at once."""
    s = StressScorer(ScoreConfig(warmup_s=300.0))
    t = T0
    for _ in range(120):  # 10 min calm with the accelerometer
        t += 5.0
        s.update(calm(t, moving=0.0, hr=65.0 + np.sin(t)))
    last_acc = t
    mean = s.baseline.mean("HR_Mean")
    gates = []
    while t < last_acc + MOTION_MEMORY_S + 60.0:
        t += 5.0
        gates.append((t - last_acc, s.update(calm(t, hr=80.0)).gate))
    assert all(g == "motion_unknown" for dt, g in gates if dt <= MOTION_MEMORY_S)
    assert all(g is None for dt, g in gates if dt > MOTION_MEMORY_S + 5.0)
    assert s.baseline.mean("HR_Mean") == mean  # unknown motion is not learned (and the
    # scored ticks after it, at +15 bpm, are not calm)
    assert s.update(calm(t + 5.0, moving=0.0, hr=80.0)).gate is None  # the accelerometer is back


def test_a_device_without_a_motion_signal_is_scored_as_before():
    s = StressScorer(ScoreConfig(warmup_s=30.0))
    scores = [s.update(calm(T0 + 5.0 * k, hr=65.0 + k % 2)) for k in range(20)]
    assert all(sc.gate is None for sc in scores[6:])


def test_an_empty_first_batch_gives_no_ticks_and_no_error():
    """(review 16: an empty first batch raised IndexError in the shared windowed processor)"""
    from monitor.core.temp import TempProcessor

    for p in (CadenceProcessor(1.0), TempProcessor(4.0)):
        assert p.update(T0, np.array([])) == []
        two_min = np.full(int(120 * p.sampling_rate), 110.0 if isinstance(p, CadenceProcessor) else 33.0)
        assert len(p.update(T0, two_min)) > 10
