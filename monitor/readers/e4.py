"""Empatica E4 export: a folder or a zip of ``EDA.csv``, ``BVP.csv``, ``TEMP.csv``, ``ACC.csv``,
``HR.csv``, ``IBI.csv`` and optionally ``tags*.csv``.

Each signal file's first row is the session start (unix s, UTC), the second the sample rate
(Hz), then one sample per row. The E4's rates are fixed (EDA 4 Hz, BVP 64, TEMP 4, ACC 32,
HR 1), so a file that declares another rate, or has the wrong number of columns, is refused
(it is usually another file renamed). ``ACC.csv`` is in 1/64 g and becomes g. ``IBI.csv``
rows are (s since start, interval in s) and become beat times and intervals in ms (sorted by
time, with a note, when rows are out of order). ``HR.csv`` is regular at 1 Hz in the file but
``hr`` is irregular on the wire. A ``tags*.csv`` holds one unix time per line (the wearer pressed
the button): markers of kind ``tag``.

Values are checked against the wire contract's ranges (``common.check_range``): a file mostly
outside is refused (EDA in nS, TEMP in degF, IBI in ms), a few outside are noted (``hr``/``ibi``
readings dropped). An empty or blank row among the samples is refused with its line, like a
non-numeric one (skipping it would move every later sample one sample period earlier); blank lines
at the end are fine. A last line cut short (no line end after it: the E4 ends every row with one,
and a row cut mid-number such as ``-31`` of ``-31.25`` still parses; or a last line that is not a
whole row) is left out with a warning and a note, the rule of every reader
(``common.without_cut_last_line``). A ``labels.csv`` beside the files is read by ``read_any``, as
for every format (``monitor.readers.session_labels``).

What an export lacks is noted too (``Recording.notes``, with a warning): each of the six standard
files that is absent, and each signal file that starts more than ``SHORT_GAP_S`` (2 min) after the
session's start or ends more than that before its end, with how long it covers and its share of
the session ("BVP.csv covers 2.6 of 148.9 min (2%), ends 146.3 min before the session"). The
session is the span of all files together. The E4 writes all its files from one start to one stop
(within seconds: HR.csv starts 10 s late), so a larger difference is a file cut short.
``IBI.csv`` is sparse (the E4 drops beats it finds noisy: S05's last beat is 2.2 min before the
end), so its end is noted only when it is also more than ``SHORT_GAP_SHARE`` (5 %) of the
session; it is taken to start at its first row (the session's start).

Example
-------
>>> rec = read_e4("../shared/data/stress-predict/S02")                 # doctest: +SKIP
>>> rec.streams["acc"].fs, len(rec.markers), rec.markers[0].kind       # doctest: +SKIP
(32.0, 9, 'tag')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from monitor.errors import InputFormatError
from monitor.markers import TAG_KIND, Marker, is_tags_file, merge_markers, unix_s_problem, utc_text
from monitor.readers.common import (Folder, check_range, csv_frame, irregular_stream, no_samples, numbers_row,
                                    warn_note, without_cut_last_line)
from monitor.recordings import Recording, Stream

FILES = {"EDA.csv": "eda", "BVP.csv": "bvp", "TEMP.csv": "temp", "ACC.csv": "acc", "HR.csv": "hr"}
SESSION_FILES = (*FILES, "IBI.csv")  # the files that make a folder (or a sub-folder of a zip) an E4 session
RATES_HZ = {"EDA.csv": 4.0, "BVP.csv": 64.0, "TEMP.csv": 4.0, "ACC.csv": 32.0, "HR.csv": 1.0}
ACC_UNITS_PER_G = 64.0
SESSION_GAP_S = 60.0  # files of one session overlap in time, or (one cut short) lie at most this far apart
SHORT_GAP_S = 120.0  # a file starting this much after the session or ending this much before it is noted
SHORT_GAP_SHARE = 0.05  # IBI.csv (sparse beats): its end is noted only when also this share of the session early
UNIT_HINTS = {  # why a file's values are mostly outside the contract's range
    "eda": "in nS instead of uS, or another file?",
    "temp": "in degF instead of degC, or another file?",
    "hr": "another file?",
    "ibi": "intervals in ms instead of s, or another file?",
}


def is_e4(folder: Folder) -> bool:
    return any(name in folder.names for name in SESSION_FILES)


def _start_time(where: str, text: str) -> float:
    """The first row's start time (unix s), or an ``InputFormatError`` that says what is wrong."""
    try:
        t0 = float(text)
    except ValueError:
        raise InputFormatError(f"{where}: not an Empatica E4 file (its first row {text[:30]!r} is not a start time "
                               "in unix seconds)") from None
    if problem := unix_s_problem(t0):
        raise InputFormatError(f"{where}: first row (the start time) {t0:.15g} {problem}")
    return t0


