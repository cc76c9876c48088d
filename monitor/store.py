"""Checkpoints of the live service: every wearer's state in one SQLite file (WAL).

One row per wearer: the pickled state of the wearer's monitor and of the
service's per-wearer bookkeeping (stream trackers, time base), the event time it covers and the
wall-clock time it was written. A row is replaced as a whole in one transaction, so a crash
(even SIGKILL) leaves either the old or the new checkpoint of a wearer, never half of one.

Rows are not compressed: zlib (level 1) took 70% of a checkpoint's CPU to save ~40% of ~47 KB
per wearer, and the service writes a thousand wearers' checkpoints every 30 s on the thread
that processes their data. Rows written compressed by earlier versions are still read.

The file is private health data and trusted input (pickle): it lives in the service's data
directory, which the service creates with mode 0700, and is itself created 0600 (SQLite gives
its ``-wal`` and ``-shm`` files the same mode).

A file that is not an SQLite database, or a damaged one, is a ``CheckpointError`` naming the file
(``anxmon run`` prints it on one line and exits 2), as is a checkpoint that cannot be written
(a full disk, a read-only or failing file system).

Example
-------
>>> import tempfile, pathlib
>>> with CheckpointStore(pathlib.Path(tempfile.mkdtemp()) / "checkpoints.sqlite") as store:
...     n = store.save([("alice", {"answer": 42}, 1.7e9)], saved_at_s=1.7e9)
...     store.load_all()["alice"]
{'answer': 42}
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import sqlite3
import zlib
from pathlib import Path
from typing import Any, Iterable

from monitor.errors import AnxmonError

SCHEMA = 1


class CheckpointError(AnxmonError):
    """A checkpoint file that cannot be read back (damaged, or written by an incompatible version)
    or written (a full disk...)."""


# SQLite's result codes (``sqlite3.Error.sqlite_errorname``) of a file that cannot be written:
# the file system, not the data, is at fault
_WRITE_FAILURES = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")


def is_write_failure(exc: BaseException) -> bool:
    """True for an error of writing a file: disk full, I/O error, read-only file system."""
    if isinstance(exc, OSError):
        return True
    name = getattr(exc, "sqlite_errorname", None) or ""
    return isinstance(exc, sqlite3.Error) and name.startswith(_WRITE_FAILURES)


def free_space(path: str | Path) -> str:
    """The free space of the file system holding ``path``, for error messages ("1.2 MB free")."""
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        return "free space unknown"
    units = ("bytes", "KB", "MB", "GB", "TB")
    i = 0
    while free >= 1000 and i < len(units) - 1:
        free, i = free / 1000.0, i + 1
    return f"{free:.0f} bytes free" if i == 0 else f"{free:.1f} {units[i]} free"


def create_private(path: str | Path) -> None:
    """Create ``path`` empty with mode 0600 when it does not exist (an SQLite file holding health
    data; SQLite would create it with the umask's mode, typically 0644)."""
    with contextlib.suppress(FileExistsError):  # an existing file keeps its mode
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class CheckpointStore:
    """Per-wearer checkpoints in SQLite (WAL journal, ``synchronous=NORMAL``).

    ``synchronous=NORMAL`` with WAL makes a committed checkpoint survive a crash of the process;
    after a power loss the newest checkpoints may be missing (the older ones stay intact).
    Use from one thread at a time.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            create_private(self.path)
        except OSError as exc:
            raise CheckpointError(f"cannot create {self.path}: {exc.strerror or exc}") from None
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS wearers ("
                " wearer TEXT PRIMARY KEY, event_t REAL, saved_at REAL, state BLOB NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
            elif row[0] != str(SCHEMA):
                raise CheckpointError(
                    f"{self.path} holds checkpoints of schema {row[0]}, this anxmon writes schema {SCHEMA}; "
                    "move the file away to start every wearer afresh"
                )
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._error(exc) from None
        except CheckpointError:
            self._db.close()
            raise

    def _error(self, exc: sqlite3.Error) -> CheckpointError:
        """A one-line ``CheckpointError`` for an SQLite error on the file."""
        if is_write_failure(exc):
            return CheckpointError(
                f"cannot write checkpoints to {self.path} ({exc}; {free_space(self.path)}): free space on "
                "that disk (`--retention-days DAYS` keeps the recording beside it bounded, `--no-record` "
                "stops it), then start again"
            )
        return CheckpointError(
            f"{self.path} is damaged ({exc}); move it (and its -wal and -shm files) away to start every "
            "wearer afresh"
        )

    def save(self, rows: Iterable[tuple[str, Any, float | None]], saved_at_s: float) -> int:
        """Write ``(wearer, state, event_t)`` rows in one transaction; returns how many."""
        blobs = [
            (wearer, event_t, saved_at_s, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
            for wearer, state, event_t in rows
        ]
        if not blobs:
            return 0
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO wearers VALUES (?, ?, ?, ?)", blobs)
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        return len(blobs)

    def load_all(self) -> dict[str, Any]:
        """Every wearer's checkpointed state, by wearer id."""
        out = {}
        try:
            rows = self._db.execute("SELECT wearer, state FROM wearers ORDER BY wearer").fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        for wearer, blob in rows:
            try:
                # a pickle starts with its PROTO opcode 0x80; older rows are zlib streams (0x78)
                out[wearer] = pickle.loads(blob if blob[:1] == b"\x80" else zlib.decompress(blob))
            except Exception as exc:  # damaged bytes fail in many ways (UnicodeDecodeError, ValueError...)
                raise CheckpointError(
                    f"checkpoint of wearer {wearer!r} in {self.path} cannot be read ({exc}); "
                    "move the file away to start every wearer afresh"
                ) from exc
        return out

    def meta(self, key: str) -> str | None:
        """A small named value kept with the checkpoints (None when absent)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str | None) -> None:
        """Keep ``value`` under ``key``; None removes it."""
        try:
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def info(self) -> dict[str, tuple[float | None, float | None]]:
        """Wearer -> (event time covered, wall-clock time written) of each checkpoint."""
        return {w: (e, s) for w, e, s in self._db.execute("SELECT wearer, event_t, saved_at FROM wearers")}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "CheckpointStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
