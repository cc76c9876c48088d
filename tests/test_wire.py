"""The wire contract: topics, batch encoding, and every kind of bad input named in issue 2."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import wire
from monitor.errors import PayloadError, TopicError, ValueRangeError, WireError
from monitor.wire import SampleBatch, StreamTracker, decode_batch, encode_batch, parse_topic

T0 = 1_700_000_000.0


def regular(signal="eda", **over):
    body = {"v": 1, "seq": 1, "t0": T0, "fs": 4.0, "values": [5.0, 5.1, 5.2]}
    body.update(over)
    return json.dumps(body).encode()


def irregular(signal="ibi", **over):
    body = {"v": 1, "seq": 1, "t": [T0, T0 + 0.8], "values": [800.0, 810.0]}
    body.update(over)
    return json.dumps(body).encode()


# ------------------------------------------------------------------ topics


def test_topics_round_trip():
    assert wire.data_topic("alice", "e4", "bvp") == "anxmon/v1/alice/e4/bvp"
    t = parse_topic("anxmon/v1/alice/e4/bvp")
    assert (t.kind, t.wearer, t.device, t.signal) == ("data", "alice", "e4", "bvp")
    assert parse_topic(wire.availability_topic("alice", "e4")).kind == "availability"
    assert parse_topic(wire.status_topic("alice", "h10", "battery")).kind == "battery"
    assert parse_topic("anxmon/v1/alice/h10/contact").device == "h10"
    assert parse_topic(wire.wearer_topic("alice", "checkin/response")).kind == "checkin/response"
    assert parse_topic(wire.wearer_topic("bob", "rejected")).wearer == "bob"
    state = parse_topic(wire.monitor_state_topic("main"))
    assert (state.kind, state.instance) == ("monitor_state", "main")


@pytest.mark.parametrize("bad", ["Alice", "al ice", "", "a" * 65, "bob/x", "é"])
def test_ids_outside_the_pattern_are_refused(bad):
    with pytest.raises(TopicError, match="id"):
        wire.data_topic(bad, "e4", "eda")


@pytest.mark.parametrize(
    "topic, fragment",
    [
        ("anxmon/v2/alice/e4/eda", "not an anxmon v1 topic"),
        ("anxmon/v1/alice/e4/sweat", "unknown signal 'sweat'"),
        ("anxmon/v1/ALICE/e4/eda", "wearer id"),
        ("anxmon/v1/alice/e4/eda/extra", "not one of the contract's topics"),
        ("anxmon/v1/alice/nonsense", "not one of the contract's topics"),
    ],
)
def test_bad_topics_name_the_problem(topic, fragment):
    with pytest.raises(TopicError, match=fragment):
        parse_topic(topic)


def test_longest_valid_id_is_accepted():
    assert parse_topic(wire.data_topic("a" * 64, "d_-9", "hr")).wearer == "a" * 64


# ------------------------------------------------------------------ batches


def test_regular_and_irregular_round_trip():
    b = SampleBatch("acc", seq=7, values=np.array([[0.0, 0.1, 1.0], [0.0, 0.2, 0.98]]), t0=T0, fs=32.0)
    back = decode_batch(encode_batch(b), "acc")
    assert back.values.shape == (2, 3) and back.seq == 7 and back.fs == 32.0
    np.testing.assert_array_equal(back.values, b.values)
    np.testing.assert_allclose(back.times_s(), [T0, T0 + 1 / 32])
    ibi = decode_batch(irregular(), "ibi")
    assert ibi.t.tolist() == [T0, T0 + 0.8] and ibi.end_s == T0 + 0.8


@pytest.mark.parametrize(
    "payload, signal, error, fragment",
    [
        (b"\xff\xfe", "eda", PayloadError, "not UTF-8"),
        (b"{not json", "eda", PayloadError, "not valid JSON"),
        (b"[1, 2]", "eda", PayloadError, "JSON object"),
        (regular(v=2), "eda", PayloadError, "unknown version 2"),
        (regular(v="1"), "eda", PayloadError, "unknown version '1'"),
        (regular(seq=-1), "eda", PayloadError, "seq"),
        (regular(seq=1.5), "eda", PayloadError, "seq"),
        (json.dumps({"v": 1, "t0": T0, "fs": 4.0, "values": [1.0]}).encode(), "eda", PayloadError, "missing field 'seq'"),
        (json.dumps({"v": 1, "seq": 0, "fs": 4.0, "values": [1.0]}).encode(), "eda", PayloadError, "missing field 't0'"),
        (regular(fs="4"), "eda", PayloadError, "'fs' must be a number"),
        (regular(values="5.0"), "eda", PayloadError, "'values' must be a list"),
        (regular(values=[5.0, "5.1"]), "eda", PayloadError, "numbers only"),
        (regular(values=[5.0, True]), "eda", PayloadError, "numbers only"),
        (regular(extra=1), "eda", PayloadError, "unexpected field"),
        (irregular(t0=T0), "ibi", PayloadError, "unexpected field"),
        (irregular(t=[T0]), "ibi", PayloadError, "differ in length"),
        (regular(values=[[0, 0]]), "acc", PayloadError, r"\[x, y, z\]"),
        (b'{"v":1,"seq":1,"t0":1700000000,"fs":4,"values":[NaN]}', "eda", PayloadError, "NaN"),
        (b'{"v":1,"seq":1,"t0":1700000000,"fs":4,"values":[Infinity]}', "eda", PayloadError, "Infinity"),
        (b'{"v":1,"seq":1,"t0":1700000000,"fs":4,"values":[1e400]}', "eda", ValueRangeError, "non-finite"),
        (regular(fs=0), "eda", ValueRangeError, "outside 0 < fs"),
        (regular(fs=1000.5), "eda", ValueRangeError, "outside 0 < fs"),
        (regular(values=[1.0] * 10_001), "eda", ValueRangeError, "more than the limit of 10000"),
        (b'{"v":1,"seq":1,"t0":1e999,"fs":4,"values":[1]}', "eda", ValueRangeError, "not finite"),
        (regular(t0=900_000_000.0), "eda", ValueRangeError, "before the year 2000"),
        (irregular(t=[T0 + 1, T0]), "ibi", ValueRangeError, "increasing"),
        (regular(values=[-0.1]), "eda", ValueRangeError, "0-100 uS"),
        (regular(values=[100.5]), "eda", ValueRangeError, "0-100 uS"),
        (regular(values=[14.9]), "temp", ValueRangeError, "15-45 degC"),
        (irregular(values=[60.0, 251.0]), "hr", ValueRangeError, "sample 1 is outside .* 25-250 bpm"),
        (irregular(values=[240.0, 800.0]), "ibi", ValueRangeError, "250-2000 ms"),
        (regular(), "sweat", TopicError, "unknown signal"),
    ],
)
def test_bad_payloads_get_typed_errors_naming_the_problem(payload, signal, error, fragment):
    with pytest.raises(error, match=fragment):
        decode_batch(payload, signal)


def test_every_wire_error_is_a_value_error_users_can_catch_once():
    with pytest.raises(WireError):
        decode_batch(b"nope", "eda")
    assert issubclass(WireError, ValueError)


def test_physiological_bounds_are_inclusive_and_ppg_acc_unbounded():
    decode_batch(irregular(values=[25.0, 250.0]), "hr")
    decode_batch(irregular(values=[250.0, 2000.0]), "ibi")
    decode_batch(regular(values=[0.0, 100.0]), "eda")
    decode_batch(regular(values=[-1e6, 1e6]), "bvp")
    decode_batch(regular(values=[[-16.0, 16.0, 0.0]]), "acc")


@given(
    values=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=50),
    seq=st.integers(0, 2**40),
    fs=st.floats(0.01, 1000),
)
def test_any_valid_eda_batch_round_trips(values, seq, fs):
    b = SampleBatch("eda", seq=seq, values=np.array(values), t0=T0, fs=fs)
    back = decode_batch(encode_batch(b), "eda")
    np.testing.assert_array_equal(back.values, b.values)
    assert (back.seq, back.t0, back.fs) == (seq, T0, fs)


@given(st.binary(max_size=200))
def test_random_bytes_never_crash_with_anything_but_a_wire_error(data):
    with contextlib.suppress(WireError):  # anything else (KeyError, TypeError ...) fails the test
        decode_batch(data, "bvp")



@pytest.mark.parametrize("digits", [400, 5000])  # beyond float's range; beyond int()'s 4300 digits
@pytest.mark.parametrize("template, decode", [
    ('{"v":1,"seq":0,"t0":N,"fs":4,"values":[1]}', lambda p: decode_batch(p, "eda")),
    ('{"v":1,"seq":0,"t0":1.7e9,"fs":4,"values":[N]}', lambda p: decode_batch(p, "eda")),
    ('{"v":1,"seq":N,"t":[1.7e9],"values":[800]}', lambda p: decode_batch(p, "ibi")),
    ('{"v":1,"percent":N}', lambda p: wire.decode_status(p, "battery")),
    ('{"v":1,"t":N}', lambda p: wire.decode_marker(p, "alice")),
    ('{"v":1,"prompt_id":"alice-1","rating":3,"t":N}', lambda p: wire.decode_answer(p, "alice")),
])
def test_an_integer_too_long_for_a_float_is_a_wire_error(template, decode, digits):
    """A JSON integer of hundreds of digits raised OverflowError (thousands: ValueError), which
    the service took for a bug of its own ("internal") instead of refusing the input."""
    with pytest.raises(WireError):
        decode(template.replace("N", "-" + "9" * digits).encode())



FIELDS = ["v", "t", "t0", "fs", "seq", "values", "prompt_id", "rating", "labels", "wearer", "action", "duration_s",
          "quiet_hours", "timezone", "kind", "label", "id", "expires_at", "state", "reason", "percent", "contact",
          "quality", "device", "signal", "snooze_default_s"]
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.just(-(10**400)), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=5), st.just(1.7e9))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)
DECODERS = [lambda p, s=s: decode_batch(p, s) for s in wire.SIGNALS] + [
    wire.decode_indicators, wire.decode_checkin, wire.decode_rejected, wire.decode_monitor_state,
    lambda p: wire.decode_answer(p, "alice"), lambda p: wire.decode_control(p, "alice"),
    lambda p: wire.decode_marker(p, "alice"), lambda p: wire.decode_status(p, "battery"),
    lambda p: wire.decode_status(p, "contact")]


def test_the_monitor_state_may_announce_its_snooze_default_and_a_bad_one_is_refused():
    """``snooze_default_s`` is optional (an older service does not say; an older reader ignores
    it); when given it is a number of seconds > 0."""
    online = {"v": 1, "state": "online", "instance": "main", "version": "0.1.0"}
    assert "snooze_default_s" not in wire.decode_monitor_state(json.dumps(online))
    assert wire.decode_monitor_state(json.dumps({**online, "snooze_default_s": 900}))["snooze_default_s"] == 900
    for bad in (0, -60, "3600", None, True):
        with pytest.raises(WireError):
            wire.decode_monitor_state(json.dumps({**online, "snooze_default_s": bad}))


@settings(max_examples=500)
@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=8), st.sampled_from(DECODERS))
def test_any_json_object_on_any_topic_gives_a_wire_error_or_a_value(body, decode):
    """Bodies of the contract's field names (v=1 mostly) with JSON values of any type and size."""
    body.setdefault("v", 1)
    with contextlib.suppress(WireError):  # anything else (OverflowError, TypeError ...) fails the test
        decode(json.dumps(body).encode())


