"""Skin temperature and step cadence, the processors that summarise a regular stream per window
(``WindowedSamples``): the same numbers as from the window's samples, whatever the sampling rate
(the wire contract allows up to 1000 Hz for every signal), in a state that does not grow with it.

The signal is the real 4 Hz skin temperature of Stress-Predict S02 (its first 12 minutes) and,
for the high rates, the same signal linearly interpolated to 1000 Hz.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from monitor.core.base import SampleClock, TickGrid, TimeRing, WindowedSamplesState
from monitor.core.motion import CadenceProcessor
from monitor.core.temp import TempProcessor
from monitor.recordings import read_recording
from tests.conftest import data_path

STATE_BUDGET_BYTES = 25_000  # a window of 1 s bins (~3 KB) and the open bin's samples (16 KB at 1000 Hz)


@pytest.fixture(scope="module")
def temp():
    """S02's skin temperature: (t0 unix s, 4 Hz samples in °C) of the first 12 minutes."""
    stream = read_recording(data_path("stress-predict", "S02")).streams["temp"]
    return stream.t0, stream.values[:int(12 * 60 * stream.fs)]


def upsampled(x: np.ndarray, fs: float, to_fs: float) -> np.ndarray:
    """``x`` sampled at ``fs`` (Hz), linearly interpolated to ``to_fs`` (Hz)."""
    n = int((len(x) - 1) / fs * to_fs) + 1
    return np.interp(np.arange(n) / to_fs, np.arange(len(x)) / fs, x)


def feed(p, t0: float, x: np.ndarray, chunk: int | None = None) -> list:
    step = chunk or len(x)
    return [(f.t, f.values, f.quality) for i in range(0, len(x), step)
            for f in p.update(t0 + i / p.sampling_rate, x[i:i + step])]


def by_hand(t: np.ndarray, x: np.ndarray, tick_s: float, window_s: float = 60.0) -> dict:
    """Mean (°C) and least-squares slope (°C/min) of the samples at ``t`` (unix s) in
    ``(tick - window_s, tick]``."""
    keep = (t > tick_s - window_s) & (t <= tick_s)
    return {"TEMP_Mean": float(np.mean(x[keep])),
            "TEMP_Slope": float(np.polyfit(t[keep] - tick_s, x[keep], 1)[0]) * 60.0}


@pytest.mark.parametrize("fs, tick_s, hole_s", [(4.0, 5.0, 0.0), (4.0, 2.5, 0.0), (4.0, 5.0, 37.3),
                                                (1000.0, 5.0, 0.0)])
def test_temperature_is_the_mean_and_slope_of_the_window_s_samples(temp, fs, tick_s, hole_s):
    t0, x4 = temp
    x = x4 if fs == 4.0 else upsampled(x4[:int(4 * 150)], 4.0, fs)  # (2.5 min at 1000 Hz)
    t = t0 + np.arange(len(x)) / fs
    p, rows = TempProcessor(fs, tick_s=tick_s), []
    if hole_s:  # the sensor is off for hole_s from minute 5: windows with a hole, then none
        cut = int(300 * fs)
        rows += feed(p, t0, x[:cut], chunk=int(fs))
        t, x = np.r_[t[:cut], t[cut:] + hole_s], x
        rows += feed(p, t[cut], x[cut:], chunk=int(fs))
    else:
        rows += feed(p, t0, x, chunk=int(fs))
    full = [(tick, values, quality) for tick, values, quality in rows if tick >= t0 + 60.0]
    assert len(full) > 10
    for tick, values, quality in full:
        n = np.count_nonzero((t > tick - 60.0) & (t <= tick))
        assert quality["temp"] == ("ok" if n >= 0.8 * 60.0 * fs else "insufficient")
        if quality["temp"] == "ok":
            want = by_hand(t, x, tick)
            assert values["TEMP_Mean"] == pytest.approx(want["TEMP_Mean"], rel=1e-12)
            # (polyfit rounds differently: see test_slope_of_equals_np_polyfit)
            assert values["TEMP_Slope"] == pytest.approx(want["TEMP_Slope"], rel=1e-9, abs=1e-9)
    if hole_s:
        assert sum(q["temp"] == "insufficient" for _, _, q in full) >= 5


