"""The shared building blocks of the core: causal filtering, sample clocks, ticks, rings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from monitor.core.base import CausalSOS, SampleClock, TickGrid, TimeRing
from monitor.core.ecg import EcgBeatDetector
from monitor.core.ppg import PpgBeatDetector
from tests.conftest import data_path


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
@pytest.mark.parametrize("fs, band", [(4.0, 1.0), (64.0, [0.5, 8.0])])
def test_causal_sos_equals_scipy_sosfilt_bit_for_bit(chunk, fs, band):
    """Reference: scipy.signal.sosfilt on the whole signal with zi = sosfilt_zi * x[0]."""
    x = np.random.default_rng(1).normal(5.0, 1.0, 1000)
    btype = "lowpass" if np.isscalar(band) else "bandpass"
    f = CausalSOS.butter(2, band, btype, sampling_rate=fs)
    step = chunk or len(x)
    ours = np.concatenate([f.update(x[i:i + step]) for i in range(0, len(x), step)])
    ref, _ = sps.sosfilt(f.sos, x, zi=sps.sosfilt_zi(f.sos) * x[0])
    assert np.array_equal(ours, ref)


def test_causal_sos_clips_cutoffs_below_nyquist_so_it_works_at_4_hz():
    f = CausalSOS.butter(2, 5.0, "lowpass", sampling_rate=4.0)  # 5 Hz > Nyquist of 2 Hz
    assert np.all(np.isfinite(f.update(np.ones(10))))


def test_sample_clock_counts_samples_and_detects_gaps_and_overlaps():
    c = SampleClock(4.0)
    assert c.align(100.0, 4).times_s.tolist() == [100.0, 100.25, 100.5, 100.75]
    jittered = c.align(101.02, 2)  # 0.08 samples late: same segment, times by counting
    assert jittered.times_s.tolist() == [101.0, 101.25] and not jittered.gap
    overlap = c.align(101.0, 3)  # repeats the two samples at 101.0 and 101.25
    assert overlap.skip == 2 and overlap.times_s.tolist() == [101.5]
    gap = c.align(110.0, 1)
    assert gap.gap and gap.times_s.tolist() == [110.0] and c.state.segment == 1


def _feed(detector, stamps_s, x, batch):
    """Beat times of ``x`` fed ``batch`` samples at a time, each batch stamped by ``stamps_s``
    (the time of its first sample), and the samples the detector's clock dropped."""
    beats, dropped = [], 0
    for i in range(0, len(x), batch):
        before = detector.state.clock.n_seen
        beats += detector.update(float(stamps_s[i]), x[i:i + batch]).times_s.tolist()
        dropped += len(x[i:i + batch]) - (detector.state.clock.n_seen - before)
    return np.array(beats), dropped


def test_a_device_sampling_faster_than_it_declares_loses_no_samples():
    """Polar H10 ECG (../shared/data/polar-h10): the strap declares 130 Hz, its time stamps say
    ~130.16 Hz (a least-squares line through time_ns; residual jitter of a few ms). A phone
    forwarding 1 s batches stamped with those times and fs = 130 made the clock drop 2 samples
    every ~9 s (a splice of the waveform: 96 samples in 10 min, beat intervals off by up to
    16 ms). Reference: the same detector at the fitted rate with counted times (what
    ``anxmon analyze`` does, ``readers.common.regular_stream``)."""
    import pandas as pd

    d = pd.read_csv(data_path("polar-h10", "polar_h10.csv"))
    stamps, x = d["time_ns"].to_numpy() / 1e9, d["ecg"].to_numpy(float)
    slope, start = np.polyfit(np.arange(len(x)), stamps, 1)
    assert 130.1 < 1.0 / slope < 130.2
    ref, _ = _feed(EcgBeatDetector(1.0 / slope), start + slope * np.arange(len(x)), x, 130)
    det = EcgBeatDetector(130.0)
    got, dropped = _feed(det, stamps, x, 130)
    assert det.state.clock.segment == 0 and dropped == 0
    assert len(got) == len(ref) > 700
    # HRV reads intervals: each within one sample of the reference's (re-anchoring moves the
    # times by at most half a sample, the stamps' jitter adds the rest)
    assert np.abs(np.diff(got) - np.diff(ref)).max() < 1.0 / 130.0


def test_a_device_sampling_slower_than_it_declares_is_not_restarted():
    """neurokit2's resting PPG (100 Hz, 300 s) stamped by a device clock 100 ppm fast (a
    quartz at its limit; ``clock_drift_ppm`` of the simulator): the counted times fell behind
    the stamps by 1.5 samples after 150 s and the detector restarted there, losing its beats
    for the warm-up. Reference: the same samples with exact stamps."""
    import pandas as pd

    x = pd.read_csv(data_path("neurokit", "bio_resting_5min_100hz.csv"))["PPG"].to_numpy(float)
    t0 = 1_700_000_000.0
    exact = t0 + np.arange(len(x)) / 100.0
    ref, _ = _feed(PpgBeatDetector(100.0), exact, x, 100)
    det = PpgBeatDetector(100.0)
    got, dropped = _feed(det, t0 + (exact - t0) * (1 + 100e-6), x, 100)
    assert det.state.clock.segment == 0 and dropped == 0
    assert len(got) == len(ref) > 300
    # the times follow the device's clock (within the clock's 1.5-sample tolerance) ...
    assert np.abs(got - (t0 + (ref - t0) * (1 + 100e-6))).max() <= 1.5 / 100.0 + 1e-6
    # ... and the intervals change only where the times were moved forward to it
    assert np.abs(np.diff(got) - np.diff(ref)).max() <= 1.5 / 100.0 + 1e-6


@pytest.mark.parametrize("ppm", [-1500.0, 0.0, 1500.0])
def test_a_drifting_clock_still_reports_real_gaps_and_overlaps(ppm):
    fs, n = 130.0, 130  # 1 s batches
    c = SampleClock(fs)
    device_s = [1_700_000_000.0 + k * (1.0 + ppm * 1e-6) for k in range(200)]
    for t0 in device_s[:120]:  # two minutes of drift: 0.2 s at 1500 ppm
        a = c.align(t0, n)
        assert not a.gap and a.skip == 0
        assert abs(a.time(0) - t0) <= 1.5 / fs + 1e-6  # the counted times follow the device's
    old = c.align(device_s[100], n)  # a batch of a minute ago, sent again: dropped whole
    assert old.skip == n and not old.gap
    resent = c.align(device_s[119] + 0.5, n)  # its first half second was already sent
    assert resent.skip == 65 and not resent.gap
    a = c.align(device_s[121], n)  # the second half of second 120 never came
    assert a.gap and a.time(0) == device_s[121]
    short = c.align(device_s[122] + 3 / fs, n)  # 3 samples lost: more than 1.5 plus the drift
    assert short.gap


def test_tick_grid_is_absolute_and_hands_each_tick_out_once():
    g = TickGrid(5.0)
    g.skip_to(1_700_000_001.3)
    assert g.due(1_700_000_004.0) == []
    assert g.due(1_700_000_012.0) == [1_700_000_005.0, 1_700_000_010.0]
    assert g.due(1_700_000_012.0) == []


def test_time_ring_keeps_the_newest_samples_in_order():
    r = TimeRing(5)
    r.extend(np.arange(3.0), np.arange(3.0))
    r.extend(np.arange(3.0, 9.0), np.arange(3.0, 9.0))
    t, x = r.window(-1, 100)
    assert t.tolist() == [4.0, 5.0, 6.0, 7.0, 8.0] and x.tolist() == t.tolist()
