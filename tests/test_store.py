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


def test_a_damaged_row_names_the_wearer(tmp_path):
    path = tmp_path / "c.sqlite"
    CheckpointStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO wearers VALUES ('carol', 1.7e9, 1.7e9, ?)", (b"\x80\x05garbage",))
    with CheckpointStore(path) as store, pytest.raises(CheckpointError, match="carol"):
        store.load_all()
