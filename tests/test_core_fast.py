"""The core's fast paths give the same numbers, bit for bit, as the plain numpy/scipy forms
they replace (np.mean, np.std, np.polyfit, filter design, vectorised loops).

Each reference below is the straightforward form the core used before it was made faster;
equality is exact (``==`` / ``np.array_equal``), not approximate.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import signal as sps

from monitor.core.base import (
    CausalSOS,
    SampleClock,
    TimeRing,
    butter_ba,
    butter_sos,
    mean_of,
    row_norms,
    slope_of,
    std_of,
    steady_state_zi,
)
from monitor.core.eda import EdaProcessor, zero_phase_highpass_fir
from monitor.core.motion import aligned_epoch_runs, epoch_runs
from monitor.core.respiration import FR_HZ, RespirationProcessor, count_rates_bpm
from monitor.core.restlessness import periodicity


def _arrays(seed: int, count: int = 300):
    """Random 1-D float arrays of many lengths, contiguous and strided."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(1, 400))
        a = rng.normal(rng.normal(0.0, 50.0), rng.uniform(1e-4, 5.0), (n, 3))
        yield a[:, 1]  # strided
        yield a[:, 0].copy()


def test_mean_of_and_std_of_equal_numpy_bit_for_bit():
    for x in _arrays(1):
        assert mean_of(x) == float(np.mean(x))
        assert std_of(x) == float(np.std(x))
        if len(x) > 1:
            assert std_of(x, ddof=1) == float(np.std(x, ddof=1))
        flags = x > np.median(x)
        assert mean_of(flags) == float(np.mean(flags))
    assert math.isnan(mean_of(np.empty(0))) and math.isnan(std_of(np.ones(1), ddof=1))


def test_row_norms_equal_einsum():
    a = np.random.default_rng(2).normal(size=(500, 3))
    assert np.array_equal(row_norms(a[7:]), np.sqrt(np.einsum("ij,ij->i", a[7:], a[7:])))


