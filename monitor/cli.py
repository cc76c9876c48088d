"""The ``anxmon`` command.

Example
-------
    anxmon analyze ../shared/data/stress-predict/S02 --out out/s02
    anxmon report out/s02 --out s02.html --before-s 120 --after-s 120
    anxmon run --data-dir /var/lib/anxmon
    anxmon replay ../shared/data/stress-predict/S02 --speed max --data-dir /var/lib/anxmon
    anxmon annotate --wearer s02 --label "therapy session"
    anxmon export --data-dir /var/lib/anxmon --wearer s02 --what indicators --format parquet --out s02.parquet
    anxmon bench core --json
    anxmon demo
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from pathlib import Path

from monitor import __version__
from monitor.broker import DEFAULT_DATA_DIR, publisher_broker_options
from monitor.errors import AnxmonError
from monitor.stopping import SigtermInterrupts, Terminated, exit_status

log = logging.getLogger("anxmon")

NOT_MEDICAL = "anxmon is not a medical device: it never diagnoses and never suggests medication."
DATA_SHARE_SHOWN = 0.9  # analyze says how much of the span had data when it is less than this share
MARKERS_CSV = "CSV unix_s[,label][,kind] (unix seconds, or ISO 8601 with a zone: 2022-02-07T11:00:00+01:00)"


def os_error_text(exc: OSError) -> str:
    """One line for a file system error, naming the path(s).

    >>> os_error_text(IsADirectoryError(21, "Is a directory", "out"))
    "cannot use 'out': Is a directory"
    """
    if exc.filename is None:
        return exc.strerror or str(exc)
    paths = f"{str(exc.filename)!r}" + (f" -> {str(exc.filename2)!r}" if exc.filename2 else "")
    return f"cannot use {paths}: {exc.strerror or exc}"


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the project (or the current directory), when present."""
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def _config(args, *overrides: str):
    """The run's configuration: ``--config``, then ``--set``, then ``overrides`` (``section.key=value``)."""
    from monitor.config import load_config

    return load_config(getattr(args, "config", None), [*(getattr(args, "set", None) or []), *overrides])


def _zone_once(args) -> None:
    """``--tz`` and ``--set policy.timezone=...`` both give the wearer's zone: one would silently
    win, so both together are refused."""
    if getattr(args, "tz", None) and any(o.split("=", 1)[0].strip() == "policy.timezone" for o in args.set or []):
        raise AnxmonError("--tz and --set policy.timezone both give the time zone: give it once")


def _output_folder(path: str) -> str:
    """``--out`` of analyze: a folder that exists or can be made (not a file, not empty)."""
    if not path.strip():
        raise AnxmonError("--out must name a folder, got an empty path")
    if Path(path).exists() and not Path(path).is_dir():
        raise AnxmonError(f"--out {path} is a file; give a folder (it is created when missing)")
    return path


@contextlib.contextmanager
def _reader_warnings_held():
    """Hold back the readers' warnings that are also notes (``readers.common.NOTES_LOG``): analyze
    prints every note ("reading: ..."), so each was shown twice. When analyze stops before it
    prints them (an error, Ctrl-C), the held warnings are shown then: they may say why."""
    from logging.handlers import BufferingHandler

    from monitor.readers.common import NOTES_LOG

    held = BufferingHandler(capacity=sys.maxsize)
    NOTES_LOG.addHandler(held)
    NOTES_LOG.propagate = False
    failed = True
    try:
        yield
        failed = False
    finally:
        NOTES_LOG.removeHandler(held)
        NOTES_LOG.propagate = True
        for record in held.buffer if failed else ():
            NOTES_LOG.handle(record)


