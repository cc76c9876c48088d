"""The wire contract: topics, batch encoding, and every kind of bad input named in issue 2."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given
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
    ahead = T0 + 3600.0  # a simulation at 60x: 60 batches a wall second
    n = int(AHEAD_SPAN_S)  # batches refused: the next one ends 300.75 s after the first began
    for i in range(n):
        with pytest.raises(ValueRangeError):
            tr.check(sec(22 + i, ahead + i), now_s=T0 + 22 + i / 60)
    v = tr.check(sec(22 + n, ahead + n), now_s=T0 + 22 + n / 60)
    assert v.accept and v.jump_s > 3000 and tr.stats.jumps == 1
    assert tr.check(sec(23 + n, ahead + n + 1), now_s=T0 + 23 + n / 60).accept
    # batches that do not continue each other (scattered wrong stamps) never add up
    tr2 = StreamTracker()
    tr2.check(sec(0, T0), now_s=T0)
    for i in range(1000):
        with pytest.raises(ValueRangeError):
            tr2.check(sec(1 + 2 * i, T0 + 9000 + i), now_s=T0 + 1)  # seq jumps by 2: no run
    assert tr2.stats.jumps == 0


def test_a_stream_that_goes_back_in_time_says_so():
    """A higher seq with earlier times (a device clock set back an hour): accepted, as the seq
    says it is new, but the verdict says how far back, so the service can warn that the core
    skips those samples (they were dropped without a word)."""
    tr = StreamTracker()
    tr.check(ibi_batch(0, T0))
    v = tr.check(ibi_batch(1, T0 - 3600))
    assert v.accept and v.behind_s == pytest.approx(3600)
    assert tr.check(ibi_batch(2, T0 + 1)).behind_s == 0.0