# ------------------------------------------------------------------ stream tracking


def ibi_batch(seq, t_s):
    return SampleBatch("ibi", seq=seq, values=np.array([800.0]), t=np.array([t_s]))


def test_duplicates_are_dropped_and_counted_gaps_reported():
    tr = StreamTracker()
    assert tr.check(ibi_batch(0, T0)).accept
    assert tr.check(ibi_batch(1, T0 + 1)).accept
    dup = tr.check(ibi_batch(1, T0 + 1))
    assert not dup.accept and dup.duplicate
    gap = tr.check(ibi_batch(5, T0 + 5))
    assert gap.accept and gap.gap_batches == 3
    assert (tr.stats.accepted, tr.stats.duplicates, tr.stats.missing_batches) == (3, 1, 3)


def test_a_device_restart_from_seq_zero_later_in_time_is_not_a_duplicate():
    tr = StreamTracker()
    tr.check(ibi_batch(40, T0))
    v = tr.check(ibi_batch(0, T0 + 10))
    assert v.accept and v.restart and tr.stats.restarts == 1


def test_timestamps_more_than_five_minutes_ahead_of_the_stream_are_refused():
    tr = StreamTracker()
    tr.check(ibi_batch(0, T0))
    assert tr.check(ibi_batch(1, T0 + 299)).accept
    with pytest.raises(ValueRangeError, match="at most 300 s ahead"):
        tr.check(ibi_batch(2, T0 + 299 + 301))
    # a live service passes its wall clock: a device back from a long pause is fine then
    assert tr.check(ibi_batch(3, T0 + 3600), now_s=T0 + 3590).accept



