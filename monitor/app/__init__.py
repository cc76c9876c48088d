"""The web check-in app (``anxmon app``): check-ins reach the wearer's phone and are answered in
a few taps; plus push notifications (``monitor.push``) and Home Assistant discovery
(``monitor.homeassistant``). See ``docs/app.md``.

In Python (``anxmon demo`` does this next to its service)::

    from monitor.app import start_app
    app = start_app(broker.url, data_dir, accounts=broker.users)   # port 0: any free port
    print(app.url); ...; app.stop()
"""

from __future__ import annotations

import dataclasses
import getpass
import sys
from pathlib import Path

from monitor.app.accounts import Accounts, hash_password
from monitor.app.server import AppError, AppOptions, CheckinApp
from monitor.broker import DEFAULT_DATA_DIR
from monitor.errors import ConfigError
from monitor.stopping import StopSignals
from monitor.toml_tables import check_table, read_table, read_toml

__all__ = ["AppError", "AppOptions", "CheckinApp", "load_app_config", "start_app", "run_app"]

APP_DIR = "app"  # the app's own files inside the service's data directory


def load_app_config(path: str | Path | None, app_options: dict | None = None):
    """Read ``configs/app.toml`` (None: defaults only): (``AppOptions``, ``PushConfig`` or None,
    ``HomeAssistantConfig``). ``app_options`` (the command line's ``--port`` etc.) win over ``[app]``."""
    from monitor.homeassistant import HomeAssistantConfig
    from monitor.push import PushConfig

    data: dict = read_toml(path) if path is not None else {}
    file = path if path is not None else "defaults"
    check_table(data, ("app", "push", "homeassistant"), file, what="section")
    options = dataclasses.replace(read_table(AppOptions, data.get("app", {}), file, "app"), **(app_options or {}))
    push = read_table(PushConfig, data["push"], file, "push") if "push" in data else None
    ha = read_table(HomeAssistantConfig, data.get("homeassistant", {}), file, "homeassistant")
    return options, push, ha


def start_app(broker: str, data_dir: str | Path, accounts: Accounts | dict | None = None, *,
              options: AppOptions | None = None, push=None, homeassistant=None,
              recording: str | Path | None | bool = True) -> CheckinApp:
    """Start the app in this process next to a service (or against its broker).

    Parameters
    ----------
    broker : str
        ``mqtt://monitor:password@host:port`` (the service's user).
    data_dir : str or Path
        The service's data directory: accounts default to its ``broker-credentials.json``,
        the history reads its ``recordings.sqlite``; the app keeps its own files in ``app/``.
    accounts : Accounts or dict, optional
        Who may sign in (wearer -> password); the ``monitor`` user is never a wearer.
    options : AppOptions, optional
        Default: loopback, any free port (``AppOptions(port=0)``).
    push, homeassistant : PushConfig, HomeAssistantConfig, optional
    recording : path, True or None
        True: ``data_dir/recordings.sqlite``; None/False: no recording (in-memory history).
    """
    from monitor.recorder import RECORDING_FILE
    from monitor.broker import CREDENTIALS_FILE

    data_dir = Path(data_dir)
    if accounts is None:
        accounts = Accounts.from_file(data_dir / CREDENTIALS_FILE)
    if recording is True:
        recording = data_dir / RECORDING_FILE
    elif recording is False:
        recording = None
    app = CheckinApp(broker, accounts, data_dir / APP_DIR, options or AppOptions(port=0), recording=recording,
                     push=push, homeassistant=homeassistant)
    return app.start()


def add_app_parser(sub) -> None:
    """Register ``anxmon app`` on the CLI's subparsers."""
    a = sub.add_parser("app", help="the web check-in app for wearers' phones (plus push and Home Assistant)")
    a.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="the service's data directory: broker credentials, recording (default: ./anxmon-data)")
    from monitor.cli import broker_option

    broker_option(a, "the URL in DATA/broker-credentials.json")
    a.add_argument("--accounts", metavar="FILE",
                   help='who may sign in: {"users": {"alice": "password or scrypt hash"}} '
                        "(default: the broker's users in DATA/broker-credentials.json)")
    a.add_argument("--config", metavar="FILE", help="app, push and Home Assistant settings (see configs/app.toml)")
    a.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 for the network)")
    a.add_argument("--port", type=int, help="port (default 8080)")
    a.add_argument("--public-url", help="the address wearers open, for links in notifications (default http://HOST:PORT)")
    a.add_argument("--instance", help="the monitor service's instance id (default main)")
    a.add_argument("--certfile", help="serve https with this certificate (PEM)")
    a.add_argument("--keyfile", help="... and this private key (PEM)")
    a.add_argument("--hash-password", action="store_true",
                   help="print an scrypt hash of a password (asked for) for an accounts file, and exit")
    a.set_defaults(func=run_app)


def run_app(args) -> int:
    """``anxmon app``: serve until SIGTERM/SIGINT (exit status: ``monitor.stopping``)."""
    import json

    from monitor.recorder import RECORDING_FILE
    from monitor.broker import CREDENTIALS_FILE

    if args.hash_password:
        try:
            password = getpass.getpass("password: ")
        except EOFError:  # no terminal and nothing on standard input
            print("anxmon: error: --hash-password reads the password from the terminal or standard input, "
                  "and got none", file=sys.stderr)
            return 2
        if not password:
            print("anxmon: error: an empty password", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    given = {key: getattr(args, key) for key in ("host", "port", "public_url", "instance", "certfile", "keyfile")
             if getattr(args, key) is not None}
    options, push, ha = load_app_config(args.config, given)
    data_dir = Path(args.data_dir)
    creds = data_dir / CREDENTIALS_FILE
    broker = args.broker
    if broker is None:
        try:
            broker = json.loads(creds.read_text())["url"]
        except FileNotFoundError:
            raise ConfigError(f"no --broker and no {creds}: start the service first (anxmon run "
                              f"--data-dir {data_dir}) or give --broker") from None
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{creds} is not a credentials file anxmon wrote ({exc})") from None
    accounts = Accounts.from_file(args.accounts or creds)
    if not accounts.wearers:
        print("anxmon: no wearer accounts yet: add \"name\": \"password\" under users in "
              f"{args.accounts or creds} and restart", flush=True)
    recording = data_dir / RECORDING_FILE
    with StopSignals() as signals:
        app = CheckinApp(broker, accounts, data_dir / APP_DIR, options, recording=recording, push=push,
                         homeassistant=ha).start()
        try:
            extras = []
            if app.push is not None:
                extras.append(f"push for {len(push.wearers)} wearer(s)")
            if app.homeassistant is not None:
                extras.append("Home Assistant discovery")
            print(f"anxmon: check-in app on {app.url} for {len(accounts.wearers)} wearer(s)"
                  + (f" ({', '.join(extras)})" if extras else "") + "; SIGTERM or Ctrl-C stops it", flush=True)
            while not signals.event.wait(0.5):
                pass
        finally:
            app.stop()
    print("anxmon: check-in app stopped", flush=True)
    return signals.status()
