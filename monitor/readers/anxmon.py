"""anxmon's own recording file: JSON lines of wire-format sample batches and markers.

The first line is a header, every other line one record::

    {"anxmon_recording": 1, "wearer": "alice", "source": "S02", "created_s": 1700000000.0}
    {"type": "batch", "device": "e4", "signal": "eda", "batch": {"v": 1, "seq": 0, "t0": ..., "fs": 4.0, "values": [...]}}
    {"type": "marker", "t": 1700000100.0, "kind": "therapy session", "label": "session 3"}

``batch`` is exactly the MQTT payload of the wire contract v1 (``monitor.wire.encode_batch``),
so a recorder can write what it received without re-encoding it, and the reader checks every
batch with ``decode_batch`` as the live service does. Batches of one (device, signal) are
checked for duplicates with ``StreamTracker`` (a redelivered batch is kept once; the recording's
own time is its clock, so a pause in it is not "future"). Record types
this version does not know are skipped and counted in the notes, so later versions can add some.
One signal from two devices is refused (the monitor takes each signal from one device).

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
from monitor.recordings import Recording, Stream
from monitor.wire import SIGNALS, SampleBatch, StreamTracker, decode_batch, encode_batch

VERSION = 1
HEADER_KEY = "anxmon_recording"
DEFAULT_DEVICE = "recording"


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
    parts: dict[str, list[SampleBatch]] = {}
    device_of: dict[str, str] = {}
    trackers: dict[tuple[str, str], StreamTracker] = {}
    skipped: dict[str, int] = {}
    header = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFormatError(f"{where}, line {n}: not valid JSON ({exc.msg}; file cut short?)") from None
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
                    verdict = trackers.setdefault((device, signal), StreamTracker()).check(batch, now_s=batch.end_s)
                except WireError as exc:
                    raise InputFormatError(f"{where}, line {n}: {signal} batch refused: {exc}") from None
                if device_of.setdefault(signal, device) != device:
                    raise InputFormatError(f"{where}, line {n}: {signal} from two devices ({device_of[signal]} and "
                                           f"{device}); the monitor takes each signal from one device")
                if verdict.accept:
                    parts.setdefault(signal, []).append(batch)
                else:
                    skipped["duplicate batches"] = skipped.get("duplicate batches", 0) + 1
            elif kind == "marker":
                t = record.get("t")
                if type(t) not in (int, float):
                    raise InputFormatError(f"{where}, line {n}: a marker needs a time 't' in unix seconds")
                if problem := unix_s_problem(t):
                    raise InputFormatError(f"{where}, line {n}: marker time {t!r:.30} {problem}")
                markers.append(make_marker(t, str(record.get("label") or ""), str(record.get("kind") or "")))
            else:
                key = f"records of type {kind!r:.30}"
                skipped[key] = skipped.get(key, 0) + 1
    if header is None:
        raise InputFormatError(f"{where}: empty file (expected an anxmon recording header line)")
    notes += [f"skipped {count} {what}" for what, count in sorted(skipped.items())]
    streams = {signal: _join(signal, batches, where) for signal, batches in parts.items()}
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


def _join(signal: str, batches: list[SampleBatch], where: str) -> Stream:
    """One stream from a signal's batches: runs of regular batches that continue each other."""
    if not SIGNALS[signal].regular:
        batches = sorted(batches, key=lambda b: b.start_s)
        return Stream(signal, np.concatenate([b.values for b in batches]),
                      t=np.concatenate([b.t for b in batches]))
    batches = sorted(batches, key=lambda b: b.t0)
    fs = batches[0].fs
    segments, count = [], 0
    expected = None
    for b in batches:
        if b.fs != fs:
            raise InputFormatError(f"{where}: {signal} changes its sample rate from {fs:g} to {b.fs:g} Hz; "
                                   "a recording keeps one rate per signal")
        if expected is None or abs(b.t0 - expected) > 0.5 / fs:
            segments.append((count, float(b.t0)))
        count += len(b.values)
        expected = b.t0 + len(b.values) / fs
    values = np.concatenate([b.values for b in batches])
    return Stream(signal, values, t0=segments[0][1], fs=fs, segments=segments if len(segments) > 1 else None)
