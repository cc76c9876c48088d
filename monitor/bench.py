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
"""

from __future__ import annotations

import json
import pickle
import statistics
import sys
import time
import warnings

import numpy as np

from monitor.core.wearer import WearerMonitor
from monitor.recordings import Recording, Stream, read_recording

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


def run_bench(what: str, as_json: bool = False, out=sys.stdout) -> int:
    result = bench_core() if what == "core" else bench_analyze()
    if as_json:
        print(json.dumps(result), file=out)
        return 0
    for key, value in result.items():
        print(f"{key:32s} {value}", file=out)
    return 0
