"""``anxmon export``: every table to CSV and Parquet with the documented columns, time ranges in
unix seconds and ISO 8601, the raw export as an anxmon recording that analyses to the same
indicators as the original, and the analysis folder that ``anxmon report`` reads.

The recording database is written by a ``Recorder`` the way the service writes it (raw batches,
every tick with the policy's threshold, an answer, markers), from the first 30 minutes of
Stress-Predict S02 (``../shared/data/stress-predict/S02``) run through a ``WearerMonitor``:
its one check-in comes at minute 26 (found by running the monitor, as in ``test_service.py``).
The end-to-end path through a broker and the service is ``test_replay.py``'s.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from monitor.cli import main as anxmon
from monitor.core.policy import Decision
from monitor.core.wearer import WearerMonitor
from monitor.export import parse_time
from monitor.recorder import RECORDING_FILE, Recorder
from monitor.wire import SampleBatch, encode_batch
from tests.conftest import data_path

NOW = 1_800_000_000.0
COLUMNS = {  # the documented columns (monitor/export.py, docs/research.md); indicators add one per indicator
    "indicators": ["wearer", "t", "stress_score", "gate", "threshold", "quality"],
    "decisions": ["wearer", "t", "sent", "reason", "score", "threshold", "prompt_id", "explanation"],
    "checkins": ["wearer", "prompt_id", "t", "expires_at", "closed", "closed_t", "message", "prompt"],
    "answers": ["wearer", "prompt_id", "t", "rating", "labels", "learned", "threshold"],
    "markers": ["wearer", "t", "kind", "label", "source"],
}

# pandas 3 reads floats back exactly by default (and deprecates the option); pandas 2 needs it
ROUND_TRIP = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A data directory whose recording holds 30 min of S02 as wearer s02 (and a little of bob)."""
    from monitor.recordings import read_recording

    rec = read_recording(data_path("stress-predict", "S02"))
    part = rec.between(rec.start_s, rec.start_s + 30 * 60)
    data_dir = tmp_path_factory.mktemp("data")
    m = WearerMonitor("s02")
    ticks = []
    with Recorder(data_dir / RECORDING_FILE, record_raw=True) as recorder:
        for marker in part.markers:
            recorder.marker("s02", marker.t_s, marker.kind, marker.label, NOW, "e4")
        for b in part.batches():
            recorder.batch("s02", "e4", b, encode_batch(b), NOW)
            for tick in m.update(b):
                ticks.append(tick)
                recorder.tick("s02", tick, tick.score.gate, m.policy.effective_threshold(), NOW)
        sent = [d for t in ticks for d in t.decisions if isinstance(d, Decision) and d.sent]
        assert len(sent) == 1  # see the module docstring
        answer = m.answer(sent[0].t_s + 60, sent[0].prompt.id, 4, ["anxious"])
        recorder.answer("s02", answer, NOW)
        for seq in range(3):
            b = SampleBatch("eda", seq, np.full(4, 0.5), t0=part.start_s + seq, fs=4.0)
            recorder.batch("bob", "e4", b, encode_batch(b), NOW)
    return data_dir, part, ticks, sent[0]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tables_have_the_documented_columns(recorded, tmp_path, fmt):
    data_dir, part, ticks, prompt = recorded
    frames = {}
    for what in COLUMNS:
        out = tmp_path / f"{what}.{fmt}"
        assert anxmon(["export", "--data-dir", str(data_dir), "--wearer", "s02", "--what", what,
                       "--format", fmt, "--out", str(out)]) == 0
        frames[what] = pd.read_csv(out, **ROUND_TRIP) if fmt == "csv" else pd.read_parquet(out)
    ind = frames["indicators"]
    names = sorted({k for t in ticks for k in t.indicators.values})
    assert list(ind.columns) == COLUMNS["indicators"] + names + ["contributions", "deviations"]
    for what in ("decisions", "checkins", "answers", "markers"):
        assert list(frames[what].columns) == COLUMNS[what], what
    # the values are the monitor's, at full precision
    assert ind["t"].tolist() == [t.t for t in ticks]
    for tick, (_, row) in zip(ticks, ind.iterrows()):
        want = math.nan if tick.score.value is None else tick.score.value
        assert row["stress_score"] == want or (math.isnan(want) and math.isnan(row["stress_score"]))
        for name, value in tick.indicators.values.items():
            assert row[name] == value or (math.isnan(value) and math.isnan(row[name])), name
    assert json.loads(ind["contributions"].dropna().iloc[-1])  # JSON text
    decisions = [d for t in ticks for d in t.decisions if isinstance(d, Decision)]
    assert frames["decisions"]["t"].tolist() == [d.t_s for d in decisions]
    assert frames["decisions"]["sent"].tolist() == [d.sent for d in decisions]
    checkin = frames["checkins"].iloc[0]
    assert (checkin["prompt_id"], checkin["closed"], checkin["closed_t"]) == (prompt.prompt.id, "answered", prompt.t_s + 60)
    assert checkin["message"] == prompt.prompt.message and json.loads(checkin["prompt"])["id"] == prompt.prompt.id
    answer = frames["answers"].iloc[0]
    assert (answer["rating"], answer["labels"], answer["learned"]) == (4, "anxious", "lower")
    markers = frames["markers"]
    assert list(zip(markers["t"], markers["kind"], markers["source"])) == [(m.t_s, m.kind, "e4") for m in part.markers]
    assert len(part.markers) == 3  # S02's tags in its first 30 minutes


