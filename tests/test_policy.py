"""Tests of the check-in policy (monitor.core.policy).

Every expected time below is computed by hand from the config in the test (ticks every 5 s,
``sustain_s`` 60 s unless said otherwise) and from the time zone rules of the IANA database:
Europe/Berlin is UTC+2 in summer (CEST) and UTC+1 in winter (CET), switching on 2024-03-31 at
01:00 UTC; America/New_York is UTC-4 in summer (EDT) and UTC-5 in winter (EST), falling back on
2024-11-03 at 06:00 UTC.
"""

from __future__ import annotations

import json
import math
import pickle
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.policy import (
    ANSWER_CLOCK_SKEW_S,
    AnswerError,
    CheckinPolicy,
    ControlError,
    Decision,
    Expired,
    PolicyConfig,
    PolicyError,
    check_quiet_hours,
    explain,
)
from monitor.errors import AnxmonError, ConfigError
from monitor.toml_tables import read_table

STEP_S = 5.0
EXPL = {"HR_Mean": 2.4, "EDA_Tonic_Mean": 1.6, "HRV_RMSSD": -1.1, "TEMP_Mean": 0.3}


def utc(*args: int) -> float:
    """Unix seconds of a UTC wall time, e.g. utc(2024, 6, 15, 12, 30)."""
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def policy(**overrides) -> CheckinPolicy:
    cfg = {"quiet_hours": None, "cooldown_s": 0.0}
    cfg.update(overrides)
    return CheckinPolicy(PolicyConfig(**cfg), wearer_id="w1")


def feed(p: CheckinPolicy, t0: float, scores, step_s: float = STEP_S, gate=None) -> list:
    """Feed one tick per score from t0 on; returns all events."""
    out = []
    for i, score in enumerate(scores):
        out += p.update(t0 + i * step_s, score, EXPL, gate)
    return out


def decisions(events) -> list[Decision]:
    return [e for e in events if isinstance(e, Decision)]


def episode(p: CheckinPolicy, t0: float, high: float = 3.0, duration_s: float = 60.0) -> list:
    """An elevation of ``duration_s`` from t0, then one calm tick (re-arms); returns decisions."""
    n = int(duration_s / STEP_S) + 1
    events = feed(p, t0, [high] * n)
    events += p.update(t0 + n * STEP_S, 0.5, EXPL)
    return decisions(events)


# --- sustained elevation and hysteresis -------------------------------------------------------


def test_short_spike_does_not_trigger_but_sustained_elevation_does():
    p = policy()
    t0 = utc(2024, 6, 15, 12)
    # 11 ticks above threshold span 50 s < sustain_s = 60 s: nothing.
    assert decisions(feed(p, t0, [3.0] * 11 + [0.5])) == []
    # 13 ticks span exactly 60 s: one decision, at the 13th tick (t0 + 100 + 60).
    got = decisions(feed(p, t0 + 100, [3.0] * 20))
    assert [(d.t_s, d.sent, d.reason) for d in got] == [(t0 + 160, True, "sent")]
    assert got[0].score == 3.0 and got[0].threshold == 2.0


def test_score_exactly_at_threshold_counts_and_just_below_breaks_the_run():
    p = policy()
    t0 = utc(2024, 6, 15, 12)
    # 1.99 at the 7th tick (t0+30) breaks the run, which restarts at t0+35 -> trigger at t0+95.
    scores = [2.0] * 6 + [1.99] + [2.0] * 20
    got = decisions(feed(p, t0, scores))
    assert [d.t_s for d in got] == [t0 + 95]


@pytest.mark.parametrize("gate, score", [("motion", 3.0), ("poor_quality", 3.0), (None, None),
                                         (None, math.nan)])
def test_unusable_tick_breaks_the_sustained_run(gate, score):
    p = policy()
    t0 = utc(2024, 6, 15, 12)
    events = feed(p, t0, [3.0] * 10)  # t0 .. t0+45
    events += p.update(t0 + 50, score, EXPL, gate)  # unusable: the run is broken
    events += feed(p, t0 + 55, [3.0] * 20)  # the run restarts at t0+55 -> trigger at t0+115
    assert [d.t_s for d in decisions(events)] == [t0 + 115]


def test_a_gated_tick_never_triggers_nor_rearms():
    p = policy()
    t0 = utc(2024, 6, 15, 12)
    assert decisions(feed(p, t0, [9.0] * 50, gate="motion")) == []
    assert len(decisions(feed(p, t0 + 1000, [3.0] * 13))) == 1
    # Disarmed now; a gated (withheld) low score is no evidence the body calmed down.
    p.update(t0 + 2000, 0.1, EXPL, "stale")
    assert decisions(feed(p, t0 + 2005, [3.0] * 20)) == []


