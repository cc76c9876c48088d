"""The web check-in app: an HTTP server (Python's ``http.server``) for the wearer's phone.

Why the standard library: the app has a dozen small JSON endpoints, one Server-Sent Events
stream per open page and a handful of static files, for the few wearers one anxmon serves.
``ThreadingHTTPServer`` does that with no dependency to install, audit or keep up to date (a
thread per open page is cheap at this size); TLS comes from ``ssl`` (``certfile``) or a reverse
proxy in front.

Security, in short (``docs/app.md`` has the details):

* a wearer signs in with their own account (``accounts.Accounts``); the session is a random
  256-bit token in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` behind https); the
  server keeps only its SHA-256, so a copy of the sessions file signs nobody in;
* every API path names the wearer (``/api/w/{wearer}/...``) and is refused (403) unless it is
  the session's own wearer; events are relayed only to that wearer's pages;
* every POST needs a JSON body, the session's CSRF token in ``X-CSRF-Token`` and, when the
  browser sends one, an ``Origin`` equal to the app's own;
* passwords, answers and health data are never logged; failed sign-ins are rate-limited per
  address and wearer name, and per address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from monitor.app.accounts import Accounts
from monitor.app.history import RecordingHistory
from monitor.app.icons import png_icon
from monitor.app.relay import Relay, RelayError
from monitor.app.words import answer_words, checkin_view, live_status
from monitor.core.policy import (
    QUIET_HOURS_EXPECTED,
    CheckinPolicy,
    ControlError,
    PolicyConfig,
    check_quiet_hours,
    check_timezone,
)
from monitor.errors import AnxmonError
from monitor.mqtt_client import private_client_id
from monitor.toml_tables import bad_value, is_integer, is_number
from monitor.wire import ID_PATTERN, MAX_CONTROL_DURATION_S, Control

log = logging.getLogger("anxmon.app")

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "anxmon_session"
MAX_BODY = 16 * 1024

DEFAULT_CRISIS_TEXT = (
    "anxmon is not a medical device and gives no medical advice. If you are in crisis or thinking "
    "about harming yourself, call your local emergency number now, or reach a crisis line in your "
    "country (findahelpline.com lists them)."
)

STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/sw.js": ("sw.js", "text/javascript; charset=utf-8"),
    "/manifest.webmanifest": ("manifest.webmanifest", "application/manifest+json"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
}

# failed sign-ins, counted over FAILURE_WINDOW_S: per address and wearer name (one wearer's
# typos lock out nobody else, also behind a reverse proxy where every wearer has its address),
# and per address over all names (against trying many names)
FAILURE_WINDOW_S = 600.0
MAX_FAILURES_PER_NAME = 10
MAX_FAILURES_PER_ADDRESS = 100

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "manifest-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class AppError(AnxmonError):
    """The app cannot start (a bad option, the port taken)."""


@dataclass(frozen=True)
class AppOptions:
    """How the app runs (``[app]`` of ``configs/app.toml``; ``anxmon app`` options win).

    Attributes
    ----------
    host, port : str, int
        Where the app listens. Default 127.0.0.1:8080 (0 = any free port).
    public_url : str, optional
        The address wearers open (links in push notifications point here); default
        ``http://host:port``. Use https for a phone on a network (and to install the app).
    instance : str
        The monitor service's instance id (its state topic; the app's MQTT client id).
    crisis_text : str
        Where to find help in a crisis: shown on every screen, also before signing in.
    history_days : int
        Days the history view reaches back (the wearer picks 1, 3 or this many). Default 7.
    session_days : float
        A sign-in lasts this long. Default 30.
    certfile, keyfile : str, optional
        Serve https with this certificate and key.
    quiet_hours : tuple of two "HH:MM", or None
        The quiet hours a wearer has before choosing their own (the monitor's policy default).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    instance: str = "main"
    crisis_text: str = DEFAULT_CRISIS_TEXT
    history_days: int = 7
    session_days: float = 30.0
    certfile: str | None = None
    keyfile: str | None = None
    quiet_hours: tuple[str, str] | None = ("22:00", "07:00")

    def __post_init__(self) -> None:
        if not isinstance(self.instance, str) or not ID_PATTERN.fullmatch(self.instance):
            raise bad_value("app", "instance", "an id (1-64 characters of a-z, 0-9, _ or -)", self.instance)
        if not is_integer(self.port) or not 0 <= self.port <= 65535:
            raise bad_value("app", "port", "an integer in 0..65535", self.port)
        if not isinstance(self.crisis_text, str) or not self.crisis_text.strip():
            raise bad_value("app", "crisis_text", "a non-empty text (where to find help in a crisis)", self.crisis_text)
        if not is_integer(self.history_days) or not 1 <= self.history_days <= 90:
            raise bad_value("app", "history_days", "an integer in 1..90", self.history_days)
        if not is_number(self.session_days) or self.session_days <= 0:
            raise bad_value("app", "session_days", "a number of days > 0", self.session_days)
        if self.public_url is not None and not re.match(r"https?://[^/]+", str(self.public_url)):
            raise bad_value("app", "public_url", "an address starting with http:// or https://", self.public_url)
        try:
            object.__setattr__(self, "quiet_hours", check_quiet_hours(self.quiet_hours))
        except ControlError:
            raise bad_value("app", "quiet_hours", QUIET_HOURS_EXPECTED, self.quiet_hours) from None


@dataclass
class Session:
    wearer: str
    csrf: str
    expires_s: float
    account: str | None = None  # Accounts.mark of the password it signed in with


class JsonStore:
    """A small JSON file (mode 0600) written atomically: sessions and wearer settings."""

    def __init__(self, path: Path | None):
        self.path = path
        self.lock = threading.Lock()
        self.data: dict = {}
        if path is not None and path.is_file():
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                log.warning("%s is damaged; starting it afresh", path)

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)


