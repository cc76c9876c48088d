"""``anxmon bench``: speed as ratios against a baseline measured in the same run.

``core``: one full Empatica-like wearer (BVP 64 Hz, EDA 4 Hz, TEMP 4 Hz, ACC 32 Hz x3, HR,
1 s batches; the real Stress-Predict S02 recording when ``../shared/data`` is present) streamed
through the per-wearer monitor, against the naive approach of re-running neurokit2
(``ppg_process`` + ``eda_process`` + ``hrv_time``) on the last 60 s every second.
Reported: wearer-seconds processed per CPU-second for both (medians of repeated runs), their
ratio, and the pickled state of one wearer in bytes.

``analyze``: ``anxmon analyze``'s core loop on a one-hour session, as a multiple of real time.
CPU time (``time.process_time``) is used so a busy shared machine distorts less; still, quote
ratios and medians, not single absolute times.

``live``: simulated full wristbands (4 batches a second each, QoS 1) in real time through the
embedded nats-server and an ``anxmon run`` process, ramped (50, 100, 200, 300, 400, 600, ...)
until the p99 latency from a batch handed to MQTT to the indicators of the tick it released
exceeds 250 ms; reported beside the core-only rate of the same run. ``live --profile`` shows
where the service's CPU goes. Method and figures: ``docs/performance.md``.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import statistics
import sys
import threading
import time
import warnings

import numpy as np

from monitor.core.pipeline import tick_phase
from monitor.core.wearer import WearerMonitor
from monitor.recordings import Recording, Stream, read_recording
from monitor.stopping import SigtermInterrupts

NAIVE_WINDOW_S = 60.0


def bench_recording() -> Recording:
    """S02 when the shared data is there; otherwise a simulated wristband from neurokit2."""
    from monitor.cli import shared_data_dir

    data = shared_data_dir()
    if data is not None and (data / "stress-predict" / "S02").exists():
        return read_recording(data / "stress-predict" / "S02")
    import neurokit2 as nk

    duration = 900
    t0 = 1_700_000_000.0
    rng = np.random.default_rng(1)
    acc = np.column_stack([rng.normal(0, 0.01, duration * 32), rng.normal(0, 0.01, duration * 32),
                           1 + rng.normal(0, 0.01, duration * 32)])
    streams = {
        "bvp": Stream("bvp", nk.ppg_simulate(duration=duration, sampling_rate=64, heart_rate=70, random_state=1), t0=t0, fs=64.0),
        "eda": Stream("eda", nk.eda_simulate(duration=duration, sampling_rate=4, scr_number=20, random_state=1) + 2, t0=t0, fs=4.0),
        "temp": Stream("temp", 33 + rng.normal(0, 0.01, duration * 4), t0=t0, fs=4.0),
        "acc": Stream("acc", acc, t0=t0, fs=32.0),
    }
    return Recording("simulated", "simulated", streams)


def streaming_rate(rec: Recording, seconds: float) -> tuple[float, int]:
    """Wearer-seconds per CPU-second of the per-wearer monitor, and the final state in bytes."""
    batches = [b for b in rec.batches() if b.start_s < rec.start_s + seconds]
    monitor = WearerMonitor("bench")
    start = time.process_time()
    for b in batches:
        monitor.update(b)
    cpu = time.process_time() - start
    state_bytes = len(pickle.dumps(monitor.get_state(), protocol=pickle.HIGHEST_PROTOCOL))
    return seconds / cpu, state_bytes


def naive_rate(rec: Recording, iterations: int) -> float:
    """Wearer-seconds per CPU-second when every second re-runs neurokit2 on the last 60 s."""
    import neurokit2 as nk

    bvp, eda = rec.streams["bvp"], rec.streams["eda"]
    n_bvp, n_eda = int(NAIVE_WINDOW_S * bvp.fs), int(NAIVE_WINDOW_S * eda.fs)
    offset_s = 600  # a stretch with signal everywhere
    start = time.process_time()
    for k in range(iterations):
        i_bvp = int((offset_s + k) * bvp.fs)
        i_eda = int((offset_s + k) * eda.fs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signals, info = nk.ppg_process(bvp.values[i_bvp:i_bvp + n_bvp], sampling_rate=int(bvp.fs))
            nk.eda_process(eda.values[i_eda:i_eda + n_eda], sampling_rate=int(eda.fs))
            nk.hrv_time(info["PPG_Peaks"], sampling_rate=int(bvp.fs))
    return iterations / (time.process_time() - start)


def bench_core() -> dict:
    rec = bench_recording()
    stream_s = min(rec.duration_s - 1, 1800.0)
    runs = 3
    streaming, naive = [], []
    state_bytes = 0
    for _ in range(runs):  # interleaved, so both see the same machine load
        rate, state_bytes = streaming_rate(rec, stream_s)
        streaming.append(rate)
        naive.append(naive_rate(rec, iterations=10))
    s, n = statistics.median(streaming), statistics.median(naive)
    return {
        "bench": "core",
        "data": rec.source if rec.format != "simulated" else "simulated",
        "streamed_s": stream_s,
        "runs": runs,
        "streaming_wearer_s_per_cpu_s": round(s, 1),
        "naive_wearer_s_per_cpu_s": round(n, 2),
        "ratio": round(s / n, 1),
        "state_bytes_per_wearer": state_bytes,
        "wearers_per_core_realtime": int(s),
    }


def bench_analyze() -> dict:
    from monitor.analyze import analyze_recording

    rec = bench_recording()
    speeds = []
    for _ in range(3):
        start = time.process_time()
        analyze_recording(rec, progress=False)
        speeds.append(rec.duration_s / (time.process_time() - start))
    return {"bench": "analyze", "data": rec.source, "duration_s": rec.duration_s,
            "speed_x_realtime_median": round(statistics.median(speeds), 1), "runs": len(speeds)}


def run_bench(what: str, as_json: bool = False, out=sys.stdout, max_wearers: int | None = None,
              seconds: float | None = None, profile: bool = False, aligned_ticks: bool = False) -> int:
    if what == "live" and profile:
        result = profile_live(max_wearers or 200, int(seconds or 20))
    elif what == "live":
        result = bench_live(max_wearers or 3200, int(seconds or 20), aligned_ticks=aligned_ticks)
        if not as_json:
            _print_live(result, out)
            return 0
    else:
        result = bench_core() if what == "core" else bench_analyze()
    if as_json:
        print(json.dumps(result), file=out)
        return 0
    for key, value in result.items():
        print(f"{key:32s} {value}", file=out)
    return 0


# --------------------------------------------------------------------------------------------
# `anxmon bench live`: simulated wristbands through a real broker and the service, in real time

LIVE_RAMP = (50, 100, 200, 300, 400, 600, 800, 1000, 1200, 1600, 2400, 3200)  # about x1.3-1.5 a step
LIVE_P99_LIMIT_S = 0.250  # the goal: p99 batch-to-indicator latency
LIVE_MAX_LATE_FRACTION = 0.01  # a step falls behind when more indicators than this are late (> 2 s) or missing
LIVE_GEN_LAG_LIMIT_S = 0.100  # the generator kept up when its p99 publishing delay stays below this
LIVE_PROFILES = 6  # distinct simulated wearers; wearer i sends the data of profile i % 6
LIVE_BACKFILL_S = 40  # the first step's wearers start with 40 s of history sent at once (warm pipelines)
LIVE_SETTLE_S = (10, 5)  # seconds before measuring: the first step, later steps (multiples of 5)
LIVE_LATE_S = 2.0  # an indicator not received this long after its batch counts as late
WEARERS_PER_CONNECTION = 200


def _tick_step_s() -> float:
    from monitor.config import Config

    return float(Config().core.tick_s)


class LiveData:
    """Pre-generated payloads of ``LIVE_PROFILES`` simulated wristbands, and where their ticks come out.

    ``seconds[p][k]`` lists ``(signal, seq, t0 offset s, tail bytes)`` of profile ``p``'s second
    ``k``; a payload is ``{"v":1,"seq":S,"t0":T`` + tail. ``release[p][phase]`` maps a tick (s
    after the wearer's first sample) of a wearer with that tick phase (``tick_phase``) to the
    second ``k`` whose batches make the monitor release it: the core is deterministic and
    chunk-invariant, so the service releases the same tick on the same batch. Measured on the
    way: the core's and the decoder's cost per wearer-second.
    """

    def __init__(self, n_seconds: int, seed: int = 11):
        from firmware_bridge.sim_scenario import load_scenario
        from firmware_bridge.simulator import make_wearers
        from monitor.wire import decode_batch, encode_batch

        step = _tick_step_s()
        self.start_unix = 1_700_000_000.0  # a multiple of the tick step: ticks shift with the start
        wearers = make_wearers(load_scenario("demo"), LIVE_PROFILES, seed=seed, start_unix=self.start_unix)
        self.seconds: list[list[list[tuple]]] = []
        self.release: list[list[dict[float, int]]] = []
        phases = range(max(1, math.floor(step)))  # every tick phase a wearer can have
        core_cpu = decode_cpu = 0.0
        for w in wearers:
            monitors = [WearerMonitor(w.wearer_id, tick_phase_s=float(phase)) for phase in phases]
            secs, release = [], [{} for _ in phases]
            for k in range(n_seconds):
                sec = w.step()
                out = []
                for b in sec.batches:
                    payload = encode_batch(b)
                    c = time.process_time()
                    decode_batch(payload, b.signal)
                    decode_cpu += time.process_time() - c
                    body = json.loads(payload)
                    tail = b',"fs":%r,"values":%s}' % (body["fs"], json.dumps(body["values"], separators=(",", ":")).encode())
                    out.append((b.signal, b.seq, b.t0 - self.start_unix, tail))
                    for phase, monitor in zip(phases, monitors):
                        c = time.process_time()
                        ticks = monitor.update(b)
                        core_cpu += time.process_time() - c
                        for tick in ticks:
                            release[phase][round(tick.t - self.start_unix, 3)] = k
                secs.append(out)
            self.seconds.append(secs)
            self.release.append(release)
        assert self.start_unix % step == 0
        n = LIVE_PROFILES * n_seconds * len(phases)
        self.core_wearer_s_per_cpu_s = n / core_cpu
        self.decode_us_per_wearer_s = decode_cpu / (LIVE_PROFILES * n_seconds) * 1e6


def _mqtt_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def _mqtt_packet(first_byte: int, body: bytes) -> bytes:
    """An MQTT control packet: fixed header (with the variable-length remaining length) + body."""
    n, length = len(body), bytearray()
    while True:
        n, digit = divmod(n, 128)
        length.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([first_byte]) + bytes(length) + body


class _GenLink:
    """One MQTT 3.1.1 connection that publishes QoS 1 batches for many simulated wearers.

    The load generator shares the machine with the service it measures, so it writes
    pre-built PUBLISH packets straight to its socket (a few µs each) instead of going
    through paho (~80 µs a publish here, CPU the service would lose). The broker's PUBACKs
    (and ping responses) are read and dropped, so its socket never fills.
    """

    def __init__(self, broker, index: int, keepalive_s: int = 60):
        import socket

        self.sock = socket.create_connection((broker.host, broker.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = (_mqtt_string("MQTT") + bytes([4, 0xC2]) + keepalive_s.to_bytes(2, "big")  # user, password, clean
                + _mqtt_string(f"anxmon-bench-gen-{index}") + _mqtt_string(broker.username)
                + _mqtt_string(broker.password))
        self.sock.sendall(_mqtt_packet(0x10, body))
        connack = self.sock.recv(4)
        if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"bench publisher {index}: the broker refused the connection ({connack!r})")
        self.sock.setblocking(False)
        self.keepalive_s = keepalive_s
        self.pinged_at = time.monotonic()
        self.out = bytearray()
        self.mid = 0

    def publish(self, topic: bytes, payload: bytes) -> None:
        self.mid = self.mid % 65535 + 1
        self.out += _mqtt_packet(0x32, topic + self.mid.to_bytes(2, "big") + payload)  # QoS 1

    def flush(self) -> None:
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return  # the rest goes on the next flush
            del self.out[:sent]

    def read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            if not data:
                raise RuntimeError("the broker closed a bench publisher's connection")

    def ping(self) -> None:
        """A PINGREQ when half the keepalive has passed (the broker drops a silent client)."""
        now = time.monotonic()
        if now - self.pinged_at >= self.keepalive_s / 2:
            self.pinged_at = now
            self.out += b"\xc0\x00"

    def close(self) -> None:
        self.out += b"\xe0\x00"  # DISCONNECT
        self.sock.setblocking(True)
        try:
            self.flush()
        finally:
            self.sock.close()


class _LiveRun:
    """The ramp: wearers publish in real time; each step is measured, then the next one starts."""

    def __init__(self, broker, service_pid: int, data: LiveData, steps: list[int], seconds: int, out,
                 aligned_ticks: bool = False):
        import selectors

        self.broker, self.service_pid, self.data, self.out = broker, service_pid, data, out
        self.step_s = _tick_step_s()
        self.steps = steps
        self.measure_s = seconds
        n_max = max(steps)
        self.n_seconds = len(data.seconds[0])
        # wall time of each wearer's second k (absolute index) once its batches were queued for its socket
        self.published = np.full((n_max, self.n_seconds), np.nan)
        self.lag = np.full((n_max, self.n_seconds), np.nan)
        golden = (math.sqrt(5) - 1) / 2
        self.phase = np.array([(i * golden) % 1.0 * 0.9 for i in range(n_max)])  # devices send unsynchronised
        self.start_k = np.zeros(n_max, dtype=int)  # the absolute second of each wearer's first sample
        self.ids = [f"bench-{i:05d}" for i in range(n_max)]
        # the tick phase the service gives each wearer (0 for all with --aligned-ticks)
        self.tick_phase = [0 if aligned_ticks else int(tick_phase(w, self.step_s)) for w in self.ids]
        self.index = {w: i for i, w in enumerate(self.ids)}
        self.received: list[tuple[float, int, float]] = []  # (wall time, wearer index, tick t)
        self.links = [_GenLink(broker, j) for j in range(math.ceil(n_max / WEARERS_PER_CONNECTION))]
        self.selector = selectors.DefaultSelector()
        for link in self.links:
            self.selector.register(link.sock, selectors.EVENT_READ, link)
        self.topics = [{s: _mqtt_string(f"anxmon/v1/{w}/wb/{s}") for s in ("acc", "bvp", "eda", "temp")}
                       for w in self.ids]

    # -- network -------------------------------------------------------------------------
    def _pump(self, timeout_s: float) -> None:
        """Send what is queued, then wait up to ``timeout_s`` for acknowledgements and read them."""
        for link in self.links:
            link.flush()
        for key, _ in self.selector.select(max(0.0, timeout_s)):
            key.data.read()
        for link in self.links:
            link.flush()  # what a full socket buffer held back

    def _misc(self) -> None:
        for link in self.links:
            link.ping()

    def _publish(self, i: int, k_abs: int) -> None:
        k = k_abs - self.start_k[i]
        p = i % LIVE_PROFILES
        base = float(self.t0 + int(self.start_k[i]))
        link = self.links[i // WEARERS_PER_CONNECTION]
        topics = self.topics[i]
        for signal, seq, t0_off, tail in self.data.seconds[p][k]:
            link.publish(topics[signal], b'{"v":1,"seq":%d,"t0":%r' % (seq, base + t0_off) + tail)

    # -- the indicators subscriber (paho's thread) ----------------------------------------
    def _on_indicators(self, client, userdata, msg) -> None:
        now = time.time()
        wearer = msg.topic.split("/")[2]
        payload = msg.payload
        at = payload.find(b'"t":')
        end = payload.find(b",", at)
        i = self.index.get(wearer)
        if i is not None and at >= 0:
            self.received.append((now, i, float(payload[at + 4:end])))

    # -- the run -------------------------------------------------------------------------
    def run(self) -> list[dict]:
        from monitor.mqtt_client import make_client, parse_broker_url

        sub = make_client(parse_broker_url(self.broker.url), "anxmon-bench-indicators")
        subscribed = threading.Event()
        sub.on_connect = lambda c, u, f, rc, p: c.subscribe("anxmon/v1/+/indicators", qos=0)
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.on_message = self._on_indicators
        sub.connect(self.broker.host, self.broker.port, keepalive=60)
        sub.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the bench's indicators subscriber could not subscribe")
        try:
            return self._ramp()
        finally:
            sub.disconnect()
            sub.loop_stop()
            for link in self.links:
                link.close()

    def _ramp(self) -> list[dict]:
        step_s = int(self.step_s)
        backfill = LIVE_BACKFILL_S - LIVE_BACKFILL_S % step_s
        # event time runs with the wall clock; the first wearers' data starts `backfill` s ago
        now = time.time()
        self.t0 = (math.floor(now / step_s)) * step_s - backfill
        k_now = int(now - self.t0)  # seconds [0, k_now) are history, sent at once
        results = []
        active = 0
        k = 0
        cpu = _CpuMeter(self.service_pid, self.broker.process.pid)
        for j, n in enumerate(self.steps):
            settle = LIVE_SETTLE_S[0] if j == 0 else LIVE_SETTLE_S[1]
            begin = max(k, k_now) if j == 0 else k
            begin = int(math.ceil(begin / step_s) * step_s)
            first_new = active
            self.start_k[first_new:n] = 0 if j == 0 else begin
            active = n
            order = sorted(range(active), key=lambda i: self.phase[i])
            measure_from = begin + settle
            end = measure_from + self.measure_s
            if end + 3 > self.n_seconds:
                break
            for kk in range(k, end):
                if kk == measure_from:
                    cpu.mark()
                self._second(kk, order, history=kk < k_now)
            k = end
            usage = cpu.read()
            # let the window's last indicators arrive; the wearers keep sending in real time meanwhile
            wait_until = self.t0 + end + LIVE_LATE_S + 1.0
            while time.time() < wait_until:
                self._second(k, order, history=False)
                k += 1
            result = self._evaluate(n, measure_from, end, usage)
            results.append(result)
            print(_live_line(result), file=self.out, flush=True)
            if not result["ok"]:
                break
        return results

    def _second(self, k: int, order: list[int], history: bool) -> None:
        """Publish every active wearer's second ``k`` at its due time (history: right away)."""
        base = self.t0 + k + 1
        misc_at = time.monotonic() + 1.0
        n = len(order)
        idx = 0
        while idx < n:
            now = time.time()
            while idx < n and (history or base + self.phase[order[idx]] <= now):
                i = order[idx]
                if k >= self.start_k[i]:
                    self._publish(i, k)
                    t = time.time()
                    self.published[i, k] = t
                    self.lag[i, k] = 0.0 if history else t - (base + self.phase[i])
                idx += 1
                if history and idx % 50 == 0:
                    self._pump(0.0)
            if idx < n:
                self._pump(min(0.005, base + self.phase[order[idx]] - time.time()))
            else:
                self._pump(0.0)
            if time.monotonic() >= misc_at:
                misc_at += 1.0
                self._misc()

    def _evaluate(self, n: int, k_from: int, k_to: int, usage: dict) -> dict:
        """Latency of the ticks released by batches of seconds [k_from, k_to) of the first n wearers."""
        got = {}
        for wall, i, t in list(self.received):
            if i < n:
                got.setdefault((i, round(t, 3)), wall)
        latencies, late = [], 0
        now = time.time()
        for i in range(n):
            p = i % LIVE_PROFILES
            base_t = self.t0 + self.start_k[i]
            for tick_rel, k_rel in self.data.release[p][self.tick_phase[i]].items():
                k = int(self.start_k[i] + k_rel)
                if not k_from <= k < k_to:
                    continue
                sent = self.published[i, k]
                if not math.isfinite(sent):
                    continue
                wall = got.get((i, round(base_t + tick_rel, 3)))
                if wall is None:
                    late += 1 if now - sent > LIVE_LATE_S else 0
                    continue
                latencies.append(wall - sent)
        lat = np.array(latencies)
        expected = len(latencies) + late
        lag = self.lag[:n, k_from:k_to]
        lag = lag[np.isfinite(lag)]
        over = np.concatenate([lat, np.full(late, np.inf)]) if expected else np.array([np.inf])
        p99 = float(np.percentile(over, 99, method="higher"))  # late ones count as infinitely late
        gen_lag_p99 = float(np.percentile(lag, 99, method="higher")) if lag.size else math.inf
        late_fraction = late / expected if expected else 1.0
        ok = p99 <= LIVE_P99_LIMIT_S and late_fraction <= LIVE_MAX_LATE_FRACTION and gen_lag_p99 <= LIVE_GEN_LAG_LIMIT_S
        why = None
        if gen_lag_p99 > LIVE_GEN_LAG_LIMIT_S:
            why = "the load generator could not keep up (it shares the CPUs with the service and the broker)"
        elif late_fraction > LIVE_MAX_LATE_FRACTION:
            why = "the service fell behind (indicators late or missing)"
        elif p99 > LIVE_P99_LIMIT_S:
            why = "p99 latency above 250 ms"
        seconds = k_to - k_from
        return {
            "wearers": n,
            "seconds": seconds,
            "batches_per_s": 4 * n,
            "indicators": int(len(latencies)),
            "late_or_missing": int(late),
            "latency_ms": {
                "p50": _ms(np.percentile(lat, 50)) if lat.size else None,
                "p99": _ms(p99),
                "max": _ms(lat.max()) if lat.size else None,
            },
            "generator_lag_p99_ms": _ms(gen_lag_p99),
            "cpu_cores": usage,  # CPU seconds per wall second, by process
            "service_cpu_us_per_wearer_s": round(usage["service"] / n * 1e6, 1),
            "service_rss_mb": _rss_mb(self.service_pid),
            "ok": bool(ok),
            "why_not": why,
        }


def _ms(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x) * 1000.0, 1)


def _live_line(r: dict) -> str:
    lat = r["latency_ms"]
    cpu = r["cpu_cores"]
    p99 = f"> {LIVE_LATE_S * 1000:.0f}" if lat["p99"] is None else f"{lat['p99']:.0f}"
    p50 = "-" if lat["p50"] is None else f"{lat['p50']:.0f}"
    return (f"  {r['wearers']:5d} wearers: p50 {p50} ms, p99 {p99} ms over {r['indicators']} "
            f"indicators ({r['late_or_missing']} late); CPU service {cpu['service']:.2f}, broker "
            f"{cpu['broker']:.2f}, generator {cpu['generator']:.2f} core(s)"
            + ("" if r["ok"] else f"  -> {r['why_not']}"))


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class _CpuMeter:
    """CPU use of the service, the broker and this process (the generator) between two marks."""

    def __init__(self, service_pid: int, broker_pid: int):
        self.pids = {"service": service_pid, "broker": broker_pid}
        self.mark()

    def _now(self) -> dict:
        values = {name: _proc_cpu_s(pid) for name, pid in self.pids.items()}
        values["generator"] = time.process_time()
        values["wall"] = time.monotonic()
        return values

    def mark(self) -> None:
        self.start = self._now()

    def read(self) -> dict:
        now = self._now()
        wall = now["wall"] - self.start["wall"]
        return {name: round((now[name] - self.start[name]) / wall, 3) for name in ("service", "broker", "generator")}


def _machine_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over ``seconds`` (every process on the machine), from /proc/stat."""
    def read():
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]

    total0, idle0 = read()
    time.sleep(seconds)
    total1, idle1 = read()
    return round(1.0 - (idle1 - idle0) / max(1, total1 - total0), 3)


def _total_seconds(n_steps: int, seconds: int) -> int:
    """Seconds of data a ramp of ``n_steps`` steps needs (with margins)."""
    per_step = [LIVE_SETTLE_S[0 if j == 0 else 1] + seconds + int(LIVE_LATE_S) + 10 for j in range(n_steps)]
    return LIVE_BACKFILL_S + sum(per_step) + 20


def bench_live(max_wearers: int = 3200, seconds: int = 20, out=sys.stderr, aligned_ticks: bool = False) -> dict:
    """Ramp simulated wristband wearers through nats-server and ``anxmon run`` (see docs/performance.md).

    Steps of ``LIVE_RAMP`` up to ``max_wearers``; each is measured for ``seconds`` and the ramp
    stops at the first step that does not hold (p99 > 250 ms, late indicators, or a generator
    that could not keep up). The service is a separate process (``python -m monitor.cli run``
    with ``--indicator-interval-s 0``), the broker another; this process generates the load and
    subscribes to the indicators. ``aligned_ticks``: run the service with ``--aligned-ticks``
    (every wearer's per-tick work in the same second), to see what the spread phases buy.
    """
    step_s = int(_tick_step_s())
    seconds = max(step_s, int(math.ceil(seconds / step_s) * step_s))
    steps = [n for n in LIVE_RAMP if n < max_wearers] + [max_wearers]
    busy_before = _machine_busy(1.0)
    total_s = _total_seconds(len(steps), seconds)
    print(f"bench live: generating {LIVE_PROFILES} simulated wristbands x {total_s} s and measuring the core ...",
          file=out, flush=True)
    data = LiveData(total_s)
    rec = bench_recording()
    s02_rate, _ = streaming_rate(rec, min(rec.duration_s - 1, 600.0))
    with _LiveSystem() as system, SigtermInterrupts():
        system.start_service_process(["--aligned-ticks"] if aligned_ticks else [])
        print(f"bench live: nats-server on port {system.broker.port}, service pid {system.service.pid}; ramp up to "
              f"{steps[-1]} wearers ({', '.join(map(str, steps))}), {seconds} s measured per step", file=out, flush=True)
        results = _LiveRun(system.broker, system.service.pid, data, steps, seconds, out, aligned_ticks).run()
    held = [r["wearers"] for r in results if r["ok"]]
    core = data.core_wearer_s_per_cpu_s
    last_ok = next((r for r in reversed(results) if r["ok"] and r["wearers"] >= 100), None)
    service_us = last_ok["service_cpu_us_per_wearer_s"] if last_ok else None
    core_us = 1e6 / core
    return {
        "bench": "live",
        "broker": "nats-server (embedded), QoS 1 both ways",
        "ticks": "aligned (every wearer at whole multiples of tick_s)" if aligned_ticks else "spread (a tick phase per wearer)",
        "cpus": os.cpu_count(),
        "machine_busy_before": busy_before,
        "steps": results,
        "max_wearers_realtime": max(held) if held else 0,
        "p99_limit_ms": LIVE_P99_LIMIT_S * 1000,
        "core_wearer_s_per_cpu_s": round(core, 1),
        "core_wearers_per_core": int(core),
        "core_s02_wearer_s_per_cpu_s": round(s02_rate, 1),
        "data_core": rec.source if rec.format != "simulated" else "simulated",
        "profile_us_per_wearer_s": {
            "at_wearers": None if last_ok is None else last_ok["wearers"],
            "service_measured": service_us,
            "core": round(core_us, 1),
            "json_decode": round(data.decode_us_per_wearer_s, 1),
            "rest": None if service_us is None else round(service_us - core_us - data.decode_us_per_wearer_s, 1),
        },
        "method": "latency = wall time the bench's subscriber receives a tick's indicators - wall time the "
                  "batch that releases that tick (known from running the same data through WearerMonitor "
                  "offline) was queued for the generator's socket; generator, broker, service and subscriber share this machine",
    }


class _LiveSystem:
    """A fresh nats-server and (``start_service_process``) an ``anxmon run`` process in a temp dir."""

    def __enter__(self) -> "_LiveSystem":
        import tempfile
        from pathlib import Path

        from monitor.broker import start_broker

        self.work = Path(tempfile.mkdtemp(prefix="anxmon-bench-live-"))
        self.service = None
        try:
            self.broker = start_broker("nats", data_dir=self.work / "broker")
        except BaseException:
            self._remove()
            raise
        return self

    def start_service_process(self, extra_args: list[str] = ()) -> None:
        import subprocess

        from monitor.broker import MONITOR_BROKER_URL_VARIABLE

        with open(self.work / "service.log", "wb") as log_file:
            self.service = subprocess.Popen(
                [sys.executable, "-m", "monitor.cli", "run",  # (the password in the environment, not in ps)
                 "--data-dir", str(self.work / "service"), "--indicator-interval-s", "0", *extra_args],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, MONITOR_BROKER_URL_VARIABLE: self.broker.url})
        try:
            _wait_service_online(self.broker, self.service)
        except RuntimeError as exc:  # its log goes with the temporary directory: say what it said
            from monitor.errors import AnxmonError

            said = (self.work / "service.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise AnxmonError(f"bench live: {exc}; its output ends:\n" + "\n".join(said)) from None

    def __exit__(self, *exc) -> None:
        import subprocess

        try:
            if self.service is not None and self.service.poll() is None:
                self.service.terminate()
                try:
                    self.service.wait(60)
                except subprocess.TimeoutExpired:
                    self.service.kill()
                    self.service.wait()
        finally:
            self.broker.stop()
            self._remove()

    def _remove(self) -> None:
        import shutil

        shutil.rmtree(self.work, ignore_errors=True)


def _generator_process(broker, service_pid: int, data: "LiveData", steps: list[int], seconds: int, conn) -> None:
    """A forked process that waits for "go" on ``conn``, runs the ramp and sends back its results."""
    import io

    try:
        conn.recv()
        conn.send(("ok", _LiveRun(broker, service_pid, data, steps, seconds, io.StringIO()).run()))
    except BaseException as exc:  # handed to the parent, which raises it
        conn.send(("error", repr(exc)))
    finally:
        conn.close()


def profile_live(wearers: int = 200, seconds: int = 20, out=sys.stderr) -> dict:
    """Where the service's CPU goes at ``wearers`` live wearers.

    The service runs in *this* process (so its worker thread can be profiled with cProfile and
    its thread timed with ``time.thread_time``); the load generator runs in a forked
    process. cProfile slows the Python parts of the worker, so shares are indicative.
    """
    import cProfile
    import multiprocessing
    import pstats
    import tempfile

    from monitor.service import MonitorService, ServiceOptions

    step_s = int(_tick_step_s())
    seconds = max(step_s, int(math.ceil(seconds / step_s) * step_s))
    data = LiveData(_total_seconds(1, seconds))
    with _LiveSystem() as system, SigtermInterrupts(), tempfile.TemporaryDirectory(prefix="anxmon-bench-profile-") as svc_dir:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        gen = ctx.Process(target=_generator_process, args=(system.broker, os.getpid(), data, [wearers], seconds, child),
                          daemon=True)
        gen.start()  # before any thread of ours exists
        svc = MonitorService(system.broker.url, svc_dir, options=ServiceOptions(indicator_interval_s=0.0)).start()
        try:
            if not svc.wait_connected(15):
                raise RuntimeError("the in-process service could not connect")
            parent.send("go")
            history = wearers * (LIVE_BACKFILL_S + step_s) * 4
            deadline = time.monotonic() + 120
            while svc.stats.batches < history and time.monotonic() < deadline and gen.is_alive():
                time.sleep(0.2)  # the history burst: not what is profiled
            profile = cProfile.Profile(time.thread_time)  # CPU time of the worker thread, not waits
            worker0 = svc.call(lambda s: (profile.enable(), time.thread_time())[1])
            batches0, wall0 = svc.stats.batches, time.monotonic()
            status, results = parent.recv()
            worker1 = svc.call(lambda s: (profile.disable(), time.thread_time())[1])
            batches1, wall1 = svc.stats.batches, time.monotonic()
        finally:
            svc.stop()
            gen.join(10)
    if status != "ok":
        raise RuntimeError(f"the load generator failed: {results}")
    wearer_s = (batches1 - batches0) / 4
    stats = pstats.Stats(profile)
    by_name = {}
    for (filename, _, name), (_, _, _, cumtime, _) in stats.stats.items():
        by_name[(_basename(filename), name)] = by_name.get((_basename(filename), name), 0.0) + cumtime
    total = stats.total_tt

    def cum(*keys):
        return sum(by_name.get(k, 0.0) for k in keys)

    parts = {
        "core (WearerMonitor.update)": cum(("wearer.py", "update")),
        "JSON decode (wire.decode_batch)": cum(("wire.py", "decode_batch")),
        "recorder (SQLite rows and commits)": cum(("recorder.py", "batch"), ("recorder.py", "tick"), ("recorder.py", "commit")),
        "acknowledgements (paho ack)": cum(("client.py", "ack")),
        "indicators out (encode + publish)": cum(("wire.py", "encode_indicators"), ("service.py", "_send_indicators")),
        "checkpoints (pickle + SQLite)": cum(("service.py", "_checkpoint")),
    }
    parts["other (tracking, time base, bookkeeping)"] = max(0.0, total - sum(parts.values()))
    worker_cpu = worker1 - worker0
    return {
        "bench": "live-profile",
        "wearers": wearers,
        "wall_s": round(wall1 - wall0, 1),
        "wearer_s": wearer_s,
        "worker_thread_us_per_wearer_s": round(worker_cpu / wearer_s * 1e6, 1) if wearer_s else None,
        "worker_share_pct_under_cprofile": {k: round(100 * v / total, 1) for k, v in parts.items()} if total else {},
        "cpu_cores": results[0]["cpu_cores"] if results else None,  # service = this process, slowed by cProfile
    }


def _basename(filename: str) -> str:
    return filename.rsplit("/", 1)[-1]


def _wait_service_online(broker, service, timeout_s: float = 30.0) -> None:
    from monitor.mqtt_client import make_client, parse_broker_url
    from monitor.wire import decode_monitor_state, monitor_state_topic

    online = threading.Event()

    def on_message(client, userdata, msg):
        if decode_monitor_state(msg.payload).get("state") == "online":
            online.set()

    c = make_client(parse_broker_url(broker.url), "anxmon-bench-wait")
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(monitor_state_topic("main"), qos=1)
    c.on_message = on_message
    c.connect(broker.host, broker.port, keepalive=30)
    c.loop_start()
    try:
        deadline = time.monotonic() + timeout_s
        while not online.wait(0.1):
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not come online (exit status {service.poll()})")
    finally:
        c.disconnect()
        c.loop_stop()


def _print_live(result: dict, out) -> None:
    print(f"largest N held in real time with p99 <= {result['p99_limit_ms']:.0f} ms: "
          f"{result['max_wearers_realtime']} wearers (one service process, {result['cpus']} CPUs shared "
          f"with the broker and the load generator; ticks {result['ticks']})", file=out)
    print(f"core only, same run: {result['core_wearer_s_per_cpu_s']:.0f} wearer-seconds per CPU-second on the "
          f"simulated wristbands = {result['core_wearers_per_core']} wearers per core "
          f"({result['core_s02_wearer_s_per_cpu_s']:.0f} on {result['data_core']}, as 'bench core' measures)", file=out)
    prof = result["profile_us_per_wearer_s"]
    if prof["service_measured"] is not None:
        print(f"service CPU per wearer-second at {prof['at_wearers']} wearers: {prof['service_measured']:.0f} us = "
              f"core {prof['core']:.0f} + JSON decode {prof['json_decode']:.0f} + the rest (MQTT, paho, queue, "
              f"acknowledgements, recorder, checkpoints) {prof['rest']:.0f}", file=out)
    print("steps of the ramp (as shown while they ran):", file=out)  # (the ramp printed them to stderr)
    for r in result["steps"]:
        print(_live_line(r), file=out)
