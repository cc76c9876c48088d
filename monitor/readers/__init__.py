"""Readers of recorded sessions, one module per format, and format detection.

Every reader returns a ``monitor.recordings.Recording`` of canonical streams in the wire
contract's units, so ``analyze``, ``replay`` and ``report`` treat every format alike.

=================  ==========================================================  ==============
format             what it is                                                  module
=================  ==========================================================  ==============
``e4``             Empatica E4 export: folder or zip of EDA.csv, BVP.csv ...   ``e4``
``emotibit``       EmotiBit DataParser output: ``<session>_EA.csv`` ...        ``emotibit``
``polar-h10``      Polar H10 CSV ``time_ns,ecg,hr,rr``                         ``polar``
``garmin``         Garmin export, lines ``ISO-time;TYPE;value``                ``garmin``
``anxmon``         anxmon's own JSON-lines recording (header line first)       ``anxmon``
=================  ==========================================================  ==============

Detection (``detect``), in this order:

1. a folder or zip holding any of ``EDA.csv``, ``BVP.csv``, ``TEMP.csv``, ``ACC.csv``, ``HR.csv``,
   ``IBI.csv``, at its top or in one sub-folder (a zip: in any one folder): E4 (in several
   sub-folders: an error naming them; a folder with them only deeper: an error naming where; in a
   sub-folder of a folder that also holds a file recognised by rule 3 outside it: an error naming
   both, as ``flirt-e4-garmin`` with ``empatica/`` and ``garmin/data.csv``);
2. a folder holding files named ``<session>_<TAG>.csv`` whose first line is the DataParser's
   header ``LocalTimestamp,EmotiBitTimestamp,...``: EmotiBit;
3. a file, by its first non-empty line: ``{"anxmon_recording": ...`` is anxmon; a CSV header
   with a ``time_ns`` column is Polar; ``YYYY-MM-DDT...;TYPE;`` is Garmin; the DataParser
   header is EmotiBit (that file's session); an EmotiBit packet (the raw SD-card file) is
   EmotiBit when its parsed files lie beside it, otherwise an error that says to run the
   DataParser first;
4. a folder holding exactly one file recognised by rule 3: that file.

Anything else is an ``InputFormatError`` listing what was expected (an analysis folder, the
output of ``anxmon analyze``: one saying so and naming its recording); a file of a detected format
that is damaged (cut short, mixed up with another file, columns swapped) is an
``InputFormatError`` from its reader that names the file, the line and the problem.

Stress labels (``labels.csv``, columns ``unix_s,stress``) are read in every format from the
session's folder (``labels_folder``): the folder or zip passed (an E4 export's session
sub-folder), or the folder of the EmotiBit file passed. A single-file recording has none; give
``analyze --labels FILE``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable

from monitor.errors import InputFormatError
from monitor.recordings import Recording


EXPECTED = (
    "expected an Empatica E4 export (a folder or zip with EDA.csv, BVP.csv, TEMP.csv, ACC.csv, "
    "HR.csv, IBI.csv), EmotiBit DataParser files (<session>_EA.csv, <session>_PG.csv ...: the folder "
    "or one of them), a Polar H10 CSV with header time_ns,ecg,hr,rr, a Garmin export with lines "
    'ISO-time;TYPE;value, or an anxmon recording (.jsonl, first line {"anxmon_recording": 1, ...})'
)


def _file_format(path: Path) -> str | None:
    """The format of a single file from its first line, or None."""
    from monitor.readers import anxmon, emotibit, garmin, polar
    from monitor.readers.common import first_line

    try:
        line = first_line(path)
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot be read: {exc.strerror}") from None
    if anxmon.looks_like_anxmon(line):
        return "anxmon"
    if emotibit.is_parsed_header(line) or emotibit.is_raw_sd_line(line):
        return "emotibit"
    if polar.looks_like_polar(line):
        return "polar-h10"
    if garmin.looks_like_garmin(line):
        return "garmin"
    return None


def _other_recordings(folder) -> list[str]:
    """The files of a folder's ``common.Folder`` outside its session's folder that rule 3
    recognises (``garmin/data.csv`` beside an E4 export in ``empatica/``), relative to it."""
    found = []
    for where, files in sorted(folder.by_dir.items()):
        if where == folder.session_dir:
            continue
        for _, p in sorted(files.items()):
            try:
                fmt = _file_format(p)
            except InputFormatError:  # a file that cannot be read is no recording to choose
                continue
            if fmt is not None:
                found.append(p.relative_to(folder.path).as_posix())
    return found


def detect(path: str | Path) -> tuple[str, Path]:
    """``(format, path to read)`` of a recording; ``InputFormatError`` when it is none of them."""
    from monitor.readers import e4, emotibit
    from monitor.readers.common import Folder

    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"{path} does not exist")
    if path.is_dir() or zipfile.is_zipfile(path):
        folder = Folder(path, e4.SESSION_FILES)
        if e4.is_e4(folder):
            # in a sub-folder, beside other recordings: which one was meant? (each can be passed)
            others = _other_recordings(folder) if path.is_dir() and folder.session_dir != "." else []
            if others:
                raise InputFormatError(f"{path} holds several recordings ({folder.session_dir}/, "
                                       f"{', '.join(others)}): pass one of them")
            return "e4", path
        if path.is_dir():
            if emotibit.parsed_files(path):
                return "emotibit", path
            found = [(fmt, p) for p in sorted(path.iterdir())
                     if p.is_file() and (fmt := _file_format(p)) is not None]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InputFormatError(f"{path} holds several recordings ({', '.join(p.name for _, p in found)}): "
                                       "pass one of them")
            # a folder is searched at its top and one level down: an export unzipped into a folder of its own
            deeper = sorted({p.parent.relative_to(path).as_posix() + "/" for name in e4.SESSION_FILES
                             for p in path.glob(f"*/*/{name}")})
            if deeper:
                which = "that folder" if len(deeper) == 1 else "one of them"
                raise InputFormatError(f"{path}: no recording at its top or in a sub-folder, but E4 files deeper, in "
                                       f"{', '.join(deeper)}: pass {which}")
        if path.is_dir():
            _refuse_analysis_folder(path)
        raise InputFormatError(f"{path}: no recording found in this {'folder' if path.is_dir() else 'zip'}; {EXPECTED}")
    if path.suffix.lower() == ".zip":
        raise InputFormatError(f"{path}: not a readable zip archive (damaged or cut short?)")
    if path.name in e4.FILES or path.name == "IBI.csv":
        raise InputFormatError(f"{path} is one file of an Empatica E4 export: pass its folder (or zip)")
    fmt = _file_format(path)
    if fmt is None and path.is_file() and path.stat().st_size == 0:
        raise InputFormatError(f"{path} is empty (0 bytes): no recording in it (a recording that never started?)")
    if fmt is None:
        raise InputFormatError(f"{path} is not a recording anxmon reads; {EXPECTED}")
    return fmt, path


def _refuse_analysis_folder(path: Path) -> None:
    """An ``InputFormatError`` naming an analysis folder (``anxmon analyze``'s or ``export --what
    analysis``'s output) as such, with the recording it came from when its summary names it."""
    import json

    from monitor.report import is_analysis_folder

    if not is_analysis_folder(path):
        return
    try:
        source = json.loads((path / "summary.json").read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        source = None
    came_from = f" (of {source})" if isinstance(source, str) and source else ""
    raise InputFormatError(f"{path} is the output of an analysis{came_from}, not a recording: anxmon report reads "
                           "it; to analyse or replay, give the recording itself")


def readers() -> dict[str, Callable[[Path], Recording]]:
    """Format name -> reader function."""
    from monitor.readers.anxmon import read_anxmon
    from monitor.readers.e4 import read_e4
    from monitor.readers.emotibit import read_emotibit
    from monitor.readers.garmin import read_garmin
    from monitor.readers.polar import read_polar

    return {"e4": read_e4, "emotibit": read_emotibit, "polar-h10": read_polar, "garmin": read_garmin,
            "anxmon": read_anxmon}


LABELS_FILE = "labels.csv"


def labels_folder(path: Path, fmt: str, target: Path):
    """The ``common.Folder`` whose ``labels.csv`` labels the recording at ``path`` (detected as
    ``fmt``, read from ``target``), or None: the folder or zip passed (for an E4 export, its
    session's sub-folder), or the folder of the EmotiBit file passed."""
    from monitor.readers import e4
    from monitor.readers.common import Folder

    where = path if path.is_dir() or fmt == "e4" else target.parent if fmt == "emotibit" else None
    # an E4 export's labels lie beside its files, in its session sub-folder; any other's at the top
    folder = None if where is None else Folder(where, e4.SESSION_FILES if fmt == "e4" else ())
    return folder if folder is not None and LABELS_FILE in folder.names else None


def session_labels(folder, notes: list[str]):
    """The labels of ``folder``'s ``labels.csv``. One that cannot be read gives labels without rows
    and a warning: the session stays readable for whatever does not need them (``--labels FILE``,
    replay, report), and whatever uses them refuses "no label rows" after that warning."""
    import numpy as np

    from monitor.readers.common import warn_note
    from monitor.recordings import read_labels_text

    try:
        return read_labels_text(folder.text(LABELS_FILE), folder.where(LABELS_FILE))
    except InputFormatError as exc:
        warn_note(notes, f"{LABELS_FILE} not read: {exc}", f"{exc}: not read; to compare with labels, give analyze "
                                                            "--labels FILE")
        return np.empty(0), np.empty(0)


def read_any(path: Path) -> Recording:
    """Detect the format of ``path`` and read it, with the labels of its session folder (``labels_folder``)."""
    fmt, target = detect(path)
    recording = readers()[fmt](target)
    if (folder := labels_folder(path, fmt, target)) is not None:
        recording.labels = session_labels(folder, recording.notes)
    return recording
