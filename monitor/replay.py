"""``anxmon replay``: publish a recording to a broker as a live device would.

Any recording ``read_recording`` reads (E4, EmotiBit, Polar H10, Garmin, anxmon's own ``.jsonl``,
e.g. a raw export of the service's recording) is cut into 1 s sample batches
(``Recording.batches``: the order a live device sends them, a ``seq`` counting up per stream)
and published on ``anxmon/v1/{wearer}/{device}/{signal}`` at QoS 1, with the retained
availability ``online`` while it plays, ``offline`` at the end and as the last will. The
recording's markers (e.g. E4 tags) are published on ``anxmon/v1/{wearer}/{device}/marker`` at
their times.

Pacing follows the samples' own timestamps: a batch goes out when its span has ended, at
``speed`` times real time. ``speed=math.inf`` (``--speed max``) publishes as fast as the broker
acknowledges, with at most ``window`` messages unacknowledged. ``rebase_time`` shifts every
timestamp so that the recording starts now (a live demo); without it the original times are
kept, which the service accepts at any speed (see "Staleness" in ``docs/service.md``).

Example
-------
>>> from monitor.recordings import read_recording
>>> rec = read_recording("../shared/data/stress-predict/S02")                 # doctest: +SKIP
>>> replay(rec, "mqtt://monitor:secret@127.0.0.1:1883", "s02", speed=math.inf)  # doctest: +SKIP
ReplayStats(batches=18137, markers=7, ...)
"""

from __future__ import annotations

import collections
import contextlib
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt

from monitor.errors import AnxmonError, WireError
from monitor.markers import Marker, utc_text
from monitor.mqtt_client import make_client, parse_broker_url, private_client_id
from monitor.recordings import Recording, wearer_id_for
from monitor.wire import (
    SampleBatch,
    availability_topic,
    check_id,
    data_topic,
    decode_marker,
    encode_batch,
    encode_marker,
    marker_topic,
)

DEFAULT_DEVICE = "replay"


class ReplayError(AnxmonError):
    """The broker cannot be reached, refused us, or stopped acknowledging."""


@dataclass
class ReplayStats:
    batches: int = 0  # sample batches published and acknowledged
    markers: int = 0  # markers published and acknowledged
    shift_s: float = 0.0  # added to every timestamp (``rebase_time``)
    elapsed_s: float = 0.0  # wall clock
    # the batches the service refuses, as summary.json keeps them (``analyze.WireCheck.summary``)
    refusals: dict = field(default_factory=dict)


def connect(url: str, client_id: str, will: tuple[str, bytes] | None = None, window: int = 100,
            timeout_s: float = 10.0, unreachable_hint: str = "") -> mqtt.Client:
    """A connected paho client (network loop running), clean session, QoS 1 window ``window``.
    ``unreachable_hint`` is added to the error when nothing answers at the address."""
    address = parse_broker_url(url)
    client = make_client(address, client_id)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    client.max_inflight_messages_set(window)
    connected, refused = threading.Event(), []

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    client.reconnect_delay_set(1, 8)
    try:
        client.connect(address.host, address.port, keepalive=30)
    except OSError as exc:
        raise ReplayError(f"cannot reach broker {address}: {exc}{unreachable_hint}") from None
    client.loop_start()
    if not connected.wait(timeout_s) or refused:
        client.loop_stop()
        client.disconnect()
        why = refused[0] if refused else f"no answer within {timeout_s:g} s"
        raise ReplayError(f"broker {address} did not accept the connection: {why}")
    return client


def _wait(info: mqtt.MQTTMessageInfo, timeout_s: float, what: str) -> None:
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError) as exc:
        raise ReplayError(f"could not publish {what}: {exc}") from None
    if not info.is_published():
        raise ReplayError(f"the broker did not acknowledge {what} within {timeout_s:g} s")


def _shifted(batch: SampleBatch, shift_s: float) -> SampleBatch:
    if not shift_s:
        return batch
    if batch.regular:
        return SampleBatch(batch.signal, batch.seq, batch.values, t0=batch.t0 + shift_s, fs=batch.fs)
    return SampleBatch(batch.signal, batch.seq, batch.values, t=batch.t + shift_s)


def _due(batch: SampleBatch) -> float:
    """When a live device would send the batch: when its span has ended."""
    return batch.t0 + len(batch) / batch.fs if batch.regular else batch.end_s


def schedule(recording: Recording, batch_s: float = 1.0) -> list[tuple[float, SampleBatch | Marker]]:
    """``(due time, batch or marker)`` in publishing order: the batches in ``Recording.batches``
    order, each marker before the first batch due after it (due times never decrease)."""
    out: list[tuple[float, SampleBatch | Marker]] = []
    markers = collections.deque(sorted(recording.markers))
    last = -math.inf
    for batch in recording.batches(batch_s):
        due = max(last, _due(batch))
        while markers and markers[0].t_s <= due:
            m = markers.popleft()
            out.append((max(last, m.t_s), m))
            last = max(last, m.t_s)
        out.append((due, batch))
        last = due
    out.extend((max(last, m.t_s), m) for m in markers)
    return out