def test_a_gap_between_ticks_breaks_the_run():
    p = policy()
    t0 = utc(2024, 6, 15, 12)
    events = feed(p, t0, [3.0] * 10)  # t0 .. t0+45
    # Next tick 40 s later (> max_tick_gap_s = 30): the run restarts at t0+85 -> t0+145.
    events += feed(p, t0 + 85, [3.0] * 20)
    assert [d.t_s for d in decisions(events)] == [t0 + 145]


def test_hysteresis_no_retrigger_until_score_falls_below_rearm_level():
    p = policy()  # threshold 2.0, rearm level 0.6 * 2.0 = 1.2
    t0 = utc(2024, 6, 15, 12)
    first = decisions(feed(p, t0, [3.0] * 13))
    assert len(first) == 1
    # Stays elevated for two hours: still one decision.
    assert decisions(feed(p, t0 + 65, [3.0] * 1440)) == []
    # Dips to 1.5 (below threshold, above the re-arm level) and rises again: no decision.
    t1 = t0 + 65 + 1440 * STEP_S
    assert decisions(feed(p, t1, [1.5] * 10 + [3.0] * 30)) == []
    # Falls to 1.1 (< 1.2): re-armed; a new sustained elevation triggers 60 s after it starts.
    t2 = t1 + 40 * STEP_S
    got = decisions(feed(p, t2, [1.1] + [3.0] * 30))
    assert [(d.t_s, d.reason) for d in got] == [(t2 + 5 + 60, "sent")]


def test_suppressed_trigger_disarms_so_a_stale_elevation_is_not_sent_later():
    p = policy(quiet_hours=("22:00", "07:00"))
    t0 = utc(2024, 6, 15, 6, 50)  # 06:50 UTC: quiet hours until 07:00
    got = decisions(feed(p, t0, [3.0] * 200))  # elevated until 07:06:35
    assert [(d.t_s, d.reason) for d in got] == [(t0 + 60, "quiet_hours")]


# --- cooldown, daily cap, quiet hours, time zones, DST ----------------------------------------


def test_cooldown_suppresses_until_it_has_passed():
    p = policy(cooldown_s=1800.0)
    t0 = utc(2024, 6, 15, 12)
    a = episode(p, t0)  # sent at t0 + 60
    b = episode(p, t0 + 1000)  # at t0 + 1060: 1000 s after the sent prompt < 1800
    c = episode(p, t0 + 1700)  # at t0 + 1760: 1700 s < 1800 (cooldown counts from *sent* ones)
    d = episode(p, t0 + 1800)  # at t0 + 1860: 1800 s >= 1800 -> sent
    assert [(x.t_s, x.sent, x.reason) for x in a + b + c + d] == [
        (t0 + 60, True, "sent"),
        (t0 + 1060, False, "cooldown"),
        (t0 + 1760, False, "cooldown"),
        (t0 + 1860, True, "sent"),
    ]
    assert b[0].prompt is None and b[0].explanation == EXPL


def test_daily_cap_and_its_reset_at_local_midnight():
    p = policy(daily_cap=2, timezone="Europe/Berlin")  # UTC+2 on 2024-06-15
    starts = [utc(2024, 6, 15, h) for h in (8, 10, 12, 21)] + [utc(2024, 6, 15, 22, 1)]
    got = [d for t in starts for d in episode(p, t)]
    # 21:01 UTC is 23:01 local (same day, capped); 22:02 UTC is 00:02 local on 06-16: reset.
    assert [d.reason for d in got] == ["sent", "sent", "daily_cap", "daily_cap", "sent"]
    assert p.local_day(starts[-1] + 60) == "2024-06-16"


def test_daily_cap_day_is_25_hours_long_when_new_york_falls_back():
    # 2024-11-03 local in New York runs from 04:00 UTC (EDT) to 05:00 UTC on 11-04 (EST).
    p = policy(daily_cap=1, timezone="America/New_York")
    got = [d for t in (utc(2024, 11, 3, 4, 30), utc(2024, 11, 4, 4, 30), utc(2024, 11, 4, 5, 30))
           for d in episode(p, t)]
    # 04:31 UTC Nov 4 is 23:31 EST Nov 3: still capped; 05:31 UTC is 00:31 Nov 4: a new day.
    assert [d.reason for d in got] == ["sent", "daily_cap", "sent"]


