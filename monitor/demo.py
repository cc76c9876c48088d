"""``anxmon demo``: the monitor on a real recording, minute by minute, in the terminal.

Plays the first minutes of a real Empatica E4 session (Stress-Predict S02 by default: rest,
then a Stroop test) through the same per-wearer monitor the service runs, and prints what it
finds each minute: heart rate, RMSSD, skin conductance, SCRs, temperature, movement, the stress
score against the wearer's own baseline, and every check-in decision with its reason.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from monitor.core.policy import Decision
from monitor.core.wearer import WearerMonitor
from monitor.errors import InputFormatError
from monitor.recordings import read_recording
from monitor.wire import validate_batch

COLUMNS = [("HR_Mean", "HR bpm", "{:6.1f}"), ("HRV_RMSSD", "RMSSD ms", "{:8.1f}"),
           ("EDA_Tonic_Mean", "SCL uS", "{:6.2f}"), ("SCR_Rate", "SCR/min", "{:7.1f}"),
           ("TEMP_Mean", "temp C", "{:6.2f}"), ("ACC_Activity", "move g", "{:6.3f}")]


def _fmt(value, spec, width):
    return " " * (width - 1) + "-" if value is None else spec.format(value)


def run_core_demo(recording_path: str | None = None, minutes: float = 20.0, out=sys.stdout) -> int:
    if recording_path is None:
        from monitor.cli import shared_data_dir

        data = shared_data_dir()
        if data is None:
            raise InputFormatError("no recording given and ../shared/data is not beside the project; "
                                   "use --recording PATH (an Empatica E4 export)")
        recording_path = str(data / "stress-predict" / "S02")
    rec = read_recording(recording_path)
    monitor = WearerMonitor("demo")
    end_s = rec.start_s + minutes * 60.0
    print(f"anxmon demo: {Path(recording_path).name}, first {minutes:g} min of "
          f"{', '.join(sorted(rec.streams))} (a real recording; anxmon is not a medical device)", file=out)
    header = "  min  " + " ".join(f"{title:>{max(len(title), 6)}}" for _, title, _ in COLUMNS) + "   score  state"
    print(header, file=out)
    next_print = rec.start_s + 60.0
    last = None
    for batch in rec.batches():
        if batch.start_s > end_s:
            break
        validate_batch(batch)
        for tick in monitor.update(batch):
            last = tick
            for d in tick.decisions:
                if isinstance(d, Decision):
                    when = datetime.fromtimestamp(d.t_s, timezone.utc).strftime("%H:%M:%S")
                    if d.sent:
                        print(f"  >> {when} check-in sent: \"{d.prompt.message}\" why: {d.prompt.why.sentence}", file=out)
                    else:
                        print(f"  -- {when} trigger suppressed ({d.reason})", file=out)
            if tick.t >= next_print:
                next_print += 60.0
                values = tick.indicators.values
                cells = " ".join(_fmt(values.get(k), spec, max(len(title), 6)).rjust(max(len(title), 6))
                                 for k, title, spec in COLUMNS)
                score = "      -" if tick.score.value is None else f"{tick.score.value:7.2f}"
                print(f"{(tick.t - rec.start_s) / 60:5.0f}  {cells} {score}  {tick.score.gate or 'scored'}", file=out)
    if last is None:
        print("no indicators: the recording is shorter than one window", file=out)
        return 1
    print(f"done: {monitor.state_nbytes() / 1024:.0f} KB of state for this wearer. "
          "Full analysis with plots: anxmon analyze PATH --out DIR", file=out)
    return 0
