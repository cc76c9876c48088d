"""Command registration, broker URLs and BLE scanning (with a fake scanner)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from types import SimpleNamespace

import pytest

from firmware_bridge.ble import scan
from firmware_bridge.ble_hrs import HEART_RATE_SERVICE_UUID
from firmware_bridge.cli import add_bridge_parser, main
from firmware_bridge.devices import list_devices
from monitor.errors import AnxmonError, ConfigError
from monitor.mqtt_client import BrokerAddress, parse_broker_url


def parser():
    p = argparse.ArgumentParser(prog="anxmon")
    add_bridge_parser(p.add_subparsers(dest="command", required=True))
    return p


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["bridge", "ble", "--scan"], {"transport": "ble", "scan": True}),
        (["bridge", "ble", "--address", "AA:BB", "--wearer", "alice"], {"address": "AA:BB", "model": "generic-ble-hrs"}),
        (["bridge", "emotibit", "--wearer", "alice"], {"transport": "emotibit", "ip": None, "model": "emotibit"}),
        (["bridge", "lines", "--wearer", "alice", "--serial", "/dev/ttyUSB0"], {"serial": "/dev/ttyUSB0", "model": "diy-lines"}),
        (["bridge", "lines", "--wearer", "alice"], {"serial": None, "batch_s": 1.0, "outbox_max_batches": 250_000}),
    ],
)
def test_commands_are_registered(argv, expected):
    args = parser().parse_args(argv)
    assert callable(args.func)
    for key, value in expected.items():
        assert getattr(args, key) == value



def test_python_m_firmware_bridge_names_itself_in_its_usage(capsys):
    """Its usage said ``python -m firmware_bridge bridge ...``: a word nobody needs to type."""
    with pytest.raises(SystemExit):
        main(["lines", "--batch-s", "0"])
    err = capsys.readouterr().err
    assert "python -m firmware_bridge lines: error: argument --batch-s" in err and " bridge" not in err

def test_user_errors_exit_with_a_message(capsys, tmp_path):
    def error(argv):
        assert main(argv) == 2
        return capsys.readouterr().err

    assert error(["lines", "--log-level", "ERROR"]) == "python -m firmware_bridge: error: --wearer is required\n"
    assert "--address is required" in error(["ble", "--wearer", "alice"])
    assert "uses transport 'ble'" in error(["lines", "--wearer", "alice", "--model", "polar-h10"])
    assert "mqtt://" in error(["lines", "--wearer", "alice", "--broker", "http://x", "--outbox", str(tmp_path / "o")])


def test_usage_errors_look_like_every_anxmon_commands(tmp_path):
    """``anxmon bridge lines`` without --wearer logged '2026-... ERROR firmware_bridge: --wearer
    is required' where ``anxmon run`` with a bad option says 'anxmon: error: ...' (exit 2 both)."""
    import subprocess

    for argv in (["bridge", "lines"], ["bridge", "lines", "--wearer", "alice", "--devices-dir", str(tmp_path)]):
        run = subprocess.run([sys.executable, "-m", "monitor.cli", *argv], input="", capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 2 and run.stderr.startswith("anxmon: error: ") and run.stderr.count("\n") == 1, run.stderr


def test_broker_urls():
    assert parse_broker_url("mqtt://localhost") == BrokerAddress("localhost", 1883)
    assert parse_broker_url("mqtts://u:p%2Fq@h:8884") == BrokerAddress("h", 8884, "u", "p/q", True)
    assert parse_broker_url("mqtts://h").port == 8883
    assert str(parse_broker_url("mqtt://u:secret@h:1")) == "mqtt://u@h:1"  # the password is never shown
    assert "secret" not in repr(parse_broker_url("mqtt://u:secret@h:1"))  # nor in a repr (%r, tracebacks)
    for bad in ("tcp://h:1", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(ConfigError):
            parse_broker_url(bad)


class FakeScanner:
    @staticmethod
    async def discover(timeout, return_adv):
        def adv(name, uuids, rssi):
            return SimpleNamespace(local_name=name, service_uuids=uuids, rssi=rssi)

        return {
            "A0:9E:1A:00:00:01": (SimpleNamespace(name=None), adv("Polar H10 9A1B2C3D", [HEART_RATE_SERVICE_UUID], -60)),
            "C4:00:00:00:00:02": (SimpleNamespace(name="TICKR 1234"), adv(None, [HEART_RATE_SERVICE_UUID.upper()], -70)),
            "D0:00:00:00:00:03": (SimpleNamespace(name="Kitchen scale"), adv("Kitchen scale", [], -40)),
        }


def test_scan_finds_heart_rate_devices():
    results = asyncio.run(scan(list_devices(), timeout_s=0.1, scanner=FakeScanner))
    assert [(r.address, r.model, r.name) for r in results] == [
        ("A0:9E:1A:00:00:01", "polar-h10", "Polar H10 9A1B2C3D"),
        ("C4:00:00:00:00:02", "generic-ble-hrs", "TICKR 1234"),
    ]


def test_a_scan_without_bluetooth_says_what_is_missing():
    """On a machine without BlueZ, ``anxmon bridge ble --scan`` said 'anxmon: error: No such file
    or directory' (bleak cannot reach D-Bus's socket), exit status 1: no word of Bluetooth."""

    class NoBluetooth:
        @staticmethod
        async def discover(timeout, return_adv):
            raise FileNotFoundError(2, "No such file or directory")  # what bleak raised here

    with pytest.raises(AnxmonError, match=r"^cannot scan for Bluetooth devices \(FileNotFoundError: .*\): is there "
                                          r"a Bluetooth adapter, and is the system's Bluetooth service running"):
        asyncio.run(scan(list_devices(), timeout_s=0.1, scanner=NoBluetooth))


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--batch-s", "0", "argument --batch-s: must be a finite number > 0, got 0"),
        ("--batch-s", "-1", "argument --batch-s: must be a finite number > 0, got -1"),
        ("--batch-s", "nan", "argument --batch-s: must be a finite number > 0, got nan"),
        ("--outbox-max-batches", "0", "argument --outbox-max-batches: must be a finite number > 0, got 0"),
        ("--outbox-max-batches", "1.5", "argument --outbox-max-batches: expected an integer, got '1.5'"),
        ("--drain-s", "-1", "argument --drain-s: must be a finite number >= 0, got -1"),
    ],
)
def test_bad_numbers_are_one_line_errors(capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_:
        main(["lines", "--wearer", "alice", option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err and "Traceback" not in err


def test_a_serial_port_without_pyserial_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "serial", None)  # as if pyserial were not installed
    assert main(["lines", "--wearer", "w9", "--serial", "/dev/ttyX", "--outbox", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == ("python -m firmware_bridge: error: reading a serial port needs pyserial: "
                                       "pip install pyserial (anxmon's optional extra serial; "
                                       "in its checkout: pip install -e '.[serial]')\n")
    assert not (tmp_path / "o").exists()  # it failed before opening the outbox or connecting


def test_bluetooth_without_bleak_says_how_to_install_it(monkeypatch, capsys):
    """``anxmon bridge ble --scan`` without bleak said "pip install 'anxmon[ble]'": anxmon is not
    on PyPI, so that finds nothing (docs/devices.md); the extra comes from the checkout."""
    monkeypatch.setitem(sys.modules, "bleak", None)  # as if bleak were not installed
    assert main(["ble", "--scan"]) == 2
    err = capsys.readouterr().err
    assert "anxmon[" not in err
    assert err.endswith("Bluetooth needs bleak: pip install bleak (anxmon's optional extra ble; "
                        "in its checkout: pip install -e '.[ble]')\n")


@pytest.mark.parametrize("options, shown, hidden", [([], "INFO", "DEBUG"), (["--log-level", "WARNING"], "WARNING", "INFO")])
def test_log_level_applies_under_anxmon(tmp_path, options, shown, hidden):
    """``anxmon`` configures logging (WARNING) before the bridge runs: the bridge's own level
    (default INFO) must still apply. A broker URL nobody listens on: the bridge says so."""
    import subprocess

    run = subprocess.run([sys.executable, "-m", "monitor.cli", "bridge", "lines", "--wearer", "alice", "--broker",
                          "mqtt://127.0.0.1:9", "--outbox", str(tmp_path / "o"), "--drain-s", "0", *options],
                         input="", capture_output=True, text=True, timeout=60)
    assert f" {shown} " in run.stderr, run.stderr
    assert "embedded broker" not in run.stderr  # --broker: not anxmon run's broker
    if hidden:
        assert f" {hidden} " not in run.stderr, run.stderr


def test_a_broker_user_of_another_wearer_is_warned_about(tmp_path):
    """alice's login for bob's bridge: the broker would acknowledge and drop every batch
    (MQTT 3.1.1 has no refusal), so the bridge says so before it starts."""
    import subprocess

    run = subprocess.run([sys.executable, "-m", "monitor.cli", "bridge", "lines", "--wearer", "bob", "--broker",
                          "mqtt://alice:alice-password@127.0.0.1:9", "--outbox", str(tmp_path / "o"), "--drain-s", "0"],
                         input="", capture_output=True, text=True, timeout=60)
    assert "WARNING firmware_bridge: the broker user 'alice' is not wearer 'bob'" in run.stderr, run.stderr
    assert "alice-password" not in run.stderr



@pytest.mark.parametrize("kind", ["mosquitto", "nats"])
def test_a_refused_login_is_an_error_exit(tmp_path, kind):
    """A wrong password: the broker refuses every connection. The bridge keeps the batches in its
    outbox and says so, and exits 2 (a configuration error, as other commands), not 0."""
    import subprocess

    from monitor.broker import available_kinds, start_broker

    if kind not in available_kinds():
        pytest.skip(f"{kind} broker not installed")
    broker = start_broker(kind, tmp_path / kind, users={"alice": "alice-long-password"})
    try:
        url = f"mqtt://alice:wrong-password@{broker.host}:{broker.port}"
        run = subprocess.run([sys.executable, "-m", "monitor.cli", "bridge", "lines", "--wearer", "alice", "--broker",
                              url, "--outbox", str(tmp_path / "o"), "--drain-s", "3"],
                             input="hr - 72\nhr - 73\n", capture_output=True, text=True, timeout=60)
    finally:
        broker.stop()
    assert run.returncode == 2, run.stderr
    assert "refused the bridge's connection" in run.stderr and "wrong-password" not in run.stderr
    assert "not acknowledged by the broker stay in" in run.stderr  # kept for the next start


def test_an_invalid_wearer_is_refused_before_the_outbox_is_made(monkeypatch, capsys, tmp_path):
    """``--wearer Alice`` was refused only after ``outbox-Alice-diy-lines.sqlite`` had been created."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["lines", "--wearer", "Alice"]) == 2
    assert "wearer id 'Alice' is not valid" in capsys.readouterr().err
    assert main(["lines", "--wearer", "alice", "--device-id", "My Band"]) == 2
    assert "device id 'My Band' is not valid" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_data_dir_gives_the_embedded_broker_of_anxmon_run(tmp_path):
    """``--data-dir`` reads the broker URL ``anxmon run`` wrote for its embedded broker, as
    ``simulate``, ``replay`` and ``annotate`` do; without the file it is a one-line error."""
    import json
    import os
    import subprocess

    (tmp_path / "broker-credentials.json").write_text(json.dumps({"url": "mqtt://monitor:secret-pw@127.0.0.1:9"}))
    env = {k: v for k, v in os.environ.items() if k != "ANXMON_BROKER_URL"}
    common = ["bridge", "lines", "--wearer", "alice", "--outbox", str(tmp_path / "o"), "--drain-s", "0"]
    run = subprocess.run([sys.executable, "-m", "monitor.cli", *common, "--data-dir", str(tmp_path)],
                         input="", capture_output=True, text=True, timeout=60, env=env)
    assert "-> mqtt://monitor@127.0.0.1:9, outbox" in run.stderr, run.stderr
    assert "secret-pw" not in run.stderr
    # nothing listens there: said as simulate says it (it said only 'connection refused')
    assert f"(the embedded broker runs only while `anxmon run --data-dir {tmp_path}` runs: is it running?)" in run.stderr
    run = subprocess.run([sys.executable, "-m", "monitor.cli", *common, "--data-dir", str(tmp_path / "none")],
                         input="", capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2 and "broker-credentials.json" in run.stderr and "Traceback" not in run.stderr


def test_broker_user_warning_is_shared_with_annotate():
    """One check for the bridge and ``anxmon annotate``: a wearer's user, ``monitor`` or none pass."""
    from firmware_bridge.cli import broker_user_warning

    assert [broker_user_warning(u, "bob") is None for u in (None, "bob", "monitor", "alice")] == [True, True, True, False]


def test_help_names_where_definitions_are_read_from(capsys):
    """``--devices-dir`` said '(default configs/devices)', a folder relative to where the user
    stands, while the definitions come from ``$ANXMON_DEVICES_DIR`` or anxmon's own folder."""
    with pytest.raises(SystemExit):
        parser().parse_args(["bridge", "lines", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "$ANXMON_DEVICES_DIR, else anxmon's own configs/devices" in text


def test_devices_page_quotes_the_errors_as_the_bridge_prints_them(capsys):
    """docs/devices.md said a bad number such as ``--batch-s 0`` is "a one-line error"; it is
    argparse's usage block and then the error line. The page now quotes both kinds as printed."""
    import re
    from pathlib import Path

    from monitor.cli import main as anxmon

    page = " ".join((Path(__file__).resolve().parents[1] / "docs" / "devices.md").read_text().split())
    one_line = re.search(r"is a one-line error \(`(anxmon: error: [^`]+)`\)", page).group(1)
    argparse_line = re.search(r"\(`--batch-s 0`\) is refused as argparse refuses an option, the command's usage and "
                              r"then `(anxmon bridge lines: error: [^`]+)`", page).group(1)
    assert anxmon(["bridge", "lines"]) == 2
    assert capsys.readouterr().err.splitlines() == [one_line]
    with pytest.raises(SystemExit) as exit_:
        anxmon(["bridge", "lines", "--wearer", "alice", "--batch-s", "0"])
    err = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and err[0].startswith("usage: anxmon bridge lines") and err[-1] == argparse_line
