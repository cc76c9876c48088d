"""The DIY line protocol: grammar, errors, time stamping, a whole stream into the outbox, and
the end of the input (everything published before the bridge exits, real brokers)."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.batcher import Chunk, Status
from firmware_bridge.bridge import Bridge
from firmware_bridge.devices import load_device
from firmware_bridge.lines import MAX_LINE_CHARS, LineError, LinesConverter, parse_line
from firmware_bridge.outbox import Outbox
from firmware_bridge.testing import MonitorSubscriber
from firmware_bridge.transports import fd_lines, run_lines
from monitor.wire import decode_batch

T = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.mark.parametrize(
    "text, kind, values, t_s, device_ms",
    [
        ("eda - 5.01\n", "eda", [5.01], None, None),
        ("EDA - 5.01", "eda", [5.01], None, None),
        ("bvp +123456 512 515 519 530", "bvp", [512, 515, 519, 530], None, 123456.0),
        ("temp 1700000000.25 33.1", "temp", [33.1], 1700000000.25, None),
        ("acc - 0.01 -0.02 0.98 0.02 -0.01 0.97", "acc", [[0.01, -0.02, 0.98], [0.02, -0.01, 0.97]], None, None),
        ("hr - 72", "hr", [72], None, None),
        ("ibi\t-\t830", "ibi", [830], None, None),
        ("battery - 87", "battery", [87], None, None),
        ("contact - 0", "contact", [0], None, None),
        (b"eda - 5\r\n", "eda", [5], None, None),
    ],
)
def test_valid_lines(text, kind, values, t_s, device_ms):
    line = parse_line(text)
    assert line.kind == kind and line.values.tolist() == values
    assert (line.t_s, line.device_ms) == (t_s, device_ms)


@pytest.mark.parametrize("text", ["", "   \n", "# ESP32 GSR v1 booting", "#eda - 5"])
def test_blank_and_comment_lines(text):
    assert parse_line(text) is None


@pytest.mark.parametrize(
    "text, reason",
    [
        ("gsr - 5", "unknown kind"),
        ("eda 5.01", "needs a time"),
        ("eda now 5.01", "not '-', '\\+MILLIS' or unix seconds"),
        ("eda 12345 5.01", "before the year 2000\\); use '\\+MILLIS'"),
        ("eda 1700000000000 5.01", r"not unix seconds \(looks like milliseconds\)$"),
        ("eda - 5.01 x", "must be numbers"),
        ("eda - nan", "finite"),
        ("hr - 72 73", "exactly one value"),
        ("acc - 0.1 0.2", "triples"),
        ("battery - 120", "0-100"),
        ("contact - 2", "1 \\(skin contact\\) or 0"),
        (b"eda - \xff\xfe", "not ASCII"),
        ("eda - " + "1 " * 1001, "at most 1000"),
    ],
)
def test_malformed_lines(text, reason):
    with pytest.raises(LineError, match=reason):
        parse_line(text)


def test_time_stamping_rules():
    conv = LinesConverter(load_device("diy-lines"))
    # '-': the last value arrived now, so the first of four 64 Hz values was 3/64 s earlier
    (bvp,) = conv.convert(parse_line("bvp - 1 2 3 4"), arrival_s=T)
    assert bvp.t0 == pytest.approx(T - 3 / 64, abs=1e-6)
    # unix seconds are taken as they are
    (eda,) = conv.convert(parse_line(f"eda {T - 5:.2f} 5.0"), arrival_s=T)
    assert eda.t0 == pytest.approx(T - 5, abs=1e-6)
    # +MILLIS: mapped by the smallest transit seen; 1 s of device time later is 1 s later
    (a,) = conv.convert(parse_line("eda +1000 5.0"), arrival_s=T + 0.030)
    (b,) = conv.convert(parse_line("eda +2000 5.0"), arrival_s=T + 1.010)  # a faster packet
    assert b.t0 - a.t0 == pytest.approx(1.0, abs=0.03)
    assert b.t0 == pytest.approx(T + 1.010, abs=1e-6)
    # +MILLIS of a long line: it arrives after its last value, so that value sets the clock
    # (a device booted at T prints 64 values of 64 Hz a second, each line 5 ms after its last value)
    long_conv = LinesConverter(load_device("diy-lines"))
    for k in range(3):
        arrival = T + k + 63 / 64 + 0.005
        (bvp,) = long_conv.convert(parse_line(f"bvp +{1000 * k} " + "512 " * 64), arrival_s=arrival)
        assert bvp.t0 == pytest.approx(T + k, abs=0.01)
    (ibi,) = conv.convert(parse_line("ibi - 830"), arrival_s=T)
    assert ibi.t.tolist() == [T] and ibi.values.tolist() == [830]
    (status,) = conv.convert(parse_line("contact - 1"), arrival_s=T)
    assert status == Status("contact", True, T)


def test_undeclared_signal_is_an_error(tmp_path):
    path = tmp_path / "gsr-only.toml"
    path.write_text('model = "gsr-only"\nname = "x"\ntransport = "lines"\ndecoder = "lines"\n[signals.eda]\nunit = "uS"\nrate_hz = 4.0\n')
    conv = LinesConverter(load_device(path))
    with pytest.raises(LineError, match="not declared"):
        conv.convert(parse_line("hr - 72"), T)
    with pytest.raises(LineError, match="battery = true"):
        conv.convert(parse_line("battery - 50"), T)


def test_stream_of_lines_into_the_outbox(tmp_path, caplog):
    """A real EDA trace (Empatica E4, Stress-Predict S02, 4 Hz) written as lines with unix times."""
    eda_file = DATA / "stress-predict" / "S02" / "EDA.csv"
    if not eda_file.exists():
        pytest.skip(f"recording {eda_file} is absent (../shared/data is needed for this test)")
    raw = np.loadtxt(eda_file, delimiter=",")
    t0, values = float(raw[0]), raw[2:202]  # 50 s
    text = "# DIY device booted\n" + "".join(f"eda {t0 + i / 4:.2f} {v:.6f}\n" for i, v in enumerate(values))
    text += "this is not a line\n" + "hr 1 2\n"
    clock = iter(np.arange(0, 10_000) * 0.25 + t0 + 0.3)  # the gateway sees each line 0.3 s later
    bridge = Bridge(load_device("diy-lines"), "alice", outbox=Outbox(tmp_path / "o.sqlite"), clock=lambda: next(clock))
    bad = run_lines(bridge, io.BytesIO(text.encode()), tick_s=0.001)
    bridge.tick(force=True)
    assert bad == 2
    batches = [decode_batch(r.payload, "eda") for r in bridge.outbox.peek(limit=1000)]
    assert np.concatenate([b.values for b in batches]) == pytest.approx(values, abs=1e-6)
    assert [b.seq for b in batches] == list(range(len(batches)))
    assert all(b.fs == 4.0 for b in batches)
    # one segment: every batch starts where the previous one ended
    assert all(b2.t0 == pytest.approx(b1.t0 + len(b1) / 4, abs=1e-6) for b1, b2 in zip(batches, batches[1:]))
    assert batches[0].t0 == pytest.approx(t0, abs=1e-6)
    # problems are reported with reasons, never with values
    assert "line 202 refused" in caplog.text
    assert f"{values[0]:.6f}" not in caplog.text


def test_fd_lines_reads_complete_lines(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"eda - 1\nhr - 2\npartial")
    with open(path, "rb") as f:
        assert list(fd_lines(f.fileno(), chunk=3)) == [b"eda - 1\n", b"hr - 2\n", b"partial"]


def test_fd_lines_does_not_gather_input_without_newlines(tmp_path):
    """A serial port at the wrong baud rate piped to stdin: a long run of bytes without a newline
    comes out in pieces of at most a line's length (each refused), not as one growing buffer."""
    path = tmp_path / "garbage"
    path.write_bytes(b"\xf8" * 100_000 + b"\nhr - 72\n")
    with open(path, "rb") as f:
        lines = list(fd_lines(f.fileno(), chunk=4096))
    assert max(len(line) for line in lines) <= MAX_LINE_CHARS + 4096
    assert lines[-1] == b"hr - 72\n" and sum(map(len, lines)) == 100_000 + 9
    with pytest.raises(LineError, match="longer than|not ASCII"):
        parse_line(lines[0])


