"""Bluetooth LE transport (Heart Rate Service) through ``bleak``, the optional extra ``anxmon[ble]``.

``bleak`` is imported only when BLE is used. ``run_ble`` connects, subscribes to Heart Rate
Measurement notifications, reads the battery level, and reconnects with backoff after the
strap walks out of range. It warns when notifications stop while the link still looks up
(the classic silent failure of BLE straps: the connection flag says yes, nothing arrives),
and after ``3 * silence_s`` of that it drops the link and reconnects.

Tests pass ``client_factory`` (a bleak-like class) so no radio or bleak is needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from firmware_bridge.ble_hrs import (
    BATTERY_LEVEL_UUID,
    HEART_RATE_MEASUREMENT_UUID,
    HEART_RATE_SERVICE_UUID,
    HrsConverter,
    decode_battery_level,
    decode_heart_rate_measurement,
)
from firmware_bridge.batcher import Status
from firmware_bridge.bridge import Bridge
from firmware_bridge.devices import DeviceDefinition

log = logging.getLogger(__name__)

BATTERY_READ_EVERY_S = 300.0


def _bleak():
    try:
        import bleak
    except ImportError:
        raise ImportError("Bluetooth needs the optional extra: pip install 'anxmon[ble]' (or pip install bleak)") from None
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
    found = await scanner.discover(timeout=timeout_s, return_adv=True)
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
) -> None:
    """Stream a Heart Rate Service device into the bridge until ``stop`` is set."""
    stop = stop or asyncio.Event()
    factory = client_factory or _bleak().BleakClient
    errors = _client_errors()
    converter = HrsConverter(bridge.definition)
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
                log.warning("heart rate notification ignored: %s (%d so far)", exc, bad)
                return
            log.debug("notification %s", bytes(data).hex())
            bridge.feed(converter.convert(measurement, arrival))

        try:
            await client.start_notify(HEART_RATE_MEASUREMENT_UUID, on_hrm)
            log.info("connected %s; heart rate notifications on", address)
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
                bridge.tick()
                await _wait(lost, tick_s)
        except errors as exc:
            log.warning("%s: link error (%s: %s)", address, type(exc).__name__, exc)
        if lost.is_set():
            log.warning("%s disconnected (out of range or switched off); reconnecting", address)
        try:
            await client.disconnect()
        except errors as exc:
            log.debug("disconnect after loss: %s", exc)
        bridge.tick()
        if not stop.is_set():
            await _sleep_or_stop(stop, delay)


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
