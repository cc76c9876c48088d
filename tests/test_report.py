"""``anxmon report``: the self-contained HTML page, its daily summary and before/after tables.

The end-to-end tests run on the real Stress-Predict session S02, whose ``tags_S02.csv`` (the
task boundaries, 9 markers minutes apart) are the markers, with 120 s windows. The statistics
are checked against a computation written out in the test on ``indicators.csv``, and on a
synthetic analyze folder whose right answers are known by construction.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from monitor.errors import AnxmonError
from monitor.markers import Marker, read_markers
from monitor.report import (TimeAxis, before_after, daily_summary, default_window_s, read_analysis_folder, run_report,
                            write_report)
from tests.conftest import data_path

ANXMON = [sys.executable, "-m", "monitor.cli"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0"]


def anxmon(*args, check=True):
    return subprocess.run([*ANXMON, *map(str, args)], capture_output=True, text=True, check=check,
                          stdin=subprocess.DEVNULL)


class Tables(HTMLParser):
    """Every <table id=...> of a page as rows of cell texts (header row first), and every <img> src."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.row_attrs: dict[str, list[dict]] = {}
        self.images: list[str] = []
        self._table = self._row = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", f"table{len(self.tables)}")
            self.tables[self._table], self.row_attrs[self._table] = [], []
        elif tag == "tr" and self._table:
            self._row = []
            self.row_attrs[self._table].append(attrs)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def png_pixels(data: bytes) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(data), format="png")[..., :3]


def assert_not_blank(pixels: np.ndarray, min_inked: float):
    """Plots drawn: pixel values vary and a share of the pixels is not white background."""
    assert pixels.std() > 0.05
    inked = np.mean(pixels.min(axis=-1) < 0.9)
    assert inked > min_inked, f"only {inked:.1%} of the pixels are drawn"


@pytest.fixture(scope="module")
def s02_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s02") / "analysis"
    anxmon("analyze", data_path("stress-predict", "S02"), "--out", out)
    return out


@pytest.fixture(scope="module")
def s02_page(s02_folder) -> Path:
    page = s02_folder.parent / "s02.html"
    run = anxmon("report", s02_folder, "--out", page, "--before-s", 120, "--after-s", 120)
    assert "tag: 7 window pair(s)" in run.stdout
    return page


def expected_windows(folder: Path, tags: np.ndarray, before_s: float, after_s: float):
    """Mean score before/after each tag, written out: ticks in [m - 120, m) and [m, m + 120);
    a window counts when scored ticks (5 s each) cover at least half of it."""
    ticks = pd.read_csv(folder / "indicators.csv")
    t, score = ticks["t"].to_numpy(), ticks["stress_score"].to_numpy(dtype=float)
    pairs = []
    for m in tags:
        b = score[(t >= m - before_s) & (t < m)]
        a = score[(t >= m) & (t < m + after_s)]
        b, a = b[np.isfinite(b)], a[np.isfinite(a)]
        if len(b) * 5.0 >= before_s / 2 and len(a) * 5.0 >= after_s / 2:
            pairs.append((b.mean(), a.mean()))
    return np.array(pairs)


def test_s02_report_has_the_before_after_table(s02_folder, s02_page):
    html = s02_page.read_text()
    page = Tables(html)
    table = page.tables["before-after"]
    header = table[0]
    assert header[:3] == ["marker kind", "measure", "n windows"]
    assert {"before (mean)", "after (mean)", "95% CI low", "95% CI high"} <= set(header)
    rows = {r[1]: dict(zip(header, r)) for r in table[1:]}
    assert [r[0] for r in table[1:]] == ["tag"] * 3 and len(rows) == 3
    tags = np.loadtxt(data_path("stress-predict", "S02", "tags_S02.csv"))
    pairs = expected_windows(s02_folder, tags, 120.0, 120.0)
    # 9 tags; 2 have too little scored time after them (the score is withheld during the
    # hyperventilation task's movement, and the last tag is 25 s before the recording ends)
    assert len(pairs) == 7
    score = rows["mean stress score"]
    assert int(score["n windows"]) == 7 and int(score["markers"]) == 9
    assert float(score["before (mean)"]) == pytest.approx(pairs[:, 0].mean(), abs=0.006)
    assert float(score["after (mean)"]) == pytest.approx(pairs[:, 1].mean(), abs=0.006)
    diff = float(score["difference (after - before)"])
    assert diff == pytest.approx((pairs[:, 1] - pairs[:, 0]).mean(), abs=0.006)
    lo, hi = float(score["95% CI low"]), float(score["95% CI high"])
    assert lo < diff < hi and hi - lo < 2.0
    # ticks cover every window but the last tag's after-window: 25 s of data in its 120 s (the
    # ticks of partial windows after the last sample, which covered it, are no longer emitted)
    assert int(rows["check-ins sent per hour"]["n windows"]) == 8
    assert "not evidence of a treatment's effect" in html and "not a medical device" in html
    assert "Windows: 2 min before each marker and 2 min after it (as given)" in html


def test_s02_report_is_self_contained_with_drawn_plots(s02_page):
    html = s02_page.read_text()
    page = Tables(html)
    assert len(page.images) == 2 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html) and "<script" not in html
    for src, min_inked in zip(page.images, (0.03, 0.02)):
        assert_not_blank(png_pixels(base64.b64decode(src.split(",", 1)[1])), min_inked)
    days = page.tables["days"]
    assert len(days) == 2  # header + one local day: the session lasts an hour (09:52-10:53 UTC)
    overview = {row[0]: row[1] for row in page.tables["table0"] if len(row) == 2}
    # the recording's span (59.4 min), not the ticks' (the last windows reach past its end: "1 h 0 min")
    assert overview["duration"] == "59 min 26 s" and overview["to"] == "2022-02-07 10:52:20 UTC"
    assert len(page.tables["markers"]) == 10  # header + 9 tags