def _regular(folder: Folder, name: str, signal: str, notes: list[str]) -> Stream | None:
    where = folder.where(name)
    columns = 3 if signal == "acc" else 1
    text = without_cut_last_line(folder.text(name), where, notes, numbers_row(columns))
    text = text.rstrip()  # blank lines at the end are fine; inside, they are refused below
    if not text:
        return None  # an empty file: no samples
    try:
        frame = csv_frame(text, header=None, skipinitialspace=True, skip_blank_lines=False,
                            low_memory=False)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputFormatError(
            f"{where}: not an Empatica E4 file (expected a start time row, a sample rate row, then "
            f"one sample per row): {str(exc).splitlines()[0]}"
        ) from None
    t0 = _start_time(where, str(frame.iloc[0, 0]))
    if len(frame) < 3:
        return None  # its header rows only
    try:
        fs = float(frame.iloc[1, 0])
    except ValueError:
        raise InputFormatError(f"{where}, line 2: {str(frame.iloc[1, 0])[:30]!r} is not a sample rate in Hz") from None
    if fs != RATES_HZ[name]:
        raise InputFormatError(
            f"{where}: declares {fs:g} Hz but the E4 writes {name} at {RATES_HZ[name]:g} Hz "
            "(is it another file renamed, or not an E4 export?)"
        )
    if frame.shape[1] != columns:
        raise InputFormatError(f"{where}: expected {columns} column(s) per row, found {frame.shape[1]}")
    values = frame.iloc[2:].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    rows = np.flatnonzero(np.isnan(values).any(axis=1))
    if len(rows):
        raise InputFormatError(
            f"{where}: {len(rows)} row(s) are empty or not numbers, the first at line {int(rows[0]) + 3} "
            "(file mixed up or damaged?)"
        )
    if signal == "acc":
        return Stream(signal, values / ACC_UNITS_PER_G, t0=t0, fs=fs)
    if signal != "hr":  # hr becomes readings, checked as such in read_e4
        check_range(signal, values[:, 0], where, notes, hint=UNIT_HINTS.get(signal, "another file?"))
    return Stream(signal, values[:, 0], t0=t0, fs=fs)


def _ibi_row(line: str) -> tuple[float, float]:
    """(seconds since the start, interval in s) of an ``IBI.csv`` row; ValueError when it is not one."""
    seconds, interval = (float(v) for v in line.split(",")[:2])
    return seconds, interval


def _is_ibi_row(line: str) -> bool:
    try:
        _ibi_row(line)
    except ValueError:
        return False
    return True


def _ibi(folder: Folder, notes: list[str]) -> tuple[Stream, float]:
    """The beats of ``IBI.csv`` and the file's start time (its first row)."""
    where = folder.where("IBI.csv")
    lines = without_cut_last_line(folder.text("IBI.csv"), where, notes, _is_ibi_row).rstrip().splitlines()
    if not lines:
        return Stream("ibi", np.empty(0), t=np.empty(0)), np.nan
    t0 = _start_time(where, lines[0].split(",")[0])
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        try:
            rows.append(_ibi_row(line))
        except ValueError:
            raise InputFormatError(f"{where}, line {n}: expected two numbers 'seconds since start,interval in s' "
                                   "(file mixed up or damaged?)") from None
    rows = np.array(rows).reshape(-1, 2)
    return irregular_stream("ibi", t0 + rows[:, 0], rows[:, 1] * 1000.0, where, notes, what="IBI.csv interval",
                            hint=UNIT_HINTS["ibi"]), t0


