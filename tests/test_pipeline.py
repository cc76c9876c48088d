"""The per-wearer pipeline on the real Empatica E4 session Stress-Predict S02.

Chunk-size invariance and state save/restore for the whole chain (every processor has its own
such tests too), modality subsets, and the join of modalities per tick.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from monitor.core.motion import AccProcessor
from monitor.core.pipeline import CoreConfig, WearerPipeline
from monitor.core.temp import TempProcessor
from monitor.core.wearer import WearerMonitor
from monitor.recordings import Recording, read_recording
from monitor.wire import SampleBatch
from tests.conftest import data_path

MINUTES = 12
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def s02() -> Recording:
    rec = read_recording(data_path("stress-predict", "S02"))
    end = rec.start_s + MINUTES * 60
    for s in rec.streams.values():  # keep the first minutes only
        if s.t is None:
            s.values = s.values[: int((end - s.t0) * s.fs)]
        else:
            keep = s.t < end
            s.t, s.values = s.t[keep], s.values[keep]
    return rec


def run(rec: Recording, batch_s: float, signals=None) -> list:
    p = WearerPipeline()
    rows = []
    for b in rec.batches(batch_s):
        if signals is None or b.signal in signals:
            rows.extend(p.update(b))
    return rows + p.flush()


def as_tuples(rows):
    return [(r.t, tuple(sorted(r.values.items())), tuple(sorted(r.quality.items()))) for r in rows]


@pytest.mark.parametrize("batch_s", [0.25, 7.0, 30.0, 120.0])
def test_batch_size_does_not_change_any_indicator(s02, batch_s):
    """Up to the wire's limit (120 s of 64 Hz BVP is 7,680 samples of 10,000). Batches longer
    than ~25 s made the EDA (20.5 s behind) miss its ticks: they were released without it."""
    reference = as_tuples(run(s02, 1.0))
    assert len(reference) > 100
    assert as_tuples(run(s02, batch_s)) == reference


def test_save_and_restore_mid_stream_gives_the_same_rows(s02):
    batches = list(s02.batches(1.0))
    half = len(batches) // 2
    one = WearerPipeline()
    rows_one = [r for b in batches for r in one.update(b)]
    first = WearerPipeline()
    rows_split = [r for b in batches[:half] for r in first.update(b)]
    second = WearerPipeline()
    second.set_state(pickle.loads(pickle.dumps(first.get_state())))
    rows_split += [r for b in batches[half:] for r in second.update(b)]
    assert as_tuples(rows_split) == as_tuples(rows_one)



def test_a_checkpoint_of_another_core_config_resumes_under_the_new_one(s02):
    """A restart with a changed ``[core]`` used to keep the checkpoint's processors (their
    tick_s and window_s pickled with them) while the scorer took the new tick_s. Now every
    chain is rebuilt under the new configuration: ticks on the new grid, nothing lost that the
    old chains held back, and the same configuration resumes exactly (no rebuild)."""
    batches = list(s02.batches(1.0))
    half = len(batches) // 2
    old = WearerPipeline(CoreConfig(tick_s=5.0, window_s=60.0))
    rows_old = [r for b in batches[:half] for r in old.update(b)]
    state = pickle.loads(pickle.dumps(old.get_state()))

    same = WearerPipeline(CoreConfig(tick_s=5.0, window_s=60.0))
    same.set_state(pickle.loads(pickle.dumps(state)))
    assert not same.rebuilt_chains
    unrecorded = pickle.loads(pickle.dumps(state))  # a checkpoint from before the config was recorded
    unrecorded.core = None
    same.set_state(unrecorded)
    assert not same.rebuilt_chains  # its processors fit: nothing to rebuild
    unrecorded.core = None
    other = WearerPipeline(CoreConfig(tick_s=10.0, window_s=30.0))
    other.set_state(unrecorded)
    assert other.rebuilt_chains

    new_cfg = CoreConfig(tick_s=10.0, window_s=30.0)
    new = WearerPipeline(new_cfg)
    new.set_state(state)
    assert new.rebuilt_chains and new.state.core == new_cfg
    for chain in new.state.chains.values():
        for proc in (chain.__dict__.get("main"), chain.__dict__.get("restless"), chain.hrv, chain.resp):
            if proc is not None and hasattr(proc, "tick_s"):
                assert (proc.tick_s, proc.window_s) == (10.0, 30.0), proc
    rows_new = [r for b in batches[half:] for r in new.update(b)] + new.flush()
    # what the old chains held back is released on the old grid, then the new grid takes over
    held_back = [r.t for r in rows_new if r.t % 10 != 0]
    assert held_back and all(t % 5 == 0 for t in held_back)
    seen_until_s = max(b.end_s for b in batches[:half])
    assert rows_old[-1].t < min(held_back) and max(held_back) <= seen_until_s  # the data they had
    later = [r for r in rows_new if r.t > max(held_back)]
    assert len(later) > 20 and all(r.t % 10 == 0 for r in later)
    assert sum("EDA_Tonic_Mean" in r.values and "HR_Mean" in r.values for r in later) > len(later) // 2

@pytest.mark.parametrize(
    "signals, expected, absent",
    [
        ({"hr"}, {"HR_Mean"}, {"HRV_RMSSD", "EDA_Tonic_Mean"}),
        ({"ibi", "hr"}, {"HR_Mean"}, {"EDA_Tonic_Mean"}),
        ({"eda"}, {"EDA_Tonic_Mean", "SCR_Rate"}, {"HR_Mean"}),
        ({"eda", "bvp", "temp", "acc"}, {"HR_Mean", "EDA_Tonic_Mean", "TEMP_Mean", "ACC_Activity"}, set()),
    ],
    ids=["hr-strap", "hr+ibi", "eda-band", "wristband"],
)
def test_any_subset_of_signals_gives_its_indicators(s02, signals, expected, absent):
    rows = run(s02, 1.0, signals)
    seen = {k for r in rows for k in r.values}
    assert expected <= seen
    assert not (absent & seen)


def test_heart_rate_from_bvp_agrees_with_the_e4s_own_heart_rate(s02):
    """Our beat detection vs HR.csv (the E4's own algorithm) per tick, median over the session."""
    rows = run(s02, 1.0, {"bvp"})
    hr = s02.streams["hr"]
    ours = np.array([r.values["HR_Mean"] for r in rows if "HR_Mean" in r.values])
    t = np.array([r.t for r in rows if "HR_Mean" in r.values])
    e4 = np.array([hr.values[(hr.t > ti - 60) & (hr.t <= ti)].mean() for ti in t])
    ok = np.isfinite(e4)
    assert np.median(np.abs(ours[ok] - e4[ok])) < 8.0


def test_a_silent_modality_is_reported_missing_and_does_not_hold_the_others(s02):
    p = WearerPipeline()
    rows = []
    for b in s02.batches(1.0):
        if b.signal == "temp" and b.start_s > s02.start_s + 300:
            continue  # the temperature sensor goes quiet after 5 minutes
        rows.extend(p.update(b))
    late = [r for r in rows if r.t > s02.start_s + 420]
    assert late, "ticks kept coming without temperature"
    assert all(r.quality.get("temp") == "missing" for r in late)
    assert all("TEMP_Mean" not in r.values for r in late)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_temperature_and_motion_processors_are_chunk_invariant(s02, chunk):
    def feed(proc, stream, step):
        n = len(stream.values)
        step = step or n
        out = []
        for i in range(0, n, step):
            out.extend(proc.update(stream.t0 + i / stream.fs, stream.values[i:i + step]))
        return [(f.t, f.values, f.quality) for f in out]

    temp, acc = s02.streams["temp"], s02.streams["acc"]
    whole_temp = feed(TempProcessor(temp.fs), temp, None)
    whole_acc = feed(AccProcessor(acc.fs), acc, None)
    assert len(whole_temp) > 100 and len(whole_acc) > 100
    assert feed(TempProcessor(temp.fs), temp, chunk) == whole_temp
    assert feed(AccProcessor(acc.fs), acc, chunk) == whole_acc


@pytest.mark.filterwarnings("error")  # (nor a RuntimeWarning on the service's stderr)
def test_accelerometer_values_beyond_float_range_give_no_nan(s02):
    # the contract bounds no acc value: a glitching device's 1e300 g overflows the magnitude
    # (inf - inf = NaN); those epochs hold no reading, and no NaN reaches the indicators
    acc = s02.streams["acc"]
    x = acc.values.copy()
    start = int(120 * acc.fs)
    x[start:start + int(90 * acc.fs)] = 1e300
    p, n = AccProcessor(acc.fs), int(acc.fs)  # 1 s batches
    rows = [f for i in range(0, len(x), n) for f in p.update(acc.t0 + i / acc.fs, x[i:i + n])]
    assert all(np.isfinite(v) for f in rows for v in f.values.values())
    inside = [f for f in rows if acc.t0 + 190 <= f.t <= acc.t0 + 210]
    assert inside and all(f.quality["acc"] == "insufficient" for f in inside)
    assert rows[-1].quality["acc"] == "ok"


@pytest.mark.parametrize("signal, column", [("ecg", "ECG"), ("bvp", "PPG"), ("rsp", "RSP")])
def test_a_glitch_of_huge_values_does_not_end_a_waveform_s_indicators(signal, column):
    # the contract bounds no ecg, bvp or rsp value: one second of 1e300 overflowed the filters
    # (inf - inf = NaN in their memory), and the chain gave nothing until the next gap
    import pandas as pd

    from monitor.wire import SampleBatch

    x = pd.read_csv(data_path("neurokit", "bio_resting_5min_100hz.csv"))[column].to_numpy(float)
    fs = 100.0

    def rows(glitch: bool) -> list:
        y = x.copy()
        if glitch:
            y[6000:6100] = 1e300  # 60-61 s
        p = WearerPipeline()
        return [r for i in range(0, len(y), 100)
                for r in p.update(SampleBatch(signal, seq=i, values=y[i:i + 100], t0=T0 + i / fs, fs=fs))]

    clean, glitched = rows(False), rows(True)
    assert all(np.isfinite(v) for r in glitched for v in r.values.values())
    late = [r for r in clean if r.t >= T0 + 200]  # the glitch has left every window
    assert len(late) > 10 and any(r.values for r in late)
    after = [r for r in glitched if r.t >= T0 + 200]
    assert [(r.t, r.quality) for r in after] == [(r.t, r.quality) for r in late]
    for a, b in zip(after, late):  # (the IIR filters' memory converges, to rounding)
        assert a.values == pytest.approx(b.values, rel=1e-9)


def test_wearer_state_is_small_and_restores_exactly(s02):
    batches = list(s02.batches(1.0))
    m = WearerMonitor("s02")
    for b in batches[:len(batches) // 2]:
        m.update(b)
    state = pickle.dumps(m.get_state())
    assert len(state) < 200_000  # the issue's budget: <= 200 KB per wearer
    other = WearerMonitor("s02")
    other.set_state(pickle.loads(state))
    rest = batches[len(batches) // 2:]
    a = [(t.t, t.score.value, t.score.gate) for b in rest for t in m.update(b)]
    b = [(t.t, t.score.value, t.score.gate) for b in rest for t in other.update(b)]
    assert a == b and len(a) > 50


def _shifted(batch, dt_s: float):
    """The same batch ``dt_s`` seconds later."""
    from dataclasses import replace

    return replace(batch, t0=batch.t0 + dt_s) if batch.t is None else replace(batch, t=batch.t + dt_s)


def test_a_tick_phase_shifts_the_grid_and_nothing_else(s02):
    """Ticks at k * 5 s + phase; the indicators are those of the aligned pipeline fed the same
    data ``phase`` seconds earlier (so every processor sees the same windows), exactly."""
    batches = list(s02.batches(1.0))
    phased = WearerPipeline(tick_phase_s=3.0)
    aligned = WearerPipeline()
    got = [row for b in batches for row in phased.update(b)]
    want = [row for b in batches for row in aligned.update(_shifted(b, -3.0))]
    assert len(got) == len(want) > 100
    assert all(g.t % 5.0 == 3.0 for g in got)
    assert [(g.t - 3.0, g.values, g.quality) for g in got] == [(w.t, w.values, w.quality) for w in want]
    # and the aligned grid on the unshifted data is a different set of windows
    plain = [row for b in batches for row in WearerPipeline().update(b)]
    assert all(p.t % 5.0 == 0.0 for p in plain)


def test_the_tick_phase_is_part_of_the_state(s02):
    """A checkpoint resumes on the wearer's own grid, whatever phase the new object was made with."""
    batches = list(s02.batches(1.0))
    m = WearerMonitor("s02", tick_phase_s=2.0)
    for b in batches[:300]:
        m.update(b)
    restored = WearerMonitor("s02")
    restored.set_state(pickle.loads(pickle.dumps(m.get_state())))
    a = [(t.t, t.score.value) for b in batches[300:] for t in m.update(b)]
    b = [(t.t, t.score.value) for b in batches[300:] for t in restored.update(b)]
    assert a == b and len(a) > 50 and all(t % 5.0 == 2.0 for t, _ in a)


def test_tick_phases_are_whole_seconds_spread_over_the_interval():
    from collections import Counter

    from monitor.core.pipeline import tick_phase

    phases = Counter(tick_phase(f"wearer-{i}", 5.0) for i in range(1000))
    assert set(phases) == {0.0, 1.0, 2.0, 3.0, 4.0}
    assert max(phases.values()) < 1.2 * 200  # crc32 of the id: close to even
    assert tick_phase("sim-01", 5.0) == tick_phase("sim-01", 5.0)  # fixed by the id
    assert tick_phase("x", 0.5) == 0.0  # intervals under a second: no phase


def test_heart_rate_goes_on_from_the_devices_own_beats_when_the_ppg_stops():
    """FLIRT's E4 files are cut to 10,000 lines: BVP.csv covers ~2.6 min, HR.csv ~83 min, IBI.csv
    (sparse: the E4 drops beats it finds noisy) ~2.5 h. Before the hand-over between heart
    sources, heart rate stopped with the PPG: 24 of 500 ticks had one. Now the PPG is used while
    it sends, then the E4's intervals, and the E4's own heart rate stands in for the ticks whose
    window holds too few intervals."""
    rec = read_recording(data_path("flirt-e4-garmin", "empatica"))
    bvp_end, hr, ibi = rec.streams["bvp"].end_s, rec.streams["hr"], rec.streams["ibi"]
    p, rows, sources = WearerPipeline(), [], []
    for b in rec.batches(1.0):
        rows.extend(p.update(b))
        if p.state.heart_source not in sources[-1:]:
            sources.append(p.state.heart_source)
    rows += p.flush()
    assert sources[:2] == [None, "bvp"] and set(sources[2:]) == {"ibi", "hr"}
    late = [r for r in rows if r.t > bvp_end + 120]
    assert late[-1].t > ibi.end_s - 60
    while_hr = [r for r in late if r.t <= hr.end_s]
    assert sum("HR_Mean" in r.values for r in while_hr) > 0.95 * len(while_hr)
    assert sum("HR_Mean" in r.values for r in late if r.t > hr.end_s) > 0.8 * (len(late) - len(while_hr))
    # ... and it is the device's heart rate: the mean of the intervals, or of the E4's heart
    # rate readings, in each tick's window (which one: the row's quality says)
    for r in [r for r in late if "HR_Mean" in r.values][::25]:
        if r.quality.get("hrv") == "ok" or "hr" not in r.quality:
            window = ibi.values[(ibi.t > r.t - 60) & (ibi.t <= r.t)]
            expected = 60000 / window.mean()
        else:
            expected = hr.values[(hr.t > r.t - 60) & (hr.t <= r.t)].mean()
        assert abs(r.values["HR_Mean"] - expected) < 2.0, r


def test_a_better_heart_source_takes_over_and_a_silent_one_hands_back(s02):
    """S02 without its PPG between minutes 4 and 8: the E4's own heart rate takes over once the
    PPG has been silent for max_lag_s (its intervals are sparse there: none came first), and
    the PPG again as soon as it is back."""
    p, sources = WearerPipeline(), []
    for b in s02.batches(1.0):
        if b.signal == "bvp" and s02.start_s + 240 <= b.start_s < s02.start_s + 480:
            continue
        p.update(b)
        if p.state.heart_source is not None and p.state.heart_source not in [s for _, s in sources[-1:]]:
            sources.append((b.start_s - s02.start_s, p.state.heart_source))
    assert [s for _, s in sources] == ["bvp", "hr", "bvp"]
    assert 240 + p.config.max_lag_s <= sources[1][0] <= 240 + p.config.max_lag_s + 30
    assert 480 <= sources[2][0] < 481


def test_no_breathing_rate_from_a_strap_whose_rhythm_is_irregular():
    """The Polar H10 record: a trigeminy-like rhythm (premature beats, RR 375-1417 ms). Its HRV
    windows are "irregular", and a breathing rate read from its beat intervals and R amplitudes
    was the ectopy's rhythm (~25/min: one premature beat in three at ~80 bpm is 26.6/min), which
    the score took for fast breathing. It is withheld there; a respiration belt would still count."""
    rec = read_recording(data_path("polar-h10", "polar_h10.csv"))
    p = WearerPipeline()
    rows = [r for b in rec.batches(1.0) for r in p.update(b)] + p.flush()
    irregular = [r for r in rows if r.quality.get("hrv") in ("irregular", "artifacts")]
    assert p.state.heart_source == "ecg" and len(irregular) > 100
    assert all("RSP_Rate" not in r.values and r.quality["rsp"] == "irregular" for r in irregular)


def test_a_sample_rate_change_keeps_what_the_old_chain_held_back(s02):
    """A device switching its EDA from 4 to 8 Hz mid-stream: the ticks the 4 Hz chain still held
    back (its 20.5 s output delay) come out with their values, not as ``missing``."""
    from dataclasses import replace as _replace

    switch_s = s02.start_s + 600.0
    p = WearerPipeline()
    rows = []
    for b in s02.batches(1.0):
        if b.signal not in ("eda", "temp"):
            continue
        if b.signal == "eda" and b.t0 >= switch_s:  # the same conductance, sampled twice as often
            b = _replace(b, fs=8.0, values=np.repeat(b.values, 2))
        rows.extend(p.update(b))
    rows += p.flush()
    before = [r for r in rows if switch_s - 30 <= r.t < switch_s]
    assert len(before) == 6
    assert all(r.quality["eda"] != "missing" and "EDA_Tonic_Mean" in r.values for r in before), \
        [(r.t - switch_s, r.quality["eda"]) for r in before]


def test_heart_rate_goes_on_through_a_ppg_sample_rate_change(s02):
    """A device switching its PPG from 64 to 32 Hz mid-stream: the new chain started its beat
    intervals from nothing, so for the 30 s until its windows were half covered no tick had a
    heart rate, where the old and new beats together fill the window. The beat corrector and
    the HRV windows hold beat times, not samples: they go on; only the detector restarts."""
    from dataclasses import replace as _replace

    switch_s = s02.start_s + 360.0
    reference = {r.t: r for r in run(s02, 1.0, signals=("bvp",))}
    p, rows = WearerPipeline(), []
    for b in s02.batches(1.0):
        if b.signal != "bvp":
            continue
        if b.t0 >= switch_s:  # the same pulse, every other sample
            b = _replace(b, fs=b.fs / 2, values=b.values[::2])
        rows.extend(p.update(b))
    rows += p.flush()
    after = [r for r in rows if switch_s <= r.t < switch_s + 60.0]
    expected = [r.t for r in after if "HR_Mean" in reference[r.t].values]
    assert len(after) == 12 and len(expected) == 12
    assert [r.t for r in after if "HR_Mean" in r.values] == expected, \
        [(r.t - switch_s, r.quality["hrv"]) for r in after]
    for r in after:  # the same beats, timed on half the samples
        assert abs(r.values["HR_Mean"] - reference[r.t].values["HR_Mean"]) < 2.0


def test_a_refused_sample_rate_changes_nothing(s02):
    """An EDA batch at 0.01 Hz (the filters cannot take it: ValueError) flushed and dropped the
    running chain before it was refused, and its span still lengthened the release waits."""
    from monitor.wire import SampleBatch

    reference = as_tuples(run(s02, 1.0, signals=("eda", "temp")))
    p, rows = WearerPipeline(), []
    for i, b in enumerate(b for b in s02.batches(1.0) if b.signal in ("eda", "temp")):
        if i == 400:
            lag_s = p._lag_s()
            with pytest.raises(ValueError):
                p.update(SampleBatch("eda", 10_000, np.full(2, 2.0), t0=b.t0, fs=0.01))
            assert p._lag_s() == lag_s
        rows.extend(p.update(b))
    assert as_tuples(rows + p.flush()) == reference


def test_one_batch_with_a_long_gap_inside_does_not_stall_the_wearer():
    """An hr batch of two readings a day apart (a band syncing its memory): its span added a day
    to the release waits, and the wearer counted as unsettled again, so nothing came out. The
    span counts at most MAX_BATCH_WAIT_S, and a settled wearer stays settled."""
    from monitor.core.pipeline import EDA_DELAY_S, MAX_BATCH_WAIT_S
    from monitor.wire import SampleBatch

    p, rows, seq = WearerPipeline(), [], {"eda": 0, "hr": 0}
    rng = np.random.default_rng(0)
    for k in range(2400):
        t = T0 + k
        seq["eda"] += 1
        rows += p.update(SampleBatch("eda", seq["eda"], 2.0 + 0.01 * rng.standard_normal(4), t0=t, fs=4.0))
        if k < 600:
            seq["hr"] += 1
            times = np.array([t - 86400.0, t]) if k == 599 else np.array([t])
            rows += p.update(SampleBatch("hr", seq["hr"], np.full(len(times), 70.0), t=times))
    assert p._lag_s() <= CoreConfig().max_lag_s + MAX_BATCH_WAIT_S
    after = [r for r in rows if r.t > T0 + 600]
    # the hr device fell silent at 600 s: ticks go without it once the EDA (20.5 s behind) is
    # 45 + 600 s ahead (before: none in these 30 min)
    assert len(after) >= (2400 - 600 - EDA_DELAY_S - 45 - MAX_BATCH_WAIT_S) / 5 - 2
    assert all(r.quality["hr"] == "missing" for r in after if r.t > T0 + 700)


def test_a_device_with_long_batches_that_went_away_stops_delaying_the_others():
    """A strap sending hr in 60 s batches delays every tick by up to a batch (the release waits
    for it). Once it has been silent longer than two of its batches plus max_lag_s, the wearer's EDA-only
    ticks come out with the 1 s batches' delay again (before, the 60 s stayed for good)."""
    from monitor.core.pipeline import EDA_DELAY_S
    from monitor.wire import SampleBatch

    max_lag_s = CoreConfig().max_lag_s
    p, seq = WearerPipeline(), {"eda": 0, "hr": 0}
    rng = np.random.default_rng(1)
    delays_s = []  # (batch end - released tick) per row, after the strap stopped
    for k in range(1800):
        t = T0 + k
        if k < 600 and k % 60 == 59:  # the strap: one batch a minute, then gone
            seq["hr"] += 1
            rows = p.update(SampleBatch("hr", seq["hr"], np.full(60, 70.0), t=t - 59.0 + np.arange(60.0)))
        seq["eda"] += 1
        rows = p.update(SampleBatch("eda", seq["eda"], 2.0 + 0.01 * rng.standard_normal(4), t0=t, fs=4.0))
        if k == 590:
            assert p.longest_batch_s() == pytest.approx(59.0)  # the strap counts while it sends
        delays_s += [t + 1.0 - r.t for r in rows if k > 1200]
    assert p.longest_batch_s() == pytest.approx(0.75)  # only the EDA's own 1 s batches count now
    assert p._lag_s() == pytest.approx(max_lag_s + 0.75)
    # the EDA reports a tick EDA_DELAY_S late (its filter's delay) and up to a tick (5 s) and a
    # batch later, then the tick waits until the EDA is max_lag_s (+ its batch) ahead of the
    # silent heart: no 59 s more (before: 130 s)
    assert delays_s and max(delays_s) <= EDA_DELAY_S + 5.0 + 1.0 + max_lag_s + 0.75


def test_a_checkpoint_that_kept_only_heart_times_resumes():
    """Checkpoints written before every signal's latest time was kept (``heart_seen_until_s``)
    resume with those times, and a silent long-batch signal without a time still counts."""
    p = WearerPipeline()
    saved = dict(p.get_state().__dict__)
    saved.pop("signal_seen_until_s")
    saved["heart_seen_until_s"] = {"hr": T0}
    saved.update(heart_source="hr", seen_until_s=T0, batch_span_s={"hr": 30.0})
    state = object.__new__(type(p.get_state()))
    state.__setstate__(saved)
    p.set_state(state)
    assert p.state.signal_seen_until_s == {"hr": T0}
    assert p.longest_batch_s() == 30.0


@pytest.mark.parametrize("delivered_late_s", [0, 30, 50])
def test_long_batches_delivered_late_keep_their_ticks(delivered_late_s):
    """hr in 60 s batches that a phone forwards up to a batch late: the silent-signal rule must
    not take it for gone between two batches (with "silent for one batch plus max_lag_s", 50 s
    late cost 431 of 700 ticks their heart rate)."""
    from monitor.wire import SampleBatch

    p, seq, due, rows = WearerPipeline(), {"eda": 0, "hr": 0}, [], []
    rng = np.random.default_rng(1)
    for k in range(3600):
        t = T0 + k
        if k % 60 == 59:  # a minute of the strap is complete; it arrives delivered_late_s later
            due.append((k + delivered_late_s, t))
        while due and due[0][0] <= k:
            _, end = due.pop(0)
            seq["hr"] += 1
            rows += p.update(SampleBatch("hr", seq["hr"], np.full(60, 70.0), t=end - 59.0 + np.arange(60.0)))
        seq["eda"] += 1
        rows += p.update(SampleBatch("eda", seq["eda"], 2.0 + 0.01 * rng.standard_normal(4), t0=t, fs=4.0))
    after = [r for r in rows if r.t > T0 + 300]
    assert len(after) > 600
    assert sum(r.quality.get("hr") == "missing" for r in after) <= 5
    assert p.state.late_dropped <= 20


@pytest.mark.parametrize("signal, fs_hz", [("ecg", 10.0), ("bvp", 5.0), ("eda", 0.1)])
def test_a_rate_too_slow_for_the_filters_is_refused_naming_the_rates_they_take(signal, fs_hz):
    """A device at a rate the filters cannot take (legal on the wire: 0 < fs <= 1000 Hz) got
    scipy's words on its rejected topic: "Wn[0] must be less than Wn[1]" for ECG at 10 Hz,
    "max_delay_s=1.0 is too short ..." for bvp at 5 Hz. The refusal now names the signal, its
    rate and the rates the filters take; that rate and a spread above it (up to 1000 Hz) do
    build, the device's does not."""
    import re

    from monitor.core.pipeline import CoreConfig, _Chain
    from monitor.wire import SampleBatch

    p = WearerPipeline()
    with pytest.raises(ValueError, match=rf"^{signal} at {fs_hz:g} Hz is too slow for the monitor's filters: "
                                         r"they take [0-9.]+ Hz and above \(.+\)$") as refused:
        p.update(SampleBatch(signal, 0, np.zeros(64), t0=1.7e9, fs=fs_hz))
    lowest_hz = float(re.search(r"they take ([0-9.]+) Hz", str(refused.value)).group(1))
    assert fs_hz < lowest_hz
    for rate_hz in (lowest_hz, lowest_hz + 0.01, 1.5 * lowest_hz, 2 * lowest_hz + 0.37, 64.0, 1000.0):
        _Chain(signal, rate_hz, CoreConfig())


@pytest.mark.parametrize("batch_s", [1, 4])
def test_a_ppg_band_that_finds_no_pulse_still_gives_rows_saying_so(batch_s):
    # a bvp-only wearer whose band lies on the desk (a flat PPG, as E4 sends off the skin)
    # got no rows at all: the app then said "we haven't heard from your wearable" though it
    # sent; now every tick comes, heart and breathing "missing", and the score says why
    samples = np.full(int(300 * 64), 12.3)
    monitor, ticks = WearerMonitor("desk"), []
    for k in range(0, 300, batch_s):
        batch = SampleBatch("bvp", k, samples[k * 64:(k + batch_s) * 64], t0=T0 + k, fs=64.0)
        ticks += monitor.update(batch)
    assert [t.indicators.t - T0 for t in ticks][:3] == [0.0, 5.0, 10.0]
    assert len(ticks) >= 50  # up to the last one the release holds back (max_lag_s)
    assert all(t.indicators.quality == {"hrv": "missing", "rsp": "missing"} for t in ticks)
    assert {t.score.gate for t in ticks} == {"poor_quality"}  # the app: "the signal is unclear"


def test_one_eda_sample_below_the_contact_floor_does_not_withhold_the_temperature():
    # S02 (../shared/data/stress-predict/S02) reads 0.0 µS for one sample at 455.5 s while its
    # skin temperature runs on undisturbed: EDA is out_of_range for a minute, the temperature
    # stays (only a band off the skin, EDA "off_skin", withholds it: the test below)
    rec = read_recording(data_path("stress-predict", "S02"))
    rows = run(rec, 1.0, signals={"eda", "temp"})
    glitch = [r for r in rows if rec.start_s + 456.0 <= r.t <= rec.start_s + 515.0]
    assert len(glitch) == 12 and all(r.quality == {"eda": "out_of_range", "temp": "ok"} for r in glitch)
    assert all("TEMP_Mean" in r.values for r in glitch)


def test_a_band_off_the_skin_withholds_its_temperature_and_pulse_with_its_eda():
    # the simulator's band-off (firmware_bridge/sim_physiology.py: EDA ~0.01 µS, the
    # thermometer 3-6 °C low, in the skin's range) with its ground truth: the temperature of
    # every window holding a second of it is withheld with the EDA ("off_skin"); before, it
    # stayed "ok" and a calm wearer whose band came off six times an hour got 14 false
    # check-ins in 9 h (seeds 1-3), none now (1 with the temperature alone withheld)
    from firmware_bridge.sim_physiology import SimulatedWearer
    from firmware_bridge.sim_scenario import parse_scenario

    kind = parse_scenario({"kinds": {"f": {"faults": {"contact_loss_per_hour": 6.0,
                                                      "contact_loss_s": [60, 120]}}}}).kinds["f"]
    wearer = SimulatedWearer("sim-01", kind, np.random.default_rng(1), T0)
    p, rows = WearerPipeline(), []
    for batch in wearer.batches(3600):
        rows += p.update(batch)
    off = [(T0 + f.start_rel_s, T0 + f.end_rel_s) for f in wearer.fault_intervals if f.kind == "contact_loss"]
    assert len(off) >= 3
    on = lambda t, a, b: a + 1.0 <= t <= b + 58.0  # the window holds a whole bin (k - 1, k] of it
    during = [r for r in rows if any(on(r.t, a, b) for a, b in off)]
    assert during and all(r.quality["eda"] == "off_skin" and r.quality["temp"] == "off_skin"
                          and "TEMP_Mean" not in r.values for r in during)
    # the band's pulse too, and the breathing read from it (the device's own heart rate, when
    # its window has one, stands in as for any window without a pulse)
    assert all(r.quality["hrv"] == "off_skin" and r.quality["rsp"] == "off_skin" and "HRV_RMSSD" not in r.values
               and "RSP_Rate" not in r.values for r in during)
    clear = [r for r in rows if r.t > T0 + 120 and not any(a - 5.0 <= r.t <= b + 65.0 for a, b in off)]
    assert clear and all(r.quality["temp"] == "ok" for r in clear)