def test_report_is_reproducible_and_the_seed_only_moves_the_intervals(s02_folder, s02_page, tmp_path):
    folder = read_analysis_folder(s02_folder)
    tags = [m for m in folder.markers if m.kind == "tag"]
    first, again = (before_after(folder, tags, 120.0, 120.0, 2.0, seed=0) for _ in range(2))
    assert [(c.ci, c.before_ci, c.after_ci) for c in first] == [(c.ci, c.before_ci, c.after_ci) for c in again]
    other = tmp_path / "other.html"
    anxmon("report", s02_folder, "--out", other, "--before-s", 120, "--after-s", 120, "--seed", 7)
    a, b = Tables(s02_page.read_text()).tables["before-after"], Tables(other.read_text()).tables["before-after"]
    assert [r[:7] for r in a] == [r[:7] for r in b] and [r[7:9] for r in a] != [r[7:9] for r in b]


def test_report_on_a_recording_adapts_its_windows_and_takes_more_markers(tmp_path):
    """Straight from the recording (analysed in a temporary folder), with a markers CSV adding a
    second kind. Default windows: half the median time between consecutive markers (24 h would
    swallow the whole session). The 9 tags and the 3 added markers, in s after 1644228000:
    196 300 572 844 1000 1499 1801 1931 2000 2238 2562 3123; gaps sorted 69 104 130 156 238 272
    272 302 324 499 561; median 272 s -> 136 s = 2 min 16 s."""
    markers = tmp_path / "m.csv"
    markers.write_text("unix_s,label,kind\n1644228300,breathing,exercise\n1644229000,breathing,exercise\n"
                       "1644230000,,exercise\n")
    page = tmp_path / "p.html"
    run = anxmon("report", data_path("stress-predict", "S02"), "--out", page, "--markers", markers)
    html = page.read_text()
    assert "Windows: 2 min 16 s before each marker and 2 min 16 s after it (default" in html
    table = Tables(html).tables["before-after"]
    assert sorted({r[0] for r in table[1:]}) == ["exercise", "tag"]
    assert "exercise: 3 window pair(s)" in run.stdout


def test_analyze_writes_markers_and_report_reads_answers(tmp_path):
    """``anxmon analyze --markers`` merges the CSV with the recording's own tags into markers.csv;
    an answers.jsonl (written by the service's export) shows in the day table."""
    extra = tmp_path / "extra.csv"
    extra.write_text("unix_s,label\n1644228000,coffee\n")
    out = tmp_path / "polar"
    anxmon("analyze", data_path("polar-h10", "polar_h10.csv"), "--out", out, "--markers", extra)
    assert read_markers(out / "markers.csv") == [Marker(1644228000.0, "coffee", "coffee")]
    start = float(pd.read_csv(out / "indicators.csv")["t"].iloc[0])
    with open(out / "answers.jsonl", "w") as f:
        for k, rating in enumerate((4, 2)):
            f.write(json.dumps({"t": start + 60 * (k + 1), "prompt_id": f"wearer-{k}", "rating": rating,
                                "labels": []}) + "\n")
    page = tmp_path / "polar.html"
    anxmon("report", out, "--out", page, "--tz", "Europe/Berlin")
    days = Tables(page.read_text()).tables["days"]
    row = dict(zip(days[0], days[1]))
    assert row["answers"] == "2" and row["mean rating"] == "3.0" and row["day"] == "2024-05-05"
    # the marker's time in the page's zone, named (a researcher compares it with the time written down)
    assert Tables(page.read_text()).tables["markers"][1] == ["2022-02-07 11:00:00 CET", "coffee", "coffee"]
    bad = anxmon("report", out, "--out", page, "--tz", "Mars/Olympus", check=False)
    assert bad.returncode == 2 and "unknown time zone 'Mars/Olympus'" in bad.stderr
    # analysing again into the folder: a recording has no answers, the old ones must go
    anxmon("analyze", data_path("polar-h10", "polar_h10.csv"), "--out", out)
    assert not (out / "answers.jsonl").exists()


def test_report_days_and_the_daily_cap_follow_one_time_zone(tmp_path):
    """S02 runs 09:52-10:52 UTC: 23:52-00:52 in Kiritimati (UTC+14), over two days there. The page's
    days followed this computer's zone, not the zone of the analysis's daily cap; and ``report
    RECORDING --tz`` set only the page's days, while quiet hours ran in UTC (S02's trigger at
    00:19 Kiritimati time was sent)."""
    s02, zone = data_path("stress-predict", "S02"), "Pacific/Kiritimati"
    out = tmp_path / "kiritimati"
    anxmon("analyze", s02, "--out", out, "--tz", zone)
    anxmon("report", out, "--out", tmp_path / "folder.html", "--bootstrap", 0)
    anxmon("report", s02, "--out", tmp_path / "direct.html", "--bootstrap", 0, "--tz", zone)
    for page in ("folder.html", "direct.html"):
        text = (tmp_path / page).read_text()
        tables = Tables(text).tables
        assert [r[0] for r in tables["days"][1:]] == ["2022-02-07", "2022-02-08"], page
        assert f"Days in {zone}." in text
        overview = dict(r for r in tables["table0"] if len(r) == 2)
        assert overview["check-ins sent / suppressed"] == "0 / 1", page  # in quiet hours there
    utc = anxmon("report", out, "--out", tmp_path / "utc.html", "--bootstrap", 0, "--tz", "UTC")
    assert utc.returncode == 0
    text = (tmp_path / "utc.html").read_text()
    assert [r[0] for r in Tables(text).tables["days"][1:]] == ["2022-02-07"]
    assert f"Days in UTC; the analysis's daily cap counted days in {zone}." in unescape(text)


