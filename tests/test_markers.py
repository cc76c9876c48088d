"""Plausible unix times (``monitor.markers.unix_s_problem``): one range for every time a user or a
file gives anxmon, so times in milliseconds (or before 2000) are refused where they come in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from monitor.errors import AnxmonError, InputFormatError
from monitor.export import parse_time
from monitor.markers import read_markers, unix_s_problem
from monitor.readers.anxmon import read_anxmon
from monitor.wire import EARLIEST_T_S


def test_the_plausible_range_names_the_likely_unit():
    assert unix_s_problem(1644228000.0) is None and unix_s_problem(EARLIEST_T_S) is None
    assert unix_s_problem(1644228000000.0) == "looks like milliseconds; give unix seconds"
    assert unix_s_problem(1644228000e6) == "looks like microseconds; give unix seconds"
    assert unix_s_problem(1644228000e9) == "looks like nanoseconds; give unix seconds"
    assert unix_s_problem(-5.0) == unix_s_problem(EARLIEST_T_S - 1) == "is before the year 2000; give unix seconds"
    assert unix_s_problem(5e9) == "is after the year 2100; give unix seconds"
    assert unix_s_problem(float("nan")) == "is not a number"


def test_parse_time_refuses_milliseconds_and_times_before_2000():
    assert parse_time("1644228000") == parse_time("2022-02-07T10:00:00Z") == 1644228000.0
    with pytest.raises(AnxmonError, match=r"time '1644228000000' looks like milliseconds; give unix seconds"):
        parse_time("1644228000000")
    with pytest.raises(AnxmonError, match=r"time '-5' is before the year 2000"):
        parse_time("-5")
    with pytest.raises(AnxmonError, match=r"time '1970-01-02T00:00Z' is before the year 2000"):
        parse_time("1970-01-02T00:00Z")


def test_annotate_refuses_a_time_in_milliseconds_before_publishing():
    # no broker is running: the time is refused before anything is sent
    for t in ("1644228000000", "-5"):
        run = subprocess.run([sys.executable, "-m", "monitor.cli", "annotate", "--wearer", "w1", "--label", "x",
                              "--t", t, "--broker", "mqtt://127.0.0.1:9"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=60)
        assert run.returncode == 2 and run.stderr.startswith("anxmon: error: time ")
        assert "give unix seconds" in run.stderr and "Traceback" not in run.stderr


def test_markers_csv_and_recording_markers_in_milliseconds_are_refused(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("unix_s,label\n1644228000,a\n1644228000000,b\n")
    with pytest.raises(InputFormatError, match=r"m.csv, line 3: unix_s '1644228000000' looks like milliseconds"):
        read_markers(path)
    rec = tmp_path / "r.jsonl"
    rec.write_text(json.dumps({"anxmon_recording": 1}) + "\n"
                   + json.dumps({"type": "marker", "t": 1644228000000, "kind": "tag"}) + "\n")
    with pytest.raises(InputFormatError, match=r"r.jsonl, line 2: marker time 1644228000000 looks like milliseconds"):
        read_anxmon(rec)


def test_markers_csv_takes_iso_times_with_a_zone_and_refuses_one_without(tmp_path):
    """A researcher writes a session's time down as a date and a clock time, not unix seconds.
    An ISO 8601 time with its zone (an offset or Z) is read; one without a zone is refused with
    its line (read as UTC it would move the marker by the wearer's offset), and so is text
    that is no time at all, with an example of what is read."""
    from monitor.markers import read_markers_text

    text = ("unix_s,label,kind\n2022-02-07T11:00:00+01:00,session 3,therapy session\n"
            "2022-02-07 10:30Z,exam,\n1644237000,evening,\n")
    assert [(m.t_s, m.kind) for m in read_markers_text(text, "m.csv")] == [
        (1644228000.0, "therapy session"), (1644229800.0, "exam"), (1644237000.0, "evening")]
    headerless = read_markers_text("2022-02-07T10:00:00Z\n2022-02-07T12:00:00+02:00,tag\n", "tags.csv")
    assert [m.t_s for m in headerless] == [1644228000.0, 1644228000.0]
    path = tmp_path / "m.csv"
    path.write_text("unix_s,label\n2022-02-07T11:00:00+01:00,a\n2022-02-07T11:00:00,b\n")
    with pytest.raises(InputFormatError, match=r"m.csv, line 3: time '2022-02-07T11:00:00' names no time zone: "
                                               r"add Z \(UTC\) or the offset"):
        read_markers(path)
    path.write_text("unix_s,label\nyesterday,b\n")
    with pytest.raises(InputFormatError, match=r"m.csv, line 2: unix_s 'yesterday' is neither unix seconds nor an "
                                               r"ISO 8601 time with its zone \(2022-02-07T10:00:00\+01:00\)"):
        read_markers(path)
    # export --from/--to and annotate --t: one rule with the markers file (a wall-clock time read
    # as UTC moved an annotation, or a range, by the wearer's offset without a word)
    with pytest.raises(InputFormatError, match=r"time '2022-02-07T10:00:00' names no time zone: add Z \(UTC\) or"):
        parse_time("2022-02-07T10:00:00")
    with pytest.raises(InputFormatError, match=r"time '2022-02-07' names no time zone: .* e.g. 2022-02-07T00:00Z$"):
        parse_time("2022-02-07")  # a date alone: which midnight? (and a date takes no Z)
    assert parse_time("2022-02-07T11:00:00+01:00") == 1644228000.0


def test_a_markers_csv_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    """A markers file saved by a spreadsheet in Windows-1252 had its labels' umlauts replaced by
    U+FFFD without a word ("Sitzung \ufffd" in markers.csv and on the page); it is refused,
    naming the line and the encoding to save it in. UTF-8, with or without a byte-order mark,
    reads as written."""
    path = tmp_path / "markers.csv"
    path.write_bytes("unix_s,label\r\n1644228196,Stroop\r\n1644228572,Sitzung \u00fc\r\n".encode("cp1252"))
    with pytest.raises(InputFormatError, match=r"markers.csv, line 3: not UTF-8 text \(byte 0xfc\): save it as UTF-8"):
        read_markers(path)
    for encoding in ("utf-8", "utf-8-sig"):
        path.write_bytes("unix_s,label\r\n1644228572,Sitzung \u00fc\r\n".encode(encoding))
        assert [m.label for m in read_markers(path)] == ["Sitzung \u00fc"]


def test_markers_given_twice_are_counted_in_the_notes(tmp_path):
    """A markers CSV with a row pasted twice: analyze merged the two without a word (the anxmon
    recording reader notes "skipped 1 duplicate markers"), so the researcher who meant two events
    at that time never learnt that one was gone. The reader notes now count such rows, in analyze's
    output and summary.json and on report's page of a folder."""
    from tests.conftest import data_path

    markers = tmp_path / "m.csv"
    markers.write_text("unix_s,label\n1714920700,coffee\n1714920900,walk\n1714920700,coffee\n")
    run = subprocess.run([sys.executable, "-m", "monitor.cli", "analyze", str(data_path("polar-h10", "polar_h10.csv")),
                          "--out", str(tmp_path / "o"), "--markers", str(markers)], capture_output=True, text=True)
    note = f"{markers}: 1 of 3 marker rows repeat a marker (the same time, kind and label): counted once"
    assert run.returncode == 0 and f"reading: {note}" in run.stdout, run.stdout + run.stderr
    assert note in json.loads((tmp_path / "o" / "summary.json").read_text())["reader_notes"]
    assert len(read_markers(tmp_path / "o" / "markers.csv")) == 2
    from monitor.report import run_report  # the folder's own markers given again: all three rows repeat

    run_report(tmp_path / "o", tmp_path / "page.html", tmp_path / "o" / "markers.csv", n_boot=0)
    page = (tmp_path / "page.html").read_text()
    assert f"{tmp_path / 'o' / 'markers.csv'}: 2 of 2 marker rows repeat a marker" in page