def cmd_analyze(args) -> int:
    from monitor.analyze import refusals, run_analyze
    from monitor.wire import check_id

    _output_folder(args.out)
    if args.wearer is not None:
        check_id("wearer", args.wearer)
    # without --labels, a labels.csv in the session folder is picked up by the reader
    _zone_once(args)
    config = _config(args, *([f"policy.timezone={args.tz.key}"] if args.tz else []))
    with _reader_warnings_held():
        result, _ = run_analyze(args.path, args.out, config, args.labels, args.wearer, args.markers,
                                argv=getattr(args, "argv", None))
    s = result.summary
    lost, refused = refusals(s)
    used = [sig for sig in s["signals"] if sig not in lost]
    # a recording with gaps: how much of its span had data (a Polar file of 10 min in two parts 3 h apart)
    with_data = f" ({s['data_s'] / 60:.1f} min with data)" if s["data_s"] < DATA_SHARE_SHOWN * s["duration_s"] else ""
    print(f"analysed {s['duration_s'] / 60:.1f} min{with_data} of {', '.join(used) or 'no signal'} "
          f"({result.speed_x_realtime or 0:.0f}x real time): {s['ticks']} ticks, "
          f"{_count(s['checkins_sent'], 'check-in')} sent, {s['trigger_decisions'] - s['checkins_sent']} suppressed"
          + (f" ({', '.join(f'{n} {why}' for why, n in s['suppressed'].items())})" if s["suppressed"] else ""))
    if s["trigger_decisions"]:  # the wall clock of quiet hours and the daily cap: the recording has none
        from monitor.core.policy import PolicyConfig

        policy = config.policy
        quiet = "quiet hours {}-{} and".format(*policy.quiet_hours) if policy.quiet_hours else "no quiet hours;"
        print(f"  {quiet} the daily cap ({policy.daily_cap} a day) in {policy.timezone}"
              + ("; the wearer's time zone: --tz ZONE" if policy.timezone == PolicyConfig.timezone and not args.tz else ""))
    for note in s["reader_notes"]:
        print(f"  reading: {note}")
    for line in refused:
        print(f"  refused: {line}", file=sys.stderr)
    if not s["tick_states"].get("scored"):
        states = ", ".join(f"{n} {state}" for state, n in sorted(s["tick_states"].items()))
        print(f"no tick was scored ({states or 'no ticks'}): too short for the warm-up "
              "(score.warmup_s), or no signal the score uses?")
    if "labels" in s:
        m = s["labels"]
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.2f}"
        print(f"against labels: ROC AUC {auc}, {m['stress_periods_detected']}/{m['stress_periods']} stress "
              f"periods with a trigger, {_count(m['false_checkins'], 'check-in')} in {m['rest_hours']:.2f} h of rest")
    print(f"wrote {Path(args.out) / 'indicators.csv'}, checkins.jsonl, summary.json, markers.csv, report.html")
    return 0


def _count(n: int, noun: str) -> str:
    """``n`` of ``noun``, singular for one: ``_count(1, "check-in")`` -> ``'1 check-in'``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _window(unit_s: float):
    """An argparse ``type`` of a window length in units of ``unit_s`` seconds: finite and > 0
    (also in seconds).

    >>> _window(3600.0)("1.5")
    1.5
    >>> _window(1.0)("inf")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a finite number > 0, got 'inf'
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value * unit_s) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
        return value

    return parse


MAX_BOOTSTRAP = 1_000_000  # resamples: more changes no interval and would need gigabytes


def broker_option(parser, otherwise: str) -> None:
    """``--broker URL`` of the service and the app, defaulting to ``$ANXMON_MONITOR_BROKER_URL``:
    a password in the environment is not on the command line, which every local user can read
    (``ps``). (A variable of its own: ``$ANXMON_BROKER_URL`` often holds a wearer's login.)"""
    from monitor.broker import MONITOR_BROKER_URL_VARIABLE

    parser.add_argument("--broker", metavar="URL", default=os.environ.get(MONITOR_BROKER_URL_VARIABLE) or None,
                        help=f"mqtt://monitor:password@host:port (default: ${MONITOR_BROKER_URL_VARIABLE}, which "
                             f"keeps the password out of `ps`; else {otherwise})")



