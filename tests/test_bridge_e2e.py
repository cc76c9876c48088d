"""End to end with a real broker: a 30 s outage and a bridge restart lose nothing.

A DIY device (this test) writes the line protocol in real time: EDA at 4 Hz and heart rate at
1 Hz from a real recording (Empatica E4, Stress-Predict S02), stamped with unix times. The
bridge runs as its own process (``python -m firmware_bridge lines``), with an outbox file.
After a few seconds the broker is stopped for 30 s while the device keeps sending; in the
middle of the outage the bridge is restarted (SIGTERM, a new process on the same outbox,
the device's lines held meanwhile as a serial buffer would). After the broker is back, the
monitor (a persistent-session QoS 1 subscriber) must have every batch exactly once by
sequence number, in order, and every sample the device sent.

Slow (about 45 s per broker kind): marked ``slow``. ``ANXMON_E2E_OUTAGE_S`` shortens the
outage for a quick local run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.testing import MonitorSubscriber

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUTAGE_S = float(os.environ.get("ANXMON_E2E_OUTAGE_S", "30"))


def load_recording():
    folder = DATA / "stress-predict" / "S02"
    if not folder.exists():
        pytest.skip(f"recording {folder} is absent (../shared/data is needed for this test)")
    eda = np.loadtxt(folder / "EDA.csv", delimiter=",")[2:]  # 4 Hz, µS
    hr = np.loadtxt(folder / "HR.csv", delimiter=",")[2:]  # 1 Hz, bpm
    return eda, hr


class Device(threading.Thread):
    """Writes lines in real time to whichever bridge process is current."""

    def __init__(self, eda, hr, t_start):
        super().__init__(daemon=True)
        self.eda, self.hr, self.t_start = eda, hr, t_start
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.stop = threading.Event()
        self.sent = {"eda": [], "hr": []}

    def run(self):
        i = 0
        while not self.stop.is_set() and i < len(self.eda):
            t = self.t_start + i / 4
            lines = [f"eda {t:.3f} {self.eda[i]:.6f}\n"]
            if i % 4 == 0 and i // 4 < len(self.hr):
                lines.append(f"hr {t:.3f} {self.hr[i // 4]:.2f}\n")
            with self.lock:  # held while the bridge restarts: lines wait, like a serial buffer
                self.process.stdin.write("".join(lines).encode())
                self.process.stdin.flush()
            self.sent["eda"].append(round(float(self.eda[i]), 6))
            if len(lines) == 2:
                self.sent["hr"].append(round(float(self.hr[i // 4]), 2))
            i += 1
            time.sleep(max(0.0, self.t_start + i / 4 - time.time()))


def start_bridge(url: str, outbox: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge", "lines", "--wearer", "alice", "--broker", url,
         "--outbox", str(outbox), "--log-level", "INFO"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=open(log, "ab"), cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def stop_bridge(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 128 + signal.SIGTERM
    process.stdin.close()


def test_outage_and_restart_lose_nothing(broker, tmp_path):
    eda, hr = load_recording()
    broker.add_user("alice")  # the bridge logs in as the wearer: it may only write anxmon/v1/alice/#
    broker.stop()
    broker.start()
    monitor = MonitorSubscriber(broker.host, broker.port, broker.username, broker.password, client_id="e2e-monitor")
    outbox = tmp_path / "outbox.sqlite"
    log = tmp_path / "bridge.log"
    url = broker.url_for("alice")

    device = Device(eda, hr, t_start=time.time())
    device.process = start_bridge(url, outbox, log)
    device.start()
    try:
        time.sleep(4.0)
        broker.stop()  # the outage begins; the device keeps sending
        time.sleep(OUTAGE_S / 2)
        with device.lock:  # restart the bridge in the middle of the outage
            stop_bridge(device.process)
            device.process = start_bridge(url, outbox, log)
        time.sleep(OUTAGE_S / 2)
        broker.start()  # same port and data directory
        time.sleep(4.0)
        device.stop.set()
        device.join(5)
        with device.lock:
            stop_bridge(device.process)  # drains the outbox while connected, then says offline
        with sqlite3.connect(outbox) as db:
            left = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            n_batches = dict(db.execute("SELECT stream, next_seq FROM seq").fetchall())
        complete = monitor.wait_for(
            lambda m: all(len(m.accepted[("diy-lines", s)]) >= n_batches.get(f"diy-lines/{s}", 1) for s in ("eda", "hr")), 20
        )
    finally:
        device.stop.set()
        if device.process.poll() is None:
            device.process.kill()
        monitor.close()
    bridge_log = log.read_text()
    assert left == 0, f"{left} batches still in the outbox\n{bridge_log}"
    assert complete, f"the monitor is missing batches: {n_batches}\n{bridge_log}"
    assert "lost the broker" in bridge_log and "cannot reach broker" in bridge_log  # the outage was real
    assert bridge_log.count("bridge stopped") == 2
    for signal_name, n_digits in (("eda", 6), ("hr", 2)):
        accepted = monitor.accepted[("diy-lines", signal_name)]
        raw = monitor.raw[("diy-lines", signal_name)]
        n = n_batches[f"diy-lines/{signal_name}"]
        # every batch exactly once by sequence number, in order (duplicates of QoS 1 are dropped)
        assert [b.seq for b in accepted] == list(range(n)), f"{signal_name}: {[b.seq for b in raw]}"
        assert len(raw) - len(accepted) <= 50  # redeliveries are bounded by the publish window
        # and every sample the device sent, in order
        values = [round(v, n_digits) for b in accepted for v in b.values.tolist()]
        assert values == device.sent[signal_name]
    assert n_batches["diy-lines/eda"] >= 4 + OUTAGE_S
