"""Checkpoint store: rows round-trip, rows of earlier versions (zlib-compressed) still load, and
a damaged row stops the load with an error that names the wearer."""

from __future__ import annotations

import pickle
import sqlite3
import zlib

import numpy as np
import pytest

from monitor.store import CheckpointError, CheckpointStore


def test_rows_round_trip_uncompressed(tmp_path):
    state = {"ring": np.arange(5.0), "n": 3}
    with CheckpointStore(tmp_path / "c.sqlite") as store:
        assert store.save([("alice", state, 1.7e9)], saved_at_s=1.7e9 + 1) == 1
        got = store.load_all()["alice"]
    assert got["n"] == 3 and got["ring"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    blob = sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT state FROM wearers").fetchone()[0]
    assert blob[:1] == b"\x80"  # a plain pickle, not a zlib stream


def test_a_row_of_an_earlier_version_still_loads(tmp_path):
    path = tmp_path / "c.sqlite"
    CheckpointStore(path).close()
    old = zlib.compress(pickle.dumps({"answer": 42}, protocol=pickle.HIGHEST_PROTOCOL), 1)  # as before
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO wearers VALUES ('bob', 1.7e9, 1.7e9, ?)", (old,))
    with CheckpointStore(path) as store:
        assert store.load_all() == {"bob": {"answer": 42}}


@pytest.mark.parametrize("blob", [
    b"\x80\x05garbage",
    # a flipped byte in a string (UnicodeDecodeError) and a wrong protocol byte (ValueError)
    # escaped as tracebacks: a damaged row must be the one-line error, whatever it breaks
    pickle.dumps({"note": "caf\u00e9"}, protocol=5).replace(b"\xc3\xa9", b"\xff\xa9"),
    b"\x80\x09" + pickle.dumps(1)[2:],
], ids=["garbage", "bad-utf8", "bad-protocol"])
def test_a_damaged_row_names_the_wearer(tmp_path, blob):
    path = tmp_path / "c.sqlite"
    CheckpointStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO wearers VALUES ('carol', 1.7e9, 1.7e9, ?)", (blob,))
    with CheckpointStore(path) as store, pytest.raises(CheckpointError, match="carol"):
        store.load_all()


def _damaged(tmp_path, how: str):
    path = tmp_path / how / "checkpoints.sqlite"
    path.parent.mkdir()
    with CheckpointStore(path) as store:
        store.save([(f"w{i:03d}", {"pad": bytes(range(256)) * 40}, 1.7e9) for i in range(40)], saved_at_s=1.7e9)
    raw = path.read_bytes()
    if how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:  # pages 5 to 7 overwritten
        page = 4096
        path.write_bytes(raw[: 4 * page] + b"\xa5" * 3 * page + raw[7 * page:])
    return path


@pytest.mark.parametrize("how", ["garbage", "truncated", "pages"])
def test_a_damaged_file_is_a_one_line_error_naming_it(tmp_path, how):
    """Not a raw ``sqlite3.DatabaseError``: ``anxmon run`` prints a ``CheckpointError`` on one line
    and exits 2, as for a damaged recording."""
    path = _damaged(tmp_path, how)
    with pytest.raises(CheckpointError, match="is damaged .*move it .*-wal") as info:
        with CheckpointStore(path) as store:
            store.load_all()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_checkpoint_that_cannot_be_written_is_a_one_line_error_and_the_file_is_private(tmp_path):
    path = tmp_path / "checkpoints.sqlite"
    with CheckpointStore(path) as store:
        assert (path.stat().st_mode & 0o777) == 0o600
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own "disk is full"
        with pytest.raises(CheckpointError, match=f"cannot write checkpoints to {path} .*free space") as info:
            store.save([("alice", {"pad": b"x" * 100_000}, 1.7e9)], saved_at_s=1.7e9)
        assert "\n" not in str(info.value)
