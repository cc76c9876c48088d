"""A wearer's recent days for the app's history view, read from the service's recording.

The service records every tick, check-in and answer to ``DATA/recordings.sqlite``
(``monitor.recorder``). The app opens that file read-only (SQLite WAL: it never blocks the
service's writer) and returns one wearer's score over time, averaged into at most ``points``
bins, and their check-ins with the answers given. Without a recording (a service run with
``--no-record``, or another machine) the relay's in-memory minutes stand in for the scores.

Example
-------
>>> h = RecordingHistory("anxmon-data/recordings.sqlite")                 # doctest: +SKIP
>>> h.history("alice", from_s=t - 3 * 86400, to_s=t)["checkins"][0]["answer"]  # doctest: +SKIP
{'t': ..., 'rating': 4, 'labels': ['anxious']}
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path


class RecordingHistory:
    """Read-only queries on a recording database (``monitor.recorder``); thread-safe."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None:
            if not self.path.is_file():
                return None  # the service has not recorded anything yet
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
        return self._db

    def available(self) -> bool:
        with self._lock:
            return self._conn() is not None

    def newest_tick(self, wearer: str) -> tuple[float, float] | None:
        """The wearer's newest recorded tick: its time (event time, unix s) and when the service
        recorded it (wall clock, unix s), e.g. ``(1718454865.0, 1718454866.2)``."""
        with self._lock:
            db = self._conn()
            if db is None:
                return None
            row = db.execute("SELECT t, recorded_at FROM indicators WHERE wearer = ? ORDER BY t DESC LIMIT 1",
                             (wearer,)).fetchone()
            return None if row is None else (float(row[0]), float(row[1]))

    def history(self, wearer: str, from_s: float, to_s: float, points: int = 300) -> dict | None:
        """``{"scores": [[t, mean score], ...], "threshold": x, "checkins": [...], "start": t}`` of one
        wearer with ``from_s <= t <= to_s`` (``start``: their first tick in it); None when there is
        no recording. Scores are averaged into at most ``points`` bins (of at least a minute)."""
        with self._lock:
            db = self._conn()
            if db is None:
                return None
            first = db.execute("SELECT MIN(t) FROM indicators WHERE wearer = ? AND t >= ? AND t <= ?",
                               (wearer, from_s, to_s)).fetchone()[0]
            start = from_s if first is None else float(first)  # a new wearer: the chart spans their data
            bin_s = max(60.0, (to_s - start) / max(1, points))
            scores = [
                [round(r[0] + bin_s / 2, 3), round(r[1], 3)]
                for r in db.execute(
                    "SELECT CAST(t / ? AS INTEGER) * ? AS bin, AVG(score) FROM indicators WHERE wearer = ? "
                    "AND t >= ? AND t <= ? AND score IS NOT NULL AND gate IS NULL GROUP BY bin ORDER BY bin",
                    (bin_s, bin_s, wearer, from_s, to_s))
            ]
            row = db.execute("SELECT threshold FROM indicators WHERE wearer = ? AND t <= ? AND threshold IS NOT NULL "
                             "ORDER BY t DESC LIMIT 1", (wearer, to_s)).fetchone()
            checkins = []
            for r in db.execute(
                    "SELECT c.prompt_id, c.t, c.expires_at, c.prompt, c.closed, a.t AS answer_t, a.rating, a.labels "
                    "FROM checkins c LEFT JOIN answers a ON a.wearer = c.wearer AND a.prompt_id = c.prompt_id "
                    "WHERE c.wearer = ? AND c.t >= ? AND c.t <= ? ORDER BY c.t", (wearer, from_s, to_s)):
                prompt = json.loads(r["prompt"])
                answer = None
                if r["answer_t"] is not None:
                    answer = {"t": r["answer_t"], "rating": r["rating"], "labels": json.loads(r["labels"])}
                checkins.append({"id": r["prompt_id"], "t": r["t"], "expires_at": r["expires_at"],
                                 "prompt": prompt, "closed": r["closed"], "answer": answer})
        return {"scores": scores, "threshold": None if row is None else row[0], "checkins": checkins, "start": start}

    def answer(self, wearer: str, prompt_id: str) -> dict | None:
        """The recorded answer to one check-in (``{"rating", "labels"}``), or None."""
        with self._lock:
            db = self._conn()
            if db is None:
                return None
            row = db.execute("SELECT rating, labels FROM answers WHERE wearer = ? AND prompt_id = ? LIMIT 1",
                             (wearer, prompt_id)).fetchone()
        return None if row is None else {"rating": row["rating"], "labels": json.loads(row["labels"] or "[]")}

    def open_checkin(self, wearer: str) -> dict | None:
        """The wearer's newest check-in that is neither answered nor expired (``Prompt.to_dict()``)."""
        with self._lock:
            db = self._conn()
            if db is None:
                return None
            row = db.execute("SELECT prompt FROM checkins WHERE wearer = ? AND closed IS NULL ORDER BY t DESC LIMIT 1",
                             (wearer,)).fetchone()
        return None if row is None else json.loads(row["prompt"])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