def test_slope_of_equals_np_polyfit():
    """Windows like TempProcessor's: 4 Hz, 60 s before the tick, skin temperature in °C. The
    closed form and polyfit's scaled least squares round differently, so equal to 1e-9
    (relative; 1e-12 °C/s absolute near a slope of zero), far below the sensor's 0.01 °C."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(2, 250))
        t = -np.arange(n)[::-1] / 4.0
        x = 33.0 + rng.normal(0.0, 0.01) * t + np.round(rng.normal(0.0, 0.02, n), 2)
        assert slope_of(t, x) == pytest.approx(float(np.polyfit(t, x, 1)[0]), rel=1e-9, abs=1e-12)
    flat = np.full(240, 33.5)
    t = -np.arange(240)[::-1] / 4.0
    assert slope_of(t, flat) == 0.0


def test_cached_filter_designs_equal_scipy_and_are_read_only():
    sos = butter_sos(3, (0.5, 8.0), "bandpass", 64.0)
    assert np.array_equal(sos, sps.butter(3, [0.5, 8.0], btype="bandpass", fs=64.0, output="sos"))
    assert butter_sos(3, (0.5, 8.0), "bandpass", 64.0) is sos and not sos.flags.writeable
    b, a = butter_ba(2, (0.15, 0.7), "bandpass", 4.0)
    b_ref, a_ref = sps.butter(2, [0.15, 0.7], "bandpass", fs=4.0)
    assert np.array_equal(b, b_ref) and np.array_equal(a, a_ref)
    zi = steady_state_zi(b, a)
    assert np.array_equal(zi, sps.lfilter_zi(b, a)) and not zi.flags.writeable
    with pytest.raises(ValueError):
        zi[0] = 1.0
    # the filter gets its own writable copy (scipy's kernel needs one)
    f = CausalSOS.butter(3, [0.5, 8.0], "bandpass", sampling_rate=64.0)
    assert np.array_equal(f.sos, sos) and f.sos is not sos and f.sos.flags.writeable


def test_eda_phasic_filter_is_designed_once_and_equals_its_definition():
    """lfilter_zi of the 161-tap FIR solves a 160 x 160 system: done once, not per wearer."""
    p, q = EdaProcessor(4.0), EdaProcessor(4.0)
    assert p.fir is q.fir and p.fir_zi_unit is q.fir_zi_unit
    assert np.array_equal(p.fir, zero_phase_highpass_fir(0.05, 4.0, p.delay_n))
    assert np.array_equal(p.fir_zi_unit, sps.lfilter_zi(p.fir, np.array([1.0, 0.0])))


def _ring_window_reference(times: list, values: list, capacity: int, start: float, end: float):
    """TimeRing before it used slices: the last ``capacity`` samples, oldest first."""
    t, x = np.array(times[-capacity:]), np.array(values[-capacity:])
    keep = (t > start) & (t <= end)
    return t[keep], x[keep]


def test_time_ring_equals_keeping_the_last_samples():
    rng = np.random.default_rng(4)
    ring, times, values, now = TimeRing(13), [], [], 0.0
    for _ in range(300):
        k = int(rng.integers(0, 30))  # sometimes more than the capacity at once
        t = now + np.arange(1, k + 1) * 0.25
        x = rng.normal(size=k)
        now = float(t[-1]) if k else now
        ring.extend(t, x)
        times += t.tolist()
        values += x.tolist()
        start = now - float(rng.uniform(0.0, 5.0))
        got = ring.window(start, now)
        want = _ring_window_reference(times, values, 13, start, now)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def _epoch_runs_reference(times: np.ndarray) -> list:
    """The runs of equal floor(t) as AccProcessor split them before (np.diff of the epochs)."""
    epoch = np.floor(times / 1.0).astype(np.int64)
    bounds = np.flatnonzero(np.diff(epoch)) + 1
    starts, ends = np.concatenate([[0], bounds]), np.concatenate([bounds, [len(epoch)]])
    return [(int(epoch[i0]), int(i0), int(i1)) for i0, i1 in zip(starts, ends)]


@pytest.mark.parametrize("fs", [0.3, 1.0, 4.0, 32.0, 64.0])
def test_epoch_runs_from_the_array_or_from_single_times_agree(fs):
    rng = np.random.default_rng(int(fs * 10))
    clock, t0 = SampleClock(fs), 1_700_000_000.37
    for _ in range(200):
        n = int(rng.integers(1, 200))
        a = clock.align(t0, n)
        assert all(a.time(i) == a.times_s[i] for i in range(a.n))
        want = _epoch_runs_reference(a.times_s)
        assert epoch_runs(a.times_s) == want and aligned_epoch_runs(a, fs) == want
        t0 += n / fs + float(rng.choice([0.0, 0.0, 0.01, 7.3]))


def _periodicity_reference(x: np.ndarray, min_lag: int, max_lag: int) -> float:
    n = len(x)
    if n < 2 * max_lag:
        return math.nan
    x = x - x.sum() / n
    size = 1 << int(2 * n - 1).bit_length()
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, size)[min_lag:max_lag + 1]
    energy = np.cumsum(x * x)
    lags = np.arange(min_lag, max_lag + 1)
    denom = np.sqrt(energy[n - 1 - lags] * (energy[-1] - energy[lags - 1]))
    if not denom.min() > 0.0:
        return math.nan
    return float(np.max(acf / denom))


def test_periodicity_equals_the_plain_form():
    rng = np.random.default_rng(5)
    for n in list(range(60, 170, 7)) + [160] * 20:
        x = 1.0 + 0.05 * np.sin(np.arange(n) * rng.uniform(0.1, 1.0)) + rng.normal(0, 0.02, n)
        got, want = periodicity(x, 8, 40), _periodicity_reference(x, 8, 40)
        assert got == want or (math.isnan(got) and math.isnan(want))


def _count_rates_reference(z, valid, hysteresis=0.1, min_breaths=3):
    """count_rates_bpm before its numpy calls were trimmed (np.diff, np.cumsum, np.einsum)."""
    n, m = z.shape
    rates = np.full(m, np.nan)
    n_valid = np.count_nonzero(valid)
    if n_valid < 2:
        return rates
    zz = np.zeros((m, n + 1))
    zz[:, :n] = z.T
    zv = zz[:, :n] if n_valid == n else zz[:, :n][:, valid]
    dev = zv - zv.sum(axis=1, keepdims=True) / n_valid
    h = hysteresis * np.sqrt(np.einsum("ij,ij->i", dev, dev) / n_valid)
    hh = h[:, None]
    state = (zz > hh).astype(np.int8) - (zz < -hh)
    state[:, n] = 2
    if n_valid < n:
        state[:, np.flatnonzero(~valid)] = 2
    flat = state.ravel()
    idx = np.flatnonzero(flat)
    st = flat[idx]
    up = idx[1:][(st[1:] == 1) & (st[:-1] == -1)]
    if len(up) < 2:
        return rates
    zf = zz.ravel()
    col = up // (n + 1)
    z0, z1 = zf[up - 1], zf[up]
    t_up = (up % (n + 1) - 1 + (h[col] - z0) / (z1 - z0)) / FR_HZ
    run = np.cumsum(flat == 2)[up]
    same = np.diff(run) == 0
    col = col[1:][same]
    cycles = np.bincount(col, minlength=m)
    span = np.bincount(col, weights=np.diff(t_up)[same], minlength=m)
    enough = (cycles >= min_breaths) & (h > 0.0)
    rates[enough] = 60.0 * cycles[enough] / span[enough]
    return rates


def test_count_rates_bpm_equals_the_plain_form():
    rng = np.random.default_rng(6)
    t = np.arange(240) / FR_HZ
    for _ in range(100):
        f = rng.uniform(0.1, 0.6, 3)
        z = np.sin(2 * np.pi * f * t[:, None]) + rng.normal(0, 0.3, (240, 3))
        valid = np.ones(240, bool)
        if rng.random() < 0.5:  # pauses
            for start in rng.integers(0, 240, 3):
                valid[start:start + int(rng.integers(1, 30))] = False
        assert np.array_equal(count_rates_bpm(z, valid), _count_rates_reference(z, valid),
                              equal_nan=True)


def _beat_values_reference(p: RespirationProcessor, t: np.ndarray, ibi_ms: np.ndarray):
    """RespirationProcessor._beat_values before it looped over beats (NaN rows dropped)."""
    blk = p.state.blocks
    out = np.full((len(t), p.n_mod), np.nan)
    bt, d = blk[:, 0], p.n_block / p.sampling_rate
    if p.source == "ecg":
        lo, hi = t - p.qrs_s, t + p.qrs_s
        q0 = np.searchsorted(bt, lo - d, side="right")
        q1 = np.searchsorted(bt, hi, side="right")
        for i in np.flatnonzero((bt[0] <= lo) & (q1 > q0)).tolist():
            qrs = blk[q0[i]:q1[i]]
            out[i] = (qrs[:, 1].max() - qrs[:, 2].min(), ibi_ms[i])
    else:
        start = t - ibi_ms / 1000.0
        p0 = np.searchsorted(bt, t - p.peak_s - d, side="right")
        p1 = np.searchsorted(bt, t + p.rise_s + p.peak_s, side="right")
        for i in np.flatnonzero((bt[0] <= start) & (p1 > p0)).tolist():
            shift = bt[p0[i] + blk[p0[i]:p1[i], 1].argmax()] + d / 2 - t[i]  # beat window: peak to peak
            b0 = np.searchsorted(bt, start[i] + shift - d, side="right")
            b1 = np.searchsorted(bt, t[i] + shift, side="right")
            if b1 > b0:
                beat = blk[b0:b1]
                amplitude = blk[p0[i]:p1[i], 1].max() - beat[:, 2].min()
                out[i] = (amplitude, beat[:, 3].sum() / len(beat), ibi_ms[i])
    keep = np.isfinite(out).all(axis=1)
    return t[keep].tolist(), out[keep].tolist()


@pytest.mark.parametrize("source, fs", [("ppg", 64.0), ("ecg", 130.0)])
def test_beat_values_equal_the_vectorised_form(source, fs):
    rng = np.random.default_rng(7)
    p = RespirationProcessor(source, fs)
    n = int(30 * fs)
    x = np.sin(2 * np.pi * 1.2 * np.arange(n) / fs) + rng.normal(0, 0.1, n)
    p.update_samples(1_700_000_000.0, x)  # blocks of the last 30 s (no beats given yet)
    blocks_t = p.state.blocks[:, 0]
    t = np.sort(rng.uniform(blocks_t[0] - 2.0, blocks_t[-1] + 0.5, 60))
    ibi = rng.uniform(300.0, 2500.0, 60)
    assert p._beat_values(t.tolist(), ibi.tolist()) == _beat_values_reference(p, t, ibi)


def test_state_stays_small_and_picklable_after_the_fast_paths():
    """A wearer's whole state (all processors) stays well under the 200 KB budget."""
    from monitor.core.wearer import WearerMonitor
    from monitor.wire import SampleBatch

    rng = np.random.default_rng(8)
    m, t0 = WearerMonitor("w"), 1_700_000_000.25
    for k in range(120):
        t = t0 + k
        bvp = np.sin(2 * np.pi * 1.1 * (t + np.arange(64) / 64.0)) ** 9 + rng.normal(0, 0.02, 64)
        m.update(SampleBatch("bvp", k, bvp, t0=t, fs=64.0))
        m.update(SampleBatch("eda", k, 2.0 + rng.normal(0, 0.01, 4), t0=t, fs=4.0))
        m.update(SampleBatch("temp", k, 33.0 + rng.normal(0, 0.01, 4), t0=t, fs=4.0))
        acc = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.01, (32, 3))
        m.update(SampleBatch("acc", k, acc, t0=t, fs=32.0))
    assert len(pickle.dumps(m.get_state(), protocol=pickle.HIGHEST_PROTOCOL)) < 200_000