def test_daily_cap_is_not_reset_when_the_wearer_moves_west_into_the_previous_day():
    # 01:00 UTC on 2024-06-16 is 03:00 on 06-16 in Berlin but 21:00 on 06-15 in New York.
    p = policy(daily_cap=2, timezone="Europe/Berlin")
    t0 = utc(2024, 6, 16, 1)
    before = [d for t in (t0, t0 + 600) for d in episode(p, t)]
    p.control(t0 + 1200, "quiet_hours", quiet_hours=[], timezone="America/New_York")
    after = [d for t in (t0 + 1800, utc(2024, 6, 16, 4, 30), utc(2024, 6, 17, 4, 30)) for d in episode(p, t)]
    # 04:30 UTC is 00:30 on 06-16 in New York: the day already has its two prompts; 06-17 is new.
    assert [d.reason for d in before + after] == ["sent", "sent", "daily_cap", "daily_cap", "sent"]


@pytest.mark.parametrize(
    "hour_utc, quiet_berlin, quiet_new_york",
    [
        (3, True, True),  # 05:00 Berlin, 23:00 New York
        (10, False, True),  # 12:00 Berlin, 06:00 New York
        (12, False, False),  # 14:00 Berlin, 08:00 New York
        (21, True, False),  # 23:00 Berlin, 17:00 New York
    ],
)
def test_quiet_hours_across_midnight_in_two_time_zones(hour_utc, quiet_berlin, quiet_new_york):
    t = utc(2024, 6, 15, hour_utc, 0)  # the trigger itself is at t + 60
    for tz, quiet in (("Europe/Berlin", quiet_berlin), ("America/New_York", quiet_new_york)):
        p = policy(quiet_hours=("22:00", "07:00"), timezone=tz)
        assert p.is_quiet(t + 60) is quiet
        assert [d.reason for d in episode(p, t)] == ["quiet_hours" if quiet else "sent"]


def test_quiet_hours_bounds_start_inclusive_end_exclusive():
    p = policy(quiet_hours=("22:00", "07:00"), timezone="Europe/Berlin")
    local_22 = utc(2024, 1, 15, 21)  # 22:00 CET
    local_07 = utc(2024, 1, 16, 6)  # 07:00 CET
    assert p.is_quiet(local_22) and not p.is_quiet(local_22 - 1)
    assert p.is_quiet(local_07 - 1) and not p.is_quiet(local_07)
    # A window that does not cross midnight.
    q = policy(quiet_hours=("13:00", "14:30"), timezone="UTC")
    assert [q.is_quiet(utc(2024, 1, 15, 12, 59)), q.is_quiet(utc(2024, 1, 15, 13, 0)),
            q.is_quiet(utc(2024, 1, 15, 14, 29)), q.is_quiet(utc(2024, 1, 15, 14, 30))] == [
        False, True, True, False]


def test_quiet_hours_end_moves_with_daylight_saving_time():
    # Quiet hours end at 07:00 local: 06:00 UTC on 2024-03-30 (CET), 05:00 UTC on 03-31 (CEST).
    p = policy(quiet_hours=("22:00", "07:00"), timezone="Europe/Berlin")
    assert [d.reason for d in episode(p, utc(2024, 3, 30, 5, 30))] == ["quiet_hours"]
    assert [d.reason for d in episode(p, utc(2024, 3, 31, 5, 30))] == ["sent"]
    # A window that starts inside the skipped hour (02:00-03:00 does not exist on 03-31):
    # 01:30 CET = 00:30 UTC starts it, 01:00 UTC is already 03:00 CEST, outside it.
    q = policy(quiet_hours=("01:30", "02:30"), timezone="Europe/Berlin")
    assert q.is_quiet(utc(2024, 3, 31, 0, 45)) and not q.is_quiet(utc(2024, 3, 31, 1, 5))


# --- pause, resume, snooze --------------------------------------------------------------------


def test_pause_until_resumed_then_resume():
    p = policy()
    t0 = utc(2024, 6, 15, 9)
    assert p.control(t0, "pause").until_s is None
    held = [d for k in range(3) for d in episode(p, t0 + k * 86400)]  # three days later: held
    assert [d.reason for d in held] == ["paused"] * 3
    p.control(t0 + 3 * 86400, "resume")
    assert [d.reason for d in episode(p, t0 + 3 * 86400 + 10)] == ["sent"]


def test_pause_with_duration_and_snooze_default_one_hour():
    p = policy()
    t0 = utc(2024, 6, 15, 9)
    assert p.control(t0, "pause", duration_s=600).until_s == t0 + 600
    assert [d.reason for d in episode(p, t0)] == ["paused"]  # decision at t0 + 60
    assert [d.reason for d in episode(p, t0 + 600)] == ["sent"]  # at t0 + 660: pause over
    t1 = t0 + 3600
    assert p.control(t1, "snooze").until_s == t1 + 3600
    assert [d.reason for d in episode(p, t1 + 3400)] == ["snoozed"]  # at t1 + 3460
    assert [d.reason for d in episode(p, t1 + 3540)] == ["sent"]  # at t1 + 3600: over
    p.control(t1 + 4000, "snooze", duration_s=7200)
    p.control(t1 + 4001, "resume")
    assert [d.reason for d in episode(p, t1 + 4002)] == ["sent"]


