"""Helpers shared by the readers: folders and zips, timestamped samples to canonical streams.

* ``Folder``: the files of one session in a folder or a zip archive, by name.
* ``regular_stream``: samples with their own timestamps (EmotiBit parsed data, Polar ECG) to a
  regular stream: the rate and each run's start are fitted to the timestamps by least squares
  (the samples are not resampled); a jump longer than ``gap_s`` starts a new run.
* ``irregular_stream``: ``hr``/``ibi`` readings, sorted, with values the wire contract would
  refuse dropped one by one (and counted in the recording's notes), as the bridge does.
* ``check_range``: the one rule for a column against the contract's range: mostly outside it
  is not that signal in that unit (refused), a few outside are counted in the notes.
* ``decode``/``open_text``: the text of a file (a byte-order mark dropped), ``lines_with_progress``
  its lines with a progress bar on a terminal; ``no_samples``: the warning and note for a signal
  file without samples.
* ``warn_note``: a note that is also a warning, logged on ``NOTES_LOG`` (``anxmon analyze``
  prints its notes itself, so it holds these warnings back: each is shown once).
* ``without_cut_last_line`` (a whole text) and ``complete_lines`` (a file read line by line): the
  one rule of every reader for a file cut short. Its last non-blank line is left out, with a
  warning and a note, when no line end follows it (a row cut mid-number can still parse: ``-31``
  of ``-31.25``; every row a device or the recorder writes ends with one) or when it does not
  parse as a row. A damaged line before the last stays an error naming its line (the reader's).
  A file's first non-blank line (its header) is never left out.
* ``csv_frame``: ``pandas.read_csv`` of a text, where a Ctrl-C stays a Ctrl-C (not a damaged file).
* ``chain_beats``: beat times from beat-to-beat intervals stamped with an arrival time, each
  group chained by ``firmware_bridge.ble_hrs.chain_rr``, as ``HrsConverter`` does it live;
  ``without_backward_beats`` leaves out, as it does, beats a backward re-anchor puts before others.

Example
-------
>>> t = 1.7e9 + np.r_[np.arange(100) / 25.0, 10 + np.arange(50) / 25.0]
>>> s = regular_stream("eda", t, np.ones(150), "example", [])
>>> s.fs, s.segments
(25.0, [(0, 1700000000.0), (100, 1700000010.0)])
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import numpy as np

from firmware_bridge.ble_hrs import chain_rr
from monitor.errors import InputFormatError
from monitor.recordings import Stream
from monitor.wire import SIGNALS

MOSTLY_OUT_OF_RANGE = 0.5  # above this share of refused values a column is not that signal at all
OTHER_FILE = "columns swapped or another file?"  # check_range's default hint
ENCODING = "utf-8-sig"  # UTF-8, without the byte-order mark a spreadsheet may write first

log = logging.getLogger(__name__)
NOTES_LOG = logging.getLogger("monitor.readers.notes")  # the warnings that are also a recording's notes


READ_FAILED = "Calling read(nbytes) on source failed"  # pandas' C parser: its read callback raised


def csv_frame(text, **kwargs):
    """``pandas.read_csv`` of ``text`` (a ``str``, or a text buffer). A Ctrl-C (or SIGTERM) while
    pandas reads raises ``KeyboardInterrupt``: its C parser turns the exception the signal raised
    during its read callback into a ``ParserError`` ("Calling read(nbytes) on source failed"),
    which a reader would report as a damaged file (a buffer's read fails no other way).

    >>> csv_frame("t,x\\n1,2\\n").x.tolist()
    [2]
    """
    import io

    import pandas as pd

    try:
        return pd.read_csv(io.StringIO(text) if isinstance(text, str) else text, **kwargs)
    except pd.errors.ParserError as exc:
        if READ_FAILED in str(exc):
            raise KeyboardInterrupt from None
        raise


def warn_note(notes: list[str], note: str, warning: str | None = None) -> None:
    """Add ``note`` to a recording's ``notes`` and log it (or ``warning``, its longer wording) as a
    warning on ``NOTES_LOG``.

    >>> notes = []
    >>> warn_note(notes, "HR.csv is missing: no hr")
    >>> notes
    ['HR.csv is missing: no hr']
    """
    NOTES_LOG.warning("%s", note if warning is None else warning)
    notes.append(note)


def decode(data: bytes) -> str:
    """The text of a file's bytes (``ENCODING``; undecodable bytes replaced, so parsers name the line).

    >>> decode(b"\\xef\\xbb\\xbf1644227574.0\\n")
    '1644227574.0\\n'
    """
    return data.decode(ENCODING, errors="replace")


def open_text(path: Path):
    """A file opened to read its text line by line, decoded as ``decode`` does."""
    return open(path, encoding=ENCODING, errors="replace")


def lines_with_progress(f, path: Path) -> Iterator[str]:
    """The lines of ``f`` (``open_text(path)``), with a progress bar over the file's size on stderr
    when it is a terminal (tqdm, gone when done; nowhere else): a long file takes a while to read
    (an anxmon recording, ~1 s per hour of E4 data).

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "r.jsonl"; _ = path.write_text("a\\nb\\n")
    >>> with open_text(path) as f:
    ...     list(lines_with_progress(f, path))
    ['a\\n', 'b\\n']
    """
    from tqdm import tqdm

    with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"read {path.name}", leave=False,
              disable=None) as bar:
        for line in f:
            bar.update(len(line))  # characters: bytes but for non-ASCII text, close enough for a bar
            yield line


def _always(row: str) -> bool:
    return True


def numbers_row(columns: int) -> Callable[[str], bool]:
    """A test of a row: ``columns`` comma-separated numbers (for ``without_cut_last_line``).

    >>> numbers_row(3)("2, 10, 63"), numbers_row(3)("2,10"), numbers_row(1)("-31")
    (True, False, True)
    """
    def parses(row: str) -> bool:
        fields = row.split(",")
        try:
            [float(f) for f in fields]
        except ValueError:
            return False
        return len(fields) == columns
    return parses


def _cut_short(row: str, has_line_end: bool, parses: Callable[[str], bool]) -> str | None:
    """Why a file's last line ``row`` (its line end removed) is cut short, or None when it is whole."""
    if not has_line_end:
        return "no line end after it"
    if not parses(row.strip()):
        return "not a whole row"
    return None


def _leave_out(where: str, line: int, why: str, notes: list[str]) -> None:
    warn_note(notes, f"{where}: the last line ({line}) is incomplete ({why}); left out",
              f"{where}: the last line ({line}) is incomplete ({why}: recording interrupted while writing?); left out")


def without_cut_last_line(text: str, where: str, notes: list[str],
                          parses: Callable[[str], bool] = _always) -> str:
    """``text`` without its last non-blank line when that line is cut short (see the module's
    docstring; ``parses`` tells a whole row), with a warning and a note naming the line.

    >>> notes = []
    >>> without_cut_last_line("1644227574.0\\n64.0\\n-31.25\\n-31", "BVP.csv", notes, numbers_row(1))
    '1644227574.0\\n64.0\\n-31.25\\n'
    >>> notes
    ['BVP.csv: the last line (4) is incomplete (no line end after it); left out']
    """
    end = len(text.rstrip())
    start = text.rfind("\n", 0, end) + 1  # where the last non-blank line starts
    if not text[:start].strip():  # no line, or only the first (a header): read as it is
        return text
    why = _cut_short(text[start:end], any(c in "\r\n" for c in text[end:]), parses)
    if why is None:
        return text
    log.debug("%s: the incomplete last line reads %r", where, text[start:end][:80])
    _leave_out(where, text.count("\n", 0, start) + 1, why, notes)
    return text[:start]


def complete_lines(lines: Iterable[str], where: str, notes: list[str],
                   parses: Callable[[str], bool] = _always) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of the non-blank lines of a file read line by line (line ends kept),
    without the last one when it is cut short: ``without_cut_last_line``'s rule, for files too
    large to hold as one text."""
    held: tuple[int, str] | None = None
    first = True
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if held is not None:
            yield held
            first = False
        held = (number, line)
    if held is None:
        return
    number, line = held
    why = None if first else _cut_short(line.rstrip("\r\n"), line.endswith(("\n", "\r")), parses)
    if why is None:
        yield held
    else:
        log.debug("%s: the incomplete last line reads %r", where, line[:80])
        _leave_out(where, number, why, notes)


def no_samples(where: str, signal: str, notes: list[str], count: int = 0) -> None:
    """A signal file without samples (empty, or its header only), or with too few to tell their rate
    (``count``): left out, with a warning and a note."""
    what = f"{count} sample(s), too few to tell their rate" if count else "no samples"
    why = "" if count else " (it is empty, or has only its header rows)"
    warn_note(notes, f"{where}: {what}", f"{where} holds {what}{why}: no {signal}")


def check_range(signal: str, values: np.ndarray, where: str, notes: list[str], what: str = "",
                hint: str = OTHER_FILE, drop: bool = False) -> np.ndarray:
    """Which ``values`` lie inside the contract's range of ``signal`` (all, for signals without one).

    More than ``MOSTLY_OUT_OF_RANGE`` of them outside is not this signal in the contract's unit
    (a wrong unit, columns swapped, another file): an ``InputFormatError`` giving the share and
    ``hint``. A few outside are counted in ``notes``: ``drop`` says the caller drops them (readings),
    otherwise they are kept (a regular stream keeps its samples; the monitor refuses their batches).

    >>> check_range("eda", np.array([1.0, 2.0, 3000.0, 4000.0, 5000.0]), "EDA.csv", [], hint="in nS?")
    Traceback (most recent call last):
    ...
    monitor.errors.InputFormatError: EDA.csv: 3 of 5 eda values are outside 0-100 uS (e.g. 3000): not eda in uS (in nS?)
    """
    spec = SIGNALS[signal]
    values = np.asarray(values, dtype=float)
    if spec.low == -np.inf and spec.high == np.inf:
        return np.ones(len(values), dtype=bool)
    ok = np.isfinite(values) & (values >= spec.low) & (values <= spec.high)
    bad = int(np.sum(~ok))
    if len(values) and bad / len(values) > MOSTLY_OUT_OF_RANGE:
        # one sample value, on purpose: it shows the unit best (3000 "uS" is nS), and the error goes
        # to the file's owner as the command's error line; it is not logged (no sample values in logs)
        raise InputFormatError(
            f"{where}: {bad} of {len(values)} {what or signal} values are outside {spec.low:g}-{spec.high:g} "
            f"{spec.unit} (e.g. {values[~ok][0]:g}): not {signal} in {spec.unit} ({hint})"
        )
    if bad:
        fate = "dropped" if drop else "kept"
        notes.append(f"{signal}: {fate} {bad} of {len(values)} values outside {spec.low:g}-{spec.high:g} {spec.unit}"
                     + ("" if drop else " (the monitor refuses their batches)"))
    return ok


class Folder:
    """The files of one session in a folder or a zip archive, by file name.

    A session's files may lie at the top or in a sub-folder (a zipped export usually holds one
    folder): the session is the one (sub-)folder holding any of ``session_files``. Several such
    folders are an ``InputFormatError`` naming them; with none, ``names`` are the top's files.
    """

    def __init__(self, path: Path, session_files: tuple[str, ...] = ()):
        self.path = path
        by_dir: dict[str, dict[str, Path | str]] = {}
        if path.is_dir():
            self.zip = None
            for p in sorted((*path.iterdir(), *(q for d in path.iterdir() if d.is_dir() for q in d.iterdir()))):
                if p.is_file():  # the top and one level of sub-folders (not a whole tree)
                    by_dir.setdefault(p.parent.relative_to(path).as_posix(), {})[p.name] = p
        elif zipfile.is_zipfile(path):
            try:
                self.zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise InputFormatError(f"{path}: damaged zip archive: {exc}") from None
            for n in self.zip.namelist():
                if not n.endswith("/"):
                    by_dir.setdefault(PurePosixPath(n).parent.as_posix(), {})[PurePosixPath(n).name] = n
        else:
            raise InputFormatError(f"{path} is neither a folder nor a zip archive")
        sessions = sorted(d for d, names in by_dir.items() if any(n in names for n in session_files))
        if len(sessions) > 1:
            where = ", ".join("its top level" if d == "." else f"{d}/" for d in sessions)
            raise InputFormatError(f"{path} holds {len(sessions)} sessions ({where}): pass the folder of one of them"
                                   + (" (unzip it first)" if self.zip else ""))
        self.session_dir = sessions[0] if sessions else "."  # where the session's files are, relative
        self.names = by_dir.get(self.session_dir, {})
        self.by_dir = by_dir  # every file: {folder relative to path ("." the top): {name: file}}

    def where(self, name: str) -> str:
        """The file's path for messages (``archive.zip/S02/EDA.csv`` in a zip)."""
        return f"{self.path}/{self.names[name]}" if self.zip is not None else str(self.names[name])

    def text(self, name: str) -> str:
        if self.zip is not None:
            try:
                return decode(self.zip.read(self.names[name]))
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
                raise InputFormatError(f"{self.path}: cannot read {name} from the zip (damaged or cut short?): {exc}") from None
        return decode(self.names[name].read_bytes())


