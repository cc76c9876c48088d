"""Batching, rate measurement, the outbox and the bridge loop (a real broker only where the outbox meets it)."""

from __future__ import annotations

import os
import sqlite3
import time

import logging
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.batcher import Batcher, Chunk, Status
from firmware_bridge.bridge import Bridge
from firmware_bridge.devices import load_device
from firmware_bridge.outbox import Outbox, OutboxError, OutboxFullError
from monitor.core.base import SampleClock
from monitor.wire import decode_batch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIGNALS = load_device("diy-lines").signals  # eda 4 Hz, bvp 64 Hz, acc 32 Hz, hr, ibi ...


def real_bvp(n: int) -> tuple[float, np.ndarray]:
    """BVP of Stress-Predict S02 (Empatica E4, 64 Hz): session start and the first n samples."""
    path = DATA / "stress-predict" / "S02" / "BVP.csv"
    if not path.exists():
        pytest.skip(f"recording {path} is absent (../shared/data is needed for this test)")
    raw = np.loadtxt(path, delimiter=",", max_rows=n + 2)
    return float(raw[0]), raw[2:]


def feed(batcher: Batcher, signal: str, t0: float, fs: float, values: np.ndarray, chunk: int | None, jitter=None):
    out = []
    chunk = chunk or len(values)
    for start in range(0, len(values), chunk):
        part = values[start : start + chunk]
        t = t0 + start / fs + (jitter[start] if jitter is not None else 0.0)
        batcher.add(Chunk(signal, part, t0=t), now_s=t0 + (start + len(part) - 1) / fs)
        out += batcher.take(now_s=t0 + (start + len(part) - 1) / fs)
    return out + batcher.take(now_s=1e12, force=True)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_regular_batches_do_not_depend_on_chunk_size(chunk):
    t0, bvp = real_bvp(64 * 20 + 13)
    batches = feed(Batcher(SIGNALS), "bvp", t0, 64.0, bvp, chunk)
    reference = feed(Batcher(SIGNALS), "bvp", t0, 64.0, bvp, None)
    assert [len(b) for b in batches] == [64] * 20 + [13]
    assert [b.t0 for b in batches] == [b.t0 for b in reference] == [t0 + k for k in range(21)]
    assert np.array_equal(np.concatenate([b.values for b in batches]), bvp)


def test_network_jitter_does_not_bend_the_time_axis():
    t0, bvp = real_bvp(64 * 10)
    jitter = np.random.default_rng(7).uniform(-0.2, 0.2, len(bvp))  # within the 0.5 s tolerance
    batches = feed(Batcher(SIGNALS), "bvp", t0, 64.0, bvp, 16, jitter)
    assert [b.t0 for b in batches] == pytest.approx([t0 + jitter[0] + k for k in range(10)], abs=1e-6)


def test_a_gap_starts_a_new_segment():
    b = Batcher(SIGNALS)
    b.add(Chunk("eda", np.full(4, 5.0), t0=100.0 + 1e9), now_s=0)
    b.add(Chunk("eda", np.full(4, 5.1), t0=104.0 + 1e9), now_s=0)  # 3 s missing
    out = b.take(now_s=0)
    assert [x.t0 - 1e9 for x in out] == [100.0, 104.0]
    assert b.stats()["eda"].segments == 1


def test_invalid_values_are_dropped_and_the_rest_keeps_its_time():
    b = Batcher(SIGNALS)
    values = np.array([5.0, 5.1, np.nan, -1.0, 5.4, 5.5, 5.6, 5.7])  # NaN and a negative conductance
    b.add(Chunk("eda", values, t0=1e9), now_s=0)
    out = b.take(now_s=0, force=True)
    assert [(x.t0 - 1e9, x.values.tolist()) for x in out] == [(0.0, [5.0, 5.1]), (1.0, [5.4, 5.5, 5.6, 5.7])]
    assert b.stats()["eda"].dropped_invalid == 2


def test_acc_triples_and_irregular_streams():
    b = Batcher(SIGNALS)
    b.add(Chunk("acc", np.ones((32, 3)) * [0, 0, 1], t0=1e9), now_s=0)
    b.add(Chunk("ibi", np.array([800.0, 810.0]), t=np.array([1e9 + 0.8, 1e9 + 1.6])), now_s=0)
    b.add(Chunk("ibi", np.array([790.0]), t=np.array([1e9 + 1.0])), now_s=0.5)  # older than a kept beat
    b.add(Chunk("ibi", np.array([100.0]), t=np.array([1e9 + 2.0])), now_s=0.5)  # outside 250-2000 ms
    assert [(x.signal, x.values.shape) for x in b.take(now_s=0.9)] == [("acc", (32, 3))]  # ibi waits 1 s
    (ibi,) = b.take(now_s=1.0)
    assert ibi.values.tolist() == [800.0, 810.0] and ibi.t.tolist() == [1e9 + 0.8, 1e9 + 1.6]
    assert b.stats()["ibi"].dropped_unordered == 1 and b.stats()["ibi"].dropped_invalid == 1


