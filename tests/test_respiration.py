"""Breathing rate (``monitor.core.respiration``) and ECG R-peaks (``monitor.core.ecg``).

Recordings (../shared/data, see its README):

* ``neurokit/bio_resting_5min_100hz.csv``: ECG, PPG and a respiration belt (RSP) at 100 Hz,
  300 s, one person at rest;
* ``neurokit/bio_eventrelated_100hz.csv``: ECG, EDA, photosensor and RSP at 100 Hz, 150 s;
* ``polar-h10/polar_h10.csv``: Polar H10 chest-strap ECG (~130 Hz) and the strap's own RR
  intervals, 600 s, frequent premature beats.

References (neurokit2 0.2.13). The files have no clock: sample ``i`` is at ``T0 + i / 100``.
A window is ``(T - 60, T]`` at our ticks ``T`` (every 5 s); only windows inside the recording
are compared (49 in the resting file, 19 in the event-related one).

* **belt**: ``nk.rsp_process(rsp, sampling_rate=100)[0]["RSP_Rate"]`` (breaths/min, one value
  per sample), averaged over the window's samples;
* **neurokit2's ECG-derived respiration**: ``rpeaks = nk.ecg_peaks(nk.ecg_clean(ecg, 100),
  100)[1]["ECG_R_Peaks"]``; ``rate = nk.signal_rate(rpeaks, 100, desired_length=len(ecg))``
  (what ``nk.ecg_process`` calls ``ECG_Rate``); ``edr = nk.ecg_rsp(rate, sampling_rate=100)``
  (default method ``"vangent2019"``: 0.1-0.4 Hz Butterworth); then
  ``nk.rsp_process(edr, sampling_rate=100)[0]["RSP_Rate"]`` averaged over the window's samples.

Acceptance: on the windows where our rate is emitted (quality ``ok``), our mean absolute error
against the belt is no larger than neurokit2's EDR's, and our share of windows within 2
breaths/min no smaller. Run with ``-s`` to print the figures (they are in docs/indicators.md).
"""

from __future__ import annotations

