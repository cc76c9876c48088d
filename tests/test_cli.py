"""The ``anxmon`` command's handling of bad input: one line naming what was wrong, no traceback.

Exit status 2 for input anxmon refuses (``AnxmonError``), 1 for a path the system refuses
(``OSError``: a file where a folder is needed, no permission, a full disk).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from monitor.cli import main, os_error_text
from tests.conftest import ROOT, data_path


def run(capsys, *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def test_analyze_refuses_an_output_that_is_not_a_folder(capsys, tmp_path):
    s02 = str(data_path("stress-predict", "S02"))
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert run(capsys, "analyze", s02, "--out", str(a_file)) == (
        2, f"anxmon: error: --out {a_file} is a file; give a folder (it is created when missing)\n")
    assert run(capsys, "analyze", s02, "--out", "")[0] == 2
    status, err = run(capsys, "analyze", s02, "--out", str(a_file / "sub"))
    assert status == 1 and f"cannot use '{a_file / 'sub'}'" in err
    assert a_file.read_text() == "x"


def test_analyze_names_the_files_it_wrote_under_an_out_with_a_trailing_slash(capsys, tmp_path):
    """``--out o/`` (as a shell completes a folder) printed "wrote o//indicators.csv"."""
    out = tmp_path / "o"
    assert main(["analyze", str(data_path("stress-predict", "S05")), "--out", f"{out}/"]) == 0
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert wrote == [f"wrote {out / 'indicators.csv'}, checkins.jsonl, summary.json, markers.csv, report.html"]
    assert (out / "indicators.csv").is_file()


def test_a_wearer_id_outside_the_wire_contract_is_refused(capsys, tmp_path):
    status, err = run(capsys, "analyze", str(data_path("stress-predict", "S02")), "--out", str(tmp_path),
                      "--wearer", "a/b")
    assert status == 2 and "wearer id 'a/b' is not valid" in err
    assert not any(tmp_path.iterdir())


def test_report_out_must_be_a_file(capsys, tmp_path):
    status, err = run(capsys, "report", str(tmp_path), "--out", str(tmp_path))
    assert status == 2 and "is a folder; give the HTML file to write" in err


def test_report_out_of_another_kind_than_html_is_refused(capsys, tmp_path):
    """``anxmon report ... --out s02.pdf`` wrote an HTML page named s02.pdf, which a PDF viewer
    then failed to open. A suffix other than .html/.htm is refused before anything is read."""
    polar = str(data_path("polar-h10", "polar_h10.csv"))
    status, err = run(capsys, "report", polar, "--out", str(tmp_path / "s02.pdf"))
    assert status == 2 and f"--out {tmp_path / 's02.pdf'}: anxmon report writes an HTML page; give a .html " \
        f"file, e.g. {tmp_path / 's02.html'}" in err, err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, expected", [
    (["bench", "analyze", "--max-wearers", "5"], "--max-wearers: only for anxmon bench live"),
    (["bench", "core", "--aligned-ticks"], "--aligned-ticks: only for anxmon bench live"),
    (["bench", "live", "--profile", "--aligned-ticks"], "--aligned-ticks goes with the ramp, not --profile"),
    (["demo", "--minutes", "3"], "--minutes goes with --recording"),
    (["demo", "--recording", "x", "--minutes", "-1"], "--minutes must be > 0, got -1.0"),
    (["demo", "--summary-json", "."], "--summary-json . is a folder"),
])
def test_options_that_would_be_ignored_or_meaningless_are_refused(capsys, argv, expected):
    status, err = run(capsys, *argv)
    assert status == 2 and expected in err


def test_hash_password_without_a_terminal_or_input_is_an_error():
    """``anxmon app --hash-password`` with nothing on standard input (as in CI): no EOFError."""
    done = subprocess.run([sys.executable, "-m", "monitor.cli", "app", "--hash-password"], cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "got none" in done.stderr and "Traceback" not in done.stderr


def test_os_error_text_names_both_paths():
    assert os_error_text(FileExistsError(17, "File exists", "a", None, "b")) == "cannot use 'a' -> 'b': File exists"
    assert os_error_text(OSError(28, "No space left on device")) == "No space left on device"


def test_mqtt_version_5_needs_an_external_broker(capsys, tmp_path):
    """The embedded nats-server speaks MQTT 3.1.1 only: refused up front, before the data
    directory or a broker is made, saying what to use instead."""
    status, err = run(capsys, "run", "--mqtt-version", "5", "--data-dir", str(tmp_path / "data"))
    assert status == 2 and "the embedded nats-server speaks MQTT 3.1.1 only" in err and "--broker" in err
    assert not (tmp_path / "data").exists()


def test_run_leaves_the_current_or_a_shared_folder_alone(capsys, tmp_path, monkeypatch):
    """``anxmon run --data-dir ''`` (an unset variable) took the current directory for its data
    and made it mode 0700; ``--data-dir /tmp`` did that to /tmp, locking every other user out of
    it. Both are refused before anything is written or changed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    monkeypatch.chdir(shared)
    status, err = run(capsys, "run", "--data-dir", "", "--broker", "mqtt://127.0.0.1:9")
    assert status == 2 and "--data-dir is empty" in err
    status, err = run(capsys, "run", "--data-dir", str(shared), "--broker", "mqtt://127.0.0.1:9")
    assert status == 2 and f"--data-dir {shared} is a folder every user may write to" in err
    assert f"e.g. {shared / 'anxmon-data'}" in err
    assert (shared.stat().st_mode & 0o7777, list(shared.iterdir())) == (0o1777, [])


