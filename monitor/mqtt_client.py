"""The MQTT client plumbing every anxmon client shares (paho-mqtt 2.x).

``parse_broker_url`` is the one place that reads ``mqtt://user:pass@host:port`` (``mqtts://``
for TLS); ``make_client`` makes a paho client of such an address (callback API ``VERSION2``,
MQTT version and session, the address's user and TLS); ``private_client_id`` gives it an id no
other broker user can guess; ``ConnectionState`` holds whether it is connected or why the
broker refused it, and waits for the connection; ``connect_failure`` says why a connection
attempt failed; ``WarningLimit`` keeps one wearer's flood of bad messages from flooding the
log. What a client subscribes, publishes, its last will and how it reconnects stay with its
owner (the service, the app's relay, the bridge's publisher, replay, the simulator, the demo,
the bench).

Example
-------
>>> address = parse_broker_url("mqtt://alice:s%40cret@127.0.0.1:1884")
>>> address                                                   # (the password is never shown)
BrokerAddress(host='127.0.0.1', port=1884, username='alice', tls=False)
>>> address.password
's@cret'
>>> client = make_client(address, private_client_id("anxmon-example"))   # clean session, MQTT 3.1.1
>>> client.connect_async(address.host, address.port, keepalive=30)       # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from monitor.errors import ConfigError


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr or a log
    tls: bool = False

    def __str__(self) -> str:  # never shows the password
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Read ``mqtt[s]://[user[:password]@]host[:port]``; ``ConfigError`` when it is not one.

    >>> parse_broker_url("mqtts://h")
    BrokerAddress(host='h', port=8883, username=None, tls=True)
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or "://" not in url:
        raise ConfigError(f"broker URL must look like mqtt://[user:password@]host[:port] (or mqtts://), "
                          f"got {shown_url(url)!r}")
    if not parts.hostname:
        raise ConfigError("broker URL has no host (expected mqtt://user:password@host:port)")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(f"broker URL port is not a number between 1 and 65535, got {shown_url(url)!r}")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
    )


def shown_url(url: str) -> str:
    """``url`` as an error may show it: any password replaced by ``***``, at most 80 characters.

    >>> shown_url("monitor:s3cret@localhost:1883"), shown_url("tcp://u:a/b@h"), shown_url("h:1")
    ('monitor:***@localhost:1883', 'tcp://u:***@h', 'h:1')
    >>> shown_url("u:p://x@h")
    'u:***@h'
    """
    scheme, rest = re.fullmatch(r"([a-zA-Z][a-zA-Z0-9+.-]*://)?(.*)", url, re.DOTALL).groups(default="")
    if "@" in rest:
        user_info, host = rest.rsplit("@", 1)
        user, colon, _ = user_info.partition(":")
        rest = f"{user}{':***' if colon else ''}@{host}"
    return f"{scheme}{rest}"[:80]


def private_client_id(prefix: str, secret: str | None = None) -> str:
    """An MQTT client id no other broker user can guess: ``prefix`` plus a secret suffix (a new
    random one when ``secret`` is None). Any user of a broker may connect with any client id;
    one who knew ours could take our session over, kick us off, or wipe what is queued for us.

    >>> private_client_id("anxmon-app-main").startswith("anxmon-app-main-")
    True
    >>> private_client_id("anxmon-bridge-alice-h10", "6f3b")
    'anxmon-bridge-alice-h10-6f3b'
    """
    return f"{prefix}-{secret if secret is not None else secrets.token_hex(8)}"


def shown_client_id(client_id: str) -> str:
    """A ``private_client_id`` as logs show it: its secret suffix masked (a log is read by more
    people than the data directory, and a copy is pasted into bug reports).

    >>> shown_client_id("anxmon-monitor-main-6f3b9c0d")
    'anxmon-monitor-main-***'
    """
    return f"{client_id.rpartition('-')[0]}-***"


def make_client(address: BrokerAddress, client_id: str, clean: bool = True, v5: bool = False,
                manual_ack: bool = False) -> mqtt.Client:
    """A paho client (``CallbackAPIVersion.VERSION2``) with ``address``'s user, password and TLS,
    not connected and without callbacks.

    MQTT 3.1.1 with ``clean_session=clean`` (True: the broker keeps nothing for us between
    connections), or MQTT 5 (``v5``), whose session is chosen when connecting (``clean_start``
    and the session expiry) and ``clean`` is not used. ``manual_ack``: the owner acknowledges
    each QoS 1 message itself (``Client.ack``).

    >>> c = make_client(BrokerAddress("127.0.0.1", 1883, "alice", "pw"), "anxmon-x", clean=False)
    >>> c.protocol == mqtt.MQTTv311, c.username
    (True, 'alice')
    """
    session = {"protocol": mqtt.MQTTv5} if v5 else {"protocol": mqtt.MQTTv311, "clean_session": clean}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, manual_ack=manual_ack, **session)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    return client


class ConnectionState:
    """A client's connection as its owner's paho callbacks see it: ``up`` (an Event) while it is
    connected, ``refused`` the broker's reason when it refused the last attempt (None: it did not).

    The owner's ``on_connect`` calls ``accepted`` first and sets ``up`` once it is ready (after
    subscribing); its ``on_disconnect`` clears ``up``.

    >>> conn = ConnectionState()
    >>> conn.wait(0.1, RuntimeError)                              # nothing connected it within 0.1 s
    False
    >>> conn.refused = "Not authorized"                           # (as accepted() notes a refusal)
    >>> conn.wait(5.0, lambda why: RuntimeError(f"refused: {why}"))
    Traceback (most recent call last):
    RuntimeError: refused: Not authorized
    """

    def __init__(self) -> None:
        self.up = threading.Event()
        self.refused: str | None = None

    def accepted(self, reason_code: mqtt.ReasonCode) -> bool:
        """Note a CONNACK (``on_connect``'s reason code): True when the broker accepted the
        connection, else False, with its reason (as text) in ``refused``."""
        self.refused = str(reason_code) if reason_code.is_failure else None
        return self.refused is None

    def wait(self, timeout_s: float, error: Callable[[str], Exception],
             until: threading.Event | None = None) -> bool:
        """Wait up to ``timeout_s`` (s) for ``up``: True once it is set, False when the time is up
        or ``until`` is set first (a stop asked for). As soon as the broker has refused the
        connection (looked at every 50 ms), raises ``error(refused)``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (until is not None and until.is_set()):
            if self.up.wait(0.05):
                return True
            reason = self.refused
            if reason is not None:
                raise error(reason)
        return False


class WarningLimit:
    """At most one warning per ``every_s`` (60 s) per wearer and kind: one wearer's device
    sending bad messages by the thousand must not flood the log (its details go to DEBUG).

    ``clock`` is in seconds (``time.monotonic``; the service passes its injectable wall clock).
    Wearers not warned about for ``every_s`` are forgotten once more than 1024 are held.

    >>> limit = WarningLimit(clock=iter([0.0, 30.0, 30.0, 61.0]).__next__)
    >>> [limit.allows("alice", "payload"), limit.allows("alice", "payload"),
    ...  limit.allows("bob", "payload"), limit.allows("alice", "payload")]
    [True, False, True, True]
    """

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self.clock = clock
        self._last_s: dict[tuple[str, str], float] = {}  # (wearer, kind) -> clock of its last warning

    def allows(self, wearer: str, kind: str) -> bool:
        """Whether to warn about ``wearer``'s ``kind`` now (True at most once per ``every_s``)."""
        now = self.clock()
        if now - self._last_s.get((wearer, kind), -math.inf) < self.every_s:
            return False
        if len(self._last_s) >= 1024:  # (bounded memory: wearer ids come from the network)
            self._last_s = {k: t for k, t in self._last_s.items() if now - t < self.every_s}
        self._last_s[(wearer, kind)] = now
        return True


def connect_failure(exc: BaseException | None) -> str:
    """Why a connection attempt failed, in a few words (for the log).

    >>> connect_failure(ConnectionRefusedError(111, "Connection refused"))
    'connection refused: nothing listens on that port'
    >>> connect_failure(None)
    'no reason given'
    """
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens on that port"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror or exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer (timed out)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if exc is None:
        return "no reason given"
    return f"{type(exc).__name__}: {exc}"
