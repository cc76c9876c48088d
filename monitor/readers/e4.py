"""Empatica E4 export: a folder or a zip of ``EDA.csv``, ``BVP.csv``, ``TEMP.csv``, ``ACC.csv``,
``HR.csv``, ``IBI.csv`` and optionally ``tags*.csv`` (and, in the Stress-Predict data, ``labels.csv``).

Each signal file's first row is the session start (unix s, UTC), the second the sample rate
(Hz), then one sample per row. The E4's rates are fixed (EDA 4 Hz, BVP 64, TEMP 4, ACC 32,
HR 1), so a file that declares another rate, or has the wrong number of columns, is refused
(it is usually another file renamed). ``ACC.csv`` is in 1/64 g and becomes g. ``IBI.csv``
rows are (s since start, interval in s) and become beat times and intervals in ms. ``HR.csv``
is regular at 1 Hz in the file but ``hr`` is irregular on the wire. A ``tags*.csv`` holds one
unix time per line (the wearer pressed the button): markers of kind ``tag``.

Example
-------
>>> rec = read_e4("../shared/data/stress-predict/S02")                 # doctest: +SKIP
>>> rec.streams["acc"].fs, len(rec.markers), rec.markers[0].kind       # doctest: +SKIP
(32.0, 9, 'tag')
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.errors import InputFormatError
from monitor.markers import Marker
from monitor.readers.common import Folder
from monitor.recordings import Recording, Stream, read_labels_text

FILES = {"EDA.csv": "eda", "BVP.csv": "bvp", "TEMP.csv": "temp", "ACC.csv": "acc", "HR.csv": "hr"}
RATES_HZ = {"EDA.csv": 4.0, "BVP.csv": 64.0, "TEMP.csv": 4.0, "ACC.csv": 32.0, "HR.csv": 1.0}
ACC_UNITS_PER_G = 64.0
TAG_KIND = "tag"


def is_e4(folder: Folder) -> bool:
    return any(name in folder.names for name in (*FILES, "IBI.csv"))


def _regular(folder: Folder, name: str, signal: str) -> Stream:
    where = f"{folder.path}/{name}"
    try:
        frame = pd.read_csv(io.StringIO(folder.text(name)), header=None, skipinitialspace=True, low_memory=False)
        t0, fs = float(frame.iloc[0, 0]), float(frame.iloc[1, 0])
        values = frame.iloc[2:].to_numpy(dtype=float)
    except (ValueError, IndexError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputFormatError(
            f"{where}: not an Empatica E4 file (expected a start time row, a sample rate row, then "
            f"one sample per row): {str(exc).splitlines()[0]}"
        ) from None
    if not (math.isfinite(t0) and t0 > 9e8):
        raise InputFormatError(f"{where}: first row {t0!r} is not a start time in unix seconds")
    if fs != RATES_HZ[name]:
        raise InputFormatError(
            f"{where}: declares {fs:g} Hz but the E4 writes {name} at {RATES_HZ[name]:g} Hz "
            "(is it another file renamed, or not an E4 export?)"
        )
    columns = 3 if signal == "acc" else 1
    if values.shape[1] != columns:
        raise InputFormatError(f"{where}: expected {columns} column(s) per row, found {values.shape[1]}")
    if signal == "acc":
        values = values / ACC_UNITS_PER_G
    else:
        values = values[:, 0]
    if np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values).reshape(len(values), -1).any(axis=1))
        raise InputFormatError(
            f"{where}: {len(rows)} row(s) are not numbers, the first at line {int(rows[0]) + 3} "
            "(file cut short or mixed up?)"
        )
    return Stream(signal, values, t0=t0, fs=fs)


def _ibi(folder: Folder) -> Stream | None:
    where = f"{folder.path}/IBI.csv"
    lines = folder.text("IBI.csv").strip().splitlines()
    if len(lines) < 2:
        return None
    try:
        t0 = float(lines[0].split(",")[0])
        rows = np.array([[float(v) for v in line.split(",")[:2]] for line in lines[1:]])
    except ValueError as exc:
        raise InputFormatError(f"{where}: expected 't0, IBI' then 'seconds,interval' rows: {exc}") from None
    if rows.ndim != 2 or rows.shape[1] != 2:
        raise InputFormatError(f"{where}: expected two columns (seconds since start, interval in s) on every row")
    return Stream("ibi", rows[:, 1] * 1000.0, t=t0 + rows[:, 0])


def _tags(folder: Folder) -> list[Marker]:
    markers = []
    for name in sorted(folder.names):
        if name.startswith("tags") and name.endswith(".csv"):
            for n, line in enumerate(folder.text(name).split(), start=1):
                try:
                    markers.append(Marker(float(line.split(",")[0]), TAG_KIND, ""))
                except ValueError:
                    raise InputFormatError(f"{folder.path}/{name}, line {n}: expected a unix time, got {line[:30]!r}") from None
    return sorted(markers)


def read_e4(path: str | Path) -> Recording:
    """Read an Empatica E4 export (folder or zip). Missing signal files are simply absent."""
    path = Path(path)
    folder = Folder(path)
    streams = {sig: _regular(folder, name, sig) for name, sig in FILES.items() if name in folder.names}
    if "hr" in streams:  # E4 writes HR at 1 Hz, but heart rate is an irregular signal on the wire
        streams["hr"] = Stream("hr", streams["hr"].values, t=streams["hr"].times_s())
    if "IBI.csv" in folder.names and (ibi := _ibi(folder)) is not None:
        streams["ibi"] = ibi
    streams = {k: s for k, s in streams.items() if len(s.values)}
    if not streams:
        raise InputFormatError(f"{path}: no E4 signal files with samples (EDA.csv, BVP.csv, ...) found")
    labels = None
    if "labels.csv" in folder.names:
        labels = read_labels_text(folder.text("labels.csv"), f"{path}/labels.csv")
    return Recording(str(path), "e4", streams, _tags(folder), labels)