def regular_stream(signal: str, t: np.ndarray, values: np.ndarray, where: str, notes: list[str],
                   gap_s: float | None = None, first_line: int | None = None) -> Stream:
    """A regular stream from samples stamped ``t`` (unix s, not decreasing).

    The rate is one least-squares fit over all runs (so the stream keeps one ``fs``, as the
    monitor's processors need), each run's ``t0`` the mean of its samples' time minus their
    offset at that rate. ``gap_s`` defaults to 5 median sample intervals, at least 1 s.
    ``first_line``: the file line of the first sample, so errors name lines (else sample numbers).
    The values are checked with ``check_range``.
    """
    t, values = np.asarray(t, dtype=float), np.asarray(values, dtype=float)
    if len(t) < 2:
        raise InputFormatError(f"{where}: {len(t)} sample(s) of {signal}: too few to tell the sample rate")
    check_range(signal, values, where, notes)
    dt = np.diff(t)
    if np.any(dt < 0):
        row = int(np.argmax(dt < 0)) + 1
        at = f"sample {row}" if first_line is None else f"line {first_line + row}"
        raise InputFormatError(f"{where}: time goes backwards at {at} (rows out of order or files mixed up)")
    positive = dt[dt > 0]
    if not len(positive):
        raise InputFormatError(f"{where}: every sample of {signal} has the same time stamp")
    gap_s = gap_s if gap_s is not None else max(1.0, 5.0 * float(np.median(positive)))
    starts = np.r_[0, np.flatnonzero(dt > gap_s) + 1]
    ends = np.r_[starts[1:], len(t)]
    # a run of equal stamps is one packet stamped at its last sample (EmotiBit's DataParser does
    # that to a session's first packet): only the last of such a run is on time
    on_time = np.r_[dt != 0, True]
    num = den = 0.0
    for i0, i1 in zip(starts, ends):
        k = np.flatnonzero(on_time[i0:i1]).astype(float)
        if len(k) >= 2:
            tk = t[i0:i1][k.astype(int)]
            k -= k.mean()
            num += float(k @ (tk - tk.mean()))
            den += float(k @ k)
    if num <= 0 or den <= 0:
        raise InputFormatError(f"{where}: cannot fit a sample rate to the time stamps of {signal}")
    fs = round(den / num, 6)  # micro-hertz: beyond what time stamps can tell, and readable
    segments = []
    for i0, i1 in zip(starts, ends):
        k = np.flatnonzero(on_time[i0:i1])
        segments.append((int(i0), float(np.mean(t[i0:i1][k] - k / fs))))
    fitted = np.concatenate([t0 + np.arange(i1 - i0) / fs for (i0, t0), i1 in zip(segments, ends)])
    worst = float(np.max(np.abs(t - fitted)))
    notes.append(f"{signal}: {fs:.6g} Hz fitted to the time stamps of {len(t)} samples "
                 f"in {len(segments)} run(s); time stamps within {worst:.3f} s of that grid")
    return Stream(signal, np.asarray(values, dtype=float), t0=segments[0][1], fs=fs,
                  segments=segments if len(segments) > 1 else None)