class CheckinApp:
    """The web check-in app: HTTP server + MQTT relay (+ push notifications, Home Assistant).

    Parameters
    ----------
    broker : str
        ``mqtt://monitor:password@host:port`` (a user that reads every wearer).
    accounts : Accounts or dict
        Who may sign in.
    data_dir : str or Path, optional
        Where sessions and wearer settings are kept (``app-sessions.json``,
        ``app-settings.json``, ``push.sqlite``); None keeps them in memory.
    options : AppOptions, optional
    recording : str or Path, optional
        The service's ``recordings.sqlite`` (history, the open check-in after a restart).
    push : monitor.push.PushConfig, optional
        Push notifications of check-ins (needs apprise).
    homeassistant : monitor.homeassistant.HomeAssistantConfig, optional
        Home Assistant discovery of every account's sensors.
    clock : callable
        Wall clock (s).

    Example
    -------
    >>> app = CheckinApp(broker.url, {"alice": "pw"}, options=AppOptions(port=0)).start()  # doctest: +SKIP
    >>> app.url                                                                             # doctest: +SKIP
    'http://127.0.0.1:40321'
    """

    def __init__(self, broker: str, accounts: Accounts | dict, data_dir: str | Path | None = None,
                 options: AppOptions | None = None, recording: str | Path | None = None, push=None,
                 homeassistant=None, clock: Callable[[], float] = time.time):
        self.options = options or AppOptions()
        self.accounts = accounts if isinstance(accounts, Accounts) else Accounts(accounts)
        self.data_dir = None if data_dir is None else Path(data_dir)
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.data_dir, 0o700)
        self.clock = clock
        self.relay = Relay(broker, client_id=private_client_id(f"anxmon-app-{self.options.instance}"),
                           history_s=self.options.history_days * 86400.0)
        self.relay.on_control.append(self.follow_control)
        self.history_source = RecordingHistory(recording) if recording is not None else None
        self._sessions = JsonStore(self._file("app-sessions.json"))
        self._settings = JsonStore(self._file("app-settings.json"))
        self._failures: dict[tuple[str, str], list[float]] = {}  # (address, wearer name) -> times (s)
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.push = None
        if push is not None and push.wearers:
            from monitor.push import PushNotifier

            self.push = PushNotifier(push, link_for=self.link_for, log_path=self._file("push.sqlite"), clock=clock,
                                     answered=self.relay.is_answered)
            self.relay.on_checkin.append(self.push.submit)
        self.homeassistant = None
        if homeassistant is not None and homeassistant.enabled:
            self._setup_homeassistant(homeassistant)

    # -- lifecycle ---------------------------------------------------------------------------
    def _file(self, name: str) -> Path | None:
        return None if self.data_dir is None else self.data_dir / name

    def start(self, connect_timeout_s: float = 10.0) -> "CheckinApp":
        """Listen, connect the relay (waits up to ``connect_timeout_s``) and start the workers."""
        try:
            self._httpd = ThreadingHTTPServer((self.options.host, self.options.port), _Handler)
        except OSError as exc:
            raise AppError(f"the app cannot listen on {self.options.host}:{self.options.port}: {exc.strerror}") from None
        self._httpd.daemon_threads = True
        self._httpd.app = self  # type: ignore[attr-defined]
        if self.options.certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(self.options.certfile, self.options.keyfile)
            except (OSError, ssl.SSLError) as exc:
                self._httpd.server_close()
                files = " and ".join(f for f in (self.options.certfile, self.options.keyfile) if f)
                raise AppError(f"cannot load the TLS certificate {files}: {exc.strerror or exc} "
                               "(expected PEM files: a certificate chain and its private key)") from None
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        if self.push is not None:
            self.push.start()
        self.relay.start()
        if not self.relay.wait_connected(connect_timeout_s):
            log.warning("the app could not reach the broker %s yet; retrying in the background", self.relay.address)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="anxmon-app-http", daemon=True)
        self._thread.start()
        log.info("check-in app on %s", self.url)
        if self.push is not None:
            no_account = sorted(set(self.push.config.wearers) - set(self.accounts.wearers))
            if no_account:  # (ids only: the URLs hold secrets)
                log.warning("push notifications are set for %s without an app account: the link in their "
                            "notifications leads to a sign-in they cannot pass; add them to the accounts (--accounts, "
                            "or users in broker-credentials.json)",
                            ", ".join(no_account))
        if self.push is not None and _loopback(urlsplit(self.public_url).hostname or ""):
            log.warning("push notifications link to %s, which the wearers' phones cannot open: give --public-url "
                        "(or public_url in [app]), the address wearers open", self.public_url)
        if not self.options.certfile and not self.public_url.startswith("https://") and not _loopback(self.options.host):
            log.warning("the app serves plain http on %s: wearers' passwords, check-ins and answers cross the network "
                        "unencrypted; give --certfile and --keyfile, or a TLS proxy in front and --public-url https://...",
                        self.options.host)
        return self

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self.options.port

    @property
    def url(self) -> str:
        """Where the app listens (its own address, not necessarily ``public_url``)."""
        scheme = "https" if self.options.certfile else "http"
        host = self.options.host if self.options.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}"

    @property
    def public_url(self) -> str:
        return (self.options.public_url or self.url).rstrip("/")

    def link_for(self, wearer: str, prompt_id: str) -> str:
        """The app's link of a check-in (in push notifications)."""
        return f"{self.public_url}/#/checkin/{prompt_id}"

    def stop(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self.relay.stop()
        if self.push is not None:
            self.push.stop()
        if self.history_source is not None:
            self.history_source.close()

    def __enter__(self) -> "CheckinApp":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- Home Assistant ------------------------------------------------------------------------
    def _setup_homeassistant(self, config) -> None:
        from monitor.homeassistant import HomeAssistantDiscovery

        ha = HomeAssistantDiscovery(self.relay.publish, self.options.instance, config, self.public_url)
        self.homeassistant = ha
        self.relay.extra_subscriptions.append(ha.subscription)
        # discovery topic -> the anxmon config retained there (not other integrations' configs, of
        # which the broker resends every one at each reconnect)
        self._ha_retained: dict[str, bytes] = {}

        def seen(topic: str, payload: bytes, retain: bool) -> None:
            if not payload:  # removed (by sync, or by hand)
                self._ha_retained.pop(topic, None)
            elif retain and ha.wearer_of(payload) is not None:
                self._ha_retained[topic] = payload

        self.relay.on_other = seen

        def sync() -> None:  # once the retained configs of this connection are in (ha.sync only queues)
            removed = ha.sync(self.accounts.wearers, list(self._ha_retained.items()))
            if removed:
                log.info("Home Assistant: removed the sensors of deleted wearer(s) %s", ", ".join(removed))

        self.relay.on_retained.append(sync)

    # -- sessions --------------------------------------------------------------------------
    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def sign_in(self, wearer: str, password: str, client: str) -> tuple[str, Session] | None:
        """A new session for ``wearer`` when the password is right (None otherwise).

        Refused (429) after ``MAX_FAILURES_PER_NAME`` failures for this name from this address
        ``client``, or ``MAX_FAILURES_PER_ADDRESS`` for any names, within ``FAILURE_WINDOW_S``.
        """
        now = self.clock()
        # the name is the caller's text: only a valid wearer id gets a count of its own
        name = wearer if isinstance(wearer, str) and ID_PATTERN.fullmatch(wearer) else ""
        with self._sessions.lock:
            recent = {key: kept for key, times in self._failures.items()
                      if (kept := [t for t in times if now - t < FAILURE_WINDOW_S])}
            self._failures = recent
            for_name = len(recent.get((client, name), []))
            from_address = sum(len(times) for (address, _), times in recent.items() if address == client)
            if for_name >= MAX_FAILURES_PER_NAME or from_address >= MAX_FAILURES_PER_ADDRESS:
                raise _HttpError(HTTPStatus.TOO_MANY_REQUESTS, "Too many attempts. Please wait a few minutes.")
        if not self.accounts.verify(wearer, password):
            with self._sessions.lock:
                self._failures.setdefault((client, name), []).append(now)
            log.info("app: a sign-in failed")
            return None
        token = secrets.token_urlsafe(32)
        session = Session(wearer, secrets.token_urlsafe(24), now + self.options.session_days * 86400.0,
                          self.accounts.mark(wearer, token))
        with self._sessions.lock:
            data = self._sessions.data
            for key in [k for k, s in data.items() if s["expires_s"] < now]:
                del data[key]
            data[self._key(token)] = vars(session)
            self._sessions.save()
        log.info("app: %s signed in", wearer)
        return token, session

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        mark = None
        with self._sessions.lock:
            s = self._sessions.data.get(self._key(token))
            if s is not None:
                mark = self.accounts.mark(s["wearer"], token)  # None: the account is gone
                if s.get("account") is None and mark is not None:  # signed in before sessions kept it
                    s["account"] = mark
                    self._sessions.save()
        if s is None or s["expires_s"] < self.clock() or mark is None or not hmac.compare_digest(s["account"], mark):
            return None  # expired, the account deleted, or its password changed since
        return Session(**s)

    def sign_out(self, token: str) -> None:
        with self._sessions.lock:
            if self._sessions.data.pop(self._key(token), None) is not None:
                self._sessions.save()

    # -- wearer data -------------------------------------------------------------------------
    def settings(self, wearer: str) -> dict:
        """What the page shows: ``paused`` (a pause or snooze holds check-ins now) and
        ``paused_until`` (s, when the later of them ends; None: until resumed), ``quiet_hours``
        and ``timezone``."""
        with self._settings.lock:
            s = dict(self._settings.data.get(wearer) or {})
        now = self.clock()
        holds = [t for t in (s.get("paused_until"), s.get("snoozed_until")) if isinstance(t, (int, float)) and t > now]
        until = max(holds, default=None)
        return {"paused": bool(holds), "paused_until": None if until == math.inf else until,
                "quiet_hours": self._quiet_hours(s), "timezone": s.get("timezone")}

    def follow_control(self, wearer: str, control: Control) -> None:
        """A pause, snooze, resume or quiet hours on ``wearer``'s control topic, from this app or
        another client (a watch, Home Assistant): the page shows it (``settings`` event) as the
        service applies it (``control_settings``); one the service refuses changes nothing."""
        values = control_settings(control, self.clock(), self._announced().get("snooze_default_s"))
        if values is None or wearer not in self.accounts.wearers:
            return
        self._save_setting(wearer, **values)
        self._share_settings(wearer)

    def _announced(self) -> dict:
        """The ``[policy]`` defaults the monitor service announces on its state topic
        (``quiet_hours``, ``timezone``, ``snooze_default_s``); {} before it has said."""
        return self.relay.monitor_policy.get(self.options.instance, {}) if self.relay else {}

    def _quiet_hours(self, saved: dict) -> list[str] | tuple[str, str] | None:
        """The wearer's own quiet hours; before they choose, the ones the monitor service says
        it applies (its ``[policy]``, on its state topic); before it has said, ``[app]``'s."""
        if "quiet_hours" in saved:
            return saved["quiet_hours"]
        return self._announced().get("quiet_hours", self.options.quiet_hours)

    def _save_setting(self, wearer: str, **values: Any) -> None:
        with self._settings.lock:
            self._settings.data.setdefault(wearer, {}).update(values)
            self._settings.save()

    def open_checkin(self, wearer: str) -> dict | None:
        view = self.relay.view(wearer)
        if view.checkin is not None:
            return view.checkin
        if self.history_source is not None:  # after a restart of the app: from the recording
            newest = self.history_source.newest_tick(wearer)
            if newest is not None:  # the wearer's event time, also when silent since (band off)
                self.relay.seen(wearer, *newest)
            c = self.history_source.open_checkin(wearer)
            expires_at = float((c or {}).get("expires_at") or math.inf)
            if c is not None and c["id"] not in view.answered and not self.relay.past(wearer, expires_at):
                self.relay.remember_checkin(wearer, c)
                return c
        return None

    def reachable(self) -> bool:
        """Whether the monitor can hear the wearer's answers: the relay is connected to the
        broker and the service has not said it went offline."""
        return self.relay.connected and self.relay.monitor_online.get(self.options.instance) is not False

    def status(self, wearer: str, view=None) -> dict:
        """The wearer's status line: never "calm" from old news (``words.live_status``)."""
        view = view or self.relay.view(wearer)
        age_s = None if view.event_wall_s is None else max(0.0, time.time() - view.event_wall_s)
        return live_status(view.indicators, age_s, self.reachable(), view.devices)

    def state(self, wearer: str) -> dict:
        """What a page shows when it (re)connects; ``closed`` names the last check-in that closed
        and why (``{"prompt_id": ..., "reason": "answered"}``, or None), so a page that missed its
        ``closed`` event (offline) still says why its check-in went."""
        view = self.relay.view(wearer)
        checkin = self.open_checkin(wearer)
        return {
            "wearer": wearer,
            "checkin": None if checkin is None else checkin_view(checkin),
            "closed": view.closed,
            "status": self.status(wearer, view),
            "settings": self.settings(wearer),
            "connected": self.relay.connected,
            "monitor_online": self.relay.monitor_online.get(self.options.instance),
        }

    def answer(self, wearer: str, body: dict) -> dict:
        prompt_id, rating, labels = body.get("prompt_id"), body.get("rating"), body.get("labels", [])
        if not isinstance(prompt_id, str):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "Which check-in is this answer for?")
        if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int)):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "The rating must be a whole number.")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "Labels must be a list of words.")
        breathing = any(x in ("anxious", "stressed") for x in labels)
        seen = self.relay.view(wearer).answered.get(prompt_id)
        if seen is None and self.history_source is not None:  # answered before a restart of the app
            seen = self.history_source.answer(wearer, prompt_id)
        if seen is not None:  # a retry after a lost response: the answer already counts
            if seen.get("rating") == rating and sorted(seen.get("labels") or []) == sorted(labels):
                return {"ok": True, "breathing": breathing, "already": True}
            raise _HttpError(HTTPStatus.CONFLICT, "This check-in already has an answer. Thank you.")
        checkin = self.open_checkin(wearer)
        if checkin is None or checkin.get("id") != prompt_id:
            raise _HttpError(HTTPStatus.CONFLICT,
                             "This check-in has closed, so there's nothing to answer. Thank you anyway.")
        options = checkin.get("options") or {}
        r = options.get("rating") or {}
        if rating is not None and not int(r.get("min", 1)) <= rating <= int(r.get("max", 5)):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "Please pick one of the offered ratings.")
        if any(x not in (options.get("labels") or []) for x in labels):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "Please pick from the offered words.")
        if rating is None and not labels:
            raise _HttpError(HTTPStatus.BAD_REQUEST, "Pick a rating or a word (or both).")
        self._relay_call(lambda: self.relay.answer(wearer, prompt_id, rating, labels))
        log.debug("app: %s answered check-in %s", wearer, prompt_id)  # a health timeline: DEBUG
        return {"ok": True, "breathing": breathing}

    def control(self, wearer: str, body: dict) -> dict:
        action = body.get("action")
        if action == "pause":
            duration = body.get("duration_s")
            if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 60 <= duration <= 7 * 86400:
                raise _HttpError(HTTPStatus.BAD_REQUEST, "A pause lasts between a minute and a week.")
            request = Control("pause", float(duration))
        elif action == "resume":
            request = Control("resume")
        else:
            raise _HttpError(HTTPStatus.BAD_REQUEST, "Unknown request.")
        self._relay_call(lambda: self.relay.control(wearer, request.action, request.duration_s))
        self.follow_control(wearer, request)  # (its echo on the control topic comes too, maybe later)
        log.debug("app: %s asked to %s check-ins", wearer, action)
        return {"ok": True, "settings": self.settings(wearer)}

    def quiet_hours(self, wearer: str, body: dict) -> dict:
        tz = body.get("timezone")
        try:
            quiet = None if body.get("off") is True else check_quiet_hours([body.get("start"), body.get("end")])
        except ControlError:
            raise _HttpError(HTTPStatus.BAD_REQUEST,
                             "Quiet hours need two different times (HH:MM), a start and an end, or off.") from None
        if tz is not None:
            try:
                check_timezone(tz)
            except ControlError:
                raise _HttpError(HTTPStatus.BAD_REQUEST, "Unknown time zone.") from None
        if tz is None:  # quiet hours off (or no zone sent): the zone still applies to the daily cap
            tz = self.settings(wearer)["timezone"]
        self._relay_call(lambda: self.relay.control(wearer, "quiet_hours", quiet_hours=quiet or [], timezone=tz))
        self.follow_control(wearer, Control("quiet_hours", quiet_hours=tuple(quiet or ()), timezone=tz))
        log.info("app: %s set quiet hours", wearer)
        return {"ok": True, "settings": self.settings(wearer)}

    def _share_settings(self, wearer: str) -> dict:
        """The wearer's settings, also sent to their other open pages (a second tab, a phone)."""
        settings = self.settings(wearer)
        self.relay.notify(wearer, "settings", settings)
        return settings

    def _relay_call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except RelayError as exc:
            log.warning("app: %s", exc)
            raise _HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "The monitor cannot be reached right now. "
                             "Please try again in a moment.") from None

    def history(self, wearer: str, days: int) -> dict:
        days = max(1, min(int(days), self.options.history_days))
        view = self.relay.view(wearer)
        newest = view.event_t
        if self.history_source is not None:
            recorded = (self.history_source.newest_tick(wearer) or (None,))[0]
            newest = recorded if newest is None else max(newest, recorded or newest)
        to_s = newest if newest is not None else self.clock()
        from_s = to_s - days * 86400.0
        found = None if self.history_source is None else self.history_source.history(wearer, from_s, to_s)
        if found is None:  # no recording: what the relay saw since the app started
            found = {
                "scores": [[t, round(s, 3)] for t, s in self.relay.score_history(wearer, from_s)],
                "threshold": (view.indicators or {}).get("threshold"),
                "checkins": [{"id": c["id"], "t": c["t"], "expires_at": c.get("expires_at"), "prompt": c,
                              "closed": "answered" if c["id"] in view.answered else None,
                              "answer": _answer_of(view.answered.get(c["id"]))}
                             for c in view.checkins if c["t"] >= from_s],
                "source": "memory",
            }
            found["start"] = found["scores"][0][0] - 30.0 if found["scores"] else from_s
        else:
            found["source"] = "recording"
        for c in found["checkins"]:
            prompt = c.pop("prompt")
            c["why"] = checkin_view(prompt)["why"]
            c["said"] = answer_words(c.get("answer"), prompt)
        found.update({"from": from_s, "to": to_s, "days": days})
        return found