def test_suppression_reasons_follow_the_documented_order():
    p = policy(quiet_hours=("22:00", "07:00"), daily_cap=0, cooldown_s=1e6)
    night = utc(2024, 6, 15, 23)
    p.control(night, "pause")
    p.control(night, "snooze")
    assert [d.reason for d in episode(p, night)] == ["paused"]
    p.control(night + 200, "pause", duration_s=1)  # pause ends at night + 201, snooze continues
    assert [d.reason for d in episode(p, night + 300)] == ["snoozed"]
    assert [d.reason for d in episode(p, night + 3600)] == ["quiet_hours"]
    assert [d.reason for d in episode(p, utc(2024, 6, 16, 12))] == ["daily_cap"]


def test_invalid_control_raises():
    p = policy()
    with pytest.raises(ControlError, match="unknown control action"):
        p.control(0.0, "sleep")
    for bad in (0, -5, math.inf, math.nan, "60"):
        with pytest.raises(ControlError, match="duration_s"):
            p.control(0.0, "snooze", duration_s=bad)
    with pytest.raises(ControlError):
        p.control(0.0, "resume", duration_s=60)
    for bad_t in (math.nan, math.inf):  # a snooze until NaN would hold nothing, silently
        with pytest.raises(ControlError, match="finite"):
            p.control(bad_t, "snooze")
    assert (p.state.paused_until_s, p.state.snoozed_until_s) == (None, None)


# --- prompts, expiry, answers -----------------------------------------------------------------


def test_prompt_content_is_warm_explained_and_serialisable():
    p = policy()
    t0 = utc(2024, 6, 15, 12)
    d = episode(p, t0)[0]
    prompt = d.prompt
    assert prompt.id == f"w1-{int((t0 + 60) * 1000)}"
    assert prompt.message == "Your body seems tense right now. How are you feeling?"
    assert prompt.labels == ("anxious", "stressed", "excited", "exercising", "fine")
    assert len(prompt.rating_labels) == 5 and prompt.expires_at_s == t0 + 60 + 900
    # EXPL: HR up 2.4, EDA up 1.6, RMSSD down 1.1 (stress direction, but the heart is named
    # already: each body system once), TEMP +0.3 (too small).
    assert prompt.why.indicators == {"HR_Mean": 2.4, "EDA_Tonic_Mean": 1.6}
    assert prompt.why.sentence == (
        "Your heart is beating faster than usual and your skin shows more sweat activity than usual."
    )
    wire = json.loads(json.dumps(prompt.to_dict()))
    assert wire["options"]["rating"]["labels"]["1"] == "Not at all"
    assert json.loads(json.dumps(d.to_dict()))["prompt_id"] == prompt.id
    text = json.dumps(wire).lower()
    for clinical in ("diagnos", "disorder", "medic", "panic", "symptom", "patient"):
        assert clinical not in text


def test_explain_directions_unknown_keys_and_fallback():
    # A rise of RMSSD and of skin temperature is the calm direction: not named.
    assert explain({"HRV_RMSSD": 2.0, "TEMP_Mean": 1.0}).indicators == {}
    assert explain({}).sentence == "Your body signals have moved away from your own calm level for a little while."
    why = explain({"TEMP_Mean": -0.9, "Foo_Index": 3.0, "SCR_Rate": 1.0, "HR_Mean": math.nan})
    assert list(why.indicators) == ["Foo_Index", "SCR_Rate", "TEMP_Mean"]
    assert why.sentence == (
        "Your Foo_Index signal is higher than usual, your skin shows more small bursts of "
        "sweat than usual and your skin is cooler than usual."
    )
    # At most max_items body systems, largest first, each once: the heart (its largest
    # deviation, MeanNN down), then the skin.
    why = explain({"HR_Mean": 1.0, "HRV_MeanNN": -2.0, "SCR_Rate": 0.7}, max_items=2)
    assert list(why.indicators) == ["HRV_MeanNN", "SCR_Rate"]
    assert why.sentence == "Your heart is beating faster than usual and your skin shows more small bursts of sweat than usual."
    assert explain({"Foo_Index": 3.0}, known_only=True).indicators == {}  # no plain words: left out