def test_time_range_in_unix_seconds_or_iso(recorded, tmp_path, capsys):
    data_dir, part, ticks, _ = recorded
    start = ticks[10].t
    iso = pd.Timestamp(start, unit="s", tz="UTC").isoformat()
    assert parse_time(iso) == start == parse_time(str(start))
    assert parse_time("2022-02-07T10:00:00Z") == parse_time("2022-02-07T11:00:00+01:00")
    out = tmp_path / "range.csv"
    assert anxmon(["export", "--data-dir", str(data_dir), "--from", iso, "--to", str(ticks[20].t),
                   "--out", str(out)]) == 0
    assert pd.read_csv(out)["t"].tolist() == [t.t for t in ticks[10:20]]
    assert anxmon(["export", "--data-dir", str(data_dir), "--from", "yesterday", "--out", str(out)]) == 2
    # a wall-clock time without its zone is refused, as in a markers CSV (it was read as UTC)
    assert anxmon(["export", "--data-dir", str(data_dir), "--from", "2022-02-07T10:00:00", "--out", str(out)]) == 2
    assert "time '2022-02-07T10:00:00' names no time zone: add Z (UTC) or the offset" in capsys.readouterr().err


def test_a_wearer_not_in_the_recording_or_an_inverted_range_is_an_error(recorded, tmp_path, capsys):
    """``--wearer S02`` (another case), ``s2`` or ``bad/id`` wrote a header-only file and exit 0,
    which looks like a wearer without data; an empty time range is said."""
    data_dir, _, ticks, _ = recorded
    out = tmp_path / "x.csv"
    for wearer in ("S02", "s2", "bad/id"):
        assert anxmon(["export", "--data-dir", str(data_dir), "--wearer", wearer, "--out", str(out)]) == 2
        assert "it has bob, s02" in capsys.readouterr().err
    assert not out.exists()
    assert anxmon(["export", "--data-dir", str(data_dir), "--from", str(ticks[20].t), "--to", str(ticks[10].t),
                   "--out", str(out)]) == 2
    assert "must be before --to" in capsys.readouterr().err
    assert anxmon(["export", "--data-dir", str(data_dir), "--from", "2000-01-01T00:00Z", "--to", "2000-01-02T00:00Z",
                   "--out", str(out)]) == 0
    assert "0 indicators row(s) (nothing in that time range)" in capsys.readouterr().out
    # the columns do not depend on the range: exports in pieces concatenate
    full = tmp_path / "full.csv"
    assert anxmon(["export", "--data-dir", str(data_dir), "--wearer", "s02", "--out", str(full)]) == 0
    assert list(pd.read_csv(out).columns) == list(pd.read_csv(full).columns)


def test_raw_export_round_trip(recorded, tmp_path):
    """export raw -> read_recording -> analyze: the indicators and decisions of the original."""
    from monitor.analyze import analyze_recording
    from monitor.recordings import read_recording

    data_dir, part, _, _ = recorded
    out = tmp_path / "s02.jsonl"
    # two wearers have raw batches: the export needs to be told which
    assert anxmon(["export", "--data-dir", str(data_dir), "--what", "raw", "--out", str(out)]) == 2
    assert anxmon(["export", "--data-dir", str(data_dir), "--what", "raw", "--format", "csv", "--wearer", "s02",
                   "--out", str(out)]) == 2
    assert anxmon(["export", "--data-dir", str(data_dir), "--what", "raw", "--wearer", "s02", "--out", str(out)]) == 0
    back = read_recording(out)
    assert back.format == "anxmon" and back.wearer == "s02" and back.markers == part.markers
    assert sorted(back.streams) == sorted(part.streams)
    for sig, stream in part.streams.items():
        assert np.array_equal(back.streams[sig].values, stream.values), sig
        assert np.array_equal(back.streams[sig].times_s(), stream.times_s()), sig
    a = analyze_recording(part, wearer_id="s02", progress=False)
    b = analyze_recording(back, wearer_id="s02", progress=False)
    assert [(t.t, t.score.value, t.score.gate, t.indicators.values) for t in a.ticks] == [
        (t.t, t.score.value, t.score.gate, t.indicators.values) for t in b.ticks]
    assert [d.to_dict() for t in a.ticks for d in t.decisions] == [d.to_dict() for t in b.ticks for d in t.decisions]


