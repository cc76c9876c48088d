"""``anxmon simulate``: simulated wearers published to MQTT as devices, plus their ground truth.

Each simulated wearer (``sim_physiology.SimulatedWearer``) is a device like any other: its own
MQTT connection (paho-mqtt 2.x, ``CallbackAPIVersion.VERSION2``) with client id
``anxmon-sim-{wearer}-{device}``, a retained ``online`` on its availability topic at every
(re)connect, a retained ``offline`` last will, and one sample batch per signal per second on
the data topics of ``monitor.wire``, QoS 1. Time is paced by event time: second ``k`` of the
run is published ``(k + 1) / speed`` wall seconds after the start (a device sends a batch when
its span ends), stamped ``start + k`` (plus the scenario's clock faults), so at ``--speed 60``
an hour of data takes a minute and event time runs 60 times faster than the wall clock.

Wearer ``i`` (0-based) is ``sim-{i+1:02d}`` (``--wearer-prefix``: another word than ``sim``),
of the scenario's kind ``wearers[i % len]``, and draws its randomness from
``SeedSequence(seed).spawn(n)[i]``: the same seed gives the same wearers, and wearer ``i`` does
not change when more wearers are added.

The ground truth (``--truth FILE``, written before the first batch and again, with the faults,
when the run ends or is stopped) lists every episode with its wearer, kind and times, and every
fault interval (contact loss, lost batches, PPG motion artifacts that hide beats);
``start_s``/``end_s`` are unix seconds on the wearer's device clock, the time base of the
monitor's ticks and check-ins, so ``score_detections`` compares them directly.

Example
-------
>>> from firmware_bridge.sim_scenario import load_scenario
>>> sc = load_scenario("demo")
>>> ws = make_wearers(sc, 3, seed=7, start_unix=1_700_000_000.0)
>>> [(w.wearer_id, w.kind.name) for w in ws]
[('sim-01', 'calm'), ('sim-02', 'anxious'), ('sim-03', 'exercise')]
>>> truth = ground_truth(sc, ws, seconds=3600, seed=7)
>>> [(e["wearer"], e["kind"], e["start_rel_s"]) for e in truth["episodes"]][:2]
[('sim-02', 'anxiety', 600.0), ('sim-02', 'anxiety', 2700.0)]
>>> score_detections([1_700_000_700.0, 1_700_002_000.0], truth["episodes"][:2])
DetectionScore(hits=1, misses=1, false=1)
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import selectors
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np

from monitor.broker import publisher_broker_options
from monitor.errors import AnxmonError, ConfigError
from monitor.mqtt_client import BrokerAddress, make_client, parse_broker_url, private_client_id
from monitor.recordings import Recording, Stream
from monitor.stopping import StopSignals
from monitor.wire import availability_topic, check_id, data_topic, encode_batch, unix_s_problem

from firmware_bridge.sim_physiology import Latent, SimSecond, SimulatedWearer
from firmware_bridge.sim_scenario import Scenario, load_scenario

log = logging.getLogger(__name__)

DEFAULT_DEVICE = "sim"
DEFAULT_GRACE_S = 180.0  # arousal takes 1-2.5 min to settle after an episode ends
TRUTH_VERSION = 1


class SimulationError(AnxmonError):
    """The simulation cannot run: no broker, the broker unreachable, bad arguments."""


# ------------------------------------------------------------------------------ wearers, truth


def wearer_id(index: int, prefix: str = "sim") -> str:
    """Id of the wearer at ``index`` (0-based): ``sim-01``, ``sim-02``, ... (``prefix``-01, ...)."""
    return check_id("wearer", f"{prefix}-{index + 1:02d}")


def make_wearers(scenario: Scenario, n: int | None = None, seed: int = 0,
                 start_unix: float | None = None, prefix: str = "sim") -> list[SimulatedWearer]:
    """``n`` wearers of ``scenario`` (default: one per entry of its ``wearers`` list), with ids
    ``{prefix}-01``, ...

    ``start_unix`` defaults to the current second of the wall clock.
    """
    n = len(scenario.wearers) if n is None else int(n)
    if n < 1:
        raise SimulationError(f"need at least one wearer, got {n}")
    start = float(math.floor(time.time())) if start_unix is None else float(start_unix)
    seeds = np.random.SeedSequence(seed).spawn(n)
    return [SimulatedWearer(wearer_id(i, prefix), scenario.kind_of(i), np.random.default_rng(seeds[i]), start)
            for i in range(n)]


def ground_truth(scenario: Scenario, wearers: list[SimulatedWearer], seconds: float, seed: int) -> dict:
    """The episodes each wearer lives through in the first ``seconds`` of the run, and the
    faults of the seconds it has generated (so call it after the run: faults are random).

    Episodes starting after ``seconds`` are left out; one still running then ends there
    (``"truncated": true``). Faults are cut there too.
    """
    def interval(w: SimulatedWearer, kind: str, start_rel_s: float, end_rel_s: float) -> dict:
        end = min(end_rel_s, float(seconds))
        return {"wearer": w.wearer_id, "kind": kind,
                "start_s": float(w.device_time(start_rel_s)), "end_s": float(w.device_time(end)),
                "start_rel_s": start_rel_s, "end_rel_s": end}

    episodes = [{**interval(w, e.kind, e.start_s, e.end_s), "intensity": e.intensity, "truncated": e.end_s > seconds}
                for w in wearers for e in w.kind.episodes if e.start_s < seconds]
    faults = [interval(w, f.kind, f.start_rel_s, f.end_rel_s)
              for w in wearers for f in w.fault_intervals if f.start_rel_s < seconds]
    start = wearers[0].start_unix if wearers else None
    return {
        "v": TRUTH_VERSION,
        "scenario": scenario.name,
        "seed": seed,
        "start_unix": start,
        "seconds": float(seconds),
        "time_base": "start_s/end_s: unix s on the wearer's device clock; *_rel_s: s since start_unix",
        "wearers": {w.wearer_id: {"kind": w.kind.name, "signals": list(w.signals),
                                  "clock_offset_s": w.clock_offset_s,
                                  "profile": {k: round(v, 4) for k, v in w.profile.items()}}
                    for w in wearers},
        "episodes": episodes,
        "faults": faults,
    }


def write_truth(path: str | Path, truth: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth, indent=2) + "\n")


class DetectionScore(NamedTuple):
    hits: int  # target episodes with at least one check-in in [start, end + grace]
    misses: int  # target episodes without
    false: int  # check-ins outside every target episode's [start, end + grace]


def score_detections(decisions_t: Iterable[float], episodes: Iterable, grace_s: float = DEFAULT_GRACE_S,
                     target: str = "anxiety") -> DetectionScore:
    """Hits, misses and false check-ins of one wearer against its ground-truth episodes.

    Parameters
    ----------
    decisions_t : iterable of float
        Event times (unix s, the wearer's clock) of the check-ins sent to this wearer.
    episodes : iterable of dict or objects
        This wearer's episodes, each with ``kind``, ``start_s`` and ``end_s`` in the same time
        base (the truth file's entries, or ``sim_scenario.Episode``). Episodes of other kinds
        (``walk``, ``run``) are not targets: a check-in during them is false.
    grace_s : float
        A check-in up to this long after an episode ends still answers it (s).

    Example
    -------
    >>> eps = [{"kind": "anxiety", "start_s": 100.0, "end_s": 400.0},
    ...        {"kind": "run", "start_s": 1000.0, "end_s": 1600.0}]
    >>> score_detections([250.0, 300.0, 1700.0], eps, grace_s=120.0)
    DetectionScore(hits=1, misses=0, false=1)
    """
    def get(e, key):
        return e[key] if isinstance(e, dict) else getattr(e, key)

    windows = [(float(get(e, "start_s")), float(get(e, "end_s")) + grace_s)
               for e in episodes if get(e, "kind") == target]
    times = sorted(float(t) for t in decisions_t)
    hit = [any(a <= t <= b for t in times) for a, b in windows]
    false = sum(1 for t in times if not any(a <= t <= b for a, b in windows))
    return DetectionScore(sum(hit), len(hit) - sum(hit), false)


def recording_of(wearer: SimulatedWearer, seconds: int) -> tuple[Recording, list[Latent]]:
    """The next ``seconds`` of a wearer as a ``Recording`` (for ``monitor.analyze``), plus the
    per-second ground truth.

    A recording holds contiguous streams, so the wearer's kind must not drop batches or jitter
    timestamps (contact loss, motion artifacts and clock offsets are fine).

    Example
    -------
    >>> from firmware_bridge.sim_scenario import load_scenario
    >>> w = make_wearers(load_scenario("demo"), 1, seed=1, start_unix=1_700_000_000.0)[0]
    >>> rec, truth = recording_of(w, 60)
    >>> sorted(rec.streams), len(rec.streams["bvp"].values), len(truth)
    (['acc', 'bvp', 'eda', 'temp'], 3840, 60)
    """
    if wearer.faults["dropouts_per_hour"] > 0 or wearer.faults["jitter_s"] > 0:
        raise SimulationError(f"kind {wearer.kind.name!r} drops batches or jitters timestamps: its data is "
                              "not a contiguous recording; feed the batches to a WearerMonitor instead")
    seconds_out = wearer.take(seconds)
    parts: dict[str, list] = {}
    for sec in seconds_out:
        for b in sec.batches:
            parts.setdefault(b.signal, []).append(b)
    streams = {}
    for signal, batches in parts.items():
        values = np.concatenate([b.values for b in batches])
        if batches[0].regular:
            streams[signal] = Stream(signal, values, t0=batches[0].t0, fs=batches[0].fs)
        else:
            streams[signal] = Stream(signal, values, t=np.concatenate([b.t for b in batches]))
    rec = Recording(f"simulated:{wearer.wearer_id}:{wearer.kind.name}", "simulated", streams)
    return rec, [sec.latent for sec in seconds_out]


# ------------------------------------------------------------------------------ publishing


class WearerLink:
    """One simulated device's MQTT connection: availability with last will, QoS 1 batches.

    The paho client runs without a thread of its own: ``Simulation`` drives every link's
    socket from one thread (``selectors``), so hundreds of wearers do not mean hundreds of
    threads fighting over the GIL. ``published`` counts batches given to ``publish``, ``acked``
    their PUBACKs (availability messages are not counted).

    Batches are handed to paho only while connected, after the CONNACK: paho resends what it
    held at that moment, and a batch handed to it while the link was reconnecting (CONNECT
    sent, no CONNACK yet) went onto the wire before those older ones, so the monitor dropped
    them as duplicates. Until then they wait here, in order.
    """

    def __init__(self, address: BrokerAddress, wearer: str, device: str = DEFAULT_DEVICE,
                 client_id: str | None = None, keepalive_s: int = 30):
        self.address = address
        self.keepalive_s = keepalive_s
        self.wearer = check_id("wearer", wearer)
        self.device = check_id("device", device)
        self.availability_topic = availability_topic(wearer, device)
        self._topics: dict[str, str] = {}
        self._held: collections.deque[tuple[str, bytes]] = collections.deque()  # (topic, payload) not yet handed to paho
        self.published = 0
        self.acked = 0
        self.connected = False
        self.socket = None  # the open socket, kept current by paho's socket callbacks
        self.retry_at = 0.0  # monotonic time of the next connection attempt
        self._backoff_s = 1.0
        self._configured = False
        self.last_error: str | None = None  # why the last connection attempt failed
        self.refused = False  # the broker answered and refused the login (not: nothing answered)
        self._availability_mid: int | None = None
        self.client = make_client(address, client_id or private_client_id(f"anxmon-sim-{wearer}-{device}"))
        self.client.will_set(self.availability_topic, b"offline", qos=1, retain=True)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)  # unbounded: the run's batches wait in memory
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_socket_open = self._on_socket_open
        self.client.on_socket_close = self._on_socket_close

    def try_connect(self, now: float) -> None:
        """Open the connection (or reopen it after a loss), with backoff up to 8 s."""
        self.retry_at = now + self._backoff_s
        self._backoff_s = min(8.0, self._backoff_s * 2)
        if not self._configured:
            self.client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive_s)
            self._configured = True
        try:
            self.client.reconnect()  # a blocking TCP connect, then CONNECT; CONNACK comes later
        except OSError as exc:
            self.last_error = str(exc)
            log.debug("%s: cannot reach %s yet: %s", self.wearer, self.address, exc)

    # paho callbacks (all in the simulation's thread)
    def _on_socket_open(self, client, userdata, sock) -> None:
        self.socket = sock

    def _on_socket_close(self, client, userdata, sock) -> None:
        self.socket = None

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            error = f"the broker refused the connection: {reason_code}"
            if error != self.last_error:  # once, not at every retry
                log.error("%s/%s: %s", self.wearer, self.device, error)
            self.last_error = error
            self.refused = True
            return
        self._backoff_s = 1.0
        self._availability_mid = client.publish(self.availability_topic, b"online", qos=1, retain=True).mid
        self.connected = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected:
            log.warning("%s lost the broker (%s); reconnecting", self.wearer, reason_code)
        self.connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if mid == self._availability_mid:
            self._availability_mid = None
            return
        self.acked += 1

    def publish(self, batch) -> None:
        """Send one ``SampleBatch`` (QoS 1); it waits in order while the link is not connected."""
        topic = self._topics.get(batch.signal)
        if topic is None:
            topic = self._topics[batch.signal] = data_topic(self.wearer, self.device, batch.signal)
        self._held.append((topic, encode_batch(batch)))
        self.published += 1
        self.flush()

    def flush(self) -> None:
        """Hand the waiting batches to paho if connected (never from inside a paho callback:
        paho resends its older messages after ``on_connect`` returns)."""
        while self.connected and self._held:
            topic, payload = self._held.popleft()
            self.client.publish(topic, payload, qos=1)


@dataclass
class SimulationStats:
    seconds: int = 0  # simulated seconds published
    batches: int = 0  # handed to the broker connections
    acked: int = 0  # batches acknowledged by the broker (QoS 1)
    wall_s: float = 0.0
    per_wearer: dict = field(default_factory=dict)  # wearer -> batches

    @property
    def speed(self) -> float:
        """Event seconds per wall second achieved."""
        return self.seconds / self.wall_s if self.wall_s > 0 else math.inf


class Simulation:
    """Publish simulated wearers to a broker, paced by event time x ``speed``.

    Parameters
    ----------
    wearers : list of SimulatedWearer
    broker : str or BrokerAddress
        ``mqtt://user:password@host:port``.
    speed : float
        Event seconds per wall second (``math.inf``: as fast as possible).
    device : str
        Device id in the topics.
    unreachable_hint : str
        Added to the error when nothing answers at the broker's address.

    ``run(seconds, stop=None, on_second=None)`` blocks until done or until ``stop`` (a
    ``threading.Event``) is set; ``on_second(k, [SimSecond per wearer])`` sees each second's
    ground truth as it is published (the demo's live view uses it). One thread does
    everything: generation, publishing, and every connection's network traffic.
    """

    def __init__(self, wearers: list[SimulatedWearer], broker: str | BrokerAddress, speed: float = 1.0,
                 device: str = DEFAULT_DEVICE, connect_timeout_s: float = 10.0, drain_timeout_s: float = 30.0,
                 unreachable_hint: str = ""):
        if not speed > 0:
            raise SimulationError(f"--speed must be > 0 (event seconds per wall second), got {speed}")
        self.wearers = wearers
        self.address = broker if isinstance(broker, BrokerAddress) else parse_broker_url(broker)
        self.speed = float(speed)
        self.device = check_id("device", device)
        self.connect_timeout_s = connect_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.unreachable_hint = unreachable_hint
        self.links: list[WearerLink] = []
        self._selector: selectors.BaseSelector | None = None
        self._registered: dict[WearerLink, object] = {}
        self._misc_at = 0.0

    def run(self, seconds: int, stop: threading.Event | None = None,
            on_second: Callable[[int, list[SimSecond]], None] | None = None) -> SimulationStats:
        stop = stop or threading.Event()
        stats = SimulationStats(per_wearer={w.wearer_id: 0 for w in self.wearers})
        self.links = [WearerLink(self.address, w.wearer_id, self.device) for w in self.wearers]
        self._selector = selectors.DefaultSelector()
        self._registered = {}
        try:
            self._connect_all(stop)
            wall0 = time.monotonic()
            for k in range(int(seconds)):
                due = wall0 + (k + 1) / self.speed
                while not stop.is_set() and (now := time.monotonic()) < due:
                    self._pump(min(due - now, 0.05))
                if stop.is_set():
                    break
                seconds_out = []
                for w, link in zip(self.wearers, self.links):
                    sec = w.step()
                    for batch in sec.batches:
                        link.publish(batch)
                    stats.per_wearer[w.wearer_id] += len(sec.batches)
                    seconds_out.append(sec)
                stats.seconds += 1
                self._pump(0.0)
                if on_second is not None:
                    on_second(k, seconds_out)
            stats.wall_s = time.monotonic() - wall0
            self._drain(time.monotonic() + self.drain_timeout_s)
        finally:
            stats.acked = sum(link.acked for link in self.links)
            stats.batches = sum(link.published for link in self.links)
            self._close_all(time.monotonic() + 5.0)
        return stats

    # -- network ----------------------------------------------------------------------------
    def _pump(self, timeout_s: float) -> None:
        """Read what arrived (up to ``timeout_s``), write what is queued, keep connections alive."""
        self._sync_selector()
        if self._registered:
            for key, _ in self._selector.select(timeout_s):
                key.data.client.loop_read()
        elif timeout_s > 0:
            time.sleep(timeout_s)  # no connection open: nothing to wait for but the next retry
        now = time.monotonic()
        for link in self.links:
            link.flush()  # (after a CONNACK just read: paho has resent what it held)
            if link.socket is not None and link.client.want_write():
                link.client.loop_write()
        if now >= self._misc_at:  # keepalive pings, retries, reconnects: once a second is plenty
            self._misc_at = now + 1.0
            for link in self.links:
                if link.socket is not None:
                    link.client.loop_misc()
                elif now >= link.retry_at:
                    link.try_connect(now)

    def _sync_selector(self) -> None:
        for link in self.links:
            sock = self._registered.get(link)
            if sock is not link.socket:
                if sock is not None:
                    self._selector.unregister(sock)
                    del self._registered[link]
                if link.socket is not None:
                    self._selector.register(link.socket, selectors.EVENT_READ, link)
                    self._registered[link] = link.socket

    def _connect_all(self, stop: threading.Event) -> None:
        now = time.monotonic()
        for link in self.links:
            link.try_connect(now)
        deadline = now + self.connect_timeout_s
        while not all(link.connected for link in self.links) and not stop.is_set():
            if time.monotonic() > deadline:
                down = [link for link in self.links if not link.connected]
                why = next((link.last_error for link in down if link.last_error), None)
                raise SimulationError(f"cannot reach broker {self.address}: {len(down)} of {len(self.links)} "
                                      f"wearer connection(s) not up after {self.connect_timeout_s:g} s"
                                      + (f" ({why})" if why else "")
                                      + ("" if any(link.refused for link in down) else self.unreachable_hint))
            self._pump(0.02)

    def _drain(self, deadline: float) -> None:
        """Wait for the PUBACK of every batch handed to paho (until ``deadline``)."""
        while any(link.acked < link.published for link in self.links) and time.monotonic() < deadline:
            self._pump(0.02)

    def _close_all(self, deadline: float) -> None:
        """Say ``offline`` (retained) on every connection, then disconnect."""
        pending = []
        for link in self.links:
            if link.connected:
                link._availability_mid = None
                pending.append(link.client.publish(link.availability_topic, b"offline", qos=1, retain=True))
        while not all(info.is_published() for info in pending) and time.monotonic() < deadline:
            self._pump(0.02)
        for link in self.links:
            if link.socket is not None:
                link.connected = False  # a wanted disconnect: no warning
                link.client.disconnect()
        self._sync_selector()
        self._selector.close()


# ------------------------------------------------------------------------------ command line


DESCRIPTION = ("Publish simulated wristband wearers to an MQTT broker as devices. Event time runs --speed times "
               "faster than the wall clock, starting now.")


def add_simulate_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``simulate`` on ``subparsers`` (from ``add_subparsers()``); sets ``func``."""
    p = subparsers.add_parser(
        "simulate", help="publish simulated wearers (with anxiety episodes, exercise, faults) to a broker",
        description=DESCRIPTION)
    add_simulate_arguments(p)
    return p


def add_simulate_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``simulate`` (``anxmon simulate`` and ``python -m firmware_bridge.simulator``)."""
    p.add_argument("--wearers", type=int, default=None,
                   help="number of wearers sim-01, sim-02, ... (default: one per kind in the scenario's list)")
    p.add_argument("--scenario", default="demo", help="scenario name in configs/scenarios or a .toml path (default demo)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="event seconds per wall second, e.g. 60 (default 1; 'inf': as fast as possible)")
    publisher_broker_options(p)
    p.add_argument("--seconds", type=float, default=None,
                   help="simulated seconds to publish (default: the scenario's duration_s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same wearers")
    p.add_argument("--truth", type=Path, help="write the ground truth (JSON: episodes; faults when the run ends) "
                                              "to this file")
    p.add_argument("--start", type=float, default=None, help="event time of the first sample, unix s (default: now)")
    p.add_argument("--device-id", default=DEFAULT_DEVICE, help="device id in the topics (default %(default)s)")
    p.add_argument("--wearer-prefix", default="sim", metavar="WORD",
                   help="wearer ids WORD-01, WORD-02, ... (default sim); another word gives a service that "
                        "already took a simulation's later data new wearers")
    p.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace, out=None, err=None) -> int:
    """Run a parsed ``simulate`` command; returns the exit code (a signal's: ``monitor.stopping``).
    A progress bar (simulated seconds, batches acknowledged) goes to ``err`` (default stderr) when
    it is a terminal."""
    with StopSignals() as signals:  # from the start: a signal while it connects stops it cleanly too
        return _run_simulate(args, signals, out, err)


def _run_simulate(args: argparse.Namespace, signals: StopSignals, out, err) -> int:
    from tqdm import tqdm

    from monitor.broker import BrokerError, embedded_broker_hint, resolve_broker_url

    out = out or sys.stdout
    hint = embedded_broker_hint(args.broker, args.data_dir)
    try:
        args.broker = resolve_broker_url(args.broker, args.data_dir)
    except BrokerError as exc:
        raise SimulationError(f"anxmon simulate needs a broker: {exc}; or set ANXMON_BROKER_URL. "
                              "'anxmon demo' runs broker, service and simulated wearers together") from None
    scenario = load_scenario(args.scenario)
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds >= 1):
        raise SimulationError(f"--seconds must be a number >= 1, got {args.seconds}")
    if args.start is not None and (problem := unix_s_problem(args.start)):
        raise SimulationError(f"--start {args.start:.0f} {problem}")
    seconds = int(args.seconds if args.seconds is not None else scenario.duration_s)
    wearers = make_wearers(scenario, args.wearers, seed=args.seed, start_unix=args.start, prefix=args.wearer_prefix)
    sim = Simulation(wearers, args.broker, speed=args.speed, device=args.device_id, unreachable_hint=hint)
    if args.truth:  # the episodes now (a path that cannot be written fails before anything is sent)
        write_truth(args.truth, ground_truth(scenario, wearers, seconds, args.seed))
    start = datetime.fromtimestamp(wearers[0].start_unix, timezone.utc).isoformat(timespec="seconds")
    kinds = ", ".join(f"{w.wearer_id}={w.kind.name}" for w in wearers[:6]) + (" ..." if len(wearers) > 6 else "")
    print(f"anxmon simulate: {len(wearers)} wearer(s) of scenario {scenario.name} ({kinds}) to {sim.address}, "
          f"{seconds} s of event time from {start} "
          + ("as fast as possible" if math.isinf(args.speed) else f"at {args.speed:g}x real time")
          + (f"; truth in {args.truth} (its faults when the run ends)" if args.truth else ""), file=out, flush=True)
    with tqdm(total=seconds, unit="s", desc="simulated", file=err or sys.stderr, disable=None, leave=False) as bar:
        def on_second(k: int, _) -> None:
            bar.set_postfix_str(f"{sum(link.acked for link in sim.links)} batches acknowledged", refresh=False)
            bar.update(1)

        stats = sim.run(seconds, stop=signals.event, on_second=None if bar.disable else on_second)
    if args.truth:  # again with the faults, for the seconds published
        write_truth(args.truth, ground_truth(scenario, wearers, stats.seconds, args.seed))
    print(f"published {stats.seconds} s of {len(wearers)} wearer(s): {stats.batches} batches, "
          f"{stats.acked} acknowledged, in {stats.wall_s:.1f} s ({stats.speed:.0f}x real time)"
          + (" (stopped early)" if signals.event.is_set() else ""), file=out, flush=True)
    return signals.status(0 if stats.acked >= stats.batches else 1)


def main(argv: list[str] | None = None) -> int:
    """``python -m firmware_bridge.simulator --wearers 3 --broker URL ...`` without ``anxmon``."""
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge.simulator", description=DESCRIPTION)
    add_simulate_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (AnxmonError, ConfigError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")  # (its own name: anxmon is not what was typed)


if __name__ == "__main__":
    sys.exit(main())