def _add_bins_reference(s, t, x, flags):
    """EdaProcessor._add_bins as a loop over bins (its form before the vectorised merge)."""
    ids = np.ceil(t / 1.0).astype(np.int64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ids)) + 1))
    ends = list(starts[1:]) + [len(ids)]
    size = len(s.bin_id)
    for i, j in zip(starts, ends):
        b, slot = int(ids[i]), int(ids[i]) % size
        if s.bin_id[slot] != b:
            s.bin_id[slot], s.bin_n[slot], s.bin_flags[slot] = b, 0, 0
            s.bin_min[slot], s.bin_max[slot] = np.inf, -np.inf
        s.bin_n[slot] += j - i
        s.bin_flags[slot] |= 0 if flags is None else int(np.bitwise_or.reduce(flags[i:j]))
        s.bin_min[slot] = min(s.bin_min[slot], x[i:j].min())
        s.bin_max[slot] = max(s.bin_max[slot], x[i:j].max())


def test_eda_quality_bins_equal_the_loop_over_bins():
    rng = np.random.default_rng(9)
    p, ref = EdaProcessor(4.0), EdaProcessor(4.0)
    t0 = 1_700_000_000.1
    for k in range(400):
        n = int(rng.integers(1, 21))
        t = t0 + np.arange(n) / 4.0
        t0 = float(t[-1]) + 0.25 + float(rng.choice([0.0, 0.0, 0.0, 40.0, 200.0]))
        x = rng.uniform(0.0, 3.0, n)
        flags = None if rng.random() < 0.7 else rng.integers(0, 4, n).astype(np.int8)
        p._add_bins(t, x, flags)
        _add_bins_reference(ref.state, t, x, flags)
        for name in ("bin_id", "bin_n", "bin_flags", "bin_min", "bin_max"):
            assert np.array_equal(getattr(p.state, name), getattr(ref.state, name)), name
