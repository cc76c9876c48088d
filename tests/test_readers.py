"""Readers of recordings (``monitor.readers``), format detection, and ``analyze`` on every format.

Real files from ../shared/data: the Stress-Predict E4 session S02 (folder, and a zip made here),
the Polar H10 export, the Garmin export. EmotiBit: no real parsed recording is in the shared
data, so ``emotibit_session`` BUILDS ONE EXACTLY TO EMOTIBIT'S DOCUMENTATION (EmotiBit_Docs,
Working_with_emotibit_data.md, "Parsed Data File Format" and the DataParser's timestamp
interpolation in ofxEmotiBit's EmotiBitDataParser) from neurokit2-simulated signals. It is a
sample made to the documentation, not a recording.
"""

from __future__ import annotations

import json
import logging
import warnings
import zipfile
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pandas as pd
import pytest

from monitor.analyze import analyze_recording
from monitor.core.wearer import WearerMonitor
from monitor.errors import InputFormatError
from monitor.markers import Marker, read_markers, read_markers_text, write_markers
from monitor.readers import detect
from monitor.readers.anxmon import RecordingWriter, read_anxmon, write_recording
from monitor.readers.common import regular_stream
from monitor.readers.e4 import FILES as E4_FILES
from monitor.readers.emotibit import _read_tag as read_parsed_file
from monitor.recordings import Recording, Stream, read_labels, read_labels_text, read_recording
from monitor.wire import SampleBatch, validate_batch
from tests.conftest import data_path

S02_START = 1644227574.0  # first row of S02's EDA.csv


@pytest.fixture(scope="module")
def s02() -> Recording:
    return read_recording(data_path("stress-predict", "S02"))


def ticks_of(result):
    return [(t.t, t.indicators, t.score, t.decisions) for t in result.ticks]


def median_of(result, key):
    return float(np.nanmedian([tk.indicators.values.get(key, np.nan) for tk in result.ticks]))


# ----------------------------------------------------------------------------- E4


def test_e4_folder_in_canonical_units(s02):
    folder = data_path("stress-predict", "S02")
    assert s02.format == "e4" and sorted(s02.streams) == ["acc", "bvp", "eda", "hr", "ibi", "temp"]
    raw_acc = np.loadtxt(folder / "ACC.csv", delimiter=",", skiprows=2)
    assert s02.streams["acc"].fs == 32.0 and np.array_equal(s02.streams["acc"].values, raw_acc / 64.0)
    assert 0.8 < np.median(np.linalg.norm(s02.streams["acc"].values, axis=1)) < 1.2  # ~1 g at rest
    eda = np.loadtxt(folder / "EDA.csv", skiprows=2)
    assert s02.streams["eda"].t0 == S02_START and np.array_equal(s02.streams["eda"].values, eda)
    ibi = np.loadtxt(folder / "IBI.csv", delimiter=",", skiprows=1)
    assert np.allclose(s02.streams["ibi"].values, ibi[:, 1] * 1000.0)
    tags = np.loadtxt(folder / "tags_S02.csv")
    assert [m.t_s for m in s02.markers] == sorted(tags.tolist()) and {m.kind for m in s02.markers} == {"tag"}
    assert s02.labels is not None and len(s02.labels[0]) > 3000


def test_e4_zip_reads_like_the_folder(s02, tmp_path):
    folder = data_path("stress-predict", "S02")
    archive = tmp_path / "S02.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in folder.iterdir():
            z.write(p, f"S02/{p.name}")  # E4 exports are often zipped with a folder inside
    rec = read_recording(archive)
    assert rec.format == "e4" and sorted(rec.streams) == sorted(s02.streams) and rec.markers == s02.markers
    for name, s in s02.streams.items():
        z = rec.streams[name]
        assert np.array_equal(z.values, s.values) and z.t0 == s.t0 and z.fs == s.fs
        assert (z.t is None) == (s.t is None) and (s.t is None or np.array_equal(z.t, s.t))


def copy_e4(tmp_path, names=("EDA.csv", "TEMP.csv", "HR.csv", "BVP.csv", "ACC.csv", "IBI.csv")) -> Path:
    src, dst = data_path("stress-predict", "S02"), tmp_path / "e4"
    dst.mkdir()
    for n in names:
        (dst / n).write_bytes((src / n).read_bytes())
    return dst


def test_e4_mixed_up_or_truncated_files_get_clear_errors(tmp_path, caplog):
    e4 = copy_e4(tmp_path)
    bvp = (e4 / "BVP.csv").read_text()
    (e4 / "EDA.csv").write_text(bvp)  # BVP's rows under EDA's name: its header says 64 Hz
    with pytest.raises(InputFormatError, match=r"EDA.csv: declares 64 Hz but the E4 writes EDA.csv at 4 Hz"):
        read_recording(e4)
    (e4 / "EDA.csv").write_text("time_ns,ecg,hr,rr\n" + bvp)  # a header row of another file
    with pytest.raises(InputFormatError, match=r"EDA.csv: not an Empatica E4 file"):
        read_recording(e4)
    (e4 / "EDA.csv").write_text("1644227574\n4\n0.1\n0.2\n")
    acc = (e4 / "ACC.csv").read_text().splitlines()
    (e4 / "ACC.csv").write_text("\n".join(acc[:99] + ["2,10,x"] + acc[100:]))  # a damaged row in the middle
    with pytest.raises(InputFormatError, match=r"ACC.csv: 1 row\(s\) are empty or not numbers, the first at line 100 "):
        read_recording(e4)
    (e4 / "ACC.csv").write_text("\n".join(acc[:99] + ["2,10,63", "2,1"]))  # cut mid-number: x,y without z
    with caplog.at_level(logging.WARNING):
        rec = read_recording(e4)
    assert len(rec.streams["acc"].values) == 98 and "ACC.csv: the last line (101) is incomplete" in caplog.text
    (e4 / "ACC.csv").write_text("\n".join(acc[:99] + ["2,10,63", "-"]))  # cut after a sign
    assert len(read_recording(e4).streams["acc"].values) == 98
    archive = tmp_path / "cut.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(e4 / "BVP.csv", "BVP.csv")
    archive.write_bytes(archive.read_bytes()[:2000])  # a download cut short
    with pytest.raises(InputFormatError, match=r"cut.zip: not a readable zip archive"):
        read_recording(archive)


def head_e4(dst: Path, subject: str = "S02", lines: int = 400, names=(*E4_FILES, "IBI.csv", "labels.csv")) -> Path:
    """The first ``lines`` lines of a Stress-Predict session's files (a short real session) in ``dst``."""
    src = data_path("stress-predict", subject)
    dst.mkdir(parents=True)
    for n in names:
        (dst / n).write_text("".join((src / n).read_text().splitlines(keepends=True)[:lines]))
    return dst


def test_e4_start_time_in_milliseconds_is_refused(tmp_path):
    e4 = head_e4(tmp_path / "e4")
    eda = (e4 / "EDA.csv").read_text().splitlines()
    (e4 / "EDA.csv").write_text("\n".join(["1644227574000.000000", *eda[1:]]))
    with pytest.raises(InputFormatError, match=r"EDA.csv: first row \(the start time\) 1644227574000 looks like "
                                               r"milliseconds; give unix seconds"):
        read_recording(e4)


def test_e4_files_of_two_sessions_are_refused(tmp_path):
    e4 = head_e4(tmp_path / "S05", "S05")
    (e4 / "EDA.csv").write_text((data_path("stress-predict", "S02") / "EDA.csv").read_text())  # S02's, a week earlier
    with pytest.raises(InputFormatError, match=r"files do not overlap in time, so they come from different sessions "
                                               r"\(EDA.csv starts 2022-02-07 09:52:54 UTC, BVP.csv starts 2022-02-14"):
        read_recording(e4)


def test_e4_folder_or_zip_with_two_sessions_is_refused_and_one_subfolder_is_read(tmp_path):
    two = tmp_path / "two"
    head_e4(two / "a"), head_e4(two / "b", "S05")
    with pytest.raises(InputFormatError, match=r"two holds 2 sessions \(a/, b/\): pass the folder of one of them$"):
        read_recording(two)
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(two.rglob("*.csv")):
            z.write(p, p.relative_to(two).as_posix())
    with pytest.raises(InputFormatError, match=r"two.zip holds 2 sessions \(a/, b/\): .*\(unzip it first\)"):
        read_recording(archive)
    (two / "b" / "EDA.csv").rename(two / "EDA.csv")  # files at the top too
    with pytest.raises(InputFormatError, match=r"holds 3 sessions \(its top level, a/, b/\)"):
        read_recording(two)