def _tags(folder: Folder) -> list[Marker]:
    """The tags of every ``tags*.csv``, sorted, each time once (``tags.csv`` beside a renamed copy
    such as ``tags_S02.csv`` would count every tag twice in the before/after tables)."""
    markers = []
    for name in sorted(folder.names):
        if is_tags_file(name):
            for n, line in enumerate(folder.text(name).splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    t = float(line.split(",")[0])
                except ValueError:
                    raise InputFormatError(f"{folder.where(name)}, line {n}: expected a unix time, got {line[:30]!r}") from None
                if problem := unix_s_problem(t):
                    raise InputFormatError(f"{folder.where(name)}, line {n}: {t:.15g} {problem}")
                markers.append(Marker(t, TAG_KIND, ""))
    return merge_markers(markers)


def _check_one_session(folder: Folder, spans: dict[str, tuple[float, float]]) -> None:
    """The files of one session overlap in time (HR.csv starts 10 s late, a file cut short may
    end early: up to ``SESSION_GAP_S`` apart is still one session); others are of different sessions."""
    if max(t0 for t0, _ in spans.values()) - min(end for _, end in spans.values()) > SESSION_GAP_S:
        starts = ", ".join(f"{name} starts {utc_text(t0)}" for name, (t0, _) in spans.items())
        raise InputFormatError(f"{folder.path}: its files do not overlap in time, so they come from different "
                               f"sessions ({starts}): put one session's files together")


def _missing_files(folder: Folder, notes: list[str]) -> None:
    """A warning and a note for each of the E4's six standard files the export lacks."""
    for name in SESSION_FILES:
        if name not in folder.names:
            signal = FILES.get(name, "ibi")
            note = f"{name} is missing: no {signal} (an E4 export has {', '.join(SESSION_FILES)})"
            warn_note(notes, note, f"{folder.path}: {note}")


def _short_spans(spans: dict[str, tuple[float, float]], notes: list[str]) -> None:
    """A warning and a note for each file that starts ``SHORT_GAP_S`` after the session (all files
    together) or ends that much before it (``IBI.csv``: and ``SHORT_GAP_SHARE`` of the session)."""
    start_s = min(t0 for t0, _ in spans.values())
    end_s = max(end for _, end in spans.values())
    session_s = end_s - start_s
    for name, (t0, end) in spans.items():
        late_s, early_s = t0 - start_s, end_s - end
        if name == "IBI.csv" and early_s <= SHORT_GAP_SHARE * session_s:
            early_s = 0.0  # beats are sparse: their end alone says little
        gaps = [f"{what} {gap_s / 60:.1f} min {side}" for what, gap_s, side in
                (("starts", late_s, "after"), ("ends", early_s, "before")) if gap_s > SHORT_GAP_S]
        if gaps:
            note = (f"{name} covers {(end - t0) / 60:.1f} of {session_s / 60:.1f} min "
                    f"({(end - t0) / session_s:.0%}), {' and '.join(gaps)} the session")
            warn_note(notes, note)


def read_e4(path: str | Path) -> Recording:
    """Read an Empatica E4 export (folder or zip, the session's files at the top or in one
    sub-folder). Missing signal files are absent, files without samples left out, and files
    that cover less of the session than the others noted: each with a warning and a note."""
    path = Path(path)
    folder = Folder(path, SESSION_FILES)
    notes: list[str] = [] if folder.session_dir == "." else [f"the session's files are in {folder.session_dir}/"]
    streams: dict[str, Stream] = {}
    spans: dict[str, tuple[float, float]] = {}  # file -> (its start time, its last sample's time)
    _missing_files(folder, notes)
    for name, signal in (*FILES.items(), ("IBI.csv", "ibi")):
        if name in folder.names:
            if signal == "ibi":
                stream, t0 = _ibi(folder, notes)
            else:
                stream = _regular(folder, name, signal, notes)
                t0 = None if stream is None else stream.t0
            if stream is not None and len(stream.values):
                streams[signal], spans[name] = stream, (t0, stream.end_s)
            else:
                no_samples(folder.where(name), signal, notes)
    if not streams:
        raise InputFormatError(f"{path}: no E4 signal files with samples (EDA.csv, BVP.csv, ...) found")
    _check_one_session(folder, spans)
    _short_spans(spans, notes)
    if "hr" in streams:  # E4 writes HR at 1 Hz, but heart rate is an irregular signal on the wire
        streams["hr"] = irregular_stream("hr", streams["hr"].times_s(), streams["hr"].values,
                                         folder.where("HR.csv"), notes, hint=UNIT_HINTS["hr"])
    return Recording(str(path), "e4", streams, _tags(folder), notes=notes)
