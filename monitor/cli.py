"""The ``anxmon`` command.

Example
-------
    anxmon analyze ../shared/data/stress-predict/S02 --out out/s02
    anxmon report out/s02 --out s02.html --before-s 120 --after-s 120
    anxmon run --data-dir /var/lib/anxmon
    anxmon bench core --json
    anxmon demo
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from monitor import __version__
from monitor.errors import AnxmonError

log = logging.getLogger("anxmon")

NOT_MEDICAL = "anxmon is not a medical device: it never diagnoses and never suggests medication."


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the project (or the current directory), when present."""
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def _config(args):
    from monitor.config import load_config

    return load_config(getattr(args, "config", None), getattr(args, "set", None) or [])


def cmd_analyze(args) -> int:
    from monitor.analyze import run_analyze

    # without --labels, a labels.csv in the session folder is picked up by the reader
    result, _ = run_analyze(args.path, args.out, _config(args), args.labels, args.wearer, args.markers)
    s = result.summary
    print(f"analysed {s['duration_s'] / 60:.1f} min of {', '.join(s['signals'])} "
          f"({s['speed_x_realtime']:.0f}x real time): {s['ticks']} ticks, "
          f"{s['checkins_sent']} check-ins sent, {s['trigger_decisions'] - s['checkins_sent']} suppressed")
    if "labels" in s:
        m = s["labels"]
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.2f}"
        print(f"against labels: ROC AUC {auc}, {m['stress_periods_detected']}/{m['stress_periods']} stress "
              f"periods with a trigger, {m['false_checkins']} check-ins in {m['rest_hours']:.2f} h of rest")
    print(f"wrote {args.out}/indicators.csv, checkins.jsonl, summary.json, markers.csv, report.html")
    return 0


def _timezone(name: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r}: expected an IANA name such as Europe/Berlin") from None


def cmd_report(args) -> int:
    from monitor.report import run_report

    hours = lambda x: None if x is None else x * 3600.0  # noqa: E731
    before = args.before_s if args.before_s is not None else hours(args.before_h)
    after = args.after_s if args.after_s is not None else hours(args.after_h)
    done = run_report(args.path, args.out, args.markers, before, after, args.bootstrap, args.seed,
                      args.threshold, args.tz, _config(args), args.wearer)
    rows = {c.kind: c.n for c in done["comparisons"] if c.measure == "mean_score"}
    windows = f"windows {done['before_s']:g} s before, {done['after_s']:g} s after; " if rows else ""
    print(f"wrote {args.out}: {len(done['days'])} day(s); {windows}"
          + (", ".join(f"{k}: {n} window pair(s)" for k, n in rows.items()) or "no markers"))
    return 0


def cmd_demo(args) -> int:
    from monitor.demo import run_core_demo

    return run_core_demo(args.recording, args.minutes)


def cmd_run(args) -> int:
    from monitor.service import run_service

    return run_service(args)


def cmd_bench(args) -> int:
    from monitor.bench import run_bench

    return run_bench(args.what, as_json=args.json)