def test_a_batch_refused_as_future_is_not_counted_missing_as_well():
    """A batch refused as ``future`` (one wrong time stamp) was counted as rejected and again,
    when the next batch came, as 1 missing: missing counts batches never received. A refused
    batch that is the stream's next seq moves the seq on; one that is not (a wild seq) does not,
    so later batches are not taken for duplicates, and what was lost before it stays missing."""
    from monitor.wire import FutureError

    tr = StreamTracker()
    assert tr.check(ibi_batch(0, T0), now_s=T0).accept
    with pytest.raises(FutureError):
        tr.check(ibi_batch(1, T0 + 3600), now_s=T0 + 1)
    v = tr.check(ibi_batch(2, T0 + 2), now_s=T0 + 2)
    assert v.accept and v.gap_batches == 0 and tr.stats.missing_batches == 0
    assert tr.check(ibi_batch(2, T0 + 2), now_s=T0 + 2).duplicate  # a redelivery is still one
    with pytest.raises(FutureError):
        tr.check(ibi_batch(3, T0 + 3600), now_s=T0 + 3)
    assert tr.check(ibi_batch(5, T0 + 5), now_s=T0 + 5).gap_batches == 1  # seq 4: never received
    with pytest.raises(FutureError):
        tr.check(ibi_batch(100000, T0 + 3600), now_s=T0 + 6)
    v = tr.check(ibi_batch(6, T0 + 6), now_s=T0 + 6)
    assert v.accept and not v.duplicate and v.gap_batches == 0
    with pytest.raises(FutureError):  # seq 7 lost, then 8 refused: not the next seq, so both count
        tr.check(ibi_batch(8, T0 + 3600), now_s=T0 + 8)
    assert tr.check(ibi_batch(9, T0 + 9), now_s=T0 + 9).gap_batches == 2
    assert tr.stats.missing_batches == 3