def test_refused_lines_are_counted_and_summed_up_without_values(tmp_path, caplog):
    """Nine malformed lines and values the contract refuses: each counted, a total at the end."""
    caplog.set_level(logging.INFO)
    bad = ["gsr - 5", "eda 5.01", "eda - x", "hr - 72 73", "acc - 0.1 0.2", "battery - 120", "contact - 2", "eda - nan", "eda 12345 5"]
    refused = ["eda - 1e308", "hr - 1234.5", "temp - 33.1 99.25"]  # outside the ranges of monitor.wire.SIGNALS
    text = "\n".join(["eda - 5.0", *bad, *refused, "hr - 72", ""])
    clock = iter(T + np.arange(100) * 0.01)
    bridge = Bridge(load_device("diy-lines"), "alice", outbox=Outbox(tmp_path / "o.sqlite"), clock=lambda: next(clock))
    assert run_lines(bridge, io.BytesIO(text.encode()), tick_s=0.001) == 12
    bridge.tick(force=True)
    assert sorted(r.topic.rsplit("/", 1)[1] for r in bridge.outbox.peek()) == ["eda", "hr"]  # the good lines
    assert caplog.text.count("refused so far") == 1  # rate-limited
    assert "refused 12 of 14 line(s) read" in caplog.text
    assert "1e308" not in caplog.text and "1234.5" not in caplog.text and "99.25" not in caplog.text
    caplog.clear()
    caplog.set_level(logging.DEBUG, "firmware_bridge")
    run_lines(bridge, io.BytesIO(text.encode()), tick_s=0.001)
    assert "line 11 refused: eda value outside the range the monitor accepts (0 to 100 uS)" in caplog.text


