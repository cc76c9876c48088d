"""``anxmon analyze`` and ``anxmon eval`` on the real Stress-Predict sessions S02 and S05."""

from __future__ import annotations

import csv
import json
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from monitor.analyze import analyze_recording, roc_auc, stress_periods
from monitor.config import load_config
from monitor.core.wearer import WearerMonitor
from monitor.errors import InputFormatError
from monitor.evaluate import SWEEP_THRESHOLDS, evaluate_subject
from monitor.recordings import read_recording
from monitor.report import ANALYSIS_FILES
from tests.conftest import data_path

ANXMON = [sys.executable, "-m", "monitor.cli"]


def anxmon(*args, check=True, cwd=None):
    return subprocess.run([*ANXMON, *map(str, args)], capture_output=True, text=True, check=check,
                          stdin=subprocess.DEVNULL, cwd=cwd)


@pytest.fixture(scope="module")
def s02_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("s02")
    anxmon("analyze", data_path("stress-predict", "S02"), "--out", out)
    return out


@pytest.mark.parametrize("subject", ["S02", "S05"])
def test_analyze_writes_every_file(subject, tmp_path):
    out = tmp_path / subject
    run = anxmon("analyze", data_path("stress-predict", subject), "--out", out)
    assert "ROC AUC" in run.stdout  # labels.csv in the session folder was picked up
    rows = list(csv.DictReader(open(out / "indicators.csv")))
    assert len(rows) > 600  # ~55 min at one row per 5 s
    assert {"t", "stress_score", "quality", "HR_Mean", "EDA_Tonic_Mean", "SCR_Rate", "TEMP_Mean"} <= rows[0].keys()
    assert sum(1 for r in rows if r["stress_score"]) > 0.5 * len(rows)
    for line in open(out / "checkins.jsonl"):
        d = json.loads(line)
        assert {"t", "sent", "reason", "explanation"} <= d.keys()
        assert d["reason"] in {"sent", "paused", "snoozed", "quiet_hours", "daily_cap", "cooldown"}
    summary = json.loads((out / "summary.json").read_text())
    labels = summary["labels"]
    assert labels["stress_periods"] == 3  # Stroop, interview, hyperventilation (>= 60 s each)
    assert 0.0 <= labels["roc_auc"] <= 1.0
    assert "speed_x_realtime" not in summary  # printed only: it depends on the machine
    speed = float(re.search(r"\((\d+)x real time\)", run.stdout).group(1))
    assert speed > 100  # the benchmark measures it properly
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "not a medical device" in html


def test_analyzing_twice_gives_identical_files(s02_out, tmp_path):
    """The same command twice (here in two working folders, ``--out out`` each): byte-identical
    files, summary.json included. Into another folder (the module's ``s02_out``) the files are the
    same too, and summary.json differs only in the command line that named the folder."""
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        anxmon("analyze", data_path("stress-predict", "S02"), "--out", "out", cwd=tmp_path / run)
    first, again = tmp_path / "a" / "out", tmp_path / "b" / "out"
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in again.iterdir())
    for path in first.iterdir():
        assert path.read_bytes() == (again / path.name).read_bytes(), path.name
    for name in ("indicators.csv", "checkins.jsonl", "markers.csv"):
        assert (first / name).read_bytes() == (s02_out / name).read_bytes()
    a = json.loads((first / "summary.json").read_text())
    assert a["config"]["policy"]["threshold"] == 2.0 and a["anxmon_version"]  # the run can be traced
    # the page leaves the machine's speed and the command line out: it is byte-identical too
    assert (first / "report.html").read_bytes() == (again / "report.html").read_bytes() \
        == (s02_out / "report.html").read_bytes()
    other = json.loads((s02_out / "summary.json").read_text())
    assert other["provenance"].pop("argv")[-1] == str(s02_out) and a["provenance"].pop("argv")[-1] == "out"
    assert a == other


def test_a_zip_export_is_detected_and_gives_the_same_indicators(s02_out, tmp_path):
    folder = data_path("stress-predict", "S02")
    archive = tmp_path / "S02.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.iterdir():
            z.write(f, f"S02/{f.name}")
    anxmon("analyze", archive, "--out", tmp_path / "z")
    assert (tmp_path / "z" / "indicators.csv").read_bytes() == (s02_out / "indicators.csv").read_bytes()


def test_split_in_two_halves_with_saved_state_equals_one_pass():
    rec = read_recording(data_path("stress-predict", "S02"))
    batches = list(rec.batches())
    half = len(batches) // 2
    one = WearerMonitor("s02")
    whole = [t for b in batches for t in one.update(b)]
    first = WearerMonitor("s02")
    split = [t for b in batches[:half] for t in first.update(b)]
    saved = pickle.dumps(first.get_state())
    # the service pickles the live objects (no deep copy first): the same bytes
    assert pickle.dumps(first.get_state(copy=False)) == saved
    second = WearerMonitor("s02")  # a new process would start like this
    second.set_state(pickle.loads(saved))
    split += [t for b in batches[half:] for t in second.update(b)]
    assert [(t.t, t.indicators, t.score, t.decisions) for t in split] == \
           [(t.t, t.indicators, t.score, t.decisions) for t in whole]