def _bootstrap(text: str) -> int:
    """``--bootstrap``: 0 (no intervals) to ``MAX_BOOTSTRAP`` resamples."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of resamples, got {text!r}") from None
    if not 0 <= value <= MAX_BOOTSTRAP:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_BOOTSTRAP:,} resamples, got {text}")
    return value


def _timezone(name: str):
    from monitor.core.policy import ControlError, check_timezone

    try:
        return check_timezone(name)
    except ControlError:
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r}: expected an IANA name such as Europe/Berlin") from None


def cmd_report(args) -> int:
    from monitor.report import duration_text, run_report
    from monitor.wire import check_id

    if args.wearer is not None:
        check_id("wearer", args.wearer)
    if not args.out.strip():
        raise AnxmonError("--out must name the HTML file to write, e.g. report.html; got an empty path")
    if Path(args.out).is_dir():
        raise AnxmonError(f"--out {args.out} is a folder; give the HTML file to write, e.g. {Path(args.out) / 'report.html'}")
    if Path(args.out).suffix.lower() not in ("", ".html", ".htm"):  # x.pdf: an HTML page under another name
        raise AnxmonError(f"--out {args.out}: anxmon report writes an HTML page; give a .html file, e.g. "
                          f"{Path(args.out).with_suffix('.html')} (a browser prints it to PDF)")
    _zone_once(args)
    hours = lambda x: None if x is None else x * 3600.0  # noqa: E731
    before = args.before_s if args.before_s is not None else hours(args.before_h)
    after = args.after_s if args.after_s is not None else hours(args.after_h)
    done = run_report(args.path, args.out, args.markers, before, after, args.bootstrap, args.seed,
                      args.threshold, args.tz, _config(args), args.wearer)
    rows = {c.kind: c.n for c in done["comparisons"] if c.measure == "mean_score"}
    windows = (f"windows {duration_text(done['before_s'])} before, {duration_text(done['after_s'])} after; "
               if rows else "")
    print(f"wrote {args.out}: {len(done['days'])} day(s); {windows}"
          + (", ".join(f"{k}: {n} window pair(s)" for k, n in rows.items()) or "no markers"))
    if rows and not any(c.n for c in done["comparisons"]):
        from monitor.report import MIN_COVERAGE

        print(f"no marker has both windows covered by data for {MIN_COVERAGE:.0%} of their length: windows longer "
              "than the data around the markers? (shorter: --before-s/--after-s)", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from monitor.demo import run_demo

    return run_demo(args)


def cmd_run(args) -> int:
    from monitor.service import run_service

    if args.mqtt_version == "5" and not args.broker:
        raise AnxmonError("--mqtt-version 5 needs --broker: the embedded nats-server speaks MQTT 3.1.1 only; "
                          "use an MQTT 5 broker such as mosquitto (--broker mqtt://user:password@host:port)")
    return run_service(args)


def cmd_bench(args) -> int:
    from monitor.bench import run_bench

    live_only = [f"--{k.replace('_', '-')}" for k in ("max_wearers", "seconds", "profile", "aligned_ticks")
                 if getattr(args, k) not in (None, False)]
    if args.what != "live" and live_only:
        raise AnxmonError(f"{', '.join(live_only)}: only for anxmon bench live")
    if args.profile and args.aligned_ticks:
        raise AnxmonError("--aligned-ticks goes with the ramp, not --profile (which runs the service with spread ticks)")
    return run_bench(args.what, as_json=args.json, max_wearers=args.max_wearers, seconds=args.seconds,
                     profile=args.profile, aligned_ticks=args.aligned_ticks)


def cmd_eval(args) -> int:
    from monitor.evaluate import run_eval

    return run_eval(args.subjects, _config(args), as_json=args.json)


def cmd_export(args) -> int:
    from monitor.export import run_export

    return run_export(args)


def cmd_replay(args) -> int:
    from monitor.replay import run_replay

    return run_replay(args)


def cmd_annotate(args) -> int:
    from monitor.annotate import run_annotate

    return run_annotate(args)


def add_research_parsers(sub) -> None:
    """``anxmon export``, ``anxmon replay`` and ``anxmon annotate``."""
    from monitor.export import FORMATS, WHAT
    from monitor.replay import DEFAULT_DEVICE, parse_speed

    x = sub.add_parser("export", help="the service's recording (indicators, decisions, check-ins, answers, markers, "
                                      "raw batches) to CSV, Parquet or an anxmon recording")
    x.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="the service's data directory (default: ./anxmon-data)")
    x.add_argument("--wearer", help="only this wearer (raw and analysis exports: required when there are several)")
    x.add_argument("--from", dest="from_t", metavar="T", help="from this event time on: unix seconds or ISO 8601 with a "
                                                               "zone (2022-02-07T10:00:00+01:00, ...Z)")
    x.add_argument("--to", dest="to_t", metavar="T", help="up to (not including) this event time")
    x.add_argument("--what", choices=WHAT, default="indicators",
                   help="which table (default: indicators); raw: an anxmon recording of the raw batches and markers "
                        "(.jsonl); analysis: a folder that anxmon report reads")
    x.add_argument("--format", choices=FORMATS, help="csv (default) or parquet (needs pyarrow); jsonl for raw")
    x.add_argument("--out", required=True, metavar="PATH", help="the file (or folder, for --what analysis) to write")
    x.set_defaults(func=cmd_export)

    rp = sub.add_parser("replay", help="publish a recording to a broker as a live device would, paced by its timestamps")
    rp.add_argument("path", help="a recording in any format analyze reads (the format is detected)")
    rp.add_argument("--speed", type=parse_speed, default=1.0, metavar="X|max",
                    help="multiple of real time, or max: as fast as the broker acknowledges (default: 1)")
    rp.add_argument("--rebase-time", action="store_true", help="shift the timestamps so that the recording starts now")
    rp.add_argument("--wearer", help="wearer id (default: the recording's, else its file or folder name)")
    rp.add_argument("--device", default=DEFAULT_DEVICE, help=f"device id in the topics (default: {DEFAULT_DEVICE})")
    rp.add_argument("--markers", metavar="CSV", help=f"more markers to publish: {MARKERS_CSV}")
    publisher_broker_options(rp)
    rp.set_defaults(func=cmd_replay)

    an = sub.add_parser("annotate", help="publish an event marker for a wearer (the service records it)")
    an.add_argument("--wearer", required=True, help="wearer id")
    an.add_argument("--label", required=True, help='what happened, e.g. "therapy session"')
    an.add_argument("--kind", help="what groups markers in a report (default: the label)")
    an.add_argument("--t", metavar="T", help="when: unix seconds or ISO 8601 with a zone, e.g. 2022-02-07T10:30:00+01:00 "
                                              "(default: now)")
    an.add_argument("--source", default="annotate", help="who marks it: the id in the topic (default: annotate)")
    publisher_broker_options(an)
    an.set_defaults(func=cmd_annotate)


def build_parser() -> argparse.ArgumentParser:
    from firmware_bridge.cli import positive_number

    p = argparse.ArgumentParser(prog="anxmon", description=f"Wearable anxiety monitor. {NOT_MEDICAL}")
    p.add_argument("--version", action="version", version=f"anxmon {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: DEBUG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_options(sp):
        sp.add_argument("--config", metavar="FILE", help="TOML config file (default: built-in defaults; see configs/default.toml)")
        sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override one config value for this run, e.g. --set policy.cooldown_s=600")

    a = sub.add_parser("analyze", help="run a recorded session through the monitor")
    a.add_argument("path", help="a recording: E4 export (folder or zip), EmotiBit parsed files, Polar H10 CSV, "
                                "Garmin export, or an anxmon .jsonl recording (the format is detected)")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--labels", help="CSV unix_s,stress (default: labels.csv in the session folder)")
    a.add_argument("--markers", metavar="CSV", help=f"event markers to add: {MARKERS_CSV}; written to markers.csv")
    a.add_argument("--wearer", help="wearer id used in prompt ids (default: the recording's, else its file or "
                                    "folder name: S02 -> s02)")
    a.add_argument("--tz", type=_timezone, metavar="ZONE",
                   help="the wearer's time zone, e.g. Europe/Berlin: the clock of quiet hours and of the daily "
                        "cap's days (the same as --set policy.timezone=ZONE; default: the configuration's, UTC)")
    config_options(a)
    a.set_defaults(func=cmd_analyze)

    d = sub.add_parser("demo", help="broker, service and three simulated wearers with phones, in accelerated time",
                       description="Starts an embedded broker, the service, three simulated wearers (calm, "
                                   "anxious, running) and a phone per wearer that answers check-ins; shows them "
                                   "live and scores the check-ins against the simulation's ground truth. "
                                   "No configuration needed. " + NOT_MEDICAL)
    d.add_argument("--seconds", type=float, default=None,
                   help="wall seconds to run at most (default: the whole 90-minute scenario, 90 s at 60x)")
    d.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second (default: 60)")
    d.add_argument("--seed", type=int, default=0, help="seed of the simulated wearers (default: 0)")
    d.add_argument("--summary-json", metavar="FILE", help="write the per-wearer summary as JSON")
    d.add_argument("--recording", nargs="?", const="default", metavar="PATH",
                   help="instead, play a real E4 recording through the monitor minute by minute "
                        "(no PATH: ../shared/data/stress-predict/S02)")
    d.add_argument("--minutes", type=float, default=None,
                   help="with --recording: how much of it to play (default: 30; S02's check-in comes at minute 26)")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="the live service: sample batches in over MQTT, indicators and check-ins out")
    broker_option(r, "start an embedded nats-server in the data dir")
    r.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                   help="checkpoints, embedded broker and its credentials (default: ./anxmon-data)")
    r.add_argument("--instance", default="main", metavar="ID",
                   help="id of this service: its state topic and MQTT client id anxmon-monitor-ID-SECRET (default: main)")
    r.add_argument("--checkpoint-s", type=positive_number(float), default=30.0, metavar="S",
                   help="write each wearer's state at most this many seconds after it changed (default: 30)")
    r.add_argument("--stale-after-s", type=positive_number(float), default=120.0, metavar="S",
                   help="no check-in from data this far behind the wall clock (default: 120)")
    r.add_argument("--indicator-interval-s", type=positive_number(float, inclusive=True), default=1.0, metavar="S",
                   help="at most one indicators message per wearer per this many seconds; 0: every tick (default: 1)")
    r.add_argument("--mqtt-version", choices=["3.1.1", "5"], default="3.1.1",
                   help="3.1.1: clean session off; 5: clean start off with a 7-day session expiry, needs --broker "
                        "(the embedded nats-server speaks 3.1.1 only; e.g. mosquitto) (default: 3.1.1)")
    recording = r.add_mutually_exclusive_group()  # (raw batches are part of the recording)
    recording.add_argument("--no-record", action="store_true",
                           help="do not record indicators, decisions, check-ins, answers and markers to "
                                "DATA/recordings.sqlite")
    recording.add_argument("--record-raw", action="store_true",
                           help="also record every accepted sample batch (about 9 MB on disk per hour of E4 data)")
    r.add_argument("--retention-days", type=positive_number(float), metavar="DAYS",
                   help="delete recorded rows older than this many days (default: keep everything)")
    r.add_argument("--aligned-ticks", action="store_true",
                   help="tick every wearer at whole multiples of the tick interval, as anxmon analyze does "
                        "(default: each wearer has its own phase, which spreads the work over the interval)")
    config_options(r)
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="benchmarks (ratios against a baseline measured in the same run)")
    b.add_argument("what", choices=["core", "analyze", "live"],
                   help="core: the streaming core vs neurokit2; analyze: analyze speed; live: simulated "
                        "wristbands in real time through nats-server and the service, ramped until p99 "
                        "latency > 250 ms")
    b.add_argument("--json", action="store_true", help="print one JSON line")
    b.add_argument("--max-wearers", type=positive_number(int), default=None, metavar="N",
                   help="live: the last step of the ramp 50, 100, 200, ... (default: 3200)")
    b.add_argument("--seconds", type=positive_number(float), default=None, metavar="S",
                   help="live: seconds measured per step (default: 20)")
    b.add_argument("--profile", action="store_true",
                   help="live: instead of the ramp, profile the service (in this process) at --max-wearers "
                        "wearers (default: 200)")
    b.add_argument("--aligned-ticks", action="store_true",
                   help="live: run the service with --aligned-ticks (every wearer ticks in the same second)")
    b.set_defaults(func=cmd_bench)

    e = sub.add_parser("eval", help="evaluate the score on the labelled Stress-Predict subjects")
    e.add_argument("subjects", nargs="*", default=["S02", "S05"],
                   help="Stress-Predict subjects in ../shared/data/stress-predict, or session folders with a "
                        "labels.csv (default: S02 S05)")
    e.add_argument("--json", action="store_true", help="one JSON line with every number instead of the tables")
    config_options(e)
    e.set_defaults(func=cmd_eval)

    rp = sub.add_parser("report", help="one self-contained HTML page: timeline, days, before/after markers")
    rp.add_argument("path", help="an analyze output folder, or a recording (analysed first)")
    rp.add_argument("--out", required=True, metavar="FILE.html", help="the page to write")
    rp.add_argument("--markers", metavar="CSV", help=f"event markers to add: {MARKERS_CSV}")
    before = rp.add_mutually_exclusive_group()
    before.add_argument("--before-h", type=_window(3600.0), help="window before each marker, hours")
    before.add_argument("--before-s", type=_window(1.0), help="window before each marker, seconds")
    after = rp.add_mutually_exclusive_group()
    after.add_argument("--after-h", type=_window(3600.0), help="window after each marker, hours")
    after.add_argument("--after-s", type=_window(1.0), help="window after each marker, seconds (one side given alone is "
                       "used for both; default: 24 h, shortened to half the median time between markers)")
    rp.add_argument("--bootstrap", type=_bootstrap, default=2000, metavar="N",
                    help=f"bootstrap resamples, 0 to {MAX_BOOTSTRAP:,} (default: 2000)")
    rp.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    rp.add_argument("--threshold", type=float, help="score threshold of 'time stressed' (default: the analysis's)")
    rp.add_argument("--tz", type=_timezone, metavar="ZONE",
                    help="time zone of the days and clock times (default: the analysis's, policy.timezone; for a "
                         "folder without one, this computer's); a recording is analysed with it as the wearer's "
                         "zone (as analyze --tz)")
    rp.add_argument("--wearer", help="wearer id, when a recording is analysed first (default: the recording's, "
                                     "else its file or folder name)")
    config_options(rp)
    rp.set_defaults(func=cmd_report)

    add_research_parsers(sub)

    from monitor.app import add_app_parser

    add_app_parser(sub)

    from firmware_bridge.simulator import add_simulate_parser

    add_simulate_parser(sub)
    from firmware_bridge.cli import add_bridge_parser

    add_bridge_parser(sub)
    _verbose_after_the_command(sub)
    return p


def _verbose_after_the_command(subparsers) -> None:
    """Accept ``-v`` / ``-vv`` after a command too (``anxmon run -v``), not only before it (it
    was "unrecognized arguments: -v"): every command's parser, down to ``bridge lines``, gets
    the option; given on both sides, the one after the command counts."""
    for parser in set(subparsers.choices.values()):
        parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                            help="more logging (-vv: DEBUG)")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _verbose_after_the_command(action)


def main(argv: list[str] | None = None) -> int:
    """Run ``anxmon``; returns the exit status (SIGINT/SIGTERM: see ``monitor.stopping``)."""
    try:
        with SigtermInterrupts():  # from the first moment: a command that catches SIGTERM itself takes over
            args = build_parser().parse_args(argv)  # (a Ctrl-C while the parser imports: no traceback either)
            args.argv = ["anxmon", *(sys.argv[1:] if argv is None else argv)]  # the command line (provenance)
            level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
            logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            return args.func(args) or 0
    except AnxmonError as exc:
        print(f"anxmon: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be read or written: say which and why, no traceback
        log.debug("%s", exc, exc_info=True)
        print(f"anxmon: error: {os_error_text(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM where no command catches it
        print(f"anxmon: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