def test_run_takes_an_empty_folder_or_its_own_but_not_one_of_other_files(capsys, tmp_path):
    """``anxmon run --data-dir .`` in a project (or ``--data-dir ~``) made that folder mode 0700,
    locking its other users out of it. A folder of other files is refused before anything is
    written or changed, naming a subfolder to use; an empty one (systemd's ``StateDirectory=``
    makes it, mode 0755) and anxmon's own (its lock file, beside the owner's notes) are taken."""
    project, empty, own = tmp_path / "project", tmp_path / "empty", tmp_path / "own"
    for folder in (project, empty, own):
        folder.mkdir()
        os.chmod(folder, 0o755)
    (project / "notes.txt").write_text("mine")
    (own / "notes.txt").write_text("mine")
    (own / "anxmon-run.lock").write_text("")  # left by an earlier anxmon run
    bad_url = "127.0.0.1:9"  # refused once the folder is taken: the run ends there, whichever way
    status, err = run(capsys, "run", "--data-dir", str(project), "--broker", bad_url)
    assert status == 2 and f"--data-dir {project} already holds files that are not anxmon's" in err
    assert f"e.g. {project / 'anxmon-data'}" in err
    assert (project.stat().st_mode & 0o7777, [p.name for p in project.iterdir()]) == (0o755, ["notes.txt"])
    for folder in (empty, own):
        status, err = run(capsys, "run", "--data-dir", str(folder), "--broker", bad_url)
        assert status == 2 and "not anxmon's" not in err and "mqtt://" in err, err
        assert folder.stat().st_mode & 0o7777 == 0o700 and (folder / "anxmon-run.lock").exists()


@pytest.mark.parametrize("argv, verbose", [
    (["run", "-v"], 1), (["-v", "run"], 1), (["run", "-vv"], 2), (["run"], 0),
    (["bridge", "lines", "-vv"], 2), (["simulate", "-v"], 1), (["demo", "--seconds", "1", "-v"], 1),
])
def test_verbose_may_follow_the_command(argv, verbose):
    """``anxmon run -v`` was refused with "unrecognized arguments: -v" and the top-level usage."""
    from monitor.cli import build_parser

    assert build_parser().parse_args(argv).verbose == verbose


