"""The shared building blocks of the core: causal filtering, sample clocks, ticks, rings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from monitor.core.base import CausalSOS, SampleClock, TickGrid, TimeRing


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
