"""Recorded sessions: canonical streams in the wire contract's units, played as sample batches.

A ``Recording`` holds one ``Stream`` per signal (``monitor.wire.SIGNALS``: ``bvp``, ``ecg``,
``eda``, ``temp``, ``acc``, ``hr``, ``ibi``), event markers and, when known, per-second stress
labels. ``read_recording`` detects the format and calls the matching reader of
``monitor.readers`` (one module per format: Empatica E4, EmotiBit parsed data, Polar H10 CSV,
Garmin export, anxmon's own JSON-lines recordings). ``Recording.batches()`` cuts the streams
into sample batches in the order a live device would send them, so ``analyze``, ``replay`` and
the live service see the same input.

Example
-------
>>> rec = read_recording("../shared/data/stress-predict/S02")      # doctest: +SKIP
>>> sorted(rec.streams), round(rec.duration_s), rec.format           # doctest: +SKIP
(['acc', 'bvp', 'eda', 'hr', 'ibi', 'temp'], 3565, 'e4')
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from monitor.errors import InputFormatError
from monitor.markers import Marker
from monitor.wire import SampleBatch, check_id


@dataclass
class Stream:
    """One signal of a recording: regular (``t0``, ``fs``) or irregular (``t``).

    A regular stream with gaps has ``segments``: ``(start index, t0)`` of each run of samples
    at ``fs`` (the first is ``(0, t0)``); None means one run from ``t0``.
    """

    signal: str
    values: np.ndarray
    t0: float | None = None
    fs: float | None = None
    t: np.ndarray | None = None
    segments: list[tuple[int, float]] | None = None

    def runs(self) -> list[tuple[int, int, float]]:
        """``(first index, end index, t0)`` of each run of regular samples."""
        segs = self.segments or [(0, float(self.t0))]
        ends = [i for i, _ in segs[1:]] + [len(self.values)]
        return [(i0, i1, t0) for (i0, t0), i1 in zip(segs, ends)]

    def times_s(self) -> np.ndarray:
        if self.t is not None:
            return self.t
        if self.segments is None:
            return self.t0 + np.arange(len(self.values)) / self.fs
        return np.concatenate([t0 + np.arange(i1 - i0) / self.fs for i0, i1, t0 in self.runs()])

    @property
    def start_s(self) -> float:
        """Time of the first sample (unix s)."""
        return float(self.t[0]) if self.t is not None else float(self.t0)

    @property
    def end_s(self) -> float:
        """Time the stream covers up to (unix s): one sample period after the last sample of a
        regular stream (its last sample stands for that long), the last reading of an irregular
        one. (A ``SampleBatch.end_s`` is its last sample's time.)"""
        if self.t is not None:
            return float(self.t[-1])
        i0, i1, t0 = self.runs()[-1]
        return float(t0 + (i1 - i0) / self.fs)

    def between(self, start_s: float, end_s: float) -> "Stream | None":
        """The samples with ``start_s <= time < end_s`` (None when there are none)."""
        if self.t is not None:
            keep = (self.t >= start_s) & (self.t < end_s)
            return Stream(self.signal, self.values[keep], t=self.t[keep]) if keep.any() else None
        parts, segments, count = [], [], 0
        for i0, i1, t0 in self.runs():
            lo = i0 + max(0, int(np.ceil((start_s - t0) * self.fs)))
            hi = i0 + min(i1 - i0, max(0, int(np.ceil((end_s - t0) * self.fs))))
            if hi > lo:
                parts.append(self.values[lo:hi])
                segments.append((count, t0 + (lo - i0) / self.fs))
                count += hi - lo
        if not parts:
            return None
        return Stream(self.signal, np.concatenate(parts), t0=segments[0][1], fs=self.fs,
                      segments=segments if len(segments) > 1 else None)


@dataclass
class Recording:
    """A session: streams by signal, event markers, and (when known) per-second stress labels.

    ``reference`` holds series a device computed that are not wire signals (e.g. Garmin's own
    stress score): kept for researchers, never played. ``notes`` says what the reader estimated
    or dropped (sample rates fitted from timestamps, values outside the contract's range).
    """

    source: str
    format: str
    streams: dict[str, Stream]
    markers: list[Marker] = field(default_factory=list)
    labels: tuple[np.ndarray, np.ndarray] | None = None  # (unix_s, stress 0/1)
    reference: dict[str, Stream] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wearer: str | None = None

    @property
    def start_s(self) -> float:
        return min(s.start_s for s in self.streams.values())

    @property
    def end_s(self) -> float:
        return max(s.end_s for s in self.streams.values())

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def between(self, start_s: float, end_s: float) -> "Recording":
        """The part of the recording with ``start_s <= time < end_s`` (unix s): streams, markers, labels."""
        streams = {k: part for k, s in self.streams.items() if (part := s.between(start_s, end_s)) is not None}
        if not streams:
            raise InputFormatError(f"{self.source}: no samples between {start_s:.0f} and {end_s:.0f}")
        labels = None
        if self.labels is not None:
            keep = (self.labels[0] >= start_s) & (self.labels[0] < end_s)
            labels = (self.labels[0][keep], self.labels[1][keep]) if keep.any() else None
        reference = {k: part for k, s in self.reference.items() if (part := s.between(start_s, end_s)) is not None}
        return Recording(self.source, self.format, streams, [m for m in self.markers if start_s <= m.t_s < end_s],
                         labels, reference, list(self.notes), self.wearer)

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
        seq = 0
        for r0, r1, run_t0 in stream.runs():
            for i in range(r0, r1, per):
                values = stream.values[i:min(i + per, r1)]
                t0 = run_t0 + (i - r0) / stream.fs
                yield t0 + len(values) / stream.fs, SampleBatch(stream.signal, seq, values, t0=t0, fs=stream.fs)
                seq += 1
        return
    if not len(stream.t):
        return
    bins = np.floor((stream.t - stream.t[0]) / batch_s).astype(np.int64)
    cuts = np.flatnonzero(np.diff(bins)) + 1
    for seq, (i0, i1) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, len(bins)])):
        due = stream.t[0] + (bins[i0] + 1) * batch_s
        yield due, SampleBatch(stream.signal, seq, stream.values[i0:i1], t=stream.t[i0:i1])


