"""Checkpoints of the live service: every wearer's state in one SQLite file (WAL).

One row per wearer: the pickled state of the wearer's monitor and of the
service's per-wearer bookkeeping (stream trackers, time base), the event time it covers and the
wall-clock time it was written. A row is replaced as a whole in one transaction, so a crash
(even SIGKILL) leaves either the old or the new checkpoint of a wearer, never half of one.

Rows are not compressed: zlib (level 1) took 70% of a checkpoint's CPU to save ~40% of ~47 KB
per wearer, and the service writes a thousand wearers' checkpoints every 30 s on the thread
that processes their data. Rows written compressed by earlier versions are still read.

The file is private health data and trusted input (pickle): it lives in the service's data
directory, which the service creates with mode 0700.

Example
-------
>>> import tempfile, pathlib
>>> with CheckpointStore(pathlib.Path(tempfile.mkdtemp()) / "checkpoints.sqlite") as store:
...     n = store.save([("alice", {"answer": 42}, 1.7e9)], saved_at_s=1.7e9)
...     store.load_all()["alice"]
{'answer': 42}
"""

from __future__ import annotations

import pickle
import sqlite3
import zlib
from pathlib import Path
from typing import Any, Iterable

from monitor.errors import AnxmonError

SCHEMA = 1


class CheckpointError(AnxmonError):
    """A checkpoint file that cannot be read back (damaged, or written by an incompatible version)."""


class CheckpointStore:
    """Per-wearer checkpoints in SQLite (WAL journal, ``synchronous=NORMAL``).

    ``synchronous=NORMAL`` with WAL makes a committed checkpoint survive a crash of the process;
    after a power loss the newest checkpoints may be missing (the older ones stay intact).
    Use from one thread at a time.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
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

    def save(self, rows: Iterable[tuple[str, Any, float | None]], saved_at_s: float) -> int:
        """Write ``(wearer, state, event_t)`` rows in one transaction; returns how many."""
        blobs = [
            (wearer, event_t, saved_at_s, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
            for wearer, state, event_t in rows
        ]
        if not blobs:
            return 0
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO wearers VALUES (?, ?, ?, ?)", blobs)
        return len(blobs)

    def load_all(self) -> dict[str, Any]:
        """Every wearer's checkpointed state, by wearer id."""
        out = {}
        for wearer, blob in self._db.execute("SELECT wearer, state FROM wearers ORDER BY wearer"):
            try:
                # a pickle starts with its PROTO opcode 0x80; older rows are zlib streams (0x78)
                out[wearer] = pickle.loads(blob if blob[:1] == b"\x80" else zlib.decompress(blob))
            except (zlib.error, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
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
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def info(self) -> dict[str, tuple[float | None, float | None]]:
        """Wearer -> (event time covered, wall-clock time written) of each checkpoint."""
        return {w: (e, s) for w, e, s in self._db.execute("SELECT wearer, event_t, saved_at FROM wearers")}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "CheckpointStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