@pytest.mark.parametrize("glitch_s", [86_400.0, -3_600.0])
def test_one_irregular_time_stamp_far_off_costs_only_itself(glitch_s):
    """A device's clock glitches once (one heart rate stamped a day ahead) or is set back an
    hour: every value stamped before the glitch was dropped as out of order, for a day. The
    value far off goes out in a batch of its own (the monitor refuses it as ``future``, or
    takes the step back) and the stream goes on; each batch keeps its times in order."""
    b = Batcher(SIGNALS)
    t = 1e9 + np.arange(10.0)
    times = [*t[:5], t[4] + glitch_s, *t[5:]] if glitch_s > 0 else [*t[:5], *(t[5:] + glitch_s)]
    for k, ti in enumerate(times):
        b.add(Chunk("hr", np.array([60.0 + k]), t=np.array([ti])), now_s=k * 0.1)
    out = b.take(now_s=100.0)
    assert [x.values.tolist() for x in out] == (
        [[60.0 + k for k in range(5)], [65.0], [66.0 + k for k in range(5)]] if glitch_s > 0
        else [[60.0 + k for k in range(5)], [65.0 + k for k in range(5)]])
    assert all(np.all(np.diff(x.t) > 0) for x in out)
    assert b.stats()["hr"].dropped_unordered == 0


@pytest.mark.parametrize("real_hz, warns", [(5.0, True), (4.0, False), (4.2, False)])
def test_rate_is_measured_and_a_mismatch_is_reported(caplog, real_hz, warns):
    b = Batcher(SIGNALS)
    n = int(real_hz * 40)
    for i in range(n):  # one sample per chunk, stamped with the device's own (true) time
        b.add(Chunk("eda", np.array([5.0]), t0=1e9 + i / real_hz), now_s=0)
    assert b.stats()["eda"].measured_hz == pytest.approx(real_hz, rel=0.02)
    assert ("declares 4 Hz" in caplog.text) is warns


def test_outbox_keeps_order_and_sequence_numbers_across_restarts(tmp_path):
    path = tmp_path / "outbox.sqlite"
    ob = Outbox(path)
    seqs = ob.enqueue_many([("d/eda", "t/eda", lambda s: b"eda%d" % s), ("d/hr", "t/hr", lambda s: b"hr%d" % s)])
    seqs += ob.enqueue_many([("d/eda", "t/eda", lambda s: b"eda%d" % s)])
    assert seqs == [0, 0, 1]
    first = ob.peek(limit=1)[0]
    assert ob.ack([first.id]) == 1
    ob.close()
    again = Outbox(path)  # a restarted bridge
    assert len(again) == 2
    assert [r.payload for r in again.peek()] == [b"hr0", b"eda1"]
    assert again.enqueue_many([("d/eda", "t/eda", lambda s: b"eda%d" % s)]) == [2]
    assert again.next_seq("d/hr") == 1 and again.next_seq("d/new") == 0
    assert [r.payload for r in again.peek(after_id=again.peek()[0].id)] == [b"eda1", b"eda2"]


def test_outbox_is_private_and_keeps_the_bridges_secret_client_id(tmp_path):
    """The outbox holds raw samples: its folder is 0700 and its files 0600 whatever the umask
    (other local users once could read a wearer's heart rates from it). It keeps the secret
    part of the bridge's MQTT client id, so the id is stable across restarts and unguessable."""
    from firmware_bridge.publisher import Publisher

    path = tmp_path / "home" / "anxmon" / "outbox.sqlite"
    old = os.umask(0o022)
    try:
        ob = Outbox(path)
        ob.enqueue_many([("d/hr", "t/hr", lambda s: b"hr%d" % s)])
    finally:
        os.umask(old)
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    for f in path.parent.iterdir():
        assert oct(f.stat().st_mode & 0o777) == "0o600", f
    secret = ob.client_secret()
    assert len(secret) == 16 and ob.client_secret() == secret
    client_id = Publisher("mqtt://127.0.0.1:1", "alice", "h10", ob).client_id
    assert client_id == f"anxmon-bridge-alice-h10-{secret}"
    ob.close()
    assert Outbox(path).client_secret() == secret  # a restarted bridge: the same client id