def test_config_overrides_reach_the_policy():
    rec = read_recording(data_path("stress-predict", "S02"))
    eager = ["policy.threshold=1.5", "policy.rearm_below=1.3", "policy.sustain_s=10", "policy.quiet_hours=false"]
    short = analyze_recording(rec, load_config(None, eager + ["policy.cooldown_s=60"]), progress=False).summary
    long = analyze_recording(rec, load_config(None, eager + ["policy.cooldown_s=1800"]), progress=False).summary
    assert short["trigger_decisions"] == long["trigger_decisions"] >= 2
    assert short["checkins_sent"] > long["checkins_sent"]  # the 30 min cooldown held one back
    assert long["suppressed"].get("cooldown", 0) >= 1


def test_bad_input_gets_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    run = anxmon("analyze", tmp_path, "--out", tmp_path / "o", check=False)
    assert run.returncode == 2 and "expected an Empatica E4 export" in run.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "EDA.csv").write_text("1644227574\n4\n0.1\nabc\n0.2\n")  # (a damaged last line is only left out)
    run = anxmon("analyze", broken, "--out", tmp_path / "o", check=False)
    assert run.returncode == 2 and "EDA.csv" in run.stderr
    run = anxmon("analyze", data_path("stress-predict", "S02"), "--out", tmp_path / "o", "--set", "policy.nope=1",
                 check=False)
    assert run.returncode == 2 and "nope" in run.stderr


def test_roc_auc_matches_a_hand_computed_case():
    # scores of positives 0.9, 0.4; negatives 0.5, 0.1: 3 of 4 pairs ordered right -> 0.75
    assert roc_auc(np.array([0.9, 0.4, 0.5, 0.1]), np.array([1, 1, 0, 0])) == 0.75
    t = np.arange(300.0)
    y = ((t >= 100) & (t < 190)).astype(float)
    y[20:50] = 1  # a 30 s episode is too short to count
    assert stress_periods(t, y) == [(100.0, 190.0)]


@pytest.mark.parametrize("subject", ["S02", "S05"])
def test_pipeline_beats_the_simple_reference(subject):
    """Issue 3: better ROC AUC than z(0.5 Hz EDA) + z(E4 HR) against the first 300 s, and no
    more false check-ins per rest hour. Two subjects are a smoke test, not a validation."""
    r = evaluate_subject(data_path("stress-predict", subject), load_config(None))
    ours, ref = r["pipeline"], r["reference"]
    print(subject, json.dumps(r, indent=1))
    assert ours["roc_auc"] > ref["roc_auc"]
    # on equal terms too: both on the ticks the pipeline scored (its withheld ticks, all in rest,
    # are perfect negatives for roc_auc). Measured: S02 0.585 vs 0.495, S05 0.720 vs 0.624
    assert ours["roc_auc_scored"] > ref["roc_auc_scored"]
    assert ours["false_checkins_per_rest_hour"] <= ref["false_checkins_per_rest_hour"]
    # the operating table re-runs both at other thresholds; at the default it is the table above
    [default] = [row for row in r["sweep"] if row["threshold"] == load_config(None).policy.threshold]
    for method, m in (("pipeline", ours), ("reference", ref)):
        assert default[method] == {key: m[key] for key in default[method]}, method
    assert {row["threshold"] for row in r["sweep"]} == set(SWEEP_THRESHOLDS)


def test_the_threshold_sweep_keeps_a_set_rearm_level_below_each_threshold():
    """``--set policy.rearm_below=1.2`` (the value configs/default.toml suggests) made the sweep
    stop at threshold 1.0 with "rearm_below must be in [0, threshold)": it keeps its share."""
    import dataclasses

    from monitor.evaluate import with_threshold

    config = load_config(None)
    config = dataclasses.replace(config, policy=dataclasses.replace(config.policy, rearm_below=1.2))
    swept = [with_threshold(config, t).policy for t in SWEEP_THRESHOLDS]
    assert [p.rearm_below for p in swept] == pytest.approx([0.6 * t for t in SWEEP_THRESHOLDS])
    derived = with_threshold(load_config(None), 1.0).policy
    assert derived.rearm_below is None


# ----------------------------------------------------------------------------- label and input checks


def short_session(dst, subject="S02", lines=1300):
    """The first ``lines`` lines of a Stress-Predict session's signal files (about 5 min of EDA, 20 min
    of HR) in ``dst``, with the whole session's labels.csv."""
    src = data_path("stress-predict", subject)
    dst.mkdir(parents=True)
    for p in src.glob("*.csv"):
        keep = None if p.name == "labels.csv" else lines
        (dst / p.name).write_text("".join(p.read_text().splitlines(keepends=True)[:keep]))
    return dst


def test_bad_labels_get_a_clear_error(tmp_path):
    s02 = data_path("stress-predict", "S02")
    labels = (s02 / "labels.csv").read_text().splitlines()
    cases = {
        "missing.csv": (None, r"labels file .*missing.csv does not exist"),
        "header.csv": ("unix_s,stress\n", r"header.csv: no label rows"),
        "ms.csv": ("\n".join([labels[0], *(f"{t}000,{y}" for t, y in (r.split(",") for r in labels[1:]))]),
                   r"ms.csv, line 2: unix_s 1644227583000 looks like milliseconds; give unix seconds"),
        "value.csv": ("\n".join([*labels[:4], labels[4][:-1] + "2", *labels[5:]]), r"value.csv, line 5: stress 2 is not 0 or 1"),
        "S05.csv": ((data_path("stress-predict", "S05") / "labels.csv").read_text(),
                    r"S05.csv: the labels \(2022-02-14 .*\) and the recording \(2022-02-07 .*\) do not overlap"),
    }
    for name, (text, message) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        run = anxmon("analyze", s02, "--out", tmp_path / "o", "--labels", tmp_path / name, check=False)
        assert run.returncode == 2 and run.stderr.count("\n") == 1, (name, run.stderr)
        assert re.match(r"anxmon: error: .*" + message, run.stderr), (name, run.stderr)