@pytest.mark.parametrize("url, shown", [
    ("monitor:s3cret@localhost:1883", "'monitor:***@localhost:1883'"),  # mqtt:// forgotten
    ("tcp://monitor:s3/cret@localhost:1883", "'tcp://monitor:***@localhost:1883'"),  # a '/' in the password
    ("mqtt://monitor:s3cret@localhost:0", "between 1 and 65535, got 'mqtt://monitor:***@localhost:0'"),
])
def test_a_wrong_broker_url_is_named_without_its_password(capsys, tmp_path, url, shown):
    """A URL that is not ``mqtt://`` showed its password in the error (on a terminal, in the
    journal) when ``mqtt://`` was left out; port 0 was taken for the default port 1883."""
    status, err = run(capsys, "run", "--broker", url, "--data-dir", str(tmp_path / "data"))
    assert status == 2 and shown in err and "cret" not in err


@pytest.mark.parametrize("option, value, message", [
    ("--before-h", "inf", "argument --before-h: must be a finite number > 0, got 'inf'"),
    ("--after-s", "0", "argument --after-s: must be a finite number > 0, got '0'"),
    ("--before-s", "nan", "argument --before-s: must be a finite number > 0, got 'nan'"),
    ("--after-h", "1e306", "argument --after-h: must be a finite number > 0, got '1e306'"),  # inf seconds
    ("--bootstrap", "2000000000", "argument --bootstrap: must be 0 to 1,000,000 resamples, got 2000000000"),
    ("--bootstrap", "-1", "argument --bootstrap: must be 0 to 1,000,000 resamples, got -1"),
])
def test_report_numbers_out_of_range_are_one_line_errors(capsys, tmp_path, option, value, message):
    """``--before-h inf`` ended in an OverflowError, ``--bootstrap 2000000000`` in a 104 GiB
    allocation: argparse refuses them with one line."""
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path), "--out", str(tmp_path / "r.html"), option, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"error: {message}" in err and "Traceback" not in err


@pytest.mark.parametrize("options, message", [
    (["--checkpoint-s", "0"], "argument --checkpoint-s: must be a finite number > 0, got 0"),
    (["--stale-after-s", "nan"], "argument --stale-after-s: must be a finite number > 0, got nan"),
    (["--indicator-interval-s", "-1"], "argument --indicator-interval-s: must be a finite number >= 0, got -1"),
    (["--retention-days", "-1"], "argument --retention-days: must be a finite number > 0, got -1"),
    (["--record-raw", "--no-record"], "argument --no-record: not allowed with argument --record-raw"),
])
def test_run_options_out_of_range_name_the_option(capsys, tmp_path, options, message):
    """``anxmon run --checkpoint-s 0`` said "checkpoint_s must be > 0 seconds" and ``--record-raw
    --no-record`` "record_raw needs record": Python field names, not the options typed."""
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--data-dir", str(tmp_path / "data"), *options])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"anxmon run: error: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("options, message", [
    (["--max-wearers", "-5"], "argument --max-wearers: must be a finite number > 0, got -5"),
    (["--max-wearers", "0"], "argument --max-wearers: must be a finite number > 0, got 0"),
    (["--seconds", "0"], "argument --seconds: must be a finite number > 0, got 0"),
])
def test_bench_live_options_out_of_range_are_refused(monkeypatch, capsys, options, message):
    """``anxmon bench live --max-wearers -5`` generated the data, started a broker and the
    service, then died in numpy with a traceback; ``--max-wearers 0`` quietly ran the default
    ramp up to 3,200 wearers and ``--seconds 0`` the default 20 s a step."""
    import monitor.bench

    monkeypatch.setattr(monitor.bench, "run_bench", lambda *a, **k: pytest.fail("the benchmark ran"))
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "live", *options])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"anxmon bench: error: {message}" in err and "Traceback" not in err