def test_unanswered_prompt_expires_and_teaches_nothing():
    p = policy(expiry_s=900.0)
    t0 = utc(2024, 6, 15, 12)
    prompt = episode(p, t0)[0].prompt  # sent at t0 + 60, expires at t0 + 960
    events = feed(p, t0 + 130, [0.5] * int((960 - 130) / STEP_S))  # last tick t0 + 955
    assert not [e for e in events if isinstance(e, Expired)]
    with pytest.raises(AnswerError, match="expired"):
        p.answer(t0 + 960, prompt.id, 4, ["anxious"])  # at expiry: too late
    events = p.update(t0 + 1000, None, {}, "motion")  # any tick reports it, gated or not
    assert events == [Expired(t_s=t0 + 960, prompt_id=prompt.id, prompt_t_s=t0 + 60)]
    assert p.update(t0 + 1005, None, {}) == []  # reported once
    with pytest.raises(AnswerError, match="expired"):
        p.answer(t0 + 1010, prompt.id, 4, ["anxious"])
    assert p.state.offset == 0.0 and p.state.answers == []


@pytest.mark.parametrize(
    "rating, labels, learned, offset",
    [
        (1, ["fine"], "raise", 0.1),
        (None, ["exercising"], "raise", 0.1),
        (4, ["anxious"], "lower", -0.1),
        (3, ["stressed", "excited"], "lower", -0.1),
        (5, ["fine", "anxious"], "lower", -0.1),  # confirmed anxiety wins over "fine"
        (2, ["anxious"], "none", 0.0),  # below confirm_min_rating = 3
        (None, ["stressed"], "none", 0.0),  # no rating: not confirmed
        (2, ["fine", "anxious"], "raise", 0.1),
        (4, ["excited"], "none", 0.0),
        (5, [], "none", 0.0),  # a rating alone teaches nothing
        (3, [" Fine "], "raise", 0.1),  # case and spaces are ignored
    ],
)
def test_learning_rule(rating, labels, learned, offset):
    p = policy()
    t0 = utc(2024, 6, 15, 12)
    prompt = episode(p, t0)[0].prompt
    result = p.answer(t0 + 100, prompt.id, rating, labels)
    assert (result.learned, result.offset) == (learned, offset)
    assert result.threshold == pytest.approx(2.0 + offset)
    assert p.state.answers == [result]


def test_configured_labels_in_capitals_can_be_answered():
    # A config may spell its labels as the wearer reads them ("Fine", a translation): the answer
    # matches them ignoring case and keeps the config's spelling.
    p = policy(labels=("Anxious", "Fine"), raise_labels=("Fine",), lower_labels=("Anxious",))
    t0 = utc(2024, 6, 15, 12)
    prompt = episode(p, t0)[0].prompt
    result = p.answer(t0 + 100, prompt.id, 1, ["fine"])
    assert (result.labels, result.learned, result.offset) == (("Fine",), "raise", 0.1)


def test_learning_is_bounded_and_changes_what_triggers():
    p = policy(sustain_s=0.0, daily_cap=1000, answer_history=16)
    t = utc(2024, 6, 15, 12)

    def prompt_and_answer(rating, labels):
        nonlocal t
        d = decisions(p.update(t, 10.0, EXPL))[0]  # 10 > any learned threshold
        assert d.sent
        p.update(t + 5, 0.0, EXPL)  # re-arm
        t += 10
        return p.answer(t, d.prompt.id, rating, labels)

    results = [prompt_and_answer(1, ["fine"]) for _ in range(15)]
    assert [r.offset for r in results[:3]] == [0.1, 0.2, 0.3]  # no float drift
    assert results[-1].offset == 1.0 and results[-1].threshold == 3.0  # capped at +1.0
    # With threshold 3.0 a score of 2.5 no longer triggers; a score of 3.0 does.
    assert decisions(p.update(t, 2.5, EXPL)) == []
    assert [d.threshold for d in decisions(p.update(t + 5, 3.0, EXPL))] == [3.0]
    p.update(t + 10, 0.0, EXPL)
    t += 20
    results = [prompt_and_answer(5, ["anxious"]) for _ in range(25)]
    assert results[-1].offset == -0.5 and results[-1].threshold == 1.5  # floor at -0.5
    # Re-arm level moves with the offset: 1.2 - 0.5 = 0.7; 0.8 does not re-arm.
    assert decisions(p.update(t, 1.5, EXPL))[0].threshold == 1.5
    assert decisions(p.update(t + 5, 0.8, EXPL) + p.update(t + 10, 1.6, EXPL)) == []
    assert len(decisions(p.update(t + 15, 0.6, EXPL) + p.update(t + 20, 1.6, EXPL))) == 1
    assert len(p.state.answers) == 16  # 40 given, the 16 newest kept
    assert p.state.answers[-1].offset == -0.5 and p.state.answers[0].learned == "lower"
    assert p.state_nbytes() < 50_000