def test_a_folder_given_as_labels_or_markers_file_is_named_a_folder(tmp_path):
    """``--labels S02`` (the session folder, which holds labels.csv) used to say "labels file S02
    does not exist", though it plainly does."""
    s02 = data_path("stress-predict", "S02")
    for option, what in (("--labels", "labels file"), ("--markers", "markers file")):
        run = anxmon("analyze", s02, "--out", tmp_path / "o", option, s02, check=False)
        assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
        assert run.stderr == f"anxmon: error: {what} {s02} is a folder: give the CSV file itself\n"
        run = anxmon("analyze", s02, "--out", tmp_path / "o", option, "/dev/null", check=False)  # or a pipe, <(...)
        assert run.stderr == (f"anxmon: error: {what} /dev/null is not a regular file (a pipe or a device?): "
                              "give the CSV file itself\n"), run.stderr


def test_labels_partly_outside_the_recording_get_a_warning(tmp_path):
    session = short_session(tmp_path / "s02")  # the whole session's labels, part of its recording
    run = anxmon("analyze", session, "--out", tmp_path / "o", check=False)
    assert run.returncode == 0, run.stderr
    assert re.search(r"WARNING .*labels of .*s02: \d+ of 3557 label rows lie outside the recording", run.stderr)


def test_eval_of_a_folder_that_does_not_exist_names_the_folder_given(tmp_path, monkeypatch):
    """``anxmon eval mydata/S07`` (a typo) said "<project>/../shared/data/stress-predict/mydata/S07
    does not exist", a path the user never typed."""
    from monitor.evaluate import run_eval

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFormatError, match=r"^mydata/S07: not found here, nor a subject in "
                                               r".*stress-predict \(.*S02.*\)$"):  # (the subjects there)
        run_eval(["mydata/S07"], load_config(None), progress=False)


def test_eval_refuses_a_session_without_eda_samples(tmp_path, caplog):
    session = short_session(tmp_path / "s02")
    (session / "EDA.csv").write_text("1644227574.000000\n4.000000\n")  # its header rows only
    with pytest.raises(InputFormatError, match=r"s02: no eda samples; eval needs eda and hr"):
        evaluate_subject(session, load_config(None))
    assert "EDA.csv holds no samples" in caplog.text


def test_label_metrics_count_only_the_labelled_time_of_the_recording():
    """Hand-made case: a recording of 1000 s (ticks every 5 s), labels of 1200 s of which the
    last 600 s lie after the recording, rest but for a stress period at 200-400 s. The rows
    after the recording are not rest of this wearer; a check-in after the last label row is
    not a check-in at rest."""
    from monitor.analyze import label_metrics
    from monitor.core.policy import Decision

    t0 = 1_700_000_000.0
    label_t = t0 + np.arange(1600.0)
    label_y = ((label_t >= t0 + 200) & (label_t < t0 + 400)).astype(float)
    ticks = t0 + np.arange(5.0, 1000.0, 5.0)
    score = np.where((ticks >= t0 + 200) & (ticks < t0 + 400), 3.0, 0.5)

    def sent(t):
        return Decision(t, True, "sent", None, {}, 3.0, 2.0)

    m = label_metrics(ticks, score, [sent(t0 + 260), sent(t0 + 700)], (label_t, label_y), (t0, t0 + 1000))
    assert m["rest_hours"] == pytest.approx(800 / 3600)  # 1000 s recorded, 200 s of them stress
    assert m["false_checkins"] == 1 and m["stress_periods_detected"] == m["stress_periods"] == 1
    assert m["roc_auc"] == 1.0
    # labels that end early (at 600 s): the check-in at 700 s is outside them, not at rest
    early = label_t < t0 + 600
    m = label_metrics(ticks, score, [sent(t0 + 260), sent(t0 + 700)], (label_t[early], label_y[early]), (t0, t0 + 1000))
    assert m["false_checkins"] == 0 and m["rest_hours"] == pytest.approx(400 / 3600)
    with pytest.raises(InputFormatError, match="do not overlap"):
        label_metrics(ticks, score, [], (label_t + 5000, label_y), (t0, t0 + 1000))


def test_analyze_tells_what_it_read_and_what_it_could_not_use(tmp_path):
    """The Polar H10 file (10 min): the reader's notes (fitted ECG rate, chained beats) reach the
    console and summary.json; a spreadsheet's markers CSV (byte-order mark) is read; a marker
    outside the recording is warned about; a warm-up longer than the recording says that no
    tick was scored instead of silently printing AUC-free numbers."""
    polar = data_path("polar-h10", "polar_h10.csv")
    markers = tmp_path / "m.csv"
    markers.write_bytes("\ufeffunix_s,label\n1714920900,coffee\n1600000000,last year\n".encode("utf-8"))
    run = anxmon("analyze", polar, "--out", tmp_path / "o", "--markers", markers, "--set", "score.warmup_s=100000",
                 check=False)
    assert run.returncode == 0, run.stderr
    assert re.search(r"reading: ecg: 130\.\d+ Hz fitted to the time stamps", run.stdout), run.stdout
    assert "no tick was scored (" in run.stdout and "warmup" in run.stdout
    assert "1 of 2 markers lie outside the recording" in run.stderr and "last year" in run.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert any(n.startswith("ibi: beat times chained from 798 RR intervals") for n in summary["reader_notes"])
    assert "coffee" in (tmp_path / "o" / "markers.csv").read_text()


