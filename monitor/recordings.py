"""Recorded sessions on disk, read into canonical streams and played as sample batches.

Supported now: the Empatica E4 export (a folder or a zip of ``EDA.csv``, ``BVP.csv``,
``TEMP.csv``, ``ACC.csv``, ``HR.csv``, ``IBI.csv`` and optionally ``tags.csv``). Each file's
first row is the session start (unix s, UTC), the second the sample rate (Hz); ``ACC.csv`` is in
1/64 g and becomes g; ``IBI.csv`` rows are (s since start, interval in s) and become beat times
and intervals in ms.

Example
-------
>>> rec = read_recording("../shared/data/stress-predict/S02")      # doctest: +SKIP
>>> sorted(rec.streams), round(rec.duration_s)                      # doctest: +SKIP
(['acc', 'bvp', 'eda', 'hr', 'ibi', 'temp'], 3565)
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from monitor.errors import InputFormatError
from monitor.wire import SampleBatch

E4_FILES = {"EDA.csv": "eda", "BVP.csv": "bvp", "TEMP.csv": "temp", "ACC.csv": "acc", "HR.csv": "hr"}
E4_ACC_UNITS_PER_G = 64.0


@dataclass
class Stream:
    """One signal of a recording: regular (``t0``, ``fs``) or irregular (``t``)."""

    signal: str
    values: np.ndarray
    t0: float | None = None
    fs: float | None = None
    t: np.ndarray | None = None

    def times_s(self) -> np.ndarray:
        return self.t if self.t is not None else self.t0 + np.arange(len(self.values)) / self.fs

    @property
    def start_s(self) -> float:
        return float(self.t[0]) if self.t is not None else float(self.t0)

    @property
    def end_s(self) -> float:
        if self.t is not None:
            return float(self.t[-1])
        return float(self.t0 + len(self.values) / self.fs)


@dataclass
class Recording:
    """A session: streams by signal, event markers, and (when known) per-second stress labels."""

    source: str
    format: str
    streams: dict[str, Stream]
    markers: list[tuple[float, str]] = field(default_factory=list)
    labels: tuple[np.ndarray, np.ndarray] | None = None  # (unix_s, stress 0/1)

    @property
    def start_s(self) -> float:
        return min(s.start_s for s in self.streams.values())

    @property
    def end_s(self) -> float:
        return max(s.end_s for s in self.streams.values())

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def batches(self, batch_s: float = 1.0) -> Iterator[SampleBatch]:
        """Every stream cut into ``batch_s`` batches, in the order a live device would send them.

        A batch is sent when its span ends; batches ending at the same time come in signal order.
        """
        queue = []
        for order, (name, stream) in enumerate(sorted(self.streams.items())):
            for seq, (due, batch) in enumerate(_cut(stream, batch_s)):
                queue.append((due, order, seq, batch))
        queue.sort(key=lambda item: item[:3])
        for _, _, _, batch in queue:
            yield batch


def _cut(stream: Stream, batch_s: float) -> Iterator[tuple[float, SampleBatch]]:
    if stream.t is None:
        per = max(1, int(round(batch_s * stream.fs)))
        for seq, i in enumerate(range(0, len(stream.values), per)):
            values = stream.values[i:i + per]
            t0 = stream.t0 + i / stream.fs
            yield t0 + len(values) / stream.fs, SampleBatch(stream.signal, seq, values, t0=t0, fs=stream.fs)
        return
    if not len(stream.t):
        return
    bins = np.floor((stream.t - stream.t[0]) / batch_s).astype(np.int64)
    cuts = np.flatnonzero(np.diff(bins)) + 1
    for seq, (i0, i1) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, len(bins)])):
        due = stream.t[0] + (bins[i0] + 1) * batch_s
        yield due, SampleBatch(stream.signal, seq, stream.values[i0:i1], t=stream.t[i0:i1])


# -------------------------------------------------------------------------------- E4 export


class _Folder:
    """Uniform access to the files of a folder or a zip archive."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            self.names = {p.name: p for p in path.iterdir() if p.is_file()}
            self.zip = None
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            self.names = {Path(n).name: n for n in self.zip.namelist() if not n.endswith("/")}
        else:
            raise InputFormatError(f"{path} is neither a folder nor a zip archive")

    def text(self, name: str) -> str:
        if self.zip is not None:
            return self.zip.read(self.names[name]).decode("utf-8", errors="replace")
        return self.names[name].read_text(encoding="utf-8", errors="replace")