def test_a_refusal_as_future_names_what_the_batch_is_ahead_of():
    """A simulation started hours ahead (``anxmon simulate --start``) was refused with "batch
    ends 11338 s after the stream's last sample" though the stream had none yet: the first
    batch is ahead of now (the clock, or in the service the wearer's newest sample when later),
    later ones of the stream's last sample."""
    with pytest.raises(ValueRangeError, match=r"^batch ends 3600 s in the future;"):
        StreamTracker().check(ibi_batch(0, T0 + 3600), now_s=T0)
    tr = StreamTracker()
    tr.check(ibi_batch(0, T0), now_s=T0 - 100)
    with pytest.raises(ValueRangeError, match=r"^batch ends 400 s after the stream's last sample;"):
        tr.check(ibi_batch(1, T0 + 400), now_s=T0 - 100)

def test_a_stream_that_stays_far_ahead_is_taken_up_again():
    """A 60x simulation the service joins late (or after a crash) runs more than 5 min ahead of the
    wall clock and of the stream's last sample for good. It was refused forever; once 5 min of its
    own data (AHEAD_SPAN_S), batch after batch, lie there it is taken up. A clock glitch of a few
    seconds, or scattered wrong stamps, never add up to that (a review: with a count of 10
    batches, a 10 s glitch moved a wearer a day ahead for good)."""
    from monitor.wire import AHEAD_SPAN_S

    def sec(seq, t_s):  # one second of 4 Hz EDA
        return SampleBatch("eda", seq=seq, values=np.full(4, 5.0), t0=t_s, fs=4.0)

    tr = StreamTracker()
    assert tr.check(sec(0, T0), now_s=T0).accept
    for i in range(20):  # a 20 s glitch a day ahead, then the clock is right again
        with pytest.raises(ValueRangeError, match="stays ahead for 300 s"):
            tr.check(sec(1 + i, T0 + 86400 + i), now_s=T0 + 1 + i)
    assert tr.check(sec(21, T0 + 21), now_s=T0 + 21).accept and tr.stats.jumps == 0
    assert tr.stats.missing_batches == 0  # the 20 were refused, not lost
    ahead = T0 + 3600.0  # a simulation at 60x: 60 batches a wall second
    n = int(AHEAD_SPAN_S)  # batches refused: the next one ends 300.75 s after the first began
    for i in range(n):
        with pytest.raises(ValueRangeError):
            tr.check(sec(22 + i, ahead + i), now_s=T0 + 22 + i / 60)
    v = tr.check(sec(22 + n, ahead + n), now_s=T0 + 22 + n / 60)
    assert v.accept and v.jump_s > 3000 and tr.stats.jumps == 1
    assert tr.check(sec(23 + n, ahead + n + 1), now_s=T0 + 23 + n / 60).accept
    assert tr.stats.missing_batches == 0 and tr.stats.restarts == 0
    # batches that do not continue each other (scattered wrong stamps) never add up
    tr2 = StreamTracker()
    tr2.check(sec(0, T0), now_s=T0)
    for i in range(1000):
        with pytest.raises(ValueRangeError):
            tr2.check(sec(1 + 2 * i, T0 + 9000 + i), now_s=T0 + 1)  # seq jumps by 2: no run
    assert tr2.stats.jumps == 0