@pytest.mark.parametrize(
    "prompt_id, rating, labels, match",
    [
        ("w1-1", 3, ["fine"], "unknown prompt id"),
        (None, 0, ["fine"], "rating"),
        (None, 6, ["fine"], "rating"),
        (None, 3.5, ["fine"], "rating"),
        (None, True, ["fine"], "rating"),
        (None, 3, ["happy"], "unknown label"),
        (None, 3, "fine", "list of strings"),
        (None, None, [], "needs a rating"),
    ],
)
def test_invalid_answers_raise_and_change_nothing(prompt_id, rating, labels, match):
    p = policy()
    t0 = utc(2024, 6, 15, 12)
    prompt = episode(p, t0)[0].prompt
    before = p.get_state()
    with pytest.raises(AnswerError, match=match) as info:
        p.answer(t0 + 100, prompt_id or prompt.id, rating, labels)
    assert isinstance(info.value, AnxmonError)
    assert p.get_state() == before


def test_answer_twice_or_before_the_prompt_raises():
    p = policy()
    t0 = utc(2024, 6, 15, 12)
    prompt = episode(p, t0)[0].prompt
    with pytest.raises(AnswerError, match="before prompt"):
        p.answer(t0, prompt.id, 3, ["fine"])
    p.answer(t0 + 100, prompt.id, 3, ["fine"])
    with pytest.raises(AnswerError, match="answered"):
        p.answer(t0 + 101, prompt.id, 3, ["fine"])


def test_an_answer_stamped_a_few_seconds_before_its_prompt_counts_as_at_the_prompt():
    """The prompt's time is the band's (event time); an answer stamped by a phone whose clock
    runs a few seconds behind was refused as "before the prompt" and the wearer's reply lost."""
    p = policy()
    prompt = episode(p, utc(2024, 6, 15, 12))[0].prompt
    result = p.answer(prompt.t_s - 5.0, prompt.id, 2, ["fine"])
    assert result.t_s == prompt.t_s and result.learned == "raise"
    other = policy()
    prompt = episode(other, utc(2024, 6, 15, 12))[0].prompt
    with pytest.raises(AnswerError, match="before prompt"):  # beyond any clock skew
        other.answer(prompt.t_s - ANSWER_CLOCK_SKEW_S - 1.0, prompt.id, 2, ["fine"])


def test_decreasing_tick_time_raises():
    p = policy()
    p.update(100.0, 1.0, {})
    p.update(100.0, 1.0, {})  # equal is fine
    with pytest.raises(PolicyError, match="must not decrease"):
        p.update(99.0, 1.0, {})


# --- configuration ----------------------------------------------------------------------------


def test_config_defaults_and_validation():
    cfg = PolicyConfig()
    assert (cfg.threshold, cfg.rearm_level, cfg.sustain_s, cfg.cooldown_s, cfg.daily_cap,
            cfg.quiet_hours, cfg.timezone, cfg.expiry_s, cfg.offset_min, cfg.offset_max) == (
        2.0, 1.2, 60.0, 1800.0, 6, ("22:00", "07:00"), "UTC", 900.0, -0.5, 1.0)
    for bad in (
        {"rearm_below": 2.0},
        {"threshold": 0.0},
        {"timezone": "Mars/Olympus"},
        {"quiet_hours": ("25:00", "07:00")},
        {"quiet_hours": ("07:00", "07:00")},
        {"daily_cap": -1},
        {"daily_cap": 2.5},
        {"sustain_s": math.nan},
        {"offset_min": -2.5},
        {"raise_labels": ("fine", "bored")},
        {"labels": ("anxious", "fine", "Fine ")},  # answers ignore case and spaces: one button twice
        {"labels": ("anxious", " ")},
        {"rearm_below": 0.0},  # scores are >= 0: never re-armed, one check-in ever
        {"threshold": 1.0, "offset_min": -0.7},  # re-arm level 0.6 - 0.7 < 0 once the wearer confirms anxiety
        {"rearm_below": 0.3, "offset_min": -0.5},
    ):
        with pytest.raises(ConfigError):
            PolicyConfig(**bad)
    with pytest.raises(ConfigError, match="labels.*different"):
        PolicyConfig(labels=("fine", "fine"))
    with pytest.raises(ControlError, match="pause instead"):
        check_quiet_hours(["07:00", "07:00"])
    assert read_table(PolicyConfig, {"quiet_hours": ["23:00", "06:00"]}, "policy.toml", "policy").quiet_hours == (
        "23:00", "06:00")
    with pytest.raises(ConfigError, match="policy.toml.*cooldown"):
        read_table(PolicyConfig, {"cooldown": 60}, "policy.toml", "policy")
    with pytest.raises(ConfigError, match=r"^anxmon.toml: \[policy\]: 'daily_cap' must be"):
        read_table(PolicyConfig, {"daily_cap": "six"}, "anxmon.toml", "policy")
    # TOML has no None: a table and an empty list / false are accepted too.
    assert read_table(PolicyConfig, {"quiet_hours": {"start": "21:30", "end": "06:00"}}, "policy.toml",
                      "policy").quiet_hours == ("21:30", "06:00")
    assert PolicyConfig(quiet_hours=[]).quiet_hours is None
    assert PolicyConfig(quiet_hours=False).quiet_hours is None