def cmd_eval(args) -> int:
    from monitor.evaluate import run_eval

    return run_eval(args.subjects, _config(args), as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anxmon", description=f"Wearable anxiety monitor. {NOT_MEDICAL}")
    p.add_argument("--version", action="version", version=f"anxmon {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: DEBUG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_options(sp):
        sp.add_argument("--config", help="TOML config file (default: built-in defaults; see configs/default.toml)")
        sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override one config value for this run, e.g. --set policy.cooldown_s=600")

    a = sub.add_parser("analyze", help="run a recorded session through the monitor")
    a.add_argument("path", help="a recording: E4 export (folder or zip), EmotiBit parsed files, Polar H10 CSV, "
                                "Garmin export, or an anxmon .jsonl recording (the format is detected)")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--labels", help="CSV unix_s,stress (default: labels.csv in the session folder)")
    a.add_argument("--markers", metavar="CSV", help="event markers to add: CSV unix_s[,label][,kind] (written to markers.csv)")
    a.add_argument("--wearer", default="wearer", help="wearer id used in prompt ids")
    config_options(a)
    a.set_defaults(func=cmd_analyze)

    d = sub.add_parser("demo", help="a short run of the monitor on a real recording")
    d.add_argument("--recording", help="E4 export to play (default: ../shared/data/stress-predict/S02)")
    d.add_argument("--minutes", type=float, default=20.0, help="how much of it to play")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="the live service: sample batches in over MQTT, indicators and check-ins out")
    r.add_argument("--broker", metavar="URL",
                   help="mqtt://user:password@host:port (default: start an embedded nats-server in the data dir)")
    r.add_argument("--data-dir", default="anxmon-data",
                   help="checkpoints, embedded broker and its credentials (default: ./anxmon-data)")
    r.add_argument("--instance", default="main",
                   help="id of this service: MQTT client id anxmon-monitor-ID and its state topic (default: main)")
    r.add_argument("--checkpoint-s", type=float, default=30.0,
                   help="write each wearer's state at most this many seconds after it changed (default: 30)")
    r.add_argument("--stale-after-s", type=float, default=120.0,
                   help="no check-in from data this far behind the wall clock (default: 120)")
    r.add_argument("--indicator-interval-s", type=float, default=1.0,
                   help="at most one indicators message per wearer per this many seconds; 0: every tick (default: 1)")
    r.add_argument("--mqtt-version", choices=["3.1.1", "5"], default="3.1.1",
                   help="3.1.1: clean session off; 5: clean start off with a 7-day session expiry (default: 3.1.1)")
    config_options(r)
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="benchmarks (ratios against a baseline measured in the same run)")
    b.add_argument("what", choices=["core", "analyze"])
    b.add_argument("--json", action="store_true", help="print one JSON line")
    b.set_defaults(func=cmd_bench)

    e = sub.add_parser("eval", help="evaluate the score on the labelled Stress-Predict subjects")
    e.add_argument("subjects", nargs="*", default=["S02", "S05"])
    e.add_argument("--json", action="store_true")
    config_options(e)
    e.set_defaults(func=cmd_eval)

    rp = sub.add_parser("report", help="one self-contained HTML page: timeline, days, before/after markers")
    rp.add_argument("path", help="an analyze output folder, or a recording (analysed first)")
    rp.add_argument("--out", required=True, metavar="FILE.html", help="the page to write")
    rp.add_argument("--markers", metavar="CSV", help="event markers to add: CSV unix_s[,label][,kind]")
    before = rp.add_mutually_exclusive_group()
    before.add_argument("--before-h", type=float, help="window before each marker, hours")
    before.add_argument("--before-s", type=float, help="window before each marker, seconds")
    after = rp.add_mutually_exclusive_group()
    after.add_argument("--after-h", type=float, help="window after each marker, hours")
    after.add_argument("--after-s", type=float, help="window after each marker, seconds (one side given alone is "
                       "used for both; default: 24 h, shortened to half the median time between markers)")
    rp.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples (default: 2000)")
    rp.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    rp.add_argument("--threshold", type=float, help="score threshold of 'time stressed' (default: the analysis's)")
    rp.add_argument("--tz", type=_timezone, help="time zone of the daily summary (default: this computer's)")
    rp.add_argument("--wearer", default="wearer", help="wearer id, when a recording is analysed first")
    config_options(rp)
    rp.set_defaults(func=cmd_report)

    from firmware_bridge.simulator import add_simulate_parser

    add_simulate_parser(sub)
    try:
        from firmware_bridge.cli import add_bridge_parser
    except ImportError:  # the bridge is optional in a stripped install
        add_bridge_parser = None
    if add_bridge_parser is not None:
        add_bridge_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except AnxmonError as exc:
        print(f"anxmon: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anxmon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