def test_one_batch_spanning_a_day_into_the_future_is_refused_as_a_whole():
    """Finding #1 of the failure audit: one hr/ibi batch with t = [now, now + 1 day] was taken up
    at once (its own span passed "stayed ahead for 300 s"), and moved the wearer a day ahead. A
    sample more than 5 min after the one before it and after the stream's clock is a jump into the
    future by itself: the whole batch is refused (``FutureGapError``, reason ``future``)."""
    from monitor.wire import FutureError, FutureGapError

    tr = StreamTracker()
    assert tr.check(ibi_batch(0, T0), now_s=T0).accept
    evil = SampleBatch("ibi", seq=1, values=np.array([800.0, 800.0]), t=np.array([T0 + 1, T0 + 86400.0]))
    with pytest.raises(FutureGapError, match=r"sample 1 of the batch is 86399 s after the one before it"):
        tr.check(evil, now_s=T0 + 1)
    assert issubclass(FutureGapError, FutureError) and issubclass(FutureError, ValueRangeError)
    assert tr.stats.last_t_s == T0 and tr.stats.jumps == 0 and tr.stats.ahead_batches == 0
    # a regular stream stretched the same way (fs = 1 / day) is the same jump
    with pytest.raises(FutureGapError, match="sample 1 "):
        tr.check(SampleBatch("eda", seq=2, values=np.full(2, 5.0), t0=T0 + 1, fs=1 / 86400), now_s=T0 + 1)
    # the legitimate long gap lies in the past: a band syncing its memory (a day old, then now)
    sync = SampleBatch("ibi", seq=3, values=np.array([800.0, 800.0]), t=np.array([T0 - 86400.0, T0 + 2]))
    assert tr.check(sync, now_s=T0 + 2).accept
    # and stamps after 2100 never pass decoding (a marker's t of 1e308 was logged as 300 digits)
    with pytest.raises(ValueRangeError, match="after the year 2100"):
        decode_batch(irregular(t=[T0, 1e308]), "ibi")
    with pytest.raises(ValueRangeError, match="field 't' is after the year 2100; give unix seconds"):
        wire.decode_marker(b'{"v":1,"t":1e308,"label":"x"}', "alice")