def irregular_stream(signal: str, t: np.ndarray, values: np.ndarray, where: str, notes: list[str],
                     what: str = "", hint: str = OTHER_FILE) -> Stream:
    """An ``hr``/``ibi`` stream: sorted by time; values outside the contract's range dropped.

    A column where most values are outside the range is not this signal (columns swapped, or
    another file): that is an ``InputFormatError``.
    """
    t = np.asarray(t, dtype=float)
    values = np.asarray(values, dtype=float)
    order = np.argsort(t, kind="stable")
    if np.any(order != np.arange(len(t))):
        notes.append(f"{signal}: readings sorted by time")
        t, values = t[order], values[order]
    ok = check_range(signal, np.where(np.isfinite(t), values, np.nan), where, notes, what, hint, drop=True)
    return Stream(signal, values[ok], t=t[ok])


def chain_beats(arrival_s: np.ndarray, ibi_ms: np.ndarray, group: np.ndarray, max_drift_s: float) -> np.ndarray:
    """Beat times (unix s) of intervals that arrived in groups (notifications) stamped ``arrival_s``.

    Each group is chained by ``firmware_bridge.ble_hrs.chain_rr`` (the live bridge's chaining):
    each interval ends ``ibi`` after the previous beat; the group's last beat is put at its
    arrival time at the start and whenever the chain strays more than ``max_drift_s`` from it.
    Beats a backwards re-anchor puts before earlier ones are kept here: ``without_backward_beats``
    leaves them out. ``group`` numbers the groups (not decreasing); ``arrival_s`` is taken
    from each group's first interval.

    >>> chain_beats(np.array([10.0, 10.0, 11.0]), np.array([400.0, 600.0, 1000.0]), np.array([0, 0, 1]), 2.0)
    array([ 9.4, 10. , 11. ])
    """
    arrival_s = np.asarray(arrival_s, dtype=float)
    ibi_ms = np.asarray(ibi_ms, dtype=float)
    out = np.empty(len(ibi_ms))
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    ends = np.r_[starts[1:], len(ibi_ms)]
    last = None
    for i0, i1 in zip(starts.tolist(), ends.tolist()):
        chained, _ = chain_rr(ibi_ms[i0:i1], arrival_s[i0], last, max_drift_s)
        out[i0:i1] = chained
        last = float(chained[-1])
    return out


def without_backward_beats(beats_s: np.ndarray, ibi_ms: np.ndarray, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``chain_beats``' beats and intervals without the beats a chain re-anchored backwards (a
    late notification, then a held burst) put at or before an earlier beat, as the live bridge
    leaves them out (``HrsConverter``); how many is noted.

    >>> without_backward_beats(np.array([1.0, 2.0, 1.5, 3.0]), np.array([900.0, 1000.0, 500.0, 1500.0]), [])
    (array([1., 2., 3.]), array([ 900., 1000., 1500.]))
    """
    ahead = beats_s > np.maximum.accumulate(np.r_[-np.inf, beats_s[:-1]])
    if ahead.all():
        return beats_s, ibi_ms
    notes.append(f"ibi: dropped {int(np.sum(~ahead))} beats that a re-anchored chain put before the previous one")
    return beats_s[ahead], ibi_ms[ahead]


def first_line(path: Path, limit: int = 4096) -> str:
    """The first non-empty line of a file (at most ``limit`` bytes read), as text."""
    with open(path, "rb") as f:
        head = f.read(limit)
    for line in head.decode("utf-8", errors="replace").splitlines():
        if line.strip():
            return line.strip().lstrip("\ufeff")
    return ""