def test_analyze_says_how_much_of_a_recording_with_gaps_had_data(tmp_path):
    """The Polar H10 file's second half moved 3 h later: analyze printed "analysed 190.0 min of
    ecg, hr, ibi", the span, of a recording with 10 min of data. It now says how much had data
    when that is noticeably less (and summary.json keeps it); the whole file says nothing more."""
    lines = data_path("polar-h10", "polar_h10.csv").read_text().splitlines()
    half = len(lines) // 2
    later = [f"{int(t) + 3 * 3600 * 10**9},{rest}" for t, rest in (line.split(",", 1) for line in lines[half:])]
    (tmp_path / "gap.csv").write_text("\n".join([*lines[:half], *later]) + "\n")
    run = anxmon("analyze", tmp_path / "gap.csv", "--out", tmp_path / "o")
    with_data = float(re.search(r"analysed 190\.0 min \((\d+\.\d) min with data\) of ecg", run.stdout).group(1))
    # 10 min of samples; the last ticks of each part have windows (60 s) reaching past it
    assert 9.5 <= with_data <= 12.0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["data_s"] / 60 == pytest.approx(with_data, abs=0.05)
    whole = anxmon("analyze", data_path("polar-h10", "polar_h10.csv"), "--out", tmp_path / "whole")
    assert re.search(r"analysed 10\.0 min of ecg", whole.stdout), whole.stdout


def test_labels_at_another_spacing_give_the_same_rest_time_and_a_repeated_row_is_refused(tmp_path):
    """The metrics once counted label *rows* as seconds: labels every 5 s gave a fifth of the rest
    time (5x the false check-ins per rest hour), each row given twice double. Now a row stands for
    the time until the next one (at most the median spacing), and a repeated time is refused."""
    from monitor.analyze import label_metrics
    from monitor.core.policy import Decision

    t0 = 1_700_000_000.0
    label_t = t0 + np.arange(1000.0)
    label_y = ((label_t >= t0 + 200) & (label_t < t0 + 400)).astype(float)
    ticks = t0 + np.arange(5.0, 1000.0, 5.0)
    score = np.where((ticks >= t0 + 200) & (ticks < t0 + 400), 3.0, 0.5)
    decisions = [Decision(t0 + 260, True, "sent", None, {}, 3.0, 2.0), Decision(t0 + 700, True, "sent", None, {}, 3.0, 2.0)]
    every_s = label_metrics(ticks, score, decisions, (label_t, label_y), (t0, t0 + 1000))
    every_5s = label_metrics(ticks, score, decisions, (label_t[::5], label_y[::5]), (t0, t0 + 1000))
    assert every_s["rest_hours"] == pytest.approx(800 / 3600)
    for key in ("rest_hours", "false_checkins", "false_checkins_per_rest_hour", "stress_periods_detected"):
        assert every_5s[key] == pytest.approx(every_s[key]), key
    gap = (label_t < t0 + 600) | (label_t >= t0 + 800)  # 200 s without labels, at rest
    with_gap = label_metrics(ticks, score, decisions, (label_t[gap], label_y[gap]), (t0, t0 + 1000))
    assert with_gap["rest_hours"] == pytest.approx(600 / 3600)
    assert with_gap["false_checkins"] == 0  # the check-in at 700 s falls in the gap: not at rest
    s02 = data_path("stress-predict", "S02")
    rows = (s02 / "labels.csv").read_text().splitlines()
    (tmp_path / "twice.csv").write_text("\n".join([rows[0], *(r for row in rows[1:] for r in (row, row))]) + "\n")
    run = anxmon("analyze", s02, "--out", tmp_path / "o", "--labels", tmp_path / "twice.csv", check=False)
    assert run.returncode == 2 and "twice.csv, line 3: unix_s repeats the previous row's" in run.stderr, run.stderr


def test_refused_batches_are_printed_with_the_first_reason(tmp_path):
    """A few EDA samples out of the contract's range: their batches are refused, which analyze
    says on the console (how many of how many, and why) instead of only in summary.json."""
    session = short_session(tmp_path / "s02")
    lines = (session / "EDA.csv").read_text().splitlines()
    for i in (500, 900):  # two samples, minutes apart: two 1 s batches
        lines[i] = "250.0"
    (session / "EDA.csv").write_text("\n".join(lines) + "\n")
    run = anxmon("analyze", session, "--out", tmp_path / "o", check=False)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    n = summary["batches_per_signal"]["eda"]
    assert summary["rejected_batches"] == {"eda: ValueRangeError": 2}
    assert re.search(rf"refused: 2 of {n} eda batches, the first because eda sample \d+ is outside the "
                     r"physiological range 0-100 uS", run.stderr), run.stderr
    assert "analysed" in run.stdout and "eda" in run.stdout.split(":")[0]  # still analysed
    from tests.test_report import Tables  # the page a researcher shares says it too

    anxmon("report", tmp_path / "o", "--out", tmp_path / "page.html", "--bootstrap", 0)
    overview = dict(map(tuple, Tables((tmp_path / "page.html").read_text()).tables["table0"][1:]))
    assert re.fullmatch(rf"2 of {n} eda batches, the first because eda sample \d+ is outside the physiological "
                        r"range 0-100 uS.*", overview["refused batches (not analysed)"])


