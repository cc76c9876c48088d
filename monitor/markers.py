"""Event markers: a time, a kind and a label ("therapy session", "medication change", a task tag).

Markers come from a recording (the E4 ``tags*.csv``, EmotiBit user notes, the ``marker`` lines
of an anxmon recording) or from a CSV file (``--markers FILE``). ``anxmon analyze`` writes them
to ``markers.csv`` in its output folder and ``anxmon report`` compares the wearer's stress load
before and after the markers of each kind.

The CSV (read by ``read_markers``, written by ``write_markers``)::

    unix_s,kind,label
    1700000000.0,therapy session,session 3
    1700600000.0,medication change,

``unix_s`` (unix seconds, UTC, or an ISO 8601 time with its zone: ``2023-11-14T23:13:20+01:00``,
``...Z``; one without a zone is refused, as a wall-clock time read as UTC would move the marker)
is required; ``label`` and ``kind`` are optional columns. Without
a kind, a marker's kind is its label, or ``marker`` when that is empty too, so a file of labels
alone groups markers by label. A file without a header (one unix time per line, as the E4
writes ``tags.csv``) is read as ``unix_s[,label[,kind]]``; named as the E4 names it
(``tags*.csv``, ``is_tags_file``), its markers without a label are of kind ``tag``, as the E4
reader reads them, so the same tags given with ``--markers`` are not counted twice.

Example
-------
>>> import io
>>> read_markers_text("unix_s,label\\n1700000000,therapy session\\n", "example.csv")
[Marker(t_s=1700000000.0, kind='therapy session', label='therapy session')]
>>> read_markers_text("1644228196\\n1644228572\\n", "times.csv")[1]
Marker(t_s=1644228572.0, kind='marker', label='')
"""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, NamedTuple

from monitor.errors import InputFormatError, not_a_file
from monitor.wire import unix_s_problem  # noqa: F401 (its home is the wire contract; imported from here too)

COLUMNS = ("unix_s", "kind", "label")
DEFAULT_KIND = "marker"
TAG_KIND = "tag"  # the E4's tags (its button)


def is_tags_file(name: str) -> bool:
    """Whether a file name is the E4's tags file (``tags.csv``, ``tags_S02.csv``)."""
    return name.startswith("tags") and name.endswith(".csv")


class Marker(NamedTuple):
    """One event: ``t_s`` (unix s), ``kind`` (what groups markers in a report), free ``label``."""

    t_s: float
    kind: str = DEFAULT_KIND
    label: str = ""


def make_marker(t_s: float, label: str = "", kind: str = "") -> Marker:
    """A marker whose kind falls back to its label, then to ``marker``."""
    label, kind = label.strip(), kind.strip()
    return Marker(float(t_s), kind or label or DEFAULT_KIND, label)