import functools
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from monitor.core.beats import BeatCorrector, IntervalBatch
from monitor.core.ecg import EcgBeatDetector
from monitor.core.ppg import PpgBeatDetector
from monitor.core.respiration import (
    FR_HZ,
    QUALITY_DISAGREE,
    RespirationProcessor,
    count_rates_bpm,
    fuse_rates,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
T0 = 1_700_000_000.0  # a multiple of 60 s: ticks fall on whole seconds of the files
FS = 100.0
CHUNKS = [1, 7, 64, None]
RESTING, EVENT = "bio_resting_5min_100hz.csv", "bio_eventrelated_100hz.csv"


def _need(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"recording {path} is absent (../shared/data is needed for this test)")
    return path


@functools.lru_cache(maxsize=None)
def recording(name: str):
    import pandas as pd

    return pd.read_csv(_need("neurokit", name))


@functools.lru_cache(maxsize=None)
def references(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(belt rate, neurokit2 EDR rate, neurokit2 R-peak indices), see the module docstring."""
    import neurokit2 as nk

    df = recording(name)
    rsp, ecg = df["RSP"].to_numpy(float), df["ECG"].to_numpy(float)
    belt = nk.rsp_process(rsp, sampling_rate=100)[0]["RSP_Rate"].to_numpy()
    rpeaks = nk.ecg_peaks(nk.ecg_clean(ecg, sampling_rate=100), sampling_rate=100)[1][
        "ECG_R_Peaks"]
    rate = nk.signal_rate(rpeaks, sampling_rate=100, desired_length=len(ecg))
    edr = nk.ecg_rsp(rate, sampling_rate=100)
    edr_rate = nk.rsp_process(edr, sampling_rate=100)[0]["RSP_Rate"].to_numpy()
    return belt, edr_rate, np.asarray(rpeaks)


def window_means(per_sample: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Mean of a per-sample series (sample i at T0 + i / FS) over each window (T - 60, T]."""
    t = T0 + np.arange(len(per_sample)) / FS
    return np.array([per_sample[(t > tick - 60.0) & (t <= tick)].mean() for tick in ticks])


def run(source: str, x: np.ndarray, chunk: int | None = None, procs=None, fs: float = FS,
        swap_at: int | None = None, flush: bool = True) -> list:
    """Feed ``x`` through detector -> corrector -> RespirationProcessor ``chunk`` samples at a
    time, then flush. ``source`` "ibi_from_ecg": the ECG's corrected intervals only.

    ``swap_at``: after that many samples, continue with a new RespirationProcessor restored from
    the first one's pickled state.
    """
    kind = "ibi" if source == "ibi_from_ecg" else source
    det, cor, resp = procs or (
        PpgBeatDetector(fs) if source == "ppg" else EcgBeatDetector(fs), BeatCorrector(),
        RespirationProcessor(kind, None if kind == "ibi" else fs))
    n = len(x) if chunk is None else chunk
    out = []
    for i in range(0, len(x), n):
        if swap_at is not None and i == swap_at:
            state = pickle.loads(pickle.dumps(resp.get_state()))
            resp = RespirationProcessor(kind, None if kind == "ibi" else fs)
            resp.set_state(state)
        t0, xb = T0 + i / fs, x[i:i + n]
        if kind == "rsp":
            out += resp.update_samples(t0, xb)
            continue
        batch = cor.update_times(det.update(t0, xb))
        if kind != "ibi":
            out += resp.update_samples(t0, xb)
        out += resp.update_intervals(batch)
    if not flush:
        return out
    if kind != "rsp":
        out += resp.update_intervals(cor.update_times(det.flush()))
        out += resp.update_intervals(cor.flush())
    return out + resp.flush()


def compare(name: str, column: str, source: str) -> dict:
    """Our RSP_Rate and neurokit2's EDR against the belt, on the windows we emit a rate for."""
    df = recording(name)
    belt, edr, _ = references(name)
    out = run(source, df[column].to_numpy(float), chunk=int(FS))  # 1 s batches, as a wearer
    end = T0 + len(df) / FS
    rows = [f for f in out if T0 + 60.0 <= f.t <= end]
    ticks = np.array([f.t for f in rows])
    ours = np.array([f.values.get("RSP_Rate", np.nan) for f in rows])
    ref, nk_edr = window_means(belt, ticks), window_means(edr, ticks)
    ok = np.isfinite(ours)
    err_ours, err_nk = np.abs(ours - ref)[ok], np.abs(nk_edr - ref)[ok]
    err_nk_all = np.abs(nk_edr - ref)
    res = {
        "windows": len(rows), "ok": int(ok.sum()),
        "mae": float(err_ours.mean()), "within2": float(np.mean(err_ours <= 2.0)),
        "nk_mae": float(err_nk.mean()), "nk_within2": float(np.mean(err_nk <= 2.0)),
        "nk_mae_all": float(err_nk_all.mean()), "nk_within2_all": float(np.mean(err_nk_all <= 2.0)),
        "qualities": sorted({f.quality["rsp"] for f in rows}),
    }
    print(f"\n{name} {source}: {res['ok']}/{res['windows']} windows with a rate; "
          f"ours MAE {res['mae']:.2f} breaths/min, {100 * res['within2']:.0f} % within 2 | "
          f"nk.ecg_rsp on the same windows MAE {res['nk_mae']:.2f}, "
          f"{100 * res['nk_within2']:.0f} % within 2 (all windows: {res['nk_mae_all']:.2f}, "
          f"{100 * res['nk_within2_all']:.0f} %)")
    return res


# ---------------------------------------------------------------------------- acceptance
@pytest.mark.parametrize("name,column,source", [
    (RESTING, "PPG", "ppg"),
    (RESTING, "ECG", "ecg"),
    (EVENT, "ECG", "ecg"),
])
def test_acceptance_breathing_rate_no_worse_than_neurokit_edr(name, column, source):
    """Measured: resting PPG 44/49 windows, MAE 1.18 vs 2.37, 70 % vs 41 % within 2; resting
    ECG 46/49, 0.79 vs 2.29, 100 % vs 46 %; event-related ECG 19/19, 0.73 vs 2.20, 100 % vs
    58 %."""
    res = compare(name, column, source)
    assert res["ok"] >= 0.8 * res["windows"]
    assert res["mae"] <= res["nk_mae"]
    assert res["within2"] >= res["nk_within2"]


@pytest.mark.parametrize("name", [RESTING, EVENT])
def test_ibi_only_from_ecg_beats_is_reported_and_no_worse_than_neurokit_edr(name):
    """A device that sends only intervals: our ECG beats -> BeatCorrector -> source "ibi".
    Measured: resting 49/49, MAE 0.41, 98 % within 2; event-related 19/19, 1.07, 100 %."""
    res = compare(name, "ECG", "ibi_from_ecg")
    assert res["ok"] >= 0.8 * res["windows"]
    assert res["mae"] <= res["nk_mae"]
    assert res["within2"] >= res["nk_within2"]


@pytest.mark.parametrize("name", [RESTING, EVENT])
def test_belt_source_agrees_with_neurokit_on_the_belt(name):
    """The belt itself (source "rsp") against neurokit2's rate of the same belt: the methods
    differ (we count breaths over the window, neurokit2 interpolates breath-by-breath rates).
    Measured MAE 0.82 (resting) and 0.53 (event-related) breaths/min."""
    res = compare(name, "RSP", "rsp")
    assert res["ok"] == res["windows"]
    assert res["mae"] <= 1.0
    assert res["within2"] >= 0.95


# ---------------------------------------------------------------------------- streaming contract
@functools.lru_cache(maxsize=None)
def excerpt(column: str, seconds: float = 100.0) -> np.ndarray:
    return recording(RESTING)[column].to_numpy(float)[:int(seconds * FS)]


SOURCES = [("ppg", "PPG"), ("ecg", "ECG"), ("ibi_from_ecg", "ECG"), ("rsp", "RSP")]


@functools.lru_cache(maxsize=None)
def whole(source: str, column: str) -> list:
    return run(source, excerpt(column))


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("source,column", SOURCES)
def test_chunk_size_does_not_change_the_output(source, column, chunk):
    """The whole chain (detector, corrector, respiration) fed 1, 7, 64 samples at a time or all
    at once: the beats reach the respiration processor at different times relative to the
    samples, and the output is the same, bit for bit."""
    expected = whole(source, column)
    assert sum("RSP_Rate" in f.values for f in expected) >= 5  # not a vacuous comparison
    assert run(source, excerpt(column), chunk=chunk) == expected


@pytest.mark.parametrize("source,column", SOURCES)
def test_save_and_restore_mid_stream_gives_the_same_output(source, column):
    expected = run(source, excerpt(column), chunk=50)
    assert run(source, excerpt(column), chunk=50, swap_at=4350) == expected


def test_samples_and_intervals_may_arrive_in_any_order():
    """All samples first then all intervals, or the reverse, equals 1 s interleaved batches."""
    x = excerpt("PPG")
    det, cor = PpgBeatDetector(FS), BeatCorrector()
    batch = cor.update_times(det.update(T0, x))
    rest = cor.update_times(det.flush())
    last = cor.flush()
    batches = [b for b in (batch, rest, last)]
    expected = run("ppg", x, chunk=int(FS))
    samples_first = RespirationProcessor("ppg", FS)
    out = samples_first.update_samples(T0, x)
    for b in batches:
        out += samples_first.update_intervals(b)
    assert out + samples_first.flush() == expected
    beats_first = RespirationProcessor("ppg", FS)
    out = []
    for b in batches:
        out += beats_first.update_intervals(b)
    out += beats_first.update_samples(T0, x)
    assert out + beats_first.flush() == expected


def test_state_stays_small_in_steady_streaming():
    """Blocks are kept only while a beat may still need them: a few seconds, not the window."""
    x = excerpt("PPG", 300.0)
    procs = (PpgBeatDetector(FS), BeatCorrector(), RespirationProcessor("ppg", FS))
    run("ppg", x, chunk=int(FS), procs=procs, flush=False)
    resp = procs[2]
    assert len(resp.state.blocks) <= 10.0 / resp.block_s
    assert resp.state_nbytes() < 20_000


# ---------------------------------------------------------------------------- synthetic
def rsa_intervals(rng: np.random.Generator, rate_bpm: float, hr_bpm: float, seconds: float,
                  rsa_ms: float = 40.0, mayer_ms: float = 0.0, noise_ms: float = 5.0):
    """Beat intervals with respiratory sinus arrhythmia at ``rate_bpm``, an optional 0.1 Hz
    (Mayer) wave and white noise."""
    t = [T0]
    while t[-1] < T0 + seconds:
        s = t[-1] - T0
        ibi = (60000.0 / hr_bpm + rsa_ms * math.sin(2 * math.pi * rate_bpm / 60.0 * s)
               + mayer_ms * math.sin(2 * math.pi * 0.1 * s + 1.0)
               + noise_ms * rng.standard_normal())
        t.append(t[-1] + ibi / 1000.0)
    t = np.array(t)
    ok = np.ones(len(t) - 1, bool)
    return IntervalBatch(t[1:], np.diff(t) * 1000.0, ok, ok, np.zeros(len(ok), np.int8), t[-1])


@pytest.mark.parametrize("rate_bpm", [6.0, 10.0, 15.0, 25.0, 35.0])
def test_rsa_rates_from_6_to_35_breaths_per_minute_despite_a_mayer_wave(rate_bpm):
    """Intervals alone, with a 0.1 Hz wave as strong as the breathing: the rate is counted on
    the breathing, also at 6 breaths/min, below the 0.15 Hz corner of the band-pass."""
    rng = np.random.default_rng(int(rate_bpm))
    hr = 95.0 if rate_bpm > 25 else 70.0  # the heart must beat at least twice per breath
    p = RespirationProcessor("ibi")
    out = p.update_intervals(rsa_intervals(rng, rate_bpm, hr, 240.0, mayer_ms=40.0)) + p.flush()
    rates = [f.values["RSP_Rate"] for f in out if T0 + 60 <= f.t <= T0 + 240]
    assert len(rates) == 37
    # measured max error 0.07-0.28 breaths/min up to 25 /min, 1.2 at 35 /min (2.7 beats a breath)
    assert np.max(np.abs(np.array(rates) - rate_bpm)) <= max(1.0, 0.05 * rate_bpm)


def test_a_pause_breaks_the_series_and_empty_windows_are_not_emitted():
    fs = 25.0
    t = np.arange(int(400 * fs)) / fs
    belt = np.sin(2 * np.pi * 0.25 * t)  # 15 breaths/min
    on = (t < 150.0) | (t >= 250.0)  # the belt is off for 100 s
    p = RespirationProcessor("rsp", fs)
    out = []
    for i in range(0, len(t), int(fs)):
        if on[i]:
            out += p.update_samples(T0 + t[i], belt[i:i + int(fs)])
    out += p.flush()
    ticks = np.array([f.t - T0 for f in out])
    assert np.all(np.diff(ticks) > 0)
    assert not np.any((ticks >= 210.0) & (ticks < 250.0))  # windows inside the pause
    assert np.all(ticks <= 460.0)  # nothing after the last window holding data
    rates = {round(f.t - T0): f.values.get("RSP_Rate") for f in out}
    assert rates[140] == pytest.approx(15.0, abs=0.2)
    assert rates[380] == pytest.approx(15.0, abs=0.2)
    assert out[-1].quality["rsp"] == "insufficient"  # the last window is mostly empty


def test_a_run_of_flagged_beats_is_insufficient_not_silent():
    # the corrector flagged every beat for 3 minutes (a run of artifacts): the windows hold no
    # series but the beats go on, so the ticks come as "insufficient"; not emitting them made
    # the pipeline report the stream "missing" and hold every row back max_lag_s
    b = rsa_intervals(np.random.default_rng(7), 15.0, 70.0, 400.0)
    artifact = (b.t_s >= T0 + 120.0) & (b.t_s < T0 + 300.0)
    flags = np.where(artifact, 2, 0).astype(np.int8)  # (any flag but FLAG_OK)
    p, out = RespirationProcessor("ibi"), {}
    for second in range(400):  # one batch a second, as the pipeline hands them on
        i = (b.t_s >= T0 + second) & (b.t_s < T0 + second + 1)
        batch = IntervalBatch(b.t_s[i], b.ibi_ms[i], ~artifact[i], b.consecutive[i], flags[i], T0 + second + 1)
        out.update({round(f.t - T0): f for f in p.update_intervals(batch)})
    ticks = sorted(out)
    assert all(later - earlier == 5 for earlier, later in zip(ticks, ticks[1:]))  # none skipped
    inside = [out[t] for t in ticks if 180 <= t <= 300]  # windows within the run
    assert inside and all(f.quality["rsp"] == "insufficient" and not f.values for f in inside)
    assert out[ticks[-1]].quality["rsp"] == "ok" and out[110].quality["rsp"] == "ok"


def test_a_flat_signal_gives_no_rate():
    p = RespirationProcessor("rsp", 25.0)
    out = p.update_samples(T0, np.full(25 * 120, 0.5)) + p.flush()
    assert out and all("RSP_Rate" not in f.values for f in out)
    assert {f.quality["rsp"] for f in out} == {"insufficient"}


@pytest.mark.parametrize("level", [0.7, 1234.567])
def test_a_flat_belt_at_any_level_gives_no_rate(level):
    # 0.7 is not exact in binary: the series' interpolation left rounding noise (1e-17) that
    # the SD-relative hysteresis counted as breaths, 4-6 /min "ok"
    p = RespirationProcessor("rsp", 25.0)
    out = p.update_samples(T0 + 0.013, np.full(25 * 300, level)) + p.flush()
    assert out and {f.quality["rsp"] for f in out} == {"insufficient"}


def test_constant_intervals_give_no_rate_but_a_small_rsa_does():
    # a watch deriving its intervals from a steady heart rate sends the same interval every
    # beat; their times carry float rounding, which was counted as 7-19 breaths/min "ok"
    n = 350
    t = T0 + np.arange(1, n + 1) * 0.857
    ok = np.ones(n, bool)
    p = RespirationProcessor("ibi")
    out = p.update_intervals(IntervalBatch(t, np.full(n, 857.0), ok, ok, np.zeros(n, np.int8), t[-1]))
    out += p.flush()
    assert out and all(not f.values for f in out)
    assert {f.quality["rsp"] for f in out} == {"insufficient"}
    # a breathing wave of 3 ms amplitude (SD 2.1 ms, under half the least measured on real
    # wrists, see MIN_RSA_SD_MS) is still counted
    p = RespirationProcessor("ibi")
    b = rsa_intervals(np.random.default_rng(3), 15.0, 70.0, 240.0, rsa_ms=3.0, noise_ms=0.3)
    rates = [f.values.get("RSP_Rate") for f in p.update_intervals(b) + p.flush() if 60 <= f.t - T0 <= 240]
    assert len(rates) == 37 and all(r == pytest.approx(15.0, abs=0.75) for r in rates)


def test_count_rates_bpm_counts_each_column_and_skips_pauses():
    t = np.arange(240) / FR_HZ
    z = np.column_stack([np.sin(2 * np.pi * 0.2 * t), np.sin(2 * np.pi * 0.4 * t)])
    valid = np.ones(240, bool)
    valid[100:140] = False  # a 10 s pause: the crossings across it are not a breath
    np.testing.assert_allclose(count_rates_bpm(z, valid), [12.0, 24.0], atol=0.05)
    assert np.isnan(count_rates_bpm(z[:20], valid[:20])).all()  # fewer than 3 cycles
    # a column whose SD is not above its floor is not counted (here: the first, SD ~0.7)
    assert np.isnan(count_rates_bpm(z, valid, min_sd=np.array([1.0, 0.0]))[0])
    assert count_rates_bpm(z, valid, min_sd=np.array([0.5, 0.0]))[0] == pytest.approx(12.0, abs=0.05)


def test_fusion_needs_two_agreeing_modulations():
    assert fuse_rates(np.array([15.0, 15.5, 22.0])) == (15.25, "ok")
    assert fuse_rates(np.array([15.0, 20.0, 25.0])) == (None, QUALITY_DISAGREE)
    assert fuse_rates(np.array([15.0, 18.9])) == (16.95, "ok")
    assert fuse_rates(np.array([np.nan])) == (None, "insufficient")


def test_wrong_inputs_are_refused():
    with pytest.raises(ValueError, match="source"):
        RespirationProcessor("eda", 4.0)
    with pytest.raises(ValueError, match="sampling_rate"):
        RespirationProcessor("ppg")
    with pytest.raises(ValueError, match="intervals only"):
        RespirationProcessor("ibi").update_samples(T0, np.zeros(10))
    with pytest.raises(ValueError, match="samples only"):
        RespirationProcessor("rsp", 25.0).update_intervals(IntervalBatch.empty(T0))


# ---------------------------------------------------------------------------- ECG R-peaks
def match(ours: np.ndarray, ref: np.ndarray, tol_s: float) -> tuple[int, np.ndarray]:
    """Reference beats with one of ours within ``tol_s``, and their signed errors (s)."""
    i = np.clip(np.searchsorted(ours, ref), 1, len(ours) - 1)
    nearest = np.where(np.abs(ours[i] - ref) < np.abs(ours[i - 1] - ref), ours[i], ours[i - 1])
    err = nearest - ref
    hit = np.abs(err) <= tol_s
    return int(hit.sum()), err[hit]


@pytest.mark.parametrize("polarity", [1.0, -1.0])
@pytest.mark.parametrize("name", [RESTING, EVENT])
def test_ecg_r_peaks_match_neurokit_either_polarity(name, polarity):
    """Against ``nk.ecg_peaks(nk.ecg_clean(ecg))``: F1 >= 0.98 within 50 ms, and after the
    0.11 s delay correction the beats sit on neurokit2's R peaks (median error measured
    -0.002 / +0.001 s; neurokit2's own peaks are on the 10 ms sample grid). The 8 misses in the
    resting file are neurokit2 peaks on noise (see docs/indicators.md, Heart)."""
    ecg = recording(name)["ECG"].to_numpy(float)
    ref = T0 + references(name)[2] / FS
    beats = EcgBeatDetector(FS).update(T0, polarity * ecg).times_s
    hits, err = match(beats, ref, 0.05)
    f1 = 2 * hits / (len(beats) + len(ref))
    print(f"\n{name} polarity {polarity:+.0f}: {len(beats)} beats, {len(ref)} neurokit2 R peaks,"
          f" F1 {f1:.3f}, median error {1000 * np.median(err):+.1f} ms")
    assert f1 >= 0.98
    assert abs(np.median(err)) <= 0.01
    assert np.percentile(np.abs(err), 95) <= 0.02


@pytest.mark.parametrize("fs", [250.0, 500.0])
def test_ecg_delay_holds_at_other_sampling_rates(fs):
    ecg = sps.resample_poly(recording(EVENT)["ECG"].to_numpy(float), int(fs), 100)
    ref = T0 + references(EVENT)[2] / FS
    beats = EcgBeatDetector(fs).update(T0, ecg).times_s
    hits, err = match(beats, ref, 0.05)
    assert hits >= 0.98 * len(ref)
    assert abs(np.median(err)) <= 0.01


@pytest.mark.parametrize("heart_rate", [60, 120, 180, 200, 220])
def test_ecg_beats_at_high_heart_rates(heart_rate):
    """Ground truth from ``nk.ecg_simulate`` (130 Hz, a Polar H10's rate; HR sd 2 bpm): the ECG
    chain reads the rate within 1 bpm. With the PPG detector's 0.3 s refractory period a true
    200 bpm read 148 bpm, 220 bpm read 110 (every other beat), with quality ``ok``."""
    import neurokit2 as nk

    from monitor.core.beats import BeatCorrector
    from monitor.core.hrv import HrvProcessor

    fs = 130
    ecg = nk.ecg_simulate(duration=200, sampling_rate=fs, heart_rate=heart_rate, heart_rate_std=2, random_state=2)
    detector, corrector, hrv = EcgBeatDetector(fs), BeatCorrector(), HrvProcessor()
    rows = []
    for i in range(0, len(ecg), fs):
        rows += hrv.update(corrector.update_times(detector.update(T0 + i / fs, ecg[i:i + fs])))
    rows += hrv.update(corrector.update_times(detector.flush())) + hrv.update(corrector.flush())
    full = [r for r in rows if r.t - T0 >= 70]  # windows past the simulator's first seconds
    assert len(full) >= 30 and all(r.quality["hrv"] in ("ok", "insufficient", "missing") for r in full)
    rates = [r.values["HR_Mean"] for r in full if "HR_Mean" in r.values]
    assert len(rates) >= 30
    assert abs(np.median(rates) - heart_rate) <= 1.0


def test_ecg_beats_of_a_polar_h10_match_the_straps_own_rr_intervals():
    """Chest strap with frequent premature beats and tall T waves. The strap's RR intervals
    give its beat times up to an unknown offset (searched for, in 5 ms steps over +-3 s).
    Measured: 801 beats, 796 of the strap's 798 matched within 40 ms."""
    import pandas as pd

    d = pd.read_csv(_need("polar-h10", "polar_h10.csv"))
    t = d["time_ns"].to_numpy() / 1e9
    fs = (len(t) - 1) / (t[-1] - t[0])
    beats = EcgBeatDetector(fs).update(t[0], d["ecg"].to_numpy(float)).times_s
    strap = np.cumsum(d["rr"].dropna().to_numpy()) / 1000.0
    best = max(match(beats, t[0] + off + strap, 0.04)[0] for off in np.arange(-3.0, 3.0, 0.005))
    print(f"\npolar: {len(beats)} beats, {len(strap)} strap beats, {best} matched")
    assert best / len(strap) >= 0.99  # recall
    assert best / len(beats) >= 0.99  # precision: T waves are not taken for beats


def test_a_huge_sample_costs_no_ecg_beats():
    """The Polar H10 strap's ECG with two glitches 200 s apart (+-1e4 x its SD). Squared twice on
    its way (QRS energy, then the inner detector's energy), a glitch swelled the inner detector's
    10 s mean energy for minutes: 518 of 801 beats were lost. Measured now: none lost."""
    import pandas as pd

    d = pd.read_csv(_need("polar-h10", "polar_h10.csv"))
    t = d["time_ns"].to_numpy() / 1e9
    fs = (len(t) - 1) / (t[-1] - t[0])
    ecg = d["ecg"].to_numpy(float)
    clean = EcgBeatDetector(fs).update(t[0], ecg).times_s
    x = ecg.copy()
    x[[int(200 * fs), int(400 * fs)]] += np.array([1e4, -1e4]) * np.std(ecg)
    got = EcgBeatDetector(fs).update(t[0], x).times_s
    hits, _ = match(got, clean, 0.02)
    print(f"\npolar with 2 glitches: {len(clean) - hits} of {len(clean)} beats lost, {len(got) - hits} added")
    assert len(clean) > 790
    assert len(clean) - hits <= 2  # at most one beat a glitch
    assert len(got) - hits <= 2


def test_a_glitch_at_the_start_of_an_ecg_segment_costs_no_beats():
    """The Polar H10's ECG: 200 s, a 30 s gap, the rest with a glitch (+1e4 x SD) as its first
    sample. Learnt without a judge (the mean step from before the gap), it cost 297 of 760
    beats; now measured none."""
    import pandas as pd

    d = pd.read_csv(_need("polar-h10", "polar_h10.csv"))
    t = d["time_ns"].to_numpy() / 1e9
    fs = (len(t) - 1) / (t[-1] - t[0])
    ecg = d["ecg"].to_numpy(float)
    after = int(230 * fs)
    beats = []
    for glitch in (0.0, 1e4 * np.std(ecg)):
        det = EcgBeatDetector(fs)
        first = det.update(t[0], ecg[:int(200 * fs)]).times_s
        x = ecg[after:].copy()
        x[0] += glitch
        second = det.update(t[0] + after / fs, x)
        assert second.gap
        beats.append(np.concatenate([first, second.times_s]))
    clean, got = beats
    hits, _ = match(got, clean, 0.02)
    assert len(clean) > 700
    assert len(clean) - hits <= 1 and len(got) - hits <= 1


def test_an_ecg_detector_saved_before_the_glitch_filter_resumes_with_it():
    x = excerpt("ECG", 120.0)
    det = EcgBeatDetector(FS)
    first = det.update(T0, x[:3000]).times_s
    del det.__dict__["_spikes"], det.state.__dict__["spikes"]  # as pickled by an older version
    del det._detector.__dict__["_spikes"]
    old = pickle.loads(pickle.dumps(det))
    assert old._detector._spikes is None  # the raw ECG is cleared, not its energy envelope
    y = x[3000:].copy()
    y[3000] += 1e4 * np.std(x)
    got = np.concatenate([first, old.update(T0 + 30.0, y).times_s])
    clean = EcgBeatDetector(FS).update(T0, x).times_s
    hits, _ = match(got, clean, 0.02)
    assert len(clean) - hits <= 1 and len(got) - hits <= 1


@pytest.mark.parametrize("chunk", CHUNKS)
def test_ecg_chunk_size_does_not_change_beats(chunk):
    x = excerpt("ECG", 60.0)
    expected = EcgBeatDetector(FS).update(T0, x)
    det = EcgBeatDetector(FS)
    n = len(x) if chunk is None else chunk
    times, watermark = [], -math.inf
    for i in range(0, len(x), n):
        b = det.update(T0 + i / FS, x[i:i + n])
        times += b.times_s.tolist()
        assert b.watermark_s >= watermark
        watermark = b.watermark_s
    assert len(times) >= 60
    assert np.array_equal(np.array(times), expected.times_s)


def test_ecg_save_restore_gap_and_non_finite_samples():
    x = excerpt("ECG", 60.0)
    det = EcgBeatDetector(FS)
    first = det.update(T0, x[:3000]).times_s
    restored = EcgBeatDetector(FS)
    restored.set_state(pickle.loads(pickle.dumps(det.get_state())))
    rest = restored.update(T0 + 30.0, x[3000:]).times_s
    assert np.array_equal(np.concatenate([first, rest]), EcgBeatDetector(FS).update(T0, x).times_s)
    # a 10 s gap restarts the detector and says so; NaNs do not stop it
    det = EcgBeatDetector(FS)
    det.update(T0, x[:3000])
    y = x[3000:].copy()
    y[500:510] = np.nan
    after = det.update(T0 + 40.0, y)
    assert after.gap and len(after.times_s) >= 20
    assert np.all(np.diff(after.times_s) > 0.3)


@pytest.mark.parametrize("subject", ["S02", "S05"])
def test_e4_wrist_bvp_gives_plausible_resting_rates(subject):
    """No belt in Stress-Predict: a plausibility check of the E4's 64 Hz BVP at rest (labels
    ``stress == 0`` for at least 58 s of the window). Measured: S02 280/435 rest windows with a
    rate, median 18.7 breaths/min (10-90 %: 15.5-21.7); S05 317/386, median 16.8 (14.1-19.7)."""
    import pandas as pd

    raw = pd.read_csv(_need("stress-predict", subject, "BVP.csv"), header=None).to_numpy(float)
    t0, fs, x = raw[0, 0], raw[1, 0], raw[2:, 0]
    labels = pd.read_csv(_need("stress-predict", subject, "labels.csv"))
    lab_t, lab_s = labels["unix_s"].to_numpy(), labels["stress"].to_numpy()
    det, cor, resp = PpgBeatDetector(fs), BeatCorrector(), RespirationProcessor("ppg", fs)
    out = []
    for i in range(0, len(x), int(fs)):
        batch = cor.update_times(det.update(t0 + i / fs, x[i:i + int(fs)]))
        out += resp.update_samples(t0 + i / fs, x[i:i + int(fs)])
        out += resp.update_intervals(batch)
    rest = [f for f in out
            if (lab_s[(lab_t > f.t - 60) & (lab_t <= f.t)] == 0).sum() >= 58]
    rates = np.array([f.values["RSP_Rate"] for f in rest if "RSP_Rate" in f.values])
    print(f"\n{subject}: {len(rates)}/{len(rest)} rest windows with a rate, median "
          f"{np.median(rates):.1f} (10-90 %: {np.percentile(rates, 10):.1f}-"
          f"{np.percentile(rates, 90):.1f}) breaths/min")
    assert len(rest) >= 300 and len(rates) >= 0.5 * len(rest)
    assert 12.0 <= np.median(rates) <= 22.0
    assert np.percentile(rates, 10) >= 8.0 and np.percentile(rates, 90) <= 30.0
