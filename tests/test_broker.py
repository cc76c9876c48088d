"""The embedded broker's process: a broker orphaned by a killed owner is stopped by the next start
in the same data directory; a directory whose owner still runs is refused.

``anxmon run`` starts nats-server in its own session (so a Ctrl-C to the terminal's process group
cannot kill it before the service has said goodbye through it). When the service is killed with
SIGKILL, the broker lives on and holds the data directory's store; the next start in the same
data directory must stop it first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.broker import BrokerError, _running, start_broker
from tests.conftest import need_broker

ROOT = Path(__file__).resolve().parents[1]

OWNER = """
import sys, time
from monitor.broker import start_broker
b = start_broker("nats", data_dir=sys.argv[1])
print(b.process.pid, flush=True)
time.sleep(600)
"""


def test_a_broker_orphaned_by_sigkill_is_stopped_by_the_next_start(tmp_path):
    need_broker("nats")
    data_dir = tmp_path / "broker"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(data_dir)], stdout=subprocess.PIPE,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    orphan = int(owner.stdout.readline())
    with pytest.raises(BrokerError, match="in use"):  # its owner still runs: not an orphan
        start_broker("nats", data_dir=data_dir)
    assert _running(orphan)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    time.sleep(0.3)
    assert _running(orphan), "the broker should have outlived its killed owner (its own session)"
    assert (data_dir / "nats.pid").read_text().split() == [str(orphan), str(owner.pid)]
    broker = start_broker("nats", data_dir=data_dir)
    try:
        assert not _running(orphan)  # stopped before the new one started on the same store
        assert broker.process.pid != orphan and broker.process.poll() is None
        assert (data_dir / "nats.pid").read_text().split() == [str(broker.process.pid), str(os.getpid())]
    finally:
        broker.stop()
    assert not (data_dir / "nats.pid").exists()  # a clean stop leaves nothing to reap


def test_a_stale_pid_file_of_another_process_is_left_alone(tmp_path):
    """A pid file whose process is not this directory's broker (the pid was reused): untouched."""
    need_broker("nats")
    data_dir = tmp_path / "broker"
    data_dir.mkdir()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (data_dir / "nats.pid").write_text(f"{bystander.pid} 1\n")
        with start_broker("nats", data_dir=data_dir) as broker:
            assert broker.process.poll() is None
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        bystander.wait()


def _anxmon_run(data_dir: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--data-dir", data_dir, "--no-record"],
                            cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_run_on_the_same_data_directory_is_refused_however_it_is_written(tmp_path):
    """``anxmon run --data-dir /abs/data`` and ``--data-dir data`` (from its parent) are one
    directory: the second is refused before it touches the broker or the checkpoints; after a
    SIGKILL of the first, the next run (by the relative name) stops the orphaned broker."""
    need_broker("nats")
    first = _anxmon_run(str(tmp_path / "data"), ROOT)
    procs = [first]
    try:
        assert "running" in "".join(first.stdout.readline() for _ in range(2)), first.stderr
        creds = (tmp_path / "data" / "broker-credentials.json").read_text()
        procs.append(second := _anxmon_run("data", tmp_path))
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2 and "is in use by another anxmon run (pid" in err, err
        assert (tmp_path / "data" / "broker-credentials.json").read_text() == creds  # untouched
        orphan = int((tmp_path / "data" / "broker" / "nats.pid").read_text().split()[0])
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert _running(orphan)
        procs.append(third := _anxmon_run("data", tmp_path))
        assert "running" in "".join(third.stdout.readline() for _ in range(2)), third.stderr
        assert not _running(orphan)
        third.send_signal(signal.SIGTERM)
        assert third.wait(30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