def test_outbox_refuses_when_full_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ob = Outbox(tmp_path / "o.sqlite", max_batches=5)
    ob.enqueue_many([("s", "t", lambda s: b"x")] * 4)
    assert "80% full" in caplog.text
    with pytest.raises(OutboxFullError, match="full"):
        ob.enqueue_many([("s", "t", lambda s: b"x")] * 2)
    assert len(ob) == 4  # nothing of the refused call was stored
    ob.ack([r.id for r in ob.peek()])
    assert "drained below" in caplog.text
    # the two refused batches took seq 4 and 5: the monitor sees them missing, not a seamless stream
    assert ob.enqueue_many([("s", "t", lambda s: b"x"), ("other", "t", lambda s: b"x")]) == [6, 0]


class StubPublisher:
    def __init__(self):
        self.availability = []
        self.status = []
        self.wakes = 0

    def set_availability(self, online):
        self.availability.append(online)

    def publish_status(self, topic, payload):
        self.status.append((topic, payload))

    def wake(self):
        self.wakes += 1

    def stop(self):
        pass


def make_bridge(tmp_path, now, **kw):
    pub = StubPublisher()
    br = Bridge(load_device("diy-lines"), "alice", outbox=Outbox(tmp_path / "o.sqlite", **kw), publisher=pub,
                clock=lambda: now[0], device_timeout_s=15.0)
    return br, pub


def test_bridge_availability_follows_the_device(tmp_path):
    now = [1e9]
    br, pub = make_bridge(tmp_path, now)
    br.tick()
    assert pub.availability == []  # starts offline, nothing to say yet
    br.feed([Chunk("eda", np.full(4, 5.0), t0=now[0])])
    assert br.tick() == 1 and pub.availability == [True] and pub.wakes == 1
    now[0] += 14
    br.tick()
    now[0] += 2  # 16 s without samples
    br.tick()
    assert pub.availability == [True, False]
    topics = [r.topic for r in br.outbox.peek()]
    assert topics == ["anxmon/v1/alice/diy-lines/eda"]


def test_bridge_status_is_published_on_change_only(tmp_path):
    now = [1e9]
    br, pub = make_bridge(tmp_path, now)
    br.feed([Status("battery", 80.0, now[0]), Status("battery", 80.0, now[0]), Status("contact", True, now[0])])
    br.feed([Status("battery", 79.0, now[0]), Status("contact", True, now[0])])
    assert [t.rsplit("/", 1)[1] for t, _ in pub.status] == ["battery", "contact", "battery"]
    assert pub.status[0][1] == b'{"v":1,"t":1000000000.0,"percent":80.0}'


def test_bridge_drops_samples_from_a_wrong_clock(tmp_path, caplog):
    now = [1.7e9]
    br, _ = make_bridge(tmp_path, now)
    br.feed([Chunk("eda", np.full(4, 5.0), t0=now[0] + 3600)])  # an hour in the future
    assert br.tick(force=True) == 0 and br.stats.skewed_chunks == 1
    assert "check the device's time" in caplog.text