# --- determinism and checkpoints --------------------------------------------------------------


def scripted_run(p: CheckinPolicy, t0: float, n_ticks: int, start: int = 0,
                 stop: int | None = None) -> list:
    """Noisy scores with elevations, gates, answers and a snooze; ticks [start, stop) only."""
    rng = np.random.default_rng(7)
    base = 1.0 + 0.3 * rng.standard_normal(n_ticks)
    bumps = (np.arange(n_ticks) // 100) % 3 == 0  # 8.3 min elevated out of every 25 min
    scores = np.where(bumps, base + 2.0, base)
    gates = rng.random(n_ticks) < 0.02
    replies = rng.integers(0, 3, n_ticks)  # 0: no answer (expires), 1: "fine", 2: "anxious"
    out = []
    for i in range(start, n_ticks if stop is None else stop):
        t = t0 + i * STEP_S
        expl = {"HR_Mean": float(scores[i]), "SCR_Rate": float(scores[i] / 2)}
        events = p.update(t, float(scores[i]), expl, "motion" if gates[i] else None)
        out += events
        for e in events:
            if isinstance(e, Decision) and e.sent and replies[i]:
                labels = ["fine"] if replies[i] == 1 else ["anxious"]
                out.append(p.answer(t + 30, e.prompt.id, 4, labels))
        if i == 2000:
            out.append(p.control(t, "snooze", 1800))
    return out


def test_determinism_and_state_restore_mid_stream_give_identical_output():
    cfg = dict(quiet_hours=("22:00", "07:00"), timezone="Europe/Berlin", cooldown_s=1800.0)
    t0 = utc(2024, 6, 15, 4)
    n = 17280  # one day of 5 s ticks
    one = scripted_run(policy(**cfg), t0, n)
    two = scripted_run(policy(**cfg), t0, n)
    assert one == two
    kinds = {type(e).__name__ for e in one}
    assert kinds == {"Decision", "Expired", "AnswerResult", "ControlResult"}
    reasons = {e.reason for e in one if isinstance(e, Decision)}
    assert {"sent", "cooldown", "quiet_hours", "snoozed"} <= reasons

    # Stop at tick 8000, checkpoint through pickle, continue in a fresh instance.
    first = policy(**cfg)
    head = scripted_run(first, t0, n, stop=8000)
    resumed = policy(**cfg)
    resumed.set_state(pickle.loads(pickle.dumps(first.get_state())))
    tail = scripted_run(resumed, t0, n, start=8000)
    assert head + tail == one


# --- property test ----------------------------------------------------------------------------

# An elevation (level, 30 s ticks) and a calmer stretch after it (level, ticks), either gated.
episodes = st.lists(
    st.tuples(st.sampled_from([2.0, 2.5, 4.0]), st.integers(1, 12),
              st.sampled_from([0.2, 1.0, 1.6]), st.integers(1, 150),
              st.sampled_from([None, None, None, "motion"])),
    min_size=20, max_size=80,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(eps=episodes, start_h=st.integers(0, 23), tz=st.sampled_from(
    ["America/New_York", "Europe/Berlin", "Asia/Kolkata"]), day=st.sampled_from(
    [(2024, 3, 9), (2024, 3, 30), (2024, 11, 2), (2024, 6, 15)]))
def test_property_cap_cooldown_quiet_and_hysteresis_hold(eps, start_h, tz, day):
    cfg = PolicyConfig(sustain_s=90.0, cooldown_s=2700.0, daily_cap=3, timezone=tz,
                       quiet_hours=("22:00", "07:00"), expiry_s=600.0)
    p = CheckinPolicy(cfg, "prop")
    step = 30.0
    t = utc(*day, start_h)
    ticks = []  # (t, score, gate)
    for high, n_high, low, n_low, gate in eps:
        for level, n in ((high, n_high), (low, n_low)):
            for _ in range(n):
                ticks.append((t, level, gate))
                t += step
    events = [e for (tt, score, gate) in ticks for e in p.update(tt, score, {}, gate)]
    made = [e for e in events if isinstance(e, Decision)]
    sent = [d.t_s for d in made if d.sent]
    per_day: dict[str, int] = {}
    for ts in sent:
        day_key = p.local_day(ts)
        per_day[day_key] = per_day.get(day_key, 0) + 1
        assert not p.is_quiet(ts)
    assert all(count <= cfg.daily_cap for count in per_day.values())
    assert all(b - a >= cfg.cooldown_s for a, b in zip(sent, sent[1:]))
    for d in made:
        # Sustained: every tick in [t - sustain_s, t] usable and at or above the threshold.
        window = [(s, g) for (tt, s, g) in ticks if d.t_s - cfg.sustain_s <= tt <= d.t_s]
        assert len(window) == cfg.sustain_s / step + 1
        assert all(g is None and s >= cfg.threshold for s, g in window)
    for a, b in zip(made, made[1:]):
        # Hysteresis: a usable score below the re-arm level between two decisions.
        assert any(g is None and s < cfg.rearm_level for (tt, s, g) in ticks if a.t_s < tt < b.t_s)
    # Every sent prompt expires exactly once (nothing was answered), at t + expiry_s.
    expired = [e for e in events if isinstance(e, Expired)]
    assert [e.t_s for e in expired] == [ts + cfg.expiry_s for ts in sent
                                        if ts + cfg.expiry_s <= ticks[-1][0]]


def test_a_wearer_zone_this_machine_no_longer_has_falls_back_to_the_configs():
    """A checkpoint holds the zone the wearer chose; after a zone database update without that
    name (Debian moved US/* and other old names to tzdata-legacy), every tick raised
    ZoneInfoNotFoundError and the service dropped each of the wearer's batches. Now the config's
    zone stands in (Europe/Berlin here: 21:30 UTC is 22:30 there, within 22:00-07:00)."""
    t = datetime(2023, 11, 15, 21, 30, tzinfo=timezone.utc).timestamp()
    p = CheckinPolicy(PolicyConfig(quiet_hours=("22:00", "07:00"), timezone="Europe/Berlin"), wearer_id="alice")
    p.control(t, "quiet_hours", timezone="America/New_York")
    assert p.missing_timezone() is None
    state = p.get_state()
    state.timezone = "Gone/Nowhere"  # (what ZoneInfo of a name missing from the database meets)
    p.set_state(state)
    assert p.missing_timezone() == "Gone/Nowhere"  # (the service warns about it)
    assert p.is_quiet(t) and p.local_day(t + 7200) == "2023-11-16"
    decisions = episode(p, t)
    assert decisions and decisions[0].reason == "quiet_hours"


def test_wearer_quiet_hours_and_time_zone_replace_the_configs():
    """Control ``quiet_hours`` (issue 7: set from the check-in app): the wearer's own quiet hours
    and time zone replace the config's, ``[]`` means none, and they survive get/set_state.
    2023-11-15 21:30 UTC is 22:30 in Berlin (CET, UTC+1)."""
    from monitor.core.policy import CheckinPolicy, ControlError, PolicyConfig

    t = datetime(2023, 11, 15, 21, 30, tzinfo=timezone.utc).timestamp()
    p = CheckinPolicy(PolicyConfig(quiet_hours=("23:00", "06:00")), wearer_id="alice")
    assert not p.is_quiet(t)  # 21:30 UTC: before the config's 23:00
    p.control(t, "quiet_hours", quiet_hours=["22:00", "07:00"], timezone="Europe/Berlin")
    assert p.is_quiet(t) and p.local_day(t + 7200) == "2023-11-16"  # 23:30 UTC is the 16th in Berlin
    q = CheckinPolicy(PolicyConfig(quiet_hours=("23:00", "06:00")), wearer_id="alice")
    q.set_state(p.get_state())
    assert q.is_quiet(t)
    p.control(t, "quiet_hours", timezone="America/New_York")  # a time zone alone keeps the hours
    assert p.state.quiet_hours == ("22:00", "07:00") and p.is_quiet(t + 7 * 3600)  # 23:30 in New York
    p.control(t, "quiet_hours", quiet_hours=[])
    assert not p.is_quiet(t + 3 * 3600)  # none at all now, not even the config's
    for bad in ({"quiet_hours": ["22:00"]}, {"quiet_hours": ["22:00", "22:00"]}, {"quiet_hours": ["25:00", "07:00"]},
                {"quiet_hours": ["22:00", "07:00"], "timezone": "Mars/Olympus"}, {}):
        with pytest.raises(ControlError):
            p.control(t, "quiet_hours", **bad)
    with pytest.raises(ControlError):
        p.control(t, "pause", quiet_hours=["22:00", "07:00"])