def _loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name to listen on) is this machine only.

    >>> _loopback("127.0.0.1"), _loopback("localhost"), _loopback("0.0.0.0"), _loopback("192.168.1.5")
    (True, True, False, False)
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def control_settings(control: Control, now_s: float, snooze_default_s: float | None = None) -> dict | None:
    """The shown settings a control request changes, by the check-in policy's own rules (a
    scratch ``CheckinPolicy``), or None when the service refuses the request: ``paused_until``,
    ``snoozed_until`` (s, wall clock: the hold starts now, as the service's starts at the
    wearer's now; ``inf``: until resumed), ``quiet_hours``, ``timezone``. A snooze without a
    duration lasts ``snooze_default_s`` (the service announces its own; None: the policy's
    default, 1 h).

    >>> control_settings(Control("snooze", 600.0), 1000.0), control_settings(Control("snooze"), 1000.0, 1200.0)
    ({'snoozed_until': 1600.0}, {'snoozed_until': 2200.0})
    >>> control_settings(Control("pause"), 1000.0), control_settings(Control("pause", 31 * 86400.0), 1000.0)
    ({'paused_until': inf}, None)
    """
    if control.duration_s is not None and control.duration_s > MAX_CONTROL_DURATION_S:
        return None
    policy = CheckinPolicy(PolicyConfig(snooze_default_s=snooze_default_s) if snooze_default_s else None)
    try:
        policy.control(now_s, control.action, control.duration_s, control.quiet_hours, control.timezone)
    except ControlError:
        return None
    s = policy.state
    if control.action == "quiet_hours":
        return {**({"quiet_hours": list(s.quiet_hours) or None} if s.quiet_hours is not None else {}),
                **({"timezone": s.timezone} if s.timezone else {})}
    if control.action == "resume":
        return {"paused_until": None, "snoozed_until": None}
    return {"paused_until": s.paused_until_s} if control.action == "pause" else {"snoozed_until": s.snoozed_until_s}