def test_report_out_empty_is_named_as_such(capsys, tmp_path):
    status, err = run(capsys, "report", str(tmp_path), "--out", "")
    assert status == 2 and "--out must name the HTML file to write" in err and "is a folder" not in err


def test_bench_live_gives_its_step_table_a_heading(capsys):
    """The ramp prints each step line on stderr while it runs; the summary on stdout repeats them
    under a heading instead of as unexplained duplicates."""
    from monitor.bench import _live_line, _print_live

    step = {"wearers": 50, "latency_ms": {"p50": 3.0, "p99": 9.0}, "indicators": 500, "late_or_missing": 0,
            "cpu_cores": {"service": 0.1, "broker": 0.1, "generator": 0.1}, "ok": True}
    result = {"p99_limit_ms": 250.0, "max_wearers_realtime": 50, "cpus": 2, "ticks": "spread",
              "core_wearer_s_per_cpu_s": 300.0, "core_wearers_per_core": 300, "core_s02_wearer_s_per_cpu_s": 260.0,
              "data_core": "S02", "profile_us_per_wearer_s": {"service_measured": None}, "steps": [step]}
    _print_live(result, sys.stdout)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == ["steps of the ramp (as shown while they ran):", _live_line(step)]


class _Terminal:
    """A stream that says it is a terminal, as stderr in a shell is."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True


def test_eval_shows_progress_on_a_terminal(tmp_path):
    """``anxmon eval`` runs 9 analyses per subject (about a minute for S02 and S05) and printed
    nothing meanwhile: on a terminal a bar over every analysis says which one is done. The
    subject here is S02's first 15 minutes (EDA, HR, labels) to keep it short."""
    import io

    from monitor.config import Config
    from monitor.evaluate import RUNS_PER_SUBJECT, run_eval

    s02 = data_path("stress-predict", "S02")
    subject = tmp_path / "s02part"
    subject.mkdir()
    for name, lines in (("EDA.csv", 2 + 4 * 900), ("HR.csv", 2 + 900), ("labels.csv", 1 + 900)):
        with open(s02 / name) as f:
            (subject / name).write_text("".join(line for _, line in zip(range(lines), f)))
    terminal, out = _Terminal(), io.StringIO()
    assert run_eval([str(subject)], Config(), out=out, err=terminal) == 0
    assert RUNS_PER_SUBJECT == 9 and f"0/{RUNS_PER_SUBJECT}" in terminal.text
    for what in ("pipeline", "without breathing/restlessness", "heart only", "threshold 1", "threshold 2.5"):
        assert f"s02part: {what} done" in terminal.text, terminal.text
    assert "| s02part | pipeline |" in out.getvalue()  # the tables on stdout, the bar apart
    quiet = io.StringIO()  # not a terminal: nothing (a log or a pipe gets no bar)
    assert run_eval([str(subject)], Config(), out=io.StringIO(), err=quiet) == 0
    assert quiet.getvalue() == ""


def test_the_broker_url_can_come_from_the_environment(monkeypatch, tmp_path):
    """A password on the command line is visible to every local user (ps). run and app take
    $ANXMON_MONITOR_BROKER_URL (not $ANXMON_BROKER_URL, which often holds a wearer's login for
    a bridge: the service must not connect as a wearer); replay, annotate and simulate take
    $ANXMON_BROKER_URL, after an explicit --data-dir's embedded broker."""
    import json as json_

    from monitor.broker import resolve_broker_url
    from monitor.cli import build_parser

    monkeypatch.setenv("ANXMON_BROKER_URL", "mqtt://alice:pw@broker.example:1883")
    monkeypatch.setenv("ANXMON_MONITOR_BROKER_URL", "mqtt://monitor:secret@broker.example:1883")
    parser = build_parser()
    for argv in (["run"], ["app"]):
        assert parser.parse_args(argv).broker == "mqtt://monitor:secret@broker.example:1883", argv
    assert parser.parse_args(["run", "--broker", "mqtt://other:1"]).broker == "mqtt://other:1"
    study = tmp_path / "study"
    study.mkdir()
    (study / "broker-credentials.json").write_text(json_.dumps({"url": "mqtt://monitor:x@127.0.0.1:4242"}))
    for argv in (["replay", "x.csv"], ["annotate", "--wearer", "a", "--label", "l"]):
        args = parser.parse_args(argv)
        assert resolve_broker_url(args.broker, args.data_dir) == "mqtt://alice:pw@broker.example:1883", argv
        args = parser.parse_args([*argv, "--data-dir", str(study)])
        assert resolve_broker_url(args.broker, args.data_dir) == "mqtt://monitor:x@127.0.0.1:4242", argv


