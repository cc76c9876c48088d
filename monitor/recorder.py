"""The service's recording: every wearer's indicators, decisions, check-ins, answers, markers
and (opt-in) raw sample batches in one SQLite file, ``DATA/recordings.sqlite`` (WAL).

The live service (``monitor.service``) calls a ``Recorder`` from its worker thread for every
processed batch, tick, answer and marker; rows are buffered in memory and written in one
transaction by ``commit``. The service acknowledges a message to the broker only *after* the
commit that holds its rows, and writes a checkpoint only after a commit, so after a crash (even
SIGKILL) every row of an acknowledged message is on disk, and a message whose rows were lost is
redelivered by the broker. Every table has a unique key, and a row that is already there is
kept (``INSERT OR IGNORE``): a redelivery never makes a second row.

Tables (times are unix seconds; ``recorded_at`` is the service's wall clock, used by the
retention period; every table is keyed by ``wearer`` first):

=============  ==================================================================  =========================
table          columns                                                             unique key
=============  ==================================================================  =========================
``indicators`` wearer, t, score, gate, threshold, ``indicator_values`` (JSON),     (wearer, t)
               quality, contributions, deviations (JSON), recorded_at
``decisions``  wearer, t, sent (0/1), reason, score, threshold, explanation (JSON), (wearer, t)
               prompt_id, recorded_at
``checkins``   wearer, prompt_id, t, expires_at, prompt (JSON: the payload sent),  (wearer, prompt_id)
               closed (``answered`` / ``expired`` / NULL), closed_t, recorded_at
``answers``    wearer, prompt_id, t, rating, labels (JSON), learned, threshold,     (wearer, prompt_id)
               recorded_at
``markers``    wearer, t, kind, label, source (device, ``annotate``), recorded_at  (wearer, t, kind, label)
``raw``        wearer, device, signal, seq, t_start, t_end, n, payload (the wire   (wearer, device, signal,
               JSON exactly as received), recorded_at                              seq, t_start)
=============  ==================================================================  =========================

``raw``'s key holds ``t_start`` besides the sequence number because a device that restarts
counts again from 0 (later in time); a redelivered batch has the same number *and* start.

The recording is optional; monitoring is not. When the file cannot be written (a full disk, a
read-only or failing file system) ``commit`` logs one ERROR naming the file, drops what it held
and *pauses* the recording: rows recorded meanwhile are dropped too (the service goes on
acknowledging messages, so they are lost from the recording, not from the monitoring), and a
write is tried again every ``RETRY_S`` seconds; the first one that works resumes the recording
with a WARNING saying how many rows were not recorded. The file is created 0600.

Retention (``prune``) deletes in short transactions of an adaptive number of rows (aiming at
``PRUNE_STEP_S`` each), one per ``commit`` until nothing is older than the retention period, so
the service's worker, which commits between its passes, is never blocked for long. Deleting does
not shrink the file: SQLite reuses the freed pages.

Example
-------
>>> import tempfile, pathlib, numpy as np
>>> from monitor.wire import SampleBatch, encode_batch
>>> path = pathlib.Path(tempfile.mkdtemp()) / "recordings.sqlite"
>>> rec = Recorder(path, record_raw=True)
>>> b = SampleBatch("eda", 0, np.array([0.5, 0.6]), t0=1.7e9, fs=4.0)
>>> rec.batch("alice", "e4", b, encode_batch(b), now_s=1.7e9)
>>> rec.batch("alice", "e4", b, encode_batch(b), now_s=1.7e9)   # a redelivery: kept once
>>> rec.commit()
>>> rec.count("raw")
1
>>> rec.close()
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from pathlib import Path
from typing import Iterable

from monitor.errors import AnxmonError
from monitor.store import create_private, free_space, is_write_failure

log = logging.getLogger("anxmon.recorder")

RECORDING_FILE = "recordings.sqlite"
SCHEMA = 1
TABLES = ("indicators", "decisions", "checkins", "answers", "markers", "raw")
RETRY_S = 10.0  # how often a paused recording (a full disk...) tries to write again
PRUNE_STEP_S = 0.02  # the time one retention step aims at (its row count adapts to it)

_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS indicators (wearer TEXT NOT NULL, t REAL NOT NULL, score REAL, gate TEXT,"
    " threshold REAL, indicator_values TEXT NOT NULL, quality TEXT NOT NULL, contributions TEXT,"
    " deviations TEXT, recorded_at REAL NOT NULL, PRIMARY KEY (wearer, t))",
    "CREATE TABLE IF NOT EXISTS decisions (wearer TEXT NOT NULL, t REAL NOT NULL, sent INTEGER NOT NULL,"
    " reason TEXT NOT NULL, score REAL, threshold REAL, explanation TEXT, prompt_id TEXT,"
    " recorded_at REAL NOT NULL, PRIMARY KEY (wearer, t))",
    "CREATE TABLE IF NOT EXISTS checkins (wearer TEXT NOT NULL, prompt_id TEXT NOT NULL, t REAL NOT NULL,"
    " expires_at REAL, prompt TEXT NOT NULL, closed TEXT, closed_t REAL, recorded_at REAL NOT NULL,"
    " PRIMARY KEY (wearer, prompt_id))",
    "CREATE TABLE IF NOT EXISTS answers (wearer TEXT NOT NULL, prompt_id TEXT NOT NULL, t REAL NOT NULL,"
    " rating INTEGER, labels TEXT NOT NULL, learned TEXT, threshold REAL, recorded_at REAL NOT NULL,"
    " PRIMARY KEY (wearer, prompt_id))",
    "CREATE TABLE IF NOT EXISTS markers (wearer TEXT NOT NULL, t REAL NOT NULL, kind TEXT NOT NULL,"
    " label TEXT NOT NULL, source TEXT, recorded_at REAL NOT NULL, PRIMARY KEY (wearer, t, kind, label))",
    "CREATE TABLE IF NOT EXISTS raw (wearer TEXT NOT NULL, device TEXT NOT NULL, signal TEXT NOT NULL,"
    " seq INTEGER NOT NULL, t_start REAL NOT NULL, t_end REAL NOT NULL, n INTEGER NOT NULL,"
    " payload TEXT NOT NULL, recorded_at REAL NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS raw_key ON raw (wearer, device, signal, seq, t_start)",
    "CREATE INDEX IF NOT EXISTS raw_time ON raw (wearer, t_start)",
    *[f"CREATE INDEX IF NOT EXISTS {t}_recorded ON {t} (recorded_at)" for t in TABLES],
]

_SQL = {
    "indicators": "INSERT OR IGNORE INTO indicators VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "decisions": "INSERT OR IGNORE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "checkins": "INSERT OR IGNORE INTO checkins VALUES (?, ?, ?, ?, ?, NULL, NULL, ?)",
    "close": "UPDATE checkins SET closed = ?, closed_t = ? WHERE wearer = ? AND prompt_id = ? AND closed IS NULL",
    "answers": "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "markers": "INSERT OR IGNORE INTO markers VALUES (?, ?, ?, ?, ?, ?)",
    "raw": "INSERT OR IGNORE INTO raw VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
}


class RecorderError(AnxmonError):
    """The recording database cannot be opened (written by an incompatible version, damaged)."""


def _json(d: dict | None) -> str | None:
    """JSON of a dict of floats; non-finite numbers become null (as on the wire)."""
    if d is None:
        return None
    return json.dumps({str(k): (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()},
                      separators=(",", ":"))


def _finite(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def connect(path: str | Path, create: bool = True) -> sqlite3.Connection:
    """Open (or create) a recording database and check its schema."""
    path = Path(path)
    if not create and not path.is_file():
        raise RecorderError(f"no recording database at {path} (the service writes {RECORDING_FILE} "
                            "in its data directory)")
    if create:
        try:
            create_private(path)  # health data: 0600, and so its -wal and -shm files
        except OSError as exc:
            raise RecorderError(f"cannot create {path}: {exc.strerror or exc}") from None
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for statement in _DDL:
            db.execute(statement)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
        elif row[0] != str(SCHEMA):
            raise RecorderError(f"{path} is a recording of schema {row[0]}; this anxmon reads schema {SCHEMA}")
    except sqlite3.DatabaseError as exc:
        db.close()
        if is_write_failure(exc):
            raise RecorderError(f"cannot write {path} ({exc}; {free_space(path)}): free space on that disk, or "
                                "start with --no-record") from None
        raise RecorderError(f"{path} cannot be opened as a recording database: {exc}") from exc
    except RecorderError:
        db.close()
        raise
    return db


class Recorder:
    """Buffered writer of the recording tables (see the module docstring). One thread only.

    Parameters
    ----------
    path : str or Path
        The SQLite file (created with its tables).
    record_raw : bool
        Also keep every accepted sample batch (about 9 MB on disk per hour of an E4's six signals).
    retention_days : float, optional
        ``prune`` deletes rows recorded (wall clock) longer ago than this; None keeps everything.
    """

    def __init__(self, path: str | Path, record_raw: bool = False, retention_days: float | None = None):
        if retention_days is not None and not retention_days > 0:
            raise RecorderError(f"retention_days must be > 0 (or None to keep everything), got {retention_days!r}")
        self.path = Path(path)
        self.record_raw = bool(record_raw)
        self.retention_days = retention_days
        self._db = connect(self.path)
        self._ops: list[tuple[str, tuple]] = []  # (statement key, parameters) in call order
        self.rows_written = 0  # statements executed by commits (inserts that were ignored count too)
        self.rows_dropped = 0  # statements dropped while the recording was paused (a full disk...)
        self.paused_since: float | None = None  # wall clock of the write failure that paused recording
        self._dropped_in_pause = 0
        self._retry_at = 0.0  # monotonic time of the next write attempt while paused
        self._prune_cutoff: float | None = None  # a retention run in progress: rows older than this go
        self._prune_tables: list[str] = []  # the tables it has still to go through
        self._prune_deleted = 0
        self._prune_chunk = 1000  # rows per step, adapted to take about PRUNE_STEP_S

    # -- what the service records ---------------------------------------------------------
    def batch(self, wearer: str, device: str, batch, payload: bytes | str, now_s: float) -> None:
        """An accepted (or redelivered) sample batch, as its wire payload; ignored unless ``record_raw``."""
        if not self.record_raw:
            return
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray, memoryview)) else payload
        self._ops.append(("raw", (wearer, device, batch.signal, int(batch.seq), batch.start_s, batch.end_s,
                                  len(batch), text, now_s)))

    def tick(self, wearer: str, tick, gate: str | None, threshold: float | None, now_s: float) -> None:
        """One output tick (``monitor.core.wearer.Tick``) with the gate the service applied, its
        trigger decisions, the check-ins it sent and the prompts that expired."""
        from monitor.core.policy import Decision, Expired

        score = tick.score
        self._ops.append(("indicators", (
            wearer, float(tick.t), _finite(score.value), gate, _finite(threshold),
            _json(tick.indicators.values), json.dumps(tick.indicators.quality, sort_keys=True),
            _json(score.contributions), _json({k: dev[2] for k, dev in score.deviations.items()}), now_s,
        )))
        for d in tick.decisions:
            if isinstance(d, Expired):
                self._ops.append(("close", ("expired", float(d.t_s), wearer, d.prompt_id)))
            elif isinstance(d, Decision):
                self._ops.append(("decisions", (
                    wearer, float(d.t_s), int(d.sent), d.reason, _finite(d.score), _finite(d.threshold),
                    _json(d.explanation), None if d.prompt is None else d.prompt.id, now_s,
                )))
                if d.sent and d.prompt is not None:
                    p = d.prompt
                    self._ops.append(("checkins", (wearer, p.id, float(p.t_s), _finite(p.expires_at_s),
                                                   json.dumps(p.to_dict(), sort_keys=True), now_s)))

    def answer(self, wearer: str, result, now_s: float) -> None:
        """An answer the policy accepted (``monitor.core.policy.AnswerResult``)."""
        self._ops.append(("answers", (wearer, result.prompt_id, float(result.t_s), result.rating,
                                      json.dumps(list(result.labels)), result.learned,
                                      _finite(result.threshold), now_s)))
        self._ops.append(("close", ("answered", float(result.t_s), wearer, result.prompt_id)))

    def marker(self, wearer: str, t_s: float, kind: str, label: str, now_s: float, source: str | None = None) -> None:
        """An event marker from ``source`` (the id in its topic: a device, ``annotate``...)."""
        self._ops.append(("markers", (wearer, float(t_s), kind, label, source, now_s)))

    # -- transactions -----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._ops)

    @property
    def paused(self) -> bool:
        """The file could not be written: rows are dropped until a retry works (see the module docstring)."""
        return self.paused_since is not None

    def commit(self) -> None:
        """Write everything recorded since the last commit in one transaction (dropped while the
        recording is paused), and take one step of a retention run in progress."""
        if self._prune_cutoff is not None and not self.paused:
            self._prune_step()
        if not self._ops:
            return
        ops, self._ops = self._ops, []
        if self.paused and time.monotonic() < self._retry_at:
            self._drop(len(ops))
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                start = 0
                for i in range(1, len(ops) + 1):  # consecutive statements of one kind: one executemany
                    if i == len(ops) or ops[i][0] != ops[start][0]:
                        self._db.executemany(_SQL[ops[start][0]], [params for _, params in ops[start:i]])
                        start = i
        except sqlite3.DatabaseError as exc:
            if not is_write_failure(exc):
                raise
            self._pause(exc)
            self._drop(len(ops))
            return
        if self.paused:
            log.warning("recording to %s resumed: %d row(s) of the last %.0f s were not recorded", self.path,
                        self._dropped_in_pause, max(0.0, time.time() - self.paused_since))
            self.paused_since, self._dropped_in_pause = None, 0
        self.rows_written += len(ops)

    def _drop(self, n: int) -> None:
        self.rows_dropped += n
        self._dropped_in_pause += n

    def _pause(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + RETRY_S
        if self.paused:
            return  # said once, when the recording paused
        self.paused_since = time.time()
        log.error("cannot write the recording %s (%s; %s): recording is PAUSED, monitoring and check-ins go on. "
                  "Free space on that disk, keep the recording bounded with --retention-days DAYS, or start "
                  "with --no-record; it resumes by itself once a write works (tried every %.0f s)",
                  self.path, exc, free_space(self.path), RETRY_S)

    def prune(self, now_s: float) -> int:
        """Start deleting rows recorded more than ``retention_days`` before ``now_s`` and take
        the first step; the next ``commit``s take the others (``pruning`` is True until done).
        Returns the rows this step deleted."""
        if self.retention_days is None:
            return 0
        self.commit()
        if self._prune_cutoff is None:
            self._prune_deleted = 0
        self._prune_cutoff = now_s - self.retention_days * 86400.0
        self._prune_tables = list(TABLES)
        return self._prune_step()

    @property
    def pruning(self) -> bool:
        """A retention run has rows left to delete."""
        return self._prune_cutoff is not None

    def _prune_step(self) -> int:
        """Delete up to ``_prune_chunk`` old rows in one short transaction."""
        budget, deleted = self._prune_chunk, 0
        started = time.perf_counter()
        try:
            with self._db:
                self._db.execute("BEGIN")
                while self._prune_tables and deleted < budget:
                    table = self._prune_tables[0]
                    n = self._db.execute(
                        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE recorded_at < ? "
                        "LIMIT ?)", (self._prune_cutoff, budget - deleted)).rowcount
                    deleted += n
                    if deleted < budget:  # this table has no more old rows
                        self._prune_tables.pop(0)
        except sqlite3.DatabaseError as exc:
            if not is_write_failure(exc):
                raise
            log.error("retention: cannot delete from %s (%s); tried again in an hour", self.path, exc)
            self._prune_cutoff = None
            return 0
        elapsed = time.perf_counter() - started
        if elapsed < PRUNE_STEP_S / 2:
            self._prune_chunk = min(self._prune_chunk * 2, 100_000)
        elif elapsed > PRUNE_STEP_S * 2:
            self._prune_chunk = max(self._prune_chunk // 2, 100)
        self._prune_deleted += deleted
        if not self._prune_tables:
            self._prune_cutoff = None
            if self._prune_deleted:
                log.info("retention: deleted %d recorded row(s) older than %g days", self._prune_deleted,
                         self.retention_days)
        return deleted

    def count(self, table: str, wearer: str | None = None) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; expected one of {TABLES}")
        if wearer is None:
            return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE wearer = ?", (wearer,)).fetchone()[0]

    def close(self) -> None:
        """Commit what is pending and close the file."""
        try:
            self.commit()
        finally:
            self._db.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------ reading


def query(db: sqlite3.Connection, table: str, wearer: str | None = None, from_s: float | None = None,
          to_s: float | None = None, order: str | None = None) -> Iterable[sqlite3.Row]:
    """Rows of ``table`` for a wearer (all when None) with ``from_s <= t < to_s`` (``t_start`` for
    ``raw``), ordered by wearer and time."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {TABLES}")
    time_col = "t_start" if table == "raw" else "t"
    where, params = [], []
    if wearer is not None:
        where.append("wearer = ?")
        params.append(wearer)
    if from_s is not None:
        where.append(f"{time_col} >= ?")
        params.append(float(from_s))
    if to_s is not None:
        where.append(f"{time_col} < ?")
        params.append(float(to_s))
    sql = f"SELECT * FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order or f'wearer, {time_col}'}"
    cursor = db.cursor()
    cursor.row_factory = sqlite3.Row
    return cursor.execute(sql, params)


def wearers(db: sqlite3.Connection, table: str | None = None) -> list[str]:
    """Wearer ids with rows in ``table`` (in any table when None), sorted."""
    tables = [table] if table else list(TABLES)
    found: set[str] = set()
    for t in tables:
        found.update(w for (w,) in db.execute(f"SELECT DISTINCT wearer FROM {t}"))
    return sorted(found)
