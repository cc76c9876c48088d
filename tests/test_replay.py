"""Acceptance tests of recording, replay and annotate against real brokers (nats-server and
mosquitto, the ``broker`` fixture of ``conftest.py``).

* Streaming equals batch: ``anxmon replay`` of Stress-Predict S02
  (``../shared/data/stress-predict/S02``, one hour of Empatica E4 data) at maximum speed through
  a broker into the service gives, in the service's recording, exactly the indicators and
  trigger decisions of ``anxmon analyze`` on the same folder. The expected values are the
  analyze output itself (``indicators.csv``, ``checkins.jsonl``) and the ``WearerMonitor``
  ticks behind it; the only ticks the service lacks are those ``analyze`` releases by flushing
  at the end of the file (a live service waits for more data).
* A SIGKILL of ``anxmon run --record-raw`` while it records: after the restart every batch the
  broker accepted is in the database exactly once, byte for byte.
* ``anxmon annotate`` puts a marker in the recording.
"""

from __future__ import annotations

import json
import math
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor.cli import main as anxmon
from monitor.core.wearer import WearerMonitor
from monitor.export import export_raw, open_recording, read_table
from monitor.recorder import RECORDING_FILE
from monitor.recordings import read_recording
from monitor.replay import replay, schedule
from monitor.service import MonitorService, ServiceOptions
from monitor.wire import encode_batch, monitor_state_topic
from monitor.analyze import SCORE_DETAIL_PREFIXES
from tests.conftest import data_path
from tests.test_service import Probe, _launch, _state_after, messages, s02_batches, subscribed, wait_until

ROOT = Path(__file__).resolve().parents[1]
S02 = ("stress-predict", "S02")


@pytest.fixture(scope="module")
def s02_analysis(tmp_path_factory):
    """``anxmon analyze`` of S02 (as wearer s02), and the ticks a live monitor releases before
    the end-of-file flush."""
    out = tmp_path_factory.mktemp("analyze") / "s02"
    assert anxmon(["analyze", str(data_path(*S02)), "--out", str(out), "--wearer", "s02"]) == 0
    recording = read_recording(data_path(*S02))
    live = WearerMonitor("s02")
    live_ticks = [t for b in recording.batches() for t in live.update(b)]
    flushed = [t for t in live.flush() if t.t <= recording.end_s]  # analyze stops at the last sample
    csv = pd.read_csv(out / "indicators.csv")
    assert csv["t"].tolist() == [t.t for t in live_ticks + flushed]  # the same monitor as analyze's
    return out, recording, live_ticks


def start_service(broker, data_dir: Path, **options) -> MonitorService:
    options.setdefault("instance", "replaytest")
    options.setdefault("spread_ticks", False)  # ticks on analyze's grid: the outputs must be identical
    svc = MonitorService(broker.url, data_dir, options=ServiceOptions(**options)).start()
    assert svc.wait_connected(10), "the service did not connect"
    # its SUBSCRIBE is on the wire right after the CONNACK: wait for the broker's SUBACK
    assert wait_until(lambda: subscribed(svc), 10), "the service's subscriptions were not acknowledged"
    return svc


