"""Transports: where bytes come from (stdin, a serial port, EmotiBit over UDP) and the loops
that feed them through a decoder into a ``Bridge``.

Each loop stamps arrival times with ``bridge.clock``, ticks the bridge a few times a second
even when the device is silent (so batches and availability stay current), and returns when
``stop`` is set or the input ends. pyserial is imported only when a serial port is used.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from typing import Callable, Iterable, Iterator

from firmware_bridge.bridge import Bridge, log_every
from firmware_bridge.emotibit import (
    ADVERTISING_PORT,
    AVAILABLE,
    DATA_PORT,
    DEVICE_ID,
    HELLO_HOST,
    MODE_NORMAL_POWER,
    EmotiBitConverter,
    connect_packet,
    hello_packet,
    make_packet,
    parse_datagram,
    ping_packet,
)
from firmware_bridge.lines import MAX_LINE_CHARS, LineError, LinesConverter, parse_line
from monitor.errors import install_hint

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Line protocol over stdin or serial


def run_lines(
    bridge: Bridge,
    lines: Iterable[bytes | str],
    stop: threading.Event | None = None,
    tick_s: float = 0.1,
) -> int:
    """Feed line-protocol input (any iterable of lines, e.g. ``sys.stdin.buffer``) to the bridge.

    Reading happens in a helper thread so the bridge keeps ticking while the device is
    silent. Refused lines (malformed, undeclared, or values the contract refuses) are counted
    and reported with line number and reason, never values: a WARNING every 10 s at most
    (each one at DEBUG) and a total at the end. Returns the number of refused lines when the
    input ends or ``stop`` is set; an error reading the input is raised here.
    """
    stop = stop or threading.Event()
    converter = LinesConverter(bridge.definition)
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    failed: list[Exception] = []

    def reader() -> None:
        try:
            for raw in lines:
                inbox.put((bridge.clock(), raw))
                if stop.is_set():
                    break
        except Exception as exc:  # raised in the caller's thread below
            failed.append(exc)
        finally:
            inbox.put(None)

    threading.Thread(target=reader, name="lines-reader", daemon=True).start()
    bad = 0
    number = 0
    logged: dict = {}
    last_tick = time.monotonic()
    while not stop.is_set():
        try:
            item = inbox.get(timeout=tick_s)
        except queue.Empty:
            item = ()
        if item is None:
            break
        if item:
            arrival, raw = item
            number += 1
            try:
                line = parse_line(raw)
                if line is not None:
                    bridge.feed(converter.convert(line, arrival))
            except LineError as exc:
                bad += 1
                if not log_every(logged, "bad", 10.0, logging.WARNING, "line %d refused: %s (%d refused so far)", number, exc, bad, logger=log):
                    log.debug("line %d refused: %s", number, exc)
        if time.monotonic() - last_tick >= tick_s:
            bridge.tick()
            last_tick = time.monotonic()
    if bad:
        log.warning("refused %d of %d line(s) read (each one's reason is logged at DEBUG)", bad, number)
    if failed:
        raise failed[0]
    return bad


def fd_lines(fd: int = 0, chunk: int = 65536) -> Iterator[bytes]:
    """Lines from a file descriptor (stdin by default) read with ``os.read``.

    Unlike ``sys.stdin.buffer`` this holds no lock, so a reader thread still blocked in it
    cannot hang the interpreter at exit. Input without a newline (a serial port at the wrong
    baud rate) is handed on once it is longer than a line may be, to be refused, as
    ``serial_lines`` does: it is not gathered without bound.
    """
    buffer = b""
    while True:
        data = os.read(fd, chunk)
        if not data:
            if buffer:
                yield buffer
            return
        buffer += data
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line + b"\n"
        if len(buffer) > MAX_LINE_CHARS:
            yield buffer
            buffer = b""


def serial_lines(port: str, baudrate: int = 115200, stop: threading.Event | None = None, retry_s: float = 2.0) -> Iterator[bytes]:
    """Lines from a serial port, reopening it when it disappears (USB unplugged, device reset).

    Raises ``ImportError`` right away (not when the first line is read) without pyserial.
    """
    try:
        import serial  # pyserial, optional
    except ImportError:
        raise ImportError(f"reading a serial port needs pyserial: {install_hint('serial', 'pyserial')}") from None
    return _serial_lines(serial, port, baudrate, stop or threading.Event(), retry_s)


def _serial_lines(serial, port: str, baudrate: int, stop: threading.Event, retry_s: float) -> Iterator[bytes]:
    logged: dict = {}
    while not stop.is_set():
        try:
            with serial.Serial(port, baudrate, timeout=0.5) as link:
                log.info("reading %s at %d baud", port, baudrate)
                logged.clear()
                buffer = b""  # readline() gives what it has after the timeout: whole lines only
                while not stop.is_set():
                    buffer += link.readline()
                    if buffer.endswith(b"\n") or len(buffer) > MAX_LINE_CHARS:
                        yield buffer
                        buffer = b""
        except serial.SerialException as exc:  # a line cut by the unplugging is dropped with the port
            log_every(logged, "serial", 60.0, logging.WARNING, "serial port %s: %s; retrying every %.0f s", port, exc, retry_s, logger=log)
            stop.wait(retry_s)


# --------------------------------------------------------------------------------------------
# EmotiBit over WiFi


class EmotiBitHost:
    """The host side of EmotiBit's WiFi protocol (what the EmotiBit Oscilloscope does).

    ``connect()`` sends hello (``HE``) to the EmotiBit (or the broadcast address) on the
    advertising port, waits for ``HH``, opens a UDP data port and a TCP control port, sends
    ``EC`` and waits for the EmotiBit to connect to the control port. ``datagrams()`` yields
    (arrival time, bytes) and pings (``PN``) once a second to keep the EmotiBit streaming.
    """

    def __init__(
        self,
        ip: str | None = None,
        advertising_port: int = ADVERTISING_PORT,
        bind_host: str = "0.0.0.0",
        clock: Callable[[], float] = time.time,
        timeout_s: float = 5.0,
    ):
        self.ip = ip or "255.255.255.255"
        self.advertising_port = advertising_port
        self.bind_host = bind_host
        self.clock = clock
        self.timeout_s = timeout_s
        self.device_ip: str | None = None
        self.device_id: str | None = None
        self._adv = self._data = self._control_server = self._control = None
        self._ping_number = 0

    def connect(self, stop: threading.Event | None = None) -> str:
        """Find and connect the EmotiBit; returns its id (or IP). Raises ``OSError``/``TimeoutError``,
        or ``InterruptedError`` within 0.5 s of ``stop`` being set (Ctrl-C does not wait out ``timeout_s``)."""
        stop = stop or threading.Event()
        self.close()
        adv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        adv.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        adv.bind((self.bind_host, 0))
        adv.settimeout(0.5)
        self._adv = adv
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and self.device_ip is None:
            _check(stop)
            adv.sendto(hello_packet(), (self.ip, self.advertising_port))
            try:
                data, (addr, _) = adv.recvfrom(4096)
            except socket.timeout:
                continue
            for packet in parse_datagram(data).packets:
                if packet.typetag != HELLO_HOST:
                    continue
                labels = packet.labelled()
                if labels.get(DATA_PORT, AVAILABLE) != AVAILABLE:  # it says it streams to another host
                    log.warning("EmotiBit %s at %s may be connected to another host (EmotiBit Oscilloscope?)", labels.get(DEVICE_ID, "?"), addr)
                self.device_ip = addr
                self.device_id = labels.get(DEVICE_ID)
        if self.device_ip is None:
            raise TimeoutError(f"no EmotiBit answered hello on {self.ip}:{self.advertising_port} within {self.timeout_s:g} s")
        self._data = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._data.bind((self.bind_host, 0))
        self._data.settimeout(0.2)
        self._control_server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._control_server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._control_server.bind((self.bind_host, 0))
        self._control_server.listen(1)
        self._control_server.settimeout(0.5)
        control_port = self._control_server.getsockname()[1]
        adv.sendto(connect_packet(control_port, self.data_port), (self.device_ip, self.advertising_port))
        deadline = time.monotonic() + self.timeout_s
        while self._control is None:
            _check(stop)
            try:
                self._control, _ = self._control_server.accept()
            except socket.timeout:  # a TimeoutError: re-raised once timeout_s is out
                if time.monotonic() >= deadline:
                    raise
        self._control.sendall(make_packet(MODE_NORMAL_POWER).encode())
        log.info("connected EmotiBit %s at %s", self.device_id or "?", self.device_ip)
        return self.device_id or self.device_ip

    @property
    def data_port(self) -> int:
        return self._data.getsockname()[1]

    def datagrams(self, stop: threading.Event) -> Iterator[tuple[float, bytes] | None]:
        """Yield (arrival, datagram), or None every 0.2 s of silence (so callers can tick)."""
        last_ping = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now - last_ping >= 1.0:
                self._ping_number += 1
                self._adv.sendto(ping_packet(self._ping_number, self.data_port), (self.device_ip, self.advertising_port))
                last_ping = now
            try:
                data = self._data.recv(65536)
            except socket.timeout:
                yield None
                continue
            yield self.clock(), data

    def close(self) -> None:
        for sock in (self._control, self._control_server, self._data, self._adv):
            if sock is not None:
                sock.close()
        self._adv = self._data = self._control_server = self._control = None
        self.device_ip = None


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise InterruptedError("stopped while connecting the EmotiBit")


def run_emotibit(
    bridge: Bridge,
    host: EmotiBitHost,
    stop: threading.Event | None = None,
    silence_s: float = 5.0,
    retry_min_s: float = 1.0,
    retry_max_s: float = 30.0,
) -> None:
    """Connect the EmotiBit, stream its packets into the bridge, reconnect after silence."""
    stop = stop or threading.Event()
    converter = EmotiBitConverter(bridge.definition)
    logged: dict = {}
    delay = retry_min_s
    while not stop.is_set():
        try:
            host.connect(stop)
        except OSError as exc:  # includes TimeoutError / socket.timeout, InterruptedError on stop
            if stop.is_set():
                break
            log_every(logged, "connect", 60.0, logging.WARNING, "EmotiBit not reachable (%s); retrying", exc, logger=log)
            bridge.tick()
            stop.wait(delay)
            delay = min(retry_max_s, delay * 2)
            continue
        delay = retry_min_s
        last_data = time.monotonic()
        bad = 0
        for item in host.datagrams(stop):
            if item is not None:
                arrival, data = item
                result = parse_datagram(data)
                if result.errors:
                    bad += len(result.errors)
                    log_every(logged, "bad", 10.0, logging.WARNING, "malformed EmotiBit packet: %s (%d so far)", result.errors[0], bad, logger=log)
                for packet in result.packets:
                    try:
                        bridge.feed(converter.convert(packet, arrival))
                    except ValueError as exc:
                        bad += 1
                        log_every(logged, "bad", 10.0, logging.WARNING, "EmotiBit packet ignored: %s", exc, logger=log)
                last_data = time.monotonic()
            bridge.tick()
            if time.monotonic() - last_data > silence_s:
                log.warning("EmotiBit sent nothing for %.0f s; reconnecting", silence_s)
                break
        host.close()
