"""End to end with a real broker (each kind the ``broker`` fixture finds): simulated wearers
published as devices reach a subscriber intact, a killed simulator leaves ``offline``, and a
broker restart keeps every stream in order.

Expected numbers come from the run itself: 3 wearers x 4 signals x 120 simulated seconds =
1,440 batches, seq 0-119 per stream, values bit-identical to the same seed generated locally.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from firmware_bridge.sim_scenario import load_scenario
from firmware_bridge.simulator import Simulation, make_wearers
from monitor.wire import PREFIX, decode_batch, parse_topic

from tests.test_service import wait_until

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_038_800.0


class Collector:
    """Subscribes to every device topic (QoS 1) and keeps the raw messages."""

    def __init__(self, broker, client_id: str, clean: bool = True):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.reconnect_delay_set(1, 2)
        self.client.username_pw_set(broker.username, broker.password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(f"{PREFIX}/+/+/+", 1)])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.05)
        return predicate(self.snapshot())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def availability(messages, wearer: str) -> list[str]:
    return [p.decode() for t, p, _ in messages if t == f"{PREFIX}/{wearer}/sim/availability"]


def test_simulated_wearers_reach_a_subscriber_intact(broker):
    scenario = load_scenario("demo")
    seconds = 120
    sub = Collector(broker, "test-sim-collector")
    try:
        wearers = make_wearers(scenario, 3, seed=4, start_unix=T0)
        stats = Simulation(wearers, broker.url, speed=400.0).run(seconds)
        assert stats.seconds == seconds and stats.batches == stats.acked == 3 * 4 * seconds
        assert sub.wait_for(lambda m: sum("/availability" not in t for t, _, _ in m) >= stats.batches and all(
            availability(m, w)[-1:] == ["offline"] for w in ("sim-01", "sim-02", "sim-03")), 20)
        messages = sub.snapshot()
    finally:
        sub.close()
    reference = {w.wearer_id: {} for w in make_wearers(scenario, 3, seed=4, start_unix=T0)}
    for w in make_wearers(scenario, 3, seed=4, start_unix=T0):
        for b in w.batches(seconds):
            reference[w.wearer_id][(b.signal, b.seq)] = b
    streams = defaultdict(list)
    for topic, payload, _ in messages:
        parsed = parse_topic(topic)
        if parsed.kind != "data":
            continue
        batch = decode_batch(payload, parsed.signal)  # raises on anything the contract refuses
        ref = reference[parsed.wearer][(parsed.signal, batch.seq)]
        assert batch.t0 == ref.t0 and batch.values.tolist() == ref.values.tolist()
        streams[(parsed.wearer, parsed.device, parsed.signal)].append(batch.seq)
    assert set(streams) == {(f"sim-0{i}", "sim", s) for i in (1, 2, 3) for s in ("acc", "bvp", "eda", "temp")}
    for key, seqs in streams.items():
        assert sorted(seqs) == list(range(seconds)), key  # every batch once (QoS 1: no duplicates here)
    for wearer in ("sim-01", "sim-02", "sim-03"):
        states = availability(messages, wearer)
        assert states[0] == "online" and states[-1] == "offline"
    late = Collector(broker, "test-sim-late")  # retained availability for whoever comes later
    try:
        assert late.wait_for(lambda m: all(availability(m, w) == ["offline"] for w in ("sim-01", "sim-02", "sim-03")), 10)
        assert all(retained for _, _, retained in late.snapshot())
    finally:
        late.close()


def test_killed_simulator_leaves_offline_by_its_last_will(broker):
    sub = Collector(broker, "test-sim-lwt")
    env = {**os.environ, "ANXMON_BROKER_URL": broker.url, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "firmware_bridge.simulator", "--wearers", "2",
                                "--speed", "5", "--seconds", "3600", "--seed", "1"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def running(m):
            return all("online" in availability(m, w) for w in ("sim-01", "sim-02")) and any(
                t.endswith("/sim-02/sim/eda") for t, _, _ in m)

        assert sub.wait_for(running, 20), process.stdout.read1().decode() if process.poll() is not None else "no data"
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert sub.wait_for(lambda m: all(availability(m, w)[-1:] == ["offline"] for w in ("sim-01", "sim-02")), 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        sub.close()


def test_wrong_password_is_a_clear_error(broker):
    from firmware_bridge.simulator import SimulationError

    url = f"mqtt://{broker.username}:wrong@{broker.host}:{broker.port}"
    sim = Simulation(make_wearers(load_scenario("demo"), 1, seed=1, start_unix=T0), url, connect_timeout_s=2.0)
    with pytest.raises(SimulationError, match="refused"):
        sim.run(5)


def test_simulate_finds_the_embedded_broker_of_anxmon_run(tmp_path):
    """The developer recipe of docs/demo.md: ``anxmon run --data-dir D``, then ``anxmon simulate
    --data-dir D`` (the credentials from D/broker-credentials.json, as replay and annotate do).
    The URL ``run`` prints has no password, so "simulate --broker URL" was refused."""
    from tests.conftest import need_broker

    need_broker("nats")
    data_dir, log = tmp_path / "data", tmp_path / "run.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ANXMON_BROKER_URL", None)
    run = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--data-dir", str(data_dir)],
                           stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                           env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "running" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "running" in log.read_text(), log.read_text()
        sim = subprocess.run([sys.executable, "-m", "monitor.cli", "simulate", "--data-dir", str(data_dir),
                              "--wearers", "1", "--seconds", "20", "--speed", "inf"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
        assert sim.returncode == 0, sim.stdout + sim.stderr
        import json

        secret = json.loads((data_dir / "broker-credentials.json").read_text())["users"]["monitor"]
        assert "20 s of event time" in sim.stdout and secret not in sim.stdout + sim.stderr
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(30)


def test_a_broker_restart_keeps_every_stream_in_order(broker):
    """The broker goes away and comes back while the simulation runs. Batches published while
    a link was reconnecting (CONNECT sent, CONNACK not yet in: a nats-server loading its store
    answers late) went onto the wire at once, before paho resent the older ones it had kept:
    the monitor got seq 477 before 232-476 and dropped those 245 s of data as duplicates.
    Each stream must arrive in order: seq 0, 1, 2, ... as first received (resent copies aside)."""
    sub = Collector(broker, "test-sim-outage", clean=False)  # (a persistent session, as the monitor's)
    wearers = make_wearers(load_scenario("demo"), 1, seed=3, start_unix=T0)
    simulation = Simulation(wearers, broker.url, speed=200.0)
    stop = threading.Event()
    result = {}
    runner = threading.Thread(target=lambda: result.update(stats=simulation.run(100_000, stop)), daemon=True)
    eda = f"{PREFIX}/sim-01/sim/eda"
    try:
        runner.start()
        assert sub.wait_for(lambda m: sum(t == eda for t, _, _ in m) >= 100, 20)
        broker.stop()
        time.sleep(1.0)  # the simulation keeps publishing into paho's queue
        broker.start()
        broker.process.send_signal(signal.SIGSTOP)  # slow to answer: the kernel still accepts the connection
        try:
            assert wait_until(lambda: simulation.links[0].socket is not None, 20), "the link did not reconnect"
            time.sleep(0.5)  # the link is connecting, and the simulation publishing
        finally:
            broker.process.send_signal(signal.SIGCONT)
        assert wait_until(lambda: simulation.links[0].connected, 20)
        time.sleep(0.5)
        stop.set()
        runner.join(30)
        stats = result["stats"]
        assert stats.batches == stats.acked
        n = stats.seconds
        assert sub.wait_for(lambda m: len({(t, p) for t, p, _ in m if "/availability" not in t}) >= 4 * n, 30)
        messages = sub.snapshot()
    finally:
        stop.set()
        sub.close()
    for signal_name in ("acc", "bvp", "eda", "temp"):
        topic = f"{PREFIX}/sim-01/sim/{signal_name}"
        seqs = [decode_batch(p, signal_name).seq for t, p, _ in messages if t == topic]
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == list(range(n)), (signal_name, [s for a, s in zip(first_seen, first_seen[1:]) if s != a + 1][:5])