def _same(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (got == want) | (np.isnan(got) & np.isnan(want))


def test_replay_at_max_speed_equals_analyze(broker, tmp_path, s02_analysis):
    """The acceptance test of streaming equals batch (see the module docstring), then the raw
    export of what the service recorded reads back and analyses to the same indicators."""
    out, recording, live_ticks = s02_analysis
    svc = start_service(broker, tmp_path / "svc", record_raw=True)
    try:
        stats = replay(recording, broker.url, "s02", speed=math.inf, progress=False)
        assert stats.batches == sum(1 for _ in recording.batches()) and stats.markers == len(recording.markers) == 9
        assert wait_until(lambda: svc.stats.batches == stats.batches and svc.stats.markers == stats.markers, 60), svc.stats
        assert wait_until(lambda: svc.stats.ticks == len(live_ticks), 10), svc.stats
    finally:
        svc.stop()
    assert svc.stats.duplicates == 0 and not svc.stats.rejected

    db = open_recording(tmp_path / "svc")
    got = read_table(db, "indicators", "s02")
    want = pd.read_csv(out / "indicators.csv")
    n = len(live_ticks)
    assert len(got) == n and len(want) > n  # analyze also has the ticks of its final flush
    assert got["t"].tolist() == want["t"].tolist()[:n]
    # the staleness gate (wall-clock arrival) never fired at maximum speed
    assert "stale" not in set(got["gate"].dropna())
    assert got["gate"].fillna("scored").tolist() == want["gate"].tolist()[:n]  # analyze writes "scored"
    assert got["quality"].tolist() == want["quality"].tolist()[:n]
    assert got["threshold"].tolist() == want["threshold"].tolist()[:n]
    indicator_columns = [c for c in want.columns if c not in ("t", "stress_score", "quality", "gate", "threshold")
                         and not c.startswith(SCORE_DETAIL_PREFIXES)]
    assert indicator_columns and set(indicator_columns) <= set(got.columns)
    for col in ["stress_score", *indicator_columns]:  # analyze writes full (shortest exact) precision
        same = _same(got[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float)[:n])
        assert same.all(), (col, np.flatnonzero(~same)[:5])
    for tick, (_, row) in zip(live_ticks, got.iterrows()):  # and at full precision
        assert row["stress_score"] == tick.score.value or (tick.score.value is None and math.isnan(row["stress_score"]))
        for name, value in tick.indicators.values.items():
            assert row[name] == value or (math.isnan(value) and math.isnan(row[name])), name

    decisions = read_table(db, "decisions", "s02")
    expected = [json.loads(line) for line in (out / "checkins.jsonl").read_text().splitlines()]
    assert expected, "S02 has trigger decisions"
    assert [(d["t"], d["sent"], d["reason"]) for d in expected] == list(
        zip(decisions["t"], decisions["sent"].astype(bool), decisions["reason"]))
    assert decisions["score"].tolist() == [d["score"] for d in expected]
    assert decisions["prompt_id"].fillna("").tolist() == [d["prompt_id"] or "" for d in expected]
    checkins = read_table(db, "checkins", "s02")
    assert checkins["prompt_id"].tolist() == [d["prompt_id"] for d in expected if d["sent"]]

    markers = read_table(db, "markers", "s02")
    assert list(zip(markers["t"], markers["kind"], markers["source"])) == [
        (m.t_s, m.kind, "replay") for m in recording.markers]  # the E4 tags, replayed

    if broker.kind != "nats":
        return  # the round trip below does not depend on the broker
    # export raw -> read_recording -> analyze: the same indicators as the original
    from monitor.analyze import analyze_recording

    path = tmp_path / "s02-raw.jsonl"
    n_batches, n_markers = export_raw(db, path, "s02")
    assert (n_batches, n_markers) == (stats.batches, 9)
    back = read_recording(path)
    assert back.wearer == "s02" and back.markers == recording.markers
    result = analyze_recording(back, wearer_id="s02", progress=False)
    assert [t.t for t in result.ticks] == want["t"].tolist()
    for tick, (_, row) in zip(result.ticks, want.iterrows()):
        for name in indicator_columns:
            value = tick.indicators.values.get(name)
            assert (value is None and math.isnan(row[name])) or value == row[name] or (
                math.isnan(value) and math.isnan(row[name])), name
    db.close()


def test_paced_replay_follows_the_timestamps(broker, tmp_path):
    """At ``--speed 30`` the batches go out at 30x the recording's pace: the replay asks to
    wait until each batch's span has ended (scaled); the injected ``sleep`` records it instead of
    sleeping, so this test does not depend on the machine's speed. ``--rebase-time`` shifts the
    times so the recording starts now."""
    if broker.kind != "nats":
        pytest.skip("broker-independent pacing: one kind")
    rec = read_recording(data_path(*S02))
    part = rec.between(rec.start_s, rec.start_s + 60)
    waits: list[float] = []
    now = time.time()
    svc = start_service(broker, tmp_path / "svc")
    try:
        stats = replay(part, broker.url, "paced", speed=30.0, rebase_time=True, progress=False,
                       sleep=waits.append, clock=lambda: now)
        assert wait_until(lambda: svc.stats.batches == stats.batches, 20)
        newest = svc.call(lambda s: s._wearers["paced"].live.newest_event_s)
    finally:
        svc.stop()
    events = schedule(part)
    span = (events[-1][0] - events[0][0]) / 30.0  # about 2 s
    assert waits and max(waits) == pytest.approx(span, abs=0.5)
    assert stats.shift_s == pytest.approx(now - part.start_s, abs=1e-6)  # (the clock is fixed at now)
    assert newest == pytest.approx(part.end_s + stats.shift_s, abs=0.1)  # the data arrived shifted to now


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_replay_stopped_by_ctrl_c_leaves_its_device_offline(broker, sig):
    """Ctrl-C midway (``anxmon replay`` as its own process): the clean disconnect drops the last
    will, so the retained availability stayed ``online`` for good; the replay now says
    ``offline`` before it disconnects. SIGTERM the same (it killed the replay), both exiting
    128 + the signal."""
    if broker.kind != "mosquitto":
        pytest.skip("broker-independent: one kind")
    import subprocess
    import sys

    from monitor.wire import availability_topic

    topic = availability_topic("ctrlc", "replay")
    watch = Probe(broker, [topic])
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "replay", str(data_path(*S02)), "--speed", "10",
                             "--wearer", "ctrlc", "--broker", broker.url], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: b"online" in watch.on(topic), 20), "the replay did not start"
        time.sleep(1.0)
        proc.send_signal(sig)
        assert proc.wait(20) == 128 + sig, proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        watch.close()
    probe = Probe(broker, [topic])  # a later subscriber: the retained state
    try:
        assert wait_until(lambda: probe.on(topic), 5)
        assert probe.on(topic)[-1] == b"offline"
    finally:
        probe.close()