def test_an_error_reading_the_input_reaches_the_caller(tmp_path):
    def source():
        yield b"hr - 72\n"
        raise OSError("device gone")

    bridge = Bridge(load_device("diy-lines"), "alice", outbox=Outbox(tmp_path / "o.sqlite"))
    with pytest.raises(OSError, match="device gone"):
        run_lines(bridge, source(), tick_s=0.001)
    assert bridge.tick(force=True) == 1  # what came before the error is kept


def bridge_process(url: str, outbox: Path, text: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "firmware_bridge", "lines", "--wearer", "w1", "--broker", url, "--outbox", str(outbox), *options],
        input=text.encode(), capture_output=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_end_of_input_is_published_before_the_bridge_exits(broker, tmp_path):
    """``printf 'hr - 72\\n...' | anxmon bridge lines``: the input ends before the broker is
    reachable (a remote broker, a slow network); the bridge waits for the acknowledgement."""
    monitor = MonitorSubscriber(broker.host, broker.port, broker.username, broker.password)
    broker.stop()
    try:
        threading.Timer(1.0, broker.start).start()
        done = bridge_process(broker.url, tmp_path / "o.sqlite", "hr - 72\nhr - 73\nhr - 74\n", "--drain-s", "30")
        log = done.stderr.decode()
        assert done.returncode == 0, log
        assert "end of input" in log and "the broker acknowledged every batch" in log
        assert len(Outbox(tmp_path / "o.sqlite")) == 0
        assert monitor.wait_for(lambda m: m.accepted[("diy-lines", "hr")], 20), log
        assert [b.values.tolist() for b in monitor.accepted[("diy-lines", "hr")]] == [[72, 73, 74]]
    finally:
        monitor.close()


def test_end_of_input_without_a_broker_keeps_the_batches_and_says_so(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = bridge_process(f"mqtt://127.0.0.1:{port}", tmp_path / "o.sqlite", "hr - 72\neda - 5.0\n", "--drain-s", "0.5")
    assert done.returncode == 0
    assert "2 batch(es) not acknowledged by the broker stay in" in done.stderr.decode()
    assert len(Outbox(tmp_path / "o.sqlite")) == 2


def test_an_empty_input_without_a_broker_does_not_claim_an_acknowledgement(tmp_path):
    """Nothing read, the broker never reached: the bridge said "the broker acknowledged every
    batch"; it now says there was nothing to send."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = bridge_process(f"mqtt://127.0.0.1:{port}", tmp_path / "o.sqlite", "", "--drain-s", "0.5")
    log = done.stderr.decode()
    assert done.returncode == 0, log
    assert "there was nothing to send" in log and "acknowledged" not in log.split("stopping:")[-1].split("\n", 1)[-1]


class _FakeSerialModule:
    """pyserial as ``_serial_lines`` uses it: ``readline()`` returns what arrived within the
    timeout (a line cut by a pause of the device comes in pieces); after each session's pieces
    the device is unplugged, and the port cannot be opened ``failures`` times."""

    class SerialException(OSError):
        pass

    def __init__(self, sessions, failures):
        self.sessions = [list(x) for x in sessions]
        self.pieces = []
        self.failures = failures

    def Serial(self, port, baudrate, timeout):
        if self.failures or not self.sessions:
            self.failures = max(0, self.failures - 1)
            raise self.SerialException(f"could not open port {port}")
        self.pieces = self.sessions.pop(0)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def readline(self):
        if not self.pieces:
            self.failures = 5
            raise self.SerialException("device reports readiness to read but returned no data")
        return self.pieces.pop(0)


def test_a_serial_line_that_arrives_in_pieces_is_read_whole_and_an_unplugged_port_is_logged_once(caplog):
    from firmware_bridge.transports import _serial_lines

    fake = _FakeSerialModule([[b"hr - 7", b"2\n", b"", b"eda - 3.0", b"", b"12\n", b"eda - 2.9"], [b"hr - 80\n"]],
                             failures=5)
    stop = threading.Event()
    got = []
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.transports"):
        for line in _serial_lines(fake, "/dev/ttyUSB0", 115200, stop, retry_s=0.0):
            got.append(line)
            if len(got) == 3:
                stop.set()
    # never a piece: "hr - 7" (refused) and "eda - 3.0" (a wrong value, accepted) are not lines,
    # and the "eda - 2.9" the unplugging cut goes with the port
    assert got == [b"hr - 72\n", b"eda - 3.012\n", b"hr - 80\n"]
    assert [parse_line(x).values.tolist() for x in got] == [[72.0], [3.012], [80.0]]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per outage (6 failures each), not every retry_s
