"""EmotiBit parsed data: the per-type-tag CSV files EmotiBit's DataParser writes.

The EmotiBit records one raw file per session on its SD card (``2024-09-18_22-59-45-827135.csv``,
packets as ``firmware_bridge.emotibit`` parses them; its times are milliseconds since boot).
EmotiBit's DataParser turns it into one file per type tag beside it, e.g.
``2024-09-18_22-59-45-827135_EA.csv``, each with one row per data point (EmotiBit_Docs,
``Working_with_emotibit_data.md``, "Parsed Data File Format")::

    LocalTimestamp,EmotiBitTimestamp,PacketNumber,DataLength,TypeTag,ProtocolVersion,DataReliability,EA
    1726714786.598369,531473.000,17305,3,EA,1,100,0.030269

``LocalTimestamp`` is unix seconds (the parser maps EmotiBit time to the computer's clock with
the session's time syncs; periodic samples are interpolated between packets), the last column
the data point. Type tags read (``firmware_bridge.emotibit``): ``EA`` (EDA, uS) -> ``eda``;
``PG`` (else ``PI``, ``PR``; PPG) -> ``bvp``; ``T1`` (else ``T0``, ``TH``; degC) -> ``temp``;
``AX``/``AY``/``AZ`` (g) -> ``acc``; ``HR`` (bpm) -> ``hr``; ``BI`` (inter-beat interval, ms)
-> ``ibi``; ``UN`` (user notes typed in the Oscilloscope while recording) -> markers. Regular
streams get a rate fitted to ``LocalTimestamp`` (``regular_stream``).

A parsed file whose last line is cut short (no line end after it, or not a whole row of its type
tag) is read without it, with a warning and a note (``common.without_cut_last_line``, the rule of
every reader); a damaged line before the last is refused, naming the line.

``read_emotibit`` takes the folder, any one parsed file, or the raw file with its parsed files
beside it. A raw file without parsed files is refused with a hint to run the DataParser: the
raw file alone has no unix times until the time syncs are resolved, which the DataParser does.

Example
-------
>>> rec = read_emotibit("session/2024-09-18_22-59-45-827135_EA.csv")     # doctest: +SKIP
>>> sorted(rec.streams)                                                  # doctest: +SKIP
['acc', 'bvp', 'eda', 'hr', 'ibi', 'temp']
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from firmware_bridge import emotibit as eb
from monitor.errors import InputFormatError
from monitor.markers import make_marker, unix_s_problem
from monitor.readers.common import (csv_frame, decode, first_line, irregular_stream, no_samples, regular_stream,
                                    without_cut_last_line)
from monitor.recordings import Recording

HEADER = ("LocalTimestamp", "EmotiBitTimestamp", "PacketNumber", "DataLength", "TypeTag",
          "ProtocolVersion", "DataReliability")
PARSED_NAME = re.compile(r"^(?P<base>.+)_(?P<tag>[A-Z0-9%]{2})\.csv$")
REGULAR = {  # signal -> type tags, preferred first
    "eda": (eb.EDA,),
    "bvp": (eb.PPG_GREEN, eb.PPG_INFRARED, eb.PPG_RED),
    "temp": (eb.TEMPERATURE_1, eb.TEMPERATURE_0, eb.THERMOPILE),
}
ACC = (eb.ACC_X, eb.ACC_Y, eb.ACC_Z)
IRREGULAR = {"hr": eb.HEART_RATE, "ibi": eb.INTER_BEAT_INTERVAL}
USER_NOTE = "UN"


def is_parsed_header(line: str) -> bool:
    return tuple(c.strip() for c in line.split(",")[: len(HEADER)]) == HEADER


def is_raw_sd_line(line: str) -> bool:
    """A line EmotiBit's raw SD-card file starts with (a packet ``firmware_bridge.emotibit`` parses)."""
    try:
        eb.parse_packet(line)
    except ValueError:
        return False
    return True


def parsed_files(folder: Path) -> dict[str, dict[str, Path]]:
    """``{base: {tag: path}}`` of the DataParser files in a folder (checked by their header)."""
    out: dict[str, dict[str, Path]] = {}
    for p in sorted(folder.iterdir()):
        m = PARSED_NAME.match(p.name)
        if m and p.is_file() and is_parsed_header(first_line(p)):
            out.setdefault(m["base"], {})[m["tag"]] = p
    return out


def _session_files(path: Path) -> tuple[str, dict[str, Path]]:
    folder = path if path.is_dir() else path.parent
    sessions = parsed_files(folder)
    if path.is_dir():
        if len(sessions) > 1:
            raise InputFormatError(
                f"{path} holds the parsed files of {len(sessions)} EmotiBit sessions "
                f"({', '.join(sorted(sessions))}): pass one of their files to choose"
            )
        if not sessions:
            raise InputFormatError(f"{path}: no EmotiBit parsed files (*_EA.csv, *_PG.csv, ...)")
        base = next(iter(sessions))
    else:
        m = PARSED_NAME.match(path.name)
        base = m["base"] if m and is_parsed_header(first_line(path)) else path.stem
        if base not in sessions:
            raise InputFormatError(
                f"{path} is an EmotiBit raw SD-card file without parsed files beside it: run "
                "EmotiBit's DataParser on it first (it writes the *_EA.csv, *_PG.csv ... files "
                "anxmon reads), then pass the folder or one of those files"
            )
    return base, sessions[base]


