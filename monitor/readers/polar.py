"""Polar H10 chest strap export: a CSV with header ``time_ns,ecg,hr,rr``.

One row per ECG sample: ``time_ns`` (unix epoch in ns), ``ecg`` (mV, ~130 Hz). ``hr`` (bpm)
and ``rr`` (beat-to-beat interval, ms) are filled on the rows where a Heart Rate Measurement
notification arrived; a notification with several RR intervals puts the further ones on the
next rows (one ECG sample apart).

Canonical streams:

* ``ecg``: a regular stream whose rate and start are fitted to ``time_ns`` by least squares
  (``regular_stream``; the samples are not resampled: the strap samples at a fixed rate, the
  time stamps only carry the phone's jitter). The rate is ~130.16 Hz on the shared recording.
* ``hr``: each notification's heart rate at its arrival time.
* ``ibi``: the RR intervals, with beat times chained from the intervals as the live bridge
  does (``chain_beats``, anchored at each notification's arrival, re-anchored on a 2 s drift;
  beats a backward re-anchor puts before earlier ones are left out, with a note).

Checks: ``time_ns`` must be unix nanoseconds and increase; ``ecg`` must be present on every row
and look like mV; ``hr`` and ``rr`` must mostly lie in the contract's ranges (otherwise the
columns are swapped or the file is another one). A last line cut short (no line end after it, or
not a whole row) is left out with a warning and a note (``common.without_cut_last_line``, the rule
of every reader); a damaged line before it is refused, naming the line.

Example
-------
>>> rec = read_polar("../shared/data/polar-h10/polar_h10.csv")          # doctest: +SKIP
>>> round(rec.streams["ecg"].fs, 2), len(rec.streams["ibi"].values)     # doctest: +SKIP
(130.16, 798)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from monitor.errors import InputFormatError
from monitor.markers import unix_s_problem
from monitor.readers.common import (chain_beats, csv_frame, decode, irregular_stream, regular_stream,
                                    without_backward_beats, without_cut_last_line)
from monitor.recordings import Recording

COLUMNS = ("time_ns", "ecg", "hr", "rr")
MAX_ECG_MV = 20.0  # an ECG in mV stays well within +-20 mV; in uV it would not
NOTIFICATION_GAP_S = 0.05  # rows of one notification sit one ECG sample (7.7 ms) apart
MAX_DRIFT_S = 2.0  # as firmware_bridge.ble_hrs.HrsConverter


def looks_like_polar(header_line: str) -> bool:
    return "time_ns" in [c.strip() for c in header_line.split(",")]


def _row_of(header: str):
    """A test of a row under ``header``: its fields, numbers, ``time_ns`` and ``ecg`` never empty."""
    columns = [c.strip() for c in header.split(",")]

    def parses(row: str) -> bool:
        fields = [f.strip() for f in row.split(",")]
        if len(fields) != len(columns):
            return False
        try:
            [float(f) for c, f in zip(columns, fields) if f or c in ("time_ns", "ecg")]
        except ValueError:
            return False
        return True
    return parses


def read_polar(path: str | Path) -> Recording:
    """Read a Polar H10 CSV (``time_ns,ecg,hr,rr``) into ``ecg``, ``hr`` and ``ibi`` streams."""
    path = Path(path)
    where = str(path)
    notes: list[str] = []
    text = decode(path.read_bytes())
    text = without_cut_last_line(text, where, notes, _row_of(text.lstrip().split("\n", 1)[0]))
    try:
        frame = csv_frame(text)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"{where}: not a Polar H10 CSV (time_ns,ecg,hr,rr): {str(exc).splitlines()[0]}") from None
    missing = [c for c in ("time_ns", "ecg") if c not in frame.columns]
    unknown = [c for c in frame.columns if c not in COLUMNS]
    if missing or unknown:
        raise InputFormatError(
            f"{where}: expected the columns time_ns,ecg[,hr][,rr] of a Polar H10 export, "
            f"found {','.join(map(str, frame.columns))}"
        )
    if not len(frame):
        raise InputFormatError(f"{where}: no rows")
    numeric = {}
    for c in frame.columns:
        col = pd.to_numeric(frame[c], errors="coerce")
        bad = col.isna() & frame[c].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputFormatError(f"{where}, line {row + 2}: {c} {str(frame[c].iloc[row])[:20]!r} is not a number")
        numeric[c] = col.to_numpy(dtype=float)
    t = numeric["time_ns"] / 1e9
    if np.isnan(t).any():
        row = int(np.flatnonzero(np.isnan(t))[0])
        raise InputFormatError(f"{where}, line {row + 2}: time_ns is empty (file cut short or mixed up?)")
    for row in (int(np.argmin(t)), int(np.argmax(t))):
        if unix_s_problem(t[row]):
            raw = numeric["time_ns"][row]
            why = (unix_s_problem(raw) or "looks like seconds").split(";")[0]  # the unit the value is in
            raise InputFormatError(f"{where}, line {row + 2}: time_ns {raw:.0f} is not unix time in nanoseconds ({why})")
    ecg = numeric["ecg"]
    if np.isnan(ecg).any():
        row = int(np.flatnonzero(np.isnan(ecg))[0])
        raise InputFormatError(f"{where}, line {row + 2}: ecg is empty; every row of a Polar export holds an ECG "
                               "sample (columns swapped, or file cut short?)")
    if np.percentile(np.abs(ecg), 99) > MAX_ECG_MV:
        raise InputFormatError(f"{where}: ecg values reach {np.abs(ecg).max():g}: expected mV (|ecg| < {MAX_ECG_MV:g}); "
                               "is it in uV, or are the columns swapped?")
    streams = {"ecg": regular_stream("ecg", t, ecg, f"{where}: time_ns", notes, first_line=2)}
    hr = numeric.get("hr", np.full(len(t), np.nan))
    rr = numeric.get("rr", np.full(len(t), np.nan))
    has_hr, has_rr = ~np.isnan(hr), ~np.isnan(rr)
    if has_hr.any():
        streams["hr"] = irregular_stream("hr", t[has_hr], hr[has_hr], where, notes, what="hr (bpm)")
    if has_rr.any():
        # notifications: runs of rows with hr or rr that lie one ECG sample apart
        event = np.flatnonzero(has_hr | has_rr)
        new = np.r_[True, np.diff(t[event]) > NOTIFICATION_GAP_S] | has_hr[event]
        group_of_event = np.cumsum(new)
        arrival_of_group = t[event][new]
        rows = event[has_rr[event]]
        group = group_of_event[has_rr[event]]
        arrival = arrival_of_group[group - 1]
        beats = chain_beats(arrival, rr[rows], group, MAX_DRIFT_S)
        notes.append(f"ibi: beat times chained from {len(rows)} RR intervals in {int(group[-1])} notifications")
        beats, intervals = without_backward_beats(beats, rr[rows], notes)
        streams["ibi"] = irregular_stream("ibi", beats, intervals, where, notes, what="rr (ms)")
    return Recording(str(path), "polar-h10", streams, notes=notes)
