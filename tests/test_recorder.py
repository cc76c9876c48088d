"""The service's recording (``monitor.recorder``): unique keys make redelivery idempotent,
nothing is visible before ``commit``, retention deletes by recording time, and a database of
another schema is refused. The service-level guarantees (a batch the broker accepted is in the
database exactly once after a SIGKILL) are tested against real brokers in ``test_replay.py``.

The ticks and decisions here are real: a ``WearerMonitor`` fed the first 30 minutes of
Stress-Predict S02 (``../shared/data/stress-predict/S02``), which sends one check-in there
(found by running the monitor, as in ``test_service.py``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from functools import lru_cache

import numpy as np
import pytest

from monitor.core.policy import Decision
from monitor.core.wearer import WearerMonitor
from monitor.recorder import Recorder, RecorderError, connect, query
from monitor.service import ServiceError, ServiceOptions
from monitor.wire import SampleBatch, encode_batch
from tests.conftest import data_path

T0 = 1_644_227_574.0


@lru_cache(maxsize=1)
def _s02():
    from monitor.recordings import read_recording

    rec = read_recording(data_path("stress-predict", "S02"))
    batches = list(rec.between(rec.start_s, rec.start_s + 30 * 60).batches())
    m = WearerMonitor("s02")
    ticks = [t for b in batches for t in m.update(b)]
    return batches, ticks


def s02():
    data_path("stress-predict", "S02")  # skips when ../shared/data is absent
    return _s02()


def eda(seq: int, t0: float) -> SampleBatch:
    return SampleBatch("eda", seq, np.array([0.5, 0.625, 0.75, 0.875]), t0=t0, fs=4.0)


def test_redelivery_adds_no_rows_and_a_restarted_device_does(tmp_path):
    """Every table keeps a redelivered record once; a device that restarts its ``seq`` at 0
    later in time is a new batch (the raw key holds the start time)."""
    batches, ticks = s02()
    with Recorder(tmp_path / "r.sqlite", record_raw=True) as rec:
        for _ in range(2):  # the whole stream twice, as a broker redelivering everything would
            for b in batches:
                rec.batch("s02", "e4", b, encode_batch(b), now_s=T0)
            for tick in ticks:
                rec.tick("s02", tick, tick.score.gate, 2.0, now_s=T0)
            rec.marker("s02", T0 + 60, "therapy session", "session 3", now_s=T0, source="annotate")
            rec.commit()
        counts = {t: rec.count(t) for t in ("raw", "indicators", "decisions", "checkins", "markers")}
        sent = [d for t in ticks for d in t.decisions if isinstance(d, Decision)]
        assert counts == {"raw": len(batches), "indicators": len(ticks), "decisions": len(sent),
                          "checkins": sum(d.sent for d in sent), "markers": 1}
        assert counts["checkins"] == 1  # S02's first check-in (see the module docstring)

        restarted = eda(0, batches[-1].end_s + 10)  # seq 0 again, later
        rec.batch("s02", "e4", restarted, encode_batch(restarted), now_s=T0)
        rec.commit()
        assert rec.count("raw") == len(batches) + 1
    with connect(tmp_path / "r.sqlite") as db:
        rows = list(query(db, "raw", "s02", order="rowid"))
        assert [r["payload"] for r in rows[: len(batches)]] == [encode_batch(b).decode() for b in batches]
        ind = list(query(db, "indicators", "s02"))
        assert [r["t"] for r in ind] == [t.t for t in ticks]
        values = json.loads(ind[-1]["indicator_values"])
        assert values == pytest.approx(ticks[-1].indicators.values, rel=0, abs=0)  # full precision


def test_nothing_is_visible_before_commit_and_raw_is_opt_in(tmp_path):
    path = tmp_path / "r.sqlite"
    rec = Recorder(path, record_raw=False)
    b = eda(0, T0)
    rec.batch("alice", "e4", b, encode_batch(b), now_s=T0)
    rec.marker("alice", T0, "tag", "", now_s=T0)
    assert rec.pending == 1  # the batch was not even buffered: raw is off
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM markers").fetchone()[0] == 0
    rec.commit()
    assert other.execute("SELECT COUNT(*) FROM markers").fetchone()[0] == 1
    assert other.execute("SELECT COUNT(*) FROM raw").fetchone()[0] == 0
    other.close()
    rec.close()


def test_answers_and_expiry_close_the_checkin(tmp_path):
    """A check-in row is closed by its answer (``answered``) or its expiry, whichever comes first."""
    from monitor.core.policy import AnswerResult, Expired

    batches, ticks = s02()
    tick = next(t for t in ticks if any(isinstance(d, Decision) and d.sent for d in t.decisions))
    prompt = next(d.prompt for d in tick.decisions if isinstance(d, Decision) and d.sent)
    with Recorder(tmp_path / "r.sqlite") as rec:
        rec.tick("s02", tick, None, 2.0, now_s=T0)
        rec.answer("s02", AnswerResult(prompt.id, prompt.t_s + 30, 4, ("anxious",), "lower", -0.25, 1.75), now_s=T0)
        late = type(tick)(prompt.expires_at_s, tick.indicators, tick.score,
                          (Expired(prompt.expires_at_s, prompt.id, prompt.t_s),))
        rec.tick("s02", late, None, 2.0, now_s=T0)  # the expiry after the answer changes nothing
        rec.commit()
        row = rec._db.execute("SELECT closed, closed_t FROM checkins WHERE prompt_id = ?", (prompt.id,)).fetchone()
        assert row == ("answered", prompt.t_s + 30)
        answer = rec._db.execute("SELECT rating, labels, learned FROM answers").fetchone()
        assert answer == (4, '["anxious"]', "lower")


def test_retention_deletes_by_recording_time(tmp_path):
    """Rows recorded more than ``retention_days`` ago go; newer ones stay, whatever their event
    time (a replay of a 2022 session recorded today is kept)."""
    day = 86400.0
    now = 1_800_000_000.0
    with Recorder(tmp_path / "r.sqlite", record_raw=True, retention_days=30) as rec:
        for i, age_days in enumerate([40, 31, 29, 1]):
            b = eda(i, T0 + i)  # 2022 event times throughout
            rec.batch("alice", "e4", b, encode_batch(b), now_s=now - age_days * day)
            rec.marker("alice", T0 + i, "tag", "", now_s=now - age_days * day)
        rec.commit()
        assert rec.prune(now) == 4  # 2 raw rows and 2 markers
        kept = [r["seq"] for r in query(rec._db, "raw", "alice")]
        assert kept == [2, 3] and rec.count("markers") == 2
    with pytest.raises(RecorderError, match="retention_days"):
        Recorder(tmp_path / "x.sqlite", retention_days=0)
    with pytest.raises(ServiceError, match="retention_days"):
        ServiceOptions(retention_days=-1)
    with pytest.raises(ServiceError, match="record_raw needs record"):
        ServiceOptions(record=False, record_raw=True)


def test_another_schema_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    Recorder(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '999' WHERE key = 'schema'")
    with pytest.raises(RecorderError, match="schema 999"):
        Recorder(path)
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RecorderError, match="cannot be opened"):
        Recorder(tmp_path / "junk.sqlite")
    with pytest.raises(RecorderError, match="no recording database"):
        connect(tmp_path / "absent.sqlite", create=False)


def _fill_until_full(rec: Recorder, start_seq: int = 0) -> int:
    """Record raw batches with the file limited to a few pages (SQLite's own "database or disk is
    full", SQLITE_FULL) until a commit fails to write; returns the next seq."""
    seq = start_seq
    while not rec.paused and seq < start_seq + 10_000:
        b = eda(seq, T0 + seq)
        rec.batch("alice", "e4", b, encode_batch(b) + b" " * 2000, now_s=T0)
        rec.commit()
        seq += 1
    return seq


def test_a_full_disk_pauses_the_recording_once_and_it_resumes(tmp_path, caplog, monkeypatch):
    """A write failure is no crash: one ERROR naming the file and what to do, the rows dropped
    while paused are counted, and the first write that works again resumes the recording."""
    import monitor.recorder as recorder_module

    path = tmp_path / "r.sqlite"
    rec = Recorder(path, record_raw=True)
    pages = rec._db.execute("PRAGMA page_count").fetchone()[0]
    rec._db.execute(f"PRAGMA max_page_count = {pages + 8}")
    with caplog.at_level("WARNING", logger="anxmon.recorder"):
        seq = _fill_until_full(rec)
        assert rec.paused and rec.rows_dropped == 1
        recorded = rec.count("raw")
        assert 0 < recorded < seq
        for i in range(5):  # paused: dropped without a write attempt (nor another ERROR)
            b = eda(seq + i, T0 + seq + i)
            rec.batch("alice", "e4", b, encode_batch(b), now_s=T0)
            rec.commit()
        assert rec.rows_dropped == 6 and rec.count("raw") == recorded
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1, errors
        text = errors[0].getMessage()
        assert str(path) in text and "--retention-days" in text and "--no-record" in text and "PAUSED" in text
        assert not caplog.records[0].exc_info

        rec._db.execute("PRAGMA max_page_count = 1000000")  # space freed
        monkeypatch.setattr(recorder_module, "RETRY_S", 0.0)
        b = eda(seq + 5, T0 + seq + 5)
        rec.batch("alice", "e4", b, encode_batch(b), now_s=T0)
        rec.commit()  # still within the retry wait of the last failure: dropped
        rec._retry_at = 0.0
        rec.batch("alice", "e4", b, encode_batch(b), now_s=T0)
        rec.commit()
    assert not rec.paused and rec.count("raw") == recorded + 1
    resumed = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(resumed) == 1 and "resumed" in resumed[0] and "7 row(s)" in resumed[0], resumed
    rec.close()
    assert (path.stat().st_mode & 0o777) == 0o600


@contextlib.contextmanager
def small_file_system(tmp_path, size: str = "64k"):
    """A real, tiny file system (tmpfs) at ``tmp_path/small``; skips where mounting is not allowed."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_at_start_names_the_file(tmp_path):
    with small_file_system(tmp_path) as mnt:
        (mnt / "filler").write_bytes(b"x" * 60_000)  # what is left is too little for the tables
        with pytest.raises(RecorderError, match=f"cannot write {mnt / 'r.sqlite'} .*free.*--no-record"):
            Recorder(mnt / "r.sqlite")


def test_retention_deletes_in_short_steps_between_commits(tmp_path, monkeypatch):
    """Retention never holds the writer for one long transaction: ``prune`` takes a first step,
    each later ``commit`` (the worker's passes) one more, until no old row is left."""
    import monitor.recorder as recorder_module

    monkeypatch.setattr(recorder_module, "PRUNE_STEP_S", 0.0)  # every step is "too long": steps stay small
    day, now = 86400.0, 1_800_000_000.0
    with Recorder(tmp_path / "r.sqlite", record_raw=True, retention_days=30) as rec:
        for i in range(5000):
            b = eda(i, T0 + i)
            rec.batch("alice", "e4", b, encode_batch(b), now_s=now - (40 if i < 4000 else 1) * day)
            rec.marker("alice", T0 + i, "tag", "", now_s=now - (40 if i % 2 else 1) * day)
        rec.commit()
        first = rec.prune(now)
        assert 0 < first <= 1000 and rec.pruning
        steps = [first]
        while rec.pruning:
            rec.commit()  # (nothing recorded: the step is taken all the same)
            steps.append(rec._prune_deleted - sum(steps))
        assert sum(steps) == 4000 + 2500 and len(steps) > 10 and max(steps) <= 1000
        assert rec.count("raw") == 1000 and rec.count("markers") == 2500
        assert rec.prune(now) == 0 and not rec.pruning
