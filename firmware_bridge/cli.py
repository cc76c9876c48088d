"""Command line of the bridge: ``anxmon bridge ble|emotibit|lines ...``.

``add_bridge_parser(subparsers)`` registers the ``bridge`` command on an argparse subparsers
object and sets ``func`` on the parsed namespace; the caller runs ``args.func(args)`` (an
exit code). ``python -m firmware_bridge ...`` runs the same commands without ``anxmon``::

    anxmon bridge ble --scan
    anxmon bridge ble --address AA:BB:CC:DD:EE:FF --wearer alice [--model polar-h10]
    anxmon bridge emotibit --wearer alice [--ip 192.168.1.42]
    anxmon bridge lines --wearer alice [--serial /dev/ttyUSB0] [--model diy-lines]

The broker comes from ``--broker``, else from ``--data-dir`` (the embedded broker of ``anxmon run
--data-dir DIR``, as ``simulate``, ``replay`` and ``annotate`` find it), else from
``$ANXMON_BROKER_URL`` (``mqtt://user:password@host:port``; the environment keeps the password out
of the process list), else ``mqtt://localhost:1883``. SIGINT/SIGTERM and the end of
the input (``lines`` on stdin) stop the same way: pending samples go into the outbox, the
broker gets up to ``--drain-s`` seconds to acknowledge them, ``offline`` is published, and
whatever is unacknowledged stays in the outbox for the next start (the last message says how
many batches).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
import threading
from pathlib import Path

from monitor.errors import AnxmonError
from monitor.stopping import StopSignals
from monitor.wire import check_id

log = logging.getLogger("firmware_bridge")

DEFAULT_BROKER = "mqtt://localhost:1883"


def broker_user_warning(username: str | None, wearer: str) -> str | None:
    """The warning for a broker user that may not publish ``wearer``'s topics, else None.

    MQTT 3.1.1 cannot tell a publisher that its message was refused: the broker acknowledges it
    and drops it. With anxmon's broker configuration a wearer's user may only publish its own
    topics (``monitor`` all of them). The bridge and ``anxmon annotate`` log this warning.

    >>> broker_user_warning("alice", "alice") is None and broker_user_warning("monitor", "bob") is None
    True
    >>> broker_user_warning("alice", "bob")[:45]
    "the broker user 'alice' is not wearer 'bob': "
    """
    if username in (None, wearer, "monitor"):
        return None
    return (f"the broker user {username!r} is not wearer {wearer!r}: with anxmon's broker configuration a "
            "wearer's user may only publish its own topics, and the broker drops the rest without saying so")


def default_outbox_path(wearer: str, device: str) -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "anxmon" / f"outbox-{wearer}-{device}.sqlite"


def positive_number(kind: type, inclusive: bool = False):
    """An argparse ``type``: a finite number of ``kind`` above 0 (or 0 too when ``inclusive``);
    the bridge's and ``anxmon run``'s numeric options.

    >>> positive_number(float)("2.5"), positive_number(int, inclusive=True)("0")
    (2.5, 0)
    >>> positive_number(float)("inf")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a finite number > 0, got inf
    """

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not (math.isfinite(value) and (value >= 0 if inclusive else value > 0)):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if inclusive else '>'} 0, got {text}")
        return value

    return parse


def _common(p: argparse.ArgumentParser, model: str) -> None:
    p.add_argument("--wearer", metavar="ID", help="wearer id ([a-z0-9_-], up to 64 characters)")
    p.add_argument("--model", default=model, help=f"device definition in --devices-dir (default {model})")
    p.add_argument("--device-id", metavar="ID", help="device id in the topics (default: the model name)")
    p.add_argument("--broker", metavar="URL", help="mqtt://user:password@host:port (default: the embedded broker of `anxmon run` in "
                                     f"--data-dir if given, else $ANXMON_BROKER_URL, else {DEFAULT_BROKER})")
    p.add_argument("--data-dir", metavar="DIR", help="the data directory of a running `anxmon run`: use its embedded "
                                                     "broker (user monitor, from its broker-credentials.json)")
    p.add_argument("--outbox", type=Path, metavar="PATH", help="outbox file (default ~/.local/share/anxmon/outbox-WEARER-DEVICE.sqlite)")
    p.add_argument("--outbox-max-batches", type=positive_number(int), default=250_000, metavar="N", help="outbox capacity in batches (default %(default)s)")
    p.add_argument("--batch-s", type=positive_number(float), default=1.0, metavar="S", help="batch length in seconds (default %(default)s)")
    p.add_argument("--drain-s", type=positive_number(float, inclusive=True), default=5.0, metavar="S",
                   help="when stopping, seconds to wait for the broker to acknowledge the outbox (default %(default)s)")
    p.add_argument("--devices-dir", type=Path, metavar="DIR", help="folder of device definitions (default: $ANXMON_DEVICES_DIR, "
                                                                       "else anxmon's own configs/devices)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="default INFO (DEBUG with anxmon -vv)")


def add_bridge_parser(subparsers, prog: str | None = None) -> argparse.ArgumentParser:
    """Register ``bridge`` and its transports on ``subparsers`` (from ``add_subparsers()``);
    ``prog``: the command its usage lines name (default: the parent's ``... bridge``)."""
    bridge = subparsers.add_parser("bridge", help="read a wearable and publish its samples to MQTT",
                                   **({"prog": prog} if prog else {}))
    kinds = bridge.add_subparsers(dest="transport", required=True, metavar="{ble,emotibit,lines}")

    ble = kinds.add_parser("ble", help="a Bluetooth LE heart rate strap or watch (needs anxmon[ble])")
    ble.add_argument("--scan", action="store_true", help="list nearby heart rate devices and exit")
    ble.add_argument("--scan-timeout", type=positive_number(float), default=8.0, metavar="S", help="seconds to scan (default %(default)s)")
    ble.add_argument("--address", metavar="ADDR", help="device address from --scan (MAC, or a UUID on macOS)")
    _common(ble, "generic-ble-hrs")

    emo = kinds.add_parser("emotibit", help="an EmotiBit on the same WiFi network")
    emo.add_argument("--ip", metavar="IP", help="EmotiBit address (default: broadcast to find it)")
    emo.add_argument("--advertising-port", type=int, default=3131, help=argparse.SUPPRESS)
    _common(emo, "emotibit")

    lines = kinds.add_parser("lines", help="a DIY device speaking the line protocol on stdin or a serial port")
    lines.add_argument("--serial", metavar="PORT", help="serial port (needs pyserial); default: read stdin")
    lines.add_argument("--baud", type=positive_number(int), default=115200, help="serial baud rate (default %(default)s)")
    _common(lines, "diy-lines")

    bridge.set_defaults(func=run)
    return bridge


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``bridge`` command; returns the exit code. A usage or configuration error
    (also a missing optional extra, a refused login) is an ``AnxmonError`` for the caller to
    print as every anxmon command does: ``anxmon: error: ...``, exit status 2."""
    level = args.log_level or ("DEBUG" if getattr(args, "verbose", 0) >= 2 else "INFO")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # (a no-op under anxmon)
    logging.getLogger().setLevel(level)  # under ``anxmon`` its logging is set up already, at WARNING
    try:
        return _run(args)
    except ImportError as exc:  # bleak or pyserial missing: the message says what to install
        raise AnxmonError(str(exc)) from exc


def _run(args: argparse.Namespace) -> int:
    from firmware_bridge.bridge import Bridge
    from firmware_bridge.devices import list_devices, load_device
    from firmware_bridge.outbox import Outbox
    from firmware_bridge.publisher import Publisher
    from monitor.broker import embedded_broker_hint
    from monitor.mqtt_client import parse_broker_url

    if args.transport == "ble" and args.scan:
        from firmware_bridge.ble import scan

        for r in asyncio.run(scan(list_devices(args.devices_dir), args.scan_timeout)):
            print(f"{r.address}  {r.rssi if r.rssi is not None else '?':>4} dBm  {r.model:<16} {r.name}")
        return 0
    if not args.wearer:
        raise AnxmonError("--wearer is required")
    check_id("wearer", args.wearer)  # before anything is created under its name (the outbox)
    if args.transport == "ble" and not args.address:
        raise AnxmonError("--address is required (find it with: anxmon bridge ble --scan)")
    definition = load_device(args.model, args.devices_dir)
    expected = {"ble": "ble", "emotibit": "emotibit", "lines": "lines"}[args.transport]
    if definition.transport != expected:
        raise AnxmonError(f"model {definition.model} uses transport {definition.transport!r}, not {expected!r}")
    device_id = check_id("device", args.device_id or definition.model)
    broker = parse_broker_url(broker_url_of(args))
    if warning := broker_user_warning(broker.username, args.wearer):
        log.warning("%s", warning)  # (the outbox would let the dropped batches go)
    # caught from before the outbox is opened until it is closed: a signal during start-up stops
    # the same way, and a second Ctrl-C waits out --drain-s, no traceback
    with StopSignals() as signals:
        stop = signals.event
        if args.transport == "lines":  # before connecting: a missing pyserial is a plain error
            from firmware_bridge.transports import fd_lines, run_lines, serial_lines

            source = serial_lines(args.serial, args.baud, stop) if args.serial else fd_lines(sys.stdin.fileno())
        outbox = Outbox(args.outbox or default_outbox_path(args.wearer, device_id), max_batches=args.outbox_max_batches)
        hint = embedded_broker_hint(args.broker, args.data_dir) if args.data_dir else ""  # (no default data dir)
        publisher = Publisher(broker, args.wearer, device_id, outbox, unreachable_hint=hint).start()
        bridge = Bridge(definition, args.wearer, device_id, outbox=outbox, publisher=publisher, batch_s=args.batch_s)
        log.info("bridge %s/%s (%s) -> %s, outbox %s", args.wearer, device_id, definition.model, broker, outbox.path)

        try:
            if args.transport == "lines":
                run_lines(bridge, source, stop)
                if not stop.is_set():
                    log.info("end of input")
            elif args.transport == "emotibit":
                from firmware_bridge.transports import EmotiBitHost, run_emotibit

                run_emotibit(bridge, EmotiBitHost(args.ip, advertising_port=args.advertising_port), stop)
            else:
                asyncio.run(_run_ble(bridge, args.address, stop))
        finally:
            log.info("stopping: up to %g s for the broker to acknowledge the outbox", args.drain_s)
            bridge.close(args.drain_s)
            left = len(outbox)
            if left:
                log.warning("bridge stopped; %d batch(es) not acknowledged by the broker stay in %s and are sent at the next start",
                            left, outbox.path)
            elif publisher.stats.published:
                log.info("bridge stopped; the broker acknowledged every batch (%d)", publisher.stats.published)
            else:  # (never "acknowledged" when the broker was never reached)
                log.info("bridge stopped; there was nothing to send")
    if publisher.refused is not None:  # a configuration error, for scripts too
        raise AnxmonError(f"the broker refused the bridge's connection ({publisher.refused}): "
                          "check the user and password in --broker")
    return signals.status()


def broker_url_of(args: argparse.Namespace) -> str:
    """``--broker``, else the embedded broker in ``--data-dir`` if given, else
    ``$ANXMON_BROKER_URL``, else ``DEFAULT_BROKER`` (as ``monitor.broker.resolve_broker_url``,
    with a bridge's usual broker last: bridges mostly run on another machine)."""
    from monitor.broker import resolve_broker_url

    return resolve_broker_url(args.broker, args.data_dir, fallback=DEFAULT_BROKER)


async def _run_ble(bridge, address: str, stop: threading.Event) -> None:
    from firmware_bridge.ble import run_ble

    astop = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(astop.set)), daemon=True).start()
    await run_ble(bridge, address, stop=astop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bridge_parser(sub, prog=parser.prog)  # (the hidden "bridge" below is not what users type)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["bridge"]:
        argv = ["bridge", *argv]
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AnxmonError as exc:  # as ``anxmon`` prints it, under this command's name
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
