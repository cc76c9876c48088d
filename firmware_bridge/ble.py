"""Bluetooth LE transport (Heart Rate Service) through ``bleak``, the optional extra ``anxmon[ble]``.

``bleak`` is imported only when BLE is used. ``run_ble`` connects, subscribes to Heart Rate
Measurement notifications, reads the battery level, and reconnects with backoff after the
strap walks out of range. It warns when notifications stop while the link still looks up
(the classic silent failure of BLE straps: the connection flag says yes, nothing arrives),
and after ``3 * silence_s`` of that it drops the link and reconnects.

Accelerometer of a Polar strap: when the definition sets ``pmd_acc_hz`` and the strap offers
Polar's PMD service, every connection also turns on the PMD notifications, writes the ACC start
request (``firmware_bridge.polar_pmd``) and feeds the decoded frames as ``acc``, stamped by
the gateway's clock like the heart rate. No PMD service, no ACC feature, or a refusal (old
firmware, another app holds the stream) gives one WARNING per reason and heart rate only. A
clean stop (``stop`` set) sends the stop request before disconnecting.

Step cadence: when the definition declares ``cadence`` and the device offers the Running Speed
and Cadence service, every connection also turns on its notifications and feeds a regular
``cadence`` stream (``RscCadenceStream``): the motion gate of a strap without an accelerometer.
No service gives one WARNING and heart rate only.

Tests pass ``client_factory`` (a bleak-like class) so no radio or bleak is needed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from firmware_bridge.ble_hrs import (
    BATTERY_LEVEL_UUID,
    HEART_RATE_MEASUREMENT_UUID,
    HEART_RATE_SERVICE_UUID,
    HrsConverter,
    decode_battery_level,
    decode_heart_rate_measurement,
)
from firmware_bridge.batcher import Chunk, Status
from firmware_bridge.ble_rsc import RSC_MEASUREMENT_UUID, decode_rsc_measurement
from firmware_bridge.bridge import Bridge, log_every
from firmware_bridge.clock import DeviceClock
from firmware_bridge.devices import DeviceDefinition
from firmware_bridge.polar_pmd import (
    CP_RESPONSE,
    MEASUREMENT_ACC,
    OP_REQUEST_MEASUREMENT_START,
    OP_STOP_MEASUREMENT,
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
    PmdError,
    acc_chunk,
    build_acc_start_request,
    build_stop_request,
    check_start_response,
    decode_acc_frame,
    parse_features,
    parse_measurement_stopped,
)
from monitor.errors import AnxmonError, install_hint

log = logging.getLogger(__name__)

BATTERY_READ_EVERY_S = 300.0
PMD_RESPONSE_TIMEOUT_S = 5.0  # how long to wait for the strap to answer a control point command
WARN_BAD_EVERY_S = 60.0  # malformed notifications: a WARNING at most this often


def _bleak():
    try:
        import bleak
    except ImportError:
        raise ImportError(f"Bluetooth needs bleak: {install_hint('ble', 'bleak')}") from None
    return bleak


def _client_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the link failed" (bleak's own when it is installed)."""
    errors: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError, EOFError)
    try:
        from bleak.exc import BleakError
    except ImportError:
        return errors
    return errors + (BleakError,)


@dataclass(frozen=True)
class ScanResult:
    address: str
    name: str
    rssi: int | None
    model: str | None  # the matching device definition, if any


async def scan(definitions: list[DeviceDefinition], timeout_s: float = 8.0, scanner=None) -> list[ScanResult]:
    """Devices nearby that advertise the Heart Rate Service or match a definition's ``ble_names``."""
    scanner = scanner or _bleak().BleakScanner
    try:
        found = await scanner.discover(timeout=timeout_s, return_adv=True)
    except _client_errors() as exc:  # no adapter, no D-Bus, BlueZ not running: not worth a traceback
        raise AnxmonError(f"cannot scan for Bluetooth devices ({type(exc).__name__}: {exc}): is there a "
                          "Bluetooth adapter, and is the system's Bluetooth service running (BlueZ: "
                          "systemctl status bluetooth)?") from exc
    results = []
    for address, (device, adv) in found.items():
        name = adv.local_name or device.name or ""
        uuids = {u.lower() for u in (adv.service_uuids or [])}
        model = next((d.model for d in definitions if any(name.startswith(p) for p in d.ble_names)), None)
        if model is None and HEART_RATE_SERVICE_UUID in uuids:
            model = "generic-ble-hrs"
        if model is not None:
            results.append(ScanResult(address, name, adv.rssi, model))
    return sorted(results, key=lambda r: -(r.rssi if r.rssi is not None else -999))