def _row_of(tag: str):
    """A test of a parsed file's row of ``tag``: its fields, the type tag, a number as
    LocalTimestamp and (except user notes, which are text) as the value."""
    def parses(row: str) -> bool:
        fields = [f.strip() for f in row.split(",")]
        if len(fields) < len(HEADER) + 1 or fields[HEADER.index("TypeTag")] != tag:
            return False
        try:
            float(fields[0])
            if tag != USER_NOTE:
                float(fields[-1])
        except ValueError:
            return False
        return tag == USER_NOTE or len(fields) == len(HEADER) + 1
    return parses


def _read_tag(path: Path, tag: str, notes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(LocalTimestamp, value) of one parsed file, checked against its documented layout; a last
    line cut short is left out (with a note in ``notes``)."""
    where = str(path)
    text = without_cut_last_line(decode(path.read_bytes()), where, [] if notes is None else notes, _row_of(tag))
    try:
        frame = csv_frame(text, dtype={"TypeTag": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"{where}: not an EmotiBit parsed file: {str(exc).splitlines()[0]}") from None
    columns = [str(c).strip() for c in frame.columns]
    if tuple(columns[: len(HEADER)]) != HEADER or columns[-1] != tag:
        raise InputFormatError(
            f"{where}: expected the header {','.join(HEADER)},{tag} of EmotiBit's DataParser, "
            f"found {','.join(columns)}"
        )
    if not len(frame):
        return np.array([]), np.array([])
    tags = frame["TypeTag"].astype(str).str.strip()
    if (tags != tag).any():
        row = int(np.flatnonzero((tags != tag).to_numpy())[0])
        if pd.isna(frame["TypeTag"].iloc[row]):
            raise InputFormatError(f"{where}, line {row + 2}: a row without its type tag (file damaged?)")
        raise InputFormatError(
            f"{where}, line {row + 2}: type tag {tags.iloc[row]!r:.10} in a file of {tag} (files mixed up?)"
        )
    if tag == USER_NOTE:
        return frame["LocalTimestamp"].to_numpy(dtype=float), frame[tag].astype(str).to_numpy()
    t = pd.to_numeric(frame["LocalTimestamp"], errors="coerce").to_numpy(dtype=float)
    x = pd.to_numeric(frame[tag], errors="coerce").to_numpy(dtype=float)
    for arr, name in ((t, "LocalTimestamp"), (x, tag)):
        if np.isnan(arr).any():
            row = int(np.flatnonzero(np.isnan(arr))[0])
            raise InputFormatError(f"{where}, line {row + 2}: {name} is not a number (file cut short or damaged?)")
    if unix_s_problem(t.min()) or unix_s_problem(t.max()):
        raise InputFormatError(
            f"{where}: LocalTimestamp {t.min():.3f} is not unix seconds (the DataParser found no time sync?)"
        )
    return t, x


def read_emotibit(path: str | Path) -> Recording:
    """Read EmotiBit DataParser output (the folder, one parsed file, or the raw file beside them)."""
    path = Path(path)
    base, files = _session_files(path)
    notes: list[str] = []
    streams = {}
    for signal, tags in REGULAR.items():
        tag = next((t for t in tags if t in files), None)
        if tag is None:
            continue
        t, x = _read_tag(files[tag], tag, notes)
        if len(t) >= 2:
            streams[signal] = regular_stream(signal, t, x, str(files[tag]), notes, first_line=2)
            notes[-1] = f"{notes[-1]} (type tag {tag})"
        else:
            no_samples(str(files[tag]), signal, notes, len(t))
    missing = [tag for tag in ACC if tag not in files]
    if missing and len(missing) < len(ACC):
        notes.append(f"acc: no {'/'.join(missing)} file, so {'/'.join(tag for tag in ACC if tag in files)} left out")
    if not missing:
        axes = [_read_tag(files[tag], tag, notes) for tag in ACC]
        counts = [len(a[0]) for a in axes]
        n = min(counts)
        if any(c != n for c in counts):
            notes.append(f"acc: axes have {', '.join(map(str, counts))} samples; kept the first {n}")
        t = axes[0][0][:n]
        for tag, (ta, _) in zip(ACC[1:], axes[1:]):
            if n and np.max(np.abs(ta[:n] - t)) > 0.5:
                raise InputFormatError(f"{files[tag]}: time stamps differ from {files[ACC[0]].name} "
                                       "(the three accelerometer axes come from different sessions?)")
        if n >= 2:
            xyz = np.column_stack([a[1][:n] for a in axes])
            streams["acc"] = regular_stream("acc", t, xyz, str(files[ACC[0]]), notes, first_line=2)
        else:
            no_samples(str(files[ACC[counts.index(n)]]), "acc", notes, n)
    for signal, tag in IRREGULAR.items():
        if tag in files:
            t, x = _read_tag(files[tag], tag, notes)
            if len(t):
                streams[signal] = irregular_stream(signal, t, x, str(files[tag]), notes, what=f"{tag}")
            else:
                no_samples(str(files[tag]), signal, notes)
    folder = path if path.is_dir() else path.parent
    for p in sorted(folder.iterdir()):
        if (m := PARSED_NAME.match(p.name)) and m["base"] == base and p not in files.values():
            notes.append(f"{p}: empty or not a DataParser file; left out")
    if not streams:
        raise InputFormatError(
            f"{path}: EmotiBit session {base} has no files the monitor reads "
            f"(expected some of {', '.join(sorted({*sum(REGULAR.values(), ()), *ACC, *IRREGULAR.values()}))})"
        )
    markers = []
    if USER_NOTE in files:
        t, text = _read_tag(files[USER_NOTE], USER_NOTE, notes)
        markers = sorted(make_marker(ti, label=str(lab)) for ti, lab in zip(t, text))
    source = files.get(eb.EDA, next(iter(files.values()))).parent / base
    return Recording(str(source), "emotibit", streams, markers, notes=notes)