def test_analysis_folder_feeds_the_report(recorded, tmp_path):
    """``--what analysis`` writes what ``anxmon analyze`` writes, so ``anxmon report`` makes its
    page from a live recording, with the answer and the markers."""
    from monitor.report import read_analysis_folder

    data_dir, part, ticks, prompt = recorded
    folder = tmp_path / "live"
    assert anxmon(["export", "--data-dir", str(data_dir), "--wearer", "s02", "--what", "analysis",
                   "--out", str(folder)]) == 0
    read = read_analysis_folder(folder)
    assert read.t.tolist() == [t.t for t in ticks]
    # analyze's columns: gate "scored", the threshold, each indicator's deviation and share
    table = pd.read_csv(folder / "indicators.csv")
    assert table["gate"].tolist() == [t.score.gate or "scored" for t in ticks]
    assert table["threshold"].notna().all()
    for name in ("HR_Mean", "EDA_Tonic_Mean"):
        z = [t.score.deviations[name][2] if name in t.score.deviations else np.nan for t in ticks]
        share = [t.score.contributions.get(name, np.nan) for t in ticks]
        assert np.allclose(table[f"z_{name}"], z, equal_nan=True, rtol=1e-9)
        assert np.allclose(table[f"contrib_{name}"], share, equal_nan=True, rtol=1e-9)
    assert [a["prompt_id"] for a in read.answers] == [prompt.prompt.id]
    assert [(m.t_s, m.kind) for m in read.markers] == [(m.t_s, m.kind) for m in part.markers]
    assert read.summary["wearer"] == "s02" and read.summary["threshold_final"] is not None
    page = tmp_path / "live.html"
    assert anxmon(["report", str(folder), "--out", str(page), "--before-s", "120", "--after-s", "120",
                   "--bootstrap", "200"]) == 0
    text = page.read_text()
    assert "data:image/png;base64," in text and "tag" in text


def test_format_follows_the_suffix_of_out(recorded, tmp_path, capsys):
    """``--out ind.parquet`` without ``--format`` wrote CSV text into a .parquet file (and ``--what
    raw --out raw.csv`` JSON lines into a .csv): the suffix names the format, and a suffix that
    contradicts ``--format`` is refused."""
    data_dir = str(recorded[0])
    out = tmp_path / "ind.parquet"
    assert anxmon(["export", "--data-dir", data_dir, "--wearer", "s02", "--out", str(out)]) == 0
    assert len(pd.read_parquet(out)) == len(recorded[2])  # a Parquet file, not CSV text
    assert anxmon(["export", "--data-dir", data_dir, "--wearer", "s02", "--format", "parquet",
                   "--out", str(tmp_path / "ind.csv")]) == 2
    assert "--out " + str(tmp_path / "ind.csv") + " names csv, but --format is parquet" in capsys.readouterr().err
    assert anxmon(["export", "--data-dir", data_dir, "--wearer", "s02", "--what", "raw",
                   "--out", str(tmp_path / "raw.csv")]) == 2
    assert "give --out a .jsonl name" in capsys.readouterr().err
    assert anxmon(["export", "--data-dir", data_dir, "--wearer", "s02", "--out", str(tmp_path / "ind.jsonl")]) == 2
    assert "exports a table: CSV or Parquet" in capsys.readouterr().err
    assert not any(tmp_path.glob("*.csv")) and not any(tmp_path.glob("*.jsonl"))
    assert anxmon(["export", "--data-dir", data_dir, "--wearer", "s02", "--out", str(tmp_path / "ind.txt")]) == 0
    assert len(pd.read_csv(tmp_path / "ind.txt")) == len(recorded[2])  # another suffix: CSV, as before


