"""``anxmon bench live``, functionally: a tiny ramp (10 wearers, 5 s measured) runs end to end
through a real nats-server and a real ``anxmon run`` process, matches indicators to the batches
that released them, reports the core figure beside it, and leaves nothing behind.

No timing is asserted (the figures depend on the machine). What is asserted follows from the
method: every matched latency is >= 0 (an indicator cannot arrive before the batch that
releases its tick was sent; a wrong release map would show up as negative latencies), and with
10 wearers x 4 signals the step sends 40 batches a second.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import need_broker
from tests.test_demo import anxmon_command, processes_mentioning

ROOT = Path(__file__).resolve().parents[1]


def test_bench_live_small_ramp(tmp_path):
    need_broker("nats")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*anxmon_command(), "bench", "live", "--max-wearers", "10", "--seconds", "5", "--json"],
                          cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bench"] == "live"
    [step] = result["steps"]
    assert step["wearers"] == 10 and step["batches_per_s"] == 40
    assert step["indicators"] > 0, step
    assert step["latency_ms"]["p50"] is not None and step["latency_ms"]["p50"] >= 0, step
    assert set(step["cpu_cores"]) == {"service", "broker", "generator"}
    assert result["max_wearers_realtime"] in (0, 10)
    assert result["core_wearer_s_per_cpu_s"] > 0 and result["core_wearers_per_core"] >= 0
    assert "latency" in result["method"]
    assert processes_mentioning(str(scratch)) == []
    assert list(scratch.iterdir()) == []


def test_a_service_that_does_not_start_says_why(tmp_path, monkeypatch):
    """The service process failed to start: bench live ended in a RuntimeError traceback saying
    only "did not come online (exit status 2)", and the service's log, which said why, went with
    the temporary directory. The error now quotes the end of that log."""
    import pytest

    from monitor.bench import _LiveSystem
    from monitor.errors import AnxmonError

    need_broker("nats")
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where _LiveSystem makes its directory
    with pytest.raises(AnxmonError) as error, _LiveSystem() as system:
        system.start_service_process(["--checkpoint-s", "0"])  # a service that refuses its options
    assert "did not come online (exit status 2)" in str(error.value)
    assert "argument --checkpoint-s: must be a finite number > 0, got 0" in str(error.value)
    assert not system.work.exists() and str(system.work).startswith(str(tmp_path))  # nothing left behind
