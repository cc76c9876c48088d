"""The ``anxmon`` command.

Example
-------
    anxmon analyze ../shared/data/stress-predict/S02 --out out/s02
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
    result = run_analyze(args.path, args.out, _config(args), args.labels, wearer_id=args.wearer)
    s = result.summary
    print(f"analysed {s['duration_s'] / 60:.1f} min of {', '.join(s['signals'])} "
          f"({s['speed_x_realtime']:.0f}x real time): {s['ticks']} ticks, "
          f"{s['checkins_sent']} check-ins sent, {s['trigger_decisions'] - s['checkins_sent']} suppressed")
    if "labels" in s:
        m = s["labels"]
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.2f}"
        print(f"against labels: ROC AUC {auc}, {m['stress_periods_detected']}/{m['stress_periods']} stress "
              f"periods with a trigger, {m['false_checkins']} check-ins in {m['rest_hours']:.2f} h of rest")
    print(f"wrote {args.out}/indicators.csv, checkins.jsonl, summary.json, report.html")
    return 0


def cmd_demo(args) -> int:
    from monitor.demo import run_core_demo

    return run_core_demo(args.recording, args.minutes)


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
    a.add_argument("path", help="an Empatica E4 export (folder or zip)")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--labels", help="CSV unix_s,stress (default: labels.csv in the session folder)")
    a.add_argument("--wearer", default="wearer", help="wearer id used in prompt ids")
    config_options(a)
    a.set_defaults(func=cmd_analyze)

    d = sub.add_parser("demo", help="a short run of the monitor on a real recording")
    d.add_argument("--recording", help="E4 export to play (default: ../shared/data/stress-predict/S02)")
    d.add_argument("--minutes", type=float, default=20.0, help="how much of it to play")
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="benchmarks (ratios against a baseline measured in the same run)")
    b.add_argument("what", choices=["core", "analyze"])
    b.add_argument("--json", action="store_true", help="print one JSON line")
    b.set_defaults(func=cmd_bench)

    e = sub.add_parser("eval", help="evaluate the score on the labelled Stress-Predict subjects")
    e.add_argument("subjects", nargs="*", default=["S02", "S05"])
    e.add_argument("--json", action="store_true")
    config_options(e)
    e.set_defaults(func=cmd_eval)

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