LONG_RUNNING = {  # command -> (extra arguments, printed once it runs, printed by its clean stop)
    "simulate": (["--wearers", "1", "--speed", "5", "--seconds", "3600", "--broker", "{url}"],
                 "anxmon simulate: 1 wearer(s)", "(stopped early)"),
    "bridge": (["lines", "--wearer", "w1", "--broker", "{url}", "--outbox", "{tmp}/outbox.sqlite"],
               "bridge w1/diy-lines", "bridge stopped; there was nothing to send"),  # (no input)
    "run": (["--broker", "{url}", "--data-dir", "{tmp}/data"], "running", "final checkpoint written"),
    "demo": (["--seconds", "60"], "service and phones connected", ", interrupted"),
}


@pytest.mark.parametrize("command, sig", [pytest.param(c, s, id=f"{c}-{s.name}") for c in LONG_RUNNING
                                          for s in (signal.SIGINT, signal.SIGTERM)
                                          if (c, s) != ("run", signal.SIGTERM)])  # (that one: tests/test_service.py)
def test_a_long_running_command_stopped_by_a_signal_exits_128_plus_its_number(tmp_path, command, sig):
    """The one rule (monitor/stopping.py, docs/service.md): Ctrl-C or SIGTERM stops the command
    cleanly (its usual last words) and the exit status is 130 or 143, not 0 as if it had finished."""
    from monitor.broker import start_broker
    from tests.conftest import need_broker
    from tests.test_service import wait_until

    need_broker("mosquitto")
    need_broker("nats")  # (the demo's own broker)
    broker = start_broker("mosquitto", data_dir=tmp_path / "broker")
    extra, running, stopped = LONG_RUNNING[command]
    log = tmp_path / "out.log"
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", command,
                             *(a.format(url=broker.url, tmp=tmp_path) for a in extra)],
                            stdin=subprocess.PIPE, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        assert wait_until(lambda: running in log.read_text() or proc.poll() is not None, 60), log.read_text()
        time.sleep(1.0)
        os.kill(proc.pid, sig)
        assert proc.wait(30) == 128 + sig, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
        broker.stop()
    assert stopped in log.read_text() and "Traceback" not in log.read_text()


@pytest.mark.parametrize("script", ["core", "analyze", "live"])
@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["--jsn"], 2)])
def test_bench_scripts_read_their_options_as_anxmon_bench_does(monkeypatch, capsys, script, argv, code):
    """``python bench/core.py --help`` (bench/README.md) ignored --help and any misspelt option
    and ran the whole benchmark for minutes; the scripts now are ``anxmon bench WHAT``."""
    import runpy

    import monitor.bench

    def ran(*args, **kwargs):
        raise AssertionError(f"bench/{script}.py {' '.join(argv)} ran the benchmark")

    monkeypatch.setattr(monitor.bench, "run_bench", ran)
    monkeypatch.setattr(sys, "argv", [f"bench/{script}.py", *argv])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "bench" / f"{script}.py"), run_name="__main__")
    assert stopped.value.code == code
    shown = capsys.readouterr()
    assert "usage: anxmon" in shown.out + shown.err
