"""Push notifications of check-ins through apprise (the optional extra ``anxmon[push]``).

A check-in on an MQTT topic does not reach a locked phone; a push notification does. apprise
is one library for ntfy, Telegram, Signal, Pushover, e-mail, Matrix and many more: each wearer
gets one or more apprise URLs in ``configs/app.toml`` (``[push.wearers]``), and every check-in
sent to the wearer becomes a notification with its message and a link back to the web app.

Delivery never blocks anything else: ``PushNotifier.submit`` only puts the check-in on a
schedule; worker threads send it. A failed attempt is retried with exponential backoff
(``backoff_s``, doubling, at most ``max_backoff_s``) until ``attempts`` tries were made, the
check-in expired, or it was answered (on any device: a late buzz would ask again); every
delivery, its attempts, its outcome and the last error are recorded in SQLite (``deliveries``).
URLs carry secrets (an ntfy topic, tokens, phone numbers, passwords): logs and the record show
only ``push_label``: scheme, server and the URL's number; apprise's own log lines (they name
topics, numbers and URLs) are switched off.

Example
-------
>>> cfg = PushConfig(wearers={"alice": ["json://127.0.0.1:9/hook"]})
>>> cfg.urls_for("alice"), cfg.urls_for("bob")
(('json://127.0.0.1:9/hook',), ())
>>> n = PushNotifier(cfg, link_for=lambda w, p: f"http://app/#/checkin/{p}")   # doctest: +SKIP
>>> n.start(); n.submit("alice", checkin_dict); ...; n.stop()                  # doctest: +SKIP
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from monitor.errors import ConfigError, install_hint
from monitor.store import create_private
from monitor.toml_tables import bad_value, is_integer, is_number
from monitor.wire import ID_PATTERN

DEFAULT_OPEN_S = 900.0  # s, the check-in policy's default expiry
log = logging.getLogger("anxmon.push")

PENDING, SENT, FAILED = "pending", "sent", "failed"
ANSWERED = "answered"  # not sent: the check-in was answered (on another device) before it got through
DELIVERY_RETENTION_S = 30 * 86400.0  # s, finished deliveries older than this are deleted when the record opens


@dataclass(frozen=True)
class PushConfig:
    """Where and how check-ins are pushed (section ``[push]`` of ``configs/app.toml``).

    Attributes
    ----------
    wearers : dict of str to tuple of str
        Wearer id -> apprise URLs (``ntfy://...``, ``tgram://...``, ``json://...``). A wearer
        without URLs gets no notifications.
    attempts : int
        Tries per notification and URL, the first one included. Default 5.
    backoff_s : float
        Wait before the first retry (s); it doubles after each failure. Default 5.
    max_backoff_s : float
        Longest wait between two tries (s). Default 300.
    workers : int
        Threads that send (a slow service then delays only its own deliveries). Default 2.
    title : str
        Title of every notification.
    include_message : bool
        True: the body is the check-in's message; False: a neutral "You have a new check-in"
        (for services you do not trust with how you feel). The link is always included.

    Example
    -------
    >>> PushConfig(attempts=3, wearers={"bob": "ntfy://host/topic"}).urls_for("bob")
    ('ntfy://host/topic',)
    """

    wearers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    attempts: int = 5
    backoff_s: float = 5.0
    max_backoff_s: float = 300.0
    workers: int = 2
    title: str = "anxmon check-in"
    include_message: bool = True

    def __post_init__(self) -> None:
        if not is_integer(self.attempts) or self.attempts < 1:
            raise bad_value("push", "attempts", "an integer >= 1", self.attempts)
        if not is_integer(self.workers) or not 1 <= self.workers <= 16:
            raise bad_value("push", "workers", "an integer in 1..16", self.workers)
        for key in ("backoff_s", "max_backoff_s"):
            if not is_number(getattr(self, key)) or getattr(self, key) <= 0:
                raise bad_value("push", key, "a number of seconds > 0", getattr(self, key))
        if not isinstance(self.title, str) or not self.title.strip():
            raise bad_value("push", "title", "a non-empty string", self.title)
        if not isinstance(self.include_message, bool):
            raise bad_value("push", "include_message", "true or false", self.include_message)
        if not isinstance(self.wearers, Mapping):
            raise bad_value("push", "wearers", "a table of wearer = [apprise URLs]", self.wearers)
        clean: dict[str, tuple[str, ...]] = {}
        for wearer, urls in self.wearers.items():
            if not ID_PATTERN.fullmatch(str(wearer)):
                raise ConfigError(f"push: 'wearers': {wearer!r} is not a wearer id (1-64 characters of a-z, 0-9, _ or -)")
            urls = (urls,) if isinstance(urls, str) else urls
            if not isinstance(urls, (list, tuple)) or not all(isinstance(u, str) and "://" in u for u in urls):
                raise bad_value("push", f"wearers.{wearer}", 'apprise URLs such as "ntfy://host/topic"', urls)
            clean[str(wearer)] = tuple(urls)
        object.__setattr__(self, "wearers", clean)

    def urls_for(self, wearer: str) -> tuple[str, ...]:
        return self.wearers.get(wearer, ())


def _apprise():
    try:
        import apprise
    except ImportError:
        raise ConfigError(f"push notifications need apprise: {install_hint('push', 'apprise')}") from None
    # apprise logs ntfy topics, Signal numbers and URLs with tokens (INFO, WARNING) and the
    # notification's text (DEBUG); urllib3, which it sends through, the URL's path (DEBUG):
    # above every level, they log nothing
    for name in ("apprise", "urllib3"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    return apprise


def check_urls(config: PushConfig) -> None:
    """Raise ``ConfigError`` for a push URL apprise cannot read (a misspelt scheme, a malformed
    token), naming it by ``push_label`` only: unchecked, it failed at every check-in, each
    retried ``attempts`` times, while the app said push was on.

    >>> check_urls(PushConfig(wearers={"bob": ["nfty://ntfy.example.org/anxmon-bob-6f3b9c"]}))
    Traceback (most recent call last):
    monitor.errors.ConfigError: push: wearers.bob: apprise cannot read nfty://… (URL 1) (a misspelt scheme, or a token or number in the wrong form? https://github.com/caronc/apprise/wiki)
    """
    apprise = _apprise()
    for wearer, urls in config.wearers.items():
        for number, url in enumerate(urls, start=1):
            if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
                raise ConfigError(f"push: wearers.{wearer}: apprise cannot read {push_label(url, number)} (a misspelt "
                                  "scheme, or a token or number in the wrong form? https://github.com/caronc/apprise/wiki)")


def push_label(url: str, number: int = 1) -> str:
    """What logs and the delivery record show of a wearer's ``number``-th push URL (as
    configured): its scheme, its server, and the number.

    The rest of an apprise URL may be the secret: the ntfy topic (whoever knows it can
    subscribe), a token in the path, Signal numbers, a password. The server is shown only where
    apprise's own privacy form shows it (a bot token or API key in the host's place is not).
    Nothing derived from the secret parts is shown: a hash of them would let whoever reads the
    logs confirm a guessed topic or number.

    >>> push_label("ntfys://ntfy.example.org/anxmon-alice-6f3b9c")
    'ntfys://ntfy.example.org/… (URL 1)'
    >>> push_label("tgram://123456789:AAbot-token/987654321", 2)       # a token where a server would be
    'tgram://… (URL 2)'
    """
    found = re.match(r"[A-Za-z][A-Za-z0-9+.-]{0,31}(?=://)", url)
    scheme = found[0].lower() if found else "?"
    server = _server(url)
    return f"{scheme}://{server}/… (URL {number})" if server else f"{scheme}://… (URL {number})"


def _server(url: str) -> str | None:
    """The host of ``url`` when apprise shows it unmasked in its privacy form (a server), else None."""
    try:
        plugin = _apprise().Apprise.instantiate(url, suppress_exceptions=True)
        host = getattr(plugin, "host", None)
        shown = plugin.url(privacy=True) if host else ""
    except Exception:  # apprise missing (a test's own sender), or a plugin that cannot print itself
        return None
    return host if host and re.search(rf"[/@]{re.escape(host)}(?=[:/?]|$)", shown) else None


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    wearer: str = field(compare=False)
    prompt_id: str = field(compare=False)
    url: str = field(compare=False, repr=False)  # secret: never logged
    target: str = field(compare=False)  # push_label: what logs and the record show
    title: str = field(compare=False)
    body: str = field(compare=False)
    give_up_at: float = field(compare=False)
    row: int = field(compare=False, default=0)
    attempts: int = field(compare=False, default=0)
    error: str | None = field(compare=False, default=None)  # the last failed attempt's


@dataclass
class PushStats:
    submitted: int = 0  # deliveries scheduled (one per check-in and URL)
    sent: int = 0
    failed: int = 0  # gave up
    answered: int = 0  # not sent: answered first
    retries: int = 0  # failed attempts that were tried again


class DeliveryLog:
    """The record of every delivery (SQLite, one row per check-in and URL; thread-safe)."""

    def __init__(self, path: str | Path | None, now_s: float | None = None):
        """Open (or create) the record at ``path`` (None: in memory), deleting the deliveries that
        finished more than ``DELIVERY_RETENTION_S`` before ``now_s`` (unix s; default now), e.g.
        ``DeliveryLog("data/app/push.sqlite")``."""
        self.path = ":memory:" if path is None else str(path)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            create_private(path)  # who was sent a check-in when: 0600, and so its -wal and -shm files
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path is not None else "PRAGMA journal_mode=MEMORY")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS deliveries (id INTEGER PRIMARY KEY, wearer TEXT NOT NULL, "
            "prompt_id TEXT NOT NULL, target TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, "
            "created_s REAL NOT NULL, updated_s REAL NOT NULL, error TEXT)"
        )
        # earlier versions stored apprise's privacy form, which keeps ntfy topics and numbers:
        # overwritten, with the freed bytes zeroed (secure_delete) and the journal emptied
        self._db.execute("PRAGMA secure_delete=ON")
        cur = self._db.execute("UPDATE deliveries SET target = '(a URL, not kept)' "
                               "WHERE target NOT LIKE '%(URL %)' AND target != '(a URL, not kept)'")
        if cur.rowcount > 0 and path is not None:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cutoff_s = (time.time() if now_s is None else now_s) - DELIVERY_RETENTION_S
        self._db.execute("DELETE FROM deliveries WHERE status != ? AND updated_s < ?", (PENDING, cutoff_s))

    def add(self, job: _Job, now: float) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO deliveries (wearer, prompt_id, target, status, attempts, created_s, updated_s) "
                "VALUES (?, ?, ?, ?, 0, ?, ?)", (job.wearer, job.prompt_id, job.target, PENDING, now, now))
            return int(cur.lastrowid)

    def update(self, row: int, status: str, attempts: int, now: float, error: str | None) -> None:
        with self._lock:
            self._db.execute("UPDATE deliveries SET status = ?, attempts = ?, updated_s = ?, error = ? WHERE id = ?",
                             (status, attempts, now, error, row))

    def rows(self, wearer: str | None = None) -> list[dict]:
        """Deliveries, oldest first (of one wearer when given)."""
        sql = "SELECT id, wearer, prompt_id, target, status, attempts, created_s, updated_s, error FROM deliveries"
        args: tuple = ()
        if wearer is not None:
            sql, args = sql + " WHERE wearer = ?", (wearer,)
        keys = ("id", "wearer", "prompt_id", "target", "status", "attempts", "created_s", "updated_s", "error")
        with self._lock:
            return [dict(zip(keys, r)) for r in self._db.execute(sql + " ORDER BY id", args)]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PushNotifier:
    """Sends each wearer's check-ins to their apprise URLs, in worker threads, with retries.

    Parameters
    ----------
    config : PushConfig
    link_for : callable
        ``link_for(wearer, prompt_id)`` -> the web app's URL of that check-in.
    log_path : str or Path, optional
        SQLite file of the delivery record (None: in memory).
    send : callable, optional
        ``send(url, title, body) -> (ok, error)``; default: apprise. Tests inject failures here.
    clock : callable
        Wall clock (s); the retry schedule runs on it.
    answered : callable, optional
        ``answered(wearer, prompt_id)`` -> whether the check-in has an answer (the relay's
        ``is_answered``): a delivery not through yet is then dropped (``ANSWERED``).
    """

    def __init__(self, config: PushConfig, link_for: Callable[[str, str], str], log_path: str | Path | None = None,
                 send: Callable[[str, str, str], tuple[bool, str | None]] | None = None,
                 clock: Callable[[], float] = time.time, answered: Callable[[str, str], bool] | None = None):
        self.config = config
        self.link_for = link_for
        self.answered = answered
        self.clock = clock
        self.stats = PushStats()
        self.record = DeliveryLog(log_path, now_s=clock())  # (the clock the rows are stamped with)
        if send is None:
            check_urls(config)  # fail at start, not at the first check-in (apprise missing, a misspelt URL)
            send = self._send_apprise
        self._send = send
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = 0
        self._threads: list[threading.Thread] = []
        self._targets: dict[str, str] = {}

    # -- public ---------------------------------------------------------------------------
    def start(self) -> "PushNotifier":
        for i in range(self.config.workers):
            t = threading.Thread(target=self._work, name=f"anxmon-push-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def submit(self, wearer: str, checkin: Mapping[str, Any]) -> int:
        """Schedule the notification of a check-in (a ``Prompt.to_dict()``); never blocks.

        Returns the number of deliveries scheduled (one per URL of the wearer; 0 without URLs).
        """
        urls = self.config.urls_for(wearer)
        if not urls:
            return 0
        prompt_id = str(checkin.get("id"))
        link = self.link_for(wearer, prompt_id)
        if self.config.include_message and isinstance(checkin.get("message"), str):
            body = f"{checkin['message']}\nAnswer here: {link}"
        else:
            body = f"You have a new check-in.\nAnswer here: {link}"
        # retry no longer than the check-in is open (its expiry, in its own event time)
        try:
            open_s = max(0.0, float(checkin["expires_at"]) - float(checkin["t"]))
        except (KeyError, TypeError, ValueError):
            open_s = DEFAULT_OPEN_S  # a check-in without a usable expiry: the policy's default
        now = self.clock()
        jobs = []
        for number, url in enumerate(urls, start=1):
            job = _Job(now, next(self._seq), wearer, prompt_id, url, self._target(url, number), self.config.title, body,
                       give_up_at=now + open_s)
            job.row = self.record.add(job, now)
            jobs.append(job)
        with self._cond:
            for job in jobs:
                heapq.heappush(self._heap, job)
            self.stats.submitted += len(jobs)
            self._cond.notify_all()
        return len(jobs)

    def deliveries(self, wearer: str | None = None) -> list[dict]:
        """The delivery record (see ``DeliveryLog.rows``)."""
        return self.record.rows(wearer)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the workers; deliveries still scheduled stay ``pending`` in the record. A send
        still running after ``timeout_s`` (a slow service) records its outcome when it returns:
        the record then stays open for it."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        if not self._threads:
            self.record.close()

    # -- workers --------------------------------------------------------------------------
    def _target(self, url: str, number: int) -> str:
        if (url, number) not in self._targets:
            self._targets[url, number] = push_label(url, number)
        return self._targets[url, number]

    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._stopping:
                if self._heap:
                    wait = self._heap[0].due - self.clock()
                    if wait <= 0:
                        self._busy += 1
                        return heapq.heappop(self._heap)
                    self._cond.wait(min(wait, 1.0))
                else:
                    self._cond.wait(1.0)
            return None

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                self._attempt(job)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _attempt(self, job: _Job) -> None:
        if self.answered is not None and self.answered(job.wearer, job.prompt_id):
            # answered meanwhile (a retry after an outage): a buzz now would ask a question already answered
            self.record.update(job.row, ANSWERED, job.attempts, self.clock(), job.error)
            self.stats.answered += 1
            log.debug("check-in %s of %s answered before its push got through", job.prompt_id, job.wearer)
            return
        if self.clock() > job.give_up_at:  # it waited behind slow deliveries until the check-in expired
            self._give_up(job, self.clock(), job.error or "the check-in expired before a worker was free")
            return
        job.attempts += 1
        try:
            ok, error = self._send(job.url, job.title, job.body)
        except Exception as exc:  # a plugin's bug must not kill the worker: record it as a failed try
            ok, error = False, f"{type(exc).__name__} in the sender"  # not its text: it may quote the URL
        now = self.clock()
        if ok:
            self.record.update(job.row, SENT, job.attempts, now, None)
            self.stats.sent += 1
            log.debug("check-in %s pushed to %s (%s) after %d attempt(s)", job.prompt_id, job.wearer, job.target, job.attempts)
            return
        error = job.error = error or "not delivered"
        wait = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (job.attempts - 1))
        if job.attempts >= self.config.attempts or now + wait > job.give_up_at:
            self._give_up(job, now, error)
            return
        self.record.update(job.row, PENDING, job.attempts, now, error)
        self.stats.retries += 1
        log.debug("push of check-in %s to %s failed (%s); retrying in %.0f s", job.prompt_id, job.target, error, wait)
        job.due = now + wait
        with self._cond:
            heapq.heappush(self._heap, job)
            self._cond.notify_all()

    def _give_up(self, job: _Job, now: float, error: str) -> None:
        self.record.update(job.row, FAILED, job.attempts, now, error)
        self.stats.failed += 1
        # (the prompt id holds the time of the check-in: DEBUG only)
        log.warning("a check-in of %s could not be pushed to %s after %d attempt(s): %s",
                    job.wearer, job.target, job.attempts, error)
        log.debug("check-in %s of %s given up", job.prompt_id, job.wearer)

    def _send_apprise(self, url: str, title: str, body: str) -> tuple[bool, str | None]:
        apprise = _apprise()
        sender = apprise.Apprise(asset=apprise.AppriseAsset(app_id="anxmon", app_desc="anxmon check-ins"))
        if not sender.add(url):
            return False, "apprise does not read this URL"
        ok = sender.notify(body=body, title=title)
        return bool(ok), None if ok else "the notification service refused it or could not be reached"