def test_the_analyze_pages_clock_is_the_analysis_time_zone(tmp_path, monkeypatch):
    """analyze's page drew its time axis on this computer's clock even with --tz: its start and the
    day table of ``anxmon report`` (the analysis's zone) named different clock times. The axis
    names the zone, not only its abbreviation ("CET" is several zones)."""
    import monitor.report as report
    from monitor.analyze import run_analyze
    from monitor.config import load_config

    labels, draw = [], report.timeline_figure

    def record(*args, **kwargs):
        fig = draw(*args, **kwargs)
        labels.append(fig.axes[-1].get_xlabel())
        return fig

    monkeypatch.setattr(report, "timeline_figure", record)
    run_analyze(data_path("stress-predict", "S02"), tmp_path / "a", load_config(None, ["policy.timezone=Europe/Berlin"]))
    assert labels == ["minutes since 2022-02-07 10:52 CET, Europe/Berlin"]


def test_the_recordings_tags_given_again_as_markers_count_once(s02_folder, tmp_path):
    """``report out/s02 --markers tags_S02.csv``: the E4 reader's tags are of kind "tag", the same
    file read as a headerless markers CSV gave kind "marker", so the page listed the 9 tags twice
    and compared each twice, under two kinds."""
    page = tmp_path / "again.html"
    done = run_report(s02_folder, page, data_path("stress-predict", "S02", "tags_S02.csv"), 120, 120, n_boot=0)
    assert {c.kind for c in done["comparisons"]} == {"tag"}
    assert [r[1] for r in Tables(page.read_text()).tables["markers"][1:]] == ["tag"] * 9


def test_windows_too_long_for_the_data_are_named_as_the_reason_for_no_pairs(s02_folder, tmp_path):
    """24 h windows (the README's example for days-long recordings) on the one-hour S02 session:
    no window is half covered, and report said only "tag: 0 window pair(s)" over a table of n/a."""
    run = anxmon("report", s02_folder, "--out", tmp_path / "p.html", "--before-h", 24)
    assert "tag: 0 window pair(s)" in run.stdout
    assert "no marker has both windows covered by data for 50% of their length: windows longer" in run.stderr
    short = anxmon("report", s02_folder, "--out", tmp_path / "p.html", "--before-s", 120)
    assert "tag: 7 window pair(s)" in short.stdout and short.stderr == ""


def test_the_windows_are_printed_in_hours_and_minutes(s02_folder, tmp_path):
    """``report --before-h 24`` printed "windows 86400 s before, 86400 s after": the user gave
    hours. The windows are now printed as the page gives them (h, min, s)."""
    run = anxmon("report", s02_folder, "--out", tmp_path / "p.html", "--before-h", 24, "--bootstrap", 0)
    assert "windows 24 h before, 24 h after;" in run.stdout, run.stdout
    run = anxmon("report", s02_folder, "--out", tmp_path / "p.html", "--before-h", 0.5, "--after-s", 90,
                 "--bootstrap", 0)
    assert "windows 30 min before, 1 min 30 s after;" in run.stdout, run.stdout
    assert "Windows: 30 min before each marker and 1 min 30 s after it" in (tmp_path / "p.html").read_text()


def test_few_bootstrap_resamples_make_a_page(s02_folder, tmp_path):
    """With 1-3 resamples a percentile interval need not contain the mean (the plot's error bars
    crashed on that)."""
    page = tmp_path / "few.html"
    for n in (1, 2, 3):
        run = anxmon("report", s02_folder, "--out", page, "--before-s", 120, "--after-s", 120, "--bootstrap", n,
                     check=False)
        assert run.returncode == 0 and page.exists(), run.stderr


# ----------------------------------------------------------------------------- known answers


