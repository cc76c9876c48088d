"""anxmon's own recording file: JSON lines of wire-format sample batches and markers.

The first line is a header, every other line one record::

    {"anxmon_recording": 1, "wearer": "alice", "source": "S02", "created_s": 1700000000.0}
    {"type": "batch", "device": "e4", "signal": "eda", "batch": {"v": 1, "seq": 0, "t0": ..., "fs": 4.0, "values": [...]}}
    {"type": "marker", "t": 1700000100.0, "kind": "therapy session", "label": "session 3"}

``batch`` is exactly the MQTT payload of the wire contract v1 (``monitor.wire.encode_batch``),
so a recorder can write what it received without re-encoding it, and the reader checks every
batch with ``decode_batch`` as the live service does, and its times with ``unix_s_problem``
(times in ms are refused). A duplicate (the same device, signal, seq and start time: a redelivered
batch; a marker with the same time, kind and label) is kept once and counted; batches out of time order (merged files, redelivery order) are
sorted. A batch that starts before the previous one of its signal ends is refused (a declared
``fs`` that contradicts the batches' spacing, or two recordings merged). Empty batches and record
types this version does not know are skipped and counted in the notes, so later versions can add
some. One signal from two devices is refused (the monitor takes each signal from one device).
A recording cut by a crash is read without its last line when that line is cut short (no line end
after it, or not a JSON object), with a warning and a note (``common.complete_lines``, the rule
of every reader); a damaged line before the last is refused, naming the line.

``RecordingWriter`` writes the format (``write_recording`` writes a whole ``Recording``);
``read_anxmon`` reads it back into a ``Recording`` with the same streams.

Example
-------
>>> import tempfile, pathlib
>>> from monitor.recordings import Stream
>>> rec = Recording("x", "e4", {"eda": Stream("eda", np.full(8, 2.0), t0=1.7e9, fs=4.0)})
>>> path = pathlib.Path(tempfile.mkdtemp()) / "x.jsonl"
>>> write_recording(path, rec, wearer="alice")
>>> back = read_anxmon(path)
>>> back.wearer, back.streams["eda"].fs, back.streams["eda"].values.tolist() == [2.0] * 8
('alice', 4.0, True)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monitor.errors import InputFormatError, WireError
from monitor.markers import Marker, make_marker, unix_s_problem
from monitor.readers.common import complete_lines, irregular_stream, lines_with_progress, open_text
from monitor.recordings import Recording, Stream
from monitor.wire import SIGNALS, SampleBatch, decode_batch, encode_batch

VERSION = 1
HEADER_KEY = "anxmon_recording"
DEFAULT_DEVICE = "recording"


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def looks_like_anxmon(line: str) -> bool:
    return line.startswith("{") and f'"{HEADER_KEY}"' in line


class RecordingWriter:
    """Append batches and markers to an anxmon recording file (context manager).

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> with RecordingWriter(path, wearer="alice") as w:
    ...     w.write_batch("e4", SampleBatch("hr", 0, np.array([70.0]), t=np.array([1.7e9])))
    ...     w.write_marker(Marker(1.7e9, "tag", ""))
    >>> len(path.read_text().splitlines())
    3
    """

    def __init__(self, path: str | Path, wearer: str | None = None, source: str | None = None,
                 created_s: float | None = None):
        self.path = Path(path)
        self._f = open(self.path, "w", encoding="utf-8")
        header = {HEADER_KEY: VERSION, "wearer": wearer, "source": source, "created_s": created_s}
        self._f.write(json.dumps(header) + "\n")

    def write_payload(self, device: str, signal: str, payload: bytes | str) -> None:
        """One batch as its wire payload (JSON v1 bytes, as received over MQTT)."""
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        self._f.write(f'{{"type":"batch","device":{json.dumps(device)},"signal":{json.dumps(signal)},"batch":{text}}}\n')

    def write_batch(self, device: str, batch: SampleBatch) -> None:
        self.write_payload(device, batch.signal, encode_batch(batch))

    def write_marker(self, marker: Marker) -> None:
        self._f.write(json.dumps({"type": "marker", "t": float(marker.t_s), "kind": marker.kind,
                                  "label": marker.label}) + "\n")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_recording(path: str | Path, recording: Recording, wearer: str | None = None,
                    device: str = DEFAULT_DEVICE, batch_s: float = 1.0) -> None:
    """Write ``recording`` (its markers, then its batches in live order) as an anxmon recording."""
    with RecordingWriter(path, wearer if wearer is not None else recording.wearer, recording.source) as w:
        for marker in recording.markers:
            w.write_marker(marker)
        for batch in recording.batches(batch_s):
            w.write_batch(device, batch)


def read_anxmon(path: str | Path) -> Recording:
    """Read an anxmon recording (``.jsonl``) back into canonical streams."""
    path = Path(path)
    where = str(path)
    notes: list[str] = []
    markers: list[Marker] = []
    markers_seen: set[Marker] = set()
    parts: dict[str, list[tuple[int, SampleBatch]]] = {}  # signal -> (line, batch)
    device_of: dict[str, str] = {}
    seen: set[tuple[str, str, int, float]] = set()
    skipped: dict[str, int] = {}
    header = None
    with open_text(path) as f:
        for n, line in complete_lines(lines_with_progress(f, path), where, notes, _is_json_object):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFormatError(f"{where}, line {n}: not valid JSON ({exc.msg}; file damaged?)") from None
            if not isinstance(record, dict):
                raise InputFormatError(f"{where}, line {n}: expected a JSON object")
            if header is None:
                header = _check_header(record, where)
                continue
            kind = record.get("type")
            if kind == "batch":
                device, signal = record.get("device"), record.get("signal")
                if signal not in SIGNALS or not isinstance(device, str) or not isinstance(record.get("batch"), dict):
                    raise InputFormatError(f"{where}, line {n}: a batch record needs device, a signal of "
                                           f"{', '.join(SIGNALS)} and a batch object")
                try:
                    batch = decode_batch(json.dumps(record["batch"]), signal)
                except WireError as exc:
                    raise InputFormatError(f"{where}, line {n}: {signal} batch refused: {exc}") from None
                if device_of.setdefault(signal, device) != device:
                    raise InputFormatError(f"{where}, line {n}: {signal} from two devices ({device_of[signal]} and "
                                           f"{device}); the monitor takes each signal from one device")
                if not len(batch):
                    skipped["empty batches"] = skipped.get("empty batches", 0) + 1
                    continue
                for t in (batch.start_s, batch.end_s):
                    if problem := unix_s_problem(t):
                        raise InputFormatError(f"{where}, line {n}: {signal} batch {'t0' if batch.regular else 't'} "
                                               f"{t:.15g} {problem}")
                key = (device, signal, batch.seq, batch.start_s)
                if key in seen:
                    skipped["duplicate batches"] = skipped.get("duplicate batches", 0) + 1
                    continue
                seen.add(key)
                parts.setdefault(signal, []).append((n, batch))
            elif kind == "marker":
                t = record.get("t")
                if type(t) not in (int, float):
                    raise InputFormatError(f"{where}, line {n}: a marker needs a time 't' in unix seconds")
                if problem := unix_s_problem(t):
                    raise InputFormatError(f"{where}, line {n}: marker time {t!r:.30} {problem}")
                marker = make_marker(t, str(record.get("label") or ""), str(record.get("kind") or ""))
                if marker in markers_seen:  # recordings merged: the service records a marker once too
                    skipped["duplicate markers"] = skipped.get("duplicate markers", 0) + 1
                    continue
                markers_seen.add(marker)
                markers.append(marker)
            else:
                key = f"records of type {kind!r:.30}"
                skipped[key] = skipped.get(key, 0) + 1
    if header is None:
        raise InputFormatError(f"{where}: empty file (expected an anxmon recording header line)")
    notes += [f"skipped {count} {what}" for what, count in sorted(skipped.items())]
    streams = {signal: _join(signal, batches, where, notes) for signal, batches in sorted(parts.items())}
    if not streams:
        raise InputFormatError(f"{where}: an anxmon recording without any sample batch")
    return Recording(str(header.get("source") or path), "anxmon", streams, sorted(markers), notes=notes,
                     wearer=header.get("wearer"))


def _check_header(record: dict, where: str) -> dict:
    version = record.get(HEADER_KEY)
    if version is None:
        raise InputFormatError(f"{where}: line 1 is not an anxmon recording header "
                               f'(expected {{"{HEADER_KEY}": {VERSION}, "wearer": ...}})')
    if version != VERSION or type(version) is not int:
        raise InputFormatError(f"{where}: anxmon recording version {version!r}; this anxmon reads version {VERSION}")
    return record


def _join(signal: str, batches: list[tuple[int, SampleBatch]], where: str, notes: list[str]) -> Stream:
    """One stream from a signal's (file line, batch) pairs, in time order whatever the file's order.

    Readings (``hr``, ``ibi``) are merged by time. Regular batches make runs of batches that
    continue each other. A batch that starts before the previous one ends loses its overlapping
    samples, as it does live (a device clock set back: the service accepts such batches and the
    recorder keeps them), with a note; most batches overlapping is a declared rate that does not
    fit the batches, refused.
    """
    back = sum(b.start_s < a.start_s for (_, a), (_, b) in zip(batches, batches[1:]))
    if back:
        notes.append(f"{signal}: batches out of time order at {back} place(s) in the file; sorted")
    batches = sorted(batches, key=lambda item: item[1].start_s)
    if not SIGNALS[signal].regular:
        return irregular_stream(signal, np.concatenate([b.t for _, b in batches]),
                                np.concatenate([b.values for _, b in batches]), where, notes)
    fs = batches[0][1].fs
    segments, pieces, count, expected, last = [], [], 0, None, None
    overlaps, dropped = [], 0  # (line, batch, the previous (line, batch)); samples dropped
    for n, b in batches:
        if b.fs != fs:
            raise InputFormatError(f"{where}, line {n}: {signal} changes its sample rate from {fs:g} to {b.fs:g} Hz; "
                                   "a recording keeps one rate per signal")
        values, t0 = b.values, float(b.t0)
        if expected is not None and t0 < expected - 0.5 / fs:
            overlaps.append((n, b, last))
            skip = min(len(values), int(round((expected - t0) * fs)))
            values, t0, dropped = values[skip:], t0 + skip / fs, dropped + skip
            if not len(values):
                continue
        if expected is None or abs(t0 - expected) > 0.5 / fs:
            segments.append((count, t0))
        pieces.append(values)
        count += len(values)
        expected, last = t0 + len(values) / fs, (n, b)
    if overlaps and len(overlaps) > max(2, len(batches) // 2):  # not a clock step: the rate is wrong
        n, b, (line, previous) = overlaps[0]
        spacing = b.t0 - previous.t0
        cause = (f"declared fs {fs:g} Hz, but {len(previous)} samples every {spacing:.3g} s is "
                 f"{len(previous) / spacing:.3g} Hz" if spacing > 0 else "two recordings merged?")
        raise InputFormatError(f"{where}, line {n}: {signal} batch starts {previous.t0 + len(previous) / fs - b.t0:.3g} s "
                               f"before the one of line {line} ends, and so do {len(overlaps) - 1} more ({cause})")
    if overlaps:
        notes.append(f"{signal}: {len(overlaps)} batch(es) overlapped the one before (a device clock set back?): "
                     f"their {dropped} overlapping sample(s) dropped, as live")
    if len(segments) > 1:
        notes.append(f"{signal}: {len(segments)} runs of batches (gaps between them)")
    return Stream(signal, np.concatenate(pieces), t0=segments[0][1], fs=fs,
                  segments=segments if len(segments) > 1 else None)