def test_e4_files_two_folders_down_are_named(tmp_path):
    """An export zipped with a folder around its session folder, unzipped into a folder of its own
    (export/outer/S02/EDA.csv...): the zip itself is read, the folder said only "no recording
    found in this folder"."""
    session = head_e4(tmp_path / "export" / "outer" / "S02")
    with pytest.raises(InputFormatError, match=r"export: no recording at its top or in a sub-folder, but E4 files "
                                               r"deeper, in outer/S02/: pass that folder$"):
        read_recording(tmp_path / "export")
    assert read_recording(session).format == "e4"
    one = tmp_path / "one"
    flat = head_e4(one / "S02")
    assert detect(one) == ("e4", one)  # a folder holding one session's folder reads like that folder (and its zip)
    rec, direct = read_recording(one), read_recording(flat)
    assert sorted(rec.streams) == sorted(direct.streams) and rec.markers == direct.markers
    assert all(np.array_equal(rec.streams[k].values, s.values) for k, s in direct.streams.items())
    assert np.array_equal(rec.labels[0], direct.labels[0])


def test_e4_file_without_samples_is_left_out_with_a_warning(tmp_path, caplog):
    e4 = head_e4(tmp_path / "e4")
    (e4 / "EDA.csv").write_text("1644227574.000000\n4.000000\n")  # its two header rows only
    (e4 / "IBI.csv").write_text("1644227574.000000, IBI\n")
    with caplog.at_level(logging.WARNING):
        rec = read_recording(e4)
    assert "eda" not in rec.streams and "ibi" not in rec.streams and "bvp" in rec.streams
    assert "EDA.csv holds no samples" in caplog.text and "IBI.csv holds no samples" in caplog.text


def test_e4_ibi_damaged_row_names_its_line_and_a_cut_last_line_is_left_out(tmp_path, caplog):
    e4 = head_e4(tmp_path / "e4")
    ibi = (e4 / "IBI.csv").read_text().splitlines()
    (e4 / "IBI.csv").write_text("\n".join([*ibi[:5], "612.5", *ibi[6:]]))  # a row without its interval
    with pytest.raises(InputFormatError, match=r"IBI.csv, line 6: expected two numbers"):
        read_recording(e4)
    (e4 / "IBI.csv").write_text("\n".join([*ibi[:10], "612.5,0."[:6]]))  # the recording stopped mid-row
    with caplog.at_level(logging.WARNING):
        assert len(read_recording(e4).streams["ibi"].values) == 9
    assert "IBI.csv: the last line (11) is incomplete" in caplog.text


def test_e4_file_cut_short_is_noted_with_its_coverage_and_its_cut_last_line_left_out(tmp_path, caplog):
    """S02 with BVP.csv cut at 300,003 bytes (as the audit did): its last line "-31" (of "-31.xx")
    parses but has no line end, so it is left out; the note says BVP covers 12 of 59 min."""
    e4 = copy_e4(tmp_path)
    text = (e4 / "BVP.csv").read_text()
    cut = text[:300003]
    fragment = cut[cut.rfind("\n") + 1:]
    assert float(fragment) != float(text[len(cut) - len(fragment):].split("\n")[0])  # a number, but not the row's
    (e4 / "BVP.csv").write_text(cut)
    with caplog.at_level(logging.WARNING):
        rec = read_recording(e4)
    whole = np.loadtxt(data_path("stress-predict", "S02", "BVP.csv"), skiprows=2)
    kept = cut.count("\n") - 2  # the complete sample rows
    assert np.array_equal(rec.streams["bvp"].values, whole[:kept])
    assert rec.notes == [f"{e4 / 'BVP.csv'}: the last line ({kept + 3}) is incomplete (no line end after it); left out",
                         "BVP.csv covers 12.1 of 59.4 min (20%), ends 47.3 min before the session"]
    assert "BVP.csv covers 12.1 of 59.4 min (20%), ends 47.3 min before the session" in caplog.text
    assert str(whole[kept]) not in caplog.text  # no sample value in the log


def test_e4_missing_standard_file_and_short_files_of_a_real_export_are_noted(tmp_path):
    e4 = copy_e4(tmp_path, names=("TEMP.csv", "HR.csv", "BVP.csv", "ACC.csv", "IBI.csv"))  # S02 without EDA.csv
    rec = read_recording(e4)
    assert "eda" not in rec.streams
    assert rec.notes == ["EDA.csv is missing: no eda "
                         "(an E4 export has EDA.csv, BVP.csv, TEMP.csv, ACC.csv, HR.csv, IBI.csv)"]
    # the FLIRT export, each file cut to ~10,000 lines: the files cover 2.6 to 83 of 149 min
    flirt = read_recording(data_path("flirt-e4-garmin", "empatica"))
    assert flirt.notes == [
        "EDA.csv covers 41.7 of 148.9 min (28%), ends 107.2 min before the session",
        "BVP.csv covers 2.6 of 148.9 min (2%), ends 146.3 min before the session",
        "TEMP.csv covers 20.8 of 148.9 min (14%), ends 128.1 min before the session",
        "ACC.csv covers 5.2 of 148.9 min (3%), ends 143.7 min before the session",
        "HR.csv covers 83.3 of 148.9 min (56%), ends 65.4 min before the session",
    ]
    # whole exports: nothing to note (S05's sparse beats end 2.2 min early: under 5% of the session)
    assert read_recording(data_path("stress-predict", "S02")).notes == []
    assert read_recording(data_path("stress-predict", "S05")).notes == []