def test_a_rebased_replay_faster_than_real_time_loses_no_late_starting_stream(broker, tmp_path):
    """``--rebase-time --speed max``: S02's beat intervals start 604 s into the session, so their
    first batches lie 10 min ahead of the wall clock. They were refused as ``future`` (the stream
    had no last sample): "now" for a stream is now the wearer's newest sample when later."""
    if broker.kind != "mosquitto":
        pytest.skip("broker-independent: one kind")
    rec = read_recording(data_path(*S02))
    part = rec.between(rec.start_s, rec.start_s + 900)
    assert min(part.streams["ibi"].t) > part.start_s + 600
    svc = start_service(broker, tmp_path / "svc")
    try:
        stats = replay(part, broker.url, "s02", speed=math.inf, rebase_time=True, progress=False)
        assert wait_until(lambda: svc.stats.batches + sum(svc.stats.rejected.values()) >= stats.batches, 30)
        assert svc.stats.batches == stats.batches and not svc.stats.rejected, svc.stats
    finally:
        svc.stop()


def raw_count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM raw").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_sigkill_while_recording_keeps_every_accepted_batch_once(broker, tmp_path):
    """``anxmon run --record-raw`` as its own process, SIGKILLed while it records a flood of
    6,000 S02 batches (20 min of data) that the broker accepted (every PUBACK received). After
    the restart every batch is in the database exactly once, byte for byte, including those
    the first process had received but not committed (the broker redelivers them: at once on
    mosquitto, after its 30 s ack wait on nats-server). The raw export reads back to exactly
    the original samples."""
    batches = s02_batches()[:6000]
    items = messages("s02", batches)
    data_dir, log = tmp_path / "svc", tmp_path / "service.log"
    db_path = data_dir / RECORDING_FILE
    state_topic = monitor_state_topic("crash")
    probe = Probe(broker, [state_topic])
    first = second = None
    try:
        t_launch = time.time()
        first = _launch(broker, data_dir, log, "--record-raw", "--checkpoint-s", "0.5")
        assert wait_until(lambda: any(s["state"] == "online" for s in _state_after(probe, state_topic, t_launch)), 30), log.read_text()
        publisher = threading.Thread(target=probe.publish_many, args=(items, 120.0))
        publisher.start()
        assert wait_until(lambda: raw_count(db_path) >= len(items) // 4, 60), log.read_text()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = raw_count(db_path)
        publisher.join(130)
        assert at_kill < len(items), "the kill came after everything was recorded"

        t_launch = time.time()
        second = _launch(broker, data_dir, log, "--record-raw", "--checkpoint-s", "0.5")
        assert wait_until(lambda: any(s["state"] == "online" for s in _state_after(probe, state_topic, t_launch)), 30), log.read_text()
        assert wait_until(lambda: raw_count(db_path) == len(items), 90), (raw_count(db_path), log.read_text())
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 128 + signal.SIGTERM, log.read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        probe.close()

    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT signal, seq, payload FROM raw WHERE wearer = 's02' AND device = 'e4'").fetchall()
    assert len(rows) == len(items)
    want = {(b.signal, b.seq): encode_batch(b).decode() for b in batches}
    assert {(s, q): p for s, q, p in rows} == want
    # the broker redelivered what the first process had taken but not committed
    stopped = [line for line in log.read_text().splitlines() if "stopped after" in line][-1]
    assert int(re.search(r"(\d+) redelivered", stopped).group(1)) > 0, stopped

    db = open_recording(data_dir)
    export_raw(db, tmp_path / "raw.jsonl", "s02")
    db.close()
    back = read_recording(tmp_path / "raw.jsonl")
    for sig in {b.signal for b in batches}:
        original = np.concatenate([b.values for b in batches if b.signal == sig])
        assert np.array_equal(back.streams[sig].values, original), sig


def test_annotate_marker_is_recorded(broker, tmp_path, capsys):
    """``anxmon annotate`` publishes a marker the service records (kind, label, time, source);
    a marker that breaks the contract is refused with a reason, like any input."""
    if broker.kind != "nats":
        pytest.skip("broker-independent: one kind")
    svc = start_service(broker, tmp_path / "svc")
    try:
        code = anxmon(["annotate", "--wearer", "alice", "--label", "therapy session", "--kind", "therapy",
                       "--t", "2024-03-01T10:00:00Z", "--broker", broker.url])
        assert code == 0 and "published" in capsys.readouterr().out
        assert anxmon(["annotate", "--wearer", "alice", "--label", "x" * 201, "--broker", broker.url]) == 2
        probe = Probe(broker)
        probe.publish("anxmon/v1/alice/annotate/marker", b'{"v":1,"label":7}')
        probe.close()
        assert wait_until(lambda: svc.stats.markers == 1 and sum(svc.stats.rejected.values()) == 1, 10), svc.stats
    finally:
        svc.stop()
    assert dict(svc.stats.rejected) == {"payload": 1}
    db = open_recording(tmp_path / "svc")
    markers = read_table(db, "markers", "alice")
    db.close()
    assert markers[["t", "kind", "label", "source"]].values.tolist() == [
        [1709287200.0, "therapy", "therapy session", "annotate"]]
    assert (tmp_path / "svc" / RECORDING_FILE).exists()


def test_replay_command(broker, tmp_path, capsys):
    """``anxmon replay`` of an anxmon recording (2 min of S02 with a marker), with the broker
    taken from the credentials file ``anxmon run`` writes for its embedded broker."""
    if broker.kind != "nats":
        pytest.skip("broker-independent: one kind")
    from monitor.markers import Marker
    from monitor.readers.anxmon import write_recording

    rec = read_recording(data_path(*S02))
    part = rec.between(rec.start_s, rec.start_s + 120)
    part.markers = [Marker(part.start_s + 60, "therapy session", "session 3")]
    path = tmp_path / "two-minutes.jsonl"
    write_recording(path, part, wearer="carol")
    data_dir = tmp_path / "anxmon-data"
    data_dir.mkdir()
    (data_dir / "broker-credentials.json").write_text(json.dumps({"url": broker.url}))
    svc = start_service(broker, tmp_path / "svc")
    try:
        assert anxmon(["replay", str(path), "--speed", "max", "--device", "tablet", "--data-dir", str(data_dir)]) == 0
        n = sum(1 for _ in part.batches())
        assert f"replayed {n} batches and 1 markers" in capsys.readouterr().out
        assert wait_until(lambda: svc.stats.batches == n and svc.stats.markers == 1, 20), svc.stats
        # the retained offline comes after the data: it may arrive a moment after the last batch
        assert wait_until(lambda: svc.devices()[("carol", "tablet")].availability == "offline", 10), svc.devices()
        devices = svc.devices()
    finally:
        svc.stop()
    assert devices[("carol", "tablet")].availability == "offline"  # retained offline at the end
    db = open_recording(tmp_path / "svc")
    assert read_table(db, "markers", "carol")[["kind", "label", "source"]].values.tolist() == [
        ["therapy session", "session 3", "tablet"]]
    db.close()
    with pytest.raises(SystemExit):  # argparse: "speed must be a positive number or 'max'"
        anxmon(["replay", str(path), "--speed", "0", "--broker", broker.url])
    assert anxmon(["replay", str(path), "--data-dir", str(tmp_path / "nowhere")]) == 2


def _stopped_service_dir(tmp_path: Path) -> Path:
    """A data directory whose ``anxmon run`` has stopped: its credentials name a port nobody
    listens on."""
    from monitor.broker import free_port

    data_dir = tmp_path / "study"
    data_dir.mkdir()
    (data_dir / "broker-credentials.json").write_text(
        json.dumps({"url": f"mqtt://monitor:pw@127.0.0.1:{free_port()}"}))
    return data_dir


def test_a_stopped_embedded_broker_is_named_as_the_likely_cause(tmp_path, capsys):
    """With the broker from ``--data-dir``, "Connection refused" alone did not say that the
    embedded broker lives only while ``anxmon run`` does; with ``--broker`` the hint would be wrong."""
    from monitor.readers.anxmon import write_recording
    from monitor.recordings import Recording, Stream

    data_dir = _stopped_service_dir(tmp_path)
    path = tmp_path / "tiny.jsonl"
    write_recording(path, Recording("tiny", "anxmon", {"eda": Stream("eda", np.full(8, 0.5), t0=1.7e9, fs=4.0)}),
                    wearer="carol")
    hint = f"(the embedded broker runs only while `anxmon run --data-dir {data_dir}` runs: is it running?)"
    for argv in (["replay", str(path)], ["annotate", "--wearer", "carol", "--label", "exam"]):
        assert anxmon([*argv, "--data-dir", str(data_dir)]) == 2
        err = capsys.readouterr().err
        assert "cannot reach broker" in err and hint in err, err
        url = json.loads((data_dir / "broker-credentials.json").read_text())["url"]
        assert anxmon([*argv, "--broker", url]) == 2
        err = capsys.readouterr().err
        assert "cannot reach broker" in err and "embedded broker" not in err, err


def test_annotate_warns_when_the_broker_user_is_another_wearer(tmp_path, caplog):
    """s02's login publishing alice's marker: the broker acknowledges and drops it (MQTT 3.1.1),
    so annotate warns as the bridge does, before it connects."""
    from monitor.broker import free_port

    url = f"mqtt://s02:s02-password@127.0.0.1:{free_port()}"
    assert anxmon(["annotate", "--wearer", "alice", "--label", "exam", "--broker", url]) == 2  # nobody listens
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("the broker user 's02' is not wearer 'alice'") for w in warnings), warnings
    caplog.clear()
    for user in ("alice", "monitor"):
        assert anxmon(["annotate", "--wearer", "alice", "--label", "exam", "--broker",
                       f"mqtt://{user}:pw@127.0.0.1:{free_port()}"]) == 2
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_replay_refuses_a_marker_the_service_would_drop(broker, tmp_path, capsys):
    """A marker whose label is longer than the wire contract allows was published, acknowledged
    by the broker and counted as "replayed ... 1 markers", while the service dropped it (only its
    log said so). It is now refused before anything is published, naming the marker."""
    if broker.kind != "nats":
        pytest.skip("broker-independent: one kind")
    from monitor.readers.anxmon import write_recording

    rec = read_recording(data_path(*S02))
    part = rec.between(rec.start_s, rec.start_s + 30)
    path = tmp_path / "half-minute.jsonl"
    write_recording(path, part, wearer="dora")
    markers = tmp_path / "markers.csv"
    markers.write_text(f"unix_s,label,kind\n{part.start_s + 10},{'x' * 201},therapy session\n")
    svc = start_service(broker, tmp_path / "svc")
    try:
        code = anxmon(["replay", str(path), "--speed", "max", "--markers", str(markers), "--broker", broker.url])
        err = capsys.readouterr().err
        assert code == 2
        assert "'therapy session'" in err and "longer than 200 characters" in err and "nothing replayed" in err
        # without the marker it plays; the service then has the batches (delivered after anything
        # the refused run would have published) and no marker
        assert anxmon(["replay", str(path), "--speed", "max", "--broker", broker.url]) == 0
        n = sum(1 for _ in part.batches())
        assert wait_until(lambda: svc.stats.batches == n, 20), svc.stats
        assert svc.stats.markers == 0 and not svc.stats.rejected, svc.stats
    finally:
        svc.stop()