def test_one_batch_never_takes_a_stream_up_far_ahead_however_it_is_spread():
    """The "stays ahead" rule counts only data time confirmed by later batches (after the end of
    the run's first one), each reaching at most 5 min beyond the one before, in at least
    AHEAD_MIN_BATCHES batches. Before: 289 readings 299 s apart in one batch (no gap > 5 min)
    were taken up a day ahead, as was a 1 s batch followed by one such long batch."""
    from monitor.wire import AHEAD_MIN_BATCHES, AHEAD_SPAN_S, FutureError

    def hr(seq, times):
        times = np.asarray(times, dtype=float)
        return SampleBatch("hr", seq=seq, values=np.full(len(times), 70.0), t=times)

    spread = T0 + 1 + 299.0 * np.arange(290)  # now .. a day ahead, no step above 5 min
    tr = StreamTracker()
    assert tr.check(hr(0, [T0]), now_s=T0).accept
    with pytest.raises(FutureError, match=r"0 s in 1 batch\(es\) so far"):
        tr.check(hr(1, spread), now_s=T0 + 1)
    for seq in range(2, 5):  # the run goes on from the day-ahead end: only what follows counts
        with pytest.raises(FutureError):
            tr.check(hr(seq, [spread[-1] + seq - 1]), now_s=T0 + 1)
    assert tr.stats.last_t_s == T0 and tr.stats.jumps == 0
    # a 1 s batch, then the long one: the long one reaches past the first by more than 5 min, so it
    # starts a run of its own instead of confirming a day at once
    tr = StreamTracker()
    assert tr.check(hr(0, [T0]), now_s=T0).accept
    with pytest.raises(FutureError):
        tr.check(hr(1, [T0 + 400, T0 + 401]), now_s=T0 + 1)
    with pytest.raises(FutureError, match=r"0 s in 1 batch"):
        tr.check(hr(2, T0 + 401 + 299.0 * np.arange(1, 290)), now_s=T0 + 1)
    assert tr.stats.jumps == 0
    # two batches of 5 min confirm 5 min, but are not several: the third takes the stream up
    tr = StreamTracker()
    assert tr.check(hr(0, [T0]), now_s=T0).accept
    minutes = [T0 + 3600 + 300.0 * k + np.arange(300.0) for k in range(AHEAD_MIN_BATCHES)]
    for seq, times in enumerate(minutes[:-1], start=1):
        with pytest.raises(FutureError):
            tr.check(hr(seq, times), now_s=T0 + 1)
    v = tr.check(hr(AHEAD_MIN_BATCHES, minutes[-1]), now_s=T0 + 2)
    assert v.accept and v.ahead_batches == AHEAD_MIN_BATCHES and v.ahead_confirmed_s >= AHEAD_SPAN_S
    assert tr.stats.jumps == 1 and tr.stats.last_t_s == minutes[-1][-1]


def test_a_device_ten_minutes_fast_sending_minute_batches_is_taken_up():
    """A device clock 10 min fast with 60 s batches: its first batch places the run, the next five
    confirm 5 min of data, and the sixth is taken up (the rest follow)."""
    tr = StreamTracker()
    start = T0 + 600.0
    for k in range(5):
        with pytest.raises(ValueRangeError):
            tr.check(SampleBatch("eda", seq=k, values=np.full(240, 5.0), t0=start + 60 * k, fs=4.0), now_s=T0 + 60 * k)
    v = tr.check(SampleBatch("eda", seq=5, values=np.full(240, 5.0), t0=start + 300, fs=4.0), now_s=T0 + 300)
    assert v.accept and v.jump_s > 300 and v.ahead_batches == 6 and v.ahead_confirmed_s == pytest.approx(300.0)
    assert tr.check(SampleBatch("eda", seq=6, values=np.full(240, 5.0), t0=start + 360, fs=4.0), now_s=T0 + 360).accept


def test_a_stream_that_goes_back_in_time_says_so():
    """A higher seq with earlier times (a device clock set back an hour): accepted, as the seq
    says it is new, but the verdict says how far back, so the service can warn that the core
    skips those samples (they were dropped without a word)."""
    tr = StreamTracker()
    tr.check(ibi_batch(0, T0))
    v = tr.check(ibi_batch(1, T0 - 3600))
    assert v.accept and v.behind_s == pytest.approx(3600)
    assert tr.check(ibi_batch(2, T0 + 1)).behind_s == 0.0
