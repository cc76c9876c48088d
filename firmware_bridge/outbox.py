"""An SQLite outbox on disk: every batch is stored before it is published and leaves only on PUBACK.

A broker outage, a network drop or a bridge restart only delays data: rows stay in the
outbox (``WAL`` journal, ``synchronous=FULL``, so a committed batch survives a crash or a
power cut) and drain in the order they were written once the broker is back.

Sequence numbers live in the same file: ``enqueue_many`` allocates the next ``seq`` of each
stream and stores the batch in one transaction, so numbers continue across restarts and a
number is never used twice. A batch refused because the outbox is full still takes its
number, so the monitor sees the gap and counts it missing.

The outbox is bounded (``max_batches``). When it is full it **refuses new batches** (raises
``OutboxFullError``) rather than dropping old ones: what is stored stays a gap-free history
up to the moment the disk budget ran out, and the refusal is logged at ERROR by the bridge.
A batch that cannot be written (a full disk) is refused the same way, as an ``OutboxError``.
At 80 % full it logs a WARNING once, and INFO when it has drained below that again.

Example
-------
>>> ob = Outbox(":memory:", max_batches=10)
>>> ob.enqueue_many([("w/d/eda", "anxmon/v1/w/d/eda", lambda seq: b'{"seq": %d}' % seq)])
[0]
>>> [(r.topic, r.payload) for r in ob.peek()]
[('anxmon/v1/w/d/eda', b'{"seq": 0}')]
>>> ob.ack([ob.peek()[0].id]), len(ob)
(1, 0)
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from monitor.errors import AnxmonError

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCHES = 250_000  # about 11 h of six 1-second streams
WARN_FRACTION = 0.8


class OutboxError(AnxmonError):
    """The outbox file cannot be opened or written."""


class OutboxFullError(OutboxError):
    """The outbox holds ``max_batches`` batches; new ones are refused until it drains."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes


class Outbox:
    """A bounded, durable FIFO of (topic, payload) with per-stream sequence numbers.

    Thread-safe: the bridge enqueues from its loop while the publisher acknowledges from
    another thread.

    Parameters
    ----------
    path : str or Path
        SQLite file (created with its folder); ``":memory:"`` for tests.
    max_batches : int
        Capacity; ``enqueue_many`` raises ``OutboxFullError`` beyond it.
    """

    def __init__(self, path: str | Path, max_batches: int = DEFAULT_MAX_BATCHES):
        if max_batches < 1:
            raise ValueError(f"max_batches must be >= 1, got {max_batches}")
        self.path = str(path)
        self.max_batches = int(max_batches)
        if self.path != ":memory:":  # raw samples: only the bridge's user may read them
            try:
                Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # (-wal, -shm: the same)
                for suffix in ("", "-wal", "-shm"):  # an outbox of an earlier version: 0644
                    if os.path.exists(self.path + suffix) and os.stat(self.path + suffix).st_uid == os.getuid():
                        os.chmod(self.path + suffix, 0o600)
            except OSError as exc:
                raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " topic TEXT NOT NULL, payload BLOB NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS seq (stream TEXT PRIMARY KEY, next_seq INTEGER NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            (self._count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._warned = self._count >= WARN_FRACTION * self.max_batches
        if self._count:
            log.info("outbox %s holds %d batch(es) from before; they are sent first", self.path, self._count)

    def client_secret(self) -> str:
        """A random secret made once per outbox file (16 hex digits): the unguessable, stable part
        of the bridge's MQTT client id."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'client_secret'").fetchone()
            if row is None:
                row = (secrets.token_hex(8),)
                self._db.execute("INSERT INTO meta VALUES ('client_secret', ?)", row)
        return row[0]

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self.max_batches

    def next_seq(self, stream: str) -> int:
        """The sequence number the next batch of ``stream`` will get."""
        with self._lock:
            row = self._db.execute("SELECT next_seq FROM seq WHERE stream = ?", (stream,)).fetchone()
        return row[0] if row else 0

    def enqueue_many(self, items: Iterable[tuple[str, str, Callable[[int], bytes]]]) -> list[int]:
        """Store batches atomically: each item is (stream key, topic, build(seq) -> payload).

        Returns the sequence numbers given. Raises ``OutboxFullError`` (storing none of the
        items) when they do not all fit, ``OutboxError`` (storing none) when the file cannot be
        written (a full disk).
        """
        items = list(items)
        if not items:
            return []
        with self._lock:
            if self._count + len(items) > self.max_batches:
                self._take_seqs(stream for stream, _, _ in items)  # the lost batches leave a gap
                raise OutboxFullError(
                    f"outbox {self.path} is full ({self._count} of {self.max_batches} batches): "
                    "the broker has not acknowledged data for a long time"
                )
            seqs = []
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for stream, topic, build in items:
                    row = self._db.execute("SELECT next_seq FROM seq WHERE stream = ?", (stream,)).fetchone()
                    seq = row[0] if row else 0
                    self._db.execute("INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, build(seq)))
                    self._db.execute(
                        "INSERT INTO seq (stream, next_seq) VALUES (?, ?)"
                        " ON CONFLICT(stream) DO UPDATE SET next_seq = excluded.next_seq",
                        (stream, seq + 1),
                    )
                    seqs.append(seq)
                self._db.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise OutboxError(f"cannot write to outbox {self.path}: {exc}") from None
                raise
            self._count += len(items)
            if not self._warned and self._count >= WARN_FRACTION * self.max_batches:
                self._warned = True
                log.warning(
                    "outbox %s is %d%% full (%d of %d batches): the broker is not taking data",
                    self.path, 100 * self._count // self.max_batches, self._count, self.max_batches,
                )
            return seqs

    def _take_seqs(self, streams: Iterable[str]) -> None:
        """Use up one sequence number per refused batch of each stream (none if the file cannot be written)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for stream in streams:
                self._db.execute(
                    "INSERT INTO seq (stream, next_seq) VALUES (?, 1)"
                    " ON CONFLICT(stream) DO UPDATE SET next_seq = next_seq + 1",
                    (stream,),
                )
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()

    def _rollback(self) -> None:
        """End a failed transaction (SQLite has already rolled back after a full disk): a
        transaction left open refused every later one, storing nothing even once there is space."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def peek(self, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
        """The oldest rows with ``id > after_id``, in the order they were written."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        return [OutboxRow(i, t, bytes(p)) for i, t, p in rows]

    def ack(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows (one transaction); returns how many were removed.

        Raises ``OutboxError`` (removing none) when the file cannot be written: the rows stay,
        and are sent again after a restart (the monitor drops them as duplicates by seq).
        """
        ids = list(ids)
        if not ids:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"cannot write to outbox {self.path}: {exc}") from None
            self._count -= cur.rowcount
            if self._warned and self._count < WARN_FRACTION * self.max_batches:
                self._warned = False
                log.info("outbox %s drained below %d%% (%d batches)", self.path, int(100 * WARN_FRACTION), self._count)
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