def is_e4_export(path: Path) -> bool:
    try:
        names = _Folder(path).names
    except InputFormatError:
        return False
    return "EDA.csv" in names or "BVP.csv" in names


def _e4_regular(folder: _Folder, name: str, signal: str) -> Stream:
    text = folder.text(name)
    try:
        frame = pd.read_csv(io.StringIO(text), header=None, skipinitialspace=True)
        t0, fs = float(frame.iloc[0, 0]), float(frame.iloc[1, 0])
        values = frame.iloc[2:].to_numpy(dtype=float)
    except (ValueError, IndexError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputFormatError(
            f"{folder.path}/{name}: not an Empatica E4 file (expected a start time row, a sample "
            f"rate row, then one sample per row): {exc}"
        ) from None
    if not (math.isfinite(t0) and math.isfinite(fs) and fs > 0):
        raise InputFormatError(f"{folder.path}/{name}: bad start time {t0!r} or sample rate {fs!r}")
    if signal == "acc":
        if values.shape[1] != 3:
            raise InputFormatError(f"{folder.path}/{name}: expected 3 columns (x, y, z), found {values.shape[1]}")
        values = values / E4_ACC_UNITS_PER_G
    else:
        values = values[:, 0]
    if np.isnan(values).any():
        raise InputFormatError(f"{folder.path}/{name}: {int(np.isnan(values).sum())} rows are not numbers")
    return Stream(signal, values, t0=t0, fs=fs)


def _e4_ibi(folder: _Folder) -> Stream | None:
    text = folder.text("IBI.csv").strip().splitlines()
    if len(text) < 2:
        return None
    try:
        t0 = float(text[0].split(",")[0])
        rows = np.array([[float(v) for v in line.split(",")[:2]] for line in text[1:]])
    except ValueError as exc:
        raise InputFormatError(f"{folder.path}/IBI.csv: expected 't0, IBI' then 'seconds,interval' rows: {exc}") from None
    return Stream("ibi", rows[:, 1] * 1000.0, t=t0 + rows[:, 0])


def read_e4(path: str | Path) -> Recording:
    """Read an Empatica E4 export (folder or zip). Missing signal files are simply absent."""
    path = Path(path)
    folder = _Folder(path)
    streams = {sig: _e4_regular(folder, name, sig) for name, sig in E4_FILES.items() if name in folder.names}
    if "hr" in streams:  # E4 writes HR at 1 Hz, but heart rate is an irregular signal on the wire
        streams["hr"] = Stream("hr", streams["hr"].values, t=streams["hr"].times_s())
    if "IBI.csv" in folder.names and (ibi := _e4_ibi(folder)) is not None:
        streams["ibi"] = ibi
    if not streams:
        raise InputFormatError(f"{path}: no E4 signal files (EDA.csv, BVP.csv, ...) found")
    markers = []
    for name in folder.names:
        if name.startswith("tags") and name.endswith(".csv"):
            for line in folder.text(name).split():
                markers.append((float(line.split(",")[0]), "tag"))
    labels = None
    if "labels.csv" in folder.names:
        labels = read_labels_text(folder.text("labels.csv"), f"{path}/labels.csv")
    return Recording(str(path), "e4", streams, sorted(markers), labels)


def read_labels_text(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse a labels CSV: header ``unix_s,stress`` then one row per second (stress 0 or 1)."""
    try:
        frame = pd.read_csv(io.StringIO(text))
        t = frame["unix_s"].to_numpy(dtype=float)
        y = frame["stress"].to_numpy(dtype=float)
    except (KeyError, ValueError, pd.errors.ParserError) as exc:
        raise InputFormatError(f"{where}: expected a CSV with columns unix_s,stress: {exc}") from None
    return t, y


def read_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    return read_labels_text(path.read_text(), str(path))


def read_recording(path: str | Path) -> Recording:
    """Read a recording, detecting its format; a clear error says what was expected."""
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"{path} does not exist")
    if is_e4_export(path):
        return read_e4(path)
    raise InputFormatError(
        f"{path} is not a recording anxmon reads: expected an Empatica E4 export "
        "(a folder or zip with EDA.csv, BVP.csv, TEMP.csv, ACC.csv, HR.csv, IBI.csv)"
    )