def test_bridge_reports_a_full_outbox_loudly_without_values(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    now = [1e9]
    br, _ = make_bridge(tmp_path, now, max_batches=2)
    for k in range(4):
        br.feed([Chunk("eda", np.full(4, 7.123456), t0=now[0] + k)])
        br.tick()
    assert br.stats.batches == 2 and br.stats.refused_batches == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "NEW DATA IS BEING LOST" in errors[0].getMessage()
    assert "7.123456" not in caplog.text  # no sample values in logs above DEBUG
    assert [decode_batch(r.payload, "eda").seq for r in br.outbox.peek()] == [0, 1]



def test_a_full_disk_refuses_batches_with_a_clear_error_and_the_bridge_goes_on(tmp_path, caplog):
    """A full disk under the outbox raised SQLite's "cannot rollback - no transaction is active"
    (SQLite had rolled back itself), hiding the cause, and the exception ended the bridge."""
    caplog.set_level(logging.INFO)
    now = [1e9]
    br, _ = make_bridge(tmp_path, now)
    db = br.outbox._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's SQLITE_FULL, as on a full disk
    with pytest.raises(OutboxError, match="disk is full"):
        br.outbox.enqueue_many([("s", "t", lambda s: b"x" * 8000)])
    br.feed([Chunk("eda", np.linspace(7.123456, 9.0, 2000), t0=now[0])])  # 500 s, more than the free pages
    assert br.tick(force=True) == 0 and br.stats.refused_batches > 0 and br.stats.batches == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "disk is full" in errors[0] and "NEW DATA IS BEING LOST" in errors[0]
    assert len(br.outbox) == 0 and br.outbox.next_seq("diy-lines/eda") == 0  # nothing half-stored
    db.execute("PRAGMA max_page_count = 1000000")  # space again: the same outbox takes batches
    now[0] += 600
    br.feed([Chunk("eda", np.full(4, 5.0), t0=now[0])])
    assert br.tick(force=True) == 1 and [decode_batch(r.payload, "eda").seq for r in br.outbox.peek()] == [0]

def test_a_device_a_little_faster_than_declared_keeps_its_own_time():
    """A device 2 % faster than its rate_hz (4.08 Hz declared 4): its chunks come earlier and
    earlier than the count. Re-anchoring when one is more than 0.5 s early keeps the stamps on
    the device's clock; continuing the count instead ran 432 s ahead in 6 h (a review caught it)."""
    b = Batcher(SIGNALS)
    fs_true, t0 = 4.08, 1e9
    n = 0
    for second in range(3600):  # an hour, one chunk of ~4 samples a second, stamped by the device
        k = int(round((second + 1) * fs_true)) - n
        b.add(Chunk("eda", np.full(k, 5.0), t0=t0 + n / fs_true), now_s=0)
        n += k
    out = b.take(now_s=0, force=True)
    last = out[-1]
    true_end = t0 + (n - 1) / fs_true
    assert abs(last.t0 + (len(last) - 1) / last.fs - true_end) < 1.0


@pytest.mark.parametrize("drift_ppm", [-1240.0, 1240.0])
def test_a_drifting_device_clock_is_followed_without_a_gap_or_an_overlap_at_the_monitor(drift_ppm):
    """A 64 Hz stream whose device clock runs 1240 ppm off its declared rate (the Polar H10's
    ECG: 130 Hz declared, ~130.16 Hz in ../shared/data/polar-h10), 8-sample chunks stamped by
    the device, for 20 min. Re-anchoring in one 0.5 s step made the monitor's clock read a
    0.5 s overlap (32 samples dropped each time) or a gap (every filter restarted); the counted
    time now follows the device's clock by at most half a sample per batch."""
    fs, t0, n_total = 64.0, 1.7e9, 64 * 1200
    true_fs = fs * (1 + drift_ppm * 1e-6)
    b = Batcher(SIGNALS)
    out = []
    for start in range(0, n_total, 8):
        t = t0 + start / true_fs
        b.add(Chunk("bvp", np.full(8, 1.0), t0=t), now_s=t)
        out += b.take(now_s=t)
    out += b.take(now_s=1e12, force=True)
    clock = SampleClock(fs)
    alignments = [clock.align(x.t0, len(x)) for x in out]
    assert sum(a.n for a in alignments) == n_total  # nothing dropped as an overlap
    assert not any(a.gap for a in alignments)  # no restart
    last = alignments[-1]
    assert abs(last.time(last.n - 1) - (t0 + (n_total - 1) / true_fs)) < 0.5  # on the device's clock
    assert b.stats()["bvp"].segments == 0


def wait_for(condition, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_an_outbox_that_cannot_remove_acknowledged_rows_does_not_stop_sending(broker, tmp_path, caplog):
    """With a real broker: removing acknowledged rows failed (a full disk) with an sqlite3 error
    that ended the publisher's drain thread, silently: nothing was sent any more, the outbox
    filled and new data was refused; and the open transaction refused every later batch."""
    from firmware_bridge.publisher import Publisher

    caplog.set_level(logging.INFO)
    ob = Outbox(tmp_path / "o.sqlite")
    deny_delete = lambda action, *_: sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_DELETE else sqlite3.SQLITE_OK  # noqa: E731
    ob._db.set_authorizer(deny_delete)  # DELETE fails as on a full disk
    batch = lambda seq: b'{"v":1,"seq":%d,"t0":1700000000.0,"fs":4.0,"values":[1.0]}' % seq  # noqa: E731
    ob.enqueue_many([("e4/eda", "anxmon/v1/alice/e4/eda", batch)] * 3)
    publisher = Publisher(broker.url, "alice", "e4", ob, reconnect_max_s=2).start()
    try:
        assert wait_for(lambda: "cannot write to outbox" in caplog.text)
        assert len(ob) == 3 and publisher.stats.published == 0  # kept, not lost
        ob._db.set_authorizer(None)  # space again
        ob.enqueue_many([("e4/eda", "anxmon/v1/alice/e4/eda", batch)] * 2)
        publisher.wake()
        assert wait_for(lambda: len(ob) == 0)
        assert publisher.stats.published == 5 and "can be written again" in caplog.text
        assert ob.next_seq("e4/eda") == 5
    finally:
        publisher.stop(timeout_s=2.0)