def utc_text(t: float) -> str:
    """``2022-02-07 09:52:54 UTC``: a unix time for messages."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


ISO_EXAMPLE = "2022-02-07T10:00:00+01:00"


def iso_unix_s(text: str, zone_required: bool = False) -> float | None:
    """Unix seconds of an ISO 8601 date/time (``2022-02-07T10:00:00+01:00``, ``...Z``), None when
    ``text`` is not one. Without a zone it is UTC, or refused with ``zone_required`` (a markers
    file: a wall-clock time read as UTC would move the marker by the wearer's offset).

    >>> iso_unix_s("2022-02-07T10:00:00+01:00"), iso_unix_s("2022-02-07 09:00Z"), iso_unix_s("x")
    (1644224400.0, 1644224400.0, None)
    """
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        if zone_required:  # (a date alone takes no zone: it needs a time of day too)
            example = f"{text.strip()}T00:00Z" if len(text.strip()) <= 10 else ISO_EXAMPLE
            raise InputFormatError(f"time {text.strip()!r:.40} names no time zone: add Z (UTC) or the offset of the "
                                   f"wearer's clock, e.g. {example}")
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def read_markers_text(text: str, where: str, headerless_kind: str = DEFAULT_KIND) -> list[Marker]:
    """Parse a markers CSV (see the module docstring); errors name the file and the line.
    ``headerless_kind``: the kind of a file without a header's markers without a label or kind."""
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if _is_number(header[0]) or iso_unix_s(rows[0][0]) is not None:
        names, body, first_line = list(COLUMNS[:1]) + ["label", "kind"], rows, 1
        default_kind = headerless_kind
    else:
        default_kind = ""
        unknown = [h for h in header if h not in COLUMNS]
        if "unix_s" not in header or unknown:
            raise InputFormatError(
                f"{where}: expected a CSV with columns unix_s[,label][,kind] (unix seconds, or ISO 8601 with a zone), "
                f"found header {','.join(rows[0])!r}"
            )
        names, body, first_line = header, rows[1:], 2
    out = []
    for n, row in enumerate(body, start=first_line):
        if len(row) > len(names):
            raise InputFormatError(f"{where}, line {n}: {len(row)} fields, expected at most {len(names)} ({','.join(names)})")
        cells = dict(zip(names, (c.strip() for c in row)))
        cell = cells.get("unix_s", "")
        try:
            t = _number(cell)
            t = iso_unix_s(cell, zone_required=True) if t is None else t
        except InputFormatError as exc:
            raise InputFormatError(f"{where}, line {n}: {exc}") from None
        if t is None:
            raise InputFormatError(f"{where}, line {n}: unix_s {cell!r:.30} is neither unix seconds nor an ISO 8601 "
                                   f"time with its zone ({ISO_EXAMPLE})")
        if problem := unix_s_problem(t):
            raise InputFormatError(f"{where}, line {n}: unix_s {cells['unix_s']!r:.30} {problem}")
        label, kind = cells.get("label", ""), cells.get("kind", "")
        out.append(make_marker(t, label, kind or ("" if label else default_kind)))
    return sorted(out)


def read_markers(path: str | Path) -> list[Marker]:
    """Read a markers CSV file (``--markers FILE`` or an analyze folder's ``markers.csv``)."""
    path = Path(path)
    if not path.is_file():
        raise not_a_file("markers file", path)
    data = path.read_bytes()
    try:  # utf-8-sig: a spreadsheet saves a byte-order mark before the header
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # (replaced, a label's "ü" of Windows-1252 became "\ufffd" unseen)
        line = data[:exc.start].count(b"\n") + 1
        raise InputFormatError(f"{path}, line {line}: not UTF-8 text (byte "
                               f"0x{data[exc.start]:02x}): save it as UTF-8 (a spreadsheet: \"CSV UTF-8\"), so "
                               "that its labels are read as written") from None
    return read_markers_text(text, str(path), TAG_KIND if is_tags_file(path.name) else DEFAULT_KIND)


def write_markers(path: str | Path, markers: Iterable[Marker]) -> None:
    """Write ``unix_s,kind,label`` rows (sorted by time); ``read_markers`` reads them back."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for m in sorted(markers):
            w.writerow([repr(float(m.t_s)), m.kind, m.label])


def merge_markers(*groups: Iterable[Marker]) -> list[Marker]:
    """All markers of the groups, sorted, each distinct (time, kind, label) once."""
    return sorted({m for group in groups for m in group})


def add_markers_file(markers: list[Marker], path: str | Path, notes: list[str]) -> list[Marker]:
    """``markers`` and those of the markers CSV ``path`` (``--markers``), merged (``merge_markers``);
    the rows that add no marker (given twice, or already among ``markers``) are counted in a note
    in ``notes``, also a warning, as the anxmon recording reader counts its duplicates
    ("m.csv: 1 of 3 marker rows repeat a marker (the same time, kind and label): counted once")."""
    from monitor.readers.common import warn_note

    rows = read_markers(path)
    merged = merge_markers(markers, rows)
    repeated = len(rows) - (len(merged) - len(set(markers)))
    if repeated:
        warn_note(notes, f"{path}: {repeated} of {len(rows)} marker rows repeat a marker (the same time, kind and "
                         "label): counted once")
    return merged


def _is_number(text: str) -> bool:
    return _number(text) is not None


def _number(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) else None