def test_replay_says_which_batches_the_service_refuses(broker, tmp_path, capsys):
    """Samples outside the wire contract's range (a TEMP.csv with a few readings of 50 degC) are
    kept by the reader, and the service refuses their batches; replay said only "replayed N
    batches", so the researcher did not learn that part of the session never reached the
    monitor. It now says how many of which signal the service refuses, and why, as analyze does;
    the count is the one the service itself reports."""
    if broker.kind != "nats":
        pytest.skip("broker-independent: one kind")
    path = tmp_path / "erin"  # the first minute of S02's E4 export (an anxmon recording refuses such batches)
    path.mkdir()
    for name, rows in (("EDA.csv", 240), ("BVP.csv", 3840), ("ACC.csv", 1920), ("TEMP.csv", 240), ("HR.csv", 50)):
        lines = (data_path(*S02) / name).read_text().splitlines(keepends=True)[:2 + rows]
        if name == "TEMP.csv":
            for i in (2 + 40, 2 + 41, 2 + 120):  # degC: outside 15-45, in two batches of 1 s
                lines[i] = "50.0\n"
        (path / name).write_text("".join(lines))
    part = read_recording(path)
    svc = start_service(broker, tmp_path / "svc")
    try:
        assert anxmon(["replay", str(path), "--speed", "max", "--broker", broker.url]) == 0
        err = capsys.readouterr().err
        n = sum(1 for _ in part.batches())
        assert wait_until(lambda: svc.stats.batches + sum(svc.stats.rejected.values()) == n, 20), svc.stats
    finally:
        svc.stop()
    refused = sum(svc.stats.rejected.values())
    temp_batches = sum(1 for b in part.batches() if b.signal == "temp")
    assert refused > 0
    assert f"the service refuses: {refused} of {temp_batches} temp batches, the first because temp sample" in err, err