async def run_ble(
    bridge: Bridge,
    address: str,
    *,
    stop: asyncio.Event | None = None,
    client_factory: Callable | None = None,
    tick_s: float = 0.2,
    silence_s: float = 10.0,
    connect_timeout_s: float = 20.0,
    reconnect_min_s: float = 1.0,
    reconnect_max_s: float = 30.0,
    pmd_timeout_s: float = PMD_RESPONSE_TIMEOUT_S,
) -> None:
    """Stream a Heart Rate Service device (and a Polar strap's PMD accelerometer) into the bridge
    until ``stop`` is set."""
    stop = stop or asyncio.Event()
    factory = client_factory or _bleak().BleakClient
    errors = _client_errors()
    converter = HrsConverter(bridge.definition)
    use_pmd_acc = bridge.definition.pmd_acc_hz is not None and "acc" in bridge.definition.signals
    use_rsc = "cadence" in bridge.definition.signals
    warned: set[str] = set()  # PMD and RSC problems already warned about (once each per run)
    logged: dict = {}  # when malformed notifications were last warned about
    rsc = RscCadenceStream(bridge, address, warned) if use_rsc else None  # one time axis for the run
    delay = reconnect_min_s
    bad = 0
    last_fail_log = None

    while not stop.is_set():
        lost = asyncio.Event()
        client = factory(address, disconnected_callback=lambda _client: lost.set())
        try:
            await asyncio.wait_for(client.connect(), connect_timeout_s)
        except errors as exc:
            if last_fail_log is None or time.monotonic() - last_fail_log > 60.0:
                last_fail_log = time.monotonic()
                log.warning("cannot connect %s (%s: %s); retrying with backoff", address, type(exc).__name__, exc)
            bridge.tick()
            await _sleep_or_stop(stop, delay)
            delay = min(reconnect_max_s, delay * 2)
            continue
        last_fail_log = None
        delay = reconnect_min_s
        converter.reset()
        state = {"last": bridge.clock(), "warned": False}

        def on_hrm(_char, data: bytearray) -> None:
            nonlocal bad
            arrival = bridge.clock()
            state["last"] = arrival
            if state["warned"]:
                state["warned"] = False
                log.info("%s notifications resumed", address)
            try:
                measurement = decode_heart_rate_measurement(data)
            except ValueError as exc:
                bad += 1
                _warn_bad(logged, "heart rate notification ignored: %s (%d so far)", exc, bad)
                return
            if measurement.problem is not None:  # the heart rate goes on, the rest is left out
                bad += 1
                _warn_bad(logged, "heart rate notification partly ignored: %s (%d so far)", measurement.problem, bad)
            log.debug("notification %s", bytes(data).hex())
            bridge.feed(converter.convert(measurement, arrival))

        pmd = None
        try:
            await client.start_notify(HEART_RATE_MEASUREMENT_UUID, on_hrm)
            log.info("connected %s; heart rate notifications on", address)
            if use_pmd_acc:  # after every (re)connection: the strap forgets the stream with the link
                pmd = PmdAccStream(bridge, address, warned)
                await pmd.start(client, errors, timeout_s=pmd_timeout_s)
            if rsc is not None:
                await rsc.start(client, errors)
            battery_at = None
            while not stop.is_set() and not lost.is_set():
                now = bridge.clock()
                if bridge.definition.battery and (battery_at is None or now - battery_at >= BATTERY_READ_EVERY_S):
                    battery_at = now
                    await _read_battery(client, bridge, errors)
                silent = now - state["last"]
                if silent > silence_s and client.is_connected:
                    if not state["warned"]:
                        state["warned"] = True
                        log.warning("%s: no notifications for %.0f s although the link is up", address, silent)
                    if silent > 3 * silence_s:
                        log.warning("%s: still silent; dropping the link to reconnect", address)
                        break
                if rsc is not None:
                    rsc.tick(now, heart_rate_flowing=silent <= RscCadenceStream.STALE_S)
                bridge.tick()
                await _wait(lost, tick_s)
        except errors as exc:
            log.warning("%s: link error (%s: %s)", address, type(exc).__name__, exc)
        if lost.is_set():
            log.warning("%s disconnected (out of range or switched off); reconnecting", address)
        elif stop.is_set() and pmd is not None and pmd.active:
            await pmd.stop(client, errors, timeout_s=min(1.0, pmd_timeout_s))
        try:
            await client.disconnect()
        except errors as exc:
            log.debug("disconnect after loss: %s", exc)
        bridge.tick()
        if not stop.is_set():
            await _sleep_or_stop(stop, delay)