# ------------------------------------------------------------------------------ labels


def read_labels_text(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse a labels CSV: header ``unix_s,stress`` then one row per second (stress 0 or 1).
    Spaces around the header's names and the values are allowed; blank lines are skipped. A value
    that is not a number, or an empty one, is an ``InputFormatError`` naming its line and text.

    >>> read_labels_text("unix_s,stress\\n1644227583,0\\n1644227584,abc\\n", "labels.csv")
    Traceback (most recent call last):
    ...
    monitor.errors.InputFormatError: labels.csv, line 3: stress 'abc' is not a number
    """
    from monitor.readers.common import csv_frame

    try:
        frame = csv_frame(text.lstrip("\ufeff"), skipinitialspace=True, dtype=str, keep_default_na=False)
        frame.columns = [str(c).strip() for c in frame.columns]
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputFormatError(f"{where}: expected a CSV with columns unix_s,stress: {str(exc).splitlines()[0]}") from None
    missing = [c for c in ("unix_s", "stress") if c not in frame.columns]
    if missing:
        header = ",".join(map(str, frame.columns))[:60]
        raise InputFormatError(f"{where}: expected a CSV with columns unix_s,stress, found the header {header!r} "
                               f"(no {' and no '.join(missing)} column)")
    raw = {c: frame[c].astype(str).str.strip() for c in ("unix_s", "stress")}
    numbers = {c: pd.to_numeric(raw[c], errors="coerce").to_numpy(dtype=float) for c in raw}
    bad = {c: np.flatnonzero(np.isnan(numbers[c])) for c in raw}
    if any(len(rows) for rows in bad.values()):
        row, column = min((int(rows[0]), c) for c, rows in bad.items() if len(rows))  # unix_s first on a tie
        text_of = raw[column].iloc[row]
        problem = f"{text_of!r:.30} is not a number" if text_of else "is empty"
        raise InputFormatError(f"{where}, line {_line_of_row(text, row)}: {column} {problem}")
    return numbers["unix_s"], numbers["stress"]


def _line_of_row(text: str, row: int) -> int:
    """The file line (1-based) of data row ``row`` of a CSV read by pandas, which skips blank lines
    (the first non-blank line is the header)."""
    lines = [n for n, line in enumerate(io.StringIO(text, newline=None), start=1) if line.strip()]
    return lines[row + 1] if row + 1 < len(lines) else row + 2


def read_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    from monitor.readers.common import decode

    path = Path(path)
    return read_labels_text(decode(path.read_bytes()), str(path))


# ------------------------------------------------------------------------------ entry point


def wearer_id_for(recording: Recording) -> str:
    """The recording's wearer, else its source's name made into a valid id (``S02`` -> ``s02``;
    accents dropped, not the letters: ``Sessión ü`` -> ``session-u``): the default wearer of
    ``analyze``, ``report`` and ``replay``.

    >>> wearer_id_for(Recording("/data/Sessión ü", "e4", {})), wearer_id_for(Recording("S02.zip", "e4", {}))
    ('session-u', 's02')
    """
    if recording.wearer:
        return check_id("wearer", recording.wearer)
    letters = unicodedata.normalize("NFKD", Path(str(recording.source)).stem)  # é: e and a combining accent
    plain = "".join(c for c in letters if not unicodedata.combining(c))
    name = re.sub(r"[^a-z0-9_-]+", "-", plain.lower()).strip("-")[:64]
    return name or "replay"


def read_recording(path: str | Path) -> Recording:
    """Read a recording of any supported format (detected); a clear error says what was expected.

    See ``monitor.readers`` for the formats and the detection rules.
    """
    from monitor.readers import read_any

    return read_any(Path(path))