def test_a_failed_analysis_leaves_the_previous_output_folder_whole(tmp_path, monkeypatch):
    """The files are written in a staging folder and moved in at the end: a failure while
    writing (here the report) leaves the previous analysis as it was, not a mix of two."""
    import monitor.analyze as analyze
    import monitor.report as report

    polar = data_path("polar-h10", "polar_h10.csv")
    out = tmp_path / "o"
    analyze.run_analyze(polar, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == set(report.ANALYSIS_FILES)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_analysis_report", fail)
    with pytest.raises(OSError, match="disk full"):
        analyze.run_analyze(polar, out, load_config(None, ["policy.cooldown_s=60"]))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # and no staging folder left


def test_an_output_folder_whose_name_is_long_or_unwritable_is_named_as_given(tmp_path):
    """The staging folder was named after the output folder (``.<name>.<random>``): a folder name
    of 250 characters, which the file system takes, failed with "cannot use '.../.xxx...xo3k2':
    File name too long", and a folder that cannot be written to was reported by that hidden name
    ("cannot use '/proc/.proc.pv7qannr'"), one the user never gave."""
    polar = data_path("polar-h10", "polar_h10.csv")
    long_name = tmp_path / ("x" * 250)
    done = anxmon("analyze", polar, "--out", long_name, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in long_name.iterdir()) == sorted(ANALYSIS_FILES)
    done = anxmon("analyze", polar, "--out", "/proc", check=False)
    assert done.returncode == 1 and "cannot use '/proc': " in done.stderr, done.stderr


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_analysis(tmp_path, monkeypatch):
    """``anxmon analyze`` with an ``--out`` it cannot write failed only at the end, after reading
    and analysing the whole recording (minutes for a long one). It is now refused before the
    recording is read, naming the folder as given; a folder that can be written is left as it
    was (not made, no hidden folder in it) when the analysis then fails."""
    import monitor.analyze as analyze

    polar = data_path("polar-h10", "polar_h10.csv")
    read = []
    monkeypatch.setattr(analyze, "read_recording", lambda path: read.append(path) or 1 / 0)
    for out in ("/proc", "/proc/new/out", str(tmp_path / "afile" / "out")):
        (tmp_path / "afile").write_text("")
        with pytest.raises(OSError) as caught:
            analyze.run_analyze(polar, out)
        assert caught.value.filename == out
    assert read == []
    with pytest.raises(ZeroDivisionError):  # a folder that can be written: the recording is read
        analyze.run_analyze(polar, tmp_path / "new" / "out")
    assert read == [polar] and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_analysis_folder_given_as_the_recording_is_named_as_such(tmp_path):
    """``anxmon analyze out/polar --out ...`` (or ``replay out/polar``), an analysis folder where
    the recording was meant, said only "no recording found in this folder; expected an Empatica
    E4 export ..., a Polar H10 CSV ...", though that folder came from a Polar H10 CSV. It now says
    what the folder is, which recording it came from, and what reads it."""
    polar = data_path("polar-h10", "polar_h10.csv")
    out = tmp_path / "polar"
    anxmon("analyze", polar, "--out", out)
    for command in (["analyze", out, "--out", tmp_path / "again"], ["replay", out, "--broker", "mqtt://127.0.0.1:9"]):
        done = anxmon(*command, check=False)
        assert done.returncode == 2 and "no recording found" not in done.stderr, done.stderr
        assert f"{out} is the output of an analysis (of {polar}), not a recording: anxmon report reads it" \
            in done.stderr, done.stderr


def test_an_output_folder_of_the_user_s_own_files_is_refused_untouched(tmp_path):
    """``anxmon analyze ... --out . --markers markers.csv`` in a project folder replaced the
    user's own markers.csv (their input, rewritten in anxmon's format) and summary.json without a
    word. A folder holding files of an analysis's names but no earlier analysis is refused
    before anything is read or written; an earlier analysis's folder is still analysed again."""
    polar = data_path("polar-h10", "polar_h10.csv")
    project = tmp_path / "project"
    project.mkdir()
    mine = {"markers.csv": "unix_s,label\n2024-05-05T14:55:00Z,session 3\n", "summary.json": "my notes\n"}
    for name, text in mine.items():
        (project / name).write_text(text)
    done = anxmon("analyze", polar, "--out", ".", "--markers", "markers.csv", check=False, cwd=project)
    assert done.returncode == 2, done.stderr
    assert "holds markers.csv, summary.json of no earlier analysis" in done.stderr
    assert {p.name: p.read_text() for p in project.iterdir()} == mine
    anxmon("analyze", polar, "--out", tmp_path / "o")
    anxmon("analyze", polar, "--out", tmp_path / "o", "--markers", project / "markers.csv")
    assert "session 3" in (tmp_path / "o" / "markers.csv").read_text()


# ----------------------------------------------------------------------------- provenance and indicators.csv


def sha256_of(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_summary_identifies_the_run_inputs_code_and_libraries(s02_out, tmp_path):
    """Finding 5: the absolute source path (given relative), each input file's size and sha256,
    the labels and markers files, the command line, the code (git describe of this checkout)
    and the library versions; a zip is hashed as one file."""
    from importlib.metadata import version

    s02 = data_path("stress-predict", "S02")
    markers = tmp_path / "m.csv"
    markers.write_text("unix_s,label\n1644228000,coffee\n")
    anxmon("analyze", "S02", "--out", tmp_path / "o", "--labels", s02 / "labels.csv", "--markers", markers,
           cwd=s02.parent)
    prov = json.loads((tmp_path / "o" / "summary.json").read_text())["provenance"]
    assert prov["source_path"] == str(s02.resolve())
    read = sorted(p for p in s02.iterdir() if p.suffix == ".csv")  # the E4 reader reads every .csv there
    assert [(i["path"], i["bytes"], i["sha256"]) for i in prov["inputs"]] == [
        (str(p.resolve()), p.stat().st_size, sha256_of(p)) for p in read]
    assert prov["labels_file"] == {"path": str((s02 / "labels.csv").resolve()), "bytes": (s02 / "labels.csv").stat().st_size,
                                   "sha256": sha256_of(s02 / "labels.csv"), "from": "--labels"}
    assert prov["markers_file"]["sha256"] == sha256_of(markers)
    assert prov["argv"] == ["anxmon", "analyze", "S02", "--out", str(tmp_path / "o"), "--labels", str(s02 / "labels.csv"),
                            "--markers", str(markers)]
    root = Path(__file__).resolve().parents[1]
    describe = subprocess.run(["git", "-C", str(root), "describe", "--always"], capture_output=True, text=True)
    if describe.returncode == 0:
        assert prov["code"]["git_describe"].removesuffix("-dirty") == describe.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", prov["code"]["sources_sha256"])
    assert prov["libraries"]["numpy"] == version("numpy") and prov["libraries"]["neurokit2"] == version("neurokit2")
    assert prov["libraries"]["python"] == ".".join(map(str, sys.version_info[:3]))
    # the folder's own labels.csv, when no --labels is given
    own = json.loads((s02_out / "summary.json").read_text())["provenance"]
    assert own["labels_file"]["from"] == "the recording" and own["labels_file"]["sha256"] == sha256_of(s02 / "labels.csv")
    assert own["markers_file"] is None
    archive = tmp_path / "S02.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in s02.iterdir():
            z.write(f, f"S02/{f.name}")
    anxmon("analyze", archive, "--out", tmp_path / "z")
    zipped = json.loads((tmp_path / "z" / "summary.json").read_text())["provenance"]
    assert zipped["inputs"] == [{"path": str(archive.resolve()), "bytes": archive.stat().st_size,
                                 "sha256": sha256_of(archive)}]
    assert zipped["labels_file"]["path"] == f"{archive.resolve()}/S02/labels.csv"
    assert zipped["labels_file"]["sha256"] == sha256_of(s02 / "labels.csv")


def test_code_identity_follows_the_source_files(monkeypatch, tmp_path):
    """The sources hash covers the .py files of monitor/ and firmware_bridge/: another file gives another hash."""
    import monitor.analyze as analyze

    analyze.code_identity.cache_clear()
    before = analyze.code_identity()["sources_sha256"]
    fake_root = tmp_path / "root"
    for package in ("monitor", "firmware_bridge"):
        shutil.copytree(Path(analyze.__file__).resolve().parents[1] / package, fake_root / package,
                        ignore=shutil.ignore_patterns("__pycache__", "static"))
    monkeypatch.setattr(analyze, "__file__", str(fake_root / "monitor" / "analyze.py"))
    analyze.code_identity.cache_clear()
    copy = analyze.code_identity()
    assert copy == {"git_describe": None, "sources_sha256": before}  # not a git checkout; the same sources
    with open(fake_root / "monitor" / "core" / "score.py", "a") as f:
        f.write("# changed\n")
    analyze.code_identity.cache_clear()
    assert analyze.code_identity()["sources_sha256"] != before
    analyze.code_identity.cache_clear()


def test_indicators_csv_explains_every_score(s02_out):
    """Finding 7: per tick the check-in threshold, and per indicator in the score its baseline
    mean, its deviation in baseline spreads and its share of the score. The shares add up to the
    score and follow from the deviations by the score's rule (weight x deviation in the stress
    direction, capped, over the summed weights); scored ticks have the gate ``scored``."""
    import pandas as pd

    from monitor.config import Config
    from monitor.core.score import INDICATORS

    ticks = pd.read_csv(s02_out / "indicators.csv")
    summary = json.loads((s02_out / "summary.json").read_text())
    used = summary["indicators_used"]
    for name in used:
        assert {f"baseline_{name}", f"z_{name}", f"contrib_{name}"} <= set(ticks.columns)
    assert ticks["gate"].value_counts().to_dict() == summary["tick_states"]
    scored = ticks["stress_score"].notna()
    assert (ticks["gate"][scored] == "scored").all() and (ticks["gate"][~scored] != "scored").all()
    # no answers offline: the threshold stays the configured one, and the decisions used it
    assert (ticks["threshold"] == summary["threshold_final"]).all()
    decisions = [json.loads(line) for line in (s02_out / "checkins.jsonl").read_text().splitlines()]
    by_t = ticks.set_index("t")["threshold"]
    assert decisions and all(by_t[d["t"]] == d["threshold"] for d in decisions)
    contrib = ticks[[f"contrib_{n}" for n in used]]
    assert np.allclose(contrib[scored].fillna(0).sum(axis=1), ticks["stress_score"][scored], rtol=0, atol=1e-12)
    assert contrib[~scored].isna().all().all()
    config = Config().score
    for _, row in ticks[scored].iterrows():
        ready = [n for n in used if np.isfinite(row[f"z_{n}"])]
        total = sum(config.weights[n] for n in ready)
        for n in ready:
            want = config.weights[n] * min(max(INDICATORS[n][1] * row[f"z_{n}"], 0.0), config.z_cap) / total
            assert row[f"contrib_{n}"] == pytest.approx(want, abs=1e-12), (row["t"], n)
            # the deviation is the value against the baseline mean, in the unit's direction
            assert np.sign(row[f"z_{n}"]) == np.sign(row[n] - row[f"baseline_{n}"]), (row["t"], n)


def test_summary_has_the_labelled_stress_periods_and_quality_counts(s02_out):
    """Findings 4 and 8: every run of stress labels within the recording, [onset, end] (unix s;
    labels.csv has one row per second), and per signal the ticks in each quality state."""
    import pandas as pd

    labels = pd.read_csv(data_path("stress-predict", "S02", "labels.csv"))
    summary = json.loads((s02_out / "summary.json").read_text())
    inside = labels[(labels.unix_s >= summary["start_s"]) & (labels.unix_s < summary["start_s"] + summary["duration_s"])]
    stress = inside.stress.to_numpy()
    edges = np.diff(np.r_[0, stress, 0])
    t = inside.unix_s.to_numpy()
    want = [[float(t[a]), float(t[b - 1] + 1)] for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]
    assert summary["labels"]["periods"] == want and len(want) == 3
    ticks = pd.read_csv(s02_out / "indicators.csv")
    hrv = ticks["quality"].str.extract(r"hrv=(\w+)")[0].value_counts().to_dict()
    assert summary["quality_counts"]["hrv"] == hrv and hrv["irregular"] > 0.9 * len(ticks)
    assert summary["motion_gate"] == "accelerometer"
    # the share of ticks the accelerometer covers, as indicators.csv shows it
    assert summary["motion_signal_share"] == round(float(ticks["ACC_Moving"].notna().mean()), 4) > 0.9


def test_eval_gives_per_indicator_aucs_on_the_scored_ticks_and_its_provenance(s02_out):
    """Finding 6: each indicator's stress-direction AUC on the ticks the pipeline scored, checked
    against indicators.csv and labels.csv; eval's JSON carries the version, code and config."""
    import pandas as pd

    from monitor.evaluate import format_indicator_table

    r = evaluate_subject(data_path("stress-predict", "S02"), load_config(None), sweep=False)
    ticks = pd.read_csv(s02_out / "indicators.csv")
    labels = pd.read_csv(data_path("stress-predict", "S02", "labels.csv"))
    lt, ly = labels.unix_s.to_numpy(float), labels.stress.to_numpy(float)
    idx = np.clip(np.searchsorted(lt, ticks.t, side="right") - 1, 0, len(lt) - 1)
    labelled = ((ticks.t >= lt[0]) & (ticks.t <= lt[idx] + 1)).to_numpy()  # one row per second
    scored = ticks.stress_score.notna().to_numpy()
    for name, direction in (("HR_Mean", 1), ("EDA_Tonic_Mean", 1), ("SCR_Rate", 1), ("TEMP_Mean", -1),
                            ("RSP_Rate", 1), ("ACC_Restlessness", 1)):
        x = direction * ticks[name].to_numpy(float)
        for key, keep in (("indicator_auc_scored", labelled & scored), ("indicator_auc_all", labelled)):
            has = keep & np.isfinite(x)
            assert r[key][name]["ticks"] == int(has.sum()), (key, name)
            assert r[key][name]["roc_auc"] == pytest.approx(roc_auc(x[has], ly[idx][has]), abs=1e-12), (key, name)
    assert r["indicator_auc_scored"]["EDA_Tonic_Mean"]["roc_auc"] != r["indicator_auc_all"]["EDA_Tonic_Mean"]["roc_auc"]
    table = format_indicator_table([r])
    assert f"| S02 | scored | {r['indicator_auc_scored']['HR_Mean']['roc_auc']:.3f} |" in table
    row = json.loads(json.dumps(r))  # what eval --json prints
    assert row["config"] == json.loads(json.dumps(dataclasses_asdict(load_config(None))))
    assert row["provenance"]["anxmon_version"] and row["provenance"]["code"]["sources_sha256"]
    assert row["provenance"]["labels_file"]["sha256"] == sha256_of(data_path("stress-predict", "S02", "labels.csv"))


def dataclasses_asdict(config):
    import dataclasses

    return dataclasses.asdict(config)


def test_analyze_tz_puts_quiet_hours_on_the_wearers_clock(tmp_path):
    """A recording has no wall clock: quiet hours and the daily cap ran in UTC, and nothing said so
    (S02's trigger at 10:19 UTC is 02:19 in Los Angeles, in quiet hours). ``--tz`` gives the
    wearer's zone (the same as ``--set policy.timezone``), and the console names the zone used."""
    s02 = data_path("stress-predict", "S02")
    utc = anxmon("analyze", s02, "--out", tmp_path / "utc")
    assert "quiet hours 22:00-07:00 and the daily cap (6 a day) in UTC; the wearer's time zone: --tz" in utc.stdout
    la = anxmon("analyze", s02, "--out", tmp_path / "la", "--tz", "America/Los_Angeles")
    assert "1 suppressed (1 quiet_hours)" in la.stdout, la.stdout
    assert "ticks, 1 check-in sent, 0 suppressed" in utc.stdout and "ticks, 0 check-ins sent, 1 suppressed" in la.stdout
    assert "the daily cap (6 a day) in America/Los_Angeles\n" in la.stdout
    sent = [json.loads(line) for line in open(tmp_path / "utc" / "checkins.jsonl")]
    quiet = [json.loads(line) for line in open(tmp_path / "la" / "checkins.jsonl")]
    assert [d["t"] for d in sent] == [d["t"] for d in quiet] and sent[0]["sent"]
    assert [d["reason"] for d in quiet] == ["quiet_hours"] * len(sent)
    summary = json.loads((tmp_path / "la" / "summary.json").read_text())
    assert summary["config"]["policy"]["timezone"] == "America/Los_Angeles"
    bad = anxmon("analyze", s02, "--out", tmp_path / "x", "--tz", "Mars/Olympus", check=False)
    assert bad.returncode == 2 and "unknown time zone 'Mars/Olympus'" in bad.stderr
    for command, out in (("analyze", tmp_path / "twice"), ("report", tmp_path / "twice.html")):
        twice = anxmon(command, s02, "--out", out, "--tz", "Europe/Paris", "--set", "policy.timezone = UTC", check=False)
        assert twice.returncode == 2 and "--tz and --set policy.timezone both give the time zone" in twice.stderr
        assert not out.exists()  # refused before anything is read or written


def test_each_reader_note_is_shown_once_and_still_when_analyze_fails(tmp_path):
    """A reader's note that is also a warning (a missing E4 file, a cut last line) was shown twice:
    as a log line while reading and as "reading: ..." in analyze's summary. The summary keeps it;
    when analyze stops before its summary, the warning still says what the reader found."""
    session = short_session(tmp_path / "s02")
    (session / "HR.csv").unlink()
    (session / "EDA.csv").write_text((session / "EDA.csv").read_text()[:-3])  # cut mid-line
    run = anxmon("analyze", session, "--out", tmp_path / "o")
    both = run.stdout + run.stderr
    for note in ("HR.csv is missing: no hr", "EDA.csv: the last line (1300) is incomplete"):
        assert both.count(note) == 1 and re.search(rf"reading: \S*{re.escape(note)}", run.stdout), both
    (session / "labels.csv").write_text("garbage\n")
    failed = anxmon("analyze", session, "--out", tmp_path / "o", check=False)
    assert failed.returncode == 2 and "no label rows" in failed.stderr
    for note in ("HR.csv is missing: no hr", "EDA.csv: the last line (1300) is incomplete", "labels.csv: expected a CSV"):
        assert failed.stderr.count(note) == 1, failed.stderr


def test_indicators_csv_has_a_column_for_every_indicator_the_signals_give(tmp_path, monkeypatch):
    """The Polar H10 file's indicators.csv had no ``HRV_RMSSD`` column at all (nor SDNN, pNN50 or
    a breathing rate): the wearer's premature beats withhold them at every tick, and the columns
    were those that happened to occur, so files of different sessions did not line up. Every
    indicator the recording's signals give now has a column, empty where withheld; the page
    still draws a panel only for an indicator with values."""
    import monitor.report as report
    from monitor.analyze import run_analyze
    from monitor.core.hrv import HrvProcessor
    from monitor.core.respiration import RespirationProcessor

    drawn = []
    draw = report.timeline_png
    monkeypatch.setattr(report, "timeline_png", lambda t, panels, *args, **kwargs: (
        drawn.append([label for label, *_ in panels]), draw(t, panels, *args, **kwargs))[1])
    result, _ = run_analyze(data_path("polar-h10", "polar_h10.csv"), tmp_path / "polar")
    with open(tmp_path / "polar" / "indicators.csv") as f:
        rows = list(csv.DictReader(f))
    heart = {*HrvProcessor.INDICATOR_KEYS, *RespirationProcessor.INDICATOR_KEYS}  # the ECG's and beats' chains
    assert heart <= rows[0].keys() and set(result.indicator_keys) == heart
    assert all(row["HRV_RMSSD"] == "" for row in rows) and any(row["HR_Mean"] for row in rows)
    report.run_report(tmp_path / "polar", tmp_path / "polar.html", n_boot=0)
    assert [any("RMSSD" in label for label in labels) for labels in drawn] == [False, False]
    assert any("Heart rate" in label for label in drawn[-1])
    # the declarations are right: an E4 session (all its signals) has a value of each, and of no other
    s02 = analyze_recording(read_recording(data_path("stress-predict", "S02")), progress=False)
    assert {name for tick in s02.ticks for name in tick.indicators.values} == set(s02.indicator_keys)


def test_a_recording_named_with_accents_keeps_its_letters_in_the_wearer_id(tmp_path):
    """A recording in "Sessión ü" was analysed as wearer "sessi-n": every letter outside a-z
    became a dash. Accents are now dropped and the letters kept."""
    from monitor.analyze import run_analyze

    source = tmp_path / "Sessión ü.csv"
    shutil.copy(data_path("polar-h10", "polar_h10.csv"), source)
    result, _ = run_analyze(source, tmp_path / "out")
    assert result.summary["wearer"] == "session-u"
