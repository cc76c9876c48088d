"""Simulated wearers: scenarios, reproducibility, honest physiology, faults, truth and scoring.

The physiology tests run simulated wearers through the monitor the service runs
(``WearerMonitor``) and through ``analyze_recording``, and the simulated BVP through neurokit2
(the offline reference). Expected numbers, unless a comment says otherwise, come from the
model in ``firmware_bridge/sim_physiology.py`` with its default ranges
(``sim_scenario.PROFILE_DEFAULTS``): at arousal 0.8 heart rate rises by 10-18 bpm, the vagal
part of the beat-to-beat variation falls to 48 %, the tonic skin conductance rises by
0.5-1.1 µS, SCRs come 4-7 /min more often and skin temperature falls by 0.2-0.4 °C (slowly).
Margins in the assertions are about half of those effects.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import warnings

import numpy as np
import pytest

from firmware_bridge.sim_physiology import SAMPLING_RATE_HZ, SimulatedWearer
from firmware_bridge.sim_scenario import PROFILE_DEFAULTS, load_scenario, parse_scenario
from firmware_bridge.simulator import (
    SimulationError,
    add_simulate_parser,
    ground_truth,
    make_wearers,
    recording_of,
    run_simulate,
    score_detections,
    write_truth,
)
from monitor.analyze import analyze_recording
from monitor.core.policy import Decision
from monitor.core.wearer import WearerMonitor
from monitor.errors import AnxmonError, ConfigError
from monitor.wire import StreamTracker, decode_batch, encode_batch, validate_batch

# 2023-11-15 09:00:00 UTC: outside the policy's default quiet hours (22:00-07:00 UTC), so a
# trigger is sent rather than suppressed for the hour of day.
T0 = 1_700_038_800.0


@pytest.fixture(scope="module")
def demo():
    return load_scenario("demo")


def run_monitor(wearer: SimulatedWearer, seconds: int, config=None):
    """Feed ``seconds`` of a wearer to a fresh WearerMonitor; returns (ticks, sent check-in times)."""
    monitor = WearerMonitor(wearer.wearer_id, config)
    ticks = []
    for batch in wearer.batches(seconds):
        ticks.extend(monitor.update(batch))
    ticks.extend(monitor.flush())
    sent = [d.t_s for tick in ticks for d in tick.decisions if isinstance(d, Decision) and d.sent]
    return ticks, sent


def indicator_mean(ticks, name: str, start_rel: float, end_rel: float) -> float:
    values = [t.indicators.values[name] for t in ticks
              if start_rel <= t.t - T0 < end_rel and name in t.indicators.values]
    assert len(values) >= 5, f"too few {name} values in {start_rel}-{end_rel} s"
    return float(np.mean(values))


# ------------------------------------------------------------------------------ scenarios


def test_demo_scenario_has_the_three_kinds_the_demo_needs(demo):
    assert demo.wearers == ("calm", "anxious", "exercise")
    assert demo.kinds["calm"].episodes == ()
    anxious = demo.kinds["anxious"].episodes
    assert 2 <= len(anxious) <= 3 and all(e.kind == "anxiety" for e in anxious)
    assert anxious[0].start_s >= 480  # >= 8 calm minutes: the baseline needs 300 s of calm data
    assert all(180 <= e.end_s - e.start_s <= 480 for e in anxious)
    # more than the policy's 30 min cooldown apart, so each episode can get its own check-in
    assert all(b.start_s - a.start_s > 1800 for a, b in zip(anxious, anxious[1:]))
    exercise = demo.kinds["exercise"].episodes
    assert [e.kind for e in exercise] == ["walk", "run", "walk"]
    run = exercise[1]
    assert 480 <= run.end_s - run.start_s <= 720 and exercise[0].end_s == run.start_s
    assert all(max(e.end_s for e in k.episodes) <= demo.duration_s for k in demo.kinds.values() if k.episodes)


BAD_SCENARIOS = [
    ({"kinds": {"a": {"episodes": [{"kind": "panic", "start_s": 1, "duration_s": 5}]}}}, "kinds.a.episodes[0].kind"),
    ({"kinds": {"a": {"episodes": [{"kind": "anxiety", "duration_s": 5}]}}}, "kinds.a.episodes[0].start_s"),
    ({"kinds": {"a": {"episodes": [{"kind": "run", "start_s": 1, "duration_s": 5, "end_s": 6}]}}}, "exactly one"),
    ({"kinds": {"a": {"episodes": [{"kind": "anxiety", "start_s": 1, "duration_s": 5, "intensity": 2}]}}}, "intensity"),
    ({"kinds": {"a": {"episodes": [{"kind": "anxiety", "start_s": 0, "duration_s": 100},
                                   {"kind": "anxiety", "start_s": 50, "duration_s": 100}]}}}, "overlaps"),
    ({"kinds": {"a": {"profile": {"hr_rest": 60}}}}, "hr_rest"),
    ({"kinds": {"a": {"profile": {"hr_rest_bpm": [80, 60]}}}}, "kinds.a.profile.hr_rest_bpm"),
    # once a ZeroDivisionError when the first wearer was made, or batches the service refuses
    ({"kinds": {"a": {"profile": {"hr_rest_bpm": 0}}}}, "'kinds.a.profile.hr_rest_bpm' must be a number in [25, 250], got 0"),
    ({"kinds": {"a": {"profile": {"arousal_onset_s": [0, 30]}}}}, "'kinds.a.profile.arousal_onset_s' must be a number >= 1"),
    ({"kinds": {"a": {"profile": {"scr_decay_s": 0.75}}}}, "'kinds.a.profile.scr_decay_s' must be a number >= 1"),
    ({"kinds": {"a": {"profile": {"temp_rest_c": 50}}}}, "'kinds.a.profile.temp_rest_c' must be a number in [15, 45]"),
    ({"kinds": {"a": {"faults": {"jitter_s": "a lot"}}}}, "kinds.a.faults.jitter_s"),
    ({"kinds": {"a": {"signals": ["bvp", "ppg"]}}}, "kinds.a.signals"),
    ({"kinds": {"a": {}}, "wearers": ["a", "b"]}, "unknown kind 'b'"),
    ({"kinds": {"a": {}}, "speed": 3}, "unknown key(s) speed; known keys: description, duration_s, kinds, wearers"),
    ({"kinds": {"a": {"colour": 1}}}, "[kinds.a]: unknown key(s) colour; known keys: description, episodes,"),
    ({"kinds": {"a": {"faults": {"jitter": 1}}}}, "[kinds.a.faults]: unknown key(s) jitter; known keys:"),
    ({"kinds": {"a": {"episodes": [{"kind": "run", "start_s": 1, "end_s": 6, "speed": 2}]}}},
     "kinds.a.episodes[0]: unknown key(s) speed"),
    ({"kinds": {"a": {"faults": 3}}}, "[kinds.a.faults] must be a table of key = value, got 3"),
    ({"kinds": {"a": {"faults": {"ppg_motion_artifacts": 1}}}},
     "'kinds.a.faults.ppg_motion_artifacts' must be true or false, got 1"),
    ({"kinds": {"a": {"profile": {"hr_rest_bpm": True}}}}, "'kinds.a.profile.hr_rest_bpm' must be a number, got True"),
    ({"kinds": {"a": {"description": 3}}}, "'kinds.a.description' must be a string, got 3"),
    ({"kinds": {"a": {}}, "description": ["x"]}, "'description' must be a string, got ['x']"),
    ({"kinds": {"a": {}}, "duration_s": "1 h"}, "'duration_s' must be a number, got '1 h'"),
    ({"description": "no kinds"}, "missing [kinds.<name>]"),
]


@pytest.mark.parametrize("raw, expected", BAD_SCENARIOS)
def test_bad_scenarios_name_the_file_and_the_key(raw, expected):
    with pytest.raises(ConfigError) as info:
        parse_scenario(raw, "configs/scenarios/broken.toml")
    assert "broken.toml" in str(info.value) and expected in str(info.value)


def test_bad_toml_and_unknown_scenario(tmp_path, monkeypatch):
    (tmp_path / "bad.toml").write_text("kinds = [\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_scenario(tmp_path / "bad.toml")
    monkeypatch.setenv("ANXMON_SCENARIOS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="known scenarios are bad"):
        load_scenario("nope")
    monkeypatch.setenv("ANXMON_SCENARIOS_DIR", str(tmp_path / "nowhere"))  # (said: "known scenarios are none")
    with pytest.raises(ConfigError, match=f"no folder of scenarios at {tmp_path / 'nowhere'}: give one with "):
        load_scenario("demo")


# ------------------------------------------------------------------------------ reproducibility


def flatten(batches):
    return [(b.signal, b.seq, b.t0, None if b.t is None else b.t.tolist(), b.values.tolist()) for b in batches]


def test_same_seed_same_wearer_other_seed_other_wearer(demo):
    kind = demo.kinds["anxious"]
    a = SimulatedWearer("sim-01", kind, np.random.default_rng(11), T0).batches(120)
    b = SimulatedWearer("sim-01", kind, np.random.default_rng(11), T0).batches(120)
    c = SimulatedWearer("sim-01", kind, np.random.default_rng(12), T0).batches(120)
    assert flatten(a) == flatten(b)
    assert flatten(a) != flatten(c)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_output_does_not_depend_on_seconds_per_call(demo, chunk):
    kinds = {"signals": ["bvp", "eda", "temp", "acc", "hr", "ibi"],
             "episodes": [{"kind": "anxiety", "start_s": 30, "duration_s": 60},
                          {"kind": "walk", "start_s": 100, "duration_s": 60}],
             "faults": {"contact_loss_per_hour": 60, "dropouts_per_hour": 60, "jitter_s": 0.003,
                        "clock_offset_s": [-5, 5], "ppg_motion_artifacts": True}}
    kind = parse_scenario({"kinds": {"busy": kinds}}).kinds["busy"]
    total = 200
    reference = SimulatedWearer("sim-01", kind, np.random.default_rng(3), T0).batches(total)
    w = SimulatedWearer("sim-01", kind, np.random.default_rng(3), T0)
    got = []
    while w.seconds < total:
        got.extend(w.batches(min(chunk or total, total - w.seconds)))
    assert flatten(got) == flatten(reference)


def test_wearer_i_does_not_change_when_more_wearers_run(demo):
    three = make_wearers(demo, 3, seed=5, start_unix=T0)
    five = make_wearers(demo, 5, seed=5, start_unix=T0)
    assert [w.wearer_id for w in five] == ["sim-01", "sim-02", "sim-03", "sim-04", "sim-05"]
    assert [w.kind.name for w in five] == ["calm", "anxious", "exercise", "calm", "anxious"]
    for a, b in zip(three, five):
        assert flatten(a.batches(30)) == flatten(b.batches(30))


def test_a_wearer_prefix_gives_other_ids_and_the_same_wearers(demo, tmp_path):
    """A second ``anxmon simulate`` against a service that took the first one's 90 simulated
    minutes was dropped whole ('a second simulation: give it other wearer ids'), and simulate
    had no way to give other ids. ``--wearer-prefix`` does; a prefix that makes no valid id is
    refused before anything is published or written."""
    import argparse

    from firmware_bridge.simulator import add_simulate_parser

    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    prefix = parser.parse_args(["simulate", "--wearer-prefix", "run2"]).wearer_prefix
    again = make_wearers(demo, 3, seed=5, start_unix=T0, prefix=prefix)
    assert [w.wearer_id for w in again] == ["run2-01", "run2-02", "run2-03"]
    for a, b in zip(make_wearers(demo, 3, seed=5, start_unix=T0), again):
        assert flatten(a.batches(30)) == flatten(b.batches(30))
    args = parser.parse_args(["simulate", "--wearer-prefix", "Run 2", "--broker", "mqtt://127.0.0.1:1",
                              "--truth", str(tmp_path / "t.json")])
    with pytest.raises(AnxmonError, match="wearer id 'Run 2-01' is not valid"):
        run_simulate(args, out=io.StringIO())
    assert not (tmp_path / "t.json").exists()


def test_faults_leave_the_physiology_alone(demo):
    """Faults draw from their own random stream: the same seed with and without them gives the
    same skin conductance, pulse and skin temperature wherever the band touches the skin and
    the batch arrives."""
    clean = demo.kinds["calm"]
    faulty = dataclasses.replace(clean, faults={**clean.faults, "dropouts_per_hour": 30.0,
                                                "contact_loss_per_hour": 30.0})
    a = SimulatedWearer("sim-01", clean, np.random.default_rng(8), T0).take(600)
    b = SimulatedWearer("sim-01", faulty, np.random.default_rng(8), T0).take(600)
    compared = 0
    for sa, sb in zip(a, b):
        assert sa.latent.hr_bpm == sb.latent.hr_bpm
        if sb.latent.dropped or not sb.latent.contact:
            continue
        for signal in ("eda", "bvp", "temp"):
            ea = next(x for x in sa.batches if x.signal == signal)
            eb = next(x for x in sb.batches if x.signal == signal)
            assert ea.values.tolist() == eb.values.tolist()
        compared += 1
    assert 0 < compared < 600


def test_batches_follow_the_wire_contract(demo):
    w = make_wearers(demo, 3, seed=2, start_unix=T0)[2]  # the runner: movement and artifacts
    trackers = {}
    sizes = {}
    for batch in w.batches(1500):
        decoded = decode_batch(encode_batch(batch), batch.signal)  # what the service will see
        verdict = trackers.setdefault(batch.signal, StreamTracker()).check(decoded)
        assert verdict.accept and verdict.gap_batches == 0
        sizes.setdefault(batch.signal, set()).add(len(batch))
        if batch.regular:
            assert batch.fs == SAMPLING_RATE_HZ[batch.signal]
    assert sizes == {"acc": {32}, "bvp": {64}, "eda": {4}, "temp": {4}}
    assert trackers["bvp"].stats.accepted == 1500


def test_acc_saturates_at_the_e4_range(demo):
    """A brisk seated gesture can pass 2 g at the wrist; an E4 reports -128..127 counts of 1/64 g
    (Stress-Predict S02's ACC.csv spans exactly that), so the simulated wristband clips there too.
    Seed 1's calm wearer gestures past 2 g about 20 times in 2000 s."""
    w = make_wearers(demo, 1, seed=1, start_unix=T0)[0]
    acc = np.vstack([b.values for b in w.batches(2000) if b.signal == "acc"])
    assert acc.min() >= -2.0 and acc.max() <= 127 / 64
    assert (acc == -2.0).any() or (acc == 127 / 64).any()  # the gestures do reach the limit


# ------------------------------------------------------------------------------ physiology


def test_anxiety_moves_every_indicator_the_right_way(demo):
    """Within one wearer: the last 4 min of the first episode (600-900 s) against the calm
    minutes before it; and against the same wearer (same seed, same drifts) without episodes."""
    kind = demo.kinds["anxious"]
    calm_twin = dataclasses.replace(kind, episodes=())
    ticks, _ = run_monitor(SimulatedWearer("sim-02", kind, np.random.default_rng(21), T0), 1000)
    w_twin = SimulatedWearer("sim-02", calm_twin, np.random.default_rng(21), T0)
    twin, _ = run_monitor(w_twin, 1000)
    calm = (300, 600)
    episode = (720, 960)  # the window of a tick ends at the tick: most of it inside the episode

    def before(name):
        return indicator_mean(ticks, name, *calm)

    def during(name):
        return indicator_mean(ticks, name, *episode)

    def twin_during(name):
        return indicator_mean(twin, name, *episode)

    assert during("HR_Mean") > before("HR_Mean") + 5.0
    assert during("HRV_RMSSD") < 0.75 * before("HRV_RMSSD")
    assert during("EDA_Tonic_Mean") > before("EDA_Tonic_Mean") + 0.3
    assert during("SCR_Rate") > before("SCR_Rate") + 1.5
    assert during("HR_Mean") > twin_during("HR_Mean") + 5.0
    assert during("HRV_RMSSD") < 0.75 * twin_during("HRV_RMSSD")
    assert during("EDA_Tonic_Mean") > twin_during("EDA_Tonic_Mean") + 0.3
    assert during("SCR_Rate") > twin_during("SCR_Rate") + 1.5
    assert during("TEMP_Mean") < twin_during("TEMP_Mean") - 0.05
    # the calm twin's first 15 min look alike before and "during"
    assert abs(twin_during("HR_Mean") - indicator_mean(twin, "HR_Mean", *calm)) < 4.0
    if any("RSP_Rate" in t.indicators.values for t in ticks):  # a pipeline with a breathing rate
        # the simulator breathes 0.08 Hz x arousal faster: +3.8 breaths/min at a = 0.8
        assert during("RSP_Rate") > twin_during("RSP_Rate") + 2.0
        true_rate = 60.0 * w_twin.profile["resp_rest_hz"]
        assert abs(indicator_mean(twin, "RSP_Rate", *calm) - true_rate) < 1.5


@pytest.mark.parametrize("decay_s", PROFILE_DEFAULTS["scr_decay_s"])
def test_an_scr_rises_and_recovers_within_published_times(decay_s):
    """docs/devices.md: an SCR peaks 1.2-1.5 s after onset (published rise time 1-3 s) and is
    half recovered 2.2-3.6 s after its peak (published 2-10 s; Dawson et al. 2007)."""
    from firmware_bridge.sim_physiology import SCR_RISE_S

    t = np.arange(0.0, 40.0, 0.001)
    y = np.exp(-t / decay_s) - np.exp(-t / SCR_RISE_S)
    peak = int(np.argmax(y))
    half = peak + int(np.argmax(y[peak:] < y[peak] / 2))
    assert 1.0 <= t[peak] <= 3.0 and 1.15 <= t[peak] <= 1.55
    assert 2.0 <= t[half] - t[peak] <= 10.0 and 2.15 <= t[half] - t[peak] <= 3.65


def test_resting_rmssd_is_that_of_healthy_adults(demo):
    """Resting short-term RMSSD of healthy adults: 42 +- 15 ms, range 19-75 (Nunan et al. 2010,
    a systematic review of normal values). Simulated wearers once had 21-34 ms (median 27).
    Minute RMSSDs of the beat intervals over 10 calm minutes, their median per wearer (seeds
    1-8): each within the published range, their median within half an SD of 42 ms."""
    kind = dataclasses.replace(demo.kinds["calm"], signals=("ibi",))
    per_wearer = []
    for seed in range(1, 9):
        batches = SimulatedWearer("sim-01", kind, np.random.default_rng(seed), T0).batches(600)
        t = np.concatenate([b.t for b in batches]) - T0
        ibi_ms = np.concatenate([b.values for b in batches])
        minutes = [np.sqrt(np.mean(np.diff(ibi_ms[(t >= s) & (t < s + 60)]) ** 2)) for s in range(0, 600, 60)]
        per_wearer.append(float(np.median(minutes)))
    assert all(19.0 <= x <= 75.0 for x in per_wearer), per_wearer
    assert abs(float(np.median(per_wearer)) - 42.0) < 7.5, per_wearer


@pytest.mark.parametrize("subject", ["S02", "S05"])
def test_resting_levels_include_real_e4_wearers(subject):
    """Each simulated wearer's skin conductance level and wrist temperature at rest are drawn
    from PROFILE_DEFAULTS. The ranges once (1.5-5 µS, 32.5-34 °C) left out both Stress-Predict
    wearers (S02: ~0.65 µS and ~35.2 °C; S05: ~29.5 °C): their session medians lie inside."""
    from monitor.recordings import read_recording
    from tests.conftest import data_path

    rec = read_recording(data_path("stress-predict", subject))
    for signal, key in (("eda", "scl_rest_us"), ("temp", "temp_rest_c")):
        low, high = PROFILE_DEFAULTS[key]
        assert low <= float(np.median(rec.streams[signal].values)) <= high, (signal, key)


def test_anxious_wearer_gets_checkins_during_episodes(demo):
    """Observed for make_wearers(demo, seed=1..16), with the seven-indicator score: all 48
    episodes got a check-in 1.7-2.8 min after onset, peak score 3.2-3.7, none outside."""
    w = make_wearers(demo, 2, seed=1, start_unix=T0)[1]
    ticks, sent = run_monitor(w, int(demo.duration_s))
    episodes = ground_truth(demo, [w], demo.duration_s, seed=1)["episodes"]
    hits, misses, false = score_detections(sent, episodes)
    assert hits >= 2 and false == 0, (hits, misses, false, [(t - T0) / 60 for t in sent])
    scores = [t.score.value for t in ticks if t.score.value is not None]
    assert max(scores) > 2.5


def test_calm_wearer_gets_no_checkin_in_70_minutes(demo):
    """Observed for make_wearers(demo, seed=1..16) over 90 min each: peak score 0.8-1.4, no
    trigger."""
    w = make_wearers(demo, 1, seed=3, start_unix=T0)[0]
    assert w.kind.name == "calm"
    ticks, sent = run_monitor(w, 4200)
    assert sent == []
    scored = [t.score.value for t in ticks if t.score.value is not None]
    assert len(scored) > 0.85 * len(ticks)  # scored almost all the time: quiet, not gated
    assert max(scored) < 2.0


def test_exercise_is_gated_while_moving(demo):
    """Walk 600-840 s, run 840-1440 s, walk 1440-1620 s: every tick from 60 s into the walk to
    the end of the 120 s hold-off after it is withheld as "motion"."""
    w = make_wearers(demo, 3, seed=4, start_unix=T0)[2]
    ticks, _ = run_monitor(w, 1800)
    moving = [t for t in ticks if 660 <= t.t - T0 <= 1620 + 110]
    assert moving and all(t.score.gate == "motion" for t in moving)
    assert all(t.indicators.values.get("ACC_Moving") == 1.0 for t in moving if t.t - T0 <= 1620)
    activity = indicator_mean(ticks, "ACC_Activity", 900, 1440)
    assert 0.25 < activity < 0.55  # a run at the wrist: per-second SD of |acc| 0.3-0.5 g


def test_run_recovery_does_not_look_like_anxiety(demo):
    """Seeds 1-6, 60 min each: calm, walk, run, cool-down walk (ends 1620 s), then rest.

    Heart rate and sweating stay up for a long while after a run; with a fixed 120 s hold-off
    3 of 16 seeds got a false check-in (score 1.7-2.7 at 30-37 min). The hold-off now grows with
    the bout (120 s + 1.5 s per second of movement, see ScoreConfig): no check-in may be sent,
    and once the score is back it stays below the threshold (2.0).
    """
    problems = {}
    resumed = 0
    for seed in range(1, 7):
        w = make_wearers(demo, 3, seed=seed, start_unix=T0)[2]
        ticks, sent = run_monitor(w, 3600)
        after = [t.score.value for t in ticks if t.t - T0 > 1620 and t.score.value is not None]
        resumed += bool(after)
        if sent or max(after, default=0.0) >= 2.0:
            problems[seed] = (round(max(after, default=0.0), 2), [round((t - T0) / 60, 1) for t in sent])
    assert problems == {}
    assert resumed == 6  # the score does come back within the hour: the check is not vacuous


def test_neurokit_reads_the_simulated_pulse_like_the_simulator_made_it(demo):
    """nk.ppg_process on one calm and one anxious minute of simulated BVP: heart rate within
    2 bpm of the simulator's heart rate, RMSSD within 20 % + 5 ms of the RMSSD of the
    simulator's own beat intervals (the ``ibi`` stream), and lower when anxious; our
    pipeline's HR within 2 bpm too. The 5 ms: nk places peaks on whole samples, 15.6 ms apart at
    64 Hz, which adds ~6 ms (SD of a difference of two uniform errors) to RMSSD in quadrature."""
    nk = pytest.importorskip("neurokit2")
    kind = dataclasses.replace(demo.kinds["anxious"], signals=("bvp", "ibi"))
    w = SimulatedWearer("sim-02", kind, np.random.default_rng(4), T0)
    seconds = w.take(900)
    monitor = WearerMonitor("sim-02")
    ticks = [t for s in seconds for b in s.batches if b.signal == "bvp" for t in monitor.update(b)]
    nk_rmssds = []
    for start in (400, 800):  # calm, then 200 s into the first episode
        minute = seconds[start:start + 60]
        bvp = np.concatenate([b.values for s in minute for b in s.batches if b.signal == "bvp"])
        ibi = np.concatenate([b.values for s in minute for b in s.batches if b.signal == "ibi"])
        true_hr = float(np.mean([s.latent.hr_bpm for s in minute]))
        true_rmssd = float(np.sqrt(np.mean(np.diff(ibi) ** 2)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signals, info = nk.ppg_process(bvp, sampling_rate=64)
            nk_rmssd = float(nk.hrv_time(info["PPG_Peaks"], sampling_rate=64)["HRV_RMSSD"].iloc[0])
        assert abs(float(signals["PPG_Rate"].mean()) - true_hr) < 2.0
        assert abs(nk_rmssd - true_rmssd) < 0.2 * true_rmssd + 5.0
        nk_rmssds.append(nk_rmssd)
        ours = [t.indicators.values["HR_Mean"] for t in ticks
                if t.t - T0 == start + 60 and "HR_Mean" in t.indicators.values]
        assert ours and abs(ours[0] - true_hr) < 2.0
    assert nk_rmssds[1] < 0.8 * nk_rmssds[0]
    assert seconds[830].latent.arousal > 0.5 and seconds[430].latent.arousal < 0.2


def test_analyze_recording_of_a_simulated_session(demo):
    """The offline path: a simulated anxious session as a Recording through analyze_recording."""
    w = make_wearers(demo, 2, seed=6, start_unix=T0)[1]
    recording, truth = recording_of(w, 1500)
    result = analyze_recording(recording, progress=False)
    s = result.summary
    assert s["rejected_batches"] == {} and s["signals"] == ["acc", "bvp", "eda", "temp"]
    assert s["checkins_sent"] == 1
    sent = [d.t_s for t in result.ticks for d in t.decisions if isinstance(d, Decision) and d.sent]
    assert 600 < sent[0] - T0 < 900 + 180
    assert len(truth) == 1500 and truth[700].arousal > 0.5


# ------------------------------------------------------------------------------ faults


def faulty_kind(**faults):
    return parse_scenario({"kinds": {"f": {"faults": faults}}}).kinds["f"]


def test_contact_loss_is_lost_by_every_signal_and_the_monitor_refuses_it():
    """A loose or removed band: once only the EDA fell, while the BVP kept its clean pulse and
    the device kept sending perfect beat intervals, so the monitor showed a heart rate from a
    band off the wrist. Now EDA reads near 0 µS, the BVP has no pulse (the monitor's pulse-shape
    check calls it noisy), skin temperature reads 3-6 °C low (Stress-Predict S02's band
    removal: -4.6 to -4.9 °C) and no beat whose interval overlaps the loss is sent."""
    kind = dataclasses.replace(faulty_kind(contact_loss_per_hour=20.0, contact_loss_s=[60, 90]),
                               signals=("acc", "bvp", "eda", "hr", "ibi", "temp"))
    w = SimulatedWearer("sim-01", kind, np.random.default_rng(2), T0)
    monitor = WearerMonitor("sim-01")
    seconds = w.take(1800)
    lost = [s for s in seconds if not s.latent.contact]
    assert 60 <= len(lost) < 1200
    lost_rel = {s.latent.rel_s for s in lost}
    for s in lost:
        eda = next(b for b in s.batches if b.signal == "eda")
        assert eda.values.max() < 0.05  # below the monitor's contact floor
        temp = next(b for b in s.batches if b.signal == "temp")
        assert 3.0 - 0.05 < s.latent.temp_c - temp.values.mean() < 6.0 + 0.05
        assert not any(b.signal in ("hr", "ibi") for b in s.batches)
    for s in seconds:  # the first beat after the loss spans it: not sent either
        for b in s.batches:
            if b.signal == "ibi":
                for t, ibi_ms in zip(b.t.tolist(), b.values.tolist()):
                    start = t - T0 - ibi_ms / 1000.0
                    assert not any(math.floor(start) <= x <= t - T0 for x in lost_rel)
    sent_ibi = sum(len(b) for s in seconds for b in s.batches if b.signal == "ibi")
    assert sent_ibi > 0.8 * sum(s.latent.hr_bpm for s in seconds if s.latent.contact) / 60.0

    ticks = [t for s in seconds for b in s.batches for t in monitor.update(b)]
    lost_t = {s.latent.t_s for s in lost}
    refused = [t for t in ticks if any(t.t - 60 < x <= t.t for x in lost_t)]
    assert refused and all(t.indicators.quality["eda"] != "ok" for t in refused)
    assert all("EDA_Tonic_Mean" not in t.indicators.values for t in refused)
    inside = [t for t in ticks if all(t.t - x in lost_t for x in range(60))]  # windows wholly off the skin
    # the EDA saw the band off the skin: its pulse and temperature are withheld with it ...
    assert inside and all(t.indicators.quality["hrv"] == t.indicators.quality["temp"] == "off_skin" for t in inside)
    assert all("HR_Mean" not in t.indicators.values for t in inside)
    # ... and the pulse alone (a band without EDA) is no pulse to the pulse-shape check
    pulse_only = WearerMonitor("sim-01")
    ticks = [t for s in seconds for b in s.batches if b.signal == "bvp" for t in pulse_only.update(b)]
    inside = [t for t in ticks if all(t.t - x in lost_t for x in range(60))]
    assert inside and all(t.indicators.quality["hrv"] == "noisy" and "HR_Mean" not in t.indicators.values for t in inside)


def test_dropouts_skip_sequence_numbers():
    w = SimulatedWearer("sim-01", faulty_kind(dropouts_per_hour=30.0, dropout_s=[3, 10]), np.random.default_rng(9), T0)
    seconds = w.take(1800)
    dropped = sum(s.latent.dropped for s in seconds)
    assert dropped > 0
    tracker = StreamTracker()
    for s in seconds:
        for b in s.batches:
            if b.signal == "eda":
                tracker.check(b)
    assert tracker.stats.accepted == 1800 - dropped
    trailing = 1799 - tracker.stats.last_seq  # lost at the very end: no later batch shows the gap
    assert tracker.stats.missing_batches == dropped - trailing


def test_clock_offset_drift_and_jitter_stamp_the_batches():
    w = SimulatedWearer("sim-01", faulty_kind(clock_offset_s=-42.5, clock_drift_ppm=100.0, jitter_s=0.004),
                        np.random.default_rng(1), T0)
    errors = []
    for s in w.take(600):
        for b in s.batches:
            ideal = T0 + s.latent.rel_s - 42.5 + 100e-6 * s.latent.rel_s
            errors.append(b.t0 - ideal)
            validate_batch(b)
    errors = np.array(errors)
    assert abs(errors.mean()) < 0.001 and 0.003 < errors.std() < 0.005
    assert np.abs(errors).max() <= 3 * 0.004 + 1e-6  # clipped at 3 SD (1e-6: float resolution at 1.7e9)


def test_truth_is_on_the_device_clock():
    sc = parse_scenario({"kinds": {"f": {"episodes": [{"kind": "anxiety", "start_s": 100, "duration_s": 50}],
                                         "faults": {"clock_offset_s": 30.0, "clock_drift_ppm": 200.0}}}})
    w = make_wearers(sc, 1, seed=1, start_unix=T0)[0]
    (episode,) = ground_truth(sc, [w], 600, seed=1)["episodes"]
    assert episode["start_s"] == pytest.approx(T0 + 100 + 30 + 0.02, abs=1e-6)
    assert episode["end_s"] == pytest.approx(T0 + 150 + 30 + 0.03, abs=1e-6)
    first = w.step().batches[0]
    assert first.t0 == pytest.approx(T0 + 30, abs=1e-6)  # the monitor sees the same clock


def test_ppg_motion_artifacts_follow_the_wrist():
    walk = {"episodes": [{"kind": "walk", "start_s": 60, "duration_s": 120}],
            "signals": ["acc", "bvp", "eda", "temp", "hr", "ibi"]}
    clean = parse_scenario({"kinds": {"w": walk}}).kinds["w"]
    noisy = parse_scenario({"kinds": {"w": {**walk, "faults": {"ppg_motion_artifacts": True}}}}).kinds["w"]
    a = SimulatedWearer("sim-01", clean, np.random.default_rng(3), T0).take(180)
    b = SimulatedWearer("sim-01", noisy, np.random.default_rng(3), T0).take(180)

    def bvp(seconds, i0, i1):
        return np.concatenate([x.values for s in seconds[i0:i1] for x in s.batches if x.signal == "bvp"])

    still_diff = np.abs(bvp(a, 0, 50) - bvp(b, 0, 50)).std()
    walking_diff = np.abs(bvp(a, 90, 170) - bvp(b, 90, 170)).std()
    amplitude = bvp(a, 90, 170).std()
    assert walking_diff > 0.3 * amplitude  # walking buries the pulse under step-frequency waves
    assert walking_diff > 3 * still_diff  # seated, only the occasional gesture disturbs it

    # The device's beat intervals: once all sent, perfect, while the pulse was buried. Now the
    # beats whose PPG the movement buries are left out (as an E4 does), the others are the
    # same beats as without artifacts, and the 1 Hz heart rate stops with them.
    def beats(seconds, i0, i1, signal="ibi"):
        return [(t, v) for s in seconds[i0:i1] for x in s.batches if x.signal == signal
                for t, v in zip(x.t.tolist(), x.values.tolist())]

    def expected(seconds, i0, i1):
        return sum(s.latent.hr_bpm for s in seconds[i0:i1]) / 60.0

    assert set(beats(b, 0, 180)) <= set(beats(a, 0, 180))
    assert len(beats(a, 0, 180)) > 0.95 * expected(a, 0, 180)  # no artifacts: every beat
    assert len(beats(b, 0, 50)) > 0.6 * expected(b, 0, 50)  # seated: most beats
    assert len(beats(b, 90, 170)) < 0.05 * expected(b, 90, 170)  # walking: hardly any
    assert len(beats(b, 90, 170, "hr")) < 0.05 * 80


# ------------------------------------------------------------------------------ truth and scoring


def test_score_detections_counts_hits_misses_and_false_checkins():
    eps = [{"kind": "anxiety", "start_s": 1000.0, "end_s": 1300.0},
           {"kind": "anxiety", "start_s": 5000.0, "end_s": 5300.0},
           {"kind": "run", "start_s": 3000.0, "end_s": 3600.0}]
    assert score_detections([], eps) == (0, 2, 0)
    assert score_detections([1100.0, 1200.0], eps) == (1, 1, 0)  # two check-ins, one episode
    assert score_detections([1300.0 + 179.0], eps) == (1, 1, 0)  # inside the 180 s grace
    assert score_detections([1300.0 + 181.0], eps) == (0, 2, 1)
    assert score_detections([3300.0, 5100.0], eps) == (1, 1, 1)  # during the run: false
    assert score_detections([999.0], eps, grace_s=0.0) == (0, 2, 1)


def test_ground_truth_file(demo, tmp_path):
    wearers = make_wearers(demo, 4, seed=2, start_unix=T0)
    truth = ground_truth(demo, wearers, seconds=2800, seed=2)
    write_truth(tmp_path / "t" / "truth.json", truth)
    loaded = json.loads((tmp_path / "t" / "truth.json").read_text())
    assert loaded == json.loads(json.dumps(truth))
    assert loaded["start_unix"] == T0 and set(loaded["wearers"]) == {"sim-01", "sim-02", "sim-03", "sim-04"}
    by = [(e["wearer"], e["kind"], e["start_rel_s"], e["end_rel_s"], e["truncated"]) for e in loaded["episodes"]]
    assert by == [("sim-02", "anxiety", 600.0, 900.0, False), ("sim-02", "anxiety", 2700.0, 2800.0, True),
                  ("sim-03", "walk", 600.0, 840.0, False), ("sim-03", "run", 840.0, 1440.0, False),
                  ("sim-03", "walk", 1440.0, 1620.0, False)]
    assert loaded["episodes"][0]["start_s"] == T0 + 600.0
    assert set(loaded["wearers"]["sim-01"]["profile"]) == set(PROFILE_DEFAULTS)


def test_ground_truth_lists_every_fault_second(tmp_path):
    """Researchers comparing the monitor's quality flags with the truth had only the episodes:
    when the band was off, batches lost or the pulse buried by movement was nowhere. The truth
    now lists these intervals, second for second as the wearers generated them, on both time
    bases, cut at the run's end; ``anxmon simulate --truth`` writes them when the run ends."""
    import argparse

    from monitor.broker import start_broker
    from tests.conftest import need_broker

    raw = {"kinds": {"f": {"episodes": [{"kind": "walk", "start_s": 300, "duration_s": 120}],
                           "faults": {"contact_loss_per_hour": 20.0, "contact_loss_s": [20, 40],
                                      "dropouts_per_hour": 30.0, "dropout_s": [3, 10],
                                      "ppg_motion_artifacts": True, "clock_offset_s": 12.0}}}}
    sc = parse_scenario(raw)
    wearers = make_wearers(sc, 2, seed=4, start_unix=T0)
    latents = {w.wearer_id: [s.latent for s in w.take(1200)] for w in wearers}
    truth = json.loads(json.dumps(ground_truth(sc, wearers, 1000, seed=4)))
    flags = {"contact_loss": lambda x: not x.contact, "dropout": lambda x: x.dropped,
             "ppg_artifact": lambda x: x.ppg_artifact}
    for w in wearers:
        for kind, flagged in flags.items():
            intervals = sorted((f["start_rel_s"], f["end_rel_s"]) for f in truth["faults"]
                               if f["wearer"] == w.wearer_id and f["kind"] == kind)
            covered = {k for a, b in intervals for k in range(int(a), int(b))}
            assert covered == {int(x.rel_s) for x in latents[w.wearer_id][:1000] if flagged(x)}
            assert intervals and all(b1 < a2 for (_, b1), (a2, _) in zip(intervals, intervals[1:]))  # maximal runs
    assert all(f["start_s"] == T0 + 12.0 + f["start_rel_s"] and f["end_rel_s"] <= 1000 for f in truth["faults"])
    assert {f["kind"] for f in truth["faults"]} == set(flags) and len(truth["episodes"]) == 2

    need_broker("nats")
    (tmp_path / "faulty.toml").write_text(
        'duration_s = 60\n[kinds.f.faults]\ndropouts_per_hour = 600.0\ndropout_s = [2, 4]\n')
    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    with start_broker("nats", data_dir=tmp_path / "nats") as broker:
        args = parser.parse_args(["simulate", "--scenario", str(tmp_path / "faulty.toml"), "--speed", "inf",
                                  "--seed", "1", "--start", str(T0), "--broker", broker.url,
                                  "--truth", str(tmp_path / "truth.json")])
        assert run_simulate(args, out=io.StringIO()) == 0
    written = json.loads((tmp_path / "truth.json").read_text())
    w = make_wearers(parse_scenario({"duration_s": 60, "kinds": {"f": {"faults": {
        "dropouts_per_hour": 600.0, "dropout_s": [2, 4]}}}}), 1, seed=1, start_unix=T0)[0]
    dropped = {int(s.latent.rel_s) for s in w.take(60) if s.latent.dropped}
    assert dropped and {k for f in written["faults"] for k in range(int(f["start_rel_s"]), int(f["end_rel_s"]))} == dropped


def test_simulate_command_line_needs_a_broker(monkeypatch):
    import argparse

    monkeypatch.delenv("ANXMON_BROKER_URL", raising=False)
    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", "--wearers", "5", "--scenario", "demo", "--speed", "60",
                              "--seconds", "120", "--seed", "3", "--truth", "t.json"])
    assert (args.wearers, args.speed, args.seconds, args.seed, args.broker) == (5, 60.0, 120.0, 3, None)
    assert args.func is run_simulate
    with pytest.raises(SimulationError, match="--broker mqtt://"):
        run_simulate(args)
    args = parser.parse_args(["simulate", "--broker", "mqtt://a:b@127.0.0.1:1", "--speed", "0"])
    with pytest.raises(SimulationError, match="--speed must be > 0"):
        run_simulate(args)
    assert math.isinf(parser.parse_args(["simulate", "--speed", "inf"]).speed)


@pytest.mark.parametrize("option, expected", [
    (["--seconds", "inf"], "--seconds must be a number >= 1, got inf"),
    (["--seconds", "nan"], "--seconds must be a number >= 1, got nan"),
    (["--start", "1700000000000"], "--start 1700000000000 looks like milliseconds; give unix seconds"),
    (["--start", "nan"], "--start nan is not a number"),
])
def test_simulate_refuses_impossible_seconds_and_start_times(option, expected):
    """Once a traceback (OverflowError, ValueError from datetime); a start in milliseconds would
    otherwise stamp batches that the service refuses."""
    import argparse

    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", "--broker", "mqtt://a:b@127.0.0.1:1", *option])
    with pytest.raises(SimulationError, match=re.escape(expected)):
        run_simulate(args)


def test_unreachable_broker_is_a_clear_error(demo):
    from monitor.broker import free_port

    from firmware_bridge.simulator import Simulation

    sim = Simulation(make_wearers(demo, 2, seed=1, start_unix=T0), f"mqtt://u:p@127.0.0.1:{free_port()}",
                     speed=100.0, connect_timeout_s=1.0)
    with pytest.raises(SimulationError, match=r"cannot reach broker mqtt://u@127\.0\.0\.1:\d+: 2 of 2"):
        sim.run(10)


def test_walking_is_not_restlessness_fidgeting_is_and_exercise_quickens_breathing(demo):
    """Issue 8 on the simulated wearers (seeds 1-3): the exerciser's walk and run (660-1620 s)
    count as no restlessness at all, while the anxious wearer's fidgeting during its first
    episode (660-900 s) raises restlessness above its own calm minutes (300-600 s); running
    raises the breathing rate by more than 8 breaths/min (the simulator's run: ~+13). During the
    run PPG motion artifacts withhold most breathing-rate windows (quality), so a few must do."""

    def mean(ticks, key, a, b, min_n=10):
        v = [t.indicators.values[key] for t in ticks if a <= t.t - T0 < b and key in t.indicators.values]
        assert len(v) >= min_n, f"{key} missing in {a}-{b} s"
        return float(np.mean(v))

    for seed in (1, 2, 3):
        calm, anxious, runner = make_wearers(demo, 3, seed=seed, start_unix=T0)
        run_ticks, _ = run_monitor(runner, 1700)
        anx_ticks, _ = run_monitor(anxious, 960)
        assert mean(run_ticks, "ACC_Restlessness", 660, 1620) < 0.02
        assert mean(run_ticks, "ACC_Restlessness", 300, 600) > 0.02  # the indicator is alive at rest
        assert mean(anx_ticks, "ACC_Restlessness", 660, 900) > mean(anx_ticks, "ACC_Restlessness", 300, 600) + 0.02
        # during the run, PPG motion artifacts withhold most breathing-rate windows: a few suffice
        assert mean(run_ticks, "RSP_Rate", 900, 1440, min_n=3) > mean(run_ticks, "RSP_Rate", 300, 600) + 8.0


def test_module_command_line_has_no_subcommand(capsys):
    """``python -m firmware_bridge.simulator --help`` showed ``... simulator simulate [-h]``, and
    following it was refused ("unrecognized arguments: simulate")."""
    from firmware_bridge.simulator import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m firmware_bridge.simulator [-h] [--wearers WEARERS]")
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", "--wearers", "1"])
    assert exit_.value.code == 2


def test_a_stopped_embedded_broker_is_named_as_the_likely_cause(tmp_path, monkeypatch):
    """``--data-dir`` of an ``anxmon run`` that has stopped: "Connection refused" says which broker."""
    import argparse
    import functools

    from firmware_bridge import simulator
    from monitor.broker import free_port

    monkeypatch.delenv("ANXMON_BROKER_URL", raising=False)
    monkeypatch.setattr(simulator, "Simulation", functools.partial(simulator.Simulation, connect_timeout_s=1.0))
    (tmp_path / "broker-credentials.json").write_text(json.dumps({"url": f"mqtt://monitor:pw@127.0.0.1:{free_port()}"}))
    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", "--wearers", "1", "--seconds", "5", "--data-dir", str(tmp_path)])
    with pytest.raises(SimulationError, match=r"Connection refused\) \(the embedded broker runs only while "
                                              r"`anxmon run --data-dir .*` runs: is it running\?\)"):
        run_simulate(args, out=io.StringIO())
    args = parser.parse_args(["simulate", "--wearers", "1", "--seconds", "5", "--broker",
                              f"mqtt://u:p@127.0.0.1:{free_port()}"])
    with pytest.raises(SimulationError) as error:
        run_simulate(args, out=io.StringIO())
    assert "embedded broker" not in str(error.value)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_simulate_shows_progress_on_a_terminal(tmp_path):
    """``anxmon simulate`` printed one line at the start and nothing until the end (90 minutes at
    the default speed): on a terminal a bar counts the simulated seconds and acknowledged batches."""
    import argparse

    from monitor.broker import start_broker
    from tests.conftest import need_broker

    need_broker("nats")
    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    with start_broker("nats", data_dir=tmp_path / "nats") as broker:
        argv = ["simulate", "--wearers", "1", "--seconds", "5", "--speed", "5", "--broker", broker.url]
        terminal, out = _Terminal(), io.StringIO()
        assert run_simulate(parser.parse_args(argv), out=out, err=terminal) == 0  # a second of wall time
        assert re.search(r"simulated: .* [1-5]/5 .*\d+ batches acknowledged", terminal.getvalue()), terminal.getvalue()
        assert "published 5 s of 1 wearer(s)" in out.getvalue()
        quiet = io.StringIO()  # not a terminal (a log file, a pipe): no bar
        assert run_simulate(parser.parse_args(argv), out=io.StringIO(), err=quiet) == 0
        assert quiet.getvalue() == ""


def test_python_m_simulator_names_itself_in_its_errors(tmp_path, monkeypatch, capsys):
    """``python -m firmware_bridge.simulator`` without a broker: the error is its own usage error
    (exit 2) under the name that was typed, not ``anxmon simulate``."""
    from firmware_bridge.simulator import main

    monkeypatch.chdir(tmp_path)  # (no anxmon-data here)
    monkeypatch.delenv("ANXMON_BROKER_URL", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["--wearers", "1", "--seconds", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m firmware_bridge.simulator: error: ") and "needs a broker" in err