def test_a_file_where_the_folder_should_be_is_named(recorded, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for what, out in (("indicators", "afile/x.csv"), ("raw", "afile/x.jsonl"), ("analysis", "afile")):
        assert anxmon(["export", "--data-dir", str(recorded[0]), "--wearer", "s02", "--what", what,
                       "--out", str(tmp_path / out)]) == 2
        assert f"{tmp_path / 'afile'} is a file, not a folder" in capsys.readouterr().err, what
    assert (tmp_path / "afile").read_text() == "x"


def test_analysis_summary_has_analyze_s_fields(recorded, tmp_path):
    """The exported ``summary.json`` had only source, format, wearer, times, signals, ticks and
    threshold: a script reading analyze's ``tick_states`` or ``checkins_sent`` got a KeyError.
    The fields the tables hold are computed as ``monitor.analyze.summarize`` does from the ticks."""
    from monitor import __version__

    data_dir, _, ticks, _ = recorded
    folder = tmp_path / "live"
    assert anxmon(["export", "--data-dir", str(data_dir), "--wearer", "s02", "--what", "analysis",
                   "--out", str(folder)]) == 0
    summary = json.loads((folder / "summary.json").read_text())
    decisions = [d for t in ticks for d in t.decisions if isinstance(d, Decision)]
    states = {}
    for t in ticks:
        states[t.score.gate or "scored"] = states.get(t.score.gate or "scored", 0) + 1
    assert summary["tick_states"] == states and summary["ticks"] == len(ticks)
    assert summary["indicators_used"] == sorted({n for t in ticks for n in t.score.used})
    assert summary["trigger_decisions"] == len(decisions) == 1 and summary["checkins_sent"] == 1
    assert summary["suppressed"] == {} and summary["prompts_expired"] == 0  # the one check-in was answered
    assert summary["anxmon_version"] == __version__ and summary["wearer"] == "s02"
    assert sorted(summary["signals"]) == ["acc", "bvp", "eda", "hr", "ibi", "temp"]


def test_analysis_export_removes_another_session_s_report(recorded, tmp_path):
    """Exported into a folder where ``anxmon analyze`` had written another session, the old
    ``report.html`` stayed beside the new files (the export writes none)."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "indicators.csv").write_text("t,stress_score\n1.0,\n")  # another session's analysis
    (folder / "report.html").write_text("<td>polar_h10.csv</td>")
    (folder / "notes.txt").write_text("mine")  # not an analyze file: left alone
    assert anxmon(["export", "--data-dir", str(recorded[0]), "--wearer", "s02", "--what", "analysis",
                   "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["answers.jsonl", "checkins.jsonl", "indicators.csv",
                                                        "markers.csv", "notes.txt", "summary.json"]
    own = tmp_path / "own"  # not an analysis folder: a report.html there is the user's own
    own.mkdir()
    (own / "report.html").write_text("my page")
    assert anxmon(["export", "--data-dir", str(recorded[0]), "--wearer", "s02", "--what", "analysis",
                   "--out", str(own)]) == 0
    assert (own / "report.html").read_text() == "my page"
    notes = tmp_path / "notes"  # a file of a name the export writes, of no analysis: refused, untouched
    notes.mkdir()
    (notes / "summary.json").write_text("my notes")
    assert anxmon(["export", "--data-dir", str(recorded[0]), "--wearer", "s02", "--what", "analysis",
                   "--out", str(notes)]) == 2
    assert [(p.name, p.read_text()) for p in notes.iterdir()] == [("summary.json", "my notes")]


def test_a_raw_or_analysis_export_of_an_empty_range_is_refused_up_front(recorded, tmp_path, capsys):
    """``--what raw`` of a range without batches wrote a recording that ``anxmon analyze`` then
    refused; now one line names the range and the span the recording covers, and nothing is
    written (``--what analysis`` the same)."""
    data_dir, part, _, _ = recorded
    out = tmp_path / "empty.jsonl"
    argv = ["export", "--data-dir", str(data_dir), "--wearer", "s02", "--from", "2030-01-01T00:00:00Z"]
    assert anxmon([*argv, "--what", "raw", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    first = pd.Timestamp(part.start_s, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")
    assert err.startswith("anxmon: error: --from 2030-01-01 00:00:00 UTC holds no raw batches of wearer 's02': "
                          f"they cover {first} to ") and err.endswith("; nothing written\n"), err
    assert err.count("\n") == 1 and f"unix {part.start_s:.0f} to " in err
    assert not out.exists()
    assert anxmon([*argv, "--what", "analysis", "--out", str(tmp_path / "folder")]) == 2
    assert "holds no indicators of wearer 's02'" in capsys.readouterr().err
    assert not (tmp_path / "folder").exists()
    # a range that holds batches is exported as before
    assert anxmon(["export", "--data-dir", str(data_dir), "--wearer", "s02", "--what", "raw", "--to",
                   str(part.start_s + 60), "--out", str(out)]) == 0
    assert out.exists()