def test_cadence_is_the_mean_and_moving_share_of_the_window_s_samples():
    """The Garmin session's 1 Hz cadence (46 h, with gaps between its runs of samples)."""
    cadence = read_recording(data_path("flirt-e4-garmin", "garmin", "data.csv")).streams["cadence"]
    p, rows = CadenceProcessor(cadence.fs), []
    for i0, i1, t0 in cadence.runs():
        rows += feed(p, t0, cadence.values[i0:i1], chunk=60)
    t, x = cadence.times_s(), cadence.values
    n_ok = 0
    for tick, values, quality in rows:
        inside = x[(t > tick - 60.0) & (t <= tick)]
        assert quality["cadence"] == ("ok" if len(inside) >= 0.8 * 60.0 * cadence.fs else "insufficient")
        if quality["cadence"] == "ok":
            n_ok += 1
            assert values["CADENCE_Mean"] == pytest.approx(float(np.mean(inside)), rel=1e-12, abs=1e-12)
            assert values["CADENCE_Moving_Fraction"] == float(np.mean(inside >= 60.0))
    assert n_ok > 1000 and sum(v.get("CADENCE_Moving") == 1.0 for _, v, _ in rows) > 50


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_temperature_at_1000_hz_is_chunk_invariant(temp, chunk):
    t0, x4 = temp
    x = upsampled(x4[:4 * 90], 4.0, 1000.0)  # 90 s: the ticks of 60 s to 85 s have a window
    whole = feed(TempProcessor(1000.0), t0, x)
    assert sum(q["temp"] == "ok" for _, _, q in whole) >= 5
    assert feed(TempProcessor(1000.0), t0, x, chunk) == whole


def test_temperature_at_1000_hz_resumes_from_a_checkpoint_mid_bin(temp):
    t0, x4 = temp
    x = upsampled(x4[:4 * 90], 4.0, 1000.0)
    whole = feed(TempProcessor(1000.0), t0, x, 1000)
    cut = 70_333  # to 70.332 s: the bin (70, 71] holds a third of its samples
    p = TempProcessor(1000.0)
    out = feed(p, t0, x[:cut], 1000)
    assert len(p.state.open_t) == 332
    q = TempProcessor(1000.0)
    q.set_state(pickle.loads(pickle.dumps(p.get_state())))
    assert out + feed(q, t0 + cut / 1000.0, x[cut:], 1000) == whole


@pytest.mark.parametrize("make", [TempProcessor, CadenceProcessor])
def test_the_state_at_1000_hz_stays_within_its_budget(temp, make):
    """Before, the processors kept every sample of the window: 960 KB at 1000 Hz, five times
    the whole wearer's budget of 200 KB (``anxmon bench core``'s state_bytes_per_wearer)."""
    t0, x4 = temp
    x = upsampled(x4[:4 * 600], 4.0, 1000.0)  # 10 minutes
    if make is CadenceProcessor:  # a walk every other minute (steps/min)
        x = np.where((np.arange(len(x)) // 60_000) % 2 == 1, 110.0, 0.0)
    p, sizes = make(1000.0), []
    for i in range(0, len(x), 1000):  # 1 s batches
        p.update(t0 + i / 1000.0, x[i:i + 1000])
        if i % 60_000 == 0:
            sizes.append(p.state_nbytes())
    assert max(sizes) < STATE_BUDGET_BYTES
    assert p.state_nbytes() < STATE_BUDGET_BYTES
    assert max(sizes[2:]) - min(sizes[2:]) < 1_000  # it does not grow once a window is full


def test_a_checkpoint_from_before_the_bins_resumes_with_the_same_values(temp):
    """A checkpoint written before the bins holds the window's samples in a ``TimeRing``; the
    service resumes from it after the upgrade, with the values it would have given."""
    t0, x = temp
    half = 4 * 300 + 2  # 300.5 s: a bin is open
    whole = TempProcessor(4.0)
    first = feed(whole, t0, x[:half], 4)
    # the state as the processor before the bins kept it: its clock, its ticks, and a ring of
    # the last window_s * fs + 1 samples
    clock, ticks = SampleClock(4.0), TickGrid(5.0)
    clock.state, ticks.state = whole.state.clock.state, whole.state.ticks.state
    ring = TimeRing(241)
    ring.extend(t0 + np.arange(half) / 4.0, x[:half])
    old = WindowedSamplesState.__new__(WindowedSamplesState)  # (unpickling sets its fields)
    old.__dict__.update(clock=clock, ticks=ticks, ring=ring)
    saved = TempProcessor(4.0)
    saved.state = old
    resumed = pickle.loads(pickle.dumps(saved))
    assert first and feed(resumed, t0 + half / 4.0, x[half:], 4) == feed(whole, t0 + half / 4.0, x[half:], 4)


@pytest.mark.filterwarnings("error")  # (nor a RuntimeWarning on the service's stderr)
@pytest.mark.parametrize("per_min", [1, 2])
def test_a_temperature_logged_once_a_minute_gives_a_mean_and_no_nan_slope(temp, per_min):
    """A watch that logs skin temperature once a minute has one sample in a 60 s window: its
    mean is known, a slope is not. Before, TEMP_Slope was NaN (0 / 0) with quality "ok"."""
    t0, x4 = temp
    step = 240 // per_min
    p = TempProcessor(per_min / 60.0)
    rows = feed(p, t0, x4[::step], chunk=1)
    ok = [f for f in rows if f[2]["temp"] == "ok"]
    assert len(ok) > 0.8 * len(rows) > 50
    assert all(np.isfinite(v) for _, values, _ in ok for v in values.values())
    assert all("TEMP_Mean" in values for _, values, _ in ok)
    with_slope = sum("TEMP_Slope" in values for _, values, _ in ok)
    assert with_slope == (0 if per_min == 1 else len(ok))