def rewrite(path: Path, change) -> None:
    """Rewrite a file's lines: ``change(number, line)`` (1-based) returns the new line."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(n, line) for n, line in enumerate(lines, start=1)) + "\n")


@pytest.mark.parametrize("name, change, message", [
    ("EDA.csv", lambda x: x * 1000, r"EDA.csv: 14239 of 14262 eda values are outside 0-100 uS \(e.g. 622.764\): not eda in "
                                    r"uS \(in nS instead of uS, or another file\?\)"),
    ("TEMP.csv", lambda x: x * 1.8 + 32, r"TEMP.csv: 14264 of 14264 temp values are outside 15-45 degC .*in degF"),
    ("HR.csv", lambda x: x * 60, r"HR.csv: 3555 of 3555 hr values are outside 25-250 bpm .*another file"),
])
def test_e4_signal_in_the_wrong_unit_is_refused(tmp_path, name, change, message):
    e4 = copy_e4(tmp_path)
    rewrite(e4 / name, lambda n, line: line if n <= 2 else f"{change(float(line)):.6f}")
    with pytest.raises(InputFormatError, match=message):
        read_recording(e4)


def test_e4_ibi_in_ms_is_refused_and_a_few_values_out_of_range_are_noted(tmp_path):
    e4 = head_e4(tmp_path / "e4")
    ibi = e4 / "IBI.csv"
    text = ibi.read_text()
    rewrite(ibi, lambda n, line: line if n == 1 else f"{line.split(',')[0]},{float(line.split(',')[1]) * 1000:.1f}")
    with pytest.raises(InputFormatError, match=r"IBI.csv: 360 of 360 IBI.csv interval values are outside 250-2000 ms "
                                               r"\(e.g. 687500\): not ibi in ms \(intervals in ms instead of s"):
        read_recording(e4)
    ibi.write_text(text)
    rewrite(e4 / "EDA.csv", lambda n, line: "1e30" if n == 100 else line)  # one absurd value is kept and noted
    rewrite(e4 / "HR.csv", lambda n, line: "400" if n == 100 else line)  # one reading is dropped and noted
    rec = read_recording(e4)
    assert "eda: kept 1 of 398 values outside 0-100 uS (the monitor refuses their batches)" in rec.notes
    assert "hr: dropped 1 of 398 values outside 25-250 bpm" in rec.notes and len(rec.streams["hr"].values) == 397


def test_e4_blank_row_inside_a_signal_file_is_refused_with_its_line(tmp_path):
    e4 = head_e4(tmp_path / "e4")
    eda = (e4 / "EDA.csv").read_text()
    for blank in ("", "   "):  # skipped, it would place every later sample 0.25 s early
        (e4 / "EDA.csv").write_text(eda)
        rewrite(e4 / "EDA.csv", lambda n, line: blank if n == 50 else line)
        with pytest.raises(InputFormatError, match=r"EDA.csv: 1 row\(s\) are empty or not numbers, the first at line 50 "):
            read_recording(e4)
    (e4 / "EDA.csv").write_text(eda + "\n\n  \n")  # blank lines at the end are fine
    assert np.array_equal(read_recording(e4).streams["eda"].values, np.loadtxt(e4 / "EDA.csv", skiprows=2))


def test_e4_ibi_rows_out_of_order_are_sorted_with_a_note(tmp_path):
    e4 = head_e4(tmp_path / "e4")
    ibi = (e4 / "IBI.csv").read_text().splitlines()
    (e4 / "IBI.csv").write_text("\n".join([ibi[0], *sorted(ibi[1:], key=lambda row: float(row.split(",")[1]))]) + "\n")
    rec = read_recording(e4)
    raw = np.loadtxt(data_path("stress-predict", "S02", "IBI.csv"), delimiter=",", skiprows=1)
    assert np.array_equal(rec.streams["ibi"].t, S02_START + raw[:, 0]) and np.array_equal(rec.streams["ibi"].values,
                                                                                        raw[:, 1] * 1000)
    assert "ibi: readings sorted by time" in rec.notes


def test_e4_file_with_only_its_start_time_holds_no_samples(tmp_path, caplog):
    e4 = head_e4(tmp_path / "e4")
    (e4 / "TEMP.csv").write_text("1644227574.000000\n")
    with caplog.at_level(logging.WARNING):
        rec = read_recording(e4)
    assert "temp" not in rec.streams and "TEMP.csv holds no samples" in caplog.text


def test_e4_files_with_a_byte_order_mark_read_like_without(tmp_path):
    e4 = head_e4(tmp_path / "e4", names=(*E4_FILES, "IBI.csv", "labels.csv", "tags_S02.csv"))
    plain = read_recording(e4)
    for name in ("IBI.csv", "tags_S02.csv", "labels.csv", "EDA.csv"):
        (e4 / name).write_bytes(b"\xef\xbb\xbf" + (e4 / name).read_bytes())
    rec = read_recording(e4)
    assert rec.markers == plain.markers and len(rec.markers) == 9 and np.array_equal(rec.labels[0], plain.labels[0])
    assert all(np.array_equal(rec.streams[k].values, s.values) for k, s in plain.streams.items())


def test_e4_malformed_labels_leave_the_session_readable_but_not_usable_as_labels(tmp_path, caplog):
    """A researcher's own labels.csv in another layout: the session is read (labels without rows, a
    warning and a note why); analyze refuses to compare with them, and takes ``--labels FILE``."""
    from monitor.analyze import run_analyze

    e4 = head_e4(tmp_path / "e4")
    good = (e4 / "labels.csv").read_text()
    (e4 / "labels.csv").write_text(good.replace("unix_s,stress", "time,label", 1))
    with caplog.at_level(logging.WARNING):
        rec = read_recording(e4)
    assert len(rec.labels[0]) == 0 and sorted(rec.streams) == ["acc", "bvp", "eda", "hr", "ibi", "temp"]
    assert any(n.startswith("labels.csv not read: ") and "found the header 'time,label'" in n for n in rec.notes)
    assert "labels.csv: expected a CSV with columns unix_s,stress" in caplog.text and "--labels FILE" in caplog.text
    with pytest.raises(InputFormatError, match=r"no label rows"):
        run_analyze(e4, tmp_path / "out")
    (tmp_path / "labels.csv").write_text(good)
    result, _ = run_analyze(e4, tmp_path / "out", labels_path=str(tmp_path / "labels.csv"))
    assert "labels" in result.summary
    from monitor.report import run_report  # a report needs no labels: it is made

    run_report(e4, tmp_path / "page.html", n_boot=10)
    assert (tmp_path / "page.html").stat().st_size > 10_000


def test_labels_value_not_a_number_or_empty_names_its_line_and_text(tmp_path):
    lines = (data_path("stress-predict", "S02") / "labels.csv").read_text().splitlines()
    path = tmp_path / "labels.csv"
    for row, message in ((f"{lines[499].split(',')[0]},abc", r"labels.csv, line 500: stress 'abc' is not a number$"),
                         (f"{lines[499].split(',')[0]},", r"labels.csv, line 500: stress is empty$"),
                         (lines[499].split(",")[0], r"labels.csv, line 500: stress is empty$"),
                         (f"x{lines[499]}", r"labels.csv, line 500: unix_s 'x1644228081' is not a number$")):
        path.write_text("\n".join(lines[:499] + [row] + lines[500:]) + "\n")
        with pytest.raises(InputFormatError, match=message):
            read_labels(path)
    path.write_text("\n".join(lines[:10] + [""] + lines[10:499] + ["1644228081,abc"] + lines[500:]) + "\n")
    with pytest.raises(InputFormatError, match=r"line 501: stress 'abc'"):  # the line in the file, past a blank one
        read_labels(path)


def test_labels_header_with_spaces_is_read():
    t, y = read_labels_text("unix_s, stress\n1644227583, 0\n1644227584, 1\n", "labels.csv")
    assert t.tolist() == [1644227583.0, 1644227584.0] and y.tolist() == [0.0, 1.0]


# ----------------------------------------------------------------------------- Polar H10


@pytest.fixture(scope="module")
def polar() -> Recording:
    return read_recording(data_path("polar-h10", "polar_h10.csv"))


def test_polar_ecg_hr_and_rr(polar):
    raw = pd.read_csv(data_path("polar-h10", "polar_h10.csv"))
    assert polar.format == "polar-h10" and sorted(polar.streams) == ["ecg", "hr", "ibi"]
    ecg = polar.streams["ecg"]
    t = raw["time_ns"].to_numpy() / 1e9
    # the strap's rate measured on the phone's clock: (n - 1) / span = 130.16 Hz (not resampled)
    assert ecg.fs == pytest.approx((len(t) - 1) / (t[-1] - t[0]), rel=1e-5)
    assert np.array_equal(ecg.values, raw["ecg"].to_numpy()) and ecg.segments is None
    assert np.max(np.abs(ecg.times_s() - t)) < 0.01  # the fitted grid is within 10 ms of every stamp
    assert np.array_equal(polar.streams["hr"].values, raw["hr"].dropna().to_numpy())
    rr = raw["rr"].dropna().to_numpy()
    ibi = polar.streams["ibi"]
    assert np.array_equal(ibi.values, rr)  # 798 intervals, 375-1417 ms: all inside the contract
    # beats are chained from the intervals (no re-anchor needed in these 10 min) ...
    assert np.allclose(np.diff(ibi.t) * 1000.0, rr[1:], atol=1e-3)
    # ... and stay within the 2 s drift allowance of the notification stamps
    stamps = raw.loc[raw["rr"].notna(), "time_ns"].to_numpy() / 1e9
    assert np.max(np.abs(ibi.t - stamps)) < 2.0
    # same rhythm as neurokit2's R peaks on the ECG: median RR 745 ms (nk) vs 750 ms (strap)
    _, info = nk.ecg_peaks(nk.ecg_clean(ecg.values, sampling_rate=ecg.fs), sampling_rate=ecg.fs)
    assert abs(np.median(np.diff(info["ECG_R_Peaks"])) / ecg.fs * 1000 - np.median(rr)) < 15


def test_polar_batches_pass_the_wire_contract(polar):
    batches = list(polar.batches())
    for b in batches:
        validate_batch(b)
    ecg = [b for b in batches if b.signal == "ecg"]
    assert len(ecg) == pytest.approx(600, abs=2) and ecg[1].t0 - ecg[0].t0 == pytest.approx(130 / polar.streams["ecg"].fs)


def test_polar_swapped_or_cut_columns_get_clear_errors(tmp_path):
    text = data_path("polar-h10", "polar_h10.csv").read_text()
    lines = text.splitlines()
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("time_ns,ecg,rr,hr\n" + "\n".join(lines[1:]))  # hr and rr headers swapped
    with pytest.raises(InputFormatError, match=r"hr \(bpm\) values are outside 25-250 bpm .*columns swapped"):
        read_recording(swapped)
    swapped.write_text("time_ns,rr,hr,ecg\n" + "\n".join(lines[1:]))  # ecg and rr swapped
    with pytest.raises(InputFormatError, match=r"line 2: ecg is empty"):
        read_recording(swapped)
    cut = tmp_path / "cut.csv"
    cut.write_text("\n".join(lines[:5000]) + "\n" + lines[5000][:9] + "\n" + "\n".join(lines[5001:]) + "\n")
    with pytest.raises(InputFormatError, match=r"cut.csv, line 5001: time_ns 171492063 is not unix time in "
                                               r"nanoseconds \(is before the year 2000\)$"):
        read_recording(cut)  # a line cut inside time_ns in the middle: an error naming it


def test_polar_cut_last_line_is_left_out_with_a_note(tmp_path):
    """The export stopped mid-row: the rows before it are read, the cut one is noted (the rule of
    every reader); before, the file was refused."""
    lines = data_path("polar-h10", "polar_h10.csv").read_text().splitlines()
    cut = tmp_path / "cut.csv"
    row = lines[5000]  # 1714920638410666496,-0.233,,
    for fragment in (row[:9], row[:row.index(",") + 5]):  # inside time_ns; inside ecg ("-0.2": it parses)
        cut.write_text("\n".join(lines[:5000]) + "\n" + fragment)
        rec = read_recording(cut)
        whole = pd.read_csv(data_path("polar-h10", "polar_h10.csv"), nrows=4999)
        assert np.array_equal(rec.streams["ecg"].values, whole["ecg"].to_numpy())
        assert rec.notes[0] == f"{cut}: the last line (5001) is incomplete (no line end after it); left out"


def test_polar_time_in_ms_and_rows_out_of_order_name_the_line(tmp_path):
    lines = data_path("polar-h10", "polar_h10.csv").read_text().splitlines()[:3000]
    path = tmp_path / "p.csv"
    path.write_text("\n".join([lines[0]] + [f"{int(row.split(',')[0]) // 10**6},{row.split(',', 1)[1]}"
                                            for row in lines[1:]]))  # time_ns in ms
    with pytest.raises(InputFormatError, match=r"p.csv, line 2: time_ns 1714920600006 is not unix time in "
                                               r"nanoseconds \(looks like milliseconds\)$"):
        read_recording(path)
    path.write_text("\n".join(lines[:1000] + [lines[1001], lines[1000]] + lines[1002:]))  # rows 1001 and 1002 swapped
    with pytest.raises(InputFormatError, match=r"p.csv: time_ns: time goes backwards at line 1002 "):
        read_recording(path)


def test_polar_beats_a_backward_re_anchor_puts_before_others_are_left_out_as_live(tmp_path):
    """A late notification anchors the chain late; the held burst after it re-anchors it
    backwards, onto beats already there. The live bridge leaves those beats out (the stream
    cannot go back in time); the reader kept them, sorted them in among the others (intervals
    no longer matching their beats' spacing) and said only "readings sorted". It now gives the
    bridge's beats, with a note."""
    from firmware_bridge.ble_hrs import HeartRateMeasurement, HrsConverter
    from firmware_bridge.devices import load_device

    lines = data_path("polar-h10", "polar_h10.csv").read_text().splitlines()[:2200]  # ~17 s of ECG
    rows = [line.split(",")[:2] + ["", ""] for line in lines[1:]]
    t = np.array([int(r[0]) for r in rows]) / 1e9
    # (s after the first row, RR intervals): one a second, one 2.5 s late, then a held burst
    notifications = [(float(k), [1000.0]) for k in range(1, 10)] + [(12.5, [1000.0]), (13.0, [1000.0] * 3),
                                                                     (14.0, [1000.0])]
    bridge = HrsConverter(load_device("polar-h10"))
    live = []
    for after_s, rr in notifications:
        i = int(np.searchsorted(t, t[0] + after_s))
        rows[i][2] = "60"
        for k, interval in enumerate(rr):
            rows[i + k][3] = f"{interval:g}"
        chunks = bridge.convert(HeartRateMeasurement(60, rr), float(t[i]))
        live += [x for c in chunks if getattr(c, "signal", None) == "ibi" for x in c.t]
    path = tmp_path / "late.csv"
    path.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    rec = read_recording(path)
    ibi = rec.streams["ibi"]
    assert bridge.overlapped_beats == 2 and len(ibi.t) == len(live) == 12
    assert np.allclose(ibi.t, live, atol=1e-6) and np.all(np.diff(ibi.t) > 0)
    assert "ibi: dropped 2 beats that a re-anchored chain put before the previous one" in rec.notes
    assert not any("sorted" in n for n in rec.notes)


def test_polar_analyze_takes_heart_rate_from_the_ecg(polar):
    """The pipeline's best heart source is the ECG (R peaks), above the strap's RR intervals
    (``ibi``). The file's own HR column has median 79 bpm."""
    monitor = WearerMonitor("polar")
    result = analyze_recording(polar, monitor=monitor, progress=False)
    assert result.rejected == {} and result.summary["ticks"] > 100
    assert monitor.pipeline.state.heart_source == "ecg"
    assert abs(median_of(result, "HR_Mean") - 79.0) < 3.0
    # the wearer's premature beats make the rhythm irregular: RMSSD is withheld, as it should be
    assert sum(tk.indicators.quality.get("hrv") == "irregular" for tk in result.ticks) > 0.5 * len(result.ticks)


# ----------------------------------------------------------------------------- Garmin


@pytest.fixture(scope="module")
def garmin() -> Recording:
    return read_recording(data_path("flirt-e4-garmin", "garmin", "data.csv"))


def test_garmin_beats_heart_rate_and_stress(garmin):
    raw = pd.read_csv(data_path("flirt-e4-garmin", "garmin", "data.csv"), sep=";", header=None,
                      names=["time", "type", "value"])
    assert garmin.format == "garmin" and sorted(garmin.streams) == ["cadence", "hr", "ibi"]  # cadence: test_motion_gate.py
    bbi = raw[raw["type"] == "HEART_RATE_VARIABILITY"]
    ibi = garmin.streams["ibi"]
    # 14316 intervals; 15 dropped where a re-anchored chain would step back in time
    assert len(ibi.values) == len(bbi) - 15 and np.all(np.diff(ibi.t) > 0)
    assert any("dropped 15 beats" in n for n in garmin.notes)
    hr = raw[(raw["type"] == "HEART_RATE") & (raw["value"] > 0)]
    assert np.array_equal(garmin.streams["hr"].values, hr["value"].to_numpy())
    # times carry their +02:00 offset: 12:09:00.511+02:00 is 10:09:00.511 UTC
    assert garmin.streams["hr"].t[0] == pytest.approx(pd.Timestamp("2019-10-16T10:09:00.511Z").timestamp(), abs=1e-6)
    stress = garmin.reference["garmin_stress"]
    assert 0 <= stress.values.min() and stress.values.max() <= 100 and "garmin_stress" not in garmin.streams
    # the stamps jitter ~+-0.1 s; as stamped, 35% of intervals look consecutive to the beat
    # corrector (|t_i - ibi_i - t_(i-1)| <= 50 ms); chained, most do
    stamps = pd.to_datetime(bbi["time"], format="ISO8601").map(pd.Timestamp.timestamp).to_numpy()
    raw_consecutive = np.mean(np.abs(np.diff(stamps) - bbi["value"].to_numpy()[1:] / 1000) <= 0.05)
    chained_consecutive = np.mean(np.abs(np.diff(ibi.t) - ibi.values[1:] / 1000) <= 0.05)
    assert raw_consecutive < 0.4 and chained_consecutive > 0.9


def test_garmin_analyze_the_whole_46_hours(garmin):
    """The file spans 46 h but holds one 4 h stretch of beats (the rest: a few minutes, and a 42 h
    pause); the whole file is analysed and nothing is refused. Over the stretch Garmin's own
    HEART_RATE has median 63 bpm; the beat intervals give ~61 bpm (mean of intervals per window)."""
    result = analyze_recording(garmin, progress=False)
    assert result.rejected == {}
    ticks = np.array([tk.t for tk in result.ticks])
    assert 3.9 < len(ticks) * 5.0 / 3600 < 4.5  # ticks where there are beats, none through the pauses
    assert abs(median_of(result, "HR_Mean") - float(np.median(garmin.streams["hr"].values))) < 4
    rmssd = [tk.indicators.values.get("HRV_RMSSD") for tk in result.ticks]
    assert sum(v is not None for v in rmssd) > 0.9 * len(rmssd)  # chained beats give RMSSD nearly always
    # scored, except while the step cadence shows walking (and its hold-off; test_motion_gate.py)
    assert sum(tk.score.value is not None or tk.score.gate == "motion" for tk in result.ticks) > 0.85 * len(result.ticks)


def test_garmin_cut_mid_line_gets_a_clear_error(tmp_path):
    text = data_path("flirt-e4-garmin", "garmin", "data.csv").read_text()
    cut = tmp_path / "data.csv"
    head = text[: len(text) // 2].rsplit(";", 1)[0] + "\n"  # a line that lost its value ...
    cut.write_text(head + text[len(text) // 2:].split("\n", 1)[1])  # ... in the middle of the file
    n = len(head.splitlines())
    with pytest.raises(InputFormatError, match=rf"line {n}: .* fewer than 3 fields; expected ISO-time;TYPE;value"):
        read_recording(cut)
    cut.write_text(head)  # at the end (an export interrupted while writing): left out, with a note
    rec = read_recording(cut)
    assert any(f"the last line ({n}) is incomplete (not a whole row); left out" in note for note in rec.notes)
    assert len(rec.streams["hr"].values) > 1000
    cut.write_text("2019-10-16T12:08:58.041+02:00;STEPS;299.0\n2019-10-16T25:61;HEART_RATE;70\n")
    with pytest.raises(InputFormatError, match=r"line 2: time '2019-10-16T25:61' is not an ISO 8601 time"):
        read_recording(cut)


def test_garmin_repeated_lines_are_dropped_with_a_note(garmin, tmp_path):
    text = data_path("flirt-e4-garmin", "garmin", "data.csv").read_text()
    path = tmp_path / "twice.csv"  # two overlapping exports merged
    path.write_text(text + text)
    rec = read_recording(path)
    assert "dropped 25573 repeated lines (the same time, type and value again: exports merged?)" in rec.notes
    assert same_streams(rec, garmin)


def test_garmin_times_without_offset_are_noted_as_utc(tmp_path):
    lines = data_path("flirt-e4-garmin", "garmin", "data.csv").read_text().splitlines()[:3000]
    path = tmp_path / "naive.csv"
    path.write_text("\n".join(line.replace("+02:00;", ";") for line in lines) + "\n")
    rec = read_recording(path)
    assert "3000 times without a UTC offset (e.g. line 1: '2019-10-16T12:08:58.041') read as UTC" in rec.notes
    assert rec.streams["hr"].t[0] == pytest.approx(pd.Timestamp("2019-10-16T12:09:00.511Z").timestamp(), abs=1e-6)


# ----------------------------------------------------------------------------- anxmon's own format


def test_anxmon_recording_round_trip_gives_identical_analysis(s02, tmp_path):
    path = tmp_path / "s02.jsonl"
    write_recording(path, s02, wearer="s02")
    back = read_recording(path)
    assert back.format == "anxmon" and back.wearer == "s02" and back.markers == s02.markers
    assert sorted(back.streams) == sorted(s02.streams)
    for name, s in s02.streams.items():
        b = back.streams[name]
        assert np.array_equal(b.values, s.values) and b.t0 == s.t0 and b.fs == s.fs
        assert (s.t is None and b.t is None) or np.array_equal(b.t, s.t)
    first = analyze_recording(s02.between(s02.start_s, s02.start_s + 600), progress=False)
    second = analyze_recording(back.between(back.start_s, back.start_s + 600), progress=False)
    assert ticks_of(first) == ticks_of(second) and len(first.ticks) > 100


def test_anxmon_recording_keeps_gaps_and_drops_redelivered_batches(tmp_path):
    t0 = 1.7e9
    stream = Stream("eda", np.arange(40.0) / 10 + 1, t0=t0, fs=4.0, segments=[(0, t0), (20, t0 + 605.0)])
    rec = Recording("gap", "test", {"eda": stream, "hr": Stream("hr", np.array([60.0, 61.0]), t=np.array([t0, t0 + 700]))},
                    [Marker(t0 + 1, "tag", "a")])
    path = tmp_path / "gap.jsonl"
    write_recording(path, rec, device="e4")
    with open(path, "a") as f:  # a batch redelivered after a crash, and a record type of a later version
        f.write(path.read_text().splitlines()[2] + "\n")
        f.write('{"type": "answer", "t": 1700000100.0}\n')
    back = read_anxmon(path)
    eda = back.streams["eda"]
    assert eda.segments == [(0, t0), (20, t0 + 605.0)] and np.array_equal(eda.values, stream.values)
    assert np.allclose(eda.times_s(), stream.times_s())
    assert "skipped 1 duplicate batches" in back.notes and "skipped 1 records of type 'answer'" in back.notes
    batches = [b for b in back.batches() if b.signal == "eda"]
    assert [b.t0 for b in batches] == [t0, t0 + 1, t0 + 2, t0 + 3, t0 + 4, t0 + 605, t0 + 606, t0 + 607, t0 + 608,
                                       t0 + 609]


def test_anxmon_recording_damaged_files_get_clear_errors(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordingWriter(path, wearer="alice") as w:
        w.write_batch("e4", SampleBatch("hr", 0, np.array([70.0]), t=np.array([1.7e9])))
        w.write_batch("e4", SampleBatch("hr", 1, np.array([71.0]), t=np.array([1.7e9 + 1])))
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][:-20] + "\n" + lines[2])  # a damaged line before the last
    with pytest.raises(InputFormatError, match=r"r.jsonl, line 2: not valid JSON .*file damaged"):
        read_recording(path)
    path.write_text(text.replace('"anxmon_recording": 1', '"anxmon_recording": 2'))
    with pytest.raises(InputFormatError, match=r"version 2; this anxmon reads version 1"):
        read_recording(path)
    path.write_text(text.replace('"values":[71.0]', '"values":[7100.0]'))
    with pytest.raises(InputFormatError, match=r"line 3: hr batch refused: hr sample 0 is outside"):
        read_recording(path)


@pytest.fixture(scope="module")
def s02_jsonl(s02, tmp_path_factory) -> Path:
    """The first 2 minutes of S02 as an anxmon recording, as ``write_recording`` writes it."""
    path = tmp_path_factory.mktemp("jsonl") / "base.jsonl"
    write_recording(path, s02.between(s02.start_s, s02.start_s + 120), wearer="s02")
    return path


def same_streams(a: Recording, b: Recording) -> bool:
    return sorted(a.streams) == sorted(b.streams) and all(
        np.array_equal(a.streams[k].values, s.values) and np.array_equal(a.streams[k].times_s(), s.times_s())
        for k, s in b.streams.items())


def test_reading_an_anxmon_recording_shows_progress_on_a_terminal_only(s02_jsonl, monkeypatch):
    """Reading an anxmon recording takes ~1 s per hour of E4 data, and analyze showed nothing
    meanwhile (its bar counts batches, after reading): on a terminal a bar over the file's bytes
    now says how far reading is; a log or a pipe gets nothing."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    shown = read_anxmon(s02_jsonl)
    assert f"read {s02_jsonl.name}:   0%" in terminal.getvalue(), terminal.getvalue()
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    assert same_streams(read_anxmon(s02_jsonl), shown) and pipe.getvalue() == ""


def test_anxmon_recording_cut_by_a_crash_is_read_without_its_last_line(s02_jsonl, tmp_path, caplog):
    """The recorder writes whole lines; a crash leaves the last one cut. The lines before it are
    read, the cut one is left out with a warning and a note; before, the whole file was refused."""
    text = s02_jsonl.read_text()
    cut = text[: len(text) * 2 // 3]
    assert not cut.endswith("\n")
    whole_lines = tmp_path / "whole_lines.jsonl"
    whole_lines.write_text(cut[: cut.rfind("\n") + 1])
    path = tmp_path / "cut.jsonl"
    path.write_text(cut)
    with caplog.at_level(logging.WARNING):
        rec = read_anxmon(path)
    n = cut.count("\n") + 1
    assert same_streams(rec, read_anxmon(whole_lines)) and len(rec.streams["bvp"].values) > 64 * 60
    assert rec.notes[0] == f"{path}: the last line ({n}) is incomplete (no line end after it); left out"
    assert f"cut.jsonl: the last line ({n}) is incomplete" in caplog.text
    path.write_text(cut[: cut.rfind("\n") + 1] + "{not json}\n")  # a last line that is not a record: left out too
    assert same_streams(read_anxmon(path), read_anxmon(whole_lines))
    lines = text.splitlines(keepends=True)
    path.write_text("".join(lines[:10] + [lines[10][:50] + "\n"] + lines[11:]))  # damaged in the middle
    with pytest.raises(InputFormatError, match=r"cut.jsonl, line 11: not valid JSON"):
        read_anxmon(path)


def test_anxmon_batches_out_of_order_are_sorted_and_only_true_duplicates_dropped(s02_jsonl, tmp_path):
    base = read_anxmon(s02_jsonl)
    lines = s02_jsonl.read_text().splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if '"type":"batch"' in line)
    head, body = lines[:k], lines[k:]
    halves = tmp_path / "halves.jsonl"  # the two halves of the file in the wrong order, and a batch given twice
    halves.write_text("".join(head + body[len(body) // 2:] + body[:len(body) // 2] + body[5:6]))
    rec = read_anxmon(halves)
    assert same_streams(rec, base)
    assert "skipped 1 duplicate batches" in rec.notes and "eda: batches out of time order at 1 place(s) in the file; sorted" in rec.notes


def test_anxmon_recordings_merged_keep_each_marker_once(tmp_path):
    """Two copies of a recording concatenated: each batch and each marker is kept once (as the
    service records them), else every marker would count twice in the report's before/after
    tables; a marker at the same time with another label is another marker."""
    t0 = 1.7e9
    rec = Recording("merged", "test", {"eda": Stream("eda", np.full(40, 2.0), t0=t0, fs=4.0)},
                    [Marker(t0 + 1, "tag", ""), Marker(t0 + 5, "therapy", "session 3")])
    path = tmp_path / "merged.jsonl"
    write_recording(path, rec, device="e4")
    lines = path.read_text().splitlines(keepends=True)
    extra = '{"type": "marker", "t": %r, "kind": "therapy", "label": "session 4"}\n' % (t0 + 5)
    path.write_text("".join(lines + lines[1:] + [extra]))
    back = read_anxmon(path)
    assert back.markers == [*rec.markers, Marker(t0 + 5, "therapy", "session 4")]
    assert "skipped 2 duplicate markers" in back.notes and "skipped 10 duplicate batches" in back.notes


def test_e4_tags_in_two_files_count_once(tmp_path):
    """An E4 export's tags.csv beside a renamed copy (tags_S02.csv): each tag once."""
    folder = tmp_path / "S02"
    folder.mkdir()
    for f in data_path("stress-predict", "S02").iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "tags.csv").write_text((folder / "tags_S02.csv").read_text())
    rec = read_recording(folder)
    assert len(rec.markers) == 9 and len(set(rec.markers)) == 9


def test_anxmon_batches_contradicting_their_rate_are_refused(s02_jsonl, tmp_path):
    path = tmp_path / "bvp32.jsonl"  # 64 samples a batch declared at 32 Hz: each overlaps the next by 1 s
    path.write_text(s02_jsonl.read_text().replace('"fs":64.0', '"fs":32.0'))
    lines = path.read_text().splitlines()
    first, second = [n for n, line in enumerate(lines, start=1) if '"signal":"bvp"' in line][:2]
    with pytest.raises(InputFormatError, match=rf"bvp32.jsonl, line {second}: bvp batch starts 1 s before the one of "
                                               rf"line {first} ends, and so do \d+ more \(declared fs 32 Hz, but 64 "
                                               r"samples every 1 s is 64 Hz\)$"):
        read_anxmon(path)


def test_anxmon_batches_after_a_clock_step_back_lose_only_their_overlap(s02_jsonl, tmp_path):
    """A device clock set back 3 s: the live service accepts its later batches (dropping the
    overlapping samples) and the recorder keeps them as they came, so a raw export holds
    overlapping batches. The reader takes them as the service did, with a note, instead of
    refusing the whole recording."""
    lines = s02_jsonl.read_text().splitlines()
    eda = [n for n, line in enumerate(lines) if '"signal":"eda"' in line]
    for n in eda[100:]:  # from the 101st EDA batch on, 3 s earlier
        record = json.loads(lines[n])
        record["batch"]["t0"] -= 3.0
        lines[n] = json.dumps(record)
    path = tmp_path / "step.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rec = read_anxmon(path)
    whole = read_anxmon(s02_jsonl).streams["eda"]
    stepped = rec.streams["eda"]
    assert any(n.startswith("eda: 3 batch(es) overlapped the one before") for n in rec.notes), rec.notes
    assert len(stepped.values) == len(whole.values) - 3 * 4  # 3 s of 4 Hz samples dropped, nothing else


def test_anxmon_times_in_milliseconds_are_refused(s02_jsonl, tmp_path):
    lines = s02_jsonl.read_text().splitlines()
    n = next(n for n, line in enumerate(lines, start=1) if '"type":"batch"' in line)
    record = json.loads(lines[n - 1])
    record["batch"]["t0"] *= 1000
    path = tmp_path / "ms.jsonl"
    path.write_text("\n".join(lines[:n - 1] + [json.dumps(record)] + lines[n:]))
    with pytest.raises(InputFormatError, match=rf"ms.jsonl, line {n}: {record['signal']} batch refused: timestamp "
                                               r"1644227574000 in 't0' looks like milliseconds; give unix seconds$"):
        read_anxmon(path)


def test_anxmon_recording_with_a_byte_order_mark_reads_like_without(s02_jsonl, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + s02_jsonl.read_bytes())
    assert detect(path)[0] == "anxmon" and same_streams(read_recording(path), read_anxmon(s02_jsonl))


# ----------------------------------------------------------------------------- EmotiBit


BASE = "2024-09-18_22-59-45-827135"
HEADER = "LocalTimestamp,EmotiBitTimestamp,PacketNumber,DataLength,TypeTag,ProtocolVersion,DataReliability"
# Raw SD-card lines quoted from EmotiBit_Docs ("Sample raw data file")
RAW_DOC_LINES = """531386,17296,1,RB,1,100,2024-09-18_22-59-45-827135
531388,17297,4,EM,1,100,RS,RB,2024-09-18_22-59-45-827135.csv,PS,MN
531473,17298,3,PI,1,100,112870,112866,112867
531459,17301,2,EA,1,100,0.030269,0.030269
531473,17305,3,AX,1,100,-0.436,-0.434,-0.433
"""
# The parsed AX file quoted from EmotiBit_Docs ("Parsed data file example"), first 9 rows
DOC_AX = """LocalTimestamp,EmotiBitTimestamp,PacketNumber,DataLength,TypeTag,ProtocolVersion,DataReliability,AX
1726714786.598369,531473.000,17305,3,AX,1,100,-0.436
1726714786.598369,531473.000,17305,3,AX,1,100,-0.434
1726714786.598369,531473.000,17305,3,AX,1,100,-0.433
1726714786.638383,531513.000,17322,3,AX,1,100,-0.434
1726714786.678397,531553.000,17322,3,AX,1,100,-0.433
1726714786.718411,531593.000,17322,3,AX,1,100,-0.434
1726714786.758425,531633.000,17337,2,AX,1,100,-0.437
1726714786.798439,531673.000,17337,2,AX,1,100,-0.436
1726714786.838453,531713.000,17354,3,AX,1,100,-0.432
"""
E0_MS, C0_S, CLOCK = 531000.0, 1726714786.0, 1.00002  # a time sync: EmotiBit ms -> unix s (clock 20 ppm off)


def epoch(ms: float) -> float:
    """The DataParser's linterp over its time sync map (EmotiBit ms -> unix s)."""
    return C0_S + (ms - E0_MS) / 1000.0 * CLOCK


def parsed_rows(tag: str, values: np.ndarray, rate_hz: float, per_packet: int, numbers: list[int]) -> list[str]:
    """Rows as EmotiBit's DataParser writes a periodic tag: each packet is stamped at its last
    sample (EmotiBit ms); its samples get linterp(i + 1, 0, n, previous packet stamp, stamp), the
    first packet's all get its own stamp; LocalTimestamp with 6 decimals, EmotiBitTimestamp 3."""
    rows, prev = [], None
    for i in range(0, len(values), per_packet):
        chunk = values[i:i + per_packet]
        stamp = E0_MS + (i + len(chunk) - 1) * 1000.0 / rate_hz
        prev = stamp if prev is None else prev
        numbers[0] += 1
        for k, v in enumerate(chunk):
            ms = prev + (k + 1) * (stamp - prev) / len(chunk)
            rows.append(f"{epoch(ms):.6f},{ms:.3f},{numbers[0]},{len(chunk)},{tag},1,100,{v:.6g}")
        prev = stamp
    return rows


@pytest.fixture(scope="module")
def emotibit_session(tmp_path_factory) -> tuple[Path, dict]:
    """A 8-minute session made to the documentation (see the module docstring): EA 15 Hz, PG 25 Hz,
    T1 7.5 Hz, AX/AY/AZ 25 Hz (the documented typical rates), HR and BI aperiodic, one user note."""
    folder = tmp_path_factory.mktemp("emotibit")
    duration = 480
    with warnings.catch_warnings():  # neurokit2's simulators warn about their own interpolation
        warnings.simplefilter("ignore", nk.misc.NeuroKitWarning)
        eda = nk.eda_simulate(duration=duration, sampling_rate=15, scr_number=12, drift=0.01, random_state=3)
        ppg = nk.ppg_simulate(duration=duration, sampling_rate=25, heart_rate=70, random_state=3)
    truth = {
        "EA": eda + 2.0,
        "PG": 20000 + 800 * ppg,
        "T1": 33.0 + 0.01 * np.random.default_rng(3).standard_normal(duration * 15 // 2),
        "AX": 0.02 * np.random.default_rng(4).standard_normal(duration * 25),
        "AY": 0.02 * np.random.default_rng(5).standard_normal(duration * 25),
        "AZ": 1.0 + 0.02 * np.random.default_rng(6).standard_normal(duration * 25),
    }
    packets = {"EA": (15.0, 2), "PG": (25.0, 3), "T1": (7.5, 1), "AX": (25.0, 3), "AY": (25.0, 3), "AZ": (25.0, 3)}
    numbers = [17000]
    for tag, (rate, per) in packets.items():
        rows = parsed_rows(tag, truth[tag], rate, per, numbers)
        (folder / f"{BASE}_{tag}.csv").write_text(f"{HEADER},{tag}\n" + "\n".join(rows) + "\n")
    beats_ms = E0_MS + np.cumsum(np.full(duration, 60000.0 / 70) + np.random.default_rng(7).normal(0, 20, duration))
    beats_ms = beats_ms[beats_ms < E0_MS + duration * 1000]
    bi = np.diff(beats_ms)
    truth["BI"] = bi
    for tag, vals in (("HR", 60000.0 / bi), ("BI", bi)):  # aperiodic: one row per value at its packet stamp
        rows = [f"{epoch(ms):.6f},{ms:.3f},{18000 + i},1,{tag},1,100,{v:.6g}" for i, (ms, v) in enumerate(zip(beats_ms[1:], vals))]
        (folder / f"{BASE}_{tag}.csv").write_text(f"{HEADER},{tag}\n" + "\n".join(rows) + "\n")
    # a user note: LocalTimestamp is the computer time of the note, whole seconds
    (folder / f"{BASE}_UN.csv").write_text(f"{HEADER},UN\n{C0_S + 300:.6f},{E0_MS + 300000:.3f},19000,2,UN,1,100,breathing exercise\n")
    (folder / f"{BASE}.csv").write_text(RAW_DOC_LINES)
    (folder / f"{BASE}_info.json").write_text(json.dumps([{"info": {"name": "EmotiBit"}}]))
    return folder, truth


def test_emotibit_documented_example_rows_parse(tmp_path):
    (tmp_path / "s_AX.csv").write_text(DOC_AX)
    t, x = read_parsed_file(tmp_path / "s_AX.csv", "AX")
    assert x.tolist() == [-0.436, -0.434, -0.433, -0.434, -0.433, -0.434, -0.437, -0.436, -0.432]
    # the first packet's three samples share a stamp, later ones are 40 ms apart: a 25 Hz stream
    s = regular_stream("acc", t, x, "doc", [])
    assert s.fs == pytest.approx(25.0, rel=0.01) and s.t0 == pytest.approx(1726714786.598369 - 2 / 25.0, abs=0.002)


def test_emotibit_parsed_files_to_canonical_streams(emotibit_session):
    folder, truth = emotibit_session
    rec = read_recording(folder)
    assert rec.format == "emotibit" and sorted(rec.streams) == ["acc", "bvp", "eda", "hr", "ibi", "temp"]
    for signal, tag, rate in (("eda", "EA", 15.0), ("bvp", "PG", 25.0), ("temp", "T1", 7.5)):
        s = rec.streams[signal]
        assert s.fs == pytest.approx(rate * CLOCK, rel=1e-3)  # the rate on the computer's clock
        assert np.allclose(s.values, truth[tag], rtol=1e-5)
        assert abs(s.t0 - epoch(E0_MS)) < 1.0 / rate
    acc = rec.streams["acc"]
    assert acc.values.shape == (480 * 25, 3) and np.allclose(acc.values[:, 2], truth["AZ"], rtol=1e-5)
    assert np.allclose(rec.streams["ibi"].values, truth["BI"], rtol=1e-5)
    assert rec.markers == [Marker(C0_S + 300, "breathing exercise", "breathing exercise")]
    # the same session through one of its parsed files, or through the raw file beside them
    for path in (folder / f"{BASE}_EA.csv", folder / f"{BASE}.csv"):
        assert sorted(read_recording(path).streams) == sorted(rec.streams)


def test_emotibit_analyze(emotibit_session):
    """Heart rate from the PPG (neurokit2 simulated 70 bpm), EDA level near the simulated mean."""
    folder, truth = emotibit_session
    result = analyze_recording(read_recording(folder), progress=False)
    assert result.rejected == {} and result.summary["ticks"] > 80
    assert abs(median_of(result, "HR_Mean") - 70.0) < 4.0
    assert abs(median_of(result, "EDA_Tonic_Mean") - float(np.median(truth["EA"]))) < 0.5
    assert abs(median_of(result, "TEMP_Mean") - 33.0) < 0.05


def test_emotibit_raw_alone_mixed_up_or_two_sessions_get_clear_errors(emotibit_session, tmp_path):
    folder, _ = emotibit_session
    raw = tmp_path / "2024-01-01_00-00-00-000000.csv"
    raw.write_text(RAW_DOC_LINES)
    with pytest.raises(InputFormatError, match=r"raw SD-card file without parsed files .*run EmotiBit's DataParser"):
        read_recording(raw)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in folder.glob(f"{BASE}_*.csv"):
        (mixed / p.name).write_bytes(p.read_bytes())
    text = (folder / f"{BASE}_PG.csv").read_text().splitlines()
    (mixed / f"{BASE}_EA.csv").write_text("\n".join([f"{HEADER},EA"] + text[1:]) + "\n")  # PG rows under EA
    with pytest.raises(InputFormatError, match=r"_EA.csv, line 2: type tag 'PG' in a file of EA \(files mixed up\?\)"):
        read_recording(mixed)
    (mixed / f"{BASE}_EA.csv").write_bytes((folder / f"{BASE}_EA.csv").read_bytes())
    (mixed / "2024-09-19_10-00-00-000000_EA.csv").write_bytes((folder / f"{BASE}_EA.csv").read_bytes())
    with pytest.raises(InputFormatError, match=r"parsed files of 2 EmotiBit sessions .*pass one of their files"):
        read_recording(mixed)


def emotibit_from_e4(dst: Path, minutes: int = 10) -> Path:
    """S02's real EDA and temperature (4 Hz, first ``minutes``) as EmotiBit DataParser files
    (``EA``, ``T1``) in the documented layout (``parsed_rows``): no parsed EmotiBit recording is in
    the shared data, so real signals are put in its format."""
    dst.mkdir()
    numbers = [17000]
    for name, tag in (("EDA.csv", "EA"), ("TEMP.csv", "T1")):
        values = np.loadtxt(data_path("stress-predict", "S02", name), skiprows=2)[: minutes * 60 * 4]
        rows = parsed_rows(tag, values, 4.0, 2, numbers)
        (dst / f"{BASE}_{tag}.csv").write_text(f"{HEADER},{tag}\n" + "\n".join(rows) + "\n")
    return dst


def test_emotibit_cut_last_line_is_left_out_and_a_damaged_line_is_named(tmp_path):
    """The DataParser stopped mid-row: the rows before are read, the cut one noted (the rule of every
    reader); before, the session stopped with "type tag nan ... (files mixed up?)"."""
    session = emotibit_from_e4(tmp_path / "session")
    ea = session / f"{BASE}_EA.csv"
    text = ea.read_text()
    whole = read_recording(session).streams["eda"]
    ea.write_text(text[:-20])  # the last row lost its type tag and value
    rec = read_recording(session)
    assert np.array_equal(rec.streams["eda"].values, whole.values[:-1]) and len(whole.values) == 2400
    assert f"{ea}: the last line (2401) is incomplete (no line end after it); left out" in rec.notes
    lines = text.splitlines()
    ea.write_text("\n".join(lines[:100] + [lines[100][:30]] + lines[101:]) + "\n")  # the same cut in the middle
    with pytest.raises(InputFormatError, match=r"_EA.csv, line 101: a row without its type tag \(file damaged\?\)$"):
        read_recording(session)


def test_emotibit_file_without_samples_or_a_missing_axis_is_noted(emotibit_session, tmp_path, caplog):
    folder, _ = emotibit_session
    copy = tmp_path / "session"
    copy.mkdir()
    for p in folder.glob(f"{BASE}_*.csv"):
        (copy / p.name).write_bytes(p.read_bytes())
    (copy / f"{BASE}_EA.csv").write_text(f"{HEADER},EA\n")  # its header only
    (copy / f"{BASE}_HR.csv").write_text("")  # 0 bytes
    (copy / f"{BASE}_AY.csv").unlink()
    with caplog.at_level(logging.WARNING):
        rec = read_recording(copy)
    assert sorted(rec.streams) == ["bvp", "ibi", "temp"]
    assert f"{copy / BASE}_EA.csv: no samples" in rec.notes and f"{BASE}_EA.csv holds no samples" in caplog.text
    assert "acc: no AY file, so AX/AZ left out" in rec.notes
    assert f"{copy / BASE}_HR.csv: empty or not a DataParser file; left out" in rec.notes


# ----------------------------------------------------------------------------- detection, streams, markers


def test_detection_and_what_is_expected(tmp_path):
    assert detect(data_path("polar-h10"))[0] == "polar-h10"  # a folder holding one recording
    assert detect(data_path("flirt-e4-garmin", "garmin", "data.csv"))[0] == "garmin"
    assert detect(data_path("flirt-e4-garmin", "empatica"))[0] == "e4"
    # the E4 export in a sub-folder beside the Garmin file: the Garmin file was skipped without a word
    with pytest.raises(InputFormatError, match=r"flirt-e4-garmin holds several recordings \(empatica/, "
                                               r"garmin/data.csv\): pass one of them"):
        detect(data_path("flirt-e4-garmin"))
    other = data_path("neurokit", "bio_resting_5min_100hz.csv")
    with pytest.raises(InputFormatError, match=r"is not a recording anxmon reads; expected an Empatica E4 export .*"
                                               r"EmotiBit .*Polar H10 .*Garmin .*anxmon recording"):
        read_recording(other)
    with pytest.raises(InputFormatError, match=r"one file of an Empatica E4 export: pass its folder"):
        read_recording(data_path("stress-predict", "S02", "EDA.csv"))
    (tmp_path / "never.jsonl").touch()  # a recorder that never wrote: not "a format anxmon does not read"
    with pytest.raises(InputFormatError, match=r"never.jsonl is empty \(0 bytes\): no recording in it"):
        read_recording(tmp_path / "never.jsonl")
    with pytest.raises(InputFormatError, match=r"does not exist"):
        read_recording(tmp_path / "nothing")
    (tmp_path / "a.csv").write_bytes(data_path("polar-h10", "polar_h10.csv").read_bytes())
    (tmp_path / "b.csv").write_bytes(data_path("flirt-e4-garmin", "garmin", "data.csv").read_bytes())
    with pytest.raises(InputFormatError, match=r"holds several recordings \(a.csv, b.csv\)"):
        read_recording(tmp_path)


def test_regular_stream_splits_at_gaps_and_batches_follow():
    rng = np.random.default_rng(0)
    t = 1.7e9 + np.r_[np.arange(300) / 25.0, 30.0 + np.arange(200) / 25.0] + rng.normal(0, 0.002, 500)
    notes = []
    s = regular_stream("bvp", t, np.arange(500.0), "synthetic", notes)
    assert s.fs == pytest.approx(25.0, rel=1e-4) and [i for i, _ in s.segments] == [0, 300]
    assert abs(s.segments[1][1] - (1.7e9 + 30.0)) < 0.01 and "in 2 run(s)" in notes[0]
    rec = Recording("x", "test", {"bvp": s})
    batches = list(rec.batches())
    assert sum(len(b) for b in batches) == 500 and all(validate_batch(b) for b in batches)
    assert len(batches) == 12 + 8 and batches[12].t0 == s.segments[1][1]  # no batch straddles the gap
    with pytest.raises(InputFormatError, match="time goes backwards at sample 3"):
        regular_stream("bvp", np.array([1.7e9, 1.7e9 + 1, 1.7e9 + 2, 1.7e9 + 1.5]), np.zeros(4), "x", [])


def test_markers_csv(tmp_path):
    assert read_markers_text("unix_s,label,kind\n1700000000,session 3,therapy\n1700000500,,\n", "m.csv") == [
        Marker(1700000000.0, "therapy", "session 3"), Marker(1700000500.0, "marker", "")]
    tags = read_markers(data_path("stress-predict", "S02", "tags_S02.csv"))  # headerless: one time per line
    assert len(tags) == 9 and tags[0] == Marker(1644228196.0, "tag", "")  # the E4's tags file: as the E4 reader
    times = tmp_path / "times.csv"  # any other headerless file: kind "marker"
    times.write_text(data_path("stress-predict", "S02", "tags_S02.csv").read_text())
    assert read_markers(times)[0] == Marker(1644228196.0, "marker", "")
    path = tmp_path / "markers.csv"
    write_markers(path, [Marker(1700000000.5, "medication change", "10 mg, evening")])
    assert read_markers(path) == [Marker(1700000000.5, "medication change", "10 mg, evening")]
    with pytest.raises(InputFormatError, match=r"m.csv, line 3: unix_s '17000' is before the year 2000; give unix seconds"):
        read_markers_text("unix_s,label\n1700000000,a\n17000,b\n", "m.csv")
    with pytest.raises(InputFormatError, match=r"expected a CSV with columns unix_s\[,label\]\[,kind\]"):
        read_markers_text("time,what\n1700000000,a\n", "m.csv")


def test_e4_empty_file_is_left_out_and_labels_of_another_shape_are_named_in_a_warning(tmp_path, caplog):
    e4 = head_e4(tmp_path / "e4")
    (e4 / "EDA.csv").write_text("")  # 0 bytes: pandas said "No columns to parse from file"
    with caplog.at_level(logging.WARNING):
        rec = read_recording(e4)
    assert "eda" not in rec.streams and "EDA.csv holds no samples (it is empty" in caplog.text
    (e4 / "labels.csv").write_text((data_path("stress-predict", "S02") / "tags_S02.csv").read_text())
    with caplog.at_level(logging.WARNING):
        assert len(read_recording(e4).labels[0]) == 0
    assert ("labels.csv: expected a CSV with columns unix_s,stress, found the header '1644228196' (no unix_s and no "
            "stress column): not read") in caplog.text


def test_a_labels_csv_in_an_emotibit_session_folder_labels_the_session(tmp_path):
    """``labels.csv`` in the session folder labels the session in every format, as ``analyze
    --labels`` says ("default: labels.csv in the session folder"). Only the E4 reader read it: an
    EmotiBit session's was silently ignored, and ``anxmon eval`` said "no labels.csv" beside it."""
    from monitor.analyze import run_analyze

    session = emotibit_from_e4(tmp_path / "session", minutes=20)  # S02's first 20 min: its Stroop test
    rec = read_recording(session)
    assert rec.labels is None
    s02 = data_path("stress-predict", "S02")
    shift = rec.streams["eda"].t0 - float((s02 / "EDA.csv").read_text().splitlines()[0])
    t, y = read_labels(s02 / "labels.csv")
    t = t + shift
    keep = (t >= rec.start_s) & (t < rec.end_s)
    (session / "labels.csv").write_text("unix_s,stress\n" + "".join(f"{float(a)!r},{b:g}\n" for a, b in zip(t[keep], y[keep])))
    for path in (session, session / f"{BASE}_EA.csv"):
        labels = read_recording(path).labels
        assert labels is not None and np.array_equal(labels[0], t[keep]) and np.array_equal(labels[1], y[keep])
    result, _ = run_analyze(session, tmp_path / "out")
    assert result.summary["labels"]["stress_periods"] == 1  # S02's labels hold one stress period in 20 min
    assert result.summary["provenance"]["labels_file"]["path"] == str((session / "labels.csv").resolve())
    # an E4 export in a sub-folder brings its own labels, not the EmotiBit session's
    (session / "labels.csv").unlink()
    (session / "e4").mkdir()
    (session / "e4" / "EDA.csv").write_text("")
    (session / "e4" / "labels.csv").write_bytes((s02 / "labels.csv").read_bytes())
    assert read_recording(session / f"{BASE}_EA.csv").labels is None


def test_a_ctrl_c_while_pandas_reads_is_a_ctrl_c_not_a_damaged_file():
    """Ctrl-C while ``anxmon analyze`` read S05 sometimes ended with "BVP.csv: not an Empatica E4
    file (...): Error tokenizing data. C error: Calling read(nbytes) on source failed" and exit
    status 2: pandas' C parser turns the KeyboardInterrupt raised during its read callback into a
    ParserError, which the reader took for a damaged file. ``csv_frame``, which every reader
    uses, raises it as the Ctrl-C it was (exit status 130)."""
    import io
    import signal

    from monitor.readers.common import csv_frame

    text = (data_path("stress-predict", "S05") / "BVP.csv").read_text()

    class CtrlCWhileRead(io.StringIO):
        reads = 0

        def read(self, *args):
            self.reads += 1
            data = super().read(*args)
            if self.reads == 2:  # the signal arrives while pandas reads the second chunk
                signal.raise_signal(signal.SIGINT)
            return data

    with pytest.raises(KeyboardInterrupt):
        csv_frame(CtrlCWhileRead(text), header=None)
    assert len(csv_frame(text, header=None)) == len(text.splitlines())  # uninterrupted: every row