def _offers(client, uuids: tuple[str, ...], errors) -> bool:
    """Whether the connected client's resolved services hold every characteristic in ``uuids``."""
    get = getattr(getattr(client, "services", None), "get_characteristic", None)
    if get is None:
        return False
    try:
        return all(get(uuid) is not None for uuid in uuids)
    except errors + (KeyError, ValueError) as exc:  # bleak raises when services are not resolved
        log.debug("service lookup failed: %s", exc)
        return False


class PmdAccStream:
    """The accelerometer of a Polar strap over PMD, for one connection.

    ``start`` checks that the strap offers it, turns on the control point indications and
    the data notifications, writes the start request and checks the answer; anything missing
    or refused is one WARNING per reason per run (``warned`` is shared across connections), and
    the stream stays off: heart rate goes on. Frames are fed to the bridge as ``acc`` in g,
    stamped by the gateway's clock (``polar_pmd.acc_chunk``). Sample values are logged at
    DEBUG only.

    Example
    -------
    >>> from firmware_bridge.devices import load_device
    >>> from firmware_bridge.outbox import Outbox
    >>> br = Bridge(load_device("polar-h10"), "alice", outbox=Outbox(":memory:"), clock=lambda: 1.7e9)
    >>> s = PmdAccStream(br, "AA:BB", set())
    >>> s.active, s.rate_hz
    (False, 25)
    """

    def __init__(self, bridge: Bridge, address: str, warned: set[str]):
        self.bridge = bridge
        self.address = address
        self.warned = warned
        self.rate_hz = bridge.definition.pmd_acc_hz
        self.scale = bridge.definition.signals["acc"].scale
        self.active = False
        self.starting = False  # a start request is waiting for its answer (a late answer is not taken)
        self.factor: float | None = None
        self.frames = 0
        self.bad_frames = 0
        self.clock = DeviceClock()  # strap ns -> unix s; a new stream (connection) starts a new one
        self._logged: dict = {}
        self._responses: asyncio.Queue[bytes] = asyncio.Queue()

    def _warn(self, reason: str, msg: str, *args) -> None:
        _warn_once(self.warned, f"pmd-{reason}", msg + "; going on with heart rate only (no motion gate)", *args)

    async def start(self, client, errors, timeout_s: float = PMD_RESPONSE_TIMEOUT_S) -> bool:
        """Start the stream; True when the strap streams the accelerometer."""
        address = self.address
        if not _offers(client, (PMD_CONTROL_POINT_UUID, PMD_DATA_UUID), errors):
            self._warn("missing", "%s does not offer Polar's PMD service (older firmware?): no accelerometer", address)
            return False
        try:
            try:
                features = parse_features(await client.read_gatt_char(PMD_CONTROL_POINT_UUID))
            except (ValueError,) + errors as exc:  # not every firmware answers the read: just try
                log.debug("%s: PMD feature read failed (%s); trying to start anyway", address, exc)
                features = None
            if features is not None and "acc" not in features:
                self._warn("no-acc", "%s: its PMD service offers %s but no accelerometer", address,
                           ", ".join(sorted(features)) or "nothing")
                return False
            await client.start_notify(PMD_CONTROL_POINT_UUID, self.on_control_point)
            await client.start_notify(PMD_DATA_UUID, self.on_data)
            self.starting = True
            try:
                await client.write_gatt_char(PMD_CONTROL_POINT_UUID, build_acc_start_request(self.rate_hz),
                                             response=True)
                self.factor = check_start_response(await self._response(OP_REQUEST_MEASUREMENT_START, timeout_s))
            finally:
                self.starting = False
        except PmdError as exc:
            self._warn(f"refused-{exc.status}", "%s: %s", address, exc)
            return False
        except asyncio.TimeoutError:
            self._warn("timeout", "%s: no answer to the accelerometer start request within %.0f s", address, timeout_s)
            return False
        except ValueError as exc:
            self._warn("malformed", "%s: unexpected answer to the accelerometer start request (%s)", address, exc)
            return False
        except errors as exc:
            self._warn("link", "%s: the accelerometer could not be started (%s: %s)", address, type(exc).__name__, exc)
            return False
        self.active = True
        log.info("%s: accelerometer on (Polar PMD, %d Hz)", address, self.rate_hz)
        return True

    async def stop(self, client, errors, timeout_s: float = 1.0) -> None:
        """Ask the strap to stop the stream (a clean shutdown); failures are only logged."""
        self.active = False
        try:
            await client.write_gatt_char(PMD_CONTROL_POINT_UUID, build_stop_request(MEASUREMENT_ACC), response=True)
            await self._response(OP_STOP_MEASUREMENT, timeout_s)
            log.info("%s: accelerometer stream stopped", self.address)
        except errors as exc:  # includes no answer in time
            log.debug("%s: accelerometer stop not confirmed (%s)", self.address, exc)

    async def _response(self, op_code: int, timeout_s: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            data = await asyncio.wait_for(self._responses.get(), max(0.0, deadline - loop.time()))
            if data[1] == op_code:
                return data
            log.debug("%s: control point answer to op code %d ignored (waiting for %d)", self.address, data[1], op_code)

    def on_control_point(self, _char, data: bytearray) -> None:
        """Control point indications: answers to commands, or the strap stopping a stream."""
        data = bytes(data)
        stopped = parse_measurement_stopped(data)
        if stopped is not None:
            if MEASUREMENT_ACC in stopped and self.active:
                self.active = False
                self._warn("stopped", "%s stopped the accelerometer stream (it is asked again at the next connection)",
                           self.address)
            return
        if len(data) >= 2 and data[0] == CP_RESPONSE:
            if data[1] == OP_REQUEST_MEASUREMENT_START and self.starting and not self.active:
                # accept frames from now on: data may be handled before ``start`` resumes
                try:
                    self.factor = check_start_response(data)
                    self.active = True
                except (PmdError, ValueError):
                    pass  # ``start`` reports it
            self._responses.put_nowait(data)
        else:
            log.debug("%s: control point bytes ignored: %s", self.address, data.hex())

    def on_data(self, _char, data: bytearray) -> None:
        """PMD data notifications: ACC frames to ``acc`` chunks."""
        if not self.active:
            log.debug("%s: PMD data ignored (the accelerometer stream is not ours)", self.address)
            return
        arrival = self.bridge.clock()
        try:
            frame = decode_acc_frame(data, self.factor)
        except ValueError as exc:
            self.bad_frames += 1
            _warn_bad(self._logged, "accelerometer frame ignored: %s (%d so far)", exc, self.bad_frames)
            return
        log.debug("pmd frame %s", bytes(data).hex())
        self.frames += 1
        last_s = self.clock.to_unix(frame.timestamp_ns / 1e6, arrival)
        self.bridge.feed([acc_chunk(frame, last_s, self.rate_hz, self.scale)])


class RscCadenceStream:
    """Step cadence from the Running Speed and Cadence service, for one run of ``run_ble``.

    ``start``, at every connection, checks that the device offers the RSC Measurement and turns
    its notifications on; a device without it gives one WARNING per run (``warned`` is shared
    with the PMD stream) and no cadence. Notifications come at the sensor's own pace, about
    once a second, and some sensors fall silent while the wearer stands still, so ``tick``
    resamples them into the definition's regular ``cadence`` stream (1 Hz, steps/min, times
    from the gateway's clock): each sample is the latest notification's cadence (times the
    definition's ``scale``) while that is at most ``STALE_S`` old, else 0 steps/min (also when
    nothing has come ``STALE_S`` after the connection began), provided the heart rate is still
    arriving: the link is alive and the device chose not to report footfalls. While the heart
    rate is silent too, or the link is down, no samples are made: a gap, not stillness. The
    samples stay on one grid across reconnections, so no two overlap. Values are logged at
    DEBUG only.

    Example
    -------
    >>> from firmware_bridge.devices import load_device
    >>> from firmware_bridge.outbox import Outbox
    >>> br = Bridge(load_device("generic-ble-hrs"), "alice", outbox=Outbox(":memory:"), clock=lambda: 1.7e9)
    >>> s = RscCadenceStream(br, "AA:BB", set())
    >>> s.active, s.period_s
    (False, 1.0)
    """

    STALE_S = 3.0  # a notification older than this no longer says the wearer is stepping (s)

    def __init__(self, bridge: Bridge, address: str, warned: set[str]):
        signal = bridge.definition.signals["cadence"]
        self.bridge = bridge
        self.address = address
        self.warned = warned
        self.period_s = 1.0 / signal.rate_hz
        self.scale = signal.scale
        self.active = False
        # (arrival s, steps/min) of the last notification; (connection s, None) before the first one
        self.latest: tuple[float, float | None] = (bridge.clock(), None)
        self.next_s: float | None = None  # gateway time of the next sample
        self.bad = 0
        self._logged: dict = {}

    async def start(self, client, errors) -> bool:
        """Turn the notifications on; True when the device offers them."""
        why = "no step cadence for the motion gate"
        self.active, self.latest = False, (self.bridge.clock(), None)
        if not _offers(client, (RSC_MEASUREMENT_UUID,), errors):
            _warn_once(self.warned, "rsc-missing", "%s does not offer the Running Speed and Cadence service: %s",
                       self.address, why)
            return False
        try:
            await client.start_notify(RSC_MEASUREMENT_UUID, self.on_rsc)
        except errors as exc:
            _warn_once(self.warned, "rsc-link", "%s: step cadence could not be turned on (%s: %s): %s",
                       self.address, type(exc).__name__, exc, why)
            return False
        self.active = True
        now = self.bridge.clock()
        if self.next_s is None:
            self.next_s = now
        elif self.next_s < now:  # skip the time the link was down, staying on the grid
            self.next_s += self.period_s * math.ceil((now - self.next_s) / self.period_s)
        log.info("%s: step cadence on (Running Speed and Cadence)", self.address)
        return True

    def on_rsc(self, _char, data: bytearray) -> None:
        """RSC Measurement notifications: keep the latest cadence."""
        arrival = self.bridge.clock()
        try:
            measurement = decode_rsc_measurement(data)
        except ValueError as exc:
            self.bad += 1
            _warn_bad(self._logged, "running speed and cadence notification ignored: %s (%d so far)", exc, self.bad)
            return
        log.debug("rsc notification %s", bytes(data).hex())
        self.latest = (arrival, measurement.cadence_per_min * self.scale)

    def tick(self, now_s: float, heart_rate_flowing: bool) -> None:
        """Feed the samples due up to ``now_s`` (gateway time, s)."""
        if not self.active or self.next_s is None or now_s < self.next_s:
            return
        times = self.next_s + self.period_s * np.arange(int((now_s - self.next_s) / self.period_s) + 1)
        self.next_s = float(times[-1] + self.period_s)
        if not heart_rate_flowing:
            return
        values = np.zeros(len(times))
        arrival, cadence = self.latest
        fresh = times - arrival <= self.STALE_S  # a leading run of the samples
        if cadence is None:  # nothing heard since the connection began: no samples yet
            times, values = times[~fresh], values[~fresh]
        else:
            values[fresh] = cadence
        if len(times):
            self.bridge.feed([Chunk("cadence", values, t0=float(times[0]))])


def _warn_bad(logged: dict, msg: str, exc: Exception, count: int) -> None:
    """A malformed notification: a WARNING at most every ``WARN_BAD_EVERY_S`` (a strap with a
    quirk sends one a second), each one at DEBUG."""
    if not log_every(logged, msg, WARN_BAD_EVERY_S, logging.WARNING, msg, exc, count, logger=log):
        log.debug(msg, exc, count)


def _warn_once(warned: set[str], reason: str, msg: str, *args) -> None:
    """A WARNING the first time ``reason`` comes up in a run, INFO after that."""
    level = logging.INFO if reason in warned else logging.WARNING
    warned.add(reason)
    log.log(level, msg, *args)


async def _read_battery(client, bridge: Bridge, errors) -> None:
    try:
        data = await client.read_gatt_char(BATTERY_LEVEL_UUID)
        bridge.feed([Status("battery", float(decode_battery_level(data)), bridge.clock())])
    except ValueError as exc:
        log.warning("battery level ignored: %s", exc)
    except errors as exc:
        log.info("battery level not available: %s", exc)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; True when it was set (running out is the normal case)."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    await _wait(stop, seconds)