@pytest.fixture
def three_days(tmp_path) -> Path:
    """Ticks every 60 s over 3 days from 2024-03-01 00:00 Berlin time; score 1, and 3 in the 6 h
    after each "infusion" marker (day 1 and day 2 at 12:00); a check-in sent 1 h after each
    infusion; one "exam" marker 2 h before the end (its after window has too little data)."""
    folder = tmp_path / "days"
    folder.mkdir()
    start = pd.Timestamp("2024-03-01T00:00", tz="Europe/Berlin").timestamp()
    t = start + np.arange(0, 3 * 86400, 60.0)
    infusions = [start + 36 * 3600, start + 60 * 3600]
    score = np.ones(len(t))
    for m in infusions:
        score[(t >= m) & (t < m + 6 * 3600)] = 3.0
    score[:30] = np.nan  # warm-up
    with open(folder / "indicators.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "stress_score", "quality", "gate", "HR_Mean"])
        for ti, si in zip(t, score):
            w.writerow([repr(float(ti)), "" if np.isnan(si) else repr(float(si)), "", "", 60 + 10 * int(si == 3)])
    with open(folder / "checkins.jsonl", "w") as f:
        for m in infusions:
            f.write(json.dumps({"t": float(m + 3600), "sent": True, "reason": "sent", "score": 3.0, "threshold": 2.0}) + "\n")
        f.write(json.dumps({"t": float(infusions[0] + 7200), "sent": False, "reason": "cooldown"}) + "\n")
    with open(folder / "markers.csv", "w") as f:
        f.write(f"unix_s,kind,label\n{float(infusions[0])},infusion,first\n{float(infusions[1])},infusion,second\n"
                f"{float(t[-1] - 7200)},exam,\n")
    (folder / "summary.json").write_text(json.dumps({"threshold_final": 2.0, "source": "synthetic"}))
    return folder


def test_before_after_on_known_answers(three_days):
    folder = read_analysis_folder(three_days)
    rows = {(c.kind, c.measure): c for c in before_after(folder, folder.markers, 12 * 3600, 12 * 3600, 2.0)}
    score = rows[("infusion", "mean_score")]
    # before: 12 h at 1; after: 6 h at 3 and 6 h at 1 -> 2; the difference 1 at both markers
    assert score.n == 2 and np.allclose(score.before, 1.0) and np.allclose(score.after, 2.0)
    assert score.difference == pytest.approx(1.0) and score.ci == pytest.approx((1.0, 1.0))
    share = rows[("infusion", "share_above")]
    assert np.allclose(share.after, 0.5) and np.allclose(share.before, 0.0)
    rate = rows[("infusion", "checkins_per_h")]
    assert np.allclose(rate.after, 1 / 12) and np.allclose(rate.before, 0.0)
    # the infusions are 24 h apart: 12 h windows touch but do not overlap
    assert score.overlapping == 0
    assert rows[("infusion", "mean_score")].markers_total == 2
    exam = rows[("exam", "mean_score")]
    assert exam.n == 0 and exam.ci is None and exam.markers_total == 1
    wide = {(c.kind, c.measure): c for c in before_after(folder, folder.markers, 20 * 3600, 20 * 3600, 2.0)}
    assert wide[("infusion", "mean_score")].overlapping == 2


def test_daily_summary_in_a_time_zone(three_days):
    folder = read_analysis_folder(three_days)
    days = daily_summary(folder, 2.0, ZoneInfo("Europe/Berlin"))
    assert [d["day"] for d in days] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert days[0]["hours_data"] == pytest.approx(24.0) and days[0]["hours_scored"] == pytest.approx(23.5)
    # day 2: the 6 h after the first infusion (12:00-18:00) at score 3, at or above 2
    assert days[1]["hours_stressed"] == pytest.approx(6.0) and days[1]["checkins_sent"] == 1
    assert days[1]["checkins_suppressed"] == 1 and days[0]["hours_stressed"] == 0.0
    utc = daily_summary(folder, 2.0, ZoneInfo("UTC"))
    assert utc[0]["day"] == "2024-02-29" and utc[0]["hours_data"] == pytest.approx(1.0)  # 00:00 Berlin = 23:00 UTC


def test_default_windows():
    assert default_window_s([Marker(1e9), Marker(1e9 + 7 * 86400)], 1e9 - 86400 * 30, 1e9 + 86400 * 30) == 86400.0
    assert default_window_s([Marker(1e9)], 1e9 - 1000, 1e9 + 600) == 800.0  # half the recording


def test_write_report_from_known_answers(three_days, tmp_path):
    folder = read_analysis_folder(three_days)
    page = tmp_path / "days.html"
    done = write_report(page, folder, before_s=12 * 3600, tz=ZoneInfo("Europe/Berlin"))
    assert done["before_s"] == done["after_s"] == 12 * 3600  # one side given: both
    tables = Tables(page.read_text()).tables
    row = next(dict(zip(tables["before-after"][0], r)) for r in tables["before-after"][1:]
               if r[0] == "infusion" and r[1] == "mean stress score")
    assert (row["n windows"], row["before (mean)"], row["after (mean)"], row["95% CI low"]) == ("2", "1.00", "2.00", "1.00")
    assert [r[0] for r in tables["days"][1:]] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    with pytest.raises(AnxmonError, match="windows must be longer than 0 s"):
        write_report(page, folder, before_s=0)


# ----------------------------------------------------------------------------- in a real browser


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")


def screenshot(page: Path, tmp_path: Path, size=(1200, 3200)) -> tuple[np.ndarray, list[str]]:
    """Open ``page`` via file:// in headless Chromium; the screenshot's pixels and console messages."""
    shot = tmp_path / f"{page.stem}.png"
    run = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return png_pixels(shot.read_bytes()), console


def test_console_check_catches_errors(tmp_path):
    """The browser check below can fail: a page with a script error shows up in the console log."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><html><body><p>x</p><script>undefinedFunction();</script></body></html>')
    _, console = screenshot(bad, tmp_path, (400, 300))
    assert any("undefinedFunction is not defined" in line for line in console)


def test_s02_report_in_headless_chromium(s02_page, tmp_path):
    pixels, console = screenshot(s02_page, tmp_path)
    assert console == []
    assert_not_blank(pixels, 0.04)
    # the timeline plot sits in the upper part of the page: rows there carry drawn lines
    upper = pixels[: pixels.shape[0] // 2]
    assert np.mean(upper.min(axis=-1) < 0.5) > 0.01


@pytest.mark.parametrize("damage, expected", [
    (lambda f: (f / "indicators.csv").unlink(), "looks like an analyze output folder but has no indicators.csv"),
    (lambda f: (f / "summary.json").write_text("{bad"), "summary.json: not valid JSON"),
    (lambda f: (f / "checkins.jsonl").write_text("5\n"), "checkins.jsonl, line 1: expected a JSON object"),
    (lambda f: (f / "indicators.csv").write_text(_garble_line((f / "indicators.csv").read_text(), 50)),
     "indicators.csv, line 50: column 't' is not a number"),
    (lambda f: (f / "indicators.csv").write_text(_cut_line((f / "indicators.csv").read_text(), 50)),
     "indicators.csv, line 50: 3 of the header's"),  # (pandas filled the row with empty values)
])
def test_report_names_what_is_wrong_in_a_damaged_folder(s02_folder, tmp_path, capsys, damage, expected):
    """A damaged analyze folder is a one-line error naming the file (and line), exit status 2."""
    from monitor.cli import main

    folder = tmp_path / "damaged"
    shutil.copytree(s02_folder, folder)
    damage(folder)
    assert main(["report", str(folder), "--out", str(tmp_path / "page.html")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "page.html").exists()


def _garble_line(text: str, line: int) -> str:
    """Replace the first field of 1-based ``line`` with a word."""
    lines = text.splitlines(keepends=True)
    lines[line - 1] = "abc," + lines[line - 1].split(",", 1)[1]
    return "".join(lines)


def _cut_line(text: str, line: int) -> str:
    """1-based ``line`` cut after its third field (its line end kept)."""
    lines = text.splitlines(keepends=True)
    lines[line - 1] = ",".join(lines[line - 1].split(",")[:3]) + "\n"
    return "".join(lines)


@pytest.mark.parametrize("cut, why", [(lambda last: last[: len(last) // 2], "no line end after it"),
                                      (lambda last: ",".join(last.split(",")[:3]) + "\n", "not a whole row")])
def test_a_cut_last_row_of_indicators_csv_is_left_out_and_said(s02_folder, tmp_path, cut, why):
    """A copy or an analysis interrupted while writing ``indicators.csv``: its cut last row was read
    silently (the missing fields empty, a number cut short); now it is left out with one line on
    stderr, in the readers' words, and said in the page's overview."""
    folder = tmp_path / "cut"
    shutil.copytree(s02_folder, folder)
    lines = (s02_folder / "indicators.csv").read_text().splitlines(keepends=True)
    (folder / "indicators.csv").write_text("".join(lines[:-1]) + cut(lines[-1]))
    run = anxmon("report", folder, "--out", tmp_path / "page.html", "--bootstrap", 0, check=False)
    note = f"{folder / 'indicators.csv'}: the last line ({len(lines)}) is incomplete ({why}); left out"
    assert run.returncode == 0 and run.stderr.count("\n") == 1, run.stderr
    assert f"{folder / 'indicators.csv'}: the last line ({len(lines)}) is incomplete ({why}:" in run.stderr
    overview = dict(map(tuple, Tables((tmp_path / "page.html").read_text()).tables["table0"][1:]))
    assert overview["reading"] == note
    assert overview["ticks (scored)"].startswith(f"{len(lines) - 2} (")
    assert len(read_analysis_folder(folder).t) == len(lines) - 2 == len(read_analysis_folder(s02_folder).t) - 1


def test_the_page_says_what_the_recordings_reader_noted(tmp_path):
    """The FLIRT E4 export's files cover 2% to 56% of its session: analyze says so ("reading: ...")
    and keeps it in summary.json's reader_notes, but the page a researcher shares did not: a
    recording with two thirds of its skin conductance missing looked complete."""
    page = tmp_path / "flirt.html"
    anxmon("report", data_path("flirt-e4-garmin", "empatica"), "--out", page, "--bootstrap", 0)
    overview = dict(map(tuple, Tables(page.read_text()).tables["table0"][1:]))
    assert "BVP.csv covers 2.6 of 148.9 min (2%), ends 146.3 min before the session" in overview["reading"]
    assert "EDA.csv covers 41.7 of 148.9 min (28%)" in overview["reading"]


@pytest.mark.parametrize("args, expected", [
    (["--threshold", "nan"], "--threshold must be a score > 0 and <= 100"),
    (["--threshold", "1e308"], "--threshold must be a score > 0 and <= 100"),  # overflowed the plot
    (["--threshold", "-1"], "--threshold must be a score > 0"),
    (["--bootstrap", "-5"], "argument --bootstrap: must be 0 to 1,000,000 resamples"),
    (["--seed", "-1"], "--seed must be >= 0"),  # numpy's traceback before
])
def test_report_refuses_meaningless_options(s02_folder, tmp_path, capsys, args, expected):
    from monitor.cli import main

    try:
        code = main(["report", str(s02_folder), "--out", str(tmp_path / "p.html"), *args])
    except SystemExit as exc:  # refused by argparse itself
        code = exc.code
    assert code == 2
    assert expected in capsys.readouterr().err


def test_report_on_a_recording_too_short_for_a_tick_names_the_recording(tmp_path, capsys):
    """Two rows of the Polar export give no tick: the error names the recording given, not the
    temporary folder it was analysed in (gone by the time the message is read)."""
    from monitor.cli import main

    lines = data_path("polar-h10", "polar_h10.csv").read_text().splitlines(keepends=True)
    short = tmp_path / "short.csv"
    short.write_text("".join(lines[:3]))
    assert main(["report", str(short), "--out", str(tmp_path / "p.html")]) == 2
    err = capsys.readouterr().err
    assert f"{short}: " in err and "give no tick" in err
    assert "anxmon-report-" not in err and "Traceback" not in err


def test_report_on_a_folder_warns_that_config_is_not_applied(s02_folder, tmp_path, caplog):
    """An existing analysis is reported as it is; --set would only apply to a re-analysis."""
    from monitor.cli import main

    assert main(["report", str(s02_folder), "--out", str(tmp_path / "p.html"), "--bootstrap", "10",
                 "--set", "policy.threshold=1.5"]) == 0
    assert any("do not change an existing analysis" in r.getMessage() for r in caplog.records)
    caplog.clear()  # --wearer, too, names the wearer of an analysis to run (the page said s02 without a word)
    assert main(["report", str(s02_folder), "--out", str(tmp_path / "p.html"), "--bootstrap", "10",
                 "--wearer", "bob"]) == 0
    assert [r.getMessage() for r in caplog.records if "existing analysis" in r.getMessage()] == [
        "--wearer does not change an existing analysis; give the recording to re-analyse it"]


def test_time_axis_draws_a_long_pause_narrow():
    """Garmin's export (``flirt-e4-garmin/garmin``) has 4 h of data, a 42 h pause and 5 min more:
    on a plain axis the 4 h sat in the first tenth of the width. The pause is drawn narrow, the data
    keep one unit per unit of time, and the tick labels still name real hours."""
    t = np.concatenate([np.arange(0.0, 4 * 3600, 5.0), 46 * 3600 + np.arange(0.0, 300.0, 5.0)])
    axis = TimeAxis.of(t)
    assert axis.unit == "hours" and axis.gaps_s == [(t[2879], t[2880])]
    x = axis.x(t)
    assert np.all(np.diff(x) > 0)
    assert x[2879] == pytest.approx((4 * 3600 - 5) / 3600)  # data before the pause: real hours
    assert x[-1] - x[2880] == pytest.approx(295 / 3600)  # and after it
    assert x[2879] / x[-1] > 0.9  # the first 4 h fill most of the width (on a plain axis: 0.087)
    xs, labels = axis.ticks()
    assert "0" in labels and "46" in labels  # real hours on both sides of the pause
    assert all(0 <= v <= x[-1] for v in xs)
    # an even recording keeps a plain axis
    plain = TimeAxis.of(np.arange(0.0, 3000.0, 5.0))
    assert plain.gaps_s == [] and plain.unit == "minutes"
    assert plain.x(600.0) == pytest.approx(10.0) and plain.x(-60.0) == pytest.approx(-1.0)


def test_a_damaged_analysis_folder_gets_a_clear_error_or_a_warning(s02_folder, tmp_path, caplog):
    """Hand-edited or concatenated folders: a tick given twice (identical rows are dropped with a
    warning; conflicting ones refused: before, the median tick length was 0 and the page said 0 h
    of data), trigger decisions without a numeric time, a threshold that is not a number (both
    crashed with a traceback)."""
    from monitor.errors import InputFormatError

    def copy(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(s02_folder, folder)
        return folder

    twice = copy("twice")
    rows = (s02_folder / "indicators.csv").read_text().splitlines(keepends=True)
    (twice / "indicators.csv").write_text("".join(rows + rows[1:]))
    folder = read_analysis_folder(twice)
    assert "repeated row(s) dropped" in caplog.text
    assert folder.tick_s == read_analysis_folder(s02_folder).tick_s == 5.0 and len(folder.t) == len(rows) - 1
    conflict = copy("conflict")
    changed = rows[10].split(",")
    changed[1] = "3.5"
    (conflict / "indicators.csv").write_text("".join(rows + [",".join(changed)]))
    with pytest.raises(InputFormatError, match="1 tick\\(s\\) appear twice with different values"):
        read_analysis_folder(conflict)
    for name, line in (("t_text", '{"t": "x", "sent": true}\n'), ("no_t", '{"sent": true}\n')):
        folder = copy(name)
        with open(folder / "checkins.jsonl", "a") as f:
            f.write(line)
        with pytest.raises(InputFormatError, match="checkins.jsonl: trigger decision \\d+ needs a number 't'"):
            read_analysis_folder(folder)
    bad_threshold = copy("threshold")
    summary = json.loads((s02_folder / "summary.json").read_text())
    (bad_threshold / "summary.json").write_text(json.dumps({**summary, "threshold_final": "high"}))
    with pytest.raises(InputFormatError, match="threshold_final must be a number"):
        read_analysis_folder(bad_threshold)


def test_markers_outside_the_data_are_warned_about_and_leave_the_windows_alone(s02_folder, tmp_path, caplog):
    folder = read_analysis_folder(s02_folder)
    alone = write_report(tmp_path / "a.html", folder, n_boot=10)
    far = folder.markers + [Marker(float(folder.t[-1]) + 3 * 365 * 86400.0, "a", "later")]
    with_far = write_report(tmp_path / "b.html", folder, far, n_boot=10)
    assert "1 of 10 markers lie outside the data" in caplog.text
    assert (with_far["before_s"], with_far["after_s"]) == (alone["before_s"], alone["after_s"])


# ----------------------------------------------------------------------------- labels, explanations, provenance


def capture_timeline(monkeypatch) -> list[dict]:
    """Replace ``timeline_png`` with a recorder of its arguments (it still draws)."""
    import monitor.report as report

    calls, draw = [], report.timeline_png

    def record(t, panels, score, threshold, decisions, answers, markers, stress=(), title="", tz=None,
               threshold_label=None):
        calls.append({"t": t, "panels": panels, "threshold": threshold, "stress": list(stress),
                      "threshold_label": threshold_label})
        return draw(t, panels, score, threshold, decisions, answers, markers, stress, title, tz, threshold_label)

    monkeypatch.setattr(report, "timeline_png", record)
    return calls


def test_report_on_an_analysis_folder_keeps_the_labels_and_the_baselines(s02_folder, tmp_path, monkeypatch):
    """Finding 4: from analyze's folder the page shades the labelled stress periods, shows the
    label metrics as analyze's own page does, and draws the personal baselines of indicators.csv."""
    calls = capture_timeline(monkeypatch)
    folder = read_analysis_folder(s02_folder)
    write_report(tmp_path / "p.html", folder, n_boot=10)
    [call] = calls
    summary = json.loads((s02_folder / "summary.json").read_text())
    assert [list(p) for p in call["stress"]] == summary["labels"]["periods"] and len(call["stress"]) == 3
    ticks = pd.read_csv(s02_folder / "indicators.csv")
    panels = {label: baseline for label, _, baseline in call["panels"]}
    assert np.array_equal(panels["Skin conductance level (µS)"], ticks["baseline_EDA_Tonic_Mean"].to_numpy(),
                          equal_nan=True)
    assert np.isfinite(panels["Heart rate (bpm)"]).sum() > 500
    ours, analyze_page = (Tables((p).read_text()).tables["labels"] for p in (tmp_path / "p.html", s02_folder / "report.html"))
    assert ours == analyze_page
    values = {row[2]: row[1] for row in ours[1:]}
    assert float(values["roc_auc"]) == pytest.approx(summary["labels"]["roc_auc"], abs=5e-4)
    assert values["stress_periods_detected"] == str(summary["labels"]["stress_periods_detected"])


def test_report_on_a_recording_keeps_labels_that_read_cleanly(s02_folder, tmp_path, caplog):
    """Straight from the recording, its labels.csv is used when it reads cleanly (the same metrics
    as analyze's); a damaged one gives a page without labels and a warning, not an error."""
    page = tmp_path / "direct.html"
    anxmon("report", data_path("stress-predict", "S02"), "--out", page, "--bootstrap", 10)
    assert Tables(page.read_text()).tables["labels"] == Tables((s02_folder / "report.html").read_text()).tables["labels"]
    damaged = tmp_path / "S02"
    shutil.copytree(data_path("stress-predict", "S02"), damaged)
    (damaged / "labels.csv").write_text("unix_s,stress\n1644227583,2\n1644227584,0\n")
    run = anxmon("report", damaged, "--out", tmp_path / "damaged.html", "--bootstrap", 10)
    assert "going on without the labels" in run.stderr and "stress 2 is not 0 or 1" in run.stderr
    assert "labels" not in Tables((tmp_path / "damaged.html").read_text()).tables


def test_pages_explain_the_score_the_gates_and_the_checkin_rule_of_this_run(s02_folder, tmp_path):
    """Finding 8: both pages carry this run's scale, gates and check-in rule, the tick states, and a
    per-signal quality table computed from the quality column; non-default settings are named."""
    out = tmp_path / "set"
    anxmon("analyze", data_path("stress-predict", "S02"), "--out", out, "--set", "policy.sustain_s=90",
           "--set", "policy.cooldown_s=600", "--set", "score.z_cap=3")
    page = tmp_path / "set.html"
    anxmon("report", out, "--out", page, "--bootstrap", 10)
    ticks = pd.read_csv(out / "indicators.csv")
    withheld = 100 * (ticks["quality"].str.extract(r"hrv=(\w+)")[0] != "ok").mean()
    summary = json.loads((out / "summary.json").read_text())
    for text in (page.read_text(), (out / "report.html").read_text()):
        tables = Tables(text).tables
        how = text[text.index('id="how-to-read"'):text.index("</ul>", text.index('id="how-to-read"'))]
        assert "Stress score</strong> (0 to 3)" in how and "capped at 3" in how
        assert "for 1 min 30 s on consecutive scored ticks" in how and "within 10 min of the last" in how
        assert "quiet hours 22:00-07:00 (UTC)" in how and "already had 6 (daily cap)" in how
        assert f"scored {summary['tick_states']['scored']} (" in how and "motion_unknown" in how
        row = next(r for r in tables["quality"][1:] if r[0].startswith("heart-rate variability"))
        assert row[1] == str(len(ticks)) and row[3] == f"{withheld:.0f}" and "irregular rhythm" in row[4]
        run = {r[0]: r[1] for r in tables["run"][1:]}
        assert run["configuration (differences from the defaults)"] == \
            "policy.cooldown_s = 600; policy.sustain_s = 90; score.z_cap = 3"
        assert run["input EDA.csv"].endswith(summary["provenance"]["inputs"][2]["sha256"])
    default = {r[0]: r[1] for r in Tables((s02_folder / "report.html").read_text()).tables["run"][1:]}
    assert default["configuration (differences from the defaults)"] == "default configuration"


def test_report_threshold_line_is_not_taken_for_the_checkin_threshold(s02_folder, tmp_path, monkeypatch):
    """``report --threshold 1.5`` draws "time stressed" at 1.5 while check-ins were decided at 2."""
    calls = capture_timeline(monkeypatch)
    folder = read_analysis_folder(s02_folder)
    write_report(tmp_path / "own.html", folder, threshold=1.5, n_boot=10)
    write_report(tmp_path / "default.html", folder, n_boot=10)
    checkin = json.loads((s02_folder / "summary.json").read_text())["threshold_final"]
    assert calls[0]["threshold_label"] == f"time-stressed line 1.5 (check-ins decided at {checkin:g})"
    assert calls[1]["threshold_label"] == f"check-in threshold {checkin:g} (also the time-stressed line)"
    own, default = (tmp_path / "own.html").read_text(), (tmp_path / "default.html").read_text()
    assert "The dashed line of the score panel is at 1.5" in own and "dashed line of the score panel is at" not in default
    overview = {r[0]: r[1] for r in Tables(own).tables["table0"][1:]}
    assert overview["time-stressed line (time stressed = score at or above it)"] == "1.5"
    assert overview["check-in threshold (at the end of the analysis)"] == f"{checkin:g}"


def test_a_motion_signal_covering_little_of_the_recording_is_said(s02_folder):
    """summary.json's motion_signal_share: the page warns when the motion gate covers < 90 %."""
    from monitor.report import how_to_read_html

    summary = json.loads((s02_folder / "summary.json").read_text())
    assert summary["motion_signal_share"] > 0.9
    warning = "The motion signal covers only"
    assert warning not in how_to_read_html(summary, {})
    assert f"{warning} 3 % of the ticks" in how_to_read_html({**summary, "motion_signal_share": 0.03}, {})


def test_a_recording_without_motion_signal_says_so(tmp_path):
    """The Polar H10 strap (ECG, no accelerometer): no motion gate, which both pages say instead
    of claiming that movement is withheld."""
    out = tmp_path / "polar"
    anxmon("analyze", data_path("polar-h10", "polar_h10.csv"), "--out", out)
    assert json.loads((out / "summary.json").read_text())["motion_gate"] == "none"
    page = tmp_path / "polar.html"
    anxmon("report", out, "--out", page, "--bootstrap", 10)
    for text in (page.read_text(), (out / "report.html").read_text()):
        assert "This recording has no motion signal" in text
    assert "withheld during warm-up, movement" not in page.read_text()


@pytest.fixture(scope="module")
def hr_only_folder(tmp_path_factory) -> Path:
    """S02's E4 heart rate alone (what a basic heart-rate strap sends), analysed."""
    import dataclasses

    from monitor.analyze import analyze_recording, write_outputs
    from monitor.recordings import read_recording

    rec = read_recording(data_path("stress-predict", "S02"))
    hr_only = dataclasses.replace(rec, streams={"hr": rec.streams["hr"]}, labels=None)
    out = tmp_path_factory.mktemp("hr_only")
    write_outputs(analyze_recording(hr_only, progress=False), out, hr_only)
    return out


def test_a_heart_rate_only_device_names_its_signal_in_the_quality_table(hr_only_folder):
    """The signal quality table's row of a heart-rate-only device read the bare key "hr" where
    every other row says what it covers."""
    assert sorted(json.loads((hr_only_folder / "summary.json").read_text())["quality_counts"]) == ["hr"]
    rows = Tables((hr_only_folder / "report.html").read_text()).tables["quality"]
    assert len(rows) == 2 and rows[1][0] != "hr" and "HR_Mean" in rows[1][0], rows


def test_the_score_explained_names_the_weights_of_this_runs_indicators_only(hr_only_folder, tmp_path):
    """A heart-rate-only run's page said its score was the weighted mean of seven indicators
    (skin conductance, temperature, restlessness...) that it never had."""
    summary = json.loads((hr_only_folder / "summary.json").read_text())
    assert summary["indicators_used"] == ["HR_Mean"]
    page = tmp_path / "page.html"
    anxmon("report", hr_only_folder, "--out", page, "--bootstrap", 10)
    for text in ((hr_only_folder / "report.html").read_text(), page.read_text()):
        how = text[text.index('id="how-to-read"'):text.index("</ul>", text.index('id="how-to-read"'))]
        weights = re.search(r"weighted\s+mean \(weights[^:]*: ([^)]*)\)", how).group(1)
        assert [w.split()[0] for w in weights.split(", ")] == ["HR_Mean"], weights


def test_a_watch_shows_its_step_cadence_over_time(tmp_path, monkeypatch):
    """The Garmin export's motion gate is its step cadence, which withholds hundreds of its ticks
    as "motion"; both pages drew no motion panel for it (only the accelerometer's), so nothing on
    the page showed the movement behind those gaps in the score."""
    import monitor.report as report
    from monitor.analyze import run_analyze

    drawn = []
    draw = report.timeline_png
    monkeypatch.setattr(report, "timeline_png", lambda t, panels, *args, **kwargs: (
        drawn.append([label for label, *_ in panels]), draw(t, panels, *args, **kwargs))[1])
    result, _ = run_analyze(data_path("flirt-e4-garmin", "garmin", "data.csv"), tmp_path / "out")
    assert result.summary["motion_gate"] == "steps" and result.summary["tick_states"]["motion"] > 0
    analysis_page = drawn[-1]
    report.run_report(tmp_path / "out", tmp_path / "page.html", n_boot=10)
    assert len(drawn) == 2
    for labels in (analysis_page, drawn[-1]):
        assert any("cadence" in label.lower() for label in labels), labels


def test_a_reason_of_a_few_ticks_is_not_shown_as_0_percent(s02_folder):
    """S02's last tick has no skin conductance window (EDA.csv ends before the session): the quality
    table said "no data from the sensor (missing) 0 %", a reason with no share, and the tick states
    "motion_unknown 1 (0 %)"."""
    ticks = pd.read_csv(s02_folder / "indicators.csv")
    missing = int(ticks["quality"].str.contains("eda=missing").sum())
    assert 0 < missing < len(ticks) / 200  # under 0.5 %: rounded to 0 before
    text = (s02_folder / "report.html").read_text()
    row = next(r for r in Tables(text).tables["quality"][1:] if r[0].startswith("skin conductance"))
    assert "(missing) <1 %" in row[4] and not re.search(r"\) 0 %", row[4]), row
    assert not re.search(r"\d \(0 %\)", text)


def test_legends_stand_above_the_panels_not_over_their_lines():
    """The legends sat in each panel's upper right corner, over the lines: on S02's page the score
    around minute 47-50 and the heart rate near the end ran behind them. Now every legend stands
    above its panel, its box overlapping no panel's plotting area, nor the label of a long pause
    (written upright on the pause)."""
    from monitor.report import _pyplot, timeline_figure

    t = 1_644_227_574.0 + np.r_[np.arange(0.0, 3 * 3600.0, 5.0), 9 * 3600.0 + np.arange(0.0, 600.0, 5.0)]
    high = np.linspace(0.0, 3.9, len(t))  # up to the top right corner, where the legends were
    fig = timeline_figure(t, [("Heart rate (bpm)", 60 + 20 * high, np.full(len(t), 70.0))], high, 2.0,
                          [(t[-10], True)], [], [Marker(t[100], "tag", ""), Marker(t[200], "therapy session", "")])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 2  # the baseline's and the score panel's
    pause = [text for text in fig.axes[0].texts if text.get_text() == "6 h 0 min without data"]  # near the end
    assert len(pause) == 1
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not box.overlaps(pause[0].get_window_extent(renderer))
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), legend.get_texts()[0].get_text()
    _pyplot().close(fig)