def _answer_of(body: dict | None) -> dict | None:
    if body is None:
        return None
    return {"t": body.get("t"), "rating": body.get("rating"), "labels": body.get("labels") or []}


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# a wearer in the path that is not a wearer id (non-ASCII, percent-encoded, upper case) is 404
_WEARER_PATH = re.compile(rf"/api/w/({ID_PATTERN.pattern})/(state|events|answer|control|quiet-hours|history)")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; on a kept-alive connection Nagle's algorithm holds the
    # body until the browser's delayed ACK of the headers: ~44 ms per API reply, 0.3 ms without it
    # (median of 40 local requests each way, http.client against ThreadingHTTPServer).
    disable_nagle_algorithm = True
    server_version = "anxmon"
    sys_version = ""
    _raw: bytes | None = b""  # the POST body (None: too large, not read)

    @property
    def app(self) -> CheckinApp:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args) -> None:  # no query strings, bodies or cookies in logs
        log.debug("app: %s %s", self.command, urlsplit(self.path).path)

    # -- plumbing ------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", CSP)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", {"Cache-Control": "no-store", **(headers or {})})

    def _token(self) -> str | None:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                return value
        return None

    def _cookie(self, token: str, max_age: int) -> str:
        secure = "; Secure" if self.app.public_url.startswith("https://") or self.app.options.certfile else ""
        return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"

    def _body(self) -> dict:
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            raise _HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Expected JSON.")
        if self._raw is None:
            raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request too large.")
        try:
            body = json.loads(self._raw or b"{}")
        except ValueError:
            raise _HttpError(HTTPStatus.BAD_REQUEST, "Expected JSON.") from None
        if not isinstance(body, dict):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "Expected a JSON object.")
        return body

    def _check_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is None:
            return
        host = self.headers.get("Host", "")
        allowed = {f"http://{host}", f"https://{host}", self.app.public_url}
        if origin not in allowed:
            raise _HttpError(HTTPStatus.FORBIDDEN, "Cross-site request refused.")

    def _session(self, wearer: str | None = None, csrf: bool = False) -> Session:
        session = self.app.session(self._token())
        if session is None:
            raise _HttpError(HTTPStatus.UNAUTHORIZED, "Please sign in.")
        # bytes: compare_digest refuses str with non-ASCII characters (TypeError)
        if wearer is not None and not hmac.compare_digest(session.wearer.encode(), wearer.encode()):
            log.warning("app: %s asked for another wearer's data; refused", session.wearer)
            raise _HttpError(HTTPStatus.FORBIDDEN, "This is not your data.")
        if csrf and not hmac.compare_digest((self.headers.get("X-CSRF-Token") or "").encode(), session.csrf.encode()):
            raise _HttpError(HTTPStatus.FORBIDDEN, "Please reload the page and try again.")
        return session

    def _client(self) -> str:
        return self.client_address[0]

    # -- dispatch --------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        # read the whole body first, whatever the answer: a body left unread on a kept-alive
        # connection would be taken for the start of the next request ("{}GET / ...": 501)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= MAX_BODY:
            self._raw = self.rfile.read(length)
        else:
            self._raw = None
            self.close_connection = True
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        try:
            if method in ("GET", "HEAD") and path in STATIC_FILES:
                return self._static(*STATIC_FILES[path])
            if method in ("GET", "HEAD") and path in ("/icon-192.png", "/icon-512.png"):
                return self._send(200, png_icon(int(path[6:9])), "image/png", {"Cache-Control": "max-age=86400"})
            if path == "/api/config" and method == "GET":
                return self._json(200, {"crisis_text": self.app.options.crisis_text,
                                        "history_days": self.app.options.history_days})
            if path == "/api/session" and method == "GET":
                s = self._session()
                return self._json(200, {"wearer": s.wearer, "csrf": s.csrf})
            if path == "/api/login" and method == "POST":
                return self._login()
            if path == "/api/logout" and method == "POST":
                self._check_origin()
                self._session(csrf=True)
                self.app.sign_out(self._token() or "")
                return self._json(200, {"ok": True}, {"Set-Cookie": self._cookie("", 0)})
            m = _WEARER_PATH.fullmatch(path)
            if m is None:
                raise _HttpError(HTTPStatus.NOT_FOUND, "Not found.")
            wearer, what = m.group(1), m.group(2)
            if method == "GET":
                self._session(wearer)
                if what == "state":
                    return self._json(200, self.app.state(wearer))
                if what == "events":
                    return self._events(wearer)
                if what == "history":
                    days = parse_qs(url.query).get("days", ["3"])[0]
                    if not days.isdigit():
                        raise _HttpError(HTTPStatus.BAD_REQUEST, "days must be a whole number, e.g. 3.")
                    return self._json(200, self.app.history(wearer, int(days)))
            elif method == "POST":
                self._check_origin()
                self._session(wearer, csrf=True)
                body = self._body()
                if what == "answer":
                    return self._json(200, self.app.answer(wearer, body))
                if what == "control":
                    return self._json(200, self.app.control(wearer, body))
                if what == "quiet-hours":
                    return self._json(200, self.app.quiet_hours(wearer, body))
            raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, "Not allowed.")
        except _HttpError as exc:
            self._json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.debug("client went away before the answer: %s", exc)

    def _static(self, name: str, content_type: str) -> None:
        body = (STATIC / name).read_bytes()
        headers = {"Cache-Control": "no-cache"}
        if name == "sw.js":
            headers["Service-Worker-Allowed"] = "/"
        self._send(200, body, content_type, headers)

    def _login(self) -> None:
        self._check_origin()
        body = self._body()
        wearer, password = body.get("wearer"), body.get("password")
        if not isinstance(wearer, str) or not isinstance(password, str):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "Please enter your name and password.")
        done = self.app.sign_in(wearer.strip().lower(), password, self._client())
        if done is None:
            raise _HttpError(HTTPStatus.UNAUTHORIZED, "That name and password do not match.")
        token, session = done
        max_age = int(self.app.options.session_days * 86400)
        self._json(200, {"wearer": session.wearer, "csrf": session.csrf}, {"Set-Cookie": self._cookie(token, max_age)})

    def _events(self, wearer: str) -> None:
        """Server-Sent Events: the wearer's state, then check-ins, status and closings as they come,
        while the session lasts (a sign-out, its expiry or the account's removal ends the stream)."""
        app = self.app
        token = self._token()
        sub = app.relay.listen(wearer)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            first = app.state(wearer)
            self._event("state", first, retry=True)
            last_status = first["status"]
            idle_s = 0.0
            while not app._closing.is_set() and not sub.closed:
                item = sub.get(1.0)
                if app.session(token) is None:  # signed out (maybe in another tab): nothing more
                    break
                if item is None:
                    app.relay.expire_due(wearer)  # delivered on the next turn
                    status = app.status(wearer)  # the wearable gone quiet, the monitor gone away
                    if status != last_status:
                        self._event("status", status)
                        last_status = status
                    idle_s += 1.0
                    if idle_s >= 15.0:
                        self.wfile.write(b": still here\n\n")
                        self.wfile.flush()
                        idle_s = 0.0
                    continue
                idle_s = 0.0
                event, data = item
                if event == "bye":
                    break
                if event == "checkin":
                    self._event("checkin", checkin_view(data))
                elif event == "indicators":
                    status = app.status(wearer)
                    if status != last_status:
                        self._event("status", status)
                        last_status = status
                elif event in ("closed", "notice", "settings"):
                    self._event(event, data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass  # the page went away
        finally:
            app.relay.unlisten(sub)

    def _event(self, name: str, data: Any, retry: bool = False) -> None:
        text = ("retry: 3000\n" if retry else "") + f"event: {name}\ndata: {json.dumps(data)}\n\n"
        self.wfile.write(text.encode())
        self.wfile.flush()