def replay(recording: Recording, broker: str, wearer: str | None = None, device: str = DEFAULT_DEVICE,
           speed: float = 1.0, rebase_time: bool = False, window: int = 100, progress: bool | None = None,
           clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
           ack_timeout_s: float = 30.0, unreachable_hint: str = "") -> ReplayStats:
    """Publish ``recording`` to ``broker`` as wearer ``wearer``'s device ``device`` (see the module
    docstring). ``speed`` is a multiple of real time (``math.inf``: as fast as acknowledged);
    ``progress=None`` shows a progress bar on stderr only when it is a terminal;
    ``unreachable_hint`` is added to the error when nothing answers at the broker's address."""
    from tqdm import tqdm

    from monitor.analyze import WireCheck

    if not speed > 0:
        raise ReplayError(f"speed must be > 0 (or max), got {speed!r}")
    wearer = check_id("wearer", wearer or wearer_id_for(recording))
    check_id("device", device)
    events = schedule(recording)
    if not events:
        raise ReplayError(f"{recording.source}: nothing to replay")
    _check_markers(recording.markers, wearer)
    stats = ReplayStats(shift_s=(clock() - recording.start_s) if rebase_time else 0.0)
    avail = availability_topic(wearer, device)
    markers_to = marker_topic(wearer, device)
    client = connect(broker, private_client_id(f"anxmon-replay-{wearer}-{device}"), will=(avail, b"offline"),
                     window=window, unreachable_hint=unreachable_hint)
    started = time.monotonic()
    wire = WireCheck()  # published all the same, as a device would: the service refuses them
    try:
        _wait(client.publish(avail, b"online", qos=1, retain=True), ack_timeout_s, "the availability")
        inflight: collections.deque = collections.deque()
        first_due = events[0][0]
        wall0 = time.monotonic()
        disable = (not sys.stderr.isatty()) if progress is None else not progress
        with tqdm(total=len(events), unit="msg", file=sys.stderr, disable=disable,
                  desc=f"replay {Path(str(recording.source)).name} as {wearer}") as bar:
            for due, item in events:
                if math.isfinite(speed):
                    wait_s = wall0 + (due - first_due) / speed - time.monotonic()
                    if wait_s > 0:
                        sleep(wait_s)
                if isinstance(item, Marker):
                    payload = encode_marker(item.t_s + stats.shift_s, item.label, item.kind)
                    inflight.append(("marker", client.publish(markers_to, payload, qos=1)))
                else:
                    wire.accept(item)
                    batch = _shifted(item, stats.shift_s)
                    inflight.append(("batch", client.publish(data_topic(wearer, device, batch.signal),
                                                             encode_batch(batch), qos=1)))
                while len(inflight) >= window:
                    _settle(stats, inflight.popleft(), ack_timeout_s)
                bar.update(1)
            while inflight:
                _settle(stats, inflight.popleft(), ack_timeout_s)
        _wait(client.publish(avail, b"offline", qos=1, retain=True), ack_timeout_s, "the availability")
    except BaseException:  # Ctrl-C, a broker that went away: a clean disconnect drops the last will
        with contextlib.suppress(Exception):
            _wait(client.publish(avail, b"offline", qos=1, retain=True), 2.0, "the availability")
        raise
    finally:
        client.disconnect()
        client.loop_stop()
    stats.elapsed_s = time.monotonic() - started
    stats.refusals = wire.summary()
    return stats


def _check_markers(markers: list[Marker], wearer: str) -> None:
    """Refuse, before anything is published, a marker the service would refuse (a label longer
    than the wire contract allows): the broker acknowledges it, so the replay would count it as
    replayed while the service drops it."""
    for m in markers:
        try:
            decode_marker(encode_marker(m.t_s, m.label, m.kind), wearer)
        except WireError as exc:
            raise ReplayError(f"the marker at {utc_text(m.t_s)} ({m.kind!r:.40}) breaks the wire contract, so the "
                              f"service would drop it: {exc}; nothing replayed") from None


def _settle(stats: ReplayStats, entry: tuple[str, mqtt.MQTTMessageInfo], timeout_s: float) -> None:
    kind, info = entry
    _wait(info, timeout_s, f"a {kind}")
    if kind == "marker":
        stats.markers += 1
    else:
        stats.batches += 1


def parse_speed(text: str) -> float:
    """``--speed``: a positive multiple of real time, or ``max``."""
    if text.strip().lower() in ("max", "inf"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        import argparse

        raise argparse.ArgumentTypeError(f"speed must be a positive number or 'max', got {text!r}")
    return value


def run_replay(args) -> int:
    """``anxmon replay``."""
    from monitor.markers import add_markers_file
    from monitor.recordings import read_recording

    recording = read_recording(args.path)
    if getattr(args, "markers", None):
        recording.markers = add_markers_file(recording.markers, args.markers, recording.notes)
    from monitor.broker import embedded_broker_hint, resolve_broker_url

    url = resolve_broker_url(args.broker, args.data_dir)
    wearer = args.wearer or wearer_id_for(recording)
    stats = replay(recording, url, wearer, args.device, args.speed, args.rebase_time,
                   unreachable_hint=embedded_broker_hint(args.broker, args.data_dir))
    shift = f", times shifted by {stats.shift_s:+.0f} s" if args.rebase_time else ""
    print(f"replayed {stats.batches} batches and {stats.markers} markers of {recording.source} as "
          f"{wearer}/{args.device} in {stats.elapsed_s:.1f} s{shift}")
    from monitor.analyze import refusals

    for line in refusals(stats.refusals)[1]:
        print(f"  the service refuses: {line}", file=sys.stderr)
    return 0
