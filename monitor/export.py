"""``anxmon export``: the service's recording (``DATA/recordings.sqlite``) to CSV, Parquet, an
anxmon recording, or an analysis folder for ``anxmon report``.

``--what`` picks a table; each export covers one wearer (``--wearer``) or all, and the event
times ``--from <= t < --to`` (unix seconds or ISO 8601 with a zone; ``parse_time``).
Columns, one row per record, times in unix seconds (``t``), JSON in text columns:

=============  ===========================================================================
what           columns
=============  ===========================================================================
indicators     wearer, t, stress_score, gate, threshold, quality (``eda=ok;hrv=ok``...), one
               column per indicator (``EDA_Tonic_Mean``, ``HR_Mean``...; empty when the
               window had too little valid data), contributions, deviations (JSON)
decisions      wearer, t, sent, reason, score, threshold, prompt_id, explanation (JSON)
checkins       wearer, prompt_id, t, expires_at, closed (answered/expired/empty), closed_t,
               message, prompt (JSON: the check-in as sent)
answers        wearer, prompt_id, t, rating, labels (``;``-separated), learned, threshold
markers        wearer, t, kind, label, source
raw            not a table: an anxmon recording (``.jsonl``, ``monitor.readers.anxmon``) of one
               wearer's batches and markers, which ``analyze``, ``replay`` and ``report`` read
analysis       not a table: a folder like ``anxmon analyze`` writes (``indicators.csv``,
               ``checkins.jsonl``, ``answers.jsonl``, ``markers.csv``, ``summary.json``) for
               one wearer, which ``anxmon report`` reads
=============  ===========================================================================

The format is ``--format``, else the one the suffix of ``--out`` names (``output_format``).
Parquet needs pyarrow (``pip install pyarrow``, or the extra: ``pip install -e '.[parquet]'`` in the checkout).

Example
-------
>>> parse_time("2022-02-07T10:00:00Z"), parse_time("1644228000")
(1644228000.0, 1644228000.0)
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.errors import AnxmonError, install_hint
from monitor.recorder import RECORDING_FILE, TABLES, connect, query, wearers

WHAT = ("indicators", "decisions", "checkins", "answers", "markers", "raw", "analysis")
FORMATS = ("csv", "parquet", "jsonl")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}  # --out's suffix names the format


class ExportError(AnxmonError):
    """What was asked cannot be exported (no such wearer, a format that does not fit...)."""


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_time(text: str | float) -> float:
    """Unix seconds, or an ISO 8601 date/time with its zone (``2022-02-07T10:00:00+01:00``,
    ``...Z``; one without a zone is refused, as in a markers file: read as UTC, a wall-clock time
    would move a marker or a range by the wearer's offset), between 2000 and 2100
    (``monitor.markers.unix_s_problem``: milliseconds are refused)."""
    from monitor.markers import iso_unix_s, unix_s_problem

    if isinstance(text, (int, float)) or _NUMBER.fullmatch(text.strip()):
        t = float(text)
    elif (t := iso_unix_s(text, zone_required=True)) is None:
        raise ExportError(f"time {text!r} is neither unix seconds nor ISO 8601 (e.g. 2022-02-07T10:00:00Z)")
    if problem := unix_s_problem(t):
        raise ExportError(f"time {text!r} {problem}")
    return t


def open_recording(data_dir: str | Path) -> sqlite3.Connection:
    """The recording database of a service's data directory (or the file itself)."""
    path = Path(data_dir)
    if path.is_dir():
        path = path / RECORDING_FILE
    return connect(path, create=False)


def _loads(text: str | None) -> dict:
    return json.loads(text) if text else {}


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def read_table(db: sqlite3.Connection, what: str, wearer: str | None = None, from_s: float | None = None,
               to_s: float | None = None) -> pd.DataFrame:
    """One recorded table as a DataFrame with the export's columns (see the module docstring)."""
    rows = query(db, what, wearer, from_s, to_s)
    if what == "indicators":
        out, names = [], set()
        for r in rows:
            values = {k: (np.nan if v is None else v) for k, v in _loads(r["indicator_values"]).items()}
            names.update(values)
            quality = _loads(r["quality"])
            out.append({**values, "wearer": r["wearer"], "t": r["t"], "stress_score": r["score"], "gate": r["gate"],
                        "threshold": r["threshold"],
                        "quality": ";".join(f"{k}={v}" for k, v in sorted(quality.items())),
                        "contributions": r["contributions"], "deviations": r["deviations"]})
        if from_s is not None or to_s is not None:
            # every indicator the wearer's whole recording has, whatever the time range: exports
            # made in pieces (a day each) have the same columns and concatenate
            sql = "SELECT DISTINCT j.key FROM indicators, json_each(indicators.indicator_values) j"
            names.update(k for (k,) in (db.execute(sql + " WHERE wearer = ?", (wearer,)) if wearer is not None
                                         else db.execute(sql)))
        indicator_cols = sorted(names)
        frame = _frame(out, ["wearer", "t", "stress_score", "gate", "threshold", "quality", *indicator_cols,
                             "contributions", "deviations"])
        for col in ["stress_score", "threshold", *indicator_cols]:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
        return frame
    if what == "decisions":
        cols = ["wearer", "t", "sent", "reason", "score", "threshold", "prompt_id", "explanation"]
        frame = _frame([{c: r[c] for c in cols} for r in rows], cols)
        frame["sent"] = frame["sent"].astype(bool)
        return frame
    if what == "checkins":
        cols = ["wearer", "prompt_id", "t", "expires_at", "closed", "closed_t", "message", "prompt"]
        return _frame([{**{c: r[c] for c in cols if c != "message"}, "message": _loads(r["prompt"]).get("message")}
                       for r in rows], cols)
    if what == "answers":
        cols = ["wearer", "prompt_id", "t", "rating", "labels", "learned", "threshold"]
        frame = _frame([{**{c: r[c] for c in cols}, "labels": ";".join(json.loads(r["labels"]))} for r in rows], cols)
        frame["rating"] = frame["rating"].astype("Int64")
        return frame
    if what == "markers":
        cols = ["wearer", "t", "kind", "label", "source"]
        return _frame([{c: r[c] for c in cols} for r in rows], cols)
    raise ExportError(f"--what {what!r} is not a table; expected one of indicators, decisions, checkins, answers, markers")


def _shortest(x: float) -> str:
    """The shortest text that reads back as the same float (pandas' default keeps 16 digits)."""
    return repr(float(x))


def make_folder(path: Path) -> None:
    """Create the folder ``path`` with its parents; a file in the way is said plainly (mkdir
    would say "File exists")."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ExportError(f"{p} is a file, not a folder")
            break
    path.mkdir(parents=True, exist_ok=True)


def output_format(what: str, out: Path, fmt: str | None) -> str:
    """The format to write: ``--format``, else the one ``--out``'s suffix names (``.csv``,
    ``.parquet``, ``.jsonl``), else csv (jsonl for raw). A suffix naming another format than
    ``--format`` is refused, and so is a format ``what`` cannot be written in.

    >>> output_format("indicators", Path("s02.parquet"), None)
    'parquet'
    >>> output_format("indicators", Path("s02.csv"), "parquet")
    Traceback (most recent call last):
    monitor.export.ExportError: --out s02.csv names csv, but --format is parquet: make them agree
    """
    named = None if what == "analysis" else SUFFIXES.get(out.suffix.lower())  # analysis: a folder
    if fmt and named and fmt != named:
        raise ExportError(f"--out {out} names {named}, but --format is {fmt}: make them agree")
    fmt = fmt or named
    if what == "raw" and fmt not in (None, "jsonl"):
        raise ExportError(f"a raw export is an anxmon recording (.jsonl), which analyze, replay and report read, "
                          f"not {fmt}: give --out a .jsonl name (or --format jsonl)")
    if what == "analysis" and fmt not in (None, "csv"):
        raise ExportError("an analysis export is a folder of CSV and JSON lines; drop --format")
    if what not in ("raw", "analysis") and fmt == "jsonl":
        raise ExportError(f"--what {what} exports a table: CSV or Parquet (--format csv or parquet, or an --out "
                          "ending in .csv or .parquet), not jsonl")
    return fmt or ("jsonl" if what == "raw" else "csv")


def write_frame(frame: pd.DataFrame, out: Path, fmt: str) -> None:
    make_folder(out.parent)
    if fmt == "csv":
        frame.to_csv(out, index=False, float_format=_shortest)
        return
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ExportError(f"Parquet export needs pyarrow: {install_hint('parquet', 'pyarrow')}") from None
    frame.to_parquet(out, index=False, engine="pyarrow")


def _one_wearer(db: sqlite3.Connection, wearer: str | None, table: str | None) -> str:
    if wearer is not None:
        return wearer
    found = wearers(db, table)
    if len(found) != 1:
        raise ExportError(f"this export is of one wearer: pass --wearer ({'one of ' + ', '.join(found) if found else 'the recording has no wearer yet'})")
    return found[0]


def _check_range_holds(db: sqlite3.Connection, table: str, wearer: str, from_s: float | None,
                       to_s: float | None, what: str) -> None:
    """An ``ExportError`` naming the range and the span the wearer's ``table`` covers when
    ``--from``/``--to`` hold none of its rows (an export would be empty, and refused by analyze)."""
    from monitor.markers import utc_text

    if (from_s is None and to_s is None) or query(db, table, wearer, from_s, to_s).fetchone() is not None:
        return
    start, end = ("t_start", "t_end") if table == "raw" else ("t", "t")
    first, last = db.execute(f"SELECT MIN({start}), MAX({end}) FROM {table} WHERE wearer = ?", (wearer,)).fetchone()
    asked = " ".join(f"{name} {utc_text(t)}" for name, t in (("--from", from_s), ("--to", to_s)) if t is not None)
    raise ExportError(f"{asked} holds no {what} of wearer {wearer!r}: they cover {utc_text(first)} to "
                      f"{utc_text(last)} (unix {first:.0f} to {last:.0f}); nothing written")


def export_raw(db: sqlite3.Connection, out: Path, wearer: str | None = None, from_s: float | None = None,
               to_s: float | None = None, source: str = "anxmon service recording") -> tuple[int, int]:
    """One wearer's raw batches and markers as an anxmon recording (``.jsonl``); returns
    (batches, markers) written. Needs a service that ran with ``--record-raw``."""
    from monitor.markers import Marker
    from monitor.readers.anxmon import RecordingWriter

    wearer = _one_wearer(db, wearer, "raw")
    n_raw = db.execute("SELECT COUNT(*) FROM raw WHERE wearer = ?", (wearer,)).fetchone()[0]
    if not n_raw:
        raise ExportError(f"no raw batches of wearer {wearer!r} in the recording (the service records them "
                          "with --record-raw)")
    _check_range_holds(db, "raw", wearer, from_s, to_s, "raw batches")
    make_folder(out.parent)
    n_batches = n_markers = 0
    with RecordingWriter(out, wearer=wearer, source=source, created_s=time.time()) as w:
        for r in query(db, "markers", wearer, from_s, to_s):
            w.write_marker(Marker(r["t"], r["kind"], r["label"]))
            n_markers += 1
        for r in query(db, "raw", wearer, from_s, to_s, order="t_end, signal, t_start, seq"):
            w.write_payload(r["device"], r["signal"], r["payload"])
            n_batches += 1
    return n_batches, n_markers


ANALYSIS_EXPORT_FILES = ("indicators.csv", "checkins.jsonl", "answers.jsonl", "markers.csv", "summary.json")


def analysis_summary(db: sqlite3.Connection, wearer: str, ticks: pd.DataFrame, from_s: float | None,
                     to_s: float | None, source: str) -> dict:
    """``summary.json`` of an exported analysis folder: the fields of ``anxmon analyze``'s summary
    that the recorded tables hold (see docs/research.md for those they cannot)."""
    from monitor import __version__

    decisions = list(query(db, "decisions", wearer, from_s, to_s))
    held = [r["reason"] for r in decisions if not r["sent"]]
    used = set()  # analyze: every indicator that entered a score; the service records their deviations
    for text in ticks["deviations"].dropna():
        used.update(_loads(text))
    expired = [r for r in query(db, "checkins", wearer, from_s, to_s)
               if r["closed"] == "expired" and (to_s is None or r["closed_t"] < to_s)]
    threshold = ticks["threshold"].dropna()
    signals = sorted(s for (s,) in db.execute("SELECT DISTINCT signal FROM raw WHERE wearer = ?", (wearer,)))
    return {
        "source": source, "format": "anxmon service", "wearer": wearer, "start_s": float(ticks["t"].iloc[0]),
        "duration_s": float(ticks["t"].iloc[-1] - ticks["t"].iloc[0]), "signals": signals,
        "ticks": int(len(ticks)),
        "tick_states": {str(k): int(n) for k, n in ticks["gate"].fillna("scored").value_counts().sort_index().items()},
        "indicators_used": sorted(used),
        "trigger_decisions": len(decisions),
        "checkins_sent": sum(1 for r in decisions if r["sent"]),
        "suppressed": {reason: held.count(reason) for reason in sorted(set(held))},
        "prompts_expired": len(expired),
        "threshold_final": float(threshold.iloc[-1]) if len(threshold) else None,
        "note": "Descriptive signals of one person; anxmon is not a medical device.",
        "anxmon_version": __version__,  # of the export: the recording does not keep the service's
    }


def analysis_indicators_frame(ticks: pd.DataFrame) -> pd.DataFrame:
    """The recorded ``indicators`` table in ``anxmon analyze``'s ``indicators.csv`` layout: ``t``,
    ``stress_score``, ``quality``, ``gate`` (``scored`` for a tick with a score), ``threshold``,
    the indicators, then ``z_X`` and ``contrib_X`` per indicator X in the score. (The service
    records each deviation, not the baseline mean: analyze's ``baseline_X`` columns are absent.)"""
    from monitor.analyze import CONTRIB_PREFIX, SCORED, Z_PREFIX

    fixed = ["wearer", "t", "stress_score", "gate", "threshold", "quality", "contributions", "deviations"]
    columns = [c for c in ticks.columns if c not in fixed]
    deviations = ticks["deviations"].map(_loads)
    shares = ticks["contributions"].map(_loads)
    used = sorted({name for d in deviations for name in d})
    layout = ticks[["t", "stress_score", "quality"]].copy()
    layout["gate"] = ticks["gate"].fillna(SCORED)
    layout["threshold"] = ticks["threshold"]
    layout[columns] = ticks[columns]
    for prefix, table in ((Z_PREFIX, deviations), (CONTRIB_PREFIX, shares)):
        for name in used:
            layout[prefix + name] = table.map(lambda d, name=name: d.get(name, np.nan)).astype(float)
    return layout


def export_analysis(db: sqlite3.Connection, out_dir: Path, wearer: str | None = None, from_s: float | None = None,
                    to_s: float | None = None, source: str = "anxmon service recording") -> int:
    """One wearer's recording as an analyze output folder that ``anxmon report`` reads; returns
    ticks. In a folder that holds an earlier analysis, its files this export does not write
    (``report.html``) are removed: they would belong to another session."""
    from monitor.markers import Marker, write_markers
    from monitor.report import ANALYSIS_FILES, check_output_folder, is_analysis_folder

    check_output_folder(out_dir, ANALYSIS_EXPORT_FILES)
    wearer = _one_wearer(db, wearer, "indicators")
    _check_range_holds(db, "indicators", wearer, from_s, to_s, "indicators")
    ticks = read_table(db, "indicators", wearer, from_s, to_s)
    if ticks.empty:
        raise ExportError(f"no indicators of wearer {wearer!r} in the recording")
    make_folder(out_dir)
    if is_analysis_folder(out_dir):  # (another folder's report.html is the user's own)
        for name in set(ANALYSIS_FILES) - set(ANALYSIS_EXPORT_FILES):
            (out_dir / name).unlink(missing_ok=True)
    analysis_indicators_frame(ticks).to_csv(out_dir / "indicators.csv", index=False, float_format=_shortest)
    with open(out_dir / "checkins.jsonl", "w") as f:
        for r in query(db, "decisions", wearer, from_s, to_s):
            f.write(json.dumps({"t": r["t"], "sent": bool(r["sent"]), "reason": r["reason"], "score": r["score"],
                                "threshold": r["threshold"], "explanation": _loads(r["explanation"]),
                                "prompt_id": r["prompt_id"]}, sort_keys=True) + "\n")
    with open(out_dir / "answers.jsonl", "w") as f:
        for r in query(db, "answers", wearer, from_s, to_s):
            f.write(json.dumps({"t": r["t"], "prompt_id": r["prompt_id"], "rating": r["rating"],
                                "labels": json.loads(r["labels"])}, sort_keys=True) + "\n")
    write_markers(out_dir / "markers.csv",
                  [Marker(r["t"], r["kind"], r["label"]) for r in query(db, "markers", wearer, from_s, to_s)])
    summary = analysis_summary(db, wearer, ticks, from_s, to_s, source)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return int(len(ticks))


def export(data_dir: str | Path, what: str, out: str | Path, fmt: str | None = None, wearer: str | None = None,
           from_s: float | None = None, to_s: float | None = None) -> str:
    """``anxmon export``; returns a one-line account of what was written."""
    if what not in WHAT:
        raise ExportError(f"--what {what!r}: expected one of {', '.join(WHAT)}")
    out = Path(out)
    fmt = output_format(what, out, fmt)
    if from_s is not None and to_s is not None and from_s >= to_s:
        raise ExportError(f"--from ({from_s:.0f}) must be before --to ({to_s:.0f})")
    db = open_recording(data_dir)
    source = f"anxmon service recording {Path(data_dir)}"
    try:
        if wearer is not None and not any(  # (the tables' (wearer, t) index: no scan)
                db.execute(f"SELECT 1 FROM {table} WHERE wearer = ? LIMIT 1", (wearer,)).fetchone()
                for table in TABLES):
            # (a typo, another case: an empty file would look like a wearer without data)
            known = wearers(db)
            raise ExportError(f"no wearer {wearer!r} in the recording; it has "
                              f"{', '.join(known) if known else 'no wearer yet'}")
        if what == "raw":
            n_batches, n_markers = export_raw(db, out, wearer, from_s, to_s, source)
            return f"wrote {out}: {n_batches} batches and {n_markers} markers (an anxmon recording)"
        if what == "analysis":
            n = export_analysis(db, out, wearer, from_s, to_s, source)
            return f"wrote {out}/: {n} ticks with decisions, answers and markers (read it with anxmon report)"
        frame = read_table(db, what, wearer, from_s, to_s)
        write_frame(frame, out, fmt)
        empty = "" if len(frame) or (from_s is None and to_s is None) else " (nothing in that time range)"
        return f"wrote {out}: {len(frame)} {what} row(s){empty}"
    finally:
        db.close()


def run_export(args) -> int:
    """``anxmon export``."""
    from_s = parse_time(args.from_t) if args.from_t is not None else None
    to_s = parse_time(args.to_t) if args.to_t is not None else None
    print(export(args.data_dir, args.what, args.out, args.format, args.wearer, from_s, to_s))
    return 0
