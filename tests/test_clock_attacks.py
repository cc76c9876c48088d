"""Time stamps far in the future against the live service, on a real broker (failure audit #1).

One irregular batch spanning now .. now + 1 day, from a wearer's own login or a device with a
bad clock, was accepted by itself: it moved the wearer's time a day ahead (checkpointed), made
the silent new stream the heart source, and silenced the wearer's indicators for 10 min, then
kept them ~11 min late for the whole day.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from monitor.wire import SampleBatch, data_topic, decode_rejected, encode_batch, wearer_topic
from tests.test_service import Probe, services, start_service, wait_until  # noqa: F401  (a fixture)

WEARER = "alice"


def _hr(seq: int, times) -> SampleBatch:
    times = np.asarray(times, dtype=float)
    return SampleBatch("hr", seq, np.full(len(times), 70.0), t=times)


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the service's own handling: one kind
def test_one_batch_a_day_ahead_does_not_move_the_wearer(broker, tmp_path, services, caplog):
    caplog.set_level(logging.INFO, logger="anxmon")
    services.append(svc := start_service(broker, tmp_path / "svc"))
    probe = Probe(broker, [wearer_topic(WEARER, "rejected")])
    now = time.time()
    # two minutes of the wearer's own hr (band "band"), up to now
    live = [_hr(k, [now - 120 + k]) for k in range(120)]
    probe.publish_many([(data_topic(WEARER, "band", "hr"), encode_batch(b)) for b in live])
    assert wait_until(lambda: svc.stats.batches == len(live), 10), svc.stats
    before = svc.call(lambda s: (s._wearers[WEARER].live.newest_event_s, s._wearers[WEARER].live.lag_floor_s))

    def ibi(seq, times):
        times = np.asarray(times, dtype=float)
        return encode_batch(SampleBatch("ibi", seq, np.full(len(times), 800.0), t=times))

    evil = data_topic(WEARER, "evil", "ibi")
    now = time.time()
    probe.publish(evil, ibi(0, [now, now + 86400.0]))  # the audit's reproduction
    # spread out so that no step exceeds 5 min, then a run going on from there
    probe.publish(evil, ibi(1, now + 299.0 * np.arange(290)))
    probe.publish(evil, ibi(2, [now + 299.0 * 289 + 1]))
    # the band syncing its memory: a reading a day old, then now (a long gap in the past: fine)
    probe.publish(data_topic(WEARER, "band", "hr"), encode_batch(_hr(len(live), [now - 86400.0, now + 1])))
    assert wait_until(lambda: svc.stats.batches == len(live) + 1 and svc.stats.rejected["future"] == 3, 10), svc.stats
    assert wait_until(lambda: len(probe.on(wearer_topic(WEARER, "rejected"))) == 3, 10)
    errors = [decode_rejected(p) for p in probe.on(wearer_topic(WEARER, "rejected"))]
    assert [e["reason"] for e in errors] == ["future"] * 3
    assert "by itself" in errors[0]["error"] and "0 s in 1 batch" in errors[1]["error"]

    newest, floor, heart, trackers = svc.call(lambda s: (
        s._wearers[WEARER].live.newest_event_s, s._wearers[WEARER].live.lag_floor_s,
        s._wearers[WEARER].monitor.pipeline.state.heart_source, s._wearers[WEARER].live.trackers))
    assert newest == pytest.approx(now + 1) and newest < before[0] + 300  # not a day ahead
    assert floor > -60 and before[1] is not None  # the time base is not poisoned
    assert heart == "hr"  # the silent ibi never became the heart source
    assert trackers[("evil", "ibi")].stats.accepted == 0 and trackers[("evil", "ibi")].stats.jumps == 0
    assert not any("taken up again" in r.getMessage() for r in caplog.records)
    probe.close()
