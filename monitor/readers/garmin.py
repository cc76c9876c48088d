"""Garmin export: one reading per line, ``ISO-time;TYPE;value`` (no header).

As in the FLIRT test data (``../shared/data/flirt-e4-garmin/garmin/data.csv``)::

    2019-10-16T12:08:58.808+02:00;HEART_RATE_VARIABILITY;821.0
    2019-10-16T12:09:00.511+02:00;HEART_RATE;79.0
    2019-10-16T12:09:01.096+02:00;STRESS;7.0

Types read: ``HEART_RATE_VARIABILITY`` (a beat-to-beat interval, ms) becomes ``ibi``;
``HEART_RATE`` (bpm) becomes ``hr``; ``STRESS`` or ``STRESS_LEVEL_VALUE`` (Garmin's own 0-100
score; negative values are its "not measurable" codes and are dropped) is kept as the reference
series ``garmin_stress`` (never played, never used by the monitor). ``STEPS`` (the watch's
step counter, logged when it changes) becomes ``cadence`` (steps/min at 1 Hz, ``steps_cadence``)
over the spans the watch logged heart rate: the device's own activity signal, which withholds
the score while the wearer walks (there is no accelerometer in the export). Other types
(calories...) are counted in the notes and ignored. Times carry their UTC offset and become unix
seconds; times without one are read as UTC, with a note. Lines repeated exactly (overlapping
exports merged) are kept once, with a note.

The intervals' time stamps jitter by about +-0.1 s around the beats (they are stamped when
logged), more than the 50 ms the beat corrector allows between consecutive beats, so beat times
are chained from the intervals (``chain_beats``) and re-anchored on the stamp when the chain
strays more than 0.3 s from it (a missed beat or a pause in the recording).

A last line cut short (no line end after it, or not a whole ``time;TYPE;number`` row: an export
interrupted while writing) is left out with a warning and a note, as in every reader
(``common.without_cut_last_line``). Elsewhere, a line that does not have three ``;``-separated
fields, a time that is not ISO 8601 or a value that is not a number is an error naming the line.

Example
-------
>>> rec = read_garmin("../shared/data/flirt-e4-garmin/garmin/data.csv")   # doctest: +SKIP
>>> sorted(rec.streams), sorted(rec.reference)                            # doctest: +SKIP
(['hr', 'ibi'], ['garmin_stress'])
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.errors import InputFormatError
from monitor.readers.common import (chain_beats, csv_frame, decode, irregular_stream, without_backward_beats,
                                    without_cut_last_line)
from monitor.recordings import Recording, Stream

LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T[^;]*;[A-Z][A-Z0-9_]*;")
IBI_TYPES = ("HEART_RATE_VARIABILITY",)
HR_TYPES = ("HEART_RATE",)
STRESS_TYPES = ("STRESS", "STRESS_LEVEL_VALUE")
STEPS_TYPES = ("STEPS",)
CADENCE_FS = 1.0  # Hz
WORN_GAP_S = 300.0  # heart rate lines further apart than this: the watch was off (no cadence there)
CADENCE_SMOOTH_S = 30.0  # the counter is logged in bursts (14 steps within 1 s): averaged over this (s)
MAX_CADENCE_STEPS_PER_MIN = 300.0  # the wire contract's upper bound
MAX_DRIFT_S = 0.3
UTC_OFFSET = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"


def looks_like_garmin(line: str) -> bool:
    return bool(LINE.match(line))


def read_garmin(path: str | Path) -> Recording:
    """Read a Garmin ``ISO-time;TYPE;value`` export into ``ibi`` and ``hr`` streams."""
    path = Path(path)
    where = str(path)
    notes: list[str] = []
    text = without_cut_last_line(decode(path.read_bytes()), where, notes, _whole_row)
    try:
        frame = csv_frame(text, sep=";", header=None, names=["time", "type", "value"],
                            dtype=str, skip_blank_lines=True, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise InputFormatError(f"{where}: expected lines ISO-time;TYPE;value: {str(exc).splitlines()[0]}") from None
    if not len(frame):
        raise InputFormatError(f"{where}: empty file (expected lines ISO-time;TYPE;value)")
    line_no = _line_numbers(text)
    empty = (frame["type"] == "") | (frame["value"] == "")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise InputFormatError(
            f"{where}, line {line_no[row]}: {frame['time'].iloc[row][:40]!r}... has fewer than 3 fields; "
            "expected ISO-time;TYPE;value (is the file cut mid-line?)"
        )
    times = pd.to_datetime(frame["time"], format="ISO8601", utc=True, errors="coerce")
    values = pd.to_numeric(frame["value"], errors="coerce")
    for bad, what in ((times.isna(), "time"), (values.isna(), "value")):
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputFormatError(
                f"{where}, line {line_no[row]}: {what} {frame[what].iloc[row][:40]!r} is not "
                f"{'an ISO 8601 time' if what == 'time' else 'a number'} (expected ISO-time;TYPE;value)"
            )
    naive = ~frame["time"].str.strip().str.contains(UTC_OFFSET).to_numpy()
    if naive.any():
        row = int(np.flatnonzero(naive)[0])
        notes.append(f"{int(naive.sum())} times without a UTC offset (e.g. line {line_no[row]}: "
                     f"{frame['time'].iloc[row][:30]!r}) read as UTC")
    repeated = frame.duplicated().to_numpy()
    if repeated.any():
        notes.append(f"dropped {int(repeated.sum())} repeated lines (the same time, type and value again: "
                     "exports merged?)")
    t = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()[~repeated]
    v = values.to_numpy(dtype=float)[~repeated]
    kind = frame["type"].to_numpy()[~repeated]
    streams, reference = {}, {}
    ibi = np.isin(kind, IBI_TYPES)
    if ibi.any():
        order = np.argsort(t[ibi], kind="stable")
        stamps, rr = t[ibi][order], v[ibi][order]
        beats = chain_beats(stamps, rr, np.arange(len(rr)), MAX_DRIFT_S)
        notes.append(f"ibi: beat times chained from {len(rr)} intervals (re-anchored on a {MAX_DRIFT_S} s drift)")
        beats, rr = without_backward_beats(beats, rr, notes)
        streams["ibi"] = irregular_stream("ibi", beats, rr, where, notes, what="HEART_RATE_VARIABILITY (ms)")
    hr = np.isin(kind, HR_TYPES)
    if hr.any():
        keep = hr & (v > 0)  # -1: no reading
        streams["hr"] = irregular_stream("hr", t[keep], v[keep], where, notes, what="HEART_RATE (bpm)")
    stress = np.isin(kind, STRESS_TYPES) & (v >= 0)
    if stress.any():
        order = np.argsort(t[stress], kind="stable")
        reference["garmin_stress"] = Stream("garmin_stress", v[stress][order], t=t[stress][order])
    if not streams:
        raise InputFormatError(f"{where}: no HEART_RATE_VARIABILITY or HEART_RATE lines: nothing the monitor reads")
    steps = np.isin(kind, STEPS_TYPES)
    if steps.any():
        heart_t = np.sort(t[ibi | hr])
        order = np.argsort(t[steps], kind="stable")
        streams["cadence"] = steps_cadence(t[steps][order], v[steps][order], heart_t)
        notes.append(f"cadence: steps per minute from {int(steps.sum())} STEPS counter lines, "
                     f"at {CADENCE_FS:g} Hz where heart rate was logged")
    others = sorted(set(kind) - set(IBI_TYPES) - set(HR_TYPES) - set(STRESS_TYPES) - set(STEPS_TYPES))
    if others:
        notes.append(f"ignored types: {', '.join(others)}")
    return Recording(str(path), "garmin", streams, reference=reference, notes=notes)


def steps_cadence(counter_t: np.ndarray, counter_steps: np.ndarray, worn_t: np.ndarray) -> Stream:
    """A regular ``cadence`` stream (steps/min at ``CADENCE_FS``) from a step counter read at
    ``counter_t`` (unix s, increasing), over the runs of ``worn_t`` (times the watch logged
    anything else; runs split at gaps over ``WORN_GAP_S``).

    The steps between two readings are spread evenly over the time between them; a counter that
    went down was reset (midnight), so its new value counts as the steps since the last reading.
    Before the first reading and after the last the cadence is 0. The counter is logged in
    bursts, so the cadence is then averaged over ``CADENCE_SMOOTH_S`` (centred: a recording is
    read whole) and kept within the wire contract's 300 steps/min.

    >>> s = steps_cadence(np.array([0.0, 60.0, 120.0]), np.array([500.0, 610.0, 610.0]), np.arange(0.0, 180.0))
    >>> s.values[[30, 90, 150]].round(1).tolist()
    [110.0, 0.0, 0.0]
    """
    steps = np.diff(counter_steps)
    steps = np.where(steps < 0, counter_steps[1:], steps)  # a reset counter starts from 0
    dt_s = np.diff(counter_t)
    rate = np.r_[0.0, np.divide(60.0 * steps, dt_s, out=np.zeros_like(steps), where=dt_s > 0), 0.0]
    starts = np.r_[0, np.flatnonzero(np.diff(worn_t) > WORN_GAP_S) + 1]
    ends = np.r_[starts[1:] - 1, len(worn_t) - 1]
    segments, values = [], []
    for i0, i1 in zip(starts, ends):
        grid = worn_t[i0] + np.arange(int((worn_t[i1] - worn_t[i0]) * CADENCE_FS) + 1) / CADENCE_FS
        segments.append((sum(len(v) for v in values), float(grid[0])))
        # reading k covers (t[k-1], t[k]]: the first reading at or after each grid time
        cadence = rate[np.searchsorted(counter_t, grid, side="left")]
        n_smooth = max(1, min(len(cadence), int(CADENCE_SMOOTH_S * CADENCE_FS)))
        cadence = np.convolve(cadence, np.full(n_smooth, 1.0 / n_smooth), mode="same")
        values.append(np.clip(cadence, 0.0, MAX_CADENCE_STEPS_PER_MIN))
    return Stream("cadence", np.concatenate(values), t0=segments[0][1], fs=CADENCE_FS,
                  segments=segments if len(segments) > 1 else None)


def _whole_row(row: str) -> bool:
    """``ISO-time;TYPE;number``.

    >>> _whole_row("2019-10-16T12:09:00.511+02:00;HEART_RATE;79.0"), _whole_row("2019-10-16T12:09:00.511+02:00;HEART_RA")
    (True, False)
    """
    fields = row.split(";")
    if len(fields) != 3 or not LINE.match(row):
        return False
    try:
        float(fields[2])
    except ValueError:
        return False
    return True


def _line_numbers(text: str) -> np.ndarray:
    """File line number (1-based) of each non-blank line, as pandas numbers its rows."""
    return np.array([n for n, line in enumerate(text.splitlines(), start=1) if line.strip()])
